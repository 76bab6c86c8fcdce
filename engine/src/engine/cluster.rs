//! What the whole cluster looks like, as the database shows it: runs per state, the
//! queue, pending approvals. Every replica reads the same rows, so every replica
//! reports the same numbers; one read is shared for `EngineConfig::cluster_stats_ttl`
//! (scrapes of several Prometheus servers, or a scrape storm, cost one read).

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::Engine;
use crate::status::RunStatus;
use crate::{Error, Result, store};

/// Cluster-wide values at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterStats {
    /// Runs per state, every state present (zero included), in [`RunStatus::ALL`] order.
    pub runs_by_status: Vec<(RunStatus, i64)>,
    /// Runs a worker could claim now: queued, or with an expired lease, or whose
    /// wake-up time or deadline has come.
    pub queue_depth: i64,
    /// Approvals waiting for a decision.
    pub approvals_pending: i64,
    /// When the database was read.
    pub read_at: DateTime<Utc>,
}

/// How long a read may take: under Prometheus's default scrape timeout (10 s).
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// The last read and when it was made; a failed read is kept as long as a good one,
/// so a database outage is not asked again by every scrape.
pub(super) type Cache = Mutex<Option<(Instant, std::result::Result<ClusterStats, String>)>>;

impl Engine {
    /// The cluster-wide values, read from the database at most once per
    /// `cluster_stats_ttl` (concurrent callers wait for the one read under way).
    pub async fn cluster_stats(&self) -> Result<ClusterStats> {
        let ttl = self.inner.config.cluster_stats_ttl;
        let mut cache = self.inner.cluster.lock().await;
        let fresh = |at: &Instant| at.elapsed() < ttl;
        let value = match cache.as_ref() {
            Some((at, value)) if fresh(at) => value.clone(),
            _ => {
                // A slow database fails the read rather than the scrape.
                let value =
                    match tokio::time::timeout(READ_TIMEOUT, self.read_cluster_stats()).await {
                        Ok(read) => read.map_err(|e| e.to_string()),
                        Err(_) => Err(format!(
                            "reading the cluster-wide values took over {} s",
                            READ_TIMEOUT.as_secs()
                        )),
                    };
                *cache = Some((Instant::now(), value.clone()));
                value
            }
        };
        value.map_err(Error::Unavailable)
    }

    async fn read_cluster_stats(&self) -> Result<ClusterStats> {
        let db = &self.inner.db;
        let now = Utc::now();
        let counted = store::runs::count_by_status(db).await?;
        let runs_by_status = RunStatus::ALL
            .iter()
            .map(|s| {
                let n = counted.iter().find(|(c, _)| c == s).map_or(0, |(_, n)| *n);
                (*s, n)
            })
            .collect();
        Ok(ClusterStats {
            runs_by_status,
            queue_depth: store::leases::count_claimable(db, now).await?,
            approvals_pending: store::approvals::count_pending(db).await?,
            read_at: now,
        })
    }
}

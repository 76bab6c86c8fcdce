//! The engine handle: the one entry point the API, the CLI and workers use. Cheap
//! to clone; every operation that changes a run goes through here. Split by concern:
//! run lifecycle, people (approvals, questions), teams, access (users, keys), alert
//! sources and secrets at rest, webhooks, the Alertmanager intake, language-model
//! providers, schedules, usage (tokens, cost), and notifications from other processes.

mod access;
mod alert_sources;
mod alertmanager;
mod cluster;
pub(crate) mod eager;
pub use alert_sources::{
    DEFAULT_SOURCE, DefaultAlertSource, NewAlertSource, Rotation, SourceAuth, SourceConnection,
};
pub use alertmanager::{IncomingAlert, NotificationIntake, TeamRoute};
pub use cluster::ClusterStats;
mod humans;
mod lifecycle;
mod notify;
mod providers;
mod schedules;
mod teams;
mod usage;
mod webhooks;

pub use humans::Decision;
pub use lifecycle::StartRun;
pub use providers::{DEFAULT_CONTEXT_TOKENS, ModelUpdate, NewModel, NewProvider};
pub use schedules::{NewSchedule, ScheduleUpdate, next_fire_times};
pub use webhooks::{NewWebhook, WebhookTarget};

use crate::Result;
use crate::bus::EventBus;
use crate::config::EngineConfig;
use crate::store::Db;
use crate::store::{self, is_postgres};
use crate::topology;
use crate::workflow::Workflows;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

struct Inner {
    db: Db,
    bus: EventBus,
    writer: crate::writer::CheckpointWriter,
    config: Arc<EngineConfig>,
    workflows: Workflows,
    catalog: topology::Catalog,
    keyring: Option<Arc<crate::secrets::Keyring>>,
    default_source: Option<DefaultAlertSource>,
    /// Wakes this process's workers when a run becomes runnable.
    work: Notify,
    /// Free slots of this process's workers, for runs claimed as they start.
    offers: eager::Offers,
    /// Where heartbeats renew leases: a pool of their own on Postgres.
    lease_db: Db,
    stats: Arc<crate::stats::Stats>,
    metrics: crate::metrics::Metrics,
    /// The last read of the cluster-wide values, shared by scrapes for a few seconds.
    cluster: cluster::Cache,
}

/// What an engine is made of besides its database; built once, by the binary.
#[derive(Clone)]
pub struct EngineOptions {
    pub config: EngineConfig,
    /// The workflows this process starts and executes.
    pub workflows: Workflows,
    /// The tools and models teams may name.
    pub catalog: topology::Catalog,
    /// How this process's database sessions are named (Postgres `application_name`).
    pub application_name: String,
    /// The master keys for secrets at rest; without them secrets can be neither
    /// stored nor read.
    pub keyring: Option<Arc<crate::secrets::Keyring>>,
    /// The environment's zero-config alert source.
    pub default_source: Option<DefaultAlertSource>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            config: EngineConfig::default(),
            workflows: Workflows::default(),
            catalog: topology::Catalog::builtin(),
            application_name: "aiops".to_owned(),
            keyring: None,
            default_source: None,
        }
    }
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Connects to an already-migrated database (see [`crate::database::migrate`])
    /// and starts the checkpoint writer.
    pub async fn connect(database_url: &str, options: EngineOptions) -> Result<Self> {
        let db = store::connect_as(database_url, &options.application_name).await?;
        let leases = store::connect_leases(database_url, &options.application_name).await?;
        Ok(Self::with_connection(db, leases, options))
    }

    pub(crate) fn with_connection(mut db: Db, leases: Option<Db>, options: EngineOptions) -> Self {
        let EngineOptions {
            config,
            workflows,
            catalog,
            application_name: _,
            keyring,
            default_source,
        } = options;
        // Before any clone of the handle is made: clones share the counter.
        let stats = Arc::new(crate::stats::Stats::default());
        store::count_statements(&mut db, stats.statements.clone());
        let bus = if is_postgres(&db) {
            EventBus::with_postgres_notifier(db.clone(), stats.notifications.clone())
        } else {
            EventBus::new()
        };
        let shards = if is_postgres(&db) {
            config.writer_shards
        } else {
            1
        };

        let lease_db = leases.unwrap_or_else(|| db.clone());
        let writer = crate::writer::CheckpointWriter::spawn(
            db.clone(),
            bus.clone(),
            stats.clone(),
            config.batch_max,
            shards,
        );
        Self {
            inner: Arc::new(Inner {
                db,
                bus,
                writer,
                config: Arc::new(config),
                workflows,
                catalog,
                keyring,
                default_source,
                work: Notify::new(),
                offers: eager::Offers::default(),
                lease_db,
                metrics: crate::metrics::Metrics::new(stats.clone()),
                stats,
                cluster: cluster::Cache::default(),
            }),
        }
    }

    pub(crate) fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The connection heartbeats renew leases on (see `store::connect_leases`).
    pub(crate) fn lease_db(&self) -> &Db {
        &self.inner.lease_db
    }

    pub(crate) fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    pub fn config(&self) -> &Arc<EngineConfig> {
        &self.inner.config
    }

    /// The tools and models teams may name.
    pub fn catalog(&self) -> &topology::Catalog {
        &self.inner.catalog
    }

    /// What happens to runs, as this process hears it (for live views): events
    /// committed here, hints of commits elsewhere, and when to re-read.
    pub fn changes(&self) -> crate::bus::Changes {
        self.inner.bus.changes()
    }

    pub fn workflows(&self) -> &Workflows {
        &self.inner.workflows
    }

    /// Counters of rare events in this process (lost races, lost leases…).
    pub fn stats(&self) -> crate::EngineStats {
        self.inner.stats.snapshot()
    }

    /// This process's metrics (durations, model usage, trigger counters), for
    /// `/metrics` and for code outside the core that counts what it does.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// Whether writes may run side by side (Postgres) or queue on SQLite's one writer.
    pub(crate) fn concurrent_writers(&self) -> bool {
        is_postgres(&self.inner.db)
    }

    pub(crate) fn counters(&self) -> &crate::stats::Stats {
        &self.inner.stats
    }

    pub(crate) fn writer(&self) -> &crate::writer::CheckpointWriter {
        &self.inner.writer
    }

    pub(crate) async fn wait_for_work(&self, poll: Duration, shutdown: &CancellationToken) {
        tokio::select! {
            _ = self.inner.work.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.cancelled() => {}
        }
    }

    pub(crate) fn offers(&self) -> &eager::Offers {
        &self.inner.offers
    }

    /// A run became runnable (its commit is done): wake the workers of this process
    /// and of the others.
    pub(crate) fn runnable(&self) {
        self.wake_workers();
        self.inner.bus.announce_wake();
    }

    /// Wakes this process's workers only.
    pub(crate) fn wake_workers(&self) {
        // notify_one keeps a permit when no worker is waiting right now, so a wake-up
        // that arrives while the worker is busy claiming is not lost.
        self.inner.work.notify_one();
    }

    /// Checks the database answers; used by `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        store::listener::ping(&self.inner.db).await
    }
}

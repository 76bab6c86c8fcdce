//! The checkpoint writer: one task per process that groups the checkpoints of all
//! runs into batches, commits each batch at once, and publishes what committed.

use std::collections::HashSet;

use crate::store::Db;
use tokio::sync::{mpsc, oneshot};

use crate::bus::EventBus;
use std::sync::Arc;

use crate::error::DbFailure;
use crate::event::Event;
use crate::stats::Stats;
use crate::store::checkpoint::{self, Checkpoint, Outcome};
use crate::store::own_connection::{OwnConnection, SharedConnection};
use crate::{Error, Result};

struct Pending {
    checkpoint: Checkpoint,
    reply: oneshot::Sender<Result<Vec<Event>>>,
}

/// Cheap-to-clone handle to the writer tasks.
///
/// Several writers commit concurrently on Postgres (the database then flushes many
/// commits with one WAL write); a run always goes to the same writer, which keeps
/// its checkpoints in order. SQLite has one writer: it serialises writes anyway.
#[derive(Clone)]
pub struct CheckpointWriter {
    shards: std::sync::Arc<[mpsc::Sender<Pending>]>,
    /// The connection the first writer commits on (SQLite's only one).
    first: SharedConnection,
}

impl CheckpointWriter {
    /// Starts `shards` writer tasks; they end when every handle is dropped.
    pub(crate) fn spawn(
        db: Db,
        bus: EventBus,
        stats: Arc<Stats>,
        batch_max: usize,
        shards: usize,
    ) -> Self {
        let first = SharedConnection::default();
        let shards: Vec<_> = (0..shards.max(1))
            .map(|i| {
                let (tx, rx) = mpsc::channel(4096);
                let own = if i == 0 {
                    first.clone()
                } else {
                    SharedConnection::default()
                };
                tokio::spawn(run(
                    db.clone(),
                    bus.clone(),
                    stats.clone(),
                    rx,
                    own,
                    batch_max.max(1),
                ));
                tx
            })
            .collect();
        Self {
            shards: shards.into(),
            first,
        }
    }

    /// The connection SQLite's writer commits on, for other writes to share (see
    /// [`SharedConnection`]).
    pub(crate) fn sqlite_connection(&self) -> &SharedConnection {
        &self.first
    }

    fn shard(&self, run_id: crate::ids::RunId) -> &mpsc::Sender<Pending> {
        // UUIDv7: the low bits are random, so this spreads runs evenly.
        let idx = (run_id.0.as_u128() as usize) % self.shards.len();
        &self.shards[idx]
    }

    /// Queues a checkpoint; the returned receiver resolves once it is durable (or
    /// rejected). Checkpoints of one run commit in the order they were submitted. One
    /// holding a value the database cannot store is refused here, never queued.
    pub async fn submit(&self, checkpoint: Checkpoint) -> oneshot::Receiver<Result<Vec<Event>>> {
        let (reply, rx) = oneshot::channel();
        if let Err(message) = checkpoint.validate() {
            let _ = reply.send(Err(Error::Refused(message)));
            return rx;
        }
        let shard = self.shard(checkpoint.fence.run_id);
        if let Err(mpsc::error::SendError(p)) = shard.send(Pending { checkpoint, reply }).await {
            let _ = p
                .reply
                .send(Err(Error::Invalid("checkpoint writer has stopped".into())));
        }
        rx
    }

    /// Submits and waits until the checkpoint is durable.
    pub async fn commit(&self, checkpoint: Checkpoint) -> Result<Vec<Event>> {
        let run_id = checkpoint.fence.run_id;
        self.submit(checkpoint)
            .await
            .await
            .unwrap_or_else(|_| Err(Error::LeaseLost(run_id.to_string())))
    }
}

async fn run(
    db: Db,
    bus: EventBus,
    stats: Arc<Stats>,
    mut rx: mpsc::Receiver<Pending>,
    own: SharedConnection,
    batch_max: usize,
) {
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut runs = HashSet::from([first.checkpoint.fence.run_id]);
        let mut batch = vec![first];
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(p) if runs.insert(p.checkpoint.fence.run_id) => batch.push(p),
                // A second checkpoint of the same run waits for the next batch, which
                // keeps that run's writes in order.
                Ok(p) => {
                    carry = Some(p);
                    break;
                }
                Err(_) => break,
            }
        }
        let checkpoints: Vec<Checkpoint> = batch.iter().map(|p| p.checkpoint.clone()).collect();
        let mut own = own.lock().await;
        let own = &mut *own;
        let started = std::time::Instant::now();
        let committed = commit_retrying(&db, own, &stats, &checkpoints).await;
        tracing::trace!(
            batch = checkpoints.len(),
            micros = started.elapsed().as_micros() as u64,
            "checkpoint batch"
        );
        match committed {
            Ok(outcomes) => {
                for (pending, outcome) in batch.into_iter().zip(outcomes) {
                    deliver(&bus, &stats, pending, Ok(outcome));
                }
            }
            // The database refused some checkpoint's data: commit each alone, so that
            // only the one at fault fails and its neighbours are not replayed.
            Err(e) if batch.len() > 1 && is_content_error(&e) => {
                tracing::warn!(error = %e, batch = batch.len(), "checkpoint batch refused; isolating");
                Stats::add(&stats.checkpoint_batches_isolated);
                for pending in batch {
                    let alone = commit_retrying(
                        &db,
                        own,
                        &stats,
                        std::slice::from_ref(&pending.checkpoint),
                    )
                    .await
                    .map(|mut o| o.pop().unwrap_or(Outcome::LeaseLost));
                    deliver(&bus, &stats, pending, alone);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, batch = batch.len(), "checkpoint batch failed");
                let (refused, message) = (is_content_error(&e), e.to_string());
                for pending in batch {
                    let e = if refused {
                        Error::Refused(message.clone())
                    } else {
                        Error::Unavailable(message.clone())
                    };
                    deliver(&bus, &stats, pending, Err(e));
                }
            }
        }
    }
}

fn is_content_error(e: &Error) -> bool {
    matches!(e, Error::Database(db) if db.failure() == DbFailure::Content)
}

/// Commits a batch, retrying at once when it lost a race (deadlock, busy database).
async fn commit_retrying(
    db: &Db,
    own: &mut OwnConnection,
    stats: &Stats,
    batch: &[Checkpoint],
) -> Result<Vec<Outcome>> {
    let mut tries = 0;
    loop {
        // The writer's own connection is not the pool sea-orm counts statements on.
        Stats::add(&stats.statements);
        match checkpoint::commit_on(db, own, batch, chrono::Utc::now()).await {
            Err(e) if e.is_transient() && tries < 5 => {
                tries += 1;
                Stats::add(&stats.checkpoint_retries);
                tracing::debug!(error = %e, tries, "checkpoint batch lost a race; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(5 * tries)).await;
            }
            other => return other,
        }
    }
}

/// Answers one checkpoint: committed events go to the bus; a refusal of its data is
/// `Refused` (writing it again cannot help); anything else is `Unavailable`.
fn deliver(bus: &EventBus, stats: &Stats, pending: Pending, result: Result<Outcome>) {
    if matches!(&result, Err(e) if matches!(e, Error::Refused(_)) || is_content_error(e)) {
        Stats::add(&stats.checkpoints_refused);
    }
    let reply = match result {
        Ok(Outcome::Committed(events)) => {
            bus.publish_events(&events);
            Ok(events)
        }
        Ok(Outcome::LeaseLost) => Err(Error::LeaseLost(
            pending.checkpoint.fence.run_id.to_string(),
        )),
        Err(e @ (Error::Refused(_) | Error::Unavailable(_))) => Err(e),
        Err(e) if is_content_error(&e) => Err(Error::Refused(e.to_string())),
        Err(e) => Err(Error::Unavailable(e.to_string())),
    };
    let _ = pending.reply.send(reply);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ApprovalId;
    use crate::status::StepStatus;
    use crate::store::checkpoint::{NewApproval, StepRecord};
    use crate::store::{self, leases, runs};

    /// The database refuses one checkpoint of a batch (here: two approvals with one
    /// step key, which its unique index forbids; nothing in the values themselves is
    /// wrong): that checkpoint alone fails, `Refused`; its neighbours commit.
    #[tokio::test(flavor = "current_thread")]
    async fn a_refused_checkpoint_fails_alone() {
        let test_db = crate::store::testing::TestDb::create(crate::store::testing::Backend::Sqlite)
            .await
            .unwrap();
        let db = test_db.db.clone();
        let now = chrono::Utc::now();
        for _ in 0..3 {
            runs::insert(&db, store::testing::new_run(), now)
                .await
                .unwrap();
        }
        let claims = leases::claim(
            &db,
            "w",
            3,
            std::time::Duration::from_secs(30),
            now,
            leases::Pick::Runnable,
        )
        .await
        .unwrap();
        assert_eq!(claims.len(), 3);
        let stats = Arc::new(Stats::default());
        let writer = CheckpointWriter::spawn(db.clone(), EventBus::new(), stats.clone(), 128, 1);
        let step = |key: &str| StepRecord {
            key: key.into(),
            status: StepStatus::Succeeded,
            input: None,
            output: Some(serde_json::json!(1)),
            usage: None,
            error: None,
            attempts: 1,
            started_at: Some(now),
            finished_at: Some(now),
            next_attempt_at: None,
        };
        let approval = || NewApproval {
            id: ApprovalId::new(),
            step_key: "same".into(),
            tool: "t".into(),
            args: serde_json::json!({}),
            risk_note: None,
            expires_at: now + chrono::Duration::hours(1),
            decided: None,
        };
        let mut checkpoints: Vec<Checkpoint> = claims
            .iter()
            .map(|c| {
                let mut cp = Checkpoint::new(c.fence.clone());
                cp.steps.push(step("s0"));
                cp
            })
            .collect();
        checkpoints[1].approvals = vec![approval(), approval()];
        // Queued together (the writer task has not run yet on this thread): one batch.
        let mut replies = Vec::new();
        for cp in checkpoints {
            replies.push(writer.submit(cp).await);
        }
        let mut results = Vec::new();
        for rx in replies {
            results.push(rx.await.unwrap());
        }
        assert!(results[0].is_ok(), "{:?}", results[0]);
        assert!(
            matches!(&results[1], Err(Error::Refused(m)) if m.contains("UNIQUE")),
            "{:?}",
            results[1]
        );
        assert!(results[2].is_ok(), "{:?}", results[2]);
        assert_eq!(stats.snapshot().checkpoint_batches_isolated, 1);
        assert_eq!(stats.snapshot().checkpoints_refused, 1);
        for (i, claim) in claims.iter().enumerate() {
            let recorded = store::steps::list(&db, claim.fence.run_id).await.unwrap();
            assert_eq!(recorded.len(), usize::from(i != 1), "run {i}");
        }
    }
}

//! The checkpoint writer: one task per process that groups the checkpoints of all
//! runs into batches, commits each batch at once, and publishes what committed.
//!
//! A checkpoint whose writer has nothing else to do commits in the task that waits
//! for it ([`CheckpointWriter::commit`]): handing it to the writer's task and the
//! answer back cost two task wake-ups, often on the other thread, for every step of
//! a run that is alone.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::bus::EventBus;
use crate::error::DbFailure;
use crate::event::Event;
use crate::stats::Stats;
use crate::store::Db;
use crate::store::checkpoint::{self, Checkpoint, Outcome};
use crate::store::own_connection::{OwnConnection, SharedConnection};
use crate::{Error, Result};

struct Pending {
    checkpoint: Checkpoint,
    reply: oneshot::Sender<Result<Vec<Event>>>,
}

/// One writer task's queue and connection.
struct Shard {
    tx: mpsc::Sender<Pending>,
    own: SharedConnection,
    /// Checkpoints sent to this shard's task and not yet answered. While any is, a
    /// commit in the caller's task could overtake it: those go through the queue.
    queued: Arc<AtomicUsize>,
}

/// Cheap-to-clone handle to the writer tasks.
///
/// Several writers commit concurrently on Postgres (the database then flushes many
/// commits with one WAL write); a run always goes to the same writer, which keeps
/// its checkpoints in order. SQLite has one writer: it serialises writes anyway.
#[derive(Clone)]
pub struct CheckpointWriter {
    shards: Arc<[Arc<Shard>]>,
    db: Db,
    bus: EventBus,
    stats: Arc<Stats>,
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
        let shards: Vec<_> = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(4096);
                let shard = Arc::new(Shard {
                    tx,
                    own: SharedConnection::default(),
                    queued: Arc::default(),
                });
                tokio::spawn(run(
                    db.clone(),
                    bus.clone(),
                    stats.clone(),
                    rx,
                    shard.queued.clone(),
                    shard.own.clone(),
                    batch_max.max(1),
                ));
                shard
            })
            .collect();
        Self {
            shards: shards.into(),
            db,
            bus,
            stats,
        }
    }

    /// The connection SQLite's writer commits on, for other writes to share (see
    /// [`SharedConnection`]).
    pub(crate) fn sqlite_connection(&self) -> &SharedConnection {
        &self.shards[0].own
    }

    fn shard(&self, run_id: crate::ids::RunId) -> &Shard {
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
        shard.queued.fetch_add(1, Ordering::SeqCst);
        if let Err(mpsc::error::SendError(p)) = shard.tx.send(Pending { checkpoint, reply }).await {
            shard.queued.fetch_sub(1, Ordering::SeqCst);
            let _ = p
                .reply
                .send(Err(Error::Invalid("checkpoint writer has stopped".into())));
        }
        rx
    }

    /// Submits and waits until the checkpoint is durable. When its writer is idle
    /// (nothing queued, its connection free) the checkpoint commits right here,
    /// exactly as a batch of one would.
    pub async fn commit(&self, checkpoint: Checkpoint) -> Result<Vec<Event>> {
        let run_id = checkpoint.fence.run_id;
        let shard = self.shard(run_id);
        if let Ok(mut own) = shard.own.try_lock() {
            // Under the connection's lock nothing can join the batch in flight; with
            // nothing queued either, no earlier checkpoint is overtaken.
            if shard.queued.load(Ordering::SeqCst) == 0 {
                if let Err(message) = checkpoint.validate() {
                    return Err(Error::Refused(message));
                }
                let mut guard = DiscardIfDropped(Some(&mut own));
                let started = std::time::Instant::now();
                // Boxed: every run's task awaits this, and the statement's future
                // would otherwise add its size to each run's for the run's life.
                let committed = Box::pin(commit_retrying(
                    &self.db,
                    guard.connection(),
                    &self.stats,
                    std::slice::from_ref(&checkpoint),
                ))
                .await
                .map(|mut o| o.pop().unwrap_or(Outcome::LeaseLost));
                guard.0 = None;
                tracing::trace!(
                    micros = started.elapsed().as_micros() as u64,
                    "checkpoint committed in place"
                );
                if let Err(e) = &committed {
                    tracing::warn!(error = %e, "checkpoint commit failed");
                }
                return settle(&self.bus, &self.stats, &checkpoint, committed);
            }
        }
        self.submit(checkpoint)
            .await
            .await
            .unwrap_or_else(|_| Err(Error::LeaseLost(run_id.to_string())))
    }
}

/// A connection used in a caller's task: should the caller go away mid-statement,
/// the connection is not used again (the pool finishes or closes it).
struct DiscardIfDropped<'a>(Option<&'a mut OwnConnection>);

impl DiscardIfDropped<'_> {
    fn connection(&mut self) -> &mut OwnConnection {
        self.0.as_deref_mut().expect("held until the commit ends")
    }
}

impl Drop for DiscardIfDropped<'_> {
    fn drop(&mut self) {
        if let Some(own) = self.0.take() {
            own.discard();
        }
    }
}

async fn run(
    db: Db,
    bus: EventBus,
    stats: Arc<Stats>,
    mut rx: mpsc::Receiver<Pending>,
    queued: Arc<AtomicUsize>,
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
                    deliver(&bus, &stats, &queued, pending, Ok(outcome));
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
                    deliver(&bus, &stats, &queued, pending, alone);
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
                    deliver(&bus, &stats, &queued, pending, Err(e));
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

/// Answers one checkpoint of a batch (see [`settle`]) and counts it off its shard.
fn deliver(
    bus: &EventBus,
    stats: &Stats,
    queued: &AtomicUsize,
    pending: Pending,
    result: Result<Outcome>,
) {
    let answer = settle(bus, stats, &pending.checkpoint, result);
    queued.fetch_sub(1, Ordering::SeqCst);
    let _ = pending.reply.send(answer);
}

/// What a checkpoint's commit comes to: committed events go to the bus; a refusal
/// of its data is `Refused` (writing it again cannot help); anything else is
/// `Unavailable`.
fn settle(
    bus: &EventBus,
    stats: &Stats,
    checkpoint: &Checkpoint,
    result: Result<Outcome>,
) -> Result<Vec<Event>> {
    if matches!(&result, Err(e) if matches!(e, Error::Refused(_)) || is_content_error(e)) {
        Stats::add(&stats.checkpoints_refused);
    }
    match result {
        Ok(Outcome::Committed(events)) => {
            bus.publish_events(&events);
            Ok(events)
        }
        Ok(Outcome::LeaseLost) => Err(Error::LeaseLost(checkpoint.fence.run_id.to_string())),
        Err(e @ (Error::Refused(_) | Error::Unavailable(_))) => Err(e),
        Err(e) if is_content_error(&e) => Err(Error::Refused(e.to_string())),
        Err(e) => Err(Error::Unavailable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ApprovalId;
    use crate::status::StepStatus;
    use crate::store::checkpoint::{NewApproval, StepRecord};
    use crate::store::testing::step_result;
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
            &Default::default(),
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

    /// One claimed run and a writer of one shard for it.
    async fn one_run(
        backend: store::testing::Backend,
    ) -> Option<(store::testing::TestDb, leases::Fence, CheckpointWriter)> {
        let t = store::testing::TestDb::create(backend).await?;
        let now = chrono::Utc::now();
        runs::insert(&t.db, store::testing::new_run(), now)
            .await
            .unwrap();
        let ttl = std::time::Duration::from_secs(30);
        let claim = leases::claim(
            &t.db,
            &Default::default(),
            "w",
            1,
            ttl,
            now,
            leases::Pick::Runnable,
        )
        .await
        .unwrap()
        .pop()
        .unwrap();
        let writer = CheckpointWriter::spawn(
            t.db.clone(),
            EventBus::new(),
            Arc::new(Stats::default()),
            128,
            1,
        );
        Some((t, claim.fence, writer))
    }

    /// A checkpoint committed in the task that waits for it never overtakes one of
    /// its run queued before it: with the earlier one still in the writer's queue
    /// (on this one thread the writer's task has not run yet), the later one queues
    /// too, and the events are numbered in the order they were submitted.
    async fn a_commit_never_overtakes_a_queued_checkpoint(backend: store::testing::Backend) {
        let Some((_t, fence, writer)) = one_run(backend).await else {
            return;
        };
        let first = writer.submit(step_result(&fence, "first")).await;
        let second = writer.commit(step_result(&fence, "second")).await.unwrap();
        let first = first.await.unwrap().unwrap();
        assert!(first[0].seq < second[0].seq, "{first:?} {second:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_commit_never_overtakes_a_queued_checkpoint_sqlite() {
        a_commit_never_overtakes_a_queued_checkpoint(store::testing::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_commit_never_overtakes_a_queued_checkpoint_postgres() {
        a_commit_never_overtakes_a_queued_checkpoint(store::testing::Backend::Postgres).await;
    }

    /// A commit whose waiting task goes away while its statement is in flight (the
    /// commit runs in that task when the writer is idle) leaves the writer working
    /// and the run's log whole: the abandoned checkpoint commits entirely or not at
    /// all, and the log stays gap-free. Its statement may still reach the database
    /// after the next checkpoint's (that one goes on a new connection), so it may land
    /// after it: the worker abandons a commit only when the run's execution ends, and
    /// the checkpoint it writes then gives the lease up, which fences a late one out.
    #[tokio::test(flavor = "current_thread")]
    async fn a_commit_abandoned_mid_statement_leaves_the_writer_working() {
        let Some((t, fence, writer)) = one_run(store::testing::Backend::Postgres).await else {
            return;
        };
        writer.commit(step_result(&fence, "a")).await.unwrap();
        // Another transaction holds the run's row: the next commit's statement reaches
        // Postgres and waits there, so its first poll is pending however loaded the
        // machine is (without it, a thread preempted between the send and the read
        // found the answer already there).
        let held = store::testing::RunRowHeld::take(&t.db, fence.run_id).await;
        let mut abandoned = Box::pin(writer.commit(step_result(&fence, "b")));
        assert!(futures::poll!(abandoned.as_mut()).is_pending());
        drop(abandoned);
        held.release().await;
        let next = writer.commit(step_result(&fence, "c")).await.unwrap();
        let stored = store::events::list_after(&t.db, fence.run_id, 0, 100)
            .await
            .unwrap();
        let seqs: Vec<i64> = stored.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=stored.len() as i64).collect::<Vec<_>>(),
            "gap-free"
        );
        let of = |key: &str| -> Vec<i64> {
            stored
                .iter()
                .filter(|e| e.payload["step_key"] == key)
                .map(|e| e.seq)
                .collect()
        };
        let c = of("c");
        assert_eq!(c, next.iter().map(|e| e.seq).collect::<Vec<_>>());
        let b = of("b");
        assert!(
            b.is_empty() || (b.len() == 2 && b[1] == b[0] + 1),
            "the abandoned checkpoint's events are whole or absent: {b:?}"
        );
        let mut keys: Vec<String> = store::steps::list(&t.db, fence.run_id)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.key)
            .collect();
        assert_eq!(keys[0], "a");
        let mut rest = keys.split_off(1);
        rest.sort();
        assert!(
            (rest == ["c"] && b.is_empty()) || (rest == ["b", "c"] && !b.is_empty()),
            "the abandoned step is whole or absent, with its events: {rest:?} {b:?}"
        );
    }

    /// Every step of every run awaits a commit, so the commit's future is part of
    /// every run's task for the run's life: the statement's own future (the
    /// database driver's) is boxed, and only while it runs. Unboxed, 10,000 runs
    /// waiting on a model call peaked at 1,289 MiB instead of 980 (BENCHMARKS.md).
    #[tokio::test(flavor = "current_thread")]
    async fn the_commit_future_stays_small() {
        let Some((_t, fence, writer)) = one_run(store::testing::Backend::Sqlite).await else {
            return;
        };
        let commit = writer.commit(step_result(&fence, "a"));
        // 1,400 bytes in a debug build; 5,304 with the statement's future inline.
        let size = std::mem::size_of_val(&commit);
        assert!(size <= 2048, "{size} bytes");
        commit.await.unwrap();
    }
}

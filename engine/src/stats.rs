//! Counters of events that should be rare in a healthy deployment: lost races with
//! the database, refused data, heartbeats that failed, leases lost. Tests assert on
//! them; `/metrics` exports them (`metrics.rs`).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub checkpoint_retries: AtomicU64,
    pub checkpoint_batches_isolated: AtomicU64,
    pub checkpoints_refused: AtomicU64,
    pub heartbeat_failures: AtomicU64,
    pub leases_lost: AtomicU64,
    /// Statements sent to the database by this process.
    pub statements: std::sync::Arc<AtomicU64>,
    /// Notifications sent to other processes (each also a statement).
    pub notifications: std::sync::Arc<AtomicU64>,
}

impl Stats {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> EngineStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EngineStats {
            checkpoint_retries: get(&self.checkpoint_retries),
            checkpoint_batches_isolated: get(&self.checkpoint_batches_isolated),
            checkpoints_refused: get(&self.checkpoints_refused),
            heartbeat_failures: get(&self.heartbeat_failures),
            leases_lost: get(&self.leases_lost),
            statements: get(&self.statements),
            notifications: get(&self.notifications),
        }
    }
}

/// This process's counters since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Checkpoint batches that lost a race (deadlock, serialization failure, busy
    /// database) and were committed again.
    pub checkpoint_retries: u64,
    /// Batches split because the database refused one checkpoint's data.
    pub checkpoint_batches_isolated: u64,
    /// Checkpoints refused for their data (each fails only its own step or run).
    pub checkpoints_refused: u64,
    /// Heartbeats that failed (the next one tries again).
    pub heartbeat_failures: u64,
    /// Executions abandoned because their lease was gone (taken over, cancelled).
    pub leases_lost: u64,
    /// Statements sent to the database by this process.
    pub statements: u64,
    /// Notifications (`NOTIFY`: event hints, wake-ups, live events, control
    /// signals) sent to other processes; each is also one of `statements`.
    pub notifications: u64,
}

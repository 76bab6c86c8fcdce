//! Engine configuration: loaded once by the binary and passed down.

use std::time::Duration;

use crate::retry::RetryPolicy;

/// Settings of the engine and its workers. Defaults follow §4.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How long a claim is valid without a heartbeat.
    pub lease_ttl: Duration,
    /// How often a worker renews its leases (well under `lease_ttl`).
    pub heartbeat_interval: Duration,
    /// Fallback polling for runnable runs when no wake-up notification arrives.
    pub poll_interval: Duration,
    /// Last-resort re-read of the database by an idle event subscription; normally
    /// the bus delivers (and announces when it may have missed something).
    pub subscription_fallback_poll: Duration,
    /// Runs one worker executes at once.
    pub max_concurrent_runs: usize,
    /// Retry or sleep waits longer than this release the run instead of holding a worker.
    pub long_wait_threshold: Duration,
    /// A step still running after this long gets its STEP_STARTED event written
    /// eagerly; faster steps record it in the same commit as their result.
    pub started_event_delay: Duration,
    /// A step's result waits this long for the run's next commit (the next step's
    /// start flushes it at once; the run's end commits it with the final state)
    /// before it is committed alone.
    pub step_result_hold: Duration,
    /// How long graceful shutdown waits for in-flight steps before releasing them.
    pub shutdown_grace: Duration,
    /// Default retry policy of steps.
    pub retry: RetryPolicy,
    /// Default run deadline.
    pub default_run_timeout: Duration,
    /// Longest run deadline a run may ask for.
    pub max_run_timeout: Duration,
    /// Default time an approval stays pending before it expires.
    pub approval_ttl: Duration,
    /// Default time a question stays pending before it expires.
    pub question_ttl: Duration,
    /// Finished runs older than this are pruned by the retention job.
    pub retention: Duration,
    /// How often the retention job runs.
    pub retention_interval: Duration,
    /// Most checkpoints committed together in one batch.
    pub batch_max: usize,
    /// Checkpoint writers committing concurrently (Postgres; SQLite uses one).
    pub writer_shards: usize,
    /// Most steps (step keys, sleeps and human waits included) one run may hold.
    pub max_steps_per_run: usize,
    /// Largest run input accepted, in bytes of JSON.
    pub max_input_bytes: usize,
    /// New schedules may have 6 fields, seconds first (`AIOPS_SCHEDULE_ALLOW_SECONDS`:
    /// tests and demos); otherwise exactly 5.
    pub schedule_seconds: bool,
    /// A schedule's fire time found due this long after it passed still fires; older
    /// ones passed while no replica ticked and follow the catch-up policy.
    pub schedule_grace: Duration,
    /// A claimed fire whose run was not recorded as started after this long (its tick
    /// died) is started by another tick, with the same idempotency key.
    pub schedule_start_retry: Duration,
    /// How long one read of the cluster-wide values (runs per state, queue depth,
    /// approvals pending) serves `/metrics` before the database is read again.
    pub cluster_stats_ttl: Duration,
    /// A run started in a process whose worker has a free slot is claimed by that
    /// worker in the commit that creates it (see `engine::eager`).
    pub eager_start: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            subscription_fallback_poll: Duration::from_secs(15),
            max_concurrent_runs: 64,
            long_wait_threshold: Duration::from_secs(2),
            started_event_delay: Duration::from_millis(100),
            step_result_hold: Duration::from_millis(20),
            shutdown_grace: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            default_run_timeout: Duration::from_secs(300),
            max_run_timeout: Duration::from_secs(1800),
            approval_ttl: Duration::from_secs(24 * 3600),
            question_ttl: Duration::from_secs(24 * 3600),
            retention: Duration::from_secs(30 * 24 * 3600),
            retention_interval: Duration::from_secs(3600),
            // One NOTIFY payload per batch must stay under Postgres's 8000-byte limit.
            batch_max: 128,
            writer_shards: 4,
            max_steps_per_run: 10_000,
            max_input_bytes: 512 * 1024,
            schedule_seconds: false,
            schedule_grace: Duration::from_secs(60),
            schedule_start_retry: Duration::from_secs(10),
            cluster_stats_ttl: Duration::from_secs(5),
            eager_start: true,
        }
    }
}

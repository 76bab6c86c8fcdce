//! The worker: claims runnable runs with a lease, executes their workflows over a
//! step context, renews leases by heartbeat, and releases everything on shutdown.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::FutureExt;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Result;
use crate::bus::{BusMessage, ControlSignal};
use crate::context::{Halt, HumanWaits, Park, RunShared, StepContext, panic_message};
use crate::engine::Engine;
use crate::event::{EventKind, NewEvent};
use crate::ids::RunId;
use crate::status::{ApprovalStatus, QuestionStatus, RunStatus};
use crate::store;
use crate::store::approvals::Approval;
use crate::store::checkpoint::{Checkpoint, RunChange};
use crate::store::leases::{self, Claim, Fence};
use crate::store::questions::Question;

/// Executes runs. Cheap to clone; `run` drives it until the token is cancelled.
#[derive(Clone)]
pub struct Worker {
    engine: Engine,
    id: String,
    active: Arc<Mutex<HashMap<RunId, Arc<RunShared>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Worker {
    pub fn new(engine: Engine) -> Self {
        let id = format!(
            "{}-{}-{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        );
        Self {
            engine,
            id,
            active: Arc::default(),
        }
    }

    /// The lease owner name this worker writes into `runs.lease_owner`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Claims and executes runs until `shutdown` is cancelled, then finishes or
    /// releases what it holds. Database errors are logged and retried with backoff;
    /// they never end the worker.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let config = self.engine.config().clone();
        let slots = Arc::new(Semaphore::new(config.max_concurrent_runs.max(1)));
        let heartbeat = tokio::spawn(self.clone().heartbeat_loop(shutdown.clone()));
        let control = tokio::spawn(self.clone().control_loop(shutdown.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        let mut backoff = Duration::from_millis(100);
        tracing::info!(worker = %self.id, "worker started");
        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.cancelled() => break,
            };
            let free = slots.available_permits() + 1;
            match leases::claim(
                self.engine.db(),
                &self.id,
                free,
                config.lease_ttl,
                Utc::now(),
            )
            .await
            {
                Ok(claims) => {
                    backoff = Duration::from_millis(100);
                    let full = claims.len() == free;
                    let mut permits = vec![permit];
                    for claim in claims {
                        let permit = match permits.pop() {
                            Some(p) => p,
                            None => match slots.clone().try_acquire_owned() {
                                Ok(p) => p,
                                // Cannot happen: we claimed at most `free`; give it back.
                                Err(_) => {
                                    let _ =
                                        leases::release(self.engine.db(), &claim.fence, Utc::now())
                                            .await;
                                    continue;
                                }
                            },
                        };
                        tasks.spawn(self.clone().execute(claim, permit));
                    }
                    drop(permits);
                    if !full {
                        self.engine
                            .wait_for_work(config.poll_interval, &shutdown)
                            .await;
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::warn!(worker = %self.id, error = %e, retry_in_ms = backoff.as_millis() as u64, "claim failed; backing off");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Graceful shutdown: stop at the next step boundary, then give leases back.
        for shared in lock(&self.active).values() {
            shared
                .shutdown
                .store(true, std::sync::atomic::Ordering::SeqCst);
            shared.wakeup.notify_one();
        }
        let drained = tokio::time::timeout(config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            for shared in lock(&self.active).values() {
                shared.halt(Halt::Database("worker shutting down".into()));
            }
            while tasks.join_next().await.is_some() {}
        }
        heartbeat.abort();
        control.abort();
        tracing::info!(worker = %self.id, "worker stopped");
        Ok(())
    }

    async fn heartbeat_loop(self, shutdown: CancellationToken) {
        let config = self.engine.config().clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(config.heartbeat_interval) => {}
                _ = shutdown.cancelled() => {}
            }
            let held: Vec<(RunId, Arc<RunShared>)> = lock(&self.active)
                .iter()
                .map(|(id, s)| (*id, s.clone()))
                .collect();
            if held.is_empty() {
                if shutdown.is_cancelled() {
                    return;
                }
                continue;
            }
            let ids: Vec<RunId> = held.iter().map(|(id, _)| *id).collect();
            match leases::heartbeat(
                self.engine.db(),
                &self.id,
                &ids,
                config.lease_ttl,
                Utc::now(),
            )
            .await
            {
                Ok(renewed) => {
                    for (id, shared) in &held {
                        match renewed.iter().find(|r| r.run_id == *id) {
                            Some(r) if r.attempt == shared.fence.attempt => {
                                if r.pause_requested {
                                    shared
                                        .pause
                                        .store(true, std::sync::atomic::Ordering::SeqCst);
                                }
                            }
                            _ => shared.halt(Halt::LeaseLost),
                        }
                    }
                }
                // Keep executing: fenced writes stay safe, and the next beat may succeed.
                Err(e) => tracing::warn!(worker = %self.id, error = %e, "heartbeat failed"),
            }
        }
    }

    async fn control_loop(self, shutdown: CancellationToken) {
        let mut rx = self.engine.bus().receiver();
        loop {
            let msg = tokio::select! {
                m = rx.recv() => m,
                _ = shutdown.cancelled() => return,
            };
            match msg {
                Ok(BusMessage::Control { run_id, signal }) => {
                    let shared = lock(&self.active).get(&run_id).cloned();
                    if let Some(shared) = shared {
                        match signal {
                            ControlSignal::Cancel => shared.halt(Halt::Cancelled),
                            ControlSignal::Pause => {
                                shared
                                    .pause
                                    .store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn execute(self, claim: Claim, permit: OwnedSemaphorePermit) {
        let run_id = claim.fence.run_id;
        let span = tracing::info_span!("run", run.id = %run_id, attempt = claim.fence.attempt);
        async move {
            self.engine.bus().publish_events(&claim.events);
            if let Err(e) = self.execute_claim(claim.clone()).await {
                tracing::warn!(error = %e, "run execution ended with a database error; releasing it");
                self.release_with_retry(&claim.fence).await;
            }
            lock(&self.active).remove(&run_id);
            drop(permit);
        }
        .instrument(span)
        .await
    }

    async fn release_with_retry(&self, fence: &Fence) {
        let mut delay = Duration::from_millis(200);
        for _ in 0..10 {
            match leases::release(self.engine.db(), fence, Utc::now()).await {
                Ok(_) => return,
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        // The lease expires by itself; another worker reclaims the run then.
    }

    async fn execute_claim(&self, claim: Claim) -> Result<()> {
        let db = self.engine.db();
        let fence = claim.fence.clone();
        let Some(workflow) = self.engine.workflows().get(&claim.workflow) else {
            let message = format!("unknown workflow \"{}\"", claim.workflow);
            self.finish(&fence, RunStatus::Failed, None, Some(message), false)
                .await;
            return Ok(());
        };
        // A run that never started has nothing to replay. (A retried run is claimed
        // from QUEUED too, but keeps its completed steps: it is not fresh.)
        let (steps, approvals, questions) = if claim.fresh {
            (Vec::new(), Vec::new(), Vec::new())
        } else {
            (
                store::steps::list(db, fence.run_id).await?,
                store::approvals::list_for_run(db, fence.run_id).await?,
                store::questions::list_for_run(db, fence.run_id).await?,
            )
        };
        let shared = Arc::new(RunShared::new(
            fence.clone(),
            claim.input.clone(),
            self.engine.writer().clone(),
            self.engine.config().clone(),
            claim.deadline_at,
            Arc::new(self.clone()),
            steps,
            approvals,
            questions,
        ));
        shared
            .pause
            .store(claim.pause_requested, std::sync::atomic::Ordering::SeqCst);
        if let Some(previous) = lock(&self.active).insert(fence.run_id, shared.clone()) {
            // Our own earlier execution lost its lease and we reclaimed the run.
            previous.halt(Halt::LeaseLost);
        }
        let ctx = StepContext::root(shared.clone());
        // Boxed so that dropping it below really drops the workflow and its in-flight step.
        let mut orchestration = Box::pin(AssertUnwindSafe(workflow.run(ctx)).catch_unwind());
        let deadline = tokio::time::Instant::now()
            + (claim.deadline_at - Utc::now())
                .to_std()
                .unwrap_or_default();
        enum Outcome {
            Finished(
                std::thread::Result<
                    std::result::Result<serde_json::Value, crate::workflow::WorkflowError>,
                >,
            ),
            Park,
            Halted(Halt),
            TimedOut,
        }
        let outcome = loop {
            tokio::select! {
                result = &mut orchestration => break Outcome::Finished(result),
                _ = shared.wakeup.notified() => {
                    if let Some(h) = shared.halt_reason() {
                        break Outcome::Halted(h);
                    }
                    if shared.releasable() {
                        break Outcome::Park;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break Outcome::TimedOut,
            }
        };
        // Dropping the orchestration aborts whatever step was still in flight.
        drop(orchestration);
        let had_human_waits = shared.has_human_waits() || !lock(&shared.park).approvals.is_empty();
        match outcome {
            Outcome::Finished(Ok(Ok(output))) => {
                self.finish(
                    &fence,
                    RunStatus::Succeeded,
                    Some(output),
                    None,
                    had_human_waits,
                )
                .await
            }
            Outcome::Finished(Ok(Err(e))) => {
                self.finish(
                    &fence,
                    RunStatus::Failed,
                    None,
                    Some(e.to_string()),
                    had_human_waits,
                )
                .await
            }
            Outcome::Finished(Err(panic)) => {
                let message = format!("workflow panicked: {}", panic_message(&panic));
                self.finish(
                    &fence,
                    RunStatus::Failed,
                    None,
                    Some(message),
                    had_human_waits,
                )
                .await
            }
            Outcome::TimedOut => {
                let message = format!(
                    "run exceeded its deadline ({})",
                    claim.deadline_at.to_rfc3339()
                );
                self.finish(
                    &fence,
                    RunStatus::TimedOut,
                    None,
                    Some(message),
                    had_human_waits,
                )
                .await
            }
            Outcome::Park => self.release_parked(&shared).await?,
            Outcome::Halted(Halt::LeaseLost) => tracing::warn!("lease lost; execution abandoned"),
            Outcome::Halted(Halt::Cancelled) => {
                tracing::info!("run cancelled; in-flight step aborted")
            }
            Outcome::Halted(Halt::Database(message)) => {
                return Err(crate::Error::Unavailable(message));
            }
        }
        Ok(())
    }

    /// Writes a terminal state. A lost lease here means someone else (cancel, a
    /// takeover) already decided the run's fate.
    async fn finish(
        &self,
        fence: &Fence,
        status: RunStatus,
        output: Option<serde_json::Value>,
        error: Option<String>,
        close_human_waits: bool,
    ) {
        let kind = match status {
            RunStatus::Succeeded => EventKind::RunSucceeded,
            RunStatus::TimedOut => EventKind::RunTimedOut,
            _ => EventKind::RunFailed,
        };
        let mut cp = Checkpoint::new(fence.clone());
        cp.events.push(NewEvent::new(
            kind,
            json!({ "status": status, "error": error }),
        ));
        cp.run = Some(RunChange {
            status,
            output,
            error,
            wake_at: None,
            release: true,
            park_remaining_ms: None,
            finished: true,
        });
        match self.engine.writer().commit(cp).await {
            Ok(_) => {
                if close_human_waits {
                    let now = Utc::now();
                    let db = self.engine.db();
                    let reason = format!("run ended {status}");
                    if let Err(e) =
                        store::approvals::expire_pending_of_run(db, fence.run_id, &reason, now)
                            .await
                    {
                        tracing::warn!(error = %e, "could not close pending approvals");
                    }
                    if let Err(e) =
                        store::questions::expire_pending_of_run(db, fence.run_id, now).await
                    {
                        tracing::warn!(error = %e, "could not close pending questions");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, %status, "terminal state not written"),
        }
    }

    /// Every branch is parked or done and nothing is in flight: write the state the
    /// run waits in, create its approvals/questions, and give the lease back.
    async fn release_parked(&self, shared: &RunShared) -> Result<()> {
        let mut state = std::mem::take(&mut *lock(&shared.park));
        let now = Utc::now();
        let remaining = (shared.deadline_at - now).num_milliseconds().max(0);
        let earliest =
            |f: fn(&Park) -> Option<chrono::DateTime<Utc>>| state.parks.iter().filter_map(f).min();
        let approval_wake = earliest(|p| match p {
            Park::Approval { wake_at } => Some(*wake_at),
            _ => None,
        });
        let input_wake = earliest(|p| match p {
            Park::Input { wake_at } => Some(*wake_at),
            _ => None,
        });
        let retry_wake = earliest(|p| match p {
            Park::Retry { wake_at } => Some(*wake_at),
            _ => None,
        });
        let sleep_wake = earliest(|p| match p {
            Park::Sleep { wake_at } => Some(*wake_at),
            _ => None,
        });
        let timed_wake = [retry_wake, sleep_wake].into_iter().flatten().min();
        let has = |want: &Park| {
            state
                .parks
                .iter()
                .any(|p| std::mem::discriminant(p) == std::mem::discriminant(want))
        };
        let mut events = std::mem::take(&mut state.events);
        let (status, wake_at, park_remaining_ms) = if has(&Park::Pause) {
            events.push(NewEvent::new(
                EventKind::RunPaused,
                json!({ "remaining_ms": remaining }),
            ));
            (RunStatus::Paused, None, Some(remaining))
        } else if let Some(wake) = approval_wake {
            (
                RunStatus::WaitingApproval,
                [Some(wake), timed_wake].into_iter().flatten().min(),
                Some(remaining),
            )
        } else if let Some(wake) = input_wake {
            (
                RunStatus::WaitingInput,
                [Some(wake), timed_wake].into_iter().flatten().min(),
                Some(remaining),
            )
        } else if has(&Park::Shutdown) {
            (RunStatus::Running, None, None)
        } else if let Some(wake) = retry_wake {
            let wake_at = [Some(wake), sleep_wake].into_iter().flatten().min();
            events.push(NewEvent::new(
                EventKind::RunRetryWait,
                json!({ "wake_at": wake_at }),
            ));
            (
                RunStatus::RetryWait,
                [Some(wake), sleep_wake].into_iter().flatten().min(),
                None,
            )
        } else {
            (RunStatus::Running, sleep_wake, None)
        };
        let mut cp = Checkpoint::new(shared.fence.clone());
        cp.events = events;
        cp.approvals = std::mem::take(&mut state.approvals);
        cp.questions = std::mem::take(&mut state.questions);
        cp.run = Some(RunChange {
            status,
            output: None,
            error: None,
            wake_at,
            release: true,
            park_remaining_ms,
            finished: false,
        });
        match self.engine.writer().commit(cp).await {
            Ok(_) => {}
            Err(crate::Error::LeaseLost(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        tracing::debug!(%status, ?wake_at, "run released");
        if matches!(status, RunStatus::WaitingApproval | RunStatus::WaitingInput) {
            self.engine
                .resume_if_decided(
                    shared.fence.run_id,
                    status,
                    &state.waiting_approvals,
                    &state.waiting_questions,
                )
                .await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl HumanWaits for Worker {
    async fn expire_approval(&self, fence: &Fence, approval: &Approval) -> Result<Approval> {
        self.engine
            .close_human_wait(fence, HumanWaitClose::Approval(approval.clone()))
            .await?;
        store::approvals::get(self.engine.db(), approval.id)
            .await?
            .ok_or_else(|| crate::Error::not_found("approval", approval.id))
    }

    async fn expire_question(&self, fence: &Fence, question: &Question) -> Result<Question> {
        self.engine
            .close_human_wait(fence, HumanWaitClose::Question(question.clone()))
            .await?;
        store::questions::get(self.engine.db(), question.id)
            .await?
            .ok_or_else(|| crate::Error::not_found("question", question.id))
    }
}

/// A human wait the lease holder closes because it expired.
pub(crate) enum HumanWaitClose {
    Approval(Approval),
    Question(Question),
}

impl HumanWaitClose {
    pub(crate) fn expired_event(&self) -> NewEvent {
        match self {
            HumanWaitClose::Approval(a) => NewEvent::new(
                EventKind::ApprovalDecided,
                json!({ "approval_id": a.id, "step_key": a.step_key, "status": ApprovalStatus::Expired, "decided_by": null, "comment": "expired" }),
            ),
            HumanWaitClose::Question(q) => NewEvent::new(
                EventKind::InputReceived,
                json!({ "question_id": q.id, "step_key": q.step_key, "status": QuestionStatus::Expired, "answer": null }),
            ),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

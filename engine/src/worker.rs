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
use crate::bus::ControlSignal;
use crate::context::{Halt, HumanWaits, Park, RunShared, StepContext, panic_message};
use crate::engine::Engine;
use crate::event::{EventKind, NewEvent};
use crate::ids::RunId;
use crate::status::RunStatus;
use crate::store;
use crate::store::approvals::Approval;
use crate::store::checkpoint::{
    Checkpoint, ExpiringWait, Expiry, HumanWaits as HumanWaitsPolicy, Outcome, RunChange,
};
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
        // Should this loop end any other way (dropped, aborted), its helpers end with
        // it: a heartbeat outliving its worker would keep leases of runs nobody runs.
        let _helpers = AbortOnDrop(vec![heartbeat.abort_handle(), control.abort_handle()]);
        let mut tasks = tokio::task::JoinSet::new();
        let mut backoff = Duration::from_millis(100);
        // When this worker last looked beyond the queue (expired leases, parked runs
        // come due), and whether it was woken or idle since: a worker kept busy by a
        // backlog looks there once per poll interval, not at every free slot.
        let mut looked_beyond = std::time::Instant::now();
        let mut idled = true;
        // Runs started in this process while a slot is free come straight here.
        let (handoff, mut handed) = tokio::sync::mpsc::unbounded_channel();
        if config.eager_start {
            self.engine.offers().add(crate::engine::eager::Offer {
                owner: self.id.clone(),
                slots: slots.clone(),
                handoff,
            });
        }
        tracing::info!(worker = %self.id, "worker started");
        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            // Runs handed over by eager starts go first, all of them: each holds a lease
            // that only its execution's heartbeat renews. (Taken one per turn of this
            // loop, behind a claim query each, they waited here past their lease when
            // hundreds of runs started per second.)
            while let Ok((claim, permit)) = handed.try_recv() {
                tasks.spawn(self.clone().execute(claim, permit));
            }
            let permit = tokio::select! {
                biased;
                Some((claim, permit)) = handed.recv() => {
                    tasks.spawn(self.clone().execute(claim, permit));
                    continue;
                }
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.cancelled() => break,
            };
            // Every free slot is held before claiming: a run started here meanwhile
            // (eager start) cannot take a slot a claimed run needs.
            let mut permits = vec![permit];
            while let Ok(p) = slots.clone().try_acquire_owned() {
                permits.push(p);
            }
            let free = permits.len();
            let pick = if idled || looked_beyond.elapsed() >= config.poll_interval {
                looked_beyond = std::time::Instant::now();
                leases::Pick::Runnable
            } else {
                leases::Pick::Queued
            };
            idled = false;
            let claiming = std::time::Instant::now();
            match leases::claim(
                self.engine.db(),
                self.engine.writer().sqlite_connection(),
                &self.id,
                free,
                config.lease_ttl,
                Utc::now(),
                pick,
            )
            .await
            {
                Ok(claims) => {
                    if !claims.is_empty() {
                        tracing::debug!(worker = %self.id, claimed = claims.len(), ?pick, elapsed_us = claiming.elapsed().as_micros() as u64, "claimed");
                    }
                    backoff = Duration::from_millis(100);
                    let full = claims.len() == free;
                    for claim in claims {
                        // The claim took at most `free` runs: one permit each.
                        let Some(permit) = permits.pop() else {
                            let _ =
                                leases::release(self.engine.db(), &claim.fence, Utc::now()).await;
                            continue;
                        };
                        tasks.spawn(self.clone().execute(claim, permit));
                    }
                    drop(permits);
                    if !full && pick == leases::Pick::Queued {
                        // The queue ran dry: look beyond it at once.
                        idled = true;
                    } else if !full {
                        // Nothing more to claim: wait to be woken. A run handed over
                        // meanwhile starts at once and the wait goes on, without a
                        // claim query: an eager start says nothing about the queue
                        // (two such queries per start ran beside each run's first
                        // step, on the same two vCPUs).
                        let wait = self.engine.wait_for_work(config.poll_interval, &shutdown);
                        tokio::pin!(wait);
                        loop {
                            tokio::select! {
                                biased;
                                Some((claim, permit)) = handed.recv() => {
                                    while tasks.try_join_next().is_some() {}
                                    tasks.spawn(self.clone().execute(claim, permit));
                                }
                                _ = &mut wait => {
                                    idled = true;
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    drop(permits);
                    tracing::warn!(worker = %self.id, error = %e, retry_in_ms = backoff.as_millis() as u64, "claim failed; backing off");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // No more runs handed over; those already handed over give their lease back.
        self.engine.offers().withdraw(&self.id);
        handed.close();
        while let Ok((claim, permit)) = handed.try_recv() {
            self.engine.bus().publish_events(&claim.events);
            self.release_with_retry(&claim.fence).await;
            drop(permit);
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
            let mut beat = leases::heartbeat(
                self.engine.lease_db(),
                &self.id,
                &ids,
                config.lease_ttl,
                Utc::now(),
            )
            .await;
            // A lost race (deadlock, busy database) is retried at once: a late
            // heartbeat risks every lease this worker holds.
            for _ in 0..3 {
                match &beat {
                    Err(e) if e.is_transient() => {
                        beat = leases::heartbeat(
                            self.engine.lease_db(),
                            &self.id,
                            &ids,
                            config.lease_ttl,
                            Utc::now(),
                        )
                        .await
                    }
                    _ => break,
                }
            }
            match beat {
                Ok(renewed) => {
                    let renewed: HashMap<RunId, leases::Renewed> =
                        renewed.into_iter().map(|r| (r.run_id, r)).collect();
                    for (id, shared) in &held {
                        match renewed.get(id) {
                            // The database's flag is the truth: a pause requested or
                            // withdrawn by another process arrives here at the latest.
                            Some(r) if r.attempt == shared.fence.attempt => shared
                                .pause
                                .store(r.pause_requested, std::sync::atomic::Ordering::SeqCst),
                            _ => shared.halt(Halt::LeaseLost),
                        }
                    }
                }
                // Keep executing: fenced writes stay safe, and the next beat may succeed.
                Err(e) => {
                    crate::stats::Stats::add(&self.engine.counters().heartbeat_failures);
                    tracing::warn!(worker = %self.id, error = %e, "heartbeat failed")
                }
            }
        }
    }

    async fn control_loop(self, shutdown: CancellationToken) {
        let mut rx = self.engine.bus().controls();
        loop {
            let msg = tokio::select! {
                m = rx.recv() => m,
                _ = shutdown.cancelled() => return,
            };
            match msg {
                Ok((run_id, signal)) => {
                    let shared = lock(&self.active).get(&run_id).cloned();
                    if let Some(shared) = shared {
                        match signal {
                            ControlSignal::Cancel => shared.halt(Halt::Cancelled),
                            ControlSignal::Pause => {
                                shared
                                    .pause
                                    .store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                            // An operator withdrew a pause not yet taken.
                            ControlSignal::Unpause => {
                                shared
                                    .pause
                                    .store(false, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn execute(self, claim: Claim, permit: OwnedSemaphorePermit) {
        let run_id = claim.fence.run_id;
        // Every log line of this execution (its steps' too) carries these fields.
        let span = tracing::info_span!(
            "run",
            run_id = %run_id,
            workflow = %claim.workflow,
            attempt = claim.fence.attempt
        );
        async move {
            // However this execution ends (even aborted), the run stops being held here.
            let _held = Held {
                active: self.active.clone(),
                fence: claim.fence.clone(),
            };
            self.engine.bus().publish_events(&claim.events);
            let fence = claim.fence.clone();
            if let Err(e) = self.execute_claim(claim).await {
                tracing::warn!(error = %e, "run execution ended with a database error; releasing it");
                self.release_with_retry(&fence).await;
            }
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

    async fn execute_claim(&self, mut claim: Claim) -> Result<()> {
        let db = self.engine.db();
        let fence = claim.fence.clone();
        let Some(workflow) = self.engine.workflows().get(&claim.workflow) else {
            let message = format!(
                "unknown workflow \"{}\": this process does not run it",
                claim.workflow
            );
            let ending = Ending {
                status: RunStatus::Failed,
                output: None,
                error: Some(crate::storable::scrub(&message)),
                had_human_waits: true,
                events: Vec::new(),
                held: None,
            };
            self.finish(&claim, ending).await;
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
        let info = crate::context::RunInfo {
            run_id: fence.run_id,
            workflow: claim.workflow.clone(),
            trigger: claim.trigger,
            trigger_id: claim.trigger_id.clone(),
            approval_mode: claim.approval_mode,
            team_id: claim.team_id,
            team_version_id: claim.team_version_id,
            attempt: fence.attempt,
            deadline_at: claim.deadline_at,
        };
        let shared = Arc::new(RunShared::new(
            fence.clone(),
            // The run's one copy of its input (it can be large: alerts, a task).
            std::mem::take(&mut claim.input),
            self.engine.writer().clone(),
            self.engine.config().clone(),
            info,
            Arc::new(self.clone()),
            self.engine.bus().clone(),
            steps,
            approvals,
            questions,
            self.engine.clone(),
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
        enum Stop {
            Finished(
                std::thread::Result<
                    std::result::Result<serde_json::Value, crate::workflow::WorkflowError>,
                >,
            ),
            Park,
            Halted(Halt),
            TimedOut,
        }
        // The deadline always wins: a run claimed at or past it times out without
        // running anything, and a run about to park past it times out instead.
        let past_deadline = || Utc::now() >= claim.deadline_at;
        let outcome = if past_deadline() {
            Stop::TimedOut
        } else {
            loop {
                tokio::select! {
                    biased;
                    _ = tokio::time::sleep_until(deadline) => break Stop::TimedOut,
                    result = &mut orchestration => break Stop::Finished(result),
                    _ = shared.wakeup.notified() => {
                        if let Some(h) = shared.halt_reason() {
                            break Stop::Halted(h);
                        }
                        if shared.releasable() {
                            break if past_deadline() { Stop::TimedOut } else { Stop::Park };
                        }
                    }
                }
            }
        };
        // Dropping the orchestration aborts whatever step was still in flight.
        drop(orchestration);
        // The worker writes the run's last checkpoint of this execution, carrying the
        // step results still held; a delayed flush waits for it, then finds nothing.
        let _order = shared.submitting.clone().lock_owned().await;
        let held = shared.take_held();
        let had_human_waits = shared.has_human_waits() || !lock(&shared.park).approvals.is_empty();
        // Emitted after the workflow's last durable operation: they end with it.
        let leftover = shared.take_leftover_events();
        let ending = |status, output, error| Ending {
            status,
            output,
            error,
            had_human_waits,
            events: leftover.clone(),
            held: held.clone(),
        };
        match outcome {
            Stop::Finished(Ok(Ok(output))) => {
                self.finish(&claim, ending(RunStatus::Succeeded, Some(output), None))
                    .await
            }
            Stop::Finished(Ok(Err(e))) => {
                let message = crate::storable::scrub(&e.to_string());
                self.finish(&claim, ending(RunStatus::Failed, None, Some(message)))
                    .await
            }
            Stop::Finished(Err(panic)) => {
                let message = crate::storable::scrub(&format!(
                    "workflow panicked: {}",
                    panic_message(&panic)
                ));
                self.finish(&claim, ending(RunStatus::Failed, None, Some(message)))
                    .await
            }
            Stop::TimedOut => {
                let message = format!(
                    "run exceeded its deadline ({})",
                    claim.deadline_at.to_rfc3339()
                );
                self.finish(&claim, ending(RunStatus::TimedOut, None, Some(message)))
                    .await
            }
            Stop::Park => self.release_parked(&claim, &shared, held).await?,
            Stop::Halted(Halt::LeaseLost) => {
                crate::stats::Stats::add(&self.engine.counters().leases_lost);
                tracing::warn!("lease lost; execution abandoned")
            }
            Stop::Halted(Halt::Cancelled) => {
                tracing::info!("run cancelled; in-flight step aborted")
            }
            Stop::Halted(Halt::Refused(message)) => {
                let message = crate::storable::scrub(&format!(
                    "the database refused to store a checkpoint of this run: {message}"
                ));
                let ending = Ending {
                    held: None,
                    ..ending(RunStatus::Failed, None, Some(message))
                };
                self.finish(&claim, ending).await
            }
            Stop::Halted(Halt::Database(message)) => {
                return Err(crate::Error::Unavailable(message));
            }
        }
        Ok(())
    }

    /// Writes a terminal state. A lost lease here means someone else (cancel, a
    /// takeover) already decided the run's fate. Pending approvals and questions are
    /// closed (and logged) in the same fenced transaction.
    async fn finish(&self, claim: &Claim, ending: Ending) {
        let fence = &claim.fence;
        let Ending {
            status,
            output,
            error,
            had_human_waits,
            events: leftover,
            held,
        } = ending;
        let checkpoint = |status: RunStatus,
                          output: Option<serde_json::Value>,
                          error: Option<String>,
                          held: Option<Checkpoint>| {
            let kind = match status {
                RunStatus::Succeeded => EventKind::RunSucceeded,
                RunStatus::TimedOut => EventKind::RunTimedOut,
                _ => EventKind::RunFailed,
            };
            let mut cp = Checkpoint::new(fence.clone());
            cp.events = leftover.clone();
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
                only_if_pause_requested: false,
            });
            // The last steps' results, held until now, commit with the end.
            if let Some(held) = held {
                cp.absorb_earlier(held);
            }
            cp
        };
        let waits = had_human_waits.then(|| HumanWaitsPolicy {
            close_pending: Some(format!("run ended {status}")),
            ..HumanWaitsPolicy::default()
        });
        let result = match self
            .commit(checkpoint(status, output, error, held), waits.as_ref())
            .await
        {
            // An output the database cannot store: the run fails, saying why.
            Err(crate::Error::Refused(message)) if status == RunStatus::Succeeded => {
                let error =
                    crate::storable::scrub(&format!("run output cannot be stored: {message}"));
                // Without the held results: the run fails either way, and the
                // refused value might be among them.
                self.commit(
                    checkpoint(RunStatus::Failed, None, Some(error), None),
                    waits.as_ref(),
                )
                .await
                .map(|events| (RunStatus::Failed, events))
            }
            other => other.map(|events| (status, events)),
        };
        match result {
            Ok((status, _)) => {
                let elapsed = (Utc::now() - claim.created_at).to_std().unwrap_or_default();
                self.engine
                    .metrics()
                    .observe_run(&claim.workflow, status, elapsed);
                tracing::debug!(%status, elapsed_ms = elapsed.as_millis() as u64, "run ended");
            }
            Err(e) => tracing::warn!(error = %e, %status, "terminal state not written"),
        }
    }

    /// Commits a lease holder's checkpoint: through the batching writer, or, when
    /// people are involved, in a transaction of its own that handles their waits
    /// under the run's row lock.
    async fn commit(
        &self,
        cp: Checkpoint,
        waits: Option<&HumanWaitsPolicy>,
    ) -> Result<Vec<crate::Event>> {
        let Some(waits) = waits else {
            return self.engine.writer().commit(cp).await;
        };
        if let Err(message) = cp.validate() {
            return Err(crate::Error::Refused(message));
        }
        let run_id = cp.fence.run_id;
        match store::checkpoint::commit_with_human_waits(self.engine.db(), cp, waits, Utc::now())
            .await?
        {
            Outcome::Committed(events) => {
                self.engine.bus().publish_events(&events);
                Ok(events)
            }
            Outcome::LeaseLost => Err(crate::Error::LeaseLost(run_id.to_string())),
        }
    }

    /// Every branch is parked or done and nothing is in flight: write the state the
    /// run waits in, create its approvals/questions, and give the lease back.
    async fn release_parked(
        &self,
        claim: &Claim,
        shared: &RunShared,
        held: Option<Checkpoint>,
    ) -> Result<()> {
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
        // Timed waits count against the deadline, which always wins.
        let retry_wake = earliest(|p| match p {
            Park::Retry { wake_at } => Some(*wake_at),
            _ => None,
        })
        .map(|w| w.min(shared.deadline_at));
        let sleep_wake = earliest(|p| match p {
            Park::Sleep { wake_at } => Some(*wake_at),
            _ => None,
        })
        .map(|w| w.min(shared.deadline_at));
        let timed_wake = [retry_wake, sleep_wake].into_iter().flatten().min();
        let has = |want: &Park| {
            state
                .parks
                .iter()
                .any(|p| std::mem::discriminant(p) == std::mem::discriminant(want))
        };
        let mut events = std::mem::take(&mut state.events);
        let pausing = has(&Park::Pause);
        let (status, wake_at, park_remaining_ms) = if pausing {
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
            (RunStatus::RetryWait, wake_at, None)
        } else {
            (RunStatus::Running, sleep_wake, None)
        };
        let mut cp = Checkpoint::new(shared.fence.clone());
        cp.events = events;
        cp.approvals = std::mem::take(&mut state.approvals);
        cp.questions = std::mem::take(&mut state.questions);
        match held {
            // A pause can still lose to its withdrawal (below): the held results
            // must not be lost with it.
            Some(held) if pausing => match self.engine.writer().commit(held).await {
                Ok(_) => {}
                Err(crate::Error::LeaseLost(_)) => return Ok(()),
                Err(e) => return Err(e),
            },
            Some(held) => cp.absorb_earlier(held),
            None => {}
        }
        cp.run = Some(RunChange {
            status,
            output: None,
            error: None,
            wake_at,
            release: true,
            park_remaining_ms,
            finished: false,
            only_if_pause_requested: pausing,
        });
        // Waiting for people: a decision that landed since the claim must not be
        // missed, so the check happens under the run's lock, with the park.
        let waits =
            matches!(status, RunStatus::WaitingApproval | RunStatus::WaitingInput).then(|| {
                HumanWaitsPolicy {
                    approvals: std::mem::take(&mut state.waiting_approvals),
                    questions: std::mem::take(&mut state.waiting_questions),
                    close_pending: None,
                }
            });
        match self.commit(cp, waits.as_ref()).await {
            Ok(_) => {}
            // The pause was withdrawn after this execution stopped for it: give the
            // run back as it is, to be claimed and continued at once.
            Err(crate::Error::LeaseLost(_)) if pausing => {
                if leases::release(self.engine.db(), &shared.fence, Utc::now()).await? {
                    self.engine.runnable();
                }
                return Ok(());
            }
            Err(crate::Error::LeaseLost(_)) => return Ok(()),
            // A value in the park the database cannot store (an approval's args):
            // the run fails, saying why, rather than parking again and again.
            Err(crate::Error::Refused(message)) => {
                let message = format!("the database refused to store this run's wait: {message}");
                self.finish(
                    claim,
                    Ending {
                        status: RunStatus::Failed,
                        output: None,
                        error: Some(crate::storable::scrub(&message)),
                        had_human_waits: true,
                        events: Vec::new(),
                        held: None,
                    },
                )
                .await;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        tracing::debug!(%status, ?wake_at, "run released");
        Ok(())
    }
}

/// Aborts tasks when dropped.
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Removes a run from the worker's held runs when its execution ends, unless the
/// worker has re-claimed the run meanwhile (a newer attempt is registered).
struct Held {
    active: Arc<Mutex<HashMap<RunId, Arc<RunShared>>>>,
    fence: Fence,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut active = lock(&self.active);
        if active
            .get(&self.fence.run_id)
            .is_some_and(|s| s.fence.attempt == self.fence.attempt)
        {
            active.remove(&self.fence.run_id);
        }
    }
}

/// How an execution ends.
struct Ending {
    status: RunStatus,
    output: Option<serde_json::Value>,
    error: Option<String>,
    /// The run has (or had) approvals or questions, which must be closed with it.
    had_human_waits: bool,
    /// Events the workflow emitted after its last durable operation.
    events: Vec<NewEvent>,
    /// Step results not committed yet: they commit with the end.
    held: Option<Checkpoint>,
}

#[async_trait::async_trait]
impl HumanWaits for Worker {
    async fn expire_approval(&self, fence: &Fence, approval: &Approval) -> Result<Approval> {
        let wait = ExpiringWait::Approval {
            id: approval.id,
            step_key: approval.step_key.clone(),
        };
        self.expire(fence, &wait).await?;
        store::approvals::get(self.engine.db(), approval.id)
            .await?
            .ok_or_else(|| crate::Error::not_found("approval", approval.id))
    }

    async fn expire_question(&self, fence: &Fence, question: &Question) -> Result<Question> {
        let wait = ExpiringWait::Question {
            id: question.id,
            step_key: question.step_key.clone(),
        };
        self.expire(fence, &wait).await?;
        store::questions::get(self.engine.db(), question.id)
            .await?
            .ok_or_else(|| crate::Error::not_found("question", question.id))
    }
}

impl Worker {
    /// Expires a human wait as the lease holder (fenced; a decision made meanwhile wins).
    async fn expire(&self, fence: &Fence, wait: &ExpiringWait) -> Result<()> {
        match store::checkpoint::expire_wait(self.engine.db(), fence, wait, Utc::now()).await? {
            Expiry::Expired(events) => self.engine.bus().publish_events(&events),
            Expiry::DecidedMeanwhile => {}
            Expiry::LeaseLost => return Err(crate::Error::LeaseLost(fence.run_id.to_string())),
        }
        Ok(())
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

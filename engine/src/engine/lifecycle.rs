//! Runs: start, read, follow, pause, resume, cancel, retry, and retention.

use std::time::Duration;

use chrono::{SubsecRound, Utc};
use serde_json::{Value as Json, json};
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::bus::{self, ControlSignal};
use crate::event::{Event, EventKind, NewEvent};
use crate::ids::{RunId, TeamId};
use crate::page::{KeyOf, Page, PageRequest};
use crate::status::{ApprovalMode, RunStatus, Trigger};
use crate::store::runs::{NewRun, Run, RunFilter, RunPatch};
use crate::store::steps::Step;
use crate::store::{self, is_postgres};
use crate::{Error, Result};
use futures::Stream;

/// Finished runs the retention job deletes per transaction.
const PRUNE_BATCH: u64 = 1000;

/// A request to start a run.
#[derive(Clone, Debug)]
pub struct StartRun {
    pub workflow: String,
    pub input: Json,
    pub trigger: Trigger,
    /// The schedule or notification that started the run, if any.
    pub trigger_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// What the run's approval requests do (default: wait for a person).
    pub approval_mode: ApprovalMode,
    pub team_id: Option<TeamId>,
    pub team_version_id: Option<uuid::Uuid>,
    /// Run deadline; defaults to the engine's (300 s), at most 1800 s.
    pub timeout: Option<Duration>,
}

impl StartRun {
    pub fn new(workflow: impl Into<String>, input: Json) -> Self {
        Self {
            workflow: workflow.into(),
            input,
            trigger: Trigger::Manual,
            trigger_id: None,
            idempotency_key: None,
            approval_mode: ApprovalMode::Wait,
            team_id: None,
            team_version_id: None,
            timeout: None,
        }
    }
}

impl Engine {
    /// Stores a new QUEUED run. Unknown workflows and invalid inputs are refused
    /// before anything is written; a repeated idempotency key returns the first run.
    pub async fn start_run(&self, req: StartRun) -> Result<Run> {
        let new = self.checked_run(req)?;
        let slot = if self.inner.config.eager_start {
            self.inner.offers.take()
        } else {
            None
        };
        // The database keeps microseconds: the run returned is the run stored.
        let now = Utc::now().trunc_subsecs(6);
        let eager = slot.as_ref().map(|slot| store::runs::EagerClaim {
            owner: &slot.owner,
            lease_ttl: self.inner.config.lease_ttl,
        });
        let sqlite = self.inner.writer.sqlite_connection();
        let started = store::runs::start(&self.inner.db, new, eager, now, sqlite).await?;
        let (run, queued, claim) = match started {
            store::runs::Started::New { run, queued, claim } => (run, queued, claim),
            store::runs::Started::Existing(run) => return Ok(run),
        };
        self.inner.bus.publish_events(&queued);
        match (claim, slot) {
            (Some(claim), Some(slot)) => self.hand_over(*claim, slot.permit, &slot.handoff).await,
            _ => self.runnable(),
        }
        Ok(run)
    }

    /// Gives a run claimed at its start to the worker whose slot it took; should that
    /// worker have stopped meanwhile, the lease goes back and any worker may claim it.
    async fn hand_over(
        &self,
        claim: store::leases::Claim,
        permit: tokio::sync::OwnedSemaphorePermit,
        handoff: &tokio::sync::mpsc::UnboundedSender<super::eager::Handoff>,
    ) {
        if let Err(tokio::sync::mpsc::error::SendError((claim, _))) = handoff.send((claim, permit))
        {
            if let Err(e) = store::leases::release(&self.inner.db, &claim.fence, Utc::now()).await {
                // The lease expires by itself; a worker takes the run over then.
                tracing::warn!(run_id = %claim.fence.run_id, error = %e, "eager claim not given back");
            }
            self.inner.bus.publish_events(&claim.events);
            self.runnable();
        }
    }

    /// The run `req` asks for, checked (workflow, input, timeout, idempotency key)
    /// and ready to insert.
    pub(super) fn checked_run(&self, req: StartRun) -> Result<NewRun> {
        let workflow = self.inner.workflows.get(&req.workflow).ok_or_else(|| {
            let known: Vec<&str> = self.inner.workflows.names().collect();
            Error::Invalid(format!(
                "unknown workflow \"{}\" (known: {})",
                req.workflow,
                known.join(", ")
            ))
        })?;
        let size = serde_json::to_vec(&req.input).map_or(usize::MAX, |v| v.len());
        if size > self.inner.config.max_input_bytes {
            return Err(Error::Invalid(format!(
                "input: {size} bytes of JSON, at most {} are accepted",
                self.inner.config.max_input_bytes
            )));
        }
        crate::storable::check_json(&req.input, "input").map_err(Error::Invalid)?;
        workflow
            .validate_input(&req.input)
            .map_err(Error::Invalid)?;
        let config = &self.inner.config;
        let timeout = req.timeout.unwrap_or(config.default_run_timeout);
        if timeout.is_zero() || timeout > config.max_run_timeout {
            return Err(Error::Invalid(format!(
                "timeout: must be between 1 ms and {} s, got {} ms",
                config.max_run_timeout.as_secs(),
                timeout.as_millis()
            )));
        }
        if let Some(key) = &req.idempotency_key
            && (key.is_empty() || key.len() > 200 || key.chars().any(char::is_control))
        {
            return Err(Error::Invalid(
                "idempotency_key: must be 1 to 200 characters, none of them control characters"
                    .into(),
            ));
        }
        Ok(NewRun {
            workflow: req.workflow,
            input: req.input,
            trigger: req.trigger,
            trigger_id: req.trigger_id,
            idempotency_key: req.idempotency_key,
            approval_mode: req.approval_mode,
            team_id: req.team_id,
            team_version_id: req.team_version_id,
            timeout_ms: timeout.as_millis() as i64,
        })
    }

    pub async fn run(&self, id: RunId) -> Result<Run> {
        store::runs::get(&self.inner.db, id)
            .await?
            .ok_or_else(|| Error::not_found("run", id))
    }

    /// A page of the runs matching `filter`, newest first (never counted).
    pub async fn list_runs(
        &self,
        filter: &RunFilter,
        page: &PageRequest<KeyOf<Run>>,
    ) -> Result<Page<Run>> {
        store::runs::list(&self.inner.db, filter, page).await
    }

    /// Every step of a run, in the order first recorded.
    pub async fn steps(&self, id: RunId) -> Result<Vec<Step>> {
        store::steps::list(&self.inner.db, id).await
    }

    /// A page of a run's steps, in the order first recorded.
    pub async fn list_steps(
        &self,
        id: RunId,
        page: &PageRequest<KeyOf<Step>>,
    ) -> Result<Page<Step>> {
        store::steps::page(&self.inner.db, id, page).await
    }

    pub async fn events(&self, id: RunId, after_seq: i64, limit: u64) -> Result<Vec<Event>> {
        store::events::list_after(&self.inner.db, id, after_seq, limit).await
    }

    /// A page of a run's events by seq; the total is the run's `last_seq`.
    pub async fn list_events(
        &self,
        id: RunId,
        page: &PageRequest<KeyOf<Event>>,
    ) -> Result<Page<Event>> {
        store::events::page(&self.inner.db, id, page).await
    }

    /// Replays stored events after `after_seq`, then follows live ones; see [`bus::subscribe`].
    pub fn subscribe(
        &self,
        run_id: RunId,
        after_seq: i64,
    ) -> impl Stream<Item = Result<Event>> + Send + 'static + use<> {
        bus::subscribe(
            self.inner.db.clone(),
            &self.inner.bus,
            run_id,
            after_seq,
            self.subscription_poll(),
        )
    }

    /// [`Engine::subscribe`] with the run's live-only events (`LLM_TOKEN`) interleaved
    /// once the stored history is caught up; see [`bus::subscribe_with_live`].
    pub fn subscribe_with_live(
        &self,
        run_id: RunId,
        after_seq: i64,
    ) -> impl Stream<Item = Result<bus::Followed>> + Send + 'static + use<> {
        bus::subscribe_with_live(
            self.inner.db.clone(),
            &self.inner.bus,
            run_id,
            after_seq,
            self.subscription_poll(),
        )
    }

    fn subscription_poll(&self) -> Duration {
        // SQLite has no cross-process notifications: another process's commits
        // are only seen by reading, so read as often as workers poll.
        if is_postgres(&self.inner.db) {
            self.inner.config.subscription_fallback_poll
        } else {
            self.inner.config.poll_interval
        }
    }

    /// Applies a guarded change, retrying if the run changed state underneath.
    pub(super) async fn change_run<F>(&self, id: RunId, mut plan: F) -> Result<Run>
    where
        F: FnMut(&Run) -> Result<Option<(RunPatch, Vec<NewEvent>, Option<ControlSignal>)>>,
    {
        for _ in 0..5 {
            let run = self.run(id).await?;
            let Some((patch, new_events, signal)) = plan(&run)? else {
                return Ok(run);
            };
            if let Some(to) = patch.status {
                run.status
                    .check_transition(to)
                    .map_err(|source| Error::IllegalTransition {
                        run_id: id.to_string(),
                        source,
                    })?;
            }
            let now = Utc::now();
            let mut new_events = new_events;
            let txn = store::begin_write(&self.inner.db).await?;
            // The run row first, as everywhere (decisions, the holder's commits).
            if store::runs::lock_row(&txn, id).await? != Some(run.status) {
                txn.rollback().await?;
                continue;
            }
            if let Some(status) = patch.status.filter(|s| s.is_terminal()) {
                // Waits of an ended run close with it, each logged before its final event.
                let reason = format!("run ended {status}");
                let closed: Vec<NewEvent> =
                    store::approvals::expire_pending_of_run(&txn, id, &reason, now)
                        .await?
                        .into_iter()
                        .map(|(a, key)| NewEvent::approval_closed(a, &key, &reason))
                        .chain(
                            store::questions::expire_pending_of_run(&txn, id, now)
                                .await?
                                .into_iter()
                                .map(|(q, key)| NewEvent::question_closed(q, &key, &reason)),
                        )
                        .collect();
                let at = new_events
                    .iter()
                    .position(NewEvent::is_final)
                    .unwrap_or(new_events.len());
                new_events.splice(at..at, closed);
            }
            let Some(written) =
                store::runs::apply_patch(&txn, id, run.status, &patch, &new_events, now).await?
            else {
                txn.rollback().await?;
                continue;
            };
            let runnable = matches!(patch.status, Some(RunStatus::Running | RunStatus::Queued));
            txn.commit().await?;
            self.inner.bus.publish_events(&written);
            if let Some(signal) = signal {
                self.inner.bus.announce_control(id, signal);
            }
            if runnable {
                self.runnable();
            }
            if let Some(status) = patch.status.filter(|s| s.is_terminal()) {
                let elapsed = (now - run.created_at).to_std().unwrap_or_default();
                self.inner
                    .metrics
                    .observe_run(&run.workflow, status, elapsed);
            }
            return self.run(id).await;
        }
        Err(Error::Conflict(format!(
            "run {id} kept changing; try again"
        )))
    }

    /// Pauses a run at its next step boundary (the in-flight step completes and is
    /// checkpointed). Idempotent.
    pub async fn pause_run(&self, id: RunId) -> Result<Run> {
        self.change_run(id, |run| {
            let now = Utc::now();
            let held = run.lease_owner.is_some() && run.lease_expires_at.is_some_and(|t| t > now);
            let paused = |remaining: Option<i64>| RunPatch {
                status: Some(RunStatus::Paused),
                pause_requested: Some(false),
                revoke_lease: true,
                deadline_at: Some(None),
                remaining_ms: Some(remaining),
                ..RunPatch::default()
            };
            let event = |remaining: Option<i64>| {
                vec![NewEvent::new(
                    EventKind::RunPaused,
                    json!({ "remaining_ms": remaining }),
                )]
            };
            Ok(match run.status {
                RunStatus::Paused => None,
                RunStatus::Running if held && run.pause_requested => None,
                // A worker holds it: ask it to stop at the next boundary.
                RunStatus::Running if held => Some((
                    RunPatch {
                        pause_requested: Some(true),
                        ..RunPatch::default()
                    },
                    Vec::new(),
                    Some(ControlSignal::Pause),
                )),
                RunStatus::Running | RunStatus::RetryWait => {
                    let remaining = run.deadline_at.map(|d| (d - now).num_milliseconds().max(0));
                    Some((paused(remaining), event(remaining), None))
                }
                RunStatus::Queued => Some((paused(None), event(None), None)),
                other => {
                    return Err(Error::IllegalTransition {
                        run_id: id.to_string(),
                        source: other.check_transition(RunStatus::Paused).unwrap_err(),
                    });
                }
            })
        })
        .await
    }

    /// Resumes a paused run (or withdraws a pause not yet taken). Idempotent.
    pub async fn resume_run(&self, id: RunId) -> Result<Run> {
        self.change_run(id, |run| {
            Ok(match run.status {
                RunStatus::Paused => {
                    let now = Utc::now();
                    let (status, deadline) = match (run.started_at, run.remaining_ms) {
                        (None, _) => (RunStatus::Queued, None),
                        (Some(_), Some(rem)) => (
                            RunStatus::Running,
                            Some(now + chrono::Duration::milliseconds(rem)),
                        ),
                        (Some(_), None) => (RunStatus::Running, None),
                    };
                    Some((
                        RunPatch {
                            status: Some(status),
                            deadline_at: Some(deadline),
                            remaining_ms: Some(None),
                            wake_at: Some(None),
                            ..RunPatch::default()
                        },
                        vec![NewEvent::new(
                            EventKind::RunResumed,
                            json!({ "from": RunStatus::Paused }),
                        )],
                        None,
                    ))
                }
                // Withdraw a pause the holder has not taken yet; the holder is told,
                // and its pause commit only lands while the pause is still requested.
                RunStatus::Running if run.pause_requested => Some((
                    RunPatch {
                        pause_requested: Some(false),
                        ..RunPatch::default()
                    },
                    Vec::new(),
                    Some(ControlSignal::Unpause),
                )),
                s if s.is_terminal() => {
                    return Err(Error::IllegalTransition {
                        run_id: id.to_string(),
                        source: s.check_transition(RunStatus::Running).unwrap_err(),
                    });
                }
                _ => None,
            })
        })
        .await
    }

    /// Cancels a run at once: its lease is revoked so the holder cannot write again,
    /// and the holder aborts its in-flight step. Idempotent on a cancelled run.
    pub async fn cancel_run(&self, id: RunId) -> Result<Run> {
        self.change_run(id, |run| {
            Ok(match run.status {
                RunStatus::Cancelled => None,
                s if s.is_terminal() => {
                    return Err(Error::IllegalTransition {
                        run_id: id.to_string(),
                        source: s.check_transition(RunStatus::Cancelled).unwrap_err(),
                    });
                }
                _ => Some((
                    RunPatch {
                        status: Some(RunStatus::Cancelled),
                        revoke_lease: true,
                        finished: true,
                        wake_at: Some(None),
                        ..RunPatch::default()
                    },
                    vec![NewEvent::new(
                        EventKind::RunCancelled,
                        json!({ "from": run.status }),
                    )],
                    Some(ControlSignal::Cancel),
                )),
            })
        })
        .await
    }

    /// Retries a FAILED or TIMED_OUT run from its failed step: the FAILED step records
    /// are deleted so those steps run again, completed steps keep their recorded
    /// results (replay returns them without running), and the run goes back to QUEUED
    /// with a fresh deadline, no output, error or finish time, and a revoked lease.
    /// One transaction appends `RUN_QUEUED` with `{retry: true, from, cleared_steps}`.
    /// Any other state is an illegal transition (retry is the only way out of FAILED
    /// and TIMED_OUT, which stay terminal for everything else).
    pub async fn retry_run(&self, id: RunId) -> Result<Run> {
        for _ in 0..5 {
            let run = self.run(id).await?;
            let illegal = |source| Error::IllegalTransition {
                run_id: id.to_string(),
                source,
            };
            if !matches!(run.status, RunStatus::Failed | RunStatus::TimedOut) {
                return Err(illegal(crate::status::IllegalTransition {
                    from: run.status,
                    to: RunStatus::Queued,
                }));
            }
            run.status
                .check_transition(RunStatus::Queued)
                .map_err(illegal)?;
            let now = Utc::now();
            let txn = store::begin_write(&self.inner.db).await?;
            if store::runs::lock_row(&txn, id).await? != Some(run.status) {
                txn.rollback().await?;
                continue;
            }
            let cleared = store::steps::delete_failed(&txn, id).await?;
            let patch = RunPatch {
                status: Some(RunStatus::Queued),
                pause_requested: Some(false),
                revoke_lease: true,
                deadline_at: Some(None),
                remaining_ms: Some(None),
                wake_at: Some(None),
                clear_output: true,
                clear_error: true,
                clear_finished: true,
                ..RunPatch::default()
            };
            let event = NewEvent::new(
                EventKind::RunQueued,
                json!({ "retry": true, "from": run.status, "cleared_steps": cleared }),
            );
            let Some(written) =
                store::runs::apply_patch(&txn, id, run.status, &patch, &[event], now).await?
            else {
                txn.rollback().await?;
                continue;
            };
            txn.commit().await?;
            self.inner.bus.publish_events(&written);
            self.runnable();
            return self.run(id).await;
        }
        Err(Error::Conflict(format!(
            "run {id} kept changing; try again"
        )))
    }

    /// Runs changed at or after `since` (live views re-read these after a gap).
    pub async fn runs_changed_since(
        &self,
        since: chrono::DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Run>> {
        store::runs::changed_since(&self.inner.db, since, limit).await
    }

    /// Deletes finished runs (with the alert instances they were started for) and
    /// Alertmanager notifications older than the retention period; returns how many
    /// runs. Runs go 1000 at a time, with a rest after each batch as long as the batch
    /// took, so that pruning takes about half of the time of one connection at most.
    pub async fn prune(&self) -> Result<u64> {
        let retention = chrono::Duration::from_std(self.inner.config.retention)
            .unwrap_or(chrono::Duration::days(30));
        let cutoff = Utc::now() - retention;
        store::schedules::prune_fires(&self.inner.db, cutoff).await?;
        // In batches, each its own transaction, resting as long as each took: one
        // statement deleting 100 k runs with their events held its transaction for
        // seconds and its WAL slowed every worker's commit (step p99 ×2 or more).
        let mut runs = 0;
        loop {
            let started = std::time::Instant::now();
            let deleted =
                store::runs::delete_finished_before(&self.inner.db, cutoff, PRUNE_BATCH).await?;
            runs += deleted;
            if deleted < PRUNE_BATCH {
                break;
            }
            tokio::time::sleep(started.elapsed()).await;
        }
        store::alert_notifications::delete_before(&self.inner.db, cutoff).await?;
        Ok(runs)
    }

    /// Runs [`Engine::prune`] periodically until `shutdown`.
    pub async fn retention_loop(self, shutdown: CancellationToken) {
        loop {
            match self.prune().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "retention pruned finished runs"),
                Err(e) => tracing::warn!(error = %e, "retention job failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.config.retention_interval) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// How many steps each of `runs` has recorded (runs without steps are absent),
    /// in one query.
    pub async fn step_counts(
        &self,
        runs: &[RunId],
    ) -> Result<std::collections::HashMap<RunId, i64>> {
        store::steps::count_by_runs(&self.inner.db, runs).await
    }

    /// How many runs are in each state.
    pub async fn count_runs_by_status(&self) -> Result<Vec<(RunStatus, i64)>> {
        store::runs::count_by_status(&self.inner.db).await
    }

    /// Live-only events (`LLM_TOKEN`) of a run from now on, as the workers of any
    /// process send them; nothing is stored, so a reader that connects late or falls
    /// behind simply misses some.
    pub fn subscribe_live(
        &self,
        run_id: RunId,
    ) -> impl Stream<Item = std::sync::Arc<crate::context::LiveEvent>> + Send + 'static + use<>
    {
        bus::subscribe_live(&self.inner.bus, run_id)
    }
}

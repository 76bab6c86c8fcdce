//! The engine handle: the one entry point the API, the CLI and workers use.
//! Cheap to clone; every operation that changes a run goes through here.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::Stream;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value as Json, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::{self, BusMessage, ControlSignal, EventBus};
use crate::config::EngineConfig;
use crate::event::{Event, EventKind, NewEvent};
use crate::ids::{ApprovalId, QuestionId, RunId, TeamId};
use crate::page::{KeyOf, Page, PageRequest};
use crate::status::{ApprovalStatus, QuestionStatus, RunStatus, Trigger};
use crate::store::approvals::Approval;
use crate::store::events::{CONTROL_CHANNEL, EVENTS_CHANNEL, WAKE_CHANNEL};
use crate::store::leases::Fence;
use crate::store::questions::Question;
use crate::store::runs::{NewRun, Run, RunFilter, RunPatch};
use crate::store::steps::Step;
use crate::store::teams::{Team, TeamVersion};
use crate::store::{self, events, is_postgres, stmt};
use crate::topology;
use crate::worker::{HumanWaitClose, Worker};
use crate::workflow::Workflows;
use crate::{Error, Result};

struct Inner {
    db: DatabaseConnection,
    bus: EventBus,
    writer: crate::writer::CheckpointWriter,
    config: Arc<EngineConfig>,
    workflows: Workflows,
    /// Wakes this process's workers when a run becomes runnable.
    work: Notify,
    stats: Arc<crate::stats::Stats>,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// A request to start a run.
#[derive(Clone, Debug)]
pub struct StartRun {
    pub workflow: String,
    pub input: Json,
    pub trigger: Trigger,
    pub idempotency_key: Option<String>,
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
            idempotency_key: None,
            team_id: None,
            team_version_id: None,
            timeout: None,
        }
    }
}

enum HumanDecision<'a> {
    Approval {
        id: ApprovalId,
        status: ApprovalStatus,
        by: &'a str,
        comment: Option<&'a str>,
    },
    Answer {
        id: QuestionId,
        answer: &'a str,
        by: &'a str,
    },
}

/// A person's decision on an approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

impl Engine {
    /// Connects to an already-migrated database and starts the checkpoint writer.
    pub async fn connect(
        database_url: &str,
        config: EngineConfig,
        workflows: Workflows,
    ) -> Result<Self> {
        let db = store::connect(database_url).await?;
        Ok(Self::with_connection(db, config, workflows))
    }

    pub fn with_connection(
        db: DatabaseConnection,
        config: EngineConfig,
        workflows: Workflows,
    ) -> Self {
        let bus = if is_postgres(&db) {
            EventBus::with_postgres_notifier(db.clone())
        } else {
            EventBus::new()
        };
        let shards = if is_postgres(&db) {
            config.writer_shards
        } else {
            1
        };
        let stats = Arc::new(crate::stats::Stats::default());
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
                work: Notify::new(),
                stats,
            }),
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    pub fn config(&self) -> &Arc<EngineConfig> {
        &self.inner.config
    }

    pub fn workflows(&self) -> &Workflows {
        &self.inner.workflows
    }

    /// Counters of rare events in this process (lost races, lost leases…).
    pub fn stats(&self) -> crate::EngineStats {
        self.inner.stats.snapshot()
    }

    pub(crate) fn counters(&self) -> &crate::stats::Stats {
        &self.inner.stats
    }

    pub(crate) fn writer(&self) -> &crate::writer::CheckpointWriter {
        &self.inner.writer
    }

    /// A worker executing runs of this engine's workflows.
    pub fn worker(&self) -> Worker {
        Worker::new(self.clone())
    }

    pub(crate) async fn wait_for_work(&self, poll: Duration, shutdown: &CancellationToken) {
        tokio::select! {
            _ = self.inner.work.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.cancelled() => {}
        }
    }

    pub(crate) fn wake_workers(&self) {
        // notify_one keeps a permit when no worker is waiting right now, so a wake-up
        // that arrives while the worker is busy claiming is not lost.
        self.inner.work.notify_one();
        self.inner.bus.publish(BusMessage::Wake);
    }

    /// Stores a new QUEUED run. Unknown workflows and invalid inputs are refused
    /// before anything is written; a repeated idempotency key returns the first run.
    pub async fn start_run(&self, req: StartRun) -> Result<Run> {
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
        let txn = store::begin_write(&self.inner.db).await?;
        let (run, written, created) = store::runs::insert(
            &txn,
            NewRun {
                workflow: req.workflow,
                input: req.input,
                trigger: req.trigger,
                idempotency_key: req.idempotency_key,
                team_id: req.team_id,
                team_version_id: req.team_version_id,
                timeout_ms: timeout.as_millis() as i64,
            },
            Utc::now(),
        )
        .await?;
        if created {
            events::notify(&txn, WAKE_CHANNEL, "").await?;
        }
        txn.commit().await?;
        self.inner.bus.publish_events(&written);
        if created {
            self.wake_workers();
        }
        Ok(run)
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
            // SQLite has no cross-process notifications: another process's commits
            // are only seen by reading, so read as often as workers poll.
            if is_postgres(&self.inner.db) {
                self.inner.config.subscription_fallback_poll
            } else {
                self.inner.config.poll_interval
            },
        )
    }

    /// Applies a guarded change, retrying if the run changed state underneath.
    async fn change_run<F>(&self, id: RunId, mut plan: F) -> Result<Run>
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
            if let Some(signal) = signal {
                events::notify(&txn, CONTROL_CHANNEL, &format!("{}:{id}", signal.as_str())).await?;
            }
            let runnable = matches!(patch.status, Some(RunStatus::Running | RunStatus::Queued));
            if runnable {
                events::notify(&txn, WAKE_CHANNEL, "").await?;
            }
            txn.commit().await?;
            self.inner.bus.publish_events(&written);
            if let Some(signal) = signal {
                self.inner
                    .bus
                    .publish(BusMessage::Control { run_id: id, signal });
            }
            if runnable {
                self.wake_workers();
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
            events::notify(&txn, WAKE_CHANNEL, "").await?;
            txn.commit().await?;
            self.inner.bus.publish_events(&written);
            self.wake_workers();
            return self.run(id).await;
        }
        Err(Error::Conflict(format!(
            "run {id} kept changing; try again"
        )))
    }

    pub async fn approval(&self, id: ApprovalId) -> Result<Approval> {
        store::approvals::get(&self.inner.db, id)
            .await?
            .ok_or_else(|| Error::not_found("approval", id))
    }

    /// A page of the approvals waiting for a decision, oldest first.
    pub async fn pending_approvals(
        &self,
        page: &PageRequest<KeyOf<Approval>>,
    ) -> Result<Page<Approval>> {
        store::approvals::list_pending(&self.inner.db, page).await
    }

    pub async fn approvals_of_run(&self, run_id: RunId) -> Result<Vec<Approval>> {
        store::approvals::list_for_run(&self.inner.db, run_id).await
    }

    pub async fn question(&self, id: QuestionId) -> Result<Question> {
        store::questions::get(&self.inner.db, id)
            .await?
            .ok_or_else(|| Error::not_found("question", id))
    }

    /// A page of the questions waiting for an answer, oldest first.
    pub async fn pending_questions(
        &self,
        page: &PageRequest<KeyOf<Question>>,
    ) -> Result<Page<Question>> {
        store::questions::list_pending(&self.inner.db, page).await
    }

    /// Approves or rejects a pending approval; the run continues with the decision.
    /// Deciding one that is not pending (or has expired) fails and changes nothing.
    pub async fn decide_approval(
        &self,
        id: ApprovalId,
        decision: Decision,
        by: &str,
        comment: Option<&str>,
    ) -> Result<Approval> {
        crate::storable::check_text(by, "decided_by").map_err(Error::Invalid)?;
        if let Some(c) = comment {
            crate::storable::check_text(c, "comment").map_err(Error::Invalid)?;
        }
        let approval = self.approval(id).await?;
        let status = match decision {
            Decision::Approve => ApprovalStatus::Approved,
            Decision::Reject => ApprovalStatus::Rejected,
        };
        let event = NewEvent::new(
            EventKind::ApprovalDecided,
            json!({ "approval_id": id, "step_key": approval.step_key, "status": status, "decided_by": by, "comment": comment }),
        );
        let won = self
            .record_human_decision(
                approval.run_id,
                RunStatus::WaitingApproval,
                event,
                HumanDecision::Approval {
                    id,
                    status,
                    by,
                    comment,
                },
            )
            .await?;
        let decided = self.approval(id).await?;
        if !won || decided.status != status {
            // Still PENDING here means it is past its expiry, not yet closed by the worker.
            let current = match decided.status {
                ApprovalStatus::Pending => ApprovalStatus::Expired,
                other => other,
            };
            return Err(Error::NotPending {
                what: "approval",
                id: id.to_string(),
                status: current.to_string(),
            });
        }
        Ok(decided)
    }

    /// Answers a pending question; the run continues with the answer.
    pub async fn answer_question(
        &self,
        id: QuestionId,
        answer: &str,
        by: &str,
    ) -> Result<Question> {
        if answer.trim().is_empty() {
            return Err(Error::Invalid("answer: must not be empty".into()));
        }
        crate::storable::check_text(answer, "answer").map_err(Error::Invalid)?;
        crate::storable::check_text(by, "answered_by").map_err(Error::Invalid)?;
        let question = self.question(id).await?;
        let event = NewEvent::new(
            EventKind::InputReceived,
            json!({ "question_id": id, "step_key": question.step_key, "status": QuestionStatus::Answered, "answered_by": by }),
        );
        let won = self
            .record_human_decision(
                question.run_id,
                RunStatus::WaitingInput,
                event,
                HumanDecision::Answer { id, answer, by },
            )
            .await?;
        let current = self.question(id).await?;
        if !won {
            // Still PENDING here means it is past its expiry, not yet closed by the worker.
            let status = match current.status {
                QuestionStatus::Pending => QuestionStatus::Expired,
                other => other,
            };
            return Err(Error::NotPending {
                what: "question",
                id: id.to_string(),
                status: status.to_string(),
            });
        }
        Ok(current)
    }

    /// Locks the run row, applies `decide` (which must return whether it won), and
    /// moves a run waiting for exactly this kind of decision back to RUNNING — all
    /// in one transaction, so a worker parking the run at the same moment either sees
    /// the decision or is seen by it. Returns `false`, having written nothing, when the
    /// approval or question was no longer pending (decided or expired).
    async fn record_human_decision(
        &self,
        run_id: RunId,
        waiting: RunStatus,
        event: NewEvent,
        decision: HumanDecision<'_>,
    ) -> Result<bool> {
        let now = Utc::now();
        let txn = store::begin_write(&self.inner.db).await?;
        let status = store::runs::lock_row(&txn, run_id)
            .await?
            .ok_or_else(|| Error::not_found("run", run_id))?;
        let remaining = store::runs::get(&txn, run_id)
            .await?
            .ok_or_else(|| Error::not_found("run", run_id))?
            .remaining_ms;
        let won = match decision {
            HumanDecision::Approval {
                id,
                status,
                by,
                comment,
            } => store::approvals::decide(&txn, id, status, Some(by), comment, now).await?,
            HumanDecision::Answer { id, answer, by } => {
                store::questions::close(&txn, id, Some(answer), Some(by), now).await?
            }
        };
        if !won {
            txn.rollback().await?;
            return Ok(false);
        }
        let patch = if status == waiting {
            RunPatch {
                status: Some(RunStatus::Running),
                deadline_at: Some(remaining.map(|r| now + chrono::Duration::milliseconds(r))),
                remaining_ms: Some(None),
                wake_at: Some(None),
                ..RunPatch::default()
            }
        } else {
            RunPatch::default()
        };
        let written = store::runs::apply_patch(&txn, run_id, status, &patch, &[event], now)
            .await?
            .ok_or_else(|| {
                Error::Conflict(format!("run {run_id} changed concurrently; try again"))
            })?;
        let runnable = patch.status.is_some();
        if runnable {
            events::notify(&txn, WAKE_CHANNEL, "").await?;
        }
        txn.commit().await?;
        self.inner.bus.publish_events(&written);
        if runnable {
            self.wake_workers();
        }
        Ok(true)
    }

    /// Expires an approval or question as the lease holder, fenced, in one
    /// transaction with its event. Loses cleanly to a decision made meanwhile.
    pub(crate) async fn close_human_wait(&self, fence: &Fence, wait: HumanWaitClose) -> Result<()> {
        let now = Utc::now();
        let txn = store::begin_write(&self.inner.db).await?;
        let row = txn
            .query_one_raw(stmt(
                &txn,
                "UPDATE runs SET last_seq = last_seq + 1, updated_at = $1 \
                 WHERE id = $2 AND attempt = $3 AND lease_owner = $4 AND lease_expires_at > $1 RETURNING last_seq",
                vec![now.into(), fence.run_id.0.into(), fence.attempt.into(), fence.owner.clone().into()],
            ))
            .await?;
        let Some(row) = row else {
            txn.rollback().await?;
            return Err(Error::LeaseLost(fence.run_id.to_string()));
        };
        let last_seq: i64 = row.try_get_by_index(0)?;
        let won = match &wait {
            HumanWaitClose::Approval(a) => {
                store::approvals::decide(
                    &txn,
                    a.id,
                    ApprovalStatus::Expired,
                    None,
                    Some("expired"),
                    now,
                )
                .await?
            }
            HumanWaitClose::Question(q) => {
                store::questions::close(&txn, q.id, None, None, now).await?
            }
        };
        if !won {
            // Decided by a person in the meantime: keep their decision, write nothing.
            txn.rollback().await?;
            return Ok(());
        }
        let written =
            events::insert(&txn, fence.run_id, last_seq, &[wait.expired_event()], now).await?;
        txn.commit().await?;
        self.inner.bus.publish_events(&written);
        Ok(())
    }

    /// Validates a team file (YAML or JSON) and stores it as the team's next version.
    /// Any violation rejects the whole file and stores nothing. Re-applying an
    /// unchanged team adds no version. Returns the team and whether it changed.
    pub async fn apply_team(&self, text: &str) -> Result<(Team, bool)> {
        let spec = topology::parse_and_validate(text, &topology::Catalog::builtin())
            .map_err(Error::Violations)?;
        let json = serde_json::to_value(&spec).map_err(|e| Error::Invalid(format!("team: {e}")))?;
        crate::storable::check_json(&json, "team").map_err(Error::Invalid)?;
        let txn = store::begin_write(&self.inner.db).await?;
        let applied = store::teams::put(
            &txn,
            &spec.name,
            spec.description.as_deref(),
            &json,
            Utc::now(),
        )
        .await?;
        txn.commit().await?;
        Ok(applied)
    }

    pub async fn team(&self, name: &str) -> Result<Team> {
        store::teams::get_by_name(&self.inner.db, name)
            .await?
            .ok_or_else(|| Error::not_found("team", name))
    }

    /// Runs changed at or after `since` (live views re-read these after a gap).
    pub async fn runs_changed_since(
        &self,
        since: chrono::DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Run>> {
        store::runs::changed_since(&self.inner.db, since, limit).await
    }

    /// Approvals still pending that were requested at or after `since`.
    pub async fn approvals_pending_since(
        &self,
        since: chrono::DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Approval>> {
        store::approvals::pending_requested_since(&self.inner.db, since, limit).await
    }

    /// A page of the teams at their latest versions, by name.
    pub async fn teams(&self, page: &PageRequest<KeyOf<Team>>) -> Result<Page<Team>> {
        store::teams::list(&self.inner.db, page).await
    }

    /// A page of a team's versions, oldest first.
    pub async fn team_versions(
        &self,
        team: TeamId,
        page: &PageRequest<KeyOf<TeamVersion>>,
    ) -> Result<Page<TeamVersion>> {
        store::teams::versions(&self.inner.db, team, page).await
    }

    /// Deletes finished runs older than the retention period; returns how many.
    pub async fn prune(&self) -> Result<u64> {
        let retention = chrono::Duration::from_std(self.inner.config.retention)
            .unwrap_or(chrono::Duration::days(30));
        store::runs::delete_finished_before(&self.inner.db, Utc::now() - retention).await
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

    /// On Postgres, forwards notifications from other processes to this process's
    /// bus until `shutdown`; a no-op on SQLite. Reconnects after errors; missed
    /// notifications are covered by polling in workers and subscribers.
    pub async fn listen(self, shutdown: CancellationToken) {
        if !is_postgres(&self.inner.db) {
            return;
        }
        use sea_orm::sqlx::postgres::PgListener;
        loop {
            let pool = self.inner.db.get_postgres_connection_pool().clone();
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            };
            if let Err(e) = listener
                .listen_all([EVENTS_CHANNEL, CONTROL_CHANNEL, WAKE_CHANNEL])
                .await
            {
                tracing::warn!(error = %e, "LISTEN failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
            // Whatever was notified before this point may have been missed.
            self.resync();
            loop {
                let n = tokio::select! {
                    n = listener.try_recv() => n,
                    _ = shutdown.cancelled() => return,
                };
                match n {
                    Ok(Some(n)) => self.on_notification(n.channel(), n.payload()),
                    // The connection dropped and was made again (LISTEN renewed):
                    // notifications sent in between are lost.
                    Ok(None) => {
                        tracing::warn!("LISTEN connection was lost and re-made; resynchronising");
                        self.resync();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                        break;
                    }
                }
            }
        }
    }

    /// Tells everyone in this process who relies on notifications to re-read the
    /// database: subscribers catch up, live views re-read what changed, idle
    /// workers look for runnable runs.
    fn resync(&self) {
        self.inner.bus.publish(BusMessage::Resync);
        self.wake_workers();
    }

    fn on_notification(&self, channel: &str, payload: &str) {
        match channel {
            EVENTS_CHANNEL => {
                for hint in payload.split(',') {
                    if let Some((id, seq)) = hint.split_once(':')
                        && let (Ok(run_id), Ok(last_seq)) =
                            (id.parse::<RunId>(), seq.parse::<i64>())
                    {
                        self.inner
                            .bus
                            .publish(BusMessage::Hint { run_id, last_seq });
                    }
                }
            }
            CONTROL_CHANNEL => {
                let parsed = payload.split_once(':').and_then(|(signal, id)| {
                    let signal = match signal {
                        "cancel" => ControlSignal::Cancel,
                        "pause" => ControlSignal::Pause,
                        "unpause" => ControlSignal::Unpause,
                        _ => return None,
                    };
                    Some((signal, id.parse::<RunId>().ok()?))
                });
                if let Some((signal, run_id)) = parsed {
                    self.inner
                        .bus
                        .publish(BusMessage::Control { run_id, signal });
                }
            }
            WAKE_CHANNEL => self.wake_workers(),
            _ => {}
        }
    }

    /// Checks the database answers; used by `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        self.inner.db.execute_unprepared("SELECT 1").await?;
        Ok(())
    }
}

/// How often at most [`Engine::authenticate`] records a key's `last_used_at`: a write
/// per request would turn every read-only API call into a database write.
const API_KEY_LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

/// Access control (§10): users, password logins and API keys. Authorisation (which
/// role an operation needs) is the caller's, via [`crate::auth::Principal::require`].
impl Engine {
    /// Creates a user. Usernames are 3–64 characters of `a-z 0-9 _ . -` and unique
    /// ([`Error::Conflict`]); passwords have at least 12 characters and are stored as
    /// argon2id hashes.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: crate::auth::Role,
    ) -> Result<crate::auth::User> {
        crate::auth::validate_username(username)?;
        crate::auth::validate_password(password)?;
        let db = &self.inner.db;
        // Checked before hashing only to fail fast; the unique index decides races.
        if store::users::get_by_username(db, username).await?.is_some() {
            return Err(store::users::username_taken(username));
        }
        let hash = crate::auth::hash_password_off_thread(password.to_owned()).await?;
        store::users::insert(db, username, &hash, role, Utc::now()).await
    }

    /// A page of the users, by username.
    pub async fn users(
        &self,
        page: &PageRequest<KeyOf<crate::auth::User>>,
    ) -> Result<Page<crate::auth::User>> {
        store::users::list(&self.inner.db, page).await
    }

    pub async fn user(&self, id: crate::ids::UserId) -> Result<crate::auth::User> {
        store::users::get(&self.inner.db, id)
            .await?
            .ok_or_else(|| Error::not_found("user", id))
    }

    pub async fn user_by_username(&self, username: &str) -> Result<crate::auth::User> {
        store::users::get_by_username(&self.inner.db, username)
            .await?
            .ok_or_else(|| Error::not_found("user", username))
    }

    /// Disables (or re-enables) a user: a disabled user can neither log in nor use
    /// their API keys.
    pub async fn set_user_disabled(
        &self,
        id: crate::ids::UserId,
        disabled: bool,
    ) -> Result<crate::auth::User> {
        if !store::users::set_disabled(&self.inner.db, id, disabled, Utc::now()).await? {
            return Err(Error::not_found("user", id));
        }
        self.user(id).await
    }

    /// Checks a username and password. Every failure (unknown user, wrong password,
    /// disabled user) is the same [`Error::Unauthenticated`] and takes about as long.
    pub async fn login(&self, username: &str, password: &str) -> Result<crate::auth::Principal> {
        // A name no user can have is an unknown user: not worth a query (and a NUL
        // would make Postgres fail), but still verified against the dummy hash.
        let credentials = if crate::auth::validate_username(username).is_ok() {
            store::users::credentials(&self.inner.db, username).await?
        } else {
            None
        };
        let (user, hash) = match credentials {
            Some(c) => (Some(c.user), Some(c.password_hash)),
            None => (None, None),
        };
        let matches = crate::auth::verify_password_off_thread(password.to_owned(), hash).await?;
        match user {
            Some(user) if matches && !user.disabled => Ok(crate::auth::Principal {
                user_id: user.id,
                username: user.username,
                role: user.role,
                api_key_id: None,
            }),
            _ => Err(Error::Unauthenticated),
        }
    }

    /// Creates an API key for a user and returns its record and the key itself, which
    /// is not stored and cannot be shown again. The key's role is at most the user's
    /// and, for an API caller, at most the caller's own role (default: that ceiling);
    /// asking for more is [`Error::KeyAboveCeiling`]. Only admins create keys for
    /// other users.
    pub async fn create_api_key(
        &self,
        caller: crate::auth::Caller<'_>,
        user_id: crate::ids::UserId,
        name: &str,
        role: Option<crate::auth::Role>,
        expires_in: Option<Duration>,
    ) -> Result<(crate::auth::ApiKey, String)> {
        use crate::auth::{Caller, Ceiling, KeyAction};
        if let Caller::Principal(p) = caller
            && p.user_id != user_id
        {
            p.require(crate::auth::Role::Admin)?;
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(Error::Invalid(
                "name: must be 1 to 100 characters, none of them control characters".into(),
            ));
        }
        let user = self.user(user_id).await?;
        if user.disabled {
            return Err(Error::Invalid(format!(
                "user \"{}\" is disabled",
                user.username
            )));
        }
        // The lower of the two roles bounds the key; name whose it is in refusals.
        let (ceiling, has) = match caller {
            Caller::Principal(p) if p.role <= user.role => (Ceiling::Caller, p.role),
            _ => (Ceiling::User, user.role),
        };
        let role = role.unwrap_or(has);
        if role > has {
            return Err(Error::KeyAboveCeiling {
                action: KeyAction::Create,
                asked: role,
                ceiling,
                has,
            });
        }
        let now = Utc::now();
        let expires_at = match expires_in {
            None => None,
            Some(d) if d.is_zero() => {
                return Err(Error::Invalid("expires_in: must be positive".into()));
            }
            Some(d) => Some(
                chrono::Duration::from_std(d)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
                    .ok_or_else(|| Error::Invalid("expires_in: too far in the future".into()))?,
            ),
        };
        let (key, prefix) = crate::auth::generate_api_key();
        let record = store::api_keys::insert(
            &self.inner.db,
            store::api_keys::NewApiKey {
                user_id,
                name,
                prefix: &prefix,
                key_hash: &crate::auth::hash_api_key(&key),
                role,
                expires_at,
            },
            now,
        )
        .await?;
        Ok((record, key))
    }

    /// A page of a user's API keys (without hashes), oldest first, revoked and expired
    /// ones included. An API caller sees only keys up to its own role (and the key it
    /// calls with); only admins list other users' keys.
    pub async fn api_keys(
        &self,
        caller: crate::auth::Caller<'_>,
        user_id: crate::ids::UserId,
        page: &PageRequest<KeyOf<crate::auth::ApiKey>>,
    ) -> Result<Page<crate::auth::ApiKey>> {
        use crate::auth::{Caller, Role};
        let visible = match caller {
            Caller::Local => store::api_keys::Visible {
                max_role: Role::Admin,
                also: None,
            },
            Caller::Principal(p) => {
                if p.user_id != user_id {
                    p.require(Role::Admin)?;
                }
                store::api_keys::Visible {
                    max_role: p.role,
                    also: p.api_key_id,
                }
            }
        };
        self.user(user_id).await?;
        store::api_keys::list_by_user(&self.inner.db, user_id, visible, page).await
    }

    /// Revokes an API key; it fails authentication from now on. Idempotent: revoking a
    /// revoked key changes nothing and returns it. Any key may revoke itself; an API
    /// caller revokes its user's keys only up to its own role, and other users' keys
    /// only as an admin.
    pub async fn revoke_api_key(
        &self,
        caller: crate::auth::Caller<'_>,
        id: crate::ids::ApiKeyId,
    ) -> Result<crate::auth::ApiKey> {
        use crate::auth::{Caller, Ceiling, KeyAction, Role};
        let key = store::api_keys::get(&self.inner.db, id).await?;
        if let Caller::Principal(p) = caller {
            match &key {
                Some(k) if p.api_key_id == Some(k.id) => {}
                Some(k) if k.user_id == p.user_id => {
                    if k.role > p.role {
                        return Err(Error::KeyAboveCeiling {
                            action: KeyAction::Revoke,
                            asked: k.role,
                            ceiling: Ceiling::Caller,
                            has: p.role,
                        });
                    }
                }
                // Another user's key, or none: whether it exists is for admins to know.
                _ => p.require(Role::Admin)?,
            }
        }
        if key.is_none() {
            return Err(Error::not_found("API key", id));
        }
        store::api_keys::revoke(&self.inner.db, id, Utc::now()).await?;
        store::api_keys::get(&self.inner.db, id)
            .await?
            .ok_or_else(|| Error::not_found("API key", id))
    }

    /// The principal an API key (the token of an `Authorization: Bearer …` header)
    /// stands for, with the key's role (never above its user's current role).
    /// Unknown, malformed, revoked and expired keys and keys of disabled users are all
    /// [`Error::Unauthenticated`].
    pub async fn authenticate(&self, bearer_token: &str) -> Result<crate::auth::Principal> {
        let token = bearer_token.trim();
        if crate::auth::api_key_prefix(token).is_none() {
            return Err(Error::Unauthenticated);
        }
        let db = &self.inner.db;
        let Some((key, user)) =
            store::api_keys::find_by_hash(db, &crate::auth::hash_api_key(token)).await?
        else {
            return Err(Error::Unauthenticated);
        };
        let now = Utc::now();
        if !key.is_active(now) || user.disabled {
            return Err(Error::Unauthenticated);
        }
        let resolution = chrono::Duration::from_std(API_KEY_LAST_USED_RESOLUTION)
            .unwrap_or(chrono::Duration::minutes(1));
        if key.last_used_at.is_none_or(|t| now - t >= resolution)
            && let Err(e) = store::api_keys::touch(db, key.id, now, now - resolution).await
        {
            // Bookkeeping only: the key is valid, so the request goes on.
            tracing::warn!(api_key.id = %key.id, error = %e, "cannot record API key use");
        }
        Ok(crate::auth::Principal {
            user_id: user.id,
            username: user.username,
            role: key.role.min(user.role),
            api_key_id: Some(key.id),
        })
    }

    /// On a database without users, creates the user `admin` (role ADMIN). With a
    /// `password` chosen by the operator nothing is written to disk; otherwise a
    /// random 24-character password goes to a new `<data_dir>/initial-admin-password`
    /// (mode 0600), which must not exist yet: an existing one belongs to an earlier
    /// first admin (perhaps of another database) and is never overwritten. Does
    /// nothing and returns `None` when any user exists (also when another process
    /// bootstraps at the same moment). The password is never logged.
    pub async fn bootstrap_admin(
        &self,
        data_dir: &std::path::Path,
        password: Option<&str>,
    ) -> Result<Option<crate::auth::Bootstrapped>> {
        let db = &self.inner.db;
        if store::users::count(db).await? > 0 {
            return Ok(None);
        }
        let path = data_dir.join(crate::auth::INITIAL_ADMIN_PASSWORD_FILE);
        let (password, file) = match password {
            Some(p) => {
                crate::auth::validate_password(p)?;
                (p.to_owned(), None)
            }
            None => {
                if path.exists() {
                    return Err(crate::auth::password_file_exists(&path));
                }
                (crate::auth::random_password(24), Some(path))
            }
        };
        let hash = crate::auth::hash_password_off_thread(password.clone()).await?;
        // Insert first, count after: the write comes before any read in the transaction,
        // so a concurrent bootstrap waits for this one (SQLite's write lock, Postgres's
        // unique index) and then fails on the username instead of on a stale snapshot.
        let txn = crate::store::begin_write(db).await?;
        match store::users::insert(&txn, "admin", &hash, crate::auth::Role::Admin, Utc::now()).await
        {
            Ok(_) => {}
            // Another process created it first.
            Err(Error::Conflict(_)) => {
                txn.rollback().await?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        if store::users::count(&txn).await? > 1 {
            // Someone created another user since the check above.
            txn.rollback().await?;
            return Ok(None);
        }
        let Some(path) = file else {
            txn.commit().await?;
            return Ok(Some(crate::auth::Bootstrapped::GivenPassword));
        };
        // Written before the commit: if writing fails, no admin exists whose password
        // nobody knows, and the next start tries again.
        crate::auth::write_secret_file(&path, &password)?;
        if let Err(e) = txn.commit().await {
            let _ = std::fs::remove_file(&path);
            return Err(e.into());
        }
        Ok(Some(crate::auth::Bootstrapped::PasswordFile(path)))
    }

    /// Which of `ids` are still usable: neither revoked nor expired, and their user not
    /// disabled. For long-lived sessions (WebSockets) that authenticated once and must
    /// end when their key does; one query however many ids (up to 1000 per statement).
    pub async fn active_api_keys(
        &self,
        ids: &[crate::ids::ApiKeyId],
    ) -> Result<std::collections::HashSet<crate::ids::ApiKeyId>> {
        if ids.is_empty() {
            return Ok(std::collections::HashSet::new());
        }
        store::api_keys::active(&self.inner.db, ids, Utc::now()).await
    }
}

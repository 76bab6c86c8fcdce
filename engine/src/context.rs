//! The step context: what orchestration code uses to make its work durable.
//!
//! Orchestration is ordinary async Rust. `ctx.step(key, f)` runs `f` once and
//! records its result; when the run is executed again (after a crash, a pause, an
//! approval…) the code runs from the top and every completed step returns its
//! recorded result instead of running. Keys come from structure, never from time or
//! completion order, so a replay meets the same keys in the same places.
//!
//! When a run has to stop (pause, a human wait, a long retry wait, a lost lease),
//! the branch that hit it simply never resumes: it awaits forever and the worker
//! drops the whole orchestration future once no step is in flight. Orchestration
//! code therefore cannot accidentally swallow a suspension.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};
use tokio::sync::Notify;

use crate::Error;
use crate::config::EngineConfig;
use crate::event::{EventKind, NewEvent};
use crate::ids::{ApprovalId, QuestionId, RunId};
use crate::retry::{RetryPolicy, StepFailure};
use crate::status::{ApprovalStatus, QuestionStatus, StepStatus};
use crate::store::approvals::Approval;
use crate::store::checkpoint::{Checkpoint, NewApproval, NewQuestion, StepRecord};
use crate::store::leases::Fence;
use crate::store::questions::Question;
use crate::store::steps::Step;
use crate::writer::CheckpointWriter;

/// Longest step key accepted, in bytes.
const MAX_KEY_LEN: usize = 512;

/// Why a step did not produce a value.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StepError {
    /// The step failed for good (permanent error, or retries exhausted); recorded,
    /// so a replay returns the same error.
    #[error("step {key} failed: {message}")]
    Failed { key: String, message: String },
    /// Orchestration code used a key twice in one run: a bug, and replay would be
    /// ambiguous, so it is refused.
    #[error("step key {0:?} is used twice in this run; step keys must be unique")]
    DuplicateKey(String),
    #[error("invalid step key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// A value handed to the step (its input, an approval's arguments…) cannot be
    /// stored (e.g. it contains NUL); nothing was run or recorded.
    #[error("step {key}: {message}")]
    Unstorable { key: String, message: String },
    /// The run reached its step budget (`EngineConfig::max_steps_per_run`).
    #[error("step {key}: the run already has {limit} steps, the most one run may have")]
    TooManySteps { key: String, limit: usize },
    /// The recorded output no longer deserializes into the type asked for.
    #[error("recorded output of step {key} does not match the expected type: {message}")]
    OutputMismatch { key: String, message: String },
}

/// Per-step settings; the defaults come from the engine configuration.
#[derive(Clone, Debug, Default)]
pub struct StepOptions {
    pub retry: Option<RetryPolicy>,
    /// Limit of one attempt; exceeding it is a retryable failure.
    pub timeout: Option<Duration>,
    /// Recorded with the step (tool arguments, a prompt digest…).
    pub input: Option<Json>,
}

/// Handed to each attempt of a step.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// `run_id/step_key`: side-effecting calls pass it on so a repeated attempt
    /// (at-least-once after a crash) is recognised downstream.
    pub idempotency_key: String,
}

/// What a person decided about an approval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApprovalOutcome {
    pub approval_id: ApprovalId,
    pub status: ApprovalStatus,
    pub decided_by: Option<String>,
    pub comment: Option<String>,
}

impl ApprovalOutcome {
    pub fn approved(&self) -> bool {
        matches!(
            self.status,
            ApprovalStatus::Approved | ApprovalStatus::Executed
        )
    }
}

/// A request for a human decision before a risky action.
#[derive(Clone, Debug)]
pub struct ApprovalRequest {
    pub tool: String,
    pub args: Json,
    pub risk_note: Option<String>,
    /// Defaults to the engine's approval TTL (24 h).
    pub expires_in: Option<Duration>,
}

/// What a person answered (or that nobody did in time).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InputOutcome {
    pub question_id: QuestionId,
    pub answer: Option<String>,
    pub answered_by: Option<String>,
}

/// Why a run is stopping at a boundary.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Park {
    Pause,
    Shutdown,
    Approval { wake_at: DateTime<Utc> },
    Input { wake_at: DateTime<Utc> },
    Retry { wake_at: DateTime<Utc> },
    Sleep { wake_at: DateTime<Utc> },
}

/// Why a run's execution must end at once, without writing anything more.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Halt {
    LeaseLost,
    Cancelled,
    Database(String),
    /// The database refused a checkpoint's data: the run fails with this reason.
    Refused(String),
}

#[derive(Default)]
pub(crate) struct ParkState {
    pub parks: Vec<Park>,
    pub approvals: Vec<NewApproval>,
    pub questions: Vec<NewQuestion>,
    pub events: Vec<NewEvent>,
    /// Already-pending approvals and questions this execution parked on.
    pub waiting_approvals: Vec<ApprovalId>,
    pub waiting_questions: Vec<QuestionId>,
}

/// State shared by every branch of one execution of one run.
pub(crate) struct RunShared {
    pub fence: Fence,
    pub input: Json,
    pub writer: CheckpointWriter,
    pub config: Arc<EngineConfig>,
    pub deadline_at: DateTime<Utc>,
    pub expirer: Arc<dyn HumanWaits>,
    memo: Mutex<HashMap<String, Step>>,
    approvals: Mutex<HashMap<String, Approval>>,
    questions: Mutex<HashMap<String, Question>>,
    used_keys: Mutex<HashSet<String>>,
    pub park: Mutex<ParkState>,
    in_flight: AtomicUsize,
    pub pause: AtomicBool,
    pub shutdown: AtomicBool,
    halt: Mutex<Option<Halt>>,
    /// Wakes the worker: a park became releasable, or the run must halt.
    pub wakeup: Notify,
}

/// Expiring a human wait is a fenced write outside the checkpoint batch (it must
/// lose cleanly to a concurrent decision); the worker provides it.
#[async_trait::async_trait]
pub(crate) trait HumanWaits: Send + Sync {
    async fn expire_approval(&self, fence: &Fence, approval: &Approval) -> crate::Result<Approval>;
    async fn expire_question(&self, fence: &Fence, question: &Question) -> crate::Result<Question>;
}

impl RunShared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        fence: Fence,
        input: Json,
        writer: CheckpointWriter,
        config: Arc<EngineConfig>,
        deadline_at: DateTime<Utc>,
        expirer: Arc<dyn HumanWaits>,
        steps: Vec<Step>,
        approvals: Vec<Approval>,
        questions: Vec<Question>,
    ) -> Self {
        Self {
            fence,
            input,
            writer,
            config,
            deadline_at,
            expirer,
            memo: Mutex::new(steps.into_iter().map(|s| (s.key.clone(), s)).collect()),
            approvals: Mutex::new(
                approvals
                    .into_iter()
                    .map(|a| (a.step_key.clone(), a))
                    .collect(),
            ),
            questions: Mutex::new(
                questions
                    .into_iter()
                    .map(|q| (q.step_key.clone(), q))
                    .collect(),
            ),
            used_keys: Mutex::new(HashSet::new()),
            park: Mutex::new(ParkState::default()),
            in_flight: AtomicUsize::new(0),
            pause: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            halt: Mutex::new(None),
            wakeup: Notify::new(),
        }
    }

    pub fn halt_reason(&self) -> Option<Halt> {
        lock(&self.halt).clone()
    }

    pub fn halt(&self, reason: Halt) {
        let mut h = lock(&self.halt);
        if h.is_none() {
            *h = Some(reason);
        }
        drop(h);
        self.wakeup.notify_one();
    }

    /// True when the run has parked branches and nothing left in flight.
    pub fn releasable(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0 && !lock(&self.park).parks.is_empty()
    }

    pub fn has_human_waits(&self) -> bool {
        !lock(&self.approvals).is_empty() || !lock(&self.questions).is_empty()
    }

    fn parked(&self, park: Park) {
        lock(&self.park).parks.push(park);
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            self.wakeup.notify_one();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking step is caught before it can poison these locks; recover anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a step as in flight for as long as it lives.
struct InFlight<'a>(&'a RunShared);

impl<'a> InFlight<'a> {
    fn new(shared: &'a RunShared) -> Self {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && !lock(&self.0.park).parks.is_empty()
        {
            self.0.wakeup.notify_one();
        }
    }
}

/// Never completes: the worker drops the orchestration future instead.
async fn suspend<T>() -> T {
    std::future::pending().await
}

/// The handle orchestration code receives. Cheap to clone; `branch` derives a
/// context whose keys are prefixed, for parallel branches.
#[derive(Clone)]
pub struct StepContext {
    shared: Arc<RunShared>,
    prefix: String,
}

impl StepContext {
    pub(crate) fn root(shared: Arc<RunShared>) -> Self {
        Self {
            shared,
            prefix: String::new(),
        }
    }

    pub fn run_id(&self) -> RunId {
        self.shared.fence.run_id
    }

    /// The run's input document.
    pub fn input(&self) -> &Json {
        &self.shared.input
    }

    /// A context whose step keys live under `name/`; give each parallel branch its
    /// own structural name (node id, agent id, tool call id).
    pub fn branch(&self, name: impl Display) -> StepContext {
        StepContext {
            shared: self.shared.clone(),
            prefix: format!("{}{}/", self.prefix, name),
        }
    }

    fn claim_key(&self, key: impl Display) -> Result<String, StepError> {
        let key = format!("{}{}", self.prefix, key);
        let reason = if key.is_empty() || key.ends_with('/') {
            Some("empty")
        } else if key.len() > MAX_KEY_LEN {
            Some("longer than 512 bytes")
        } else if key.chars().any(char::is_control) {
            Some("contains control characters")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(StepError::InvalidKey { key, reason });
        }
        let mut used = lock(&self.shared.used_keys);
        let limit = self.shared.config.max_steps_per_run;
        if used.len() >= limit && !used.contains(&key) {
            return Err(StepError::TooManySteps { key, limit });
        }
        if !used.insert(key.clone()) {
            return Err(StepError::DuplicateKey(key));
        }
        Ok(key)
    }

    /// Stops here if the run must not start new work (pause, shutdown, halt).
    async fn boundary(&self) {
        let s = &self.shared;
        if s.halt_reason().is_some() {
            suspend::<()>().await;
        }
        if s.pause.load(Ordering::SeqCst) {
            s.parked(Park::Pause);
            suspend::<()>().await;
        }
        if s.shutdown.load(Ordering::SeqCst) {
            s.parked(Park::Shutdown);
            suspend::<()>().await;
        }
    }

    /// Commits a checkpoint; a lost lease or a database error halts the run here. A
    /// refusal of the data (a value the database cannot store) is the caller's to
    /// handle: see [`StepContext::commit_or_fail_run`].
    async fn try_commit(&self, cp: Checkpoint) -> Result<(), String> {
        // A commit under way is work in flight: the run must not be released (and
        // this future dropped) while its outcome is unknown.
        let _in_flight = InFlight::new(&self.shared);
        match self.shared.writer.commit(cp).await {
            Ok(_) => Ok(()),
            Err(Error::Refused(message)) => Err(message),
            Err(e) => {
                self.halt_on(e);
                suspend().await
            }
        }
    }

    /// Commits a checkpoint whose values were checked before; should the database
    /// refuse it anyway, the run fails with the reason (it can never be written, so
    /// retrying would loop).
    async fn commit(&self, cp: Checkpoint) {
        if let Err(message) = self.try_commit(cp).await {
            self.shared.halt(Halt::Refused(message));
            suspend::<()>().await;
        }
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint::new(self.shared.fence.clone())
    }

    /// Runs `f` once as a durable step with the default options.
    pub async fn step<T, F, Fut>(&self, key: impl Display, f: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, StepFailure>>,
    {
        self.step_with(key, StepOptions::default(), f).await
    }

    /// Runs `f` as a durable step: a recorded result is returned without running;
    /// otherwise attempts are made until success, a permanent failure, or the retry
    /// budget is spent. A panic inside `f` is a permanent failure of the step.
    pub async fn step_with<T, F, Fut>(
        &self,
        key: impl Display,
        opts: StepOptions,
        mut f: F,
    ) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, StepFailure>>,
    {
        let key = self.claim_key(key)?;
        if let Some(input) = &opts.input {
            crate::storable::check_json(input, "input").map_err(|message| {
                StepError::Unstorable {
                    key: key.clone(),
                    message,
                }
            })?;
        }
        let recorded = lock(&self.shared.memo).get(&key).cloned();
        let mut attempts = 0u32;
        let mut first_started = None;
        if let Some(step) = recorded {
            match step.status {
                StepStatus::Succeeded => {
                    let output = step.output.unwrap_or(Json::Null);
                    return serde_json::from_value(output).map_err(|e| StepError::OutputMismatch {
                        key,
                        message: e.to_string(),
                    });
                }
                StepStatus::Failed => {
                    return Err(StepError::Failed {
                        key,
                        message: step.error.unwrap_or_default(),
                    });
                }
                StepStatus::RetryWait | StepStatus::Running | StepStatus::Sleeping => {
                    // An attempt interrupted by a crash counts as an attempt.
                    attempts = step.attempts.max(0) as u32;
                    first_started = step.started_at;
                    if let Some(next) = step.next_attempt_at {
                        self.wait_until(next, |wake_at| Park::Retry { wake_at })
                            .await;
                    }
                }
            }
        }
        self.boundary().await;
        let policy = opts
            .retry
            .clone()
            .unwrap_or_else(|| self.shared.config.retry.clone());
        let idempotency_key = format!("{}/{}", self.shared.fence.run_id, key);
        loop {
            // In flight only while an attempt runs: a parked retry wait must not count.
            let in_flight = InFlight::new(&self.shared);
            attempts += 1;
            let started_at = Utc::now();
            let first_started_at = *first_started.get_or_insert(started_at);
            let attempt = Attempt {
                number: attempts,
                idempotency_key: idempotency_key.clone(),
            };
            let started_event = NewEvent::new(
                EventKind::StepStarted,
                json!({ "step_key": key, "attempt": attempts }),
            );
            let running = AssertUnwindSafe(f(attempt)).catch_unwind();
            let timed = async {
                match opts.timeout {
                    Some(limit) => match tokio::time::timeout(limit, running).await {
                        Ok(r) => r,
                        Err(_) => Ok(Err(StepFailure::retryable(format!(
                            "attempt timed out after {} ms",
                            limit.as_millis()
                        )))),
                    },
                    None => running.await,
                }
            };
            tokio::pin!(timed);
            // Fast steps record STEP_STARTED together with their result (one commit per
            // step); slow ones announce themselves while still running.
            let mut started_written = None;
            let result = match tokio::time::timeout(
                self.shared.config.started_event_delay,
                &mut timed,
            )
            .await
            {
                Ok(r) => r,
                Err(_) => {
                    let mut cp = self.checkpoint();
                    cp.steps.push(StepRecord {
                        key: key.clone(),
                        status: StepStatus::Running,
                        input: opts.input.clone(),
                        output: None,
                        usage: None,
                        error: None,
                        attempts: attempts as i32,
                        started_at: Some(first_started_at),
                        finished_at: None,
                        next_attempt_at: None,
                    });
                    cp.events.push(started_event.clone());
                    started_written = Some(self.shared.writer.submit(cp).await);
                    timed.await
                }
            };
            let started_recorded = started_written.is_some();
            if let Some(rx) = started_written {
                match rx.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        self.halt_on(e);
                        return suspend().await;
                    }
                    // The writer dropped the reply: it is gone, so is our footing.
                    Err(_) => {
                        self.shared.halt(Halt::LeaseLost);
                        return suspend().await;
                    }
                }
            }
            let failure = match result {
                Ok(Ok(value)) => match serde_json::to_value(&value)
                    .map_err(|e| format!("output is not representable as JSON: {e}"))
                    .and_then(|output| {
                        crate::storable::check_json(&output, "output")
                            .map(|()| output)
                            .map_err(|e| format!("step result cannot be stored: {e}"))
                    }) {
                    Ok(output) => {
                        let finished_at = Utc::now();
                        let mut cp = self.checkpoint();
                        if !started_recorded {
                            cp.events.push(started_event.clone());
                        }
                        cp.steps.push(StepRecord {
                            key: key.clone(),
                            status: StepStatus::Succeeded,
                            input: opts.input.clone(),
                            output: Some(output),
                            usage: None,
                            error: None,
                            attempts: attempts as i32,
                            started_at: Some(first_started_at),
                            finished_at: Some(finished_at),
                            next_attempt_at: None,
                        });
                        cp.events.push(NewEvent::new(
                            EventKind::StepSucceeded,
                            json!({
                                "step_key": key,
                                "attempts": attempts,
                                "duration_ms": (finished_at - started_at).num_milliseconds(),
                            }),
                        ));
                        match self.try_commit(cp).await {
                            Ok(()) => return Ok(value),
                            // Refused (the writer's last line of defence): fail this
                            // step, nothing else.
                            Err(e) => {
                                StepFailure::permanent(format!("step result cannot be stored: {e}"))
                            }
                        }
                    }
                    Err(e) => StepFailure::permanent(e),
                },
                Ok(Err(failure)) => failure,
                Err(panic) => {
                    StepFailure::permanent(format!("step panicked: {}", panic_message(&panic)))
                }
            };
            let mut cp = self.checkpoint();
            if !started_recorded {
                cp.events.push(started_event);
            }
            let retry = failure.is_retryable() && attempts <= policy.max_retries;
            if !retry {
                let message = crate::storable::scrub(&failure.to_string());
                cp.steps.push(StepRecord {
                    key: key.clone(),
                    status: StepStatus::Failed,
                    input: opts.input.clone(),
                    output: None,
                    usage: None,
                    error: Some(message.clone()),
                    attempts: attempts as i32,
                    started_at: Some(first_started_at),
                    finished_at: Some(Utc::now()),
                    next_attempt_at: None,
                });
                cp.events.push(NewEvent::new(
                    EventKind::StepFailed,
                    json!({ "step_key": key, "attempts": attempts, "error": message, "retryable": failure.is_retryable() }),
                ));
                self.commit(cp).await;
                return Err(StepError::Failed { key, message });
            }
            let delay = policy.delay(attempts, failure.retry_after());
            let next_attempt_at = crate::storable::after(Utc::now(), delay);
            cp.steps.push(StepRecord {
                key: key.clone(),
                status: StepStatus::RetryWait,
                input: opts.input.clone(),
                output: None,
                usage: None,
                error: Some(crate::storable::scrub(&failure.to_string())),
                attempts: attempts as i32,
                started_at: Some(first_started_at),
                finished_at: None,
                next_attempt_at: Some(next_attempt_at),
            });
            cp.events.push(NewEvent::new(
                EventKind::StepRetryScheduled,
                json!({
                    "step_key": key,
                    "attempt": attempts,
                    "error": crate::storable::scrub(&failure.to_string()),
                    "delay_ms": delay.as_millis() as u64,
                    "next_attempt_at": next_attempt_at,
                }),
            ));
            self.commit(cp).await;
            drop(in_flight);
            self.wait_until(next_attempt_at, |wake_at| Park::Retry { wake_at })
                .await;
        }
    }

    /// Waits until `at`: in process when short, otherwise by parking the run so the
    /// worker is free (it is claimed again when `at` comes).
    async fn wait_until(&self, at: DateTime<Utc>, park: impl FnOnce(DateTime<Utc>) -> Park) {
        let remaining = (at - Utc::now()).to_std().unwrap_or_default();
        if remaining.is_zero() {
            return;
        }
        if remaining <= self.shared.config.long_wait_threshold {
            let _in_flight = InFlight::new(&self.shared);
            tokio::time::sleep(remaining).await;
        } else {
            self.shared.parked(park(at));
            suspend::<()>().await;
        }
    }

    /// A durable sleep: long sleeps release the worker and survive restarts.
    pub async fn sleep(&self, key: impl Display, duration: Duration) -> Result<(), StepError> {
        let key = self.claim_key(key)?;
        let recorded = lock(&self.shared.memo).get(&key).cloned();
        let mut announced = true;
        let until = match recorded {
            Some(step) if step.status == StepStatus::Succeeded => return Ok(()),
            Some(step) => step.next_attempt_at.unwrap_or_else(Utc::now),
            None => {
                self.boundary().await;
                let now = Utc::now();
                let until = crate::storable::after(now, duration);
                announced = duration > self.shared.config.long_wait_threshold;
                if announced {
                    let mut cp = self.checkpoint();
                    cp.steps.push(sleeping_record(&key, now, until));
                    cp.events.push(NewEvent::new(
                        EventKind::StepStarted,
                        json!({ "step_key": key, "attempt": 1, "sleep_until": until }),
                    ));
                    self.commit(cp).await;
                }
                until
            }
        };
        self.wait_until(until, |wake_at| Park::Sleep { wake_at })
            .await;
        let now = Utc::now();
        let mut cp = self.checkpoint();
        let mut record = sleeping_record(&key, now, until);
        record.status = StepStatus::Succeeded;
        record.finished_at = Some(now);
        record.next_attempt_at = None;
        cp.steps.push(record);
        if !announced {
            cp.events.push(NewEvent::new(
                EventKind::StepStarted,
                json!({ "step_key": key, "attempt": 1, "sleep_until": until }),
            ));
        }
        cp.events.push(NewEvent::new(
            EventKind::StepSucceeded,
            json!({ "step_key": key, "attempts": 1, "slept_until": until }),
        ));
        self.commit(cp).await;
        Ok(())
    }

    /// Asks a person to approve a risky action. The run goes to WAITING_APPROVAL and
    /// frees its worker until someone decides or the approval expires; a rejection or
    /// an expiry is returned as an outcome, not an error.
    pub async fn wait_approval(
        &self,
        key: impl Display,
        request: ApprovalRequest,
    ) -> Result<ApprovalOutcome, StepError> {
        let key = self.claim_key(key)?;
        let storable = crate::storable::check_text(&request.tool, "tool")
            .and_then(|()| crate::storable::check_json(&request.args, "args"))
            .and_then(|()| {
                request
                    .risk_note
                    .as_deref()
                    .map_or(Ok(()), |r| crate::storable::check_text(r, "risk_note"))
            });
        if let Err(message) = storable {
            return Err(StepError::Unstorable { key, message });
        }
        let existing = lock(&self.shared.approvals).get(&key).cloned();
        let approval = match existing {
            Some(a) if a.status == ApprovalStatus::Pending && a.expires_at <= Utc::now() => {
                match self
                    .shared
                    .expirer
                    .expire_approval(&self.shared.fence, &a)
                    .await
                {
                    Ok(a) => a,
                    Err(e) => {
                        self.halt_on(e);
                        return suspend().await;
                    }
                }
            }
            Some(a) if a.status == ApprovalStatus::Pending => {
                lock(&self.shared.park).waiting_approvals.push(a.id);
                self.shared.parked(Park::Approval {
                    wake_at: a.expires_at,
                });
                return suspend().await;
            }
            Some(a) => a,
            None => {
                self.boundary().await;
                let ttl = request
                    .expires_in
                    .unwrap_or(self.shared.config.approval_ttl);
                let expires_at = crate::storable::after(Utc::now(), ttl);
                let id = ApprovalId::new();
                {
                    let mut park = lock(&self.shared.park);
                    park.events.push(NewEvent::new(
                    EventKind::ApprovalRequested,
                    json!({
                        "approval_id": id, "step_key": key, "tool": request.tool, "args": request.args,
                        "risk_note": request.risk_note, "expires_at": expires_at,
                    }),
                ));
                    park.approvals.push(NewApproval {
                        id,
                        step_key: key,
                        tool: request.tool,
                        args: request.args,
                        risk_note: request.risk_note,
                        expires_at,
                    });
                }
                self.shared.parked(Park::Approval {
                    wake_at: expires_at,
                });
                return suspend().await;
            }
        };
        Ok(ApprovalOutcome {
            approval_id: approval.id,
            status: approval.status,
            decided_by: approval.decided_by,
            comment: approval.comment,
        })
    }

    /// Asks a person a question; the run waits in WAITING_INPUT for the answer. An
    /// unanswered question expires with `answer: None`.
    pub async fn wait_input(
        &self,
        key: impl Display,
        question: impl Into<String>,
    ) -> Result<InputOutcome, StepError> {
        let key = self.claim_key(key)?;
        let question = question.into();
        if let Err(message) = crate::storable::check_text(&question, "question") {
            return Err(StepError::Unstorable { key, message });
        }
        let existing = lock(&self.shared.questions).get(&key).cloned();
        let q = match existing {
            Some(q) if q.status == QuestionStatus::Pending && q.expires_at <= Utc::now() => {
                match self
                    .shared
                    .expirer
                    .expire_question(&self.shared.fence, &q)
                    .await
                {
                    Ok(q) => q,
                    Err(e) => {
                        self.halt_on(e);
                        return suspend().await;
                    }
                }
            }
            Some(q) if q.status == QuestionStatus::Pending => {
                lock(&self.shared.park).waiting_questions.push(q.id);
                self.shared.parked(Park::Input {
                    wake_at: q.expires_at,
                });
                return suspend().await;
            }
            Some(q) => q,
            None => {
                self.boundary().await;
                let expires_at =
                    crate::storable::after(Utc::now(), self.shared.config.question_ttl);
                let id = QuestionId::new();
                {
                    let mut park = lock(&self.shared.park);
                    park.events.push(NewEvent::new(
                    EventKind::InputRequested,
                    json!({ "question_id": id, "step_key": key, "question": question, "expires_at": expires_at }),
                ));
                    park.questions.push(NewQuestion {
                        id,
                        step_key: key,
                        question,
                        expires_at,
                    });
                }
                self.shared.parked(Park::Input {
                    wake_at: expires_at,
                });
                return suspend().await;
            }
        };
        Ok(InputOutcome {
            question_id: q.id,
            answer: q.answer,
            answered_by: q.answered_by,
        })
    }

    /// Stops this execution after a failed write: a lost lease means someone else
    /// owns the run now; anything else means the database is unavailable.
    fn halt_on(&self, e: Error) {
        self.shared.halt(match e {
            Error::LeaseLost(_) => Halt::LeaseLost,
            Error::Unavailable(message) => Halt::Database(message),
            other => Halt::Database(other.to_string()),
        });
    }
}

fn sleeping_record(key: &str, started: DateTime<Utc>, until: DateTime<Utc>) -> StepRecord {
    StepRecord {
        key: key.to_owned(),
        status: StepStatus::Sleeping,
        input: Some(json!({ "sleep_until": until })),
        output: None,
        usage: None,
        error: None,
        attempts: 1,
        started_at: Some(started),
        finished_at: None,
        next_attempt_at: Some(until),
    }
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

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

mod shared;
mod step;
mod waits;

pub(crate) use shared::{Halt, HumanWaits, Park, RunShared};

use std::fmt::Display;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;

use crate::Error;
use crate::event::{EventKind, NewEvent};
use crate::ids::{ApprovalId, QuestionId, RunId};
use crate::retry::RetryPolicy;
use crate::status::ApprovalStatus;
use crate::store::checkpoint::Checkpoint;
use crate::usage::Usage;
use shared::{InFlight, lock};

/// Longest step key accepted, in bytes.
const MAX_KEY_LEN: usize = 512;

tokio::task_local! {
    /// The key of the step whose body is being polled: durable calls refuse to run
    /// there (see [`StepError::Nested`]).
    static STEP_BODY: String;
}

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
    /// `emit` of a kind orchestration code may not write.
    #[error("cannot emit {kind}: {reason}")]
    InvalidEvent {
        kind: EventKind,
        reason: &'static str,
    },
    /// The recorded output no longer deserializes into the type asked for.
    #[error("recorded output of step {key} does not match the expected type: {message}")]
    OutputMismatch { key: String, message: String },
    /// A durable call (step, sleep, wait) made from inside another step's body. Its
    /// record would not belong to the outer step's attempts, and the outer step's
    /// timeout could abandon its commit halfway, so it is refused and nothing runs.
    #[error(
        "step {key} was called inside the body of step {outer}; durable calls belong \
         in orchestration code, not in a step's body"
    )]
    Nested { key: String, outer: String },
}

/// Per-step settings; the defaults come from the engine configuration.
#[derive(Clone, Debug, Default)]
pub struct StepOptions {
    pub retry: Option<RetryPolicy>,
    /// Limit of one attempt; exceeding it is a retryable failure.
    pub timeout: Option<Duration>,
    /// Recorded with the step (tool arguments, a prompt digest…).
    pub input: Option<Json>,
    /// What kind of work the step is (`llm`, `tool`, …), for the step-duration
    /// metric's `kind` label; `step` when unset. A small fixed set, never an id.
    pub kind: Option<&'static str>,
}

/// Handed to each attempt of a step.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// `run_id/step_key`: side-effecting calls pass it on so a repeated attempt
    /// (at-least-once after a crash) is recognised downstream.
    pub idempotency_key: String,
    /// When the step's first attempt started (kept across replays): how long a
    /// dependency has been failing, e.g. to stop waiting for an open circuit breaker.
    pub first_started_at: DateTime<Utc>,
    usage: UsageMeter,
    metrics: crate::metrics::Metrics,
}

impl Attempt {
    /// Records what this attempt used (a model call's tokens and cost). It is stored
    /// with the step even when the attempt fails, and counts in [`StepContext::usage`].
    pub fn record_usage(&self, usage: Usage) {
        *lock(&self.usage.0) += usage;
    }

    /// [`Attempt::record_usage`] of a call to `model` of `provider` (the configured
    /// names; `provider` empty when unknown), also counted in this process's model
    /// metrics (tokens and cost by provider and model).
    pub fn record_model_usage(&self, provider: &str, model: &str, usage: Usage) {
        self.record_usage(usage);
        self.metrics.llm_usage(provider, model, usage);
    }
}

/// What one attempt used, as it records it.
#[derive(Clone, Debug, Default)]
pub(crate) struct UsageMeter(Arc<Mutex<Usage>>);

impl UsageMeter {
    fn take(&self) -> Usage {
        std::mem::take(&mut *lock(&self.0))
    }
}

/// Who started a run, and with what: for workflows that need to know.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunInfo {
    pub run_id: RunId,
    pub workflow: String,
    pub trigger: crate::status::Trigger,
    /// The schedule or notification that started it, if any.
    pub trigger_id: Option<String>,
    /// What its approval requests do (REJECT: rejected at once, nobody asked).
    pub approval_mode: crate::status::ApprovalMode,
    pub team_id: Option<crate::ids::TeamId>,
    /// The team version the run pinned when it started.
    pub team_version_id: Option<uuid::Uuid>,
    /// How many times the run has been claimed (this execution's number).
    pub attempt: i64,
    pub deadline_at: DateTime<Utc>,
}

/// A live event (`LLM_TOKEN`): delivered to whoever watches the run now, never stored.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct LiveEvent {
    pub run_id: RunId,
    pub kind: EventKind,
    /// The key prefix of the context that sent it (which branch: node, agent…).
    pub branch: String,
    pub payload: Json,
    pub at: DateTime<Utc>,
}

/// Escapes one segment of a step key so it cannot collide with the structure:
/// `/` separates segments, so an id that comes from outside (a model's tool-call
/// id) may not add one. `%` and `/` are percent-encoded.
pub fn key_segment(segment: &str) -> String {
    if !segment.contains(['/', '%']) {
        return segment.to_owned();
    }
    segment.replace('%', "%25").replace('/', "%2F")
}

/// The segment [`key_segment`] escaped, as it was: `%2F` is `/`, `%25` is `%`, any
/// other `%` stays as it is.
pub fn decode_key_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    let mut rest = segment;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escaped = &rest[at..];
        if let Some(after) = escaped.strip_prefix("%2F") {
            out.push('/');
            rest = after;
        } else if let Some(after) = escaped.strip_prefix("%25") {
            out.push('%');
            rest = after;
        } else {
            out.push('%');
            rest = &escaped[1..];
        }
    }
    out.push_str(rest);
    out
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
    /// Events this context emitted that have not yet gone out with a commit.
    emitted: Arc<Mutex<Vec<NewEvent>>>,
}

impl StepContext {
    pub(crate) fn root(shared: Arc<RunShared>) -> Self {
        let emitted = shared.emit_buffer();
        Self {
            shared,
            prefix: String::new(),
            emitted,
        }
    }

    pub fn run_id(&self) -> RunId {
        self.shared.fence.run_id
    }

    /// Who started this run, with which team version, and its deadline.
    pub fn run_info(&self) -> &RunInfo {
        &self.shared.info
    }

    /// The engine executing this run, for reading what a workflow needs but must not
    /// record (a team version, an alert source's decrypted connection). Anything read
    /// here that decides what the run does belongs in a step, so a replay sees the
    /// same value.
    pub fn engine(&self) -> &crate::Engine {
        &self.shared.engine
    }

    /// What the run's steps have used so far (tokens, cost), over every execution:
    /// recorded steps count once, however often the run was replayed.
    pub fn usage(&self) -> Usage {
        *lock(&self.shared.usage)
    }

    /// Appends a durable event to the run's log (`TOOL_CALL`, `TOOL_RESULT`,
    /// `FINDING`). It goes out with this context's next durable operation (a step,
    /// sleep, approval or question, or the run's end), and is emitted once: when that
    /// operation is replayed from the record, so is the event. Emit from the branch
    /// whose work it describes.
    pub fn emit(&self, kind: EventKind, payload: Json) -> Result<(), StepError> {
        if !matches!(
            kind,
            EventKind::ToolCall | EventKind::ToolResult | EventKind::Finding
        ) {
            return Err(StepError::InvalidEvent {
                kind,
                reason: "the engine writes this kind itself",
            });
        }
        crate::storable::check_json(&payload, "payload").map_err(|message| {
            StepError::Unstorable {
                key: format!("{}<{kind}>", self.prefix),
                message,
            }
        })?;
        lock(&self.emitted).push(NewEvent::new(kind, payload));
        Ok(())
    }

    /// Sends a live-only event (`LLM_TOKEN`) to whoever watches the run right now;
    /// nothing is stored, nothing is replayed.
    pub fn stream(&self, payload: Json) {
        self.shared.live(LiveEvent {
            run_id: self.shared.fence.run_id,
            kind: EventKind::LlmToken,
            branch: self.prefix.trim_end_matches('/').to_owned(),
            payload,
            at: Utc::now(),
        });
    }

    fn take_emitted(&self) -> Vec<NewEvent> {
        std::mem::take(&mut *lock(&self.emitted))
    }

    fn discard_emitted(&self) {
        lock(&self.emitted).clear();
    }

    /// The run's input document.
    pub fn input(&self) -> &Json {
        &self.shared.input
    }

    /// A context whose step keys live under `name/`; give each parallel branch its
    /// own structural name (node id, agent id, tool call id). `name` is one segment:
    /// a `/` in it is escaped ([`key_segment`]), so an id from outside cannot make
    /// two branches' keys collide.
    pub fn branch(&self, name: impl Display) -> StepContext {
        StepContext {
            shared: self.shared.clone(),
            prefix: format!("{}{}/", self.prefix, key_segment(&name.to_string())),
            emitted: self.shared.emit_buffer(),
        }
    }

    /// The full key `key` has under this context (its branch prefix included): what
    /// names the step outside the run, e.g. in an idempotency marker.
    pub fn full_key(&self, key: impl Display) -> String {
        format!("{}{}", self.prefix, key)
    }

    fn claim_key(&self, key: impl Display) -> Result<String, StepError> {
        let key = format!("{}{}", self.prefix, key);
        if let Ok(outer) = STEP_BODY.try_with(String::clone) {
            return Err(StepError::Nested { key, outer });
        }
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
        match self.shared.commit(cp).await {
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

    /// Stops this execution after a failed write: a lost lease means someone else
    /// owns the run now; anything else means the database is unavailable.
    fn halt_on(&self, e: Error) {
        self.shared.halt(match e {
            Error::LeaseLost(_) => Halt::LeaseLost,
            Error::Unavailable(message) => Halt::Database(message),
            other => Halt::Database(other.to_string()),
        });
    }

    /// Makes every held step result durable before anything that may depend on it
    /// runs; a failed write halts the run here.
    async fn flush_held(&self) {
        let _in_flight = InFlight::new(&self.shared);
        if let Err(e) = self.shared.flush().await {
            self.shared.halt_on(e);
            suspend::<()>().await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_segments_decode_to_what_was_escaped() {
        for id in [
            "db",
            "a/b",
            "50%",
            "%2F",
            "%25/%",
            "call_1/../x",
            "",
            "%",
            "%2",
        ] {
            assert_eq!(decode_key_segment(&key_segment(id)), id, "{id:?}");
            assert!(!key_segment(id).contains('/'), "{id:?}");
        }
        // Decoding is one pass: an escaped escape stays one level deep.
        assert_eq!(decode_key_segment("%252F"), "%2F");
        assert_eq!(decode_key_segment("100%"), "100%");
    }
}

//! The run event log (§4): one entry per state change, numbered by `seq` without gaps.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::RunId;
use crate::status::string_enum;

string_enum!(
    /// Event types. `LlmToken` is live only and never persisted.
    EventKind {
        RunQueued => "RUN_QUEUED",
        RunStarted => "RUN_STARTED",
        StepStarted => "STEP_STARTED",
        StepSucceeded => "STEP_SUCCEEDED",
        StepFailed => "STEP_FAILED",
        StepRetryScheduled => "STEP_RETRY_SCHEDULED",
        LlmToken => "LLM_TOKEN",
        ToolCall => "TOOL_CALL",
        ToolResult => "TOOL_RESULT",
        Finding => "FINDING",
        // New firing alerts of the run's Alertmanager group arrived while it was active,
        // or some of its alerts resolved (written by the webhook intake, not the holder).
        AlertFiring => "ALERT_FIRING",
        AlertResolved => "ALERT_RESOLVED",
        ApprovalRequested => "APPROVAL_REQUESTED",
        ApprovalDecided => "APPROVAL_DECIDED",
        InputRequested => "INPUT_REQUESTED",
        InputReceived => "INPUT_RECEIVED",
        RunPaused => "RUN_PAUSED",
        RunResumed => "RUN_RESUMED",
        RunRetryWait => "RUN_RETRY_WAIT",
        RunSucceeded => "RUN_SUCCEEDED",
        RunFailed => "RUN_FAILED",
        RunCancelled => "RUN_CANCELLED",
        RunTimedOut => "RUN_TIMED_OUT",
    }
);

/// A persisted event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub run_id: RunId,
    pub seq: i64,
    pub kind: EventKind,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
}

/// An event about to be appended; its `seq` is assigned by the store in the same
/// statement or transaction as the change it records.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub payload: Value,
}

impl NewEvent {
    pub fn new(kind: EventKind, payload: Value) -> Self {
        Self { kind, payload }
    }

    /// An approval closed without a person's decision (it expired, or its run ended):
    /// the audit trail of the event log records it like a decision.
    pub(crate) fn approval_closed(
        id: crate::ids::ApprovalId,
        step_key: &str,
        reason: &str,
    ) -> Self {
        Self::new(
            EventKind::ApprovalDecided,
            serde_json::json!({
                "approval_id": id, "step_key": step_key,
                "status": crate::status::ApprovalStatus::Expired,
                "decided_by": null, "comment": reason,
            }),
        )
    }

    /// A question closed without an answer (it expired, or its run ended).
    pub(crate) fn question_closed(
        id: crate::ids::QuestionId,
        step_key: &str,
        reason: &str,
    ) -> Self {
        Self::new(
            EventKind::InputReceived,
            serde_json::json!({
                "question_id": id, "step_key": step_key,
                "status": crate::status::QuestionStatus::Expired,
                "answer": null, "reason": reason,
            }),
        )
    }

    pub(crate) fn is_final(&self) -> bool {
        self.kind.is_final()
    }
}

impl EventKind {
    /// The last event of a run's execution (until a retry re-queues it).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            EventKind::RunSucceeded
                | EventKind::RunFailed
                | EventKind::RunCancelled
                | EventKind::RunTimedOut
        )
    }
}

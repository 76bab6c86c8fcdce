//! A run: one execution of a workflow (or a team) on an input.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::ids::{RunId, TeamId};
use crate::page::Keyed;
use crate::status::{ApprovalMode, RunStatus, Trigger};

/// A run as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub id: RunId,
    pub team_id: Option<TeamId>,
    pub team_version_id: Option<uuid::Uuid>,
    pub workflow: String,
    pub trigger: Trigger,
    /// The schedule or notification that started it (`None` for manual and API runs).
    pub trigger_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// What its approval requests do: wait for a person, or are rejected at once.
    pub approval_mode: ApprovalMode,
    pub input: Json,
    pub status: RunStatus,
    pub output: Option<Json>,
    pub error: Option<String>,
    pub attempt: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub wake_at: Option<DateTime<Utc>>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub timeout_ms: i64,
    pub remaining_ms: Option<i64>,
    pub pause_requested: bool,
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Runs are listed newest first: by `(created_at, id)` descending.
impl Keyed for Run {
    type Key = (DateTime<Utc>, uuid::Uuid);
    fn key(&self) -> Self::Key {
        (self.created_at, self.id.0)
    }
}

/// Filters for listing runs; all optional.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub statuses: Vec<RunStatus>,
    pub team_id: Option<TeamId>,
    pub trigger: Option<Trigger>,
    pub trigger_id: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

//! An approval: a person's decision on a risky action, kept with its run.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::ids::{ApprovalId, RunId};
use crate::page::Keyed;
use crate::status::ApprovalStatus;

/// An approval as stored; kept with its run for as long as the run exists.
#[derive(Clone, Debug, PartialEq)]
pub struct Approval {
    pub id: ApprovalId,
    pub run_id: RunId,
    pub step_key: String,
    pub tool: String,
    pub args: Json,
    pub risk_note: Option<String>,
    pub status: ApprovalStatus,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub comment: Option<String>,
}

/// Pending approvals are listed oldest first: by `(requested_at, id)`.
impl Keyed for Approval {
    type Key = (DateTime<Utc>, uuid::Uuid);
    fn key(&self) -> Self::Key {
        (self.requested_at, self.id.0)
    }
}

//! A step: one durable unit of a run.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::ids::RunId;
use crate::page::Keyed;
use crate::status::StepStatus;

/// A step as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The row's id: orders steps recorded at the same instant.
    pub id: uuid::Uuid,
    pub run_id: RunId,
    pub key: String,
    pub status: StepStatus,
    pub input: Option<Json>,
    pub output: Option<Json>,
    /// Tokens and cost over every attempt (zero when nothing was recorded).
    pub usage: crate::usage::Usage,
    pub error: Option<String>,
    pub attempts: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A run's steps are listed in the order first recorded: by `(created_at, id)`.
impl Keyed for Step {
    type Key = (DateTime<Utc>, uuid::Uuid);
    fn key(&self) -> Self::Key {
        (self.created_at, self.id)
    }
}

//! A question a run asked an operator.

use chrono::{DateTime, Utc};

use crate::ids::{QuestionId, RunId};
use crate::page::Keyed;
use crate::status::QuestionStatus;

/// A question as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Question {
    pub id: QuestionId,
    pub run_id: RunId,
    pub step_key: String,
    pub question: String,
    pub status: QuestionStatus,
    pub answer: Option<String>,
    pub answered_by: Option<String>,
    pub answered_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Pending questions are listed oldest first: by `(created_at, id)`.
impl Keyed for Question {
    type Key = (DateTime<Utc>, uuid::Uuid);
    fn key(&self) -> Self::Key {
        (self.created_at, self.id.0)
    }
}

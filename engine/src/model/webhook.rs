//! A remediation webhook as listings show it: its signing secret only as a masked
//! hint.

use chrono::{DateTime, Utc};

use crate::ids::WebhookId;

/// A webhook without its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub id: WebhookId,
    pub name: String,
    /// Where actions are posted (never carries credentials).
    pub url: String,
    /// What may be shown of the signing secret, e.g. `…f00d`.
    pub secret_hint: String,
    pub timeout_ms: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

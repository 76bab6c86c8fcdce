//! An API key as listed (never the key or its hash).

use chrono::{DateTime, Utc};

use crate::ids::{ApiKeyId, UserId};
use crate::page::Keyed;
use crate::role::Role;

/// An API key as listings show it: its prefix, never the key or its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub name: String,
    /// The 8 characters after `aiops_`, which tell keys apart without revealing them.
    pub prefix: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Updated by authentication, at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Neither revoked nor expired at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

/// A user's keys are listed oldest first: by `(created_at, id)`.
impl Keyed for ApiKey {
    type Key = (DateTime<Utc>, uuid::Uuid);
    fn key(&self) -> Self::Key {
        (self.created_at, self.id.0)
    }
}

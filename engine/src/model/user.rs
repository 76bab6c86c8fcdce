//! A user of the API and console (never with its password hash).

use chrono::{DateTime, Utc};

use crate::ids::UserId;
use crate::page::Keyed;
use crate::role::Role;

/// A user as the rest of the system sees it: no password hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Users are listed by username (unique).
impl Keyed for User {
    type Key = String;
    fn key(&self) -> String {
        self.username.clone()
    }
}

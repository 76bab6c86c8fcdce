//! A team and its versions.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::ids::TeamId;
use crate::page::Keyed;

/// A team with its latest version's spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Team {
    pub id: TeamId,
    pub name: String,
    pub description: Option<String>,
    pub version: i32,
    pub version_id: uuid::Uuid,
    pub spec: Json,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Teams are listed by name (unique).
impl Keyed for Team {
    type Key = String;
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// One version of a team.
#[derive(Clone, Debug, PartialEq)]
pub struct TeamVersion {
    pub id: uuid::Uuid,
    pub version: i32,
    pub spec: Json,
    pub created_at: DateTime<Utc>,
}

/// A team's versions are listed oldest first: by `version`.
impl Keyed for TeamVersion {
    type Key = i32;
    fn key(&self) -> i32 {
        self.version
    }
}

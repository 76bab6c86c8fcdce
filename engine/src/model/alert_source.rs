//! A named connection to a Prometheus and/or an Alertmanager, as listings show it:
//! its credential only as a masked hint.

use chrono::{DateTime, Utc};

use crate::ids::AlertSourceId;

/// How requests to an alert source authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    None,
    Bearer,
    Basic,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::None => "NONE",
            AuthKind::Bearer => "BEARER",
            AuthKind::Basic => "BASIC",
        }
    }
}

impl std::str::FromStr for AuthKind {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "NONE" => Ok(AuthKind::None),
            "BEARER" => Ok(AuthKind::Bearer),
            "BASIC" => Ok(AuthKind::Basic),
            other => Err(crate::Error::Corrupt(format!(
                "unknown auth kind {other:?}"
            ))),
        }
    }
}

/// An alert source without its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSource {
    pub id: AlertSourceId,
    pub name: String,
    pub prometheus_url: Option<String>,
    pub alertmanager_url: Option<String>,
    pub auth_kind: AuthKind,
    /// The basic-auth user name (not a secret).
    pub username: Option<String>,
    /// What may be shown of the token or password, e.g. `…f00d`.
    pub auth_hint: Option<String>,
    pub timeout_ms: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

//! Errors of the engine's public operations.

use crate::auth::{Ceiling, KeyAction, Role};
use crate::status::{IllegalTransition, UnknownState};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("run {run_id}: {source}")]
    IllegalTransition {
        run_id: String,
        source: IllegalTransition,
    },
    #[error("{what} {id} is {status}, not PENDING: it was already decided")]
    NotPending {
        what: &'static str,
        id: String,
        status: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// A document (team file, …) broke rules; every violation with its path.
    #[error("{} violation(s): {}", .0.len(), .0.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; "))]
    Violations(Vec<crate::topology::Violation>),
    /// The worker's lease on the run is gone (expired, taken over, or the run was
    /// cancelled): nothing it writes may land.
    #[error("lease on run {0} was lost")]
    LeaseLost(String),
    /// Wrong, unknown, revoked or expired credentials, or a disabled user. Deliberately
    /// does not say which, so it cannot be used to find out which users exist.
    #[error("authentication failed: invalid credentials")]
    Unauthenticated,
    /// The principal's role (or the role of the user a key is for) is too low.
    #[error("forbidden: requires role {needed}, has {has}")]
    Forbidden { needed: Role, has: Role },
    /// An API key operation above a role ceiling: a caller creates and revokes keys
    /// only up to its own role, and no key has more than its user's role.
    #[error("forbidden: cannot {action} an API key with role {asked}: {ceiling} has role {has}")]
    KeyAboveCeiling {
        action: KeyAction,
        asked: Role,
        ceiling: Ceiling,
        has: Role,
    },
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// The database cannot be connected to; the message says why and where.
    #[error("{0}")]
    Connect(String),
    /// The database could not be reached or failed mid-operation; retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused a write for its own content (a value it cannot store);
    /// writing it again cannot succeed.
    #[error("the database refused the data: {0}")]
    Refused(String),
    /// The database failed a statement (see [`DatabaseError::failure`]).
    #[error(transparent)]
    Database(crate::store::DatabaseError),
}

pub use crate::store::{DatabaseError, DbFailure};

impl From<UnknownState> for Error {
    fn from(e: UnknownState) -> Self {
        Error::Corrupt(e.to_string())
    }
}

impl Error {
    /// Worth retrying the same operation at once (a lost race, not a bad request).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Database(e) => e.failure() == DbFailure::Conflict,
            _ => false,
        }
    }

    pub(crate) fn not_found(what: &'static str, id: impl ToString) -> Self {
        Error::NotFound {
            what,
            id: id.to_string(),
        }
    }
}

//! Database errors: kept opaque outside the store, classified by what a caller can do.

/// How a database error should be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbFailure {
    /// Lost a race (deadlock, serialization failure, busy database): retry at once.
    Conflict,
    /// The database refused this statement's data; retrying the same data fails again.
    Content,
    /// Connection, resources, anything else: the database may come back.
    Unavailable,
}

/// Classifies a database error by its SQLSTATE (Postgres) or result code (SQLite).
fn classify(e: &sea_orm::DbErr) -> DbFailure {
    use sea_orm::{DbErr, RuntimeErr};
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = e else {
        return DbFailure::Unavailable;
    };
    let sea_orm::sqlx::Error::Database(db) = &**e else {
        return DbFailure::Unavailable;
    };
    let code = db.code().unwrap_or_default();
    let code = code.as_ref();
    if db
        .try_downcast_ref::<sea_orm::sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        return match code.get(..2) {
            Some("40") => DbFailure::Conflict, // deadlock, serialization failure
            // data exception, integrity violation, program limit (a value too large)
            Some("22" | "23" | "54") => DbFailure::Content,
            _ => DbFailure::Unavailable,
        };
    }
    // SQLite result codes (the primary code is the low byte of an extended one).
    match code.parse::<i64>().map(|c| c & 0xff) {
        Ok(5 | 6) => DbFailure::Conflict,            // BUSY, LOCKED
        Ok(18 | 19 | 20 | 25) => DbFailure::Content, // TOOBIG, CONSTRAINT, MISMATCH, RANGE
        _ => DbFailure::Unavailable,
    }
}

/// A statement the database failed.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DatabaseError(#[from] sea_orm::DbErr);

impl DatabaseError {
    /// What kind of failure this is: a lost race, refused data, or an unavailable database.
    pub fn failure(&self) -> DbFailure {
        classify(&self.0)
    }

    /// A unique index refused the row (an idempotency key already taken, say).
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self.0.sql_err(),
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
        )
    }
}

impl From<sea_orm::DbErr> for crate::Error {
    fn from(e: sea_orm::DbErr) -> Self {
        crate::Error::Database(DatabaseError(e))
    }
}

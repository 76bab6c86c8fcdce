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
    code.parse::<i32>()
        .map_or(DbFailure::Unavailable, classify_sqlite)
}

/// An SQLite result code (the primary code is the low byte of an extended one).
fn classify_sqlite(code: i32) -> DbFailure {
    match code & 0xff {
        5 | 6 => DbFailure::Conflict,            // BUSY, LOCKED
        18 | 19 | 20 | 25 => DbFailure::Content, // TOOBIG, CONSTRAINT, MISMATCH, RANGE
        _ => DbFailure::Unavailable,
    }
}

/// A statement the database failed.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DatabaseError(Cause);

/// Through sea-orm and sqlx, or on the SQLite writer's own connection (rusqlite).
#[derive(Debug, thiserror::Error)]
enum Cause {
    #[error(transparent)]
    Orm(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

impl DatabaseError {
    /// What kind of failure this is: a lost race, refused data, or an unavailable database.
    pub fn failure(&self) -> DbFailure {
        match &self.0 {
            Cause::Orm(e) => classify(e),
            Cause::Sqlite(e) => e
                .sqlite_error()
                .map_or(DbFailure::Unavailable, |e| classify_sqlite(e.extended_code)),
        }
    }

    /// A unique index refused the row (an idempotency key already taken, say).
    pub fn is_unique_violation(&self) -> bool {
        use rusqlite::ffi::{SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
        match &self.0 {
            Cause::Orm(e) => matches!(
                e.sql_err(),
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
            ),
            Cause::Sqlite(e) => e.sqlite_error().is_some_and(|e| {
                matches!(
                    e.extended_code,
                    SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_PRIMARYKEY
                )
            }),
        }
    }
}

impl From<sea_orm::DbErr> for crate::Error {
    fn from(e: sea_orm::DbErr) -> Self {
        crate::Error::Database(DatabaseError(Cause::Orm(e)))
    }
}

impl From<rusqlite::Error> for crate::Error {
    fn from(e: rusqlite::Error) -> Self {
        crate::Error::Database(DatabaseError(Cause::Sqlite(e)))
    }
}

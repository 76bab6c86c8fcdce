//! The only module that issues SQL. Functions take `&impl ConnectionTrait` so callers
//! compose transactions; the hot path (claim, heartbeat, fenced checkpoint) is
//! hand-written SQL, one statement per table and batch.

pub mod api_keys;
pub mod approvals;
pub mod checkpoint;
pub mod entity;
pub mod events;
pub(crate) mod keyset;
pub mod leases;
pub mod questions;
pub mod runs;
pub mod steps;
pub mod teams;
pub mod users;

use std::time::Duration;

use aiops_migrations::MigratorTrait;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, Value,
};

use crate::Result;

/// Connects to Postgres (`postgres://…`) or SQLite (`sqlite://path`), creating the
/// SQLite file and its directory when missing.
pub async fn connect(url: &str) -> Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10));
    if url.starts_with("sqlite:") {
        if let Some(path) = sqlite_path(url)
            && let Some(dir) = std::path::Path::new(&path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                crate::Error::Invalid(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        opts.max_connections(8).map_sqlx_sqlite_opts(|o| {
            o.create_if_missing(true)
                .journal_mode(sqlx_sqlite_journal())
                .synchronous(sqlx_sqlite_sync())
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    } else {
        // The hot-path statements are fixed and parameterised; re-planning them on
        // every execution (custom plans) costs more than executing them.
        opts.max_connections(16)
            .min_connections(2)
            .map_sqlx_postgres_opts(|o| o.options([("plan_cache_mode", "force_generic_plan")]));
    }
    Ok(Database::connect(opts).await?)
}

fn sqlx_sqlite_journal() -> sea_orm::sqlx::sqlite::SqliteJournalMode {
    sea_orm::sqlx::sqlite::SqliteJournalMode::Wal
}

// WAL + NORMAL is durable across process crashes; only an OS crash may lose the
// last commits, which is the usual trade for an embedded single-node store.
fn sqlx_sqlite_sync() -> sea_orm::sqlx::sqlite::SqliteSynchronous {
    sea_orm::sqlx::sqlite::SqliteSynchronous::Normal
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    aiops_migrations::Migrator::up(db, None).await?;
    Ok(())
}

pub(crate) fn is_postgres(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// Builds a statement from SQL written with Postgres `$n` placeholders; on SQLite
/// they become `?n`, which SQLite binds by number the same way.
pub(crate) fn stmt(db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Statement {
    let backend = db.get_database_backend();
    let sql = if backend == DbBackend::Postgres {
        sql.to_owned()
    } else {
        sql.replace('$', "?")
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// `$from, $from+1, …` for an `IN (…)` list of `n` values.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

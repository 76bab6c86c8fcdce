//! The only module that issues SQL. Functions take `&impl ConnectionTrait` so callers
//! compose transactions; the hot path (claim, heartbeat, fenced checkpoint) is
//! hand-written SQL, one statement per table and batch.

pub mod api_keys;
pub mod approvals;
pub mod checkpoint;
pub mod entity;
mod error;
pub mod events;
pub(crate) mod keyset;
pub mod leases;
pub mod listener;
pub mod questions;
pub mod runs;
pub mod steps;
pub mod teams;
#[cfg(test)]
pub(crate) mod testing;
pub mod users;

use std::time::Duration;

use aiops_migrations::MigratorTrait;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait, Value,
};

use crate::Result;

pub use error::{DatabaseError, DbFailure};

/// A `tracing` filter that keeps the database libraries' own logs to warnings.
pub const QUIET_DATABASE_LOGS: &str = "sqlx=warn,sea_orm=warn";

/// The database handle the rest of the engine holds and passes back to the store.
pub(crate) type Db = DatabaseConnection;

/// Connects to Postgres (`postgres://…`) or SQLite (`sqlite://path`), creating the
/// SQLite file and its directory when missing. On Postgres every session carries
/// `application_name` (which `pg_stat_activity` shows), so operators can tell the
/// processes apart.
pub async fn connect_as(url: &str, application_name: &str) -> Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10));
    if url.starts_with("sqlite:") {
        if let Some(path) = sqlite_path(url) {
            create_private_file(std::path::Path::new(&path))?;
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
            .map_sqlx_postgres_opts({
                let application_name = application_name.to_owned();
                move |o| {
                    o.options([("plan_cache_mode", "force_generic_plan")])
                        .application_name(&application_name)
                }
            });
    }
    Ok(Database::connect(opts).await?)
}

/// Creates `dir` (and missing parents) readable by its owner only (0700); an
/// existing directory is left as it is.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| {
        crate::Error::Invalid(format!("cannot create directory {}: {e}", dir.display()))
    })
}

/// Creates the SQLite database file (and its directory) readable by its owner only
/// before SQLite opens it: SQLite gives its WAL and shared-memory files the mode of
/// the database file. An existing file is left as it is.
fn create_private_file(path: &std::path::Path) -> Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        create_private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(crate::Error::Invalid(format!(
            "cannot create the SQLite database {}: {e}",
            path.display()
        ))),
    }
}

fn sqlx_sqlite_journal() -> sea_orm::sqlx::sqlite::SqliteJournalMode {
    sea_orm::sqlx::sqlite::SqliteJournalMode::Wal
}

// WAL + NORMAL is durable across process crashes; only an OS crash may lose the
// last commits, which is the usual trade for an embedded single-node store.
fn sqlx_sqlite_sync() -> sea_orm::sqlx::sqlite::SqliteSynchronous {
    sea_orm::sqlx::sqlite::SqliteSynchronous::Normal
}

pub(crate) fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

/// Begins a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later
/// fails with "database is locked" when another connection wrote in between, and no
/// busy timeout helps it. Postgres ignores the mode.
pub async fn begin_write<C>(db: &C) -> Result<C::Transaction>
where
    C: ConnectionTrait + TransactionTrait,
{
    let options = TransactionOptions {
        sqlite_transaction_mode: (!is_postgres(db)).then_some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    };
    Ok(db.begin_with_options(options).await?)
}

/// Counts every statement `db` sends into `counter`.
pub(crate) fn count_statements(db: &mut Db, counter: std::sync::Arc<std::sync::atomic::AtomicU64>) {
    db.set_metric_callback(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
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

//! The only module that issues SQL. Functions take `&impl ConnectionTrait` so callers
//! compose transactions; the hot path (claim, heartbeat, fenced checkpoint) is
//! hand-written SQL, one statement per table and batch.

pub(crate) mod alert_instances;
pub(crate) mod alert_notifications;
pub mod alert_sources;
pub(crate) mod alertmanager_receivers;
pub mod api_keys;
pub mod approvals;
pub mod checkpoint;
mod connect;
pub mod entity;
mod error;
pub mod events;
pub(crate) mod keyset;
pub mod leases;
pub mod listener;
pub(crate) mod llm_credentials;
pub(crate) mod llm_models;
pub(crate) mod llm_providers;
pub(crate) mod own_connection;
mod postgres_batch;
pub mod questions;
pub mod runs;
pub(crate) mod schedules;
mod sealed;
mod sqlite_batch;
mod sqlite_direct;
pub mod steps;
pub mod teams;
#[cfg(test)]
pub(crate) mod testing;
pub mod users;
pub mod webhooks;

use aiops_migrations::MigratorTrait;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait, Value,
};

use crate::Result;

pub(crate) use connect::{
    connect_as, connect_leases, create_private_dir, create_sqlite_parent, sqlite_path,
};
pub use error::{DatabaseError, DbFailure};

/// A `tracing` filter that keeps the database libraries' own logs to warnings.
pub const QUIET_DATABASE_LOGS: &str = "sqlx=warn,sea_orm=warn";

/// The database handle the rest of the engine holds and passes back to the store.
pub(crate) type Db = DatabaseConnection;

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

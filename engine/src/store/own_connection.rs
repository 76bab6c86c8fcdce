//! The connection a checkpoint writer commits on, kept from one batch to the next.
//!
//! Taking a pooled connection per batch had two costs on the hot path: on SQLite
//! (WAL mode) a connection drops its whole page cache when it finds that another
//! connection wrote since its last transaction, so nearly every commit read the
//! pages of `runs`, `steps`, `events` and their indexes from the operating system
//! again; on both databases every release spawned a task to hand the connection back.
//! On SQLite the connection is not sqlx's at all but one called inline
//! ([`DirectConnection`]).

use sea_orm::sqlx::{self, Postgres, pool::PoolConnection};
use sea_orm::{DbErr, RuntimeErr, Value, Values};
use sea_query_sqlx::SqlxValues;

use super::sqlite_direct::{DirectConnection, Row, Statement};
use crate::Result;

/// An [`OwnConnection`] that other writes share with the checkpoint writer: on SQLite
/// a run's start goes through the writer's connection, so that the next checkpoint
/// finds its page cache still valid.
pub(crate) type SharedConnection = std::sync::Arc<tokio::sync::Mutex<OwnConnection>>;

#[derive(Default)]
pub struct OwnConnection {
    /// SQLite's is not the pool's: it is called inline (see [`DirectConnection`]).
    sqlite: Option<DirectConnection>,
    postgres: Option<PoolConnection<Postgres>>,
}

impl OwnConnection {
    /// Lets go of the connections without using them again: a statement may be
    /// in flight on them (the task using them went away). The pool finishes or
    /// closes a Postgres connection it gets back; SQLite's is closed.
    pub(crate) fn discard(&mut self) {
        self.sqlite = None;
        self.postgres = None;
    }

    /// Runs `statements` in one transaction on the database of `pool`; their rows.
    /// Either all of them commit or none does.
    pub(super) async fn sqlite_transaction(
        &mut self,
        pool: &sqlx::SqlitePool,
        statements: Vec<Statement>,
    ) -> Result<Vec<Row>> {
        let conn = self.direct(pool)?;
        let done = conn.transaction(statements).await;
        self.keep_if_usable();
        done
    }

    /// [`sqlite_transaction`](Self::sqlite_transaction) in two parts, the second
    /// made from the first part's rows (see [`DirectConnection::transaction_then`]).
    pub(super) async fn sqlite_transaction_then(
        &mut self,
        pool: &sqlx::SqlitePool,
        first: Vec<Statement>,
        then: impl FnOnce(&[Row]) -> Result<Vec<Statement>>,
    ) -> Result<Vec<Row>> {
        let conn = self.direct(pool)?;
        let done = conn.transaction_then(first, then).await;
        self.keep_if_usable();
        done
    }

    /// The SQLite connection, opened on the database of `pool` if there is none.
    fn direct(&mut self, pool: &sqlx::SqlitePool) -> Result<&mut DirectConnection> {
        Ok(match &mut self.sqlite {
            Some(conn) => conn,
            empty => empty.insert(DirectConnection::open(&pool.connect_options())?),
        })
    }

    /// Closes the SQLite connection if a failed transaction left it unusable.
    fn keep_if_usable(&mut self) {
        if self.sqlite.as_ref().is_some_and(|conn| !conn.usable()) {
            self.sqlite = None;
        }
    }

    /// Runs one Postgres statement (its own transaction); its rows. After a failure
    /// the connection goes back to the pool, which closes it if it is broken, and
    /// the next call takes another.
    pub(super) async fn fetch_postgres(
        &mut self,
        pool: &sqlx::PgPool,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Vec<sqlx::postgres::PgRow>> {
        let conn = match &mut self.postgres {
            Some(conn) => conn,
            empty => empty.insert(pool.acquire().await.map_err(database_error)?),
        };
        let query = sqlx::query_with(sqlx::AssertSqlSafe(sql), SqlxValues(Values(values)));
        let rows = query.fetch_all(&mut **conn).await;
        if rows.is_err() {
            self.postgres = None;
        }
        rows.map_err(database_error)
    }
}

/// The error as sea-orm would have reported it, so that it is classified alike.
pub(super) fn database_error(e: sqlx::Error) -> crate::Error {
    DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(e))).into()
}

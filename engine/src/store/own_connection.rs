//! The connection a checkpoint writer commits on, kept from one batch to the next.
//!
//! Taking a pooled connection per batch had two costs on the hot path: on SQLite
//! (WAL mode) a connection drops its whole page cache when it finds that another
//! connection wrote since its last transaction, so nearly every commit read the
//! pages of `runs`, `steps`, `events` and their indexes from the operating system
//! again; on both databases every release spawned a task to hand the connection back.

use sea_orm::sqlx::{self, Postgres, Sqlite, pool::PoolConnection};
use sea_orm::{DbErr, RuntimeErr, Value, Values};
use sea_query_sqlx::SqlxValues;

use crate::Result;

/// An [`OwnConnection`] that other writes share with the checkpoint writer: on SQLite
/// a run's start goes through the writer's connection, so that the next checkpoint
/// finds its page cache still valid.
pub(crate) type SharedConnection = std::sync::Arc<tokio::sync::Mutex<OwnConnection>>;

#[derive(Default)]
pub struct OwnConnection {
    sqlite: Option<PoolConnection<Sqlite>>,
    postgres: Option<PoolConnection<Postgres>>,
    /// An SQLite script is under way: if this is dropped now (its caller cut short),
    /// the connection may be inside the script's transaction, and it is closed
    /// instead of going back to the pool.
    in_script: bool,
}

impl OwnConnection {
    /// Runs a script of several statements that begins and commits its own
    /// transaction, in one call to the connection's thread; its rows. A script that
    /// fails part-way is rolled back before this returns.
    pub(super) async fn run_sqlite_script(
        &mut self,
        pool: &sqlx::SqlitePool,
        sql: String,
        values: Vec<Value>,
    ) -> Result<Vec<sqlx::sqlite::SqliteRow>> {
        if self.in_script {
            // A shared holder was cut short inside its script: the connection may be
            // in that script's transaction. Closing it rolls that back.
            if let Some(mut conn) = self.sqlite.take() {
                conn.close_on_drop();
            }
        }
        let conn = match &mut self.sqlite {
            Some(conn) => conn,
            empty => empty.insert(pool.acquire().await.map_err(database_error)?),
        };
        let query = sqlx::query_with(sqlx::AssertSqlSafe(sql), SqlxValues(Values(values)));
        self.in_script = true;
        match query.fetch_all(&mut **conn).await {
            Ok(rows) => {
                self.in_script = false;
                Ok(rows)
            }
            Err(e) => {
                self.roll_back().await;
                Err(database_error(e))
            }
        }
    }

    /// Ends whatever part of a failed script's transaction is open. "No transaction
    /// is active" (the script failed at BEGIN) is fine; if the rollback fails too,
    /// the connection is closed and the next batch takes another.
    async fn roll_back(&mut self) {
        let Some(conn) = self.sqlite.as_mut() else {
            return;
        };
        match sqlx::query("ROLLBACK").execute(&mut **conn).await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("no transaction is active") => {}
            Err(_) => {
                if let Some(mut conn) = self.sqlite.take() {
                    conn.close_on_drop();
                }
            }
        }
        self.in_script = false;
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

impl Drop for OwnConnection {
    fn drop(&mut self) {
        if self.in_script
            && let Some(conn) = self.sqlite.as_mut()
        {
            conn.close_on_drop();
        }
    }
}

/// The error as sea-orm would have reported it, so that it is classified alike.
pub(super) fn database_error(e: sqlx::Error) -> crate::Error {
    DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(e))).into()
}

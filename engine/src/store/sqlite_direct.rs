//! The SQLite connection the checkpoint writer commits on, called inline.
//!
//! sqlx runs each SQLite connection on a thread of its own, and every call to it is
//! two thread hand-offs. On a virtual machine with an idle vCPU, waking a thread
//! costs tens of microseconds: the same small commit took 70–80 µs through sqlx and
//! 9 µs called inline (BENCHMARKS.md, "SQLite commits inline"). With WAL and
//! `synchronous = NORMAL` a commit does not wait for the disk, so the writer runs its
//! transactions inline, through rusqlite, on the same SQLite library as the pool.
//!
//! Nothing awaits inside a transaction, so a caller cut short can never leave one
//! open. The one wait, for another connection's write lock, comes before `BEGIN` and
//! is asynchronous: SQLite's own busy wait would block the runtime's thread. The WAL
//! is checkpointed as SQLite does by default, by the commit that filled 1,000 pages,
//! inline (BENCHMARKS.md says what the alternatives did).

use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags};
use sea_orm::Value;
use sea_orm::sqlx::sqlite::SqliteConnectOptions;

use crate::{Error, Result};

/// How long a transaction waits for another connection's write lock, as long as the
/// pool's connections wait (`connect.rs`).
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// Prepared statements kept: the statements of every batch size up to 128 runs.
const STATEMENT_CACHE: usize = 1024;

/// One statement and its parameters, anonymous (`?`) and bound in order.
pub(crate) struct Statement {
    pub(crate) sql: String,
    pub(crate) values: Vec<Value>,
}

/// A row a statement returned, column by column.
pub(crate) type Row = Vec<SqlValue>;

pub(crate) struct DirectConnection {
    conn: Connection,
}

impl DirectConnection {
    /// Opens the file the pool with `options` opens (`connect_as` refuses an
    /// in-memory database).
    pub(crate) fn open(options: &SqliteConnectOptions) -> Result<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_PRIVATE_CACHE;
        let conn = Connection::open_with_flags(options.get_filename(), flags)?;
        conn.busy_timeout(Duration::ZERO)?;
        // The pool's settings that matter to a writer (journal_mode is the file's);
        // statement journals and the batch's temp table in memory, not in temp files.
        conn.execute_batch(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY;",
        )?;
        // A batch's statements differ with its size (seven per size up to the largest
        // batch): keep every shape a busy writer uses, as compiling one costs more
        // than running it.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self { conn })
    }

    /// Runs `statements` in one `BEGIN IMMEDIATE` transaction; the rows they
    /// returned, in order. Either all of them commit or none does.
    pub(crate) async fn transaction(&mut self, statements: Vec<Statement>) -> Result<Vec<Row>> {
        self.transaction_then(statements, |_| Ok(Vec::new())).await
    }

    /// [`transaction`](Self::transaction) in two parts: `then` makes the second
    /// part's statements from the rows the first part returned (nothing awaits in
    /// between); the first part's rows. Either all of them commit or none does.
    pub(crate) async fn transaction_then(
        &mut self,
        first: Vec<Statement>,
        then: impl FnOnce(&[Row]) -> Result<Vec<Statement>>,
    ) -> Result<Vec<Row>> {
        self.begin().await?;
        let done = self.run(first).and_then(|rows| {
            self.run(then(&rows)?)?;
            self.simple("COMMIT").map(|()| rows)
        });
        if done.is_err() && !self.conn.is_autocommit() {
            // Failing, the connection is closed by its holder (see `usable`).
            let _ = self.simple("ROLLBACK");
        }
        done
    }

    /// False once a failed transaction could not be rolled back: the holder closes
    /// the connection (which rolls it back) and opens another.
    pub(crate) fn usable(&self) -> bool {
        self.conn.is_autocommit()
    }

    /// Takes the write lock, waiting for another connection's without blocking.
    async fn begin(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            match self.simple("BEGIN IMMEDIATE") {
                Err(Error::Database(e)) if e.failure() == super::DbFailure::Conflict => {
                    if started.elapsed() >= BUSY_WAIT {
                        return Err(Error::Database(e));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    fn simple(&self, sql: &str) -> Result<()> {
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    fn run(&self, statements: Vec<Statement>) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        for statement in statements {
            let mut prepared = self.conn.prepare_cached(&statement.sql)?;
            if prepared.parameter_count() != statement.values.len() {
                return Err(Error::Invalid(format!(
                    "a statement has {} parameters and {} values",
                    prepared.parameter_count(),
                    statement.values.len()
                )));
            }
            for (i, value) in statement.values.into_iter().enumerate() {
                prepared.raw_bind_parameter(i + 1, sql_value(value)?)?;
            }
            let columns = prepared.column_count();
            let mut returned = prepared.raw_query();
            while let Some(row) = returned.next()? {
                rows.push(
                    (0..columns)
                        .map(|i| row.get(i))
                        .collect::<rusqlite::Result<_>>()?,
                );
            }
        }
        Ok(rows)
    }
}

/// `value` as sqlx stores it on SQLite (sea-query-sqlx's binding), so that rows the
/// writer writes read back alike and compare alike (timestamps are compared as text).
fn sql_value(value: Value) -> Result<SqlValue> {
    fn or_null<T>(v: Option<T>, f: impl FnOnce(T) -> SqlValue) -> SqlValue {
        v.map_or(SqlValue::Null, f)
    }
    let text = SqlValue::Text;
    Ok(match value {
        Value::Bool(v) => or_null(v, |b| SqlValue::Integer(b.into())),
        Value::TinyInt(v) => or_null(v, |i| SqlValue::Integer(i.into())),
        Value::SmallInt(v) => or_null(v, |i| SqlValue::Integer(i.into())),
        Value::Int(v) => or_null(v, |i| SqlValue::Integer(i.into())),
        Value::BigInt(v) => or_null(v, SqlValue::Integer),
        Value::TinyUnsigned(v) => or_null(v, |i| SqlValue::Integer(i.into())),
        Value::SmallUnsigned(v) => or_null(v, |i| SqlValue::Integer(i.into())),
        Value::Unsigned(v) => or_null(v, |i| SqlValue::Integer(i.into())),
        Value::BigUnsigned(Some(i)) => SqlValue::Integer(
            i64::try_from(i).map_err(|_| Error::Refused(format!("{i} is too large")))?,
        ),
        Value::BigUnsigned(None) => SqlValue::Null,
        Value::Float(v) => or_null(v, |f| SqlValue::Real(f.into())),
        Value::Double(v) => or_null(v, SqlValue::Real),
        Value::String(v) => or_null(v, text),
        Value::Enum(sea_orm::sea_query::OptionEnum::Some(v)) => text(v.value.into_owned()),
        Value::Enum(sea_orm::sea_query::OptionEnum::None(_)) => SqlValue::Null,
        Value::Char(v) => or_null(v, |c| text(c.to_string())),
        Value::Bytes(v) => or_null(v, SqlValue::Blob),
        Value::Json(v) => or_null(v, |j| text(j.to_string())),
        Value::ChronoDate(v) => or_null(v, |d| text(d.format("%F").to_string())),
        Value::ChronoTime(v) => or_null(v, |t| text(t.format("%T%.f").to_string())),
        Value::ChronoDateTime(v) => or_null(v, |t| text(t.format("%F %T%.f").to_string())),
        Value::ChronoDateTimeUtc(v) => or_null(v, |t| text(rfc3339(&t))),
        Value::ChronoDateTimeLocal(v) => or_null(v, |t| text(rfc3339(&t))),
        Value::ChronoDateTimeWithTimeZone(v) => or_null(v, |t| text(rfc3339(&t))),
        Value::Uuid(v) => or_null(v, |u| SqlValue::Blob(u.as_bytes().to_vec())),
        // Not shown: the value may be anything a run holds.
        _ => {
            return Err(Error::Invalid(
                "the SQLite writer cannot store a value of this kind".into(),
            ));
        }
    })
}

fn rfc3339<Tz: chrono::TimeZone>(t: &chrono::DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use sea_orm::sqlx::{self, Row as _};
    use sea_orm::{Value, Values};
    use sea_query_sqlx::SqlxValues;

    use super::{DirectConnection, Statement};
    use crate::store::testing::{Backend, TestDb};

    /// A new SQLite database with one table, created through the pool.
    async fn with_table(create: &str) -> TestDb {
        let t = TestDb::create(Backend::Sqlite).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(create.to_owned()))
            .execute(t.db.get_sqlite_connection_pool())
            .await
            .unwrap();
        t
    }

    /// Every kind of value the engine writes, stored once through sqlx and once
    /// through the direct connection, is the same bytes with the same type: rows the
    /// writer writes must read back, sort and compare as the pool's do.
    #[tokio::test]
    async fn values_are_stored_exactly_as_sqlx_stores_them() {
        let t = with_table("CREATE TABLE v (via TEXT, n INTEGER, x)").await;
        let pool = t.db.get_sqlite_connection_pool();
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 6, 7, 8).unwrap()
            + chrono::Duration::microseconds(123_450);
        let values: Vec<Value> = vec![
            true.into(),
            (-7i32).into(),
            i64::MAX.into(),
            (9u32).into(),
            1.5f64.into(),
            "text ✓".into(),
            'c'.into(),
            vec![0u8, 1, 255].into(),
            serde_json::json!({ "a": [1, "two", null], "b": 1.25 }).into(),
            at.into(),
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap().into(),
            at.naive_utc().into(),
            uuid::Uuid::now_v7().into(),
            Value::String(None),
            Value::ChronoDateTimeUtc(None),
        ];
        for (n, value) in values.iter().enumerate() {
            let args = SqlxValues(Values(vec![(n as i64).into(), value.clone()]));
            sqlx::query_with("INSERT INTO v VALUES ('sqlx', ?, ?)", args)
                .execute(pool)
                .await
                .unwrap();
        }
        let mut direct = DirectConnection::open(&pool.connect_options()).unwrap();
        let statements = values
            .into_iter()
            .enumerate()
            .map(|(n, value)| Statement {
                sql: "INSERT INTO v VALUES ('direct', ?, ?)".into(),
                values: vec![(n as i64).into(), value],
            })
            .collect();
        direct.transaction(statements).await.unwrap();

        let stored = |via: &'static str| async move {
            sqlx::query("SELECT typeof(x), quote(x) FROM v WHERE via = ? ORDER BY n")
                .bind(via)
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
                .collect::<Vec<_>>()
        };
        let (by_sqlx, by_direct) = (stored("sqlx").await, stored("direct").await);
        assert_eq!(by_sqlx.len(), 15);
        assert_eq!(by_direct, by_sqlx);
    }

    /// Rows in the table `u`, read through the pool.
    async fn count_u(pool: &sqlx::SqlitePool) -> i64 {
        sqlx::query("SELECT count(*) FROM u")
            .fetch_one(pool)
            .await
            .unwrap()
            .get::<i64, _>(0)
    }

    /// A statement failing part-way rolls back what the transaction wrote before it,
    /// and the same connection commits the next transaction.
    #[tokio::test]
    async fn a_failing_statement_rolls_back_the_whole_transaction() {
        let t = with_table("CREATE TABLE u (k TEXT PRIMARY KEY)").await;
        let pool = t.db.get_sqlite_connection_pool();
        let insert = |k: &str| Statement {
            sql: "INSERT INTO u VALUES (?)".into(),
            values: vec![k.into()],
        };
        let mut direct = DirectConnection::open(&pool.connect_options()).unwrap();
        let e = direct
            .transaction(vec![insert("a"), insert("b"), insert("a")])
            .await
            .unwrap_err();
        assert!(
            matches!(&e, crate::Error::Database(d) if d.is_unique_violation()),
            "{e:?}"
        );
        assert!(direct.usable());
        assert_eq!(count_u(pool).await, 0);
        direct.transaction(vec![insert("c")]).await.unwrap();
        assert_eq!(count_u(pool).await, 1);
    }

    /// A second part made from the first part's rows commits with it, and when the
    /// second part fails (or cannot be made) the first part's writes are rolled back.
    #[tokio::test(flavor = "current_thread")]
    async fn a_transaction_in_two_parts_commits_or_rolls_back_as_one() {
        let t = with_table("CREATE TABLE u (k TEXT PRIMARY KEY)").await;
        let pool = t.db.get_sqlite_connection_pool();
        let insert = |k: &str| Statement {
            sql: "INSERT INTO u VALUES (?) RETURNING k".into(),
            values: vec![k.into()],
        };
        let mut direct = DirectConnection::open(&pool.connect_options()).unwrap();
        // The second part fails: a key the first part wrote.
        let e = direct
            .transaction_then(vec![insert("a")], |rows| match &rows[0][0] {
                rusqlite::types::Value::Text(k) => Ok(vec![insert(k)]),
                other => panic!("{other:?}"),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&e, crate::Error::Database(d) if d.is_unique_violation()),
            "{e:?}"
        );
        assert!(direct.usable());
        assert_eq!(count_u(pool).await, 0);
        // The second part cannot be made.
        direct
            .transaction_then(vec![insert("a")], |_| {
                Err(crate::Error::Invalid("no second part".into()))
            })
            .await
            .unwrap_err();
        assert_eq!(count_u(pool).await, 0);
        let rows = direct
            .transaction_then(vec![insert("a")], |_| Ok(vec![insert("b")]))
            .await
            .unwrap();
        assert_eq!(rows, [vec![rusqlite::types::Value::Text("a".into())]]);
        assert_eq!(count_u(pool).await, 2);
    }

    /// While another connection holds the write lock the transaction waits without
    /// blocking the runtime's thread, and commits once the lock is free.
    #[tokio::test(flavor = "current_thread")]
    async fn waits_for_another_writer_without_blocking_the_runtime() {
        let t = with_table("CREATE TABLE w (k INTEGER)").await;
        let pool = t.db.get_sqlite_connection_pool();
        let mut other = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("INSERT INTO w VALUES (1)")
            .execute(&mut *other)
            .await
            .unwrap();
        let mut direct = DirectConnection::open(&pool.connect_options()).unwrap();
        let waiting = direct.transaction(vec![Statement {
            sql: "INSERT INTO w VALUES (2)".into(),
            values: vec![],
        }]);
        // On a single-threaded runtime the release below only runs if the waiting
        // transaction yields instead of blocking in SQLite's busy handler.
        let release = async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            other.commit().await.unwrap();
        };
        let (done, ()) = tokio::join!(waiting, release);
        done.unwrap();
        let n: i64 = sqlx::query("SELECT count(*) FROM w")
            .fetch_one(pool)
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2);
    }

    /// The WAL is checkpointed (SQLite's autocheckpoint, kept on this connection).
    /// Without it each of these one-row commits would add a frame and the WAL would
    /// hold all of them.
    #[tokio::test]
    async fn the_wal_is_checkpointed() {
        let t = with_table("CREATE TABLE c (k INTEGER)").await;
        let pool = t.db.get_sqlite_connection_pool();
        let mut direct = DirectConnection::open(&pool.connect_options()).unwrap();
        let commits = 3_000;
        for k in 0..commits {
            let insert = Statement {
                sql: "INSERT INTO c VALUES (?)".into(),
                values: vec![i64::from(k).into()],
            };
            direct.transaction(vec![insert]).await.unwrap();
        }
        let wal = format!("{}-wal", pool.connect_options().get_filename().display());
        let bytes = std::fs::metadata(&wal).unwrap().len();
        // A WAL frame is a 24-byte header and one page.
        let frames = bytes.saturating_sub(32) / (24 + 4096);
        assert!(
            frames < commits as u64 / 2,
            "{frames} frames in the WAL after {commits} commits"
        );
    }
}

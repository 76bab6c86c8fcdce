//! For the store's own tests: a fresh, migrated database per test, on Postgres and
//! SQLite (dropped afterwards). Without Postgres the Postgres half is skipped,
//! except under `CI=true`, where it fails.

use sea_orm::{ConnectionTrait, Database};

use super::Db;

const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Postgres,
    Sqlite,
}

/// A database that exists for one test.
pub(crate) struct TestDb {
    pub db: Db,
    drop_name: Option<String>,
    dir: Option<std::path::PathBuf>,
}

fn admin_url() -> String {
    std::env::var("AIOPS_TEST_PG_ADMIN_URL").unwrap_or_else(|_| PG_ADMIN_URL.to_owned())
}

impl TestDb {
    /// The generic plan of `sql` (prepared with `types`) on one of the engine's own
    /// Postgres sessions, as `EXPLAIN` prints it.
    #[cfg(test)]
    pub(crate) async fn generic_plan(&self, types: &str, sql: &str, args: &str) -> String {
        use sea_orm::{Statement, TransactionTrait};
        let txn = self.db.begin().await.unwrap();
        txn.execute_unprepared(&format!("PREPARE planned({types}) AS {sql}"))
            .await
            .unwrap();
        let rows = txn
            .query_all_raw(Statement::from_string(
                txn.get_database_backend(),
                format!("EXPLAIN EXECUTE planned({args})"),
            ))
            .await
            .unwrap();
        // A prepared statement outlives the transaction, on a pooled connection.
        txn.execute_unprepared("DEALLOCATE planned").await.unwrap();
        txn.rollback().await.unwrap();
        rows.iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub async fn create(backend: Backend) -> Option<TestDb> {
        let name = format!("aiops_unit_{}", uuid::Uuid::now_v7().simple());
        let (url, drop_name, dir) = match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(&name);
                (format!("sqlite://{}/t.db", dir.display()), None, Some(dir))
            }
            Backend::Postgres => {
                let admin = match Database::connect(admin_url()).await {
                    Ok(db) => db,
                    Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                        panic!("CI=true but Postgres is unreachable: {e}")
                    }
                    Err(e) => {
                        eprintln!("SKIPPED: Postgres unreachable ({e})");
                        return None;
                    }
                };
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create database");
                let base = admin_url();
                let url = format!("{}/{name}", &base[..base.rfind('/').expect("path")]);
                (url, Some(name), None)
            }
        };
        let db = super::connect_as(&url, "aiops test")
            .await
            .expect("connect");
        super::migrate(&db).await.expect("migrate");
        Some(TestDb { db, drop_name, dir })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        let Some(name) = self.drop_name.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let admin = Database::connect(admin_url()).await.ok()?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// A manual run of workflow "w", for store tests.
pub(crate) fn new_run() -> crate::store::runs::NewRun {
    crate::store::runs::NewRun {
        workflow: "w".into(),
        input: serde_json::json!({}),
        trigger: crate::status::Trigger::Manual,
        trigger_id: None,
        idempotency_key: None,
        approval_mode: crate::status::ApprovalMode::Wait,
        team_id: None,
        team_version_id: None,
        timeout_ms: 60_000,
    }
}

/// A checkpoint of one succeeded step `key` of the run `fence` holds, with its
/// STEP_STARTED and STEP_SUCCEEDED events.
pub(crate) fn step_result(
    fence: &crate::store::leases::Fence,
    key: &str,
) -> crate::store::checkpoint::Checkpoint {
    use crate::event::{EventKind, NewEvent};
    use serde_json::json;
    let mut cp = crate::store::checkpoint::Checkpoint::new(fence.clone());
    cp.steps.push(crate::store::checkpoint::StepRecord {
        key: key.into(),
        status: crate::status::StepStatus::Succeeded,
        input: Some(json!({ "in": key })),
        output: Some(json!({ "out": key })),
        usage: None,
        error: None,
        attempts: 1,
        started_at: Some(chrono::Utc::now()),
        finished_at: Some(chrono::Utc::now()),
        next_attempt_at: None,
    });
    for kind in [EventKind::StepStarted, EventKind::StepSucceeded] {
        cp.events
            .push(NewEvent::new(kind, json!({ "step_key": key })));
    }
    cp
}

/// Another transaction holding a run's row (`SELECT … FOR UPDATE`), until released:
/// a statement that updates the run waits for it inside the database.
pub(crate) struct RunRowHeld(sea_orm::DatabaseTransaction);

impl RunRowHeld {
    pub(crate) async fn take(db: &Db, run: crate::ids::RunId) -> RunRowHeld {
        use sea_orm::TransactionTrait;
        let txn = db.begin().await.unwrap();
        txn.execute_raw(super::stmt(
            db,
            "SELECT 1 FROM runs WHERE id = $1 FOR UPDATE",
            vec![run.0.into()],
        ))
        .await
        .unwrap();
        RunRowHeld(txn)
    }

    pub(crate) async fn release(self) {
        self.0.rollback().await.unwrap();
    }
}

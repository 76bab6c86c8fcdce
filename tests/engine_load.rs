//! The load that found the lock-order deadlock (issue 6, B1): 1,000 queued runs,
//! three `aiops worker` processes with 64 slots each and a 1 s heartbeat, on
//! Postgres (SQLite serves one process). No fault is injected; none may appear: no
//! deadlock reported by Postgres, no lease lost by a live worker (no takeover), no
//! step executed twice.

mod common;

use std::time::Duration;

use aiops_engine::{EventKind, RunStatus, StartRun};
use common::{Backend, Harness, WorkerProcess, executions};
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::json;

async fn deadlocks(db_name: &str) -> i64 {
    let admin = Database::connect(common::PG_ADMIN_URL)
        .await
        .expect("admin");
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            admin.get_database_backend(),
            "SELECT deadlocks FROM pg_stat_database WHERE datname = $1",
            [db_name.into()],
        ))
        .await
        .expect("pg_stat_database")
        .expect("a row for the test database");
    row.try_get_by_index(0).expect("deadlocks")
}

/// Sessions the worker processes still have open (they name themselves).
async fn worker_sessions(db_name: &str) -> i64 {
    let admin = Database::connect(common::PG_ADMIN_URL)
        .await
        .expect("admin");
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            admin.get_database_backend(),
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'aiops worker'",
            [db_name.into()],
        ))
        .await
        .expect("pg_stat_activity")
        .expect("a count");
    row.try_get_by_index(0).expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_runs_on_three_workers_postgres() {
    let Some(h) = Harness::new(Backend::Postgres).await else {
        return;
    };
    let db_name = h.db.url.rsplit('/').next().unwrap().to_owned();
    let before = deadlocks(&db_name).await;
    let log = h.record_dir.join("load.log");
    // 20 short steps per run: under this load the old lock order deadlocked in 2 of 3
    // tries (Postgres counted 1 and 3 deadlocks; 2 and 26 runs lost leases).
    let steps: Vec<_> = (0..20)
        .map(|_| json!({ "kind": "work", "ms": 2 }))
        .collect();
    let mut ids = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let input = json!({ "steps": steps, "record_to": common::record_name(&log) });
        ids.push(
            h.engine
                .start_run(StartRun::new("script", input))
                .await
                .unwrap()
                .id,
        );
    }
    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|_| {
            WorkerProcess::spawn(
                &h.db.url,
                &h.record_dir,
                &[
                    ("AIOPS_MAX_CONCURRENT_RUNS", "64"),
                    ("AIOPS_HEARTBEAT_MS", "1000"),
                    // Long enough that a starved CI machine cannot expire a live
                    // worker's lease: a takeover here means a lease was lost.
                    ("AIOPS_LEASE_TTL_MS", "30000"),
                ],
            )
        })
        .collect();
    for id in &ids {
        h.wait_for_status(*id, &[RunStatus::Succeeded], Duration::from_secs(300))
            .await;
    }
    // Graceful exits flush each worker's database sessions' statistics.
    for w in &mut workers {
        assert!(w.terminate().success());
    }
    let executions = executions(&log);
    assert_eq!(executions.len(), 20_000, "every step ran");
    let twice: Vec<_> = executions.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "steps executed more than once: {twice:?}");
    let mut takeovers = 0;
    for id in &ids {
        let events = h.engine.events(*id, 0, 100).await.unwrap();
        takeovers += events
            .iter()
            .filter(|e| e.kind == EventKind::RunResumed && e.payload["takeover"] == true)
            .count();
    }
    assert_eq!(takeovers, 0, "a live worker lost a lease");
    // Postgres counts the deadlocks it broke in this database; a session's counts
    // are flushed when it ends, so first wait for the workers' sessions to end.
    while worker_sessions(&db_name).await > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        deadlocks(&db_name).await - before,
        0,
        "Postgres reported deadlocks"
    );
}

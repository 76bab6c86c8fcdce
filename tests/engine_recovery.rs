//! Conformance suite, part 2: crashes, leases, fencing, many worker processes,
//! graceful shutdown and retention.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use aiops_engine::{EventKind, RunId, RunStatus, StartRun, StepStatus};
use chrono::Utc;
use common::{
    Backend, Harness, WorkerProcess, assert_gap_free, executions_of, recorded, wait_for_status,
};
use sea_orm::ConnectionTrait;
use serde_json::json;

/// Starts a run of `steps` work steps of `ms` each that records every executed
/// attempt in a file of the harness's record directory.
async fn start_recorded_work(
    h: &Harness,
    steps: usize,
    ms: u64,
) -> (PathBuf, aiops_engine::model::Run) {
    let record = h.record_dir.join("side-effects.log");
    let steps: Vec<_> = (0..steps)
        .map(|_| json!({ "kind": "work", "ms": ms }))
        .collect();
    let run = h
        .engine
        .start_run(common::recorded_script(json!(steps), &record))
        .await
        .unwrap();
    (record, run)
}

/// Waits until at least `n` steps of the run succeeded; returns their keys.
async fn wait_for_succeeded_steps(
    engine: &aiops_engine::Engine,
    run: RunId,
    n: usize,
) -> Vec<String> {
    loop {
        let done: Vec<String> = engine
            .steps(run)
            .await
            .unwrap()
            .into_iter()
            .filter(|s| s.status == StepStatus::Succeeded)
            .map(|s| s.key)
            .collect();
        if done.len() >= n {
            return done;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sigkill_recovery(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let (record, run) = start_recorded_work(&h, 16, 150).await;

    let mut first = WorkerProcess::spawn(&h.db.url, &h.record_dir, &[]);
    let completed_before_kill = wait_for_succeeded_steps(&h.engine, run.id, 5).await;
    first.kill();
    // The killed process still holds the lease until it expires; nobody else may
    // have finished the run in the meantime.
    assert_eq!(
        h.engine.run(run.id).await.unwrap().status,
        RunStatus::Running
    );

    // Postgres: another worker process takes over. SQLite: the restarted process.
    let _second = WorkerProcess::spawn(&h.db.url, &h.record_dir, &[]);
    let done = wait_for_status(
        &h.engine,
        run.id,
        &[RunStatus::Succeeded],
        Duration::from_secs(30),
    )
    .await;
    assert!(
        done.attempt >= 2,
        "taken over after the kill: attempt {}",
        done.attempt
    );

    let counts = executions_of(&record, run.id);
    for key in &completed_before_kill {
        assert_eq!(
            counts.get(key),
            Some(&1),
            "completed step {key} ran again after the crash"
        );
    }
    for i in 0..16 {
        let n = counts.get(&format!("s{i}")).copied().unwrap_or(0);
        assert!((1..=2).contains(&n), "step s{i} ran {n} times");
    }
    let total: usize = counts.values().sum();
    assert!(
        total <= 17,
        "at most the one in-flight step repeats: {total} executions"
    );
    let events = assert_gap_free(&h.engine, run.id).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == EventKind::StepSucceeded)
            .count(),
        16
    );
}
both_backends!(
    sigkilled_worker_process_run_finishes_without_rerunning_completed_steps,
    sigkill_recovery
);

/// Four `aiops worker` processes share 200 runs, each claimed once and each step
/// executed once. Postgres only: SQLite serves one process (several workers on one
/// SQLite database: `no_deadlock_and_no_lost_lease_under_load` in engine_hardening).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_runs_across_four_worker_processes_postgres() {
    let Some(h) = Harness::new(Backend::Postgres).await else {
        return;
    };
    let record = h.record_dir.join("side-effects.log");
    let mut ids = Vec::new();
    for _ in 0..200 {
        let run = h
            .engine
            .start_run(common::recorded_script(
                json!([{ "kind": "noop" }, { "kind": "work", "ms": 20 }, { "kind": "noop" }]),
                &record,
            ))
            .await
            .unwrap();
        ids.push(run.id);
    }
    let _workers: Vec<WorkerProcess> = (0..4)
        .map(|_| {
            WorkerProcess::spawn(
                &h.db.url,
                &h.record_dir,
                &[
                    ("AIOPS_MAX_CONCURRENT_RUNS", "16"),
                    // Mutual exclusion is the point here, not expiry: a long lease keeps a
                    // CPU-starved CI machine from turning slow heartbeats into takeovers.
                    ("AIOPS_LEASE_TTL_MS", "10000"),
                    ("AIOPS_HEARTBEAT_MS", "1000"),
                ],
            )
        })
        .collect();
    let mut workers_seen = std::collections::HashSet::new();
    for id in &ids {
        let run = wait_for_status(
            &h.engine,
            *id,
            &[RunStatus::Succeeded],
            Duration::from_secs(120),
        )
        .await;
        assert_eq!(run.attempt, 1, "run {id} was claimed more than once");
        let events = assert_gap_free(&h.engine, *id).await;
        let started: Vec<_> = events
            .iter()
            .filter(|e| e.kind == EventKind::RunStarted)
            .collect();
        assert_eq!(started.len(), 1);
        workers_seen.insert(started[0].payload["worker"].as_str().unwrap().to_owned());
    }
    // Every step of every run ran exactly once: no run was executed by two workers.
    let lines = recorded(&record);
    assert_eq!(lines.len(), 600);
    let unique: std::collections::HashSet<&String> = lines.iter().collect();
    let mut seen = std::collections::HashSet::new();
    let dups: Vec<&String> = lines.iter().filter(|l| !seen.insert(*l)).collect();
    assert_eq!(unique.len(), 600, "a step ran twice: {dups:?}");
    assert!(workers_seen.len() >= 2, "work was shared: {workers_seen:?}");
}

async fn graceful_shutdown(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let run = h
        .engine
        .start_run(StartRun::new(
            "script",
            json!({ "steps": [{ "kind": "work", "ms": 800 }, { "kind": "work", "ms": 10 }] }),
        ))
        .await
        .unwrap();
    let mut worker = WorkerProcess::spawn(&h.db.url, &h.record_dir, &[]);
    loop {
        let events = h.engine.events(run.id, 0, 100).await.unwrap();
        if events.iter().any(|e| e.kind == EventKind::StepStarted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = worker.terminate();
    assert!(
        status.success(),
        "worker exits cleanly on SIGTERM: {status:?}"
    );
    let run_now = h.engine.run(run.id).await.unwrap();
    assert_eq!(run_now.status, RunStatus::Running);
    assert!(
        run_now.lease_owner.is_none(),
        "lease released, not left to expire"
    );
    let steps = h.engine.steps(run.id).await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(
        steps[0].status,
        StepStatus::Succeeded,
        "the in-flight step finished and was checkpointed"
    );
    // Released means claimable at once: an in-process worker finishes it quickly.
    let _w = h.spawn_worker();
    h.wait_for_status(run.id, &[RunStatus::Succeeded], Duration::from_secs(5))
        .await;
}
both_backends!(
    sigterm_finishes_the_in_flight_step_and_releases_the_lease,
    graceful_shutdown
);

async fn retention(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    let mut ids: Vec<RunId> = Vec::new();
    for _ in 0..3 {
        let run = h
            .engine
            .start_run(StartRun::new(
                "script",
                json!({ "steps": [{ "kind": "noop" }] }),
            ))
            .await
            .unwrap();
        h.wait_for_status(run.id, &[RunStatus::Succeeded], Duration::from_secs(10))
            .await;
        ids.push(run.id);
    }
    let live = h
        .engine
        .start_run(StartRun::new(
            "script",
            json!({ "steps": [{ "kind": "question", "text": "ok?" }] }),
        ))
        .await
        .unwrap();
    h.wait_for_status(live.id, &[RunStatus::WaitingInput], Duration::from_secs(10))
        .await;
    // Age two finished runs past the 30-day default.
    let old = Utc::now() - chrono::Duration::days(31);
    let db = &common::raw_db(&h.db.url).await;
    for id in &ids[..2] {
        db.execute_raw(sea_orm::Statement::from_sql_and_values(
            db.get_database_backend(),
            if backend == Backend::Postgres {
                "UPDATE runs SET finished_at = $1 WHERE id = $2"
            } else {
                "UPDATE runs SET finished_at = ?1 WHERE id = ?2"
            },
            vec![old.into(), id.0.into()],
        ))
        .await
        .unwrap();
    }
    assert_eq!(h.engine.prune().await.unwrap(), 2);
    for id in &ids[..2] {
        assert!(h.engine.run(*id).await.is_err());
        assert!(
            h.engine.events(*id, 0, 10).await.unwrap().is_empty(),
            "events go with their run"
        );
        assert!(
            h.engine.steps(*id).await.unwrap().is_empty(),
            "steps go with their run"
        );
    }
    h.engine.run(ids[2]).await.expect("recent run kept");
    h.engine.run(live.id).await.expect("active run kept");
    assert_eq!(h.engine.prune().await.unwrap(), 0);
}
both_backends!(retention_prunes_only_old_finished_runs, retention);

async fn cross_process_events(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let steps: Vec<_> = (0..10)
        .map(|_| json!({ "kind": "work", "ms": 30 }))
        .collect();
    let run = h
        .engine
        .start_run(StartRun::new("script", json!({ "steps": steps })))
        .await
        .unwrap();
    // This process only subscribes; a worker in another process writes every event.
    let subscription = h.engine.subscribe(run.id, 0);
    let _worker = WorkerProcess::spawn(&h.db.url, &h.record_dir, &[]);
    let seqs: Vec<i64> = tokio::time::timeout(
        // Well under the 15 s fallback poll: delivery must come from notifications
        // (Postgres) or the 50 ms poll the harness configures for SQLite.
        Duration::from_secs(8),
        futures::StreamExt::collect::<Vec<_>>(futures::StreamExt::map(subscription, |e| {
            e.unwrap().seq
        })),
    )
    .await
    .expect("events from the other process arrive promptly");
    let n = h.engine.run(run.id).await.unwrap().last_seq;
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert_eq!(
        h.engine.run(run.id).await.unwrap().status,
        RunStatus::Succeeded
    );
}
both_backends!(
    subscriber_receives_events_written_by_another_process,
    cross_process_events
);

/// Postgres only: an embedded database has no network to lose.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_makes_workers_back_off_and_resume_postgres() {
    let Some(h) = Harness::new(Backend::Postgres).await else {
        return;
    };
    let proxy = common::FlakyProxy::start("127.0.0.1:5432").await;
    let db_name = h.db.url.rsplit('/').next().unwrap().to_owned();
    let via_proxy = format!("postgres://postgres@127.0.0.1:{}/{db_name}", proxy.port);
    let (record, run) = start_recorded_work(&h, 12, 100).await;
    let mut worker = WorkerProcess::spawn(&via_proxy, &h.record_dir, &[]);
    let before_cut = wait_for_succeeded_steps(&h.engine, run.id, 3).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker must survive a database outage"
    );
    proxy.restore();
    let done = wait_for_status(
        &h.engine,
        run.id,
        &[RunStatus::Succeeded],
        Duration::from_secs(60),
    )
    .await;
    assert!(
        done.attempt >= 2,
        "the run was given up during the outage and claimed again"
    );
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "still serving after the outage"
    );
    let counts = executions_of(&record, run.id);
    for key in &before_cut {
        assert_eq!(
            counts.get(key),
            Some(&1),
            "step {key} completed before the outage ran again"
        );
    }
    assert_gap_free(&h.engine, run.id).await;
}

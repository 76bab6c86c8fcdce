//! Engine defects found by outside testing (issue 6, part B), each pinned by a test
//! that failed before its fix: lock-order deadlocks under load, silent takeovers,
//! subscriptions that never ended, waits closed without a trace, one refused
//! checkpoint failing its neighbours, withdrawn pauses that still paused, huge
//! durations, unbounded runs, keyed starts on SQLite, and a worker forgetting a run
//! it had re-claimed.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aiops_engine::{
    EngineConfig, EventKind, RunStatus, StartRun, StepContext, StepStatus, Workflow, WorkflowError,
};
use common::{Backend, Harness, assert_gap_free, executions, fast_config, wait_for_status};
use futures::{FutureExt, StreamExt};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

fn takeovers(events: &[aiops_engine::Event]) -> usize {
    events
        .iter()
        .filter(|e| e.kind == EventKind::RunResumed && e.payload["takeover"] == true)
        .count()
}

/// B1: two workers holding 64 runs each, heartbeating every 50 ms while their
/// checkpoints commit in batches: on Postgres the heartbeat and the checkpoint
/// batch used to lock the same rows in different orders and deadlock, failing whole
/// batches (steps re-ran) or dropping leases. Now: no lost race, no lost lease, every
/// step executed exactly once.
async fn heavy_load(backend: Backend) {
    let config = EngineConfig {
        max_concurrent_runs: 64,
        heartbeat_interval: Duration::from_millis(50),
        // Expiry is not what this test is about: a long lease keeps a CPU-starved
        // machine from turning slow heartbeats into takeovers.
        lease_ttl: Duration::from_secs(20),
        ..fast_config()
    };
    let Some(h) = Harness::with_config(backend, config.clone()).await else {
        return;
    };
    let other = h.second_engine(config).await;
    let log = h.record_dir.join("load.log");
    let steps: Vec<Value> = (0..12)
        .map(|_| json!({ "kind": "work", "ms": 2 }))
        .collect();
    let mut ids = Vec::new();
    for _ in 0..256 {
        let input = json!({ "steps": steps, "record_to": common::record_name(&log) });
        ids.push(
            h.engine
                .start_run(StartRun::new("script", input))
                .await
                .unwrap()
                .id,
        );
    }
    let _a = h.spawn_worker();
    let _b = tokio::spawn(aiops_engine::Worker::new(other.clone()).run(h.shutdown.child_token()));
    for id in &ids {
        wait_for_status(&h.engine, *id, &[RunStatus::Succeeded], LIMIT).await;
    }
    let counts = executions(&log);
    assert_eq!(counts.len(), 256 * 12, "every step of every run ran");
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        repeated.is_empty(),
        "steps executed more than once: {repeated:?}"
    );
    for id in &ids {
        let events = assert_gap_free(&h.engine, *id).await;
        assert_eq!(takeovers(&events), 0, "run {id} was taken over");
    }
    for (name, stats) in [("first", h.engine.stats()), ("second", other.stats())] {
        assert_eq!(stats.leases_lost, 0, "{name} engine lost leases: {stats:?}");
        assert_eq!(stats.heartbeat_failures, 0, "{name}: {stats:?}");
        assert_eq!(
            stats.checkpoint_retries, 0,
            "{name} engine's checkpoints lost races (deadlocks): {stats:?}"
        );
    }
}
both_backends!(no_deadlock_and_no_lost_lease_under_load, heavy_load);

/// B2: a run whose worker vanished is taken over, and the log says so.
async fn takeover_is_logged(backend: Backend) {
    let config = EngineConfig {
        lease_ttl: Duration::from_millis(600),
        heartbeat_interval: Duration::from_millis(200),
        ..fast_config()
    };
    let Some(h) = Harness::with_config(backend, config.clone()).await else {
        return;
    };
    let run = h
        .engine
        .start_run(StartRun::new(
            "script",
            json!({ "steps": [{ "kind": "work", "ms": 300 }, { "kind": "work", "ms": 300 }] }),
        ))
        .await
        .unwrap();
    // A worker that claims the run and then dies: its whole engine goes away
    // mid-step, without releasing anything.
    let doomed = h.second_engine(config).await;
    let stop = h.shutdown.child_token();
    let doomed_worker = tokio::spawn(aiops_engine::Worker::new(doomed.clone()).run(stop.clone()));
    h.wait_for_status(run.id, &[RunStatus::Running], LIMIT)
        .await;
    doomed_worker.abort();
    let _ = doomed_worker.await;
    drop(doomed);
    let _w = h.spawn_worker();
    let done = h
        .wait_for_status(run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    let events = assert_gap_free(&h.engine, run.id).await;
    let takeover = events
        .iter()
        .find(|e| e.kind == EventKind::RunResumed && e.payload["takeover"] == true)
        .unwrap_or_else(|| panic!("no takeover event: {events:#?}"));
    assert_eq!(takeover.payload["from"], "RUNNING");
    assert_eq!(
        takeover.payload["previous_attempt"].as_i64().unwrap() + 1,
        takeover.payload["attempt"].as_i64().unwrap()
    );
    assert!(done.attempt >= 2);
}
both_backends!(a_takeover_writes_run_resumed, takeover_is_logged);

/// B3: subscribing to a finished run after its last event ends at once.
async fn finished_subscription(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    let run = h
        .engine
        .start_run(StartRun::new(
            "script",
            json!({ "steps": [{ "kind": "noop" }] }),
        ))
        .await
        .unwrap();
    let done = h
        .wait_for_status(run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    let mut tail = Box::pin(h.engine.subscribe(run.id, done.last_seq));
    let next = tokio::time::timeout(Duration::from_secs(5), tail.next())
        .await
        .expect("the subscription ends instead of waiting forever");
    assert!(next.is_none(), "nothing follows the last event: {next:?}");
    // From the start it replays everything, then ends.
    let all: Vec<_> = h.engine.subscribe(run.id, 0).collect().await;
    assert_eq!(all.len() as i64, done.last_seq);
}
both_backends!(
    a_subscription_to_a_finished_run_ends_at_once,
    finished_subscription
);

/// B5: approvals closed because their run was cancelled or timed out are logged.
async fn closed_waits_are_logged(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    // Cancelled while waiting for a decision.
    let run = h
        .engine
        .start_run(StartRun::new(
            "script",
            json!({ "steps": [{ "kind": "approval", "tool": "webhook_action" }] }),
        ))
        .await
        .unwrap();
    h.wait_for_status(run.id, &[RunStatus::WaitingApproval], LIMIT)
        .await;
    h.engine.cancel_run(run.id).await.unwrap();
    let events = assert_gap_free(&h.engine, run.id).await;
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    let n = kinds.len();
    assert_eq!(
        &kinds[n - 2..],
        &[EventKind::ApprovalDecided, EventKind::RunCancelled],
        "{kinds:?}"
    );
    assert_eq!(events[n - 2].payload["status"], "EXPIRED");
    assert_eq!(events[n - 2].payload["comment"], "run ended CANCELLED");
    let approval = &h.engine.approvals_of_run(run.id).await.unwrap()[0];
    assert_eq!(approval.status, aiops_engine::ApprovalStatus::Expired);

    // Timed out while one branch waits for a decision and another works: the worker
    // closes the approval in its fenced terminal commit, with an event.
    let mut req = StartRun::new(
        "script",
        json!({ "steps": [{ "kind": "parallel", "branches": [
            [{ "kind": "approval", "tool": "webhook_action" }],
            [{ "kind": "sleep", "ms": 500 }, { "kind": "work", "ms": 5000 }]
        ] }] }),
    );
    req.timeout = Some(Duration::from_millis(1500));
    let run = h.engine.start_run(req).await.unwrap();
    h.wait_for_status(run.id, &[RunStatus::TimedOut], LIMIT)
        .await;
    let events = assert_gap_free(&h.engine, run.id).await;
    let closed = events
        .iter()
        .position(|e| e.kind == EventKind::ApprovalDecided)
        .unwrap_or_else(|| panic!("approval close not logged: {events:#?}"));
    assert_eq!(events[closed].payload["status"], "EXPIRED");
    assert_eq!(events[closed].payload["comment"], "run ended TIMED_OUT");
    assert_eq!(events.last().unwrap().kind, EventKind::RunTimedOut);
    let approval = &h.engine.approvals_of_run(run.id).await.unwrap()[0];
    assert_eq!(approval.status, aiops_engine::ApprovalStatus::Expired);
}
both_backends!(
    waits_closed_by_cancel_or_timeout_are_logged,
    closed_waits_are_logged
);

/// A test workflow: one step whose output the database cannot store (a NUL, as a
/// tool or a model might return), then a step that must still run.
struct NulOutput;

impl Workflow for NulOutput {
    fn run(&self, ctx: StepContext) -> aiops_engine::workflow::WorkflowFuture {
        async move {
            let bad = ctx
                .step("tool", |_| async {
                    Ok::<_, aiops_engine::StepFailure>("a\u{0}b".to_owned())
                })
                .await;
            let message = match bad {
                Err(e) => e.to_string(),
                Ok(v) => return Err(WorkflowError::Failed(format!("stored {v:?}"))),
            };
            ctx.step("after", |_| async { Ok::<_, aiops_engine::StepFailure>(1) })
                .await?;
            Ok(json!({ "first_step": message }))
        }
        .boxed()
    }
}

/// A test workflow sleeping for the longest duration there is.
struct SleepForever;

impl Workflow for SleepForever {
    fn run(&self, ctx: StepContext) -> aiops_engine::workflow::WorkflowFuture {
        async move {
            ctx.sleep("forever", Duration::MAX).await?;
            Ok(json!(null))
        }
        .boxed()
    }
}

/// A test workflow making more steps than a run may hold.
struct Endless;

impl Workflow for Endless {
    fn run(&self, ctx: StepContext) -> aiops_engine::workflow::WorkflowFuture {
        async move {
            for i in 0.. {
                ctx.step(format!("s{i}"), |_| async {
                    Ok::<_, aiops_engine::StepFailure>(())
                })
                .await?;
            }
            Ok(json!(null))
        }
        .boxed()
    }
}

async fn custom_harness(backend: Backend, config: EngineConfig) -> Option<Harness> {
    Harness::with_workflows(backend, config, |w| {
        w.with("nul_output", NulOutput)
            .with("sleep_forever", SleepForever)
            .with("endless", Endless)
    })
    .await
}

/// B6: a value the database cannot store fails only its own step, with a clear
/// error; healthy runs committed alongside are not touched (no replays, no releases).
async fn refused_value_fails_only_its_step(backend: Backend) {
    let Some(h) = custom_harness(backend, fast_config()).await else {
        return;
    };
    let log = h.record_dir.join("healthy.log");
    let steps: Vec<Value> = (0..5).map(|_| json!({ "kind": "noop" })).collect();
    let mut healthy = Vec::new();
    for _ in 0..20 {
        let input = json!({ "steps": steps, "record_to": common::record_name(&log) });
        healthy.push(
            h.engine
                .start_run(StartRun::new("script", input))
                .await
                .unwrap()
                .id,
        );
    }
    let poison = h
        .engine
        .start_run(StartRun::new("nul_output", json!({})))
        .await
        .unwrap();
    let _w = h.spawn_worker();
    let done = h
        .wait_for_status(poison.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    let message = done.output.unwrap()["first_step"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("cannot be stored") && message.contains("NUL"),
        "{message}"
    );
    let steps = h.engine.steps(poison.id).await.unwrap();
    let tool = steps.iter().find(|s| s.key == "tool").unwrap();
    assert_eq!(tool.status, StepStatus::Failed);
    assert_eq!(done.attempt, 1, "the run was never released and re-claimed");
    for id in &healthy {
        let run = h.wait_for_status(*id, &[RunStatus::Succeeded], LIMIT).await;
        assert_eq!(run.attempt, 1, "healthy run {id} was released");
    }
    assert!(
        executions(&log).values().all(|n| *n == 1),
        "healthy steps ran twice"
    );
}
both_backends!(
    an_unstorable_value_fails_only_its_step,
    refused_value_fails_only_its_step
);

/// B6 / A7: a sleep of the longest duration there is neither overflows into "now"
/// nor re-claims the run forever: the deadline wins.
async fn huge_sleep_times_out(backend: Backend) {
    let Some(h) = custom_harness(backend, fast_config()).await else {
        return;
    };
    let _w = h.spawn_worker();
    let mut req = StartRun::new("sleep_forever", json!({}));
    req.timeout = Some(Duration::from_secs(1));
    let run = h.engine.start_run(req).await.unwrap();
    let done = h
        .wait_for_status(run.id, &[RunStatus::TimedOut], LIMIT)
        .await;
    assert!(
        done.attempt <= 2,
        "parked once, claimed at the deadline: attempt {}",
        done.attempt
    );
    let sleeping = &h.engine.steps(run.id).await.unwrap()[0];
    let until = sleeping.next_attempt_at.expect("sleeps until a time");
    assert!(
        until > chrono::Utc::now() + chrono::Duration::days(365),
        "{until}"
    );
}
both_backends!(a_huge_sleep_ends_at_the_deadline, huge_sleep_times_out);

/// A6: a run cannot grow without bound: past the step budget its step fails.
async fn step_budget(backend: Backend) {
    let config = EngineConfig {
        max_steps_per_run: 50,
        ..fast_config()
    };
    let Some(h) = custom_harness(backend, config).await else {
        return;
    };
    let _w = h.spawn_worker();
    let run = h
        .engine
        .start_run(StartRun::new("endless", json!({})))
        .await
        .unwrap();
    let done = h.wait_for_status(run.id, &[RunStatus::Failed], LIMIT).await;
    assert!(
        done.error
            .as_deref()
            .unwrap_or_default()
            .contains("already has 50 steps"),
        "{:?}",
        done.error
    );
    assert_eq!(h.engine.steps(run.id).await.unwrap().len(), 50);
    // And an input larger than the limit is refused before anything is stored.
    let big = json!({ "steps": [{ "kind": "output", "value": "x".repeat(600 * 1024) }] });
    let err = h
        .engine
        .start_run(StartRun::new("script", big))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 524288 are accepted"), "{err}");
}
both_backends!(runs_and_inputs_are_bounded, step_budget);

/// B7: pause then resume of a running run (before its step boundary) withdraws the
/// pause: the run goes on to the end.
async fn withdrawn_pause(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    for _ in 0..3 {
        let run = h
            .engine
            .start_run(StartRun::new(
                "script",
                json!({ "steps": [{ "kind": "work", "ms": 400 }, { "kind": "noop" }] }),
            ))
            .await
            .unwrap();
        loop {
            let steps = h.engine.steps(run.id).await.unwrap();
            let events = h.engine.events(run.id, 0, 100).await.unwrap();
            if events.iter().any(|e| e.kind == EventKind::StepStarted) || !steps.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let paused = h.engine.pause_run(run.id).await.unwrap();
        assert!(paused.pause_requested);
        let resumed = h.engine.resume_run(run.id).await.unwrap();
        assert!(!resumed.pause_requested);
        let done = h
            .wait_for_status(run.id, &[RunStatus::Succeeded, RunStatus::Paused], LIMIT)
            .await;
        assert_eq!(
            done.status,
            RunStatus::Succeeded,
            "a withdrawn pause paused the run"
        );
    }
}
both_backends!(a_withdrawn_pause_does_not_pause, withdrawn_pause);

/// B8: keyed starts under load, 8 at a time while a worker commits: every one
/// answers, and each key names one run.
async fn keyed_starts(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    let mut results = Vec::new();
    for chunk in (0..200).collect::<Vec<_>>().chunks(8) {
        let starts = chunk.iter().map(|i| {
            let mut req = StartRun::new(
                "script",
                json!({ "steps": [{ "kind": "noop" }, { "kind": "noop" }] }),
            );
            req.idempotency_key = Some(format!("key-{}", i % 100));
            h.engine.start_run(req)
        });
        for r in futures::future::join_all(starts).await {
            results.push(r.expect("a keyed start under load answers"));
        }
    }
    let mut by_key: HashMap<String, aiops_engine::RunId> = HashMap::new();
    for run in &results {
        let key = run.idempotency_key.clone().unwrap();
        let first = *by_key.entry(key).or_insert(run.id);
        assert_eq!(first, run.id, "one run per key");
    }
    assert_eq!(by_key.len(), 100);
}
both_backends!(keyed_starts_under_load_all_answer, keyed_starts);

/// B10: a worker that re-claims a run it lost keeps heartbeating the new execution
/// (it used to forget it when the old execution ended, and lose it again).
async fn reclaimed_run_stays_held(backend: Backend) {
    // The lease outlives any scheduling hiccup of a loaded machine (so only the
    // expiry this test forces takes the run away), the run outlives the lease (so a
    // forgotten execution would lose it again before the end), and the heartbeat is
    // slower than the claim loop (so the worker re-claims the run while its old
    // execution still runs, the case that used to go wrong).
    let config = EngineConfig {
        lease_ttl: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(1400),
        ..fast_config()
    };
    let Some(h) = Harness::with_config(backend, config).await else {
        return;
    };
    let _w = h.spawn_worker();
    let steps: Vec<Value> = (0..20)
        .map(|_| json!({ "kind": "work", "ms": 300 }))
        .collect();
    let run = h
        .engine
        .start_run(StartRun::new("script", json!({ "steps": steps })))
        .await
        .unwrap();
    while h.engine.steps(run.id).await.unwrap().len() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The lease runs out under the holder (as after a long GC pause or a stalled
    // heartbeat): the same worker claims the run again.
    let db = sea_orm::Database::connect(&h.db.url).await.unwrap();
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        db.get_database_backend(),
        if h.db.backend == Backend::Postgres {
            "UPDATE runs SET lease_expires_at = $1 WHERE id = $2"
        } else {
            "UPDATE runs SET lease_expires_at = ? WHERE id = ?"
        },
        [
            (chrono::Utc::now() - chrono::Duration::seconds(1)).into(),
            run.id.0.into(),
        ],
    ))
    .await
    .unwrap();
    let done = h
        .wait_for_status(run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    assert_eq!(
        done.attempt, 2,
        "claimed once more after the expiry, then held to the end"
    );
    assert_eq!(h.engine.stats().leases_lost, 1, "{:?}", h.engine.stats());
}
both_backends!(a_reclaimed_run_stays_held, reclaimed_run_stays_held);

//! Conformance suite, part 1: completion, event numbering, subscriptions, retries,
//! deadlines, panics and input validation — on Postgres and SQLite.

mod common;

use std::time::Duration;

use aiops_engine::{
    EngineConfig, Error, EventKind, PageRequest, RunStatus, StartRun, StepStatus, Worker,
};
use common::{Backend, Harness, assert_gap_free, script};
use futures::StreamExt;
use serde_json::json;

async fn multi_step_run_completes(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let run = h
        .engine
        .start_run(script(json!([
            { "kind": "noop" },
            { "kind": "work", "ms": 120 },
            { "kind": "noop" },
            { "kind": "parallel", "branches": [[{ "kind": "noop" }, { "kind": "noop" }], [{ "kind": "work", "ms": 10 }]] },
            { "kind": "output", "value": { "summary": "all good" } }
        ])))
        .await
        .unwrap();
    // Queued, or already claimed by the idle worker in the same commit (eager start).
    assert!(
        matches!(run.status, RunStatus::Queued | RunStatus::Running),
        "{:?}",
        run.status
    );
    let done = h
        .wait_for_status(run.id, &[RunStatus::Succeeded], Duration::from_secs(20))
        .await;
    assert_eq!(
        done.output.as_ref().unwrap()["output"],
        json!({ "summary": "all good" })
    );
    assert!(done.finished_at.is_some() && done.lease_owner.is_none());

    let events = assert_gap_free(&h.engine, run.id).await;
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.first(), Some(&EventKind::RunQueued));
    assert_eq!(kinds.get(1), Some(&EventKind::RunStarted));
    assert_eq!(kinds.last(), Some(&EventKind::RunSucceeded));
    // Six durable steps, each started and succeeded exactly once.
    let started = kinds
        .iter()
        .filter(|k| **k == EventKind::StepStarted)
        .count();
    let succeeded = kinds
        .iter()
        .filter(|k| **k == EventKind::StepSucceeded)
        .count();
    assert_eq!((started, succeeded), (6, 6));

    let steps = h.engine.steps(run.id).await.unwrap();
    let mut keys: Vec<&str> = steps.iter().map(|s| s.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["s0", "s1", "s2", "s3/b0/s0", "s3/b0/s1", "s3/b1/s0"]);
    assert!(
        steps
            .iter()
            .all(|s| s.status == StepStatus::Succeeded && s.attempts == 1)
    );
    let slow = steps.iter().find(|s| s.key == "s1").unwrap();
    let took = slow.finished_at.unwrap() - slow.started_at.unwrap();
    assert!(took.num_milliseconds() >= 120, "timings recorded: {took}");
}
both_backends!(
    multi_step_run_completes_with_gap_free_events,
    multi_step_run_completes
);

async fn subscriber_mid_run(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let steps: Vec<_> = (0..12)
        .map(|_| json!({ "kind": "work", "ms": 40 }))
        .collect();
    let run = h.engine.start_run(script(json!(steps))).await.unwrap();
    // Join once a few events exist but the run is still going.
    let k = loop {
        let n = h.engine.events(run.id, 0, 1000).await.unwrap().len() as i64;
        if n >= 5 {
            break n - 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let received: Vec<i64> = tokio::time::timeout(
        Duration::from_secs(20),
        h.engine
            .subscribe(run.id, k)
            .map(|e| e.unwrap().seq)
            .collect::<Vec<_>>(),
    )
    .await
    .expect("subscription ends after the final event");
    let n = h.engine.run(run.id).await.unwrap().last_seq;
    assert_eq!(
        received,
        ((k + 1)..=n).collect::<Vec<_>>(),
        "exactly k+1..n, in order"
    );
    assert!(
        received.len() > 10,
        "joined mid-run: {} live events",
        received.len()
    );
}
both_backends!(
    subscriber_joining_mid_run_gets_exactly_the_rest,
    subscriber_mid_run
);

async fn retries_then_success(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let run = h
        .engine
        .start_run(StartRun::new(
            "script",
            json!({
                "steps": [{ "kind": "fail", "times": 2 }, { "kind": "noop" }],
                "retry": { "initial_ms": 100, "max_retries": 3 }
            }),
        ))
        .await
        .unwrap();
    h.wait_for_status(run.id, &[RunStatus::Succeeded], Duration::from_secs(20))
        .await;
    let step = h
        .engine
        .steps(run.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.key == "s0")
        .unwrap();
    assert_eq!(step.attempts, 3);
    assert_eq!(step.status, StepStatus::Succeeded);
    let events = assert_gap_free(&h.engine, run.id).await;
    let retries: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::StepRetryScheduled)
        .collect();
    assert_eq!(retries.len(), 2);
    assert_eq!(retries[0].payload["attempt"], 1);
    assert_eq!(retries[0].payload["delay_ms"], 100);
    assert_eq!(retries[1].payload["delay_ms"], 200, "backoff doubles");
    assert!(
        retries[0].payload["error"]
            .as_str()
            .unwrap()
            .contains("scripted failure 1 of 2")
    );
}
both_backends!(
    transient_failures_retry_with_backoff_then_succeed,
    retries_then_success
);

async fn permanent_error_fails_at_once(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let run = h
        .engine
        .start_run(script(
            json!([{ "kind": "fail", "times": 5, "permanent": true }, { "kind": "noop" }]),
        ))
        .await
        .unwrap();
    let done = h
        .wait_for_status(run.id, &[RunStatus::Failed], Duration::from_secs(20))
        .await;
    assert!(
        done.error
            .as_ref()
            .unwrap()
            .contains("scripted failure 1 of 5"),
        "{:?}",
        done.error
    );
    let steps = h.engine.steps(run.id).await.unwrap();
    assert_eq!(steps.len(), 1, "the step after the failure never ran");
    assert_eq!(
        (steps[0].status, steps[0].attempts),
        (StepStatus::Failed, 1)
    );
    let events = assert_gap_free(&h.engine, run.id).await;
    assert!(
        !events
            .iter()
            .any(|e| e.kind == EventKind::StepRetryScheduled)
    );
    assert_eq!(events.last().unwrap().kind, EventKind::RunFailed);
}
both_backends!(
    permanent_error_fails_without_retrying,
    permanent_error_fails_at_once
);

async fn long_backoff_releases_run(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _worker = h.spawn_worker();
    // 1 s backoff is over the 300 ms long-wait threshold: the run must be released.
    let run = h
        .engine
        .start_run(StartRun::new(
            "script",
            json!({ "steps": [{ "kind": "fail", "times": 1 }], "retry": { "initial_ms": 1000, "max_retries": 2 } }),
        ))
        .await
        .unwrap();
    let waiting = h
        .wait_for_status(run.id, &[RunStatus::RetryWait], Duration::from_secs(10))
        .await;
    assert!(
        waiting.lease_owner.is_none(),
        "a run in RETRY_WAIT holds no worker"
    );
    let step = &h.engine.steps(run.id).await.unwrap()[0];
    assert_eq!(step.status, StepStatus::RetryWait);
    assert!(step.next_attempt_at.is_some());
    h.wait_for_status(run.id, &[RunStatus::Succeeded], Duration::from_secs(10))
        .await;
    let events = assert_gap_free(&h.engine, run.id).await;
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::RunResumed && e.payload["from"] == "RETRY_WAIT")
    );
}
both_backends!(
    long_backoff_releases_the_worker_as_retry_wait,
    long_backoff_releases_run
);

async fn deadline_times_out(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let mut req = script(json!([{ "kind": "work", "ms": 10_000 }]));
    req.timeout = Some(Duration::from_millis(700));
    let run = h.engine.start_run(req).await.unwrap();
    let done = h
        .wait_for_status(run.id, &[RunStatus::TimedOut], Duration::from_secs(10))
        .await;
    assert!(done.error.unwrap().contains("deadline"));
    let events = assert_gap_free(&h.engine, run.id).await;
    assert_eq!(events.last().unwrap().kind, EventKind::RunTimedOut);
}
both_backends!(run_deadline_ends_in_timed_out, deadline_times_out);

async fn panic_fails_only_its_run(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let bad = h
        .engine
        .start_run(script(
            json!([{ "kind": "noop" }, { "kind": "panic", "message": "boom in step" }]),
        ))
        .await
        .unwrap();
    let mut good = Vec::new();
    for _ in 0..5 {
        good.push(
            h.engine
                .start_run(script(
                    json!([{ "kind": "work", "ms": 30 }, { "kind": "noop" }]),
                ))
                .await
                .unwrap(),
        );
    }
    let failed = h
        .wait_for_status(bad.id, &[RunStatus::Failed], Duration::from_secs(20))
        .await;
    assert!(
        failed
            .error
            .as_ref()
            .unwrap()
            .contains("step panicked: boom in step"),
        "{:?}",
        failed.error
    );
    for run in good {
        h.wait_for_status(run.id, &[RunStatus::Succeeded], Duration::from_secs(20))
            .await;
    }
    // And the same worker keeps serving afterwards.
    let after = h
        .engine
        .start_run(script(json!([{ "kind": "noop" }])))
        .await
        .unwrap();
    h.wait_for_status(after.id, &[RunStatus::Succeeded], Duration::from_secs(20))
        .await;
}
both_backends!(
    panicking_step_fails_its_run_while_others_complete,
    panic_fails_only_its_run
);

async fn bad_input_stores_nothing(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let err = h
        .engine
        .start_run(script(json!([{ "kind": "teleport" }])))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(
        err.to_string().contains("unknown variant `teleport`"),
        "{err}"
    );
    let err = h
        .engine
        .start_run(StartRun::new("nope", json!({})))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown workflow \"nope\""),
        "{err}"
    );
    let mut too_long = script(json!([{ "kind": "noop" }]));
    too_long.timeout = Some(Duration::from_secs(3600));
    assert!(
        h.engine
            .start_run(too_long)
            .await
            .unwrap_err()
            .to_string()
            .contains("timeout")
    );
    let runs = h
        .engine
        .list_runs(&Default::default(), &PageRequest::first(10))
        .await
        .unwrap()
        .items;
    assert!(runs.is_empty(), "nothing half-written");
}
both_backends!(
    bad_input_is_refused_and_stores_nothing,
    bad_input_stores_nothing
);

async fn idempotency_key_dedupes(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let mut req = script(json!([{ "kind": "noop" }]));
    req.idempotency_key = Some("alert-group-42".into());
    let a = h.engine.start_run(req.clone()).await.unwrap();
    let b = h.engine.start_run(req).await.unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(
        h.engine
            .list_runs(&Default::default(), &PageRequest::first(10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}
both_backends!(
    idempotency_key_returns_the_first_run,
    idempotency_key_dedupes
);

async fn durable_sleep_releases_worker(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _worker = h.spawn_worker();
    // 1.2 s is over the harness's 300 ms long-wait threshold.
    let run = h
        .engine
        .start_run(script(
            json!([{ "kind": "noop" }, { "kind": "sleep", "ms": 1200 }, { "kind": "noop" }]),
        ))
        .await
        .unwrap();
    let sleeping = loop {
        let r = h.engine.run(run.id).await.unwrap();
        if r.wake_at.is_some() {
            break r;
        }
        assert!(
            r.status != RunStatus::Succeeded,
            "the sleep must park the run first"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(sleeping.status, RunStatus::Running);
    assert!(
        sleeping.lease_owner.is_none(),
        "a sleeping run holds no worker"
    );
    let step = h
        .engine
        .steps(run.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.key == "s1")
        .unwrap();
    assert_eq!(step.status, StepStatus::Sleeping);
    let done = h
        .wait_for_status(run.id, &[RunStatus::Succeeded], Duration::from_secs(10))
        .await;
    let slept = done.finished_at.unwrap() - step.started_at.unwrap();
    assert!(
        slept.num_milliseconds() >= 1200,
        "woke after the sleep: {slept}"
    );
    assert_eq!(done.attempt, 2, "claimed again when the sleep ended");
    assert_gap_free(&h.engine, run.id).await;
}
both_backends!(
    durable_sleep_releases_the_worker_and_wakes_up,
    durable_sleep_releases_worker
);

async fn heartbeat_keeps_long_step(backend: Backend) {
    // Ten heartbeats per lease, so only a stall of seconds (not CI load) loses it.
    let config = aiops_engine::EngineConfig {
        lease_ttl: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(300),
        ..common::fast_config()
    };
    let Some(h) = Harness::with_config(backend, config).await else {
        return;
    };
    let _a = h.spawn_worker();
    let _b = h.spawn_worker();
    // Three times the 3 s lease: only heartbeats keep the other worker away.
    let run = h
        .engine
        .start_run(script(json!([{ "kind": "work", "ms": 9000 }])))
        .await
        .unwrap();
    let done = h
        .wait_for_status(run.id, &[RunStatus::Succeeded], Duration::from_secs(20))
        .await;
    assert_eq!(
        done.attempt, 1,
        "never taken over while its holder was alive"
    );
    let step = &h.engine.steps(run.id).await.unwrap()[0];
    assert_eq!(step.attempts, 1);
}
both_backends!(
    heartbeat_keeps_a_step_longer_than_the_lease,
    heartbeat_keeps_long_step
);

const TEAM: &str = include_str!("fixtures/teams/valid.yaml");

async fn teams_are_validated_and_versioned(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let bad = include_str!("fixtures/teams/invalid.yaml");
    match h.engine.apply_team(bad).await.unwrap_err() {
        Error::Violations(v) => assert_eq!(v.len(), 4, "{v:?}"),
        other => panic!("expected violations, got {other:?}"),
    }
    let name = aiops_engine::topology::parse(bad).unwrap().name;
    assert!(
        h.engine.team(&name).await.is_err(),
        "an invalid team stores nothing"
    );

    let (team, changed) = h.engine.apply_team(TEAM).await.unwrap();
    assert!(changed);
    assert_eq!(team.version, 1);
    let (same, changed) = h.engine.apply_team(TEAM).await.unwrap();
    assert!(!changed, "unchanged spec adds no version");
    assert_eq!(same.version, 1);
    let edited = TEAM.replacen("timeout_seconds: 300", "timeout_seconds: 600", 1);
    assert_ne!(edited, TEAM, "fixture has a timeout to edit");
    let (v2, changed) = h.engine.apply_team(&edited).await.unwrap();
    assert!(changed);
    assert_eq!((v2.id, v2.version), (team.id, 2));
    assert_eq!(v2.spec["limits"]["timeout_seconds"], 600);
    let versions = h
        .engine
        .team_versions(team.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items;
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        versions[0].spec["limits"]["timeout_seconds"], 300,
        "old versions stay as they were"
    );
}
both_backends!(
    teams_are_validated_and_versioned_and_invalid_ones_store_nothing,
    teams_are_validated_and_versioned
);

/// A run started while this process's worker has a free slot is claimed in the
/// commit that creates it (eager start): RUNNING at once, RUN_QUEUED then RUN_STARTED
/// gap-free, the same history as a claim. The worker never holds more runs than its
/// slots, whichever way they come; with `eager_start` off, or once the worker has
/// stopped, runs are queued as before.
async fn eager_start(backend: Backend) {
    let config = EngineConfig {
        max_concurrent_runs: 2,
        ..common::fast_config()
    };
    let Some(h) = Harness::with_config(backend, config).await else {
        return;
    };
    let stop = h.shutdown.child_token();
    let worker = tokio::spawn(Worker::new(h.engine.clone()).run(stop.clone()));
    // The worker offers its slots once its loop runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        let run = h
            .engine
            .start_run(script(json!([{ "kind": "noop" }])))
            .await
            .unwrap();
        if run.status == RunStatus::Running {
            break run;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no run was started eagerly"
        );
        h.wait_for_status(run.id, &[RunStatus::Succeeded], Duration::from_secs(10))
            .await;
    };
    assert_eq!((first.attempt, first.last_seq), (1, 2));
    assert!(first.lease_owner.is_some() && first.started_at.is_some());
    h.wait_for_status(first.id, &[RunStatus::Succeeded], Duration::from_secs(10))
        .await;
    let events = assert_gap_free(&h.engine, first.id).await;
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::RunQueued,
            EventKind::RunStarted,
            EventKind::StepStarted,
            EventKind::StepSucceeded,
            EventKind::RunSucceeded
        ]
    );
    assert_eq!(
        events[1].payload["worker"],
        json!(first.lease_owner.unwrap())
    );

    // Six 200 ms runs on two slots: two start eagerly, the rest wait their turn,
    // and at no moment do more than two run.
    let mut ids = Vec::new();
    for _ in 0..6 {
        let run = h
            .engine
            .start_run(script(json!([{ "kind": "work", "ms": 200 }])))
            .await
            .unwrap();
        ids.push((run.id, run.status));
    }
    let eager = ids.iter().filter(|(_, s)| *s == RunStatus::Running).count();
    assert!(eager <= 2, "{eager} runs started eagerly on 2 slots");
    let mut spans = Vec::new();
    for (id, _) in &ids {
        h.wait_for_status(*id, &[RunStatus::Succeeded], Duration::from_secs(20))
            .await;
        let events = assert_gap_free(&h.engine, *id).await;
        let at = |k: EventKind| events.iter().find(|e| e.kind == k).unwrap().created_at;
        spans.push((at(EventKind::RunStarted), at(EventKind::RunSucceeded)));
    }
    for (start, _) in &spans {
        let running = spans
            .iter()
            .filter(|(s, e)| s <= start && start < e)
            .count();
        assert!(running <= 2, "{running} runs at once on 2 slots");
    }

    // A stopped worker offers nothing: the run is queued.
    stop.cancel();
    worker.await.unwrap().unwrap();
    let run = h
        .engine
        .start_run(script(json!([{ "kind": "noop" }])))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Queued);

    // Switched off: queued even with an idle worker.
    let off = Harness::with_config(
        backend,
        EngineConfig {
            eager_start: false,
            ..common::fast_config()
        },
    )
    .await
    .unwrap();
    let _w = off.spawn_worker();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let run = off
        .engine
        .start_run(script(json!([{ "kind": "noop" }])))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    off.wait_for_status(run.id, &[RunStatus::Succeeded], Duration::from_secs(10))
        .await;
}
both_backends!(
    a_run_started_beside_an_idle_worker_is_claimed_in_its_first_commit,
    eager_start
);

/// A run started beside an idle worker costs its own writes and hardly anything
/// else: its start, one checkpoint per step (the last one with the run's end) and,
/// on Postgres, hints to other processes. In particular the worker sends no
/// claim query for a run handed to it (it used to send two per start, beside the
/// run's first step). Background work only ever adds statements, so the cheapest of
/// a few runs is a run's own cost.
///
/// Hints go out at once after a quiet spell and then at most one per 5 ms
/// (`bus::notifier`), so a run that takes longer on a busy machine sends more of
/// them (CI once saw a 5-step run send two): they are counted apart, and their
/// number is held to that spacing.
async fn eager_run_cost(backend: Backend) {
    let config = EngineConfig {
        // No polling or heartbeat during the measurement.
        poll_interval: Duration::from_secs(60),
        heartbeat_interval: Duration::from_secs(20),
        lease_ttl: Duration::from_secs(60),
        ..common::fast_config()
    };
    let Some(h) = Harness::with_config(backend, config).await else {
        return;
    };
    let _worker = h.spawn_worker();
    const STEPS: u64 = 5;
    let steps = json!(
        (0..STEPS)
            .map(|_| json!({ "kind": "noop" }))
            .collect::<Vec<_>>()
    );
    let mut changes = h.engine.changes();
    let mut cheapest = u64::MAX;
    let mut eager = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while eager < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "{eager} runs started eagerly"
        );
        // Whatever the last run left to do (a spaced hint) is done by now.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let window = std::time::Instant::now();
        let before = h.engine.stats();
        let run = h.engine.start_run(script(steps.clone())).await.unwrap();
        loop {
            let change = tokio::time::timeout(Duration::from_secs(10), changes.next())
                .await
                .expect("the run ends")
                .expect("the feed goes on");
            if let aiops_engine::Change::Event(e) = change
                && e.run_id == run.id
                && e.kind == EventKind::RunSucceeded
            {
                break;
            }
        }
        let after = h.engine.stats();
        // Notifications here are the run's event hints (an eager start wakes no
        // other worker).
        let hints = after.notifications - before.notifications;
        let elapsed = window.elapsed();
        assert!(
            hints <= 1 + elapsed.as_millis() as u64 / 5,
            "{hints} notifications in {elapsed:?}: more than one per 5 ms"
        );
        // On SQLite the start shares the checkpoint writer's connection, which
        // counts only its checkpoints, and there are no hints; on Postgres the
        // start is a statement.
        let start = u64::from(backend == Backend::Postgres);
        let spent = (after.statements - before.statements).saturating_sub(hints + start);
        if run.status == RunStatus::Running {
            eager += 1;
            cheapest = cheapest.min(spent);
        }
    }
    assert!(
        cheapest <= STEPS,
        "a run of {STEPS} steps sent {cheapest} statements beyond its start and hints"
    );
}
both_backends!(
    a_run_started_beside_an_idle_worker_costs_its_commits_and_little_else,
    eager_run_cost
);

/// A step's result is held for the run's next commit: the next step makes it durable
/// before it starts (each step its own commit, in order), the last step commits with
/// the run's end (one commit: same `created_at`), and a result nothing follows for a
/// while is committed by itself after `step_result_hold`, not kept back.
async fn held_step_results(backend: Backend) {
    let config = EngineConfig {
        // Slow steps must not announce themselves early here: only the hold's own
        // delayed flush may commit the fast branch's result.
        started_event_delay: Duration::from_secs(30),
        // Longer than the default, so that a slow test machine cannot let the delayed
        // flush overtake the run's end.
        step_result_hold: Duration::from_millis(300),
        ..common::fast_config()
    };
    let Some(h) = Harness::with_config(backend, config).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let run = h
        .engine
        .start_run(script(
            json!([{ "kind": "noop" }, { "kind": "noop" }, { "kind": "noop" }]),
        ))
        .await
        .unwrap();
    h.wait_for_status(run.id, &[RunStatus::Succeeded], Duration::from_secs(20))
        .await;
    let events = assert_gap_free(&h.engine, run.id).await;
    let succeeded: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::StepSucceeded)
        .collect();
    assert_eq!(succeeded.len(), 3);
    assert!(
        succeeded[0].created_at < succeeded[1].created_at
            && succeeded[1].created_at < succeeded[2].created_at,
        "each step committed before the next one started: {events:#?}"
    );
    let end = events.last().unwrap();
    assert_eq!(end.kind, EventKind::RunSucceeded);
    assert_eq!(
        end.created_at, succeeded[2].created_at,
        "the last step commits with the run's end"
    );
    assert_eq!(h.engine.steps(run.id).await.unwrap().len(), 3);

    // One branch's fast step, the other's 1.5 s step: the fast result is durable long
    // before the slow one ends (no other commit of the run comes in between).
    let run = h
        .engine
        .start_run(script(json!([{ "kind": "parallel", "branches": [
            [{ "kind": "noop" }],
            [{ "kind": "work", "ms": 1500 }]
        ] }])))
        .await
        .unwrap();
    h.wait_for_status(run.id, &[RunStatus::Succeeded], Duration::from_secs(20))
        .await;
    let events = assert_gap_free(&h.engine, run.id).await;
    let succeeded: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::StepSucceeded)
        .collect();
    assert_eq!(succeeded.len(), 2, "{events:#?}");
    let gap = succeeded[1].created_at - succeeded[0].created_at;
    assert!(
        gap >= chrono::Duration::milliseconds(800),
        "the fast branch's result waited for the slow one: {gap}"
    );
}
both_backends!(
    step_results_are_held_for_the_next_commit_and_never_overtaken,
    held_step_results
);

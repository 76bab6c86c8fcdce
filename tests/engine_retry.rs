//! Conformance suite, part 4: retrying a FAILED or TIMED_OUT run from its failed
//! step (`Engine::retry_run`) — on Postgres and SQLite.
//!
//! Completed steps keep their recorded results and never run again; FAILED step
//! records are cleared so those steps run again; the run replays from the top.

mod common;

use std::time::Duration;

use aiops_engine::{Decision, Error, Event, EventKind, RunId, RunStatus, StartRun, StepStatus};
use common::{Backend, Harness, assert_gap_free, executions_of, recorded, recorded_script, script};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);

/// An in-process worker this test can stop (gracefully) while the harness lives
/// on, so that a retried run can be seen in QUEUED before anyone claims it.
struct StoppableWorker {
    token: CancellationToken,
    handle: tokio::task::JoinHandle<aiops_engine::Result<()>>,
}

impl StoppableWorker {
    fn start(h: &Harness) -> StoppableWorker {
        let token = h.shutdown.child_token();
        let handle = tokio::spawn(aiops_engine::Worker::new(h.engine.clone()).run(token.clone()));
        StoppableWorker { token, handle }
    }

    async fn stop(self) {
        self.token.cancel();
        self.handle
            .await
            .expect("worker task")
            .expect("worker stops cleanly");
    }
}

/// Events of `kind` about step `key`.
fn step_events(events: &[Event], kind: EventKind, key: &str) -> usize {
    events
        .iter()
        .filter(|e| e.kind == kind && e.payload["step_key"] == key)
        .count()
}

/// The RUN_QUEUED events written by retries.
fn retry_events(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::RunQueued && e.payload["retry"] == true)
        .collect()
}

/// Retries `run` while no worker runs and checks the run really is QUEUED and clean.
async fn retry_while_idle(h: &Harness, run: RunId, from: RunStatus) {
    let before = h.engine.run(run).await.unwrap();
    assert_eq!(before.status, from);
    let retried = h.engine.retry_run(run).await.unwrap();
    assert_eq!(retried.status, RunStatus::Queued);
    assert!(
        retried.error.is_none() && retried.output.is_none() && retried.finished_at.is_none(),
        "a retried run has no result yet: {retried:?}"
    );
    assert!(
        retried.deadline_at.is_none()
            && retried.remaining_ms.is_none()
            && retried.wake_at.is_none()
            && retried.lease_owner.is_none()
            && retried.lease_expires_at.is_none()
            && !retried.pause_requested,
        "a retried run waits for a claim with a fresh deadline: {retried:?}"
    );
    assert_eq!(retried.attempt, before.attempt + 1, "the lease is revoked");
    assert_eq!(retried.started_at, before.started_at);
    assert_eq!(retried.last_seq, before.last_seq + 1);
    let events = assert_gap_free(&h.engine, run).await;
    let last = events.last().unwrap();
    assert_eq!(last.kind, EventKind::RunQueued);
    assert_eq!(last.payload["retry"], true);
    assert_eq!(last.payload["from"], json!(from));
}

/// The failure is deterministic (a permanent `fail` step fails its first attempt, and
/// a retry restarts the step's attempt count): the retry runs the failed step again
/// and fails again, while the step completed before it is never run a second time.
async fn retry_reruns_only_the_failed_step(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let dir = h.record_dir.clone();
    let log = dir.join("effects.log");
    let worker = StoppableWorker::start(&h);
    let run = h
        .engine
        .start_run(recorded_script(
            json!([
                { "kind": "work", "ms": 10 },
                { "kind": "fail", "times": 1, "permanent": true },
                { "kind": "noop" }
            ]),
            &log,
        ))
        .await
        .unwrap();
    let failed = h.wait_for_status(run.id, &[RunStatus::Failed], LIMIT).await;
    assert!(failed.error.unwrap().contains("scripted failure 1 of 1"));
    worker.stop().await;

    retry_while_idle(&h, run.id, RunStatus::Failed).await;
    let steps = h.engine.steps(run.id).await.unwrap();
    assert_eq!(
        steps
            .iter()
            .map(|s| (s.key.as_str(), s.status))
            .collect::<Vec<_>>(),
        [("s0", StepStatus::Succeeded)],
        "the failed step record is cleared, the completed one kept"
    );

    let worker = StoppableWorker::start(&h);
    let again = h.wait_for_status(run.id, &[RunStatus::Failed], LIMIT).await;
    assert!(again.error.unwrap().contains("scripted failure 1 of 1"));
    worker.stop().await;

    let counts = executions_of(&log, run.id);
    assert_eq!(counts.get("s0"), Some(&1), "s0 completed: not run again");
    assert_eq!(counts.get("s1"), Some(&2), "s1 failed: run again");
    assert_eq!(counts.get("s2"), None, "s2 never reached");
    assert_eq!(
        recorded(&log)
            .iter()
            .filter(|l| l.ends_with("/s1 1"))
            .count(),
        2,
        "the retried step starts again at attempt 1"
    );

    let events = assert_gap_free(&h.engine, run.id).await;
    let retries = retry_events(&events);
    assert_eq!(retries.len(), 1);
    assert_eq!(
        retries[0].payload,
        json!({ "retry": true, "from": "FAILED", "cleared_steps": 1 })
    );
    assert_eq!(step_events(&events, EventKind::StepStarted, "s0"), 1);
    assert_eq!(step_events(&events, EventKind::StepStarted, "s1"), 2);
    assert_eq!(step_events(&events, EventKind::StepFailed, "s1"), 2);
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::RunStarted)
            .count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == EventKind::RunFailed).count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&EventKind::RunFailed));

    // A FAILED run can be retried again, each time with a new RUN_QUEUED.
    let retried = h.engine.retry_run(run.id).await.unwrap();
    assert_eq!(retried.status, RunStatus::Queued);
    assert_eq!(
        retry_events(&assert_gap_free(&h.engine, run.id).await).len(),
        2
    );
}
both_backends!(
    retry_of_a_failed_run_reruns_only_the_failed_step,
    retry_reruns_only_the_failed_step
);

/// A run fails in a step after completing others and after a person approved its
/// action; the cause (here: the side-effect file cannot be written) is fixed and an
/// operator retries it: only the failed step runs again, and the run succeeds.
async fn retry_succeeds_once_the_cause_is_fixed(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let dir = h.record_dir.clone();
    let log = dir.join("effects.log");
    let saved = dir.join("effects.saved");
    let worker = StoppableWorker::start(&h);
    let run = h
        .engine
        .start_run(recorded_script(
            json!([
                { "kind": "work", "ms": 10 },
                { "kind": "approval", "tool": "webhook_action", "args": {} },
                { "kind": "noop" },
                { "kind": "output", "value": { "ok": true } }
            ]),
            &log,
        ))
        .await
        .unwrap();
    h.wait_for_status(run.id, &[RunStatus::WaitingApproval], LIMIT)
        .await;
    assert_eq!(executions_of(&log, run.id).get("s0"), Some(&1));

    // Break the side effect: the action's write fails (a directory is in the way).
    std::fs::rename(&log, &saved).unwrap();
    std::fs::create_dir(&log).unwrap();
    let approval = h.engine.approvals_of_run(run.id).await.unwrap()[0].clone();
    h.engine
        .decide_approval(approval.id, Decision::Approve, "alice", None)
        .await
        .unwrap();
    let failed = h.wait_for_status(run.id, &[RunStatus::Failed], LIMIT).await;
    assert!(failed.error.unwrap().contains("record_to"));
    assert!(failed.finished_at.is_some());
    worker.stop().await;
    let action = h
        .engine
        .steps(run.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.key == "s1/action")
        .expect("the action step is recorded");
    assert_eq!(action.status, StepStatus::Failed);

    // Fix the cause, then retry.
    std::fs::remove_dir(&log).unwrap();
    std::fs::rename(&saved, &log).unwrap();
    retry_while_idle(&h, run.id, RunStatus::Failed).await;

    let worker = StoppableWorker::start(&h);
    let done = h
        .wait_for_status(run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    worker.stop().await;
    assert!(done.error.is_none() && done.finished_at.is_some());
    let output = done.output.unwrap();
    assert_eq!(output["output"], json!({ "ok": true }));
    assert_eq!(output["approvals"][0]["executed"], true);
    assert_eq!(output["approvals"][0]["outcome"]["status"], "APPROVED");

    let counts = executions_of(&log, run.id);
    assert_eq!(
        counts.get("s0"),
        Some(&1),
        "s0 completed before the failure"
    );
    assert_eq!(
        counts.get("s1/action"),
        Some(&1),
        "the failed attempt could not write"
    );
    assert_eq!(counts.get("s2"), Some(&1));
    let steps = h.engine.steps(run.id).await.unwrap();
    assert!(
        steps.iter().all(|s| s.status == StepStatus::Succeeded),
        "{steps:?}"
    );
    assert_eq!(steps.len(), 3);
    assert_eq!(h.engine.approvals_of_run(run.id).await.unwrap().len(), 1);

    let events = assert_gap_free(&h.engine, run.id).await;
    let retries = retry_events(&events);
    assert_eq!(retries.len(), 1);
    assert_eq!(
        retries[0].payload,
        json!({ "retry": true, "from": "FAILED", "cleared_steps": 1 })
    );
    assert_eq!(step_events(&events, EventKind::StepStarted, "s0"), 1);
    assert_eq!(step_events(&events, EventKind::StepStarted, "s1/action"), 2);
    assert_eq!(step_events(&events, EventKind::StepFailed, "s1/action"), 1);
    assert_eq!(
        step_events(&events, EventKind::StepSucceeded, "s1/action"),
        1
    );
    assert_eq!(step_events(&events, EventKind::StepStarted, "s2"), 1);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == EventKind::ApprovalRequested)
            .count(),
        1,
        "the approval is replayed, not asked again"
    );
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    let failed_at = kinds
        .iter()
        .position(|k| *k == EventKind::RunFailed)
        .unwrap();
    let retried_at = events
        .iter()
        .position(|e| e.kind == EventKind::RunQueued && e.payload["retry"] == true)
        .unwrap();
    assert_eq!(retried_at, failed_at + 1, "{kinds:?}");
    assert_eq!(kinds[retried_at + 1], EventKind::RunStarted, "{kinds:?}");
    assert_eq!(kinds.last(), Some(&EventKind::RunSucceeded));
}
both_backends!(
    retry_of_a_failed_run_succeeds_once_the_cause_is_fixed,
    retry_succeeds_once_the_cause_is_fixed
);

/// A run times out while its step waits to retry; retried after that wait, it gets a
/// fresh deadline, resumes the step at its next attempt and succeeds.
async fn retry_of_timed_out_run(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let dir = h.record_dir.clone();
    let log = dir.join("effects.log");
    let worker = StoppableWorker::start(&h);
    let mut req = StartRun::new(
        "script",
        json!({
            "steps": [
                { "kind": "work", "ms": 10 },
                { "kind": "fail", "times": 1 },
                { "kind": "noop" }
            ],
            "retry": { "initial_ms": 1500, "max_retries": 2 },
            "record_to": common::record_name(&log)
        }),
    );
    req.timeout = Some(Duration::from_millis(1000));
    let run = h.engine.start_run(req).await.unwrap();
    let timed_out = h
        .wait_for_status(run.id, &[RunStatus::TimedOut], LIMIT)
        .await;
    assert!(timed_out.error.unwrap().contains("deadline"));
    worker.stop().await;
    let s1 = h
        .engine
        .steps(run.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.key == "s1")
        .unwrap();
    assert_eq!((s1.status, s1.attempts), (StepStatus::RetryWait, 1));
    // Retry once the step's backoff is over, so the retried run fits its deadline.
    let next = s1.next_attempt_at.unwrap();
    if let Ok(wait) = (next - chrono::Utc::now()).to_std() {
        tokio::time::sleep(wait + Duration::from_millis(50)).await;
    }

    retry_while_idle(&h, run.id, RunStatus::TimedOut).await;
    let retried_at = chrono::Utc::now();
    let worker = StoppableWorker::start(&h);
    let done = h
        .wait_for_status(run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    worker.stop().await;
    assert!(
        done.deadline_at.unwrap() >= retried_at + chrono::Duration::milliseconds(900),
        "a retried run gets a fresh deadline: {:?} after retry at {retried_at}",
        done.deadline_at
    );

    let counts = executions_of(&log, run.id);
    assert_eq!(counts.get("s0"), Some(&1), "s0 completed: not run again");
    assert_eq!(
        counts.get("s1"),
        Some(&2),
        "attempt 1 failed, attempt 2 succeeded"
    );
    assert_eq!(counts.get("s2"), Some(&1));
    let s1 = h
        .engine
        .steps(run.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.key == "s1")
        .unwrap();
    assert_eq!((s1.status, s1.attempts), (StepStatus::Succeeded, 2));

    let events = assert_gap_free(&h.engine, run.id).await;
    let retries = retry_events(&events);
    assert_eq!(retries.len(), 1);
    assert_eq!(
        retries[0].payload,
        json!({ "retry": true, "from": "TIMED_OUT", "cleared_steps": 0 })
    );
    assert_eq!(step_events(&events, EventKind::StepStarted, "s0"), 1);
    assert_eq!(events.last().unwrap().kind, EventKind::RunSucceeded);
}
both_backends!(retry_of_a_timed_out_run_succeeds, retry_of_timed_out_run);

/// Only FAILED and TIMED_OUT runs can be retried; everything else is refused and
/// changes nothing.
async fn retry_refused_elsewhere(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let assert_refused = |result: aiops_engine::Result<_>, from: RunStatus| match result {
        Err(Error::IllegalTransition { source, .. }) => {
            assert_eq!((source.from, source.to), (from, RunStatus::Queued));
            assert_eq!(
                source.to_string(),
                format!("run cannot go from {from} to QUEUED")
            );
        }
        other => panic!("retry from {from} must be refused, got {other:?}"),
    };

    // No worker yet: QUEUED and PAUSED runs stay put.
    let queued = h
        .engine
        .start_run(script(json!([{ "kind": "noop" }])))
        .await
        .unwrap();
    assert_refused(h.engine.retry_run(queued.id).await, RunStatus::Queued);
    let paused = h
        .engine
        .start_run(script(json!([{ "kind": "noop" }])))
        .await
        .unwrap();
    h.engine.pause_run(paused.id).await.unwrap();
    assert_refused(h.engine.retry_run(paused.id).await, RunStatus::Paused);
    let cancelled = h
        .engine
        .start_run(script(json!([{ "kind": "noop" }])))
        .await
        .unwrap();
    h.engine.cancel_run(cancelled.id).await.unwrap();
    assert_refused(h.engine.retry_run(cancelled.id).await, RunStatus::Cancelled);
    match h.engine.retry_run(RunId::new()).await {
        Err(Error::NotFound { what: "run", .. }) => {}
        other => panic!("retry of an unknown run: {other:?}"),
    }
    for (id, status) in [
        (queued.id, RunStatus::Queued),
        (paused.id, RunStatus::Paused),
        (cancelled.id, RunStatus::Cancelled),
    ] {
        assert_eq!(h.engine.run(id).await.unwrap().status, status);
        assert!(retry_events(&assert_gap_free(&h.engine, id).await).is_empty());
    }

    let worker = StoppableWorker::start(&h);
    let succeeded = h
        .engine
        .start_run(script(json!([{ "kind": "noop" }])))
        .await
        .unwrap();
    let done = h
        .wait_for_status(succeeded.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    assert_refused(h.engine.retry_run(succeeded.id).await, RunStatus::Succeeded);
    let waiting = h
        .engine
        .start_run(script(
            json!([{ "kind": "approval", "tool": "webhook_action", "args": {} }]),
        ))
        .await
        .unwrap();
    h.wait_for_status(waiting.id, &[RunStatus::WaitingApproval], LIMIT)
        .await;
    assert_refused(
        h.engine.retry_run(waiting.id).await,
        RunStatus::WaitingApproval,
    );
    worker.stop().await;

    // Nothing changed: no event, same state; the paused run was not resumed.
    let after = h.engine.run(succeeded.id).await.unwrap();
    assert_eq!(after, done);
    for (id, status) in [
        (paused.id, RunStatus::Paused),
        (cancelled.id, RunStatus::Cancelled),
        (succeeded.id, RunStatus::Succeeded),
        (waiting.id, RunStatus::WaitingApproval),
    ] {
        assert_eq!(h.engine.run(id).await.unwrap().status, status);
        assert!(retry_events(&assert_gap_free(&h.engine, id).await).is_empty());
    }
}
both_backends!(
    retry_is_refused_unless_failed_or_timed_out,
    retry_refused_elsewhere
);

async fn subscription_spans_a_retry(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    let run = h
        .engine
        .start_run(StartRun::new(
            "script",
            serde_json::json!({ "steps": [{ "kind": "fail", "times": 1, "permanent": true }] }),
        ))
        .await
        .unwrap();
    h.wait_for_status(run.id, &[RunStatus::Failed], Duration::from_secs(10))
        .await;
    h.engine.retry_run(run.id).await.unwrap();
    // Fails again (attempts restart), but the log continues past the first RUN_FAILED.
    h.wait_for_status(run.id, &[RunStatus::Failed], Duration::from_secs(10))
        .await;
    let n = h.engine.run(run.id).await.unwrap().last_seq;
    let seqs: Vec<i64> = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::collect::<Vec<_>>(futures::StreamExt::map(
            h.engine.subscribe(run.id, 0),
            |e| e.unwrap().seq,
        )),
    )
    .await
    .expect("the stream ends after the last final event");
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
}
both_backends!(
    subscription_from_zero_spans_a_retried_run,
    subscription_spans_a_retry
);

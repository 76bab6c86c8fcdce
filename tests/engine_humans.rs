//! Conformance suite, part 2: human-in-the-loop (approvals, questions) and run
//! control (pause, resume, cancel) — on Postgres and SQLite.

mod common;

use std::time::Duration;

use aiops_engine::model::Step;
use aiops_engine::{
    ApprovalStatus, Decision, EngineConfig, Error, EventKind, PageRequest, QuestionStatus, RunId,
    RunStatus, StepStatus,
};
use common::{Backend, Harness, assert_gap_free, executions, recorded, recorded_script, script};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(20);

fn one_slot() -> EngineConfig {
    EngineConfig {
        max_concurrent_runs: 1,
        ..common::fast_config()
    }
}

async fn step_of(h: &Harness, run: RunId, key: &str) -> Option<Step> {
    h.engine
        .steps(run)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.key == key)
}

async fn kinds_of(h: &Harness, run: RunId) -> Vec<EventKind> {
    assert_gap_free(&h.engine, run)
        .await
        .iter()
        .map(|e| e.kind)
        .collect()
}

fn position(kinds: &[EventKind], kind: EventKind) -> usize {
    kinds
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {kinds:?}"))
}

async fn approval_approve(backend: Backend) {
    let Some(h) = Harness::with_config(backend, one_slot()).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let dir = h.record_dir.clone();
    let log = dir.join("effects.log");
    let args =
        json!({ "matchers": [{ "name": "alertname", "value": "DiskFull" }], "duration": "2h" });
    let a = h
        .engine
        .start_run(recorded_script(
            json!([
                { "kind": "noop" },
                { "kind": "approval", "tool": "alertmanager_silence", "args": args,
                  "risk_note": "silences paging for 2h" },
                { "kind": "noop" }
            ]),
            &log,
        ))
        .await
        .unwrap();
    let waiting = h
        .wait_for_status(a.id, &[RunStatus::WaitingApproval], LIMIT)
        .await;
    assert!(
        waiting.lease_owner.is_none() && waiting.lease_expires_at.is_none(),
        "a run waiting for approval holds no worker: {waiting:?}"
    );
    let approvals = h.engine.approvals_of_run(a.id).await.unwrap();
    assert_eq!(approvals.len(), 1);
    let approval = approvals[0].clone();
    assert_eq!(approval.status, ApprovalStatus::Pending);
    assert_eq!(approval.step_key, "s1");
    assert_eq!(approval.tool, "alertmanager_silence");
    assert_eq!(approval.args, args);
    assert_eq!(
        approval.risk_note.as_deref(),
        Some("silences paging for 2h")
    );
    let ttl = approval.expires_at - approval.requested_at;
    assert!(
        (ttl - chrono::Duration::hours(24)).num_seconds().abs() <= 1,
        "default approval TTL is 24 h: {ttl}"
    );
    assert!(approval.decided_by.is_none() && approval.decided_at.is_none());
    let inbox = h
        .engine
        .pending_approvals(&PageRequest::first(100))
        .await
        .unwrap()
        .items;
    assert_eq!(
        inbox.iter().map(|a| a.id).collect::<Vec<_>>(),
        [approval.id]
    );
    assert!(
        step_of(&h, a.id, "s1/action").await.is_none(),
        "the action must not run before approval"
    );

    // The only slot is free: another run completes while A still waits.
    let b = h
        .engine
        .start_run(script(json!([{ "kind": "noop" }])))
        .await
        .unwrap();
    h.wait_for_status(b.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    assert_eq!(
        h.engine.run(a.id).await.unwrap().status,
        RunStatus::WaitingApproval
    );

    let decided = h
        .engine
        .decide_approval(
            approval.id,
            Decision::Approve,
            "alice",
            Some("known disk issue, silence it"),
        )
        .await
        .unwrap();
    assert_eq!(decided.status, ApprovalStatus::Approved);
    let done = h
        .wait_for_status(a.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    let output = done.output.unwrap();
    let reported = &output["approvals"][0];
    assert_eq!(reported["step"], "s1");
    assert_eq!(reported["outcome"]["status"], "APPROVED");
    assert_eq!(reported["outcome"]["approval_id"], json!(approval.id));
    assert_eq!(reported["outcome"]["decided_by"], "alice");
    assert_eq!(
        reported["outcome"]["comment"],
        "known disk issue, silence it"
    );
    assert_eq!(reported["executed"], true);
    assert_eq!(output["steps"], 3);

    let action = step_of(&h, a.id, "s1/action").await.expect("action step");
    assert_eq!((action.status, action.attempts), (StepStatus::Succeeded, 1));
    let counts = executions(&log);
    assert_eq!(counts.get(&format!("{}/s1/action", a.id)), Some(&1));
    assert_eq!(
        counts.get(&format!("{}/s0", a.id)),
        Some(&1),
        "s0 not re-run"
    );
    assert_eq!(counts.get(&format!("{}/s2", a.id)), Some(&1));

    let stored = h.engine.approval(approval.id).await.unwrap();
    assert_eq!(stored.status, ApprovalStatus::Approved);
    assert_eq!(stored.decided_by.as_deref(), Some("alice"));
    assert_eq!(
        stored.comment.as_deref(),
        Some("known disk issue, silence it")
    );
    let decided_at = stored.decided_at.expect("decided_at");
    assert!(decided_at >= stored.requested_at);
    assert!(
        h.engine
            .pending_approvals(&PageRequest::first(100))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let events = assert_gap_free(&h.engine, a.id).await;
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    let requested = position(&kinds, EventKind::ApprovalRequested);
    let decided_ev = position(&kinds, EventKind::ApprovalDecided);
    assert!(requested < decided_ev, "{kinds:?}");
    assert_eq!(events[requested].payload["tool"], "alertmanager_silence");
    assert_eq!(events[requested].payload["approval_id"], json!(approval.id));
    assert_eq!(events[decided_ev].payload["status"], "APPROVED");
    assert_eq!(events[decided_ev].payload["decided_by"], "alice");
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::ApprovalDecided)
            .count(),
        1
    );
    assert_eq!(kinds.last(), Some(&EventKind::RunSucceeded));
}
both_backends!(
    approved_action_runs_after_the_worker_was_freed,
    approval_approve
);

async fn approval_reject(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let dir = h.record_dir.clone();
    let log = dir.join("effects.log");
    let run = h
        .engine
        .start_run(recorded_script(
            json!([
                { "kind": "noop" },
                { "kind": "approval", "tool": "kubectl_rollout_restart", "args": { "deployment": "api" } },
                { "kind": "noop" }
            ]),
            &log,
        ))
        .await
        .unwrap();
    h.wait_for_status(run.id, &[RunStatus::WaitingApproval], LIMIT)
        .await;
    let approval = h.engine.approvals_of_run(run.id).await.unwrap().remove(0);
    let decided = h
        .engine
        .decide_approval(
            approval.id,
            Decision::Reject,
            "bob",
            Some("not during business hours"),
        )
        .await
        .unwrap();
    assert_eq!(decided.status, ApprovalStatus::Rejected);

    let done = h
        .wait_for_status(run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    let output = done.output.unwrap();
    let reported = &output["approvals"][0];
    assert_eq!(reported["outcome"]["status"], "REJECTED");
    assert_eq!(reported["outcome"]["comment"], "not during business hours");
    assert_eq!(reported["outcome"]["decided_by"], "bob");
    assert_eq!(reported["executed"], false);
    assert_eq!(output["steps"], 3, "the run continued after the rejection");

    assert!(
        step_of(&h, run.id, "s1/action").await.is_none(),
        "a rejected action never runs"
    );
    assert_eq!(
        step_of(&h, run.id, "s2").await.unwrap().status,
        StepStatus::Succeeded
    );
    assert!(
        !executions(&log).contains_key(&format!("{}/s1/action", run.id)),
        "no side effect of the rejected action"
    );
    let stored = h.engine.approval(approval.id).await.unwrap();
    assert_eq!(stored.status, ApprovalStatus::Rejected);
    assert_eq!(stored.decided_by.as_deref(), Some("bob"));
    assert_eq!(stored.comment.as_deref(), Some("not during business hours"));
    assert!(stored.decided_at.is_some());

    let events = assert_gap_free(&h.engine, run.id).await;
    let decided_ev = events
        .iter()
        .find(|e| e.kind == EventKind::ApprovalDecided)
        .unwrap();
    assert_eq!(decided_ev.payload["status"], "REJECTED");
    assert_eq!(decided_ev.payload["comment"], "not during business hours");
}
both_backends!(
    rejected_action_is_skipped_and_the_run_continues,
    approval_reject
);

async fn approval_expiry(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let run = h
        .engine
        .start_run(script(json!([
            { "kind": "approval", "tool": "alertmanager_silence", "args": {}, "expires_in_ms": 600 },
            { "kind": "noop" }
        ])))
        .await
        .unwrap();
    let waiting = h
        .wait_for_status(run.id, &[RunStatus::WaitingApproval], LIMIT)
        .await;
    let approval = h.engine.approvals_of_run(run.id).await.unwrap().remove(0);
    assert_eq!(approval.status, ApprovalStatus::Pending);
    let ttl = (approval.expires_at - approval.requested_at).num_milliseconds();
    assert!((550..=700).contains(&ttl), "expires_in_ms honoured: {ttl}");
    assert_eq!(
        waiting.wake_at,
        Some(approval.expires_at),
        "the parked run wakes when its approval expires"
    );

    // Nobody decides.
    let done = h
        .wait_for_status(run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    let output = done.output.unwrap();
    assert_eq!(output["approvals"][0]["outcome"]["status"], "EXPIRED");
    assert_eq!(output["approvals"][0]["executed"], false);
    assert_eq!(output["steps"], 2, "the run continued as after a rejection");
    assert!(step_of(&h, run.id, "s0/action").await.is_none());

    let stored = h.engine.approval(approval.id).await.unwrap();
    assert_eq!(stored.status, ApprovalStatus::Expired);
    assert!(stored.decided_by.is_none());
    assert!(stored.decided_at.unwrap() >= stored.expires_at);
    assert!(
        h.engine
            .pending_approvals(&PageRequest::first(100))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let events = assert_gap_free(&h.engine, run.id).await;
    let decided: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::ApprovalDecided)
        .collect();
    assert_eq!(decided.len(), 1, "{events:#?}");
    assert_eq!(decided[0].payload["status"], "EXPIRED");
    assert_eq!(decided[0].payload["approval_id"], json!(approval.id));
}
both_backends!(
    unanswered_approval_expires_and_counts_as_rejection,
    approval_expiry
);

async fn second_decision(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let decided_run = h
        .engine
        .start_run(script(json!([
            { "kind": "approval", "tool": "alertmanager_silence", "args": {} },
            { "kind": "noop" }
        ])))
        .await
        .unwrap();
    let expiring_run = h
        .engine
        .start_run(script(json!([
            { "kind": "approval", "tool": "alertmanager_silence", "args": {}, "expires_in_ms": 600 }
        ])))
        .await
        .unwrap();
    h.wait_for_status(decided_run.id, &[RunStatus::WaitingApproval], LIMIT)
        .await;
    let approval = h
        .engine
        .approvals_of_run(decided_run.id)
        .await
        .unwrap()
        .remove(0);
    h.engine
        .decide_approval(approval.id, Decision::Approve, "alice", Some("first"))
        .await
        .unwrap();
    h.wait_for_status(decided_run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    let before = h.engine.approval(approval.id).await.unwrap();
    let events_before = assert_gap_free(&h.engine, decided_run.id).await.len();

    for decision in [Decision::Approve, Decision::Reject] {
        let err = h
            .engine
            .decide_approval(approval.id, decision, "mallory", Some("second"))
            .await
            .unwrap_err();
        match &err {
            Error::NotPending { what, id, status } => {
                assert_eq!(*what, "approval");
                assert_eq!(*id, approval.id.to_string());
                assert_eq!(status, "APPROVED", "{err}");
            }
            other => panic!("expected NotPending, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("APPROVED") && message.contains("not PENDING"),
            "{message}"
        );
    }
    assert_eq!(
        h.engine.approval(approval.id).await.unwrap(),
        before,
        "a failed decision changes nothing"
    );
    assert_eq!(before.comment.as_deref(), Some("first"));
    assert_eq!(before.decided_by.as_deref(), Some("alice"));
    let after = assert_gap_free(&h.engine, decided_run.id).await;
    assert_eq!(
        after.len(),
        events_before,
        "no event from a failed decision"
    );
    assert_eq!(
        h.engine.run(decided_run.id).await.unwrap().status,
        RunStatus::Succeeded
    );

    // Expired approvals cannot be decided either.
    h.wait_for_status(expiring_run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    let expired = h
        .engine
        .approvals_of_run(expiring_run.id)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(expired.status, ApprovalStatus::Expired);
    let events_before = assert_gap_free(&h.engine, expiring_run.id).await.len();
    let err = h
        .engine
        .decide_approval(expired.id, Decision::Approve, "alice", None)
        .await
        .unwrap_err();
    match &err {
        Error::NotPending { status, .. } => assert_eq!(status, "EXPIRED", "{err}"),
        other => panic!("expected NotPending, got {other:?}"),
    }
    assert!(err.to_string().contains("EXPIRED"), "{err}");
    assert_eq!(h.engine.approval(expired.id).await.unwrap(), expired);
    assert_eq!(
        assert_gap_free(&h.engine, expiring_run.id).await.len(),
        events_before
    );
}
both_backends!(
    deciding_twice_or_after_expiry_fails_and_changes_nothing,
    second_decision
);

async fn question_answer(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let run = h
        .engine
        .start_run(script(json!([
            { "kind": "question", "text": "Which cluster is affected?" },
            { "kind": "noop" }
        ])))
        .await
        .unwrap();
    let waiting = h
        .wait_for_status(run.id, &[RunStatus::WaitingInput], LIMIT)
        .await;
    assert!(waiting.lease_owner.is_none(), "the worker was released");
    let pending = h
        .engine
        .pending_questions(&PageRequest::first(100))
        .await
        .unwrap()
        .items;
    assert_eq!(pending.len(), 1);
    let q = pending[0].clone();
    assert_eq!(q.run_id, run.id);
    assert_eq!(q.status, QuestionStatus::Pending);
    assert_eq!(q.question, "Which cluster is affected?");
    assert_eq!(q.step_key, "s0");

    // An empty answer is refused and changes nothing.
    let events_before = assert_gap_free(&h.engine, run.id).await.len();
    for empty in ["", "   "] {
        let err = h
            .engine
            .answer_question(q.id, empty, "carol")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("answer"), "{err}");
    }
    assert_eq!(h.engine.question(q.id).await.unwrap(), q);
    assert_eq!(
        h.engine.run(run.id).await.unwrap().status,
        RunStatus::WaitingInput
    );
    assert_eq!(
        assert_gap_free(&h.engine, run.id).await.len(),
        events_before
    );

    let answered = h
        .engine
        .answer_question(q.id, "prod-eu-1", "carol")
        .await
        .unwrap();
    assert_eq!(answered.status, QuestionStatus::Answered);
    assert_eq!(answered.answer.as_deref(), Some("prod-eu-1"));
    assert_eq!(answered.answered_by.as_deref(), Some("carol"));
    assert!(answered.answered_at.is_some());

    let done = h
        .wait_for_status(run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    let output = done.output.unwrap();
    assert_eq!(output["answers"][0]["step"], "s0");
    assert_eq!(output["answers"][0]["outcome"]["answer"], "prod-eu-1");
    assert_eq!(output["answers"][0]["outcome"]["answered_by"], "carol");
    assert_eq!(output["answers"][0]["outcome"]["question_id"], json!(q.id));
    assert!(
        h.engine
            .pending_questions(&PageRequest::first(100))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let events_before = assert_gap_free(&h.engine, run.id).await.len();
    let err = h
        .engine
        .answer_question(q.id, "prod-us-2", "dave")
        .await
        .unwrap_err();
    match &err {
        Error::NotPending { what, status, .. } => {
            assert_eq!((*what, status.as_str()), ("question", "ANSWERED"), "{err}");
        }
        other => panic!("expected NotPending, got {other:?}"),
    }
    assert!(err.to_string().contains("ANSWERED, not PENDING"), "{err}");
    assert_eq!(h.engine.question(q.id).await.unwrap(), answered);
    let events = assert_gap_free(&h.engine, run.id).await;
    assert_eq!(events.len(), events_before);
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert!(
        position(&kinds, EventKind::InputRequested) < position(&kinds, EventKind::InputReceived)
    );
    let received = &events[position(&kinds, EventKind::InputReceived)];
    assert_eq!(received.payload["status"], "ANSWERED");
    assert_eq!(received.payload["answered_by"], "carol");
}
both_backends!(question_waits_for_one_non_empty_answer, question_answer);

async fn pause_resume(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let dir = h.record_dir.clone();
    let log = dir.join("effects.log");
    let steps: Vec<_> = (0..8)
        .map(|_| json!({ "kind": "work", "ms": 150 }))
        .collect();
    let run = h
        .engine
        .start_run(recorded_script(json!(steps), &log))
        .await
        .unwrap();

    // Pause while a step is visibly in flight, after at least two completed.
    let deadline = tokio::time::Instant::now() + LIMIT;
    let in_flight = loop {
        let steps = h.engine.steps(run.id).await.unwrap();
        let done = steps
            .iter()
            .filter(|s| s.status == StepStatus::Succeeded)
            .count();
        if done >= 2
            && let Some(running) = steps.iter().find(|s| s.status == StepStatus::Running)
        {
            break running.key.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no step in flight after two completed: {steps:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let asked = h.engine.pause_run(run.id).await.unwrap();
    assert!(
        matches!(asked.status, RunStatus::Running | RunStatus::Paused),
        "{asked:?}"
    );

    let paused = h.wait_for_status(run.id, &[RunStatus::Paused], LIMIT).await;
    assert!(paused.lease_owner.is_none(), "a paused run holds no worker");
    assert!(!paused.pause_requested);
    assert!(paused.remaining_ms.is_some(), "the deadline stops ticking");
    let at_pause = h.engine.steps(run.id).await.unwrap();
    assert_eq!(
        at_pause.iter().find(|s| s.key == in_flight).unwrap().status,
        StepStatus::Succeeded,
        "the step in flight when pausing completed and was checkpointed"
    );
    assert!(
        at_pause.iter().all(|s| s.status == StepStatus::Succeeded),
        "nothing half-done at a boundary: {at_pause:?}"
    );
    let n = at_pause.len();
    assert!(n < 8, "paused before the end ({n} steps)");
    let lines = recorded(&log).len();
    assert_eq!(lines, n);

    // Nothing moves while paused.
    let seq_at_pause = paused.last_seq;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let still = h.engine.run(run.id).await.unwrap();
    assert_eq!(still.status, RunStatus::Paused);
    assert!(still.lease_owner.is_none());
    assert_eq!(still.last_seq, seq_at_pause, "no event while paused");
    assert_eq!(h.engine.steps(run.id).await.unwrap().len(), n);
    assert_eq!(recorded(&log).len(), lines, "no step started while paused");
    let kinds = kinds_of(&h, run.id).await;
    assert_eq!(kinds.last(), Some(&EventKind::RunPaused));

    // Pausing again is a no-op.
    let again = h.engine.pause_run(run.id).await.unwrap();
    assert_eq!(again.status, RunStatus::Paused);
    assert_eq!(again.last_seq, seq_at_pause);

    let resumed = h.engine.resume_run(run.id).await.unwrap();
    assert!(!matches!(resumed.status, RunStatus::Paused), "{resumed:?}");
    let done = h
        .wait_for_status(run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    assert_eq!(done.output.unwrap()["steps"], 8);

    let counts = executions(&log);
    for i in 0..8 {
        assert_eq!(
            counts.get(&format!("{}/s{i}", run.id)),
            Some(&1),
            "step s{i} ran exactly once: {counts:?}"
        );
    }
    assert_eq!(counts.len(), 8);
    let steps = h.engine.steps(run.id).await.unwrap();
    assert_eq!(steps.len(), 8);
    assert!(
        steps
            .iter()
            .all(|s| s.status == StepStatus::Succeeded && s.attempts == 1)
    );

    let kinds = kinds_of(&h, run.id).await;
    let paused_at = position(&kinds, EventKind::RunPaused);
    let resumed_at = position(&kinds, EventKind::RunResumed);
    assert!(paused_at < resumed_at, "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == EventKind::RunPaused).count(),
        1
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::StepSucceeded)
            .count(),
        8
    );
    assert_eq!(kinds.last(), Some(&EventKind::RunSucceeded));
}
both_backends!(
    pause_stops_at_a_step_boundary_and_resume_finishes,
    pause_resume
);

async fn cancel_long_step(backend: Backend) {
    let Some(h) = Harness::with_config(backend, one_slot()).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let dir = h.record_dir.clone();
    let log = dir.join("effects.log");
    let run = h
        .engine
        .start_run(recorded_script(
            json!([{ "kind": "work", "ms": 30_000 }, { "kind": "noop" }]),
            &log,
        ))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let events = h.engine.events(run.id, 0, 1000).await.unwrap();
        if events.iter().any(|e| e.kind == EventKind::StepStarted) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the long step never started: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = std::time::Instant::now();
    let cancelled = h.engine.cancel_run(run.id).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    let cancelled = h
        .wait_for_status(run.id, &[RunStatus::Cancelled], Duration::from_secs(5))
        .await;
    assert!(cancelled.lease_owner.is_none());
    assert!(cancelled.finished_at.is_some());

    // The in-flight step was aborted: the only slot frees up long before 30 s.
    let next = h
        .engine
        .start_run(script(json!([{ "kind": "noop" }])))
        .await
        .unwrap();
    h.wait_for_status(next.id, &[RunStatus::Succeeded], Duration::from_secs(5))
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));

    let steps = h.engine.steps(run.id).await.unwrap();
    let long = steps.iter().find(|s| s.key == "s0");
    assert!(
        long.is_none_or(|s| s.status != StepStatus::Succeeded),
        "the aborted step must not be recorded as done: {steps:?}"
    );
    assert!(
        steps.iter().all(|s| s.key != "s1"),
        "s1 never ran: {steps:?}"
    );
    assert!(recorded(&log).is_empty(), "{:?}", recorded(&log));
    let events = assert_gap_free(&h.engine, run.id).await;
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.last(), Some(&EventKind::RunCancelled), "{kinds:?}");
    assert_eq!(events.last().unwrap().payload["from"], "RUNNING");
    assert!(!kinds.contains(&EventKind::StepSucceeded));
    assert!(!kinds.contains(&EventKind::RunSucceeded));

    // Cancelling again is a no-op; resuming or pausing a cancelled run is refused.
    let again = h.engine.cancel_run(run.id).await.unwrap();
    assert_eq!(again.status, RunStatus::Cancelled);
    assert_eq!(again.last_seq, cancelled.last_seq);
    let err = h.engine.resume_run(run.id).await.unwrap_err();
    assert!(matches!(err, Error::IllegalTransition { .. }), "{err:?}");
    assert!(err.to_string().contains("CANCELLED to RUNNING"), "{err}");
    let err = h.engine.pause_run(run.id).await.unwrap_err();
    assert!(matches!(err, Error::IllegalTransition { .. }), "{err:?}");
    assert!(err.to_string().contains("CANCELLED to PAUSED"), "{err}");
    let last = h.engine.run(run.id).await.unwrap();
    assert_eq!(last.status, RunStatus::Cancelled);
    assert_eq!(last.last_seq, cancelled.last_seq);
}
both_backends!(cancel_aborts_the_step_in_flight, cancel_long_step);

/// A cancel decided in another process reaches the holder at once (Postgres NOTIFY,
/// sent after the cancel's commit), not at its next heartbeat: the holder's only
/// slot frees long before the 30 s step or the 60 s heartbeat would free it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_from_another_process_aborts_the_step_at_once() {
    let slow_heartbeat = EngineConfig {
        heartbeat_interval: Duration::from_secs(60),
        lease_ttl: Duration::from_secs(120),
        ..one_slot()
    };
    let Some(h) = Harness::with_config(Backend::Postgres, slow_heartbeat).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let run = h
        .engine
        .start_run(script(json!([{ "kind": "work", "ms": 30_000 }])))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !h
        .engine
        .events(run.id, 0, 1000)
        .await
        .unwrap()
        .iter()
        .any(|e| e.kind == EventKind::StepStarted)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the step never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let other = h.second_engine(common::fast_config()).await;
    let started = std::time::Instant::now();
    assert_eq!(
        other.cancel_run(run.id).await.unwrap().status,
        RunStatus::Cancelled
    );
    let next = h
        .engine
        .start_run(script(json!([{ "kind": "noop" }])))
        .await
        .unwrap();
    h.wait_for_status(next.id, &[RunStatus::Succeeded], Duration::from_secs(10))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the slot freed after {:?}",
        started.elapsed()
    );
    assert_gap_free(&h.engine, run.id).await;
}

async fn cancel_waiting_approval(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _worker = h.spawn_worker();
    let run = h
        .engine
        .start_run(script(json!([
            { "kind": "approval", "tool": "alertmanager_silence", "args": {} },
            { "kind": "noop" }
        ])))
        .await
        .unwrap();
    h.wait_for_status(run.id, &[RunStatus::WaitingApproval], LIMIT)
        .await;
    let approval = h.engine.approvals_of_run(run.id).await.unwrap().remove(0);
    assert_eq!(
        h.engine
            .pending_approvals(&PageRequest::first(100))
            .await
            .unwrap()
            .items
            .iter()
            .map(|a| a.id)
            .collect::<Vec<_>>(),
        [approval.id]
    );

    let cancelled = h.engine.cancel_run(run.id).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    let closed = h.engine.approval(approval.id).await.unwrap();
    assert_eq!(closed.status, ApprovalStatus::Expired);
    let comment = closed.comment.clone().unwrap_or_default();
    assert!(
        comment.contains("run ended") && comment.contains("CANCELLED"),
        "{comment:?}"
    );
    assert!(closed.decided_at.is_some());
    assert!(
        h.engine
            .pending_approvals(&PageRequest::first(100))
            .await
            .unwrap()
            .items
            .is_empty(),
        "the inbox no longer lists it"
    );
    let err = h
        .engine
        .decide_approval(approval.id, Decision::Approve, "alice", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotPending { status, .. } if status == "EXPIRED"),
        "{err:?}"
    );

    // And nothing wakes the run again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run_now = h.engine.run(run.id).await.unwrap();
    assert_eq!(run_now.status, RunStatus::Cancelled);
    assert!(run_now.lease_owner.is_none());
    let kinds = kinds_of(&h, run.id).await;
    assert_eq!(kinds.last(), Some(&EventKind::RunCancelled));
    assert!(step_of(&h, run.id, "s1").await.is_none());
}
both_backends!(
    cancelling_a_run_closes_its_pending_approval,
    cancel_waiting_approval
);

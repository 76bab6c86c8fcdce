//! What the step context offers agent workflows (issue 7): usage per attempt and
//! summed across replays, durable events emitted once, a live-only stream, key
//! segments that cannot collide, waiting without spending attempts, and the run's
//! information. Each on Postgres and SQLite, and all of them together across a
//! replay after a worker process is SIGKILLed.

mod common;

use std::time::Duration;

use aiops_engine::{
    EventKind, RunStatus, StartRun, StepContext, StepFailure, Usage, Workflow, key_segment,
};
use common::{Backend, Harness, WorkerProcess, assert_gap_free, wait_for_status};
use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

fn usage(input: u64, output: u64, cost: f64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cost_usd: cost,
    }
}

/// A test workflow: a model call that is charged on each attempt and fails its first.
struct ChargedRetry;

impl Workflow for ChargedRetry {
    fn run(&self, ctx: StepContext) -> aiops_engine::workflow::WorkflowFuture {
        async move {
            let opts = aiops_engine::StepOptions {
                retry: Some(aiops_engine::RetryPolicy {
                    initial: Duration::from_millis(10),
                    jitter: 0.0,
                    ..aiops_engine::RetryPolicy::default()
                }),
                ..Default::default()
            };
            ctx.step_with("llm", opts, |a| async move {
                a.record_usage(usage(100, 20, 0.01));
                if a.number == 1 {
                    return Err(StepFailure::retryable("overloaded"));
                }
                Ok(a.number)
            })
            .await?;
            ctx.step("tool", |a| async move {
                a.record_usage(usage(1, 1, 0.0));
                Ok(())
            })
            .await?;
            Ok(json!({ "usage": ctx.usage() }))
        }
        .boxed()
    }
}

/// Starts `workflow` once, registered as `name` on a new harness with a worker, and
/// waits for it to succeed (`None`: the database is not available here).
async fn succeeded_alone(
    backend: Backend,
    name: &'static str,
    workflow: impl Workflow + 'static,
) -> Option<(Harness, aiops_engine::model::Run)> {
    let h =
        Harness::with_workflows(backend, common::fast_config(), |w| w.with(name, workflow)).await?;
    let worker = h.spawn_worker();
    let run = h
        .engine
        .start_run(StartRun::new(name, json!({})))
        .await
        .unwrap();
    let done = h
        .wait_for_status(run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    worker.abort();
    Some((h, done))
}

/// Usage is recorded per attempt (a failed attempt costs too), per step, and summed
/// by `ctx.usage()` and `Engine::usage`.
async fn usage_per_attempt(backend: Backend) {
    let Some((h, done)) = succeeded_alone(backend, "charged", ChargedRetry).await else {
        return;
    };
    let total = usage(201, 41, 0.02);
    let from_ctx: Usage =
        serde_json::from_value(done.output.clone().unwrap()["usage"].clone()).unwrap();
    assert_eq!(from_ctx.input_tokens, total.input_tokens);
    assert_eq!(from_ctx.output_tokens, total.output_tokens);
    assert!((from_ctx.cost_usd - total.cost_usd).abs() < 1e-9);
    assert_eq!(h.engine.usage(done.id).await.unwrap().input_tokens, 201);
    let steps = h.engine.steps(done.id).await.unwrap();
    let llm = steps.iter().find(|s| s.key == "llm").unwrap();
    assert_eq!(
        (llm.attempts, llm.usage.input_tokens),
        (2, 200),
        "both attempts charged"
    );
}
both_backends!(usage_is_recorded_per_attempt_and_summed, usage_per_attempt);

/// `emit` appends durable events that go out with the next durable operation (or
/// the run's end), once each.
async fn emitted_events(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    let steps = json!([
        { "kind": "emit", "event": "TOOL_CALL", "payload": { "id": "call-1" } },
        { "kind": "work", "ms": 5 },
        { "kind": "emit", "event": "TOOL_RESULT", "payload": { "id": "call-1" } },
        { "kind": "sleep", "ms": 400 },
        { "kind": "emit", "event": "FINDING", "payload": { "id": "finding-1" } }
    ]);
    let run = h
        .engine
        .start_run(StartRun::new("script", json!({ "steps": steps })))
        .await
        .unwrap();
    h.wait_for_status(run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    let events = assert_gap_free(&h.engine, run.id).await;
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    let pos = |k: EventKind| kinds.iter().position(|x| *x == k).unwrap();
    let count = |k: EventKind| kinds.iter().filter(|x| **x == k).count();
    assert_eq!(
        (
            count(EventKind::ToolCall),
            count(EventKind::ToolResult),
            count(EventKind::Finding)
        ),
        (1, 1, 1),
        "{kinds:?}"
    );
    // Each rides on the next durable operation: before the work step's success,
    // before the sleep, and before the run's final event.
    assert!(
        pos(EventKind::ToolCall) < pos(EventKind::StepSucceeded),
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&EventKind::RunSucceeded));
    assert_eq!(kinds[kinds.len() - 2], EventKind::Finding, "{kinds:?}");
    // The engine's own kinds cannot be emitted.
    let bad = json!({ "steps": [{ "kind": "emit", "event": "RUN_SUCCEEDED" }] });
    let run = h
        .engine
        .start_run(StartRun::new("script", bad))
        .await
        .unwrap();
    let failed = h.wait_for_status(run.id, &[RunStatus::Failed], LIMIT).await;
    assert!(failed.error.unwrap().contains("cannot emit RUN_SUCCEEDED"));
}
both_backends!(emitted_events_are_durable_and_written_once, emitted_events);

/// `stream` sends live-only events (LLM tokens) to watchers; nothing is stored.
async fn live_stream(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let steps = json!([{ "kind": "work", "ms": 5, "stream": ["Hel", "lo", "!"] }]);
    let run = h
        .engine
        .start_run(StartRun::new("script", json!({ "steps": steps })))
        .await
        .unwrap();
    // Watching before any worker runs it, so no token can be missed.
    let live = h.engine.subscribe_live(run.id);
    let _w = h.spawn_worker();
    let tokens: Vec<_> = tokio::time::timeout(LIMIT, live.take(3).collect::<Vec<_>>())
        .await
        .expect("three tokens arrive");
    let text: String = tokens
        .iter()
        .map(|t| t.payload["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello!");
    assert!(
        tokens
            .iter()
            .all(|t| t.kind == EventKind::LlmToken && t.run_id == run.id)
    );
    h.wait_for_status(run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    let events = assert_gap_free(&h.engine, run.id).await;
    assert!(
        events.iter().all(|e| e.kind != EventKind::LlmToken),
        "never stored"
    );
}
both_backends!(live_tokens_reach_watchers_and_are_not_stored, live_stream);

/// Tokens streamed by a worker in another process reach this process's watchers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_tokens_cross_processes_postgres() {
    let Some(h) = Harness::new(Backend::Postgres).await else {
        return;
    };
    let steps = json!([{ "kind": "work", "ms": 5, "stream": ["a", "b"] }]);
    let run = h
        .engine
        .start_run(StartRun::new("script", json!({ "steps": steps })))
        .await
        .unwrap();
    let live = h.engine.subscribe_live(run.id);
    let _worker = WorkerProcess::spawn(&h.db.url, &h.record_dir, &[]);
    let tokens: Vec<_> = tokio::time::timeout(LIMIT, live.take(2).collect::<Vec<_>>())
        .await
        .expect("tokens from the worker process arrive");
    assert_eq!(tokens[0].payload["text"], "a");
    assert_eq!(tokens[1].payload["text"], "b");
}

/// A step whose dependency is known to be down waits (RETRY_WAIT) without spending
/// attempts: with no retries allowed at all, it still succeeds once the dependency
/// is back, after several waits.
async fn wait_without_attempts(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    let script = json!({
        "steps": [{ "kind": "fail", "times": 0, "unavailable_for_ms": 1000, "retry_after_ms": 400 }],
        "retry": { "initial_ms": 10, "max_retries": 0 }
    });
    let run = h
        .engine
        .start_run(StartRun::new("script", script))
        .await
        .unwrap();
    h.wait_for_status(run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    let step = &h.engine.steps(run.id).await.unwrap()[0];
    // The attempt number counts only real attempts; several calls were made.
    assert_eq!(step.attempts, 1, "waiting spent no attempt");
    let events = assert_gap_free(&h.engine, run.id).await;
    let waits: Vec<&Value> = events
        .iter()
        .filter(|e| e.kind == EventKind::StepRetryScheduled)
        .map(|e| &e.payload)
        .collect();
    assert!(waits.len() >= 2, "{waits:?}");
    assert!(waits.iter().all(|p| p["attempt"] == 0), "{waits:?}");
    assert!(waits.iter().all(|p| p["counted"] == false), "{waits:?}");
    assert!(
        events.iter().any(|e| e.kind == EventKind::RunRetryWait),
        "the run released its worker while it waited"
    );
}
both_backends!(
    an_unavailable_dependency_is_waited_out_without_attempts,
    wait_without_attempts
);

/// Branch names from outside (a model's tool-call ids) are escaped: a name with a
/// `/` cannot produce another branch's keys.
async fn key_segments(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    // Unescaped, branch "x/s0/y"'s first step and branch "x"'s nested parallel
    // branch "y" would both be `s0/x/s0/y/s0`.
    let steps = json!([{ "kind": "parallel", "names": ["x/s0/y", "x"], "branches": [
        [{ "kind": "noop" }],
        [{ "kind": "parallel", "names": ["y"], "branches": [[{ "kind": "noop" }]] }]
    ] }]);
    let run = h
        .engine
        .start_run(StartRun::new("script", json!({ "steps": steps })))
        .await
        .unwrap();
    h.wait_for_status(run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    let mut keys: Vec<String> = h
        .engine
        .steps(run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["s0/x%2Fs0%2Fy/s0", "s0/x/s0/y/s0"]);
    assert_eq!(key_segment("a/b%c"), "a%2Fb%25c");
}
both_backends!(key_segments_from_outside_cannot_collide, key_segments);

/// A test workflow whose first step's body makes durable calls of its own.
struct NestedCalls;

impl Workflow for NestedCalls {
    fn run(&self, ctx: StepContext) -> aiops_engine::workflow::WorkflowFuture {
        async move {
            let refused = ctx
                .step("outer", |_| {
                    let ctx = ctx.clone();
                    async move {
                        let step = ctx
                            .step("inner", |_| async { Ok("ran inside".to_string()) })
                            .await;
                        let sleep = ctx.sleep("nap", Duration::from_millis(1)).await;
                        Ok(json!({
                            "step": step.as_ref().map_err(|e| e.to_string()).err(),
                            "sleep": sleep.map_err(|e| e.to_string()).err(),
                            "step_refused": matches!(
                                step,
                                Err(aiops_engine::StepError::Nested { ref key, ref outer })
                                    if key == "inner" && outer == "outer"
                            ),
                        }))
                    }
                })
                .await?;
            // The refused call did not use its key up.
            let after: String = ctx
                .step("inner", |_| async { Ok("ran outside".to_string()) })
                .await?;
            Ok(json!({ "refused": refused, "after": after }))
        }
        .boxed()
    }
}

/// A durable call inside a step's body is refused with an error that names both
/// steps, records nothing, and leaves its key free for orchestration code.
async fn nested_calls(backend: Backend) {
    let Some((h, done)) = succeeded_alone(backend, "nested", NestedCalls).await else {
        return;
    };
    let output = done.output.clone().unwrap();
    let refused = &output["refused"];
    assert_eq!(refused["step_refused"], true, "{output}");
    for (call, key) in [("step", "inner"), ("sleep", "nap")] {
        let message = refused[call].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!(
                "step {key} was called inside the body of step outer"
            )),
            "{call}: {output}"
        );
    }
    assert_eq!(output["after"], "ran outside");
    let mut steps: Vec<(String, Value)> = h
        .engine
        .steps(done.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.key, s.output.unwrap_or_default()))
        .collect();
    steps.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        steps.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["inner", "outer"],
        "nothing was recorded for the refused calls"
    );
    assert_eq!(steps[0].1, "ran outside");
    assert_gap_free(&h.engine, done.id).await;
}
both_backends!(a_durable_call_inside_a_step_body_is_refused, nested_calls);

/// `run_info` tells the workflow its trigger, pinned team version and attempt.
async fn run_info(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let _w = h.spawn_worker();
    let team = h
        .engine
        .apply_team(include_str!("fixtures/teams/valid.yaml"))
        .await
        .unwrap()
        .0;
    let mut req = StartRun::new("script", json!({ "steps": [{ "kind": "noop" }] }));
    req.trigger = aiops_engine::Trigger::Api;
    req.team_id = Some(team.id);
    req.team_version_id = Some(team.version_id);
    let run = h.engine.start_run(req).await.unwrap();
    let done = h
        .wait_for_status(run.id, &[RunStatus::Succeeded], LIMIT)
        .await;
    let info = &done.output.unwrap()["run"];
    assert_eq!(info["trigger"], "API");
    assert_eq!(info["team_version_id"], team.version_id.to_string());
    assert_eq!(info["workflow"], "script");
    assert_eq!(info["attempt"], 1);
    assert_eq!(info["run_id"], run.id.to_string());
}
both_backends!(run_info_names_trigger_team_version_and_attempt, run_info);

/// Everything at once, across a replay: a worker process is SIGKILLed mid-run and
/// another finishes it. Completed steps are not re-run; usage counts every recorded
/// step once; every emitted event is in the log once; escaped keys replay to the
/// same records; the replay knows it is a later attempt of the same pinned team.
async fn across_sigkill(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let team = h
        .engine
        .apply_team(include_str!("fixtures/teams/valid.yaml"))
        .await
        .unwrap()
        .0;
    let log = h.record_dir.join("effects.log");
    let mut steps = Vec::new();
    for i in 0..8 {
        steps.push(json!({ "kind": "emit", "event": "TOOL_CALL", "payload": { "call": i } }));
        steps.push(json!({
            "kind": "parallel", "names": [format!("call/{i}")], "branches": [[{
                "kind": "work", "ms": 150, "stream": [format!("t{i}")],
                "usage": { "input_tokens": 100, "output_tokens": 10, "cost_usd": 0.5 }
            }]]
        }));
        steps.push(json!({ "kind": "emit", "event": "TOOL_RESULT", "payload": { "call": i } }));
    }
    steps.push(
        json!({ "kind": "fail", "times": 0, "unavailable_for_ms": 500, "retry_after_ms": 200 }),
    );
    let mut req = StartRun::new(
        "script",
        json!({ "steps": steps, "record_to": common::record_name(&log),
                "retry": { "initial_ms": 10, "max_retries": 0 } }),
    );
    req.team_id = Some(team.id);
    req.team_version_id = Some(team.version_id);
    let run = h.engine.start_run(req).await.unwrap();

    let mut first = WorkerProcess::spawn(&h.db.url, &h.record_dir, &[]);
    // Kill after three calls completed.
    loop {
        let done = h
            .engine
            .steps(run.id)
            .await
            .unwrap()
            .iter()
            .filter(|s| s.status == aiops_engine::StepStatus::Succeeded)
            .count();
        if done >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    // The replay streams on (Postgres carries live tokens between processes).
    let live = h.engine.subscribe_live(run.id);
    let _second = WorkerProcess::spawn(&h.db.url, &h.record_dir, &[]);
    if backend == Backend::Postgres {
        let mut live = Box::pin(live.filter(|t| std::future::ready(t.payload["text"] == "t7")));
        tokio::time::timeout(LIMIT, live.next())
            .await
            .expect("the replay's last call streams its token");
    }
    let done = wait_for_status(&h.engine, run.id, &[RunStatus::Succeeded], LIMIT).await;
    assert!(done.attempt >= 2, "taken over: attempt {}", done.attempt);

    // Completed steps ran once; the one in flight at the kill at most twice (the
    // waiting step `s24` calls its dependency on every wait).
    let mut runs_of = common::executions(&log);
    runs_of.retain(|key, _| !key.ends_with("/s24"));
    assert_eq!(runs_of.len(), 8, "{runs_of:?}");
    assert!(
        runs_of.values().filter(|n| **n > 1).count() <= 1,
        "{runs_of:?}"
    );
    // Usage: every recorded call once (8 × 100 in), whatever ran twice.
    let output = done.output.unwrap();
    let total: Usage = serde_json::from_value(output["usage"].clone()).unwrap();
    assert_eq!((total.input_tokens, total.output_tokens), (800, 80));
    assert!((total.cost_usd - 4.0).abs() < 1e-9);
    assert_eq!(h.engine.usage(run.id).await.unwrap().input_tokens, 800);
    // Emitted events: each call's TOOL_CALL and TOOL_RESULT exactly once; streamed
    // tokens never.
    let events = assert_gap_free(&h.engine, run.id).await;
    assert!(events.iter().all(|e| e.kind != EventKind::LlmToken));
    for kind in [EventKind::ToolCall, EventKind::ToolResult] {
        let mut calls: Vec<i64> = events
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.payload["call"].as_i64().unwrap())
            .collect();
        calls.sort();
        assert_eq!(calls, (0..8).collect::<Vec<_>>(), "{kind}");
    }
    // Escaped keys replayed to the same records: eight call branches, one record each.
    let keys: Vec<String> = h
        .engine
        .steps(run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    for i in 0..8 {
        let key = format!("s{}/call%2F{i}/s0", 3 * i + 1);
        assert_eq!(
            keys.iter().filter(|k| **k == key).count(),
            1,
            "{key} in {keys:?}"
        );
    }
    // The unavailable wait spent no attempt (no retries were allowed).
    let wait = h
        .engine
        .steps(run.id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.key == "s24")
        .unwrap();
    assert_eq!(wait.attempts, 1);
    // The replay knew it was a later attempt of the same pinned team version.
    assert_eq!(
        output["run"]["team_version_id"],
        team.version_id.to_string()
    );
    assert!(output["run"]["attempt"].as_i64().unwrap() >= 2);
}
both_backends!(step_context_capabilities_survive_a_sigkill, across_sigkill);

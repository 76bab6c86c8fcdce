//! The built-in **script workflow**: a list of steps that sleep, fail, ask for
//! approval, ask a question, run in parallel, panic or produce output.
//!
//! It exists for tests, demos and the benchmark; it exercises every engine feature
//! through the same `StepContext` agents use. It is not a production workflow: the
//! binary registers it only when `AIOPS_ENABLE_SCRIPT_WORKFLOW=1`.
//!
//! ```json
//! { "steps": [ {"kind": "work", "ms": 200},
//!              {"kind": "fail", "times": 2},
//!              {"kind": "approval", "tool": "alertmanager_silence", "args": {}},
//!              {"kind": "parallel", "branches": [[{"kind": "noop"}], [{"kind": "noop"}]]},
//!              {"kind": "output", "value": {"summary": "done"}} ],
//!   "record_to": "side-effects.log" }
//! ```
//! `record_to` appends one line `step_key attempt` per executed attempt: a side
//! effect outside the engine, which lets tests count how often a step really ran. It
//! names a plain file inside the record directory the server's operator chose
//! (`AIOPS_SCRIPT_RECORD_DIR`), never a path: a script cannot make the server write
//! anywhere else.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::context::{ApprovalRequest, StepContext, StepOptions};
use crate::retry::{RetryPolicy, StepFailure};
use crate::workflow::{Workflow, WorkflowError, WorkflowFuture};

pub const NAME: &str = "script";

/// Most steps one script may hold, parallel branches included.
pub const MAX_SCRIPT_STEPS: usize = 1_000;
/// Most branches of one `parallel` step.
pub const MAX_BRANCHES: usize = 100;
/// Deepest nesting of `parallel` steps.
pub const MAX_PARALLEL_DEPTH: usize = 5;
/// Longest duration a script may name (`ms`, `expires_in_ms`, `retry_after_ms`, …): a
/// week. The run deadline (at most 30 minutes of running time) ends runs long before.
pub const MAX_DURATION_MS: u64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Script {
    steps: Vec<ScriptStep>,
    #[serde(default)]
    record_to: Option<String>,
    /// Overrides the engine's retry policy for every step of this script.
    #[serde(default)]
    retry: Option<ScriptRetry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptRetry {
    initial_ms: u64,
    #[serde(default = "two")]
    factor: f64,
    #[serde(default = "sixty_thousand")]
    max_ms: u64,
    max_retries: u32,
}

fn two() -> f64 {
    2.0
}

fn sixty_thousand() -> u64 {
    60_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum ScriptStep {
    /// Does nothing but get checkpointed.
    Noop,
    /// Busy for `ms` inside the step (a stand-in for an LLM or tool call); it may
    /// record `usage` for each attempt and `stream` live tokens while it runs. With
    /// `model` (and `provider`), the usage is a model call's: counted in the model
    /// metrics under those names.
    Work {
        ms: u64,
        #[serde(default)]
        usage: Option<crate::usage::Usage>,
        #[serde(default)]
        model: Option<String>,
        #[serde(default)]
        provider: Option<String>,
        #[serde(default)]
        stream: Vec<String>,
    },
    /// Fails its first `times` attempts, then succeeds; `permanent` failures are not retried.
    Fail {
        times: u32,
        #[serde(default)]
        permanent: bool,
        #[serde(default)]
        retry_after_ms: Option<u64>,
        /// Before the counted failures, report the dependency as unavailable (an
        /// open circuit breaker) until this long after the step first started:
        /// each report waits `retry_after_ms` without spending an attempt.
        #[serde(default)]
        unavailable_for_ms: Option<u64>,
    },
    /// A durable event in the run's log: `TOOL_CALL`, `TOOL_RESULT` or `FINDING`.
    Emit {
        event: crate::event::EventKind,
        #[serde(default)]
        payload: Json,
    },
    /// A durable sleep.
    Sleep {
        ms: u64,
    },
    Approval {
        tool: String,
        #[serde(default)]
        args: Json,
        #[serde(default)]
        risk_note: Option<String>,
        #[serde(default)]
        expires_in_ms: Option<u64>,
    },
    Question {
        text: String,
    },
    Parallel {
        branches: Vec<Vec<ScriptStep>>,
        /// Branch names (default `b0`, `b1`, …); any text: a `/` cannot collide.
        #[serde(default)]
        names: Option<Vec<String>>,
    },
    Panic {
        message: String,
    },
    Output {
        value: Json,
    },
}

fn parse(input: &Json, record_dir: Option<&PathBuf>) -> Result<Script, String> {
    let script: Script =
        serde_json::from_value(input.clone()).map_err(|e| format!("script input: {e}"))?;
    if script.steps.is_empty() {
        return Err("script input: steps: at least one step is required".into());
    }
    let total = check_steps(&script.steps, "steps", 1)?;
    if total > MAX_SCRIPT_STEPS {
        return Err(format!(
            "script input: steps: {total} steps, at most {MAX_SCRIPT_STEPS} are allowed"
        ));
    }
    if let Some(r) = &script.retry {
        check_ms("retry.initial_ms", r.initial_ms)?;
        check_ms("retry.max_ms", r.max_ms)?;
        if !(1.0..=10.0).contains(&r.factor) {
            return Err(format!(
                "script input: retry.factor: must be between 1 and 10, got {}",
                r.factor
            ));
        }
        if r.max_retries > 100 {
            return Err(format!(
                "script input: retry.max_retries: at most 100, got {}",
                r.max_retries
            ));
        }
    }
    if let Some(name) = &script.record_to {
        check_record_name(name)?;
        if record_dir.is_none() {
            return Err(
                "script input: record_to: this server has no record directory \
                 (AIOPS_SCRIPT_RECORD_DIR is unset)"
                    .into(),
            );
        }
    }
    Ok(script)
}

fn check_ms(path: &str, ms: u64) -> Result<(), String> {
    if ms > MAX_DURATION_MS {
        return Err(format!(
            "script input: {path}: {ms} ms is more than the maximum of {MAX_DURATION_MS} ms (7 days)"
        ));
    }
    Ok(())
}

/// Checks limits and durations; returns the number of steps, branches included.
fn check_steps(steps: &[ScriptStep], path: &str, depth: usize) -> Result<usize, String> {
    let mut total = 0usize;
    for (i, step) in steps.iter().enumerate() {
        let at = format!("{path}[{i}]");
        total += 1;
        match step {
            ScriptStep::Work { ms, .. } | ScriptStep::Sleep { ms } => {
                check_ms(&format!("{at}.ms"), *ms)?
            }
            ScriptStep::Fail {
                retry_after_ms: Some(ms),
                ..
            } => check_ms(&format!("{at}.retry_after_ms"), *ms)?,
            ScriptStep::Approval {
                expires_in_ms: Some(ms),
                ..
            } => check_ms(&format!("{at}.expires_in_ms"), *ms)?,
            ScriptStep::Parallel { branches, names } => {
                if names.as_ref().is_some_and(|n| n.len() != branches.len()) {
                    return Err(format!(
                        "script input: {at}.names: one name per branch is required"
                    ));
                }
                if depth > MAX_PARALLEL_DEPTH {
                    return Err(format!(
                        "script input: {at}: parallel steps nest deeper than {MAX_PARALLEL_DEPTH}"
                    ));
                }
                if branches.len() > MAX_BRANCHES {
                    return Err(format!(
                        "script input: {at}.branches: {} branches, at most {MAX_BRANCHES} are allowed",
                        branches.len()
                    ));
                }
                for (b, branch) in branches.iter().enumerate() {
                    total += check_steps(branch, &format!("{at}.branches[{b}]"), depth + 1)?;
                    if total > MAX_SCRIPT_STEPS {
                        return Err(format!(
                            "script input: steps: more than {MAX_SCRIPT_STEPS} steps"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(total)
}

/// `record_to` is a file name, not a path: letters, digits, `.`, `_`, `-`.
fn check_record_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "script input: record_to: {name:?} must be a plain file name (letters, digits, '.', '_', '-'; \
             no '/'), created inside the server's record directory"
        ))
    }
}

/// The script workflow, writing `record_to` files only inside `record_dir`.
pub struct ScriptWorkflow {
    record_dir: Option<PathBuf>,
}

impl ScriptWorkflow {
    /// `record_dir`: where `record_to` files go; `None` refuses scripts that ask for one.
    pub fn new(record_dir: Option<PathBuf>) -> Self {
        Self { record_dir }
    }
}

impl Workflow for ScriptWorkflow {
    fn run(&self, ctx: StepContext) -> WorkflowFuture {
        let record_dir = self.record_dir.clone();
        async move {
            let script = parse(ctx.input(), record_dir.as_ref()).map_err(WorkflowError::Failed)?;
            let opts = StepOptions {
                retry: script.retry.as_ref().map(|r| RetryPolicy {
                    initial: Duration::from_millis(r.initial_ms),
                    factor: r.factor,
                    max_delay: Duration::from_millis(r.max_ms),
                    max_retries: r.max_retries,
                    jitter: 0.0,
                }),
                ..StepOptions::default()
            };
            let env = Env {
                record_to: script
                    .record_to
                    .as_ref()
                    .zip(record_dir.as_ref())
                    .map(|(name, dir)| dir.join(name)),
                opts,
            };
            let mut report = Report::default();
            run_steps(&ctx, &env, &script.steps, &mut report).await?;
            Ok(json!({
                "steps": report.steps,
                "approvals": report.approvals,
                "answers": report.answers,
                "output": report.output,
                "usage": ctx.usage(),
                "run": ctx.run_info(),
            }))
        }
        .boxed()
    }

    fn describe(&self) -> crate::workflow::WorkflowInfo {
        crate::workflow::WorkflowInfo {
            description: "A list of steps that work, fail, sleep, ask for approval or an \
                          answer, run in parallel, emit events or set the output: a test and \
                          demo tool that exercises every engine feature."
                .into(),
            input_schema: input_schema(),
        }
    }

    fn validate_input(&self, input: &Json) -> Result<(), String> {
        parse(input, self.record_dir.as_ref()).map(|_| ())
    }
}

/// The JSON Schema of a script (the shape `parse` reads; its limits are checked there).
fn input_schema() -> Json {
    let ms = json!({ "type": "integer", "minimum": 0, "maximum": MAX_DURATION_MS });
    let step = json!({
        "type": "object",
        "required": ["kind"],
        "properties": {
            "kind": { "enum": ["noop", "work", "fail", "emit", "sleep", "approval", "question",
                               "parallel", "panic", "output"] },
            "ms": ms, "times": { "type": "integer", "minimum": 0 },
            "permanent": { "type": "boolean" }, "unavailable_for_ms": ms,
            "retry_after_ms": ms, "expires_in_ms": ms,
            "usage": { "type": "object" }, "stream": { "type": "array", "items": { "type": "string" } },
            "event": { "enum": ["TOOL_CALL", "TOOL_RESULT", "FINDING"] }, "payload": {},
            "tool": { "type": "string" }, "args": {}, "risk_note": { "type": "string" },
            "text": { "type": "string" }, "message": { "type": "string" }, "value": {},
            "branches": { "type": "array", "items": { "type": "array", "items": { "$ref": "#/$defs/step" } } },
            "names": { "type": "array", "items": { "type": "string" } }
        }
    });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["steps"],
        "properties": {
            "steps": { "type": "array", "minItems": 1, "items": { "$ref": "#/$defs/step" } },
            "record_to": { "type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]*$" },
            "retry": { "type": "object", "required": ["initial_ms", "max_retries"] }
        },
        "$defs": { "step": step }
    })
}

struct Env {
    record_to: Option<PathBuf>,
    opts: StepOptions,
}

impl Env {
    /// The script's step options for a step of `kind` (the script step's kind).
    fn opts(&self, kind: &'static str) -> StepOptions {
        StepOptions {
            kind: Some(kind),
            ..self.opts.clone()
        }
    }
}

#[derive(Default)]
struct Report {
    steps: u64,
    approvals: Vec<Json>,
    answers: Vec<Json>,
    output: Json,
}

fn record(env: &Env, key: &str, attempt: u32) -> Result<(), StepFailure> {
    if let Some(path) = &env.record_to {
        let failed = |e: std::io::Error| {
            StepFailure::permanent(format!("record_to {}: {e}", path.display()))
        };
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        // Never through a symbolic link planted in the record directory.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(path).map_err(failed)?;
        // One write call per line: O_APPEND keeps lines from several processes whole.
        f.write_all(format!("{key} {attempt}\n").as_bytes())
            .map_err(failed)?;
    }
    Ok(())
}

fn run_steps<'a>(
    ctx: &'a StepContext,
    env: &'a Env,
    steps: &'a [ScriptStep],
    report: &'a mut Report,
) -> BoxFuture<'a, Result<(), WorkflowError>> {
    async move {
        for (i, step) in steps.iter().enumerate() {
            let key = format!("s{i}");
            match step {
                ScriptStep::Noop => {
                    ctx.step_with(&key, env.opts("noop"), |a| async move {
                        record(env, &a.idempotency_key, a.number)?;
                        Ok(a.number)
                    })
                    .await?;
                }
                ScriptStep::Work {
                    ms,
                    usage,
                    model,
                    provider,
                    stream,
                } => {
                    let (ms, usage) = (*ms, *usage);
                    ctx.step_with(&key, env.opts("work"), |a| async move {
                        for token in stream {
                            ctx.stream(json!({ "text": token }));
                        }
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        match (usage, model) {
                            (Some(u), Some(model)) => {
                                a.record_model_usage(provider.as_deref().unwrap_or(""), model, u)
                            }
                            (Some(u), None) => a.record_usage(u),
                            (None, _) => {}
                        }
                        record(env, &a.idempotency_key, a.number)?;
                        Ok(a.number)
                    })
                    .await?;
                }
                ScriptStep::Emit { event, payload } => ctx.emit(*event, payload.clone())?,
                ScriptStep::Fail {
                    times,
                    permanent,
                    retry_after_ms,
                    unavailable_for_ms,
                } => {
                    let (times, permanent, retry_after) = (
                        *times,
                        *permanent,
                        retry_after_ms.map(Duration::from_millis),
                    );
                    let down_for =
                        unavailable_for_ms.map(|ms| chrono::Duration::milliseconds(ms as i64));
                    ctx.step_with(&key, env.opts("fail"), |a| async move {
                        record(env, &a.idempotency_key, a.number)?;
                        if let Some(down_for) = down_for
                            && Utc::now() - a.first_started_at < down_for
                        {
                            return Err(StepFailure::Unavailable {
                                message: "scripted dependency unavailable".into(),
                                retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
                            });
                        }
                        if a.number > times {
                            return Ok(a.number);
                        }
                        let message = format!("scripted failure {} of {times}", a.number);
                        Err(if permanent {
                            StepFailure::permanent(message)
                        } else if retry_after.is_some() {
                            StepFailure::RateLimited {
                                message,
                                retry_after,
                            }
                        } else {
                            StepFailure::retryable(message)
                        })
                    })
                    .await?;
                }
                ScriptStep::Sleep { ms } => ctx.sleep(&key, Duration::from_millis(*ms)).await?,
                ScriptStep::Approval {
                    tool,
                    args,
                    risk_note,
                    expires_in_ms,
                } => {
                    let outcome = ctx
                        .wait_approval(
                            &key,
                            ApprovalRequest {
                                tool: tool.clone(),
                                args: args.clone(),
                                risk_note: risk_note.clone(),
                                expires_in: expires_in_ms.map(Duration::from_millis),
                            },
                        )
                        .await?;
                    // The approved action is a step of its own; a rejection is just a result.
                    let executed = if outcome.approved() {
                        ctx.step_with(
                            format!("{key}/action"),
                            env.opts("action"),
                            |a| async move {
                                record(env, &a.idempotency_key, a.number)?;
                                Ok(true)
                            },
                        )
                        .await?
                    } else {
                        false
                    };
                    report
                        .approvals
                        .push(json!({ "step": key, "outcome": outcome, "executed": executed }));
                }
                ScriptStep::Question { text } => {
                    let outcome = ctx.wait_input(&key, text.clone()).await?;
                    report
                        .answers
                        .push(json!({ "step": key, "outcome": outcome }));
                }
                ScriptStep::Parallel { branches, names } => {
                    let mut reports: Vec<Report> =
                        branches.iter().map(|_| Report::default()).collect();
                    let parallel = ctx.branch(&key);
                    let results = {
                        let futures = branches.iter().zip(reports.iter_mut()).enumerate().map(
                            |(b, (steps, r))| {
                                let name = names
                                    .as_ref()
                                    .and_then(|n| n.get(b).cloned())
                                    .unwrap_or_else(|| format!("b{b}"));
                                let branch = parallel.branch(name);
                                async move { run_steps(&branch, env, steps, r).await }
                            },
                        );
                        futures::future::join_all(futures).await
                    };
                    for result in results {
                        result?;
                    }
                    for r in reports {
                        report.steps += r.steps;
                        report.approvals.extend(r.approvals);
                        report.answers.extend(r.answers);
                    }
                }
                ScriptStep::Panic { message } => {
                    let message = message.clone();
                    ctx.step_with(&key, env.opts("panic"), |_| {
                        let message = message.clone();
                        async move {
                            if !message.is_empty() {
                                panic!("{message}");
                            }
                            Ok(())
                        }
                    })
                    .await?;
                }
                ScriptStep::Output { value } => report.output = value.clone(),
            }
            report.steps += 1;
        }
        Ok(())
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_scripts_with_the_reason() {
        let err = parse(&json!({ "steps": [{ "kind": "teleport" }] }), None).unwrap_err();
        assert!(err.contains("unknown variant `teleport`"), "{err}");
        let err = parse(&json!({ "steps": [] }), None).unwrap_err();
        assert!(err.contains("at least one step"), "{err}");
        assert!(parse(&json!({ "steps": [{ "kind": "work", "ms": 1 }] }), None).is_ok());
    }

    #[test]
    fn record_to_is_a_file_name_inside_the_record_dir() {
        let dir = PathBuf::from("/srv/records");
        let script = |to: &str| json!({ "steps": [{ "kind": "noop" }], "record_to": to });
        for bad in [
            "../initial-admin-password",
            "/etc/passwd",
            "a/b",
            ".hidden",
            "",
        ] {
            let err = parse(&script(bad), Some(&dir)).unwrap_err();
            assert!(err.contains("plain file name"), "{bad}: {err}");
        }
        let err = parse(&script("side-effects.log"), None).unwrap_err();
        assert!(err.contains("AIOPS_SCRIPT_RECORD_DIR"), "{err}");
        assert!(parse(&script("side-effects.log"), Some(&dir)).is_ok());
    }

    #[test]
    fn sizes_and_durations_are_bounded() {
        let err = parse(
            &json!({ "steps": [{ "kind": "sleep", "ms": u64::MAX }] }),
            None,
        )
        .unwrap_err();
        assert!(
            err.contains("steps[0].ms") && err.contains("maximum"),
            "{err}"
        );
        let err = parse(
            &json!({ "steps": [{ "kind": "approval", "tool": "t", "expires_in_ms": 1e15 as u64 }] }),
            None,
        )
        .unwrap_err();
        assert!(err.contains("expires_in_ms"), "{err}");
        let branches: Vec<Json> = (0..101).map(|_| json!([{ "kind": "noop" }])).collect();
        let err = parse(
            &json!({ "steps": [{ "kind": "parallel", "branches": branches }] }),
            None,
        )
        .unwrap_err();
        assert!(err.contains("101 branches"), "{err}");
        let branches: Vec<Json> = (0..100)
            .map(|_| {
                json!(
                    (0..20)
                        .map(|_| json!({ "kind": "noop" }))
                        .collect::<Vec<_>>()
                )
            })
            .collect();
        let err = parse(
            &json!({ "steps": [{ "kind": "parallel", "branches": branches }] }),
            None,
        )
        .unwrap_err();
        assert!(err.contains("1000 steps"), "{err}");
    }
}

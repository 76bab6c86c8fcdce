//! The built-in **script workflow**: a list of steps that sleep, fail, ask for
//! approval, ask a question, run in parallel, panic or produce output.
//!
//! It exists for tests, demos and the benchmark until the agent runtime lands; it
//! exercises every engine feature through the same `StepContext` agents will use.
//!
//! ```json
//! { "steps": [ {"kind": "work", "ms": 200},
//!              {"kind": "fail", "times": 2},
//!              {"kind": "approval", "tool": "alertmanager_silence", "args": {}},
//!              {"kind": "parallel", "branches": [[{"kind": "noop"}], [{"kind": "noop"}]]},
//!              {"kind": "output", "value": {"summary": "done"}} ],
//!   "record_to": "/tmp/side-effects.log" }
//! ```
//! `record_to` appends one line `step_key attempt` per executed attempt: a side
//! effect outside the engine, which lets tests count how often a step really ran.

use std::io::Write;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::context::{ApprovalRequest, StepContext, StepOptions};
use crate::retry::{RetryPolicy, StepFailure};
use crate::workflow::{Workflow, WorkflowError, WorkflowFuture};

pub const NAME: &str = "script";

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
    /// Busy for `ms` inside the step (a stand-in for an LLM or tool call).
    Work {
        ms: u64,
    },
    /// Fails its first `times` attempts, then succeeds; `permanent` failures are not retried.
    Fail {
        times: u32,
        #[serde(default)]
        permanent: bool,
        #[serde(default)]
        retry_after_ms: Option<u64>,
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
    },
    Panic {
        message: String,
    },
    Output {
        value: Json,
    },
}

fn parse(input: &Json) -> Result<Script, String> {
    let script: Script =
        serde_json::from_value(input.clone()).map_err(|e| format!("script input: {e}"))?;
    if script.steps.is_empty() {
        return Err("script input: steps: at least one step is required".into());
    }
    Ok(script)
}

pub struct ScriptWorkflow;

impl Workflow for ScriptWorkflow {
    fn run(&self, ctx: StepContext) -> WorkflowFuture {
        async move {
            let script = parse(ctx.input()).map_err(WorkflowError::Failed)?;
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
                record_to: script.record_to.clone(),
                opts,
            };
            let mut report = Report::default();
            run_steps(&ctx, &env, &script.steps, &mut report).await?;
            Ok(json!({
                "steps": report.steps,
                "approvals": report.approvals,
                "answers": report.answers,
                "output": report.output,
            }))
        }
        .boxed()
    }

    fn validate_input(&self, input: &Json) -> Result<(), String> {
        parse(input).map(|_| ())
    }
}

struct Env {
    record_to: Option<String>,
    opts: StepOptions,
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
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| StepFailure::permanent(format!("record_to {path}: {e}")))?;
        // One write call per line: O_APPEND keeps lines from several processes whole.
        f.write_all(format!("{key} {attempt}\n").as_bytes())
            .map_err(|e| StepFailure::permanent(format!("record_to {path}: {e}")))?;
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
                    ctx.step_with(&key, env.opts.clone(), |a| async move {
                        record(env, &a.idempotency_key, a.number)?;
                        Ok(a.number)
                    })
                    .await?;
                }
                ScriptStep::Work { ms } => {
                    let ms = *ms;
                    ctx.step_with(&key, env.opts.clone(), |a| async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        record(env, &a.idempotency_key, a.number)?;
                        Ok(a.number)
                    })
                    .await?;
                }
                ScriptStep::Fail {
                    times,
                    permanent,
                    retry_after_ms,
                } => {
                    let (times, permanent, retry_after) = (
                        *times,
                        *permanent,
                        retry_after_ms.map(Duration::from_millis),
                    );
                    ctx.step_with(&key, env.opts.clone(), |a| async move {
                        record(env, &a.idempotency_key, a.number)?;
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
                        ctx.step_with(format!("{key}/action"), env.opts.clone(), |a| async move {
                            record(env, &a.idempotency_key, a.number)?;
                            Ok(true)
                        })
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
                ScriptStep::Parallel { branches } => {
                    let mut reports: Vec<Report> =
                        branches.iter().map(|_| Report::default()).collect();
                    let results = {
                        let futures = branches.iter().zip(reports.iter_mut()).enumerate().map(
                            |(b, (steps, r))| {
                                let branch = ctx.branch(format!("{key}/b{b}"));
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
                    ctx.step_with(&key, env.opts.clone(), |_| {
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
        let err = parse(&json!({ "steps": [{ "kind": "teleport" }] })).unwrap_err();
        assert!(err.contains("unknown variant `teleport`"), "{err}");
        let err = parse(&json!({ "steps": [] })).unwrap_err();
        assert!(err.contains("at least one step"), "{err}");
        assert!(parse(&json!({ "steps": [{ "kind": "work", "ms": 1 }] })).is_ok());
    }
}

//! The `plan_execute` pattern (SPEC §3.2): the planner (a model) emits
//! `{decision: PLAN|EXECUTE|FINISH, step, tool, context}`; the executor runs the
//! planned tool and answers `{status: SUCCESS|FAILED, evidence, advice}` built only
//! from the tool's real output; the loop stops on FINISH, after `max_iterations`
//! planner turns, or when the same tool has failed 3 times in a row. Each planner
//! turn is the step `plan/iter/<i>/llm`, each execution `plan/iter/<i>/call/exec`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::context::{StepContext, StepError};
use crate::llm::chat::{ChatMessage, ChatRequest};
use crate::topology::TeamSpec;

use super::model_call::{Answer, Caller};
use super::node_team::json_in;
use super::prompts;
use super::toolbox::{ToolOutcome, Toolbox};

/// Failures in a row of one tool that end the loop.
pub const MAX_SAME_TOOL_FAILURES: u32 = 3;
const MAX_PLANNER_TOKENS: u32 = 1024;

#[derive(Debug, Deserialize)]
struct PlannerTurn {
    decision: String,
    #[serde(default)]
    step: String,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    context: Json,
}

/// One executed step, as the report cites it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Executed {
    pub step: String,
    pub tool: String,
    pub args: Json,
    pub status: String,
    pub evidence: Json,
    pub advice: String,
}

/// How the loop ended, and what it did.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanLog {
    pub executed: Vec<Executed>,
    pub plans: Vec<String>,
    pub stopped: String,
    /// Set when no model could plan (the rule-based analyst takes over).
    pub fell_back: Option<String>,
}

pub async fn run(
    ctx: &StepContext,
    caller: &Caller,
    toolbox: &Toolbox,
    team: &TeamSpec,
    models: &[String],
    briefing: String,
) -> Result<PlanLog, StepError> {
    let allowed: BTreeSet<String> = team
        .nodes
        .iter()
        .flat_map(|n| n.agents.iter().flat_map(|a| a.tools.iter().cloned()))
        .collect();
    let allowed_list: Vec<String> = allowed.iter().cloned().collect();
    let tools: Vec<String> = toolbox
        .tool_specs(&allowed_list)
        .into_iter()
        .map(|t| {
            format!(
                "{} ({}; arguments: {})",
                t.name, t.description, t.parameters
            )
        })
        .collect();
    let mut system = prompts::PLANNER.render(&[("team", &team.name), ("tools", &tools.join("; "))]);
    if let Some(instructions) = &team.supervisor.instructions {
        system.push_str("\n\n");
        system.push_str(instructions);
    }
    let mut messages = vec![ChatMessage::User { text: briefing }];
    let mut log = PlanLog {
        executed: Vec::new(),
        plans: Vec::new(),
        stopped: String::new(),
        fell_back: None,
    };
    let mut failing: Option<(String, u32)> = None;
    let max = team.limits.max_iterations.max(1);
    for i in 0..max {
        let iter = ctx.branch("plan").branch("iter").branch(i);
        let request = ChatRequest {
            system: system.clone(),
            messages: messages.clone(),
            tools: Vec::new(),
            max_tokens: MAX_PLANNER_TOKENS,
        };
        let reply = match caller
            .ask(&iter, "llm", models, &prompts::PLANNER.id(), &request)
            .await?
        {
            Answer::Reply(reply) => reply,
            Answer::Rules { reason } => {
                log.stopped = format!("no model could plan: {reason}");
                log.fell_back = Some(reason);
                return Ok(log);
            }
            Answer::OverBudget { .. } => unreachable!("Caller::ask settles the budget"),
        };
        messages.push(ChatMessage::Assistant {
            text: reply.text.clone(),
            tool_calls: Vec::new(),
        });
        let turn: PlannerTurn = match json_in(&reply.text).map(serde_json::from_value) {
            Some(Ok(turn)) => turn,
            Some(Err(e)) => {
                messages.push(ChatMessage::User {
                    text: format!("That decision is malformed ({e}). Answer with one JSON object."),
                });
                continue;
            }
            None => {
                messages.push(ChatMessage::User {
                    text: "That was not a JSON decision. Answer with one JSON object.".to_owned(),
                });
                continue;
            }
        };
        match turn.decision.to_ascii_uppercase().as_str() {
            "FINISH" => {
                log.stopped = format!("the planner finished after {} turns", i + 1);
                return Ok(log);
            }
            "PLAN" => {
                log.plans.push(turn.step.clone());
                messages.push(ChatMessage::User {
                    text: "Plan noted. Next decision?".to_owned(),
                });
            }
            "EXECUTE" => {
                let tool = turn.tool.unwrap_or_default();
                let args = if turn.context.is_null() {
                    json!({})
                } else {
                    turn.context
                };
                let executed = if !allowed.contains(&tool) {
                    Executed {
                        step: turn.step,
                        tool: tool.clone(),
                        args,
                        status: "FAILED".to_owned(),
                        evidence: Json::Null,
                        advice: format!(
                            "tool \"{tool}\" is not available to this team (available: {})",
                            allowed_list.join(", ")
                        ),
                    }
                } else {
                    let outcome = toolbox.call(&iter, "exec", &tool, args.clone()).await?;
                    execution(turn.step, tool.clone(), args, outcome)
                };
                failing = match (&failing, executed.status.as_str()) {
                    (_, "SUCCESS") => None,
                    (Some((t, n)), _) if *t == tool => Some((tool.clone(), n + 1)),
                    _ => Some((tool.clone(), 1)),
                };
                messages.push(ChatMessage::User {
                    text: json!({
                        "status": executed.status, "evidence": executed.evidence, "advice": executed.advice,
                    })
                    .to_string(),
                });
                log.executed.push(executed);
                if let Some((t, n)) = &failing
                    && *n >= MAX_SAME_TOOL_FAILURES
                {
                    log.stopped = format!("{t} failed {n} times in a row");
                    return Ok(log);
                }
            }
            other => messages.push(ChatMessage::User {
                text: format!("Unknown decision {other:?}: use PLAN, EXECUTE or FINISH."),
            }),
        }
    }
    log.stopped = format!("reached max_iterations ({max})");
    Ok(log)
}

/// The executor's answer, from the tool's real outcome only.
fn execution(step: String, tool: String, args: Json, outcome: ToolOutcome) -> Executed {
    let (status, evidence, advice) = match outcome {
        ToolOutcome::Done(value) => {
            let empty = value.as_array().is_some_and(Vec::is_empty)
                || value["result"].as_array().is_some_and(Vec::is_empty);
            let advice = if empty {
                "the tool returned no data: check the query's labels or the time range"
            } else {
                "read the evidence"
            };
            ("SUCCESS", value, advice.to_owned())
        }
        ToolOutcome::Failed(message) => ("FAILED", Json::Null, format!("fix the call: {message}")),
        ToolOutcome::Declined {
            status,
            by,
            comment,
        } => (
            "FAILED",
            Json::Null,
            format!(
                "not approved ({}{}{})",
                status.as_str().to_ascii_lowercase(),
                by.map_or(String::new(), |b| format!(" by {b}")),
                comment.map_or(String::new(), |c| format!(": {c}"))
            ),
        ),
    };
    Executed {
        step,
        tool,
        args,
        status: status.to_owned(),
        evidence,
        advice,
    }
}

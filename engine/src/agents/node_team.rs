//! A node team on language models (SPEC §3.1): the node supervisor routes work among
//! the node's agents for up to `max_iterations` rounds (each round the step
//! `supervisor/round/<r>/llm` of the node's branch) and writes the node's finding.
//! Its evidence is what the agents' tool calls really returned (the queries and
//! their time ranges) and the node's alerts, never the model's say-so. When no model
//! can answer, the node is investigated by the rule-based analyst instead.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::context::{StepContext, StepError};
use crate::llm::chat::{ChatMessage, ChatRequest};
use crate::report::{Evidence, EvidenceKind, NodeFinding, NodeStatus};

use super::agent::{AgentReport, AgentWork, ToolUse, run_agent};
use super::model_call::{Answer, Caller};
use super::prompts;
use super::rules::{self, NodeWork};
use super::toolbox::Toolbox;

const MAX_DECISION_TOKENS: u32 = 1024;

/// The node supervisor's decision of one round.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Decision {
    Delegate { agent: String, task: String },
    Finding { status: NodeStatus, summary: String },
}

/// Investigates a node with its supervisor model `models` (agents use their own model,
/// or the supervisor's).
pub async fn investigate_node(
    ctx: &StepContext,
    caller: &Caller,
    toolbox: &Toolbox,
    models: &[String],
    max_iterations: u32,
    work: NodeWork<'_>,
) -> Result<NodeFinding, StepError> {
    let node = work.node;
    let roster: Vec<String> = node
        .agents
        .iter()
        .map(|a| match &a.role {
            Some(role) => format!("{} ({role}; tools: {})", a.id, a.tools.join(", ")),
            None => format!("{} (tools: {})", a.id, a.tools.join(", ")),
        })
        .collect();
    let mut system = prompts::NODE_SUPERVISOR.render(&[
        ("node", &node.id),
        ("kind", &node.kind),
        ("agents", &roster.join("; ")),
    ]);
    if let Some(instructions) = node
        .supervisor
        .as_ref()
        .and_then(|s| s.instructions.as_ref())
    {
        system.push_str("\n\n");
        system.push_str(instructions);
    }
    let mut messages = vec![ChatMessage::User {
        text: briefing(&work),
    }];
    let mut reports: Vec<AgentReport> = Vec::new();
    let supervisor = ctx.branch("supervisor");
    let mut decided = None;
    let mut fell_back = None;
    for round in 0..max_iterations.max(1) {
        let request = ChatRequest {
            system: system.clone(),
            messages: messages.clone(),
            tools: Vec::new(),
            max_tokens: MAX_DECISION_TOKENS,
        };
        let round_ctx = supervisor.branch("round").branch(round);
        let reply = match caller
            .ask(
                &round_ctx,
                "llm",
                models,
                &prompts::NODE_SUPERVISOR.id(),
                &request,
            )
            .await?
        {
            Answer::Reply(reply) => reply,
            Answer::Rules { reason } => {
                fell_back = Some(reason);
                break;
            }
            Answer::OverBudget { .. } => unreachable!("Caller::ask settles the budget"),
        };
        messages.push(ChatMessage::Assistant {
            text: reply.text.clone(),
            tool_calls: Vec::new(),
        });
        match parse_decision(&reply.text) {
            Ok(Decision::Finding { status, summary }) => {
                decided = Some((status, summary));
                break;
            }
            Ok(Decision::Delegate { agent, task }) => {
                let Some(spec) = node.agents.iter().find(|a| a.id == agent) else {
                    messages.push(ChatMessage::User {
                        text: format!(
                            "There is no agent \"{agent}\"; choose one of: {}",
                            node.agents
                                .iter()
                                .map(|a| a.id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                    continue;
                };
                let agent_models = spec
                    .model
                    .as_ref()
                    .map(|m| caller.models(m))
                    .unwrap_or_else(|| models.to_vec());
                let agent_ctx = ctx
                    .branch("agent")
                    .branch(&spec.id)
                    .branch("round")
                    .branch(round);
                let report = run_agent(
                    &agent_ctx,
                    caller,
                    toolbox,
                    AgentWork {
                        agent: spec,
                        node: &node.id,
                        kind: &node.kind,
                        models: &agent_models,
                        task: format!("{task}\n\n{}", briefing(&work)),
                        max_iterations,
                    },
                )
                .await?;
                if let Some(reason) = &report.fell_back {
                    fell_back = Some(reason.clone());
                    reports.push(report);
                    break;
                }
                messages.push(ChatMessage::User {
                    text: format!("Report of agent {}:\n{}", report.agent, report.answer),
                });
                reports.push(report);
            }
            Err(why) => messages.push(ChatMessage::User {
                text: format!(
                    "That was not one JSON decision ({why}). Answer with exactly one JSON object."
                ),
            }),
        }
    }
    let Some((status, summary)) = decided else {
        // No model could finish the node: the rule-based analyst does it.
        let why = fell_back.unwrap_or_else(|| {
            format!("the node supervisor reached no finding in {max_iterations} rounds")
        });
        let mut finding = rules::investigate_node(ctx, toolbox, work).await?;
        finding.summary = format!("{} (rule-based: {why})", finding.summary);
        return Ok(finding);
    };
    let failing_upstream = work.failing_upstream();
    // The alerts themselves are cited by the ranking; the finding adds what the
    // agents' queries returned.
    let evidence: Vec<Evidence> = reports
        .iter()
        .flat_map(|r| r.uses.iter())
        .filter(|u| u.ok)
        .map(|u| tool_evidence(u, status))
        .collect();
    let finding = NodeFinding {
        node: node.id.clone(),
        kind: node.kind.clone(),
        status,
        firing: work.firing,
        context: work.context,
        evidence,
        failing_upstream,
        summary,
    };
    rules::emit_finding(&supervisor, &finding)?;
    supervisor
        .step("finding", |_| {
            let finding = finding.clone();
            async move { Ok(finding) }
        })
        .await
}

/// What the node team is told about the node.
fn briefing(work: &NodeWork<'_>) -> String {
    let alerts = |list: &[crate::agents::Alert]| {
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.iter()
                .map(|a| a.display())
                .collect::<Vec<_>>()
                .join("; ")
        }
    };
    let upstream: Vec<String> = work
        .upstream
        .iter()
        .map(|f| format!("{} is {:?}: {}", f.node, f.status, f.summary).to_lowercase())
        .collect();
    let rules: Vec<String> = work
        .firing
        .iter()
        .filter_map(|a| {
            work.expressions
                .get(&a.name)
                .map(|e| format!("{}: {e}", a.name))
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    format!(
        "Node {} ({}). Window: {} to {}.\nFiring alerts: {}\nOther alerts: {}\nAlert rule expressions: {}\nDependencies' findings: {}",
        work.node.id,
        work.node.kind,
        work.window.0.to_rfc3339(),
        work.window.1.to_rfc3339(),
        alerts(&work.firing),
        alerts(&work.context),
        if rules.is_empty() {
            "unknown".to_owned()
        } else {
            rules.join("; ")
        },
        if upstream.is_empty() {
            "none".to_owned()
        } else {
            upstream.join("; ")
        },
    )
}

/// The decision in a reply: the JSON object in it (models like to wrap it in prose or
/// a code fence).
fn parse_decision(text: &str) -> Result<Decision, String> {
    let value = json_in(text).ok_or("no JSON object found")?;
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// The first JSON object in `text`.
pub fn json_in(text: &str) -> Option<Json> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    serde_json::from_str(text.get(start..=end)?).ok()
}

/// A tool call cited as evidence: the query and its time range as the agent sent them.
fn tool_evidence(u: &ToolUse, status: NodeStatus) -> Evidence {
    let time = |k: &str| {
        u.args[k]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let query = u.args["query"].as_str().map(str::to_owned);
    Evidence {
        kind: if query.is_some() {
            EvidenceKind::Metric
        } else {
            EvidenceKind::Unavailable
        },
        summary: format!("{} {}", u.tool, u.args),
        query,
        start: time("start"),
        end: time("end"),
        step_seconds: u.args["step"].as_f64(),
        url: None,
        alert: None,
        starts_at: None,
        confirms: status != NodeStatus::Healthy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_read_from_prose_and_fences() {
        let d = parse_decision("Sure:\n```json\n{\"finding\": {\"status\": \"failing\", \"summary\": \"db down\"}}\n```").unwrap();
        assert!(matches!(
            d,
            Decision::Finding {
                status: NodeStatus::Failing,
                ..
            }
        ));
        let d =
            parse_decision(r#"{"delegate": {"agent": "metrics", "task": "check up"}}"#).unwrap();
        assert!(matches!(d, Decision::Delegate { agent, .. } if agent == "metrics"));
        assert!(parse_decision("no idea").is_err());
        assert!(parse_decision(r#"{"finding": {"status": "on fire", "summary": ""}}"#).is_err());
    }
}

//! The global supervisor on a language model (SPEC §3.1, §7): it picks the nodes to
//! investigate (their dependencies are added, so a failing dependency is told from a
//! healthy one) and, once the node findings are in, writes the structured result. A
//! result that breaks the team's `output_schema` goes back to the model with the
//! validation errors, up to [`MAX_REPAIRS`] times, each a durable step; then the run
//! fails with the errors listed.

use std::collections::BTreeSet;

use serde_json::{Value as Json, json};

use crate::context::{StepContext, StepError};
use crate::llm::chat::{ChatMessage, ChatRequest};
use crate::report::{self, NodeFinding, RoutedAlert};
use crate::topology::TeamSpec;
use crate::workflow::WorkflowError;

use super::model_call::{Answer, Caller};
use super::node_team::json_in;
use super::prompts;
use super::ranking;

pub const MAX_REPAIRS: u32 = 2;
const MAX_RESULT_TOKENS: u32 = 4096;

/// The nodes the supervisor picked among `candidates` (plus what they depend on), or
/// `None` when no model answered usefully (the routing by `match` labels stands).
pub async fn decide_nodes(
    ctx: &StepContext,
    caller: &Caller,
    team: &TeamSpec,
    models: &[String],
    alerts: &[RoutedAlert],
    task: Option<&str>,
) -> Result<Option<Vec<String>>, StepError> {
    let mut system = prompts::SUPERVISOR.render(&[("team", &team.name)]);
    if let Some(instructions) = &team.supervisor.instructions {
        system.push_str("\n\n");
        system.push_str(instructions);
    }
    let topology: Vec<Json> = team
        .nodes
        .iter()
        .map(|n| json!({ "id": n.id, "kind": n.kind, "depends_on": n.depends_on, "match": n.r#match }))
        .collect();
    let alerts: Vec<Json> = alerts
        .iter()
        .map(|r| json!({ "alert": r.alert.display(), "state": r.alert.state.as_str(), "routed_to": r.nodes }))
        .collect();
    let request = ChatRequest {
        system,
        messages: vec![ChatMessage::User {
            text: format!(
                "Task: {}\nTopology: {}\nAlerts: {}",
                task.unwrap_or("investigate the alerts"),
                Json::Array(topology),
                Json::Array(alerts)
            ),
        }],
        tools: Vec::new(),
        max_tokens: 1024,
    };
    let reply = match caller
        .ask(
            &ctx.branch("decide"),
            "llm",
            models,
            &prompts::SUPERVISOR.id(),
            &request,
        )
        .await?
    {
        Answer::Reply(reply) => reply,
        _ => return Ok(None),
    };
    let picked: Vec<String> = json_in(&reply.text)
        .and_then(|v| v["nodes"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.as_str())
        .filter(|n| team.node(n).is_some())
        .map(str::to_owned)
        .collect();
    if picked.is_empty() {
        return Ok(None);
    }
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for node in &picked {
        wanted.insert(node.clone());
        wanted.extend(ranking::upstream(team, node));
    }
    Ok(Some(
        team.nodes
            .iter()
            .filter(|n| wanted.contains(&n.id))
            .map(|n| n.id.clone())
            .collect(),
    ))
}

/// What the supervisor concluded.
pub enum Written {
    /// A result valid against the schema, and the model that wrote it.
    Result { result: Json, model: String },
    /// No model answered: the rule-based result stands.
    Rules { reason: String },
}

/// Asks the supervisor for the structured result, repairing it against `schema`.
pub async fn write_result(
    ctx: &StepContext,
    caller: &Caller,
    team: &TeamSpec,
    models: &[String],
    analysis: &report::Analysis,
    schema: &Json,
) -> Result<Written, WorkflowError> {
    let mut system =
        prompts::REPORT.render(&[("team", &team.name), ("schema", &schema.to_string())]);
    if let Some(instructions) = &team.supervisor.instructions {
        system.push_str("\n\n");
        system.push_str(instructions);
    }
    let findings: Vec<Json> = analysis.findings.iter().map(finding_brief).collect();
    let ranked = report::structured(analysis);
    let mut messages = vec![ChatMessage::User {
        text: format!(
            "Task: {}\nWindow: {} to {}\nNode findings: {}\nTopology-based ranking of the findings (for reference): {}",
            analysis.task.as_deref().unwrap_or("investigate the alerts"),
            analysis.window_start.to_rfc3339(),
            analysis.window_end.to_rfc3339(),
            Json::Array(findings),
            ranked["root_causes"],
        ),
    }];
    let report_ctx = ctx.branch("report");
    let mut problems = Vec::new();
    for attempt in 0..=MAX_REPAIRS {
        let key = if attempt == 0 {
            "llm".to_owned()
        } else {
            format!("repair/{attempt}/llm")
        };
        let request = ChatRequest {
            system: system.clone(),
            messages: messages.clone(),
            tools: Vec::new(),
            max_tokens: MAX_RESULT_TOKENS,
        };
        let reply = match caller
            .ask(&report_ctx, &key, models, &prompts::REPORT.id(), &request)
            .await?
        {
            Answer::Reply(reply) => reply,
            Answer::Rules { reason } => return Ok(Written::Rules { reason }),
            Answer::OverBudget { .. } => unreachable!("Caller::ask settles the budget"),
        };
        let candidate = json_in(&reply.text);
        problems = match &candidate {
            None => vec!["the answer holds no JSON object".to_owned()],
            Some(value) => match report::validate(value, schema) {
                Ok(()) => {
                    return Ok(Written::Result {
                        result: candidate.unwrap_or_default(),
                        model: reply.model,
                    });
                }
                Err(problems) => problems,
            },
        };
        messages.push(ChatMessage::Assistant {
            text: reply.text,
            tool_calls: Vec::new(),
        });
        messages.push(ChatMessage::User {
            text: format!(
                "The result does not match the schema: {}. Answer with the corrected JSON object only.",
                problems.join("; ")
            ),
        });
    }
    Err(WorkflowError::Failed(format!(
        "the supervisor's result still does not match the team's output_schema after {MAX_REPAIRS} repairs: {}",
        problems.join("; ")
    )))
}

fn finding_brief(f: &NodeFinding) -> Json {
    json!({
        "node": f.node,
        "status": f.status,
        "summary": f.summary,
        "failing_upstream": f.failing_upstream,
        "alerts": f.firing.iter().map(|a| a.display()).collect::<Vec<_>>(),
        "evidence": f.evidence.iter().map(|e| json!({
            "summary": e.summary, "query": e.query, "start": e.start, "end": e.end, "alert": e.alert,
        })).collect::<Vec<_>>(),
    })
}

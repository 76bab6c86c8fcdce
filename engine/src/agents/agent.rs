//! An agent: a tool-calling loop over its node's tools. Each model call is the step
//! `iter/<i>/llm` of the agent's branch, each tool call the step
//! `iter/<i>/call/<tool-call id>`, until the model answers without calling a tool or
//! `max_iterations` is reached. Tool policies hold as for any call (approval, ask_human),
//! and what goes back to the model is bounded ([`super::MAX_RESULT_BYTES`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::context::{StepContext, StepError};
use crate::event::EventKind;
use crate::llm::chat::{ChatMessage, ChatRequest, ToolCall};
use crate::topology::AgentSpec;

use super::model_call::{Answer, Caller};
use super::prompts;
use super::toolbox::{ToolOutcome, Toolbox};

/// Output tokens one agent turn may write.
const MAX_TURN_TOKENS: u32 = 2048;

/// A tool call an agent made, as its node's finding cites it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolUse {
    pub tool: String,
    pub args: Json,
    pub ok: bool,
}

/// What an agent reported back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    pub agent: String,
    pub answer: String,
    pub uses: Vec<ToolUse>,
    /// Set when no model could answer (the node falls back to the rule-based analyst).
    pub fell_back: Option<String>,
}

pub struct AgentWork<'a> {
    pub agent: &'a AgentSpec,
    pub node: &'a str,
    pub kind: &'a str,
    pub models: &'a [String],
    pub task: String,
    pub max_iterations: u32,
}

/// Runs the agent's loop under `ctx` (its branch for this task).
pub async fn run_agent(
    ctx: &StepContext,
    caller: &Caller,
    toolbox: &Toolbox,
    work: AgentWork<'_>,
) -> Result<AgentReport, StepError> {
    let agent = work.agent;
    let role = agent
        .role
        .clone()
        .unwrap_or_else(|| format!("agent {}", agent.id));
    let mut system = prompts::AGENT.render(&[
        ("agent_role", &role),
        ("node", work.node),
        ("kind", work.kind),
    ]);
    if let Some(instructions) = &agent.instructions {
        system.push_str("\n\n");
        system.push_str(instructions);
    }
    let tools = toolbox.tool_specs(&agent.tools);
    let offered: BTreeSet<&str> = agent.tools.iter().map(String::as_str).collect();
    let mut messages = vec![ChatMessage::User { text: work.task }];
    let mut uses = Vec::new();
    let mut last_text = String::new();
    for i in 0..work.max_iterations.max(1) {
        let iter = ctx.branch("iter").branch(i);
        let request = ChatRequest {
            system: system.clone(),
            messages: messages.clone(),
            tools: tools.clone(),
            max_tokens: MAX_TURN_TOKENS,
        };
        let reply = match caller
            .ask(&iter, "llm", work.models, &prompts::AGENT.id(), &request)
            .await?
        {
            Answer::Reply(reply) => reply,
            Answer::Rules { reason } => {
                return Ok(AgentReport {
                    agent: agent.id.clone(),
                    answer: last_text,
                    uses,
                    fell_back: Some(reason),
                });
            }
            Answer::OverBudget { .. } => unreachable!("Caller::ask settles the budget"),
        };
        last_text = reply.text.clone();
        if reply.tool_calls.is_empty() {
            return Ok(AgentReport {
                agent: agent.id.clone(),
                answer: reply.text,
                uses,
                fell_back: None,
            });
        }
        let calls = distinct_ids(reply.tool_calls);
        messages.push(ChatMessage::Assistant {
            text: reply.text,
            tool_calls: calls.clone(),
        });
        let mut pending = Correlation::expecting(&calls);
        for call in &calls {
            let (content, is_error) = match &call.arguments {
                Err(why) => (format!("error: {why}"), true),
                Ok(_) if !offered.contains(call.name.as_str()) => (
                    format!(
                        "error: tool \"{}\" is not available to this agent (available: {})",
                        call.name,
                        agent.tools.join(", ")
                    ),
                    true,
                ),
                Ok(args) => {
                    let outcome = toolbox
                        .call(&iter, &call.id, &call.name, args.clone())
                        .await?;
                    uses.push(ToolUse {
                        tool: call.name.clone(),
                        args: args.clone(),
                        ok: matches!(outcome, ToolOutcome::Done(_)),
                    });
                    outcome_text(outcome)
                }
            };
            answer(
                &iter,
                &mut pending,
                &mut messages,
                &call.id,
                content,
                is_error,
            )?;
        }
    }
    Ok(AgentReport {
        agent: agent.id.clone(),
        answer: format!(
            "{last_text}\n(stopped after {} iterations without a final answer)",
            work.max_iterations
        ),
        uses,
        fell_back: None,
    })
}

/// Tool-call correlation (SPEC §4): the calls of the model's last turn still waiting
/// for their result. A result must answer one of them, once.
#[derive(Debug)]
struct Correlation(BTreeSet<String>);

impl Correlation {
    fn expecting(calls: &[ToolCall]) -> Self {
        Self(calls.iter().map(|c| c.id.clone()).collect())
    }

    fn accept(&mut self, call_id: &str) -> Result<(), String> {
        if self.0.remove(call_id) {
            Ok(())
        } else {
            Err(format!(
                "no pending tool call of this run has id {call_id:?}; the result is refused"
            ))
        }
    }
}

/// Hands a tool result to the conversation, if it correlates; otherwise it is refused
/// and audited as a TOOL_RESULT event marked `refused`.
fn answer(
    ctx: &StepContext,
    pending: &mut Correlation,
    messages: &mut Vec<ChatMessage>,
    call_id: &str,
    content: String,
    is_error: bool,
) -> Result<(), StepError> {
    if let Err(error) = pending.accept(call_id) {
        ctx.emit(
            EventKind::ToolResult,
            json!({ "call_id": call_id, "ok": false, "refused": true, "error": error }),
        )?;
        return Ok(());
    }
    messages.push(ChatMessage::ToolResult {
        call_id: call_id.to_owned(),
        content,
        is_error,
    });
    Ok(())
}

/// Models sometimes reuse an id within a turn (or leave it empty); ids must be unique
/// to correlate results and to key steps.
fn distinct_ids(calls: Vec<ToolCall>) -> Vec<ToolCall> {
    let mut seen = BTreeSet::new();
    calls
        .into_iter()
        .enumerate()
        .map(|(n, mut call)| {
            if call.id.is_empty() || !seen.insert(call.id.clone()) {
                call.id = format!("{}#{n}", call.id);
                seen.insert(call.id.clone());
            }
            call
        })
        .collect()
}

fn outcome_text(outcome: ToolOutcome) -> (String, bool) {
    match outcome {
        ToolOutcome::Done(value) => (value.to_string(), false),
        ToolOutcome::Declined {
            status,
            by,
            comment,
        } => (
            format!(
                "not approved: {} by {}{}",
                status.as_str().to_ascii_lowercase(),
                by.as_deref().unwrap_or("nobody (expired)"),
                comment.map_or(String::new(), |c| format!(": {c}"))
            ),
            true,
        ),
        ToolOutcome::Failed(message) => (format!("error: {message}"), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_must_answer_a_pending_call_once() {
        let call = |id: &str| ToolCall {
            id: id.into(),
            name: "t".into(),
            arguments: Ok(json!({})),
        };
        let mut pending = Correlation::expecting(&[call("a"), call("b")]);
        assert!(pending.accept("a").is_ok());
        let twice = pending.accept("a").unwrap_err();
        assert!(
            twice.contains("\"a\"") && twice.contains("refused"),
            "{twice}"
        );
        assert!(pending.accept("forged").is_err());
        assert!(pending.accept("b").is_ok());
    }

    #[test]
    fn repeated_or_empty_ids_become_distinct() {
        let call = |id: &str| ToolCall {
            id: id.into(),
            name: "t".into(),
            arguments: Ok(json!({})),
        };
        let ids: Vec<String> = distinct_ids(vec![call("a"), call("a"), call(""), call("b")])
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, ["a", "a#1", "#2", "b"]);
    }
}

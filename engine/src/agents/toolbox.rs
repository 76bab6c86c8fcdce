//! Tool calls as durable steps. A call is keyed by structure (the caller's branch —
//! node, agent, iteration — and the call id), its arguments are checked against the
//! tool's schema before anything runs, approval-gated tools wait for a person to
//! approve exactly what will be sent, and what comes back is bounded before it is
//! recorded or handed on. `TOOL_CALL` and `TOOL_RESULT` events tell watchers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use crate::context::{ApprovalRequest, StepContext, StepError, StepOptions, key_segment};
use crate::engine::Engine;
use crate::event::EventKind;
use crate::retry::StepFailure;
use crate::status::ApprovalStatus;
use crate::tools::{
    AlertStates, ErrorKind, Matcher, Policy, Registry, Silence, SourceClients, ToolError,
};
use crate::topology::TeamSpec;

/// The most of one tool result that is recorded and handed on, in bytes of JSON.
pub const MAX_RESULT_BYTES: usize = 16 * 1024;

/// The step-duration metric's `kind` of tool calls.
const TOOL_STEP: &str = "tool";

/// What a tool call came to.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolOutcome {
    /// The tool's answer, bounded.
    Done(Json),
    /// A person did not approve it (rejected, or nobody decided in time).
    Declined {
        status: ApprovalStatus,
        by: Option<String>,
        comment: Option<String>,
    },
    /// The call failed for good (invalid arguments, bad PromQL, retries spent).
    Failed(String),
}

/// The tools of one run: the registry, the team's alert source, the team itself
/// (for `topology`) and the findings so far.
pub struct Toolbox {
    registry: Registry,
    engine: Engine,
    /// The source's clients, or why there are none (no source configured…).
    source: Result<SourceClients, String>,
    team: Arc<TeamSpec>,
    findings: Mutex<BTreeMap<String, Json>>,
}

impl Toolbox {
    /// `engine` reads what calls need at call time (a webhook's target).
    pub fn new(
        registry: Registry,
        engine: Engine,
        source: Result<SourceClients, String>,
        team: Arc<TeamSpec>,
    ) -> Self {
        Self {
            registry,
            engine,
            source,
            team,
            findings: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn source(&self) -> Result<&SourceClients, ToolError> {
        self.source
            .as_ref()
            .map_err(|why| ToolError::permanent(why.clone()))
    }

    /// Makes a node's finding visible to the `topology` tool.
    pub fn record_finding(&self, node: &str, finding: Json) {
        lock(&self.findings).insert(node.to_owned(), finding);
    }

    /// Calls `tool` with `args` as the durable step `call/<call_id>` of `ctx`, its
    /// result bounded to [`MAX_RESULT_BYTES`] (what a model reads). Errors are only
    /// the engine's (a duplicate key…); a failed call is an outcome.
    pub async fn call(
        &self,
        ctx: &StepContext,
        call_id: &str,
        tool: &str,
        args: Json,
    ) -> Result<ToolOutcome, StepError> {
        self.call_within(ctx, call_id, tool, args, MAX_RESULT_BYTES)
            .await
    }

    /// [`Toolbox::call`] with another bound on the result: for code that reads the
    /// whole answer itself (every firing alert, every alert rule) rather than
    /// handing it to a model.
    pub async fn call_within(
        &self,
        ctx: &StepContext,
        call_id: &str,
        tool: &str,
        args: Json,
        limit: usize,
    ) -> Result<ToolOutcome, StepError> {
        let key = format!("call/{}", key_segment(call_id));
        let marker = format!("[aiops run={} step={}]", ctx.run_id(), ctx.full_key(&key));
        let args = with_marker(tool, args, &marker);
        ctx.emit(
            EventKind::ToolCall,
            json!({ "call_id": call_id, "tool": tool, "args": args, "step_key": ctx.full_key(&key) }),
        )?;
        let outcome = self.run(ctx, &key, tool, args, marker, limit).await?;
        let payload = match &outcome {
            ToolOutcome::Done(result) => {
                json!({ "call_id": call_id, "tool": tool, "ok": true, "result": result })
            }
            ToolOutcome::Declined { status, by, .. } => json!({
                "call_id": call_id, "tool": tool, "ok": false,
                "error": format!("not approved: {}", status.as_str().to_ascii_lowercase()), "decided_by": by,
            }),
            ToolOutcome::Failed(message) => {
                json!({ "call_id": call_id, "tool": tool, "ok": false, "error": message })
            }
        };
        ctx.emit(EventKind::ToolResult, payload)?;
        Ok(outcome)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        key: &str,
        tool: &str,
        args: Json,
        marker: String,
        limit: usize,
    ) -> Result<ToolOutcome, StepError> {
        let Some(spec) = self.registry.get(tool) else {
            let known: Vec<&str> = self.registry.names().collect();
            let message = format!("unknown tool \"{tool}\" (known: {})", known.join(", "));
            return refuse(ctx, key, args, message).await;
        };
        if let Err(e) = spec.validate(&args) {
            return refuse(ctx, key, args, e.message).await;
        }
        match spec.policy {
            Policy::Auto => {}
            Policy::Approval => {
                let decision = ctx
                    .wait_approval(
                        format!("{key}/approval"),
                        ApprovalRequest {
                            tool: tool.to_owned(),
                            args: args.clone(),
                            risk_note: Some(risk_note(tool)),
                            expires_in: None,
                        },
                    )
                    .await?;
                if !decision.approved() {
                    return Ok(ToolOutcome::Declined {
                        status: decision.status,
                        by: decision.decided_by,
                        comment: decision.comment,
                    });
                }
            }
            Policy::AskHuman => {
                let question = args["question"].as_str().unwrap_or_default().to_owned();
                let answer = ctx.wait_input(key, question).await?;
                return Ok(ToolOutcome::Done(match answer.answer {
                    Some(text) => json!({ "answer": text, "answered_by": answer.answered_by }),
                    None => {
                        json!({ "answer": null, "note": "nobody answered before the question expired" })
                    }
                }));
            }
        }
        let options = StepOptions {
            retry: Some(spec.retry.clone()),
            timeout: Some(spec.timeout),
            input: Some(args.clone()),
            kind: Some(TOOL_STEP),
        };
        let node = node_of(&ctx.full_key(key));
        let result = ctx
            .step_with(key, options, |attempt| {
                let call = Call {
                    run_id: ctx.run_id(),
                    node: node.clone(),
                    marker: marker.clone(),
                    idempotency_key: attempt.idempotency_key,
                };
                let args = args.clone();
                async move {
                    self.execute(tool, &args, &call)
                        .await
                        .map(|value| bound(&value, limit))
                        .map_err(failure)
                }
            })
            .await;
        match result {
            Ok(value) => Ok(ToolOutcome::Done(value)),
            Err(StepError::Failed { message, .. }) => Ok(ToolOutcome::Failed(message)),
            Err(other) => Err(other),
        }
    }

    async fn execute(&self, tool: &str, args: &Json, call: &Call) -> Result<Json, ToolError> {
        let text = |field: &str| args[field].as_str().unwrap_or_default();
        match tool {
            "prometheus_alerts" => self.source()?.prometheus()?.alerts().await,
            "prometheus_rules" => self.source()?.prometheus()?.rules().await,
            "prometheus_query" => {
                let time = optional_time(args, "time")?;
                self.source()?
                    .prometheus()?
                    .query(text("query"), time)
                    .await
            }
            "prometheus_query_range" => {
                let start = time(args, "start")?;
                let end = time(args, "end")?;
                let step = Duration::from_secs_f64(args["step"].as_f64().unwrap_or(15.0));
                self.source()?
                    .prometheus()?
                    .query_range(text("query"), start, end, step)
                    .await
            }
            "alertmanager_alerts" => {
                let filter = matcher_filters(args)?;
                let flag = |name: &str| args[name].as_bool().unwrap_or(true);
                let states = AlertStates {
                    active: flag("active"),
                    silenced: flag("silenced"),
                    inhibited: flag("inhibited"),
                };
                self.source()?.alertmanager()?.alerts(&filter, states).await
            }
            "alertmanager_silence" => {
                let matchers: Vec<Matcher> = serde_json::from_value(args["matchers"].clone())
                    .map_err(|e| ToolError::permanent(format!("/matchers: {e}")))?;
                let minutes = args["duration_minutes"].as_i64().unwrap_or(60);
                let now = Utc::now();
                let silence = Silence {
                    matchers,
                    starts_at: now,
                    ends_at: now + chrono::Duration::minutes(minutes),
                    created_by: "aiops".to_owned(),
                    comment: text("comment").to_owned(),
                };
                let am = self.source()?.alertmanager()?;
                let (id, created) = am.create_silence_once(&silence, &call.marker).await?;
                Ok(json!({ "silence_id": id, "created": created, "ends_at": silence.ends_at }))
            }
            "topology" => Ok(self.topology(args["node"].as_str())),
            "webhook_action" => {
                let name = self.team.webhook.as_deref().unwrap_or("default");
                let target = self.engine.webhook_target(name).await.map_err(|e| match e {
                    crate::Error::NotFound { .. } => ToolError::permanent(format!(
                        "no remediation webhook named \"{name}\" is configured (`aiops webhook add {name}`)"
                    )),
                    other => ToolError::retryable(other.to_string(), None),
                })?;
                let payload = crate::tools::action_payload(
                    call.run_id,
                    &self.team.name,
                    &call.node,
                    text("action"),
                    args.get("args").unwrap_or(&json!({})),
                    &call.idempotency_key,
                );
                crate::tools::post_action(&target, &payload, &call.idempotency_key).await
            }
            other => Err(ToolError::permanent(format!(
                "tool \"{other}\" cannot be called here"
            ))),
        }
    }

    /// The team's nodes (or one), what each depends on and matches, and the findings
    /// written so far.
    fn topology(&self, only: Option<&str>) -> Json {
        let findings = lock(&self.findings);
        let nodes: Vec<Json> = self
            .team
            .nodes
            .iter()
            .filter(|n| only.is_none_or(|id| n.id == id))
            .map(|n| {
                json!({
                    "id": n.id, "kind": n.kind, "depends_on": n.depends_on, "match": n.r#match,
                    "finding": findings.get(&n.id),
                })
            })
            .collect();
        json!({ "team": self.team.name, "nodes": nodes })
    }
}

/// A silence's comment carries `marker`, which makes a repeated POST find the first
/// silence; it is added before anything is shown or asked, so the TOOL_CALL event and
/// the approval show exactly what will be posted.
fn with_marker(tool: &str, mut args: Json, marker: &str) -> Json {
    if tool == "alertmanager_silence"
        && let Some(comment) = args["comment"].as_str()
        && !comment.contains(marker)
    {
        args["comment"] = Json::String(format!("{comment} {marker}"));
    }
    args
}

/// What a call's execution needs besides its arguments.
struct Call {
    run_id: crate::RunId,
    /// The node whose branch makes the call (`supervisor` outside any node).
    node: String,
    /// Carried by a silence's comment: how a repeated POST finds the first one.
    marker: String,
    /// `run_id/step_key`: the same on every attempt, across crashes.
    idempotency_key: String,
}

/// `db` from `node/db/agent/…`; `supervisor` outside any node.
fn node_of(full_key: &str) -> String {
    crate::usage_breakdown::attribute(full_key)
        .node
        .unwrap_or_else(|| crate::usage_breakdown::SUPERVISOR.to_owned())
}

/// Records a call refused before it ran (unknown tool, invalid arguments) as a failed
/// step, so a replay sees the same refusal and the run's history shows it.
async fn refuse(
    ctx: &StepContext,
    key: &str,
    args: Json,
    message: String,
) -> Result<ToolOutcome, StepError> {
    let options = StepOptions {
        input: Some(args),
        kind: Some(TOOL_STEP),
        ..StepOptions::default()
    };
    let result: Result<Json, StepError> = ctx
        .step_with(key, options, |_| {
            let message = message.clone();
            async move { Err(StepFailure::permanent(message)) }
        })
        .await;
    match result {
        Ok(value) => Ok(ToolOutcome::Done(value)),
        Err(StepError::Failed { message, .. }) => Ok(ToolOutcome::Failed(message)),
        Err(other) => Err(other),
    }
}

fn risk_note(tool: &str) -> String {
    match tool {
        "alertmanager_silence" => {
            "Creates this silence in Alertmanager: matching alerts stop notifying until it ends."
        }
        "webhook_action" => "Sends this action to the remediation webhook, which acts on it.",
        _ => "Changes something outside the executor.",
    }
    .to_owned()
}

fn failure(error: ToolError) -> StepFailure {
    match error.kind {
        ErrorKind::Permanent => StepFailure::Permanent(error.message),
        ErrorKind::Retryable { retry_after: None } => StepFailure::Retryable(error.message),
        ErrorKind::Retryable { retry_after } => StepFailure::RateLimited {
            message: error.message,
            retry_after,
        },
    }
}

/// `value` if its JSON fits in `limit` bytes; otherwise a note saying so with the
/// beginning of it, so one large answer cannot crowd out everything else.
pub fn bound(value: &Json, limit: usize) -> Json {
    let text = value.to_string();
    if text.len() <= limit {
        return value.clone();
    }
    let mut cut = limit.saturating_sub(512);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    json!({
        "truncated": true,
        "note": format!(
            "the result was {} bytes of JSON and was cut to its first {cut}; ask for less (a narrower query, fewer series, a larger step)",
            text.len()
        ),
        "excerpt": &text[..cut],
    })
}

fn time(args: &Json, field: &str) -> Result<DateTime<Utc>, ToolError> {
    optional_time(args, field)?.ok_or_else(|| ToolError::permanent(format!("/{field}: required")))
}

fn optional_time(args: &Json, field: &str) -> Result<Option<DateTime<Utc>>, ToolError> {
    match args[field].as_str() {
        None => Ok(None),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| {
                ToolError::permanent(format!("/{field}: \"{text}\" is not an RFC 3339 time: {e}"))
            }),
    }
}

/// Alertmanager's `filter` strings (`name="value"`, `name=~"re"`, `!=`, `!~`).
fn matcher_filters(args: &Json) -> Result<Vec<String>, ToolError> {
    let Some(list) = args["matchers"].as_array() else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|m| {
            let m: Matcher = serde_json::from_value(m.clone())
                .map_err(|e| ToolError::permanent(format!("/matchers: {e}")))?;
            let op = match (m.is_equal, m.is_regex) {
                (true, false) => "=",
                (true, true) => "=~",
                (false, false) => "!=",
                (false, true) => "!~",
            };
            Ok(format!("{}{op}{}", m.name, Json::String(m.value)))
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Toolbox {
    /// The named tools as a model is offered them (unknown names are left out: team
    /// validation already refused them).
    pub fn tool_specs(&self, names: &[String]) -> Vec<crate::llm::chat::ToolSpec> {
        names
            .iter()
            .filter_map(|n| self.registry.get(n))
            .map(|t| crate::llm::chat::ToolSpec {
                name: t.name.to_owned(),
                description: t.description.to_owned(),
                parameters: t.parameters.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_results_pass_and_large_ones_are_cut_with_a_note() {
        let small = json!({ "a": 1 });
        assert_eq!(bound(&small, MAX_RESULT_BYTES), small);
        let large = json!({ "s": "é".repeat(20_000) });
        let cut = bound(&large, MAX_RESULT_BYTES);
        assert_eq!(cut["truncated"], true);
        assert!(cut.to_string().len() <= MAX_RESULT_BYTES);
        assert!(cut["note"].as_str().unwrap().contains("ask for less"));
    }

    #[test]
    fn matchers_become_alertmanager_filters() {
        let args = json!({ "matchers": [
            { "name": "service", "value": "db" },
            { "name": "alertname", "value": "A|B", "isRegex": true },
            { "name": "env", "value": "dev", "isEqual": false }
        ]});
        assert_eq!(
            matcher_filters(&args).unwrap(),
            ["service=\"db\"", "alertname=~\"A|B\"", "env!=\"dev\""]
        );
    }
}

//! The `investigation` workflow: a team investigates alerts (SPEC §3.1).
//!
//! The global step reads the alerts (given, or the source's firing ones), routes
//! them to nodes by the nodes' `match` labels and picks the nodes that concern them
//! plus what they depend on. Node investigations run in dependency order — a node
//! after the nodes it depends on, independent nodes in parallel up to
//! [`NODE_CONCURRENCY`] — each seeing its dependencies' findings. Findings flow up
//! into ranked root causes, proposed actions (approval-gated), the Markdown report
//! and the structured result checked against the team's `output_schema`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::context::StepContext;
use crate::llm::client::LlmClient;
use crate::model::RunAlert;
use crate::retry::StepFailure;
use crate::status::Trigger;
use crate::tools::{Registry, SourceClients};
use crate::topology::{Pattern, TeamSpec};
use crate::workflow::{Workflow, WorkflowError, WorkflowFuture, WorkflowInfo};
use crate::{Error, report};

use super::alert::{Alert, AlertState};
use super::model_call::{Budget, Caller, wants_llm};
use super::rules::{self, NodeWork, RULES_ANALYST};
use super::silence;
use super::toolbox::{ToolOutcome, Toolbox};
use super::{node_team, plan_execute, prompts, ranking, supervisor};

/// The workflow name team runs execute.
pub const NAME: &str = "investigation";
/// Node investigations running at once, per run.
pub const NODE_CONCURRENCY: usize = 4;
/// How far before the first firing alert the evidence window starts.
const LEAD: chrono::Duration = chrono::Duration::minutes(5);
/// The longest window looked at.
const MAX_WINDOW: chrono::Duration = chrono::Duration::hours(6);
const MAX_TASK_CHARS: usize = 10_000;
/// The bound on what the supervisor reads whole (every firing alert, every alert
/// rule): room for [`super::MAX_ALERTS`] alerts with their labels and annotations.
const READ_ALL_BYTES: usize = 4 * 1024 * 1024;

/// What a team run is asked: alerts (the Alertmanager webhook shape, or a list), a
/// free-text task, or neither (the source's firing alerts).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default)]
    alerts: Option<Json>,
    #[serde(default)]
    task: Option<String>,
}

impl Input {
    fn read(input: &Json) -> Result<(Option<Vec<Alert>>, Option<String>), String> {
        let input: Input = match input {
            Json::Null => Input::default(),
            other => serde_json::from_value(other.clone()).map_err(|e| format!("input: {e}"))?,
        };
        let alerts = match &input.alerts {
            None | Some(Json::Null) => None,
            Some(a) => Some(Alert::parse_list(a, "alerts")?),
        };
        if let Some(task) = &input.task
            && task.chars().count() > MAX_TASK_CHARS
        {
            return Err(format!("task: at most {MAX_TASK_CHARS} characters"));
        }
        Ok((alerts, input.task))
    }
}

/// What the global step decided, recorded so a replay decides the same.
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
    alerts: Vec<report::RoutedAlert>,
    /// The nodes to investigate, in the team's order.
    nodes: Vec<String>,
}

pub struct Investigation {
    registry: Registry,
    llm: LlmClient,
}

impl Investigation {
    /// With the process's shared model client ([`crate::llm::shared_client`]).
    pub fn new(registry: Registry) -> Self {
        Self::with_llm(registry, crate::llm::shared_client().clone())
    }

    pub fn with_llm(registry: Registry, llm: LlmClient) -> Self {
        Self { registry, llm }
    }
}

impl Workflow for Investigation {
    fn run(&self, ctx: StepContext) -> WorkflowFuture {
        let registry = self.registry.clone();
        let llm = self.llm.clone();
        Box::pin(async move { investigate(ctx, registry, llm).await })
    }

    fn validate_input(&self, input: &Json) -> Result<(), String> {
        Input::read(input).map(|_| ())
    }

    fn describe(&self) -> WorkflowInfo {
        WorkflowInfo {
            description: "A team investigates alerts and writes a cited root-cause report \
                          (start it with a team)."
                .to_owned(),
            input_schema: json!({
                "type": "object", "additionalProperties": false,
                "properties": {
                    "alerts": { "description": "Alerts in the Alertmanager webhook shape (or a list of them); default: the alert source's firing alerts" },
                    "task": { "type": "string", "maxLength": MAX_TASK_CHARS }
                }
            }),
        }
    }
}

async fn investigate(
    ctx: StepContext,
    registry: Registry,
    llm: LlmClient,
) -> Result<Json, WorkflowError> {
    let (given, task) = Input::read(ctx.input()).map_err(WorkflowError::Failed)?;
    let Some(version_id) = ctx.run_info().team_version_id else {
        return Err(WorkflowError::Failed(
            "an investigation is a team run: start it with a team".to_owned(),
        ));
    };
    let engine = ctx.engine().clone();
    let (team_name, team_version, spec): (String, i32, Json) = ctx
        .step("team", |_| {
            let engine = engine.clone();
            async move {
                let team = engine
                    .team_by_version(version_id)
                    .await
                    .map_err(engine_failure)?;
                Ok((team.name, team.version, team.spec))
            }
        })
        .await?;
    let team: TeamSpec = serde_json::from_value(spec).map_err(|e| {
        WorkflowError::Failed(format!("team {team_name}: stored spec unreadable: {e}"))
    })?;
    let team = Arc::new(team);
    // Read on every execution, never recorded: it holds the source's credentials.
    let source = match engine.alert_source_for(team.source.as_deref()).await {
        Ok(conn) => SourceClients::connect(&conn).map_err(|e| e.message),
        Err(e) => Err(e.to_string()),
    };
    let source_name = team
        .source
        .clone()
        .unwrap_or_else(|| crate::DEFAULT_SOURCE.to_owned());
    let toolbox = Toolbox::new(registry, engine.clone(), source, team.clone());
    let supervisor = ctx.branch("supervisor");
    let mut notes = Vec::new();
    // Which of the team's models are configured, decided once and recorded: a model
    // stored (or deleted) mid-run must not change the path a replay takes.
    let named: BTreeSet<String> = team_model_names(&team);
    let stored: BTreeSet<String> = if named.iter().all(|n| n == RULES_ANALYST) {
        BTreeSet::new()
    } else {
        ctx.step("models", |_| {
            let engine = engine.clone();
            let named = named.clone();
            async move {
                let stored = engine.model_names().await.map_err(engine_failure)?;
                Ok(named
                    .intersection(&stored)
                    .cloned()
                    .collect::<BTreeSet<String>>())
            }
        })
        .await?
    };
    let caller = Caller {
        client: llm,
        budget: Budget::new(&team.limits),
        stored: Arc::new(stored),
    };
    let supervisor_models = caller.models(&team.supervisor.model);

    let alerts = match given {
        Some(alerts) => alerts,
        None => firing_alerts(&supervisor, &toolbox, &source_name).await?,
    };
    let has_prometheus = toolbox.source().is_ok_and(|s| s.prometheus().is_ok());
    if !has_prometheus {
        notes.push(match toolbox.source() {
            Err(e) => format!("no metric evidence: {}", e.message),
            Ok(_) => {
                format!("no metric evidence: alert source \"{source_name}\" has no Prometheus")
            }
        });
    }
    let any_firing = alerts
        .iter()
        .any(|a| a.state == AlertState::Firing && team.nodes.iter().any(|n| a.matches(&n.r#match)));
    let expressions = if has_prometheus && any_firing {
        match toolbox
            .call_within(
                &supervisor,
                "rules",
                "prometheus_rules",
                json!({}),
                READ_ALL_BYTES,
            )
            .await?
        {
            ToolOutcome::Done(data) => rule_expressions(&data),
            ToolOutcome::Failed(message) => {
                notes.push(format!("alert rules unavailable: {message}"));
                BTreeMap::new()
            }
            ToolOutcome::Declined { .. } => BTreeMap::new(),
        }
    } else {
        BTreeMap::new()
    };

    // After the reads above, so their TOOL_RESULT events go out with it.
    let mut plan: Plan = supervisor
        .step("plan", |_| {
            let plan = plan(&team, &alerts, Utc::now());
            async move { Ok(plan) }
        })
        .await?;
    let plan_execute = team.pattern == Pattern::PlanExecute && wants_llm(&supervisor_models);
    if wants_llm(&supervisor_models)
        && !plan_execute
        && any_firing
        && let Some(nodes) = supervisor::decide_nodes(
            &supervisor,
            &caller,
            &team,
            &supervisor_models,
            &plan.alerts,
            task.as_deref(),
        )
        .await?
    {
        plan.nodes = nodes;
    }
    let nodes = Nodes {
        toolbox: &toolbox,
        caller: &caller,
        team: &team,
        plan: &plan,
        expressions: &expressions,
        has_prometheus,
    };
    let findings = if plan_execute {
        let briefing = plan_briefing(&team, &plan, task.as_deref());
        let log =
            plan_execute::run(&ctx, &caller, &toolbox, &team, &supervisor_models, briefing).await?;
        notes.push(format!(
            "Plan/execute: {} tool calls executed; {}.",
            log.executed.len(),
            log.stopped
        ));
        match log.fell_back {
            Some(_) => nodes.run(&ctx).await?,
            None => findings_from_plan(&team, &plan, &log),
        }
    } else {
        nodes.run(&ctx).await?
    };
    let root_causes = ranking::rank(&team, &findings);
    let actions = silence::propose(&supervisor, &toolbox, &team, &root_causes).await?;
    // After the actions (an approval may have waited for hours): the freshest news.
    let joined = group_news(&supervisor, &mut plan.alerts).await?;
    let mut analysis = report::Analysis {
        team: team_name,
        team_version,
        analyst: RULES_ANALYST.to_owned(),
        task,
        window_start: plan.window_start,
        window_end: plan.window_end,
        alerts: plan.alerts,
        joined,
        findings,
        root_causes,
        actions,
        notes,
    };
    let schema: &Json = match &team.output_schema {
        Some(schema) => schema,
        None => report::default_output_schema(),
    };
    let mut result = None;
    if wants_llm(&supervisor_models) && caller.budget.exhausted().is_none() {
        match supervisor::write_result(
            &supervisor,
            &caller,
            &team,
            &supervisor_models,
            &analysis,
            schema,
        )
        .await?
        {
            supervisor::Written::Result { result: r, model } => {
                if let Some(summary) = r["summary"].as_str() {
                    analysis
                        .notes
                        .push(format!("Supervisor's summary: {summary}"));
                }
                analysis.analyst =
                    format!("{model} (language model; evidence and ranking by the topology)");
                result = Some(r);
            }
            supervisor::Written::Rules { reason } => {
                analysis.notes.push(format!("rule-based result: {reason}"));
            }
        }
    }
    if let Some(why) = caller.budget.exhausted() {
        analysis
            .notes
            .push(format!("The investigation stopped early: {why}."));
    }
    let result = match result {
        Some(r) => r,
        None => {
            let r = report::structured(&analysis);
            if let Err(problems) = report::validate(&r, schema) {
                return Err(WorkflowError::Failed(format!(
                    "the result does not match the team's output_schema: {}",
                    problems.join("; ")
                )));
            }
            r
        }
    };
    Ok(json!({
        "report": report::render(&analysis),
        "result": result,
        "prompts": prompts::ALL.iter().map(|p| p.id()).collect::<Vec<_>>(),
    }))
}

/// The alert source's firing (and pending) alerts: Prometheus's when it has one,
/// otherwise Alertmanager's active ones.
async fn firing_alerts(
    supervisor: &StepContext,
    toolbox: &Toolbox,
    source_name: &str,
) -> Result<Vec<Alert>, WorkflowError> {
    let source = toolbox.source().map_err(|e| {
        WorkflowError::Failed(format!(
            "no alerts were given and the firing ones cannot be read: {}",
            e.message
        ))
    })?;
    let (tool, args) = if source.prometheus().is_ok() {
        ("prometheus_alerts", json!({}))
    } else {
        (
            "alertmanager_alerts",
            json!({ "active": true, "silenced": false, "inhibited": false }),
        )
    };
    let data = match toolbox
        .call_within(supervisor, "alerts", tool, args, READ_ALL_BYTES)
        .await?
    {
        ToolOutcome::Done(data) => data,
        ToolOutcome::Failed(message) => {
            return Err(WorkflowError::Failed(format!(
                "could not read the firing alerts of alert source \"{source_name}\": {message}"
            )));
        }
        ToolOutcome::Declined { .. } => Json::Null,
    };
    if data["truncated"] == true {
        return Err(WorkflowError::Failed(format!(
            "alert source \"{source_name}\" returned more alerts than one investigation reads; \
             start the run with the alerts to investigate"
        )));
    }
    let list = if data.is_array() {
        data
    } else {
        data["alerts"].clone()
    };
    Alert::parse_list(&list, tool).map_err(WorkflowError::Failed)
}

/// What the Alertmanager intake learnt about the run's group while it ran: marks
/// the alerts that resolved, and returns the alerts that joined the group after the
/// run started. Read once, in the recorded step `supervisor/alertmanager`, so a
/// replay writes the same report; nothing (and no step) for runs the intake did
/// not start.
async fn group_news(
    supervisor: &StepContext,
    alerts: &mut [report::RoutedAlert],
) -> Result<Vec<Alert>, WorkflowError> {
    if supervisor.run_info().trigger != Trigger::Alertmanager {
        return Ok(Vec::new());
    }
    let engine = supervisor.engine().clone();
    let run = supervisor.run_id();
    let known: Vec<RunAlert> = supervisor
        .step("alertmanager", |_| {
            let engine = engine.clone();
            async move { engine.run_alerts(run).await.map_err(engine_failure) }
        })
        .await?;
    for routed in alerts
        .iter_mut()
        .filter(|r| r.alert.state == AlertState::Firing)
    {
        let a = &routed.alert;
        routed.resolved_at = known
            .iter()
            .find(|k| {
                a.fingerprint.as_deref() == Some(k.fingerprint.as_str())
                    && a.starts_at.is_none_or(|t| t == k.starts_at)
            })
            .and_then(|k| k.resolved_at);
    }
    Ok(known
        .into_iter()
        .filter(|k| k.joined)
        .map(|k| Alert {
            name: k
                .labels
                .get("alertname")
                .cloned()
                .unwrap_or_else(|| "(unnamed)".to_owned()),
            state: match k.resolved_at {
                Some(_) => AlertState::Resolved,
                None => AlertState::Firing,
            },
            labels: k.labels,
            annotations: BTreeMap::new(),
            starts_at: Some(k.starts_at),
            generator_url: None,
            fingerprint: Some(k.fingerprint),
        })
        .collect())
}

/// Routes the alerts and picks the nodes: those an alert matches, and everything
/// they depend on (to tell a failing dependency from a healthy one).
fn plan(team: &TeamSpec, alerts: &[Alert], now: DateTime<Utc>) -> Plan {
    let routed: Vec<report::RoutedAlert> = alerts
        .iter()
        .map(|a| report::RoutedAlert {
            resolved_at: None,
            alert: a.clone(),
            nodes: team
                .nodes
                .iter()
                .filter(|n| a.matches(&n.r#match))
                .map(|n| n.id.clone())
                .collect(),
        })
        .collect();
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for r in routed
        .iter()
        .filter(|r| r.alert.state == AlertState::Firing)
    {
        for node in &r.nodes {
            wanted.insert(node.clone());
            wanted.extend(ranking::upstream(team, node));
        }
    }
    let first = routed
        .iter()
        .filter(|r| r.alert.state == AlertState::Firing)
        .filter_map(|r| r.alert.starts_at)
        .min();
    let window_start = first
        .map_or(now - LEAD, |t| t - LEAD)
        .max(now - MAX_WINDOW)
        .min(now - LEAD);
    Plan {
        window_start,
        window_end: now,
        alerts: routed,
        nodes: team
            .nodes
            .iter()
            .filter(|n| wanted.contains(&n.id))
            .map(|n| n.id.clone())
            .collect(),
    }
}

/// The node investigations of a run.
struct Nodes<'a> {
    toolbox: &'a Toolbox,
    caller: &'a Caller,
    team: &'a TeamSpec,
    plan: &'a Plan,
    expressions: &'a BTreeMap<String, String>,
    has_prometheus: bool,
}

impl Nodes<'_> {
    /// Investigates the planned nodes, dependencies first, up to [`NODE_CONCURRENCY`]
    /// at once. Step keys come from node ids, so the order nodes finish in does not
    /// matter to a replay.
    async fn run(&self, ctx: &StepContext) -> Result<Vec<report::NodeFinding>, WorkflowError> {
        let plan = self.plan;
        let planned: BTreeSet<&str> = plan.nodes.iter().map(String::as_str).collect();
        let mut done: BTreeMap<String, report::NodeFinding> = BTreeMap::new();
        let mut started: BTreeSet<&str> = BTreeSet::new();
        let mut running = FuturesUnordered::new();
        loop {
            for id in &plan.nodes {
                if running.len() >= NODE_CONCURRENCY {
                    break;
                }
                let Some(node) = self.team.node(id) else {
                    continue;
                };
                let ready = node
                    .depends_on
                    .iter()
                    .filter(|d| planned.contains(d.as_str()))
                    .all(|d| done.contains_key(d));
                if !ready || started.contains(id.as_str()) {
                    continue;
                }
                started.insert(id.as_str());
                let (firing, context): (Vec<Alert>, Vec<Alert>) = plan
                    .alerts
                    .iter()
                    .filter(|r| r.nodes.contains(id))
                    .map(|r| r.alert.clone())
                    .partition(|a| a.state == AlertState::Firing);
                // Findings are cloned in: a node's dependencies finished before it started.
                let upstream: Vec<report::NodeFinding> = node
                    .depends_on
                    .iter()
                    .filter_map(|d| done.get(d).cloned())
                    .collect();
                let node_ctx = ctx.branch("node").branch(id);
                let window = (plan.window_start, plan.window_end);
                let models = self.caller.models(
                    node.supervisor
                        .as_ref()
                        .map_or(&self.team.supervisor.model, |s| &s.model),
                );
                running.push(async move {
                    let upstream_refs: Vec<&report::NodeFinding> = upstream.iter().collect();
                    let work = NodeWork {
                        node,
                        firing,
                        context,
                        upstream: upstream_refs,
                        expressions: self.expressions,
                        window,
                        has_prometheus: self.has_prometheus,
                    };
                    if wants_llm(&models) && !node.agents.is_empty() {
                        node_team::investigate_node(
                            &node_ctx,
                            self.caller,
                            self.toolbox,
                            &models,
                            self.team.limits.max_iterations,
                            work,
                        )
                        .await
                    } else {
                        rules::investigate_node(&node_ctx, self.toolbox, work).await
                    }
                });
            }
            let Some(finished) = running.next().await else {
                break;
            };
            let finding = finished?;
            self.toolbox.record_finding(
                &finding.node,
                json!({ "status": finding.status, "summary": finding.summary }),
            );
            done.insert(finding.node.clone(), finding);
        }
        Ok(plan.nodes.iter().filter_map(|id| done.remove(id)).collect())
    }
}

/// Every model name the team mentions.
fn team_model_names(team: &TeamSpec) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = team
        .supervisor
        .model
        .names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    for node in &team.nodes {
        if let Some(s) = &node.supervisor {
            names.extend(s.model.names().into_iter().map(str::to_owned));
        }
        for agent in &node.agents {
            if let Some(m) = &agent.model {
                names.extend(m.names().into_iter().map(str::to_owned));
            }
        }
    }
    names
}

/// What the planner is told: the task, the topology and the routed alerts.
fn plan_briefing(team: &TeamSpec, plan: &Plan, task: Option<&str>) -> String {
    let topology: Vec<Json> = team
        .nodes
        .iter()
        .map(|n| json!({ "id": n.id, "kind": n.kind, "depends_on": n.depends_on, "match": n.r#match }))
        .collect();
    let alerts: Vec<Json> = plan
        .alerts
        .iter()
        .map(|r| json!({ "alert": r.alert.display(), "state": r.alert.state.as_str(), "routed_to": r.nodes }))
        .collect();
    format!(
        "Task: {}\nWindow: {} to {}\nTopology: {}\nAlerts: {}",
        task.unwrap_or("investigate the alerts"),
        plan.window_start.to_rfc3339(),
        plan.window_end.to_rfc3339(),
        Json::Array(topology),
        Json::Array(alerts)
    )
}

/// Node findings from a plan/execute investigation: a node with firing alerts is
/// failing; the executed calls that concern a node (its id or one of its `match`
/// values in the arguments) are its evidence.
fn findings_from_plan(
    team: &TeamSpec,
    plan: &Plan,
    log: &plan_execute::PlanLog,
) -> Vec<report::NodeFinding> {
    let mut out: Vec<report::NodeFinding> = Vec::new();
    for id in &plan.nodes {
        let Some(node) = team.node(id) else { continue };
        let (firing, context): (Vec<Alert>, Vec<Alert>) = plan
            .alerts
            .iter()
            .filter(|r| r.nodes.contains(id))
            .map(|r| r.alert.clone())
            .partition(|a| a.state == AlertState::Firing);
        let status = if firing.is_empty() {
            report::NodeStatus::Healthy
        } else {
            report::NodeStatus::Failing
        };
        // The ranking cites the alerts; the executed calls are the finding's own.
        let mut evidence: Vec<report::Evidence> = Vec::new();
        for e in log.executed.iter().filter(|e| e.status == "SUCCESS") {
            let args = e.args.to_string();
            let concerns =
                args.contains(&node.id) || node.r#match.values().any(|v| args.contains(v.as_str()));
            if concerns {
                evidence.push(report::Evidence {
                    kind: report::EvidenceKind::Metric,
                    summary: format!("{}: {} {}", e.step, e.tool, e.args),
                    query: e.args["query"].as_str().map(str::to_owned),
                    start: None,
                    end: None,
                    step_seconds: None,
                    url: None,
                    alert: None,
                    starts_at: None,
                    confirms: status == report::NodeStatus::Failing,
                });
            }
        }
        let failing_upstream: Vec<String> = node
            .depends_on
            .iter()
            .filter(|d| {
                out.iter()
                    .any(|f| &f.node == *d && f.status == report::NodeStatus::Failing)
            })
            .cloned()
            .collect();
        let summary = match status {
            report::NodeStatus::Failing => format!(
                "{} firing: {}",
                node.id,
                firing
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => format!("{} shows no firing alert", node.id),
        };
        out.push(report::NodeFinding {
            node: node.id.clone(),
            kind: node.kind.clone(),
            status,
            firing,
            context,
            evidence,
            failing_upstream,
            summary,
        });
    }
    out
}

/// Alert name → the rule's expression, from `/api/v1/rules`.
fn rule_expressions(data: &Json) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for group in data["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            if rule["type"] == "alerting"
                && let (Some(name), Some(query)) = (rule["name"].as_str(), rule["query"].as_str())
            {
                out.entry(name.to_owned())
                    .or_insert_with(|| query.to_owned());
            }
        }
    }
    out
}

/// A missing team version is final; anything else the database says may pass.
fn engine_failure(error: Error) -> StepFailure {
    match error {
        Error::NotFound { .. } | Error::Invalid(_) => StepFailure::permanent(error.to_string()),
        other => StepFailure::retryable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_name_the_field() {
        assert!(Input::read(&Json::Null).unwrap().0.is_none());
        assert!(
            Input::read(&json!({ "alerts": [{ "labels": {} }] }))
                .unwrap_err()
                .starts_with("alerts[0].labels")
        );
        assert!(
            Input::read(&json!({ "alert": [] }))
                .unwrap_err()
                .contains("unknown field `alert`")
        );
    }

    #[test]
    fn rule_expressions_come_from_alerting_rules_only() {
        let data = json!({ "groups": [{ "rules": [
            { "type": "recording", "name": "r", "query": "x" },
            { "type": "alerting", "name": "DbDown", "query": "db_up == 0" }
        ]}]});
        let got = rule_expressions(&data);
        assert_eq!(got.len(), 1);
        assert_eq!(got["DbDown"], "db_up == 0");
    }
}

//! The built-in rule-based analyst (`builtin:rules`): no language model. For one
//! node it gathers evidence with the same tools an agent would use — each firing
//! alert's rule expression over the incident window, and the health of the node's
//! scrape targets — and writes the node's finding. Ranking the findings into root
//! causes is [`super::ranking`].

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use crate::context::{StepContext, StepError};
use crate::event::EventKind;
use crate::report::{Evidence, EvidenceKind, NodeFinding, NodeStatus};
use crate::topology::NodeSpec;

use super::alert::Alert;
use super::toolbox::{ToolOutcome, Toolbox};

/// The model name of the rule-based analyst.
pub const RULES_ANALYST: &str = "builtin:rules";

/// At most this many distinct alert rules of one node are queried for evidence.
const MAX_QUERIES_PER_NODE: usize = 5;
/// Points per series asked of a range query: enough to show a trend, small enough
/// to stay well inside a bounded tool result.
const POINTS: i64 = 30;
/// The analyst summarises what it reads (no model sees it): room for a few hundred
/// series of [`POINTS`] points.
const EVIDENCE_BYTES: usize = 256 * 1024;

/// What one node's investigation starts from.
pub struct NodeWork<'a> {
    pub node: &'a NodeSpec,
    pub firing: Vec<Alert>,
    pub context: Vec<Alert>,
    /// The findings of the nodes it depends on (directly), already written.
    pub upstream: Vec<&'a NodeFinding>,
    /// Alert rule expressions by alert name (from `prometheus_rules`).
    pub expressions: &'a BTreeMap<String, String>,
    pub window: (DateTime<Utc>, DateTime<Utc>),
    pub has_prometheus: bool,
}

impl NodeWork<'_> {
    /// The failing nodes upstream of this one: its failing dependencies and what
    /// they found failing upstream of them.
    pub fn failing_upstream(&self) -> Vec<String> {
        self.upstream
            .iter()
            .flat_map(|f| {
                let own = (f.status == NodeStatus::Failing).then(|| f.node.clone());
                own.into_iter().chain(f.failing_upstream.iter().cloned())
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// The FINDING event of a node, emitted from the branch that records the finding, so
/// watchers see it when the node is done.
pub fn emit_finding(ctx: &StepContext, finding: &NodeFinding) -> Result<(), StepError> {
    ctx.emit(
        EventKind::Finding,
        json!({
            "node": finding.node, "status": finding.status, "summary": finding.summary,
            "alerts": finding.firing.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
            "failing_upstream": finding.failing_upstream,
        }),
    )
}

/// Investigates one node under `ctx` (the node's branch) and writes its finding.
pub async fn investigate_node(
    ctx: &StepContext,
    toolbox: &Toolbox,
    work: NodeWork<'_>,
) -> Result<NodeFinding, StepError> {
    let node = work.node;
    // The analyst acts as the node's first agent: its calls are keyed like an
    // agent's first iteration.
    let agent = node.agents.first().map_or("rules", |a| a.id.as_str());
    let ctx = ctx.branch("agent").branch(agent).branch("iter").branch(0);
    let mut evidence = Vec::new();
    if work.has_prometheus {
        let names: Vec<&str> = work
            .firing
            .iter()
            .map(|a| a.name.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .take(MAX_QUERIES_PER_NODE)
            .collect();
        for (i, name) in names.iter().enumerate() {
            let alerts: Vec<&Alert> = work.firing.iter().filter(|a| a.name == *name).collect();
            let Some(expr) = work.expressions.get(*name) else {
                continue;
            };
            evidence.push(
                metric_evidence(
                    &ctx,
                    toolbox,
                    &format!("rule-{i}"),
                    expr,
                    &alerts,
                    work.window,
                )
                .await?,
            );
        }
        if let Some(query) = up_query(node) {
            evidence.extend(target_evidence(&ctx, toolbox, &query, work.window.1).await?);
        }
    }
    let failing_upstream = work.failing_upstream();
    let targets_down = evidence
        .iter()
        .any(|e| e.kind == EvidenceKind::Targets && e.confirms);
    let status = if !work.firing.is_empty() {
        NodeStatus::Failing
    } else if targets_down {
        NodeStatus::Degraded
    } else {
        NodeStatus::Healthy
    };
    let summary = summary(node, status, &work.firing, &work.context, &failing_upstream);
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
    // Recorded as a step of the same context as the tool calls, so the FINDING event
    // (and the last TOOL_RESULT) are written as soon as the node is done: watchers
    // see progress, not everything at the run's end.
    emit_finding(&ctx, &finding)?;
    ctx.step("finding", |_| {
        let finding = finding.clone();
        async move { Ok(finding) }
    })
    .await
}

fn summary(
    node: &NodeSpec,
    status: NodeStatus,
    firing: &[Alert],
    context: &[Alert],
    failing_upstream: &[String],
) -> String {
    let mut text = match status {
        NodeStatus::Failing => {
            let names: BTreeSet<&str> = firing.iter().map(|a| a.name.as_str()).collect();
            format!(
                "{} ({}) is failing: {}",
                node.id,
                node.kind,
                names.into_iter().collect::<Vec<_>>().join(", ")
            )
        }
        NodeStatus::Degraded => format!(
            "{} ({}) has no firing alert but a scrape target is down",
            node.id, node.kind
        ),
        NodeStatus::Healthy => format!("{} ({}) shows no firing alert", node.id, node.kind),
    };
    if !failing_upstream.is_empty() {
        text.push_str(&format!(
            "; it depends on failing {}",
            failing_upstream.join(", ")
        ));
    }
    if !context.is_empty() {
        let names: BTreeSet<String> = context
            .iter()
            .map(|a| format!("{} ({})", a.name, a.state.as_str()))
            .collect();
        text.push_str(&format!(
            "; not firing: {}",
            names.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    text
}

/// The alert rule's expression over the incident window, restricted to the series
/// of these alerts: still returning them confirms the condition held.
async fn metric_evidence(
    ctx: &StepContext,
    toolbox: &Toolbox,
    call_id: &str,
    expr: &str,
    alerts: &[&Alert],
    (start, end): (DateTime<Utc>, DateTime<Utc>),
) -> Result<Evidence, StepError> {
    let span = (end - start).num_seconds().max(1);
    let step = ((span + POINTS - 1) / POINTS).max(1);
    // Points fall at start + k·step: start where the last one is `end` itself, so
    // the freshest samples are always looked at.
    let start = end - chrono::Duration::seconds(step * ((span + step - 1) / step));
    let args = json!({
        "query": expr,
        "start": start.to_rfc3339(),
        "end": end.to_rfc3339(),
        "step": step,
    });
    let link = toolbox
        .source()
        .ok()
        .and_then(|s| s.prometheus().ok())
        .map(|p| p.graph_link(expr, start, end));
    let mut evidence = Evidence {
        kind: EvidenceKind::Metric,
        summary: String::new(),
        query: Some(expr.to_owned()),
        start: Some(start),
        end: Some(end),
        step_seconds: Some(step as f64),
        url: link,
        alert: alerts.first().map(|a| a.display()),
        starts_at: alerts.first().and_then(|a| a.starts_at),
        confirms: false,
    };
    match toolbox
        .call_within(ctx, call_id, "prometheus_query_range", args, EVIDENCE_BYTES)
        .await?
    {
        ToolOutcome::Done(data) => {
            let series = matching_series(&data, alerts);
            if data["truncated"] == true {
                evidence.summary = "the result was too large to read".to_owned();
            } else if series.is_empty() {
                evidence.summary = format!(
                    "the rule expression returned no series of {} over the window",
                    alerts
                        .first()
                        .map_or("these alerts".to_owned(), |a| a.display())
                );
            } else {
                let (max, last) = extremes(&series);
                evidence.confirms = true;
                evidence.summary = format!(
                    "the rule expression held for {} series over the window (max {}, last {})",
                    series.len(),
                    number(max),
                    number(last)
                );
            }
        }
        ToolOutcome::Failed(message) => {
            evidence.kind = EvidenceKind::Unavailable;
            evidence.summary = format!("could not query Prometheus: {message}");
        }
        ToolOutcome::Declined { .. } => {
            evidence.kind = EvidenceKind::Unavailable;
            evidence.summary = "the query was not approved".to_owned();
        }
    }
    Ok(evidence)
}

/// `up` of the node's targets, when its matchers are label names PromQL accepts.
fn up_query(node: &NodeSpec) -> Option<String> {
    if node.r#match.is_empty() {
        return None;
    }
    let valid = |name: &str| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name != "alertname"
    };
    let matchers: Vec<String> = node
        .r#match
        .iter()
        .filter(|(k, _)| valid(k))
        .map(|(k, v)| format!("{k}={}", Json::String(v.clone())))
        .collect();
    (!matchers.is_empty()).then(|| format!("up{{{}}}", matchers.join(",")))
}

async fn target_evidence(
    ctx: &StepContext,
    toolbox: &Toolbox,
    query: &str,
    at: DateTime<Utc>,
) -> Result<Option<Evidence>, StepError> {
    let args = json!({ "query": query, "time": at.to_rfc3339() });
    let outcome = toolbox
        .call_within(ctx, "targets", "prometheus_query", args, EVIDENCE_BYTES)
        .await?;
    let ToolOutcome::Done(data) = outcome else {
        return Ok(None);
    };
    let values: Vec<f64> = data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["value"][1].as_str()?.parse().ok())
        .collect();
    if values.is_empty() {
        return Ok(None);
    }
    let down = values.iter().filter(|v| **v < 1.0).count();
    let summary = if down == 0 {
        format!("all {} scrape target(s) are up", values.len())
    } else {
        format!("{down} of {} scrape target(s) are down", values.len())
    };
    Ok(Some(Evidence {
        kind: EvidenceKind::Targets,
        summary,
        query: Some(query.to_owned()),
        start: None,
        end: Some(at),
        step_seconds: None,
        url: None,
        alert: None,
        starts_at: None,
        confirms: down > 0,
    }))
}

/// The series of a matrix whose labels agree with at least one of the alerts' (a
/// rule's expression may return other services' series too).
fn matching_series<'a>(data: &'a Json, alerts: &[&Alert]) -> Vec<&'a Json> {
    data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|series| {
            let Some(metric) = series["metric"].as_object() else {
                return false;
            };
            alerts.iter().any(|alert| {
                metric.iter().all(|(k, v)| {
                    alert
                        .labels
                        .get(k)
                        .is_none_or(|l| v.as_str() == Some(l.as_str()))
                })
            })
        })
        .collect()
}

/// The largest value and the last value over `series`.
fn extremes(series: &[&Json]) -> (f64, f64) {
    let mut max = f64::NEG_INFINITY;
    let mut last = f64::NAN;
    let mut last_at = f64::NEG_INFINITY;
    for s in series {
        for point in s["values"].as_array().into_iter().flatten() {
            let (Some(at), Some(v)) = (
                point[0].as_f64(),
                point[1].as_str().and_then(|v| v.parse::<f64>().ok()),
            ) else {
                continue;
            };
            max = max.max(v);
            if at >= last_at {
                last_at = at;
                last = v;
            }
        }
    }
    (max, last)
}

fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.is_finite() {
        format!("{v:.3}")
    } else {
        "n/a".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(labels: &[(&str, &str)]) -> Alert {
        Alert {
            name: "A".into(),
            state: super::super::AlertState::Firing,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: Default::default(),
            starts_at: None,
            generator_url: None,
            fingerprint: None,
        }
    }

    #[test]
    fn only_the_alerts_own_series_count_as_evidence() {
        let data = json!({ "resultType": "matrix", "result": [
            { "metric": { "service": "api" }, "values": [[1.0, "3"], [2.0, "7"]] },
            { "metric": { "service": "web" }, "values": [[1.0, "99"]] }
        ]});
        let a = alert(&[("alertname", "A"), ("service", "api"), ("severity", "page")]);
        let series = matching_series(&data, &[&a]);
        assert_eq!(series.len(), 1);
        assert_eq!(extremes(&series), (7.0, 7.0));
    }

    #[test]
    fn the_up_query_uses_valid_label_names_only() {
        let node: NodeSpec = serde_yaml::from_str(
            "{ id: db, kind: pg, match: { service: 'a\"b', 'bad-name': x, alertname: DbDown } }",
        )
        .unwrap();
        assert_eq!(up_query(&node).as_deref(), Some(r#"up{service="a\"b"}"#));
    }
}

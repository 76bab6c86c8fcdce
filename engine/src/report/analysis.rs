//! What an investigation concluded, in one value: the input of the Markdown report
//! and of the structured result. The rule-based analyst fills it today; the LLM
//! agents fill the same shape.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::agents::Alert;

/// One piece of evidence behind a claim, with what a reader needs to check it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub kind: EvidenceKind,
    /// What it shows, in one sentence.
    pub summary: String,
    /// The PromQL asked, with its range (`query_range`) or instant (`query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_seconds: Option<f64>,
    /// A Prometheus graph link of the query over its range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The alert cited, as `Name{labels}`, with when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
    /// Whether it supports "this node is failing" (a metric over its threshold, a
    /// target down); `false` for evidence of health or of nothing.
    pub confirms: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// A range query over the incident window.
    Metric,
    /// The health of the node's scrape targets (`up`).
    Targets,
    /// A firing alert.
    Alert,
    /// Something that could not be looked at, and why.
    Unavailable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// At least one firing alert.
    Failing,
    /// No firing alert, and its targets (if any were found) are up.
    Healthy,
    /// No firing alert, but a target is down or could not be checked.
    Degraded,
}

/// What the investigation of one node found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeFinding {
    pub node: String,
    pub kind: String,
    pub status: NodeStatus,
    /// Firing alerts routed to this node.
    pub firing: Vec<Alert>,
    /// Pending and resolved alerts routed to it: context, never a cause.
    pub context: Vec<Alert>,
    pub evidence: Vec<Evidence>,
    /// The failing nodes it depends on (directly or not), as its dependencies'
    /// findings said when it ran.
    pub failing_upstream: Vec<String>,
    pub summary: String,
}

/// A downstream node whose alerts a root cause explains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Symptom {
    pub node: String,
    pub alerts: Vec<Alert>,
}

/// A ranked root-cause candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RootCause {
    pub node: String,
    /// The alert that names it best (highest severity, earliest).
    pub alert: Alert,
    /// Every firing alert of the node.
    pub alerts: Vec<Alert>,
    /// In [0, 1].
    pub confidence: f64,
    /// Why it ranks where it does, in words.
    pub reason: String,
    pub evidence: Vec<Evidence>,
    pub symptoms: Vec<Symptom>,
}

/// An action proposed or taken, with what became of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub description: String,
    pub tool: String,
    pub status: ActionStatus,
    /// Who decided, what they said, what the tool answered (a silence id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Json>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// A suggestion for a person; nothing was asked.
    Suggested,
    Executed,
    Rejected,
    Expired,
    Failed,
}

impl ActionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Suggested => "suggested",
            ActionStatus::Executed => "executed",
            ActionStatus::Rejected => "rejected",
            ActionStatus::Expired => "expired",
            ActionStatus::Failed => "failed",
        }
    }
}

/// An alert and the nodes it was routed to (none: unmatched).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoutedAlert {
    pub alert: Alert,
    pub nodes: Vec<String>,
    /// When Alertmanager reported it resolved while the investigation ran (it was
    /// firing when the run started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Everything the report and the structured result are written from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub team: String,
    pub team_version: i32,
    /// `builtin:rules`, or the model that wrote the analysis.
    pub analyst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The incident window the evidence covers.
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub alerts: Vec<RoutedAlert>,
    /// Firing alerts that joined the run's Alertmanager group while it ran: not
    /// analysed by this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joined: Vec<Alert>,
    pub findings: Vec<NodeFinding>,
    pub root_causes: Vec<RootCause>,
    pub actions: Vec<Action>,
    /// What limited the investigation (no Prometheus, a tool that failed…).
    pub notes: Vec<String>,
}

impl Analysis {
    /// Firing alerts that match no node.
    pub fn unmatched(&self) -> impl Iterator<Item = &Alert> {
        self.alerts
            .iter()
            .filter(|r| r.nodes.is_empty() && r.alert.state == crate::agents::AlertState::Firing)
            .map(|r| &r.alert)
    }

    pub fn is_rule_based(&self) -> bool {
        self.analyst == crate::agents::RULES_ANALYST
    }
}

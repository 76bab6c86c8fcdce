//! Serde model of a team topology (product spec §3).
//!
//! The same types read YAML and JSON. Every struct denies unknown fields so a
//! typo such as `tols:` is an error instead of a silently ignored key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A team of agents investigating alerts, grouped by the nodes of the
/// monitored system they look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub pattern: Pattern,
    /// The alert source the team's tools query, by name; absent: the default source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The remediation webhook `webhook_action` posts to, by name; absent: the
    /// webhook named `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Which Alertmanager notifications start the team's investigations (the
    /// webhook intake, §8); absent: none do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<AlertmanagerRoute>,
    pub supervisor: SupervisorSpec,
    // Defaulted so that a missing list is reported by validation ("needs at
    // least one node") rather than as a bare deserialization error.
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
    #[serde(default)]
    pub limits: Limits,
}

impl TeamSpec {
    /// The first node with this id.
    pub fn node(&self, id: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Every model the team names: its supervisor's, its node supervisors' and its
    /// agents' (fallback entries included).
    pub fn model_names(&self) -> std::collections::BTreeSet<&str> {
        let mut names: std::collections::BTreeSet<&str> =
            self.supervisor.model.names().into_iter().collect();
        for node in &self.nodes {
            if let Some(sup) = &node.supervisor {
                names.extend(sup.model.names());
            }
            for agent in &node.agents {
                if let Some(model) = &agent.model {
                    names.extend(model.names());
                }
            }
        }
        names
    }
}

/// The alert groups a team investigates when Alertmanager posts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerRoute {
    /// Alertmanager-style matchers (`service="checkout"`, `severity=~"critical|page"`,
    /// `env!="staging"`, `team!~"web.*"`), all of which must hold for the labels of
    /// the group (its `groupLabels` and `commonLabels`).
    pub matchers: Vec<String>,
}

impl AlertmanagerRoute {
    /// The matchers, parsed; the first that does not parse, by index, otherwise.
    pub fn parsed(&self) -> Result<Vec<super::Matcher>, (usize, String)> {
        self.matchers
            .iter()
            .enumerate()
            .map(|(i, m)| super::Matcher::parse(m).map_err(|e| (i, e)))
            .collect()
    }
}

/// How the team's work is organised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// A team supervisor delegates to node supervisors, which delegate to agents.
    #[default]
    Hierarchical,
    /// A planner writes a plan up front, then agents execute its steps.
    PlanExecute,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorSpec {
    pub model: ModelRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

/// One component of the monitored system (database, service, queue...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub id: String,
    pub kind: String,
    /// Ids of the nodes this node depends on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Alert label matchers (label -> value) routing alerts to this node.
    #[serde(rename = "match", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub r#match: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<SupervisorSpec>,
    // Defaulted for the same reason as `TeamSpec::nodes`.
    #[serde(default)]
    pub agents: Vec<AgentSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    #[serde(default)]
    pub tools: Vec<String>,
}

/// A model name, or a fallback list tried in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a model name or a list of model names (tried in order)"
)]
pub enum ModelRef {
    Name(String),
    Fallback(Vec<String>),
}

impl ModelRef {
    /// All model names, in the order they should be tried.
    pub fn names(&self) -> Vec<&str> {
        match self {
            ModelRef::Name(name) => vec![name.as_str()],
            ModelRef::Fallback(names) => names.iter().map(String::as_str).collect(),
        }
    }
}

/// Budget of one investigation; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub timeout_seconds: u32,
    pub max_iterations: u32,
    pub max_tokens: u64,
    pub max_cost_usd: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout_seconds: 300,
            max_iterations: 10,
            max_tokens: 200_000,
            max_cost_usd: 2.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_team_gets_defaults_and_model_forms() {
        let spec: TeamSpec = serde_yaml::from_str(
            r#"
name: t
supervisor: { model: [primary, secondary] }
nodes:
  - id: db
    kind: postgres
    agents: [{ id: a, model: default }]
limits: { max_tokens: 5 }
"#,
        )
        .unwrap();
        assert_eq!(spec.pattern, Pattern::Hierarchical);
        assert_eq!(spec.supervisor.model.names(), ["primary", "secondary"]);
        assert_eq!(
            spec.nodes[0].agents[0].model.as_ref().map(ModelRef::names),
            Some(vec!["default"])
        );
        assert!(spec.nodes[0].depends_on.is_empty() && spec.nodes[0].r#match.is_empty());
        // A partial `limits` keeps the defaults of the fields it omits.
        assert_eq!(
            spec.limits,
            Limits {
                max_tokens: 5,
                ..Limits::default()
            }
        );
    }

    #[test]
    fn serialized_spec_reads_back_identically() {
        let spec: TeamSpec = serde_yaml::from_str(
            r#"
name: t
pattern: plan_execute
supervisor: { model: default, instructions: plan first }
nodes:
  - id: db
    kind: postgres
    match: { service: db }
    agents: [{ id: a, tools: [prometheus_query] }]
output_schema: { type: object }
"#,
        )
        .unwrap();
        let yaml = serde_yaml::to_string(&spec).unwrap();
        assert!(yaml.contains("pattern: plan_execute") && yaml.contains("match:"));
        assert_eq!(serde_yaml::from_str::<TeamSpec>(&yaml).unwrap(), spec);
    }
}

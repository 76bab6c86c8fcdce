//! Teams and assertions shared by the unit tests of `topology`.

use super::{AgentSpec, Catalog, Limits, ModelRef, NodeSpec, Pattern, SupervisorSpec, TeamSpec};
use super::{Violation, validate};

/// A valid team that uses every field.
pub(super) const FULL_EXAMPLE: &str = r#"
name: checkout-oncall
description: Investigates alerts of the checkout stack
pattern: hierarchical
supervisor:
  model: [default, builtin:rules]
  instructions: Find the root cause and propose a fix.
nodes:
  - id: payments-db
    kind: postgres
    match: { service: payments-db }
    supervisor: { model: default, instructions: Focus on the database. }
    agents:
      - id: metrics
        role: Metrics analyst
        instructions: Look at connections, locks and replication lag.
        model: default
        tools: [prometheus_query, prometheus_query_range, prometheus_alerts]
  - id: payments-api
    kind: service
    depends_on: [payments-db]
    agents:
      - id: alerts
        tools: [alertmanager_alerts, topology]
output_schema:
  type: object
  required: [summary]
  properties: { summary: { type: string } }
limits: { timeout_seconds: 600, max_iterations: 20, max_tokens: 100000, max_cost_usd: 1.5 }
"#;

pub(super) fn agent(id: &str) -> AgentSpec {
    AgentSpec {
        id: id.into(),
        role: None,
        instructions: None,
        model: None,
        tools: vec!["prometheus_query".into()],
    }
}

pub(super) fn node(id: &str, deps: &[&str]) -> NodeSpec {
    NodeSpec {
        id: id.into(),
        kind: "service".into(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        r#match: Default::default(),
        supervisor: None,
        agents: vec![agent("a")],
    }
}

pub(super) fn team(nodes: Vec<NodeSpec>) -> TeamSpec {
    TeamSpec {
        name: "t".into(),
        description: None,
        pattern: Pattern::Hierarchical,
        source: None,
        webhook: None,
        alertmanager: None,
        supervisor: SupervisorSpec {
            model: ModelRef::Name("default".into()),
            instructions: None,
        },
        nodes,
        output_schema: None,
        limits: Limits::default(),
    }
}

pub(super) fn shown(violations: &[Violation]) -> Vec<String> {
    violations.iter().map(ToString::to_string).collect()
}

/// Every violation of `spec` against the builtin catalog, as displayed.
pub(super) fn check(spec: &TeamSpec) -> Vec<String> {
    shown(&validate(spec, &Catalog::builtin()))
}

/// The violation with exactly this path, whose message contains `fragment`.
#[track_caller]
pub(super) fn assert_has(violations: &[String], path: &str, fragment: &str) {
    let prefix = format!("{path}: ");
    assert!(
        violations
            .iter()
            .any(|v| v.starts_with(&prefix) && v[prefix.len()..].contains(fragment)),
        "no `{path}: ...{fragment}...` in {violations:#?}"
    );
}

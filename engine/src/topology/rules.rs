//! The field rules of product spec §3: ids and names, sizes, models, tools,
//! the output schema and the limits. The dependency graph has its own rules
//! (`graph.rs`).

use std::collections::HashMap;

use super::catalog::Catalog;
use super::model::{AlertmanagerRoute, Limits, ModelRef, NodeSpec, TeamSpec};
use super::suggest::suggest;
use super::violation::Violation;

pub const MAX_NAME_LEN: usize = 100;
pub const MAX_NODES: usize = 100;
pub const MAX_AGENTS_PER_NODE: usize = 20;
pub const MAX_TIMEOUT_SECONDS: u32 = 1800;
pub const MAX_ITERATIONS: u32 = 100;
/// Matchers of a team's `alertmanager` section at most.
pub const MAX_MATCHERS: usize = 50;

/// Every violation of the field rules, in the order the rules find them.
pub(super) fn check(spec: &TeamSpec, catalog: &Catalog) -> Vec<Violation> {
    let mut out = Vec::new();
    check_slug(&spec.name, "name", &mut out);
    if let Some(source) = &spec.source {
        check_source_name(source, "source", &mut out);
    }
    if let Some(webhook) = &spec.webhook {
        check_source_name(webhook, "webhook", &mut out);
    }
    if let Some(route) = &spec.alertmanager {
        check_alertmanager(route, &mut out);
    }
    check_model(
        &spec.supervisor.model,
        "supervisor.model",
        catalog,
        &mut out,
    );
    check_nodes(spec, catalog, &mut out);
    if let Some(schema) = &spec.output_schema {
        check_output_schema(schema, &mut out);
    }
    check_limits(&spec.limits, &mut out);
    out
}

/// Alert source and webhook names: what `Engine::create_alert_source` and
/// `Engine::create_webhook` accept.
fn check_source_name(value: &str, path: &str, out: &mut Vec<Violation>) {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME_LEN
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        out.push(Violation::new(
            path,
            format!(
                "{value:?} is not {} name: 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'",
                if path == "source" {
                    "an alert source"
                } else {
                    "a webhook"
                }
            ),
        ));
    }
}

/// At least one matcher (a team takes no group by accident), each one valid.
fn check_alertmanager(route: &AlertmanagerRoute, out: &mut Vec<Violation>) {
    if route.matchers.is_empty() {
        out.push(Violation::new(
            "alertmanager.matchers",
            "needs at least one matcher (alertname=~\".+\" takes every group)",
        ));
    }
    if route.matchers.len() > MAX_MATCHERS {
        out.push(Violation::new(
            "alertmanager.matchers",
            format!(
                "has {} matchers, at most {MAX_MATCHERS} allowed",
                route.matchers.len()
            ),
        ));
    }
    for (i, text) in route.matchers.iter().enumerate() {
        if let Err(e) = super::Matcher::parse(text) {
            out.push(Violation::new(format!("alertmanager.matchers[{i}]"), e));
        }
    }
}

fn check_slug(value: &str, path: &str, out: &mut Vec<Violation>) {
    if value.is_empty() {
        out.push(Violation::new(path, "must not be empty"));
        return;
    }
    let len = value.chars().count();
    if len > MAX_NAME_LEN {
        out.push(Violation::new(
            path,
            format!("is {len} characters long, at most {MAX_NAME_LEN} allowed"),
        ));
    }
    let mut chars = value.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if !(first_ok && rest_ok) {
        out.push(Violation::new(
            path,
            format!(
                "{value:?} is not a valid slug: use lowercase letters, digits, '-', '_' and '.', \
                 starting with a letter or digit"
            ),
        ));
    }
}

/// "unknown tool "x"", with the likely intended name when there is one.
fn unknown<'a>(what: &str, name: &str, known: impl IntoIterator<Item = &'a String>) -> String {
    let mut message = format!("unknown {what} {name:?}");
    if let Some(s) = suggest(name, known.into_iter().map(String::as_str)) {
        message.push_str(&format!(" (did you mean {s:?}?)"));
    }
    message
}

fn check_model(model: &ModelRef, path: &str, catalog: &Catalog, out: &mut Vec<Violation>) {
    match model {
        ModelRef::Name(name) if !catalog.models.contains(name) => {
            out.push(Violation::new(
                path,
                unknown("model", name, &catalog.models),
            ));
        }
        ModelRef::Name(_) => {}
        ModelRef::Fallback(names) => {
            if names.is_empty() {
                out.push(Violation::new(
                    path,
                    "fallback model list must not be empty",
                ));
            }
            for (k, name) in names.iter().enumerate() {
                if !catalog.models.contains(name) {
                    out.push(Violation::new(
                        format!("{path}[{k}]"),
                        unknown("model", name, &catalog.models),
                    ));
                }
            }
        }
    }
}

fn check_nodes(spec: &TeamSpec, catalog: &Catalog, out: &mut Vec<Violation>) {
    if spec.nodes.is_empty() {
        out.push(Violation::new("nodes", "team needs at least one node"));
    }
    if spec.nodes.len() > MAX_NODES {
        out.push(Violation::new(
            "nodes",
            format!(
                "team has {} nodes, at most {MAX_NODES} allowed",
                spec.nodes.len()
            ),
        ));
    }
    // Node id -> index of its first definition.
    let mut node_ids: HashMap<&str, usize> = HashMap::new();
    for (i, node) in spec.nodes.iter().enumerate() {
        let p = format!("nodes[{i}]");
        check_slug(&node.id, &format!("{p}.id"), out);
        if !node.id.is_empty() {
            if let Some(&first) = node_ids.get(node.id.as_str()) {
                out.push(Violation::new(
                    format!("{p}.id"),
                    format!(
                        "duplicate node id {:?} (first defined at nodes[{first}])",
                        node.id
                    ),
                ));
            } else {
                node_ids.insert(&node.id, i);
            }
        }
        if node.kind.trim().is_empty() {
            out.push(Violation::new(format!("{p}.kind"), "must not be empty"));
        }
        if let Some(sup) = &node.supervisor {
            check_model(&sup.model, &format!("{p}.supervisor.model"), catalog, out);
        }
        check_agents(node, &p, catalog, out);
    }
}

fn check_agents(node: &NodeSpec, p: &str, catalog: &Catalog, out: &mut Vec<Violation>) {
    if node.agents.is_empty() {
        out.push(Violation::new(
            format!("{p}.agents"),
            format!("node {:?} needs at least one agent", node.id),
        ));
    }
    if node.agents.len() > MAX_AGENTS_PER_NODE {
        out.push(Violation::new(
            format!("{p}.agents"),
            format!(
                "node has {} agents, at most {MAX_AGENTS_PER_NODE} allowed",
                node.agents.len()
            ),
        ));
    }
    let mut agent_ids: HashMap<&str, usize> = HashMap::new();
    for (a, agent) in node.agents.iter().enumerate() {
        let ap = format!("{p}.agents[{a}]");
        check_slug(&agent.id, &format!("{ap}.id"), out);
        if !agent.id.is_empty() {
            if let Some(&first) = agent_ids.get(agent.id.as_str()) {
                out.push(Violation::new(
                    format!("{ap}.id"),
                    format!(
                        "duplicate agent id {:?} (first defined at {p}.agents[{first}])",
                        agent.id
                    ),
                ));
            } else {
                agent_ids.insert(&agent.id, a);
            }
        }
        if let Some(model) = &agent.model {
            check_model(model, &format!("{ap}.model"), catalog, out);
        }
        for (t, tool) in agent.tools.iter().enumerate() {
            if !catalog.tools.contains(tool) {
                out.push(Violation::new(
                    format!("{ap}.tools[{t}]"),
                    unknown("tool", tool, &catalog.tools),
                ));
            }
        }
    }
}

fn check_output_schema(schema: &serde_json::Value, out: &mut Vec<Violation>) {
    if let Err(e) = jsonschema::validator_for(schema) {
        let at = e.instance_path().as_str();
        let message = if at.is_empty() {
            format!("invalid JSON Schema: {e}")
        } else {
            format!("invalid JSON Schema at {at}: {e}")
        };
        out.push(Violation::new("output_schema", message));
    }
}

fn check_limits(limits: &Limits, out: &mut Vec<Violation>) {
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&limits.timeout_seconds) {
        out.push(Violation::new(
            "limits.timeout_seconds",
            format!(
                "must be between 1 and {MAX_TIMEOUT_SECONDS}, got {}",
                limits.timeout_seconds
            ),
        ));
    }
    if !(1..=MAX_ITERATIONS).contains(&limits.max_iterations) {
        out.push(Violation::new(
            "limits.max_iterations",
            format!(
                "must be between 1 and {MAX_ITERATIONS}, got {}",
                limits.max_iterations
            ),
        ));
    }
    if limits.max_tokens == 0 {
        out.push(Violation::new(
            "limits.max_tokens",
            "must be greater than 0",
        ));
    }
    if !(limits.max_cost_usd.is_finite() && limits.max_cost_usd > 0.0) {
        out.push(Violation::new(
            "limits.max_cost_usd",
            format!(
                "must be a finite amount greater than 0, got {}",
                limits.max_cost_usd
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::topology::test_support::{agent, assert_has, check, node, team};
    use crate::topology::{Limits, ModelRef, NodeSpec, Pattern, SupervisorSpec};

    #[test]
    fn the_alert_source_is_named_like_alert_sources() {
        let mut spec = team(vec![node("a", &[])]);
        spec.source = Some("prod-eu.1".into());
        assert!(check(&spec).is_empty());
        for bad in ["", "prod eu", "prod/eu"] {
            spec.source = Some(bad.into());
            assert_has(&check(&spec), "source", "is not an alert source name");
        }
    }

    #[test]
    fn alertmanager_matchers_are_checked_with_paths() {
        let mut spec = team(vec![node("a", &[])]);
        spec.alertmanager = Some(crate::topology::AlertmanagerRoute {
            matchers: vec![
                r#"service="checkout""#.into(),
                "severity".into(),
                r#"env=~"(""#.into(),
            ],
        });
        let v = check(&spec);
        assert_eq!(v.len(), 2, "{v:?}");
        assert_has(&v, "alertmanager.matchers[1]", "expected =, !=, =~ or !~");
        assert_has(&v, "alertmanager.matchers[2]", "invalid regular expression");
        spec.alertmanager = Some(crate::topology::AlertmanagerRoute { matchers: vec![] });
        assert_has(
            &check(&spec),
            "alertmanager.matchers",
            "needs at least one matcher",
        );
    }

    #[test]
    fn slugs_and_duplicate_ids() {
        let mut spec = team(vec![node("a", &[]), node("b", &["a"]), node("a", &["b"])]);
        spec.name = "Checkout OnCall".into();
        spec.nodes[1].agents = vec![agent("x"), agent("x"), agent("")];
        spec.nodes[2].id = "a".into();
        let v = check(&spec);
        assert_has(&v, "name", r#""Checkout OnCall" is not a valid slug"#);
        assert_has(
            &v,
            "nodes[2].id",
            r#"duplicate node id "a" (first defined at nodes[0])"#,
        );
        assert_has(
            &v,
            "nodes[1].agents[1].id",
            r#"duplicate agent id "x" (first defined at nodes[1].agents[0])"#,
        );
        assert_has(&v, "nodes[1].agents[2].id", "must not be empty");

        spec = team(vec![node("a", &[])]);
        spec.name = "a".repeat(101);
        assert_eq!(
            check(&spec),
            ["name: is 101 characters long, at most 100 allowed"]
        );
    }

    #[test]
    fn size_limits_and_empty_collections() {
        let mut spec = team(vec![node("a", &[]), node("b", &["a"])]);
        spec.nodes[0].agents = (0..21).map(|i| agent(&format!("x{i}"))).collect();
        spec.nodes[1].agents.clear();
        let v = check(&spec);
        assert_has(
            &v,
            "nodes[0].agents",
            "node has 21 agents, at most 20 allowed",
        );
        assert_has(
            &v,
            "nodes[1].agents",
            r#"node "b" needs at least one agent"#,
        );

        let many: Vec<NodeSpec> = (0..101)
            .map(|i| node(&format!("n{i}"), if i == 0 { &[] } else { &["n0"] }))
            .collect();
        assert_eq!(
            check(&team(many)),
            ["nodes: team has 101 nodes, at most 100 allowed"]
        );

        // plan_execute follows the same node rules.
        let mut empty = team(vec![]);
        empty.pattern = Pattern::PlanExecute;
        assert_eq!(check(&empty), ["nodes: team needs at least one node"]);
    }

    #[test]
    fn tools_and_models_must_be_in_the_catalog() {
        let mut spec = team(vec![node("a", &[])]);
        spec.supervisor.model = ModelRef::Fallback(vec!["default".into(), "gpt-x".into()]);
        spec.nodes[0].supervisor = Some(SupervisorSpec {
            model: ModelRef::Name("defualt".into()),
            instructions: None,
        });
        spec.nodes[0].agents[0].model = Some(ModelRef::Fallback(vec![]));
        spec.nodes[0].agents[0].tools = vec!["prometheus_query".into(), "promethues_query".into()];
        assert_eq!(
            check(&spec),
            [
                r#"supervisor.model[1]: unknown model "gpt-x""#,
                r#"nodes[0].supervisor.model: unknown model "defualt" (did you mean "default"?)"#,
                "nodes[0].agents[0].model: fallback model list must not be empty",
                r#"nodes[0].agents[0].tools[1]: unknown tool "promethues_query" (did you mean "prometheus_query"?)"#,
            ]
        );
    }

    #[test]
    fn output_schema_must_be_a_json_schema() {
        let mut spec = team(vec![node("a", &[])]);
        spec.output_schema = Some(serde_json::json!({ "type": "objekt" }));
        let v = check(&spec);
        assert_has(&v, "output_schema", "invalid JSON Schema at /type");
        assert_has(&v, "output_schema", "objekt");
    }

    #[test]
    fn limits_bounds() {
        let mut spec = team(vec![node("a", &[])]);
        spec.limits = Limits {
            timeout_seconds: 0,
            max_iterations: 101,
            max_tokens: 0,
            max_cost_usd: f64::NAN,
        };
        assert_eq!(
            check(&spec),
            [
                "limits.timeout_seconds: must be between 1 and 1800, got 0",
                "limits.max_iterations: must be between 1 and 100, got 101",
                "limits.max_tokens: must be greater than 0",
                "limits.max_cost_usd: must be a finite amount greater than 0, got NaN",
            ]
        );
        spec.limits = Limits {
            timeout_seconds: 1800,
            max_iterations: 100,
            max_tokens: 1,
            max_cost_usd: 0.01,
        };
        assert!(check(&spec).is_empty());
    }
}

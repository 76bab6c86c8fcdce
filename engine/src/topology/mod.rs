//! Team topologies (product spec §3): which agents investigate which parts of
//! the monitored system, and in what order.
//!
//! A team document is read in two stages. [`parse`] turns YAML or JSON text into
//! a [`TeamSpec`]; serde stops at the first error, so it reports at most one
//! (a syntax error by line and column, a type error by its path). [`validate`]
//! then checks every rule and reports every violation at once, each with the
//! path of the offending value (`nodes[2].depends_on[0]`), sorted in document
//! order, so a user can fix a team in one pass.

mod catalog;
mod graph;
mod matcher;
mod model;
mod parse;
mod rules;
mod suggest;
#[cfg(test)]
mod test_support;
mod violation;

pub use catalog::{BUILTIN_MODELS, BUILTIN_TOOLS, Catalog};
pub use graph::{MAX_DEPENDENCY_DEPTH, dependency_order};
pub use matcher::{MAX_MATCHER_VALUE, MatchOp, Matcher};
pub use model::*;
pub use parse::parse;
pub use rules::{
    MAX_AGENTS_PER_NODE, MAX_ITERATIONS, MAX_MATCHERS, MAX_NAME_LEN, MAX_NODES, MAX_TIMEOUT_SECONDS,
};
pub use violation::Violation;

/// Checks every rule of product spec §3; an empty result means valid.
pub fn validate(spec: &TeamSpec, catalog: &Catalog) -> Vec<Violation> {
    let mut out = rules::check(spec, catalog);
    out.extend(graph::check(spec));
    violation::sort_by_path(&mut out);
    out
}

/// [`parse`] then [`validate`]; `Ok` only for a spec without violations.
pub fn parse_and_validate(text: &str, catalog: &Catalog) -> Result<TeamSpec, Vec<Violation>> {
    let spec = parse(text)?;
    let violations = validate(&spec, catalog);
    if violations.is_empty() {
        Ok(spec)
    } else {
        Err(violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::{FULL_EXAMPLE, assert_has, shown};

    #[test]
    fn full_example_is_valid_as_yaml_and_json() {
        let spec = parse_and_validate(FULL_EXAMPLE, &Catalog::builtin()).unwrap();
        assert_eq!(spec.supervisor.model.names(), ["default", "builtin:rules"]);
        assert_eq!(spec.nodes[0].r#match["service"], "payments-db");
        assert_eq!(spec.limits.max_cost_usd, 1.5);

        let json = serde_json::to_string_pretty(&spec).unwrap();
        assert_eq!(parse_and_validate(&json, &Catalog::builtin()), Ok(spec));
    }

    #[test]
    fn fixtures_validate_as_expected() {
        let valid = include_str!("../../../tests/fixtures/teams/valid.yaml");
        let spec = parse_and_validate(valid, &Catalog::builtin()).unwrap();
        assert_eq!(
            dependency_order(&spec),
            [["payments-db"], ["payments-api"], ["checkout-web"]]
        );

        let invalid = include_str!("../../../tests/fixtures/teams/invalid.yaml");
        let violations = parse_and_validate(invalid, &Catalog::builtin()).unwrap_err();
        assert_eq!(
            shown(&violations),
            [
                r#"nodes[1].depends_on[1]: unknown node "ledger-db""#,
                "nodes[2].depends_on: dependency cycle: checkout-web -> cart-api -> checkout-web",
                r#"nodes[3].agents[0].tools[1]: unknown tool "kubectl_exec""#,
                "limits.timeout_seconds: must be between 1 and 1800, got 4000",
            ]
        );
    }

    #[test]
    fn all_violations_are_reported_in_document_order() {
        let text = r#"
name: Bad Name
supervisor: { model: nope }
nodes:
  - { id: a, kind: db, depends_on: [b], agents: [{ id: x, tools: [foo] }] }
  - { id: b, kind: svc, depends_on: [a], agents: [] }
  - { id: c, kind: svc, depends_on: [ghost], agents: [{ id: y }] }
  - { id: d, kind: svc, agents: [{ id: z }] }
  - { id: e, kind: svc, agents: [{ id: w }] }
  - { id: f, kind: svc, agents: [{ id: v }] }
  - { id: g, kind: svc, agents: [{ id: u }] }
  - { id: h, kind: svc, agents: [{ id: t }] }
  - { id: i, kind: svc, agents: [{ id: s }] }
  - { id: j, kind: svc, agents: [{ id: r }] }
  - { id: k, kind: svc, agents: [{ id: q, tools: [bar] }], depends_on: [d] }
output_schema: { type: 12 }
limits: { max_cost_usd: 0 }
"#;
        let v = shown(&parse_and_validate(text, &Catalog::builtin()).unwrap_err());
        let paths: Vec<&str> = v.iter().map(|s| s.split(": ").next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "name",
                "supervisor.model",
                "nodes[0].depends_on",
                "nodes[0].agents[0].tools[0]",
                "nodes[1].agents",
                "nodes[2].depends_on[0]",
                "nodes[4]",
                "nodes[5]",
                "nodes[6]",
                "nodes[7]",
                "nodes[8]",
                "nodes[9]",
                "nodes[10].agents[0].tools[0]",
                "output_schema",
                "limits.max_cost_usd",
            ],
            "{v:#?}"
        );
        assert_has(&v, "nodes[0].depends_on", "dependency cycle: a -> b -> a");
    }
}

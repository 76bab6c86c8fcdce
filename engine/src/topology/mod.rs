//! Team topologies (product spec §3): which agents investigate which parts of
//! the monitored system, and in what order.

mod model;
mod validate;

pub use model::*;
pub use validate::*;

/// Node ids in layers: every node's dependencies are in earlier layers, so the
/// nodes of one layer can run in parallel. Within a layer, nodes keep their
/// order in the spec. Meant for a validated spec: nodes on or behind a
/// dependency cycle are left out, and unknown dependencies are ignored.
pub fn dependency_order(spec: &TeamSpec) -> Vec<Vec<&str>> {
    validate::layers(&validate::resolved_deps(spec))
        .into_iter()
        .map(|layer| {
            layer
                .into_iter()
                .map(|i| spec.nodes[i].id.as_str())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_order_layers_a_diamond() {
        // web -> (api, cache) -> db; ops is listed first but depends on web.
        let spec = parse(
            r#"
name: t
supervisor: { model: default }
nodes:
  - { id: ops, kind: svc, depends_on: [web], agents: [{ id: a }] }
  - { id: web, kind: svc, depends_on: [cache, api], agents: [{ id: a }] }
  - { id: cache, kind: redis, depends_on: [db], agents: [{ id: a }] }
  - { id: api, kind: svc, depends_on: [db], agents: [{ id: a }] }
  - { id: db, kind: postgres, agents: [{ id: a }] }
"#,
        )
        .unwrap();
        assert!(validate(&spec, &Catalog::builtin()).is_empty());
        assert_eq!(
            dependency_order(&spec),
            vec![vec!["db"], vec!["cache", "api"], vec!["web"], vec!["ops"]]
        );
    }
}

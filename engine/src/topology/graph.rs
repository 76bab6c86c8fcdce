//! The dependency graph of a team's nodes: references between nodes, orphans,
//! cycles and depth (product spec §3), and the order nodes run in.

use std::collections::{HashMap, HashSet, VecDeque};

use super::model::TeamSpec;
use super::rules::MAX_NODES;
use super::violation::Violation;

/// A node without dependencies has depth 0, any other node 1 + the largest
/// depth of its dependencies.
pub const MAX_DEPENDENCY_DEPTH: usize = 10;

/// Node ids in layers: every node's dependencies are in earlier layers, so the
/// nodes of one layer can run in parallel. Within a layer, nodes keep their
/// order in the spec. Meant for a validated spec: nodes on or behind a
/// dependency cycle are left out, and unknown dependencies are ignored.
pub fn dependency_order(spec: &TeamSpec) -> Vec<Vec<&str>> {
    layers(&resolved_deps(spec))
        .into_iter()
        .map(|layer| {
            layer
                .into_iter()
                .map(|i| spec.nodes[i].id.as_str())
                .collect()
        })
        .collect()
}

/// Every violation of the graph rules, in the order the rules find them.
pub(super) fn check(spec: &TeamSpec) -> Vec<Violation> {
    let mut out = Vec::new();
    check_references(spec, &mut out);
    // Cycle search is quadratic; a team over the node limit is rejected anyway.
    if spec.nodes.len() <= MAX_NODES {
        check_cycles_and_depth(spec, &mut out);
    }
    out
}

/// Each `depends_on` entry names another node, once; in a team of more than
/// one node, every node has an edge.
fn check_references(spec: &TeamSpec, out: &mut Vec<Violation>) {
    let index = node_index(spec);
    // Ids other nodes depend on, to detect orphans.
    let referenced: HashSet<&str> = spec
        .nodes
        .iter()
        .flat_map(|n| n.depends_on.iter().filter(move |d| **d != n.id))
        .map(String::as_str)
        .collect();

    for (i, node) in spec.nodes.iter().enumerate() {
        let p = format!("nodes[{i}]");
        let mut seen_deps: HashMap<&str, usize> = HashMap::new();
        for (k, dep) in node.depends_on.iter().enumerate() {
            let dp = format!("{p}.depends_on[{k}]");
            if let Some(&prev) = seen_deps.get(dep.as_str()) {
                out.push(Violation::new(
                    dp,
                    format!(
                        "duplicate dependency {dep:?} (already listed at {p}.depends_on[{prev}])"
                    ),
                ));
                continue;
            }
            seen_deps.insert(dep, k);
            if *dep == node.id {
                out.push(Violation::new(
                    dp,
                    format!("node {dep:?} depends on itself"),
                ));
            } else if !index.contains_key(dep.as_str()) {
                out.push(Violation::new(dp, format!("unknown node {dep:?}")));
            }
        }
        let has_out = node.depends_on.iter().any(|d| *d != node.id);
        if spec.nodes.len() > 1 && !has_out && !referenced.contains(node.id.as_str()) {
            out.push(Violation::new(
                p,
                format!(
                    "node {:?} has no dependencies and nothing depends on it",
                    node.id
                ),
            ));
        }
    }
}

fn check_cycles_and_depth(spec: &TeamSpec, out: &mut Vec<Violation>) {
    let deps = resolved_deps(spec);
    let id = |i: usize| spec.nodes[i].id.as_str();

    let cycles = find_cycles(&deps);
    for cycle in &cycles {
        let mut text: Vec<&str> = cycle.iter().map(|&i| id(i)).collect();
        text.push(id(cycle[0]));
        out.push(Violation::new(
            format!("nodes[{}].depends_on", cycle[0]),
            format!("dependency cycle: {}", text.join(" -> ")),
        ));
    }
    if !cycles.is_empty() {
        return; // depth is undefined on a cyclic graph
    }

    let layers = layers(&deps);
    let mut depth = vec![0; deps.len()];
    for (d, layer) in layers.iter().enumerate() {
        for &i in layer {
            depth[i] = d;
        }
    }
    // Only the first layer over the limit: deeper nodes exceed it because of them.
    for &i in layers.get(MAX_DEPENDENCY_DEPTH + 1).into_iter().flatten() {
        let mut chain = vec![id(i)];
        let mut cur = i;
        while let Some(&next) = deps[cur].iter().find(|&&d| depth[d] + 1 == depth[cur]) {
            chain.push(id(next));
            cur = next;
        }
        out.push(Violation::new(
            format!("nodes[{i}].depends_on"),
            format!(
                "dependency depth {} exceeds the maximum of {MAX_DEPENDENCY_DEPTH} ({})",
                depth[i],
                chain.join(" -> ")
            ),
        ));
    }
}

/// Node id -> index of its first definition.
fn node_index(spec: &TeamSpec) -> HashMap<&str, usize> {
    let mut index = HashMap::new();
    for (i, node) in spec.nodes.iter().enumerate() {
        index.entry(node.id.as_str()).or_insert(i);
    }
    index
}

/// Dependencies of each node as node indices: unknown ids, self-references and
/// duplicates dropped (they are reported by `check_references`).
fn resolved_deps(spec: &TeamSpec) -> Vec<Vec<usize>> {
    let index = node_index(spec);
    spec.nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let mut deps = Vec::new();
            for dep in &node.depends_on {
                if let Some(&j) = index.get(dep.as_str())
                    && j != i
                    && !deps.contains(&j)
                {
                    deps.push(j);
                }
            }
            deps
        })
        .collect()
}

/// Layers of node indices: layer 0 holds nodes without dependencies, layer L
/// nodes whose dependencies are all in earlier layers, so L is the node's
/// depth. Nodes on or behind a cycle are in no layer.
fn layers(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut pending: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); deps.len()];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut current: Vec<usize> = (0..deps.len()).filter(|&i| pending[i] == 0).collect();
    let mut out = Vec::new();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dependents[i] {
                pending[j] -= 1;
                if pending[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        out.push(std::mem::replace(&mut current, next));
    }
    out
}

/// Distinct dependency cycles: the shortest cycle through each node, rotated to
/// start at its lowest node index.
fn find_cycles(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    for start in 0..deps.len() {
        // Breadth-first from `start` back to itself gives the shortest cycle.
        let mut parent: Vec<Option<usize>> = vec![None; deps.len()];
        let mut queue = VecDeque::from([start]);
        let mut last = None;
        'bfs: while let Some(cur) = queue.pop_front() {
            for &next in &deps[cur] {
                if next == start {
                    last = Some(cur);
                    break 'bfs;
                }
                if parent[next].is_none() {
                    parent[next] = Some(cur);
                    queue.push_back(next);
                }
            }
        }
        let Some(mut cur) = last else { continue };
        let mut cycle = vec![cur];
        while cur != start {
            let Some(p) = parent[cur] else { break };
            cycle.push(p);
            cur = p;
        }
        cycle.reverse();
        let min = cycle
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| **n)
            .map_or(0, |(k, _)| k);
        cycle.rotate_left(min);
        if seen.insert(cycle.clone()) {
            found.push(cycle);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::test_support::{assert_has, check, node, shown, team};
    use crate::topology::{Catalog, parse, parse_and_validate, validate};

    #[test]
    fn dependency_references() {
        let spec = team(vec![
            node("a", &[]),
            node("b", &["a", "x", "b", "a"]),
            node("c", &[]),
        ]);
        assert_eq!(
            check(&spec),
            [
                r#"nodes[1].depends_on[1]: unknown node "x""#,
                r#"nodes[1].depends_on[2]: node "b" depends on itself"#,
                r#"nodes[1].depends_on[3]: duplicate dependency "a" (already listed at nodes[1].depends_on[0])"#,
                r#"nodes[2]: node "c" has no dependencies and nothing depends on it"#,
            ]
        );
        // A single node needs no edges.
        assert!(check(&team(vec![node("solo", &[])])).is_empty());
    }

    #[test]
    fn each_cycle_is_reported_once_from_its_first_node() {
        // c -> a -> b -> c, plus a separate two-node cycle d <-> e.
        let spec = team(vec![
            node("c", &["a"]),
            node("a", &["b"]),
            node("b", &["c"]),
            node("d", &["e"]),
            node("e", &["d"]),
        ]);
        assert_eq!(
            check(&spec),
            [
                "nodes[0].depends_on: dependency cycle: c -> a -> b -> c",
                "nodes[3].depends_on: dependency cycle: d -> e -> d",
            ]
        );
    }

    #[test]
    fn a_cycle_behind_a_valid_node_is_reported_and_left_out_of_the_order() {
        // db is fine; api and worker wait on each other (api also on db).
        let text = r#"
name: t
supervisor: { model: default }
nodes:
  - { id: db, kind: postgres, agents: [{ id: a }] }
  - { id: api, kind: svc, depends_on: [db, worker], agents: [{ id: a }] }
  - { id: worker, kind: svc, depends_on: [api], agents: [{ id: a }] }
  - { id: web, kind: svc, depends_on: [api], agents: [{ id: a }] }
"#;
        assert_eq!(
            shown(&parse_and_validate(text, &Catalog::builtin()).unwrap_err()),
            ["nodes[1].depends_on: dependency cycle: api -> worker -> api"],
            "one report, no depth violation on a cyclic graph"
        );
        // Nodes on or behind the cycle (web) have no place in the order.
        assert_eq!(dependency_order(&parse(text).unwrap()), [["db"]]);
    }

    #[test]
    fn dependency_depth_is_limited_to_ten() {
        let chain = |len: usize| {
            team(
                (0..len)
                    .map(|i| {
                        let prev = format!("n{}", i.wrapping_sub(1));
                        let deps = if i == 0 { vec![] } else { vec![prev.as_str()] };
                        node(&format!("n{i}"), &deps)
                    })
                    .collect(),
            )
        };
        assert!(check(&chain(11)).is_empty(), "depth 10 is allowed");
        let v = check(&chain(13));
        assert_eq!(v.len(), 1, "{v:#?}");
        assert_has(
            &v,
            "nodes[11].depends_on",
            "dependency depth 11 exceeds the maximum of 10 (n11 -> n10 -> n9",
        );
    }

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

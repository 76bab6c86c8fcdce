//! Parsing and validation of team topologies (product spec §3).
//!
//! Validation reports every violation at once, each with the path of the
//! offending value (`nodes[2].depends_on[0]`), sorted in document order, so a
//! user can fix a team in one pass.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::model::{Limits, ModelRef, NodeSpec, TeamSpec};

pub const MAX_NAME_LEN: usize = 100;
pub const MAX_NODES: usize = 100;
pub const MAX_AGENTS_PER_NODE: usize = 20;
/// A node without dependencies has depth 0, any other node 1 + the largest
/// depth of its dependencies.
pub const MAX_DEPENDENCY_DEPTH: usize = 10;
pub const MAX_TIMEOUT_SECONDS: u32 = 1800;
pub const MAX_ITERATIONS: u32 = 100;

pub const BUILTIN_TOOLS: &[&str] = &[
    "prometheus_alerts",
    "prometheus_query",
    "prometheus_query_range",
    "prometheus_rules",
    "alertmanager_alerts",
    "alertmanager_silence",
    "webhook_action",
    "topology",
    "ask_human",
];
pub const BUILTIN_MODELS: &[&str] = &["default", "builtin:rules"];

/// One problem of a team spec. `path` is empty when the problem concerns the
/// whole document (e.g. it is empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

impl Violation {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for Violation {}

/// The tools and models a team may reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub tools: BTreeSet<String>,
    pub models: BTreeSet<String>,
}

impl Catalog {
    /// Tools and models that ship with the executor.
    pub fn builtin() -> Self {
        Self {
            tools: BUILTIN_TOOLS.iter().map(|t| t.to_string()).collect(),
            models: BUILTIN_MODELS.iter().map(|m| m.to_string()).collect(),
        }
    }
}

/// Parses a team written as YAML or JSON. Syntax errors are located as
/// `line L, column C`; type and unknown-field errors by their field path.
pub fn parse(text: &str) -> Result<TeamSpec, Vec<Violation>> {
    let value = parse_value(text).map_err(|v| vec![v])?;
    if value.is_null() {
        return Err(vec![Violation::new("", "document is empty")]);
    }
    tracked::from_value::<TeamSpec>(&value)
        .map_err(|e| vec![Violation::new(e.path.unwrap_or_default(), e.message)])
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

fn parse_value(text: &str) -> Result<serde_json::Value, Violation> {
    // JSON is valid YAML, but serde_json gives better messages for JSON text.
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text)
            .map_err(|e| syntax_violation(Some((e.line(), e.column())), &e.to_string(), "JSON"));
    }
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let at = e.location().map(|l| (l.line(), l.column()));
        syntax_violation(at, &e.to_string(), "YAML")
    })?;
    // Merge keys (`<<: *agent`) let teams share agent definitions.
    yaml.apply_merge()
        .map_err(|e| Violation::new("", format!("invalid YAML merge: {e}")))?;
    serde_json::to_value(&yaml)
        .map_err(|e| Violation::new("", format!("unsupported YAML value: {e}")))
}

fn syntax_violation(at: Option<(usize, usize)>, message: &str, format: &str) -> Violation {
    let path = at.map_or_else(String::new, |(line, column)| {
        format!("line {line}, column {column}")
    });
    Violation::new(
        path,
        format!("invalid {format}: {}", strip_location(message)),
    )
}

/// Drops the first " at line L column C" of a message: that location is already
/// the violation's path.
fn strip_location(message: &str) -> String {
    let Some(start) = message.find(" at line ") else {
        return message.to_owned();
    };
    let rest = &message[start + " at line ".len()..];
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = rest.strip_prefix(" column ") else {
        return message.to_owned();
    };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    format!("{}{rest}", &message[..start])
}

/// Checks every rule of product spec §3; an empty result means valid.
pub fn validate(spec: &TeamSpec, catalog: &Catalog) -> Vec<Violation> {
    let mut out = Vec::new();
    check_slug(&spec.name, "name", &mut out);
    check_model(
        &spec.supervisor.model,
        "supervisor.model",
        catalog,
        &mut out,
    );
    check_nodes(spec, catalog, &mut out);
    check_graph(spec, &mut out);
    if let Some(schema) = &spec.output_schema
        && let Err(e) = jsonschema::validator_for(schema)
    {
        let at = e.instance_path().as_str();
        let message = if at.is_empty() {
            format!("invalid JSON Schema: {e}")
        } else {
            format!("invalid JSON Schema at {at}: {e}")
        };
        out.push(Violation::new("output_schema", message));
    }
    check_limits(&spec.limits, &mut out);
    sort_by_path(&mut out);
    out
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

fn check_model(model: &ModelRef, path: &str, catalog: &Catalog, out: &mut Vec<Violation>) {
    let unknown = |name: &str| {
        let mut message = format!("unknown model {name:?}");
        if let Some(s) = suggest(name, catalog.models.iter().map(String::as_str)) {
            message.push_str(&format!(" (did you mean {s:?}?)"));
        }
        message
    };
    match model {
        ModelRef::Name(name) if !catalog.models.contains(name) => {
            out.push(Violation::new(path, unknown(name)));
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
                    out.push(Violation::new(format!("{path}[{k}]"), unknown(name)));
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
        check_slug(&node.id, &format!("{p}.id"), out);
        if let Some(&first) = index.get(node.id.as_str())
            && first != i
            && !node.id.is_empty()
        {
            out.push(Violation::new(
                format!("{p}.id"),
                format!(
                    "duplicate node id {:?} (first defined at nodes[{first}])",
                    node.id
                ),
            ));
        }
        if node.kind.trim().is_empty() {
            out.push(Violation::new(format!("{p}.kind"), "must not be empty"));
        }

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
                p.clone(),
                format!(
                    "node {:?} has no dependencies and nothing depends on it",
                    node.id
                ),
            ));
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
                let mut message = format!("unknown tool {tool:?}");
                if let Some(s) = suggest(tool, catalog.tools.iter().map(String::as_str)) {
                    message.push_str(&format!(" (did you mean {s:?}?)"));
                }
                out.push(Violation::new(format!("{ap}.tools[{t}]"), message));
            }
        }
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
/// duplicates dropped (they are reported elsewhere).
pub(crate) fn resolved_deps(spec: &TeamSpec) -> Vec<Vec<usize>> {
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
pub(crate) fn layers(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
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

fn check_graph(spec: &TeamSpec, out: &mut Vec<Violation>) {
    // Cycle search is quadratic; a team over the node limit is rejected anyway.
    if spec.nodes.len() > MAX_NODES {
        return;
    }
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

/// The closest candidate within a small edit distance, for "did you mean".
fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Long input is not a typo of a short name; also bounds the DP cost.
    if word.is_empty() || word.len() > 64 {
        return None;
    }
    let max = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            row.push((prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()]
}

// Field order of each struct, to sort violations in document order (the order
// fields are declared and conventionally written). Checked against the serde
// model by a test.
const TEAM_FIELDS: &[&str] = &[
    "name",
    "description",
    "pattern",
    "supervisor",
    "nodes",
    "output_schema",
    "limits",
];
const SUPERVISOR_FIELDS: &[&str] = &["model", "instructions"];
const NODE_FIELDS: &[&str] = &["id", "kind", "depends_on", "match", "supervisor", "agents"];
const AGENT_FIELDS: &[&str] = &["id", "role", "instructions", "model", "tools"];
const LIMITS_FIELDS: &[&str] = &[
    "timeout_seconds",
    "max_iterations",
    "max_tokens",
    "max_cost_usd",
];

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Segment {
    Field(usize, String),
    Index(usize),
}

/// Sort key of a path like `nodes[2].agents[0].tools[1]`: fields by declaration
/// order, indices numerically (so `nodes[10]` follows `nodes[2]`).
fn path_key(path: &str) -> Vec<Segment> {
    let mut key = Vec::new();
    if path.is_empty() {
        return key;
    }
    let mut fields = TEAM_FIELDS;
    for part in path.split('.') {
        let (name, indices) = part.split_once('[').unwrap_or((part, ""));
        let rank = fields
            .iter()
            .position(|f| *f == name)
            .unwrap_or(fields.len());
        key.push(Segment::Field(rank, name.to_owned()));
        key.extend(
            indices
                .split('[')
                .filter_map(|i| i.trim_end_matches(']').parse().ok())
                .map(Segment::Index),
        );
        let in_team = fields == TEAM_FIELDS;
        let in_node = fields == NODE_FIELDS;
        fields = match name {
            "supervisor" if in_team || in_node => SUPERVISOR_FIELDS,
            "nodes" if in_team => NODE_FIELDS,
            "limits" if in_team => LIMITS_FIELDS,
            "agents" if in_node => AGENT_FIELDS,
            _ => &[],
        };
    }
    key
}

fn sort_by_path(violations: &mut [Violation]) {
    // Stable: violations of the same path keep the order rules found them.
    violations.sort_by_cached_key(|v| path_key(&v.path));
}

/// Deserialization from a `serde_json::Value` that records where an error
/// happened, standing in for the `serde_path_to_error` crate.
mod tracked {
    use std::fmt;

    use serde::de::value::BorrowedStrDeserializer;
    use serde::de::{
        self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor,
    };
    use serde::forward_to_deserialize_any;
    use serde_json::Value;

    #[derive(Debug)]
    pub(super) struct Error {
        /// Set by the innermost value or key the error passed through.
        pub path: Option<String>,
        pub message: String,
    }

    impl Error {
        fn at(mut self, path: &str) -> Self {
            if self.path.is_none() {
                self.path = Some(path.to_owned());
            }
            self
        }
    }

    impl fmt::Display for Error {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.message)
        }
    }

    impl std::error::Error for Error {}

    impl de::Error for Error {
        fn custom<T: fmt::Display>(msg: T) -> Self {
            Error {
                path: None,
                message: msg.to_string(),
            }
        }

        fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
            Self::custom(unknown("field", field, expected))
        }

        fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
            Self::custom(unknown("variant", variant, expected))
        }
    }

    fn unknown(what: &str, name: &str, expected: &[&str]) -> String {
        if let Some(s) = super::suggest(name, expected.iter().copied()) {
            return format!("unknown {what} `{name}`, did you mean `{s}`?");
        }
        let expected: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
        format!(
            "unknown {what} `{name}`, expected one of {}",
            expected.join(", ")
        )
    }

    pub(super) fn from_value<'de, T: de::Deserialize<'de>>(value: &'de Value) -> Result<T, Error> {
        T::deserialize(Tracked {
            value,
            path: String::new(),
        })
        .map_err(|e| e.at(""))
    }

    fn child(path: &str, key: &str) -> String {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    }

    fn unexpected(value: &Value) -> Unexpected<'_> {
        match value {
            Value::Null => Unexpected::Unit,
            Value::Bool(b) => Unexpected::Bool(*b),
            Value::Number(n) => n
                .as_f64()
                .map_or(Unexpected::Other("number"), Unexpected::Float),
            Value::String(s) => Unexpected::Str(s),
            Value::Array(_) => Unexpected::Seq,
            Value::Object(_) => Unexpected::Map,
        }
    }

    struct Tracked<'de> {
        value: &'de Value,
        path: String,
    }

    impl<'de> Deserializer<'de> for Tracked<'de> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.value {
                Value::Null => visitor.visit_unit(),
                Value::Bool(b) => visitor.visit_bool(*b),
                Value::Number(n) => {
                    if let Some(u) = n.as_u64() {
                        visitor.visit_u64(u)
                    } else if let Some(i) = n.as_i64() {
                        visitor.visit_i64(i)
                    } else if let Some(f) = n.as_f64() {
                        visitor.visit_f64(f)
                    } else {
                        Err(de::Error::custom(format!("unsupported number {n}")))
                    }
                }
                Value::String(s) => visitor.visit_borrowed_str(s),
                Value::Array(items) => visitor.visit_seq(Seq {
                    items: items.iter().enumerate(),
                    path: self.path,
                }),
                Value::Object(map) => visitor.visit_map(Map {
                    entries: map.iter(),
                    value: None,
                    path: self.path,
                }),
            }
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            if self.value.is_null() {
                visitor.visit_none()
            } else {
                visitor.visit_some(self)
            }
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            // The model only has unit variants, written as strings.
            match self.value {
                Value::String(s) => visitor.visit_enum(BorrowedStrDeserializer::new(s)),
                other => Err(de::Error::invalid_type(unexpected(other), &visitor)),
            }
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            // Serde also accepts structs as sequences; a team is only ever a mapping.
            match self.value {
                Value::Object(_) => self.deserialize_any(visitor),
                other => Err(de::Error::invalid_type(unexpected(other), &visitor)),
            }
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_newtype_struct(self)
        }

        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf unit unit_struct seq tuple tuple_struct map
            identifier ignored_any
        }
    }

    struct Seq<'de> {
        items: std::iter::Enumerate<std::slice::Iter<'de, Value>>,
        path: String,
    }

    impl<'de> SeqAccess<'de> for Seq<'de> {
        type Error = Error;

        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, Error> {
            let Some((i, value)) = self.items.next() else {
                return Ok(None);
            };
            let path = format!("{}[{i}]", self.path);
            // Errors raised after the value was read (untagged enums) are
            // tagged here, hence `at` on the seed rather than in the deserializer.
            seed.deserialize(Tracked {
                value,
                path: path.clone(),
            })
            .map(Some)
            .map_err(|e| e.at(&path))
        }

        fn size_hint(&self) -> Option<usize> {
            Some(self.items.len())
        }
    }

    struct Map<'de> {
        entries: serde_json::map::Iter<'de>,
        value: Option<(String, &'de Value)>,
        path: String,
    }

    impl<'de> MapAccess<'de> for Map<'de> {
        type Error = Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Error> {
            let Some((key, value)) = self.entries.next() else {
                return Ok(None);
            };
            let path = child(&self.path, key);
            // Unknown fields are reported at the key's own path.
            let key = seed
                .deserialize(BorrowedStrDeserializer::<Error>::new(key))
                .map_err(|e| e.at(&path))?;
            self.value = Some((path, value));
            Ok(Some(key))
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
            let Some((path, value)) = self.value.take() else {
                return Err(de::Error::custom("map value requested before its key"));
            };
            seed.deserialize(Tracked {
                value,
                path: path.clone(),
            })
            .map_err(|e| e.at(&path))
        }

        fn size_hint(&self) -> Option<usize> {
            Some(self.entries.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{AgentSpec, Pattern, SupervisorSpec};

    const FULL_EXAMPLE: &str = r#"
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

    fn agent(id: &str) -> AgentSpec {
        AgentSpec {
            id: id.into(),
            role: None,
            instructions: None,
            model: None,
            tools: vec!["prometheus_query".into()],
        }
    }

    fn node(id: &str, deps: &[&str]) -> NodeSpec {
        NodeSpec {
            id: id.into(),
            kind: "service".into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            r#match: Default::default(),
            supervisor: None,
            agents: vec![agent("a")],
        }
    }

    fn team(nodes: Vec<NodeSpec>) -> TeamSpec {
        TeamSpec {
            name: "t".into(),
            description: None,
            pattern: Pattern::Hierarchical,
            supervisor: SupervisorSpec {
                model: ModelRef::Name("default".into()),
                instructions: None,
            },
            nodes,
            output_schema: None,
            limits: Limits::default(),
        }
    }

    fn shown(violations: &[Violation]) -> Vec<String> {
        violations.iter().map(ToString::to_string).collect()
    }

    fn check(spec: &TeamSpec) -> Vec<String> {
        shown(&validate(spec, &Catalog::builtin()))
    }

    /// The violation with exactly this path, whose message contains `fragment`.
    #[track_caller]
    fn assert_has(violations: &[String], path: &str, fragment: &str) {
        let prefix = format!("{path}: ");
        assert!(
            violations
                .iter()
                .any(|v| v.starts_with(&prefix) && v[prefix.len()..].contains(fragment)),
            "no `{path}: ...{fragment}...` in {violations:#?}"
        );
    }

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
            crate::topology::dependency_order(&spec),
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
    fn syntax_errors_are_located_by_line_and_column() {
        let yaml = parse("name: t\nnodes:\n  - id: [unclosed\n").unwrap_err();
        assert_eq!(yaml.len(), 1);
        assert_eq!(yaml[0].path, "line 4, column 1");
        assert_eq!(
            yaml[0].message,
            // The context's own location stays: it points at the opening `[`.
            "invalid YAML: did not find expected ',' or ']', \
             while parsing a flow sequence at line 3 column 9"
        );

        let json = parse("{\n  \"name\": \"t\",\n  \"nodes\": [,]\n}").unwrap_err();
        assert_eq!(json[0].path, "line 3, column 13");
        assert!(json[0].message.starts_with("invalid JSON: "), "{json:?}");

        assert_eq!(
            shown(&parse("# only a comment\n").unwrap_err()),
            ["document is empty"]
        );
    }

    #[test]
    fn deserialization_errors_name_the_field_path() {
        let typo = FULL_EXAMPLE.replace("tools: [alertmanager", "tols: [alertmanager");
        let errors = shown(&parse(&typo).unwrap_err());
        assert_eq!(
            errors,
            ["nodes[1].agents[0].tols: unknown field `tols`, did you mean `tools`?"]
        );

        let bad_type = FULL_EXAMPLE.replace("timeout_seconds: 600", "timeout_seconds: soon");
        assert_has(
            &shown(&parse(&bad_type).unwrap_err()),
            "limits.timeout_seconds",
            "invalid type: string \"soon\", expected u32",
        );

        let bad_model = FULL_EXAMPLE.replace("model: [default, builtin:rules]", "model: {}");
        assert_has(
            &shown(&parse(&bad_model).unwrap_err()),
            "supervisor.model",
            "expected a model name or a list of model names",
        );

        let bad_pattern = FULL_EXAMPLE.replace("pattern: hierarchical", "pattern: hierarchal");
        assert_has(
            &shown(&parse(&bad_pattern).unwrap_err()),
            "pattern",
            "did you mean `hierarchical`?",
        );

        let missing = FULL_EXAMPLE.replace("kind: service", "");
        assert_has(
            &shown(&parse(&missing).unwrap_err()),
            "nodes[1]",
            "missing field `kind`",
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

    #[test]
    fn sort_field_tables_match_the_serde_model() {
        let spec = parse(FULL_EXAMPLE).unwrap();
        // serde_yaml mappings keep serialization (= declaration) order.
        let keys = |v: &serde_yaml::Value| -> Vec<String> {
            v.as_mapping()
                .unwrap()
                .keys()
                .map(|k| k.as_str().unwrap().to_owned())
                .collect()
        };
        let root = serde_yaml::to_value(&spec).unwrap();
        assert_eq!(keys(&root), TEAM_FIELDS);
        assert_eq!(keys(&root["supervisor"]), SUPERVISOR_FIELDS);
        assert_eq!(keys(&root["limits"]), LIMITS_FIELDS);
        assert_eq!(keys(&root["nodes"][0]["agents"][0]), AGENT_FIELDS);
        let mut node = spec.nodes[0].clone();
        node.depends_on = vec!["x".into()];
        assert_eq!(keys(&serde_yaml::to_value(&node).unwrap()), NODE_FIELDS);
    }
}

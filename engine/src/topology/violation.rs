//! One problem of a team document, located by a path like
//! `nodes[2].depends_on[0]`, and the document order violations are listed in.

use std::fmt;

use serde::{Deserialize, Serialize};

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

/// Sorts violations in document order; violations of the same path keep the
/// order the rules found them in.
pub(super) fn sort_by_path(violations: &mut [Violation]) {
    violations.sort_by_cached_key(|v| path_key(&v.path));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::parse;
    use crate::topology::test_support::FULL_EXAMPLE;

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

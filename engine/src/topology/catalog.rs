//! The tools and models a team may reference.

use std::collections::BTreeSet;

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

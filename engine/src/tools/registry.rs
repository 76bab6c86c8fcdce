//! The built-in tools (SPEC §6) with their argument schemas and policies. The
//! registry is the source of the names teams may use: `topology::BUILTIN_TOOLS`
//! must list exactly these (a test keeps the two equal).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::spec::{Policy, ToolSpec};

/// Read-only calls to Prometheus and Alertmanager: quick, retried on transient errors.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Actions that change something outside: a little longer, still bounded.
const ACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Every tool the executor ships with, by name. Cheap to clone: every run holds one,
/// and the specs (JSON Schemas) are tens of kilobytes.
#[derive(Clone, Debug)]
pub struct Registry {
    tools: std::sync::Arc<BTreeMap<&'static str, ToolSpec>>,
}

impl Registry {
    pub fn builtin() -> Self {
        let matchers = json!({
            "type": "array",
            "maxItems": 20,
            "items": {
                "type": "object",
                "additionalProperties": false,
                "required": ["name", "value"],
                "properties": {
                    "name": { "type": "string", "minLength": 1, "maxLength": 200 },
                    "value": { "type": "string", "maxLength": 1000 },
                    "isRegex": { "type": "boolean" },
                    "isEqual": { "type": "boolean" }
                }
            }
        });
        let time = json!({ "type": "string", "description": "RFC 3339 time", "maxLength": 40 });
        let tools = [
            ToolSpec::new(
                "prometheus_alerts",
                "Alerts Prometheus currently evaluates (firing and pending), with labels, \
                 annotations and activeAt.",
                json!({ "type": "object", "additionalProperties": false, "properties": {} }),
                Policy::Auto,
                READ_TIMEOUT,
            ),
            ToolSpec::new(
                "prometheus_query",
                "Evaluates an instant PromQL query, at `time` (default: now).",
                json!({
                    "type": "object", "additionalProperties": false, "required": ["query"],
                    "properties": {
                        "query": { "type": "string", "minLength": 1, "maxLength": 10000 },
                        "time": time
                    }
                }),
                Policy::Auto,
                READ_TIMEOUT,
            ),
            ToolSpec::new(
                "prometheus_query_range",
                "Evaluates a PromQL query over [start, end] every `step` seconds (at most \
                 11000 points).",
                json!({
                    "type": "object", "additionalProperties": false,
                    "required": ["query", "start", "end", "step"],
                    "properties": {
                        "query": { "type": "string", "minLength": 1, "maxLength": 10000 },
                        "start": time,
                        "end": time,
                        "step": { "type": "number", "exclusiveMinimum": 0, "maximum": 86400 }
                    }
                }),
                Policy::Auto,
                READ_TIMEOUT,
            ),
            ToolSpec::new(
                "prometheus_rules",
                "The alerting and recording rules Prometheus evaluates, with their state.",
                json!({ "type": "object", "additionalProperties": false, "properties": {} }),
                Policy::Auto,
                READ_TIMEOUT,
            ),
            ToolSpec::new(
                "alertmanager_alerts",
                "Alerts in Alertmanager, optionally filtered by label matchers.",
                json!({
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "matchers": matchers.clone(),
                        "active": { "type": "boolean" },
                        "silenced": { "type": "boolean" },
                        "inhibited": { "type": "boolean" }
                    }
                }),
                Policy::Auto,
                READ_TIMEOUT,
            ),
            ToolSpec::new(
                "alertmanager_silence",
                "Creates an Alertmanager silence (after a person approves exactly this).",
                json!({
                    "type": "object", "additionalProperties": false,
                    "required": ["matchers", "duration_minutes", "comment"],
                    "properties": {
                        "matchers": { "allOf": [matchers, { "minItems": 1 }] },
                        "duration_minutes": { "type": "integer", "minimum": 1, "maximum": 10080 },
                        "comment": { "type": "string", "minLength": 1, "maxLength": 2000 }
                    }
                }),
                Policy::Approval,
                ACTION_TIMEOUT,
            ),
            ToolSpec::new(
                "webhook_action",
                "Asks the remediation webhook an admin configured to perform `action` \
                 (after a person approves exactly this).",
                json!({
                    "type": "object", "additionalProperties": false, "required": ["action"],
                    "properties": {
                        "action": { "type": "string", "minLength": 1, "maxLength": 200 },
                        "args": { "type": "object" }
                    }
                }),
                Policy::Approval,
                ACTION_TIMEOUT,
            ),
            ToolSpec::new(
                "topology",
                "The team's resource topology: nodes, what each depends on, and which \
                 alerts each node matches.",
                json!({
                    "type": "object", "additionalProperties": false,
                    "properties": { "node": { "type": "string", "maxLength": 100 } }
                }),
                Policy::Auto,
                READ_TIMEOUT,
            ),
            ToolSpec::new(
                "ask_human",
                "Asks the on-call person a question and waits for the answer.",
                json!({
                    "type": "object", "additionalProperties": false, "required": ["question"],
                    "properties": {
                        "question": { "type": "string", "minLength": 1, "maxLength": 4000 }
                    }
                }),
                Policy::AskHuman,
                // A person answers within the question's own expiry, not this.
                ACTION_TIMEOUT,
            ),
        ];
        Self {
            tools: std::sync::Arc::new(tools.into_iter().map(|t| (t.name, t)).collect()),
        }
    }

    pub fn get(&self, name: &str) -> Option<&ToolSpec> {
        self.tools.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.tools.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ErrorKind;

    #[test]
    fn the_registry_and_the_team_catalog_name_the_same_tools() {
        let registry: Vec<&str> = Registry::builtin().names().collect();
        let mut catalog: Vec<&str> = crate::topology::BUILTIN_TOOLS.to_vec();
        catalog.sort();
        assert_eq!(registry, catalog);
    }

    #[test]
    fn invalid_arguments_are_permanent_and_name_the_field() {
        let registry = Registry::builtin();
        let silence = registry.get("alertmanager_silence").unwrap();
        assert_eq!(silence.policy, Policy::Approval);
        let ok = json!({ "matchers": [{ "name": "service", "value": "db" }],
                         "duration_minutes": 60, "comment": "db failover" });
        assert!(silence.validate(&ok).is_ok());
        let cases = [
            (
                json!({ "matchers": [], "duration_minutes": 60, "comment": "x" }),
                "/matchers",
            ),
            (
                json!({ "matchers": [{ "name": "", "value": "db" }], "duration_minutes": 60, "comment": "x" }),
                "/matchers/0/name",
            ),
            (
                json!({ "matchers": [{ "name": "a", "value": "b" }], "duration_minutes": "1h", "comment": "x" }),
                "/duration_minutes",
            ),
            (
                json!({ "duration_minutes": 5, "comment": "x" }),
                "(arguments)",
            ),
            (json!("not an object"), "(arguments)"),
        ];
        for (args, field) in cases {
            let err = silence.validate(&args).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Permanent);
            assert!(
                err.message.contains(&format!("{field}: ")),
                "{field} not named in: {}",
                err.message
            );
        }
        let range = registry.get("prometheus_query_range").unwrap();
        let err = range
            .validate(&json!({ "query": "up", "start": "a", "end": "b", "step": 0 }))
            .unwrap_err();
        assert!(err.message.contains("/step: "), "{}", err.message);
        let err = range
            .validate(&json!({ "query": "up", "start": "a", "end": "b", "step": 15, "extra": 1 }))
            .unwrap_err();
        assert!(err.message.contains("extra"), "{}", err.message);
    }
}

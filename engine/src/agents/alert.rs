//! Alerts as an investigation sees them, read from the three shapes they come in:
//! Alertmanager's webhook (`status: firing|resolved`), Prometheus's `/api/v1/alerts`
//! (`state: firing|pending`) and Alertmanager's `/api/v2/alerts`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Only a firing alert can point at a cause; pending and resolved ones are context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Pending,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Pending => "pending",
            AlertState::Resolved => "resolved",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `labels.alertname` (`"(unnamed)"` when absent).
    pub name: String,
    pub state: AlertState,
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
    /// Alertmanager's fingerprint (webhook and `/api/v2/alerts` shapes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// At most this many alerts are taken into one investigation.
pub const MAX_ALERTS: usize = 1000;

impl Alert {
    /// `severity` label, if any.
    pub fn severity(&self) -> Option<&str> {
        self.labels.get("severity").map(String::as_str)
    }

    /// critical > error/high > warning > info/other: only orders ties.
    pub fn severity_rank(&self) -> u8 {
        match self.severity().map(str::to_ascii_lowercase).as_deref() {
            Some("critical" | "page" | "fatal" | "emergency") => 4,
            Some("error" | "high" | "major") => 3,
            Some("warning" | "warn" | "medium") => 2,
            Some(_) => 1,
            None => 0,
        }
    }

    /// `Name{a="b", c="d"}` without `alertname`: how the report names an alert.
    pub fn display(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "alertname")
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        format!("{}{{{}}}", self.name, labels.join(", "))
    }

    /// Reads one alert in any of the three shapes; `at` names it in errors
    /// (`alerts[3]`).
    pub fn parse(value: &Json, at: &str) -> Result<Alert, String> {
        let object = value
            .as_object()
            .ok_or_else(|| format!("{at}: must be an object with `labels`"))?;
        let labels = string_map(object.get("labels"), &format!("{at}.labels"))?;
        if labels.is_empty() {
            return Err(format!("{at}.labels: an alert needs at least one label"));
        }
        let annotations = string_map(object.get("annotations"), &format!("{at}.annotations"))?;
        // Webhook: `status: "firing"`; Prometheus: `state: "pending"`; Alertmanager v2:
        // `status: {state: "active"}` (everything it holds is firing).
        let state_text = match (object.get("status"), object.get("state")) {
            (Some(Json::String(s)), _) | (_, Some(Json::String(s))) => s.as_str(),
            (Some(Json::Object(_)), _) => "firing",
            (None, None) => "firing",
            _ => return Err(format!("{at}.status: must be \"firing\" or \"resolved\"")),
        };
        let state = match state_text {
            "firing" | "active" => AlertState::Firing,
            "pending" => AlertState::Pending,
            "resolved" | "inactive" => AlertState::Resolved,
            other => {
                return Err(format!(
                    "{at}.status: \"{other}\" is not firing, pending or resolved"
                ));
            }
        };
        let starts_at = match object.get("startsAt").or_else(|| object.get("activeAt")) {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(
                DateTime::parse_from_rfc3339(s)
                    .map_err(|e| format!("{at}.startsAt: not an RFC 3339 time: {e}"))?
                    .with_timezone(&Utc),
            )
            // Alertmanager's "zero" time means unknown.
            .filter(|t| t.timestamp() > 0),
            Some(_) => return Err(format!("{at}.startsAt: must be an RFC 3339 string")),
        };
        let generator_url = object
            .get("generatorURL")
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let fingerprint = object
            .get("fingerprint")
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        Ok(Alert {
            fingerprint,
            name: labels
                .get("alertname")
                .cloned()
                .unwrap_or_else(|| "(unnamed)".to_owned()),
            state,
            labels,
            annotations,
            starts_at,
            generator_url,
        })
    }

    /// A list of alerts: an array, or an Alertmanager webhook body (`{alerts: [...]}`).
    pub fn parse_list(value: &Json, at: &str) -> Result<Vec<Alert>, String> {
        let (items, at) = match value {
            Json::Array(items) => (items, at.to_owned()),
            Json::Object(o) => match o.get("alerts") {
                Some(Json::Array(items)) => (items, format!("{at}.alerts")),
                _ => {
                    return Err(format!(
                        "{at}: must be a list of alerts or an Alertmanager webhook body with `alerts`"
                    ));
                }
            },
            _ => return Err(format!("{at}: must be a list of alerts")),
        };
        if items.len() > MAX_ALERTS {
            return Err(format!(
                "{at}: {} alerts, at most {MAX_ALERTS} are accepted",
                items.len()
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, a)| Alert::parse(a, &format!("{at}[{i}]")))
            .collect()
    }

    /// Whether every matcher (label → value) holds for this alert.
    pub fn matches(&self, matchers: &BTreeMap<String, String>) -> bool {
        !matchers.is_empty()
            && matchers
                .iter()
                .all(|(k, v)| self.labels.get(k).is_some_and(|l| l == v))
    }
}

fn string_map(value: Option<&Json>, at: &str) -> Result<BTreeMap<String, String>, String> {
    match value {
        None | Some(Json::Null) => Ok(BTreeMap::new()),
        Some(Json::Object(o)) => o
            .iter()
            .map(|(k, v)| match v {
                Json::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(format!("{at}.{k}: must be a string")),
            })
            .collect(),
        Some(_) => Err(format!("{at}: must be an object of strings")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_three_shapes() {
        let webhook = json!({ "status": "resolved", "labels": { "alertname": "A", "severity": "critical" },
            "startsAt": "2026-11-30T10:00:00Z", "generatorURL": "http://p/graph" });
        let a = Alert::parse(&webhook, "alerts[0]").unwrap();
        assert_eq!((a.name.as_str(), a.state), ("A", AlertState::Resolved));
        assert_eq!(a.severity_rank(), 4);
        let prom = json!({ "state": "pending", "labels": { "alertname": "B" }, "activeAt": "2026-11-30T10:00:00.5Z" });
        assert_eq!(Alert::parse(&prom, "x").unwrap().state, AlertState::Pending);
        let am = json!({ "status": { "state": "active" }, "labels": { "alertname": "C" },
            "startsAt": "0001-01-01T00:00:00Z" });
        let c = Alert::parse(&am, "x").unwrap();
        assert_eq!((c.state, c.starts_at), (AlertState::Firing, None));
    }

    #[test]
    fn errors_name_where() {
        let body =
            json!({ "alerts": [ { "labels": { "alertname": "A" } }, { "labels": { "x": 1 } } ] });
        assert_eq!(
            Alert::parse_list(&body, "alerts").unwrap_err(),
            "alerts.alerts[1].labels.x: must be a string"
        );
        let bad_time = json!([{ "labels": { "a": "b" }, "startsAt": "yesterday" }]);
        assert!(
            Alert::parse_list(&bad_time, "alerts")
                .unwrap_err()
                .starts_with("alerts[0].startsAt: not an RFC 3339 time")
        );
        let bad_state = json!([{ "labels": { "a": "b" }, "status": "burning" }]);
        assert!(
            Alert::parse_list(&bad_state, "alerts")
                .unwrap_err()
                .contains("\"burning\" is not firing")
        );
    }

    #[test]
    fn matching_needs_every_label_and_at_least_one() {
        let a = Alert::parse(
            &json!({ "labels": { "service": "db", "env": "prod" } }),
            "a",
        )
        .unwrap();
        let m = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(a.matches(&m(&[("service", "db")])));
        assert!(a.matches(&m(&[("service", "db"), ("env", "prod")])));
        assert!(!a.matches(&m(&[("service", "db"), ("env", "dev")])));
        assert!(!a.matches(&m(&[])));
    }
}

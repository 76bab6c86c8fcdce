//! The Alertmanager webhook intake (§8): reading a notification (payload version 4),
//! routing its group to the teams whose `alertmanager.matchers` match, and handing
//! both to [`Engine::record_notification`], which decides what it means (a run
//! started, recorded on an active run, de-duplicated, unrouted) in one transaction.
//!
//! Reading is strict where the intake depends on a field (`version`, `groupKey`,
//! `status`, and each alert's `status`, `labels`, `startsAt`, `fingerprint`) and
//! lenient elsewhere: fields Alertmanager added over the versions
//! (`truncatedAlerts`, `notification_reason`, `routeLabels`, …) are optional or
//! ignored. Every refusal names the field (`alerts[3].startsAt`).

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::agents::{MAX_ALERTS, TeamRun, team_run_start};
use crate::ids::NotificationId;
use crate::model::{AlertNotification, AlertmanagerReceiver, NotificationStatus};
use crate::page::PageRequest;
use crate::status::Trigger;
use crate::topology::{AlertmanagerRoute, Matcher};
use crate::{Engine, IncomingAlert, NotificationIntake, TeamRoute};

/// The only webhook payload version there is (Alertmanager ≥ 0.16).
pub const PAYLOAD_VERSION: &str = "4";
/// Most alerts one notification may carry: what one investigation reads. Set
/// `max_alerts` in Alertmanager's `webhook_config` to at most this.
pub const MAX_NOTIFICATION_ALERTS: usize = MAX_ALERTS;
/// Longest `groupKey` accepted, in bytes.
pub const MAX_GROUP_KEY_BYTES: usize = 8 * 1024;
/// Longest alert `fingerprint` accepted (Alertmanager's are 16 hex digits).
pub const MAX_FINGERPRINT_CHARS: usize = 128;

/// `firing` or `resolved`, as Alertmanager writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireStatus {
    Firing,
    Resolved,
}

/// A webhook notification (payload version 4): one alert group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub version: String,
    pub group_key: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    pub status: WireStatus,
    /// The receiver's name in Alertmanager's configuration.
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<WireAlert>,
}

/// One alert of a notification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireAlert {
    pub status: WireStatus,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    /// `0001-01-01T00:00:00Z` while firing (no end known).
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

impl Notification {
    /// Reads a request body. The error names the field (`alerts[0].startsAt: …`) and
    /// is safe to return to the sender.
    pub fn parse(body: &[u8]) -> Result<Notification, String> {
        let de = &mut serde_json::Deserializer::from_slice(body);
        let mut n: Notification = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // `.` is the document itself; `?` a place a syntax error left unknown.
            if path == "." || path == "?" {
                format!("invalid notification: {inner}")
            } else {
                format!("{path}: {inner}")
            }
        })?;
        n.check()?;
        for a in &mut n.alerts {
            // What both databases store, so a repeat compares equal to its record.
            a.starts_at = a.starts_at.trunc_subsecs(6);
            a.ends_at = a
                .ends_at
                .filter(|t| t.timestamp() > 0)
                .map(|t| t.trunc_subsecs(6));
        }
        Ok(n)
    }

    fn check(&self) -> Result<(), String> {
        if self.version != PAYLOAD_VERSION {
            return Err(format!(
                "version: {:?} is not supported: only webhook payload version \"4\"",
                self.version
            ));
        }
        if self.group_key.is_empty() || self.group_key.len() > MAX_GROUP_KEY_BYTES {
            return Err(format!(
                "groupKey: must be 1 to {MAX_GROUP_KEY_BYTES} bytes long"
            ));
        }
        if self.alerts.is_empty() {
            return Err("alerts: a notification needs at least one alert".to_owned());
        }
        if self.alerts.len() > MAX_NOTIFICATION_ALERTS {
            return Err(format!(
                "alerts: {} alerts, at most {MAX_NOTIFICATION_ALERTS} per notification (set \
                 max_alerts: {MAX_NOTIFICATION_ALERTS} in Alertmanager's webhook_config)",
                self.alerts.len()
            ));
        }
        for (i, a) in self.alerts.iter().enumerate() {
            let fp = &a.fingerprint;
            if fp.is_empty()
                || fp.chars().count() > MAX_FINGERPRINT_CHARS
                || fp.chars().any(char::is_control)
            {
                return Err(format!(
                    "alerts[{i}].fingerprint: must be 1 to {MAX_FINGERPRINT_CHARS} characters, \
                     none of them control characters"
                ));
            }
            if a.labels.is_empty() {
                return Err(format!(
                    "alerts[{i}].labels: an alert needs at least one label"
                ));
            }
        }
        Ok(())
    }

    /// What routing matches: the group's labels over the labels common to its alerts.
    pub fn route_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.common_labels.clone();
        labels.extend(
            self.group_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        labels
    }
}

/// Whether `route`'s matchers take a group with `labels`. A stored team's matchers
/// were validated when it was applied; one that no longer parses takes nothing.
pub fn routes_to(route: &AlertmanagerRoute, labels: &BTreeMap<String, String>) -> bool {
    match route.parsed() {
        Ok(matchers) => Matcher::all_match(&matchers, labels),
        Err((i, e)) => {
            tracing::warn!(matcher = i, error = %e, "stored alertmanager matcher does not parse");
            false
        }
    }
}

/// Accepts a notification `receiver` posted: routes it and records what it means.
/// Nothing is stored when an error is returned.
pub async fn accept(
    engine: &Engine,
    receiver: AlertmanagerReceiver,
    notification: Notification,
) -> crate::Result<AlertNotification> {
    let id = NotificationId::new();
    let labels = notification.route_labels();
    let input = serde_json::to_value(&notification)
        .map_err(|e| crate::Error::Invalid(format!("notification: {e}")))?;
    let mut routes = Vec::new();
    let mut page = PageRequest::first(200);
    loop {
        let teams = engine.teams(&page).await?;
        for team in &teams.items {
            let Some(route) = team_route(&team.spec) else {
                continue;
            };
            if !routes_to(&route, &labels) {
                continue;
            }
            let run = TeamRun {
                alerts: Some(input.clone()),
                trigger: Trigger::Alertmanager,
                trigger_id: Some(id.to_string()),
                approval_mode: receiver.approval_mode,
                ..TeamRun::new(team.name.clone())
            };
            routes.push(TeamRoute {
                team_id: team.id,
                team: team.name.clone(),
                start: team_run_start(team, run),
            });
        }
        match teams.items.last() {
            Some(last) if teams.has_next => {
                page = page.after(Some(crate::page::Keyed::key(last)));
            }
            _ => break,
        }
    }
    let alerts = notification
        .alerts
        .iter()
        .map(|a| IncomingAlert {
            fingerprint: a.fingerprint.clone(),
            starts_at: a.starts_at,
            firing: a.status == WireStatus::Firing,
            ends_at: a.ends_at,
            labels: a.labels.clone(),
        })
        .collect();
    engine
        .record_notification(NotificationIntake {
            id,
            receiver,
            group_key: notification.group_key,
            group_labels: labels,
            status: match notification.status {
                WireStatus::Firing => NotificationStatus::Firing,
                WireStatus::Resolved => NotificationStatus::Resolved,
            },
            alerts,
            routes,
            received_at: Utc::now(),
        })
        .await
}

/// A stored team's `alertmanager` section, if it has one.
fn team_route(spec: &Json) -> Option<AlertmanagerRoute> {
    let section = spec.get("alertmanager")?;
    match serde_json::from_value(section.clone()) {
        Ok(route) => Some(route),
        Err(e) => {
            tracing::warn!(error = %e, "stored alertmanager section is unreadable");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Json {
        json!({
            "version": "4",
            "groupKey": "{}/{}:{alertname=\"ServiceDown\"}",
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "aiops",
            "groupLabels": { "alertname": "ServiceDown" },
            "commonLabels": { "alertname": "ServiceDown", "service": "db", "severity": "critical" },
            "commonAnnotations": {},
            "externalURL": "http://am:9093",
            "notification_reason": "new",
            "routeLabels": {},
            "alerts": [{
                "status": "firing",
                "labels": { "alertname": "ServiceDown", "service": "db" },
                "annotations": { "summary": "db is down" },
                "startsAt": "2026-12-04T10:00:00.123456789Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prom/graph?g0.expr=up",
                "fingerprint": "0123456789abcdef"
            }]
        })
    }

    fn parse(v: &Json) -> Result<Notification, String> {
        Notification::parse(v.to_string().as_bytes())
    }

    #[test]
    fn reads_version_4_ignoring_newer_fields() {
        let n = parse(&body()).unwrap();
        assert_eq!(n.status, WireStatus::Firing);
        assert_eq!(n.alerts[0].fingerprint, "0123456789abcdef");
        // Microseconds, like the databases; the zero end is no end.
        assert_eq!(
            n.alerts[0].starts_at.to_rfc3339(),
            "2026-12-04T10:00:00.123456+00:00"
        );
        assert_eq!(n.alerts[0].ends_at, None);
        assert_eq!(n.route_labels()["severity"], "critical");
    }

    #[test]
    fn refusals_name_the_field() {
        type Change = Box<dyn Fn(&mut Json)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|b| b["alerts"][0]["startsAt"] = json!("yesterday")),
                "alerts[0].startsAt: ",
            ),
            (
                Box::new(|b| {
                    b["alerts"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("fingerprint");
                }),
                "alerts[0]: missing field `fingerprint`",
            ),
            (
                Box::new(|b| b["alerts"][0]["status"] = json!("burning")),
                "alerts[0].status: unknown variant `burning`",
            ),
            (
                Box::new(|b| b["alerts"][0]["labels"]["x"] = json!(1)),
                "alerts[0].labels.x: invalid type",
            ),
            (
                Box::new(|b| b["version"] = json!("3")),
                "version: \"3\" is not supported",
            ),
            (
                Box::new(|b| {
                    b.as_object_mut().unwrap().remove("groupKey");
                }),
                "missing field `groupKey`",
            ),
            (
                Box::new(|b| b["alerts"] = json!([])),
                "alerts: a notification needs at least one alert",
            ),
            (
                Box::new(|b| b["alerts"][0]["fingerprint"] = json!("")),
                "alerts[0].fingerprint: must be 1 to 128",
            ),
            (
                Box::new(|b| b["alerts"][0]["labels"] = json!({})),
                "alerts[0].labels: an alert needs at least one label",
            ),
        ];
        for (change, wanted) in cases {
            let mut b = body();
            change(&mut b);
            let e = parse(&b).unwrap_err();
            assert!(e.contains(wanted), "wanted {wanted:?} in {e:?}");
        }
        let e = Notification::parse(b"{not json").unwrap_err();
        assert!(
            e.starts_with("invalid notification: key must be a string"),
            "{e}"
        );
    }

    #[test]
    fn too_many_alerts_are_refused_with_the_setting_to_change() {
        let mut b = body();
        let alert = b["alerts"][0].clone();
        b["alerts"] = Json::Array(vec![alert; MAX_NOTIFICATION_ALERTS + 1]);
        let e = parse(&b).unwrap_err();
        assert!(e.contains("max_alerts: 1000"), "{e}");
    }

    #[test]
    fn routing_matches_group_and_common_labels() {
        let n = parse(&body()).unwrap();
        let route = |m: &[&str]| AlertmanagerRoute {
            matchers: m.iter().map(|s| s.to_string()).collect(),
        };
        let labels = n.route_labels();
        assert!(routes_to(&route(&[r#"service="db""#]), &labels));
        assert!(routes_to(
            &route(&[r#"alertname=~"Service.*""#, r#"env!="staging""#]),
            &labels
        ));
        assert!(!routes_to(&route(&[r#"service="api""#]), &labels));
        assert!(!routes_to(&route(&[]), &labels), "no matcher, no group");
    }
}

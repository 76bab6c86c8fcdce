//! Ranking root-cause candidates with the topology (the rule-based analyst's core):
//! a failing node none of whose dependencies fail is a root cause; the failing nodes
//! that depend on it are its symptoms. A root shared by many failing nodes ranks
//! first; separate failing sub-graphs give separate roots; severity and the
//! strength of the evidence only break ties.

use std::collections::{BTreeMap, BTreeSet};

use crate::report::{Evidence, EvidenceKind, NodeFinding, NodeStatus, RootCause, Symptom};
use crate::topology::TeamSpec;

use super::alert::Alert;

/// Every node `id` depends on, directly or not.
pub fn upstream(team: &TeamSpec, id: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![id.to_owned()];
    while let Some(current) = stack.pop() {
        if let Some(node) = team.node(&current) {
            for dep in &node.depends_on {
                if seen.insert(dep.clone()) {
                    stack.push(dep.clone());
                }
            }
        }
    }
    seen
}

/// The root causes among `findings`, best first.
pub fn rank(team: &TeamSpec, findings: &[NodeFinding]) -> Vec<RootCause> {
    let failing: BTreeMap<&str, &NodeFinding> = findings
        .iter()
        .filter(|f| f.status == NodeStatus::Failing && !f.firing.is_empty())
        .map(|f| (f.node.as_str(), f))
        .collect();
    let upstream_of: BTreeMap<&str, BTreeSet<String>> =
        failing.keys().map(|id| (*id, upstream(team, id))).collect();
    let mut roots: Vec<(Candidate, RootCause)> = Vec::new();
    for (id, finding) in &failing {
        let failing_deps: Vec<&String> = upstream_of[id]
            .iter()
            .filter(|d| failing.contains_key(d.as_str()))
            .collect();
        if !failing_deps.is_empty() {
            continue;
        }
        let symptoms: Vec<Symptom> = failing
            .iter()
            .filter(|(other, _)| upstream_of[*other].contains(*id))
            .map(|(other, f)| Symptom {
                node: (*other).to_owned(),
                alerts: f.firing.clone(),
            })
            .collect();
        let alert = primary(&finding.firing).clone();
        let confirming = finding.evidence.iter().filter(|e| e.confirms).count();
        let deps = team.node(id).map_or(0, |n| n.depends_on.len());
        let candidate = Candidate {
            impacted: symptoms.len(),
            severity: alert.severity_rank(),
            confirming,
            since: alert.starts_at,
            node: (*id).to_owned(),
        };
        let confidence = confidence(symptoms.len(), confirming, deps);
        let reason = reason(id, finding, deps, &symptoms, confirming);
        let mut evidence: Vec<Evidence> = finding.firing.iter().map(alert_evidence).collect();
        evidence.extend(finding.evidence.iter().cloned());
        roots.push((
            candidate,
            RootCause {
                node: (*id).to_owned(),
                alert,
                alerts: finding.firing.clone(),
                confidence,
                reason,
                evidence,
                symptoms,
            },
        ));
    }
    roots.sort_by(|(a, _), (b, _)| a.order(b));
    roots.into_iter().map(|(_, root)| root).collect()
}

/// What orders root causes: how much they explain first; severity, evidence and
/// age only break ties.
struct Candidate {
    impacted: usize,
    severity: u8,
    confirming: usize,
    since: Option<chrono::DateTime<chrono::Utc>>,
    node: String,
}

impl Candidate {
    fn order(&self, other: &Candidate) -> std::cmp::Ordering {
        other
            .impacted
            .cmp(&self.impacted)
            .then(other.severity.cmp(&self.severity))
            .then(other.confirming.cmp(&self.confirming))
            // Earlier first; an unknown start last.
            .then_with(|| match (self.since, other.since) {
                (Some(a), Some(b)) => a.cmp(&b),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then(self.node.cmp(&other.node))
    }
}

/// 0.5 for a failing node whose dependencies are healthy, more for each failing
/// node it explains (up to three), for metric evidence that confirms it, and for
/// having dependencies that were ruled out.
fn confidence(impacted: usize, confirming: usize, deps: usize) -> f64 {
    let mut c = 0.5 + 0.1 * impacted.min(3) as f64;
    if confirming > 0 {
        c += 0.1;
    }
    if deps > 0 {
        c += 0.05;
    }
    (c.min(0.95) * 100.0).round() / 100.0
}

fn reason(
    id: &str,
    finding: &NodeFinding,
    deps: usize,
    symptoms: &[Symptom],
    confirming: usize,
) -> String {
    let names: BTreeSet<&str> = finding.firing.iter().map(|a| a.name.as_str()).collect();
    let mut reason = format!(
        "{id} is failing ({})",
        names.into_iter().collect::<Vec<_>>().join(", ")
    );
    reason.push_str(if deps == 0 {
        " and depends on nothing in the topology"
    } else {
        " while none of the nodes it depends on is failing"
    });
    match symptoms.len() {
        0 => reason.push_str("; no failing node depends on it"),
        n => {
            let nodes: Vec<&str> = symptoms.iter().map(|s| s.node.as_str()).collect();
            reason.push_str(&format!(
                "; {n} failing node{} depend{} on it ({})",
                if n == 1 { "" } else { "s" },
                if n == 1 { "s" } else { "" },
                nodes.join(", ")
            ));
        }
    }
    if confirming > 0 {
        reason.push_str(&format!(
            "; {confirming} metric{} confirm{} it",
            if confirming == 1 { "" } else { "s" },
            if confirming == 1 { "s" } else { "" }
        ));
    }
    reason.push('.');
    reason
}

/// The alert that names a failing node best: most severe, then earliest.
pub fn primary(alerts: &[Alert]) -> &Alert {
    alerts
        .iter()
        .min_by(|a, b| {
            b.severity_rank()
                .cmp(&a.severity_rank())
                .then(a.starts_at.cmp(&b.starts_at))
                .then(a.name.cmp(&b.name))
        })
        .expect("a failing node has a firing alert")
}

/// A firing alert as evidence.
pub fn alert_evidence(alert: &Alert) -> Evidence {
    Evidence {
        kind: EvidenceKind::Alert,
        summary: format!("alert {} is firing", alert.display()),
        query: None,
        start: None,
        end: None,
        step_seconds: None,
        url: None,
        alert: Some(alert.display()),
        starts_at: alert.starts_at,
        confirms: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::AlertState;

    fn team_from_yaml(text: &str) -> TeamSpec {
        serde_yaml::from_str(text).unwrap()
    }

    fn finding(node: &str, alerts: &[(&str, &str)]) -> NodeFinding {
        NodeFinding {
            node: node.into(),
            kind: "service".into(),
            status: if alerts.is_empty() {
                NodeStatus::Healthy
            } else {
                NodeStatus::Failing
            },
            firing: alerts
                .iter()
                .map(|(name, severity)| Alert {
                    name: (*name).into(),
                    state: AlertState::Firing,
                    labels: [("alertname", *name), ("severity", *severity)]
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                    annotations: Default::default(),
                    starts_at: None,
                    generator_url: None,
                    fingerprint: None,
                })
                .collect(),
            context: vec![],
            evidence: vec![],
            failing_upstream: vec![],
            summary: String::new(),
        }
    }

    const SHOP: &str = r#"
name: shop
supervisor: { model: builtin:rules }
nodes:
  - { id: db, kind: postgres, agents: [{ id: a }] }
  - { id: cache, kind: redis, agents: [{ id: a }] }
  - { id: api, kind: service, depends_on: [db, cache], agents: [{ id: a }] }
  - { id: web, kind: service, depends_on: [api], agents: [{ id: a }] }
  - { id: batch, kind: service, depends_on: [db], agents: [{ id: a }] }
"#;

    fn roots(findings: &[NodeFinding]) -> Vec<(String, Vec<String>)> {
        rank(&team_from_yaml(SHOP), findings)
            .into_iter()
            .map(|r| (r.node, r.symptoms.into_iter().map(|s| s.node).collect()))
            .collect()
    }

    #[test]
    fn a_cascade_has_its_deepest_failing_node_as_root() {
        let got = roots(&[
            finding("db", &[("DbDown", "warning")]),
            finding("api", &[("ApiErrors", "critical")]),
            finding("web", &[("WebSlow", "critical")]),
            finding("cache", &[]),
        ]);
        assert_eq!(got, vec![("db".into(), vec!["api".into(), "web".into()])]);
    }

    #[test]
    fn a_shared_dependency_outranks_a_more_severe_lone_failure() {
        let ranked = rank(
            &team_from_yaml(SHOP),
            &[
                finding("db", &[("DbSlow", "warning")]),
                finding("api", &[("ApiErrors", "warning")]),
                finding("batch", &[("BatchLag", "warning")]),
                finding("cache", &[("CacheDown", "critical")]),
            ],
        );
        // api depends on both db and cache, so it is a symptom; db explains api and
        // batch, cache explains api only.
        let order: Vec<&str> = ranked.iter().map(|r| r.node.as_str()).collect();
        assert_eq!(order, ["db", "cache"]);
        assert!(ranked[0].confidence > ranked[1].confidence);
        assert!(
            ranked[0]
                .reason
                .contains("2 failing nodes depend on it (api, batch)")
        );
    }

    #[test]
    fn separate_sub_graphs_give_separate_roots_and_severity_breaks_ties() {
        let got = roots(&[
            finding("web", &[("WebSlow", "warning")]),
            finding("batch", &[("BatchLag", "critical")]),
        ]);
        assert_eq!(got, vec![("batch".into(), vec![]), ("web".into(), vec![])]);
    }

    #[test]
    fn confidence_stays_in_range_and_grows_with_what_it_explains() {
        assert_eq!(confidence(0, 0, 0), 0.5);
        assert_eq!(confidence(1, 0, 0), 0.6);
        assert_eq!(confidence(10, 3, 2), 0.95);
        for n in 0..20 {
            let c = confidence(n, n, n);
            assert!((0.0..=1.0).contains(&c));
        }
    }
}

//! Remediation the rule-based analyst proposes: per root cause, restoring the root
//! (a suggestion for a person) and, when the team allows `alertmanager_silence`,
//! one silence of the downstream symptom alerts — asked for approval, created once.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use serde_json::{Value as Json, json};

use crate::context::{StepContext, StepError};
use crate::report::{Action, ActionStatus, RootCause};
use crate::status::ApprovalStatus;
use crate::topology::TeamSpec;

use super::toolbox::{ToolOutcome, Toolbox};

const SILENCE_TOOL: &str = "alertmanager_silence";
/// How long a proposed silence lasts: long enough to fix the root, short enough
/// that a forgotten silence ends by itself.
const SILENCE_MINUTES: i64 = 120;

/// The actions for `roots`, with the approval-gated ones asked for (all at once)
/// and their outcome.
pub async fn propose(
    supervisor: &StepContext,
    toolbox: &Toolbox,
    team: &TeamSpec,
    roots: &[RootCause],
) -> Result<Vec<Action>, StepError> {
    let allowed = team
        .nodes
        .iter()
        .flat_map(|n| &n.agents)
        .any(|a| a.tools.iter().any(|t| t == SILENCE_TOOL));
    let has_alertmanager = toolbox.source().is_ok_and(|s| s.alertmanager().is_ok());
    let mut actions: Vec<Action> = roots.iter().map(restore).collect();
    let remediation = supervisor.branch("remediation");
    let silences: Vec<(&RootCause, Json)> = roots
        .iter()
        .filter(|r| !r.symptoms.is_empty())
        .map(|r| (r, silence_args(team, r)))
        .collect();
    if !(allowed && has_alertmanager) {
        let why = if allowed {
            "the alert source has no Alertmanager"
        } else {
            "the team's agents may not use alertmanager_silence"
        };
        actions.extend(silences.into_iter().map(|(root, args)| Action {
            description: describe(root),
            tool: SILENCE_TOOL.to_owned(),
            status: ActionStatus::Suggested,
            detail: Some(format!("not asked: {why}")),
            args: Some(args),
        }));
        return Ok(actions);
    }
    let ids: Vec<String> = silences
        .iter()
        .map(|(root, _)| format!("silence-{}", root.node))
        .collect();
    let calls = silences
        .iter()
        .zip(&ids)
        .map(|((_, args), id)| toolbox.call(&remediation, id, SILENCE_TOOL, args.clone()));
    let outcomes = join_all(calls).await;
    for ((root, args), outcome) in silences.into_iter().zip(outcomes) {
        let (status, detail) = match outcome? {
            ToolOutcome::Done(v) => (
                ActionStatus::Executed,
                format!(
                    "approved; silence {} {}",
                    v["silence_id"].as_str().unwrap_or("?"),
                    if v["created"] == true {
                        "created"
                    } else {
                        "already existed"
                    }
                ),
            ),
            ToolOutcome::Declined {
                status: ApprovalStatus::Expired,
                ..
            } => (
                ActionStatus::Expired,
                "nobody decided before the approval expired".to_owned(),
            ),
            ToolOutcome::Declined { by, comment, .. } => (
                ActionStatus::Rejected,
                format!(
                    "rejected by {}{}",
                    by.as_deref().unwrap_or("someone"),
                    comment.map_or(String::new(), |c| format!(": \"{c}\""))
                ),
            ),
            ToolOutcome::Failed(message) => (ActionStatus::Failed, message),
        };
        actions.push(Action {
            description: describe(root),
            tool: SILENCE_TOOL.to_owned(),
            status,
            detail: Some(detail),
            args: Some(args),
        });
    }
    Ok(actions)
}

fn describe(root: &RootCause) -> String {
    let nodes: Vec<&str> = root.symptoms.iter().map(|s| s.node.as_str()).collect();
    format!(
        "Silence the downstream symptom alerts of {} ({}) for {} minutes while it is fixed",
        root.node,
        nodes.join(", "),
        SILENCE_MINUTES
    )
}

/// "Restore the root": what its alert says to do, with its runbook when it has one.
fn restore(root: &RootCause) -> Action {
    let a = &root.alert;
    let said = a
        .annotations
        .get("summary")
        .or_else(|| a.annotations.get("description"))
        .map_or(String::new(), |s| format!(": {s}"));
    let runbook = a
        .annotations
        .get("runbook_url")
        .map_or(String::new(), |u| format!(" (runbook: {u})"));
    Action {
        description: format!("Restore {} first ({}{said}){runbook}", root.node, a.name),
        tool: String::new(),
        status: ActionStatus::Suggested,
        detail: None,
        args: None,
    }
}

/// The silence of `root`'s symptoms: their alert names, narrowed by the labels every
/// symptom node matches on (so another service's alert of the same name stays loud).
fn silence_args(team: &TeamSpec, root: &RootCause) -> Json {
    let names: BTreeSet<&str> = root
        .symptoms
        .iter()
        .flat_map(|s| s.alerts.iter().map(|a| a.name.as_str()))
        .collect();
    let mut matchers = vec![json!({
        "name": "alertname",
        "value": alternatives(names.into_iter()),
        "isRegex": true,
    })];
    let matches: Vec<&BTreeMap<String, String>> = root
        .symptoms
        .iter()
        .filter_map(|s| team.node(&s.node).map(|n| &n.r#match))
        .collect();
    if let Some(first) = matches.first() {
        for key in first.keys() {
            if key == "alertname" || !matches.iter().all(|m| m.contains_key(key)) {
                continue;
            }
            let values: BTreeSet<&str> = matches.iter().map(|m| m[key].as_str()).collect();
            matchers.push(json!({
                "name": key,
                "value": alternatives(values.into_iter()),
                "isRegex": true,
            }));
        }
    }
    json!({
        "matchers": matchers,
        "duration_minutes": SILENCE_MINUTES,
        "comment": format!(
            "aiops: symptoms of root cause {} ({}) found by team {}",
            root.node, root.alert.name, team.name
        ),
    })
}

/// `a|b|c` with each alternative's regex characters escaped.
fn alternatives<'a>(values: impl Iterator<Item = &'a str>) -> String {
    values
        .map(|v| {
            let mut out = String::with_capacity(v.len());
            for c in v.chars() {
                if "\\.+*?()|[]{}^$".contains(c) {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        })
        .collect::<Vec<_>>()
        .join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternatives_escape_regex_characters() {
        assert_eq!(
            alternatives(["Api.Errors", "Web(5xx)"].into_iter()),
            r"Api\.Errors|Web\(5xx\)"
        );
    }
}

//! The Markdown report: *Active alerts*, *Root cause analysis*, *Remediation*,
//! *Conclusion*. Every root-cause claim cites its evidence: the PromQL with its
//! time range and a Prometheus graph link, or the alert with its labels and
//! `startsAt`.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use super::analysis::{ActionStatus, Analysis, Evidence, EvidenceKind};
use crate::agents::{Alert, AlertState};

pub fn render(analysis: &Analysis) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Incident report: {} (version {})\n",
        text(&analysis.team),
        analysis.team_version
    );
    if analysis.is_rule_based() {
        let _ = writeln!(
            out,
            "> **Rule-based analysis** (`{}`): no language model was used. Root causes are \
             ranked from the team's topology and the evidence below.\n",
            analysis.analyst
        );
    } else {
        let _ = writeln!(out, "> Analysis by `{}`.\n", text(&analysis.analyst));
    }
    let _ = writeln!(
        out,
        "Incident window: {} to {}.",
        time(analysis.window_start),
        time(analysis.window_end)
    );
    if let Some(task) = &analysis.task {
        let _ = writeln!(out, "Task: {}", text(task));
    }
    active_alerts(&mut out, analysis);
    root_causes(&mut out, analysis);
    remediation(&mut out, analysis);
    let _ = writeln!(out, "\n## Conclusion\n\n{}", conclusion(analysis));
    out
}

fn active_alerts(out: &mut String, analysis: &Analysis) {
    let _ = writeln!(out, "\n## Active alerts\n");
    if analysis.alerts.is_empty() {
        let _ = writeln!(out, "No alert is firing or pending.");
        return;
    }
    let _ = writeln!(out, "| Alert | State | Node | Severity | Since |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    let mut alerts: Vec<_> = analysis.alerts.iter().collect();
    alerts.sort_by(|a, b| {
        a.alert
            .state
            .cmp(&b.alert.state)
            .then(b.alert.severity_rank().cmp(&a.alert.severity_rank()))
            .then(a.alert.name.cmp(&b.alert.name))
    });
    for routed in alerts {
        let a = &routed.alert;
        let nodes = if routed.nodes.is_empty() {
            "(matches no node)".to_owned()
        } else {
            routed.nodes.join(", ")
        };
        let state = match (a.state, routed.resolved_at) {
            (AlertState::Firing, Some(at)) => {
                format!(
                    "firing, **resolved** at {} (during the investigation)",
                    time(at)
                )
            }
            (AlertState::Firing, None) => "firing".to_owned(),
            (AlertState::Pending, _) => "pending (not a cause)".to_owned(),
            (AlertState::Resolved, _) => "resolved (not a cause)".to_owned(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {state} | {} | {} | {} |",
            code(&a.display()),
            cell(&nodes),
            cell(a.severity().unwrap_or("-")),
            a.starts_at.map_or("-".to_owned(), time)
        );
    }
    if !analysis.joined.is_empty() {
        let _ = writeln!(
            out,
            "\n**Joined during the investigation**: these alerts of the same Alertmanager \
             group started firing after it began and were not analysed:\n"
        );
        for a in &analysis.joined {
            let resolved = if a.state == AlertState::Resolved {
                " (resolved since)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "- `{}` since {}{resolved}",
                code(&a.display()),
                since(a)
            );
        }
    }
}

fn root_causes(out: &mut String, analysis: &Analysis) {
    let _ = writeln!(out, "\n## Root cause analysis\n");
    if analysis.root_causes.is_empty() {
        let _ = writeln!(
            out,
            "No firing alert concerns a node of the team, so there is no root cause to rank."
        );
    }
    for (i, root) in analysis.root_causes.iter().enumerate() {
        let _ = writeln!(
            out,
            "### {}. `{}`: {} (confidence {:.2})\n\n{}\n\n**Evidence**\n",
            i + 1,
            code(&root.node),
            text(&root.alert.name),
            root.confidence,
            text(&root.reason)
        );
        for e in &root.evidence {
            let _ = writeln!(out, "- {}", cite(e));
        }
        if !root.symptoms.is_empty() {
            let _ = writeln!(out, "\n**Explains** (downstream symptoms)\n");
            for s in &root.symptoms {
                let names: Vec<String> = s
                    .alerts
                    .iter()
                    .map(|a| format!("`{}` since {}", code(&a.display()), since(a)))
                    .collect();
                let _ = writeln!(out, "- `{}`: {}", code(&s.node), names.join("; "));
            }
        }
        let _ = writeln!(out);
    }
    let unmatched: Vec<&Alert> = analysis.unmatched().collect();
    if !unmatched.is_empty() {
        let _ = writeln!(
            out,
            "**Unmatched alerts**: these firing alerts match no node of the team's topology \
             and were not analysed:\n"
        );
        for a in unmatched {
            let _ = writeln!(out, "- `{}` since {}", code(&a.display()), since(a));
        }
        let _ = writeln!(out);
    }
    let healthy: Vec<String> = analysis
        .findings
        .iter()
        .filter(|f| f.firing.is_empty())
        .map(|f| format!("`{}`: {}", code(&f.node), text(&f.summary)))
        .collect();
    if !healthy.is_empty() {
        let _ = writeln!(out, "**Also checked**\n");
        for h in healthy {
            let _ = writeln!(out, "- {h}");
        }
        let _ = writeln!(out);
    }
    for note in &analysis.notes {
        let _ = writeln!(out, "> Note: {}", text(note));
    }
}

fn remediation(out: &mut String, analysis: &Analysis) {
    let _ = writeln!(out, "\n## Remediation\n");
    if analysis.actions.is_empty() {
        let _ = writeln!(out, "No action is proposed.");
        return;
    }
    for action in &analysis.actions {
        let status = match action.status {
            ActionStatus::Suggested => "suggested",
            ActionStatus::Executed => "done",
            ActionStatus::Rejected => "rejected",
            ActionStatus::Expired => "not decided in time",
            ActionStatus::Failed => "failed",
        };
        let _ = write!(out, "- **{status}**: {}", text(&action.description));
        if let Some(detail) = &action.detail {
            let _ = write!(out, " ({})", text(detail));
        }
        let _ = writeln!(out);
    }
}

/// One paragraph: what is wrong, where it starts, how sure.
pub fn conclusion(analysis: &Analysis) -> String {
    let firing = analysis
        .alerts
        .iter()
        .filter(|r| r.alert.state == AlertState::Firing)
        .count();
    let unmatched = analysis.unmatched().count();
    let mut text = match analysis.root_causes.as_slice() {
        [] if firing == 0 => "No alert is firing; nothing needs attention.".to_owned(),
        [] => format!(
            "{firing} firing alert(s), none of which concerns a node of the team's topology."
        ),
        [root] => format!(
            "The most likely root cause is {} ({}, confidence {:.2}){}.",
            root.node,
            root.alert.name,
            root.confidence,
            explains(root.symptoms.len())
        ),
        roots => {
            let list: Vec<String> = roots
                .iter()
                .map(|r| {
                    format!(
                        "{} ({}, confidence {:.2}{})",
                        r.node,
                        r.alert.name,
                        r.confidence,
                        explains(r.symptoms.len())
                    )
                })
                .collect();
            format!(
                "{} independent root causes: {}.",
                roots.len(),
                list.join("; ")
            )
        }
    };
    if unmatched > 0 {
        text.push_str(&format!(
            " {unmatched} firing alert(s) match no node of the topology."
        ));
    }
    text
}

fn explains(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => ", which explains 1 downstream failing node".to_owned(),
        n => format!(", which explains {n} downstream failing nodes"),
    }
}

/// An evidence line: the alert with labels and start, or the query with its range
/// and graph link.
fn cite(e: &Evidence) -> String {
    match e.kind {
        EvidenceKind::Alert => format!(
            "Alert `{}` firing since {}",
            code(e.alert.as_deref().unwrap_or("?")),
            e.starts_at.map_or("an unknown time".to_owned(), time)
        ),
        _ => {
            let query = e.query.as_deref().unwrap_or("");
            let range = match (e.start, e.end, e.step_seconds) {
                (Some(s), Some(t), Some(step)) => {
                    format!(" from {} to {} (step {step} s)", time(s), time(t))
                }
                (None, Some(t), _) => format!(" at {}", time(t)),
                _ => String::new(),
            };
            let link = e
                .url
                .as_deref()
                .map_or(String::new(), |u| format!(" [graph]({u})"));
            format!("`{}`{range}: {}{link}", code(query), text(&e.summary))
        }
    }
}

fn since(a: &Alert) -> String {
    a.starts_at.map_or("an unknown time".to_owned(), time)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Text on one line (labels and annotations come from outside).
fn text(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn cell(s: &str) -> String {
    text(s).replace('|', "\\|")
}

/// Inline code cannot hold a backtick; a table cell cannot hold a bare `|`.
fn code(s: &str) -> String {
    cell(s).replace('`', "'")
}

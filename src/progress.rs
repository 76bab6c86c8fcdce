//! What `aiops run --team … --follow` prints while a team investigates: one line per
//! event a person cares about (nodes, tool calls, findings, waits), not the raw log.

use aiops_engine::{Event, EventKind};
use serde_json::Value;

/// A line for `event`, or `None` for bookkeeping events (steps, tokens).
pub fn line(event: &Event) -> Option<String> {
    let p = &event.payload;
    let text = |key: &str| p[key].as_str().unwrap_or_default().to_owned();
    Some(match event.kind {
        EventKind::RunStarted => format!("run started (attempt {})", p["attempt"]),
        EventKind::ToolCall => format!(
            "  {}: {} {}",
            place(&text("step_key")),
            text("tool"),
            short(&p["args"])
        ),
        EventKind::ToolResult => match p["ok"].as_bool() {
            Some(true) => format!("  {} ok", text("tool")),
            _ => format!("  {} failed: {}", text("tool"), text("error")),
        },
        EventKind::Finding => format!("node {}: {}", text("node"), text("summary")),
        EventKind::AlertFiring | EventKind::AlertResolved => format!(
            "alertmanager: {} of the group {}: {}",
            p["alerts"].as_array().map_or(0, Vec::len),
            if event.kind == EventKind::AlertFiring {
                "joined (firing)"
            } else {
                "resolved"
            },
            short(&p["alerts"])
        ),
        EventKind::StepRetryScheduled => {
            format!("  retrying {}: {}", place(&text("step_key")), text("error"))
        }
        EventKind::ApprovalRequested => format!(
            "waiting for approval {} of {} {} (approve or reject it in the console or with \
             the approve / reject mutations)",
            text("approval_id"),
            text("tool"),
            short(&p["args"])
        ),
        EventKind::ApprovalDecided => {
            format!("approval {}: {}", text("approval_id"), text("status"))
        }
        EventKind::InputRequested => {
            format!("question {}: {}", text("question_id"), text("question"))
        }
        EventKind::RunPaused => "run paused".to_owned(),
        EventKind::RunResumed => "run resumed".to_owned(),
        EventKind::RunSucceeded => "run succeeded".to_owned(),
        EventKind::RunFailed => format!("run failed: {}", text("error")),
        EventKind::RunCancelled => "run cancelled".to_owned(),
        EventKind::RunTimedOut => "run timed out".to_owned(),
        _ => return None,
    })
}

/// `node db` from `node/db/agent/metrics/iter/0/call/rule-0`; the key otherwise.
fn place(step_key: &str) -> String {
    let parts: Vec<&str> = step_key.split('/').collect();
    match parts.as_slice() {
        ["node", node, "agent", agent, ..] => format!("{node}/{agent}"),
        ["supervisor", ..] => "supervisor".to_owned(),
        _ => step_key.to_owned(),
    }
}

/// Arguments on one line, cut at 160 characters.
fn short(args: &Value) -> String {
    let text = args.to_string();
    match text.char_indices().nth(160) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

//! The structured result: the default §7 shape, and validation against the team's
//! `output_schema` (or the default one) with every problem named by its path.

use serde_json::{Value as Json, json};

use super::analysis::{Analysis, Evidence, EvidenceKind};

/// The §7 shape: `{summary, severity, root_causes: [{node, alert, confidence,
/// evidence}], actions: [{description, tool, status}]}`; more fields are allowed.
pub fn default_output_schema() -> &'static Json {
    static SCHEMA: std::sync::LazyLock<Json> = std::sync::LazyLock::new(default_schema);
    &SCHEMA
}

fn default_schema() -> Json {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["summary", "severity", "root_causes", "actions"],
        "properties": {
            "summary": { "type": "string", "minLength": 1 },
            "severity": { "enum": ["critical", "warning", "info", "none"] },
            "root_causes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["node", "alert", "confidence", "evidence"],
                    "properties": {
                        "node": { "type": "string" },
                        "alert": { "type": "string" },
                        "confidence": { "type": "number", "minimum": 0, "maximum": 1 },
                        "evidence": { "type": "array", "minItems": 1 }
                    }
                }
            },
            "actions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["description", "tool", "status"],
                    "properties": {
                        "description": { "type": "string" },
                        "tool": { "type": ["string", "null"] },
                        "status": { "type": "string" }
                    }
                }
            }
        }
    })
}

/// The structured result of `analysis`.
pub fn structured(analysis: &Analysis) -> Json {
    let root_causes: Vec<Json> = analysis
        .root_causes
        .iter()
        .map(|r| {
            json!({
                "node": r.node,
                "alert": r.alert.name,
                "labels": r.alert.labels,
                "confidence": r.confidence,
                "reason": r.reason,
                "evidence": r.evidence.iter().map(evidence).collect::<Vec<_>>(),
                "symptoms": r.symptoms.iter().map(|s| json!({
                    "node": s.node,
                    "alerts": s.alerts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let actions: Vec<Json> = analysis
        .actions
        .iter()
        .map(|a| {
            json!({
                "description": a.description,
                "tool": (!a.tool.is_empty()).then_some(&a.tool),
                "status": a.status.as_str(),
                "detail": a.detail,
            })
        })
        .collect();
    let unmatched: Vec<Json> = analysis
        .unmatched()
        .map(|a| json!({ "alert": a.name, "labels": a.labels }))
        .collect();
    json!({
        "summary": super::markdown::conclusion(analysis),
        "severity": severity(analysis),
        "root_causes": root_causes,
        "actions": actions,
        "unmatched_alerts": unmatched,
        "analyst": analysis.analyst,
        "rule_based": analysis.is_rule_based(),
        "team": analysis.team,
        "team_version": analysis.team_version,
        "window": { "start": analysis.window_start, "end": analysis.window_end },
    })
}

fn evidence(e: &Evidence) -> Json {
    let mut v = serde_json::to_value(e).unwrap_or(Json::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "description".into(),
            Json::String(match e.kind {
                EvidenceKind::Alert => e.summary.clone(),
                _ => format!(
                    "{}: {}",
                    e.query.as_deref().unwrap_or("(no query)"),
                    e.summary
                ),
            }),
        );
    }
    v
}

/// The incident's severity: that of the most severe firing alert.
fn severity(analysis: &Analysis) -> &'static str {
    let rank = analysis
        .alerts
        .iter()
        .filter(|r| r.alert.state == crate::agents::AlertState::Firing)
        .map(|r| r.alert.severity_rank())
        .max();
    match rank {
        None => "none",
        Some(4) | Some(3) => "critical",
        Some(2) => "warning",
        Some(_) => "info",
    }
}

/// Checks `result` against `schema`: every problem as `path: message`.
pub fn validate(result: &Json, schema: &Json) -> Result<(), Vec<String>> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| vec![format!("output_schema: not a valid JSON Schema: {e}")])?;
    let problems: Vec<String> = validator
        .iter_errors(result)
        .map(|e| {
            let at = e.instance_path().as_str().to_owned();
            format!("{}: {e}", if at.is_empty() { "(result)" } else { &at })
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

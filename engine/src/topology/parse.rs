//! Reading a team document, YAML or JSON text, into a [`TeamSpec`].
//!
//! A syntax error is located as `line L, column C` and names the format that
//! failed; a type or unknown-field error is located by the path of the value
//! (`nodes[1].agents[0].tools`), which `serde_path_to_error` records. Serde stops
//! at the first such error, so parsing reports at most one violation; the rules
//! (`rules.rs`, `graph.rs`) then report every violation of a parsed spec.

use std::fmt;

use serde_yaml::Value;

use super::model::TeamSpec;
use super::suggest::suggest;
use super::violation::Violation;

/// Parses a team written as YAML or JSON (text starting with `{`).
pub fn parse(text: &str) -> Result<TeamSpec, Vec<Violation>> {
    let document = read_document(text).map_err(|v| vec![v])?;
    deserialize(document).map_err(|v| vec![v])
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Yaml,
    Json,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
        })
    }
}

/// The document as a mapping, whichever format it was written in.
///
/// Both formats are read into JSON's data model first, YAML keys becoming
/// strings. The result is deserialized as a YAML value, whose deserializer reads
/// a struct only from a mapping (serde_json's would also take a list, reading
/// `supervisor: [default, fallback]` as a model and its instructions), and
/// reads an empty value (`tools:`) as an empty list, map or struct.
fn read_document(text: &str) -> Result<Value, Violation> {
    // JSON is valid YAML, but serde_json gives better messages for JSON text.
    let json = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| {
            let at = (e.line() > 0).then(|| (e.line(), e.column()));
            syntax_violation(Format::Json, at, &e.to_string())
        })?
    } else {
        let mut yaml: Value = serde_yaml::from_str(text).map_err(|e| {
            let at = e.location().map(|l| (l.line(), l.column()));
            syntax_violation(Format::Yaml, at, &e.to_string())
        })?;
        // Merge keys (`<<: *agent`) let teams share agent definitions.
        yaml.apply_merge()
            .map_err(|e| Violation::new("", format!("invalid YAML merge: {e}")))?;
        serde_json::to_value(&yaml)
            .map_err(|e| Violation::new("", format!("unsupported YAML value: {e}")))?
    };
    let kind = match &json {
        serde_json::Value::Object(_) => {
            return serde_yaml::to_value(json)
                .map_err(|e| Violation::new("", format!("unsupported value: {e}")));
        }
        serde_json::Value::Null => return Err(Violation::new("", "document is empty")),
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
    };
    Err(Violation::new(
        "",
        format!(
            "a team document must be a YAML mapping or a JSON object with the team's fields \
             (`name`, `supervisor`, `nodes`, …), not {kind}"
        ),
    ))
}

/// The location, when known, is the violation's path; the message does not
/// repeat it. (A second location, such as the start of the construct the error
/// is in, stays in the message.)
fn syntax_violation(format: Format, at: Option<(usize, usize)>, message: &str) -> Violation {
    let Some((line, column)) = at else {
        return Violation::new("", format!("invalid {format}: {message}"));
    };
    let message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
    Violation::new(
        format!("line {line}, column {column}"),
        format!("invalid {format}: {message}"),
    )
}

/// The spec, or the first type or unknown-field error at its path.
fn deserialize(document: Value) -> Result<TeamSpec, Violation> {
    serde_path_to_error::deserialize(document).map_err(|e| {
        // `Path` shows the document itself as "."; our paths leave it empty.
        let path = if e.path().iter().len() == 0 {
            String::new()
        } else {
            e.path().to_string()
        };
        Violation::new(path, with_suggestion(e.inner().to_string()))
    })
}

/// Serde lists every expected name ("unknown field `tols`, expected one of
/// `id`, `role`, …"); when the unknown name looks like a typo of one of them,
/// name that one instead.
fn with_suggestion(message: String) -> String {
    for what in ["field", "variant"] {
        let Some(rest) = message.strip_prefix(&format!("unknown {what} `")) else {
            continue;
        };
        let Some((name, expected)) = rest.split_once("`, expected ") else {
            continue;
        };
        // The expected names are the quoted ones: every other piece between backquotes.
        if let Some(s) = suggest(name, expected.split('`').skip(1).step_by(2)) {
            return format!("unknown {what} `{name}`, did you mean `{s}`?");
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::test_support::{FULL_EXAMPLE, assert_has, shown};

    #[test]
    fn syntax_errors_are_located_by_line_and_column() {
        let yaml = parse("name: t\nnodes:\n  - id: [unclosed\n").unwrap_err();
        assert_eq!(yaml.len(), 1);
        assert_eq!(yaml[0].path, "line 4, column 1");
        assert_eq!(
            yaml[0].message,
            // The context's own location stays: it points at the opening `[`.
            "invalid YAML: did not find expected ',' or ']', \
             while parsing a flow sequence at line 3 column 9"
        );

        let json = parse("{\n  \"name\": \"t\",\n  \"nodes\": [,]\n}").unwrap_err();
        assert_eq!(
            shown(&json),
            ["line 3, column 13: invalid JSON: expected value"]
        );

        assert_eq!(
            shown(&parse("# only a comment\n").unwrap_err()),
            ["document is empty"]
        );
    }

    #[test]
    fn a_document_that_is_no_mapping_says_what_a_team_is() {
        for (text, kind) in [
            ("42\n", "a number"),
            ("- name: t\n- name: u\n", "a list"),
            ("[1, 2]", "a list"),
            ("just some text", "a string"),
        ] {
            assert_eq!(
                shown(&parse(text).unwrap_err()),
                [format!(
                    "a team document must be a YAML mapping or a JSON object with the team's \
                     fields (`name`, `supervisor`, `nodes`, …), not {kind}"
                )],
                "{text:?}"
            );
        }
    }

    #[test]
    fn deserialization_errors_name_the_field_path() {
        let typo = FULL_EXAMPLE.replace("tools: [alertmanager", "tols: [alertmanager");
        let errors = shown(&parse(&typo).unwrap_err());
        assert_eq!(
            errors,
            ["nodes[1].agents[0].tols: unknown field `tols`, did you mean `tools`?"]
        );

        let bad_type = FULL_EXAMPLE.replace("timeout_seconds: 600", "timeout_seconds: soon");
        assert_has(
            &shown(&parse(&bad_type).unwrap_err()),
            "limits.timeout_seconds",
            "invalid type: string \"soon\", expected u32",
        );

        let bad_model = FULL_EXAMPLE.replace("model: [default, builtin:rules]", "model: {}");
        assert_has(
            &shown(&parse(&bad_model).unwrap_err()),
            "supervisor.model",
            "expected a model name or a list of model names",
        );

        let bad_pattern = FULL_EXAMPLE.replace("pattern: hierarchical", "pattern: hierarchal");
        assert_has(
            &shown(&parse(&bad_pattern).unwrap_err()),
            "pattern",
            "did you mean `hierarchical`?",
        );

        let missing = FULL_EXAMPLE.replace("kind: service", "");
        assert_has(
            &shown(&parse(&missing).unwrap_err()),
            "nodes[1]",
            "missing field `kind`",
        );
    }

    #[test]
    fn a_type_error_deep_in_the_document_has_its_full_path() {
        let yaml = FULL_EXAMPLE.replace("tools: [alertmanager_alerts, topology]", "tools: x");
        assert_eq!(
            shown(&parse(&yaml).unwrap_err()),
            [r#"nodes[1].agents[0].tools: invalid type: string "x", expected a sequence"#]
        );

        // The same path in JSON, where an agent is a list instead of an object.
        let json = r#"{"name": "t", "supervisor": {"model": "default"}, "nodes": [
            {"id": "a", "kind": "svc", "agents": [{"id": "x"}]},
            {"id": "b", "kind": "svc", "agents": [{"id": "y"}, ["z"]]}]}"#;
        assert_eq!(
            shown(&parse(json).unwrap_err()),
            ["nodes[1].agents[1]: invalid type: sequence, expected struct AgentSpec"]
        );

        // Without a near name, serde's list of the expected ones stays.
        let unknown = FULL_EXAMPLE.replace("role: Metrics", "severity: Metrics");
        assert_eq!(
            shown(&parse(&unknown).unwrap_err()),
            [
                "nodes[0].agents[0].severity: unknown field `severity`, expected one of \
                 `id`, `role`, `instructions`, `model`, `tools`"
            ]
        );
    }
}

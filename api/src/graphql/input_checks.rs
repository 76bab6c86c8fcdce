//! Checks on a request before the GraphQL machinery sees it: the parser and the
//! validator recurse on nesting, so nesting is bounded on the raw text first; strings
//! may not carry NUL (Postgres cannot store it); and a few facts about the parsed
//! document that limits need (selection depth, `login` fields, root fields).

use std::collections::HashSet;

use async_graphql::Variables;
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{Name, Positioned, Value as ConstValue};

/// Deepest nesting of `{ [ (` in a query's text, and of lists/objects in variables.
/// Far above any real query (the standard introspection query nests 13 levels);
/// far below what overflows a stack.
pub const MAX_NESTING: usize = 64;

/// Deepest selection set accepted, introspection (`__schema`, `__type`) excluded:
/// tools such as GraphiQL send a fixed introspection query deeper than this.
pub const MAX_DEPTH: usize = 12;

/// Line and column (1-based) of byte offset `at` in `text`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |n| before.len() - n - 1)
        + 1;
    (line, column)
}

/// Bounds bracket nesting and refuses NUL (raw, or escaped as `\u0000` / `\u{0}`) in
/// a query's text, without parsing it. Strings and comments are skipped for nesting.
pub fn check_query_text(query: &str) -> Result<(), String> {
    let b = query.as_bytes();
    let nul = |at: usize| {
        let (line, column) = position(query, at);
        format!(
            "query contains a NUL character (\\u0000) at line {line}, column {column}; strings may not contain NUL"
        )
    };
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            0 => return Err(nul(i)),
            b'#' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    if b[i] == 0 {
                        return Err(nul(i));
                    }
                    i += 1;
                }
            }
            b'"' if b[i..].starts_with(b"\"\"\"") => {
                // Block string: no escapes but `\"""`.
                i += 3;
                loop {
                    if i >= b.len() {
                        return Ok(()); // unterminated: the parser reports it
                    }
                    if b[i] == 0 {
                        return Err(nul(i));
                    }
                    if b[i..].starts_with(b"\\\"\"\"") {
                        i += 4;
                        continue;
                    }
                    if b[i..].starts_with(b"\"\"\"") {
                        i += 2;
                        break;
                    }
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    match b[i] {
                        0 => return Err(nul(i)),
                        b'\\' if b.get(i + 1) == Some(&b'u') => {
                            let start = i;
                            let (digits, len) = if b.get(i + 2) == Some(&b'{') {
                                let end = b[i + 3..].iter().position(|c| *c == b'}');
                                match end {
                                    Some(e) => (&b[i + 3..i + 3 + e], e + 4),
                                    None => (&b[0..0], 2),
                                }
                            } else {
                                let end = (i + 6).min(b.len());
                                (&b[i + 2..end], end - i)
                            };
                            let value = std::str::from_utf8(digits)
                                .ok()
                                .and_then(|d| u32::from_str_radix(d, 16).ok());
                            if value == Some(0) {
                                return Err(nul(start));
                            }
                            i += len.max(2);
                            continue;
                        }
                        b'\\' => i += 1,
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    let (line, column) = position(query, i);
                    return Err(format!(
                        "query nests deeper than {MAX_NESTING} levels (at line {line}, column {column})"
                    ));
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Bounds nesting and refuses NUL in variables; the error names the variable path.
pub fn check_variables(variables: &Variables) -> Result<(), String> {
    fn walk(v: &ConstValue, path: &mut String, depth: usize) -> Result<(), String> {
        if depth > MAX_NESTING {
            return Err(format!(
                "variables nest deeper than {MAX_NESTING} levels at {path}"
            ));
        }
        match v {
            ConstValue::String(s) if s.contains('\0') => {
                Err(format!("{path}: strings may not contain NUL (\\u0000)"))
            }
            ConstValue::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(item, path, depth + 1)?;
                    path.truncate(len);
                }
                Ok(())
            }
            ConstValue::Object(map) => {
                for (k, item) in map {
                    if k.contains('\0') {
                        return Err(format!("{path}: keys may not contain NUL (\\u0000)"));
                    }
                    let len = path.len();
                    path.push('.');
                    path.push_str(k);
                    walk(item, path, depth + 1)?;
                    path.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    for (name, value) in variables.iter() {
        let mut path = format!("variables.{name}");
        walk(value, &mut path, 1)?;
    }
    Ok(())
}

/// Visits the selections of a selection set, inlining fragments (each at most once
/// per path, so a cyclic document cannot loop).
fn for_each_field<'a>(
    doc: &'a ExecutableDocument,
    set: &'a Positioned<SelectionSet>,
    seen: &mut HashSet<&'a Name>,
    f: &mut dyn FnMut(&'a Name, &'a Positioned<SelectionSet>),
) {
    for selection in &set.node.items {
        match &selection.node {
            Selection::Field(field) => f(&field.node.name.node, &field.node.selection_set),
            Selection::InlineFragment(inline) => {
                for_each_field(doc, &inline.node.selection_set, seen, f)
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                if let Some(fragment) = doc.fragments.get(name)
                    && seen.insert(name)
                {
                    for_each_field(doc, &fragment.node.selection_set, seen, f);
                    seen.remove(name);
                }
            }
        }
    }
}

/// The deepest field nesting of any operation, not counting introspection subtrees.
pub fn selection_depth(doc: &ExecutableDocument) -> usize {
    fn depth<'a>(
        doc: &'a ExecutableDocument,
        set: &'a Positioned<SelectionSet>,
        seen: &mut HashSet<&'a Name>,
    ) -> usize {
        let mut children = Vec::new();
        for_each_field(doc, set, seen, &mut |name, sub| {
            if name.as_str() != "__schema" && name.as_str() != "__type" {
                children.push(sub);
            }
        });
        children
            .into_iter()
            .map(|sub| {
                if sub.node.items.is_empty() {
                    1
                } else {
                    1 + depth(doc, sub, seen)
                }
            })
            .max()
            .unwrap_or(0)
    }
    doc.operations
        .iter()
        .map(|(_, op)| depth(doc, &op.node.selection_set, &mut HashSet::new()))
        .max()
        .unwrap_or(0)
}

/// Root fields named `name` over every operation of the document, aliases included.
pub fn count_root_fields_named(doc: &ExecutableDocument, name: &str) -> usize {
    let mut n = 0;
    for (_, op) in doc.operations.iter() {
        for_each_field(
            doc,
            &op.node.selection_set,
            &mut HashSet::new(),
            &mut |f, _| {
                if f.as_str() == name {
                    n += 1;
                }
            },
        );
    }
    n
}

/// The operation a request executes: named, or the only one.
fn selected<'a>(
    doc: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'a Positioned<async_graphql::parser::types::OperationDefinition>> {
    let mut ops = doc.operations.iter();
    match operation_name {
        Some(wanted) => ops
            .find(|(name, _)| name.is_some_and(|n| n.as_str() == wanted))
            .map(|(_, op)| op),
        None => {
            let first = ops.next()?;
            ops.next().is_none().then_some(first.1)
        }
    }
}

pub fn is_mutation(doc: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    selected(doc, operation_name).is_some_and(|op| op.node.ty == OperationType::Mutation)
}

/// Root fields (aliases included) of the executed operation when it is a mutation,
/// not counting `skip`: a mutation limit charges every one of them.
pub fn mutation_root_fields(doc: &ExecutableDocument, operation_name: Option<&str>) -> Vec<String> {
    let Some(op) = selected(doc, operation_name) else {
        return Vec::new();
    };
    if op.node.ty != OperationType::Mutation {
        return Vec::new();
    }
    let mut names = Vec::new();
    for_each_field(
        doc,
        &op.node.selection_set,
        &mut HashSet::new(),
        &mut |f, _| names.push(f.to_string()),
    );
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_bounded_before_parsing() {
        let deep = format!(
            "{{ health(x: {}1{}) }}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let err = check_query_text(&deep).unwrap_err();
        assert!(err.contains("deeper than 64"), "{err}");
        let fine = format!("{{ health(x: {}1{}) }}", "[".repeat(40), "]".repeat(40));
        check_query_text(&fine).unwrap();
        // Brackets inside strings and comments do not count.
        let text = format!("# {}\n{{ a(s: \"{}\") }}", "{".repeat(100), "[".repeat(100));
        check_query_text(&text).unwrap();
    }

    #[test]
    fn nul_is_refused_in_every_spelling() {
        for q in [
            "{ login(username: \"a\\u0000\") { token } }",
            "{ login(username: \"a\\u{0}\") { token } }",
            "{ a(s: \"x\0\") }",
        ] {
            let err = check_query_text(q).unwrap_err();
            assert!(err.contains("NUL"), "{q}: {err}");
        }
        check_query_text("{ a(s: \"\\u0041 \\\" \\\\u0000\") }").unwrap();
        let vars = Variables::from_json(serde_json::json!({ "input": { "a": ["ok", "b\u{0}"] } }));
        let err = check_variables(&vars).unwrap_err();
        assert!(err.contains("variables.input.a[1]"), "{err}");
    }

    #[test]
    fn depth_skips_introspection_and_counts_fragments() {
        let doc = async_graphql::parser::parse_query(
            "query { a { b { c } } __schema { types { fields { type { ofType { ofType { ofType { name } } } } } } } }",
        )
        .unwrap();
        assert_eq!(selection_depth(&doc), 3);
        let doc =
            async_graphql::parser::parse_query("query { a { ...F } } fragment F on T { b { c } }")
                .unwrap();
        assert_eq!(selection_depth(&doc), 3);
    }

    #[test]
    fn counts_aliased_logins_and_mutation_fields() {
        let doc = async_graphql::parser::parse_query(
            "mutation { a: login(username: \"x\", password: \"y\") { token } b: login(username: \"x\", password: \"z\") { token } ...M } fragment M on Mutation { c: cancelRun(id: 1) { id } }",
        )
        .unwrap();
        assert_eq!(count_root_fields_named(&doc, "login"), 2);
        assert_eq!(mutation_root_fields(&doc, None).len(), 3);
        assert!(is_mutation(&doc, None));
    }
}

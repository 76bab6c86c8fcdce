//! Alertmanager-style label matchers (`name="value"`, `name!="value"`,
//! `name=~"regex"`, `name!~"regex"`), as in Alertmanager's own `matchers:` route
//! syntax: a team's `alertmanager.matchers` say which alert groups it investigates.
//!
//! Semantics are Alertmanager's: a missing label has the empty value, and regular
//! expressions are anchored at both ends (`=~"db|cache"` matches `db`, not `dbx`).

use std::collections::BTreeMap;
use std::fmt;

/// Longest value (or regular expression) of one matcher, in bytes.
pub const MAX_MATCHER_VALUE: usize = 1024;
/// Compiled size limit of one regular expression (the `regex` crate's measure).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One parsed matcher.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

impl Matcher {
    /// Reads `name<op>value`; the value may be double-quoted (with `\"`, `\\` and
    /// `\n` escapes) or bare. The error says what is wrong, without a path.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let text = text.trim();
        let name_len = text
            .char_indices()
            .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
            .map_or(text.len(), |(i, _)| i);
        let (name, rest) = text.split_at(name_len);
        if name.is_empty() {
            return Err(format!(
                "{text:?} is not a matcher: expected a label name, then =, !=, =~ or !~, then a \
                 value, e.g. service=\"checkout\""
            ));
        }
        let rest = rest.trim_start();
        let (op, rest) = [
            ("=~", MatchOp::Regex),
            ("!~", MatchOp::NotRegex),
            ("!=", MatchOp::NotEqual),
            ("=", MatchOp::Equal),
        ]
        .into_iter()
        .find_map(|(token, op)| rest.strip_prefix(token).map(|r| (op, r)))
        .ok_or_else(|| {
            format!("{text:?}: expected =, !=, =~ or !~ after the label name {name:?}")
        })?;
        let value = unquote(rest.trim()).map_err(|e| format!("{text:?}: {e}"))?;
        if value.len() > MAX_MATCHER_VALUE {
            return Err(format!(
                "{name}: the value is {} bytes long, at most {MAX_MATCHER_VALUE} allowed",
                value.len()
            ));
        }
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| format!("{name}: invalid regular expression {value:?}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value,
            regex,
        })
    }

    /// Whether `labels` satisfy this matcher (a missing label is the empty value).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(value),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(value),
            // Regex matchers are built with their expression.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }

    /// Whether every matcher of `all` holds (and there is at least one).
    pub fn all_match(all: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
        !all.is_empty() && all.iter().all(|m| m.matches(labels))
    }
}

/// A double-quoted value with its escapes resolved, or a bare value as it is.
fn unquote(text: &str) -> Result<String, String> {
    let Some(body) = text.strip_prefix('"') else {
        if text.contains('"') {
            return Err("a value with a quote must be quoted as a whole".to_owned());
        }
        return Ok(text.to_owned());
    };
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                return if chars.as_str().trim().is_empty() {
                    Ok(out)
                } else {
                    Err(format!(
                        "unexpected {:?} after the closing quote",
                        chars.as_str().trim()
                    ))
                };
            }
            '\\' => match chars.next() {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                other => {
                    return Err(format!(
                        "unknown escape \\{} (use \\\", \\\\ or \\n)",
                        other.map(String::from).unwrap_or_default()
                    ));
                }
            },
            c => out.push(c),
        }
    }
    Err("the quoted value has no closing quote".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_four_operators_with_alertmanager_semantics() {
        let l = labels(&[("service", "checkout"), ("severity", "critical")]);
        let m = |s: &str| Matcher::parse(s).unwrap().matches(&l);
        assert!(m(r#"service="checkout""#));
        assert!(m("service = checkout"));
        assert!(!m(r#"service!="checkout""#));
        assert!(m(r#"severity=~"critical|page""#));
        // Anchored: a prefix is no match.
        assert!(!m(r#"service=~"check""#));
        assert!(m(r#"service!~"cart.*""#));
        // A missing label is the empty value.
        assert!(m(r#"env!="prod""#));
        assert!(m(r#"env="""#));
        assert!(!m(r#"env=~".+""#));
    }

    #[test]
    fn quoted_values_and_escapes() {
        let parsed = Matcher::parse(r#"summary="say \"hi\"\\n""#).unwrap();
        assert_eq!(parsed.value, r#"say "hi"\n"#);
        assert_eq!(parsed.to_string(), r#"summary="say \"hi\"\\n""#);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (text, wanted) in [
            ("", "expected a label name"),
            ("=x", "expected a label name"),
            ("service", "expected =, !=, =~ or !~"),
            ("service~x", "expected =, !=, =~ or !~"),
            (r#"service="x"y"#, "after the closing quote"),
            (r#"service="x"#, "no closing quote"),
            (r#"a=~"(""#, "invalid regular expression"),
            (r#"a="\t""#, "unknown escape"),
            ("a=b\"c", "must be quoted"),
        ] {
            let e = Matcher::parse(text).unwrap_err();
            assert!(e.contains(wanted), "{text:?}: {e}");
        }
        let long = format!("a={}", "x".repeat(MAX_MATCHER_VALUE + 1));
        assert!(Matcher::parse(&long).unwrap_err().contains("at most 1024"));
    }

    #[test]
    fn all_match_needs_one_matcher_at_least() {
        let l = labels(&[("a", "1")]);
        assert!(!Matcher::all_match(&[], &l));
        let all = [
            Matcher::parse("a=1").unwrap(),
            Matcher::parse("b!=2").unwrap(),
        ];
        assert!(Matcher::all_match(&all, &l));
    }
}

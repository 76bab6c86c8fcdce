//! What both databases can store. Postgres refuses NUL (`\u0000`) in text and JSON
//! strings, and timestamps past year 9999 do not survive our text encodings; values
//! that come from outside (run inputs, tool output, a model's text) are checked
//! before they are queued for a write, so a bad value fails only its own step or
//! request, with a message that says where.

use chrono::{DateTime, Datelike, Utc};
use serde_json::Value as Json;

/// Refuses NUL anywhere in `value` (strings and keys); the error names the path.
pub fn check_json(value: &Json, path: &str) -> Result<(), String> {
    fn walk(v: &Json, path: &mut String) -> Result<(), String> {
        match v {
            Json::String(s) if s.contains('\0') => {
                Err(format!("{path}: text may not contain NUL (\\u0000)"))
            }
            Json::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            Json::Object(map) => {
                for (k, item) in map {
                    if k.contains('\0') {
                        return Err(format!("{path}: keys may not contain NUL (\\u0000)"));
                    }
                    let len = path.len();
                    path.push('.');
                    path.push_str(k);
                    walk(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    walk(value, &mut path.to_owned())
}

/// Refuses NUL in a text field.
pub fn check_text(value: &str, path: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err(format!("{path}: text may not contain NUL (\\u0000)"));
    }
    Ok(())
}

/// Refuses timestamps outside years 1–9999.
pub fn check_time(value: DateTime<Utc>, path: &str) -> Result<(), String> {
    if !(1..=9999).contains(&value.year()) {
        return Err(format!("{path}: {value} is outside years 1 to 9999"));
    }
    Ok(())
}

/// `text` with every NUL replaced, for messages we compose from others' text
/// (an error a tool returned) and must be able to store.
pub fn scrub(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_owned()
    }
}

/// `now + duration`, saturating far below the year-9999 limit instead of overflowing
/// (an overflow used to wrap a huge sleep into "now").
pub fn after(now: DateTime<Utc>, duration: std::time::Duration) -> DateTime<Utc> {
    /// Ten years: any wait this long is beyond every deadline anyway.
    const MAX: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 24 * 3600);
    let d = chrono::Duration::from_std(duration.min(MAX)).unwrap_or(chrono::Duration::zero());
    now.checked_add_signed(d).unwrap_or(now)
}

/// `now - duration`, saturating like [`after`].
pub fn before(now: DateTime<Utc>, duration: std::time::Duration) -> DateTime<Utc> {
    const MAX: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 24 * 3600);
    let d = chrono::Duration::from_std(duration.min(MAX)).unwrap_or(chrono::Duration::zero());
    now.checked_sub_signed(d).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_nul_with_its_path() {
        let err = check_json(&json!({ "a": [1, { "b": "x\u{0}" }] }), "input").unwrap_err();
        assert_eq!(err, "input.a[1].b: text may not contain NUL (\\u0000)");
        assert!(check_json(&json!({ "a": "fine" }), "input").is_ok());
        assert!(check_text("x\0", "error").is_err());
        assert_eq!(scrub("a\0b"), "a\u{FFFD}b");
    }

    #[test]
    fn after_saturates() {
        let now = Utc::now();
        let far = after(now, std::time::Duration::from_millis(u64::MAX));
        assert!(far > now && far.year() < 9999);
        assert!(check_time(far, "t").is_ok());
    }
}

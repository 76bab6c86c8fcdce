//! What a model server's refusal means, decided where it happens (the rules of the
//! reference SDKs, design notes §1): wait and retry, move on to the next model of the
//! fallback list, or stop. A caller never reads the message to decide.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde_json::Value as Json;

/// A server-directed wait longer than this is not waited for: the next model is tried.
pub const MAX_SERVER_DELAY: Duration = Duration::from_secs(120);

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The same call may succeed later; wait `after` when the server said so.
    Retry { after: Option<Duration> },
    /// This model will not answer soon (quota, unknown model, a long server delay):
    /// try the next model of the list.
    FailOver,
    /// The request is wrong for any model (bad request, content filter, credentials).
    Permanent,
    /// The server rejects `stream_options`: send the call once more without it.
    WithoutStreamOptions,
}

/// A classified failure: the verdict and a message for people (the server's words).
#[derive(Clone, Debug, PartialEq)]
pub struct Classified {
    pub verdict: Verdict,
    pub message: String,
}

/// Classifies an HTTP error answer of `server` (e.g. `OpenAI at https://…`).
pub fn classify(
    server: &str,
    status: u16,
    headers: &HeaderMap,
    body: &str,
    now: DateTime<Utc>,
) -> Classified {
    let (said, code) = error_of(body);
    let message = format!("{server} answered {status}: {said}");
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delay = server_delay(header("retry-after-ms"), header("retry-after"), now);
    let lower = format!("{said} {code}").to_ascii_lowercase();
    let verdict = match header("x-should-retry") {
        Some("true") => retry(delay),
        Some("false") => Verdict::Permanent,
        _ => match status {
            400 if lower.contains("stream_options") => Verdict::WithoutStreamOptions,
            422 if lower.contains("stream_options") => Verdict::WithoutStreamOptions,
            400 | 413
                if lower.contains("context_length")
                    || lower.contains("context length")
                    || lower.contains("maximum context")
                    || lower.contains("too many tokens")
                    || lower.contains("prompt is too long") =>
            {
                return Classified {
                    verdict: Verdict::Permanent,
                    message: format!(
                        "{message} (the conversation is longer than the model's context window)"
                    ),
                };
            }
            429 if lower.contains("insufficient_quota") => Verdict::FailOver,
            404 => Verdict::FailOver,
            408 | 409 | 425 | 429 => retry(delay),
            500..=599 => retry(delay),
            _ => Verdict::Permanent,
        },
    };
    Classified { verdict, message }
}

fn retry(delay: Option<Duration>) -> Verdict {
    match delay {
        Some(d) if d > MAX_SERVER_DELAY => Verdict::FailOver,
        after => Verdict::Retry { after },
    }
}

/// `retry-after-ms`, then `retry-after` in seconds (a float), then as an HTTP date.
pub fn server_delay(
    millis: Option<&str>,
    after: Option<&str>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    if let Some(ms) = millis.and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let after = after?.trim();
    if let Ok(secs) = after.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = DateTime::parse_from_rfc2822(after)
        .ok()?
        .with_timezone(&Utc);
    (at - now).to_std().ok()
}

/// The server's own message and code from `{"error": {message, type, code}}` (OpenAI)
/// or `{"type": "error", "error": {type, message}}` (Anthropic); else an excerpt.
fn error_of(body: &str) -> (String, String) {
    let parsed: Option<Json> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().map(|v| &v["error"]);
    match error {
        Some(e) if e.is_object() => {
            let text = |k: &str| match &e[k] {
                Json::String(s) => s.clone(),
                Json::Null => String::new(),
                other => other.to_string(),
            };
            let code = [text("code"), text("type")]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            (text("message"), code)
        }
        _ => (body.chars().take(300).collect(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    fn verdict(status: u16, h: &[(&str, &str)], body: &str) -> Verdict {
        classify("OpenAI", status, &headers(h), body, Utc::now()).verdict
    }

    #[test]
    fn the_reference_rules() {
        let rate = r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
        assert_eq!(
            verdict(
                429,
                &[("retry-after-ms", "1500"), ("retry-after", "9")],
                rate
            ),
            Verdict::Retry {
                after: Some(Duration::from_millis(1500))
            }
        );
        assert_eq!(
            verdict(429, &[("retry-after", "2.5")], rate),
            Verdict::Retry {
                after: Some(Duration::from_millis(2500))
            }
        );
        assert_eq!(
            verdict(429, &[("retry-after", "600")], rate),
            Verdict::FailOver
        );
        let quota = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota"}}"#;
        assert_eq!(verdict(429, &[], quota), Verdict::FailOver);
        for status in [408, 409, 425, 500, 502, 503, 529] {
            assert_eq!(
                verdict(status, &[], "oops"),
                Verdict::Retry { after: None },
                "{status}"
            );
        }
        assert_eq!(verdict(404, &[], "no such model"), Verdict::FailOver);
        for status in [400, 401, 403, 422] {
            assert_eq!(verdict(status, &[], "{}"), Verdict::Permanent, "{status}");
        }
        assert_eq!(
            verdict(503, &[("x-should-retry", "false")], ""),
            Verdict::Permanent
        );
        assert_eq!(
            verdict(400, &[("x-should-retry", "true")], ""),
            Verdict::Retry { after: None }
        );
        let groq = r#"{"error":{"message":"property 'stream_options' is unsupported"}}"#;
        assert_eq!(verdict(400, &[], groq), Verdict::WithoutStreamOptions);
    }

    #[test]
    fn context_length_is_permanent_and_said_plainly() {
        let body = r#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#;
        let c = classify(
            "OpenAI at https://api.openai.com/v1/",
            400,
            &HeaderMap::new(),
            body,
            Utc::now(),
        );
        assert_eq!(c.verdict, Verdict::Permanent);
        assert!(c.message.starts_with("OpenAI at https://api.openai.com/v1/ answered 400: This model's maximum context length"), "{}", c.message);
        assert!(
            c.message
                .ends_with("(the conversation is longer than the model's context window)")
        );
    }

    #[test]
    fn anthropic_overload_and_http_dates() {
        let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let c = classify("Anthropic", 529, &HeaderMap::new(), body, Utc::now());
        assert_eq!(c.verdict, Verdict::Retry { after: None });
        assert_eq!(c.message, "Anthropic answered 529: Overloaded");
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            server_delay(None, Some("Tue, 01 Dec 2026 10:00:30 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            server_delay(None, Some("Tue, 01 Dec 2026 09:00:00 GMT"), now),
            None
        );
        assert_eq!(server_delay(Some("junk"), Some("soon"), now), None);
    }
}

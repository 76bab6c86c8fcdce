//! What went wrong with a tool call, classified where it happened: a caller (the
//! agent loop, a step) decides between "wait and try again" and "tell the model"
//! from the kind alone, never by reading the message.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// A failed tool call. The message is meant for the model and the operator: it says
/// what the server said and what was asked (the PromQL), never credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The same call may succeed later (unreachable, overloaded, rate limited);
    /// `retry_after` is the server's own hint when it gave one.
    Retryable { retry_after: Option<Duration> },
    /// The call itself is wrong (bad PromQL, bad parameters, not found): repeating
    /// it gives the same answer.
    Permanent,
}

pub type Result<T, E = ToolError> = std::result::Result<T, E>;

impl ToolError {
    pub fn permanent(message: impl Into<String>) -> ToolError {
        ToolError {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }

    pub fn retryable(message: impl Into<String>, retry_after: Option<Duration>) -> ToolError {
        ToolError {
            kind: ErrorKind::Retryable { retry_after },
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Retryable { .. })
    }
}

/// The kind an HTTP error status means: 429 and 5xx are the server's trouble (or
/// its limit) and pass; other statuses are the request's fault.
pub fn kind_of_status(status: StatusCode, headers: &HeaderMap, now: DateTime<Utc>) -> ErrorKind {
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, now));
        ErrorKind::Retryable { retry_after }
    } else {
        ErrorKind::Permanent
    }
}

/// A `Retry-After` value: delay seconds or an HTTP-date (a date in the past means
/// now). `None` when it is neither.
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// A request that got no HTTP answer. Connection failures and timeouts pass; a
/// request that could not even be built will not get better. The URL is dropped
/// from reqwest's text (it may carry credentials); `what` names the server.
pub fn transport(what: &str, error: reqwest::Error) -> ToolError {
    let permanent = error.is_builder();
    let message = format!("{what}: {}", error_chain(&error.without_url()));
    if permanent {
        ToolError::permanent(message)
    } else {
        ToolError::retryable(message, None)
    }
}

/// An error with its sources (reqwest's own text is often just "error sending
/// request"; the cause, such as "Connection refused", is in the chain).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .expect("date")
            .with_timezone(&Utc)
    }

    fn with_retry_after(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).expect("header"));
        headers
    }

    #[test]
    fn rate_limits_and_server_errors_pass_with_their_hint() {
        let kind = kind_of_status(StatusCode::TOO_MANY_REQUESTS, &with_retry_after("7"), now());
        assert_eq!(
            kind,
            ErrorKind::Retryable {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        let kind = kind_of_status(
            StatusCode::SERVICE_UNAVAILABLE,
            &with_retry_after("Wed, 21 Oct 2015 07:28:30 GMT"),
            now(),
        );
        assert_eq!(
            kind,
            ErrorKind::Retryable {
                retry_after: Some(Duration::from_secs(30))
            }
        );
        let kind = kind_of_status(StatusCode::BAD_GATEWAY, &HeaderMap::new(), now());
        assert_eq!(kind, ErrorKind::Retryable { retry_after: None });
    }

    #[test]
    fn client_errors_are_permanent() {
        for status in [400, 401, 403, 404, 422] {
            let status = StatusCode::from_u16(status).expect("status");
            let kind = kind_of_status(status, &with_retry_after("5"), now());
            assert_eq!(kind, ErrorKind::Permanent, "{status}");
        }
    }

    #[test]
    fn retry_after_in_the_past_or_unreadable() {
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now()), None);
        assert_eq!(retry_after("-3", now()), None);
    }
}

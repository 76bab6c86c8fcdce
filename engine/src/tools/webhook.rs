//! The `webhook_action` tool's call: an approved action posted to the remediation
//! webhook an admin configured, signed so the receiver can tell it came from this
//! installation, with an idempotency key so that a repeated call acts once.
//!
//! The request (documented in the README for receivers): `POST <url>` with the
//! payload's exact JSON bytes and
//! - `Content-Type: application/json`
//! - `Idempotency-Key: <key>` (the same on every attempt of one action)
//! - `X-Aiops-Timestamp: <unix seconds>`
//! - `X-Aiops-Signature: sha256=<lowercase hex HMAC-SHA256(secret, timestamp "." body)>`
//!
//! Redirects are not followed: the signed request goes to the configured URL or
//! nowhere.

use chrono::{SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use sha2::Sha256;

use super::endpoint::Endpoint;
use super::error::{Result, ToolError};
use crate::secrets::Secret;
use crate::{RunId, WebhookTarget};

/// The version of the payload's shape; receivers should refuse versions they do not know.
pub const PAYLOAD_VERSION: u64 = 1;
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
pub const SIGNATURE_HEADER: &str = "X-Aiops-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Aiops-Timestamp";
/// A receiver's JSON answer larger than this is summarised (status and an excerpt):
/// the answer goes to a model.
const MAX_ANSWER: usize = 64 * 1024;

/// What is posted for an action: `{"version":1,"run","team","node","action","args",
/// "idempotency_key","sent_at"}`.
pub fn action_payload(
    run_id: RunId,
    team: &str,
    node: &str,
    action: &str,
    args: &Value,
    idempotency_key: &str,
) -> Value {
    json!({
        "version": PAYLOAD_VERSION,
        "run": run_id.to_string(),
        "team": team,
        "node": node,
        "action": action,
        "args": args,
        "idempotency_key": idempotency_key,
        "sent_at": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    })
}

/// Posts `payload` to `target`, signed with its secret. The receiver's JSON answer
/// comes back (or `{"status": <code>}` when it sent none, with an excerpt of any
/// other body). Unreachable, timeouts, 429 and 5xx are retryable (with the server's
/// Retry-After); other statuses, redirects included, are permanent.
pub async fn post_action(
    target: &WebhookTarget,
    payload: &Value,
    idempotency_key: &str,
) -> Result<Value> {
    let server = format!("webhook \"{}\"", target.name);
    let endpoint = Endpoint::without_redirects(&server, &target.url, target.timeout)?;
    let body = serde_json::to_vec(payload)
        .map_err(|e| ToolError::permanent(format!("{server}: payload: {e}")))?;
    let timestamp = Utc::now().timestamp();
    let signature = sign(&target.secret, timestamp, &body)
        .map_err(|e| ToolError::permanent(format!("{server}: {e}")))?;
    let request = endpoint
        .request_to_base(Method::POST)
        .header(CONTENT_TYPE, "application/json")
        .header(IDEMPOTENCY_HEADER, header_safe(idempotency_key))
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, signature)
        .body(body);
    let answer = endpoint.send(request).await?;
    if !answer.status.is_success() {
        let mut error = endpoint.failure(&answer);
        if answer.status.is_redirection() {
            error
                .message
                .push_str(" (redirects are not followed: configure the final URL)");
        }
        return Err(error);
    }
    let status = answer.status.as_u16();
    if answer.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({ "status": status }));
    }
    match serde_json::from_slice::<Value>(&answer.body) {
        Ok(value) if answer.body.len() <= MAX_ANSWER => Ok(value),
        _ => Ok(json!({ "status": status, "body": answer.excerpt() })),
    }
}

/// `sha256=<lowercase hex HMAC-SHA256(secret, "<timestamp>." ‖ body)>`.
fn sign(
    secret: &Secret,
    timestamp: i64,
    body: &[u8],
) -> Result<String, hmac::digest::InvalidLength> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())?;
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256={hex}"))
}

/// The key as a header value: visible ASCII stays, every other byte (and `%`) is
/// percent-encoded, so a key is always sent, and always the same way.
fn header_safe(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed apart (Python's hmac): HMAC-SHA256("Jefe", "1700000000.{\"a\":1}").
        let signed = sign(&Secret::new("Jefe"), 1_700_000_000, br#"{"a":1}"#).expect("sign");
        assert_eq!(
            signed,
            "sha256=fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a"
        );
    }

    #[test]
    fn keys_become_header_values_unchanged_when_they_can() {
        let run = "0193a1b2-0000-7000-8000-000000000001/node:db/tool:call_1";
        assert_eq!(header_safe(run), run);
        assert_eq!(header_safe("a b%é"), "a%20b%25%C3%A9");
    }

    #[test]
    fn the_payload_is_versioned_and_carries_everything() {
        let run = RunId::new();
        let payload = action_payload(
            run,
            "payments",
            "db",
            "restart",
            &json!({"service": "pg"}),
            "k1",
        );
        assert_eq!(payload["version"], 1);
        assert_eq!(payload["run"], run.to_string());
        assert_eq!(
            (&payload["team"], &payload["node"], &payload["action"]),
            (&json!("payments"), &json!("db"), &json!("restart"))
        );
        assert_eq!(payload["args"], json!({"service": "pg"}));
        assert_eq!(payload["idempotency_key"], "k1");
        assert!(
            payload["sent_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
    }
}

//! What clients and the server say over a socket, whatever the subprotocol:
//! `transport_ws` and `legacy` translate their wire format to and from these.

use async_graphql::{Response, ServerError};
use serde_json::Value;

use super::close::Close;

/// Longest operation id accepted: ids are keys of a per-socket map.
pub(super) const MAX_ID_BYTES: usize = 256;

#[derive(Debug)]
pub(super) enum ClientMessage {
    /// `connection_init`, with its payload (`{}` when absent).
    Init(Value),
    /// `subscribe` / `start`: run an operation under `id`.
    Subscribe {
        id: String,
        request: Box<async_graphql::Request>,
    },
    /// `complete` / `stop`: the client no longer wants operation `id`.
    Stop {
        id: String,
    },
    Ping(Option<Value>),
    Pong,
    /// Legacy `connection_terminate`.
    Terminate,
}

#[derive(Debug)]
pub(super) enum ServerMessage<'a> {
    Ack,
    /// Legacy keep-alive (`ka`).
    KeepAlive,
    Pong(Option<Value>),
    /// One execution result.
    Next {
        id: &'a str,
        response: &'a Response,
    },
    /// The operation failed before executing (parse, validation, policy); nothing follows.
    Error {
        id: &'a str,
        errors: &'a [ServerError],
    },
    /// The operation's results have all been sent.
    Complete {
        id: &'a str,
    },
}

/// The object `payload` of a message, or `None` when absent or null.
pub(super) fn optional_object(msg: &mut Value, kind: &str) -> Result<Option<Value>, Close> {
    match msg.get_mut("payload").map(Value::take) {
        None | Some(Value::Null) => Ok(None),
        Some(p @ Value::Object(_)) => Ok(Some(p)),
        Some(_) => Err(Close::Invalid(format!("{kind} payload must be an object"))),
    }
}

/// The message's `id`: a non-empty string of at most [`MAX_ID_BYTES`].
pub(super) fn id(msg: &Value, kind: &str) -> Result<String, Close> {
    match msg.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() && id.len() <= MAX_ID_BYTES => Ok(id.to_owned()),
        Some(_) => Err(Close::Invalid(format!(
            "{kind} id must be 1 to {MAX_ID_BYTES} bytes"
        ))),
        None => Err(Close::Invalid(format!("{kind} needs a string id"))),
    }
}

/// The GraphQL request in a `subscribe`/`start` payload (`query`, and optionally
/// `operationName`, `variables`, `extensions`), as `POST /graphql` reads it.
pub(super) fn operation(msg: &mut Value, kind: &str) -> Result<async_graphql::Request, Close> {
    let payload = optional_object(msg, kind)?
        .ok_or_else(|| Close::Invalid(format!("{kind} needs a payload")))?;
    if !payload.get("query").is_some_and(Value::is_string) {
        return Err(Close::Invalid(format!(
            "{kind} payload needs a string query"
        )));
    }
    serde_json::from_value(payload)
        .map_err(|e| Close::Invalid(format!("invalid {kind} payload: {e}")))
}

/// The text of a message as a JSON object with a string `type`.
pub(super) fn envelope(text: &str) -> Result<(Value, String), Close> {
    let msg: Value = serde_json::from_str(text)
        .map_err(|e| Close::Invalid(format!("message is not JSON: {e}")))?;
    let kind = msg
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| Close::Invalid("message needs a string type".into()))?
        .to_owned();
    Ok((msg, kind))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn operations_need_an_id_and_a_query() {
        let mut ok = json!({ "id": "1", "payload": { "query": "{ health }", "variables": null } });
        assert_eq!(id(&ok, "subscribe").ok().as_deref(), Some("1"));
        assert_eq!(
            operation(&mut ok, "subscribe").map(|r| r.query).ok(),
            Some("{ health }".to_owned())
        );
        for bad in [
            json!({ "payload": { "query": "{ health }" } }),
            json!({ "id": "", "payload": { "query": "{ health }" } }),
            json!({ "id": "x".repeat(MAX_ID_BYTES + 1) }),
            json!({ "id": 1 }),
        ] {
            assert!(
                matches!(id(&bad, "subscribe"), Err(Close::Invalid(_))),
                "{bad}"
            );
        }
        for mut bad in [
            json!({ "id": "1" }),
            json!({ "id": "1", "payload": "{ health }" }),
            json!({ "id": "1", "payload": { "variables": {} } }),
            json!({ "id": "1", "payload": { "query": "{ health }", "variables": [1] } }),
        ] {
            let shown = bad.to_string();
            assert!(
                matches!(operation(&mut bad, "subscribe"), Err(Close::Invalid(_))),
                "{shown}"
            );
        }
    }

    #[test]
    fn envelopes_are_objects_with_a_type() {
        assert_eq!(
            envelope(r#"{"type":"ping"}"#).map(|(_, t)| t).ok(),
            Some("ping".into())
        );
        for bad in ["nope", "[]", r#"{"type":1}"#, "{}"] {
            assert!(matches!(envelope(bad), Err(Close::Invalid(_))), "{bad}");
        }
    }
}

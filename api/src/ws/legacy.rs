//! The legacy `graphql-ws` subprotocol of subscriptions-transport-ws:
//! `connection_init`/`connection_ack`/`ka`, `start`, `data`, `error`, `complete`,
//! `stop`, `connection_terminate`. It has no close codes: a fatal condition is told as
//! `connection_error`, then the socket closes with the graphql-transport-ws code.

use serde::Serialize;
use serde_json::Value;

use super::close::Close;
use super::message::{self, ClientMessage, ServerMessage};
use super::transport_ws::truncated;

pub(super) const NAME: &str = "graphql-ws";

pub(super) fn parse(text: &str) -> Result<ClientMessage, Close> {
    let (mut msg, kind) = message::envelope(text)?;
    Ok(match kind.as_str() {
        "connection_init" => ClientMessage::Init(
            message::optional_object(&mut msg, &kind)?
                .unwrap_or_else(|| Value::Object(Default::default())),
        ),
        "start" => ClientMessage::Subscribe {
            id: message::id(&msg, &kind)?,
            request: Box::new(message::operation(&mut msg, &kind)?),
        },
        "stop" => ClientMessage::Stop {
            id: message::id(&msg, &kind)?,
        },
        "connection_terminate" => ClientMessage::Terminate,
        other => {
            return Err(Close::Invalid(format!(
                "unknown message type {:?}",
                truncated(other)
            )));
        }
    })
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire<'a> {
    ConnectionAck,
    #[serde(rename = "ka")]
    KeepAlive,
    ConnectionError {
        payload: ErrorPayload,
    },
    Data {
        id: &'a str,
        payload: &'a async_graphql::Response,
    },
    Error {
        id: &'a str,
        payload: &'a [async_graphql::ServerError],
    },
    Complete {
        id: &'a str,
    },
}

#[derive(Serialize)]
struct ErrorPayload {
    message: String,
}

/// The text of `msg`, or `None` when this protocol has no such message.
pub(super) fn encode(msg: &ServerMessage<'_>) -> Option<serde_json::Result<String>> {
    let wire = match msg {
        ServerMessage::Ack => Wire::ConnectionAck,
        ServerMessage::KeepAlive => Wire::KeepAlive,
        ServerMessage::Pong(_) => return None,
        ServerMessage::Next { id, response } => Wire::Data {
            id,
            payload: response,
        },
        ServerMessage::Error { id, errors } => Wire::Error {
            id,
            payload: errors,
        },
        ServerMessage::Complete { id } => Wire::Complete { id },
    };
    Some(serde_json::to_string(&wire))
}

/// The `connection_error` that precedes closing the socket for `close`.
pub(super) fn connection_error(close: &Close) -> serde_json::Result<String> {
    serde_json::to_string(&Wire::ConnectionError {
        payload: ErrorPayload {
            message: close.reason(),
        },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_the_client_messages() {
        assert!(matches!(
            parse(r#"{"type":"start","id":"1","payload":{"query":"{ health }"}}"#),
            Ok(ClientMessage::Subscribe { id, request }) if id == "1" && request.query == "{ health }"
        ));
        assert!(matches!(
            parse(r#"{"type":"connection_terminate"}"#),
            Ok(ClientMessage::Terminate)
        ));
        for bad in [
            r#"{"type":"subscribe","id":"1","payload":{"query":"{ health }"}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"stop"}"#,
        ] {
            assert!(matches!(parse(bad), Err(Close::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn writes_the_server_messages() {
        let text = |m| encode(&m).and_then(Result::ok);
        assert_eq!(
            text(ServerMessage::KeepAlive).as_deref(),
            Some(r#"{"type":"ka"}"#)
        );
        assert_eq!(text(ServerMessage::Pong(None)), None);
        let err: Value =
            serde_json::from_str(&connection_error(&Close::Forbidden).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(
            err,
            json!({ "type": "connection_error", "payload": { "message": "Forbidden" } })
        );
    }
}

//! The `graphql-transport-ws` subprotocol (the graphql-ws library's; its
//! PROTOCOL.md): `connection_init`/`connection_ack`, `subscribe`, `next`, `error`,
//! `complete` both ways, `ping`/`pong`. Fatal conditions close the socket with a 44xx
//! code; nothing else is said.

use serde::Serialize;
use serde_json::Value;

use super::close::Close;
use super::message::{self, ClientMessage, ServerMessage};

pub(super) const NAME: &str = "graphql-transport-ws";

pub(super) fn parse(text: &str) -> Result<ClientMessage, Close> {
    let (mut msg, kind) = message::envelope(text)?;
    Ok(match kind.as_str() {
        "connection_init" => ClientMessage::Init(
            message::optional_object(&mut msg, &kind)?
                .unwrap_or_else(|| Value::Object(Default::default())),
        ),
        "subscribe" => ClientMessage::Subscribe {
            id: message::id(&msg, &kind)?,
            request: Box::new(message::operation(&mut msg, &kind)?),
        },
        "complete" => ClientMessage::Stop {
            id: message::id(&msg, &kind)?,
        },
        "ping" => ClientMessage::Ping(message::optional_object(&mut msg, &kind)?),
        "pong" => {
            message::optional_object(&mut msg, &kind)?;
            ClientMessage::Pong
        }
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
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        payload: Option<&'a Value>,
    },
    Next {
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

/// The text of `msg`, or `None` when this protocol has no such message.
pub(super) fn encode(msg: &ServerMessage<'_>) -> Option<serde_json::Result<String>> {
    let wire = match msg {
        ServerMessage::Ack => Wire::ConnectionAck,
        ServerMessage::KeepAlive => return None,
        ServerMessage::Pong(payload) => Wire::Pong {
            payload: payload.as_ref(),
        },
        ServerMessage::Next { id, response } => Wire::Next {
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

/// A client-chosen string, short enough to quote in a close reason.
pub(super) fn truncated(s: &str) -> String {
    s.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_the_client_messages() {
        assert!(matches!(
            parse(r#"{"type":"connection_init"}"#),
            Ok(ClientMessage::Init(p)) if p == json!({})
        ));
        assert!(matches!(
            parse(r#"{"type":"ping","payload":{"a":1}}"#),
            Ok(ClientMessage::Ping(Some(p))) if p == json!({ "a": 1 })
        ));
        assert!(matches!(
            parse(r#"{"type":"complete","id":"7"}"#),
            Ok(ClientMessage::Stop { id }) if id == "7"
        ));
        for bad in [
            r#"{"type":"start","id":"1","payload":{"query":"{ health }"}}"#,
            r#"{"type":"connection_init","payload":"token"}"#,
            r#"{"type":"complete"}"#,
        ] {
            assert!(matches!(parse(bad), Err(Close::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn writes_the_server_messages() {
        let text = |m| encode(&m).and_then(Result::ok);
        assert_eq!(
            text(ServerMessage::Ack).as_deref(),
            Some(r#"{"type":"connection_ack"}"#)
        );
        assert_eq!(
            text(ServerMessage::Pong(None)).as_deref(),
            Some(r#"{"type":"pong"}"#)
        );
        assert_eq!(text(ServerMessage::KeepAlive), None);
        assert_eq!(
            text(ServerMessage::Complete { id: "1" }).as_deref(),
            Some(r#"{"type":"complete","id":"1"}"#)
        );
    }
}

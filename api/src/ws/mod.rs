//! GraphQL over WebSocket at `/graphql/ws`, in both subprotocols: `graphql-transport-ws`
//! (`transport_ws`) and the legacy `graphql-ws` (`legacy`). The upgrade is refused
//! (503) when every socket slot is taken; messages and frames are capped at
//! [`MAX_BODY_BYTES`]; a socket authenticates in `connection_init` (`connection`) and
//! ends when its key stops being valid (`sessions`) or the server goes away.

mod close;
mod connection;
mod legacy;
mod message;
mod sessions;
mod transport_ws;

use axum::Extension;
use axum::extract::{FromRequestParts, State, WebSocketUpgrade};
use axum::http::header::SEC_WEBSOCKET_PROTOCOL;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub(crate) use sessions::Sessions;

use self::close::Close;
use self::message::{ClientMessage, ServerMessage};
use crate::graphql::error::BAD_REQUEST;
use crate::{AppState, ClientAddr, MAX_BODY_BYTES};

/// The subprotocol a socket speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    TransportWs,
    Legacy,
}

impl Protocol {
    fn named(name: &str) -> Option<Protocol> {
        if name.eq_ignore_ascii_case(transport_ws::NAME) {
            Some(Protocol::TransportWs)
        } else if name.eq_ignore_ascii_case(legacy::NAME) {
            Some(Protocol::Legacy)
        } else {
            None
        }
    }

    fn parse(self, text: &str) -> Result<ClientMessage, Close> {
        match self {
            Protocol::TransportWs => transport_ws::parse(text),
            Protocol::Legacy => legacy::parse(text),
        }
    }

    fn encode(self, msg: &ServerMessage<'_>) -> Option<serde_json::Result<String>> {
        match self {
            Protocol::TransportWs => transport_ws::encode(msg),
            Protocol::Legacy => legacy::encode(msg),
        }
    }
}

/// The first subprotocol offered in `Sec-WebSocket-Protocol` that we speak (names in
/// any case), with the name as the client wrote it, which the handshake echoes. None
/// offered: 400, as async-graphql-axum's `GraphQLProtocol` extractor answered.
pub(crate) struct Subprotocol(Protocol, HeaderValue);

impl<S: Send + Sync> FromRequestParts<S> for Subprotocol {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
        parts
            .headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .find_map(|name| {
                let protocol = Protocol::named(name)?;
                Some(Subprotocol(protocol, HeaderValue::from_str(name).ok()?))
            })
            .ok_or(StatusCode::BAD_REQUEST)
    }
}

pub(crate) async fn graphql_ws(
    State(state): State<AppState>,
    Subprotocol(protocol, name): Subprotocol,
    client: Option<Extension<ClientAddr>>,
    mut upgrade: WebSocketUpgrade,
) -> Response {
    // Held by the socket for its whole life.
    let Ok(permit) = state.websockets.clone().try_acquire_owned() else {
        let body = json!({ "errors": [{
            "message": "too many open WebSockets: try again later",
            "extensions": { "code": BAD_REQUEST },
        }] });
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    };
    upgrade.set_selected_protocol(name);
    let connection = connection::Connection {
        schema: state.schema.clone(),
        engine: state.engine.clone(),
        sessions: state.sessions.clone(),
        protocol,
        client: client.map(|Extension(c)| c),
        init_timeout: state.websocket_init_timeout,
        permit,
    };
    upgrade
        // Larger frames are refused from their header, before their payload is read.
        .max_frame_size(MAX_BODY_BYTES)
        .max_message_size(MAX_BODY_BYTES)
        .on_upgrade(move |socket| connection.serve(socket))
        .into_response()
}

//! GraphQL over WebSocket at `/graphql/ws` (`graphql-transport-ws` and legacy `graphql-ws`).

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};

use crate::{AppState, graphql};

pub(crate) async fn graphql_ws(
    State(state): State<AppState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let schema = state.schema.clone();
    let engine = state.engine.clone();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| {
            GraphQLWebSocket::new(stream, schema, protocol)
                // The token travels in connection_init; without a valid one the
                // server closes the socket (4403 Forbidden in graphql-transport-ws).
                .on_connection_init(move |payload| async move {
                    let token = graphql::auth::token_from_init(&payload).ok_or_else(|| {
                        async_graphql::Error::new(
                            "UNAUTHENTICATED: connection_init carries no token",
                        )
                    })?;
                    let principal = engine
                        .authenticate(&token)
                        .await
                        .map_err(|_| async_graphql::Error::new("UNAUTHENTICATED: invalid token"))?;
                    let mut data = async_graphql::Data::default();
                    data.insert(principal);
                    Ok(data)
                })
                .serve()
        })
        .into_response()
}

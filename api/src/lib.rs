//! The HTTP surface of AIOps Agent Executor — the only crate that knows HTTP,
//! WebSocket and GraphQL. Handlers parse, call the engine, convert.

pub mod graphql;

use std::net::SocketAddr;

use aiops_engine::Engine;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::cors::CorsLayer;
use tower_http::limit::RequestBodyLimitLayer;

pub use graphql::{AiopsSchema, sdl};

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
struct AppState {
    engine: Engine,
    schema: AiopsSchema,
}

/// Settings of the HTTP surface, loaded once by the binary.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Origins allowed to call the API from a browser (CORS); empty = same origin only.
    pub cors_origins: Vec<String>,
    /// Mutations one API key may make per minute.
    pub mutations_per_minute: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            mutations_per_minute: 600,
        }
    }
}

/// The application router with default settings. Tests drive it over a real socket.
pub fn app(engine: Engine) -> Router {
    app_with(engine, &ApiConfig::default())
}

pub fn app_with(engine: Engine, config: &ApiConfig) -> Router {
    let state = AppState {
        schema: graphql::schema(engine.clone(), config.mutations_per_minute),
        engine,
    };
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/graphql", post(graphql_http))
        .route("/graphql/ws", get(graphql_ws))
        .route("/graphiql", get(graphiql))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .with_state(state);
    if config.cors_origins.is_empty() {
        return router;
    }
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|o| o.parse().ok())
        .collect();
    router.layer(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([AUTHORIZATION, CONTENT_TYPE]),
    )
}

/// Liveness: the process answers.
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers too.
async fn readyz(State(state): State<AppState>) -> (StatusCode, axum::Json<serde_json::Value>) {
    match state.engine.ping().await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({ "status": "ready" }))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "status": "unavailable", "reason": "database unreachable" })),
            )
        }
    }
}

async fn graphql_http(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: GraphQLRequest,
) -> GraphQLResponse {
    let mut req = req.into_inner();
    if let Some(value) = headers.get(AUTHORIZATION) {
        let token = value
            .to_str()
            .map(graphql::auth::bearer)
            .unwrap_or_default();
        match state.engine.authenticate(token).await {
            Ok(principal) => req = req.data(principal),
            // A wrong token is an error even for public fields: never silently anonymous.
            Err(e) => {
                let err =
                    graphql::error::to_gql(e).into_server_error(async_graphql::Pos::default());
                return async_graphql::Response::from_errors(vec![err]).into();
            }
        }
    }
    let mut response = state.schema.execute(req).await;
    graphql::error::ensure_code(&mut response.errors);
    response.into()
}

async fn graphql_ws(
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

/// GraphiQL wired to `/graphql` and `/graphql/ws`, with a field for the API key.
async fn graphiql() -> Html<&'static str> {
    Html(include_str!("graphiql.html"))
}

/// Serves the API with default settings on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, engine, &ApiConfig::default(), shutdown).await
}

/// Serves the API with `config` on `listener` until `shutdown` resolves.
pub async fn serve_with(
    listener: TcpListener,
    engine: Engine,
    config: &ApiConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "HTTP API listening (GraphiQL at /graphiql)");
    // Without TCP_NODELAY, a frame sent before the client acknowledged the previous
    // one waits for a delayed ACK (up to 40 ms): live events would stutter.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, app_with(engine, config))
        .with_graceful_shutdown(shutdown)
        .await
}

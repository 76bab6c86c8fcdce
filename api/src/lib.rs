//! The HTTP surface of AIOps Agent Executor — the only crate that knows HTTP,
//! WebSocket and GraphQL. Handlers parse, call the engine, convert: GraphQL, the
//! Alertmanager webhook, health checks.

mod alertmanager;
mod console;
mod graphiql;
pub mod graphql;
mod http;
mod metrics;
mod server;
#[cfg(test)]
mod vendored;
mod ws;

use aiops_engine::Engine;
use aiops_engine::llm::client::LlmClient;
use axum::Router;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderValue, Method};
use axum::routing::{get, post};
use tower_http::cors::CorsLayer;

pub use graphql::{AiopsSchema, sdl};
pub use server::{ClientAddr, serve, serve_with};

/// Largest request body accepted, in bytes (HTTP bodies and WebSocket messages).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the API serves from: the engine, and the process's model client (one
/// connection pool, one set of circuit breakers). Build the client once per process
/// and hand the same one to whatever else calls models (the workflows), so
/// `llmBreakers` shows the breakers every call goes through.
#[derive(Clone)]
pub struct Services {
    pub engine: Engine,
    pub llm: LlmClient,
}

impl Services {
    pub fn new(engine: Engine, llm: LlmClient) -> Self {
        Self { engine, llm }
    }
}

/// The engine with the process's shared model client
/// ([`aiops_engine::llm::shared_client`], the one the investigation workflow uses).
impl From<Engine> for Services {
    fn from(engine: Engine) -> Self {
        Self::new(engine, aiops_engine::llm::shared_client().clone())
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub engine: Engine,
    /// The process's model client: `/metrics` shows its breakers.
    pub llm: LlmClient,
    /// When set, `/metrics` requires it as a bearer token.
    pub metrics_token: Option<std::sync::Arc<aiops_engine::secrets::Secret>>,
    pub schema: AiopsSchema,
    /// Open WebSockets; a new one waits for no slot: it is refused.
    pub websockets: std::sync::Arc<tokio::sync::Semaphore>,
    pub websocket_init_timeout: std::time::Duration,
    /// Open sockets by API key, for closing them when their key stops being valid.
    pub sessions: ws::Sessions,
    /// Cancels the sockets' token when the last router clone goes, i.e. when the
    /// server is gone: sockets hold no `AppState`, so they cannot keep it alive.
    pub _sockets_end_with_server: std::sync::Arc<tokio_util::sync::DropGuard>,
}

/// Settings of the HTTP surface, loaded once by the binary.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Origins allowed to call the API from a browser (CORS); empty = same origin only.
    pub cors_origins: Vec<String>,
    /// Mutations one API key may make per minute.
    pub mutations_per_minute: u32,
    /// Login attempts per minute per username; each client address gets three times this.
    pub login_attempts_per_minute: u32,
    /// Open TCP connections at most; more are closed at once.
    pub max_connections: usize,
    /// Open WebSockets at most (they count apart from HTTP connections once upgraded).
    pub max_websockets: usize,
    /// A client must send a request's headers within this time (also: idle keep-alive).
    pub header_read_timeout: std::time::Duration,
    /// A WebSocket must send `connection_init` within this time.
    pub websocket_init_timeout: std::time::Duration,
    /// `GET /metrics` requires `Authorization: Bearer <this>` when set; without it
    /// the endpoint is open, as Prometheus scrapes by default.
    pub metrics_token: Option<aiops_engine::secrets::Secret>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            mutations_per_minute: 600,
            login_attempts_per_minute: 10,
            max_connections: 1024,
            max_websockets: 1024,
            header_read_timeout: std::time::Duration::from_secs(10),
            websocket_init_timeout: std::time::Duration::from_secs(10),
            metrics_token: None,
        }
    }
}

/// The application router with default settings. Tests drive it over a real socket.
pub fn app(services: impl Into<Services>) -> Router {
    app_with(services, &ApiConfig::default())
}

pub fn app_with(services: impl Into<Services>, config: &ApiConfig) -> Router {
    let services = services.into();
    let engine = services.engine.clone();
    let llm = services.llm.clone();
    let server_gone = tokio_util::sync::CancellationToken::new();
    let state = AppState {
        schema: graphql::schema(services, config),
        sessions: ws::Sessions::new(engine.clone(), server_gone.clone()),
        engine,
        llm,
        metrics_token: config.metrics_token.clone().map(std::sync::Arc::new),
        websockets: std::sync::Arc::new(tokio::sync::Semaphore::new(config.max_websockets.max(1))),
        websocket_init_timeout: config.websocket_init_timeout,
        _sockets_end_with_server: std::sync::Arc::new(server_gone.drop_guard()),
    };
    let router = Router::new()
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/graphql", get(http::graphql_get).post(http::graphql_post))
        .route("/graphql/ws", get(ws::graphql_ws))
        .route(alertmanager::PATH, post(alertmanager::webhook))
        .merge(graphiql::routes())
        .fallback_service(console::service())
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

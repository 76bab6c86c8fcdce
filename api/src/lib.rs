//! The HTTP surface of AIOps Agent Executor. The only crate that knows HTTP; for now
//! it serves health and readiness probes next to the engine.

use std::net::SocketAddr;

use aiops_engine::Engine;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;

/// The application router. Tests drive it with `oneshot` or over a real socket.
pub fn app(engine: Engine) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(engine)
}

/// Liveness: the process answers.
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers too.
async fn readyz(State(engine): State<Engine>) -> (StatusCode, axum::Json<serde_json::Value>) {
    match engine.ping().await {
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

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "HTTP API listening");
    axum::serve(listener, app(engine))
        .with_graceful_shutdown(shutdown)
        .await
}

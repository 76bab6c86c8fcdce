//! The accept loop: TCP_NODELAY on every socket, a cap on open connections, a
//! deadline for request headers (slow or idle clients cannot hold a slot), the
//! client address for per-address limits, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::{ApiConfig, Services, app_with};

/// The peer of the connection a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// How long shutdown waits for open requests before returning.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves the API with default settings on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    services: impl Into<Services>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, services, &ApiConfig::default(), shutdown).await
}

/// Serves the API with `config` on `listener` until `shutdown` resolves. `services`
/// is an [`Engine`](aiops_engine::Engine) or, to share the process's model client,
/// [`Services`].
pub async fn serve_with(
    listener: TcpListener,
    services: impl Into<Services>,
    config: &ApiConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "HTTP API listening (GraphiQL at /graphiql)");
    let app = app_with(services, config);
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Also bounds how long an idle keep-alive connection may wait for its next request.
        .header_read_timeout(config.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(shutdown);
    let mut refused_logged_at: Option<tokio::time::Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // At the cap: close at once rather than let the kernel queue pile up.
            if refused_logged_at.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    max = config.max_connections,
                    "connection limit reached; refusing connections"
                );
                refused_logged_at = Some(tokio::time::Instant::now());
            }
            drop(tcp);
            continue;
        };
        // Without TCP_NODELAY, a frame sent before the client acknowledged the previous
        // one waits for a delayed ACK (up to 40 ms): live events would stutter.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let service =
            app.clone()
                .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ClientAddr(peer));
                    req
                });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: requests still open after the grace period; closing them");
    }
    Ok(())
}

//! GraphiQL at `/graphiql`, wired to `/graphql` and `/graphql/ws`, with a field for the
//! API key. Everything the page loads is compiled into the binary ([`assets`]), so it
//! works offline, and the page is sent with a Content-Security-Policy that admits
//! same-origin scripts only (there is no inline script).

mod assets;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;

/// What the page may load and where it may connect. Beyond `'self'`, GraphiQL needs
/// `data:` fonts and images (its stylesheet embeds them) and one inserted `<style>`
/// element (when a dialog opens), admitted by this response's nonce rather than by
/// `'unsafe-inline'`.
fn content_security_policy(style_nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'nonce-{style_nonce}'; \
         font-src 'self' data:; img-src 'self' data:; connect-src 'self' ws: wss:; \
         object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
}

/// Characters of a style nonce: letters and digits from a CSPRNG, ~131 bits.
const NONCE_LEN: usize = 22;

/// Asset paths change with their content (a package version or a hash), so a browser
/// may keep them forever.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/graphiql", get(page))
        .route("/graphiql/assets/{*name}", get(asset))
}

async fn page() -> Response {
    // The engine's CSPRNG string (letters and digits: valid in a CSP nonce).
    let nonce = aiops_engine::auth::random_password(NONCE_LEN);
    let csp = content_security_policy(&nonce);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Revalidated on every load, so a new binary's asset paths are picked up.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, csp.as_str()),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        assets::page(&nonce),
    )
        .into_response()
}

async fn asset(Path(name): Path<String>) -> Response {
    match assets::get(&name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, IMMUTABLE),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            asset.body,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
            "not found",
        )
            .into_response(),
    }
}

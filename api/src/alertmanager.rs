//! `POST /api/alertmanager/webhook`: Alertmanager's webhook receiver (payload
//! version 4, §8), authenticated by a receiver's bearer token.
//!
//! Answers: 200 with what came of the notification (a run started, recorded on an
//! active run, de-duplicated, or unrouted — all final, so Alertmanager does not
//! retry them); 401 (`WWW-Authenticate: Bearer`) for a missing or wrong token; 400
//! naming the field for a payload the intake cannot use; 413 above 1 MiB; 5xx, which
//! Alertmanager retries, only when the database fails. Nothing is stored unless the
//! answer is 200.

use aiops_engine::Error;
use aiops_engine::triggers::alertmanager::{self, Notification};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::graphql::auth::bearer;
use crate::http::{BodyRefusal, read_body};

/// Where Alertmanager's `webhook_configs` post.
pub(crate) const PATH: &str = "/api/alertmanager/webhook";

pub(crate) async fn webhook(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let token = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    let Some(token) = token else {
        return unauthorized();
    };
    // Before the body is read: a caller without a token gets nothing more.
    let receiver = match state.engine.authenticate_receiver(token).await {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    let bytes = match read_body(body).await {
        Ok(b) => b,
        Err(BodyRefusal { status, message }) => return answer(status, error(&message)),
    };
    let notification = match Notification::parse(&bytes) {
        Ok(n) => n,
        Err(message) => return answer(StatusCode::BAD_REQUEST, error(&message)),
    };
    match alertmanager::accept(&state.engine, receiver, notification).await {
        Ok(n) => answer(
            StatusCode::OK,
            json!({
                "notificationId": n.id,
                "outcome": n.outcome,
                "reason": n.reason,
                "routes": n.routes.iter().map(|r| json!({
                    "team": r.team, "outcome": r.outcome, "runId": r.run_id,
                    "newAlerts": r.new_alerts, "resolvedAlerts": r.resolved_alerts,
                })).collect::<Vec<_>>(),
            }),
        ),
        Err(e) => failure(e),
    }
}

fn error(message: &str) -> Value {
    json!({ "error": message })
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn unauthorized() -> Response {
    let mut r = answer(
        StatusCode::UNAUTHORIZED,
        error("a valid Alertmanager receiver token is required: Authorization: Bearer <token>"),
    );
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"aiops alertmanager webhook\""),
    );
    r
}

/// An engine error as an answer: the caller's fault (4xx, final) or the server's
/// (5xx, which Alertmanager retries); internal details are logged with an id.
fn failure(e: Error) -> Response {
    match e {
        Error::Unauthenticated => unauthorized(),
        Error::Invalid(message) | Error::Refused(message) => {
            answer(StatusCode::BAD_REQUEST, error(&message))
        }
        other => {
            let id = uuid::Uuid::now_v7();
            tracing::error!(error.id = %id, error = %other, "alertmanager webhook failed");
            let status = match other {
                Error::Unavailable(_) | Error::Connect(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            answer(status, error(&format!("internal error (id {id})")))
        }
    }
}

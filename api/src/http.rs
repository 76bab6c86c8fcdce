//! GraphQL over HTTP (`POST /graphql`, and `GET /graphql` for queries), health checks.
//!
//! Bodies are read here, not by a generic extractor, so every refusal — too large,
//! too slow, not JSON, a batch — is a GraphQL error document with `extensions.code`.

use std::time::Duration;

use aiops_engine::Principal;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::graphql::error::{BAD_REQUEST, to_gql};
use crate::graphql::{self, input_checks};
use crate::{AppState, ClientAddr, MAX_BODY_BYTES};

/// A body must arrive within this time once its headers have.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Liveness: the process answers.
pub(crate) async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers too.
pub(crate) async fn readyz(
    State(state): State<AppState>,
) -> (StatusCode, axum::Json<serde_json::Value>) {
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

/// A response that is a GraphQL document with one error.
fn refusal(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "errors": [{ "message": message.into(), "extensions": { "code": code } }] });
    (status, axum::Json(body)).into_response()
}

pub(crate) async fn graphql_post(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match read_body(body).await {
        Ok(b) => b,
        Err(BodyRefusal { status, message }) => return refusal(status, BAD_REQUEST, message),
    };
    let is_json = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
    if !is_json {
        return refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BAD_REQUEST,
            "POST /graphql takes content-type application/json",
        );
    }
    if bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'[')
    {
        return refusal(
            StatusCode::BAD_REQUEST,
            BAD_REQUEST,
            "batched requests are not supported: send one operation per request",
        );
    }
    let request: async_graphql::Request = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                BAD_REQUEST,
                format!("request body is not a GraphQL request ({e})"),
            );
        }
    };
    execute(&state, &parts.headers, parts.extensions.get(), request).await
}

/// `GET /graphql?query=…&variables=…`: queries only (a GET must not change anything).
pub(crate) async fn graphql_get(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let qs = parts.uri.query().unwrap_or_default();
    let mut request = match async_graphql::http::parse_query_string(qs) {
        Ok(r) => r,
        Err(e) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                BAD_REQUEST,
                format!("invalid GraphQL GET request: {e}"),
            );
        }
    };
    // Bounded before parsing: the parser recurses on nesting.
    if let Err(e) = input_checks::check_query_text(&request.query) {
        return refusal(StatusCode::BAD_REQUEST, BAD_REQUEST, e);
    }
    let operation_name = request.operation_name.clone();
    // A syntax error is reported by execution, with its position.
    if let Ok(doc) = request.parsed_query()
        && input_checks::is_mutation(doc, operation_name.as_deref())
    {
        let mut r = refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            BAD_REQUEST,
            "mutations are not allowed over GET: use POST",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    execute(&state, &parts.headers, parts.extensions.get(), request).await
}

/// How much of an oversized body is read and discarded before answering 413: a
/// client still sending when the server closes gets a TCP reset that can destroy
/// the 413 before it is read, so moderately oversized bodies are drained first.
const DRAIN_BYTES: usize = 8 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Why a request body was not read: the status to answer and a message for the client.
pub(crate) struct BodyRefusal {
    pub status: StatusCode,
    pub message: String,
}

/// Reads a request body of at most [`MAX_BODY_BYTES`] within [`BODY_READ_TIMEOUT`].
pub(crate) async fn read_body(body: Body) -> Result<axum::body::Bytes, BodyRefusal> {
    let mut stream = body.into_data_stream();
    let read = async {
        let mut buf = Vec::new();
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            let chunk = chunk?;
            if buf.len() + chunk.len() > MAX_BODY_BYTES {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok::<_, axum::Error>(Some(axum::body::Bytes::from(buf)))
    };
    match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Ok(Ok(Some(bytes))) => Ok(bytes),
        Ok(Ok(None)) => {
            let drain = async {
                let mut drained = 0;
                while let Some(Ok(chunk)) = futures::StreamExt::next(&mut stream).await {
                    drained += chunk.len();
                    if drained > DRAIN_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
            Err(BodyRefusal {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!("request body is larger than {} bytes", MAX_BODY_BYTES),
            })
        }
        Ok(Err(_)) => Err(BodyRefusal {
            status: StatusCode::BAD_REQUEST,
            message: "request body could not be read".to_owned(),
        }),
        Err(_) => Err(BodyRefusal {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!(
                "request body did not arrive within {} s",
                BODY_READ_TIMEOUT.as_secs()
            ),
        }),
    }
}

/// Authenticates (a wrong token is an error even for public fields: never silently
/// anonymous) and executes.
async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    client: Option<&ClientAddr>,
    mut request: async_graphql::Request,
) -> Response {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let principal: Result<Principal, _> = match value.to_str() {
            Ok(v) => match graphql::auth::bearer(v) {
                Some(token) => state.engine.authenticate(token).await,
                None => Err(aiops_engine::Error::Unauthenticated),
            },
            Err(_) => Err(aiops_engine::Error::Unauthenticated),
        };
        match principal {
            Ok(p) => request = request.data(p),
            Err(e) => {
                let err = graphql::error::without_position(to_gql(e));
                return axum::Json(async_graphql::Response::from_errors(vec![err])).into_response();
            }
        }
    }
    if let Some(client) = client {
        request = request.data(*client);
    }
    let mut response = state.schema.execute(request).await;
    graphql::error::ensure_code(&mut response.errors);
    axum::Json(response).into_response()
}

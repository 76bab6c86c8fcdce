//! `GET /metrics`: the Prometheus exposition of this process and of the cluster.
//!
//! Each scrape builds a registry (`aiops_` prefix) from three sources:
//! - this process's families ([`aiops_engine::Metrics`]): step and run durations,
//!   model tokens and cost, webhook and schedule counters, the engine's rare events;
//! - the cluster as the database shows it ([`aiops_engine::ClusterStats`], one read
//!   shared for a few seconds): runs per state, queue depth, approvals pending — the
//!   same numbers from every replica;
//! - the circuit breakers of the process's model client.
//!
//! OpenMetrics text when the scraper asks for it (Prometheus does), the classic text
//! format (0.0.4) otherwise. Unauthenticated unless `ApiConfig::metrics_token` is
//! set: then `Authorization: Bearer <token>` is required.

use std::sync::atomic::AtomicU64;

use aiops_engine::ClusterStats;
use aiops_engine::llm::breaker::{BreakerState, BreakerStatus};
use axum::extract::State;
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::AppState;

/// The prefix of every family.
const PREFIX: &str = "aiops";

/// What OpenMetrics scrapers are answered with.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerStateLabels {
    endpoint: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token
        && !bearer_matches(&headers, token.expose())
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")],
            "GET /metrics needs Authorization: Bearer <AIOPS_METRICS_TOKEN>\n",
        )
            .into_response();
    }
    let cluster = match state.engine.cluster_stats().await {
        Ok(stats) => Some(stats),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cluster-wide values not read");
            None
        }
    };
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register(
        "build",
        "The version of this process",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    state.engine.metrics().register(&mut registry);
    register_cluster(&mut registry, cluster.as_ref());
    register_breakers(&mut registry, &state.llm.breakers().statuses());
    let openmetrics = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let mut body = String::new();
    let (encoded, content_type) = if openmetrics {
        (
            prometheus_client::encoding::text::encode(&mut body, &registry),
            OPENMETRICS,
        )
    } else {
        (
            prometheus_client::encoding::prometheus_text::encode(&mut body, &registry),
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )
    };
    if let Err(e) = encoded {
        tracing::error!(error = %e, "metrics: encoding failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    ([(CONTENT_TYPE, content_type)], body).into_response()
}

/// `Authorization: Bearer <token>`, compared in constant time.
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs per state, queue depth and pending approvals (absent when the database could
/// not be read: `cluster_stats_up` says so), and the age of the read.
fn register_cluster(registry: &mut Registry, cluster: Option<&ClusterStats>) {
    let up: Gauge = Gauge::default();
    up.set(i64::from(cluster.is_some()));
    registry.register(
        "cluster_stats_up",
        "1 when the last read of the cluster-wide values from the database succeeded, else 0",
        up,
    );
    let Some(cluster) = cluster else {
        return;
    };
    let runs = Family::<StatusLabels, Gauge>::default();
    for (status, n) in &cluster.runs_by_status {
        runs.get_or_create(&StatusLabels {
            status: status.as_str(),
        })
        .set(*n);
    }
    registry.register(
        "runs",
        "Runs in each state, across the cluster (from the database)",
        runs,
    );
    let queue: Gauge = Gauge::default();
    queue.set(cluster.queue_depth);
    registry.register(
        "run_queue_depth",
        "Runs a worker could claim now (queued, lease expired, or wake-up due), across the cluster",
        queue,
    );
    let approvals: Gauge = Gauge::default();
    approvals.set(cluster.approvals_pending);
    registry.register(
        "approvals_pending",
        "Approvals waiting for a decision, across the cluster",
        approvals,
    );
    let age: Gauge<f64, AtomicU64> = Gauge::default();
    let seconds = (chrono::Utc::now() - cluster.read_at)
        .num_milliseconds()
        .max(0) as f64
        / 1e3;
    age.set(seconds);
    registry.register_with_unit(
        "cluster_stats_age",
        "How long ago the cluster-wide values were read from the database (they are shared for a few seconds)",
        Unit::Seconds,
        age,
    );
}

/// Each endpoint's breaker: its state as a state set (1 for the current state) and
/// its consecutive failures.
fn register_breakers(registry: &mut Registry, breakers: &[BreakerStatus]) {
    let states = Family::<BreakerStateLabels, Gauge>::default();
    let failures = Family::<EndpointLabels, Gauge>::default();
    for b in breakers {
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            states
                .get_or_create(&BreakerStateLabels {
                    endpoint: b.endpoint.clone(),
                    state: state.as_str(),
                })
                .set(i64::from(b.state == state));
        }
        failures
            .get_or_create(&EndpointLabels {
                endpoint: b.endpoint.clone(),
            })
            .set(i64::from(b.consecutive_failures));
    }
    registry.register(
        "llm_circuit_breaker_state",
        "State of each model endpoint's circuit breaker in this process (1 for the current state of closed, open, half_open)",
        states,
    );
    registry.register(
        "llm_circuit_breaker_consecutive_failures",
        "Consecutive failed calls of each model endpoint in this process",
        failures,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_engine::RunStatus;

    #[test]
    fn bearer_tokens_match_exactly() {
        let mut headers = HeaderMap::new();
        assert!(!bearer_matches(&headers, "s3cret"));
        headers.insert(AUTHORIZATION, "Bearer s3cret".parse().expect("header"));
        assert!(bearer_matches(&headers, "s3cret"));
        assert!(!bearer_matches(&headers, "s3cre"));
        assert!(!bearer_matches(&headers, "s3cret!"));
        headers.insert(AUTHORIZATION, "Basic s3cret".parse().expect("header"));
        assert!(!bearer_matches(&headers, "s3cret"));
    }

    #[test]
    fn the_cluster_and_breakers_render_with_every_state() {
        let cluster = ClusterStats {
            runs_by_status: RunStatus::ALL.iter().map(|s| (*s, 0)).collect(),
            queue_depth: 3,
            approvals_pending: 1,
            read_at: chrono::Utc::now(),
        };
        let mut registry = Registry::with_prefix(PREFIX);
        register_cluster(&mut registry, Some(&cluster));
        register_breakers(
            &mut registry,
            &[BreakerStatus {
                endpoint: "openai http://127.0.0.1:1 m".into(),
                state: BreakerState::Open,
                consecutive_failures: 5,
                retry_at: None,
            }],
        );
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).expect("encode");
        for line in [
            "aiops_runs{status=\"TIMED_OUT\"} 0",
            "aiops_run_queue_depth 3",
            "aiops_approvals_pending 1",
            "aiops_cluster_stats_up 1",
            "aiops_llm_circuit_breaker_state{endpoint=\"openai http://127.0.0.1:1 m\",state=\"open\"} 1",
            "aiops_llm_circuit_breaker_state{endpoint=\"openai http://127.0.0.1:1 m\",state=\"closed\"} 0",
            "aiops_llm_circuit_breaker_consecutive_failures{endpoint=\"openai http://127.0.0.1:1 m\"} 5",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "missing {line:?} in:\n{out}"
            );
        }
    }
}

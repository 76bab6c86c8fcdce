//! The Prometheus HTTP API (`/api/v1`), as the agents' tools use it: the `data` of
//! each answer as JSON (the tools bound and summarise it for the model), and
//! failures classified so that a model can fix its PromQL from Prometheus's own
//! words while an unreachable server is waited for.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::endpoint::{Answer, Auth, Endpoint};
use super::error::{Result, ToolError};

/// Prometheus refuses ranges of more points per series than this (`bad_data`);
/// checked here so the model hears how to fix it without a round trip.
pub const MAX_POINTS: i64 = 11_000;

#[derive(Clone, Debug)]
pub struct PrometheusClient {
    endpoint: Endpoint,
}

/// Every Prometheus API answer, success or not.
#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Value,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

impl PrometheusClient {
    /// `timeout` bounds each request; queries also ask Prometheus to give up a
    /// little earlier, so a slow query ends with Prometheus's message, not ours.
    pub fn new(base_url: &str, auth: Option<Auth>, timeout: Duration) -> Result<Self> {
        Ok(PrometheusClient {
            endpoint: Endpoint::new("Prometheus", base_url, auth, timeout)?,
        })
    }

    /// An instant query at `time` (default: now). `data` is
    /// `{resultType, result}`.
    pub async fn query(&self, promql: &str, time: Option<DateTime<Utc>>) -> Result<Value> {
        let mut form = vec![("query", promql.to_owned()), self.timeout_param()];
        if let Some(time) = time {
            form.push(("time", timestamp(time)));
        }
        self.post(&["query"], &form, promql).await
    }

    /// A range query from `start` to `end` every `step`. `data` is
    /// `{resultType: "matrix", result}`.
    pub async fn query_range(
        &self,
        promql: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Value> {
        check_range(start, end, step).map_err(|e| with_query(e, promql))?;
        let form = [
            ("query", promql.to_owned()),
            ("start", timestamp(start)),
            ("end", timestamp(end)),
            ("step", step.as_secs_f64().to_string()),
            self.timeout_param(),
        ];
        self.post(&["query_range"], &form, promql).await
    }

    /// Active alerts (`pending` and `firing`): `data` is `{alerts: [...]}`.
    pub async fn alerts(&self) -> Result<Value> {
        self.get(&["alerts"]).await
    }

    /// Alerting and recording rules by group: `data` is `{groups: [...]}`.
    pub async fn rules(&self) -> Result<Value> {
        self.get(&["rules"]).await
    }

    /// Scrape targets and their health: `data` is `{activeTargets, droppedTargets}`.
    pub async fn targets(&self) -> Result<Value> {
        self.get(&["targets"]).await
    }

    /// A link to Prometheus's graph page showing `promql` over `[start, end]`: what a
    /// report cites so a reader can look at the evidence themselves.
    pub fn graph_link(&self, promql: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
        let mut url = self.endpoint.base().clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("graph");
        }
        let range = (end - start).num_seconds().max(1);
        url.query_pairs_mut()
            .append_pair("g0.expr", promql)
            .append_pair("g0.tab", "0")
            .append_pair("g0.range_input", &format!("{range}s"))
            .append_pair("g0.end_input", &end.format("%Y-%m-%d %H:%M:%S").to_string());
        url.to_string()
    }

    fn timeout_param(&self) -> (&'static str, String) {
        let millis = (self.endpoint.timeout().as_millis() * 9 / 10).max(1);
        ("timeout", format!("{millis}ms"))
    }

    async fn post(&self, api: &[&str], form: &[(&str, String)], promql: &str) -> Result<Value> {
        let request = self.endpoint.request(Method::POST, &path(api)).form(form);
        let answer = self.endpoint.send(request).await;
        answer
            .and_then(|answer| self.decode(answer))
            .map_err(|e| with_query(e, promql))
    }

    async fn get(&self, api: &[&str]) -> Result<Value> {
        let request = self.endpoint.request(Method::GET, &path(api));
        self.decode(self.endpoint.send(request).await?)
    }

    /// The `data` of a successful answer; otherwise Prometheus's `errorType` and
    /// `error`, classified by the HTTP status (400/422 permanent, 503 retryable).
    fn decode(&self, answer: Answer) -> Result<Value> {
        let envelope = serde_json::from_slice::<Envelope>(&answer.body);
        if answer.status.is_success() {
            return match envelope {
                Ok(envelope) if envelope.status == "success" => {
                    if !envelope.warnings.is_empty() {
                        tracing::debug!(warnings = ?envelope.warnings, "Prometheus warnings");
                    }
                    Ok(envelope.data)
                }
                Ok(envelope) => Err(ToolError::permanent(format!(
                    "{}: {}",
                    self.endpoint.name(),
                    envelope.error.unwrap_or(envelope.status)
                ))),
                Err(_) => Err(ToolError::permanent(format!(
                    "{}: not a Prometheus API answer: {}",
                    self.endpoint.name(),
                    answer.excerpt()
                ))),
            };
        }
        let said = match envelope {
            Ok(Envelope {
                error: Some(error),
                error_type,
                ..
            }) => format!("{} ({})", error, error_type.as_deref().unwrap_or("error")),
            _ => answer.excerpt(),
        };
        Err(ToolError {
            kind: answer.error_kind(),
            message: format!(
                "{} answered {}: {said}",
                self.endpoint.name(),
                answer.status
            ),
        })
    }
}

fn path<'a>(api: &[&'a str]) -> Vec<&'a str> {
    let mut path = vec!["api", "v1"];
    path.extend_from_slice(api);
    path
}

fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn with_query(mut error: ToolError, promql: &str) -> ToolError {
    error.message = format!("{}; query: {promql}", error.message);
    error
}

/// The checks Prometheus would make on a range, with advice on how to fix it.
fn check_range(start: DateTime<Utc>, end: DateTime<Utc>, step: Duration) -> Result<()> {
    let step_ms = i64::try_from(step.as_millis()).unwrap_or(i64::MAX);
    if step_ms == 0 {
        return Err(ToolError::permanent("step must be at least 1ms"));
    }
    let range_ms = (end - start).num_milliseconds();
    if range_ms < 0 {
        return Err(ToolError::permanent("end is before start"));
    }
    let points = range_ms / step_ms;
    if points > MAX_POINTS {
        let min_step = (range_ms / MAX_POINTS) / 1000 + 1;
        return Err(ToolError::permanent(format!(
            "the range would have {points} points per series (Prometheus allows \
             {MAX_POINTS}): use a step of at least {min_step}s or a shorter range"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ErrorKind;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).expect("time")
    }

    #[test]
    fn ranges_are_checked_as_prometheus_would() {
        let step = Duration::from_secs(1);
        assert!(check_range(at(0), at(11_000), step).is_ok());
        let error = check_range(at(0), at(11_001), step).expect_err("too many points");
        assert_eq!(error.kind, ErrorKind::Permanent);
        assert!(error.message.contains("11001 points"), "{}", error.message);
        assert!(error.message.contains("at least 2s"), "{}", error.message);
        let min_step = Duration::from_secs(2);
        assert!(check_range(at(0), at(11_001), min_step).is_ok());
        assert!(check_range(at(10), at(0), step).is_err());
        assert!(check_range(at(0), at(10), Duration::ZERO).is_err());
    }
}

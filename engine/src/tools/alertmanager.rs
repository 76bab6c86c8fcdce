//! The Alertmanager API v2 (`/api/v2`; v1 is gone since 0.27): alerts and silences,
//! the reads an investigation makes and the one write it may make after approval.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::endpoint::{Auth, Endpoint};
use super::error::{ErrorKind, Result, ToolError};

#[derive(Clone, Debug)]
pub struct AlertmanagerClient {
    endpoint: Endpoint,
}

/// Which alerts to list, by their state in Alertmanager; all by default, as in the
/// API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertStates {
    pub active: bool,
    pub silenced: bool,
    pub inhibited: bool,
}

impl Default for AlertStates {
    fn default() -> Self {
        AlertStates {
            active: true,
            silenced: true,
            inhibited: true,
        }
    }
}

/// A silence to create, in the API's own shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    pub matchers: Vec<Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub is_regex: bool,
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl Matcher {
    /// `name="value"`.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            value: value.into(),
            is_regex: false,
            is_equal: true,
        }
    }
}

#[derive(Deserialize)]
struct Created {
    #[serde(rename = "silenceID")]
    silence_id: String,
}

impl AlertmanagerClient {
    pub fn new(base_url: &str, auth: Option<Auth>, timeout: Duration) -> Result<Self> {
        Ok(AlertmanagerClient {
            endpoint: Endpoint::new("Alertmanager", base_url, auth, timeout)?,
        })
    }

    /// Alerts matching every matcher of `filter` (`alertname="X"`, `severity=~"crit.*"`)
    /// in the chosen states: a JSON array of alerts.
    pub async fn alerts(&self, filter: &[String], states: AlertStates) -> Result<Value> {
        let mut query = filters(filter);
        query.push(("active", states.active.to_string()));
        query.push(("silenced", states.silenced.to_string()));
        query.push(("inhibited", states.inhibited.to_string()));
        let request = self.endpoint.request(Method::GET, &["api", "v2", "alerts"]);
        self.json(request.query(&query)).await
    }

    /// Silences (active, pending and expired) whose matchers include every matcher of
    /// `filter`: a JSON array of silences with their `id` and `status.state`.
    pub async fn silences(&self, filter: &[String]) -> Result<Value> {
        let request = self
            .endpoint
            .request(Method::GET, &["api", "v2", "silences"]);
        self.json(request.query(&filters(filter))).await
    }

    /// Creates `silence` and returns its id. Checked first: Alertmanager refuses a
    /// silence without matchers or ending before it starts.
    pub async fn create_silence(&self, silence: &Silence) -> Result<String> {
        if silence.matchers.is_empty() {
            return Err(ToolError::permanent("a silence needs at least one matcher"));
        }
        if silence.ends_at <= silence.starts_at {
            return Err(ToolError::permanent("a silence must end after it starts"));
        }
        let request = self
            .endpoint
            .request(Method::POST, &["api", "v2", "silences"]);
        let created = self.json(request.json(silence)).await?;
        serde_json::from_value::<Created>(created)
            .map(|c| c.silence_id)
            .map_err(|e| ToolError::permanent(format!("{}: {e}", self.endpoint.name())))
    }

    /// Creates `silence` unless a silence whose comment carries `marker` already
    /// exists (not expired): the POST of an earlier attempt may have succeeded before
    /// its answer was lost (a crash, a timeout), and a person approved one silence,
    /// not two. `silence.comment` must contain `marker`. Returns the id and whether
    /// this call created it.
    pub async fn create_silence_once(
        &self,
        silence: &Silence,
        marker: &str,
    ) -> Result<(String, bool)> {
        if !silence.comment.contains(marker) {
            return Err(ToolError::permanent(
                "the silence's comment must carry its idempotency marker",
            ));
        }
        let existing = self.silences(&[]).await?;
        let found = existing.as_array().into_iter().flatten().find(|s| {
            s["comment"].as_str().is_some_and(|c| c.contains(marker))
                && s["status"]["state"].as_str() != Some("expired")
        });
        if let Some(id) = found.and_then(|s| s["id"].as_str()) {
            return Ok((id.to_owned(), false));
        }
        Ok((self.create_silence(silence).await?, true))
    }

    /// Expires the silence `id` now. Expiring an already expired silence succeeds,
    /// so a retried call is harmless.
    pub async fn expire_silence(&self, id: &str) -> Result<()> {
        let request = self
            .endpoint
            .request(Method::DELETE, &["api", "v2", "silence", id]);
        let answer = self.endpoint.send(request).await?;
        // Some Alertmanager versions answer 500 for "silence … already expired" and for
        // "silence not found": neither is a server fault that waiting would fix.
        let said = answer.excerpt();
        if answer.status.is_success() || said.contains("already expired") {
            return Ok(());
        }
        let mut error = self.endpoint.failure(&answer);
        if said.contains("not found") {
            error.kind = ErrorKind::Permanent;
        }
        Err(error)
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let answer = self.endpoint.send(request).await?;
        if !answer.status.is_success() {
            return Err(self.endpoint.failure(&answer));
        }
        serde_json::from_slice(&answer.body).map_err(|_| {
            ToolError::permanent(format!(
                "{}: not an Alertmanager API answer: {}",
                self.endpoint.name(),
                answer.excerpt()
            ))
        })
    }
}

fn filters(filter: &[String]) -> Vec<(&'static str, String)> {
    filter.iter().map(|m| ("filter", m.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_are_written_in_the_api_shape() {
        let silence = Silence {
            matchers: vec![Matcher::equal("alertname", "DatabaseDown")],
            starts_at: DateTime::from_timestamp(0, 0).expect("time"),
            ends_at: DateTime::from_timestamp(3600, 0).expect("time"),
            created_by: "aiops".into(),
            comment: "investigating".into(),
        };
        assert_eq!(
            serde_json::to_value(&silence).expect("json"),
            serde_json::json!({
                "matchers": [{"name": "alertname", "value": "DatabaseDown",
                              "isRegex": false, "isEqual": true}],
                "startsAt": "1970-01-01T00:00:00Z",
                "endsAt": "1970-01-01T01:00:00Z",
                "createdBy": "aiops",
                "comment": "investigating",
            })
        );
    }
}

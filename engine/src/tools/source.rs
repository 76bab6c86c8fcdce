//! The clients of one alert source, built from what the engine decrypted for it.

use std::time::Duration;

use crate::{SourceAuth, SourceConnection};

use super::alertmanager::AlertmanagerClient;
use super::endpoint::Auth;
use super::error::ToolError;
use super::prometheus::PrometheusClient;

/// The Prometheus and Alertmanager clients of an alert source (either may be absent).
#[derive(Debug)]
pub struct SourceClients {
    name: String,
    prometheus: Option<PrometheusClient>,
    alertmanager: Option<AlertmanagerClient>,
}

impl SourceClients {
    pub fn connect(conn: &SourceConnection) -> Result<Self, ToolError> {
        let auth = match &conn.auth {
            SourceAuth::None => None,
            SourceAuth::Bearer(token) => Some(Auth::Bearer(token.expose().to_owned())),
            SourceAuth::Basic { username, password } => Some(Auth::Basic {
                user: username.clone(),
                password: password.expose().to_owned(),
            }),
        };
        let timeout = Duration::from_millis(conn.source.timeout_ms.max(1) as u64);
        let prometheus = conn
            .source
            .prometheus_url
            .as_deref()
            .map(|url| PrometheusClient::new(url, auth.clone(), timeout))
            .transpose()?;
        let alertmanager = conn
            .source
            .alertmanager_url
            .as_deref()
            .map(|url| AlertmanagerClient::new(url, auth, timeout))
            .transpose()?;
        Ok(Self {
            name: conn.source.name.clone(),
            prometheus,
            alertmanager,
        })
    }

    /// The source's Prometheus, or a permanent error saying it has none.
    pub fn prometheus(&self) -> Result<&PrometheusClient, ToolError> {
        self.prometheus.as_ref().ok_or_else(|| {
            ToolError::permanent(format!(
                "alert source \"{}\" has no Prometheus URL",
                self.name
            ))
        })
    }

    /// The source's Alertmanager, or a permanent error saying it has none.
    pub fn alertmanager(&self) -> Result<&AlertmanagerClient, ToolError> {
        self.alertmanager.as_ref().ok_or_else(|| {
            ToolError::permanent(format!(
                "alert source \"{}\" has no Alertmanager URL",
                self.name
            ))
        })
    }
}

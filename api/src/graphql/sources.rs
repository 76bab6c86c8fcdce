//! Alert sources over GraphQL: viewers list them (credentials only as a hint),
//! admins create and delete them. A token or password goes in, never out.

use aiops_engine::auth::{Caller, Role as EngineRole};
use aiops_engine::model::{AlertSource as SourceRecord, AuthKind as EngineAuthKind};
use aiops_engine::secrets::Secret;
use aiops_engine::{Engine, NewAlertSource, SourceAuth};
use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::auth::{RoleGuard, principal};
use super::error::ToGql;

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum AuthKind {
    None,
    Bearer,
    Basic,
}

impl From<EngineAuthKind> for AuthKind {
    fn from(k: EngineAuthKind) -> Self {
        match k {
            EngineAuthKind::None => AuthKind::None,
            EngineAuthKind::Bearer => AuthKind::Bearer,
            EngineAuthKind::Basic => AuthKind::Basic,
        }
    }
}

/// A named connection to a Prometheus and/or an Alertmanager.
#[derive(SimpleObject)]
pub struct AlertSource {
    pub id: Uuid,
    pub name: String,
    pub prometheus_url: Option<String>,
    pub alertmanager_url: Option<String>,
    pub auth: AuthKind,
    /// The basic-auth user.
    pub username: Option<String>,
    /// The last characters of the token or password (e.g. `…f00d`); never the secret.
    pub auth_hint: Option<String>,
    pub timeout_ms: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<SourceRecord> for AlertSource {
    fn from(s: SourceRecord) -> Self {
        AlertSource {
            id: s.id.0,
            name: s.name,
            prometheus_url: s.prometheus_url,
            alertmanager_url: s.alertmanager_url,
            auth: s.auth_kind.into(),
            username: s.username,
            auth_hint: s.auth_hint,
            timeout_ms: s.timeout_ms,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(InputObject)]
pub struct CreateAlertSourceInput {
    pub name: String,
    pub prometheus_url: Option<String>,
    pub alertmanager_url: Option<String>,
    #[graphql(default_with = "AuthKind::None")]
    pub auth: AuthKind,
    /// With BASIC.
    pub username: Option<String>,
    /// The bearer token (BEARER) or password (BASIC); stored encrypted.
    #[graphql(secret)]
    pub secret: Option<String>,
    /// Request timeout in milliseconds.
    #[graphql(default = 10000)]
    pub timeout_ms: i32,
}

#[derive(Default)]
pub struct SourcesQuery;

#[Object]
impl SourcesQuery {
    /// Alert sources, by name.
    #[graphql(guard = "RoleGuard(EngineRole::Viewer)")]
    async fn alert_sources(&self, ctx: &Context<'_>) -> Result<Vec<AlertSource>> {
        let sources = ctx.data::<Engine>()?.alert_sources().await.gql()?;
        Ok(sources.into_iter().map(AlertSource::from).collect())
    }
}

#[derive(Default)]
pub struct SourcesMutation;

#[Object]
impl SourcesMutation {
    /// Creates an alert source; its token or password is stored encrypted and shown
    /// only as a hint.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn create_alert_source(
        &self,
        ctx: &Context<'_>,
        input: CreateAlertSourceInput,
    ) -> Result<AlertSource> {
        let p = principal(ctx)?;
        let bad = |m: &str| super::error::to_gql(aiops_engine::Error::Invalid(m.to_owned()));
        let auth = match (input.auth, input.username, input.secret) {
            (AuthKind::None, None, None) => SourceAuth::None,
            (AuthKind::Bearer, None, Some(token)) => SourceAuth::Bearer(Secret::new(token)),
            (AuthKind::Basic, Some(username), Some(password)) => SourceAuth::Basic {
                username,
                password: Secret::new(password),
            },
            (AuthKind::None, _, _) => {
                return Err(bad("auth NONE takes neither username nor secret"));
            }
            (AuthKind::Bearer, _, _) => {
                return Err(bad(
                    "auth BEARER takes a secret (the token) and no username",
                ));
            }
            (AuthKind::Basic, _, _) => {
                return Err(bad(
                    "auth BASIC takes a username and a secret (the password)",
                ));
            }
        };
        let timeout_ms =
            u64::try_from(input.timeout_ms).map_err(|_| bad("timeoutMs: between 1 and 300000"))?;
        let source = ctx
            .data::<Engine>()?
            .create_alert_source(
                Caller::Principal(p),
                NewAlertSource {
                    name: input.name,
                    prometheus_url: input.prometheus_url,
                    alertmanager_url: input.alertmanager_url,
                    auth,
                    timeout: std::time::Duration::from_millis(timeout_ms),
                },
            )
            .await
            .gql()?;
        Ok(source.into())
    }

    /// Deletes an alert source by name.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn delete_alert_source(&self, ctx: &Context<'_>, name: String) -> Result<bool> {
        let p = principal(ctx)?;
        ctx.data::<Engine>()?
            .delete_alert_source(Caller::Principal(p), &name)
            .await
            .gql()?;
        Ok(true)
    }
}

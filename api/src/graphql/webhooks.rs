//! Remediation webhooks over GraphQL: viewers list them (the signing secret only as a
//! hint), admins create and delete them. The secret goes in, never out.

use aiops_engine::auth::{Caller, Role as EngineRole};
use aiops_engine::model::Webhook as WebhookRecord;
use aiops_engine::secrets::Secret;
use aiops_engine::{Engine, NewWebhook};
use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::auth::{RoleGuard, principal};
use super::error::ToGql;

/// Where the `webhook_action` tool posts an approved action, signed with a secret.
#[derive(SimpleObject)]
pub struct Webhook {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    /// The last characters of the signing secret (e.g. `…f00d`); never the secret.
    pub secret_hint: String,
    pub timeout_ms: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<WebhookRecord> for Webhook {
    fn from(w: WebhookRecord) -> Self {
        Webhook {
            id: w.id.0,
            name: w.name,
            url: w.url,
            secret_hint: w.secret_hint,
            timeout_ms: w.timeout_ms,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

#[derive(InputObject)]
pub struct CreateWebhookInput {
    pub name: String,
    /// The http(s) URL actions are posted to (no user or password in it).
    pub url: String,
    /// The HMAC-SHA256 signing secret, at least 16 characters; stored encrypted.
    #[graphql(secret)]
    pub secret: String,
    /// Request timeout in milliseconds (default 10000, at most 300000).
    pub timeout_ms: Option<i32>,
}

#[derive(Default)]
pub struct WebhooksQuery;

#[Object]
impl WebhooksQuery {
    /// Remediation webhooks, by name.
    #[graphql(guard = "RoleGuard(EngineRole::Viewer)")]
    async fn webhooks(&self, ctx: &Context<'_>) -> Result<Vec<Webhook>> {
        let hooks = ctx.data::<Engine>()?.webhooks().await.gql()?;
        Ok(hooks.into_iter().map(Webhook::from).collect())
    }
}

#[derive(Default)]
pub struct WebhooksMutation;

#[Object]
impl WebhooksMutation {
    /// Creates a remediation webhook; its signing secret is stored encrypted and
    /// shown only as a hint.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn create_webhook(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookInput,
    ) -> Result<Webhook> {
        let p = principal(ctx)?;
        let timeout_ms = input
            .timeout_ms
            .map(|ms| {
                u64::try_from(ms).map_err(|_| {
                    super::error::to_gql(aiops_engine::Error::Invalid(
                        "timeoutMs: between 1 and 300000".into(),
                    ))
                })
            })
            .transpose()?;
        let hook = ctx
            .data::<Engine>()?
            .create_webhook(
                Caller::Principal(p),
                NewWebhook {
                    name: input.name,
                    url: input.url,
                    secret: Secret::new(input.secret),
                    timeout_ms,
                },
            )
            .await
            .gql()?;
        Ok(hook.into())
    }

    /// Deletes a remediation webhook by name.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn delete_webhook(&self, ctx: &Context<'_>, name: String) -> Result<bool> {
        let p = principal(ctx)?;
        ctx.data::<Engine>()?
            .delete_webhook(Caller::Principal(p), &name)
            .await
            .gql()?;
        Ok(true)
    }
}

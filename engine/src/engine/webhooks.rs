//! Remediation webhooks (admins manage them): where the `webhook_action` tool posts
//! an approved action, and the secret it signs the request with. The secret is sealed
//! on write and decrypted only for the tool ([`Engine::webhook_target`]).

use std::time::Duration;

use chrono::Utc;

use super::Engine;
use super::alert_sources::{SecretColumn, check_name, check_timeout, check_url, require_admin};
use crate::auth::Caller;
use crate::ids::WebhookId;
use crate::model::Webhook;
use crate::secrets::Secret;
use crate::store;
use crate::{Error, Result};

/// Where webhooks keep their signing secret.
pub(super) const SECRET: SecretColumn = SecretColumn {
    table: "webhooks",
    column: "secret_encrypted",
};
/// Request timeout of a webhook created without one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest signing secret: a guessable one would let anyone sign actions.
const MIN_SECRET_CHARS: usize = 16;
/// Longest signing secret.
const MAX_SECRET_BYTES: usize = 8192;

/// A webhook to create.
#[derive(Clone, Debug)]
pub struct NewWebhook {
    pub name: String,
    /// The http(s) URL actions are posted to, exactly (no credentials in it).
    pub url: String,
    /// The HMAC-SHA256 signing secret (at least 16 characters), shared with the receiver.
    pub secret: Secret,
    /// Request timeout in milliseconds (1 to 300000; default 10000).
    pub timeout_ms: Option<u64>,
}

/// A webhook with its secret decrypted: what the `webhook_action` tool needs to post
/// and sign. `Debug` shows no secret.
#[derive(Clone, Debug)]
pub struct WebhookTarget {
    pub name: String,
    pub url: String,
    pub secret: Secret,
    pub timeout: Duration,
}

impl Engine {
    /// Creates a webhook (admins). Its signing secret is stored encrypted; listings
    /// show only a hint.
    pub async fn create_webhook(&self, caller: Caller<'_>, new: NewWebhook) -> Result<Webhook> {
        require_admin(caller)?;
        let name = check_name(&new.name)?;
        let url = check_url("url", &new.url)?;
        let timeout = new
            .timeout_ms
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        check_timeout("timeoutMs", timeout)?;
        let secret = new.secret.expose();
        if secret.chars().count() < MIN_SECRET_CHARS || secret.len() > MAX_SECRET_BYTES {
            return Err(Error::Invalid(format!(
                "secret: at least {MIN_SECRET_CHARS} characters and at most {MAX_SECRET_BYTES} bytes"
            )));
        }
        let id = WebhookId::new();
        let sealed = SECRET.seal(self.keyring()?, id, &new.secret);
        let now = Utc::now();
        let hook = Webhook {
            id,
            name,
            url,
            secret_hint: new.secret.hint(),
            timeout_ms: timeout.as_millis() as i64,
            created_at: now,
            updated_at: now,
        };
        store::webhooks::insert(&self.inner.db, &hook, sealed).await?;
        Ok(hook)
    }

    /// Every webhook, by name, without secrets (viewers may list them).
    pub async fn webhooks(&self) -> Result<Vec<Webhook>> {
        store::webhooks::list(&self.inner.db).await
    }

    /// Deletes a webhook (admins).
    pub async fn delete_webhook(&self, caller: Caller<'_>, name: &str) -> Result<()> {
        require_admin(caller)?;
        if store::webhooks::delete(&self.inner.db, name).await? {
            Ok(())
        } else {
            Err(Error::not_found("webhook", name))
        }
    }

    /// A webhook with its secret decrypted, for the tool that posts to it.
    pub async fn webhook_target(&self, name: &str) -> Result<WebhookTarget> {
        let (hook, sealed) = store::webhooks::get_sealed(&self.inner.db, name)
            .await?
            .ok_or_else(|| Error::not_found("webhook", name))?;
        let secret = SECRET.open(self.keyring()?, hook.id, &sealed)?;
        Ok(WebhookTarget {
            name: hook.name,
            url: hook.url,
            secret,
            timeout: Duration::from_millis(hook.timeout_ms.max(1) as u64),
        })
    }
}

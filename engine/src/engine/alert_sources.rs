//! Alert sources (admins manage them) and the secrets at rest of every table (alert
//! sources' credentials, webhooks' signing secrets, language-model API keys): sealing
//! on write, the start-up check that every stored secret still decrypts, rotation.

use std::fmt;
use std::time::Duration;

use chrono::Utc;

use super::Engine;
use crate::auth::{Caller, Role};
use crate::ids::{AlertSourceId, CredentialId, WebhookId};
use crate::model::{AlertSource, AuthKind};
use crate::secrets::{Keyring, Place, Secret};
use crate::store;
use crate::{Error, Result};

/// Longest request timeout a source or webhook may ask for.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest URL or user name accepted.
const MAX_TEXT: usize = 2048;

/// How to authenticate to a source, with the secret in the clear (only in memory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceAuth {
    None,
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

/// A source to create.
#[derive(Clone, Debug)]
pub struct NewAlertSource {
    pub name: String,
    pub prometheus_url: Option<String>,
    pub alertmanager_url: Option<String>,
    pub auth: SourceAuth,
    pub timeout: Duration,
}

/// A source with its credential decrypted: what a tool needs to call it.
#[derive(Clone, Debug)]
pub struct SourceConnection {
    pub source: AlertSource,
    pub auth: SourceAuth,
}

/// The zero-config source (`AIOPS_PROMETHEUS_URL`, `AIOPS_ALERTMANAGER_URL`): used by
/// teams that name no source when no stored source is called `default`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultAlertSource {
    prometheus_url: Option<String>,
    alertmanager_url: Option<String>,
}

impl DefaultAlertSource {
    /// Checks the URLs as a stored source's would be; `None` when both are absent.
    pub fn new(
        prometheus_url: Option<String>,
        alertmanager_url: Option<String>,
    ) -> Result<Option<Self>> {
        let prometheus_url = check_base_url("AIOPS_PROMETHEUS_URL", &prometheus_url)?;
        let alertmanager_url = check_base_url("AIOPS_ALERTMANAGER_URL", &alertmanager_url)?;
        Ok(
            (prometheus_url.is_some() || alertmanager_url.is_some()).then_some(Self {
                prometheus_url,
                alertmanager_url,
            }),
        )
    }
}

/// The name teams use when they name no source.
pub const DEFAULT_SOURCE: &str = "default";
/// Request timeout of the environment's default source.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`Engine::rotate_secrets`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Re-encrypted under the active key.
    pub rotated: usize,
    /// Already under the active key.
    pub current: usize,
}

/// A column of sealed secrets. Each value is bound to its table, column and row
/// (the ciphertext's associated data): a value moved elsewhere does not decrypt.
#[derive(Clone, Copy, Debug)]
pub(super) struct SecretColumn {
    pub table: &'static str,
    pub column: &'static str,
}

/// Where alert sources keep their token or password.
const SOURCE_AUTH: SecretColumn = SecretColumn {
    table: "alert_sources",
    column: "auth_encrypted",
};

impl SecretColumn {
    fn place<'a>(&self, row: &'a str) -> Place<'a> {
        Place {
            table: self.table,
            row_id: row,
            column: self.column,
        }
    }

    /// Seals `secret` for row `row` of this column.
    pub(super) fn seal(&self, ring: &Keyring, row: impl fmt::Display, secret: &Secret) -> String {
        ring.encrypt(self.place(&row.to_string()), secret)
    }

    /// Opens the sealed value of row `row` (a value moved from another row fails).
    pub(super) fn open(
        &self,
        ring: &Keyring,
        row: impl fmt::Display,
        sealed: &str,
    ) -> Result<Secret> {
        Ok(ring.decrypt(self.place(&row.to_string()), sealed)?)
    }

    /// The value re-sealed under the active key; `None` when it already is (and
    /// still decrypts).
    fn reseal(
        &self,
        ring: &Keyring,
        row: impl fmt::Display,
        sealed: &str,
    ) -> Result<Option<String>> {
        Ok(ring.reencrypt(self.place(&row.to_string()), sealed)?)
    }
}

/// A row holding a sealed secret, in whichever table.
#[derive(Clone, Copy, Debug)]
enum SealedRow {
    AlertSource(AlertSourceId),
    Webhook(WebhookId),
    LlmCredential(CredentialId),
}

impl SealedRow {
    fn column(self) -> SecretColumn {
        match self {
            SealedRow::AlertSource(_) => SOURCE_AUTH,
            SealedRow::Webhook(_) => super::webhooks::SECRET,
            SealedRow::LlmCredential(_) => super::providers::SECRET,
        }
    }

    fn row(self) -> String {
        match self {
            SealedRow::AlertSource(id) => id.to_string(),
            SealedRow::Webhook(id) => id.to_string(),
            SealedRow::LlmCredential(id) => id.to_string(),
        }
    }
}

pub(super) fn require_admin(caller: Caller<'_>) -> Result<()> {
    match caller {
        Caller::Local => Ok(()),
        Caller::Principal(p) => p.require(Role::Admin),
    }
}

/// A name as sources and webhooks have them: trimmed, 1 to 100 characters of letters,
/// digits, '-', '_' or '.'.
pub(super) fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(Error::Invalid(
            "name: 1 to 100 characters of letters, digits, '-', '_' or '.'".into(),
        ));
    }
    Ok(name.to_owned())
}

/// A request timeout between 1 ms and [`MAX_TIMEOUT`].
pub(super) fn check_timeout(field: &str, timeout: Duration) -> Result<()> {
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(Error::Invalid(format!("{field}: between 1 ms and 300 s")));
    }
    Ok(())
}

/// A base URL as sources have them: [`check_url`] without a trailing '/'; `None`
/// when absent or blank.
fn check_base_url(field: &str, url: &Option<String>) -> Result<Option<String>> {
    let Some(url) = url.as_deref().filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    Ok(Some(
        check_url(field, url)?.trim_end_matches('/').to_owned(),
    ))
}

/// An http(s) URL with a host and without credentials, trimmed. Errors name `field`.
pub(super) fn check_url(field: &str, url: &str) -> Result<String> {
    let url = url.trim();
    let invalid = |why: &str| Error::Invalid(format!("{field}: {why}"));
    if url.is_empty() {
        return Err(invalid("required"));
    }
    if url.len() > MAX_TEXT {
        return Err(invalid("longer than 2048 characters"));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| invalid("must start with http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err(invalid("has no host"));
    }
    // Credentials are stored encrypted, never in a URL that is shown.
    if host.contains('@') {
        return Err(invalid(
            "must not carry a user or password; credentials are given apart and stored encrypted",
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains whitespace or control characters"));
    }
    Ok(url.to_owned())
}

impl Engine {
    pub(super) fn keyring(&self) -> Result<&Keyring> {
        self.inner.keyring.as_deref().ok_or_else(|| {
            Error::Invalid(format!(
                "no master key is configured: set {} to store or read secrets",
                crate::secrets::MASTER_KEY_ENV
            ))
        })
    }

    /// Creates an alert source (admins). Its token or password is stored encrypted;
    /// listings show only a hint.
    pub async fn create_alert_source(
        &self,
        caller: Caller<'_>,
        new: NewAlertSource,
    ) -> Result<AlertSource> {
        require_admin(caller)?;
        let name = check_name(&new.name)?;
        let prometheus_url = check_base_url("prometheusUrl", &new.prometheus_url)?;
        let alertmanager_url = check_base_url("alertmanagerUrl", &new.alertmanager_url)?;
        if prometheus_url.is_none() && alertmanager_url.is_none() {
            return Err(Error::Invalid(
                "an alert source needs a prometheusUrl, an alertmanagerUrl or both".into(),
            ));
        }
        check_timeout("timeout", new.timeout)?;
        let id = AlertSourceId::new();
        let (kind, username, secret) = match &new.auth {
            SourceAuth::None => (AuthKind::None, None, None),
            SourceAuth::Bearer(token) => (AuthKind::Bearer, None, Some(token)),
            SourceAuth::Basic { username, password } => {
                if username.is_empty() || username.len() > MAX_TEXT || username.contains(':') {
                    return Err(Error::Invalid(
                        "username: 1 to 2048 characters, without ':'".into(),
                    ));
                }
                (AuthKind::Basic, Some(username.clone()), Some(password))
            }
        };
        let (auth_encrypted, auth_hint) = match secret {
            None => (None, None),
            Some(secret) => {
                if secret.expose().is_empty() || secret.expose().len() > 8192 {
                    return Err(Error::Invalid(
                        "auth: the token or password must be 1 to 8192 bytes".into(),
                    ));
                }
                let sealed = SOURCE_AUTH.seal(self.keyring()?, id, secret);
                {
                    // A token's last characters help tell tokens apart; a password's
                    // would only help guess it.
                    let hint = match kind {
                        AuthKind::Bearer => secret.hint(),
                        _ => "…".to_owned(),
                    };
                    (Some(sealed), Some(hint))
                }
            }
        };
        let now = Utc::now();
        let source = AlertSource {
            id,
            name,
            prometheus_url,
            alertmanager_url,
            auth_kind: kind,
            username,
            auth_hint,
            timeout_ms: new.timeout.as_millis() as i64,
            created_at: now,
            updated_at: now,
        };
        store::alert_sources::insert(&self.inner.db, &source, auth_encrypted).await?;
        Ok(source)
    }

    /// Every alert source, by name, without secrets (viewers may list them).
    pub async fn alert_sources(&self) -> Result<Vec<AlertSource>> {
        store::alert_sources::list(&self.inner.db).await
    }

    /// Deletes an alert source (admins).
    pub async fn delete_alert_source(&self, caller: Caller<'_>, name: &str) -> Result<()> {
        require_admin(caller)?;
        if store::alert_sources::delete(&self.inner.db, name).await? {
            Ok(())
        } else {
            Err(Error::not_found("alert source", name))
        }
    }

    /// A source with its credential decrypted, for the tools that call it.
    pub async fn alert_source_connection(&self, name: &str) -> Result<SourceConnection> {
        let (source, sealed) = store::alert_sources::get_sealed(&self.inner.db, name)
            .await?
            .ok_or_else(|| Error::not_found("alert source", name))?;
        let secret = match sealed {
            None => None,
            Some(sealed) => Some(SOURCE_AUTH.open(self.keyring()?, source.id, &sealed)?),
        };
        let auth = match (source.auth_kind, secret, &source.username) {
            (AuthKind::None, _, _) => SourceAuth::None,
            (AuthKind::Bearer, Some(token), _) => SourceAuth::Bearer(token),
            (AuthKind::Basic, Some(password), Some(username)) => SourceAuth::Basic {
                username: username.clone(),
                password,
            },
            _ => {
                return Err(Error::Corrupt(format!(
                    "alert source {} lacks its credential",
                    source.name
                )));
            }
        };
        Ok(SourceConnection { source, auth })
    }

    /// The source a team queries: the one it names, else the stored source called
    /// `default`, else the environment's default source.
    pub async fn alert_source_for(&self, name: Option<&str>) -> Result<SourceConnection> {
        if let Some(name) = name {
            return self.alert_source_connection(name).await;
        }
        match self.alert_source_connection(DEFAULT_SOURCE).await {
            Err(Error::NotFound { .. }) => {}
            found => return found,
        }
        let Some(env) = &self.inner.default_source else {
            return Err(Error::Invalid(
                "no alert source: name one in the team's `source`, add one called \"default\" \
                 (`aiops source add --name default …`), or set AIOPS_PROMETHEUS_URL / \
                 AIOPS_ALERTMANAGER_URL"
                    .into(),
            ));
        };
        let now = Utc::now();
        Ok(SourceConnection {
            source: AlertSource {
                id: AlertSourceId(uuid::Uuid::nil()),
                name: DEFAULT_SOURCE.to_owned(),
                prometheus_url: env.prometheus_url.clone(),
                alertmanager_url: env.alertmanager_url.clone(),
                auth_kind: AuthKind::None,
                username: None,
                auth_hint: None,
                timeout_ms: DEFAULT_TIMEOUT.as_millis() as i64,
                created_at: now,
                updated_at: now,
            },
            auth: SourceAuth::None,
        })
    }

    /// Every stored secret (alert sources' credentials, webhooks' signing secrets,
    /// language-model API keys) with its row.
    async fn stored_secrets(&self) -> Result<Vec<(SealedRow, String)>> {
        let db = &self.inner.db;
        let sources = store::alert_sources::sealed(db).await?;
        let hooks = store::webhooks::sealed(db).await?;
        let keys = store::llm_credentials::sealed(db).await?;
        Ok(sources
            .into_iter()
            .map(|(id, v)| (SealedRow::AlertSource(id), v))
            .chain(hooks.into_iter().map(|(id, v)| (SealedRow::Webhook(id), v)))
            .chain(
                keys.into_iter()
                    .map(|(id, v)| (SealedRow::LlmCredential(id), v)),
            )
            .collect())
    }

    /// Checks that every stored secret decrypts with this process's keys: a server
    /// that cannot read them must not start and fail later, one call at a time.
    pub async fn check_secrets(&self) -> Result<usize> {
        let sealed = self.stored_secrets().await?;
        if sealed.is_empty() {
            return Ok(0);
        }
        let ring = self.inner.keyring.as_deref().ok_or_else(|| {
            Error::Invalid(format!(
                "{} stored secret(s) exist but no master key is configured: set {} to the key they were encrypted with",
                sealed.len(),
                crate::secrets::MASTER_KEY_ENV
            ))
        })?;
        for (row, value) in &sealed {
            row.column().open(ring, row.row(), value)?;
        }
        Ok(sealed.len())
    }

    /// Re-encrypts every stored secret under the active key (admins; idempotent).
    /// Stops at the first secret that does not decrypt, naming it; what was
    /// rotated before stays rotated.
    pub async fn rotate_secrets(&self, caller: Caller<'_>) -> Result<Rotation> {
        require_admin(caller)?;
        let ring = self.keyring()?;
        let mut report = Rotation::default();
        for (row, value) in self.stored_secrets().await? {
            let Some(resealed) = row.column().reseal(ring, row.row(), &value)? else {
                report.current += 1;
                continue;
            };
            // A row changed meanwhile keeps its new value (already current).
            let db = &self.inner.db;
            let now = Utc::now();
            let done = match row {
                SealedRow::AlertSource(id) => {
                    store::alert_sources::reseal(db, id, &value, &resealed, now).await?
                }
                SealedRow::Webhook(id) => {
                    store::webhooks::reseal(db, id, &value, &resealed, now).await?
                }
                SealedRow::LlmCredential(id) => {
                    store::llm_credentials::reseal(db, id, &value, &resealed, now).await?
                }
            };
            if done {
                report.rotated += 1;
            }
        }
        Ok(report)
    }
}

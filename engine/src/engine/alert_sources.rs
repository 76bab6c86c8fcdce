//! Alert sources (admins manage them) and the secrets at rest they hold: sealing on
//! write, the start-up check that every stored secret still decrypts, rotation.

use std::time::Duration;

use chrono::Utc;

use super::Engine;
use crate::auth::{Caller, Role};
use crate::ids::AlertSourceId;
use crate::model::{AlertSource, AuthKind};
use crate::secrets::{Keyring, Place, Secret};
use crate::store;
use crate::{Error, Result};

const TABLE: &str = "alert_sources";
const AUTH_COLUMN: &str = "auth_encrypted";
/// Longest request timeout a source may ask for.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest name, URL or user name accepted.
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
        let prometheus_url = check_url("AIOPS_PROMETHEUS_URL", &prometheus_url)?;
        let alertmanager_url = check_url("AIOPS_ALERTMANAGER_URL", &alertmanager_url)?;
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

/// Seals a source's credential for its row.
fn seal(ring: &Keyring, id: AlertSourceId, secret: &Secret) -> String {
    let row = id.to_string();
    ring.encrypt(auth_place(&row), secret)
}

/// Opens a source's sealed credential (a value moved from another row fails).
fn open(ring: &Keyring, id: AlertSourceId, sealed: &str) -> Result<Secret> {
    Ok(ring.decrypt(auth_place(&id.to_string()), sealed)?)
}

fn auth_place(row: &str) -> Place<'_> {
    Place {
        table: TABLE,
        row_id: row,
        column: AUTH_COLUMN,
    }
}

fn require_admin(caller: Caller<'_>) -> Result<()> {
    match caller {
        Caller::Local => Ok(()),
        Caller::Principal(p) => p.require(Role::Admin),
    }
}

fn check_url(field: &str, url: &Option<String>) -> Result<Option<String>> {
    let Some(url) = url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let invalid = |why: &str| Error::Invalid(format!("{field}: {why}"));
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
    // Credentials belong in the encrypted auth, never in a URL that is shown.
    if host.contains('@') {
        return Err(invalid(
            "must not carry a user or password; give them as the source's auth",
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains whitespace or control characters"));
    }
    Ok(Some(url.trim_end_matches('/').to_owned()))
}

impl Engine {
    fn keyring(&self) -> Result<&Keyring> {
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
        let name = new.name.trim().to_owned();
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
        let prometheus_url = check_url("prometheusUrl", &new.prometheus_url)?;
        let alertmanager_url = check_url("alertmanagerUrl", &new.alertmanager_url)?;
        if prometheus_url.is_none() && alertmanager_url.is_none() {
            return Err(Error::Invalid(
                "an alert source needs a prometheusUrl, an alertmanagerUrl or both".into(),
            ));
        }
        if new.timeout.is_zero() || new.timeout > MAX_TIMEOUT {
            return Err(Error::Invalid("timeout: between 1 ms and 300 s".into()));
        }
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
                let sealed = seal(self.keyring()?, id, secret);
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
            Some(sealed) => Some(open(self.keyring()?, source.id, &sealed)?),
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

    /// Checks that every stored secret decrypts with this process's keys: a server
    /// that cannot read them must not start and fail later, one call at a time.
    pub async fn check_secrets(&self) -> Result<usize> {
        let sealed = store::alert_sources::sealed(&self.inner.db).await?;
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
        for (id, value) in &sealed {
            open(ring, *id, value)?;
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
        for (id, value) in store::alert_sources::sealed(&self.inner.db).await? {
            let row = id.to_string();
            match ring.reencrypt(auth_place(&row), &value)? {
                None => report.current += 1,
                Some(resealed) => {
                    // A row changed meanwhile keeps its new value (already current).
                    if store::alert_sources::reseal(
                        &self.inner.db,
                        id,
                        &value,
                        &resealed,
                        Utc::now(),
                    )
                    .await?
                    {
                        report.rotated += 1;
                    }
                }
            }
        }
        Ok(report)
    }
}

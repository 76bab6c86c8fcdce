//! Language-model providers, their credentials and the models teams name (admins
//! manage them). An API key is sealed on write, listed only as a hint, and
//! decrypted only for a call ([`Engine::model_connection`]). A credential in use by a
//! provider, and a provider in use by a model, cannot be deleted.

use std::collections::BTreeSet;
use std::fmt;

use chrono::Utc;

use super::Engine;
use super::alert_sources::{SecretColumn, check_name, check_url, require_admin};
use crate::auth::Caller;
use crate::ids::{CredentialId, ModelId, ProviderId};
use crate::model::{Credential, LanguageModel, ModelConnection, Provider, ProviderKind};
use crate::secrets::Secret;
use crate::store;
use crate::{Error, Result};

/// Where credentials keep their API key.
pub(super) const SECRET: SecretColumn = SecretColumn {
    table: "llm_credentials",
    column: "secret_encrypted",
};
/// Longest API key.
const MAX_SECRET_BYTES: usize = 8192;
/// Longest upstream model id or API version.
const MAX_UPSTREAM_BYTES: usize = 256;
/// Largest context window accepted.
const MAX_CONTEXT_TOKENS: i64 = 100_000_000;
/// Model names that stored models may not take.
const RESERVED_PREFIX: &str = "builtin:";
/// Context window of a model created without one.
pub const DEFAULT_CONTEXT_TOKENS: i64 = 128_000;

/// A provider to create.
#[derive(Clone, Debug)]
pub struct NewProvider {
    pub name: String,
    pub kind: ProviderKind,
    /// http(s), without user, password, query or fragment (see [`Provider::base_url`]).
    pub base_url: String,
    /// Azure only: the data-plane `api-version` (absent: the v1 surface).
    pub azure_api_version: Option<String>,
    /// The credential's name; none for servers without keys (a local vLLM or Ollama).
    pub credential: Option<String>,
}

/// A model to create. [`NewModel::new`] gives the defaults: every capability, a
/// 128k context, no price.
#[derive(Clone, Debug)]
pub struct NewModel {
    /// What teams write in `model:`; not `builtin:…`.
    pub name: String,
    /// The provider's name.
    pub provider: String,
    /// The model id sent to the provider (Azure: the deployment name).
    pub upstream: String,
    pub supports_tools: bool,
    pub supports_json: bool,
    pub supports_streaming: bool,
    pub stream_usage: bool,
    pub context_tokens: i64,
    /// USD per million input tokens.
    pub input_price_per_mtok: f64,
    /// USD per million output tokens.
    pub output_price_per_mtok: f64,
}

impl NewModel {
    pub fn new(
        name: impl Into<String>,
        provider: impl Into<String>,
        upstream: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            provider: provider.into(),
            upstream: upstream.into(),
            supports_tools: true,
            supports_json: true,
            supports_streaming: true,
            stream_usage: true,
            context_tokens: DEFAULT_CONTEXT_TOKENS,
            input_price_per_mtok: 0.0,
            output_price_per_mtok: 0.0,
        }
    }
}

/// What [`Engine::update_model`] changes; `None` keeps the field.
#[derive(Clone, Debug, Default)]
pub struct ModelUpdate {
    pub provider: Option<String>,
    pub upstream: Option<String>,
    pub supports_tools: Option<bool>,
    pub supports_json: Option<bool>,
    pub supports_streaming: Option<bool>,
    pub stream_usage: Option<bool>,
    pub context_tokens: Option<i64>,
    pub input_price_per_mtok: Option<f64>,
    pub output_price_per_mtok: Option<f64>,
}

/// An invalid field of the `what` called `name`: `provider "x": baseUrl: …`.
fn invalid(what: &str, name: &str, message: impl fmt::Display) -> Error {
    Error::Invalid(format!("{what} {name:?}: {message}"))
}

/// Puts `what "name": ` before the message of an invalid-input error.
fn within<'a>(what: &'static str, name: &'a str) -> impl Fn(Error) -> Error + 'a {
    move |e| match e {
        Error::Invalid(m) => invalid(what, name, m),
        e => e,
    }
}

/// `"a", "b"`.
fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A model's name: 1 to 100 letters, digits, '-', '_', '.', ':' or '/', and not a
/// built-in's.
fn check_model_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.starts_with(RESERVED_PREFIX) {
        return Err(Error::Invalid(format!(
            "name: {RESERVED_PREFIX}… names are reserved for built-in models"
        )));
    }
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'))
    {
        return Err(Error::Invalid(
            "name: 1 to 100 characters of letters, digits, '-', '_', '.', ':' or '/'".into(),
        ));
    }
    Ok(name.to_owned())
}

/// A provider's base URL: [`check_url`], no query or fragment, no trailing '/'.
fn check_base_url(url: &str) -> Result<String> {
    let url = check_url("baseUrl", url)?;
    if url.contains(['?', '#']) {
        return Err(Error::Invalid(
            "baseUrl: must not carry a query or fragment; the path is completed per kind".into(),
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Azure's `api-version`: only for azure_openai; blank means none.
fn check_api_version(kind: ProviderKind, version: Option<&str>) -> Result<Option<String>> {
    let Some(version) = version.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if kind != ProviderKind::AzureOpenAi {
        return Err(Error::Invalid(format!(
            "azureApiVersion: only for kind azure_openai, not {kind}"
        )));
    }
    if version.len() > 64
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(Error::Invalid(
            "azureApiVersion: 1 to 64 letters, digits, '-', '.' or '_' (e.g. 2024-10-21)".into(),
        ));
    }
    Ok(Some(version.to_owned()))
}

fn check_upstream(upstream: &str) -> Result<String> {
    let upstream = upstream.trim();
    if upstream.is_empty()
        || upstream.len() > MAX_UPSTREAM_BYTES
        || upstream.chars().any(char::is_control)
    {
        return Err(Error::Invalid(format!(
            "upstream: 1 to {MAX_UPSTREAM_BYTES} bytes without control characters"
        )));
    }
    Ok(upstream.to_owned())
}

fn check_context_tokens(tokens: i64) -> Result<()> {
    if !(1..=MAX_CONTEXT_TOKENS).contains(&tokens) {
        return Err(Error::Invalid(format!(
            "contextTokens: between 1 and {MAX_CONTEXT_TOKENS}"
        )));
    }
    Ok(())
}

fn check_price(field: &str, price: f64) -> Result<()> {
    if !price.is_finite() || price < 0.0 {
        return Err(Error::Invalid(format!(
            "{field}: a finite number of USD per million tokens, at least 0"
        )));
    }
    Ok(())
}

/// Every check of a model's fields but its name and provider.
fn check_model(model: &LanguageModel) -> Result<()> {
    check_context_tokens(model.context_tokens)?;
    check_price("inputPricePerMtok", model.input_price_per_mtok)?;
    check_price("outputPricePerMtok", model.output_price_per_mtok)
}

impl Engine {
    /// Stores an API key under `name` (admins), sealed; listings show only a hint.
    pub async fn create_credential(
        &self,
        caller: Caller<'_>,
        name: &str,
        secret: Secret,
    ) -> Result<Credential> {
        require_admin(caller)?;
        let name = check_name(name).map_err(within("credential", name))?;
        let key = secret.expose();
        if key.is_empty() || key.len() > MAX_SECRET_BYTES || key.chars().any(char::is_control) {
            return Err(invalid(
                "credential",
                &name,
                format!("secret: 1 to {MAX_SECRET_BYTES} bytes without control characters"),
            ));
        }
        let id = CredentialId::new();
        let sealed = SECRET.seal(self.keyring()?, id, &secret);
        let now = Utc::now();
        let credential = Credential {
            id,
            name,
            hint: secret.hint(),
            created_at: now,
            updated_at: now,
        };
        store::llm_credentials::insert(&self.inner.db, &credential, sealed).await?;
        Ok(credential)
    }

    /// Every credential, by name, without keys (admins).
    pub async fn credentials(&self, caller: Caller<'_>) -> Result<Vec<Credential>> {
        require_admin(caller)?;
        store::llm_credentials::list(&self.inner.db).await
    }

    /// Deletes a credential (admins); refused while providers use it, naming them.
    pub async fn delete_credential(&self, caller: Caller<'_>, name: &str) -> Result<()> {
        require_admin(caller)?;
        let txn = store::begin_write(&self.inner.db).await?;
        let credential = store::llm_credentials::get(&txn, name)
            .await?
            .ok_or_else(|| Error::not_found("credential", name))?;
        let users = store::llm_providers::using_credential(&txn, credential.id).await?;
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "credential {name:?} is used by provider(s) {}: delete them first",
                quoted(&users)
            )));
        }
        match store::llm_credentials::delete(&txn, credential.id).await {
            Ok(_) => {}
            // A provider created meanwhile (the key refused the delete).
            Err(Error::Conflict(_)) => {
                return Err(Error::Conflict(format!(
                    "credential {name:?} is used by a provider created meanwhile"
                )));
            }
            Err(e) => return Err(e),
        }
        txn.commit().await?;
        Ok(())
    }

    /// Creates a provider (admins). Its credential, when it names one, must exist.
    pub async fn create_provider(&self, caller: Caller<'_>, new: NewProvider) -> Result<Provider> {
        require_admin(caller)?;
        let name = check_name(&new.name).map_err(within("provider", &new.name))?;
        let checked = (|| {
            let base_url = check_base_url(&new.base_url)?;
            let version = check_api_version(new.kind, new.azure_api_version.as_deref())?;
            Ok::<_, Error>((base_url, version))
        })();
        let (base_url, azure_api_version) = checked.map_err(within("provider", &name))?;
        let credential = match new.credential.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(c) => Some(
                store::llm_credentials::get(&self.inner.db, c)
                    .await?
                    .ok_or_else(|| {
                        invalid(
                            "provider",
                            &name,
                            format!("credential: no credential named {c:?}"),
                        )
                    })?,
            ),
        };
        let now = Utc::now();
        let provider = Provider {
            id: ProviderId::new(),
            name,
            kind: new.kind,
            base_url,
            azure_api_version,
            credential: credential.as_ref().map(|c| c.name.clone()),
            created_at: now,
            updated_at: now,
        };
        store::llm_providers::insert(&self.inner.db, &provider, credential.map(|c| c.id)).await?;
        Ok(provider)
    }

    /// Every provider, by name (viewers may list them).
    pub async fn providers(&self) -> Result<Vec<Provider>> {
        store::llm_providers::list(&self.inner.db).await
    }

    /// Deletes a provider (admins); refused while models use it, naming them.
    pub async fn delete_provider(&self, caller: Caller<'_>, name: &str) -> Result<()> {
        require_admin(caller)?;
        let txn = store::begin_write(&self.inner.db).await?;
        let stored = store::llm_providers::get(&txn, name)
            .await?
            .ok_or_else(|| Error::not_found("provider", name))?;
        let users = store::llm_models::using_provider(&txn, stored.provider.id).await?;
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "provider {name:?} is used by model(s) {}: delete them first",
                quoted(&users)
            )));
        }
        match store::llm_providers::delete(&txn, stored.provider.id).await {
            Ok(_) => {}
            Err(Error::Conflict(_)) => {
                return Err(Error::Conflict(format!(
                    "provider {name:?} is used by a model created meanwhile"
                )));
            }
            Err(e) => return Err(e),
        }
        txn.commit().await?;
        Ok(())
    }

    /// Creates a model (admins); teams may name it at once.
    pub async fn create_model(&self, caller: Caller<'_>, new: NewModel) -> Result<LanguageModel> {
        require_admin(caller)?;
        let name = check_model_name(&new.name).map_err(within("model", &new.name))?;
        let upstream = check_upstream(&new.upstream).map_err(within("model", &name))?;
        let now = Utc::now();
        let mut model = LanguageModel {
            id: ModelId::new(),
            name,
            provider: String::new(),
            upstream,
            supports_tools: new.supports_tools,
            supports_json: new.supports_json,
            supports_streaming: new.supports_streaming,
            stream_usage: new.stream_usage,
            context_tokens: new.context_tokens,
            input_price_per_mtok: new.input_price_per_mtok,
            output_price_per_mtok: new.output_price_per_mtok,
            created_at: now,
            updated_at: now,
        };
        check_model(&model).map_err(within("model", &model.name))?;
        let provider = self.provider_of(&model.name, &new.provider).await?;
        model.provider = provider.name;
        store::llm_models::insert(&self.inner.db, &model, provider.id).await?;
        Ok(model)
    }

    /// Changes a model's provider, upstream id, capabilities or prices (admins).
    pub async fn update_model(
        &self,
        caller: Caller<'_>,
        name: &str,
        update: ModelUpdate,
    ) -> Result<LanguageModel> {
        require_admin(caller)?;
        let db = &self.inner.db;
        let (mut model, mut provider_id) = store::llm_models::get(db, name)
            .await?
            .ok_or_else(|| Error::not_found("model", name))?;
        if let Some(upstream) = &update.upstream {
            model.upstream = check_upstream(upstream).map_err(within("model", name))?;
        }
        let set = |field: &mut bool, value: Option<bool>| {
            if let Some(v) = value {
                *field = v;
            }
        };
        set(&mut model.supports_tools, update.supports_tools);
        set(&mut model.supports_json, update.supports_json);
        set(&mut model.supports_streaming, update.supports_streaming);
        set(&mut model.stream_usage, update.stream_usage);
        model.context_tokens = update.context_tokens.unwrap_or(model.context_tokens);
        model.input_price_per_mtok = update
            .input_price_per_mtok
            .unwrap_or(model.input_price_per_mtok);
        model.output_price_per_mtok = update
            .output_price_per_mtok
            .unwrap_or(model.output_price_per_mtok);
        check_model(&model).map_err(within("model", name))?;
        if let Some(provider) = &update.provider {
            let provider = self.provider_of(name, provider).await?;
            model.provider = provider.name;
            provider_id = provider.id;
        }
        model.updated_at = Utc::now();
        if !store::llm_models::update(db, &model, provider_id).await? {
            return Err(Error::not_found("model", name));
        }
        Ok(model)
    }

    /// The provider a model names, or what is wrong with the name.
    async fn provider_of(&self, model: &str, provider: &str) -> Result<Provider> {
        let provider = provider.trim();
        if provider.is_empty() {
            return Err(invalid("model", model, "provider: required"));
        }
        Ok(store::llm_providers::get(&self.inner.db, provider)
            .await?
            .ok_or_else(|| {
                invalid(
                    "model",
                    model,
                    format!("provider: no provider named {provider:?}"),
                )
            })?
            .provider)
    }

    /// Every stored model, by name (viewers may list them).
    pub async fn models(&self) -> Result<Vec<LanguageModel>> {
        store::llm_models::list(&self.inner.db).await
    }

    /// Deletes a model (admins). A model the latest version of a team names is not
    /// deleted: its runs would fall back to the rules without saying why. (A team
    /// applied at the same instant can still name it; its runs then skip it.)
    pub async fn delete_model(&self, caller: Caller<'_>, name: &str) -> Result<()> {
        require_admin(caller)?;
        let users = self.teams_naming_model(name).await?;
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "model {name:?} is used by team(s) {}: change them first",
                quoted(&users)
            )));
        }
        if store::llm_models::delete(&self.inner.db, name).await? {
            Ok(())
        } else {
            Err(Error::not_found("model", name))
        }
    }

    /// The teams whose latest version names the model `name`.
    async fn teams_naming_model(&self, name: &str) -> Result<Vec<String>> {
        let mut users = Vec::new();
        let mut page = crate::page::PageRequest::first(200);
        loop {
            let teams = self.teams(&page).await?;
            for team in &teams.items {
                let names_it =
                    serde_json::from_value::<crate::topology::TeamSpec>(team.spec.clone())
                        .is_ok_and(|spec| spec.model_names().contains(name));
                if names_it {
                    users.push(team.name.clone());
                }
            }
            match (teams.has_next, teams.items.last()) {
                (true, Some(last)) => page = page.after(Some(crate::page::Keyed::key(last))),
                _ => return Ok(users),
            }
        }
    }

    /// The stored model called `name` with its provider and the provider's key
    /// decrypted: what a call needs. `None` when no stored model has that name (it
    /// may be a built-in one). Read per call; never record it.
    pub async fn model_connection(&self, name: &str) -> Result<Option<ModelConnection>> {
        let db = &self.inner.db;
        let Some((model, provider_id)) = store::llm_models::get(db, name).await? else {
            return Ok(None);
        };
        let stored = store::llm_providers::get_by_id(db, provider_id)
            .await?
            .ok_or_else(|| Error::Corrupt(format!("model {name:?}: its provider is missing")))?;
        let api_key = match stored.credential_id {
            None => None,
            Some(id) => {
                let (credential, sealed) = store::llm_credentials::get_sealed(db, id)
                    .await?
                    .ok_or_else(|| {
                        Error::Corrupt(format!(
                            "provider {:?}: its credential is missing",
                            stored.provider.name
                        ))
                    })?;
                Some(SECRET.open(self.keyring()?, credential.id, &sealed)?)
            }
        };
        Ok(Some(ModelConnection {
            model,
            provider: stored.provider,
            api_key,
        }))
    }

    /// The names of every stored model (what teams may name besides the built-ins).
    pub async fn model_names(&self) -> Result<BTreeSet<String>> {
        store::llm_models::names(&self.inner.db).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_checks_say_what_is_wrong() {
        assert_eq!(check_model_name(" gpt-4o ").unwrap(), "gpt-4o");
        assert_eq!(check_model_name("qwen2.5:7b").unwrap(), "qwen2.5:7b");
        assert!(
            check_model_name("builtin:rules")
                .unwrap_err()
                .to_string()
                .contains("reserved")
        );
        assert!(check_model_name("a b").is_err());
        assert_eq!(
            check_base_url("https://api.openai.com/v1/").unwrap(),
            "https://api.openai.com/v1"
        );
        for (bad, want) in [
            ("https://api/v1?x=1", "query"),
            ("https://k:s@api/v1", "user"),
            ("api/v1", "http"),
        ] {
            let err = check_base_url(bad).unwrap_err().to_string();
            assert!(err.starts_with("baseUrl:") && err.contains(want), "{err}");
        }
        assert_eq!(
            check_api_version(ProviderKind::AzureOpenAi, Some(" 2024-10-21 ")).unwrap(),
            Some("2024-10-21".into())
        );
        assert_eq!(
            check_api_version(ProviderKind::OpenAi, Some(" ")).unwrap(),
            None
        );
        assert!(check_api_version(ProviderKind::OpenAi, Some("2024-10-21")).is_err());
        assert!(check_price("p", f64::NAN).is_err());
        assert!(check_price("p", -0.5).is_err());
        assert!(check_price("p", 0.0).is_ok());
        assert!(check_context_tokens(0).is_err());
        let e = within("provider", "x")(Error::Invalid("baseUrl: bad".into()));
        assert_eq!(e.to_string(), "provider \"x\": baseUrl: bad");
    }
}

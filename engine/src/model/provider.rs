//! Language-model providers, their credentials and the models they offer, as
//! listings show them: a credential only as a masked hint.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::ids::{CredentialId, ModelId, ProviderId};
use crate::secrets::Secret;

/// The wire protocol a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions (OpenAI, DeepSeek, Qwen/DashScope, vLLM,
    /// Ollama, LiteLLM): `POST {base_url}/chat/completions`, bearer key.
    OpenAi,
    /// Azure OpenAI: the deployment in the path, `api-version`, `api-key` header.
    AzureOpenAi,
    /// Anthropic Messages: `POST {base_url}/v1/messages`, `x-api-key`.
    Anthropic,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 3] = [Self::OpenAi, Self::AzureOpenAi, Self::Anthropic];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::AzureOpenAi => "azure_openai",
            Self::Anthropic => "anthropic",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown provider kind {s:?}: expected openai, azure_openai or anthropic")
            })
    }
}

/// An LLM endpoint: a kind and a base URL, and the credential it authenticates with.
#[derive(Clone, Debug, PartialEq)]
pub struct Provider {
    pub id: ProviderId,
    pub name: String,
    pub kind: ProviderKind,
    /// OpenAI-compatible: up to and including `/v1` (e.g. `https://api.openai.com/v1`);
    /// Azure: the resource endpoint (`https://x.openai.azure.com`); Anthropic: the
    /// host (`https://api.anthropic.com`).
    pub base_url: String,
    /// Azure only: the data-plane `api-version` (absent: the v1 surface, `/openai/v1`).
    pub azure_api_version: Option<String>,
    /// The credential's name, when the provider needs one.
    pub credential: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An API key for a provider, without the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub id: CredentialId,
    pub name: String,
    /// What may be shown of the key, e.g. `…f00d`.
    pub hint: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A model a provider offers, under the name teams use for it.
#[derive(Clone, Debug, PartialEq)]
pub struct LanguageModel {
    pub id: ModelId,
    /// What teams write in `model:` (unique, e.g. `gpt-4o`, `default`).
    pub name: String,
    /// The provider's name.
    pub provider: String,
    /// The model id sent to the provider (Azure: the deployment name).
    pub upstream: String,
    pub supports_tools: bool,
    pub supports_json: bool,
    pub supports_streaming: bool,
    /// Whether to ask for usage in the stream (`stream_options.include_usage`):
    /// some OpenAI-compatible servers reject the field.
    pub stream_usage: bool,
    pub context_tokens: i64,
    /// USD per million input tokens.
    pub input_price_per_mtok: f64,
    /// USD per million output tokens.
    pub output_price_per_mtok: f64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl LanguageModel {
    /// What `input` and `output` tokens cost at this model's prices.
    pub fn cost_usd(&self, input: u64, output: u64) -> f64 {
        (input as f64 * self.input_price_per_mtok + output as f64 * self.output_price_per_mtok)
            / 1_000_000.0
    }
}

/// A model with its provider and the provider's key decrypted: what a call needs.
/// Built per execution and never recorded.
#[derive(Clone)]
pub struct ModelConnection {
    pub model: LanguageModel,
    pub provider: Provider,
    pub api_key: Option<Secret>,
}

impl fmt::Debug for ModelConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelConnection")
            .field("model", &self.model.name)
            .field("provider", &self.provider.name)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_kind_is_named() {
        for kind in ProviderKind::ALL {
            assert_eq!(kind.as_str().parse::<ProviderKind>(), Ok(kind));
        }
        let err = "bedrock".parse::<ProviderKind>().unwrap_err();
        assert!(
            err.contains("\"bedrock\"") && err.contains("azure_openai"),
            "{err}"
        );
    }
}

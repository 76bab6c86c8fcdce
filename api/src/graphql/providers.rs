//! Language-model providers, credentials and models over GraphQL: viewers list
//! providers, models and the circuit breakers; admins list credentials (hints only)
//! and create, change and delete all three; operators test a model's connection. An
//! API key goes in, never out.

use aiops_engine::auth::{Caller, Role as EngineRole};
use aiops_engine::llm::breaker::{BreakerState as EngineBreakerState, BreakerStatus as Breaker};
use aiops_engine::llm::client::LlmClient;
use aiops_engine::llm::probe::probe;
use aiops_engine::model::{
    Credential as CredentialRecord, LanguageModel, Provider as ProviderRecord,
    ProviderKind as EngineKind,
};
use aiops_engine::secrets::Secret;
use aiops_engine::{Engine, ModelUpdate, NewModel, NewProvider};
use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::auth::{RoleGuard, principal};
use super::error::ToGql;

/// The wire protocol a provider speaks.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, LiteLLM, …).
    Openai,
    /// Azure OpenAI (deployment in the path, `api-key` header).
    AzureOpenai,
    /// Anthropic Messages.
    Anthropic,
}

impl From<EngineKind> for ProviderKind {
    fn from(k: EngineKind) -> Self {
        match k {
            EngineKind::OpenAi => ProviderKind::Openai,
            EngineKind::AzureOpenAi => ProviderKind::AzureOpenai,
            EngineKind::Anthropic => ProviderKind::Anthropic,
        }
    }
}

impl From<ProviderKind> for EngineKind {
    fn from(k: ProviderKind) -> Self {
        match k {
            ProviderKind::Openai => EngineKind::OpenAi,
            ProviderKind::AzureOpenai => EngineKind::AzureOpenAi,
            ProviderKind::Anthropic => EngineKind::Anthropic,
        }
    }
}

/// An LLM endpoint: a kind, a base URL and the credential it authenticates with.
#[derive(SimpleObject)]
pub struct Provider {
    pub id: Uuid,
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    /// Azure only: the data-plane `api-version`.
    pub azure_api_version: Option<String>,
    /// The credential's name.
    pub credential: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ProviderRecord> for Provider {
    fn from(p: ProviderRecord) -> Self {
        Provider {
            id: p.id.0,
            name: p.name,
            kind: p.kind.into(),
            base_url: p.base_url,
            azure_api_version: p.azure_api_version,
            credential: p.credential,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// An API key for providers, stored encrypted.
#[derive(SimpleObject)]
pub struct Credential {
    pub id: Uuid,
    pub name: String,
    /// The key's last characters (e.g. `…f00d`); never the key.
    pub hint: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<CredentialRecord> for Credential {
    fn from(c: CredentialRecord) -> Self {
        Credential {
            id: c.id.0,
            name: c.name,
            hint: c.hint,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A model a provider offers, under the name teams use for it.
#[derive(SimpleObject)]
pub struct Model {
    pub id: Uuid,
    /// What teams write in `model:`.
    pub name: String,
    /// The provider's name.
    pub provider: String,
    /// The model id sent to the provider (Azure: the deployment).
    pub upstream: String,
    pub supports_tools: bool,
    pub supports_json: bool,
    pub supports_streaming: bool,
    /// Whether usage is asked for in the stream (`stream_options.include_usage`).
    pub stream_usage: bool,
    pub context_tokens: i64,
    /// USD per million input tokens.
    pub input_price_per_mtok: f64,
    /// USD per million output tokens.
    pub output_price_per_mtok: f64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<LanguageModel> for Model {
    fn from(m: LanguageModel) -> Self {
        Model {
            id: m.id.0,
            name: m.name,
            provider: m.provider,
            upstream: m.upstream,
            supports_tools: m.supports_tools,
            supports_json: m.supports_json,
            supports_streaming: m.supports_streaming,
            stream_usage: m.stream_usage,
            context_tokens: m.context_tokens,
            input_price_per_mtok: m.input_price_per_mtok,
            output_price_per_mtok: m.output_price_per_mtok,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// The result of `testModel`.
#[derive(SimpleObject)]
pub struct ModelTest {
    pub ok: bool,
    /// From the request to the whole answer or the failure.
    pub latency_ms: i32,
    /// What the model answered, or why it did not.
    pub message: String,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until `retryAt`.
    Open,
    /// A few probe calls go through; a success closes it.
    HalfOpen,
}

/// The circuit breaker of one model endpoint (kind, base URL, model).
#[derive(SimpleObject)]
pub struct BreakerStatus {
    pub endpoint: String,
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// When an open breaker lets probes through.
    pub retry_at: Option<DateTime<Utc>>,
}

impl From<Breaker> for BreakerStatus {
    fn from(b: Breaker) -> Self {
        BreakerStatus {
            endpoint: b.endpoint,
            state: match b.state {
                EngineBreakerState::Closed => BreakerState::Closed,
                EngineBreakerState::Open => BreakerState::Open,
                EngineBreakerState::HalfOpen => BreakerState::HalfOpen,
            },
            consecutive_failures: b.consecutive_failures,
            retry_at: b.retry_at,
        }
    }
}

#[derive(InputObject)]
pub struct CreateProviderInput {
    pub name: String,
    pub kind: ProviderKind,
    /// http(s), without user, password or query: OpenAI-compatible up to `/v1`,
    /// Azure the resource endpoint, Anthropic the host.
    pub base_url: String,
    /// Azure only (absent: the v1 surface).
    pub azure_api_version: Option<String>,
    /// The credential's name; none for servers without keys.
    pub credential: Option<String>,
}

#[derive(InputObject)]
pub struct CreateModelInput {
    /// What teams write in `model:`; not `builtin:…`.
    pub name: String,
    /// The provider's name.
    pub provider: String,
    /// The model id sent to the provider (default: `name`).
    pub upstream: Option<String>,
    /// Default true.
    pub supports_tools: Option<bool>,
    /// Default true.
    pub supports_json: Option<bool>,
    /// Default true.
    pub supports_streaming: Option<bool>,
    /// Default true; some OpenAI-compatible servers refuse `stream_options`.
    pub stream_usage: Option<bool>,
    /// Default 128000.
    pub context_tokens: Option<i64>,
    /// USD per million input tokens (default 0).
    pub input_price_per_mtok: Option<f64>,
    /// USD per million output tokens (default 0).
    pub output_price_per_mtok: Option<f64>,
}

/// What `updateModel` changes; absent fields stay.
#[derive(InputObject)]
pub struct UpdateModelInput {
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

#[derive(Default)]
pub struct ProvidersQuery;

#[Object]
impl ProvidersQuery {
    /// Language-model providers, by name.
    #[graphql(guard = "RoleGuard(EngineRole::Viewer)")]
    async fn providers(&self, ctx: &Context<'_>) -> Result<Vec<Provider>> {
        let list = ctx.data::<Engine>()?.providers().await.gql()?;
        Ok(list.into_iter().map(Provider::from).collect())
    }

    /// Providers' API keys, by name: hints only.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn credentials(&self, ctx: &Context<'_>) -> Result<Vec<Credential>> {
        let p = principal(ctx)?;
        let list = ctx
            .data::<Engine>()?
            .credentials(Caller::Principal(p))
            .await
            .gql()?;
        Ok(list.into_iter().map(Credential::from).collect())
    }

    /// The stored models teams may name (besides `default` and `builtin:rules`), by name.
    #[graphql(guard = "RoleGuard(EngineRole::Viewer)")]
    async fn models(&self, ctx: &Context<'_>) -> Result<Vec<Model>> {
        let list = ctx.data::<Engine>()?.models().await.gql()?;
        Ok(list.into_iter().map(Model::from).collect())
    }

    /// The circuit breakers of the model endpoints this server has called.
    #[graphql(guard = "RoleGuard(EngineRole::Viewer)")]
    async fn llm_breakers(&self, ctx: &Context<'_>) -> Result<Vec<BreakerStatus>> {
        let statuses = ctx.data::<LlmClient>()?.breakers().statuses();
        Ok(statuses.into_iter().map(BreakerStatus::from).collect())
    }
}

#[derive(Default)]
pub struct ProvidersMutation;

#[Object]
impl ProvidersMutation {
    /// Stores an API key under a name, encrypted; it is shown only as a hint.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn create_credential(
        &self,
        ctx: &Context<'_>,
        name: String,
        #[graphql(secret)] secret: String,
    ) -> Result<Credential> {
        let p = principal(ctx)?;
        let credential = ctx
            .data::<Engine>()?
            .create_credential(Caller::Principal(p), &name, Secret::new(secret))
            .await
            .gql()?;
        Ok(credential.into())
    }

    /// Deletes a credential; refused (CONFLICT) while providers use it.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn delete_credential(&self, ctx: &Context<'_>, name: String) -> Result<bool> {
        let p = principal(ctx)?;
        ctx.data::<Engine>()?
            .delete_credential(Caller::Principal(p), &name)
            .await
            .gql()?;
        Ok(true)
    }

    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn create_provider(
        &self,
        ctx: &Context<'_>,
        input: CreateProviderInput,
    ) -> Result<Provider> {
        let p = principal(ctx)?;
        let provider = ctx
            .data::<Engine>()?
            .create_provider(
                Caller::Principal(p),
                NewProvider {
                    name: input.name,
                    kind: input.kind.into(),
                    base_url: input.base_url,
                    azure_api_version: input.azure_api_version,
                    credential: input.credential,
                },
            )
            .await
            .gql()?;
        Ok(provider.into())
    }

    /// Deletes a provider; refused (CONFLICT) while models use it.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn delete_provider(&self, ctx: &Context<'_>, name: String) -> Result<bool> {
        let p = principal(ctx)?;
        ctx.data::<Engine>()?
            .delete_provider(Caller::Principal(p), &name)
            .await
            .gql()?;
        Ok(true)
    }

    /// Creates a model; teams may name it at once.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn create_model(&self, ctx: &Context<'_>, input: CreateModelInput) -> Result<Model> {
        let p = principal(ctx)?;
        let upstream = input.upstream.unwrap_or_else(|| input.name.clone());
        let defaults = NewModel::new(input.name, input.provider, upstream);
        let new = NewModel {
            supports_tools: input.supports_tools.unwrap_or(defaults.supports_tools),
            supports_json: input.supports_json.unwrap_or(defaults.supports_json),
            supports_streaming: input
                .supports_streaming
                .unwrap_or(defaults.supports_streaming),
            stream_usage: input.stream_usage.unwrap_or(defaults.stream_usage),
            context_tokens: input.context_tokens.unwrap_or(defaults.context_tokens),
            input_price_per_mtok: input
                .input_price_per_mtok
                .unwrap_or(defaults.input_price_per_mtok),
            output_price_per_mtok: input
                .output_price_per_mtok
                .unwrap_or(defaults.output_price_per_mtok),
            ..defaults
        };
        let model = ctx
            .data::<Engine>()?
            .create_model(Caller::Principal(p), new)
            .await
            .gql()?;
        Ok(model.into())
    }

    /// Changes a model's provider, upstream id, capabilities or prices.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn update_model(
        &self,
        ctx: &Context<'_>,
        name: String,
        input: UpdateModelInput,
    ) -> Result<Model> {
        let p = principal(ctx)?;
        let update = ModelUpdate {
            provider: input.provider,
            upstream: input.upstream,
            supports_tools: input.supports_tools,
            supports_json: input.supports_json,
            supports_streaming: input.supports_streaming,
            stream_usage: input.stream_usage,
            context_tokens: input.context_tokens,
            input_price_per_mtok: input.input_price_per_mtok,
            output_price_per_mtok: input.output_price_per_mtok,
        };
        let model = ctx
            .data::<Engine>()?
            .update_model(Caller::Principal(p), &name, update)
            .await
            .gql()?;
        Ok(model.into())
    }

    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn delete_model(&self, ctx: &Context<'_>, name: String) -> Result<bool> {
        let p = principal(ctx)?;
        ctx.data::<Engine>()?
            .delete_model(Caller::Principal(p), &name)
            .await
            .gql()?;
        Ok(true)
    }

    /// Sends the stored model one tiny request ("Reply with the word ok.") with its
    /// provider's key, through this server's breakers: ok, or the provider's refusal.
    #[graphql(guard = "RoleGuard(EngineRole::Operator)")]
    async fn test_model(&self, ctx: &Context<'_>, name: String) -> Result<ModelTest> {
        let conn = ctx
            .data::<Engine>()?
            .model_connection(&name)
            .await
            .gql()?
            .ok_or_else(|| {
                super::error::to_gql(aiops_engine::Error::NotFound {
                    what: "model",
                    id: name.clone(),
                })
            })?;
        let result = probe(ctx.data::<LlmClient>()?, &conn).await;
        Ok(ModelTest {
            ok: result.ok,
            latency_ms: i32::try_from(result.latency.as_millis()).unwrap_or(i32::MAX),
            message: result.message,
        })
    }
}

//! Language-model providers: credentials (API keys, stored encrypted in
//! `secret_encrypted`, the secrets envelope of `aiops_engine::secrets`, with a masked
//! hint beside them for listings), providers (a kind, a base URL, optionally a
//! credential) and the models teams name (a provider, the upstream model id,
//! capabilities and prices). A credential in use by a provider, and a provider in use
//! by a model, cannot be deleted (the engine says which; the keys make sure).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LlmCredentials {
    Table,
    Id,
    Name,
    SecretEncrypted,
    SecretHint,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum LlmProviders {
    Table,
    Id,
    Name,
    Kind,
    BaseUrl,
    AzureApiVersion,
    CredentialId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum LlmModels {
    Table,
    Id,
    Name,
    ProviderId,
    Upstream,
    SupportsTools,
    SupportsJson,
    SupportsStreaming,
    StreamUsage,
    ContextTokens,
    InputPricePerMtok,
    OutputPricePerMtok,
    CreatedAt,
    UpdatedAt,
}

const KINDS: [&str; 3] = ["openai", "azure_openai", "anthropic"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LlmCredentials::Table)
                    .col(pk_uuid(LlmCredentials::Id))
                    .col(string_uniq(LlmCredentials::Name))
                    // `v1:<kid>:<base64>`: the API key.
                    .col(text(LlmCredentials::SecretEncrypted))
                    .col(text(LlmCredentials::SecretHint))
                    .col(timestamp_with_time_zone(LlmCredentials::CreatedAt))
                    .col(timestamp_with_time_zone(LlmCredentials::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LlmProviders::Table)
                    .col(pk_uuid(LlmProviders::Id))
                    .col(string_uniq(LlmProviders::Name))
                    .col(
                        string(LlmProviders::Kind)
                            .check(Expr::col(LlmProviders::Kind).is_in(KINDS)),
                    )
                    .col(text(LlmProviders::BaseUrl))
                    .col(text_null(LlmProviders::AzureApiVersion))
                    .col(uuid_null(LlmProviders::CredentialId))
                    .col(timestamp_with_time_zone(LlmProviders::CreatedAt))
                    .col(timestamp_with_time_zone(LlmProviders::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_llm_providers_credential")
                            .from(LlmProviders::Table, LlmProviders::CredentialId)
                            .to(LlmCredentials::Table, LlmCredentials::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_llm_providers_credential")
                    .table(LlmProviders::Table)
                    .col(LlmProviders::CredentialId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LlmModels::Table)
                    .col(pk_uuid(LlmModels::Id))
                    .col(string_uniq(LlmModels::Name))
                    .col(uuid(LlmModels::ProviderId))
                    .col(text(LlmModels::Upstream))
                    .col(boolean(LlmModels::SupportsTools))
                    .col(boolean(LlmModels::SupportsJson))
                    .col(boolean(LlmModels::SupportsStreaming))
                    .col(boolean(LlmModels::StreamUsage))
                    .col(big_integer(LlmModels::ContextTokens))
                    .col(double(LlmModels::InputPricePerMtok))
                    .col(double(LlmModels::OutputPricePerMtok))
                    .col(timestamp_with_time_zone(LlmModels::CreatedAt))
                    .col(timestamp_with_time_zone(LlmModels::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_llm_models_provider")
                            .from(LlmModels::Table, LlmModels::ProviderId)
                            .to(LlmProviders::Table, LlmProviders::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_llm_models_provider")
                    .table(LlmModels::Table)
                    .col(LlmModels::ProviderId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Models first: each table's rows are referenced by the next one's.
        for table in ["llm_models", "llm_providers", "llm_credentials"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}

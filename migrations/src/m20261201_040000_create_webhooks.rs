//! Remediation webhooks: named URLs the `webhook_action` tool posts signed requests
//! to. The signing secret is stored encrypted (`secret_encrypted`, the secrets
//! envelope of `aiops_engine::secrets`) with a masked hint beside it for listings.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    Name,
    Url,
    SecretEncrypted,
    SecretHint,
    TimeoutMs,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Webhooks::Table)
                    .col(pk_uuid(Webhooks::Id))
                    .col(string_uniq(Webhooks::Name))
                    .col(text(Webhooks::Url))
                    // `v1:<kid>:<base64>`: the HMAC signing secret.
                    .col(text(Webhooks::SecretEncrypted))
                    .col(text(Webhooks::SecretHint))
                    .col(big_integer(Webhooks::TimeoutMs))
                    .col(timestamp_with_time_zone(Webhooks::CreatedAt))
                    .col(timestamp_with_time_zone(Webhooks::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Webhooks::Table).to_owned())
            .await
    }
}

//! Alert sources: named connections to a Prometheus and/or an Alertmanager. Their
//! credentials are stored encrypted (`auth_encrypted`, the secrets envelope of
//! `aiops_engine::secrets`) with a masked hint beside them for listings.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AlertSources {
    Table,
    Id,
    Name,
    PrometheusUrl,
    AlertmanagerUrl,
    AuthKind,
    Username,
    AuthEncrypted,
    AuthHint,
    TimeoutMs,
    CreatedAt,
    UpdatedAt,
}

const AUTH_KINDS: [&str; 3] = ["NONE", "BEARER", "BASIC"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AlertSources::Table)
                    .col(pk_uuid(AlertSources::Id))
                    .col(string_uniq(AlertSources::Name))
                    .col(text_null(AlertSources::PrometheusUrl))
                    .col(text_null(AlertSources::AlertmanagerUrl))
                    .col(
                        string(AlertSources::AuthKind)
                            .check(Expr::col(AlertSources::AuthKind).is_in(AUTH_KINDS)),
                    )
                    .col(text_null(AlertSources::Username))
                    // `v1:<kid>:<base64>`: the bearer token or the basic-auth password.
                    .col(text_null(AlertSources::AuthEncrypted))
                    .col(text_null(AlertSources::AuthHint))
                    .col(big_integer(AlertSources::TimeoutMs))
                    .col(timestamp_with_time_zone(AlertSources::CreatedAt))
                    .col(timestamp_with_time_zone(AlertSources::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AlertSources::Table).to_owned())
            .await
    }
}

//! The Alertmanager webhook intake (§8):
//! - `alertmanager_receivers`: who may post notifications: a name, the SHA-256 of its
//!   bearer token (never the token), the token's non-secret prefix for listings, and
//!   the approval mode of the runs its notifications start;
//! - `alert_notifications`: every accepted notification, what it was routed to and
//!   what came of it (a run started, recorded on an active run, de-duplicated,
//!   unrouted), newest first by `(received_at, id)`;
//! - `alert_instances`: the alerts runs were started for or recorded on, one row per
//!   (team, group, fingerprint, startsAt) — the unique key that makes a repeated
//!   notification start nothing. Rows go with their run (cascade), so retention
//!   prunes them together;
//! - `runs.approval_mode`: `WAIT` (approvals wait for a person until they expire) or
//!   `REJECT` (approvals are rejected at once by the system).
//!
//! Group keys can be long (the route path and every grouping label), so they are
//! indexed by their SHA-256 (`group_hash`) and kept whole beside it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AlertmanagerReceivers {
    Table,
    Id,
    Name,
    TokenHash,
    TokenPrefix,
    ApprovalMode,
    LastUsedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AlertNotifications {
    Table,
    Id,
    ReceiverId,
    ReceiverName,
    GroupKey,
    GroupLabels,
    Status,
    Alerts,
    Outcome,
    Reason,
    Routes,
    ReceivedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AlertInstances {
    Table,
    Id,
    TeamId,
    GroupHash,
    Fingerprint,
    StartsAt,
    RunId,
    NotificationId,
    Labels,
    Joined,
    ResolvedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    Id,
    ApprovalMode,
}

const NOTIFICATIONS_BY_TIME: &str = "ix_alert_notifications_received_id";
const INSTANCES_KEY: &str = "ux_alert_instances_team_group_alert";
const INSTANCES_BY_RUN: &str = "ix_alert_instances_run";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AlertmanagerReceivers::Table)
                    .col(pk_uuid(AlertmanagerReceivers::Id))
                    .col(string_uniq(AlertmanagerReceivers::Name))
                    // SHA-256 (hex) of the whole token; looked up by it.
                    .col(string_uniq(AlertmanagerReceivers::TokenHash))
                    .col(string(AlertmanagerReceivers::TokenPrefix))
                    .col(string(AlertmanagerReceivers::ApprovalMode))
                    .col(timestamp_with_time_zone_null(
                        AlertmanagerReceivers::LastUsedAt,
                    ))
                    .col(timestamp_with_time_zone(AlertmanagerReceivers::CreatedAt))
                    .col(timestamp_with_time_zone(AlertmanagerReceivers::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AlertNotifications::Table)
                    .col(pk_uuid(AlertNotifications::Id))
                    // No foreign key: a notification's record outlives its receiver.
                    .col(uuid(AlertNotifications::ReceiverId))
                    .col(string(AlertNotifications::ReceiverName))
                    .col(text(AlertNotifications::GroupKey))
                    .col(json_binary(AlertNotifications::GroupLabels))
                    .col(string(AlertNotifications::Status))
                    .col(integer(AlertNotifications::Alerts))
                    .col(string(AlertNotifications::Outcome))
                    .col(text(AlertNotifications::Reason))
                    // [{team_id, team, outcome, run_id, new_alerts, resolved_alerts}]
                    .col(json_binary(AlertNotifications::Routes))
                    .col(timestamp_with_time_zone(AlertNotifications::ReceivedAt))
                    .col(timestamp_with_time_zone(AlertNotifications::CreatedAt))
                    .col(timestamp_with_time_zone(AlertNotifications::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(NOTIFICATIONS_BY_TIME)
                    .table(AlertNotifications::Table)
                    .col(AlertNotifications::ReceivedAt)
                    .col(AlertNotifications::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AlertInstances::Table)
                    .col(pk_uuid(AlertInstances::Id))
                    .col(uuid(AlertInstances::TeamId))
                    .col(string(AlertInstances::GroupHash))
                    .col(string(AlertInstances::Fingerprint))
                    .col(timestamp_with_time_zone(AlertInstances::StartsAt))
                    .col(uuid(AlertInstances::RunId))
                    .col(uuid(AlertInstances::NotificationId))
                    .col(json_binary(AlertInstances::Labels))
                    // Recorded on a run that was already active (not what it started for).
                    .col(boolean(AlertInstances::Joined))
                    .col(timestamp_with_time_zone_null(AlertInstances::ResolvedAt))
                    .col(timestamp_with_time_zone(AlertInstances::CreatedAt))
                    .col(timestamp_with_time_zone(AlertInstances::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alert_instances_run")
                            .from(AlertInstances::Table, AlertInstances::RunId)
                            .to(Runs::Table, Runs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INSTANCES_KEY)
                    .table(AlertInstances::Table)
                    .col(AlertInstances::TeamId)
                    .col(AlertInstances::GroupHash)
                    .col(AlertInstances::Fingerprint)
                    .col(AlertInstances::StartsAt)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INSTANCES_BY_RUN)
                    .table(AlertInstances::Table)
                    .col(AlertInstances::RunId)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Runs::Table)
                    .add_column(
                        ColumnDef::new(Runs::ApprovalMode)
                            .string()
                            .not_null()
                            .default("WAIT"),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Runs::Table)
                    .drop_column(Runs::ApprovalMode)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(AlertInstances::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AlertNotifications::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AlertmanagerReceivers::Table).to_owned())
            .await
    }
}

//! Cron schedules (§8): the database is their source of truth. A schedule names a
//! team, the input its runs get, a 5-field cron expression read in an IANA time zone,
//! and its overlap and catch-up policies; `next_fire_at` (UTC) is what the tick of
//! every replica looks for, hence the index on `(enabled, next_fire_at)`.
//!
//! `schedule_fires` holds one row per fire time a tick handled (started, skipped
//! because a run was still active, missed during downtime, failed to start). Its
//! unique key `(schedule_id, fire_time)` is what makes a fire time start at most one
//! run, however many replicas tick at once; `retry_at` marks fires whose run is not
//! started yet (a tick that died between its commit and the start), so another tick
//! starts it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Id,
    Name,
    Team,
    Input,
    Cron,
    Timezone,
    OverlapPolicy,
    CatchUpPolicy,
    Enabled,
    NextFireAt,
    LastFireAt,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ScheduleFires {
    Table,
    Id,
    ScheduleId,
    FireTime,
    Outcome,
    MissedCount,
    RunId,
    Error,
    RetryAt,
    CreatedAt,
    UpdatedAt,
}

const DUE_INDEX: &str = "ix_schedules_enabled_next_fire_at";
const FIRE_KEY: &str = "ux_schedule_fires_schedule_fire_time";
const RETRY_INDEX: &str = "ix_schedule_fires_retry_at";
const CREATED_INDEX: &str = "ix_schedule_fires_created_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Schedules::Table)
                    .col(pk_uuid(Schedules::Id))
                    .col(string_uniq(Schedules::Name))
                    .col(text(Schedules::Team))
                    .col(json(Schedules::Input))
                    .col(text(Schedules::Cron))
                    .col(text(Schedules::Timezone))
                    // `skip` | `allow`
                    .col(text(Schedules::OverlapPolicy))
                    // `skip` | `run_once`
                    .col(text(Schedules::CatchUpPolicy))
                    .col(boolean(Schedules::Enabled))
                    .col(timestamp_with_time_zone_null(Schedules::NextFireAt))
                    .col(timestamp_with_time_zone_null(Schedules::LastFireAt))
                    .col(text_null(Schedules::CreatedBy))
                    .col(timestamp_with_time_zone(Schedules::CreatedAt))
                    .col(timestamp_with_time_zone(Schedules::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(DUE_INDEX)
                    .table(Schedules::Table)
                    .col(Schedules::Enabled)
                    .col(Schedules::NextFireAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ScheduleFires::Table)
                    .col(pk_uuid(ScheduleFires::Id))
                    .col(uuid(ScheduleFires::ScheduleId))
                    .col(timestamp_with_time_zone(ScheduleFires::FireTime))
                    // PENDING | STARTED | SKIPPED_OVERLAP | MISSED | FAILED
                    .col(text(ScheduleFires::Outcome))
                    // How many fire times a MISSED row stands for (1 otherwise).
                    .col(big_integer(ScheduleFires::MissedCount))
                    // No foreign key: runs are pruned by retention, fires say what was.
                    .col(uuid_null(ScheduleFires::RunId))
                    .col(text_null(ScheduleFires::Error))
                    .col(timestamp_with_time_zone_null(ScheduleFires::RetryAt))
                    .col(timestamp_with_time_zone(ScheduleFires::CreatedAt))
                    .col(timestamp_with_time_zone(ScheduleFires::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_schedule_fires_schedule")
                            .from(ScheduleFires::Table, ScheduleFires::ScheduleId)
                            .to(Schedules::Table, Schedules::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(FIRE_KEY)
                    .table(ScheduleFires::Table)
                    .col(ScheduleFires::ScheduleId)
                    .col(ScheduleFires::FireTime)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(RETRY_INDEX)
                    .table(ScheduleFires::Table)
                    .col(ScheduleFires::RetryAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(CREATED_INDEX)
                    .table(ScheduleFires::Table)
                    .col(ScheduleFires::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ScheduleFires::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Schedules::Table).to_owned())
            .await
    }
}

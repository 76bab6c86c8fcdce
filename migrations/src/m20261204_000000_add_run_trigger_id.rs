//! What started a run, beyond its kind: the schedule's id for `SCHEDULE`, the
//! Alertmanager notification's id for `ALERTMANAGER`; empty for manual and API runs.
//! Indexed with the trigger kind so `runs(filter: {trigger, triggerId})` is a range.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Runs {
    Table,
    Trigger,
    TriggerId,
    CreatedAt,
    Id,
}

const INDEX: &str = "ix_runs_trigger_id_created_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Runs::Table)
                    .add_column(ColumnDef::new(Runs::TriggerId).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Runs::Table)
                    .col(Runs::Trigger)
                    .col(Runs::TriggerId)
                    .col(Runs::CreatedAt)
                    .col(Runs::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(Runs::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Runs::Table)
                    .drop_column(Runs::TriggerId)
                    .to_owned(),
            )
            .await
    }
}

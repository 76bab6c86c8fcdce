//! Teams and their versions, runs, steps, events, approvals and questions.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Teams {
    Table,
    Id,
    Name,
    Description,
    LatestVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum TeamVersions {
    Table,
    Id,
    TeamId,
    Version,
    Spec,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    Id,
    TeamId,
    TeamVersionId,
    Workflow,
    Trigger,
    IdempotencyKey,
    Input,
    Status,
    Output,
    Error,
    Attempt,
    LeaseOwner,
    LeaseExpiresAt,
    WakeAt,
    DeadlineAt,
    TimeoutMs,
    RemainingMs,
    PauseRequested,
    LastSeq,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum Steps {
    Table,
    Id,
    RunId,
    StepKey,
    Status,
    Input,
    Output,
    Usage,
    Error,
    Attempts,
    StartedAt,
    FinishedAt,
    NextAttemptAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    RunId,
    Seq,
    Kind,
    Payload,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Approvals {
    Table,
    Id,
    RunId,
    StepKey,
    Tool,
    Args,
    RiskNote,
    Status,
    RequestedAt,
    ExpiresAt,
    DecidedBy,
    DecidedAt,
    Comment,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Questions {
    Table,
    Id,
    RunId,
    StepKey,
    Question,
    Status,
    Answer,
    AnsweredBy,
    AnsweredAt,
    ExpiresAt,
    CreatedAt,
    UpdatedAt,
}

fn fk_cascade(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn index(name: &str, table: impl IntoIden, cols: &[&'static str]) -> IndexCreateStatement {
    let mut stmt = Index::create().name(name).table(table).to_owned();
    for col in cols {
        stmt.col(Alias::new(*col));
    }
    stmt
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Teams::Table)
                    .col(pk_uuid(Teams::Id))
                    .col(string_uniq(Teams::Name))
                    .col(text_null(Teams::Description))
                    .col(integer(Teams::LatestVersion))
                    .col(timestamp_with_time_zone(Teams::CreatedAt))
                    .col(timestamp_with_time_zone(Teams::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TeamVersions::Table)
                    .col(pk_uuid(TeamVersions::Id))
                    .col(uuid(TeamVersions::TeamId))
                    .col(integer(TeamVersions::Version))
                    .col(json_binary(TeamVersions::Spec))
                    .col(timestamp_with_time_zone(TeamVersions::CreatedAt))
                    .col(timestamp_with_time_zone(TeamVersions::UpdatedAt))
                    .foreign_key(&mut fk_cascade(
                        "fk_team_versions_team",
                        (TeamVersions::Table, TeamVersions::TeamId),
                        (Teams::Table, Teams::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_team_versions_team_version",
                    TeamVersions::Table,
                    &["team_id", "version"],
                )
                .unique()
                .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Runs::Table)
                    .col(pk_uuid(Runs::Id))
                    .col(uuid_null(Runs::TeamId))
                    .col(uuid_null(Runs::TeamVersionId))
                    .col(string(Runs::Workflow))
                    .col(string(Runs::Trigger))
                    .col(string_null(Runs::IdempotencyKey).unique_key())
                    .col(json_binary(Runs::Input))
                    .col(string(Runs::Status))
                    .col(json_binary_null(Runs::Output))
                    .col(text_null(Runs::Error))
                    // Fencing token: bumped on every claim and on every takeover.
                    .col(big_integer(Runs::Attempt).default(0))
                    .col(string_null(Runs::LeaseOwner))
                    .col(timestamp_with_time_zone_null(Runs::LeaseExpiresAt))
                    .col(timestamp_with_time_zone_null(Runs::WakeAt))
                    .col(timestamp_with_time_zone_null(Runs::DeadlineAt))
                    .col(big_integer(Runs::TimeoutMs))
                    .col(big_integer_null(Runs::RemainingMs))
                    .col(boolean(Runs::PauseRequested).default(false))
                    // Highest event seq of the run: events are numbered from it in the same
                    // statement that fences the write, which keeps seq gap-free.
                    .col(big_integer(Runs::LastSeq).default(0))
                    .col(timestamp_with_time_zone(Runs::CreatedAt))
                    .col(timestamp_with_time_zone(Runs::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Runs::StartedAt))
                    .col(timestamp_with_time_zone_null(Runs::FinishedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_runs_team_version")
                            .from(Runs::Table, Runs::TeamVersionId)
                            .to(TeamVersions::Table, TeamVersions::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("ix_runs_status_created", &["status", "created_at"][..]),
            ("ix_runs_team_created", &["team_id", "created_at"][..]),
            ("ix_runs_trigger_created", &["trigger", "created_at"][..]),
            ("ix_runs_created", &["created_at"][..]),
            ("ix_runs_finished", &["finished_at"][..]),
        ] {
            manager.create_index(index(name, Runs::Table, cols)).await?;
        }
        // The claim query only ever looks at live runs; a partial index keeps it small
        // however much history accumulates. Same syntax on Postgres and SQLite.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX ix_runs_claim ON runs (wake_at, created_at) \
                 WHERE status IN ('QUEUED','RUNNING','RETRY_WAIT','WAITING_APPROVAL','WAITING_INPUT')",
            )
            .await?;
        manager
            .create_index(index("ix_runs_lease_owner", Runs::Table, &["lease_owner"]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Steps::Table)
                    .col(pk_uuid(Steps::Id))
                    .col(uuid(Steps::RunId))
                    .col(string(Steps::StepKey))
                    .col(string(Steps::Status))
                    .col(json_binary_null(Steps::Input))
                    .col(json_binary_null(Steps::Output))
                    // Token usage and cost of the step, when it called a model.
                    .col(json_binary_null(Steps::Usage))
                    .col(text_null(Steps::Error))
                    .col(integer(Steps::Attempts).default(0))
                    .col(timestamp_with_time_zone_null(Steps::StartedAt))
                    .col(timestamp_with_time_zone_null(Steps::FinishedAt))
                    .col(timestamp_with_time_zone_null(Steps::NextAttemptAt))
                    .col(timestamp_with_time_zone(Steps::CreatedAt))
                    .col(timestamp_with_time_zone(Steps::UpdatedAt))
                    .foreign_key(&mut fk_cascade(
                        "fk_steps_run",
                        (Steps::Table, Steps::RunId),
                        (Runs::Table, Runs::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ux_steps_run_key", Steps::Table, &["run_id", "step_key"])
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(pk_uuid(Events::Id))
                    .col(uuid(Events::RunId))
                    .col(big_integer(Events::Seq))
                    .col(string(Events::Kind))
                    .col(json_binary(Events::Payload))
                    // Events are append-only and never updated, so they carry no updated_at.
                    .col(timestamp_with_time_zone(Events::CreatedAt))
                    .foreign_key(&mut fk_cascade(
                        "fk_events_run",
                        (Events::Table, Events::RunId),
                        (Runs::Table, Runs::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ux_events_run_seq", Events::Table, &["run_id", "seq"])
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Approvals::Table)
                    .col(pk_uuid(Approvals::Id))
                    .col(uuid(Approvals::RunId))
                    .col(string(Approvals::StepKey))
                    .col(string(Approvals::Tool))
                    .col(json_binary(Approvals::Args))
                    .col(text_null(Approvals::RiskNote))
                    .col(string(Approvals::Status))
                    .col(timestamp_with_time_zone(Approvals::RequestedAt))
                    .col(timestamp_with_time_zone(Approvals::ExpiresAt))
                    .col(string_null(Approvals::DecidedBy))
                    .col(timestamp_with_time_zone_null(Approvals::DecidedAt))
                    .col(text_null(Approvals::Comment))
                    .col(timestamp_with_time_zone(Approvals::CreatedAt))
                    .col(timestamp_with_time_zone(Approvals::UpdatedAt))
                    .foreign_key(&mut fk_cascade(
                        "fk_approvals_run",
                        (Approvals::Table, Approvals::RunId),
                        (Runs::Table, Runs::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_approvals_run_key",
                    Approvals::Table,
                    &["run_id", "step_key"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_approvals_status_requested",
                Approvals::Table,
                &["status", "requested_at"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Questions::Table)
                    .col(pk_uuid(Questions::Id))
                    .col(uuid(Questions::RunId))
                    .col(string(Questions::StepKey))
                    .col(text(Questions::Question))
                    .col(string(Questions::Status))
                    .col(text_null(Questions::Answer))
                    .col(string_null(Questions::AnsweredBy))
                    .col(timestamp_with_time_zone_null(Questions::AnsweredAt))
                    .col(timestamp_with_time_zone(Questions::ExpiresAt))
                    .col(timestamp_with_time_zone(Questions::CreatedAt))
                    .col(timestamp_with_time_zone(Questions::UpdatedAt))
                    .foreign_key(&mut fk_cascade(
                        "fk_questions_run",
                        (Questions::Table, Questions::RunId),
                        (Runs::Table, Runs::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_questions_run_key",
                    Questions::Table,
                    &["run_id", "step_key"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_questions_status_created",
                Questions::Table,
                &["status", "created_at"],
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "questions",
            "approvals",
            "events",
            "steps",
            "runs",
            "team_versions",
            "teams",
        ] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}

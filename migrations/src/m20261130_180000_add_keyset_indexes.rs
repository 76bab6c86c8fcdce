//! Indexes in the exact order of every keyset-paginated list (§9): the key columns
//! end with the row id, so a page is an index range whatever the ties. Each replaces
//! an index that was its prefix.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// An index named `name` on `table` over `columns`.
struct Ix {
    table: &'static str,
    name: &'static str,
    columns: &'static [&'static str],
}

/// Each new index, and the index it replaces (its prefix), if any.
const INDEXES: [(Ix, Option<Ix>); 5] = [
    (
        Ix {
            table: "approvals",
            name: "ix_approvals_status_requested_id",
            columns: &["status", "requested_at", "id"],
        },
        Some(Ix {
            table: "approvals",
            name: "ix_approvals_status_requested",
            columns: &["status", "requested_at"],
        }),
    ),
    (
        Ix {
            table: "questions",
            name: "ix_questions_status_created_id",
            columns: &["status", "created_at", "id"],
        },
        Some(Ix {
            table: "questions",
            name: "ix_questions_status_created",
            columns: &["status", "created_at"],
        }),
    ),
    (
        Ix {
            table: "api_keys",
            name: "ix_api_keys_user_created_id",
            columns: &["user_id", "created_at", "id"],
        },
        Some(Ix {
            table: "api_keys",
            name: "ix_api_keys_user",
            columns: &["user_id"],
        }),
    ),
    (
        Ix {
            table: "runs",
            name: "ix_runs_created_id",
            columns: &["created_at", "id"],
        },
        Some(Ix {
            table: "runs",
            name: "ix_runs_created",
            columns: &["created_at"],
        }),
    ),
    (
        Ix {
            table: "steps",
            name: "ix_steps_run_created_id",
            columns: &["run_id", "created_at", "id"],
        },
        None,
    ),
];

fn create_index(ix: &Ix) -> IndexCreateStatement {
    let mut stmt = Index::create()
        .name(ix.name)
        .table(Alias::new(ix.table))
        .to_owned();
    for col in ix.columns {
        stmt.col(Alias::new(*col));
    }
    stmt
}

fn drop_index(ix: &Ix) -> IndexDropStatement {
    Index::drop()
        .name(ix.name)
        .table(Alias::new(ix.table))
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (new, replaced) in &INDEXES {
            manager.create_index(create_index(new)).await?;
            if let Some(old) = replaced {
                manager.drop_index(drop_index(old)).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (new, replaced) in &INDEXES {
            if let Some(old) = replaced {
                manager.create_index(create_index(old)).await?;
            }
            manager.drop_index(drop_index(new)).await?;
        }
        Ok(())
    }
}

//! On Postgres, a run's steps and events go with it by a statement trigger instead of
//! foreign keys. A foreign key checks every inserted row against `runs` (a locking
//! query on the run's row per step and per event, three per durable step); every
//! such insert already happens in a transaction that has updated its run's row (the
//! fenced checkpoint, the claim, the seq of an appended event), so the check only
//! cost CPU: without it the engine made 11–13 % more steps/s (BENCHMARKS.md, issue
//! 12). What the foreign keys also did, deleting a run's history with the run, the
//! trigger does for any `DELETE` on `runs`, in the same transaction.
//!
//! SQLite keeps its foreign keys: it cannot drop a constraint without rebuilding the
//! table, and a step there costs no query. On SQLite this migration does nothing.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
ALTER TABLE steps DROP CONSTRAINT fk_steps_run;
ALTER TABLE events DROP CONSTRAINT fk_events_run;
-- The plans are made once per session, maybe while the tables are small: without
-- sequential scans they stay on the (run_id, …) indexes whatever the size.
CREATE FUNCTION runs_delete_history() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off AS $$
BEGIN
  -- Each statement takes a new snapshot: rows committed by a transaction that held
  -- a deleted run's row lock before this delete took it are seen and deleted.
  DELETE FROM steps WHERE run_id = ANY(ARRAY(SELECT id FROM gone_runs));
  DELETE FROM events WHERE run_id = ANY(ARRAY(SELECT id FROM gone_runs));
  RETURN NULL;
END $$;
CREATE TRIGGER runs_delete_history AFTER DELETE ON runs
  REFERENCING OLD TABLE AS gone_runs
  FOR EACH STATEMENT EXECUTE FUNCTION runs_delete_history();
";

const DOWN: &str = "
DROP TRIGGER runs_delete_history ON runs;
DROP FUNCTION runs_delete_history();
DELETE FROM steps s WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = s.run_id);
DELETE FROM events e WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = e.run_id);
ALTER TABLE steps ADD CONSTRAINT fk_steps_run FOREIGN KEY (run_id)
  REFERENCES runs (id) ON DELETE CASCADE ON UPDATE NO ACTION;
ALTER TABLE events ADD CONSTRAINT fk_events_run FOREIGN KEY (run_id)
  REFERENCES runs (id) ON DELETE CASCADE ON UPDATE NO ACTION;
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_on_postgres(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_on_postgres(manager, DOWN).await
    }
}

async fn run_on_postgres(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}

//! Schema migrations, the only place the database schema changes.
//!
//! Every migration runs on both Postgres and SQLite and has a `down`.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_core_tables;
mod m20261122_000002_create_users_and_api_keys;
mod m20261130_180000_add_keyset_indexes;
mod m20261130_230000_create_alert_sources;
mod m20261201_040000_create_webhooks;
mod m20261203_090000_create_llm_providers;
mod m20261204_000000_add_run_trigger_id;
mod m20261204_010000_create_schedules;
mod m20261204_020000_create_alertmanager_intake;
mod m20261205_000000_cascade_run_history_by_trigger;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_core_tables::Migration),
            Box::new(m20261122_000002_create_users_and_api_keys::Migration),
            Box::new(m20261130_180000_add_keyset_indexes::Migration),
            Box::new(m20261130_230000_create_alert_sources::Migration),
            Box::new(m20261201_040000_create_webhooks::Migration),
            Box::new(m20261203_090000_create_llm_providers::Migration),
            Box::new(m20261204_000000_add_run_trigger_id::Migration),
            Box::new(m20261204_010000_create_schedules::Migration),
            Box::new(m20261204_020000_create_alertmanager_intake::Migration),
            Box::new(m20261205_000000_cascade_run_history_by_trigger::Migration),
        ]
    }
}

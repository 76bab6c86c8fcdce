//! What starts runs besides people: cron schedules and the Alertmanager webhook intake
//! (§8). Domain code on the engine's public surface (`Engine`, team runs); the durable
//! core never imports it (`tests/architecture.rs`).
//!
//! The database is the source of truth for schedules and their next fire times
//! (`Engine::claim_due_fires`, computed with `crate::cron` in each schedule's zone);
//! `tokio-cron-scheduler` only provides the in-process tick of every replica.

pub mod alertmanager;
mod schedule;
mod ticker;

pub use schedule::{FireStart, start_fire, trigger_schedule};
pub use ticker::{TICK_EXPRESSION, TickReport, Ticker, TickerError, tick};

//! A checkpoint batch on SQLite in a fixed number of statements.
//!
//! SQLite runs each statement on its connection's own thread, so every statement
//! costs two thread hand-offs whatever it does; with one writer for the whole
//! process, those hand-offs, not the writes, bound how many steps commit per second.
//! The checkpoints that hold only step records and events (nearly all of them) share
//! three statements: one fenced `UPDATE … RETURNING` raising every run's `last_seq`,
//! one INSERT of their step records and one of their events. The others (run state
//! changes, approvals, questions) go one by one, as before.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Value};
use uuid::Uuid;

use super::checkpoint::{Checkpoint, Outcome, StepRecord};
use super::{events, stmt};
use crate::Result;
use crate::ids::RunId;

/// Whether `cp` holds only step records and events.
pub(super) fn is_plain(cp: &Checkpoint) -> bool {
    cp.run.is_none() && cp.approvals.is_empty() && cp.questions.is_empty()
}

/// Commits plain checkpoints of distinct runs inside the caller's transaction; the
/// outcomes are in the order of `batch`.
pub(super) async fn commit_plain(
    db: &impl ConnectionTrait,
    batch: &[&Checkpoint],
    now: DateTime<Utc>,
) -> Result<Vec<Outcome>> {
    let raised = raise_last_seq(db, batch, now).await?;
    let fenced: Vec<(&Checkpoint, i64)> = batch
        .iter()
        .filter_map(|cp| raised.get(&cp.fence.run_id.0).map(|seq| (*cp, *seq)))
        .collect();
    let steps: Vec<(RunId, &StepRecord)> = fenced
        .iter()
        .flat_map(|(cp, _)| cp.steps.iter().map(|s| (cp.fence.run_id, s)))
        .collect();
    super::steps::upsert(db, &steps, now).await?;
    let runs: Vec<(RunId, i64, &[crate::event::NewEvent])> = fenced
        .iter()
        .map(|(cp, last_seq)| {
            let first = last_seq - cp.events.len() as i64 + 1;
            (cp.fence.run_id, first, cp.events.as_slice())
        })
        .collect();
    let mut written = events::insert_runs(db, &runs, now).await?.into_iter();
    let mut by_run: HashMap<Uuid, Vec<crate::Event>> = fenced
        .iter()
        .map(|(cp, _)| (cp.fence.run_id.0, written.next().unwrap_or_default()))
        .collect();
    Ok(batch
        .iter()
        .map(|cp| match by_run.remove(&cp.fence.run_id.0) {
            Some(events) => Outcome::Committed(events),
            None => Outcome::LeaseLost,
        })
        .collect())
}

/// Raises `last_seq` by each checkpoint's number of events for the runs whose fence
/// holds, in one statement; the runs that passed, with their new `last_seq`.
async fn raise_last_seq(
    db: &impl ConnectionTrait,
    batch: &[&Checkpoint],
    now: DateTime<Utc>,
) -> Result<HashMap<Uuid, i64>> {
    let mut values: Vec<Value> = vec![now.into()];
    let mut cases = String::new();
    let mut fences = Vec::with_capacity(batch.len());
    for cp in batch {
        let at = values.len() + 1;
        values.extend([
            cp.fence.run_id.0.into(),
            (cp.events.len() as i64).into(),
            cp.fence.attempt.into(),
            cp.fence.owner.clone().into(),
        ]);
        cases.push_str(&format!(" WHEN ${at} THEN ${}", at + 1));
        fences.push(format!("(${at}, ${}, ${})", at + 2, at + 3));
    }
    let sql = format!(
        "UPDATE runs SET last_seq = last_seq + CASE id{cases} END, updated_at = $1 \
         WHERE (id, attempt, lease_owner) IN (VALUES {}) AND lease_expires_at > $1 \
         RETURNING id, last_seq",
        fences.join(", ")
    );
    let rows = db.query_all_raw(stmt(db, &sql, values)).await?;
    rows.iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect()
}

//! The `steps` table: one row per durable step of a run, keyed by `(run_id, step_key)`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::Value;
use uuid::Uuid;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::Value as Json;

use super::checkpoint::StepRecord;
use super::entity::step;
use super::keyset::{self, Direction};
use super::{placeholders, stmt};
use crate::Result;
use crate::ids::RunId;
pub use crate::model::Step;
use crate::page::{KeyOf, Page, PageRequest};
use crate::status::StepStatus;
use crate::usage::Usage;

fn from_model(m: step::Model) -> Result<Step> {
    Ok(Step {
        id: m.id,
        run_id: RunId(m.run_id),
        key: m.step_key,
        status: m.status.parse()?,
        input: m.input,
        output: m.output,
        usage: Usage::from_json(m.usage.as_ref()),
        error: m.error,
        attempts: m.attempts,
        started_at: m.started_at,
        finished_at: m.finished_at,
        next_attempt_at: m.next_attempt_at,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

/// Every step of a run, in the order they were first recorded.
pub async fn list(db: &impl ConnectionTrait, run_id: RunId) -> Result<Vec<Step>> {
    step::Entity::find()
        .filter(step::Column::RunId.eq(run_id.0))
        .order_by_asc(step::Column::CreatedAt)
        .order_by_asc(step::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// A page of a run's steps, in the order first recorded (index `ix_steps_run_created_id`).
pub async fn page(
    db: &impl ConnectionTrait,
    run_id: RunId,
    request: &PageRequest<KeyOf<Step>>,
) -> Result<Page<Step>> {
    keyset::page(
        db,
        step::Entity::find().filter(step::Column::RunId.eq(run_id.0)),
        &[step::Column::CreatedAt, step::Column::Id],
        Direction::Ascending,
        request,
    )
    .await?
    .try_map(from_model)
}

/// Number of steps of each of `runs` (runs without steps are absent), in one query.
pub async fn count_by_runs(
    db: &impl ConnectionTrait,
    runs: &[RunId],
) -> Result<HashMap<RunId, i64>> {
    use sea_orm::{ExprTrait, QuerySelect, sea_query::Expr};
    if runs.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(uuid::Uuid, i64)> = step::Entity::find()
        .select_only()
        .column(step::Column::RunId)
        .column_as(Expr::col(step::Column::Id).count(), "n")
        .filter(step::Column::RunId.is_in(runs.iter().map(|r| r.0)))
        .group_by(step::Column::RunId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(id, n)| (RunId(id), n)).collect())
}

/// Deletes the run's FAILED step records, so that a retried run executes those
/// steps again (completed steps stay memoized). Returns how many were deleted.
pub async fn delete_failed(db: &impl ConnectionTrait, run_id: RunId) -> Result<u64> {
    let res = step::Entity::delete_many()
        .filter(step::Column::RunId.eq(run_id.0))
        .filter(step::Column::Status.eq(StepStatus::Failed.as_str()))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// What each of `runs` used (tokens, cost), summed over its steps, in one query;
/// runs that used nothing are absent.
pub async fn usage_of_runs(
    db: &impl ConnectionTrait,
    runs: &[RunId],
) -> Result<HashMap<RunId, Usage>> {
    if runs.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(uuid::Uuid, Json)> = steps_with_usage(runs).into_tuple().all(db).await?;
    let mut out: HashMap<RunId, Usage> = HashMap::new();
    for (run, usage) in rows {
        *out.entry(RunId(run)).or_default() += Usage::from_json(Some(&usage));
    }
    Ok(out)
}

/// The steps of `runs` that used something, as (run, step key, usage) in the order
/// first recorded, in one query.
pub async fn usage_by_step(
    db: &impl ConnectionTrait,
    runs: &[RunId],
) -> Result<Vec<(RunId, String, Usage)>> {
    use sea_orm::QuerySelect;
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(uuid::Uuid, Json, String)> = steps_with_usage(runs)
        .column(step::Column::StepKey)
        .order_by_asc(step::Column::CreatedAt)
        .order_by_asc(step::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(run, usage, key)| (RunId(run), key, Usage::from_json(Some(&usage))))
        .collect())
}

/// `run_id` and `usage` of the steps of `runs` whose usage is not NULL (steps that
/// used nothing store none, and are most steps).
fn steps_with_usage(runs: &[RunId]) -> sea_orm::Select<step::Entity> {
    use sea_orm::QuerySelect;
    step::Entity::find()
        .select_only()
        .column(step::Column::RunId)
        .column(step::Column::Usage)
        .filter(step::Column::RunId.is_in(runs.iter().map(|r| r.0)))
        .filter(step::Column::Usage.is_not_null())
}

/// Rows per INSERT of steps: thirteen values each.
const STEPS_PER_INSERT: usize = 500;

/// A new step row's values, in the column order `id, run_id, step_key, status, input,
/// output, usage, error, attempts, started_at, finished_at, next_attempt_at`.
pub(crate) fn row_values(run_id: RunId, s: &StepRecord) -> Vec<Value> {
    vec![
        Uuid::now_v7().into(),
        run_id.0.into(),
        s.key.clone().into(),
        s.status.as_str().into(),
        s.input.clone().into(),
        s.output.clone().into(),
        s.usage.clone().into(),
        s.error.clone().into(),
        s.attempts.into(),
        s.started_at.into(),
        s.finished_at.into(),
        s.next_attempt_at.into(),
    ]
}

/// A step row written again (same run and key) takes the new values but keeps its
/// first input, usage and start where the new ones have none.
pub(super) const ON_CONFLICT: &str = "ON CONFLICT (run_id, step_key) DO UPDATE SET \
    status = excluded.status, input = COALESCE(excluded.input, steps.input), \
    output = excluded.output, usage = COALESCE(excluded.usage, steps.usage), \
    error = excluded.error, attempts = excluded.attempts, \
    started_at = COALESCE(steps.started_at, excluded.started_at), \
    finished_at = excluded.finished_at, next_attempt_at = excluded.next_attempt_at, \
    updated_at = excluded.updated_at";

/// Inserts or updates step records (keyed by run and step key), as many per
/// statement as fit.
pub(crate) async fn upsert(
    db: &impl ConnectionTrait,
    steps: &[(RunId, &StepRecord)],
    now: DateTime<Utc>,
) -> Result<()> {
    for chunk in steps.chunks(STEPS_PER_INSERT) {
        let mut rows = Vec::with_capacity(chunk.len());
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 13);
        for (run_id, s) in chunk {
            let at = values.len() + 1;
            rows.push(format!(
                "({}, ${n}, ${n})",
                placeholders(at, 12),
                n = at + 12
            ));
            values.extend(row_values(*run_id, s));
            values.push(now.into());
        }
        let sql = format!(
            "INSERT INTO steps (id, run_id, step_key, status, input, output, usage, error, attempts, \
                                started_at, finished_at, next_attempt_at, created_at, updated_at) \
             VALUES {} {ON_CONFLICT}",
            rows.join(", ")
        );
        db.execute_raw(stmt(db, &sql, values)).await?;
    }
    Ok(())
}

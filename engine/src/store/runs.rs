//! The `runs` table: creation, reads, listing and state changes made outside a
//! worker's lease (pause, resume, cancel, retry, human decisions).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, ExprTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, SqlErr, Value,
};
use serde_json::Value as Json;

use super::entity::run;
use super::keyset::{self, Direction};
use super::{events, stmt};
use crate::event::{Event, NewEvent};
use crate::ids::{RunId, TeamId};
pub use crate::model::{Run, RunFilter};
use crate::page::{KeyOf, Page, PageRequest};
use crate::status::{ApprovalMode, RunStatus, Trigger};
use crate::{Error, Result};

impl TryFrom<run::Model> for Run {
    type Error = Error;
    fn try_from(m: run::Model) -> Result<Self> {
        Ok(Run {
            id: RunId(m.id),
            team_id: m.team_id.map(TeamId),
            team_version_id: m.team_version_id,
            workflow: m.workflow,
            trigger: m.trigger.parse()?,
            trigger_id: m.trigger_id,
            idempotency_key: m.idempotency_key,
            approval_mode: m.approval_mode.parse()?,
            input: m.input,
            status: m.status.parse()?,
            output: m.output,
            error: m.error,
            attempt: m.attempt,
            lease_owner: m.lease_owner,
            lease_expires_at: m.lease_expires_at,
            wake_at: m.wake_at,
            deadline_at: m.deadline_at,
            timeout_ms: m.timeout_ms,
            remaining_ms: m.remaining_ms,
            pause_requested: m.pause_requested,
            last_seq: m.last_seq,
            created_at: m.created_at,
            updated_at: m.updated_at,
            started_at: m.started_at,
            finished_at: m.finished_at,
        })
    }
}

/// What a new run needs.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub workflow: String,
    pub input: Json,
    pub trigger: Trigger,
    pub trigger_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub approval_mode: ApprovalMode,
    pub team_id: Option<TeamId>,
    pub team_version_id: Option<uuid::Uuid>,
    pub timeout_ms: i64,
}

/// Inserts a QUEUED run and its RUN_QUEUED event. With an idempotency key that is
/// already taken, returns the existing run and `false` instead.
pub async fn insert(
    db: &impl ConnectionTrait,
    new: NewRun,
    now: DateTime<Utc>,
) -> Result<(Run, Vec<Event>, bool)> {
    if let Some(key) = &new.idempotency_key
        && let Some(existing) = find_by_idempotency_key(db, key).await?
    {
        return Ok((existing, Vec::new(), false));
    }
    let id = RunId::new();
    let model = run::ActiveModel {
        id: Set(id.0),
        team_id: Set(new.team_id.map(|t| t.0)),
        team_version_id: Set(new.team_version_id),
        workflow: Set(new.workflow.clone()),
        trigger: Set(new.trigger.as_str().to_owned()),
        trigger_id: Set(new.trigger_id.clone()),
        idempotency_key: Set(new.idempotency_key.clone()),
        approval_mode: Set(new.approval_mode.as_str().to_owned()),
        input: Set(new.input.clone()),
        status: Set(RunStatus::Queued.as_str().to_owned()),
        output: Set(None),
        error: Set(None),
        attempt: Set(0),
        lease_owner: Set(None),
        lease_expires_at: Set(None),
        wake_at: Set(None),
        deadline_at: Set(None),
        timeout_ms: Set(new.timeout_ms),
        remaining_ms: Set(None),
        pause_requested: Set(false),
        last_seq: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
    };
    match run::Entity::insert(model).exec_without_returning(db).await {
        Ok(_) => {}
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            // Lost a race with another request carrying the same key.
            if let Some(key) = &new.idempotency_key
                && let Some(existing) = find_by_idempotency_key(db, key).await?
            {
                return Ok((existing, Vec::new(), false));
            }
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    }
    let queued = events::insert(
        db,
        id,
        1,
        &[NewEvent::new(
            crate::event::EventKind::RunQueued,
            queued_data(&new),
        )],
        now,
    )
    .await?;
    let run = get(db, id)
        .await?
        .ok_or_else(|| Error::not_found("run", id))?;
    Ok((run, queued, true))
}

/// RUN_QUEUED's data: the workflow and what started the run.
fn queued_data(new: &NewRun) -> Json {
    let mut data = serde_json::json!({ "workflow": new.workflow, "trigger": new.trigger });
    if let Some(id) = &new.trigger_id {
        data["trigger_id"] = Json::from(id.as_str());
    }
    data
}

async fn find_by_idempotency_key(db: &impl ConnectionTrait, key: &str) -> Result<Option<Run>> {
    run::Entity::find()
        .filter(run::Column::IdempotencyKey.eq(key))
        .one(db)
        .await?
        .map(Run::try_from)
        .transpose()
}

pub async fn get(db: &impl ConnectionTrait, id: RunId) -> Result<Option<Run>> {
    run::Entity::find_by_id(id.0)
        .one(db)
        .await?
        .map(Run::try_from)
        .transpose()
}

/// Raises `last_seq` by `n` for the lease holder of `fence` (the fenced write that
/// reserves event numbers); `None` when the lease is lost. Returns the new `last_seq`.
pub async fn raise_last_seq_fenced(
    db: &impl ConnectionTrait,
    fence: &super::leases::Fence,
    n: i64,
    now: DateTime<Utc>,
) -> Result<Option<i64>> {
    let sql = format!(
        "UPDATE runs SET last_seq = last_seq + $5, updated_at = $4 WHERE id = $1 AND {} RETURNING last_seq",
        super::leases::fence("", "$2", "$3", "$4")
    );
    let row = db
        .query_one_raw(stmt(
            db,
            &sql,
            vec![
                fence.run_id.0.into(),
                fence.attempt.into(),
                fence.owner.clone().into(),
                now.into(),
                n.into(),
            ],
        ))
        .await?;
    Ok(row.map(|r| r.try_get_by_index(0)).transpose()?)
}

/// Locks a run's row for the rest of the transaction and returns its status
/// (`None`: no such run). Every transaction that changes a run and its approvals or
/// questions locks the run row first, so they serialise without deadlocks. (SQLite
/// write transactions begin IMMEDIATE and hold the whole database already.)
pub async fn lock_row(db: &impl ConnectionTrait, id: RunId) -> Result<Option<RunStatus>> {
    let sql = if super::is_postgres(db) {
        "SELECT status FROM runs WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT status FROM runs WHERE id = $1"
    };
    let Some(row) = db.query_one_raw(stmt(db, sql, vec![id.0.into()])).await? else {
        return Ok(None);
    };
    Ok(Some(row.try_get_by_index::<String>(0)?.parse()?))
}

/// A page of the runs matching `filter`, newest first. Runs are never counted: the
/// table grows without bound, so `total` stays `None`.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &RunFilter,
    request: &PageRequest<KeyOf<Run>>,
) -> Result<Page<Run>> {
    let mut q = run::Entity::find();
    if !filter.statuses.is_empty() {
        // The states are written into the SQL, not bound: the plan (generic on
        // Postgres, see `connect`) then knows how rare they are. With parameters it
        // guesses, and for several states it walks `ix_runs_created_id` newest first
        // filtering every run: a whole-table scan when fewer than a page match (rare
        // states: 0.7 s at 1 M runs). States are our own enum's names.
        let states = filter
            .statuses
            .iter()
            .map(|s| Expr::Constant(s.as_str().into()));
        q = q.filter(Expr::col(run::Column::Status).is_in(states));
    }
    if let Some(team) = filter.team_id {
        q = q.filter(run::Column::TeamId.eq(team.0));
    }
    if let Some(trigger) = filter.trigger {
        q = q.filter(run::Column::Trigger.eq(trigger.as_str()));
    }
    if let Some(trigger_id) = &filter.trigger_id {
        q = q.filter(run::Column::TriggerId.eq(trigger_id.as_str()));
    }
    if let Some(after) = filter.created_after {
        q = q.filter(run::Column::CreatedAt.gte(after));
    }
    if let Some(before) = filter.created_before {
        q = q.filter(run::Column::CreatedAt.lt(before));
    }
    let uncounted = PageRequest {
        count_total: false,
        ..request.clone()
    };
    keyset::page(
        db,
        q,
        &[run::Column::CreatedAt, run::Column::Id],
        Direction::Descending,
        &uncounted,
    )
    .await?
    .try_map(Run::try_from)
}

/// Runs changed at or after `since`, oldest change first, at most `limit`: what a
/// live view re-reads after it may have missed notifications. Only live runs and
/// runs finished since then can have changed, which keeps this on indexes.
pub async fn changed_since(
    db: &impl ConnectionTrait,
    since: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Run>> {
    let live = RunStatus::ALL
        .iter()
        .filter(|s| !s.is_terminal())
        .map(|s| s.as_str());
    run::Entity::find()
        .filter(
            Condition::any()
                .add(run::Column::Status.is_in(live))
                .add(run::Column::FinishedAt.gte(since)),
        )
        .filter(run::Column::UpdatedAt.gte(since))
        .order_by_asc(run::Column::UpdatedAt)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(Run::try_from)
        .collect()
}

/// A state change made outside any worker lease, guarded by the state it expects.
#[derive(Clone, Debug, Default)]
pub struct RunPatch {
    pub status: Option<RunStatus>,
    pub pause_requested: Option<bool>,
    /// Invalidate the current lease holder: its fenced writes fail from now on.
    pub revoke_lease: bool,
    pub deadline_at: Option<Option<DateTime<Utc>>>,
    pub remaining_ms: Option<Option<i64>>,
    pub wake_at: Option<Option<DateTime<Utc>>>,
    pub error: Option<String>,
    pub finished: bool,
    /// Set `output` to NULL (a retried run has no result yet).
    pub clear_output: bool,
    /// Set `error` to NULL; ignored when `error` is given.
    pub clear_error: bool,
    /// Set `finished_at` to NULL; ignored when `finished` is set.
    pub clear_finished: bool,
}

/// Applies `patch` if the run is still in `expected` state, appending `new_events`
/// in the same transaction. `None` means the run moved on meanwhile.
pub async fn apply_patch(
    db: &impl ConnectionTrait,
    run_id: RunId,
    expected: RunStatus,
    patch: &RunPatch,
    new_events: &[NewEvent],
    now: DateTime<Utc>,
) -> Result<Option<Vec<Event>>> {
    let mut sets = vec![
        "last_seq = last_seq + $1".to_owned(),
        "updated_at = $2".to_owned(),
    ];
    let mut values: Vec<Value> = vec![(new_events.len() as i64).into(), now.into()];
    let mut push = |col: &str, v: Value| {
        values.push(v);
        sets.push(format!("{col} = ${}", values.len()));
    };
    if let Some(status) = patch.status {
        push("status", status.as_str().into());
    }
    if let Some(p) = patch.pause_requested {
        push("pause_requested", p.into());
    }
    if let Some(d) = patch.deadline_at {
        push("deadline_at", d.into());
    }
    if let Some(r) = patch.remaining_ms {
        push("remaining_ms", r.into());
    }
    if let Some(w) = patch.wake_at {
        push("wake_at", w.into());
    }
    if let Some(e) = &patch.error {
        push("error", e.clone().into());
    }
    if patch.finished {
        push("finished_at", now.into());
    }
    if patch.clear_error && patch.error.is_none() {
        sets.push("error = NULL".into());
    }
    if patch.clear_finished && !patch.finished {
        sets.push("finished_at = NULL".into());
    }
    if patch.clear_output {
        sets.push("output = NULL".into());
    }
    if patch.revoke_lease {
        sets.push("attempt = attempt + 1".into());
        sets.push("lease_owner = NULL".into());
        sets.push("lease_expires_at = NULL".into());
    }
    values.push(run_id.0.into());
    values.push(expected.as_str().into());
    let sql = format!(
        "UPDATE runs SET {} WHERE id = ${} AND status = ${} RETURNING last_seq",
        sets.join(", "),
        values.len() - 1,
        values.len()
    );
    let Some(row) = db.query_one_raw(stmt(db, &sql, values)).await? else {
        return Ok(None);
    };
    let last_seq: i64 = row.try_get_by_index(0)?;
    let first = last_seq - new_events.len() as i64 + 1;
    // Other processes learn of these events from the bus's notifier after commit.
    Ok(Some(
        events::insert(db, run_id, first, new_events, now).await?,
    ))
}

/// Deletes up to `limit` finished runs whose `finished_at` is before `cutoff`, the
/// oldest first: a batch of the retention job. Returns how many were deleted (steps,
/// events, approvals, questions and alert instances go with them by cascade).
pub async fn delete_finished_before(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<u64> {
    let terminal = RunStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str());
    let batch = run::Entity::find()
        .select_only()
        .column(run::Column::Id)
        .filter(run::Column::Status.is_in(terminal))
        .filter(run::Column::FinishedAt.lt(cutoff))
        .order_by_asc(run::Column::FinishedAt)
        .limit(limit)
        .into_query();
    let res = run::Entity::delete_many()
        .filter(run::Column::Id.in_subquery(batch))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// Count of runs per status, for metrics and tests.
pub async fn count_by_status(db: &impl ConnectionTrait) -> Result<Vec<(RunStatus, i64)>> {
    let rows: Vec<(String, i64)> = run::Entity::find()
        .select_only()
        .column(run::Column::Status)
        .column_as(Expr::col(run::Column::Id).count(), "n")
        .group_by(run::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    rows.into_iter().map(|(s, n)| Ok((s.parse()?, n))).collect()
}

//! The `runs` table: creation, reads, listing and state changes made outside a
//! worker's lease (pause, resume, cancel, retry, human decisions).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, ExprTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, SqlErr, Statement, Value,
};
use serde_json::Value as Json;

use super::entity::run;
use super::keyset::{self, Direction};
use super::leases::{self, Claim};
use super::own_connection::SharedConnection;
use super::sqlite_direct;
use super::{events, is_postgres, stmt};
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

/// Inserts a QUEUED run and its RUN_QUEUED event, inside the caller's transaction.
/// With an idempotency key that is already taken, returns the existing run and
/// `false` instead.
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
    let row = new_row(&new, None, now);
    match run::Entity::insert(row.clone().into_active_model())
        .exec_without_returning(db)
        .await
    {
        Ok(_) => {}
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            return lost_key_race(db, &new, e.into()).await;
        }
        Err(e) => return Err(e.into()),
    }
    let run = Run::try_from(row)?;
    let queued = events::insert(db, run.id, 1, &[queued_event(&new)], now).await?;
    Ok((run, queued, true))
}

/// A worker of this process that takes a new run at its start (eager start).
pub struct EagerClaim<'a> {
    pub owner: &'a str,
    pub lease_ttl: std::time::Duration,
}

/// What [`start`] wrote.
pub enum Started {
    /// A new run, its RUN_QUEUED event, and the claim when a worker took it at once.
    New {
        run: Run,
        queued: Vec<Event>,
        claim: Option<Box<Claim>>,
    },
    /// The idempotency key was taken: the run that has it.
    Existing(Run),
}

/// Starts a run in one round trip and one commit: its row and RUN_QUEUED — and with
/// `eager`, the row already RUNNING for that worker and its RUN_STARTED, as a claim
/// would leave them — in one statement (Postgres) or one transaction (SQLite, on
/// `sqlite`: the checkpoint writer's connection).
pub async fn start(
    db: &super::Db,
    new: NewRun,
    eager: Option<EagerClaim<'_>>,
    now: DateTime<Utc>,
    sqlite: &SharedConnection,
) -> Result<Started> {
    if let Some(key) = &new.idempotency_key
        && let Some(existing) = find_by_idempotency_key(db, key).await?
    {
        return Ok(Started::Existing(existing));
    }
    let row = new_row(&new, eager.as_ref(), now);
    let run = Run::try_from(row.clone())?;
    let mut news = vec![queued_event(&new)];
    if let Some(eager) = &eager {
        news.push(leases::started_at_start(run.attempt, eager.owner));
    }
    let mut written = events::numbered(run.id, 1, &news, now);
    let insert = run::Entity::insert(row.into_active_model()).build(db.get_database_backend());
    let mut values = insert.values.map(|v| v.0).unwrap_or_default();
    let rows: Vec<&Event> = written.iter().collect();
    let (events_sql, events_values) = events::insert_sql(&rows, values.len() + 1);
    let wrote = if is_postgres(db) {
        values.extend(events_values);
        // A data-modifying CTE always runs; the events' foreign key is checked at the
        // statement's end, when the run's row is there.
        let sql = format!("WITH r AS ({}) {events_sql}", insert.sql);
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await
        .map(drop)
        .map_err(Error::from)
    } else {
        let statements = vec![
            sqlite_direct::Statement {
                sql: insert.sql,
                values,
            },
            sqlite_direct::Statement {
                sql: anonymous_placeholders(&events_sql),
                values: events_values,
            },
        ];
        sqlite
            .lock()
            .await
            .sqlite_transaction(db.get_sqlite_connection_pool(), statements)
            .await
            .map(drop)
    };
    match wrote {
        Ok(()) => {}
        Err(Error::Database(e)) if e.is_unique_violation() => {
            let (run, _, _) = lost_key_race(db, &new, Error::Database(e)).await?;
            return Ok(Started::Existing(run));
        }
        Err(e) => return Err(e),
    }
    let claim = eager.map(|e| Box::new(leases::claim_of_new(&run, e.owner, written.split_off(1))));
    Ok(Started::New {
        run,
        queued: written,
        claim,
    })
}

/// The run that took `new`'s idempotency key while `new` was being inserted; `err`
/// (the insert's failure) when no run has it, as then the key was not the conflict.
async fn lost_key_race(
    db: &impl ConnectionTrait,
    new: &NewRun,
    err: Error,
) -> Result<(Run, Vec<Event>, bool)> {
    if let Some(key) = &new.idempotency_key
        && let Some(existing) = find_by_idempotency_key(db, key).await?
    {
        return Ok((existing, Vec::new(), false));
    }
    Err(err)
}

/// A new run's row: QUEUED, or with `eager` RUNNING under that worker's first lease.
fn new_row(new: &NewRun, eager: Option<&EagerClaim<'_>>, now: DateTime<Utc>) -> run::Model {
    let claimed = eager.map(|e| {
        let ttl = chrono::Duration::from_std(e.lease_ttl).unwrap_or(chrono::Duration::seconds(30));
        (e.owner.to_owned(), now + ttl)
    });
    let running = claimed.is_some();
    run::Model {
        id: RunId::new().0,
        team_id: new.team_id.map(|t| t.0),
        team_version_id: new.team_version_id,
        workflow: new.workflow.clone(),
        trigger: new.trigger.as_str().to_owned(),
        trigger_id: new.trigger_id.clone(),
        idempotency_key: new.idempotency_key.clone(),
        approval_mode: new.approval_mode.as_str().to_owned(),
        input: new.input.clone(),
        status: if running {
            RunStatus::Running
        } else {
            RunStatus::Queued
        }
        .as_str()
        .to_owned(),
        output: None,
        error: None,
        attempt: i64::from(running),
        lease_expires_at: claimed.as_ref().map(|c| c.1),
        lease_owner: claimed.map(|c| c.0),
        wake_at: None,
        deadline_at: running.then(|| now + chrono::Duration::milliseconds(new.timeout_ms)),
        timeout_ms: new.timeout_ms,
        remaining_ms: None,
        pause_requested: false,
        last_seq: if running { 2 } else { 1 },
        created_at: now,
        updated_at: now,
        started_at: running.then_some(now),
        finished_at: None,
    }
}

/// `$n` placeholders as SQLite's anonymous `?`, bound in order (the values are
/// appended in the order the placeholders appear).
pub(super) fn anonymous_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            out.push('?');
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn queued_event(new: &NewRun) -> NewEvent {
    NewEvent::new(crate::event::EventKind::RunQueued, queued_data(new))
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

pub(super) static RAISE_LAST_SEQ_FENCED: std::sync::LazyLock<String> = std::sync::LazyLock::new(
    || {
        format!(
            "UPDATE runs SET last_seq = last_seq + $5, updated_at = $4 WHERE id = $1 AND {} RETURNING last_seq",
            super::leases::fence_by_id("", "$2", "$3", "$4")
        )
    },
);

/// Raises `last_seq` by `n` for the lease holder of `fence` (the fenced write that
/// reserves event numbers); `None` when the lease is lost. Returns the new `last_seq`.
pub async fn raise_last_seq_fenced(
    db: &impl ConnectionTrait,
    fence: &super::leases::Fence,
    n: i64,
    now: DateTime<Utc>,
) -> Result<Option<i64>> {
    let row = db
        .query_one_raw(stmt(
            db,
            &RAISE_LAST_SEQ_FENCED,
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
/// oldest first: a batch of the retention job. Returns how many were deleted (steps
/// and events go with them by the `runs_delete_history` trigger on Postgres, by
/// cascade on SQLite; approvals, questions and alert instances by cascade).
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{SubsecRound, Utc};

    use super::{EagerClaim, Started, get, start};
    use crate::event::EventKind;
    use crate::status::RunStatus;
    use crate::store::testing::{Backend, TestDb, new_run, step_result};
    use crate::store::{Db, events, leases};

    async fn each_backend(test: impl AsyncFn(&Db)) {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            if let Some(t) = TestDb::create(backend).await {
                test(&t.db).await;
            }
        }
    }

    fn shared() -> crate::store::own_connection::SharedConnection {
        Default::default()
    }

    fn eager() -> Option<EagerClaim<'static>> {
        Some(EagerClaim {
            owner: "w1",
            lease_ttl: Duration::from_secs(30),
        })
    }

    fn new_one(
        started: Started,
    ) -> (
        crate::model::Run,
        Vec<crate::event::Event>,
        Option<leases::Claim>,
    ) {
        match started {
            Started::New { run, queued, claim } => (run, queued, claim.map(|c| *c)),
            Started::Existing(run) => panic!("run {} already existed", run.id),
        }
    }

    #[tokio::test]
    async fn a_start_returns_exactly_the_run_and_events_it_stored() {
        each_backend(async |db| {
            let now = Utc::now().trunc_subsecs(6);
            let (queued_run, queued, claim) =
                new_one(start(db, new_run(), None, now, &shared()).await.unwrap());
            assert!(claim.is_none());
            assert_eq!(queued_run.status, RunStatus::Queued);
            assert_eq!(get(db, queued_run.id).await.unwrap().unwrap(), queued_run);
            assert_eq!(
                events::list_after(db, queued_run.id, 0, 10).await.unwrap(),
                queued
            );

            let (run, queued, claim) =
                new_one(start(db, new_run(), eager(), now, &shared()).await.unwrap());
            let claim = claim.expect("claimed at start");
            let stored = get(db, run.id).await.unwrap().unwrap();
            assert_eq!(stored, run);
            assert_eq!(stored.status, RunStatus::Running);
            assert_eq!(stored.attempt, 1);
            assert_eq!(stored.lease_owner.as_deref(), Some("w1"));
            assert_eq!(
                stored.lease_expires_at,
                Some(now + chrono::Duration::seconds(30))
            );
            assert_eq!(stored.deadline_at, Some(claim.deadline_at));
            assert_eq!(stored.last_seq, 2);
            let all = events::list_after(db, run.id, 0, 10).await.unwrap();
            let kinds: Vec<_> = all.iter().map(|e| e.kind).collect();
            assert_eq!(kinds, [EventKind::RunQueued, EventKind::RunStarted]);
            assert_eq!(all[..1], queued[..]);
            assert_eq!(all[1..], claim.events[..]);
            assert_eq!(claim.fence.attempt, 1);
            assert!(claim.fresh);
            // The lease is a real one: the holder's heartbeat renews it.
            let renewed =
                leases::heartbeat(db, "w1", &[run.id], Duration::from_secs(30), Utc::now())
                    .await
                    .unwrap();
            assert_eq!(renewed.len(), 1);
        })
        .await;
    }

    #[tokio::test]
    async fn a_repeated_idempotency_key_returns_the_first_run_and_writes_nothing() {
        each_backend(async |db| {
            let keyed = || super::NewRun {
                idempotency_key: Some("alert-42".into()),
                ..new_run()
            };
            let (first, _, _) = new_one(
                start(db, keyed(), eager(), Utc::now(), &shared())
                    .await
                    .unwrap(),
            );
            let Started::Existing(again) = start(db, keyed(), eager(), Utc::now(), &shared())
                .await
                .unwrap()
            else {
                panic!("a second run was started under the same key");
            };
            assert_eq!(again.id, first.id);
            assert_eq!(
                crate::store::runs::count_by_status(db)
                    .await
                    .unwrap()
                    .iter()
                    .map(|c| c.1)
                    .sum::<i64>(),
                1
            );
        })
        .await;
    }

    /// Starts racing with one key: those that miss the first lookup are refused by
    /// the unique index and answer with the run that won.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn starts_racing_with_one_key_all_answer_with_one_run() {
        each_backend(async |db| {
            let connection = shared();
            let keyed = || super::NewRun {
                idempotency_key: Some("alert-7".into()),
                ..new_run()
            };
            let racing = (0..8).map(|_| {
                let (db, connection) = (db.clone(), connection.clone());
                tokio::spawn(async move {
                    match start(&db, keyed(), None, Utc::now(), &connection)
                        .await
                        .unwrap()
                    {
                        Started::New { run, .. } | Started::Existing(run) => run.id,
                    }
                })
            });
            let ids: Vec<_> = futures::future::join_all(racing)
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
            let counts = crate::store::runs::count_by_status(db).await.unwrap();
            assert_eq!(counts, [(RunStatus::Queued, 1)]);
        })
        .await;
    }

    #[tokio::test]
    async fn a_refused_start_leaves_nothing_behind_and_the_next_one_works() {
        each_backend(async |db| {
            let connection = shared();
            // No such team version: the foreign key refuses the run.
            let bad = super::NewRun {
                team_version_id: Some(uuid::Uuid::now_v7()),
                ..new_run()
            };
            assert!(
                start(db, bad, eager(), Utc::now(), &connection)
                    .await
                    .is_err()
            );
            assert!(
                crate::store::runs::count_by_status(db)
                    .await
                    .unwrap()
                    .is_empty()
            );
            // The same connection starts the next run: no transaction was left open.
            for _ in 0..3 {
                new_one(
                    start(db, new_run(), None, Utc::now(), &connection)
                        .await
                        .unwrap(),
                );
            }
        })
        .await;
    }

    /// A start dropped while it waits for the write lock (a client gone) writes
    /// nothing and leaves the shared connection usable for the writer. (Once it has
    /// the lock, a start runs to its commit without awaiting.)
    #[tokio::test]
    async fn a_start_cut_short_leaves_the_shared_connection_usable() {
        let t = TestDb::create(Backend::Sqlite).await.unwrap();
        let db = &t.db;
        let connection = shared();
        new_one(
            start(db, new_run(), None, Utc::now(), &connection)
                .await
                .unwrap(),
        );
        let pool = db.get_sqlite_connection_pool();
        for _ in 0..5 {
            let other = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
            let started = start(db, new_run(), None, Utc::now(), &connection);
            let waited = tokio::time::timeout(Duration::from_millis(20), started).await;
            assert!(waited.is_err(), "the start did not wait for the write lock");
            other.rollback().await.unwrap();
            new_one(
                start(db, new_run(), None, Utc::now(), &connection)
                    .await
                    .unwrap(),
            );
        }
        let counts = crate::store::runs::count_by_status(db).await.unwrap();
        assert_eq!(counts, [(RunStatus::Queued, 6)]);
    }

    /// The one number `sql` selects.
    async fn count(db: &Db, sql: &str) -> i64 {
        use sea_orm::ConnectionTrait;
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql,
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    }

    /// Steps and events that name no run, on either table.
    async fn orphans(db: &Db) -> i64 {
        count(
            db,
            "SELECT (SELECT COUNT(*) FROM steps s WHERE NOT EXISTS \
                     (SELECT 1 FROM runs r WHERE r.id = s.run_id)) \
                  + (SELECT COUNT(*) FROM events e WHERE NOT EXISTS \
                     (SELECT 1 FROM runs r WHERE r.id = e.run_id))",
        )
        .await
    }

    /// A run's steps and events go with it (by foreign key on SQLite, by trigger on
    /// Postgres), and a checkpoint of a deleted run writes nothing.
    #[tokio::test]
    async fn a_deleted_run_takes_its_history_and_a_late_checkpoint_writes_nothing() {
        use crate::store::checkpoint::{Outcome, commit};
        each_backend(async |db| {
            let (run, _, claim) = new_one(
                start(db, new_run(), eager(), Utc::now(), &shared())
                    .await
                    .unwrap(),
            );
            let fence = claim.unwrap().fence;
            let done = commit(db, &[step_result(&fence, "a")], Utc::now())
                .await
                .unwrap();
            assert!(matches!(done[..], [Outcome::Committed(_)]), "{done:?}");
            let deleted = sea_orm::ConnectionTrait::execute_raw(
                db,
                crate::store::stmt(db, "DELETE FROM runs WHERE id = $1", vec![run.id.0.into()]),
            )
            .await
            .unwrap();
            assert_eq!(deleted.rows_affected(), 1);
            assert!(
                events::list_after(db, run.id, 0, 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert!(
                crate::store::steps::list(db, run.id)
                    .await
                    .unwrap()
                    .is_empty()
            );
            let late = commit(db, &[step_result(&fence, "b")], Utc::now())
                .await
                .unwrap();
            assert!(matches!(late[..], [Outcome::LeaseLost]), "{late:?}");
            assert_eq!(orphans(db).await, 0);
        })
        .await;
    }

    /// A delete that waits on a run's row lock while a transaction appends to the
    /// run's history deletes what that transaction committed: the trigger reads
    /// after the lock, not the delete statement's snapshot. (Every step and event is
    /// written in a transaction that has updated its run's row first.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delete_racing_an_append_leaves_no_orphans() {
        use sea_orm::{ConnectionTrait, TransactionTrait};
        let Some(t) = TestDb::create(Backend::Postgres).await else {
            return;
        };
        let db = &t.db;
        let (run, _, _) = new_one(
            start(db, new_run(), None, Utc::now(), &shared())
                .await
                .unwrap(),
        );
        let id = run.id.0;
        let txn = db.begin().await.unwrap();
        let row = txn
            .query_one_raw(crate::store::stmt(
                db,
                "UPDATE runs SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
                vec![id.into()],
            ))
            .await
            .unwrap()
            .unwrap();
        let seq: i64 = row.try_get_by_index(0).unwrap();
        let note = crate::event::NewEvent::new(EventKind::StepSucceeded, serde_json::json!({}));
        events::insert(&txn, run.id, seq, &[note], Utc::now())
            .await
            .unwrap();
        txn.execute_raw(crate::store::stmt(
            db,
            "INSERT INTO steps (id, run_id, step_key, status, attempts, created_at, updated_at) \
             VALUES ($1, $2, 'a', 'SUCCEEDED', 1, now(), now())",
            vec![uuid::Uuid::now_v7().into(), id.into()],
        ))
        .await
        .unwrap();
        let delete = tokio::spawn({
            let db = db.clone();
            async move {
                db.execute_raw(crate::store::stmt(
                    &db,
                    "DELETE FROM runs WHERE id = $1",
                    vec![id.into()],
                ))
                .await
                .unwrap()
                .rows_affected()
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !delete.is_finished(),
            "the delete did not wait for the row lock"
        );
        txn.commit().await.unwrap();
        assert_eq!(delete.await.unwrap(), 1);
        assert_eq!(orphans(db).await, 0);
    }

    /// The migration that replaced the foreign keys by the trigger goes down (orphans
    /// deleted, foreign keys back) and up again.
    #[tokio::test]
    async fn the_history_trigger_migration_goes_down_and_up() {
        use aiops_migrations::MigratorTrait;
        use sea_orm::ConnectionTrait;
        let Some(t) = TestDb::create(Backend::Postgres).await else {
            return;
        };
        let db = &t.db;
        let fks = "SELECT COUNT(*) FROM pg_constraint \
                   WHERE conname IN ('fk_steps_run', 'fk_events_run')";
        let triggers = "SELECT COUNT(*) FROM pg_trigger WHERE tgname = 'runs_delete_history'";
        assert_eq!((count(db, fks).await, count(db, triggers).await), (0, 1));
        // Without the foreign key an orphan can exist; going down deletes it.
        db.execute_unprepared(&format!(
            "INSERT INTO events (id, run_id, seq, kind, payload, created_at) \
             VALUES ('{}', '{}', 1, 'RUN_QUEUED', '{{}}', now())",
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7()
        ))
        .await
        .unwrap();
        assert_eq!(orphans(db).await, 1);
        aiops_migrations::Migrator::down(db, Some(1)).await.unwrap();
        assert_eq!((count(db, fks).await, count(db, triggers).await), (2, 0));
        assert_eq!(orphans(db).await, 0);
        aiops_migrations::Migrator::up(db, None).await.unwrap();
        assert_eq!((count(db, fks).await, count(db, triggers).await), (0, 1));
    }
}

//! Claiming runs with a lease, renewing leases, and giving them back.
//!
//! A claim bumps `runs.attempt`; that number plus `lease_owner` is the fencing token
//! every later write of the claimant must present (see `checkpoint`).

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use rusqlite::types::Value as SqlValue;
use sea_orm::{ConnectionTrait, QueryResult, Value};
use serde_json::{Value as Json, json};

use super::own_connection::SharedConnection;
use super::{Db, events, is_postgres, placeholders, sqlite_direct, stmt};
use crate::Result;
use crate::event::{Event, EventKind, NewEvent};
use crate::ids::RunId;
use crate::status::RunStatus;

/// The fence every write of a lease holder presents (zero rows: the lease is lost),
/// written once: `row` is the table's prefix in the statement (`""` or `"r."`), the
/// others are the SQL expressions of the presented attempt, owner and the time now.
pub(crate) fn fence(row: &str, attempt: &str, owner: &str, now: &str) -> String {
    fence_with(row, attempt, &format!("= {owner}"), now)
}

/// [`fence`] for a statement that finds its one run by `id = $n` with the owner a
/// parameter: there `lease_owner = $m` is as selective as the primary key to a
/// planner without statistics (a new database), and a generic plan cached then scans
/// the lease-owner index (every run the worker holds) on each write. `IS NOT
/// DISTINCT FROM` is the same test for an owner that is never NULL, and no index
/// serves it, so the primary key is the plan.
pub(crate) fn fence_by_id(row: &str, attempt: &str, owner: &str, now: &str) -> String {
    fence_with(row, attempt, &format!("IS NOT DISTINCT FROM {owner}"), now)
}

fn fence_with(row: &str, attempt: &str, owner_test: &str, now: &str) -> String {
    format!(
        "{row}attempt = {attempt} AND {row}lease_owner {owner_test} AND {row}lease_expires_at > {now}"
    )
}

/// Proof of a claim: who holds the run and under which attempt.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fence {
    pub run_id: RunId,
    pub owner: String,
    pub attempt: i64,
}

/// A run this worker now holds.
#[derive(Clone, Debug)]
pub struct Claim {
    pub fence: Fence,
    pub previous: RunStatus,
    /// The run had never started before this claim (`started_at` was NULL): it has
    /// no recorded steps, approvals or questions to replay. A retried run was claimed
    /// from QUEUED too, but is not fresh.
    pub fresh: bool,
    pub workflow: String,
    pub input: Json,
    pub deadline_at: DateTime<Utc>,
    pub pause_requested: bool,
    pub trigger: crate::status::Trigger,
    pub team_id: Option<crate::ids::TeamId>,
    pub team_version_id: Option<uuid::Uuid>,
    /// When the run was created (queued), for its duration when it ends.
    pub created_at: DateTime<Utc>,
    pub trigger_id: Option<String>,
    pub approval_mode: crate::status::ApprovalMode,
    /// RUN_STARTED or RUN_RESUMED, written in the claim's transaction.
    pub events: Vec<Event>,
}

/// Runs not queued that a worker may claim at `$1`: a RUNNING run nobody holds (its
/// lease expired or was given back) and that is not sleeping, or a parked run whose
/// wake-up time or deadline has come.
macro_rules! due {
    () => {
        "status IN ('RUNNING','RETRY_WAIT','WAITING_APPROVAL','WAITING_INPUT') AND ( \
           (status = 'RUNNING' AND (lease_expires_at IS NULL OR lease_expires_at <= $1) \
            AND (wake_at IS NULL OR wake_at <= $1 OR deadline_at <= $1)) \
        OR (status IN ('RETRY_WAIT','WAITING_APPROVAL','WAITING_INPUT') AND (wake_at <= $1 OR deadline_at <= $1)))"
    };
}
const DUE: &str = due!();
const CLAIMABLE: &str = concat!("(status = 'QUEUED' OR (", due!(), "))");

/// How many runs a worker could claim at `now` (the queue depth, for metrics): the
/// same predicate as the claim's.
pub async fn count_claimable(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<i64> {
    let row = db
        .query_one_raw(stmt(
            db,
            &format!("SELECT COUNT(*) AS n FROM runs WHERE {CLAIMABLE}"),
            vec![now.into()],
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    })
}

/// The event a claim writes: RUN_STARTED for a queued run, RUN_RESUMED for every
/// other. A claim of a RUNNING run whose holder's lease expired is a takeover (the
/// holder died or hung); a RUNNING run without a holder was given back (graceful
/// shutdown) or woke from a sleep.
fn claim_event(previous: RunStatus, attempt: i64, owner: &str, was_held: bool) -> NewEvent {
    match previous {
        RunStatus::Queued => NewEvent::new(
            EventKind::RunStarted,
            json!({ "from": previous, "attempt": attempt, "worker": owner }),
        ),
        _ => NewEvent::new(
            EventKind::RunResumed,
            json!({
                "from": previous, "attempt": attempt, "worker": owner,
                "takeover": previous == RunStatus::Running && was_held,
                "previous_attempt": attempt - 1,
            }),
        ),
    }
}

/// Which runs a claim looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Queued runs only: cheap however long the queue (an index walk from its head).
    Queued,
    /// Every runnable run: queued ones, ones whose lease expired, and parked ones
    /// whose wake-up time or deadline has come. Finding the latter costs a scan of
    /// the runs in flight, so a busy worker does it once per poll interval.
    Runnable,
}

/// Claims up to `limit` runs, oldest first. On SQLite the claim writes on `sqlite`,
/// the checkpoint writer's connection (see [`SharedConnection`]).
pub async fn claim(
    db: &Db,
    sqlite: &SharedConnection,
    owner: &str,
    limit: usize,
    lease_ttl: std::time::Duration,
    now: DateTime<Utc>,
    pick: Pick,
) -> Result<Vec<Claim>> {
    let lease_until =
        now + ChronoDuration::from_std(lease_ttl).unwrap_or(ChronoDuration::seconds(30));
    if is_postgres(db) {
        claim_postgres(db, owner, limit, lease_until, now, pick).await
    } else {
        claim_sqlite(db, sqlite, owner, limit, lease_until, now, pick).await
    }
}

// One statement: pick with SKIP LOCKED, take the lease, append RUN_STARTED or
// RUN_RESUMED (announced to other processes by the bus after commit). Event ids
// (UUIDv7) come from the caller, one per row. Queued runs are picked apart from the
// others, oldest first along `ix_runs_status_created`: one ordered pick over every
// claimable status sorted the whole queue for each claim (3–6 ms per claim with 6,400
// queued). What a branch locked beyond the limit is let go when the statement commits.
const PG_CLAIM: &str = "\
WITH queued AS (
  SELECT id, created_at, status AS prev, started_at IS NULL AS fresh, lease_owner IS NOT NULL AS held
  FROM runs WHERE status = 'QUEUED'
  ORDER BY status, created_at LIMIT $2 FOR UPDATE SKIP LOCKED
),
due AS (
  SELECT id, created_at, status AS prev, started_at IS NULL AS fresh, lease_owner IS NOT NULL AS held
  FROM runs WHERE {DUE}
  ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED
),
c AS (
  SELECT id, prev, fresh, held FROM (SELECT * FROM queued UNION ALL SELECT * FROM due) picked
  ORDER BY created_at LIMIT $2
),
claimed AS (
  UPDATE runs r SET status = 'RUNNING', attempt = r.attempt + 1, lease_owner = $3, lease_expires_at = $4,
      started_at = COALESCE(r.started_at, $1),
      deadline_at = COALESCE(r.deadline_at, $1 + COALESCE(r.remaining_ms, r.timeout_ms) * interval '1 millisecond'),
      remaining_ms = NULL, wake_at = NULL,
      last_seq = r.last_seq + 1, updated_at = $1
  FROM c WHERE r.id = c.id
  RETURNING r.id, c.prev, r.workflow, r.input, r.attempt, r.last_seq, r.deadline_at, r.pause_requested, c.fresh, c.held,
            r.trigger, r.team_id, r.team_version_id, r.created_at, r.trigger_id, r.approval_mode
),
announced AS (
  SELECT cl.*, row_number() OVER (ORDER BY cl.id) AS n FROM claimed cl
),
event_ids AS (
  SELECT value::uuid AS id, ordinality AS n FROM jsonb_array_elements_text($5::jsonb) WITH ORDINALITY
),
event_rows AS (
  INSERT INTO events (id, run_id, seq, kind, payload, created_at)
  SELECT i.id, a.id, a.last_seq, CASE WHEN a.prev = 'QUEUED' THEN 'RUN_STARTED' ELSE 'RUN_RESUMED' END,
         CASE WHEN a.prev = 'QUEUED'
           THEN jsonb_build_object('from', a.prev, 'attempt', a.attempt, 'worker', $3::text)
           ELSE jsonb_build_object('from', a.prev, 'attempt', a.attempt, 'worker', $3::text,
                                   'takeover', a.prev = 'RUNNING' AND a.held,
                                   'previous_attempt', a.attempt - 1)
         END, $1
  FROM announced a JOIN event_ids i ON i.n = a.n
  RETURNING 1
)
SELECT id, prev, workflow, input, attempt, last_seq, deadline_at, pause_requested, fresh, held,
       trigger, team_id, team_version_id, created_at, trigger_id, approval_mode FROM claimed";

/// `PG_CLAIM` for [`Pick::Runnable`] and for [`Pick::Queued`].
static PG_CLAIM_RUNNABLE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| PG_CLAIM.replace("{DUE}", DUE));
static PG_CLAIM_QUEUED: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| PG_CLAIM.replace("{DUE}", "false"));

async fn claim_postgres(
    db: &Db,
    owner: &str,
    limit: usize,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
    pick: Pick,
) -> Result<Vec<Claim>> {
    let sql: &str = match pick {
        Pick::Runnable => &PG_CLAIM_RUNNABLE,
        Pick::Queued => &PG_CLAIM_QUEUED,
    };
    let event_ids: Vec<Json> = (0..limit)
        .map(|_| Json::String(uuid::Uuid::now_v7().to_string()))
        .collect();
    let rows = db
        .query_all_raw(stmt(
            db,
            sql,
            vec![
                now.into(),
                (limit as i64).into(),
                owner.into(),
                lease_until.into(),
                Json::Array(event_ids).into(),
            ],
        ))
        .await?;
    let mut claims = Vec::with_capacity(rows.len());
    for row in rows {
        let (mut claim, last_seq) = claim_from_row(&row, owner)?;
        // `started_at` as it was before this claim (the CTE reads the old row).
        claim.fresh = row.try_get_by_index(8)?;
        let held: bool = row.try_get_by_index(9)?;
        let e = claim_event(claim.previous, claim.fence.attempt, owner, held);
        claim.events = vec![Event {
            run_id: claim.fence.run_id,
            seq: last_seq,
            kind: e.kind,
            payload: e.payload,
            created_at: now,
        }];
        claims.push(claim);
    }
    Ok(claims)
}

fn claim_from_row(row: &QueryResult, owner: &str) -> Result<(Claim, i64)> {
    let prev: String = row.try_get_by_index(1)?;
    Ok((
        Claim {
            fence: Fence {
                run_id: RunId(row.try_get_by_index(0)?),
                owner: owner.to_owned(),
                attempt: row.try_get_by_index(4)?,
            },
            previous: prev.parse()?,
            // Set by the caller from the row as it was before the claim; `false` is
            // the safe default (the worker then loads what there is to replay).
            fresh: false,
            workflow: row.try_get_by_index(2)?,
            input: row.try_get_by_index(3)?,
            deadline_at: row.try_get_by_index(6)?,
            pause_requested: row.try_get_by_index(7)?,
            trigger: row.try_get::<String>("", "trigger")?.parse()?,
            team_id: row
                .try_get::<Option<uuid::Uuid>>("", "team_id")?
                .map(crate::ids::TeamId),
            team_version_id: row.try_get("", "team_version_id")?,
            created_at: row.try_get("", "created_at")?,
            trigger_id: row.try_get("", "trigger_id")?,
            approval_mode: row.try_get::<String>("", "approval_mode")?.parse()?,
            events: Vec::new(),
        },
        row.try_get_by_index(5)?,
    ))
}

// SQLite has no SKIP LOCKED. The candidates are read through the pool, outside any
// transaction (a poll that finds nothing takes no write lock), and taken with one
// update guarded, row by row, by the attempt and status each was read with, so two
// processes never both win a run. The update and the insert of the runs' events are
// one transaction on the checkpoint writer's connection, called inline: through the
// pool they were an update and an insert per run (129 statements for 64 runs, each
// two thread hand-offs in sqlx), and a write on another connection makes the
// writer's connection drop its page cache.
async fn claim_sqlite(
    db: &Db,
    sqlite: &SharedConnection,
    owner: &str,
    limit: usize,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
    pick: Pick,
) -> Result<Vec<Claim>> {
    let which = match pick {
        Pick::Runnable => CLAIMABLE,
        // `$1` stays bound (unused) so that both forms take the same parameters.
        Pick::Queued => "status = 'QUEUED' AND $1 IS NOT NULL",
    };
    // The first columns are those `claim_from_row` reads (the deadline among them is
    // replaced below); what a run was created with never changes, so the
    // candidate's values are the claim's.
    let rows = db
        .query_all_raw(stmt(
            db,
            &format!(
                "SELECT id, status, workflow, input, attempt, last_seq, created_at AS no_deadline, pause_requested, \
                        trigger, team_id, team_version_id, created_at, trigger_id, approval_mode, \
                        deadline_at, remaining_ms, timeout_ms, started_at, lease_owner \
                 FROM runs WHERE {which} ORDER BY created_at LIMIT $2"
            ),
            vec![now.into(), (limit as i64).into()],
        ))
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut candidates = Vec::with_capacity(rows.len());
    for row in &rows {
        // `previous` is the status read (column 1).
        let (mut claim, _) = claim_from_row(row, owner)?;
        let remaining: Option<i64> = row.try_get("", "remaining_ms")?;
        let timeout: i64 = row.try_get("", "timeout_ms")?;
        let deadline: Option<DateTime<Utc>> = row.try_get("", "deadline_at")?;
        claim.deadline_at =
            deadline.unwrap_or(now + ChronoDuration::milliseconds(remaining.unwrap_or(timeout)));
        // Only a claim sets `started_at`, and the update is guarded by the attempt
        // read here, so this is its value before the claim.
        claim.fresh = row
            .try_get::<Option<DateTime<Utc>>>("", "started_at")?
            .is_none();
        let held = row.try_get::<Option<String>>("", "lease_owner")?.is_some();
        candidates.push((claim, held));
    }
    let update = take_sql(&candidates, owner, lease_until, now);
    let mut taken: Vec<Claim> = Vec::with_capacity(candidates.len());
    sqlite
        .lock()
        .await
        .sqlite_transaction_then(db.get_sqlite_connection_pool(), update, |rows| {
            // The runs taken, each with its `last_seq` and pause flag after the update.
            let mut after = std::collections::HashMap::with_capacity(rows.len());
            for row in rows {
                let (
                    Some(SqlValue::Blob(id)),
                    Some(SqlValue::Integer(last_seq)),
                    Some(SqlValue::Integer(pause)),
                ) = (row.first(), row.get(1), row.get(2))
                else {
                    return Err(crate::Error::Invalid(format!(
                        "unexpected claim row {row:?}"
                    )));
                };
                let id =
                    uuid::Uuid::from_slice(id).map_err(|e| crate::Error::Invalid(e.to_string()))?;
                after.insert(id, (*last_seq, *pause));
            }
            for (claim, held) in &candidates {
                let Some(&(last_seq, pause)) = after.get(&claim.fence.run_id.0) else {
                    continue;
                };
                let mut claim = claim.clone();
                claim.fence.attempt += 1;
                claim.pause_requested = pause != 0;
                let e = claim_event(claim.previous, claim.fence.attempt, owner, *held);
                claim.events = events::numbered(claim.fence.run_id, last_seq, &[e], now);
                taken.push(claim);
            }
            let rows: Vec<&Event> = taken.iter().flat_map(|c| &c.events).collect();
            Ok(rows
                .chunks(events::ROWS_PER_INSERT)
                .map(|chunk| {
                    let (sql, values) = events::insert_sql(chunk, 1);
                    sqlite_direct::Statement {
                        sql: super::runs::anonymous_placeholders(&sql),
                        values,
                    }
                })
                .collect())
        })
        .await?;
    Ok(taken)
}

/// Runs per update of a SQLite claim: four values each stay far below SQLite's limit
/// of bound values (32,766) however many slots a worker frees at once.
const TAKEN_PER_UPDATE: usize = 1000;

/// The updates that take the leases of `candidates` (claims as read, and whether
/// each run was held), each row guarded by the attempt and status it was read with;
/// they return `id, last_seq, pause_requested` of the runs taken, in no particular
/// order, without those someone else changed first.
fn take_sql(
    candidates: &[(Claim, bool)],
    owner: &str,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<sqlite_direct::Statement> {
    const FIXED: usize = 3;
    const PER_ROW: usize = 4;
    candidates
        .chunks(TAKEN_PER_UPDATE)
        .map(|chunk| {
            let mut values: Vec<Value> = Vec::with_capacity(FIXED + chunk.len() * PER_ROW);
            values.extend([owner.into(), lease_until.into(), now.into()]);
            let mut rows = Vec::with_capacity(chunk.len());
            for (i, (c, _)) in chunk.iter().enumerate() {
                rows.push(format!("({})", placeholders(FIXED + 1 + i * PER_ROW, PER_ROW)));
                values.extend([
                    c.fence.run_id.0.into(),
                    c.fence.attempt.into(),
                    c.previous.as_str().into(),
                    c.deadline_at.into(),
                ]);
            }
            // SQLite names a VALUES list's columns column1, column2, …; `?N` binds
            // the Nth value wherever it appears.
            let sql = format!(
                "UPDATE runs SET status = 'RUNNING', attempt = runs.attempt + 1, lease_owner = $1, lease_expires_at = $2, \
                     started_at = COALESCE(runs.started_at, $3), deadline_at = v.column4, remaining_ms = NULL, wake_at = NULL, \
                     last_seq = runs.last_seq + 1, updated_at = $3 \
                 FROM (VALUES {}) AS v \
                 WHERE runs.id = v.column1 AND runs.attempt = v.column2 AND runs.status = v.column3 \
                 RETURNING id, last_seq, pause_requested",
                rows.join(", ")
            );
            sqlite_direct::Statement {
                sql: sql.replace('$', "?"),
                values,
            }
        })
        .collect()
}

/// RUN_STARTED of a run claimed at its start (eager start) by `owner`.
pub(super) fn started_at_start(attempt: i64, owner: &str) -> NewEvent {
    claim_event(RunStatus::Queued, attempt, owner, false)
}

/// The claim on a run written already RUNNING for `owner` (eager start), with
/// `started` (its RUN_STARTED) committed in the same statement.
pub(super) fn claim_of_new(run: &crate::model::Run, owner: &str, started: Vec<Event>) -> Claim {
    Claim {
        fence: Fence {
            run_id: run.id,
            owner: owner.to_owned(),
            attempt: run.attempt,
        },
        previous: RunStatus::Queued,
        fresh: true,
        workflow: run.workflow.clone(),
        input: run.input.clone(),
        deadline_at: run.deadline_at.unwrap_or(run.created_at),
        pause_requested: false,
        trigger: run.trigger,
        team_id: run.team_id,
        team_version_id: run.team_version_id,
        created_at: run.created_at,
        trigger_id: run.trigger_id.clone(),
        approval_mode: run.approval_mode,
        events: started,
    }
}

/// What a heartbeat learned about one held run.
#[derive(Clone, Debug, PartialEq)]
pub struct Renewed {
    pub run_id: RunId,
    pub attempt: i64,
    pub pause_requested: bool,
}

/// Extends the leases `owner` still validly holds on `runs`; runs missing from the
/// answer were lost (expired, taken over or cancelled).
pub async fn heartbeat(
    db: &impl ConnectionTrait,
    owner: &str,
    runs: &[RunId],
    lease_ttl: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<Vec<Renewed>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let lease_until =
        now + ChronoDuration::from_std(lease_ttl).unwrap_or(ChronoDuration::seconds(30));
    let read = |rows: Vec<QueryResult>| -> Result<Vec<Renewed>> {
        rows.iter()
            .map(|row| {
                Ok(Renewed {
                    run_id: RunId(row.try_get_by_index(0)?),
                    attempt: row.try_get_by_index(1)?,
                    pause_requested: row.try_get_by_index(2)?,
                })
            })
            .collect()
    };
    if is_postgres(db) {
        // Lock the rows in id order first, as the checkpoint batch does, so the two
        // multi-row statements cannot deadlock. The ids go as one JSON array: one
        // prepared statement whatever their number (thousands of runs in flight).
        const SQL: &str = "WITH locked AS MATERIALIZED (\
               SELECT id FROM runs WHERE id = ANY(ARRAY(SELECT value::uuid FROM jsonb_array_elements_text($4::jsonb))) \
               AND lease_owner = $2 ORDER BY id FOR UPDATE) \
             UPDATE runs SET lease_expires_at = $1 \
             WHERE id = ANY(ARRAY(SELECT id FROM locked)) AND lease_owner = $2 AND lease_expires_at > $3 \
             RETURNING id, attempt, pause_requested";
        let ids = Json::Array(runs.iter().map(|r| Json::String(r.to_string())).collect());
        let values: Vec<Value> = vec![lease_until.into(), owner.into(), now.into(), ids.into()];
        return read(db.query_all_raw(stmt(db, SQL, values)).await?);
    }
    // SQLite has one writer at a time; chunks keep each statement's parameters well
    // under its limit.
    let mut renewed = Vec::with_capacity(runs.len());
    for chunk in runs.chunks(1000) {
        let sql = format!(
            "UPDATE runs SET lease_expires_at = $1 WHERE lease_owner = $2 AND lease_expires_at > $3 AND id IN ({}) \
             RETURNING id, attempt, pause_requested",
            placeholders(4, chunk.len())
        );
        let mut values: Vec<Value> = vec![lease_until.into(), owner.into(), now.into()];
        values.extend(chunk.iter().map(|r| Value::from(r.0)));
        renewed.extend(read(db.query_all_raw(stmt(db, &sql, values)).await?)?);
    }
    Ok(renewed)
}

/// The owner compared as in [`fence_by_id`], so that the run is found by its key.
const RELEASE: &str = "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
                       WHERE id = $2 AND attempt = $3 AND lease_owner IS NOT DISTINCT FROM $4";

/// Gives a held run back without changing its state, so any worker can claim it at
/// once (graceful shutdown, or a worker giving up after a database error).
pub async fn release(db: &impl ConnectionTrait, fence: &Fence, now: DateTime<Utc>) -> Result<bool> {
    let res = db
        .execute_raw(stmt(
            db,
            RELEASE,
            vec![
                now.into(),
                fence.run_id.0.into(),
                fence.attempt.into(),
                fence.owner.clone().into(),
            ],
        ))
        .await?;
    Ok(res.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use serde_json::json;

    use crate::event::{EventKind, NewEvent};
    use crate::status::StepStatus;
    use crate::store::checkpoint::{self, Checkpoint, Outcome, StepRecord};
    use crate::store::testing::{Backend, TestDb, new_run};
    use crate::store::{events, leases, runs, steps};

    /// Every write of a lease holder is fenced: an expired or taken-over holder
    /// writes nothing (no step, no event) and cannot release the run either.
    async fn fencing(backend: Backend) {
        let Some(t) = TestDb::create(backend).await else {
            return;
        };
        let db = &t.db;
        let (run, _, _) = runs::insert(db, new_run(), Utc::now()).await.unwrap();
        let ttl = Duration::from_millis(300);
        let a = leases::claim(
            db,
            &Default::default(),
            "worker-a",
            1,
            ttl,
            Utc::now(),
            leases::Pick::Runnable,
        )
        .await
        .unwrap()
        .remove(0);
        assert_eq!(a.fence.run_id, run.id);
        let result_of = |fence: &leases::Fence, key: &str| {
            let mut cp = Checkpoint::new(fence.clone());
            cp.steps.push(StepRecord {
                key: key.into(),
                status: StepStatus::Succeeded,
                input: None,
                output: Some(json!("written by a stale worker")),
                usage: None,
                error: None,
                attempts: 1,
                started_at: Some(Utc::now()),
                finished_at: Some(Utc::now()),
                next_attempt_at: None,
            });
            cp.events.push(NewEvent::new(
                EventKind::StepSucceeded,
                json!({ "step_key": key }),
            ));
            cp
        };

        // While the lease is valid, the holder writes.
        let ok = checkpoint::commit(db, &[result_of(&a.fence, "s-valid")], Utc::now())
            .await
            .unwrap();
        assert!(matches!(&ok[0], Outcome::Committed(e) if e.len() == 1));
        // A heartbeat renews it, found among many ids (more than one SQLite chunk).
        let mut ids: Vec<crate::ids::RunId> = (0..1500)
            .map(|_| crate::ids::RunId(uuid::Uuid::now_v7()))
            .collect();
        ids.insert(700, run.id);
        assert_eq!(
            leases::heartbeat(db, "worker-a", &ids, ttl, Utc::now())
                .await
                .unwrap(),
            [leases::Renewed {
                run_id: run.id,
                attempt: a.fence.attempt,
                pause_requested: false
            }]
        );

        tokio::time::sleep(Duration::from_millis(450)).await;
        // Expired, not yet taken over: still no write, no heartbeat.
        let out = checkpoint::commit(db, &[result_of(&a.fence, "s-expired")], Utc::now())
            .await
            .unwrap();
        assert_eq!(out, vec![Outcome::LeaseLost]);
        assert!(
            leases::heartbeat(db, "worker-a", &[run.id], ttl, Utc::now())
                .await
                .unwrap()
                .is_empty()
        );

        // Taken over: the new holder's fence works, the old one still does not.
        let b = leases::claim(
            db,
            &Default::default(),
            "worker-b",
            1,
            Duration::from_secs(30),
            Utc::now(),
            leases::Pick::Runnable,
        )
        .await
        .unwrap()
        .remove(0);
        assert_eq!(
            (b.fence.run_id, b.fence.attempt),
            (run.id, a.fence.attempt + 1)
        );
        let mixed = checkpoint::commit(db, &[result_of(&a.fence, "s-stale")], Utc::now())
            .await
            .unwrap();
        assert_eq!(mixed, vec![Outcome::LeaseLost]);
        let fresh = checkpoint::commit(db, &[result_of(&b.fence, "s-fresh")], Utc::now())
            .await
            .unwrap();
        assert!(matches!(&fresh[0], Outcome::Committed(_)));

        let keys: Vec<String> = steps::list(db, run.id)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.key)
            .collect();
        assert_eq!(keys, ["s-valid", "s-fresh"], "no stale write landed");
        let events = events::list_after(db, run.id, 0, 100).await.unwrap();
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=events.len() as i64).collect::<Vec<_>>(),
            "gap-free"
        );
        assert!(
            events
                .iter()
                .all(|e| e.payload["step_key"] != "s-expired" && e.payload["step_key"] != "s-stale")
        );
        // A worker that lost its lease cannot release it either.
        assert!(!leases::release(db, &a.fence, Utc::now()).await.unwrap());
    }

    /// A queued-only pick takes queued runs and leaves a run whose lease expired; a
    /// runnable pick takes both kinds, oldest first across them.
    async fn picks(backend: Backend) {
        let Some(t) = TestDb::create(backend).await else {
            return;
        };
        let db = &t.db;
        let insert = || async {
            let (run, _, _) = runs::insert(db, new_run(), Utc::now()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            run.id
        };
        let ttl = Duration::from_secs(30);
        let claim = |owner: &'static str, limit, pick, ttl| async move {
            leases::claim(db, &Default::default(), owner, limit, ttl, Utc::now(), pick)
                .await
                .unwrap()
                .into_iter()
                .map(|c| (c.fence.run_id, c.previous))
                .collect::<Vec<_>>()
        };
        let oldest = insert().await;
        let taken = claim("a", 1, leases::Pick::Runnable, Duration::from_millis(200)).await;
        assert_eq!(taken, [(oldest, crate::status::RunStatus::Queued)]);
        let (second, third) = (insert().await, insert().await);
        tokio::time::sleep(Duration::from_millis(350)).await;

        let queued = claim("b", 1, leases::Pick::Queued, ttl).await;
        assert_eq!(queued, [(second, crate::status::RunStatus::Queued)]);
        let fourth = insert().await;
        // The expired lease is older than every queued run: a runnable pick takes it first.
        let runnable = claim("b", 2, leases::Pick::Runnable, ttl).await;
        assert_eq!(
            runnable,
            [
                (oldest, crate::status::RunStatus::Running),
                (third, crate::status::RunStatus::Queued)
            ]
        );
        assert_eq!(
            claim("b", 5, leases::Pick::Queued, ttl).await,
            [(fourth, crate::status::RunStatus::Queued)]
        );
        assert!(claim("b", 5, leases::Pick::Runnable, ttl).await.is_empty());
    }

    /// A claim takes every run it picked, oldest first, each with its RUN_STARTED
    /// numbered after its RUN_QUEUED, when the runs are more than one SQLite update
    /// holds.
    async fn a_large_claim(backend: Backend) {
        let Some(t) = TestDb::create(backend).await else {
            return;
        };
        let db = &t.db;
        let n = super::TAKEN_PER_UPDATE + 100;
        let first = Utc::now() - chrono::Duration::hours(1);
        let mut queued = Vec::with_capacity(n);
        for i in 0..n {
            let at = first + chrono::Duration::milliseconds(i as i64);
            queued.push(runs::insert(db, new_run(), at).await.unwrap().0.id);
        }
        let ttl = Duration::from_secs(30);
        let claims = leases::claim(
            db,
            &Default::default(),
            "w",
            n + 5,
            ttl,
            Utc::now(),
            leases::Pick::Queued,
        )
        .await
        .unwrap();
        let taken: Vec<_> = claims.iter().map(|c| c.fence.run_id).collect();
        assert_eq!(taken, queued, "every run, oldest first");
        for c in &claims {
            assert_eq!(c.fence.attempt, 1);
            assert!(c.fresh);
            let kinds: Vec<_> = c.events.iter().map(|e| (e.kind, e.seq)).collect();
            assert_eq!(kinds, [(EventKind::RunStarted, 2)]);
        }
        let stored = events::list_after(db, queued[n - 1], 0, 10).await.unwrap();
        let kinds: Vec<_> = stored.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::RunQueued, EventKind::RunStarted]);
        assert!(
            leases::claim(
                db,
                &Default::default(),
                "w",
                5,
                ttl,
                Utc::now(),
                leases::Pick::Runnable
            )
            .await
            .unwrap()
            .is_empty()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_claim_postgres() {
        a_large_claim(Backend::Postgres).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_claim_sqlite() {
        a_large_claim(Backend::Sqlite).await
    }

    /// SQLite's one update takes only the candidates still as they were read: a run
    /// another process claimed in between is left out, the others are taken.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sqlite_claim_skips_a_run_changed_since_it_was_read() {
        let Some(t) = TestDb::create(Backend::Sqlite).await else {
            return;
        };
        let db = &t.db;
        let now = Utc::now();
        let mut candidates = Vec::new();
        for _ in 0..3 {
            let (run, _, _) = runs::insert(db, new_run(), now).await.unwrap();
            candidates.push((super::claim_of_new(&run, "w", Vec::new()), false));
        }
        // Someone else claims the second one after it was read.
        candidates[1].0.fence.attempt -= 1;
        let until = now + chrono::Duration::seconds(30);
        let update = super::take_sql(&candidates, "w", until, now);
        let shared = crate::store::own_connection::SharedConnection::default();
        let rows = shared
            .lock()
            .await
            .sqlite_transaction(db.get_sqlite_connection_pool(), update)
            .await
            .unwrap();
        let mut ids: Vec<uuid::Uuid> = rows
            .iter()
            .map(|r| match &r[0] {
                super::SqlValue::Blob(b) => uuid::Uuid::from_slice(b).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        ids.sort();
        let mut expected = vec![
            candidates[0].0.fence.run_id.0,
            candidates[2].0.fence.run_id.0,
        ];
        expected.sort();
        assert_eq!(ids, expected);
        let left = runs::get(db, candidates[1].0.fence.run_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(left.status, crate::status::RunStatus::Queued);
        let taken = runs::get(db, candidates[0].0.fence.run_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (taken.status, taken.attempt),
            (crate::status::RunStatus::Running, 1)
        );
    }

    /// On a new database both claims walk an index of `runs`, never the whole table.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_claim_plans_use_indexes_on_a_new_database() {
        let Some(t) = TestDb::create(Backend::Postgres).await else {
            return;
        };
        for sql in [&*super::PG_CLAIM_RUNNABLE, &*super::PG_CLAIM_QUEUED] {
            let plan = t
                .generic_plan(
                    "timestamptz, bigint, text, timestamptz, jsonb",
                    sql,
                    "now(), 8, 'w', now(), '[]'",
                )
                .await;
            assert!(!plan.contains("Seq Scan on runs"), "{plan}");
            assert!(plan.contains("ix_runs_status_created"), "{plan}");
        }
        // Statements that find one run by id, with the owner a parameter.
        let release = t
            .generic_plan(
                "timestamptz, uuid, bigint, text",
                super::RELEASE,
                "now(), gen_random_uuid(), 1, 'w'",
            )
            .await;
        let raise = t
            .generic_plan(
                "uuid, bigint, text, timestamptz, bigint",
                &crate::store::runs::RAISE_LAST_SEQ_FENCED,
                "gen_random_uuid(), 1, 'w', now(), 1",
            )
            .await;
        for plan in [release, raise] {
            assert!(plan.contains("runs_pkey"), "{plan}");
            assert!(!plan.contains("ix_runs_lease_owner"), "{plan}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn picks_postgres() {
        picks(Backend::Postgres).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn picks_sqlite() {
        picks(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_lease_cannot_write_postgres() {
        fencing(Backend::Postgres).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_lease_cannot_write_sqlite() {
        fencing(Backend::Sqlite).await
    }
}

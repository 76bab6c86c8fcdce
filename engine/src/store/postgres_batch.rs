//! A checkpoint batch on Postgres: one statement, its own transaction, on the
//! writer's own connection.
//!
//! A batch of many runs' checkpoints is a single statement of data-modifying CTEs
//! over `jsonb_to_recordset` ([`PG_BATCH`]): one statement text for every batch, so
//! its plan is prepared once per connection. A checkpoint committed alone (a run
//! with nothing else to commit beside it: the common case when few runs are active)
//! takes a statement of plain parameters instead ([`one_checkpoint`]), which
//! Postgres runs in about 0.08 ms less than the batch statement for one run
//! (BENCHMARKS.md, issue 12): no JSON to take apart, no lock-ordering CTE (one row
//! cannot deadlock). Both write the same rows under the same fence.

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::Value;
use sea_orm::sqlx::{PgPool, Row};
use serde_json::{Value as Json, json};
use uuid::Uuid;

use super::checkpoint::{Checkpoint, Outcome, RowUpdate, numbered};
use super::own_connection::{OwnConnection, database_error};
use crate::Result;

/// Commits `batch` (checkpoints of distinct runs) as one statement.
pub(super) async fn commit(
    pool: &PgPool,
    own: &mut OwnConnection,
    batch: &[Checkpoint],
    now: DateTime<Utc>,
) -> Result<Vec<Outcome>> {
    match batch {
        [cp] if fits_one_statement(cp) => commit_one(pool, own, cp, now).await.map(|o| vec![o]),
        _ => commit_many(pool, own, batch, now).await,
    }
}

// `{FENCE}` is replaced by the lease fence (`leases::fence`), `{STEP_UPSERT}` by
// `steps::ON_CONFLICT`.
const PG_BATCH: &str = "\
WITH ops AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS o(
    run_id uuid, owner text, attempt bigint, n_events bigint, status text,
    has_output boolean, output jsonb, error text, set_wake boolean, wake_at timestamptz,
    release boolean, park boolean, remaining_ms bigint, finished boolean, need_pause boolean)
),
-- Row locks in one order (by id) in every multi-row statement on runs: the
-- heartbeat locks its runs the same way, so the two can never deadlock.
locked AS MATERIALIZED (
  SELECT id FROM runs WHERE id = ANY(ARRAY(SELECT run_id FROM ops)) ORDER BY id FOR UPDATE
),
fenced AS (
  UPDATE runs r SET
    last_seq = r.last_seq + o.n_events,
    updated_at = $2,
    status = COALESCE(o.status, r.status),
    output = CASE WHEN o.has_output THEN o.output ELSE r.output END,
    error = COALESCE(o.error, r.error),
    wake_at = CASE WHEN o.set_wake THEN o.wake_at ELSE r.wake_at END,
    lease_owner = CASE WHEN o.release THEN NULL ELSE r.lease_owner END,
    lease_expires_at = CASE WHEN o.release THEN NULL ELSE r.lease_expires_at END,
    remaining_ms = CASE WHEN o.park THEN o.remaining_ms ELSE r.remaining_ms END,
    deadline_at = CASE WHEN o.park THEN NULL ELSE r.deadline_at END,
    pause_requested = CASE WHEN o.status = 'PAUSED' THEN false ELSE r.pause_requested END,
    finished_at = CASE WHEN o.finished THEN $2 ELSE r.finished_at END
  FROM ops o
  -- The ANY() keeps the lookup on the primary key whatever the table's size: plans
  -- are generic and cached per connection, so they must not depend on statistics.
  WHERE r.id = ANY(ARRAY(SELECT id FROM locked))
    AND r.id = o.run_id AND {FENCE}
    AND (NOT o.need_pause OR r.pause_requested)
  RETURNING r.id, r.last_seq
),
step_rows AS (
  INSERT INTO steps (id, run_id, step_key, status, input, output, usage, error, attempts,
                     started_at, finished_at, next_attempt_at, created_at, updated_at)
  SELECT s.id, s.run_id, s.step_key, s.status, s.input, s.output, s.usage, s.error, s.attempts,
         s.started_at, s.finished_at, s.next_attempt_at, $2, $2
  FROM jsonb_to_recordset($3::jsonb) AS s(
    id uuid, run_id uuid, step_key text, status text, input jsonb, output jsonb, usage jsonb, error text,
    attempts int, started_at timestamptz, finished_at timestamptz, next_attempt_at timestamptz)
  JOIN fenced f ON f.id = s.run_id
  {STEP_UPSERT}
  RETURNING 1
),
event_rows AS (
  INSERT INTO events (id, run_id, seq, kind, payload, created_at)
  SELECT e.id, e.run_id, f.last_seq - e.rev, e.kind, e.payload, $2
  FROM jsonb_to_recordset($4::jsonb) AS e(id uuid, run_id uuid, rev bigint, kind text, payload jsonb)
  JOIN fenced f ON f.id = e.run_id
  RETURNING 1
),
approval_rows AS (
  INSERT INTO approvals (id, run_id, step_key, tool, args, risk_note, status, requested_at, expires_at,
                         decided_by, decided_at, comment, created_at, updated_at)
  -- jsonb_to_recordset reads a JSON null as SQL NULL; args is NOT NULL and may be JSON null.
  SELECT a.id, a.run_id, a.step_key, a.tool, COALESCE(a.args, 'null'::jsonb), a.risk_note,
         COALESCE(a.status, 'PENDING'), $2, a.expires_at,
         a.decided_by, CASE WHEN a.status IS NULL THEN NULL ELSE $2 END, a.comment, $2, $2
  FROM jsonb_to_recordset($5::jsonb) AS a(id uuid, run_id uuid, step_key text, tool text, args jsonb,
                                          risk_note text, expires_at timestamptz, status text,
                                          decided_by text, comment text)
  JOIN fenced f ON f.id = a.run_id
  RETURNING 1
),
question_rows AS (
  INSERT INTO questions (id, run_id, step_key, question, status, expires_at, created_at, updated_at)
  SELECT q.id, q.run_id, q.step_key, q.question, 'PENDING', q.expires_at, $2, $2
  FROM jsonb_to_recordset($6::jsonb) AS q(id uuid, run_id uuid, step_key text, question text,
                                          expires_at timestamptz)
  JOIN fenced f ON f.id = q.run_id
  RETURNING 1
)
SELECT f.id, f.last_seq FROM fenced f";

/// `PG_BATCH` with its fence.
static BATCH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    PG_BATCH
        .replace(
            "{FENCE}",
            &super::leases::fence("r.", "o.attempt", "o.owner", "$2"),
        )
        .replace("{STEP_UPSERT}", super::steps::ON_CONFLICT)
});

async fn commit_many(
    pool: &PgPool,
    own: &mut OwnConnection,
    batch: &[Checkpoint],
    now: DateTime<Utc>,
) -> Result<Vec<Outcome>> {
    let mut ops = Vec::with_capacity(batch.len());
    let mut steps = Vec::new();
    let mut evs = Vec::new();
    let mut approvals = Vec::new();
    let mut questions = Vec::new();
    for cp in batch {
        let run_id = cp.fence.run_id.0;
        let u = RowUpdate::of(cp);
        ops.push(json!({
            "run_id": run_id,
            "owner": cp.fence.owner,
            "attempt": cp.fence.attempt,
            "n_events": u.n_events,
            "status": u.status,
            "has_output": u.has_output,
            "output": u.output,
            "error": u.error,
            "set_wake": u.set_wake,
            "wake_at": ts(u.wake_at),
            "release": u.release,
            "park": u.park,
            "remaining_ms": u.remaining_ms,
            "finished": u.finished,
            "need_pause": u.need_pause,
        }));
        for s in &cp.steps {
            steps.push(json!({
                "id": Uuid::now_v7(),
                "run_id": run_id,
                "step_key": s.key,
                "status": s.status.as_str(),
                "input": s.input,
                "output": s.output,
                "usage": s.usage,
                "error": s.error,
                "attempts": s.attempts,
                "started_at": ts(s.started_at),
                "finished_at": ts(s.finished_at),
                "next_attempt_at": ts(s.next_attempt_at),
            }));
        }
        let n = cp.events.len();
        for (i, e) in cp.events.iter().enumerate() {
            evs.push(json!({
                "id": Uuid::now_v7(),
                "run_id": run_id,
                "rev": n - 1 - i,
                "kind": e.kind.as_str(),
                "payload": e.payload,
            }));
        }
        for a in &cp.approvals {
            approvals.push(json!({
                "id": a.id.0, "run_id": run_id, "step_key": a.step_key, "tool": a.tool,
                "args": a.args, "risk_note": a.risk_note, "expires_at": ts(Some(a.expires_at)),
                "status": a.decided.as_ref().map(|d| d.status.as_str()),
                "decided_by": a.decided.as_ref().map(|d| &d.by),
                "comment": a.decided.as_ref().map(|d| &d.comment),
            }));
        }
        for q in &cp.questions {
            questions.push(json!({
                "id": q.id.0, "run_id": run_id, "step_key": q.step_key, "question": q.question,
                "expires_at": ts(Some(q.expires_at)),
            }));
        }
    }
    let values: Vec<Value> = vec![
        Json::Array(ops).into(),
        now.into(),
        Json::Array(steps).into(),
        Json::Array(evs).into(),
        Json::Array(approvals).into(),
        Json::Array(questions).into(),
    ];
    let rows = own.fetch_postgres(pool, &BATCH, values).await?;
    let mut committed = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let id: Uuid = row.try_get(0).map_err(database_error)?;
        let last_seq: i64 = row.try_get(1).map_err(database_error)?;
        committed.insert(id, last_seq);
    }
    Ok(batch
        .iter()
        .map(|cp| match committed.get(&cp.fence.run_id.0) {
            Some(last_seq) => Outcome::Committed(numbered(cp, *last_seq, now)),
            None => Outcome::LeaseLost,
        })
        .collect())
}

/// The shapes [`one_checkpoint`] has a statement for. Each shape is a statement of
/// its own, prepared on the writer's connection; bounding them keeps that cache
/// small. Anything larger, or with people's waits, goes through [`PG_BATCH`].
const ONE_MAX_STEPS: usize = 2;
const ONE_MAX_EVENTS: usize = 8;

fn fits_one_statement(cp: &Checkpoint) -> bool {
    cp.approvals.is_empty()
        && cp.questions.is_empty()
        && cp.steps.len() <= ONE_MAX_STEPS
        && cp.events.len() <= ONE_MAX_EVENTS
}

/// Parameters of [`one_checkpoint`] before its steps' and events' own.
const RUN_PARAMS: usize = 16;
const STEP_PARAMS: usize = 12;
const EVENT_PARAMS: usize = 4;

/// The statement committing one checkpoint of `steps` step rows and `events` events,
/// as [`PG_BATCH`] does for one run: the same columns set, the same fence, the
/// events numbered from the run's new `last_seq` down.
fn one_checkpoint(steps: usize, events: usize) -> String {
    let rows = |n: usize, first: usize, width: usize| {
        (0..n)
            .map(|i| {
                let params: Vec<String> = (0..width)
                    .map(|j| format!("${}", first + i * width + j + 1))
                    .collect();
                format!("({})", params.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let fence = super::leases::fence_by_id("r.", "$4", "$3", "$2");
    let mut sql = format!(
        "WITH fenced AS (
  UPDATE runs r SET
    last_seq = r.last_seq + $5,
    updated_at = $2,
    status = COALESCE($6, r.status),
    output = CASE WHEN $7 THEN $8 ELSE r.output END,
    error = COALESCE($9, r.error),
    wake_at = CASE WHEN $10 THEN $11 ELSE r.wake_at END,
    lease_owner = CASE WHEN $12 THEN NULL ELSE r.lease_owner END,
    lease_expires_at = CASE WHEN $12 THEN NULL ELSE r.lease_expires_at END,
    remaining_ms = CASE WHEN $13 THEN $14 ELSE r.remaining_ms END,
    deadline_at = CASE WHEN $13 THEN NULL ELSE r.deadline_at END,
    pause_requested = CASE WHEN $6 = 'PAUSED' THEN false ELSE r.pause_requested END,
    finished_at = CASE WHEN $15 THEN $2 ELSE r.finished_at END
  WHERE r.id = $1 AND {fence} AND (NOT $16 OR r.pause_requested)
  RETURNING r.last_seq
)"
    );
    if steps > 0 {
        sql += &format!(
            ",
step_rows AS (
  INSERT INTO steps (id, run_id, step_key, status, input, output, usage, error, attempts,
                     started_at, finished_at, next_attempt_at, created_at, updated_at)
  SELECT s.id, s.run_id, s.step_key, s.status, s.input, s.output, s.usage, s.error, s.attempts,
         s.started_at, s.finished_at, s.next_attempt_at, $2, $2
  FROM fenced, (VALUES {}) AS s(id, run_id, step_key, status, input, output, usage, error,
                                attempts, started_at, finished_at, next_attempt_at)
  {}
  RETURNING 1
)",
            rows(steps, RUN_PARAMS, STEP_PARAMS),
            super::steps::ON_CONFLICT
        );
    }
    if events > 0 {
        sql += &format!(
            ",
event_rows AS (
  INSERT INTO events (id, run_id, seq, kind, payload, created_at)
  SELECT e.id, $1, f.last_seq - e.rev, e.kind, e.payload, $2
  FROM fenced f, (VALUES {}) AS e(id, rev, kind, payload)
  RETURNING 1
)",
            rows(events, RUN_PARAMS + steps * STEP_PARAMS, EVENT_PARAMS)
        );
    }
    sql + "\nSELECT last_seq FROM fenced"
}

/// [`one_checkpoint`] for every shape, made once.
static ONE_CHECKPOINT: std::sync::LazyLock<Vec<Vec<String>>> = std::sync::LazyLock::new(|| {
    (0..=ONE_MAX_STEPS)
        .map(|steps| {
            (0..=ONE_MAX_EVENTS)
                .map(|events| one_checkpoint(steps, events))
                .collect()
        })
        .collect()
});

async fn commit_one(
    pool: &PgPool,
    own: &mut OwnConnection,
    cp: &Checkpoint,
    now: DateTime<Utc>,
) -> Result<Outcome> {
    let u = RowUpdate::of(cp);
    let mut values: Vec<Value> = Vec::with_capacity(
        RUN_PARAMS + cp.steps.len() * STEP_PARAMS + cp.events.len() * EVENT_PARAMS,
    );
    values.extend([
        cp.fence.run_id.0.into(),
        now.into(),
        cp.fence.owner.clone().into(),
        cp.fence.attempt.into(),
    ]);
    values.extend(u.values());
    values.push(u.need_pause.into());
    for s in &cp.steps {
        values.extend(super::steps::row_values(cp.fence.run_id, s));
    }
    let n = cp.events.len();
    for (i, e) in cp.events.iter().enumerate() {
        values.extend([
            Uuid::now_v7().into(),
            ((n - 1 - i) as i64).into(),
            e.kind.as_str().into(),
            e.payload.clone().into(),
        ]);
    }
    let sql = &ONE_CHECKPOINT[cp.steps.len()][n];
    let rows = own.fetch_postgres(pool, sql, values).await?;
    let Some(row) = rows.first() else {
        return Ok(Outcome::LeaseLost);
    };
    let last_seq: i64 = row.try_get(0).map_err(database_error)?;
    Ok(Outcome::Committed(numbered(cp, last_seq, now)))
}

fn ts(t: Option<DateTime<Utc>>) -> Json {
    t.map_or(Json::Null, |t| {
        Json::String(t.to_rfc3339_opts(SecondsFormat::Micros, true))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use sea_orm::{ConnectionTrait, Statement};
    use serde_json::{Value as Json, json};

    use super::{BATCH, ONE_CHECKPOINT, commit_many, commit_one};
    use crate::event::{EventKind, NewEvent};
    use crate::status::{RunStatus, StepStatus};
    use crate::store::checkpoint::{Checkpoint, Outcome, RunChange, StepRecord};
    use crate::store::own_connection::OwnConnection;
    use crate::store::testing::{Backend, TestDb, new_run};
    use crate::store::{Db, leases, runs};

    /// On a new database (empty, never analysed) the checkpoint statements' cached
    /// generic plans find runs by their primary key: a sequential scan planned now
    /// would stay cached while the table grows (`PG_SESSION` in `store/connect.rs`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_checkpoint_plans_use_the_primary_key_on_a_new_database() {
        let Some(t) = TestDb::create(Backend::Postgres).await else {
            return;
        };
        let plan = t
            .generic_plan(
                "jsonb, timestamptz, jsonb, jsonb, jsonb, jsonb",
                &BATCH,
                "'[]', now(), '[]', '[]', '[]', '[]'",
            )
            .await;
        assert!(!plan.contains("Seq Scan on runs"), "{plan}");
        assert!(plan.contains("runs_pkey"), "{plan}");

        // One step, two events: a step's result.
        let types = [
            "uuid, timestamptz, text, bigint, bigint, text, boolean, jsonb, text, boolean",
            "timestamptz, boolean, boolean, bigint, boolean, boolean",
            "uuid, uuid, text, text, jsonb, jsonb, jsonb, text, int, timestamptz, timestamptz, timestamptz",
            "uuid, bigint, text, jsonb, uuid, bigint, text, jsonb",
        ]
        .join(", ");
        let args = [
            "gen_random_uuid(), now(), 'w', 1, 2, NULL, false, NULL, NULL, false",
            "NULL, false, false, NULL, false, false",
            "gen_random_uuid(), gen_random_uuid(), 's', 'SUCCEEDED', NULL, '1', NULL, NULL, 1, now(), now(), NULL",
            "gen_random_uuid(), 1, 'STEP_STARTED', '{}', gen_random_uuid(), 0, 'STEP_SUCCEEDED', '{}'",
        ]
        .join(", ");
        let plan = t.generic_plan(&types, &ONE_CHECKPOINT[1][2], &args).await;
        assert!(!plan.contains("Seq Scan on runs"), "{plan}");
        assert!(plan.contains("runs_pkey"), "{plan}");
    }

    /// Every row `run_id`'s checkpoints touch, as JSON: its run (but what differs
    /// between two runs made alike), its steps by key, its events by seq (but ids).
    async fn rows_of(db: &Db, run_id: crate::ids::RunId) -> Vec<Json> {
        let mut out = Vec::new();
        for sql in [
            "SELECT to_jsonb(r) - 'id' - 'input' - 'idempotency_key' - 'trigger_id' - 'created_at' \
             FROM runs r WHERE id = $1",
            "SELECT to_jsonb(s) - 'id' - 'run_id' FROM steps s WHERE run_id = $1 ORDER BY step_key",
            "SELECT to_jsonb(e) - 'id' - 'run_id' FROM events e WHERE run_id = $1 ORDER BY seq",
        ] {
            let rows = db
                .query_all_raw(Statement::from_sql_and_values(
                    db.get_database_backend(),
                    sql,
                    [run_id.0.into()],
                ))
                .await
                .unwrap();
            out.extend(rows.iter().map(|r| r.try_get_by_index::<Json>(0).unwrap()));
        }
        out
    }

    fn step(key: &str, status: StepStatus) -> StepRecord {
        let at = "2026-12-02T10:00:00.123456Z".parse().unwrap();
        StepRecord {
            key: key.into(),
            status,
            input: Some(json!({ "in": key })),
            output: (status == StepStatus::Succeeded).then(|| json!([key, null, 1.5])),
            usage: (status == StepStatus::Succeeded).then(|| json!({ "tokens": 3 })),
            error: (status == StepStatus::RetryWait).then(|| format!("{key} 'failed'")),
            attempts: 2,
            started_at: Some(at),
            finished_at: (status != StepStatus::Running).then_some(at),
            next_attempt_at: (status == StepStatus::RetryWait).then_some(at),
        }
    }

    fn event(kind: EventKind, n: u32) -> NewEvent {
        NewEvent::new(kind, json!({ "n": n, "text": "ünïcode \"quoted\"" }))
    }

    fn change(status: RunStatus) -> RunChange {
        RunChange {
            status,
            output: None,
            error: None,
            wake_at: None,
            release: false,
            park_remaining_ms: None,
            finished: false,
            only_if_pause_requested: false,
        }
    }

    /// What a run goes through, checkpoint by checkpoint, with SQL run before some.
    fn script(fence: &leases::Fence) -> Vec<(Option<&'static str>, Checkpoint)> {
        let cp = |steps: Vec<StepRecord>, events: Vec<NewEvent>, run: Option<RunChange>| {
            let mut cp = Checkpoint::new(fence.clone());
            cp.steps = steps;
            cp.events = events;
            cp.run = run;
            cp
        };
        let later = "2026-12-02T11:00:00.5Z".parse().unwrap();
        vec![
            // A slow step announces itself, then its result (with an emitted event).
            (
                None,
                cp(
                    vec![step("a", StepStatus::Running)],
                    vec![event(EventKind::StepStarted, 1)],
                    None,
                ),
            ),
            (
                None,
                cp(
                    vec![step("a", StepStatus::Succeeded)],
                    vec![
                        event(EventKind::Finding, 2),
                        event(EventKind::StepSucceeded, 3),
                    ],
                    None,
                ),
            ),
            // Two held results at once, and a retry.
            (
                None,
                cp(
                    vec![
                        step("b", StepStatus::Succeeded),
                        step("c", StepStatus::RetryWait),
                    ],
                    (4..9).map(|n| event(EventKind::StepStarted, n)).collect(),
                    None,
                ),
            ),
            // Events alone; then nothing at all (a heartbeat-like write).
            (None, cp(vec![], vec![event(EventKind::Finding, 9)], None)),
            (None, cp(vec![], vec![], None)),
            // A pause that was withdrawn: lease lost, nothing written.
            (
                None,
                cp(
                    vec![],
                    vec![event(EventKind::RunPaused, 10)],
                    Some(RunChange {
                        only_if_pause_requested: true,
                        release: true,
                        ..change(RunStatus::Paused)
                    }),
                ),
            ),
            // Parked for a person: the clock stops, the lease goes.
            (
                Some("UPDATE runs SET pause_requested = true"),
                cp(
                    vec![step("d", StepStatus::Running)],
                    vec![event(EventKind::ApprovalRequested, 11)],
                    Some(RunChange {
                        wake_at: Some(later),
                        release: true,
                        park_remaining_ms: Some(4_321),
                        error: Some("waiting".into()),
                        ..change(RunStatus::WaitingApproval)
                    }),
                ),
            ),
            // The lease is gone now: refused.
            (
                None,
                cp(
                    vec![step("e", StepStatus::Succeeded)],
                    vec![event(EventKind::StepSucceeded, 12)],
                    None,
                ),
            ),
            // Claimed again (same owner and attempt) and finished with an output.
            (
                Some(
                    "UPDATE runs SET lease_owner = 'w', lease_expires_at = now() + interval '1 hour'",
                ),
                cp(
                    vec![step("e", StepStatus::Succeeded)],
                    vec![
                        event(EventKind::StepSucceeded, 13),
                        event(EventKind::RunSucceeded, 14),
                    ],
                    Some(RunChange {
                        output: Some(json!({ "report": "done", "n": null })),
                        release: true,
                        finished: true,
                        ..change(RunStatus::Succeeded)
                    }),
                ),
            ),
        ]
    }

    /// The one-checkpoint statement writes exactly what the batch statement writes
    /// for the same checkpoint, and refuses exactly what it refuses: one run goes
    /// through each, checkpoint by checkpoint, and every row of the two is compared.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_checkpoint_writes_what_the_batch_writes() {
        let Some(t) = TestDb::create(Backend::Postgres).await else {
            return;
        };
        let db = &t.db;
        let pool = db.get_postgres_connection_pool();
        let now = Utc::now();
        for _ in 0..2 {
            runs::insert(db, new_run(), now).await.unwrap();
        }
        let claims = leases::claim(
            db,
            &Default::default(),
            "w",
            2,
            Duration::from_secs(60),
            now,
            leases::Pick::Runnable,
        )
        .await
        .unwrap();
        let (one, many) = (&claims[0].fence, &claims[1].fence);
        let mut own = OwnConnection::default();
        let mut outcomes = Vec::new();
        for ((pre_one, cp_one), (pre_many, cp_many)) in script(one).into_iter().zip(script(many)) {
            let at = Utc::now();
            for (pre, fence) in [(pre_one, one), (pre_many, many)] {
                if let Some(sql) = pre {
                    db.execute_raw(Statement::from_sql_and_values(
                        db.get_database_backend(),
                        format!("{sql} WHERE id = $1"),
                        [fence.run_id.0.into()],
                    ))
                    .await
                    .unwrap();
                }
            }
            let a = commit_one(pool, &mut own, &cp_one, at).await.unwrap();
            let b = commit_many(pool, &mut own, std::slice::from_ref(&cp_many), at)
                .await
                .unwrap()
                .pop()
                .unwrap();
            let strip = |o: &Outcome| match o {
                Outcome::Committed(events) => Some(
                    events
                        .iter()
                        .map(|e| (e.seq, e.kind, e.payload.clone()))
                        .collect::<Vec<_>>(),
                ),
                Outcome::LeaseLost => None,
            };
            assert_eq!(strip(&a), strip(&b), "{cp_one:?}");
            outcomes.push(strip(&a).is_some());
            assert_eq!(
                rows_of(db, one.run_id).await,
                rows_of(db, many.run_id).await
            );
        }
        // The script went where it means to: two checkpoints refused, the run ended.
        assert_eq!(
            outcomes,
            [true, true, true, true, true, false, true, false, true]
        );
        let run = runs::get(db, one.run_id).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
        assert!(rows_of(db, one.run_id).await.len() > 15);
    }
}

//! Fenced checkpoint writes, batched across runs.
//!
//! A checkpoint is everything one worker step boundary must make durable at once:
//! step rows, events, a run state change, new approvals and questions. Every
//! checkpoint presents its run's [`Fence`]; one whose lease is gone writes nothing
//! and reports [`Outcome::LeaseLost`].
//!
//! Many runs' checkpoints commit together: on Postgres a whole batch is a single
//! statement (data-modifying CTEs over `jsonb_to_recordset`), on SQLite one script
//! sent in one call (`sqlite_batch`), so the cost of a commit is shared by every run
//! in it. Both run on the writer's own connection (`own_connection`). A batch holds
//! at most one checkpoint per run, which keeps each run's writes in submission order.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, TransactionSession, TransactionTrait, Value};
use serde_json::Value as Json;

use super::leases::Fence;
use super::own_connection::OwnConnection;
use super::{events, is_postgres, stmt};
use super::{postgres_batch, sqlite_batch};
use crate::Result;
use crate::event::{Event, NewEvent};
use crate::ids::{ApprovalId, QuestionId};
use crate::status::{RunStatus, StepStatus};

/// The durable record of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    pub key: String,
    pub status: StepStatus,
    pub input: Option<Json>,
    pub output: Option<Json>,
    pub usage: Option<Json>,
    pub error: Option<String>,
    pub attempts: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A run state change made by the lease holder.
#[derive(Clone, Debug, PartialEq)]
pub struct RunChange {
    pub status: RunStatus,
    pub output: Option<Json>,
    pub error: Option<String>,
    /// When a parked run becomes claimable again by itself.
    pub wake_at: Option<DateTime<Utc>>,
    /// Give the lease back (every state change but a plain heartbeat does).
    pub release: bool,
    /// Parking for a person: keep this much of the deadline for later and stop the clock.
    pub park_remaining_ms: Option<i64>,
    pub finished: bool,
    /// Only while the run's pause is still requested: an operator who withdrew it
    /// (`resume_run`) wins over a holder about to pause, and the commit reports the
    /// lease as lost.
    pub only_if_pause_requested: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewApproval {
    pub id: ApprovalId,
    pub step_key: String,
    pub tool: String,
    pub args: Json,
    pub risk_note: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// Decided as it is asked (a run whose approval mode rejects): stored with this
    /// decision instead of PENDING, decided at the commit's time.
    pub decided: Option<ApprovalDecision>,
}

/// A decision recorded with the approval it decides.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalDecision {
    pub status: crate::status::ApprovalStatus,
    pub by: String,
    pub comment: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewQuestion {
    pub id: QuestionId,
    pub step_key: String,
    pub question: String,
    pub expires_at: DateTime<Utc>,
}

/// Everything one step boundary of one run makes durable.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub fence: Fence,
    pub steps: Vec<StepRecord>,
    pub events: Vec<NewEvent>,
    pub run: Option<RunChange>,
    pub approvals: Vec<NewApproval>,
    pub questions: Vec<NewQuestion>,
}

impl Checkpoint {
    pub fn new(fence: Fence) -> Self {
        Self {
            fence,
            steps: Vec::new(),
            events: Vec::new(),
            run: None,
            approvals: Vec::new(),
            questions: Vec::new(),
        }
    }
}

impl Checkpoint {
    /// Puts `earlier` (a checkpoint of the same run submitted before this one)
    /// ahead of this one's writes, so that one commit makes both durable in order.
    pub fn absorb_earlier(&mut self, earlier: Checkpoint) {
        debug_assert_eq!(earlier.fence, self.fence);
        debug_assert!(earlier.run.is_none(), "only step results are held");
        fn prepend<T>(later: &mut Vec<T>, mut first: Vec<T>) {
            first.append(later);
            *later = first;
        }
        prepend(&mut self.steps, earlier.steps);
        prepend(&mut self.events, earlier.events);
        prepend(&mut self.approvals, earlier.approvals);
        prepend(&mut self.questions, earlier.questions);
    }

    /// Checks every value can be stored on both databases; the error says which
    /// value and why. The writer refuses invalid checkpoints before queueing them.
    pub fn validate(&self) -> std::result::Result<(), String> {
        use crate::storable::{check_json, check_text, check_time};
        let json =
            |v: &Option<Json>, path: &str| v.as_ref().map_or(Ok(()), |v| check_json(v, path));
        let time = |t: Option<DateTime<Utc>>, path: &str| t.map_or(Ok(()), |t| check_time(t, path));
        for s in &self.steps {
            let at = format!("step {}", s.key);
            check_text(&s.key, "step key")?;
            json(&s.input, &format!("{at} input"))?;
            json(&s.output, &format!("{at} output"))?;
            json(&s.usage, &format!("{at} usage"))?;
            s.error
                .as_deref()
                .map_or(Ok(()), |e| check_text(e, &format!("{at} error")))?;
            time(s.started_at, &format!("{at} started_at"))?;
            time(s.finished_at, &format!("{at} finished_at"))?;
            time(s.next_attempt_at, &format!("{at} next_attempt_at"))?;
        }
        for e in &self.events {
            check_json(&e.payload, &format!("event {} payload", e.kind))?;
        }
        if let Some(c) = &self.run {
            json(&c.output, "run output")?;
            c.error
                .as_deref()
                .map_or(Ok(()), |e| check_text(e, "run error"))?;
            time(c.wake_at, "run wake_at")?;
        }
        for a in &self.approvals {
            check_text(&a.tool, "approval tool")?;
            check_json(&a.args, "approval args")?;
            a.risk_note
                .as_deref()
                .map_or(Ok(()), |r| check_text(r, "approval risk_note"))?;
            check_time(a.expires_at, "approval expires_at")?;
            if let Some(d) = &a.decided {
                check_text(&d.by, "approval decided_by")?;
                check_text(&d.comment, "approval comment")?;
            }
        }
        for q in &self.questions {
            check_text(&q.question, "question")?;
            check_time(q.expires_at, "question expires_at")?;
        }
        Ok(())
    }
}

/// The fate of one checkpoint of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Committed(Vec<Event>),
    LeaseLost,
}

/// What a commit does about a run's human waits, inside the transaction that checks
/// its fence (a decision locks the run row first too, so the two serialise).
#[derive(Clone, Debug, Default)]
pub struct HumanWaits {
    /// Parking on these waits: if any was decided meanwhile, the run is released as
    /// RUNNING (claimable at once) instead of waiting for a decision that came.
    pub approvals: Vec<ApprovalId>,
    pub questions: Vec<QuestionId>,
    /// Ending the run: close every wait still pending with this reason, logging each
    /// close before the run's final event.
    pub close_pending: Option<String>,
}

/// Commits one checkpoint in its own transaction, with [`HumanWaits`] handled under
/// the run's row lock. Used for the rare commits that involve people; everything
/// else goes through the batched [`commit`].
pub async fn commit_with_human_waits(
    db: &(impl ConnectionTrait + TransactionTrait),
    mut cp: Checkpoint,
    waits: &HumanWaits,
    now: DateTime<Utc>,
) -> Result<Outcome> {
    let txn = super::begin_write(db).await?;
    let lock = if is_postgres(db) { " FOR UPDATE" } else { "" };
    let fenced = txn
        .query_one_raw(stmt(
            &txn,
            &format!(
                "SELECT status FROM runs WHERE id = $1 AND {}{lock}",
                super::leases::fence("", "$2", "$3", "$4")
            ),
            vec![
                cp.fence.run_id.0.into(),
                cp.fence.attempt.into(),
                cp.fence.owner.clone().into(),
                now.into(),
            ],
        ))
        .await?;
    if fenced.is_none() {
        txn.rollback().await?;
        return Ok(Outcome::LeaseLost);
    }
    let decided = super::approvals::any_decided(&txn, &waits.approvals).await?
        || super::questions::any_decided(&txn, &waits.questions).await?;
    if decided && let Some(change) = &mut cp.run {
        change.status = RunStatus::Running;
        change.wake_at = None;
        change.park_remaining_ms = None;
    }
    if let Some(reason) = &waits.close_pending {
        let run_id = cp.fence.run_id;
        let mut closes: Vec<NewEvent> =
            super::approvals::expire_pending_of_run(&txn, run_id, reason, now)
                .await?
                .into_iter()
                .map(|(id, key)| NewEvent::approval_closed(id, &key, reason))
                .collect();
        closes.extend(
            super::questions::expire_pending_of_run(&txn, run_id, now)
                .await?
                .into_iter()
                .map(|(id, key)| NewEvent::question_closed(id, &key, reason)),
        );
        let at = cp
            .events
            .iter()
            .position(NewEvent::is_final)
            .unwrap_or(cp.events.len());
        cp.events.splice(at..at, closes);
    }
    let outcome = commit_one(&txn, &cp, now).await?;
    match outcome {
        Outcome::Committed(_) => txn.commit().await?,
        Outcome::LeaseLost => txn.rollback().await?,
    }
    Ok(outcome)
}

/// A human wait the lease holder closes because it expired.
#[derive(Clone, Debug, PartialEq)]
pub enum ExpiringWait {
    Approval { id: ApprovalId, step_key: String },
    Question { id: QuestionId, step_key: String },
}

/// What [`expire_wait`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Expiry {
    /// Closed as EXPIRED, with its event.
    Expired(Vec<Event>),
    /// A person decided it in the meantime: their decision stands, nothing written.
    DecidedMeanwhile,
    LeaseLost,
}

/// Expires an approval or question as the lease holder: fenced, in one transaction
/// with its event, and losing cleanly to a decision made meanwhile.
pub async fn expire_wait(
    db: &(impl ConnectionTrait + TransactionTrait),
    fence: &Fence,
    wait: &ExpiringWait,
    now: DateTime<Utc>,
) -> Result<Expiry> {
    let txn = super::begin_write(db).await?;
    let Some(last_seq) = super::runs::raise_last_seq_fenced(&txn, fence, 1, now).await? else {
        txn.rollback().await?;
        return Ok(Expiry::LeaseLost);
    };
    let (won, event) = match wait {
        ExpiringWait::Approval { id, step_key } => (
            super::approvals::decide(
                &txn,
                *id,
                crate::status::ApprovalStatus::Expired,
                None,
                Some("expired"),
                now,
            )
            .await?,
            NewEvent::approval_closed(*id, step_key, "expired"),
        ),
        ExpiringWait::Question { id, step_key } => (
            super::questions::close(&txn, *id, None, None, now).await?,
            NewEvent::question_closed(*id, step_key, "expired"),
        ),
    };
    if !won {
        txn.rollback().await?;
        return Ok(Expiry::DecidedMeanwhile);
    }
    let written = events::insert(&txn, fence.run_id, last_seq, &[event], now).await?;
    txn.commit().await?;
    Ok(Expiry::Expired(written))
}

/// [`commit_on`] on a connection of its own, for tests.
#[cfg(test)]
pub async fn commit(
    db: &super::Db,
    batch: &[Checkpoint],
    now: DateTime<Utc>,
) -> Result<Vec<Outcome>> {
    commit_on(db, &mut OwnConnection::default(), batch, now).await
}

/// Commits a batch of checkpoints of distinct runs on the writer's own connection
/// (`own`, kept from one batch to the next). The batch either commits as a whole or
/// fails as a whole with a database error; fencing failures are per checkpoint and
/// leave the others unaffected.
pub(crate) async fn commit_on(
    db: &super::Db,
    own: &mut OwnConnection,
    batch: &[Checkpoint],
    now: DateTime<Utc>,
) -> Result<Vec<Outcome>> {
    debug_assert!(
        {
            let mut ids: Vec<_> = batch.iter().map(|c| c.fence.run_id).collect();
            ids.sort();
            ids.windows(2).all(|w| w[0] != w[1])
        },
        "a batch holds at most one checkpoint per run"
    );
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    if is_postgres(db) {
        return postgres_batch::commit(db.get_postgres_connection_pool(), own, batch, now).await;
    }
    if let Some(script) = sqlite_batch::Script::build(batch, now) {
        let pool = db.get_sqlite_connection_pool();
        return sqlite_batch::commit(own, pool, batch, script, now).await;
    }
    // Too large for one script: statement by statement, in one transaction.
    let txn = crate::store::begin_write(db).await?;
    let mut out = Vec::with_capacity(batch.len());
    for cp in batch {
        out.push(commit_one(&txn, cp, now).await?);
    }
    txn.commit().await?;
    Ok(out)
}

/// What one checkpoint does to its run's row, as both backends' batch statements take
/// it: `last_seq` rises by `n_events`; each `set_*`/flag says whether a column changes.
pub(super) struct RowUpdate<'a> {
    pub n_events: i64,
    pub status: Option<&'static str>,
    pub has_output: bool,
    pub output: Option<&'a Json>,
    pub error: Option<&'a str>,
    pub set_wake: bool,
    pub wake_at: Option<DateTime<Utc>>,
    pub release: bool,
    pub park: bool,
    pub remaining_ms: Option<i64>,
    pub finished: bool,
    pub need_pause: bool,
}

impl<'a> RowUpdate<'a> {
    pub(super) fn of(cp: &'a Checkpoint) -> Self {
        let change = cp.run.as_ref();
        Self {
            n_events: cp.events.len() as i64,
            status: change.map(|c| c.status.as_str()),
            has_output: change.is_some_and(|c| c.output.is_some()),
            output: change.and_then(|c| c.output.as_ref()),
            error: change.and_then(|c| c.error.as_deref()),
            set_wake: change.is_some(),
            wake_at: change.and_then(|c| c.wake_at),
            release: change.is_some_and(|c| c.release),
            park: change.is_some_and(|c| c.park_remaining_ms.is_some()),
            remaining_ms: change.and_then(|c| c.park_remaining_ms),
            finished: change.is_some_and(|c| c.finished),
            need_pause: change.is_some_and(|c| c.only_if_pause_requested),
        }
    }

    /// The row's new values as parameters, in the order both backends' statements
    /// take them: `n_events, status, has_output, output, error, set_wake, wake_at,
    /// release, park, remaining_ms, finished`.
    pub(super) fn values(&self) -> [Value; 11] {
        [
            self.n_events.into(),
            self.status.map(str::to_owned).into(),
            self.has_output.into(),
            self.output.cloned().into(),
            self.error.map(str::to_owned).into(),
            self.set_wake.into(),
            self.wake_at.into(),
            self.release.into(),
            self.park.into(),
            self.remaining_ms.into(),
            self.finished.into(),
        ]
    }
}

/// `cp`'s events as committed, the last of them numbered `last_seq`.
pub(super) fn numbered(cp: &Checkpoint, last_seq: i64, now: DateTime<Utc>) -> Vec<Event> {
    let first = last_seq - cp.events.len() as i64 + 1;
    events::numbered(cp.fence.run_id, first, &cp.events, now)
}

// One checkpoint on SQLite, statement by statement, inside the caller's transaction
// (batches too large for one script, and commits that involve people).
async fn commit_one(
    db: &impl ConnectionTrait,
    cp: &Checkpoint,
    now: DateTime<Utc>,
) -> Result<Outcome> {
    let mut sets = vec![
        "last_seq = last_seq + $1".to_owned(),
        "updated_at = $2".to_owned(),
    ];
    let mut values: Vec<Value> = vec![(cp.events.len() as i64).into(), now.into()];
    if let Some(c) = &cp.run {
        let mut push = |col: &str, v: Value| {
            values.push(v);
            sets.push(format!("{col} = ${}", values.len()));
        };
        push("status", c.status.as_str().into());
        if let Some(out) = &c.output {
            push("output", out.clone().into());
        }
        if let Some(err) = &c.error {
            push("error", err.clone().into());
        }
        push("wake_at", c.wake_at.into());
        if let Some(rem) = c.park_remaining_ms {
            push("remaining_ms", rem.into());
            sets.push("deadline_at = NULL".into());
        }
        if c.finished {
            sets.push("finished_at = $2".into());
        }
        if c.release {
            sets.push("lease_owner = NULL".into());
            sets.push("lease_expires_at = NULL".into());
        }
        if c.status == RunStatus::Paused {
            sets.push("pause_requested = false".into());
        }
    }
    let n = values.len();
    values.extend([
        cp.fence.run_id.0.into(),
        cp.fence.attempt.into(),
        cp.fence.owner.clone().into(),
    ]);
    let pause_guard = if cp.run.as_ref().is_some_and(|c| c.only_if_pause_requested) {
        " AND pause_requested"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE runs SET {} WHERE id = ${} AND {}{pause_guard} RETURNING last_seq",
        sets.join(", "),
        n + 1,
        super::leases::fence("", &format!("${}", n + 2), &format!("${}", n + 3), "$2"),
    );
    let Some(row) = db.query_one_raw(stmt(db, &sql, values)).await? else {
        return Ok(Outcome::LeaseLost);
    };
    let last_seq: i64 = row.try_get_by_index(0)?;
    let steps: Vec<_> = cp.steps.iter().map(|s| (cp.fence.run_id, s)).collect();
    super::steps::upsert(db, &steps, now).await?;
    for a in &cp.approvals {
        db.execute_raw(stmt(
            db,
            "INSERT INTO approvals (id, run_id, step_key, tool, args, risk_note, status, requested_at, expires_at, \
                                    decided_by, decided_at, comment, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $9, $7, $8, $10, $11, $12, $7, $7)",
            vec![
                a.id.0.into(),
                cp.fence.run_id.0.into(),
                a.step_key.clone().into(),
                a.tool.clone().into(),
                a.args.clone().into(),
                a.risk_note.clone().into(),
                now.into(),
                a.expires_at.into(),
                a.decided
                    .as_ref()
                    .map_or(crate::status::ApprovalStatus::Pending, |d| d.status)
                    .as_str()
                    .into(),
                a.decided.as_ref().map(|d| d.by.clone()).into(),
                a.decided.as_ref().map(|_| now).into(),
                a.decided.as_ref().map(|d| d.comment.clone()).into(),
            ],
        ))
        .await?;
    }
    for q in &cp.questions {
        db.execute_raw(stmt(
            db,
            "INSERT INTO questions (id, run_id, step_key, question, status, expires_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'PENDING', $5, $6, $6)",
            vec![
                q.id.0.into(),
                cp.fence.run_id.0.into(),
                q.step_key.clone().into(),
                q.question.clone().into(),
                q.expires_at.into(),
                now.into(),
            ],
        ))
        .await?;
    }
    let first = last_seq - cp.events.len() as i64 + 1;
    Ok(Outcome::Committed(
        events::insert(db, cp.fence.run_id, first, &cp.events, now).await?,
    ))
}

//! The append-only event log and the notifications that announce it.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Value,
};
use uuid::Uuid;

use super::entity::{event, run};
use super::keyset::{self, Direction};
use super::{is_postgres, stmt};
use crate::Result;
use crate::event::{Event, NewEvent};
use crate::ids::RunId;
use crate::page::{KeyOf, Keyed, Page, PageRequest};

/// Postgres channel carrying `run_id:last_seq,…` after events commit.
pub const EVENTS_CHANNEL: &str = "aiops_events";
/// Postgres channel carrying `cancel:run_id` / `pause:run_id` to workers.
pub const CONTROL_CHANNEL: &str = "aiops_control";
/// Postgres channel carrying live-only events (JSON arrays of them).
pub const LIVE_CHANNEL: &str = "aiops_live";
/// Postgres channel that wakes idle workers when a run becomes runnable.
pub const WAKE_CHANNEL: &str = "aiops_wake";

/// Inserts `events` numbered `first_seq..`; the caller has already reserved those
/// numbers by raising `runs.last_seq` in the same transaction.
pub async fn insert(
    db: &impl ConnectionTrait,
    run_id: RunId,
    first_seq: i64,
    events: &[NewEvent],
    now: DateTime<Utc>,
) -> Result<Vec<Event>> {
    Ok(insert_runs(db, &[(run_id, first_seq, events)], now)
        .await?
        .pop()
        .unwrap_or_default())
}

/// Rows per INSERT: six values each stay far below SQLite's limit of bound values.
pub(super) const ROWS_PER_INSERT: usize = 1000;

/// [`insert`] for several runs at once, in as few statements as the rows need; the
/// events written, per run, in the order given.
pub async fn insert_runs(
    db: &impl ConnectionTrait,
    runs: &[(RunId, i64, &[NewEvent])],
    now: DateTime<Utc>,
) -> Result<Vec<Vec<Event>>> {
    let out: Vec<Vec<Event>> = runs
        .iter()
        .map(|(run_id, first_seq, events)| numbered(*run_id, *first_seq, events, now))
        .collect();
    let rows: Vec<&Event> = out.iter().flatten().collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let (sql, values) = insert_sql(chunk, 1);
        db.execute_raw(stmt(db, &sql, values)).await?;
    }
    Ok(out)
}

/// `events` as they are written for `run_id`: numbered from `first_seq`, at `now`.
pub(super) fn numbered(
    run_id: RunId,
    first_seq: i64,
    events: &[NewEvent],
    now: DateTime<Utc>,
) -> Vec<Event> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| Event {
            run_id,
            seq: first_seq + i as i64,
            kind: e.kind,
            payload: e.payload.clone(),
            created_at: now,
        })
        .collect()
}

/// One INSERT of `rows`, its placeholders numbered from `$first` (the caller turns
/// them into SQLite's when it needs to), and its values.
pub(super) fn insert_sql(rows: &[&Event], first: usize) -> (String, Vec<Value>) {
    let mut sql =
        String::from("INSERT INTO events (id, run_id, seq, kind, payload, created_at) VALUES ");
    let mut values: Vec<Value> = Vec::with_capacity(rows.len() * 6);
    for (i, e) in rows.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&super::placeholders(first + i * 6, 6));
        sql.push(')');
        values.extend([
            Uuid::now_v7().into(),
            e.run_id.0.into(),
            e.seq.into(),
            e.kind.as_str().into(),
            e.payload.clone().into(),
            e.created_at.into(),
        ]);
    }
    (sql, values)
}

/// Events of a run with `seq > after_seq`, oldest first, at most `limit`.
pub async fn list_after(
    db: &impl ConnectionTrait,
    run_id: RunId,
    after_seq: i64,
    limit: u64,
) -> Result<Vec<Event>> {
    let rows = event::Entity::find()
        .filter(event::Column::RunId.eq(run_id.0))
        .filter(event::Column::Seq.gt(after_seq))
        .order_by_asc(event::Column::Seq)
        .limit(limit)
        .all(db)
        .await?;
    rows.into_iter().map(from_model).collect()
}

/// A run's events are listed by `seq`.
impl Keyed for Event {
    type Key = i64;
    fn key(&self) -> i64 {
        self.seq
    }
}

/// A page of a run's events by `seq` (unique index `ux_events_run_seq`). The total is
/// the run's `last_seq`: seqs are 1…last_seq without gaps, so nothing is counted.
pub async fn page(
    db: &impl ConnectionTrait,
    run_id: RunId,
    request: &PageRequest<KeyOf<Event>>,
) -> Result<Page<Event>> {
    let uncounted = PageRequest {
        count_total: false,
        ..request.clone()
    };
    let mut page = keyset::page(
        db,
        event::Entity::find().filter(event::Column::RunId.eq(run_id.0)),
        &[event::Column::Seq],
        Direction::Ascending,
        &uncounted,
    )
    .await?
    .try_map(from_model)?;
    if request.count_total {
        let last_seq: Option<i64> = run::Entity::find_by_id(run_id.0)
            .select_only()
            .column(run::Column::LastSeq)
            .into_tuple()
            .one(db)
            .await?;
        page.total = Some(last_seq.unwrap_or(0).max(0) as u64);
    }
    Ok(page)
}

fn from_model(m: event::Model) -> Result<Event> {
    Ok(Event {
        run_id: RunId(m.run_id),
        seq: m.seq,
        kind: m.kind.parse()?,
        payload: m.payload,
        created_at: m.created_at,
    })
}

/// Sends a Postgres notification in a transaction of its own (a no-op on SQLite,
/// where one process serves and in-process channels carry the news). That
/// transaction commits without waiting for its WAL flush (`synchronous_commit` off
/// for it alone): a notification is a hint, lost to a crash either way, and waiting
/// would add a second flush to every checkpoint commit it announces.
pub async fn notify_now(db: &impl ConnectionTrait, channel: &str, payload: &str) -> Result<()> {
    if is_postgres(db) {
        db.execute_raw(stmt(
            db,
            "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)",
            vec![channel.into(), payload.into()],
        ))
        .await?;
    }
    Ok(())
}

/// The payload of a control signal for `run_id`'s holder.
pub fn control_payload(run_id: RunId, signal: crate::bus::ControlSignal) -> String {
    format!("{}:{run_id}", signal.as_str())
}

/// The payload announcing that `run_id` has events up to `last_seq`.
pub fn event_hint(run_id: RunId, last_seq: i64) -> String {
    format!("{run_id}:{last_seq}")
}

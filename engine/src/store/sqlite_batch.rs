//! A checkpoint batch on SQLite: one transaction of a few statements, run inline on
//! the writer's own connection ([`DirectConnection`](super::sqlite_direct)).
//!
//! ```text
//! BEGIN IMMEDIATE;
//! the runs whose fence holds, with their last_seq  -> temp.checkpoint_held
//! INSERT steps, events, approvals, questions       -- of those runs only
//! UPDATE runs … RETURNING id, last_seq             -- those runs only
//! COMMIT;
//! ```
//!
//! The fence is read once, before anything changes, and only the last statement
//! changes `runs` (a lease it releases still fenced the inserts): a run's rows are
//! written exactly when the UPDATE returns it. A statement that fails rolls the whole
//! batch back.

use chrono::{DateTime, Utc};
use rusqlite::types::Value as SqlValue;
use sea_orm::Value;
use sea_orm::sqlx;
use uuid::Uuid;

use super::checkpoint::{Checkpoint, Outcome, RowUpdate, numbered};
use super::own_connection::OwnConnection;
use super::sqlite_direct::Statement;
use crate::{Error, Result};

/// SQLite refuses more than 32,766 parameters in one statement; a batch needing
/// more in any of its statements takes the statement-by-statement path.
const MAX_PARAMETERS: usize = 32_000;

/// One batch as statements with their parameters. Parameters are anonymous (`?`,
/// bound in the order they appear): SQLite looks numbered ones up by a linear scan,
/// which made binding a large batch quadratic.
pub(super) struct Script {
    statements: Vec<Statement>,
}

impl Script {
    /// The statements of `batch`; `None` when one would need too many parameters.
    pub(super) fn build(batch: &[Checkpoint], now: DateTime<Utc>) -> Option<Self> {
        let count =
            |per: usize, f: fn(&Checkpoint) -> usize| per * batch.iter().map(f).sum::<usize>();
        let largest = [
            count(12, |_| 1),
            count(12, |cp| cp.steps.len()),
            count(5, |cp| cp.events.len()),
            count(11, |cp| cp.approvals.len()),
            count(5, |cp| cp.questions.len()),
        ];
        if largest.iter().any(|n| *n + 3 > MAX_PARAMETERS) {
            return None;
        }
        let mut s = Script {
            statements: vec![
                // Once per connection in effect: a no-op once the table exists.
                Statement {
                    sql: "CREATE TEMP TABLE IF NOT EXISTS checkpoint_held \
                            (id BLOB PRIMARY KEY, last_seq INTEGER NOT NULL)"
                        .into(),
                    values: Vec::new(),
                },
                Statement {
                    sql: "DELETE FROM temp.checkpoint_held".into(),
                    values: Vec::new(),
                },
            ],
        };
        // The runs whose fence holds, with their last event's number before this commit.
        let mut values = Vec::new();
        let fences = rows(
            &mut values,
            batch.iter().map(|cp| {
                vec![
                    cp.fence.run_id.0.into(),
                    cp.fence.attempt.into(),
                    cp.fence.owner.clone().into(),
                    RowUpdate::of(cp).need_pause.into(),
                ]
            }),
        );
        s.push(
            format!(
                "WITH f (id, attempt, owner, need_pause) AS (VALUES {fences})
                 INSERT INTO temp.checkpoint_held (id, last_seq)
                 SELECT r.id, r.last_seq FROM f JOIN runs r ON r.id = f.id
                 WHERE {} AND (NOT f.need_pause OR r.pause_requested)",
                super::leases::fence("r.", "f.attempt", "f.owner", "?")
            ),
            values,
            1,
            now,
        );
        s.insert_steps(batch, now);
        s.insert_events(batch, now);
        s.insert_approvals(batch, now);
        s.insert_questions(batch, now);
        s.update_runs(batch, now);
        Some(s)
    }

    /// Appends `sql` with `values` and the commit time for each of its `times`
    /// parameters that follow its rows.
    fn push(&mut self, sql: String, mut values: Vec<Value>, times: usize, now: DateTime<Utc>) {
        values.extend(std::iter::repeat_n(Value::from(now), times));
        self.statements.push(Statement { sql, values });
    }

    fn insert_steps(&mut self, batch: &[Checkpoint], now: DateTime<Utc>) {
        let mut values = Vec::new();
        let rows = rows(
            &mut values,
            batch.iter().flat_map(|cp| {
                cp.steps
                    .iter()
                    .map(|s| super::steps::row_values(cp.fence.run_id, s))
            }),
        );
        if rows.is_empty() {
            return;
        }
        // The WHERE is required: without it SQLite would read `ON CONFLICT` as a join's ON.
        let statement = format!(
            "WITH v (id, run_id, step_key, status, input, output, usage, error, attempts,
                     started_at, finished_at, next_attempt_at) AS (VALUES {rows})
             INSERT INTO steps (id, run_id, step_key, status, input, output, usage, error, attempts,
                                started_at, finished_at, next_attempt_at, created_at, updated_at)
             SELECT *, ?, ? FROM v WHERE run_id IN (SELECT id FROM temp.checkpoint_held)
             ON CONFLICT (run_id, step_key) DO UPDATE SET status = excluded.status,
               input = COALESCE(excluded.input, steps.input), output = excluded.output,
               usage = COALESCE(excluded.usage, steps.usage), error = excluded.error,
               attempts = excluded.attempts, started_at = COALESCE(steps.started_at, excluded.started_at),
               finished_at = excluded.finished_at, next_attempt_at = excluded.next_attempt_at,
               updated_at = excluded.updated_at"
        );
        self.push(statement, values, 2, now);
    }

    fn insert_events(&mut self, batch: &[Checkpoint], now: DateTime<Utc>) {
        let mut values = Vec::new();
        let rows = rows(
            &mut values,
            batch.iter().flat_map(|cp| {
                cp.events.iter().enumerate().map(|(i, e)| {
                    vec![
                        Uuid::now_v7().into(),
                        cp.fence.run_id.0.into(),
                        (i as i64 + 1).into(),
                        e.kind.as_str().into(),
                        e.payload.clone().into(),
                    ]
                })
            }),
        );
        if rows.is_empty() {
            return;
        }
        // Numbered after the run's last event, in the checkpoint's order.
        let statement = format!(
            "WITH v (id, run_id, nth, kind, payload) AS (VALUES {rows})
             INSERT INTO events (id, run_id, seq, kind, payload, created_at)
             SELECT v.id, v.run_id, h.last_seq + v.nth, v.kind, v.payload, ?
             FROM v JOIN temp.checkpoint_held h ON h.id = v.run_id"
        );
        self.push(statement, values, 1, now);
    }

    fn insert_approvals(&mut self, batch: &[Checkpoint], now: DateTime<Utc>) {
        let mut values = Vec::new();
        let rows = rows(
            &mut values,
            batch.iter().flat_map(|cp| {
                cp.approvals.iter().map(move |a| {
                    let decided = a.decided.as_ref();
                    vec![
                        a.id.0.into(),
                        cp.fence.run_id.0.into(),
                        a.step_key.clone().into(),
                        a.tool.clone().into(),
                        a.args.clone().into(),
                        a.risk_note.clone().into(),
                        decided
                            .map_or(crate::status::ApprovalStatus::Pending, |d| d.status)
                            .as_str()
                            .into(),
                        a.expires_at.into(),
                        decided.map(|d| d.by.clone()).into(),
                        decided.map(|_| now).into(),
                        decided.map(|d| d.comment.clone()).into(),
                    ]
                })
            }),
        );
        if rows.is_empty() {
            return;
        }
        let statement = format!(
            "WITH v (id, run_id, step_key, tool, args, risk_note, status, expires_at, decided_by,
                     decided_at, comment) AS (VALUES {rows})
             INSERT INTO approvals (id, run_id, step_key, tool, args, risk_note, status, expires_at,
                                    decided_by, decided_at, comment, requested_at, created_at, updated_at)
             SELECT *, ?, ?, ? FROM v WHERE run_id IN (SELECT id FROM temp.checkpoint_held)"
        );
        self.push(statement, values, 3, now);
    }

    fn insert_questions(&mut self, batch: &[Checkpoint], now: DateTime<Utc>) {
        let mut values = Vec::new();
        let rows = rows(
            &mut values,
            batch.iter().flat_map(|cp| {
                cp.questions.iter().map(|q| {
                    vec![
                        q.id.0.into(),
                        cp.fence.run_id.0.into(),
                        q.step_key.clone().into(),
                        q.question.clone().into(),
                        q.expires_at.into(),
                    ]
                })
            }),
        );
        if rows.is_empty() {
            return;
        }
        let statement = format!(
            "WITH v (id, run_id, step_key, question, expires_at) AS (VALUES {rows})
             INSERT INTO questions (id, run_id, step_key, question, expires_at, status, created_at, updated_at)
             SELECT *, 'PENDING', ?, ? FROM v WHERE run_id IN (SELECT id FROM temp.checkpoint_held)"
        );
        self.push(statement, values, 2, now);
    }

    /// Last: the only statement that changes `runs`, so every fence above read the
    /// rows as they were (a lease released here still fenced the inserts).
    fn update_runs(&mut self, batch: &[Checkpoint], now: DateTime<Utc>) {
        let mut values = Vec::new();
        let rows = rows(
            &mut values,
            batch.iter().map(|cp| {
                let mut row = vec![cp.fence.run_id.0.into()];
                row.extend(RowUpdate::of(cp).values());
                row
            }),
        );
        let statement = format!(
            "WITH f (id, n_events, status, has_output, output, error, set_wake, wake_at,
                     release_lease, park, remaining_ms, finished) AS (VALUES {rows})
             UPDATE runs SET
               last_seq = last_seq + f.n_events,
               status = COALESCE(f.status, runs.status),
               output = CASE WHEN f.has_output THEN f.output ELSE runs.output END,
               error = COALESCE(f.error, runs.error),
               wake_at = CASE WHEN f.set_wake THEN f.wake_at ELSE runs.wake_at END,
               lease_owner = CASE WHEN f.release_lease THEN NULL ELSE runs.lease_owner END,
               lease_expires_at = CASE WHEN f.release_lease THEN NULL ELSE runs.lease_expires_at END,
               remaining_ms = CASE WHEN f.park THEN f.remaining_ms ELSE runs.remaining_ms END,
               deadline_at = CASE WHEN f.park THEN NULL ELSE runs.deadline_at END,
               pause_requested = CASE WHEN f.status = 'PAUSED' THEN 0 ELSE runs.pause_requested END,
               updated_at = ?,
               finished_at = CASE WHEN f.finished THEN ? ELSE runs.finished_at END
             FROM f
             WHERE runs.id = f.id AND runs.id IN (SELECT id FROM temp.checkpoint_held)
             RETURNING runs.id, runs.last_seq"
        );
        self.push(statement, values, 2, now);
    }
}

/// Appends each row's values to `values` and returns the rows as `(?, ?, …), (…)`.
fn rows(values: &mut Vec<Value>, rows: impl Iterator<Item = Vec<Value>>) -> String {
    let mut sql = String::new();
    for row in rows {
        if !sql.is_empty() {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&vec!["?"; row.len()].join(", "));
        sql.push(')');
        values.extend(row);
    }
    sql
}

/// Runs `script` for `batch` on the writer's connection; the outcomes are in the
/// order of `batch`. Either the whole batch commits or none of it does.
pub(super) async fn commit(
    own: &mut OwnConnection,
    pool: &sqlx::SqlitePool,
    batch: &[Checkpoint],
    script: Script,
    now: DateTime<Utc>,
) -> Result<Vec<Outcome>> {
    let rows = own.sqlite_transaction(pool, script.statements).await?;
    let mut committed = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let (Some(SqlValue::Blob(id)), Some(SqlValue::Integer(last_seq))) =
            (row.first(), row.get(1))
        else {
            return Err(Error::Invalid(format!("unexpected checkpoint row {row:?}")));
        };
        let id = Uuid::from_slice(id).map_err(|e| Error::Invalid(e.to_string()))?;
        committed.insert(id, *last_seq);
    }
    Ok(batch
        .iter()
        .map(|cp| match committed.get(&cp.fence.run_id.0) {
            Some(last_seq) => Outcome::Committed(numbered(cp, *last_seq, now)),
            None => Outcome::LeaseLost,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use serde_json::json;

    use crate::event::{EventKind, NewEvent};
    use crate::ids::{ApprovalId, QuestionId};
    use crate::status::RunStatus;
    use crate::store::checkpoint::{self, NewApproval, NewQuestion, Outcome, RunChange};
    use crate::store::own_connection::OwnConnection;
    use crate::store::testing::{Backend, TestDb, new_run, step_result};
    use crate::store::{Db, DbFailure, approvals, events, leases, questions, runs, steps};

    /// `n` runs, claimed by "w".
    async fn claimed(db: &Db, n: usize) -> Vec<leases::Fence> {
        for _ in 0..n {
            runs::insert(db, new_run(), Utc::now()).await.unwrap();
        }
        let ttl = Duration::from_secs(60);
        let claims = leases::claim(
            db,
            &Default::default(),
            "w",
            n,
            ttl,
            Utc::now(),
            leases::Pick::Runnable,
        )
        .await
        .unwrap();
        assert_eq!(claims.len(), n);
        claims.into_iter().map(|c| c.fence).collect()
    }

    async fn last_seq(db: &Db, fence: &leases::Fence) -> i64 {
        runs::get(db, fence.run_id).await.unwrap().unwrap().last_seq
    }

    /// One batch: a plain step result, one whose lease is gone and one that parks its
    /// run for a person. Exactly the runs whose fence holds get their rows, numbered
    /// after their last event; the other is left as it was.
    async fn writes_exactly_the_runs_whose_fence_holds(backend: Backend) {
        let Some(t) = TestDb::create(backend).await else {
            return;
        };
        let db = &t.db;
        let fences = claimed(db, 3).await;
        let (a, c) = (&fences[0], &fences[2]);
        let stale = leases::Fence {
            owner: "intruder".into(),
            ..fences[1].clone()
        };
        let before: Vec<i64> =
            futures::future::join_all(fences.iter().map(|f| last_seq(db, f))).await;

        let mut park = step_result(c, "ask");
        let wake_at = Utc::now() + chrono::Duration::minutes(5);
        park.run = Some(RunChange {
            status: RunStatus::WaitingApproval,
            output: None,
            error: None,
            wake_at: Some(wake_at),
            release: true,
            park_remaining_ms: Some(5_000),
            finished: false,
            only_if_pause_requested: false,
        });
        park.approvals.push(NewApproval {
            id: ApprovalId::new(),
            step_key: "ask".into(),
            tool: "silence".into(),
            args: json!({ "matchers": [] }),
            risk_note: None,
            expires_at: wake_at,
            decided: None,
        });
        park.questions.push(NewQuestion {
            id: QuestionId::new(),
            step_key: "ask".into(),
            question: "which?".into(),
            expires_at: wake_at,
        });
        park.events
            .push(NewEvent::new(EventKind::ApprovalRequested, json!({})));
        let batch = [step_result(a, "s1"), step_result(&stale, "s1"), park];

        let mut own = OwnConnection::default();
        let out = checkpoint::commit_on(db, &mut own, &batch, Utc::now())
            .await
            .unwrap();

        let Outcome::Committed(written) = &out[0] else {
            panic!("{out:?}")
        };
        let seqs: Vec<i64> = written.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [before[0] + 1, before[0] + 2]);
        assert_eq!(out[1], Outcome::LeaseLost);
        assert!(matches!(&out[2], Outcome::Committed(e) if e.len() == 3));

        let stored = events::list_after(db, a.run_id, before[0], 10)
            .await
            .unwrap();
        let kinds = |events: &[crate::Event]| -> Vec<_> {
            events
                .iter()
                .map(|e| (e.seq, e.kind, e.payload.clone()))
                .collect()
        };
        assert_eq!(kinds(&stored), kinds(written));
        assert_eq!(last_seq(db, a).await, before[0] + 2);
        let a_steps = steps::list(db, a.run_id).await.unwrap();
        assert_eq!(a_steps.len(), 1);
        assert_eq!(a_steps[0].output, Some(json!({ "out": "s1" })));
        let a_run = runs::get(db, a.run_id).await.unwrap().unwrap();
        assert_eq!(
            a_run.lease_owner.as_deref(),
            Some("w"),
            "a plain result keeps the lease"
        );

        assert!(steps::list(db, fences[1].run_id).await.unwrap().is_empty());
        assert_eq!(last_seq(db, &fences[1]).await, before[1]);
        let b_events = events::list_after(db, fences[1].run_id, before[1], 10)
            .await
            .unwrap();
        assert!(b_events.is_empty(), "{b_events:?}");

        let c_run = runs::get(db, c.run_id).await.unwrap().unwrap();
        assert_eq!(c_run.status, RunStatus::WaitingApproval);
        assert_eq!(c_run.lease_owner, None);
        assert_eq!(c_run.remaining_ms, Some(5_000));
        assert_eq!(c_run.deadline_at, None);
        assert_eq!(c_run.last_seq, before[2] + 3);
        assert_eq!(
            c_run.wake_at.map(|t| t.timestamp_micros()),
            Some(wake_at.timestamp_micros())
        );
        assert_eq!(
            approvals::list_for_run(db, c.run_id).await.unwrap().len(),
            1
        );
        assert_eq!(
            questions::list_for_run(db, c.run_id).await.unwrap().len(),
            1
        );
        assert_eq!(steps::list(db, c.run_id).await.unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_exactly_the_runs_whose_fence_holds_sqlite() {
        writes_exactly_the_runs_whose_fence_holds(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_exactly_the_runs_whose_fence_holds_postgres() {
        writes_exactly_the_runs_whose_fence_holds(Backend::Postgres).await;
    }

    /// A script that fails after it has written (here: its second event collides with
    /// one already stored) leaves nothing behind, is reported as refused data, and
    /// leaves no transaction open: other connections write at once (an open one would
    /// hold SQLite's write lock), and the writer's connection commits the next batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_script_failing_part_way_leaves_nothing_behind() {
        let Some(t) = TestDb::create(Backend::Sqlite).await else {
            return;
        };
        let db = &t.db;
        let fences = claimed(db, 1).await;
        let a = &fences[0];
        let before = last_seq(db, a).await;
        let squatter = NewEvent::new(EventKind::StepStarted, json!({}));
        events::insert(db, a.run_id, before + 2, &[squatter], Utc::now())
            .await
            .unwrap();

        let mut own = OwnConnection::default();
        let e = checkpoint::commit_on(db, &mut own, &[step_result(a, "s1")], Utc::now())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, crate::Error::Database(d) if d.failure() == DbFailure::Content),
            "{e:?}"
        );
        assert!(steps::list(db, a.run_id).await.unwrap().is_empty());
        assert_eq!(last_seq(db, a).await, before);

        let other_writer = claimed(db, 1);
        tokio::time::timeout(Duration::from_secs(3), other_writer)
            .await
            .expect("no write lock is left behind");
        let mut one_event = step_result(a, "s2");
        one_event.events.truncate(1);
        let out = checkpoint::commit_on(db, &mut own, &[one_event], Utc::now())
            .await
            .unwrap();
        assert!(matches!(&out[0], Outcome::Committed(e) if e[0].seq == before + 1));
        assert_eq!(steps::list(db, a.run_id).await.unwrap().len(), 1);
    }

    /// A batch with more parameters than one SQLite statement takes commits statement
    /// by statement, with the same result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_too_large_for_one_script_still_commits() {
        let Some(t) = TestDb::create(Backend::Sqlite).await else {
            return;
        };
        let db = &t.db;
        let fences = claimed(db, 1).await;
        let a = &fences[0];
        let before = last_seq(db, a).await;
        let mut cp = step_result(a, "s1");
        cp.events = (0..7_000)
            .map(|i| NewEvent::new(EventKind::StepSucceeded, json!({ "i": i })))
            .collect();
        assert!(super::Script::build(std::slice::from_ref(&cp), Utc::now()).is_none());

        let out = checkpoint::commit(db, &[cp], Utc::now()).await.unwrap();
        assert!(matches!(&out[0], Outcome::Committed(e) if e.len() == 7_000));
        let stored = events::list_after(db, a.run_id, before, 10_000)
            .await
            .unwrap();
        assert_eq!(stored.len(), 7_000);
        assert_eq!(stored[6_999].seq, before + 7_000);
        assert_eq!(stored[6_999].payload, json!({ "i": 6_999 }));
        assert_eq!(steps::list(db, a.run_id).await.unwrap().len(), 1);
    }
}

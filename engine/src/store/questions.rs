//! The `questions` table: what `ask_human` asked and what the operator answered.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Value};

use super::entity::question;
use super::keyset::{self, Direction};
use super::stmt;
use crate::Result;
use crate::ids::{QuestionId, RunId};
pub use crate::model::Question;
use crate::page::{KeyOf, Page, PageRequest};
use crate::status::QuestionStatus;

fn from_model(m: question::Model) -> Result<Question> {
    Ok(Question {
        id: QuestionId(m.id),
        run_id: RunId(m.run_id),
        step_key: m.step_key,
        question: m.question,
        status: m.status.parse()?,
        answer: m.answer,
        answered_by: m.answered_by,
        answered_at: m.answered_at,
        expires_at: m.expires_at,
        created_at: m.created_at,
    })
}

pub async fn get(db: &impl ConnectionTrait, id: QuestionId) -> Result<Option<Question>> {
    question::Entity::find_by_id(id.0)
        .one(db)
        .await?
        .map(from_model)
        .transpose()
}

pub async fn list_for_run(db: &impl ConnectionTrait, run_id: RunId) -> Result<Vec<Question>> {
    question::Entity::find()
        .filter(question::Column::RunId.eq(run_id.0))
        .order_by_asc(question::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// A page of the pending questions, oldest first (index `ix_questions_status_created_id`).
pub async fn list_pending(
    db: &impl ConnectionTrait,
    request: &PageRequest<KeyOf<Question>>,
) -> Result<Page<Question>> {
    let pending = question::Entity::find()
        .filter(question::Column::Status.eq(QuestionStatus::Pending.as_str()));
    keyset::page(
        db,
        pending,
        &[question::Column::CreatedAt, question::Column::Id],
        Direction::Ascending,
        request,
    )
    .await?
    .try_map(from_model)
}

/// Answers (or expires, with `answer = None`) a pending question; guarded so only
/// one outcome wins. Returns whether this call decided it.
pub async fn close(
    db: &impl ConnectionTrait,
    id: QuestionId,
    answer: Option<&str>,
    by: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let (status, guard) = match answer {
        Some(_) => (QuestionStatus::Answered, " AND expires_at > $3"),
        None => (QuestionStatus::Expired, ""),
    };
    let sql = format!(
        "UPDATE questions SET status = $1, answered_by = $2, answered_at = $3, answer = $4, updated_at = $3 \
         WHERE id = $5 AND status = 'PENDING'{guard}"
    );
    let values: Vec<Value> = vec![
        status.as_str().into(),
        by.map(str::to_owned).into(),
        now.into(),
        answer.map(str::to_owned).into(),
        id.0.into(),
    ];
    Ok(db
        .execute_raw(stmt(db, &sql, values))
        .await?
        .rows_affected()
        == 1)
}

/// Closes every pending question of a run that ended; returns `(id, step_key)` of
/// each, oldest first, so the caller can log them.
pub async fn expire_pending_of_run(
    db: &impl ConnectionTrait,
    run_id: RunId,
    now: DateTime<Utc>,
) -> Result<Vec<(QuestionId, String)>> {
    let rows = db
        .query_all_raw(stmt(
            db,
            "UPDATE questions SET status = 'EXPIRED', answered_at = $1, updated_at = $1 \
             WHERE run_id = $2 AND status = 'PENDING' RETURNING id, step_key, created_at",
            vec![now.into(), run_id.0.into()],
        ))
        .await?;
    let mut closed = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get_by_index::<DateTime<Utc>>(2)?,
                QuestionId(r.try_get_by_index(0)?),
                r.try_get_by_index::<String>(1)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    closed.sort();
    Ok(closed.into_iter().map(|(_, id, key)| (id, key)).collect())
}

/// Whether any of `ids` is no longer pending (answered or expired).
pub async fn any_decided(db: &impl ConnectionTrait, ids: &[QuestionId]) -> Result<bool> {
    if ids.is_empty() {
        return Ok(false);
    }
    let sql = format!(
        "SELECT 1 FROM questions WHERE status <> 'PENDING' AND id IN ({}) LIMIT 1",
        super::placeholders(1, ids.len())
    );
    let values: Vec<Value> = ids.iter().map(|id| Value::from(id.0)).collect();
    Ok(db.query_one_raw(stmt(db, &sql, values)).await?.is_some())
}

//! The `approvals` table: pending decisions on risky tool calls (§4).

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Value,
};

use super::entity::approval;
use super::keyset::{self, Direction};
use super::stmt;
use crate::Result;
use crate::ids::{ApprovalId, RunId};
pub use crate::model::Approval;
use crate::page::{KeyOf, Page, PageRequest};
use crate::status::ApprovalStatus;

fn from_model(m: approval::Model) -> Result<Approval> {
    Ok(Approval {
        id: ApprovalId(m.id),
        run_id: RunId(m.run_id),
        step_key: m.step_key,
        tool: m.tool,
        args: m.args,
        risk_note: m.risk_note,
        status: m.status.parse()?,
        requested_at: m.requested_at,
        expires_at: m.expires_at,
        decided_by: m.decided_by,
        decided_at: m.decided_at,
        comment: m.comment,
    })
}

pub async fn get(db: &impl ConnectionTrait, id: ApprovalId) -> Result<Option<Approval>> {
    approval::Entity::find_by_id(id.0)
        .one(db)
        .await?
        .map(from_model)
        .transpose()
}

pub async fn list_for_run(db: &impl ConnectionTrait, run_id: RunId) -> Result<Vec<Approval>> {
    approval::Entity::find()
        .filter(approval::Column::RunId.eq(run_id.0))
        .order_by_asc(approval::Column::RequestedAt)
        .all(db)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// A page of the pending approvals, oldest first (index `ix_approvals_status_requested_id`).
pub async fn list_pending(
    db: &impl ConnectionTrait,
    request: &PageRequest<KeyOf<Approval>>,
) -> Result<Page<Approval>> {
    let pending = approval::Entity::find()
        .filter(approval::Column::Status.eq(ApprovalStatus::Pending.as_str()));
    keyset::page(
        db,
        pending,
        &[approval::Column::RequestedAt, approval::Column::Id],
        Direction::Ascending,
        request,
    )
    .await?
    .try_map(from_model)
}

/// Records a decision on a pending approval. Only one decision can ever win: the
/// update is guarded by `status = 'PENDING'`, and approving also requires the
/// approval not to have expired. Returns whether this call decided it.
pub async fn decide(
    db: &impl ConnectionTrait,
    id: ApprovalId,
    status: ApprovalStatus,
    by: Option<&str>,
    comment: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut sql = String::from(
        "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, comment = $4, updated_at = $3 \
         WHERE id = $5 AND status = 'PENDING'",
    );
    if status != ApprovalStatus::Expired {
        sql.push_str(" AND expires_at > $3");
    }
    let values: Vec<Value> = vec![
        status.as_str().into(),
        by.map(str::to_owned).into(),
        now.into(),
        comment.map(str::to_owned).into(),
        id.0.into(),
    ];
    Ok(db
        .execute_raw(stmt(db, &sql, values))
        .await?
        .rows_affected()
        == 1)
}

/// Closes every pending approval of a run that ended, so none dangles in the inbox;
/// returns `(id, step_key)` of each, oldest first, so the caller can log them.
pub async fn expire_pending_of_run(
    db: &impl ConnectionTrait,
    run_id: RunId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<(ApprovalId, String)>> {
    let rows = db
        .query_all_raw(stmt(
            db,
            "UPDATE approvals SET status = 'EXPIRED', decided_at = $1, comment = $2, updated_at = $1 \
             WHERE run_id = $3 AND status = 'PENDING' RETURNING id, step_key, requested_at",
            vec![now.into(), reason.into(), run_id.0.into()],
        ))
        .await?;
    let mut closed = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get_by_index::<DateTime<Utc>>(2)?,
                ApprovalId(r.try_get_by_index(0)?),
                r.try_get_by_index::<String>(1)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    closed.sort();
    Ok(closed.into_iter().map(|(_, id, key)| (id, key)).collect())
}

/// Whether any of `ids` is no longer pending (decided or expired).
pub async fn any_decided(db: &impl ConnectionTrait, ids: &[ApprovalId]) -> Result<bool> {
    if ids.is_empty() {
        return Ok(false);
    }
    let sql = format!(
        "SELECT 1 FROM approvals WHERE status <> 'PENDING' AND id IN ({}) LIMIT 1",
        super::placeholders(1, ids.len())
    );
    let values: Vec<Value> = ids.iter().map(|id| Value::from(id.0)).collect();
    Ok(db.query_one_raw(stmt(db, &sql, values)).await?.is_some())
}

/// Pending approvals requested at or after `since`, oldest first, at most `limit`.
pub async fn pending_requested_since(
    db: &impl ConnectionTrait,
    since: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Approval>> {
    approval::Entity::find()
        .filter(approval::Column::Status.eq(ApprovalStatus::Pending.as_str()))
        .filter(approval::Column::RequestedAt.gte(since))
        .order_by_asc(approval::Column::RequestedAt)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// How many approvals wait for a decision, across all runs (for metrics).
pub async fn count_pending(db: &impl ConnectionTrait) -> Result<i64> {
    use sea_orm::PaginatorTrait;
    let n = approval::Entity::find()
        .filter(approval::Column::Status.eq(ApprovalStatus::Pending.as_str()))
        .count(db)
        .await?;
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
}

//! The `alert_instances` table: which run each alert of an Alertmanager group was
//! started for (or recorded on), one row per (team, group, fingerprint, startsAt) —
//! the unique key that makes a repeated notification start nothing. Rows go with
//! their run (foreign key, cascade).
//!
//! Decisions about one group are serialised by [`lock_group`]: a transaction
//! advisory lock on Postgres; on SQLite every write transaction holds the database.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::entity::alert_instance as instance;
use super::{is_postgres, stmt};
use crate::ids::{NotificationId, RunId, TeamId};
use crate::model::RunAlert;
use crate::status::RunStatus;
use crate::{Error, Result};

/// The advisory lock class of group decisions (two-key form: its keys never meet
/// the one-key locks of anything else).
const GROUP_LOCK_CLASS: i32 = 0x414d_4750; // "AMGP"

/// How a group key is indexed: its SHA-256, hex.
pub(crate) fn group_hash(group_key: &str) -> String {
    Sha256::digest(group_key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Serialises the decisions about one group until the transaction ends.
pub(crate) async fn lock_group(db: &impl ConnectionTrait, group_hash: &str) -> Result<()> {
    if !is_postgres(db) {
        return Ok(());
    }
    // The first 32 bits of the hash, as Postgres's int4 key.
    let key = group_hash
        .get(..8)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| Error::Corrupt(format!("group hash {group_hash:?}")))? as i32;
    db.execute_raw(stmt(
        db,
        "SELECT pg_advisory_xact_lock($1, $2)",
        vec![GROUP_LOCK_CLASS.into(), key.into()],
    ))
    .await?;
    Ok(())
}

/// An alert instance as a decision needs it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Known {
    pub id: Uuid,
    pub fingerprint: String,
    pub starts_at: DateTime<Utc>,
    pub run_id: RunId,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// The instances of `team`'s group among `fingerprints` (any `startsAt`).
pub(crate) async fn known(
    db: &impl ConnectionTrait,
    team: TeamId,
    group_hash: &str,
    fingerprints: &[&str],
) -> Result<Vec<Known>> {
    if fingerprints.is_empty() {
        return Ok(Vec::new());
    }
    Ok(instance::Entity::find()
        .filter(instance::Column::TeamId.eq(team.0))
        .filter(instance::Column::GroupHash.eq(group_hash))
        .filter(instance::Column::Fingerprint.is_in(fingerprints.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|m| Known {
            id: m.id,
            fingerprint: m.fingerprint,
            starts_at: m.starts_at,
            run_id: RunId(m.run_id),
            resolved_at: m.resolved_at,
        })
        .collect())
}

/// The newest run of `team`'s group that has not ended, if any.
pub(crate) async fn active_run(
    db: &impl ConnectionTrait,
    team: TeamId,
    group_hash: &str,
) -> Result<Option<RunId>> {
    let ended: Vec<String> = RunStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    let sql = format!(
        "SELECT r.id FROM runs r WHERE r.id IN (\
           SELECT ai.run_id FROM alert_instances ai WHERE ai.team_id = $1 AND ai.group_hash = $2) \
         AND r.status NOT IN ({}) ORDER BY r.created_at DESC LIMIT 1",
        ended.join(", ")
    );
    let row = db
        .query_one_raw(stmt(db, &sql, vec![team.0.into(), group_hash.into()]))
        .await?;
    Ok(row
        .map(|r| r.try_get_by_index::<Uuid>(0))
        .transpose()?
        .map(RunId))
}

/// A new instance.
#[derive(Clone, Debug)]
pub(crate) struct NewInstance {
    pub fingerprint: String,
    pub starts_at: DateTime<Utc>,
    pub labels: BTreeMap<String, String>,
}

/// Records `alerts` of `team`'s group as `run`'s (`joined`: the run was already
/// active). The caller holds the group's lock and knows none of them exists.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert(
    db: &impl ConnectionTrait,
    team: TeamId,
    group_hash: &str,
    run: RunId,
    notification: NotificationId,
    joined: bool,
    alerts: &[NewInstance],
    now: DateTime<Utc>,
) -> Result<()> {
    if alerts.is_empty() {
        return Ok(());
    }
    let rows = alerts
        .iter()
        .map(|a| {
            Ok(instance::ActiveModel {
                id: Set(Uuid::now_v7()),
                team_id: Set(team.0),
                group_hash: Set(group_hash.to_owned()),
                fingerprint: Set(a.fingerprint.clone()),
                starts_at: Set(a.starts_at),
                run_id: Set(run.0),
                notification_id: Set(notification.0),
                labels: Set(serde_json::to_value(&a.labels)
                    .map_err(|e| Error::Invalid(format!("labels: {e}")))?),
                joined: Set(joined),
                resolved_at: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Bounded by the intake (at most 1000 alerts of 9 columns each per statement).
    for chunk in rows.chunks(500) {
        instance::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Marks instances resolved at the times given.
pub(crate) async fn resolve(
    db: &impl ConnectionTrait,
    resolved: &[(Uuid, DateTime<Utc>)],
    now: DateTime<Utc>,
) -> Result<()> {
    for (id, at) in resolved {
        instance::Entity::update_many()
            .col_expr(instance::Column::ResolvedAt, Some(*at).into())
            .col_expr(instance::Column::UpdatedAt, now.into())
            .filter(instance::Column::Id.eq(*id))
            .filter(instance::Column::ResolvedAt.is_null())
            .exec(db)
            .await?;
    }
    Ok(())
}

/// The alerts of the group `run` investigates (for the team that runs it): every
/// instance of that group, `joined` only for those recorded on `run` after it
/// started. Empty for a run the intake did not start.
pub(crate) async fn of_run(db: &impl ConnectionTrait, run: RunId) -> Result<Vec<RunAlert>> {
    let Some(mine) = instance::Entity::find()
        .filter(instance::Column::RunId.eq(run.0))
        .one(db)
        .await?
    else {
        return Ok(Vec::new());
    };
    instance::Entity::find()
        .filter(instance::Column::TeamId.eq(mine.team_id))
        .filter(instance::Column::GroupHash.eq(mine.group_hash))
        .order_by_asc(instance::Column::CreatedAt)
        .order_by_asc(instance::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|m| {
            Ok(RunAlert {
                labels: serde_json::from_value(m.labels)
                    .map_err(|e| Error::Corrupt(format!("alert instance {} labels: {e}", m.id)))?,
                fingerprint: m.fingerprint,
                starts_at: m.starts_at,
                joined: m.joined && m.run_id == run.0,
                resolved_at: m.resolved_at,
            })
        })
        .collect()
}

//! The `schedules` and `schedule_fires` tables: schedules' CRUD, the claim of due
//! schedules (`FOR UPDATE SKIP LOCKED` on Postgres; SQLite's write transaction holds
//! the whole database), and fire rows under their unique `(schedule_id, fire_time)`.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, SqlErr,
};
use uuid::Uuid;

use super::entity::{schedule, schedule_fire};
use super::keyset::{self, Direction};
use super::{is_postgres, stmt};
use crate::ids::{RunId, ScheduleFireId, ScheduleId};
pub use crate::model::{DueFire, FireOutcome, Schedule, ScheduleFire};
use crate::page::{KeyOf, Page, PageRequest};
use crate::status::{RunStatus, Trigger};
use crate::{Error, Result};

impl TryFrom<schedule::Model> for Schedule {
    type Error = Error;
    fn try_from(m: schedule::Model) -> Result<Self> {
        Ok(Schedule {
            id: ScheduleId(m.id),
            name: m.name,
            team: m.team,
            input: m.input,
            cron: m.cron,
            timezone: m.timezone,
            overlap: m.overlap_policy.parse()?,
            catch_up: m.catch_up_policy.parse()?,
            enabled: m.enabled,
            next_fire_at: m.next_fire_at,
            last_fire_at: m.last_fire_at,
            created_by: m.created_by,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

impl TryFrom<schedule_fire::Model> for ScheduleFire {
    type Error = Error;
    fn try_from(m: schedule_fire::Model) -> Result<Self> {
        Ok(ScheduleFire {
            id: ScheduleFireId(m.id),
            schedule_id: ScheduleId(m.schedule_id),
            fire_time: m.fire_time,
            outcome: m.outcome.parse()?,
            missed_count: m.missed_count,
            run_id: m.run_id.map(RunId),
            error: m.error,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

fn active_model(s: &Schedule) -> schedule::ActiveModel {
    schedule::ActiveModel {
        id: Set(s.id.0),
        name: Set(s.name.clone()),
        team: Set(s.team.clone()),
        input: Set(s.input.clone()),
        cron: Set(s.cron.clone()),
        timezone: Set(s.timezone.clone()),
        overlap_policy: Set(s.overlap.as_str().to_owned()),
        catch_up_policy: Set(s.catch_up.as_str().to_owned()),
        enabled: Set(s.enabled),
        next_fire_at: Set(s.next_fire_at),
        last_fire_at: Set(s.last_fire_at),
        created_by: Set(s.created_by.clone()),
        created_at: Set(s.created_at),
        updated_at: Set(s.updated_at),
    }
}

fn name_taken(e: &sea_orm::DbErr, name: &str) -> Option<Error> {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
        .then(|| Error::Conflict(format!("a schedule named \"{name}\" already exists")))
}

/// Inserts a schedule; a taken name is [`Error::Conflict`].
pub(crate) async fn insert(db: &impl ConnectionTrait, s: &Schedule) -> Result<()> {
    match schedule::Entity::insert(active_model(s))
        .exec_without_returning(db)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(name_taken(&e, &s.name).unwrap_or_else(|| e.into())),
    }
}

/// Writes every column of `s` over its row; whether the row existed.
pub(crate) async fn update(db: &impl ConnectionTrait, s: &Schedule) -> Result<bool> {
    match schedule::Entity::update_many()
        .set(active_model(s))
        .filter(schedule::Column::Id.eq(s.id.0))
        .exec(db)
        .await
    {
        Ok(r) => Ok(r.rows_affected > 0),
        Err(e) => Err(name_taken(&e, &s.name).unwrap_or_else(|| e.into())),
    }
}

pub(crate) async fn get(db: &impl ConnectionTrait, id: ScheduleId) -> Result<Option<Schedule>> {
    schedule::Entity::find_by_id(id.0)
        .one(db)
        .await?
        .map(Schedule::try_from)
        .transpose()
}

pub(crate) async fn get_by_name(db: &impl ConnectionTrait, name: &str) -> Result<Option<Schedule>> {
    schedule::Entity::find()
        .filter(schedule::Column::Name.eq(name))
        .one(db)
        .await?
        .map(Schedule::try_from)
        .transpose()
}

/// Locks a schedule's row for the rest of the transaction (Postgres; SQLite's write
/// transaction holds the database) and returns it.
pub(crate) async fn lock(db: &impl ConnectionTrait, id: ScheduleId) -> Result<Option<Schedule>> {
    if is_postgres(db) {
        db.query_one_raw(stmt(
            db,
            "SELECT id FROM schedules WHERE id = $1 FOR UPDATE",
            vec![id.0.into()],
        ))
        .await?;
    }
    get(db, id).await
}

/// A page of schedules by name.
pub(crate) async fn list(
    db: &impl ConnectionTrait,
    request: &PageRequest<KeyOf<Schedule>>,
) -> Result<Page<Schedule>> {
    keyset::page(
        db,
        schedule::Entity::find(),
        &[schedule::Column::Name],
        Direction::Ascending,
        request,
    )
    .await?
    .try_map(Schedule::try_from)
}

/// Deletes a schedule and its fires (the foreign key cascades); whether it existed.
pub(crate) async fn delete(db: &impl ConnectionTrait, id: ScheduleId) -> Result<bool> {
    schedule_fire::Entity::delete_many()
        .filter(schedule_fire::Column::ScheduleId.eq(id.0))
        .exec(db)
        .await?;
    let res = schedule::Entity::delete_by_id(id.0).exec(db).await?;
    Ok(res.rows_affected > 0)
}

/// Locks up to `limit` enabled schedules due at `now` (oldest fire time first) for
/// the rest of the transaction. Postgres skips rows another replica's tick holds, so
/// concurrent ticks share the work and never wait for each other.
pub(crate) async fn lock_due(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Schedule>> {
    let sql = if is_postgres(db) {
        "SELECT id FROM schedules WHERE enabled AND next_fire_at <= $1 \
         ORDER BY next_fire_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT id FROM schedules WHERE enabled AND next_fire_at <= $1 \
         ORDER BY next_fire_at LIMIT $2"
    };
    let rows = db
        .query_all_raw(stmt(db, sql, vec![now.into(), (limit as i64).into()]))
        .await?;
    let ids = rows
        .iter()
        .map(|r| r.try_get_by_index::<Uuid>(0))
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    schedule::Entity::find()
        .filter(schedule::Column::Id.is_in(ids))
        .order_by_asc(schedule::Column::NextFireAt)
        .all(db)
        .await?
        .into_iter()
        .map(Schedule::try_from)
        .collect()
}

/// Sets a claimed schedule's next fire time (and, when it fired, its last one).
pub(crate) async fn advance(
    db: &impl ConnectionTrait,
    id: ScheduleId,
    next_fire_at: Option<DateTime<Utc>>,
    last_fire_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<()> {
    db.execute_raw(stmt(
        db,
        "UPDATE schedules SET next_fire_at = $2, last_fire_at = COALESCE($3, last_fire_at), \
         updated_at = $4 WHERE id = $1",
        vec![
            id.0.into(),
            next_fire_at.into(),
            last_fire_at.into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Whether a run of the schedule is still active: a run it started that has not
/// ended, or a fire claimed whose run is not started yet.
pub(crate) async fn has_active_run(db: &impl ConnectionTrait, id: ScheduleId) -> Result<bool> {
    let active: Vec<String> = RunStatus::ALL
        .iter()
        .filter(|s| !s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    let sql = format!(
        "SELECT id FROM runs WHERE trigger = $1 AND trigger_id = $2 AND status IN ({}) LIMIT 1",
        active.join(", ")
    );
    let run = db
        .query_one_raw(stmt(
            db,
            &sql,
            vec![Trigger::Schedule.as_str().into(), id.to_string().into()],
        ))
        .await?;
    if run.is_some() {
        return Ok(true);
    }
    let pending = db
        .query_one_raw(stmt(
            db,
            "SELECT id FROM schedule_fires WHERE schedule_id = $1 AND outcome = $2 LIMIT 1",
            vec![id.0.into(), FireOutcome::Pending.as_str().into()],
        ))
        .await?;
    Ok(pending.is_some())
}

/// A fire row to insert.
#[derive(Clone, Debug)]
pub(crate) struct NewFire {
    pub schedule_id: ScheduleId,
    pub fire_time: DateTime<Utc>,
    pub outcome: FireOutcome,
    pub missed_count: i64,
    pub error: Option<String>,
    /// For PENDING fires: when another tick may start the run if this one did not.
    pub retry_at: Option<DateTime<Utc>>,
}

/// Inserts a fire row unless the schedule already has one for that fire time
/// (the unique key decides); the new row's id when it was inserted.
pub(crate) async fn insert_fire(
    db: &impl ConnectionTrait,
    fire: &NewFire,
    now: DateTime<Utc>,
) -> Result<Option<ScheduleFireId>> {
    let id = ScheduleFireId::new();
    let res = db
        .execute_raw(stmt(
            db,
            "INSERT INTO schedule_fires (id, schedule_id, fire_time, outcome, missed_count, run_id, \
                 error, retry_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $8, $8) \
             ON CONFLICT (schedule_id, fire_time) DO NOTHING",
            vec![
                id.0.into(),
                fire.schedule_id.0.into(),
                fire.fire_time.into(),
                fire.outcome.as_str().into(),
                fire.missed_count.into(),
                fire.error.clone().into(),
                fire.retry_at.into(),
                now.into(),
            ],
        ))
        .await?;
    Ok((res.rows_affected() == 1).then_some(id))
}

/// Takes up to `limit` PENDING fires whose start is overdue (`retry_at <= now`),
/// pushing their `retry_at` to `retry_at` so that other ticks leave them alone
/// meanwhile, and returns them with what their runs need.
pub(crate) async fn claim_unstarted(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    retry_at: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<DueFire>> {
    let sql = if is_postgres(db) {
        "WITH c AS (SELECT id FROM schedule_fires WHERE retry_at <= $1 AND outcome = $4 \
                    ORDER BY retry_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
         UPDATE schedule_fires f SET retry_at = $2, updated_at = $1 FROM c WHERE f.id = c.id \
         RETURNING f.id, f.schedule_id, f.fire_time"
    } else {
        "UPDATE schedule_fires SET retry_at = $2, updated_at = $1 WHERE id IN \
             (SELECT id FROM schedule_fires WHERE retry_at <= $1 AND outcome = $4 \
              ORDER BY retry_at LIMIT $3) \
         RETURNING id, schedule_id, fire_time"
    };
    let rows = db
        .query_all_raw(stmt(
            db,
            sql,
            vec![
                now.into(),
                retry_at.into(),
                (limit as i64).into(),
                FireOutcome::Pending.as_str().into(),
            ],
        ))
        .await?;
    let mut fires = Vec::with_capacity(rows.len());
    for r in &rows {
        fires.push((
            r.try_get_by_index::<Uuid>(0)?,
            r.try_get_by_index::<Uuid>(1)?,
            r.try_get_by_index::<DateTime<Utc>>(2)?,
        ));
    }
    if fires.is_empty() {
        return Ok(Vec::new());
    }
    let schedules: std::collections::HashMap<Uuid, schedule::Model> = schedule::Entity::find()
        .filter(schedule::Column::Id.is_in(fires.iter().map(|f| f.1)))
        .all(db)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    Ok(fires
        .into_iter()
        .filter_map(|(id, schedule_id, fire_time)| {
            let s = schedules.get(&schedule_id)?;
            Some(DueFire {
                fire_id: ScheduleFireId(id),
                schedule_id: ScheduleId(schedule_id),
                schedule: s.name.clone(),
                team: s.team.clone(),
                input: s.input.clone(),
                fire_time,
            })
        })
        .collect())
}

/// Ends a PENDING fire: STARTED with its run, or FAILED with the reason; whether it
/// was still pending (another tick may have ended it first, with the same run).
pub(crate) async fn finish_fire(
    db: &impl ConnectionTrait,
    id: ScheduleFireId,
    outcome: FireOutcome,
    run: Option<RunId>,
    error: Option<String>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let res = db
        .execute_raw(stmt(
            db,
            "UPDATE schedule_fires SET outcome = $2, run_id = $3, error = $4, retry_at = NULL, \
                 updated_at = $5 \
             WHERE id = $1 AND outcome = $6",
            vec![
                id.0.into(),
                outcome.as_str().into(),
                run.map(|r| r.0).into(),
                error.into(),
                now.into(),
                FireOutcome::Pending.as_str().into(),
            ],
        ))
        .await?;
    Ok(res.rows_affected() == 1)
}

/// A page of a schedule's fires, newest fire time first.
pub(crate) async fn fires(
    db: &impl ConnectionTrait,
    id: ScheduleId,
    request: &PageRequest<KeyOf<ScheduleFire>>,
) -> Result<Page<ScheduleFire>> {
    keyset::page(
        db,
        schedule_fire::Entity::find().filter(schedule_fire::Column::ScheduleId.eq(id.0)),
        &[schedule_fire::Column::FireTime],
        Direction::Descending,
        request,
    )
    .await?
    .try_map(ScheduleFire::try_from)
}

/// Deletes fires recorded before `before`; how many.
pub(crate) async fn prune_fires(db: &impl ConnectionTrait, before: DateTime<Utc>) -> Result<u64> {
    let res = schedule_fire::Entity::delete_many()
        .filter(schedule_fire::Column::CreatedAt.lt(before))
        .filter(schedule_fire::Column::Outcome.ne(FireOutcome::Pending.as_str()))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

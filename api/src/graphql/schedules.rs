//! Cron schedules over GraphQL: viewers read them (with their next fire times in
//! their zone, fires and runs), admins create, change and delete them, operators
//! trigger one now.

use aiops_engine::auth::{Caller, Role as EngineRole};
use aiops_engine::model::{
    Run as RunRecord, RunFilter, Schedule as ScheduleRecord, ScheduleFire as FireRecord,
};
use aiops_engine::{Engine, NewSchedule, ScheduleId, ScheduleUpdate};
use async_graphql::{ComplexObject, Context, InputObject, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::auth::{RoleGuard, principal};
use super::connection::{self, CountedConnection, UncountedConnection};
use super::error::ToGql;
use super::types::{Run, mirror_enum};

mirror_enum!(
    /// What a tick does while a run of the schedule is still active: SKIP the fire
    /// time (recorded as skipped) or ALLOW another run.
    OverlapPolicy from aiops_engine::model::OverlapPolicy { Skip, Allow }
);
mirror_enum!(
    /// What happens to fire times that passed while no server ticked (downtime):
    /// SKIP them all (recorded as missed), or RUN_ONCE for the latest of them.
    CatchUpPolicy from aiops_engine::model::CatchUpPolicy { Skip, RunOnce }
);
mirror_enum!(
    /// What became of a fire time: PENDING (its run is being started), STARTED,
    /// SKIPPED_OVERLAP, MISSED (downtime; one record may stand for many), FAILED.
    FireOutcome from aiops_engine::model::FireOutcome { Pending, Started, SkippedOverlap, Missed, Failed }
);

/// Most fire times `nextFireTimes` computes.
const MAX_NEXT_FIRE_TIMES: i32 = 100;

/// A cron schedule that starts runs of a team (§8).
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Schedule {
    pub id: Uuid,
    pub name: String,
    /// The team whose runs it starts, at the team's latest version.
    pub team: String,
    /// What each run gets: `{task, alerts}`.
    pub input: Json<serde_json::Value>,
    /// 5 fields: minute hour day-of-month month day-of-week.
    pub cron: String,
    /// The IANA time zone the expression is read in.
    pub timezone: String,
    pub overlap_policy: OverlapPolicy,
    pub catch_up_policy: CatchUpPolicy,
    pub enabled: bool,
    /// The next fire time (UTC); null while disabled.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// The latest fire time that started a run.
    pub last_fire_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[graphql(skip)]
    pub record: ScheduleRecord,
}

impl From<ScheduleRecord> for Schedule {
    fn from(s: ScheduleRecord) -> Self {
        Schedule {
            id: s.id.0,
            name: s.name.clone(),
            team: s.team.clone(),
            input: Json(s.input.clone()),
            cron: s.cron.clone(),
            timezone: s.timezone.clone(),
            overlap_policy: s.overlap.into(),
            catch_up_policy: s.catch_up.into(),
            enabled: s.enabled,
            next_fire_at: s.next_fire_at,
            last_fire_at: s.last_fire_at,
            created_by: s.created_by.clone(),
            created_at: s.created_at,
            updated_at: s.updated_at,
            record: s,
        }
    }
}

/// A fire time: the instant, and the wall-clock time in the schedule's zone.
#[derive(SimpleObject)]
pub struct FireTime {
    pub at: DateTime<Utc>,
    /// RFC 3339 with the zone's offset at that instant, e.g. `2027-03-14T03:00:00-04:00`.
    pub local: String,
}

/// One fire time a tick handled.
#[derive(SimpleObject)]
pub struct ScheduleFire {
    pub id: Uuid,
    /// The nominal fire time; for MISSED, the first of those the record stands for.
    pub fire_time: DateTime<Utc>,
    pub outcome: FireOutcome,
    /// How many fire times a MISSED record stands for; 1 otherwise.
    pub missed_count: i64,
    pub run_id: Option<Uuid>,
    /// Why a FAILED fire did not start.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<FireRecord> for ScheduleFire {
    fn from(f: FireRecord) -> Self {
        ScheduleFire {
            id: f.id.0,
            fire_time: f.fire_time,
            outcome: f.outcome.into(),
            missed_count: f.missed_count,
            run_id: f.run_id.map(|r| r.0),
            error: f.error,
            created_at: f.created_at,
        }
    }
}

#[ComplexObject]
impl Schedule {
    /// The next `n` fire times (at most 100) from now, computed in the schedule's
    /// zone (daylight saving included).
    async fn next_fire_times(
        &self,
        #[graphql(default = 5, validator(minimum = 1, maximum = 100))] n: i32,
    ) -> Result<Vec<FireTime>> {
        let n = n.clamp(1, MAX_NEXT_FIRE_TIMES) as usize;
        let times = aiops_engine::next_fire_times(&self.record, Utc::now(), n).gql()?;
        Ok(times
            .into_iter()
            .map(|t| FireTime {
                at: t.with_timezone(&Utc),
                local: t.to_rfc3339(),
            })
            .collect())
    }

    /// The fire times its ticks handled, newest first.
    #[graphql(complexity = "connection::complexity(first, child_complexity)")]
    async fn fires(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
    ) -> Result<UncountedConnection<ScheduleFire>> {
        let request = connection::request::<FireRecord>(ctx, first, after.as_deref())?;
        let page = ctx
            .data::<Engine>()?
            .schedule_fires(self.record.id, &request)
            .await
            .gql()?;
        Ok(connection::uncounted(page))
    }

    /// The latest fire time its ticks handled.
    async fn last_fire(&self, ctx: &Context<'_>) -> Result<Option<ScheduleFire>> {
        let page = ctx
            .data::<Engine>()?
            .schedule_fires(self.record.id, &aiops_engine::PageRequest::first(1))
            .await
            .gql()?;
        Ok(page.items.into_iter().next().map(ScheduleFire::from))
    }

    /// The runs it started (on its ticks and when triggered), newest first.
    #[graphql(complexity = "connection::complexity(first, child_complexity)")]
    async fn runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
    ) -> Result<UncountedConnection<Run>> {
        let request = connection::request::<RunRecord>(ctx, first, after.as_deref())?;
        let filter = RunFilter {
            trigger: Some(aiops_engine::Trigger::Schedule),
            trigger_id: Some(self.record.id.to_string()),
            ..RunFilter::default()
        };
        let page = ctx
            .data::<Engine>()?
            .list_runs(&filter, &request)
            .await
            .gql()?;
        Ok(connection::uncounted(page))
    }
}

#[derive(InputObject)]
pub struct CreateScheduleInput {
    /// Unique: letters, digits, '-', '_' or '.'.
    pub name: String,
    pub team: String,
    /// 5 fields (minute hour day-of-month month day-of-week), e.g. `0 9 * * 1-5`.
    pub cron: String,
    /// IANA time zone, e.g. `Europe/Berlin` (default `UTC`).
    pub timezone: Option<String>,
    /// A free-text task each run gets.
    pub task: Option<String>,
    /// Alerts each run investigates (Alertmanager webhook shape or a list); default:
    /// the alert source's firing alerts at the time.
    pub alerts: Option<Json<serde_json::Value>>,
    #[graphql(default_with = "OverlapPolicy::Skip")]
    pub overlap_policy: OverlapPolicy,
    #[graphql(default_with = "CatchUpPolicy::Skip")]
    pub catch_up_policy: CatchUpPolicy,
    #[graphql(default = true)]
    pub enabled: bool,
}

/// Changes to a schedule; omitted fields keep their value.
#[derive(InputObject)]
pub struct UpdateScheduleInput {
    pub name: Option<String>,
    pub team: Option<String>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub task: Option<String>,
    pub alerts: Option<Json<serde_json::Value>>,
    pub overlap_policy: Option<OverlapPolicy>,
    pub catch_up_policy: Option<CatchUpPolicy>,
    pub enabled: Option<bool>,
}

/// `{task, alerts}` over `base`.
fn run_input(
    base: serde_json::Value,
    task: Option<String>,
    alerts: Option<Json<serde_json::Value>>,
) -> serde_json::Value {
    let mut input = match base {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    if let Some(task) = task {
        input.insert("task".into(), task.into());
    }
    if let Some(alerts) = alerts {
        input.insert("alerts".into(), alerts.0);
    }
    serde_json::Value::Object(input)
}

#[derive(Default)]
pub struct SchedulesQuery;

#[Object]
impl SchedulesQuery {
    /// Every schedule, by name.
    #[graphql(
        guard = "RoleGuard(EngineRole::Viewer)",
        complexity = "connection::complexity(first, child_complexity)"
    )]
    async fn schedules(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
    ) -> Result<CountedConnection<Schedule>> {
        let request = connection::request::<ScheduleRecord>(ctx, first, after.as_deref())?;
        let page = ctx.data::<Engine>()?.schedules(&request).await.gql()?;
        Ok(connection::counted(page))
    }

    /// A schedule, or null if there is none with this id.
    #[graphql(guard = "RoleGuard(EngineRole::Viewer)")]
    async fn schedule(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Schedule>> {
        Ok(ctx
            .data::<Engine>()?
            .schedule(ScheduleId(id))
            .await
            .gql_optional()?
            .map(Schedule::from))
    }
}

#[derive(Default)]
pub struct SchedulesMutation;

#[Object]
impl SchedulesMutation {
    /// Creates a schedule; it first fires at its first fire time after now.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn create_schedule(
        &self,
        ctx: &Context<'_>,
        input: CreateScheduleInput,
    ) -> Result<Schedule> {
        let p = principal(ctx)?;
        let new = NewSchedule {
            name: input.name,
            team: input.team,
            input: run_input(serde_json::json!({}), input.task, input.alerts),
            cron: input.cron,
            timezone: input.timezone,
            overlap: input.overlap_policy.into(),
            catch_up: input.catch_up_policy.into(),
            enabled: input.enabled,
        };
        let s = ctx
            .data::<Engine>()?
            .create_schedule(Caller::Principal(p), new)
            .await
            .gql()?;
        Ok(s.into())
    }

    /// Changes a schedule. A new expression, zone or enabling counts from now: fire
    /// times before the change are not caught up.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn update_schedule(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        input: UpdateScheduleInput,
    ) -> Result<Schedule> {
        let p = principal(ctx)?;
        let engine = ctx.data::<Engine>()?;
        let run = if input.task.is_some() || input.alerts.is_some() {
            let current = engine.schedule(ScheduleId(id)).await.gql()?;
            Some(run_input(current.input, input.task, input.alerts))
        } else {
            None
        };
        let update = ScheduleUpdate {
            name: input.name,
            team: input.team,
            input: run,
            cron: input.cron,
            timezone: input.timezone,
            overlap: input.overlap_policy.map(Into::into),
            catch_up: input.catch_up_policy.map(Into::into),
            enabled: input.enabled,
        };
        let s = engine
            .update_schedule(Caller::Principal(p), ScheduleId(id), update)
            .await
            .gql()?;
        Ok(s.into())
    }

    /// Deletes a schedule and its fire records; the runs it started stay.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn delete_schedule(&self, ctx: &Context<'_>, id: Uuid) -> Result<bool> {
        let p = principal(ctx)?;
        ctx.data::<Engine>()?
            .delete_schedule(Caller::Principal(p), ScheduleId(id))
            .await
            .gql()?;
        Ok(true)
    }

    /// Starts a run of the schedule now (trigger SCHEDULE), outside its cron times,
    /// whatever its overlap policy and even while it is disabled.
    #[graphql(guard = "RoleGuard(EngineRole::Operator)")]
    async fn trigger_schedule(&self, ctx: &Context<'_>, id: Uuid) -> Result<Run> {
        let p = principal(ctx)?;
        let run = aiops_engine::triggers::trigger_schedule(
            ctx.data::<Engine>()?,
            Caller::Principal(p),
            ScheduleId(id),
        )
        .await
        .gql()?;
        Ok(run.into())
    }
}

//! A schedule's runs: team runs of its team with its input, trigger `SCHEDULE` and
//! the schedule's id; a fire time's run carries the idempotency key of that fire
//! time, so starting it twice (a retried start) returns the same run.

use crate::agents::{TeamRun, start_team_run};
use crate::auth::{Caller, Role};
use crate::engine::Engine;
use crate::ids::{RunId, ScheduleId};
use crate::model::{DueFire, Run, Schedule};
use crate::status::Trigger;
use crate::{Error, Result};

/// What became of starting one fire's run.
#[derive(Debug)]
pub enum FireStart {
    /// Started (or found started by an earlier attempt) and recorded on the fire.
    Started(RunId),
    /// Refused for good (the team is gone, the input no longer fits it); recorded.
    Failed(String),
    /// Not started for now (the database was unavailable); the fire stays pending
    /// and a later tick starts it.
    Retry(Error),
}

/// The team run of a schedule with `input`.
fn team_run(schedule_id: ScheduleId, team: &str, input: &serde_json::Value) -> TeamRun {
    let mut run = TeamRun::new(team);
    run.alerts = input.get("alerts").filter(|a| !a.is_null()).cloned();
    run.task = input
        .get("task")
        .and_then(|t| t.as_str())
        .map(str::to_owned);
    run.trigger = Trigger::Schedule;
    run.trigger_id = Some(schedule_id.to_string());
    run
}

/// Starts the run of a claimed fire and records the outcome on the fire.
pub async fn start_fire(engine: &Engine, fire: &DueFire) -> FireStart {
    let mut req = team_run(fire.schedule_id, &fire.team, &fire.input);
    req.idempotency_key = Some(fire.idempotency_key());
    match start_team_run(engine, req).await {
        Ok(run) => match engine.record_fire_started(fire.fire_id, run.id).await {
            // Not recorded: the fire stays pending, and its retry finds the same run.
            Err(e) => FireStart::Retry(e),
            Ok(_) => FireStart::Started(run.id),
        },
        Err(e @ (Error::Invalid(_) | Error::NotFound { .. } | Error::Violations(_))) => {
            let reason = e.to_string();
            match engine.record_fire_failed(fire.fire_id, &reason).await {
                Err(e) => FireStart::Retry(e),
                Ok(_) => FireStart::Failed(reason),
            }
        }
        Err(e) => FireStart::Retry(e),
    }
}

/// Starts a run of `schedule` now, outside its cron times (operators): trigger
/// `SCHEDULE` with the schedule's id, whatever its overlap policy and even while
/// it is disabled.
pub async fn trigger_schedule(engine: &Engine, caller: Caller<'_>, id: ScheduleId) -> Result<Run> {
    if let Caller::Principal(p) = caller {
        p.require(Role::Operator)?;
    }
    let schedule: Schedule = engine.schedule(id).await?;
    start_team_run(
        engine,
        team_run(schedule.id, &schedule.team, &schedule.input),
    )
    .await
}

//! Cron schedules (§8; admins write them, viewers read them) and the claim a tick
//! makes: in one transaction it locks the due schedules, applies their catch-up and
//! overlap policies, records each fire time under the unique `(schedule, fire time)`
//! key and advances `next_fire_at`. Starting the runs is the ticker's business
//! (`triggers`), with an idempotency key per fire time.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value as Json;

use super::Engine;
use super::alert_sources::{check_name, require_admin};
use crate::auth::Caller;
use crate::cron::{CronSchedule, Fields};
use crate::ids::{RunId, ScheduleFireId, ScheduleId};
use crate::model::{
    CatchUpPolicy, ClaimedFires, DueFire, FireOutcome, OverlapPolicy, Schedule, ScheduleFire,
};
use crate::page::{KeyOf, Page, PageRequest};
use crate::store::schedules::NewFire;
use crate::store::{self};
use crate::{Error, Result};

/// Schedules one claim handles at most (the rest wait for the next tick).
const CLAIM_LIMIT: u64 = 100;
/// Longest task text a schedule's runs get.
const MAX_TASK_CHARS: usize = 10_000;

/// A schedule to create.
#[derive(Clone, Debug)]
pub struct NewSchedule {
    pub name: String,
    pub team: String,
    /// `{ "task"?: string, "alerts"?: … }`; `null` is `{}`.
    pub input: Json,
    pub cron: String,
    /// IANA zone name; default `UTC`.
    pub timezone: Option<String>,
    pub overlap: OverlapPolicy,
    pub catch_up: CatchUpPolicy,
    pub enabled: bool,
}

impl NewSchedule {
    /// A schedule of `team` on `cron` (UTC, overlap and catch-up `skip`, enabled).
    pub fn new(name: impl Into<String>, team: impl Into<String>, cron: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            team: team.into(),
            input: Json::Object(Default::default()),
            cron: cron.into(),
            timezone: None,
            overlap: OverlapPolicy::Skip,
            catch_up: CatchUpPolicy::Skip,
            enabled: true,
        }
    }
}

/// Changes to a schedule; `None` keeps a field.
#[derive(Clone, Debug, Default)]
pub struct ScheduleUpdate {
    pub name: Option<String>,
    pub team: Option<String>,
    pub input: Option<Json>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub overlap: Option<OverlapPolicy>,
    pub catch_up: Option<CatchUpPolicy>,
    pub enabled: Option<bool>,
}

/// The next `n` fire times of `schedule` after `after`, in its zone.
pub fn next_fire_times(
    schedule: &Schedule,
    after: DateTime<Utc>,
    n: usize,
) -> Result<Vec<DateTime<Tz>>> {
    Ok(CronSchedule::stored(&schedule.cron, &schedule.timezone)?.upcoming(after, n))
}

/// A schedule's input: an object with an optional `task` (text) and `alerts`.
fn check_input(input: Json, max_bytes: usize) -> Result<Json> {
    let input = match input {
        Json::Null => Json::Object(Default::default()),
        Json::Object(map) => Json::Object(map),
        _ => {
            return Err(Error::Invalid(
                "input: an object with `task` and/or `alerts`".into(),
            ));
        }
    };
    if let Some(key) = input
        .as_object()
        .and_then(|m| m.keys().find(|k| !matches!(k.as_str(), "task" | "alerts")))
    {
        return Err(Error::Invalid(format!(
            "input.{key}: unknown field (a team run takes `task` and `alerts`)"
        )));
    }
    match &input["task"] {
        Json::Null => {}
        Json::String(t) if t.chars().count() <= MAX_TASK_CHARS => {}
        _ => {
            return Err(Error::Invalid(format!(
                "input.task: text of at most {MAX_TASK_CHARS} characters"
            )));
        }
    }
    let size = serde_json::to_vec(&input).map_or(usize::MAX, |v| v.len());
    if size > max_bytes {
        return Err(Error::Invalid(format!(
            "input: {size} bytes of JSON, at most {max_bytes} are accepted"
        )));
    }
    crate::storable::check_json(&input, "input").map_err(Error::Invalid)?;
    Ok(input)
}

impl Engine {
    fn cron_fields(&self) -> Fields {
        if self.inner.config.schedule_seconds {
            Fields::FiveOrSixWithSeconds
        } else {
            Fields::Five
        }
    }

    /// Checks every field of `s` (errors name the field) and returns its next fire
    /// time after `now` (`None` when disabled).
    async fn check_schedule(
        &self,
        s: &mut Schedule,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        s.name = check_name(&s.name)?;
        s.team = s.team.trim().to_owned();
        if store::teams::get_by_name(&self.inner.db, &s.team)
            .await?
            .is_none()
        {
            return Err(Error::Invalid(format!(
                "team: no team named \"{}\"",
                s.team
            )));
        }
        s.input = check_input(
            std::mem::take(&mut s.input),
            self.inner.config.max_input_bytes,
        )?;
        s.cron = s.cron.trim().to_owned();
        s.timezone = s.timezone.trim().to_owned();
        let cron = CronSchedule::parse(&s.cron, &s.timezone, self.cron_fields())?;
        Ok(if s.enabled {
            cron.next_after(now)
        } else {
            None
        })
    }

    /// Creates a schedule (admins). It first fires at the first fire time after now.
    pub async fn create_schedule(&self, caller: Caller<'_>, new: NewSchedule) -> Result<Schedule> {
        require_admin(caller)?;
        let now = Utc::now();
        let mut s = Schedule {
            id: ScheduleId::new(),
            name: new.name,
            team: new.team,
            input: new.input,
            cron: new.cron,
            timezone: new.timezone.unwrap_or_else(|| "UTC".to_owned()),
            overlap: new.overlap,
            catch_up: new.catch_up,
            enabled: new.enabled,
            next_fire_at: None,
            last_fire_at: None,
            created_by: match caller {
                Caller::Local => None,
                Caller::Principal(p) => Some(p.username.clone()),
            },
            created_at: now,
            updated_at: now,
        };
        s.next_fire_at = self.check_schedule(&mut s, now).await?;
        store::schedules::insert(&self.inner.db, &s).await?;
        Ok(s)
    }

    /// Changes a schedule (admins). A new expression, zone or enabling starts from
    /// now: fire times before the change are not caught up.
    pub async fn update_schedule(
        &self,
        caller: Caller<'_>,
        id: ScheduleId,
        update: ScheduleUpdate,
    ) -> Result<Schedule> {
        require_admin(caller)?;
        let txn = store::begin_write(&self.inner.db).await?;
        let mut s = store::schedules::lock(&txn, id)
            .await?
            .ok_or_else(|| Error::not_found("schedule", id))?;
        let before = s.clone();
        let ScheduleUpdate {
            name,
            team,
            input,
            cron,
            timezone,
            overlap,
            catch_up,
            enabled,
        } = update;
        s.name = name.unwrap_or(s.name);
        s.team = team.unwrap_or(s.team);
        s.input = input.unwrap_or(s.input);
        s.cron = cron.unwrap_or(s.cron);
        s.timezone = timezone.unwrap_or(s.timezone);
        s.overlap = overlap.unwrap_or(s.overlap);
        s.catch_up = catch_up.unwrap_or(s.catch_up);
        s.enabled = enabled.unwrap_or(s.enabled);
        let now = Utc::now();
        let next = self.check_schedule(&mut s, now).await?;
        let timing_changed =
            s.cron != before.cron || s.timezone != before.timezone || s.enabled != before.enabled;
        if timing_changed || !s.enabled {
            s.next_fire_at = next;
        }
        s.updated_at = now;
        store::schedules::update(&txn, &s).await?;
        txn.commit().await?;
        Ok(s)
    }

    /// Deletes a schedule and its fire records (admins); its runs stay.
    pub async fn delete_schedule(&self, caller: Caller<'_>, id: ScheduleId) -> Result<()> {
        require_admin(caller)?;
        let txn = store::begin_write(&self.inner.db).await?;
        let existed = store::schedules::delete(&txn, id).await?;
        txn.commit().await?;
        if existed {
            Ok(())
        } else {
            Err(Error::not_found("schedule", id))
        }
    }

    pub async fn schedule(&self, id: ScheduleId) -> Result<Schedule> {
        store::schedules::get(&self.inner.db, id)
            .await?
            .ok_or_else(|| Error::not_found("schedule", id))
    }

    pub async fn schedule_named(&self, name: &str) -> Result<Schedule> {
        store::schedules::get_by_name(&self.inner.db, name)
            .await?
            .ok_or_else(|| Error::not_found("schedule", name))
    }

    /// A page of schedules by name.
    pub async fn schedules(&self, page: &PageRequest<KeyOf<Schedule>>) -> Result<Page<Schedule>> {
        store::schedules::list(&self.inner.db, page).await
    }

    /// A page of a schedule's fires, newest fire time first.
    pub async fn schedule_fires(
        &self,
        id: ScheduleId,
        page: &PageRequest<KeyOf<ScheduleFire>>,
    ) -> Result<Page<ScheduleFire>> {
        store::schedules::fires(&self.inner.db, id, page).await
    }

    /// One tick's claim at `now`, in one transaction: locks the enabled schedules due
    /// at `now` (other replicas' ticks skip them), records their fire times — to
    /// start (PENDING), skipped because a run is still active (overlap `skip`), or
    /// missed during downtime (catch-up policy; one row however many passed) — under
    /// the unique `(schedule, fire time)` key, and advances their next fire time. Also
    /// takes the PENDING fires whose start is overdue (their tick died after its
    /// commit). Returns the fires whose runs the caller starts, each with its
    /// idempotency key, so a fire time starts at most one run.
    pub async fn claim_due_fires(&self, now: DateTime<Utc>) -> Result<ClaimedFires> {
        let config = &self.inner.config;
        let retry_at = crate::storable::after(now, config.schedule_start_retry);
        let txn = store::begin_write(&self.inner.db).await?;
        let mut claimed = ClaimedFires::default();
        for s in store::schedules::lock_due(&txn, now, CLAIM_LIMIT).await? {
            let Some(next_fire_at) = s.next_fire_at else {
                continue;
            };
            let cron = match CronSchedule::stored(&s.cron, &s.timezone) {
                Ok(cron) => cron,
                Err(e) => {
                    // Validated when written; a zone the tz database no longer knows
                    // stops the schedule rather than every tick.
                    tracing::warn!(schedule = %s.name, error = %e, "schedule stopped: its expression no longer parses");
                    store::schedules::advance(&txn, s.id, None, None, now).await?;
                    continue;
                }
            };
            let plan = cron.plan(next_fire_at, now, config.schedule_grace, s.catch_up);
            if let Some(missed) = &plan.missed {
                let fire = NewFire {
                    schedule_id: s.id,
                    fire_time: missed.first,
                    outcome: FireOutcome::Missed,
                    missed_count: i64::try_from(missed.count).unwrap_or(i64::MAX),
                    error: missed.more.then(|| {
                        format!(
                            "at least {} fire times passed while no replica ticked",
                            missed.count
                        )
                    }),
                    retry_at: None,
                };
                if store::schedules::insert_fire(&txn, &fire, now)
                    .await?
                    .is_some()
                {
                    claimed.missed += missed.count;
                }
            }
            let mut last_fired = None;
            for fire_time in plan.fire {
                let busy = s.overlap == OverlapPolicy::Skip
                    && store::schedules::has_active_run(&txn, s.id).await?;
                let fire = NewFire {
                    schedule_id: s.id,
                    fire_time,
                    outcome: if busy {
                        FireOutcome::SkippedOverlap
                    } else {
                        FireOutcome::Pending
                    },
                    missed_count: 1,
                    error: None,
                    retry_at: (!busy).then_some(retry_at),
                };
                let Some(fire_id) = store::schedules::insert_fire(&txn, &fire, now).await? else {
                    continue;
                };
                if busy {
                    claimed.skipped_overlap += 1;
                    continue;
                }
                last_fired = Some(fire_time);
                claimed.due.push(DueFire {
                    fire_id,
                    schedule_id: s.id,
                    schedule: s.name.clone(),
                    team: s.team.clone(),
                    input: s.input.clone(),
                    fire_time,
                });
            }
            store::schedules::advance(&txn, s.id, plan.next, last_fired, now).await?;
        }
        let overdue = store::schedules::claim_unstarted(&txn, now, retry_at, CLAIM_LIMIT).await?;
        claimed.due.extend(overdue);
        txn.commit().await?;
        Ok(claimed)
    }

    /// Records that a fire's run started; `false` when the fire was no longer
    /// pending (another tick recorded it first: the same run, by its idempotency key).
    pub async fn record_fire_started(&self, fire: ScheduleFireId, run: RunId) -> Result<bool> {
        store::schedules::finish_fire(
            &self.inner.db,
            fire,
            FireOutcome::Started,
            Some(run),
            None,
            Utc::now(),
        )
        .await
    }

    /// Records that a fire's run could not be started (a refusal that retrying
    /// cannot change, such as a team that no longer exists).
    pub async fn record_fire_failed(&self, fire: ScheduleFireId, error: &str) -> Result<bool> {
        store::schedules::finish_fire(
            &self.inner.db,
            fire,
            FireOutcome::Failed,
            None,
            Some(crate::storable::scrub(error)),
            Utc::now(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inputs_are_a_team_runs_and_errors_name_the_field() {
        assert_eq!(check_input(Json::Null, 1000).unwrap(), json!({}));
        let ok = json!({ "task": "check the night", "alerts": [] });
        assert_eq!(check_input(ok.clone(), 1000).unwrap(), ok);
        let err = |v: Json| match check_input(v, 1000) {
            Err(Error::Invalid(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(err(json!([1])).starts_with("input: "));
        assert!(err(json!({ "steps": [] })).starts_with("input.steps: "));
        assert!(err(json!({ "task": 5 })).starts_with("input.task: "));
        assert!(err(json!({ "task": "x".repeat(2000) })).contains("at most 1000"));
    }
}

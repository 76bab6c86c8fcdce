//! A cron schedule (§8) and what its ticks did: plain data.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::ids::{RunId, ScheduleFireId, ScheduleId};
use crate::page::Keyed;
use crate::status::string_enum;

string_enum!(
    /// What a tick does when the schedule's previous run is still active.
    OverlapPolicy {
        Skip => "skip",
        Allow => "allow",
    }
);

string_enum!(
    /// What a tick does with fire times that passed while no replica ticked
    /// (downtime): none of them run (`skip`), or one run for the latest (`run_once`).
    CatchUpPolicy {
        Skip => "skip",
        RunOnce => "run_once",
    }
);

string_enum!(
    /// What became of one fire time: PENDING (claimed; its run is being started,
    /// or will be by another tick), STARTED, SKIPPED_OVERLAP (a run of the schedule
    /// was still active), MISSED (passed during downtime and not run; one row may
    /// stand for many fire times, `missed_count`), FAILED (the run was refused, e.g.
    /// the team no longer exists).
    FireOutcome {
        Pending => "PENDING",
        Started => "STARTED",
        SkippedOverlap => "SKIPPED_OVERLAP",
        Missed => "MISSED",
        Failed => "FAILED",
    }
);

/// A schedule as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub id: ScheduleId,
    /// Unique; what the CLI names it by.
    pub name: String,
    /// The team whose runs it starts (at its latest version when it fires).
    pub team: String,
    /// What each run gets: `{ "task"?: string, "alerts"?: … }` (a team run's input).
    pub input: Json,
    /// 5 fields: minute hour day-of-month month day-of-week.
    pub cron: String,
    /// The IANA time zone the expression is read in, e.g. `Europe/Berlin`.
    pub timezone: String,
    pub overlap: OverlapPolicy,
    pub catch_up: CatchUpPolicy,
    pub enabled: bool,
    /// The next fire time (UTC); `None` while disabled.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// The latest fire time that started (or tried to start) a run.
    pub last_fire_at: Option<DateTime<Utc>>,
    /// Who created it (a username; `None` from the CLI).
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Schedules are listed by name.
impl Keyed for Schedule {
    type Key = String;
    fn key(&self) -> Self::Key {
        self.name.clone()
    }
}

/// One fire time a tick handled.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleFire {
    pub id: ScheduleFireId,
    pub schedule_id: ScheduleId,
    /// The nominal fire time (UTC); for a MISSED row, the first of those it stands for.
    pub fire_time: DateTime<Utc>,
    pub outcome: FireOutcome,
    /// How many fire times a MISSED row stands for; 1 for the others.
    pub missed_count: i64,
    pub run_id: Option<RunId>,
    /// Why a FAILED fire did not start.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A schedule's fires are listed newest fire time first.
impl Keyed for ScheduleFire {
    type Key = DateTime<Utc>;
    fn key(&self) -> Self::Key {
        self.fire_time
    }
}

/// A fire time claimed by a tick whose run is to be started now.
#[derive(Clone, Debug, PartialEq)]
pub struct DueFire {
    pub fire_id: ScheduleFireId,
    pub schedule_id: ScheduleId,
    pub schedule: String,
    pub team: String,
    pub input: Json,
    pub fire_time: DateTime<Utc>,
}

impl DueFire {
    /// The idempotency key of the fire's run: starting it again (a retried start
    /// after a crash) returns the same run.
    pub fn idempotency_key(&self) -> String {
        format!(
            "schedule:{}:{}",
            self.schedule_id,
            self.fire_time
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

/// What one claim of due schedules did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClaimedFires {
    /// Fires whose runs are to be started (new ones, and earlier ones whose start
    /// was not recorded).
    pub due: Vec<DueFire>,
    /// Fire times not started because a run of the schedule was still active.
    pub skipped_overlap: u64,
    /// Fire times that passed during downtime and were not run.
    pub missed: u64,
}

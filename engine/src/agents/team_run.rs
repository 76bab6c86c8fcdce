//! Starting a team run: the team (at a version, or its latest) pinned on the run,
//! the investigation workflow, and the team's own time limit unless one is given.

use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::engine::{Engine, StartRun};
use crate::model::{Run, Team};
use crate::status::{ApprovalMode, Trigger};

use super::investigation::NAME;

/// What a team run is started with.
#[derive(Clone, Debug)]
pub struct TeamRun {
    pub team: String,
    /// The team version to pin; its latest when `None`.
    pub version: Option<i32>,
    /// Alerts (the Alertmanager webhook shape, or a list); `None`: the alert source's
    /// firing alerts.
    pub alerts: Option<Json>,
    pub task: Option<String>,
    pub trigger: Trigger,
    /// The schedule or notification that started the run, if any.
    pub trigger_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// What the run's approval requests do (default: wait for a person).
    pub approval_mode: ApprovalMode,
    /// Default: the team's `limits.timeout_seconds`.
    pub timeout: Option<Duration>,
}

impl TeamRun {
    pub fn new(team: impl Into<String>) -> Self {
        Self {
            team: team.into(),
            version: None,
            alerts: None,
            task: None,
            trigger: Trigger::Manual,
            trigger_id: None,
            idempotency_key: None,
            approval_mode: ApprovalMode::Wait,
            timeout: None,
        }
    }
}

/// Stores a QUEUED run of `req.team`'s investigation; bad alerts, an unknown team
/// or version are refused before anything is written.
pub async fn start_team_run(engine: &Engine, req: TeamRun) -> crate::Result<Run> {
    let team = engine.team_at(&req.team, req.version).await?;
    engine.start_run(team_run_start(&team, req)).await
}

/// The run request of `req` pinned on `team` (the version read for it): the
/// investigation workflow, its input, and the team's own time limit unless one is
/// given. Nothing is checked or stored yet.
pub fn team_run_start(team: &Team, req: TeamRun) -> StartRun {
    let limit = team.spec["limits"]["timeout_seconds"]
        .as_u64()
        .unwrap_or(300);
    let mut input = Map::new();
    if let Some(alerts) = req.alerts {
        input.insert("alerts".into(), alerts);
    }
    if let Some(task) = req.task {
        input.insert("task".into(), Json::String(task));
    }
    let mut start = StartRun::new(NAME, Json::Object(input));
    start.trigger = req.trigger;
    start.trigger_id = req.trigger_id;
    start.idempotency_key = req.idempotency_key;
    start.approval_mode = req.approval_mode;
    start.team_id = Some(team.id);
    start.team_version_id = Some(team.version_id);
    start.timeout = Some(req.timeout.unwrap_or(Duration::from_secs(limit)));
    start
}

//! GraphQL object types: thin views over engine records.

use aiops_engine::model::Approval as ApprovalRecord;
use aiops_engine::model::Question as QuestionRecord;
use aiops_engine::model::Run as RunRecord;
use aiops_engine::model::Step as StepRecord;
use aiops_engine::model::{Team as TeamRecord, TeamVersion as TeamVersionRecord};
use aiops_engine::{Engine, Event as EventRecord};
use async_graphql::{ComplexObject, Context, Json, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::connection::{self, CountedConnection};
use super::error::ToGql;
use super::loaders::{RunUsage, RunUsageBreakdowns, StepCounts, TeamVersions};
use async_graphql::dataloader::DataLoader;

macro_rules! mirror_enum {
    ($(#[$doc:meta])* $name:ident from $engine:path { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(::async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl From<$engine> for $name {
            fn from(v: $engine) -> Self {
                match v { $(<$engine>::$variant => $name::$variant),+ }
            }
        }

        impl From<$name> for $engine {
            fn from(v: $name) -> Self {
                match v { $($name::$variant => <$engine>::$variant),+ }
            }
        }
    };
}
pub(crate) use mirror_enum;

mirror_enum!(
    /// The state of a run (§4).
    RunStatus from aiops_engine::RunStatus {
        Queued, Running, Paused, WaitingApproval, WaitingInput, RetryWait, Succeeded, Failed, Cancelled, TimedOut
    }
);
mirror_enum!(
    /// What started a run.
    Trigger from aiops_engine::Trigger { Manual, Schedule, Alertmanager, Api }
);
mirror_enum!(
    /// The state of a step.
    StepStatus from aiops_engine::StepStatus { Running, RetryWait, Sleeping, Succeeded, Failed }
);
mirror_enum!(
    /// The state of an approval.
    ApprovalStatus from aiops_engine::ApprovalStatus { Pending, Approved, Rejected, Expired, Executed }
);
mirror_enum!(
    /// The state of a question.
    QuestionStatus from aiops_engine::QuestionStatus { Pending, Answered, Expired }
);
mirror_enum!(
    /// What a run's approval requests do: wait for a person (until they expire), or
    /// are rejected at once by the system (unattended runs).
    ApprovalMode from aiops_engine::ApprovalMode { Wait, Reject }
);
mirror_enum!(
    /// Alertmanager's status of a notification's group.
    NotificationStatus from aiops_engine::model::NotificationStatus { Firing, Resolved }
);
mirror_enum!(
    /// What came of an Alertmanager notification (or of its route to one team).
    NotificationOutcome from aiops_engine::model::NotificationOutcome {
        Started, Recorded, Deduplicated, Unrouted
    }
);
mirror_enum!(
    /// Event types of a run's log.
    EventKind from aiops_engine::EventKind {
        RunQueued, RunStarted, StepStarted, StepSucceeded, StepFailed, StepRetryScheduled, LlmToken,
        ToolCall, ToolResult, Finding, AlertFiring, AlertResolved, ApprovalRequested, ApprovalDecided, InputRequested, InputReceived,
        RunPaused, RunResumed, RunRetryWait, RunSucceeded, RunFailed, RunCancelled, RunTimedOut
    }
);

/// One execution of a workflow, or a team's investigation, on an input.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Run {
    pub id: Uuid,
    pub workflow: String,
    pub status: RunStatus,
    pub trigger: Trigger,
    /// The schedule or Alertmanager notification that started the run.
    pub trigger_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// What its approval requests do (REJECT: rejected at once, for unattended runs).
    pub approval_mode: ApprovalMode,
    pub input: Json<serde_json::Value>,
    pub output: Option<Json<serde_json::Value>>,
    pub error: Option<String>,
    /// How many times the run was claimed by a worker.
    pub attempt: i64,
    /// Highest event seq: subscribe with `afterSeq` to continue from here.
    pub last_seq: i64,
    pub pause_requested: bool,
    pub team_id: Option<Uuid>,
    pub team_version_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deadline_at: Option<DateTime<Utc>>,
    /// Filled by list resolvers that load these for a whole page at once.
    #[graphql(skip)]
    pub prefetched_step_count: Option<i64>,
    #[graphql(skip)]
    pub prefetched_team: Option<Option<TeamRecord>>,
}

impl From<RunRecord> for Run {
    fn from(r: RunRecord) -> Self {
        Run {
            id: r.id.0,
            workflow: r.workflow,
            status: r.status.into(),
            trigger: r.trigger.into(),
            trigger_id: r.trigger_id,
            idempotency_key: r.idempotency_key,
            approval_mode: r.approval_mode.into(),
            input: Json(r.input),
            output: r.output.map(Json),
            error: r.error,
            attempt: r.attempt,
            last_seq: r.last_seq,
            pause_requested: r.pause_requested,
            team_id: r.team_id.map(|t| t.0),
            team_version_id: r.team_version_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            deadline_at: r.deadline_at,
            prefetched_step_count: None,
            prefetched_team: None,
        }
    }
}

#[ComplexObject]
impl Run {
    /// How many steps the run has recorded (batched across runs).
    async fn step_count(&self, ctx: &Context<'_>) -> Result<i64> {
        if let Some(n) = self.prefetched_step_count {
            return Ok(n);
        }
        let loader = ctx.data::<DataLoader<StepCounts>>()?;
        Ok(loader.load_one(self.id).await?.unwrap_or(0))
    }

    /// The team at the version this run pinned, for team runs (batched across runs).
    async fn team(&self, ctx: &Context<'_>) -> Result<Option<Team>> {
        if let Some(team) = &self.prefetched_team {
            return Ok(team.clone().map(Team::from));
        }
        let Some(version) = self.team_version_id else {
            return Ok(None);
        };
        let loader = ctx.data::<DataLoader<TeamVersions>>()?;
        Ok(loader.load_one(version).await?.map(Team::from))
    }

    /// The version number of the team this run pinned (see `team`), for team runs.
    async fn team_version(&self, ctx: &Context<'_>) -> Result<Option<i32>> {
        Ok(self.team(ctx).await?.map(|t| t.version))
    }

    /// The investigation's Markdown report (*Active alerts*, *Root cause analysis*,
    /// *Remediation*, *Conclusion*), once a team run has succeeded.
    async fn report(&self) -> Option<String> {
        self.output
            .as_ref()
            .and_then(|o| o.0.get("report"))
            .and_then(|r| r.as_str())
            .map(str::to_owned)
    }

    /// The investigation's structured result, valid against the team's
    /// `output_schema` (default: summary, severity, root_causes, actions).
    async fn result(&self) -> Option<Json<serde_json::Value>> {
        self.output
            .as_ref()
            .and_then(|o| o.0.get("result"))
            .cloned()
            .map(Json)
    }

    /// The run's steps, in the order first recorded.
    #[graphql(complexity = "connection::complexity(first, child_complexity)")]
    async fn steps(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
    ) -> Result<CountedConnection<Step>> {
        let request = connection::request::<StepRecord>(ctx, first, after.as_deref())?;
        let page = ctx
            .data::<Engine>()?
            .list_steps(self.id.into(), &request)
            .await
            .gql()?;
        Ok(connection::counted(page))
    }

    /// The run's stored events by seq (1, 2, 3 … without gaps; `totalCount` is the
    /// run's last seq). To follow new events live, subscribe to `runEvents`.
    #[graphql(complexity = "connection::complexity(first, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
    ) -> Result<CountedConnection<Event>> {
        let request = connection::request::<EventRecord>(ctx, first, after.as_deref())?;
        let page = ctx
            .data::<Engine>()?
            .list_events(self.id.into(), &request)
            .await
            .gql()?;
        Ok(connection::counted(page))
    }

    /// Token usage and cost summed over the run's steps and their attempts (batched
    /// across runs).
    async fn usage(&self, ctx: &Context<'_>) -> Result<Usage> {
        let loader = ctx.data::<DataLoader<RunUsage>>()?;
        Ok(loader.load_one(self.id).await?.unwrap_or_default().into())
    }

    /// The run's usage in total, per node and per agent of its team (batched across
    /// runs).
    async fn usage_breakdown(&self, ctx: &Context<'_>) -> Result<UsageBreakdown> {
        let loader = ctx.data::<DataLoader<RunUsageBreakdowns>>()?;
        Ok(loader.load_one(self.id).await?.unwrap_or_default().into())
    }

    async fn approvals(&self, ctx: &Context<'_>) -> Result<Vec<Approval>> {
        let engine = ctx.data::<Engine>()?;
        Ok(engine
            .approvals_of_run(self.id.into())
            .await
            .gql()?
            .into_iter()
            .map(Approval::from)
            .collect())
    }
}

/// Tokens and cost of LLM calls.
#[derive(SimpleObject, Default)]
pub struct Usage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
}

impl From<aiops_engine::Usage> for Usage {
    fn from(u: aiops_engine::Usage) -> Self {
        Usage {
            input_tokens: i64::try_from(u.input_tokens).unwrap_or(i64::MAX),
            output_tokens: i64::try_from(u.output_tokens).unwrap_or(i64::MAX),
            cost_usd: u.cost_usd,
        }
    }
}

/// A run's usage in total and by the part of its team that spent it, read off the
/// step keys (`node/<node>/agent/<agent>/…`, `node/<node>/supervisor/…`,
/// `supervisor/…`).
#[derive(SimpleObject)]
pub struct UsageBreakdown {
    /// Every step's usage, including steps of no node (counted here only).
    pub total: Usage,
    /// By node id, sorted; the global supervisor's steps under `supervisor`.
    pub by_node: Vec<NodeUsage>,
    /// By node and agent, sorted; a node supervisor's steps under agent `supervisor`.
    /// The global supervisor and a node's steps outside its agents are in `byNode` only.
    pub by_agent: Vec<AgentUsage>,
}

/// What one node (or the global supervisor, `supervisor`) used.
#[derive(SimpleObject)]
pub struct NodeUsage {
    pub node: String,
    pub usage: Usage,
}

/// What one agent of a node (or the node's supervisor, `supervisor`) used.
#[derive(SimpleObject)]
pub struct AgentUsage {
    pub node: String,
    pub agent: String,
    pub usage: Usage,
}

impl From<aiops_engine::UsageBreakdown> for UsageBreakdown {
    fn from(b: aiops_engine::UsageBreakdown) -> Self {
        UsageBreakdown {
            total: b.total.into(),
            by_node: b
                .by_node
                .into_iter()
                .map(|(node, usage)| NodeUsage {
                    node,
                    usage: usage.into(),
                })
                .collect(),
            by_agent: b
                .by_agent
                .into_iter()
                .map(|(node, agent, usage)| AgentUsage {
                    node,
                    agent,
                    usage: usage.into(),
                })
                .collect(),
        }
    }
}

/// One durable step of a run.
#[derive(SimpleObject)]
pub struct Step {
    pub key: String,
    pub status: StepStatus,
    pub attempts: i32,
    pub input: Option<Json<serde_json::Value>>,
    pub output: Option<Json<serde_json::Value>>,
    /// Tokens and cost over every attempt of the step.
    pub usage: Usage,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl From<StepRecord> for Step {
    fn from(s: StepRecord) -> Self {
        Step {
            key: s.key,
            status: s.status.into(),
            attempts: s.attempts,
            input: s.input.map(Json),
            output: s.output.map(Json),
            usage: s.usage.into(),
            error: s.error,
            started_at: s.started_at,
            finished_at: s.finished_at,
            next_attempt_at: s.next_attempt_at,
        }
    }
}

/// One entry of a run's event log; `seq` is 1, 2, 3 … without gaps.
#[derive(SimpleObject)]
pub struct Event {
    pub run_id: Uuid,
    /// The event's place in the run's log. A live event (`live: true`) is not
    /// stored and carries the seq of the stored event it follows: resuming with
    /// `afterSeq` = the last seq seen is right either way.
    pub seq: i64,
    pub kind: EventKind,
    pub payload: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    /// A live-only event (`LLM_TOKEN`): sent as it happens, never stored or replayed.
    pub live: bool,
    /// For a live event, where in the run it comes from (node, agent…; empty for
    /// the top); null for stored events, whose payload says it.
    pub branch: Option<String>,
}

impl From<EventRecord> for Event {
    fn from(e: EventRecord) -> Self {
        Event {
            run_id: e.run_id.0,
            seq: e.seq,
            kind: e.kind.into(),
            payload: Json(e.payload),
            created_at: e.created_at,
            live: false,
            branch: None,
        }
    }
}

impl Event {
    /// A live event following the stored event `after_seq`.
    pub fn from_live(e: &aiops_engine::LiveEvent, after_seq: i64) -> Self {
        Event {
            run_id: e.run_id.0,
            seq: after_seq,
            kind: e.kind.into(),
            payload: Json(e.payload.clone()),
            created_at: e.at,
            live: true,
            branch: Some(e.branch.clone()),
        }
    }
}

/// A live-only event of a run: sent while it happens, never stored.
#[derive(SimpleObject)]
pub struct LiveEvent {
    pub run_id: Uuid,
    pub kind: EventKind,
    /// Where in the run it comes from (the branch: node, agent…; empty for the top).
    pub branch: String,
    pub payload: Json<serde_json::Value>,
    pub at: DateTime<Utc>,
}

impl From<&aiops_engine::LiveEvent> for LiveEvent {
    fn from(e: &aiops_engine::LiveEvent) -> Self {
        LiveEvent {
            run_id: e.run_id.0,
            kind: e.kind.into(),
            branch: e.branch.clone(),
            payload: Json(e.payload.clone()),
            at: e.at,
        }
    }
}

/// A pending or decided approval of a risky action.
#[derive(SimpleObject)]
pub struct Approval {
    pub id: Uuid,
    pub run_id: Uuid,
    pub step_key: String,
    pub tool: String,
    pub args: Json<serde_json::Value>,
    pub risk_note: Option<String>,
    pub status: ApprovalStatus,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub comment: Option<String>,
}

impl From<ApprovalRecord> for Approval {
    fn from(a: ApprovalRecord) -> Self {
        Approval {
            id: a.id.0,
            run_id: a.run_id.0,
            step_key: a.step_key,
            tool: a.tool,
            args: Json(a.args),
            risk_note: a.risk_note,
            status: a.status.into(),
            requested_at: a.requested_at,
            expires_at: a.expires_at,
            decided_by: a.decided_by,
            decided_at: a.decided_at,
            comment: a.comment,
        }
    }
}

/// A question a run asked an operator.
#[derive(SimpleObject)]
pub struct Question {
    pub id: Uuid,
    pub run_id: Uuid,
    pub step_key: String,
    pub question: String,
    pub status: QuestionStatus,
    pub answer: Option<String>,
    pub answered_by: Option<String>,
    pub answered_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl From<QuestionRecord> for Question {
    fn from(q: QuestionRecord) -> Self {
        Question {
            id: q.id.0,
            run_id: q.run_id.0,
            step_key: q.step_key,
            question: q.question,
            status: q.status.into(),
            answer: q.answer,
            answered_by: q.answered_by,
            answered_at: q.answered_at,
            expires_at: q.expires_at,
            created_at: q.created_at,
        }
    }
}

/// A team at its latest version.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Team {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub version: i32,
    pub version_id: Uuid,
    /// The validated team document (§3) as JSON.
    pub spec: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<TeamRecord> for Team {
    fn from(t: TeamRecord) -> Self {
        Team {
            id: t.id.0,
            name: t.name,
            description: t.description,
            version: t.version,
            version_id: t.version_id,
            spec: Json(t.spec),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[ComplexObject]
impl Team {
    /// The team's versions, oldest first; runs pin the version they started with.
    #[graphql(complexity = "connection::complexity(first, child_complexity)")]
    async fn versions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
    ) -> Result<CountedConnection<TeamVersion>> {
        let request = connection::request::<TeamVersionRecord>(ctx, first, after.as_deref())?;
        let page = ctx
            .data::<Engine>()?
            .team_versions(aiops_engine::TeamId(self.id), &request)
            .await
            .gql()?;
        Ok(connection::counted(page))
    }
}

/// One version of a team.
#[derive(SimpleObject)]
pub struct TeamVersion {
    /// What runs of this version pin (`Run.teamVersionId`).
    pub id: Uuid,
    pub version: i32,
    pub spec: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

impl From<TeamVersionRecord> for TeamVersion {
    fn from(v: TeamVersionRecord) -> Self {
        TeamVersion {
            id: v.id,
            version: v.version,
            spec: Json(v.spec),
            created_at: v.created_at,
        }
    }
}

/// One rule a team document breaks, with where.
#[derive(SimpleObject, Clone)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

/// The result of `validateTeam`.
#[derive(SimpleObject)]
pub struct TeamValidation {
    pub valid: bool,
    pub violations: Vec<Violation>,
}

/// The result of `applyTeam`.
#[derive(SimpleObject)]
pub struct TeamApplied {
    pub team: Team,
    /// False when the document equals the latest version (no version was added).
    pub changed: bool,
}

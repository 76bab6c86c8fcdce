//! Mutations: a few lines each — parse, call the engine, convert.

use std::time::Duration;

use aiops_engine::{ApprovalId, Decision, Engine, QuestionId, RunId, StartRun};
use async_graphql::{Context, InputObject, Json, Object, Result};
use uuid::Uuid;

use super::auth::RoleGuard;
use super::error::ToGql;
use super::types::{Approval, Question, Run, TeamApplied};
use aiops_engine::auth::Role;

#[derive(Default)]
pub struct MutationRoot;

#[derive(InputObject)]
pub struct StartRunInput {
    /// Workflow to run; see `workflows`. Default `script`, or the investigation when
    /// `team` is given.
    pub workflow: Option<String>,
    /// The workflow's input document (not for team runs: use `alerts` and `task`).
    pub input: Option<Json<serde_json::Value>>,
    /// The team that investigates; the run pins its version.
    pub team: Option<String>,
    /// The team version to pin (default: the latest).
    #[graphql(validator(minimum = 1))]
    pub team_version: Option<i32>,
    /// Alerts to investigate, in the Alertmanager webhook shape (`{alerts: [...]}`)
    /// or as a list; default: the alert source's firing alerts.
    pub alerts: Option<Json<serde_json::Value>>,
    /// A free-text task for the team.
    pub task: Option<String>,
    /// Starting twice with the same key returns the first run.
    pub idempotency_key: Option<String>,
    /// Run deadline; default 300 (a team's `limits.timeout_seconds`), at most 1800.
    #[graphql(validator(minimum = 1, maximum = 1800))]
    pub timeout_seconds: Option<i32>,
}

#[Object]
impl MutationRoot {
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn start_run(&self, ctx: &Context<'_>, input: StartRunInput) -> Result<Run> {
        let engine = ctx.data::<Engine>()?;
        let timeout = input.timeout_seconds.map(|s| Duration::from_secs(s as u64));
        let Some(team) = input.team else {
            if input.team_version.is_some() || input.alerts.is_some() || input.task.is_some() {
                return Err(invalid(
                    "teamVersion, alerts and task go with team: name the team that investigates",
                ));
            }
            let workflow = input.workflow.unwrap_or_else(|| "script".to_owned());
            let mut req =
                StartRun::new(workflow, input.input.map_or(serde_json::json!({}), |j| j.0));
            req.trigger = aiops_engine::Trigger::Api;
            req.idempotency_key = input.idempotency_key;
            req.timeout = timeout;
            return Ok(engine.start_run(req).await.gql()?.into());
        };
        if input.input.is_some() {
            return Err(invalid(
                "input: a team run takes `alerts` and `task`, not `input`",
            ));
        }
        if let Some(w) = input
            .workflow
            .filter(|w| w != aiops_engine::agents::INVESTIGATION)
        {
            return Err(invalid(format!(
                "workflow: a team run executes the {} workflow, not \"{w}\"",
                aiops_engine::agents::INVESTIGATION
            )));
        }
        let mut req = aiops_engine::agents::TeamRun::new(team);
        req.version = input.team_version;
        req.alerts = input.alerts.map(|a| a.0);
        req.task = input.task;
        req.trigger = aiops_engine::Trigger::Api;
        req.idempotency_key = input.idempotency_key;
        req.timeout = timeout;
        Ok(aiops_engine::agents::start_team_run(engine, req)
            .await
            .gql()?
            .into())
    }

    /// Pauses at the next step boundary. Idempotent.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn pause_run(&self, ctx: &Context<'_>, id: Uuid) -> Result<Run> {
        Ok(ctx
            .data::<Engine>()?
            .pause_run(RunId(id))
            .await
            .gql()?
            .into())
    }

    /// Resumes a paused run. Idempotent.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn resume_run(&self, ctx: &Context<'_>, id: Uuid) -> Result<Run> {
        Ok(ctx
            .data::<Engine>()?
            .resume_run(RunId(id))
            .await
            .gql()?
            .into())
    }

    /// Cancels a run, aborting its in-flight step. Idempotent.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn cancel_run(&self, ctx: &Context<'_>, id: Uuid) -> Result<Run> {
        Ok(ctx
            .data::<Engine>()?
            .cancel_run(RunId(id))
            .await
            .gql()?
            .into())
    }

    /// Retries a FAILED or TIMED_OUT run from its failed step: completed steps keep
    /// their results and are not run again; the failed steps run again. The run goes
    /// back to QUEUED with a fresh deadline; any other state is a CONFLICT.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn retry_run(&self, ctx: &Context<'_>, id: Uuid) -> Result<Run> {
        Ok(ctx
            .data::<Engine>()?
            .retry_run(RunId(id))
            .await
            .gql()?
            .into())
    }

    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn approve(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        comment: Option<String>,
    ) -> Result<Approval> {
        decide(ctx, id, Decision::Approve, comment).await
    }

    /// Rejects; the run receives the rejection (with the comment) as the tool's result.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn reject(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        comment: Option<String>,
    ) -> Result<Approval> {
        decide(ctx, id, Decision::Reject, comment).await
    }

    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn answer_question(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        answer: String,
    ) -> Result<Question> {
        let by = super::actor(ctx);
        let q = ctx
            .data::<Engine>()?
            .answer_question(QuestionId(id), &answer, &by)
            .await
            .gql()?;
        Ok(q.into())
    }

    /// Answers a run's pending tool call that waits for a person (`ask_human`), by the
    /// call's id. A result for an id that is not a pending call of the run is refused
    /// (CONFLICT, naming the pending ids) and the refusal is recorded in the run's log.
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn submit_tool_result(
        &self,
        ctx: &Context<'_>,
        run_id: Uuid,
        tool_call_id: String,
        result: String,
    ) -> Result<Question> {
        let by = super::actor(ctx);
        let q = ctx
            .data::<Engine>()?
            .submit_tool_result(RunId(run_id), &tool_call_id, &result, &by)
            .await
            .gql()?;
        Ok(q.into())
    }

    /// Validates a team document (YAML or JSON) and stores it as the team's next version.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn apply_team(&self, ctx: &Context<'_>, spec: String) -> Result<TeamApplied> {
        let (team, changed) = ctx.data::<Engine>()?.apply_team(&spec).await.gql()?;
        Ok(TeamApplied {
            team: team.into(),
            changed,
        })
    }
}

async fn decide(
    ctx: &Context<'_>,
    id: Uuid,
    decision: Decision,
    comment: Option<String>,
) -> Result<Approval> {
    let by = super::actor(ctx);
    let engine = ctx.data::<Engine>()?;
    let a = engine
        .decide_approval(ApprovalId(id), decision, &by, comment.as_deref())
        .await
        .gql()?;
    Ok(a.into())
}

/// VALIDATION_FAILED for an input the engine never saw.
fn invalid(message: impl Into<String>) -> async_graphql::Error {
    super::error::to_gql(aiops_engine::Error::Invalid(message.into()))
}

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
    /// Workflow to run; see `workflows`.
    #[graphql(default = "script")]
    pub workflow: String,
    pub input: Json<serde_json::Value>,
    /// Starting twice with the same key returns the first run.
    pub idempotency_key: Option<String>,
    /// Run deadline; default 300, at most 1800.
    #[graphql(validator(minimum = 1, maximum = 1800))]
    pub timeout_seconds: Option<i32>,
}

#[Object]
impl MutationRoot {
    #[graphql(guard = "RoleGuard(Role::Operator)")]
    async fn start_run(&self, ctx: &Context<'_>, input: StartRunInput) -> Result<Run> {
        let mut req = StartRun::new(input.workflow, input.input.0);
        req.trigger = aiops_engine::Trigger::Api;
        req.idempotency_key = input.idempotency_key;
        req.timeout = input.timeout_seconds.map(|s| Duration::from_secs(s as u64));
        Ok(ctx.data::<Engine>()?.start_run(req).await.gql()?.into())
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

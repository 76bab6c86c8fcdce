//! Queries: a few lines each — parse, call the engine, convert.

use aiops_engine::model::Approval as ApprovalRecord;
use aiops_engine::model::Question as QuestionRecord;
use aiops_engine::model::Team as TeamRecord;
use aiops_engine::model::{Run as RunRecord, RunFilter};
use aiops_engine::{ApprovalId, Engine, QuestionId, RunId};
use async_graphql::{Context, InputObject, Json, Object, Result};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::auth::RoleGuard;
use super::connection::{self, CountedConnection, UncountedConnection};
use super::error::ToGql;
use super::types::{Approval, Question, Run, RunStatus, Team, TeamValidation, Trigger, Violation};
use aiops_engine::auth::Role;

#[derive(Default)]
pub struct QueryRoot;

/// Filters for `runs`; all optional and combined with AND.
#[derive(InputObject, Default)]
pub struct RunFilterInput {
    pub statuses: Option<Vec<RunStatus>>,
    pub team_id: Option<Uuid>,
    pub trigger: Option<Trigger>,
    /// The schedule or notification id that started the run.
    pub trigger_id: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

impl RunFilterInput {
    /// The same filter applied to one run (for live updates).
    pub fn matches(&self, run: &aiops_engine::model::Run) -> bool {
        let status = RunStatus::from(run.status);
        self.statuses.as_ref().is_none_or(|s| s.contains(&status))
            && self
                .team_id
                .is_none_or(|t| run.team_id.map(|x| x.0) == Some(t))
            && self.trigger.is_none_or(|t| Trigger::from(run.trigger) == t)
            && self
                .trigger_id
                .as_ref()
                .is_none_or(|t| run.trigger_id.as_ref() == Some(t))
            && self.created_after.is_none_or(|t| run.created_at >= t)
            && self.created_before.is_none_or(|t| run.created_at < t)
    }
}

impl From<RunFilterInput> for RunFilter {
    fn from(f: RunFilterInput) -> Self {
        RunFilter {
            statuses: f
                .statuses
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            team_id: f.team_id.map(Into::into),
            trigger: f.trigger.map(Into::into),
            trigger_id: f.trigger_id,
            created_after: f.created_after,
            created_before: f.created_before,
        }
    }
}

#[Object]
impl QueryRoot {
    /// Always "ok": answers without authentication.
    async fn health(&self) -> &'static str {
        "ok"
    }

    /// The workflows this server can run.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn workflows(&self, ctx: &Context<'_>) -> Result<Vec<WorkflowInfo>> {
        Ok(ctx
            .data::<Engine>()?
            .workflows()
            .describe()
            .into_iter()
            .map(|(name, info)| WorkflowInfo {
                name,
                description: info.description,
                input_schema: Json(info.input_schema),
            })
            .collect())
    }

    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn run(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Run>> {
        Ok(ctx
            .data::<Engine>()?
            .run(RunId(id))
            .await
            .gql_optional()?
            .map(Run::from))
    }

    /// Runs, newest first, as a Relay connection with keyset pagination (no
    /// `totalCount`: the table grows without bound).
    #[graphql(
        guard = "RoleGuard(Role::Viewer)",
        complexity = "connection::complexity(first, child_complexity)"
    )]
    async fn runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
        filter: Option<RunFilterInput>,
    ) -> Result<UncountedConnection<Run>> {
        let request = connection::request::<RunRecord>(ctx, first, after.as_deref())?;
        let filter = RunFilter::from(filter.unwrap_or_default());
        let page = ctx
            .data::<Engine>()?
            .list_runs(&filter, &request)
            .await
            .gql()?;
        let mut runs = connection::uncounted(page);
        prefetch(ctx, runs.edges.iter_mut().map(|e| &mut e.node).collect()).await?;
        Ok(runs)
    }

    /// Approvals waiting for a decision, oldest first.
    #[graphql(
        guard = "RoleGuard(Role::Viewer)",
        complexity = "connection::complexity(first, child_complexity)"
    )]
    async fn pending_approvals(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
    ) -> Result<CountedConnection<Approval>> {
        let request = connection::request::<ApprovalRecord>(ctx, first, after.as_deref())?;
        let page = ctx
            .data::<Engine>()?
            .pending_approvals(&request)
            .await
            .gql()?;
        Ok(connection::counted(page))
    }

    /// An approval, or null if there is none with this id.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn approval(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Approval>> {
        Ok(ctx
            .data::<Engine>()?
            .approval(ApprovalId(id))
            .await
            .gql_optional()?
            .map(Approval::from))
    }

    /// Questions waiting for an answer, oldest first.
    #[graphql(
        guard = "RoleGuard(Role::Viewer)",
        complexity = "connection::complexity(first, child_complexity)"
    )]
    async fn pending_questions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
    ) -> Result<CountedConnection<Question>> {
        let request = connection::request::<QuestionRecord>(ctx, first, after.as_deref())?;
        let page = ctx
            .data::<Engine>()?
            .pending_questions(&request)
            .await
            .gql()?;
        Ok(connection::counted(page))
    }

    /// A question, or null if there is none with this id.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn question(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Question>> {
        Ok(ctx
            .data::<Engine>()?
            .question(QuestionId(id))
            .await
            .gql_optional()?
            .map(Question::from))
    }

    /// A team at its latest version, or null if there is none with this name.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn team(&self, ctx: &Context<'_>, name: String) -> Result<Option<Team>> {
        Ok(ctx
            .data::<Engine>()?
            .team(&name)
            .await
            .gql_optional()?
            .map(Team::from))
    }

    /// Every team at its latest version, by name.
    #[graphql(
        guard = "RoleGuard(Role::Viewer)",
        complexity = "connection::complexity(first, child_complexity)"
    )]
    async fn teams(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
    ) -> Result<CountedConnection<Team>> {
        let request = connection::request::<TeamRecord>(ctx, first, after.as_deref())?;
        let page = ctx.data::<Engine>()?.teams(&request).await.gql()?;
        Ok(connection::counted(page))
    }

    /// Dry run of `applyTeam`: every violation of a team document (YAML or JSON), with
    /// paths. Teams may name the built-in models and the stored ones (`models`).
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn validate_team(&self, ctx: &Context<'_>, spec: String) -> Result<TeamValidation> {
        Ok(match ctx.data::<Engine>()?.validate_team(&spec).await {
            Ok(_) => TeamValidation {
                valid: true,
                violations: Vec::new(),
            },
            Err(aiops_engine::Error::Violations(violations)) => TeamValidation {
                valid: false,
                violations: violations
                    .into_iter()
                    .map(|v| Violation {
                        path: v.path,
                        message: v.message,
                    })
                    .collect(),
            },
            Err(e) => return Err(super::error::to_gql(e)),
        })
    }
}

/// A workflow the server can run.
#[derive(async_graphql::SimpleObject)]
pub struct WorkflowInfo {
    pub name: String,
    pub description: String,
    /// A JSON Schema of the input (`{}`: anything).
    pub input_schema: Json<serde_json::Value>,
}

/// Loads `stepCount` and `team` for a whole page in one query each, when selected:
/// listing 100 runs then costs the same handful of statements as listing 10.
async fn prefetch(ctx: &Context<'_>, mut page: Vec<&mut Run>) -> Result<()> {
    let node = ctx.look_ahead().field("edges").field("node");
    let engine = ctx.data::<Engine>()?;
    if node.field("stepCount").exists() {
        let ids: Vec<RunId> = page.iter().map(|r| RunId(r.id)).collect();
        let counts = engine.step_counts(&ids).await.gql()?;
        for run in &mut page {
            run.prefetched_step_count = Some(counts.get(&RunId(run.id)).copied().unwrap_or(0));
        }
    }
    if node.field("team").exists() {
        let versions: Vec<Uuid> = page.iter().filter_map(|r| r.team_version_id).collect();
        let teams = engine.teams_by_version(&versions).await.gql()?;
        for run in &mut page {
            run.prefetched_team = Some(run.team_version_id.and_then(|v| teams.get(&v).cloned()));
        }
    }
    Ok(())
}

//! Queries: a few lines each — parse, call the engine, convert.

use aiops_engine::store::runs::RunFilter;
use aiops_engine::topology::{self, Catalog};
use aiops_engine::{ApprovalId, Engine, QuestionId, RunId};
use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, InputObject, Object, Result};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::auth::RoleGuard;
use super::error::{BAD_REQUEST, ToGql};
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
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

impl RunFilterInput {
    /// The same filter applied to one run (for live updates).
    pub fn matches(&self, run: &aiops_engine::store::runs::Run) -> bool {
        let status = RunStatus::from(run.status);
        self.statuses.as_ref().is_none_or(|s| s.contains(&status))
            && self
                .team_id
                .is_none_or(|t| run.team_id.map(|x| x.0) == Some(t))
            && self.trigger.is_none_or(|t| Trigger::from(run.trigger) == t)
            && self.created_after.is_none_or(|t| run.created_at >= t)
            && self.created_before.is_none_or(|t| run.created_at < t)
    }
}

/// Opaque keyset cursor: `created_at` and id of the last run of a page.
fn encode_cursor(run: &Run) -> String {
    format!("{}|{}", run.created_at.timestamp_micros(), run.id)
}

fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, RunId)> {
    let bad = || async_graphql::Error::new(format!("invalid cursor {cursor:?}"));
    let (micros, id) = cursor.split_once('|').ok_or_else(bad)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    Ok((at, id.parse().map_err(|_| bad())?))
}

#[Object]
impl QueryRoot {
    /// Always "ok": answers without authentication.
    async fn health(&self) -> &'static str {
        "ok"
    }

    /// The workflows this server can run.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn workflows(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        Ok(ctx
            .data::<Engine>()?
            .workflows()
            .names()
            .map(str::to_owned)
            .collect())
    }

    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn run(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Run>> {
        match ctx.data::<Engine>()?.run(RunId(id)).await {
            Ok(run) => Ok(Some(run.into())),
            Err(aiops_engine::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(super::error::to_gql(e)),
        }
    }

    /// Runs, newest first, as a Relay connection with keyset pagination.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
        filter: Option<RunFilterInput>,
    ) -> Result<Connection<String, Run, EmptyFields, EmptyFields>> {
        let filter = filter.unwrap_or_default();
        let before = match &after {
            Some(c) => Some(decode_cursor(c).map_err(|e| {
                use async_graphql::ErrorExtensions;
                e.extend_with(|_, x| x.set("code", BAD_REQUEST))
            })?),
            None => None,
        };
        let query = RunFilter {
            statuses: filter
                .statuses
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            team_id: filter.team_id.map(Into::into),
            trigger: filter.trigger.map(Into::into),
            created_after: filter.created_after,
            created_before: filter.created_before,
            before,
        };
        let mut runs = ctx
            .data::<Engine>()?
            .list_runs(&query, first as u64 + 1)
            .await
            .gql()?;
        let has_next = runs.len() > first as usize;
        runs.truncate(first as usize);
        let mut page: Vec<Run> = runs.into_iter().map(Run::from).collect();
        prefetch(ctx, &mut page).await?;
        let mut conn = Connection::new(after.is_some(), has_next);
        conn.edges.extend(
            page.into_iter()
                .map(|run| Edge::new(encode_cursor(&run), run)),
        );
        Ok(conn)
    }

    /// Approvals waiting for a decision, oldest first.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn pending_approvals(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100, validator(minimum = 1, maximum = 500))] first: i32,
    ) -> Result<Vec<Approval>> {
        let list = ctx
            .data::<Engine>()?
            .pending_approvals(first as u64)
            .await
            .gql()?;
        Ok(list.into_iter().map(Approval::from).collect())
    }

    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn approval(&self, ctx: &Context<'_>, id: Uuid) -> Result<Approval> {
        Ok(ctx
            .data::<Engine>()?
            .approval(ApprovalId(id))
            .await
            .gql()?
            .into())
    }

    /// Questions waiting for an answer, oldest first.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn pending_questions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100, validator(minimum = 1, maximum = 500))] first: i32,
    ) -> Result<Vec<Question>> {
        let list = ctx
            .data::<Engine>()?
            .pending_questions(first as u64)
            .await
            .gql()?;
        Ok(list.into_iter().map(Question::from).collect())
    }

    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn question(&self, ctx: &Context<'_>, id: Uuid) -> Result<Question> {
        Ok(ctx
            .data::<Engine>()?
            .question(QuestionId(id))
            .await
            .gql()?
            .into())
    }

    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn team(&self, ctx: &Context<'_>, name: String) -> Result<Option<Team>> {
        match ctx.data::<Engine>()?.team(&name).await {
            Ok(team) => Ok(Some(team.into())),
            Err(aiops_engine::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(super::error::to_gql(e)),
        }
    }

    /// Dry run of `applyTeam`: every violation of a team document (YAML or JSON), with paths.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn validate_team(&self, spec: String) -> TeamValidation {
        match topology::parse_and_validate(&spec, &Catalog::builtin()) {
            Ok(_) => TeamValidation {
                valid: true,
                violations: Vec::new(),
            },
            Err(violations) => TeamValidation {
                valid: false,
                violations: violations
                    .into_iter()
                    .map(|v| Violation {
                        path: v.path,
                        message: v.message,
                    })
                    .collect(),
            },
        }
    }
}

/// Loads `stepCount` and `team` for a whole page in one query each, when selected:
/// listing 100 runs then costs the same handful of statements as listing 10.
async fn prefetch(ctx: &Context<'_>, page: &mut [Run]) -> Result<()> {
    let node = ctx.look_ahead().field("edges").field("node");
    let engine = ctx.data::<Engine>()?;
    if node.field("stepCount").exists() {
        let ids: Vec<RunId> = page.iter().map(|r| RunId(r.id)).collect();
        let counts = aiops_engine::store::steps::count_by_runs(engine.db(), &ids)
            .await
            .gql()?;
        for run in page.iter_mut() {
            run.prefetched_step_count = Some(counts.get(&RunId(run.id)).copied().unwrap_or(0));
        }
    }
    if node.field("team").exists() {
        let versions: Vec<Uuid> = page.iter().filter_map(|r| r.team_version_id).collect();
        let teams = aiops_engine::store::teams::by_version_ids(engine.db(), &versions)
            .await
            .gql()?;
        for run in page.iter_mut() {
            run.prefetched_team = Some(run.team_version_id.and_then(|v| teams.get(&v).cloned()));
        }
    }
    Ok(())
}

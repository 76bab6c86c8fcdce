//! The GraphQL schema (§9): queries, mutations and subscriptions over the engine.

pub mod auth;
pub mod connection;
pub mod error;
pub mod input_checks;
pub mod limits;
mod loaders;
mod mutation;
pub mod policy;
mod providers;
pub(crate) mod query;
mod receivers;
mod schedules;
mod sources;
mod subscription;
pub mod types;
mod webhooks;

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::{Context, MergedObject, Response, Schema};

pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use subscription::SubscriptionRoot;

#[derive(MergedObject, Default)]
pub struct Query(
    QueryRoot,
    auth::AuthQuery,
    sources::SourcesQuery,
    webhooks::WebhooksQuery,
    providers::ProvidersQuery,
    schedules::SchedulesQuery,
    receivers::ReceiversQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    MutationRoot,
    auth::AuthMutation,
    sources::SourcesMutation,
    webhooks::WebhooksMutation,
    providers::ProvidersMutation,
    schedules::SchedulesMutation,
    receivers::ReceiversMutation,
);

pub type AiopsSchema = Schema<Query, Mutation, SubscriptionRoot>;

pub use input_checks::MAX_DEPTH;
/// Most expensive query accepted (async-graphql's complexity: 1 per field by default).
pub const MAX_COMPLEXITY: usize = 1000;

/// Builds the schema with its limits; the engine and the model client are available
/// to every resolver.
pub fn schema(services: crate::Services, config: &crate::ApiConfig) -> AiopsSchema {
    let crate::Services { engine, llm } = services;
    let budgets = Arc::new(policy::Budgets::new(
        config.mutations_per_minute,
        config.login_attempts_per_minute,
    ));
    Schema::build(Query::default(), Mutation::default(), SubscriptionRoot)
        .data(budgets.clone())
        .data(DataLoader::new(
            loaders::StepCounts(engine.clone()),
            tokio::spawn,
        ))
        .data(DataLoader::new(
            loaders::TeamVersions(engine.clone()),
            tokio::spawn,
        ))
        .data(DataLoader::new(
            loaders::RunUsage(engine.clone()),
            tokio::spawn,
        ))
        .data(DataLoader::new(
            loaders::RunUsageBreakdowns(engine.clone()),
            tokio::spawn,
        ))
        .data(engine)
        .data(llm)
        // Depth is limited by the policy (which exempts introspection).
        .limit_complexity(MAX_COMPLEXITY)
        .extension(policy::RequestPolicy(budgets))
        .extension(ErrorCodes)
        .finish()
}

/// The SDL committed as `schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), SubscriptionRoot)
        .finish()
        .sdl()
}

/// Who is acting, for audit fields such as `decided_by`.
pub(crate) fn actor(ctx: &Context<'_>) -> String {
    auth::principal(ctx).map_or_else(|_| "unknown".to_owned(), |p| p.username.clone())
}

/// Gives every error that lacks one an `extensions.code` (parse and validation
/// errors come from async-graphql itself and are the client's fault).
struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

#[async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        error::ensure_code(&mut response.errors);
        response
    }
}

//! Subscriptions over WebSocket (`graphql-transport-ws` and legacy `graphql-ws`).

use aiops_engine::{Engine, RunId};
use async_graphql::{Context, Result, Subscription};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::auth::RoleGuard;
use super::error::to_gql;
use super::types::Event;
use aiops_engine::auth::Role;

pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Events of a run with `seq > afterSeq`: the stored ones first, then live ones,
    /// each exactly once and in order, also when another process writes them. A client
    /// that reconnects with the last seq it saw misses nothing. Ends after the run's
    /// final event.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn run_events(
        &self,
        ctx: &Context<'_>,
        run_id: Uuid,
        #[graphql(default = 0)] after_seq: i64,
    ) -> Result<impl Stream<Item = Result<Event>>> {
        let engine = ctx.data::<Engine>()?.clone();
        // Unknown runs fail at once instead of waiting forever.
        engine.run(RunId(run_id)).await.map_err(to_gql)?;
        Ok(engine
            .subscribe(RunId(run_id), after_seq)
            .map(|e| e.map(Event::from).map_err(to_gql)))
    }
}

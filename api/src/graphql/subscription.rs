//! Subscriptions over WebSocket (`graphql-transport-ws` and legacy `graphql-ws`).

use aiops_engine::{Engine, RunId};
use async_graphql::{Context, Result, Subscription};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::auth::RoleGuard;
use super::error::to_gql;
use super::query::RunFilterInput;
use super::types::{Approval, Event, Run};
use aiops_engine::EventKind;
use aiops_engine::auth::Role;
use aiops_engine::bus::BusMessage;
use std::collections::{HashMap, HashSet};
use tokio::sync::broadcast::error::RecvError;

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
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

    /// Runs whose status changed, as they change (optionally filtered). Best effort
    /// for a live view: reconcile with `runs` after reconnecting.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn run_updates(
        &self,
        ctx: &Context<'_>,
        filter: Option<RunFilterInput>,
    ) -> Result<impl Stream<Item = Result<Run>>> {
        let engine = ctx.data::<Engine>()?.clone();
        let filter = filter.unwrap_or_default();
        let rx = engine.bus().receiver();
        let seen: HashMap<Uuid, aiops_engine::RunStatus> = HashMap::new();
        Ok(futures::stream::unfold(
            (engine, rx, seen, filter),
            |(engine, mut rx, mut seen, filter)| async move {
                loop {
                    let run_id = match rx.recv().await {
                        Ok(BusMessage::Event(e)) if changes_run_state(e.kind) => e.run_id,
                        Ok(BusMessage::Hint { run_id, .. }) => run_id,
                        Ok(_) | Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    };
                    let run = match engine.run(run_id).await {
                        Ok(run) => run,
                        Err(aiops_engine::Error::NotFound { .. }) => continue,
                        Err(e) => return Some((Err(to_gql(e)), (engine, rx, seen, filter))),
                    };
                    if seen.insert(run.id.0, run.status) == Some(run.status)
                        || !filter.matches(&run)
                    {
                        continue;
                    }
                    return Some((Ok(Run::from(run)), (engine, rx, seen, filter)));
                }
            },
        ))
    }

    /// Approvals as they are requested: the operator's inbox, live.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn approval_requested(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = Result<Approval>>> {
        let engine = ctx.data::<Engine>()?.clone();
        let rx = engine.bus().receiver();
        let sent: HashSet<Uuid> = HashSet::new();
        let queue: Vec<aiops_engine::store::approvals::Approval> = Vec::new();
        Ok(futures::stream::unfold(
            (engine, rx, sent, queue),
            |(engine, mut rx, mut sent, mut queue)| async move {
                loop {
                    if let Some(a) = queue.pop() {
                        if sent.insert(a.id.0) {
                            return Some((Ok(Approval::from(a)), (engine, rx, sent, queue)));
                        }
                        continue;
                    }
                    let run_id = match rx.recv().await {
                        Ok(BusMessage::Event(e)) if e.kind == EventKind::ApprovalRequested => {
                            e.run_id
                        }
                        // Another process wrote something for this run: it may be a request.
                        Ok(BusMessage::Hint { run_id, .. }) => run_id,
                        Ok(_) | Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    };
                    match engine.approvals_of_run(run_id).await {
                        Ok(list) => queue.extend(list.into_iter().filter(|a| {
                            a.status == aiops_engine::ApprovalStatus::Pending
                                && !sent.contains(&a.id.0)
                        })),
                        Err(e) => return Some((Err(to_gql(e)), (engine, rx, sent, queue))),
                    }
                }
            },
        ))
    }
}

/// Events written together with a run state change.
fn changes_run_state(kind: EventKind) -> bool {
    !matches!(
        kind,
        EventKind::StepStarted
            | EventKind::StepSucceeded
            | EventKind::StepFailed
            | EventKind::StepRetryScheduled
            | EventKind::LlmToken
            | EventKind::ToolCall
            | EventKind::ToolResult
    )
}

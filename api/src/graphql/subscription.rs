//! Subscriptions over WebSocket (`graphql-transport-ws` and legacy `graphql-ws`).

use std::collections::{HashMap, VecDeque};

use aiops_engine::store::approvals::Approval as ApprovalRecord;
use aiops_engine::store::runs::Run as RunRecord;
use aiops_engine::{Engine, RunId};
use async_graphql::{Context, Result, Subscription};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::auth::RoleGuard;
use super::error::to_gql;
use super::query::RunFilterInput;
use super::types::{Approval, Event, Run};
use aiops_engine::EventKind;
use aiops_engine::auth::Role;
use aiops_engine::bus::BusMessage;
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

    /// Runs whose status changed, as they change (optionally filtered). A live view:
    /// after a reconnect, reconcile with `runs`. While connected nothing is missed: when
    /// the server may have missed notifications (its LISTEN connection was re-made, or
    /// this subscription fell behind) it re-reads the runs that changed meanwhile.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn run_updates(
        &self,
        ctx: &Context<'_>,
        filter: Option<RunFilterInput>,
    ) -> Result<impl Stream<Item = Result<Run>>> {
        let state = RunUpdates {
            engine: ctx.data::<Engine>()?.clone(),
            rx: ctx.data::<Engine>()?.bus().receiver(),
            seen: Recent::new(RECENT_CAPACITY),
            filter: filter.unwrap_or_default(),
            queue: VecDeque::new(),
            synced_at: Utc::now(),
        };
        Ok(futures::stream::unfold(state, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        }))
    }

    /// Approvals as they are requested: the operator's inbox, live. Like `runUpdates`,
    /// it re-reads pending approvals when notifications may have been missed.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn approval_requested(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = Result<Approval>>> {
        let state = ApprovalRequests {
            engine: ctx.data::<Engine>()?.clone(),
            rx: ctx.data::<Engine>()?.bus().receiver(),
            sent: Recent::new(RECENT_CAPACITY),
            queue: VecDeque::new(),
            synced_at: Utc::now(),
        };
        Ok(futures::stream::unfold(state, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        }))
    }
}

/// How much a live view remembers of what it sent (to skip repeats); older entries
/// are forgotten, so a socket open for weeks does not grow.
const RECENT_CAPACITY: usize = 4096;
/// A re-read after a gap starts this long before the last one: commits carry the
/// committing process's clock, and notifications trail commits.
const RESYNC_MARGIN: chrono::Duration = chrono::Duration::seconds(10);
/// Most rows one re-read returns.
const RESYNC_LIMIT: u64 = 1000;

/// A map that keeps at most `capacity` entries, forgetting the oldest first.
struct Recent<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: std::hash::Hash + Eq + Clone, V> Recent<K, V> {
    fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

/// What a live view does with one bus message.
enum Wake {
    /// Look at this run.
    Run(RunId),
    /// Notifications may have been missed: re-read what changed since the last sync.
    Resync,
    Ignore,
    Closed,
}

fn wake(msg: std::result::Result<BusMessage, RecvError>, relevant: fn(EventKind) -> bool) -> Wake {
    match msg {
        Ok(BusMessage::Event(e)) if relevant(e.kind) => Wake::Run(e.run_id),
        // Another process wrote something for this run.
        Ok(BusMessage::Hint { run_id, .. }) => Wake::Run(run_id),
        Ok(BusMessage::Resync) | Err(RecvError::Lagged(_)) => Wake::Resync,
        Ok(_) => Wake::Ignore,
        Err(RecvError::Closed) => Wake::Closed,
    }
}

struct RunUpdates {
    engine: Engine,
    rx: tokio::sync::broadcast::Receiver<BusMessage>,
    /// The last status sent per run.
    seen: Recent<Uuid, aiops_engine::RunStatus>,
    filter: RunFilterInput,
    queue: VecDeque<RunRecord>,
    synced_at: DateTime<Utc>,
}

impl RunUpdates {
    async fn next(&mut self) -> Option<Result<Run>> {
        loop {
            if let Some(run) = self.queue.pop_front() {
                if self.seen.get(&run.id.0) == Some(&run.status) || !self.filter.matches(&run) {
                    continue;
                }
                self.seen.insert(run.id.0, run.status);
                return Some(Ok(Run::from(run)));
            }
            match wake(self.rx.recv().await, changes_run_state) {
                Wake::Run(id) => match self.engine.run(id).await {
                    Ok(run) => self.queue.push_back(run),
                    Err(aiops_engine::Error::NotFound { .. }) => {}
                    Err(e) => return Some(Err(to_gql(e))),
                },
                Wake::Resync => {
                    let since = self.synced_at - RESYNC_MARGIN;
                    self.synced_at = Utc::now();
                    match self.engine.runs_changed_since(since, RESYNC_LIMIT).await {
                        Ok(runs) => self.queue.extend(runs),
                        Err(e) => return Some(Err(to_gql(e))),
                    }
                }
                Wake::Ignore => {}
                Wake::Closed => return None,
            }
        }
    }
}

struct ApprovalRequests {
    engine: Engine,
    rx: tokio::sync::broadcast::Receiver<BusMessage>,
    sent: Recent<Uuid, ()>,
    queue: VecDeque<ApprovalRecord>,
    synced_at: DateTime<Utc>,
}

impl ApprovalRequests {
    async fn next(&mut self) -> Option<Result<Approval>> {
        loop {
            if let Some(a) = self.queue.pop_front() {
                if a.status != aiops_engine::ApprovalStatus::Pending
                    || self.sent.get(&a.id.0).is_some()
                {
                    continue;
                }
                self.sent.insert(a.id.0, ());
                return Some(Ok(Approval::from(a)));
            }
            let found = match wake(self.rx.recv().await, |k| k == EventKind::ApprovalRequested) {
                Wake::Run(run_id) => self.engine.approvals_of_run(run_id).await,
                Wake::Resync => {
                    let since = self.synced_at - RESYNC_MARGIN;
                    self.synced_at = Utc::now();
                    self.engine
                        .approvals_pending_since(since, RESYNC_LIMIT)
                        .await
                }
                Wake::Ignore => continue,
                Wake::Closed => return None,
            };
            match found {
                Ok(list) => self.queue.extend(list),
                Err(e) => return Some(Err(to_gql(e))),
            }
        }
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

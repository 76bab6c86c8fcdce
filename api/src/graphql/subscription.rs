//! Subscriptions over WebSocket (`graphql-transport-ws` and legacy `graphql-ws`).

use std::collections::{HashMap, VecDeque};

use aiops_engine::model::Approval as ApprovalRecord;
use aiops_engine::model::Run as RunRecord;
use aiops_engine::{Engine, RunId};
use async_graphql::{Context, Result, Subscription};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::auth::RoleGuard;
use super::error::to_gql;
use super::query::RunFilterInput;
use super::types::{Approval, Event, LiveEvent, Run};
use aiops_engine::EventKind;
use aiops_engine::auth::Role;
use aiops_engine::{Change, Changes, Followed};

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Events of a run with `seq > afterSeq`: the stored ones first, then new ones as
    /// they commit, each exactly once and in order, also when another process writes
    /// them. A client that reconnects with the last seq it saw misses nothing. Ends
    /// after the run's final event.
    ///
    /// With `live` (the default), live-only events (`LLM_TOKEN`: a model's text as it
    /// is produced) are interleaved once the history is caught up, marked
    /// `live: true`. They are never stored: a reconnect does not replay them, and a
    /// subscriber that falls behind misses some.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn run_events(
        &self,
        ctx: &Context<'_>,
        run_id: Uuid,
        #[graphql(default = 0)] after_seq: i64,
        #[graphql(default = true)] live: bool,
    ) -> Result<impl Stream<Item = Result<Event>>> {
        let engine = ctx.data::<Engine>()?.clone();
        // Unknown runs fail at once instead of waiting forever.
        engine.run(RunId(run_id)).await.map_err(to_gql)?;
        let mut last_seq = after_seq;
        Ok(engine
            .subscribe_with_live(RunId(run_id), after_seq)
            .filter_map(move |item| {
                let item = match item {
                    Ok(Followed::Stored(e)) => {
                        last_seq = e.seq;
                        Some(Ok(Event::from(e)))
                    }
                    Ok(Followed::Live(e)) => live.then(|| Ok(Event::from_live(&e, last_seq))),
                    Err(e) => Some(Err(to_gql(e))),
                };
                futures::future::ready(item)
            }))
    }

    /// Only the live-only events of a run (`LLM_TOKEN`: a model's text as it is
    /// produced), from now on: they are never stored, so nothing is replayed and a
    /// client that falls behind misses some. `runEvents` carries them too, among the
    /// stored ones.
    #[graphql(guard = "RoleGuard(Role::Viewer)")]
    async fn run_live(
        &self,
        ctx: &Context<'_>,
        run_id: Uuid,
    ) -> Result<impl Stream<Item = LiveEvent>> {
        let engine = ctx.data::<Engine>()?.clone();
        engine.run(RunId(run_id)).await.map_err(to_gql)?;
        Ok(engine
            .subscribe_live(RunId(run_id))
            .map(|e| LiveEvent::from(&*e)))
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
        let engine = ctx.data::<Engine>()?.clone();
        let state = RunUpdates {
            feed: Feed::new(&engine),
            engine,
            seen: Recent::new(RECENT_CAPACITY),
            filter: filter.unwrap_or_default(),
            queue: VecDeque::new(),
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
        let engine = ctx.data::<Engine>()?.clone();
        let state = ApprovalRequests {
            feed: Feed::new(&engine),
            engine,
            sent: Recent::new(RECENT_CAPACITY),
            queue: VecDeque::new(),
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

/// What a live view should read next.
enum Look {
    Run(RunId),
    /// Everything changed at or after this time.
    Since(DateTime<Utc>),
}

/// How long a live view waits before reading again after the database failed it.
const RETRY_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(1);

/// The notifications a live view follows, and its record of how far it has read.
/// A read that fails (the database is away) is not reported to the client: the view
/// reads everything since its last good sync again a moment later.
struct Feed {
    changes: Changes,
    synced_at: DateTime<Utc>,
    /// When a re-read that began is confirmed, `synced_at` becomes this.
    reading_since: Option<DateTime<Utc>>,
    resync_due: Option<tokio::time::Instant>,
}

impl Feed {
    fn new(engine: &Engine) -> Self {
        Self {
            changes: engine.changes(),
            synced_at: Utc::now(),
            reading_since: None,
            resync_due: None,
        }
    }

    async fn next(&mut self, relevant: fn(EventKind) -> bool) -> Option<Look> {
        loop {
            let change = match self.resync_due {
                Some(at) => tokio::select! {
                    c = self.changes.next() => c,
                    _ = tokio::time::sleep_until(at) => return Some(self.begin_resync()),
                },
                None => self.changes.next().await,
            };
            match change? {
                Change::Event(e) if relevant(e.kind) => return Some(Look::Run(e.run_id)),
                Change::Event(_) => {}
                // Another process wrote something for this run.
                Change::Run(run_id) => return Some(Look::Run(run_id)),
                Change::Resync => return Some(self.begin_resync()),
            }
        }
    }

    fn begin_resync(&mut self) -> Look {
        self.resync_due = None;
        self.reading_since = Some(Utc::now());
        Look::Since(self.synced_at - RESYNC_MARGIN)
    }

    /// The re-read that began last succeeded.
    fn synced(&mut self) {
        if let Some(at) = self.reading_since.take() {
            self.synced_at = at;
        }
    }

    /// A read failed: read everything since the last good sync again soon.
    fn failed(&mut self, e: aiops_engine::Error) {
        tracing::warn!(error = %e, "live view could not read; retrying");
        self.reading_since = None;
        self.resync_due
            .get_or_insert_with(|| tokio::time::Instant::now() + RETRY_AFTER_FAILURE);
    }
}

struct RunUpdates {
    engine: Engine,
    feed: Feed,
    /// The last status sent per run.
    seen: Recent<Uuid, aiops_engine::RunStatus>,
    filter: RunFilterInput,
    queue: VecDeque<RunRecord>,
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
            match self.feed.next(changes_run_state).await? {
                Look::Run(id) => match self.engine.run(id).await {
                    Ok(run) => self.queue.push_back(run),
                    Err(aiops_engine::Error::NotFound { .. }) => {}
                    Err(e) => self.feed.failed(e),
                },
                Look::Since(since) => {
                    match self.engine.runs_changed_since(since, RESYNC_LIMIT).await {
                        Ok(runs) => {
                            self.queue.extend(runs);
                            self.feed.synced();
                        }
                        Err(e) => self.feed.failed(e),
                    }
                }
            }
        }
    }
}

struct ApprovalRequests {
    engine: Engine,
    feed: Feed,
    sent: Recent<Uuid, ()>,
    queue: VecDeque<ApprovalRecord>,
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
            let look = self
                .feed
                .next(|k| k == EventKind::ApprovalRequested)
                .await?;
            let found = match look {
                Look::Run(run_id) => self.engine.approvals_of_run(run_id).await,
                Look::Since(since) => {
                    let found = self
                        .engine
                        .approvals_pending_since(since, RESYNC_LIMIT)
                        .await;
                    if found.is_ok() {
                        self.feed.synced();
                    }
                    found
                }
            };
            match found {
                Ok(list) => self.queue.extend(list),
                Err(e) => self.feed.failed(e),
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

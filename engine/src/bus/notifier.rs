//! Announcing this process's commits to other processes (Postgres `NOTIFY`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::ControlSignal;
use crate::context::LiveEvent;
use crate::ids::RunId;
use crate::store;
use crate::store::Db;

/// What goes to other processes, through the notifier task.
pub(super) enum Remote {
    Hint(RunId, i64),
    Live(LiveEvent),
    /// Some run became runnable: other processes' workers should look.
    Wake,
    /// An operator's signal for the run's holder, wherever it runs.
    Control(RunId, ControlSignal),
}

/// Postgres caps a NOTIFY payload at 8000 bytes (the sender's mark comes on top).
const MAX_NOTIFY_PAYLOAD: usize = 7900;

/// A mark for this process's notifications: a UUID.
pub(super) fn new_origin() -> Arc<str> {
    uuid::Uuid::new_v4().to_string().into()
}

pub(super) fn is_origin(mark: &str) -> bool {
    mark.len() == 36 && uuid::Uuid::parse_str(mark).is_ok()
}

/// At most one notification of event hints per this much time. Each costs a
/// transaction, a signal to every listening session and a wake-up in every
/// process; a run alone commits a step every ~0.4 ms, and a hint per step added
/// ~0.4 ms to a 10-step run's 4–5 ms on two vCPUs (BENCHMARKS.md, issue 12). A
/// hint after a quiet spell still goes out at once; those within the spacing wait
/// for it, merged (a follower reads everything up to the hint's `seq` either way).
const HINT_SPACING: Duration = Duration::from_millis(5);

/// Coalesces hints and wake-ups and sends them with `pg_notify`: hints at most once
/// per [`HINT_SPACING`], wake-ups and control signals as they come, live events in
/// batches (a JSON array per notification). A hint or wake-up lost to a crash
/// between commit and notify is covered by subscribers' and workers' fallback
/// polling; live events are best effort by nature.
pub(super) async fn notifier(
    db: Db,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Remote>,
    origin: Arc<str>,
    sent: Arc<AtomicU64>,
) {
    let out = Outbox { db, origin, sent };
    let mut latest = HashMap::new();
    let mut live = Vec::new();
    let mut wake = false;
    let mut controls = Vec::new();
    let mut hints_sent: Option<Instant> = None;
    loop {
        let hints_due = (!latest.is_empty())
            .then(|| hints_sent.map(|at| at + HINT_SPACING))
            .flatten();
        let first = match hints_due {
            Some(due) => tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep_until(due.into()) => {
                    send_hints(&out, &mut latest).await;
                    hints_sent = Some(Instant::now());
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(first) = first else {
            // Every sender is gone: what is still held goes out.
            send_hints(&out, &mut latest).await;
            return;
        };
        let mut take = |m: Remote| match m {
            Remote::Wake => wake = true,
            Remote::Control(run, signal) => {
                controls.push(store::events::control_payload(run, signal))
            }
            Remote::Hint(run, seq) => {
                let e = latest.entry(run).or_insert(seq);
                *e = (*e).max(seq);
            }
            Remote::Live(event) => live.push(event),
        };
        take(first);
        while let Ok(m) = rx.try_recv() {
            take(m);
        }
        if hints_sent.is_none_or(|at| at.elapsed() >= HINT_SPACING) && !latest.is_empty() {
            send_hints(&out, &mut latest).await;
            hints_sent = Some(Instant::now());
        }
        for control in controls.drain(..) {
            out.send(store::events::CONTROL_CHANNEL, &control).await;
        }
        if std::mem::take(&mut wake) {
            out.send(store::events::WAKE_CHANNEL, "").await;
        }
        for batch in live_batches(std::mem::take(&mut live)) {
            out.send(store::events::LIVE_CHANNEL, &batch).await;
        }
    }
}

/// Sends the held hints (the latest `seq` of each run), as few notifications as
/// fit them.
async fn send_hints(out: &Outbox, latest: &mut HashMap<RunId, i64>) {
    let mut payload = String::new();
    for (run, seq) in latest.drain() {
        let hint = store::events::event_hint(run, seq);
        if !payload.is_empty() && payload.len() + hint.len() + 1 > MAX_NOTIFY_PAYLOAD {
            out.send(store::events::EVENTS_CHANNEL, &payload).await;
            payload.clear();
        }
        if !payload.is_empty() {
            payload.push(',');
        }
        payload.push_str(&hint);
    }
    if !payload.is_empty() {
        out.send(store::events::EVENTS_CHANNEL, &payload).await;
    }
}

/// Live events as JSON arrays that each fit one notification; an event too large
/// for one alone is dropped (live events are best effort).
fn live_batches(events: Vec<LiveEvent>) -> Vec<String> {
    let mut batches = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut size = 2;
    for e in events {
        let Ok(text) = serde_json::to_string(&e) else {
            continue;
        };
        if text.len() + 2 > MAX_NOTIFY_PAYLOAD {
            continue;
        }
        if size + text.len() + 1 > MAX_NOTIFY_PAYLOAD {
            batches.push(format!("[{}]", current.join(",")));
            current.clear();
            size = 2;
        }
        size += text.len() + 1;
        current.push(text);
    }
    if !current.is_empty() {
        batches.push(format!("[{}]", current.join(",")));
    }
    batches
}

/// Where notifications go out: this process's connection, its mark, and the
/// count of notifications sent (`EngineStats::notifications`).
struct Outbox {
    db: Db,
    origin: Arc<str>,
    sent: Arc<AtomicU64>,
}

impl Outbox {
    async fn send(&self, channel: &str, payload: &str) {
        let payload = format!("{}|{payload}", self.origin);
        self.sent.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = store::events::notify_now(&self.db, channel, &payload).await {
            tracing::warn!(error = %e, channel, "could not notify other processes");
        }
    }
}

//! In-process fan-out of committed events and control signals, fed by this
//! process's own commits and, on Postgres, by LISTEN/NOTIFY from other processes.
//!
//! The bus is best effort: `subscribe` turns it into a gap-free, duplicate-free
//! stream by numbering (`seq`) and by reading the database whenever the bus cannot
//! prove it delivered everything.

use std::sync::Arc;
use std::time::Duration;

use crate::store::Db;
use futures::{Stream, StreamExt};
use tokio::sync::broadcast;

use crate::Result;
use crate::context::LiveEvent;
use crate::event::Event;
use crate::ids::RunId;
use crate::store;

/// One message on the bus.
#[derive(Clone, Debug)]
pub enum BusMessage {
    /// Committed in this process: the event itself.
    Event(Arc<Event>),
    /// Committed elsewhere: the run has events up to `last_seq`.
    Hint { run_id: RunId, last_seq: i64 },
    /// An operator asked a run to stop (`cancel`) or pause at its next step boundary.
    Control {
        run_id: RunId,
        signal: ControlSignal,
    },
    /// Some run became runnable.
    Wake,
    /// Notifications from other processes may have been missed (the LISTEN
    /// connection was re-established): every subscriber re-reads the database.
    Resync,
    /// A live-only event (an LLM token): never stored.
    Live(Arc<LiveEvent>),
}

/// What goes to other processes, through the notifier task.
enum Remote {
    Hint(RunId, i64),
    Live(LiveEvent),
    /// Some run became runnable: other processes' workers should look.
    Wake,
    /// An operator's signal for the run's holder, wherever it runs.
    Control(RunId, ControlSignal),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlSignal {
    Pause,
    /// A pause requested of a running run was withdrawn before it took effect.
    Unpause,
    Cancel,
}

impl ControlSignal {
    pub fn as_str(self) -> &'static str {
        match self {
            ControlSignal::Pause => "pause",
            ControlSignal::Unpause => "unpause",
            ControlSignal::Cancel => "cancel",
        }
    }
}

#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<BusMessage>,
    /// On Postgres: hints and live events for other processes, sent by the notifier.
    remote: Option<tokio::sync::mpsc::UnboundedSender<Remote>>,
    /// This process's mark on its notifications, so that its own listener skips
    /// them: what they announce was published here already.
    origin: Arc<str>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus for this process only (SQLite: one process serves).
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(16 * 1024);
        Self {
            tx,
            remote: None,
            origin: new_origin(),
        }
    }

    /// A bus that also announces committed events to other processes with
    /// `NOTIFY aiops_events`. Notifying happens after the commit and outside it: a
    /// NOTIFY inside the transaction would hold Postgres's global notify lock through
    /// the commit's WAL flush and serialise every checkpoint commit.
    pub fn with_postgres_notifier(db: Db) -> Self {
        let (tx, _) = broadcast::channel(16 * 1024);
        let (remote, rx) = tokio::sync::mpsc::unbounded_channel();
        let origin = new_origin();
        tokio::spawn(notifier(db, rx, origin.clone()));
        Self {
            tx,
            remote: Some(remote),
            origin,
        }
    }

    /// What a notification announces, unless this process sent it. Notifications
    /// carry their sender's mark (`origin|payload`); one without a mark (an older
    /// version's) is taken as another process's.
    pub(crate) fn foreign<'a>(&self, payload: &'a str) -> Option<&'a str> {
        match payload.split_once('|') {
            Some((origin, _)) if origin == &*self.origin => None,
            Some((origin, rest)) if is_origin(origin) => Some(rest),
            _ => Some(payload),
        }
    }

    pub fn publish(&self, msg: BusMessage) {
        // No receiver is fine: nobody is listening right now.
        let _ = self.tx.send(msg);
    }

    /// Publishes committed events here and, on Postgres, hints them to other processes.
    pub fn publish_events(&self, events: &[Event]) {
        for e in events {
            self.publish(BusMessage::Event(Arc::new(e.clone())));
        }
        if let (Some(remote), Some(last)) = (&self.remote, events.last()) {
            let _ = remote.send(Remote::Hint(last.run_id, last.seq));
        }
    }

    /// Tells other processes' workers (Postgres) that a run became runnable, after
    /// the commit that made it so: a NOTIFY inside that transaction would hold the
    /// global notify lock through its WAL flush and serialise concurrent starts.
    pub fn announce_wake(&self) {
        if let Some(remote) = &self.remote {
            let _ = remote.send(Remote::Wake);
        }
    }

    /// Signals a run's holder, here at once and in other processes (Postgres) after
    /// the commit that decided it, for the reason given at [`EventBus::announce_wake`].
    /// A signal lost to a crash is covered by the fence: the holder's lease is revoked
    /// or its pause flag set in the database, which its next write or heartbeat reads.
    pub fn announce_control(&self, run_id: RunId, signal: ControlSignal) {
        if let Some(remote) = &self.remote {
            let _ = remote.send(Remote::Control(run_id, signal));
        }
        self.publish(BusMessage::Control { run_id, signal });
    }

    /// Publishes a live-only event here and, on Postgres, to other processes.
    pub fn publish_live(&self, event: LiveEvent) {
        if let Some(remote) = &self.remote {
            let _ = remote.send(Remote::Live(event.clone()));
        }
        self.publish(BusMessage::Live(Arc::new(event)));
    }

    pub fn receiver(&self) -> broadcast::Receiver<BusMessage> {
        self.tx.subscribe()
    }
}

/// Postgres caps a NOTIFY payload at 8000 bytes (the sender's mark comes on top).
const MAX_NOTIFY_PAYLOAD: usize = 7900;

/// A mark for this process's notifications: a UUID.
fn new_origin() -> Arc<str> {
    uuid::Uuid::new_v4().to_string().into()
}

fn is_origin(mark: &str) -> bool {
    mark.len() == 36 && uuid::Uuid::parse_str(mark).is_ok()
}

/// Coalesces hints and wake-ups and sends them with `pg_notify`, as fast as they
/// come, and live events in batches (a JSON array per notification). A hint or
/// wake-up lost to a crash between commit and notify is covered by subscribers' and
/// workers' fallback polling; live events are best effort by nature.
async fn notifier(db: Db, mut rx: tokio::sync::mpsc::UnboundedReceiver<Remote>, origin: Arc<str>) {
    let mut latest = std::collections::HashMap::new();
    let mut live = Vec::new();
    let mut wake = false;
    let mut controls = Vec::new();
    while let Some(first) = rx.recv().await {
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
        let mut payload = String::new();
        for (run, seq) in latest.drain() {
            let hint = store::events::event_hint(run, seq);
            if !payload.is_empty() && payload.len() + hint.len() + 1 > MAX_NOTIFY_PAYLOAD {
                send(&db, &origin, store::events::EVENTS_CHANNEL, &payload).await;
                payload.clear();
            }
            if !payload.is_empty() {
                payload.push(',');
            }
            payload.push_str(&hint);
        }
        if !payload.is_empty() {
            send(&db, &origin, store::events::EVENTS_CHANNEL, &payload).await;
        }
        for control in controls.drain(..) {
            send(&db, &origin, store::events::CONTROL_CHANNEL, &control).await;
        }
        if std::mem::take(&mut wake) {
            send(&db, &origin, store::events::WAKE_CHANNEL, "").await;
        }
        for batch in live_batches(std::mem::take(&mut live)) {
            send(&db, &origin, store::events::LIVE_CHANNEL, &batch).await;
        }
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

async fn send(db: &Db, origin: &str, channel: &str, payload: &str) {
    let payload = format!("{origin}|{payload}");
    if let Err(e) = store::events::notify_now(db, channel, &payload).await {
        tracing::warn!(error = %e, channel, "could not notify other processes");
    }
}

/// What happened to runs, as a live view needs it.
#[derive(Clone, Debug)]
pub enum Change {
    /// Committed in this process.
    Event(Arc<Event>),
    /// Another process committed events of this run.
    Run(RunId),
    /// Notifications may have been missed (a lost LISTEN connection, or this
    /// reader fell behind): re-read what matters from the database.
    Resync,
}

/// A reader of [`Change`]s; see [`crate::Engine::changes`].
pub struct Changes(broadcast::Receiver<BusMessage>);

impl Changes {
    pub(crate) fn new(rx: broadcast::Receiver<BusMessage>) -> Self {
        Self(rx)
    }

    /// The next change; `None` when the engine is gone.
    pub async fn next(&mut self) -> Option<Change> {
        loop {
            return match self.0.recv().await {
                Ok(BusMessage::Event(e)) => Some(Change::Event(e)),
                Ok(BusMessage::Hint { run_id, .. }) => Some(Change::Run(run_id)),
                Ok(BusMessage::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    Some(Change::Resync)
                }
                Ok(BusMessage::Control { .. } | BusMessage::Wake | BusMessage::Live(_)) => {
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => None,
            };
        }
    }
}

/// Live-only events of `run_id` from now on, as they come (none are stored, so
/// there is nothing to replay; a reader that falls behind skips what it missed).
pub fn subscribe_live(
    bus: &EventBus,
    run_id: RunId,
) -> impl Stream<Item = Arc<LiveEvent>> + Send + 'static + use<> {
    futures::stream::unfold(bus.receiver(), move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(BusMessage::Live(e)) if e.run_id == run_id => return Some((e, rx)),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// Page size when catching up from the database.
const REPLAY_PAGE: u64 = 500;

/// Events of `run_id` with `seq > after_seq`: first those already stored, then live
/// ones as they commit, each exactly once and in order. The stream ends after the
/// run's final event, unless the log goes on past it (a retried run). Delivery relies on the bus (which announces `Resync` whenever
/// it may have missed something); `fallback_poll` is a last-resort re-read.
pub fn subscribe(
    db: Db,
    bus: &EventBus,
    run_id: RunId,
    after_seq: i64,
    fallback_poll: Duration,
) -> impl Stream<Item = Result<Event>> + Send + 'static + use<> {
    followed(db, bus, run_id, after_seq, fallback_poll, false).filter_map(|item| async move {
        match item {
            Ok(Followed::Stored(e)) => Some(Ok(e)),
            Ok(Followed::Live(_)) => None,
            Err(e) => Some(Err(e)),
        }
    })
}

/// What following a run with its live events yields.
#[derive(Clone, Debug)]
pub enum Followed {
    /// A stored event, in `seq` order, each exactly once.
    Stored(Event),
    /// A live-only event (an LLM token) that arrived after every stored event
    /// yielded so far; missed ones are not replayed.
    Live(Arc<LiveEvent>),
}

/// [`subscribe`], with the run's live-only events interleaved where they happen.
/// They are delivered only once the stored history is caught up: replaying the
/// past has no tokens to show, and a lagging subscriber skips them.
pub fn subscribe_with_live(
    db: Db,
    bus: &EventBus,
    run_id: RunId,
    after_seq: i64,
    fallback_poll: Duration,
) -> impl Stream<Item = Result<Followed>> + Send + 'static + use<> {
    followed(db, bus, run_id, after_seq, fallback_poll, true)
}

fn followed(
    db: Db,
    bus: &EventBus,
    run_id: RunId,
    after_seq: i64,
    fallback_poll: Duration,
    with_live: bool,
) -> impl Stream<Item = Result<Followed>> + Send + 'static + use<> {
    // Subscribe before reading the database so nothing committed in between is lost.
    let rx = bus.receiver();
    futures::stream::unfold(
        Subscription {
            db,
            rx,
            run_id,
            last: after_seq,
            buffered: std::collections::VecDeque::new(),
            done: false,
            ending: false,
            caught_up: false,
            checked_final: false,
            fallback_poll,
            with_live,
        },
        |mut sub| async move {
            let item = sub.next().await?;
            Some((item, sub))
        },
    )
}

struct Subscription {
    db: Db,
    rx: broadcast::Receiver<BusMessage>,
    run_id: RunId,
    last: i64,
    buffered: std::collections::VecDeque<Event>,
    done: bool,
    /// The last event emitted was a final one (RUN_SUCCEEDED, …).
    ending: bool,
    caught_up: bool,
    /// Whether the first empty replay checked if the run had already ended.
    checked_final: bool,
    fallback_poll: Duration,
    /// Whether live-only events of the run are passed on.
    with_live: bool,
}

impl Subscription {
    async fn next(&mut self) -> Option<Result<Followed>> {
        loop {
            if let Some(e) = self.buffered.pop_front() {
                return Some(Ok(Followed::Stored(self.emit(e))));
            }
            if self.done {
                return None;
            }
            // The run's final event went out; end unless more follows it (a retry
            // re-queues a failed run and its log goes on).
            if self.ending {
                match self.catch_up().await {
                    Ok(true) => continue,
                    Ok(false) => {
                        self.done = true;
                        return None;
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            if !self.caught_up {
                match self.catch_up().await {
                    Ok(true) => continue,
                    Ok(false) => self.caught_up = true,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                // Nothing to replay: if the run has already ended and its log holds
                // nothing after `after_seq`, there is nothing to wait for.
                if !self.checked_final {
                    self.checked_final = true;
                    match store::runs::get(&self.db, self.run_id).await {
                        Ok(Some(run)) if run.status.is_terminal() && run.last_seq <= self.last => {
                            self.done = true;
                            return None;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            self.done = true;
                            return Some(Err(e));
                        }
                    }
                }
                continue;
            }
            match tokio::time::timeout(self.fallback_poll, self.rx.recv()).await {
                Ok(Ok(BusMessage::Event(e))) if e.run_id == self.run_id => {
                    if e.seq == self.last + 1 {
                        return Some(Ok(Followed::Stored(self.emit((*e).clone()))));
                    } else if e.seq > self.last {
                        self.caught_up = false;
                    }
                }
                Ok(Ok(BusMessage::Hint { run_id, last_seq })) if run_id == self.run_id => {
                    if last_seq > self.last {
                        self.caught_up = false;
                    }
                }
                Ok(Ok(BusMessage::Resync)) => self.caught_up = false,
                Ok(Ok(BusMessage::Live(e))) if self.with_live && e.run_id == self.run_id => {
                    return Some(Ok(Followed::Live(e)));
                }
                Ok(Ok(_)) => {}
                // Lagged behind the bus or no news for a while: the database knows.
                Ok(Err(broadcast::error::RecvError::Lagged(_))) | Err(_) => self.caught_up = false,
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            }
        }
    }

    fn emit(&mut self, e: Event) -> Event {
        self.last = e.seq;
        self.ending = e.kind.is_final();
        e
    }

    /// Reads one page of stored events after `last`; true when it found any.
    async fn catch_up(&mut self) -> Result<bool> {
        let page = store::events::list_after(&self.db, self.run_id, self.last, REPLAY_PAGE).await?;
        let found = !page.is_empty();
        self.buffered.extend(page);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process skips its own notifications and reads everyone else's, marked or not.
    #[test]
    fn own_notifications_are_skipped() {
        let here = EventBus::new();
        let there = EventBus::new();
        let hint = "0193a8f0-0000-7000-8000-000000000001:7";
        assert_eq!(here.foreign(&format!("{}|{hint}", here.origin)), None);
        assert_eq!(
            here.foreign(&format!("{}|{hint}", there.origin)),
            Some(hint)
        );
        // Unmarked (an older version's), and JSON that happens to hold a '|'.
        assert_eq!(here.foreign(hint), Some(hint));
        let live = r#"[{"text":"a|b"}]"#;
        assert_eq!(here.foreign(live), Some(live));
    }
}

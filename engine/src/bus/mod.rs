//! In-process fan-out of committed events and control signals, fed by this
//! process's own commits and, on Postgres, by LISTEN/NOTIFY from other processes.
//!
//! Three audiences, each with its own channel so nobody wakes for news that is not
//! theirs: followers of one run (`topics`: a run's events, hints and live tokens),
//! live views of all runs (`changes`), and workers (`controls`: cancel and pause).
//!
//! The bus is best effort: `subscribe` turns it into a gap-free, duplicate-free
//! stream by numbering (`seq`) and by reading the database whenever the bus cannot
//! prove it delivered everything.

mod follow;
mod notifier;
mod topics;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::broadcast;

pub use follow::{Followed, subscribe, subscribe_live, subscribe_with_live};
use notifier::Remote;
use topics::{Follower, RunMessage, Topics};

use crate::context::LiveEvent;
use crate::event::Event;
use crate::ids::RunId;
use crate::store::Db;

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

/// Changes a live view may fall behind by before it re-reads the database.
const CHANGES_CAPACITY: usize = 16 * 1024;
/// Control signals a worker may fall behind by (the fence covers a missed one).
const CONTROLS_CAPACITY: usize = 1024;

#[derive(Clone)]
pub struct EventBus {
    topics: Topics,
    changes: broadcast::Sender<Change>,
    controls: broadcast::Sender<(RunId, ControlSignal)>,
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
        Self {
            topics: Topics::default(),
            changes: broadcast::channel(CHANGES_CAPACITY).0,
            controls: broadcast::channel(CONTROLS_CAPACITY).0,
            remote: None,
            origin: notifier::new_origin(),
        }
    }

    /// A bus that also announces committed events to other processes with
    /// `NOTIFY aiops_events`. Notifying happens after the commit and outside it: a
    /// NOTIFY inside the transaction would hold Postgres's global notify lock through
    /// the commit's WAL flush and serialise every checkpoint commit.
    pub fn with_postgres_notifier(db: Db, sent: Arc<AtomicU64>) -> Self {
        let (remote, rx) = tokio::sync::mpsc::unbounded_channel();
        let bus = Self {
            remote: Some(remote),
            ..Self::new()
        };
        tokio::spawn(notifier::notifier(db, rx, bus.origin.clone(), sent));
        bus
    }

    /// What a notification announces, unless this process sent it. Notifications
    /// carry their sender's mark (`origin|payload`); one without a mark (an older
    /// version's) is taken as another process's.
    pub(crate) fn foreign<'a>(&self, payload: &'a str) -> Option<&'a str> {
        match payload.split_once('|') {
            Some((origin, _)) if origin == &*self.origin => None,
            Some((origin, rest)) if notifier::is_origin(origin) => Some(rest),
            _ => Some(payload),
        }
    }

    /// Publishes committed events here and, on Postgres, hints them to other processes.
    pub fn publish_events(&self, events: &[Event]) {
        let to_views = self.changes.receiver_count() > 0;
        for e in self.topics.send_events(events, to_views) {
            let _ = self.changes.send(Change::Event(e));
        }
        if let (Some(remote), Some(last)) = (&self.remote, events.last()) {
            let _ = remote.send(Remote::Hint(last.run_id, last.seq));
        }
    }

    /// Another process committed events of `run_id` up to `last_seq`.
    pub(crate) fn hint(&self, run_id: RunId, last_seq: i64) {
        self.topics.send(run_id, || RunMessage::Hint(last_seq));
        let _ = self.changes.send(Change::Run(run_id));
    }

    /// Notifications from other processes may have been missed (the LISTEN
    /// connection was re-established): every follower and live view re-reads the
    /// database.
    pub(crate) fn resync(&self) {
        self.topics.resync();
        let _ = self.changes.send(Change::Resync);
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
        self.control(run_id, signal);
    }

    /// Signals a run's holder in this process.
    pub(crate) fn control(&self, run_id: RunId, signal: ControlSignal) {
        let _ = self.controls.send((run_id, signal));
    }

    /// Publishes a live-only event here and, on Postgres, to other processes.
    pub fn publish_live(&self, event: LiveEvent) {
        if let Some(remote) = &self.remote {
            let _ = remote.send(Remote::Live(event.clone()));
        }
        self.live(event);
    }

    /// Passes a live-only event to the followers of its run in this process.
    pub(crate) fn live(&self, event: LiveEvent) {
        self.topics
            .send(event.run_id, || RunMessage::Live(Arc::new(event)));
    }

    /// Follows one run's events, hints and live tokens.
    pub(crate) fn follow(&self, run_id: RunId) -> Follower {
        self.topics.follow(run_id)
    }

    /// What happens to all runs, for live views.
    pub(crate) fn changes(&self) -> Changes {
        Changes(self.changes.subscribe())
    }

    /// Operators' signals, for the workers that hold the runs.
    pub(crate) fn controls(&self) -> broadcast::Receiver<(RunId, ControlSignal)> {
        self.controls.subscribe()
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
pub struct Changes(broadcast::Receiver<Change>);

impl Changes {
    /// The next change; `None` when the engine is gone.
    pub async fn next(&mut self) -> Option<Change> {
        match self.0.recv().await {
            Ok(change) => Some(change),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Change::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
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

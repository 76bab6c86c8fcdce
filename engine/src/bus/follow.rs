//! Following one run: its stored events replayed, then new ones as they commit,
//! gap-free and duplicate-free by `seq`, reading the database whenever the bus
//! cannot prove it delivered everything.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::broadcast;

use super::EventBus;
use super::topics::{Follower, RunMessage};
use crate::Result;
use crate::context::LiveEvent;
use crate::event::Event;
use crate::ids::RunId;
use crate::store;
use crate::store::Db;

/// Live-only events of `run_id` from now on, as they come (none are stored, so
/// there is nothing to replay; a reader that falls behind skips what it missed).
pub fn subscribe_live(
    bus: &EventBus,
    run_id: RunId,
) -> impl Stream<Item = Arc<LiveEvent>> + Send + 'static + use<> {
    futures::stream::unfold(bus.follow(run_id), move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(RunMessage::Live(e)) => return Some((e, rx)),
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
/// run's final event, unless the log goes on past it (a retried run). Delivery
/// relies on the bus (which announces `Resync` whenever it may have missed
/// something); `fallback_poll` is a last-resort re-read.
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
    let rx = bus.follow(run_id);
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
    rx: Follower,
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
                Ok(Ok(RunMessage::Event(e))) => {
                    if e.seq == self.last + 1 {
                        return Some(Ok(Followed::Stored(self.emit((*e).clone()))));
                    } else if e.seq > self.last {
                        self.caught_up = false;
                    }
                }
                Ok(Ok(RunMessage::Hint(last_seq))) => {
                    if last_seq > self.last {
                        self.caught_up = false;
                    }
                }
                Ok(Ok(RunMessage::Resync)) => self.caught_up = false,
                Ok(Ok(RunMessage::Live(e))) => {
                    if self.with_live {
                        return Some(Ok(Followed::Live(e)));
                    }
                }
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

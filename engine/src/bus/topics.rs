//! One channel per followed run, so a commit wakes only the followers of its run.
//!
//! With one process-wide channel every follower woke for every event of every run
//! and threw most away: 64 WebSocket followers at 20,000 events/s meant 1.3 M
//! wake-ups a second, the largest cost of delivering an event over WebSocket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use crate::context::LiveEvent;
use crate::event::Event;
use crate::ids::RunId;

/// What a run's followers hear.
#[derive(Clone, Debug)]
pub(crate) enum RunMessage {
    /// Committed in this process.
    Event(Arc<Event>),
    /// Committed elsewhere: the run has events up to this seq.
    Hint(i64),
    /// A live-only event (an LLM token): never stored.
    Live(Arc<LiveEvent>),
    /// Something may have been missed: read the database.
    Resync,
}

/// Messages a run's channel holds for a slow follower. One that falls further
/// behind reads the database instead (events are numbered, so nothing is lost);
/// a channel allocates its capacity up front (slots of a few dozen bytes), so it
/// stays small.
const RUN_CAPACITY: usize = 256;

/// The followed runs' channels; a run's channel lives while someone follows it.
#[derive(Clone, Default)]
pub(crate) struct Topics(Arc<Mutex<HashMap<RunId, broadcast::Sender<RunMessage>>>>);

impl Topics {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, broadcast::Sender<RunMessage>>> {
        // The map stays consistent whatever panicked while holding it.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows `run_id` from now on.
    pub(crate) fn follow(&self, run_id: RunId) -> Follower {
        let rx = self
            .map()
            .entry(run_id)
            .or_insert_with(|| broadcast::channel(RUN_CAPACITY).0)
            .subscribe();
        Follower {
            rx: Some(rx),
            run_id,
            topics: self.clone(),
        }
    }

    #[cfg(test)]
    fn followed(&self, run_id: RunId) -> bool {
        self.map().contains_key(&run_id)
    }

    /// Sends to the followers of `run_id`, if any.
    pub(crate) fn send(&self, run_id: RunId, msg: impl FnOnce() -> RunMessage) {
        if let Some(tx) = self.map().get(&run_id) {
            let _ = tx.send(msg());
        }
    }

    /// Sends committed events to their runs' followers under one lock, copying an
    /// event only when someone reads it; with `keep`, every event is copied and
    /// returned (for readers of all runs).
    pub(crate) fn send_events(&self, events: &[Event], keep: bool) -> Vec<Arc<Event>> {
        let map = self.map();
        let mut kept = Vec::new();
        for e in events {
            let tx = map.get(&e.run_id);
            if tx.is_none() && !keep {
                continue;
            }
            let shared = Arc::new(e.clone());
            if let Some(tx) = tx {
                let _ = tx.send(RunMessage::Event(shared.clone()));
            }
            if keep {
                kept.push(shared);
            }
        }
        kept
    }

    /// Tells every follower to read the database.
    pub(crate) fn resync(&self) {
        for tx in self.map().values() {
            let _ = tx.send(RunMessage::Resync);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

/// A follower of one run; its run's channel goes with its last follower.
pub(crate) struct Follower {
    /// Always `Some` until dropped: the receiver goes under the map's lock.
    rx: Option<broadcast::Receiver<RunMessage>>,
    run_id: RunId,
    topics: Topics,
}

impl Follower {
    pub(crate) async fn recv(&mut self) -> Result<RunMessage, broadcast::error::RecvError> {
        match &mut self.rx {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        // Followers come and go under the lock, so the last one out sees no receiver
        // left, however many leave at once.
        let mut map = self.topics.map();
        drop(self.rx.take());
        if map
            .get(&self.run_id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            map.remove(&self.run_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_run_s_followers_hear_only_their_run_and_its_channel_goes_with_the_last() {
        let topics = Topics::default();
        let a = RunId(uuid::Uuid::now_v7());
        let b = RunId(uuid::Uuid::now_v7());
        let mut first = topics.follow(a);
        let second = topics.follow(a);
        let mut other = topics.follow(b);
        assert_eq!(topics.len(), 2);
        topics.send(a, || RunMessage::Hint(3));
        topics.send(b, || RunMessage::Hint(9));
        topics.send(a, || RunMessage::Hint(4));
        assert!(matches!(first.recv().await, Ok(RunMessage::Hint(3))));
        assert!(matches!(first.recv().await, Ok(RunMessage::Hint(4))));
        assert!(matches!(other.recv().await, Ok(RunMessage::Hint(9))));
        drop(second);
        assert!(topics.followed(a), "one follower of `a` is left");
        drop(first);
        assert!(!topics.followed(a));
        topics.send(a, || unreachable!("nobody follows `a`: no message is made"));
        drop(other);
        assert_eq!(topics.len(), 0);
    }

    #[test]
    fn followers_leaving_at_once_leave_no_channel_behind() {
        let topics = Topics::default();
        let runs: Vec<RunId> = (0..4).map(|_| RunId(uuid::Uuid::now_v7())).collect();
        // The race this guards against is narrow: enough rounds to meet it.
        for _ in 0..1000 {
            let followers: Vec<Follower> = (0..16).map(|i| topics.follow(runs[i % 4])).collect();
            std::thread::scope(|scope| {
                for f in followers {
                    scope.spawn(move || drop(f));
                }
            });
            assert_eq!(topics.len(), 0);
        }
    }

    #[tokio::test]
    async fn a_follower_that_falls_behind_is_told_so() {
        let topics = Topics::default();
        let run = RunId(uuid::Uuid::now_v7());
        let mut slow = topics.follow(run);
        for seq in 0..(RUN_CAPACITY as i64 + 10) {
            topics.send(run, || RunMessage::Hint(seq));
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }
}

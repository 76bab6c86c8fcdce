//! News from other processes: LISTEN on Postgres, forwarded to this process's bus.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::bus::ControlSignal;
use crate::ids::RunId;
use crate::store::events::{CONTROL_CHANNEL, EVENTS_CHANNEL, LIVE_CHANNEL, WAKE_CHANNEL};
use crate::store::is_postgres;
use crate::store::listener::{Heard, Listener};

impl Engine {
    /// On Postgres, forwards notifications from other processes to this process's
    /// bus until `shutdown`; a no-op on SQLite. Reconnects after errors; missed
    /// notifications are covered by polling in workers and subscribers.
    pub async fn listen(self, shutdown: CancellationToken) {
        if !is_postgres(&self.inner.db) {
            return;
        }
        loop {
            let mut listener = match Listener::connect(&self.inner.db).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            };
            // Whatever was notified before this point may have been missed.
            self.resync();
            loop {
                let heard = tokio::select! {
                    h = listener.next() => h,
                    _ = shutdown.cancelled() => return,
                };
                match heard {
                    Ok(Heard::Notification { channel, payload }) => {
                        self.on_notification(&channel, &payload)
                    }
                    Ok(Heard::Reconnected) => {
                        tracing::warn!("LISTEN connection was lost and re-made; resynchronising");
                        self.resync();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reconnecting");
                        break;
                    }
                }
            }
        }
    }

    /// Tells everyone in this process who relies on notifications to re-read the
    /// database: subscribers catch up, live views re-read what changed, idle
    /// workers look for runnable runs.
    fn resync(&self) {
        self.inner.bus.resync();
        self.wake_workers();
    }

    fn on_notification(&self, channel: &str, payload: &str) {
        // This process's own notifications: what they say was published here at once.
        let Some(payload) = self.inner.bus.foreign(payload) else {
            return;
        };
        match channel {
            EVENTS_CHANNEL => {
                for hint in payload.split(',') {
                    if let Some((id, seq)) = hint.split_once(':')
                        && let (Ok(run_id), Ok(last_seq)) =
                            (id.parse::<RunId>(), seq.parse::<i64>())
                    {
                        self.inner.bus.hint(run_id, last_seq);
                    }
                }
            }
            CONTROL_CHANNEL => {
                let parsed = payload.split_once(':').and_then(|(signal, id)| {
                    let signal = match signal {
                        "cancel" => ControlSignal::Cancel,
                        "pause" => ControlSignal::Pause,
                        "unpause" => ControlSignal::Unpause,
                        _ => return None,
                    };
                    Some((signal, id.parse::<RunId>().ok()?))
                });
                if let Some((signal, run_id)) = parsed {
                    self.inner.bus.control(run_id, signal);
                }
            }
            WAKE_CHANNEL => self.wake_workers(),
            // Another process's live events: for this process's watchers only.
            LIVE_CHANNEL => {
                if let Ok(events) = serde_json::from_str::<Vec<crate::context::LiveEvent>>(payload)
                {
                    for e in events {
                        self.inner.bus.live(e);
                    }
                }
            }
            _ => {}
        }
    }
}

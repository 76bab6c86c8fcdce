//! Revocation of open sockets. A socket authenticates once, in `connection_init`; it
//! must still end when its API key is revoked or expires or its user is disabled,
//! whichever process made the change. Sockets register here by key; one task per
//! server asks the engine every [`REVALIDATE_EVERY`] which of the held keys are
//! still valid (one query for all of them) and revokes the sockets of the others.
//! The task runs only while a socket is registered and stops with the server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aiops_engine::{ApiKeyId, Engine};
use tokio_util::sync::CancellationToken;

/// How often open sockets' keys are checked: revocation takes effect within this.
pub(super) const REVALIDATE_EVERY: Duration = Duration::from_secs(2);

/// The registry of one server's sockets; cheap to clone.
#[derive(Clone)]
pub(crate) struct Sessions {
    inner: Arc<Mutex<Inner>>,
    engine: Engine,
    every: Duration,
    /// Cancelled when the server goes away: sockets close, the task stops.
    stopped: CancellationToken,
}

#[derive(Default)]
struct Inner {
    /// Sockets by the key they authenticated with; each holds its revocation token.
    by_key: HashMap<ApiKeyId, HashMap<u64, CancellationToken>>,
    next_socket: u64,
    /// Whether the revalidation task runs. Changed only under the lock, so a socket
    /// registering as the task decides to stop starts a new one.
    revalidating: bool,
    #[cfg(test)]
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A socket's place in the registry; leaving it (drop) unregisters the socket.
pub(super) struct Registration {
    sessions: Sessions,
    key: ApiKeyId,
    socket: u64,
    revoked: CancellationToken,
}

impl Registration {
    /// Resolves when the key is no longer valid.
    pub(super) async fn revoked(&self) {
        self.revoked.cancelled().await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.sessions.lock();
        if let Some(sockets) = inner.by_key.get_mut(&self.key) {
            sockets.remove(&self.socket);
            if sockets.is_empty() {
                inner.by_key.remove(&self.key);
            }
        }
    }
}

impl Sessions {
    pub(crate) fn new(engine: Engine, stopped: CancellationToken) -> Self {
        Self::with_interval(engine, stopped, REVALIDATE_EVERY)
    }

    fn with_interval(engine: Engine, stopped: CancellationToken, every: Duration) -> Self {
        Sessions {
            inner: Arc::default(),
            engine,
            every,
            stopped,
        }
    }

    /// Resolves when the server goes away.
    pub(super) async fn stopped(&self) {
        self.stopped.cancelled().await
    }

    /// Registers a socket authenticated with `key`, starting the revalidation task if
    /// it is not running.
    pub(super) fn register(&self, key: ApiKeyId) -> Registration {
        let revoked = CancellationToken::new();
        let mut inner = self.lock();
        let socket = inner.next_socket;
        inner.next_socket += 1;
        inner
            .by_key
            .entry(key)
            .or_default()
            .insert(socket, revoked.clone());
        if !inner.revalidating {
            inner.revalidating = true;
            let _task = tokio::spawn(self.clone().revalidate());
            #[cfg(test)]
            {
                inner.task = Some(_task);
            }
        }
        drop(inner);
        Registration {
            sessions: self.clone(),
            key,
            socket,
            revoked,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map stays consistent whatever panicked while holding it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn revalidate(self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = self.stopped.cancelled() => break,
            }
            let keys: Vec<ApiKeyId> = {
                let mut inner = self.lock();
                if inner.by_key.is_empty() {
                    inner.revalidating = false;
                    return;
                }
                inner.by_key.keys().copied().collect()
            };
            let active = match self.engine.active_api_keys(&keys).await {
                Ok(active) => active,
                Err(e) => {
                    // Sockets stay open through a database outage, as they would have
                    // without revalidation; the next round decides.
                    tracing::warn!(error = %e, "cannot revalidate WebSocket sessions");
                    continue;
                }
            };
            let mut inner = self.lock();
            for key in keys.iter().filter(|k| !active.contains(k)) {
                if let Some(sockets) = inner.by_key.remove(key) {
                    tracing::info!(api_key.id = %key, sockets = sockets.len(), "closing WebSockets of an invalid key");
                    sockets.values().for_each(CancellationToken::cancel);
                }
            }
        }
        self.lock().revalidating = false;
    }

    #[cfg(test)]
    fn take_task(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.lock().task.take()
    }
}

#[cfg(test)]
mod tests {
    use aiops_engine::auth::Role;
    use aiops_engine::{EngineOptions, database};

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    async fn engine(dir: &std::path::Path) -> Engine {
        let url = format!("sqlite://{}", dir.join("aiops.db").display());
        database::migrate(&url, "aiops test")
            .await
            .expect("migrate");
        Engine::connect(&url, EngineOptions::default())
            .await
            .expect("connect")
    }

    async fn key(engine: &Engine, name: &str) -> ApiKeyId {
        let user = engine
            .create_user(name, "twelve chars or more", Role::Viewer)
            .await
            .expect("user");
        engine
            .create_api_key(aiops_engine::Caller::Local, user.id, "test", None, None)
            .await
            .expect("key")
            .0
            .id
    }

    #[tokio::test]
    async fn revokes_invalid_keys_and_stops_when_idle() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = engine(dir.path()).await;
        let (kept, revoked) = (key(&engine, "kept").await, key(&engine, "gone").await);
        let sessions = Sessions::with_interval(
            engine.clone(),
            CancellationToken::new(),
            Duration::from_millis(50),
        );
        let a = sessions.register(kept);
        let b = sessions.register(revoked);
        let c = sessions.register(revoked);
        let task = sessions
            .take_task()
            .expect("the first socket starts the task");
        assert!(sessions.take_task().is_none(), "one task for all sockets");
        engine
            .revoke_api_key(aiops_engine::Caller::Local, revoked)
            .await
            .expect("revoke");
        tokio::time::timeout(WAIT, async { tokio::join!(b.revoked(), c.revoked()) })
            .await
            .expect("both sockets of the revoked key are told");
        assert!(!a.revoked.is_cancelled(), "a valid key stays");
        drop((a, b, c));
        tokio::time::timeout(WAIT, task)
            .await
            .expect("the task stops once no socket is open")
            .expect("task");
        // A later socket starts a new one.
        let _d = sessions.register(kept);
        assert!(sessions.take_task().is_some());
    }

    #[tokio::test]
    async fn stops_with_the_server() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = engine(dir.path()).await;
        let stopped = CancellationToken::new();
        let sessions = Sessions::with_interval(engine.clone(), stopped.clone(), REVALIDATE_EVERY);
        let _a = sessions.register(key(&engine, "open").await);
        let task = sessions.take_task().expect("task");
        stopped.cancel();
        tokio::time::timeout(WAIT, task)
            .await
            .expect("the task stops with the server")
            .expect("task");
    }
}

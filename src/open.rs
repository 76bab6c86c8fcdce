//! Opening the database for a command: the SQLite lock, migrations, the engine.

use aiops_engine::database::{self, LockAttempt, SqliteLock};
use aiops_engine::{Engine, EngineOptions};
use anyhow::Context;

/// How a command uses an SQLite database, which serves one process at a time.
#[derive(Clone, Copy, Debug)]
pub enum Access {
    /// Executes runs or migrates: refused while another process holds the database.
    Exclusive(&'static str),
    /// A short command (create a user, apply a team) that may work beside the server
    /// holding the database; it migrates only when nobody holds it.
    Shared(&'static str),
}

impl Access {
    fn holder(self) -> &'static str {
        match self {
            Access::Exclusive(h) | Access::Shared(h) => h,
        }
    }
}

/// An engine and, on SQLite, the lock that keeps other processes out.
pub struct Opened {
    pub engine: Engine,
    _lock: Option<SqliteLock>,
}

impl std::ops::Deref for Opened {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

/// Locks (SQLite), migrates, connects, and builds the engine.
pub async fn open_engine(
    url: &str,
    mut options: EngineOptions,
    access: Access,
) -> anyhow::Result<Opened> {
    let (lock, migrate) = match access {
        Access::Exclusive(holder) => (database::lock(url, holder)?, true),
        Access::Shared(holder) => match database::try_lock(url, holder)? {
            LockAttempt::Acquired(lock) => (Some(lock), true),
            LockAttempt::NotSqlite => (None, true),
            // The holder (a server) migrated it.
            LockAttempt::HeldBy { .. } => (None, false),
        },
    };
    options.application_name = access.holder().to_owned();
    if migrate {
        database::migrate(url, access.holder())
            .await
            .with_context(|| format!("opening {}", redact(url)))?;
    }
    let engine = Engine::connect(url, options)
        .await
        .with_context(|| format!("opening {}", redact(url)))?;
    Ok(Opened {
        engine,
        _lock: lock,
    })
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/aiops"),
            "postgres://app:***@db:5432/aiops"
        );
        assert_eq!(
            redact("sqlite://./data/aiops.db"),
            "sqlite://./data/aiops.db"
        );
        assert_eq!(redact("postgres://app@db/aiops"), "postgres://app@db/aiops");
    }
}

//! The database as the binary sees it: migrations, and the lock that keeps an SQLite
//! file to one process. Everything else goes through [`crate::Engine`].

mod sqlite_lock;

pub use sqlite_lock::{
    Attempt as LockAttempt, SqliteLock, acquire as lock, try_acquire as try_lock,
};

use crate::Result;

pub use crate::store::QUIET_DATABASE_LOGS;

/// Connects to `url` (creating an SQLite file and its directory, privately, when
/// missing) and applies every pending migration. `application_name` names the
/// sessions in Postgres's `pg_stat_activity`.
pub async fn migrate(url: &str, application_name: &str) -> Result<()> {
    let db = crate::store::connect_as(url, application_name).await?;
    crate::store::migrate(&db).await?;
    let _ = db.close().await;
    Ok(())
}

//! One process per SQLite database. SQLite has no notifications between processes,
//! so a second worker would never hear of a cancel or a pause made through the
//! server; two concurrent migrations could interleave. The process that executes
//! runs or migrates holds an exclusive lock on `<database>.lock` for its lifetime;
//! the operating system drops it when the process dies, however it dies.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Held for as long as it lives.
#[derive(Debug)]
pub struct SqliteLock {
    _file: File,
}

/// Where the lock of an SQLite URL lives; `None` for other databases.
fn lock_path(url: &str) -> Option<PathBuf> {
    crate::store::sqlite_path(url).map(|p| PathBuf::from(format!("{p}.lock")))
}

fn open(path: &PathBuf) -> Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map_err(|e| Error::Invalid(format!("cannot open lock file {}: {e}", path.display())))
}

/// Takes the database's lock for `holder` (e.g. "aiops serve"), or says who has it.
/// `Ok(None)` for databases other than SQLite, which need no lock.
pub fn acquire(url: &str, holder: &str) -> Result<Option<SqliteLock>> {
    match try_acquire(url, holder)? {
        Attempt::Acquired(lock) => Ok(Some(lock)),
        Attempt::NotSqlite => Ok(None),
        Attempt::HeldBy {
            path,
            holder: other,
        } => Err(Error::Invalid(format!(
            "the SQLite database is in use by another process ({other}; lock {}). SQLite serves \
             one aiops process at a time: stop the other process, or use Postgres to run \
             several (DATABASE_URL=postgres://…)",
            path.display()
        ))),
    }
}

/// The outcome of [`try_acquire`].
#[derive(Debug)]
pub enum Attempt {
    Acquired(SqliteLock),
    NotSqlite,
    HeldBy { path: PathBuf, holder: String },
}

/// Like [`acquire`], but a held lock is an answer, not an error: short commands
/// (creating a user, applying a team) may work beside the server that holds it.
pub fn try_acquire(url: &str, holder: &str) -> Result<Attempt> {
    let Some(path) = lock_path(url) else {
        return Ok(Attempt::NotSqlite);
    };
    if let Some(database) = crate::store::sqlite_path(url) {
        crate::store::create_sqlite_parent(Path::new(&database))?;
    }
    let mut file = open(&path)?;
    match file.try_lock() {
        Ok(()) => {
            // Who holds it, for the message another process prints.
            let _ = file.set_len(0);
            let _ = file.rewind();
            let _ = write!(file, "{holder} (pid {})", std::process::id());
            Ok(Attempt::Acquired(SqliteLock { _file: file }))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut other = String::new();
            let _ = file.read_to_string(&mut other);
            let other = if other.trim().is_empty() {
                "unknown process".to_owned()
            } else {
                other.trim().to_owned()
            };
            Ok(Attempt::HeldBy {
                path,
                holder: other,
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Invalid(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile_dir();
        let url = format!("sqlite://{}/aiops.db", dir.display());
        let first = acquire(&url, "aiops serve").unwrap();
        assert!(first.is_some());
        // A lock is per open file description, so a second open in this process
        // conflicts like another process would.
        let err = acquire(&url, "aiops worker").unwrap_err().to_string();
        assert!(err.contains("aiops serve (pid"), "{err}");
        assert!(err.contains("use Postgres"), "{err}");
        drop(first);
        assert!(acquire(&url, "aiops worker").unwrap().is_some());
        assert!(
            acquire("postgres://x@y/z", "aiops serve")
                .unwrap()
                .is_none()
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aiops-lock-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

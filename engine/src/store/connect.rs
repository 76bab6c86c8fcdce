//! Connecting: the pool for each backend, the SQLite file made private before SQLite
//! opens it, and connection failures said in words an operator can act on.

use std::path::Path;
use std::time::Duration;

use sea_orm::sqlx::{self, Connection};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use crate::{Error, Result};

/// How long a Postgres server has to answer the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Planner settings of every engine session on Postgres.
///
/// The hot-path statements are fixed and parameterised; re-planning them on every
/// execution (custom plans) costs more than executing them, so plans are generic and
/// cached per connection. A cached plan keeps the statistics of the moment it was
/// made: made while `runs` was young and not yet analysed (a new database), it
/// scanned the whole table for every checkpoint and claim until autovacuum's first
/// ANALYZE, minutes later (a bench of 6,400 runs on a new database: 3.4 ms per
/// single-run checkpoint instead of 0.6). Sequential scans are therefore only a last
/// resort: every hot statement looks its rows up by index whatever the table's size,
/// and a query that has no usable index still scans.
const PG_SESSION: [(&str, &str); 2] = [
    ("plan_cache_mode", "force_generic_plan"),
    ("enable_seqscan", "off"),
];

/// Connects to Postgres (`postgres://…`) or SQLite (`sqlite://path`), creating the
/// SQLite file and its directory when missing. On Postgres every session carries
/// `application_name` (which `pg_stat_activity` shows), so operators can tell the
/// processes apart.
pub(crate) async fn connect_as(url: &str, application_name: &str) -> Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10));
    if url.starts_with("sqlite:") {
        // Each connection to an in-memory database would see one of its own (the
        // checkpoint writer's is not the pool's), and nothing would outlive the process.
        let Some(path) = sqlite_path(url).filter(|_| !url.contains("mode=memory")) else {
            return Err(Error::Invalid(
                "an in-memory SQLite database is not supported: give a file, \
                 e.g. sqlite://data/aiops.db"
                    .into(),
            ));
        };
        create_private_file(Path::new(&path))?;
        opts.max_connections(8).map_sqlx_sqlite_opts(|o| {
            o.create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                // WAL + NORMAL is durable across process crashes; only an OS crash
                // may lose the last commits, the usual trade for an embedded store.
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    } else {
        // The pool retries a failing connection until its acquire timeout and then
        // says only "timed out": one connection first tells what is wrong, at once.
        probe_postgres(url).await?;
        // No ping before every checkout: it was one more round trip per commit (the
        // writer checks a connection out for each batch). A connection that died
        // fails its next statement instead, sqlx drops it, and callers retry as they
        // do for any outage.
        opts.max_connections(16)
            .min_connections(2)
            .test_before_acquire(false)
            .map_sqlx_postgres_opts({
                let application_name = application_name.to_owned();
                move |o| o.options(PG_SESSION).application_name(&application_name)
            });
    }
    Ok(Database::connect(opts).await?)
}

/// On Postgres, a small pool of its own for keeping leases (heartbeats): with
/// thousands of runs in flight the main pool has a queue, and a heartbeat waiting in
/// it past the lease's expiry would lose every run the worker holds. SQLite has one
/// writer either way: `None`.
pub(crate) async fn connect_leases(
    url: &str,
    application_name: &str,
) -> Result<Option<DatabaseConnection>> {
    if url.starts_with("sqlite:") {
        return Ok(None);
    }
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10))
        .max_connections(2)
        .min_connections(1)
        .map_sqlx_postgres_opts({
            let application_name = format!("{application_name} leases");
            move |o| o.options(PG_SESSION).application_name(&application_name)
        });
    Ok(Some(Database::connect(opts).await?))
}

/// Opens and closes one Postgres connection, turning a failure into
/// [`Error::Connect`] that names the server and the likely fix.
async fn probe_postgres(url: &str) -> Result<()> {
    let options: sqlx::postgres::PgConnectOptions = url.parse().map_err(|e| {
        Error::Connect(format!(
            "the database URL is not valid: {}",
            config_error(e)
        ))
    })?;
    let server = format!("{}:{}", options.get_host(), options.get_port());
    let connecting = sqlx::postgres::PgConnection::connect_with(&options);
    let connection = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => return Err(Error::Connect(explain(&e, &server, &options))),
        Err(_) => {
            return Err(Error::Connect(format!(
                "Postgres at {server} did not answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
    };
    let _ = connection.close().await;
    Ok(())
}

/// A connection failure in one sentence: what went wrong, where, and what to check.
/// Never the URL itself (it may hold a password).
fn explain(e: &sqlx::Error, server: &str, options: &sqlx::postgres::PgConnectOptions) -> String {
    let database = options.get_database().unwrap_or(options.get_username());
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused by {server}: is Postgres running and listening there?")
        }
        sqlx::Error::Io(io) => format!("cannot reach Postgres at {server}: {io}"),
        sqlx::Error::Tls(tls) => format!("TLS with Postgres at {server} failed: {tls}"),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("3D000") => format!(
                "database \"{database}\" does not exist on {server}: create it \
                 (createdb \"{database}\") or fix the database URL"
            ),
            Some("28P01" | "28000") => format!(
                "Postgres at {server} refused user \"{}\": {}",
                options.get_username(),
                db.message()
            ),
            _ => format!(
                "Postgres at {server} refused the connection: {}",
                db.message()
            ),
        },
        other => format!("cannot connect to Postgres at {server}: {other}"),
    }
}

fn config_error(e: sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

/// Creates `dir` (and missing parents) readable by its owner only (0700); an
/// existing directory is left as it is.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| Error::Invalid(format!("cannot create directory {}: {e}", dir.display())))
}

/// Creates the directory an SQLite file goes in, privately (0700), when it is missing,
/// but nothing above it: a mistyped path must not leave a trail of directories.
pub(crate) fn create_sqlite_parent(file: &Path) -> Result<()> {
    let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(above) = dir.parent().filter(|d| !d.as_os_str().is_empty())
        && !above.is_dir()
    {
        return Err(Error::Invalid(format!(
            "cannot create the SQLite database {}: directory {} does not exist \
             (only the database's own directory is created)",
            file.display(),
            above.display()
        )));
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Invalid(format!(
            "cannot create directory {}: {e}",
            dir.display()
        ))),
    }
}

/// Creates the SQLite database file (and its directory) readable by its owner only
/// before SQLite opens it: SQLite gives its WAL and shared-memory files the mode of
/// the database file. An existing file is left as it is.
fn create_private_file(path: &Path) -> Result<()> {
    create_sqlite_parent(path)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Invalid(format!(
            "cannot create the SQLite database {}: {e}",
            path.display()
        ))),
    }
}

/// The file of an `sqlite:` URL; `None` for an in-memory database.
pub(crate) fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_in_memory_sqlite_database_is_refused_in_words() {
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://x.db?mode=memory",
        ] {
            let e = connect_as(url, "test").await.unwrap_err();
            assert!(
                matches!(&e, Error::Invalid(m) if m.contains("in-memory SQLite database")),
                "{url}: {e}"
            );
        }
        assert!(!Path::new("x.db").exists());
    }

    #[test]
    fn only_the_database_directory_is_created() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("data/aiops.db");
        create_sqlite_parent(&file).unwrap();
        assert!(root.path().join("data").is_dir());
        let deep = root.path().join("typo/deeper/aiops.db");
        let e = create_sqlite_parent(&deep).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(
            !root.path().join("typo").exists(),
            "nothing above is created"
        );
    }

    #[tokio::test]
    async fn connection_failures_say_what_is_wrong() {
        // A port nothing listens on: refused, at once, naming the server.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = probe_postgres(&format!("postgres://u:secret@127.0.0.1:{port}/x"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("connection refused by 127.0.0.1:{port}")),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
        let e = probe_postgres("postgres://u@127.0.0.1:notaport/x")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid"), "{e}");
    }
}

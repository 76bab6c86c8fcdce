//! LISTEN on Postgres: the connection that hears other processes' notifications.

use sea_orm::DatabaseConnection;
use sea_orm::sqlx::postgres::PgListener;

use super::events::{CONTROL_CHANNEL, EVENTS_CHANNEL, LIVE_CHANNEL, WAKE_CHANNEL};
use crate::{Error, Result};

/// What the listener heard.
pub(crate) enum Heard {
    Notification {
        channel: String,
        payload: String,
    },
    /// The connection dropped and was made again (LISTEN renewed): notifications
    /// sent in between are lost.
    Reconnected,
}

pub(crate) struct Listener(PgListener);

impl Listener {
    /// A connection from the pool of `db` (Postgres) listening on every channel.
    pub async fn connect(db: &DatabaseConnection) -> Result<Listener> {
        let pool = db.get_postgres_connection_pool().clone();
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(|e| Error::Unavailable(format!("LISTEN connection: {e}")))?;
        listener
            .listen_all([EVENTS_CHANNEL, CONTROL_CHANNEL, WAKE_CHANNEL, LIVE_CHANNEL])
            .await
            .map_err(|e| Error::Unavailable(format!("LISTEN: {e}")))?;
        Ok(Listener(listener))
    }

    /// The next notification; an error means the connection is gone for good.
    pub async fn next(&mut self) -> Result<Heard> {
        match self.0.try_recv().await {
            Ok(Some(n)) => Ok(Heard::Notification {
                channel: n.channel().to_owned(),
                payload: n.payload().to_owned(),
            }),
            Ok(None) => Ok(Heard::Reconnected),
            Err(e) => Err(Error::Unavailable(format!("LISTEN connection lost: {e}"))),
        }
    }
}

/// Checks the database answers.
pub async fn ping(db: &DatabaseConnection) -> Result<()> {
    use sea_orm::ConnectionTrait;
    db.execute_unprepared("SELECT 1").await?;
    Ok(())
}

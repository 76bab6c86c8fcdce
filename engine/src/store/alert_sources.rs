//! The `alert_sources` table. Credentials arrive and leave encrypted: this module
//! never sees a plaintext secret.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, SqlErr,
};

use super::entity::alert_source;
use super::sealed::SealedColumn;
use crate::ids::AlertSourceId;
pub use crate::model::AlertSource;
use crate::{Error, Result};

impl TryFrom<alert_source::Model> for AlertSource {
    type Error = Error;
    fn try_from(m: alert_source::Model) -> Result<Self> {
        Ok(AlertSource {
            id: AlertSourceId(m.id),
            name: m.name,
            prometheus_url: m.prometheus_url,
            alertmanager_url: m.alertmanager_url,
            auth_kind: m.auth_kind.parse()?,
            username: m.username,
            auth_hint: m.auth_hint,
            timeout_ms: m.timeout_ms,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// Inserts `source` with its credential, already sealed for this row; a taken name
/// is [`Error::Conflict`].
pub(crate) async fn insert(
    db: &impl ConnectionTrait,
    source: &AlertSource,
    auth_encrypted: Option<String>,
) -> Result<()> {
    let model = alert_source::ActiveModel {
        id: Set(source.id.0),
        name: Set(source.name.clone()),
        prometheus_url: Set(source.prometheus_url.clone()),
        alertmanager_url: Set(source.alertmanager_url.clone()),
        auth_kind: Set(source.auth_kind.as_str().to_owned()),
        username: Set(source.username.clone()),
        auth_encrypted: Set(auth_encrypted),
        auth_hint: Set(source.auth_hint.clone()),
        timeout_ms: Set(source.timeout_ms),
        created_at: Set(source.created_at),
        updated_at: Set(source.updated_at),
    };
    match alert_source::Entity::insert(model)
        .exec_without_returning(db)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            Err(Error::Conflict(format!(
                "an alert source named \"{}\" already exists",
                source.name
            )))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<AlertSource>> {
    alert_source::Entity::find()
        .order_by_asc(alert_source::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(AlertSource::try_from)
        .collect()
}

/// The source and its sealed credential.
pub(crate) async fn get_sealed(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<(AlertSource, Option<String>)>> {
    let Some(m) = alert_source::Entity::find()
        .filter(alert_source::Column::Name.eq(name))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let sealed = m.auth_encrypted.clone();
    Ok(Some((AlertSource::try_from(m)?, sealed)))
}

/// Deletes a source by name; whether it existed.
pub(crate) async fn delete(db: &impl ConnectionTrait, name: &str) -> Result<bool> {
    let res = alert_source::Entity::delete_many()
        .filter(alert_source::Column::Name.eq(name))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// Where a source's sealed credential lives.
const SEALED: SealedColumn<alert_source::Entity> = SealedColumn {
    id: alert_source::Column::Id,
    sealed: alert_source::Column::AuthEncrypted,
    updated_at: alert_source::Column::UpdatedAt,
};

/// Every sealed credential with its row id, for the start-up check and rotation.
pub(crate) async fn sealed(db: &impl ConnectionTrait) -> Result<Vec<(AlertSourceId, String)>> {
    Ok(SEALED
        .all(db)
        .await?
        .into_iter()
        .map(|(id, s)| (AlertSourceId(id), s))
        .collect())
}

/// Replaces a sealed credential only if it is still `from`; whether it did.
pub(crate) async fn reseal(
    db: &impl ConnectionTrait,
    id: AlertSourceId,
    from: &str,
    to: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    SEALED.reseal(db, id.0, from, to, now).await
}

//! The `webhooks` table. Signing secrets arrive and leave encrypted: this module
//! never sees a plaintext secret.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, SqlErr,
};

use super::entity::webhook;
use super::sealed::SealedColumn;
use crate::ids::WebhookId;
pub use crate::model::Webhook;
use crate::{Error, Result};

impl From<webhook::Model> for Webhook {
    fn from(m: webhook::Model) -> Self {
        Webhook {
            id: WebhookId(m.id),
            name: m.name,
            url: m.url,
            secret_hint: m.secret_hint,
            timeout_ms: m.timeout_ms,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// Inserts `hook` with its secret, already sealed for this row; a taken name is
/// [`Error::Conflict`].
pub(crate) async fn insert(
    db: &impl ConnectionTrait,
    hook: &Webhook,
    secret_encrypted: String,
) -> Result<()> {
    let model = webhook::ActiveModel {
        id: Set(hook.id.0),
        name: Set(hook.name.clone()),
        url: Set(hook.url.clone()),
        secret_encrypted: Set(secret_encrypted),
        secret_hint: Set(hook.secret_hint.clone()),
        timeout_ms: Set(hook.timeout_ms),
        created_at: Set(hook.created_at),
        updated_at: Set(hook.updated_at),
    };
    match webhook::Entity::insert(model)
        .exec_without_returning(db)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Err(
            Error::Conflict(format!("a webhook named \"{}\" already exists", hook.name)),
        ),
        Err(e) => Err(e.into()),
    }
}

pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<Webhook>> {
    Ok(webhook::Entity::find()
        .order_by_asc(webhook::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(Webhook::from)
        .collect())
}

/// The webhook and its sealed secret.
pub(crate) async fn get_sealed(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<(Webhook, String)>> {
    let Some(m) = webhook::Entity::find()
        .filter(webhook::Column::Name.eq(name))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let sealed = m.secret_encrypted.clone();
    Ok(Some((Webhook::from(m), sealed)))
}

/// Deletes a webhook by name; whether it existed.
pub(crate) async fn delete(db: &impl ConnectionTrait, name: &str) -> Result<bool> {
    let res = webhook::Entity::delete_many()
        .filter(webhook::Column::Name.eq(name))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// Where a webhook's sealed secret lives.
const SEALED: SealedColumn<webhook::Entity> = SealedColumn {
    id: webhook::Column::Id,
    sealed: webhook::Column::SecretEncrypted,
    updated_at: webhook::Column::UpdatedAt,
};

/// Every sealed secret with its row id, for the start-up check and rotation.
pub(crate) async fn sealed(db: &impl ConnectionTrait) -> Result<Vec<(WebhookId, String)>> {
    Ok(SEALED
        .all(db)
        .await?
        .into_iter()
        .map(|(id, s)| (WebhookId(id), s))
        .collect())
}

/// Replaces a sealed secret only if it is still `from`; whether it did.
pub(crate) async fn reseal(
    db: &impl ConnectionTrait,
    id: WebhookId,
    from: &str,
    to: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    SEALED.reseal(db, id.0, from, to, now).await
}

//! The `alertmanager_receivers` table. Tokens are stored only as the SHA-256 of the
//! whole token (`token_hash`), which never leaves this module: lookups take the hash
//! of the presented token, and [`AlertmanagerReceiver`] has none.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, SqlErr,
};

use super::entity::alertmanager_receiver as receiver;
use crate::ids::ReceiverId;
pub use crate::model::AlertmanagerReceiver;
use crate::{Error, Result};

impl TryFrom<receiver::Model> for AlertmanagerReceiver {
    type Error = Error;
    fn try_from(m: receiver::Model) -> Result<Self> {
        Ok(AlertmanagerReceiver {
            id: ReceiverId(m.id),
            name: m.name,
            token_prefix: m.token_prefix,
            approval_mode: m.approval_mode.parse()?,
            created_at: m.created_at,
            updated_at: m.updated_at,
            last_used_at: m.last_used_at,
        })
    }
}

/// Inserts `r` with the hash of its token; a taken name is [`Error::Conflict`].
pub(crate) async fn insert(
    db: &impl ConnectionTrait,
    r: &AlertmanagerReceiver,
    token_hash: &str,
) -> Result<()> {
    let model = receiver::ActiveModel {
        id: Set(r.id.0),
        name: Set(r.name.clone()),
        token_hash: Set(token_hash.to_owned()),
        token_prefix: Set(r.token_prefix.clone()),
        approval_mode: Set(r.approval_mode.as_str().to_owned()),
        last_used_at: Set(None),
        created_at: Set(r.created_at),
        updated_at: Set(r.updated_at),
    };
    match receiver::Entity::insert(model)
        .exec_without_returning(db)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            Err(Error::Conflict(format!(
                "an Alertmanager receiver named \"{}\" already exists",
                r.name
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Every receiver, by name.
pub(crate) async fn list(db: &impl ConnectionTrait) -> Result<Vec<AlertmanagerReceiver>> {
    receiver::Entity::find()
        .order_by_asc(receiver::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(AlertmanagerReceiver::try_from)
        .collect()
}

/// The receiver whose token hashes to `token_hash`.
pub(crate) async fn find_by_hash(
    db: &impl ConnectionTrait,
    token_hash: &str,
) -> Result<Option<AlertmanagerReceiver>> {
    receiver::Entity::find()
        .filter(receiver::Column::TokenHash.eq(token_hash))
        .one(db)
        .await?
        .map(AlertmanagerReceiver::try_from)
        .transpose()
}

/// Records a use at `now` unless one was recorded since `stale_before`.
pub(crate) async fn touch(
    db: &impl ConnectionTrait,
    id: ReceiverId,
    now: DateTime<Utc>,
    stale_before: DateTime<Utc>,
) -> Result<()> {
    receiver::Entity::update_many()
        .col_expr(receiver::Column::LastUsedAt, Some(now).into())
        .filter(receiver::Column::Id.eq(id.0))
        .filter(
            Condition::any()
                .add(receiver::Column::LastUsedAt.is_null())
                .add(receiver::Column::LastUsedAt.lt(stale_before)),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes a receiver by name; whether it existed. Its token stops working at once.
pub(crate) async fn delete(db: &impl ConnectionTrait, name: &str) -> Result<bool> {
    let res = receiver::Entity::delete_many()
        .filter(receiver::Column::Name.eq(name))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

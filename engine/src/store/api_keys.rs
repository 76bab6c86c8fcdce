//! The `api_keys` table. Keys are stored only as the SHA-256 of the whole key
//! (`key_hash`), which never leaves this module: [`ApiKey`] has no hash, and lookups
//! take the hash of the presented key.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QuerySelect, RelationTrait, sea_query::JoinType,
};
use uuid::Uuid;

use super::entity::{api_key, user};
use super::keyset::{self, Direction};
use super::users::User;
use crate::auth::Role;
use crate::ids::{ApiKeyId, UserId};
pub use crate::model::ApiKey;
use crate::page::{KeyOf, Page, PageRequest};
use crate::{Error, Result};

impl TryFrom<api_key::Model> for ApiKey {
    type Error = Error;
    fn try_from(m: api_key::Model) -> Result<Self> {
        Ok(ApiKey {
            id: ApiKeyId(m.id),
            user_id: UserId(m.user_id),
            name: m.name,
            prefix: m.prefix,
            role: m.role.parse()?,
            created_at: m.created_at,
            updated_at: m.updated_at,
            last_used_at: m.last_used_at,
            expires_at: m.expires_at,
            revoked_at: m.revoked_at,
        })
    }
}

/// What a new key row needs; the key itself is not among it.
pub(crate) struct NewApiKey<'a> {
    pub user_id: UserId,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
}

pub(crate) async fn insert(
    db: &impl ConnectionTrait,
    new: NewApiKey<'_>,
    now: DateTime<Utc>,
) -> Result<ApiKey> {
    let id = ApiKeyId::new();
    api_key::Entity::insert(api_key::ActiveModel {
        id: Set(id.0),
        user_id: Set(new.user_id.0),
        name: Set(new.name.to_owned()),
        prefix: Set(new.prefix.to_owned()),
        key_hash: Set(new.key_hash.to_owned()),
        role: Set(new.role.as_str().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
        last_used_at: Set(None),
        expires_at: Set(new.expires_at),
        revoked_at: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    Ok(ApiKey {
        id,
        user_id: new.user_id,
        name: new.name.to_owned(),
        prefix: new.prefix.to_owned(),
        role: new.role,
        created_at: now,
        updated_at: now,
        last_used_at: None,
        expires_at: new.expires_at,
        revoked_at: None,
    })
}

pub async fn get(db: &impl ConnectionTrait, id: ApiKeyId) -> Result<Option<ApiKey>> {
    api_key::Entity::find_by_id(id.0)
        .one(db)
        .await?
        .map(ApiKey::try_from)
        .transpose()
}

/// Which of a user's keys a listing shows: those with a role up to `max_role`, and
/// `also` whatever its role.
#[derive(Clone, Copy, Debug)]
pub struct Visible {
    pub max_role: Role,
    pub also: Option<ApiKeyId>,
}

/// A page of a user's visible keys, oldest first, revoked and expired ones included
/// (index `ix_api_keys_user_created_id`).
pub async fn list_by_user(
    db: &impl ConnectionTrait,
    user_id: UserId,
    visible: Visible,
    request: &PageRequest<KeyOf<ApiKey>>,
) -> Result<Page<ApiKey>> {
    let roles = Role::ALL
        .iter()
        .filter(|r| **r <= visible.max_role)
        .map(|r| r.as_str());
    let mut shown = Condition::any().add(api_key::Column::Role.is_in(roles));
    if let Some(id) = visible.also {
        shown = shown.add(api_key::Column::Id.eq(id.0));
    }
    let keys = api_key::Entity::find()
        .filter(api_key::Column::UserId.eq(user_id.0))
        .filter(shown);
    keyset::page(
        db,
        keys,
        &[api_key::Column::CreatedAt, api_key::Column::Id],
        Direction::Ascending,
        request,
    )
    .await?
    .try_map(ApiKey::try_from)
}

/// The key with this hash and its user, in one statement (whether it is still usable
/// is the caller's decision).
pub(crate) async fn find_by_hash(
    db: &impl ConnectionTrait,
    key_hash: &str,
) -> Result<Option<(ApiKey, User)>> {
    let Some((key, user)) = api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(key_hash))
        .find_also_related(user::Entity)
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let user = user.ok_or_else(|| Error::Corrupt(format!("API key {} has no user", key.id)))?;
    Ok(Some((ApiKey::try_from(key)?, User::try_from(user)?)))
}

/// Sets `revoked_at` unless already set; `false` if the key was already revoked or
/// does not exist.
pub async fn revoke(db: &impl ConnectionTrait, id: ApiKeyId, now: DateTime<Utc>) -> Result<bool> {
    let res = api_key::Entity::update_many()
        .col_expr(api_key::Column::RevokedAt, Some(now).into())
        .col_expr(api_key::Column::UpdatedAt, now.into())
        .filter(api_key::Column::Id.eq(id.0))
        .filter(api_key::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// Records a use of the key at `now` unless one after `stale_before` is recorded
/// already (so concurrent requests, in any process, write at most once per period).
/// `updated_at` is left alone: it tracks changes to the key, not its use.
pub async fn touch(
    db: &impl ConnectionTrait,
    id: ApiKeyId,
    now: DateTime<Utc>,
    stale_before: DateTime<Utc>,
) -> Result<bool> {
    let res = api_key::Entity::update_many()
        .col_expr(api_key::Column::LastUsedAt, Some(now).into())
        .filter(api_key::Column::Id.eq(id.0))
        .filter(
            Condition::any()
                .add(api_key::Column::LastUsedAt.is_null())
                .add(api_key::Column::LastUsedAt.lt(stale_before)),
        )
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// Ids per statement in [`active`]: far below both backends' bind-parameter limits.
const ACTIVE_CHUNK: usize = 1000;

/// Which of `ids` are usable at `now`: not revoked, not expired, their user not
/// disabled. One statement per [`ACTIVE_CHUNK`] ids, so revalidating every open
/// session costs one query, not one per session.
pub(crate) async fn active(
    db: &impl ConnectionTrait,
    ids: &[ApiKeyId],
    now: DateTime<Utc>,
) -> Result<HashSet<ApiKeyId>> {
    let mut active = HashSet::new();
    for chunk in ids.chunks(ACTIVE_CHUNK) {
        let rows: Vec<Uuid> = api_key::Entity::find()
            .select_only()
            .column(api_key::Column::Id)
            .join(JoinType::InnerJoin, api_key::Relation::User.def())
            .filter(api_key::Column::Id.is_in(chunk.iter().map(|id| id.0)))
            .filter(api_key::Column::RevokedAt.is_null())
            .filter(
                Condition::any()
                    .add(api_key::Column::ExpiresAt.is_null())
                    .add(api_key::Column::ExpiresAt.gt(now)),
            )
            .filter(user::Column::Disabled.eq(false))
            .into_tuple()
            .all(db)
            .await?;
        active.extend(rows.into_iter().map(ApiKeyId));
    }
    Ok(active)
}

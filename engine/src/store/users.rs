//! The `users` table. Password hashes stay in this module: [`User`] has none, and
//! only [`Credentials`] (crate-private, redacted in `Debug`) carries one to `login`.

use std::fmt;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    SqlErr,
};

use super::entity::user;
use super::keyset::{self, Direction};
use crate::auth::Role;
use crate::ids::UserId;
pub use crate::model::User;
use crate::page::{KeyOf, Page, PageRequest};
use crate::{Error, Result};

impl TryFrom<user::Model> for User {
    type Error = Error;
    fn try_from(m: user::Model) -> Result<Self> {
        Ok(User {
            id: UserId(m.id),
            username: m.username,
            role: m.role.parse()?,
            disabled: m.disabled,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// A user with their password hash, for verifying a login.
pub(crate) struct Credentials {
    pub user: User,
    pub password_hash: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// Inserts a user; a taken username is [`Error::Conflict`].
pub(crate) async fn insert(
    db: &impl ConnectionTrait,
    username: &str,
    password_hash: &str,
    role: Role,
    now: DateTime<Utc>,
) -> Result<User> {
    let id = UserId::new();
    let model = user::ActiveModel {
        id: Set(id.0),
        username: Set(username.to_owned()),
        password_hash: Set(password_hash.to_owned()),
        role: Set(role.as_str().to_owned()),
        disabled: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
    };
    match user::Entity::insert(model).exec_without_returning(db).await {
        Ok(_) => {}
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            return Err(username_taken(username));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(User {
        id,
        username: username.to_owned(),
        role,
        disabled: false,
        created_at: now,
        updated_at: now,
    })
}

pub(crate) fn username_taken(username: &str) -> Error {
    Error::Conflict(format!("username \"{username}\" is already taken"))
}

pub async fn get(db: &impl ConnectionTrait, id: UserId) -> Result<Option<User>> {
    user::Entity::find_by_id(id.0)
        .one(db)
        .await?
        .map(User::try_from)
        .transpose()
}

pub async fn get_by_username(db: &impl ConnectionTrait, username: &str) -> Result<Option<User>> {
    user::Entity::find()
        .filter(user::Column::Username.eq(username))
        .one(db)
        .await?
        .map(User::try_from)
        .transpose()
}

/// The user and their password hash, for `login`.
pub(crate) async fn credentials(
    db: &impl ConnectionTrait,
    username: &str,
) -> Result<Option<Credentials>> {
    let Some(m) = user::Entity::find()
        .filter(user::Column::Username.eq(username))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let password_hash = m.password_hash.clone();
    Ok(Some(Credentials {
        user: User::try_from(m)?,
        password_hash,
    }))
}

/// A page of the users, by username (unique index).
pub async fn list(
    db: &impl ConnectionTrait,
    request: &PageRequest<KeyOf<User>>,
) -> Result<Page<User>> {
    keyset::page(
        db,
        user::Entity::find(),
        &[user::Column::Username],
        Direction::Ascending,
        request,
    )
    .await?
    .try_map(User::try_from)
}

pub async fn count(db: &impl ConnectionTrait) -> Result<u64> {
    Ok(user::Entity::find().count(db).await?)
}

/// What became of a request to disable or re-enable a user.
#[derive(Debug)]
pub(crate) enum Disabling {
    Done(User),
    NoSuchUser,
    /// The user is the last enabled admin: disabling them would lock everyone out.
    LastAdmin,
}

/// Disables or re-enables a user, refusing to disable the last enabled admin. The
/// enabled admins' rows are locked first (in id order), so two admins disabling each
/// other at once cannot both succeed. (SQLite write transactions hold the whole
/// database already.)
pub(crate) async fn set_disabled(
    db: &impl ConnectionTrait,
    id: UserId,
    disabled: bool,
    now: DateTime<Utc>,
) -> Result<Disabling> {
    let lock = if super::is_postgres(db) {
        " FOR UPDATE"
    } else {
        ""
    };
    let admins: Vec<uuid::Uuid> = db
        .query_all_raw(super::stmt(
            db,
            &format!("SELECT id FROM users WHERE role = $1 AND NOT disabled ORDER BY id{lock}"),
            vec![Role::Admin.as_str().into()],
        ))
        .await?
        .iter()
        .map(|row| row.try_get_by_index(0))
        .collect::<std::result::Result<_, _>>()?;
    if disabled && admins == [id.0] {
        return Ok(Disabling::LastAdmin);
    }
    let res = user::Entity::update_many()
        .col_expr(user::Column::Disabled, disabled.into())
        .col_expr(user::Column::UpdatedAt, now.into())
        .filter(user::Column::Id.eq(id.0))
        .exec(db)
        .await?;
    if res.rows_affected == 0 {
        return Ok(Disabling::NoSuchUser);
    }
    let Some(model) = user::Entity::find_by_id(id.0).one(db).await? else {
        return Ok(Disabling::NoSuchUser);
    };
    Ok(Disabling::Done(model.try_into()?))
}

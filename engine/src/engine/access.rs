//! Access control (§10): users, password logins and API keys. Authorisation (which
//! role an operation needs) is the caller's, via [`crate::auth::Principal::require`].

use std::time::Duration;

use chrono::Utc;

use super::Engine;
use crate::auth::{Caller, Role};
use crate::page::{KeyOf, Page, PageRequest};
use crate::store::{self};
use crate::{Error, Result};

/// How often at most [`Engine::authenticate`] records a key's `last_used_at`: a write
/// per request would turn every read-only API call into a database write.
const API_KEY_LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

impl Engine {
    /// Creates a user. Usernames are 3–64 characters of `a-z 0-9 _ . -` and unique
    /// ([`Error::Conflict`]); passwords have at least 12 characters and are stored as
    /// argon2id hashes.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: crate::auth::Role,
    ) -> Result<crate::auth::User> {
        crate::auth::validate_username(username)?;
        crate::auth::validate_password(password)?;
        let db = &self.inner.db;
        // Checked before hashing only to fail fast; the unique index decides races.
        if store::users::get_by_username(db, username).await?.is_some() {
            return Err(store::users::username_taken(username));
        }
        let hash = crate::auth::hash_password_off_thread(password.to_owned()).await?;
        store::users::insert(db, username, &hash, role, Utc::now()).await
    }

    /// A page of the users, by username.
    pub async fn users(
        &self,
        page: &PageRequest<KeyOf<crate::auth::User>>,
    ) -> Result<Page<crate::auth::User>> {
        store::users::list(&self.inner.db, page).await
    }

    pub async fn user(&self, id: crate::ids::UserId) -> Result<crate::auth::User> {
        store::users::get(&self.inner.db, id)
            .await?
            .ok_or_else(|| Error::not_found("user", id))
    }

    pub async fn user_by_username(&self, username: &str) -> Result<crate::auth::User> {
        store::users::get_by_username(&self.inner.db, username)
            .await?
            .ok_or_else(|| Error::not_found("user", username))
    }

    /// Disables (or re-enables) a user: a disabled user can neither log in nor use
    /// their API keys, and their open subscriptions end. Admins cannot disable
    /// themselves, and nobody can disable the last enabled admin (the local command
    /// line re-enables users when every admin is locked out some other way).
    pub async fn set_user_disabled(
        &self,
        caller: Caller<'_>,
        id: crate::ids::UserId,
        disabled: bool,
    ) -> Result<crate::auth::User> {
        if let Caller::Principal(p) = caller {
            p.require(Role::Admin)?;
            if disabled && p.user_id == id {
                return Err(Error::Conflict(
                    "you cannot disable your own user; another admin can".into(),
                ));
            }
        }
        let txn = store::begin_write(&self.inner.db).await?;
        let outcome = store::users::set_disabled(&txn, id, disabled, Utc::now()).await?;
        match outcome {
            store::users::Disabling::Done(user) => {
                txn.commit().await?;
                Ok(user)
            }
            store::users::Disabling::NoSuchUser => Err(Error::not_found("user", id)),
            store::users::Disabling::LastAdmin => Err(Error::Conflict(
                "this is the last enabled admin: enable or create another admin first".into(),
            )),
        }
    }

    /// Checks a username and password. Every failure (unknown user, wrong password,
    /// disabled user) is the same [`Error::Unauthenticated`] and takes about as long.
    pub async fn login(&self, username: &str, password: &str) -> Result<crate::auth::Principal> {
        // A name no user can have is an unknown user: not worth a query (and a NUL
        // would make Postgres fail), but still verified against the dummy hash.
        let credentials = if crate::auth::validate_username(username).is_ok() {
            store::users::credentials(&self.inner.db, username).await?
        } else {
            None
        };
        let (user, hash) = match credentials {
            Some(c) => (Some(c.user), Some(c.password_hash)),
            None => (None, None),
        };
        let matches = crate::auth::verify_password_off_thread(password.to_owned(), hash).await?;
        match user {
            Some(user) if matches && !user.disabled => Ok(crate::auth::Principal {
                user_id: user.id,
                username: user.username,
                role: user.role,
                api_key_id: None,
            }),
            _ => Err(Error::Unauthenticated),
        }
    }

    /// Creates an API key for a user and returns its record and the key itself, which
    /// is not stored and cannot be shown again. The key's role is at most the user's
    /// and, for an API caller, at most the caller's own role (default: that ceiling);
    /// asking for more is [`Error::KeyAboveCeiling`]. Only admins create keys for
    /// other users.
    pub async fn create_api_key(
        &self,
        caller: crate::auth::Caller<'_>,
        user_id: crate::ids::UserId,
        name: &str,
        role: Option<crate::auth::Role>,
        expires_in: Option<Duration>,
    ) -> Result<(crate::auth::ApiKey, String)> {
        use crate::auth::{Caller, Ceiling, KeyAction};
        if let Caller::Principal(p) = caller
            && p.user_id != user_id
        {
            p.require(crate::auth::Role::Admin)?;
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(Error::Invalid(
                "name: must be 1 to 100 characters, none of them control characters".into(),
            ));
        }
        let user = self.user(user_id).await?;
        if user.disabled {
            return Err(Error::Invalid(format!(
                "user \"{}\" is disabled",
                user.username
            )));
        }
        // The lower of the two roles bounds the key; name whose it is in refusals.
        let (ceiling, has) = match caller {
            Caller::Principal(p) if p.role <= user.role => (Ceiling::Caller, p.role),
            _ => (Ceiling::User, user.role),
        };
        let role = role.unwrap_or(has);
        if role > has {
            return Err(Error::KeyAboveCeiling {
                action: KeyAction::Create,
                asked: role,
                ceiling,
                has,
            });
        }
        let now = Utc::now();
        let expires_at = match expires_in {
            None => None,
            Some(d) if d.is_zero() => {
                return Err(Error::Invalid("expires_in: must be positive".into()));
            }
            Some(d) => Some(
                chrono::Duration::from_std(d)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
                    .ok_or_else(|| Error::Invalid("expires_in: too far in the future".into()))?,
            ),
        };
        let (key, prefix) = crate::auth::generate_api_key();
        let record = store::api_keys::insert(
            &self.inner.db,
            store::api_keys::NewApiKey {
                user_id,
                name,
                prefix: &prefix,
                key_hash: &crate::auth::hash_api_key(&key),
                role,
                expires_at,
            },
            now,
        )
        .await?;
        Ok((record, key))
    }

    /// A page of a user's API keys (without hashes), oldest first, revoked and expired
    /// ones included. An API caller sees only keys up to its own role (and the key it
    /// calls with); only admins list other users' keys.
    pub async fn api_keys(
        &self,
        caller: crate::auth::Caller<'_>,
        user_id: crate::ids::UserId,
        page: &PageRequest<KeyOf<crate::auth::ApiKey>>,
    ) -> Result<Page<crate::auth::ApiKey>> {
        use crate::auth::{Caller, Role};
        let visible = match caller {
            Caller::Local => store::api_keys::Visible {
                max_role: Role::Admin,
                also: None,
            },
            Caller::Principal(p) => {
                if p.user_id != user_id {
                    p.require(Role::Admin)?;
                }
                store::api_keys::Visible {
                    max_role: p.role,
                    also: p.api_key_id,
                }
            }
        };
        self.user(user_id).await?;
        store::api_keys::list_by_user(&self.inner.db, user_id, visible, page).await
    }

    /// Revokes an API key; it fails authentication from now on. Idempotent: revoking a
    /// revoked key changes nothing and returns it. Any key may revoke itself; an API
    /// caller revokes its user's keys only up to its own role, and other users' keys
    /// only as an admin.
    pub async fn revoke_api_key(
        &self,
        caller: crate::auth::Caller<'_>,
        id: crate::ids::ApiKeyId,
    ) -> Result<crate::auth::ApiKey> {
        use crate::auth::{Caller, Ceiling, KeyAction, Role};
        let key = store::api_keys::get(&self.inner.db, id).await?;
        if let Caller::Principal(p) = caller {
            match &key {
                Some(k) if p.api_key_id == Some(k.id) => {}
                Some(k) if k.user_id == p.user_id => {
                    if k.role > p.role {
                        return Err(Error::KeyAboveCeiling {
                            action: KeyAction::Revoke,
                            asked: k.role,
                            ceiling: Ceiling::Caller,
                            has: p.role,
                        });
                    }
                }
                // Another user's key, or none: whether it exists is for admins to know.
                _ => p.require(Role::Admin)?,
            }
        }
        if key.is_none() {
            return Err(Error::not_found("API key", id));
        }
        store::api_keys::revoke(&self.inner.db, id, Utc::now()).await?;
        store::api_keys::get(&self.inner.db, id)
            .await?
            .ok_or_else(|| Error::not_found("API key", id))
    }

    /// The principal an API key (the token of an `Authorization: Bearer …` header)
    /// stands for, with the key's role (never above its user's current role).
    /// Unknown, malformed, revoked and expired keys and keys of disabled users are all
    /// [`Error::Unauthenticated`].
    pub async fn authenticate(&self, bearer_token: &str) -> Result<crate::auth::Principal> {
        let token = bearer_token.trim();
        if crate::auth::api_key_prefix(token).is_none() {
            return Err(Error::Unauthenticated);
        }
        let db = &self.inner.db;
        let Some((key, user)) =
            store::api_keys::find_by_hash(db, &crate::auth::hash_api_key(token)).await?
        else {
            return Err(Error::Unauthenticated);
        };
        let now = Utc::now();
        if !key.is_active(now) || user.disabled {
            return Err(Error::Unauthenticated);
        }
        let resolution = chrono::Duration::from_std(API_KEY_LAST_USED_RESOLUTION)
            .unwrap_or(chrono::Duration::minutes(1));
        if key.last_used_at.is_none_or(|t| now - t >= resolution)
            && let Err(e) = store::api_keys::touch(db, key.id, now, now - resolution).await
        {
            // Bookkeeping only: the key is valid, so the request goes on.
            tracing::warn!(api_key.id = %key.id, error = %e, "cannot record API key use");
        }
        Ok(crate::auth::Principal {
            user_id: user.id,
            username: user.username,
            role: key.role.min(user.role),
            api_key_id: Some(key.id),
        })
    }

    /// On a database without users, creates the user `admin` (role ADMIN). With a
    /// `password` chosen by the operator nothing is written to disk; otherwise a
    /// random 24-character password goes to a new `<data_dir>/initial-admin-password`
    /// (mode 0600), which must not exist yet: an existing one belongs to an earlier
    /// first admin (perhaps of another database) and is never overwritten. Does
    /// nothing and returns `None` when any user exists (also when another process
    /// bootstraps at the same moment). The password is never logged.
    pub async fn bootstrap_admin(
        &self,
        data_dir: &std::path::Path,
        password: Option<&str>,
    ) -> Result<Option<crate::auth::Bootstrapped>> {
        let db = &self.inner.db;
        if store::users::count(db).await? > 0 {
            return Ok(None);
        }
        let path = data_dir.join(crate::auth::INITIAL_ADMIN_PASSWORD_FILE);
        let (password, file) = match password {
            Some(p) => {
                crate::auth::validate_password(p)?;
                (p.to_owned(), None)
            }
            // Whether the file exists is only asked when it is created, under the
            // write: a bootstrap racing this one may have written it already, before
            // its commit, and this one must then find its admin, not the file.
            None => (crate::auth::random_password(24), Some(path)),
        };
        let hash = crate::auth::hash_password_off_thread(password.clone()).await?;
        // Insert first, count after: the write comes before any read in the transaction,
        // so a concurrent bootstrap waits for this one (SQLite's write lock, Postgres's
        // unique index) and then fails on the username instead of on a stale snapshot.
        let txn = crate::store::begin_write(db).await?;
        match store::users::insert(&txn, "admin", &hash, crate::auth::Role::Admin, Utc::now()).await
        {
            Ok(_) => {}
            // Another process created it first.
            Err(Error::Conflict(_)) => {
                txn.rollback().await?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        if store::users::count(&txn).await? > 1 {
            // Someone created another user since the check above.
            txn.rollback().await?;
            return Ok(None);
        }
        let Some(path) = file else {
            txn.commit().await?;
            return Ok(Some(crate::auth::Bootstrapped::GivenPassword));
        };
        // Written before the commit: if writing fails (also when the file exists), no
        // admin exists whose password nobody knows, and the next start tries again.
        if let Err(e) = crate::auth::write_secret_file(&path, &password) {
            txn.rollback().await?;
            return Err(e);
        }
        if let Err(e) = txn.commit().await {
            let _ = std::fs::remove_file(&path);
            return Err(e.into());
        }
        Ok(Some(crate::auth::Bootstrapped::PasswordFile(path)))
    }

    /// Which of `ids` are still usable: neither revoked nor expired, and their user not
    /// disabled. For long-lived sessions (WebSockets) that authenticated once and must
    /// end when their key does; one query however many ids (up to 1000 per statement).
    pub async fn active_api_keys(
        &self,
        ids: &[crate::ids::ApiKeyId],
    ) -> Result<std::collections::HashSet<crate::ids::ApiKeyId>> {
        if ids.is_empty() {
            return Ok(std::collections::HashSet::new());
        }
        store::api_keys::active(&self.inner.db, ids, Utc::now()).await
    }
}

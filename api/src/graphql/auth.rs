//! Access control (§10): who is calling, and what each role may do.
//!
//! The principal comes from `Authorization: Bearer <api key>` over HTTP, or from the
//! same token in `connection_init` over WebSocket. Without one, only `health` and
//! `login` answer.

use std::time::Duration;

use aiops_engine::auth::{Caller, Principal, Role as EngineRole};
use aiops_engine::{ApiKeyId, Engine, UserId};
use async_graphql::{Context, Enum, Guard, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::connection::{self, CountedConnection};
use super::error::{ToGql, to_gql};

/// Roles, lowest first: viewers read; operators also run, pause, cancel, decide and
/// answer; admins also manage teams, users and keys.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl From<EngineRole> for Role {
    fn from(r: EngineRole) -> Self {
        match r {
            EngineRole::Viewer => Role::Viewer,
            EngineRole::Operator => Role::Operator,
            EngineRole::Admin => Role::Admin,
        }
    }
}

impl From<Role> for EngineRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Viewer => EngineRole::Viewer,
            Role::Operator => EngineRole::Operator,
            Role::Admin => EngineRole::Admin,
        }
    }
}

/// Requires an authenticated principal with at least `role`.
pub struct RoleGuard(pub EngineRole);

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        principal(ctx)?.require(self.0).map_err(to_gql)
    }
}

/// The caller, or UNAUTHENTICATED saying that no key came with the request.
pub fn principal<'a>(ctx: &Context<'a>) -> Result<&'a Principal> {
    ctx.data_opt::<Principal>().ok_or_else(|| {
        use async_graphql::ErrorExtensions;
        async_graphql::Error::new(
            "missing API key: send `Authorization: Bearer <key>` (over WebSocket, in connection_init)",
        )
        .extend_with(|_, e| e.set("code", super::error::UNAUTHENTICATED))
    })
}

/// Reads a bearer token: `Bearer <token>` (the scheme in any case, RFC 7235) or the
/// bare token. `None` when there is no token.
pub fn bearer(value: &str) -> Option<&str> {
    let v = value.trim();
    let token = match v.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => v,
    };
    (!token.is_empty()).then_some(token)
}

/// The token a WebSocket client sent in `connection_init`, under any of the names
/// common clients use.
pub fn token_from_init(payload: &serde_json::Value) -> Option<String> {
    ["Authorization", "authorization", "authToken", "token"]
        .iter()
        .find_map(|k| payload.get(k).and_then(|v| v.as_str()))
        .or_else(|| {
            payload
                .pointer("/headers/Authorization")
                .and_then(|v| v.as_str())
        })
        .and_then(|t| bearer(t).map(str::to_owned))
}

/// The caller as seen by `me`.
#[derive(SimpleObject)]
pub struct Me {
    pub user_id: Uuid,
    pub username: String,
    pub role: Role,
    /// The API key used, when the request authenticated with one.
    pub api_key_id: Option<Uuid>,
}

#[derive(SimpleObject)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

impl From<aiops_engine::auth::User> for User {
    fn from(u: aiops_engine::auth::User) -> Self {
        User {
            id: u.id.0,
            username: u.username,
            role: u.role.into(),
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

/// An API key as listed: never the key itself.
#[derive(SimpleObject)]
pub struct ApiKey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    /// Tells keys apart without revealing them.
    pub prefix: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<aiops_engine::auth::ApiKey> for ApiKey {
    fn from(k: aiops_engine::auth::ApiKey) -> Self {
        ApiKey {
            id: k.id.0,
            user_id: k.user_id.0,
            name: k.name,
            prefix: k.prefix,
            role: k.role.into(),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A new key: `token` is shown this once and stored only as a hash.
#[derive(SimpleObject)]
pub struct ApiKeyCreated {
    pub api_key: ApiKey,
    pub token: String,
}

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    pub name: String,
    /// Another user's id (admins only); default: the caller.
    pub user_id: Option<Uuid>,
    /// At most the caller's own role (and the user's); default: that ceiling. A
    /// down-scoped key cannot create a stronger one.
    pub role: Option<Role>,
    #[graphql(validator(minimum = 1, maximum = 3650))]
    pub expires_in_days: Option<i32>,
}

#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// The caller.
    #[graphql(guard = "RoleGuard(EngineRole::Viewer)")]
    async fn me(&self, ctx: &Context<'_>) -> Result<Me> {
        let p = principal(ctx)?;
        Ok(Me {
            user_id: p.user_id.0,
            username: p.username.clone(),
            role: p.role.into(),
            api_key_id: p.api_key_id.map(|k| k.0),
        })
    }

    /// Every user, by username.
    #[graphql(
        guard = "RoleGuard(EngineRole::Admin)",
        complexity = "connection::complexity(first, child_complexity)"
    )]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
    ) -> Result<CountedConnection<User>> {
        let request =
            connection::request::<aiops_engine::auth::User>(ctx, first, after.as_deref())?;
        let page = ctx.data::<Engine>()?.users(&request).await.gql()?;
        Ok(connection::counted(page))
    }

    /// The caller's API keys, oldest first (admins may name another user). Keys with
    /// a higher role than the caller's are not listed.
    #[graphql(
        guard = "RoleGuard(EngineRole::Viewer)",
        complexity = "connection::complexity(first, child_complexity)"
    )]
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        user_id: Option<Uuid>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
    ) -> Result<CountedConnection<ApiKey>> {
        let p = principal(ctx)?;
        let request =
            connection::request::<aiops_engine::auth::ApiKey>(ctx, first, after.as_deref())?;
        let owner = user_id.map_or(p.user_id, UserId);
        let page = ctx
            .data::<Engine>()?
            .api_keys(Caller::Principal(p), owner, &request)
            .await
            .gql()?;
        Ok(connection::counted(page))
    }
}

#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Exchanges a password for an API key valid 12 hours (what the console uses).
    async fn login(
        &self,
        ctx: &Context<'_>,
        username: String,
        password: String,
    ) -> Result<ApiKeyCreated> {
        super::policy::charge_login(ctx, &username)?;
        let engine = ctx.data::<Engine>()?;
        let p = engine.login(&username, &password).await.gql()?;
        let (key, token) = engine
            .create_api_key(
                Caller::Principal(&p),
                p.user_id,
                "login session",
                None,
                Some(Duration::from_secs(12 * 3600)),
            )
            .await
            .gql()?;
        Ok(ApiKeyCreated {
            api_key: key.into(),
            token,
        })
    }

    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        username: String,
        password: String,
        role: Role,
    ) -> Result<User> {
        let engine = ctx.data::<Engine>()?;
        Ok(engine
            .create_user(&username, &password, role.into())
            .await
            .gql()?
            .into())
    }

    /// Disables a user: they can no longer log in, their API keys stop working at once
    /// and their open subscriptions end. Admins cannot disable themselves or the last
    /// enabled admin (CONFLICT).
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn disable_user(&self, ctx: &Context<'_>, id: Uuid) -> Result<User> {
        set_disabled(ctx, id, true).await
    }

    /// Enables a disabled user again; their unexpired, unrevoked keys work again.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn enable_user(&self, ctx: &Context<'_>, id: Uuid) -> Result<User> {
        set_disabled(ctx, id, false).await
    }

    /// A new key for the caller (or, for admins, another user); shown once. Its role
    /// is at most the caller's.
    #[graphql(guard = "RoleGuard(EngineRole::Viewer)")]
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> Result<ApiKeyCreated> {
        let p = principal(ctx)?;
        let owner = input.user_id.map_or(p.user_id, UserId);
        let expires = input
            .expires_in_days
            .map(|d| Duration::from_secs(d as u64 * 24 * 3600));
        let (key, token) = ctx
            .data::<Engine>()?
            .create_api_key(
                Caller::Principal(p),
                owner,
                &input.name,
                input.role.map(Into::into),
                expires,
            )
            .await
            .gql()?;
        Ok(ApiKeyCreated {
            api_key: key.into(),
            token,
        })
    }

    /// Revokes a key at once; its next request is UNAUTHENTICATED. Idempotent. Any key
    /// may revoke itself; others only up to the caller's role (admins: any user's).
    #[graphql(guard = "RoleGuard(EngineRole::Viewer)")]
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: Uuid) -> Result<ApiKey> {
        let p = principal(ctx)?;
        Ok(ctx
            .data::<Engine>()?
            .revoke_api_key(Caller::Principal(p), ApiKeyId(id))
            .await
            .gql()?
            .into())
    }
}

async fn set_disabled(ctx: &Context<'_>, id: Uuid, disabled: bool) -> Result<User> {
    let p = principal(ctx)?;
    Ok(ctx
        .data::<Engine>()?
        .set_user_disabled(Caller::Principal(p), UserId(id), disabled)
        .await
        .gql()?
        .into())
}

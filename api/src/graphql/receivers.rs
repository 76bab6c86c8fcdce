//! The Alertmanager intake over GraphQL: receivers (viewers list them without
//! tokens; admins create them — the token is in the creation's answer, once — and
//! delete them) and the notifications they posted, with what came of each.

use aiops_engine::auth::{Caller, Role as EngineRole};
use aiops_engine::model::{
    AlertNotification as NotificationRecord, AlertmanagerReceiver as ReceiverRecord,
    NotificationFilter, NotificationRoute as RouteRecord,
};
use aiops_engine::{Engine, NotificationId};
use async_graphql::{Context, InputObject, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::auth::{RoleGuard, principal};
use super::connection::{self, UncountedConnection};
use super::error::ToGql;
use super::types::{ApprovalMode, NotificationOutcome, NotificationStatus};

/// Who may post to `POST /api/alertmanager/webhook`: a bearer token (never shown
/// again after creation) and what the runs it starts do about approvals.
#[derive(SimpleObject)]
pub struct AlertmanagerReceiver {
    pub id: Uuid,
    pub name: String,
    /// The 8 characters after `aiopsam_` that tell tokens apart; never the token.
    pub token_prefix: String,
    pub approval_mode: ApprovalMode,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Updated at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<ReceiverRecord> for AlertmanagerReceiver {
    fn from(r: ReceiverRecord) -> Self {
        AlertmanagerReceiver {
            id: r.id.0,
            name: r.name,
            token_prefix: r.token_prefix,
            approval_mode: r.approval_mode.into(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_used_at: r.last_used_at,
        }
    }
}

/// A new receiver and its token: put the token in Alertmanager's
/// `webhook_configs[].http_config.authorization.credentials`. It is not stored and
/// cannot be shown again.
#[derive(SimpleObject)]
pub struct CreatedAlertmanagerReceiver {
    pub receiver: AlertmanagerReceiver,
    pub token: String,
}

#[derive(InputObject)]
pub struct CreateAlertmanagerReceiverInput {
    /// Unique: letters, digits, '-', '_' or '.'.
    pub name: String,
    /// WAIT (default): approvals of the runs it starts wait for a person until they
    /// expire. REJECT: they are rejected at once, and the run goes on without the
    /// action.
    #[graphql(default_with = "ApprovalMode::Wait")]
    pub approval_mode: ApprovalMode,
}

/// What a notification meant for one team whose matchers it matched.
#[derive(SimpleObject)]
pub struct NotificationRoute {
    pub team_id: Uuid,
    pub team: String,
    pub outcome: NotificationOutcome,
    /// The run started, recorded on, or that saw these alerts before.
    pub run_id: Option<Uuid>,
    /// Firing alerts seen for the first time.
    pub new_alerts: i32,
    /// Alerts seen resolved for the first time.
    pub resolved_alerts: i32,
}

impl From<RouteRecord> for NotificationRoute {
    fn from(r: RouteRecord) -> Self {
        NotificationRoute {
            team_id: r.team_id.0,
            team: r.team,
            outcome: r.outcome.into(),
            run_id: r.run_id.map(|id| id.0),
            new_alerts: i32::try_from(r.new_alerts).unwrap_or(i32::MAX),
            resolved_alerts: i32::try_from(r.resolved_alerts).unwrap_or(i32::MAX),
        }
    }
}

/// A notification Alertmanager posted, and what came of it.
#[derive(SimpleObject)]
pub struct AlertNotification {
    pub id: Uuid,
    /// The receiver that posted it (its name then).
    pub receiver: String,
    pub group_key: String,
    /// The group's labels and the labels common to its alerts: what routing matched.
    pub group_labels: Json<std::collections::BTreeMap<String, String>>,
    pub status: NotificationStatus,
    /// How many alerts it carried.
    pub alerts: i32,
    pub outcome: NotificationOutcome,
    /// What happened, in words.
    pub reason: String,
    /// One per team whose matchers the group matched (none: unrouted).
    pub routes: Vec<NotificationRoute>,
    pub received_at: DateTime<Utc>,
}

impl From<NotificationRecord> for AlertNotification {
    fn from(n: NotificationRecord) -> Self {
        AlertNotification {
            id: n.id.0,
            receiver: n.receiver,
            group_key: n.group_key,
            group_labels: Json(n.group_labels),
            status: n.status.into(),
            alerts: n.alerts,
            outcome: n.outcome.into(),
            reason: n.reason,
            routes: n.routes.into_iter().map(Into::into).collect(),
            received_at: n.received_at,
        }
    }
}

#[derive(InputObject, Default)]
pub struct AlertNotificationFilter {
    pub outcome: Option<NotificationOutcome>,
    /// The receiver's name.
    pub receiver: Option<String>,
}

#[derive(Default)]
pub struct ReceiversQuery;

#[Object]
impl ReceiversQuery {
    /// Alertmanager receivers, by name (tokens are never shown).
    #[graphql(guard = "RoleGuard(EngineRole::Viewer)")]
    async fn alertmanager_receivers(&self, ctx: &Context<'_>) -> Result<Vec<AlertmanagerReceiver>> {
        let receivers = ctx.data::<Engine>()?.alertmanager_receivers().await.gql()?;
        Ok(receivers.into_iter().map(Into::into).collect())
    }

    /// Notifications Alertmanager posted, newest first (no `totalCount`: the list
    /// grows with every notification until retention prunes it).
    #[graphql(
        guard = "RoleGuard(EngineRole::Viewer)",
        complexity = "connection::complexity(first, child_complexity)"
    )]
    async fn alert_notifications(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
        filter: Option<AlertNotificationFilter>,
    ) -> Result<UncountedConnection<AlertNotification>> {
        let mut request = connection::request::<NotificationRecord>(ctx, first, after.as_deref())?;
        request.count_total = false;
        let filter = filter.unwrap_or_default();
        let filter = NotificationFilter {
            outcome: filter.outcome.map(Into::into),
            receiver: filter.receiver,
        };
        let page = ctx
            .data::<Engine>()?
            .alert_notifications(&filter, &request)
            .await
            .gql()?;
        Ok(connection::uncounted(page))
    }

    /// A notification, or null if there is none with this id.
    #[graphql(guard = "RoleGuard(EngineRole::Viewer)")]
    async fn alert_notification(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
    ) -> Result<Option<AlertNotification>> {
        Ok(ctx
            .data::<Engine>()?
            .alert_notification(NotificationId(id))
            .await
            .gql_optional()?
            .map(Into::into))
    }
}

#[derive(Default)]
pub struct ReceiversMutation;

#[Object]
impl ReceiversMutation {
    /// Creates an Alertmanager receiver. The answer holds its token, the only time
    /// it is shown: only its SHA-256 is stored.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn create_alertmanager_receiver(
        &self,
        ctx: &Context<'_>,
        input: CreateAlertmanagerReceiverInput,
    ) -> Result<CreatedAlertmanagerReceiver> {
        let p = principal(ctx)?;
        let (receiver, token) = ctx
            .data::<Engine>()?
            .create_alertmanager_receiver(
                Caller::Principal(p),
                &input.name,
                input.approval_mode.into(),
            )
            .await
            .gql()?;
        Ok(CreatedAlertmanagerReceiver {
            receiver: receiver.into(),
            token,
        })
    }

    /// Deletes an Alertmanager receiver by name; its token stops working at once.
    #[graphql(guard = "RoleGuard(EngineRole::Admin)")]
    async fn delete_alertmanager_receiver(&self, ctx: &Context<'_>, name: String) -> Result<bool> {
        let p = principal(ctx)?;
        ctx.data::<Engine>()?
            .delete_alertmanager_receiver(Caller::Principal(p), &name)
            .await
            .gql()?;
        Ok(true)
    }
}

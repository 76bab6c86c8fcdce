//! The `alert_notifications` table: every notification the webhook accepted, with
//! what came of it. Listed newest first (index `ix_alert_notifications_received_id`);
//! pruned with finished runs by the retention job.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::entity::alert_notification as notification;
use super::keyset::{self, Direction};
use crate::ids::{NotificationId, ReceiverId};
pub use crate::model::{AlertNotification, NotificationFilter};
use crate::page::{KeyOf, Page, PageRequest};
use crate::{Error, Result};

impl TryFrom<notification::Model> for AlertNotification {
    type Error = Error;
    fn try_from(m: notification::Model) -> Result<Self> {
        let corrupt = |what: &str, e: serde_json::Error| {
            Error::Corrupt(format!("alert notification {} {what}: {e}", m.id))
        };
        let group_labels: BTreeMap<String, String> =
            serde_json::from_value(m.group_labels.clone()).map_err(|e| corrupt("labels", e))?;
        let routes = serde_json::from_value(m.routes.clone()).map_err(|e| corrupt("routes", e))?;
        Ok(AlertNotification {
            id: NotificationId(m.id),
            receiver_id: ReceiverId(m.receiver_id),
            receiver: m.receiver_name,
            group_key: m.group_key,
            group_labels,
            status: m.status.parse()?,
            alerts: m.alerts,
            outcome: m.outcome.parse()?,
            reason: m.reason,
            routes,
            received_at: m.received_at,
        })
    }
}

pub(crate) async fn insert(db: &impl ConnectionTrait, n: &AlertNotification) -> Result<()> {
    let json = |v: serde_json::Result<serde_json::Value>| {
        v.map_err(|e| Error::Invalid(format!("notification: {e}")))
    };
    notification::Entity::insert(notification::ActiveModel {
        id: Set(n.id.0),
        receiver_id: Set(n.receiver_id.0),
        receiver_name: Set(n.receiver.clone()),
        group_key: Set(n.group_key.clone()),
        group_labels: Set(json(serde_json::to_value(&n.group_labels))?),
        status: Set(n.status.as_str().to_owned()),
        alerts: Set(n.alerts),
        outcome: Set(n.outcome.as_str().to_owned()),
        reason: Set(n.reason.clone()),
        routes: Set(json(serde_json::to_value(&n.routes))?),
        received_at: Set(n.received_at),
        created_at: Set(n.received_at),
        updated_at: Set(n.received_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub(crate) async fn get(
    db: &impl ConnectionTrait,
    id: NotificationId,
) -> Result<Option<AlertNotification>> {
    notification::Entity::find_by_id(id.0)
        .one(db)
        .await?
        .map(AlertNotification::try_from)
        .transpose()
}

/// A page of the notifications matching `filter`, newest first.
pub(crate) async fn page(
    db: &impl ConnectionTrait,
    filter: &NotificationFilter,
    request: &PageRequest<KeyOf<AlertNotification>>,
) -> Result<Page<AlertNotification>> {
    let mut q = notification::Entity::find();
    if let Some(outcome) = filter.outcome {
        q = q.filter(notification::Column::Outcome.eq(outcome.as_str()));
    }
    if let Some(receiver) = &filter.receiver {
        q = q.filter(notification::Column::ReceiverName.eq(receiver.as_str()));
    }
    keyset::page(
        db,
        q,
        &[notification::Column::ReceivedAt, notification::Column::Id],
        Direction::Descending,
        request,
    )
    .await?
    .try_map(AlertNotification::try_from)
}

/// Deletes the notifications received before `cutoff`; how many.
pub(crate) async fn delete_before(db: &impl ConnectionTrait, cutoff: DateTime<Utc>) -> Result<u64> {
    let res = notification::Entity::delete_many()
        .filter(notification::Column::ReceivedAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

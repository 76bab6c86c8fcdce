//! The Alertmanager webhook intake as the engine hands it out: receivers (who may
//! post, never their token), the notifications they posted and what came of each,
//! and the alerts a run was started for or told about.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{NotificationId, ReceiverId, RunId, TeamId};
use crate::page::Keyed;
use crate::status::{ApprovalMode, string_enum};

/// A receiver: a bearer token Alertmanager's `webhook_configs` present, and what the
/// runs its notifications start do about approvals. The token itself is shown once,
/// when the receiver is created; only its SHA-256 is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertmanagerReceiver {
    pub id: ReceiverId,
    pub name: String,
    /// The 8 characters after `aiopsam_`, which tell tokens apart without revealing them.
    pub token_prefix: String,
    pub approval_mode: ApprovalMode,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Updated by authentication, at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

string_enum!(
    /// Alertmanager's `status` of a notification (a group is `firing` while any of
    /// its alerts fires).
    NotificationStatus {
        Firing => "FIRING",
        Resolved => "RESOLVED",
    }
);

string_enum!(
    /// What came of a notification (or of its route to one team), most consequential
    /// first.
    NotificationOutcome {
        // A run was started for new firing alerts of the group.
        Started => "STARTED",
        // New firing or resolved alerts were recorded on the group's active run.
        Recorded => "RECORDED",
        // Nothing new: every alert was already seen (a repeat), or resolved alerts
        // whose run has ended.
        Deduplicated => "DEDUPLICATED",
        // No team's `alertmanager.matchers` match the group.
        Unrouted => "UNROUTED",
    }
);

/// What one notification meant for one team whose matchers it matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRoute {
    pub team_id: TeamId,
    pub team: String,
    pub outcome: NotificationOutcome,
    /// The run started, recorded on, or (de-duplicated) that saw these alerts before.
    pub run_id: Option<RunId>,
    /// Firing alerts seen for the first time.
    pub new_alerts: u32,
    /// Alerts seen resolved for the first time.
    pub resolved_alerts: u32,
}

/// An accepted notification and what came of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertNotification {
    pub id: NotificationId,
    pub receiver_id: ReceiverId,
    /// The receiver's name when the notification arrived.
    pub receiver: String,
    pub group_key: String,
    /// The group's labels and the labels common to its alerts: what routing matched.
    pub group_labels: BTreeMap<String, String>,
    pub status: NotificationStatus,
    /// How many alerts it carried.
    pub alerts: i32,
    pub outcome: NotificationOutcome,
    /// What happened, in words (per team, or why nothing matched).
    pub reason: String,
    pub routes: Vec<NotificationRoute>,
    pub received_at: DateTime<Utc>,
}

/// Notifications are listed newest first: by `(received_at, id)` descending.
impl Keyed for AlertNotification {
    type Key = (DateTime<Utc>, uuid::Uuid);
    fn key(&self) -> Self::Key {
        (self.received_at, self.id.0)
    }
}

/// Which notifications to list; all optional.
#[derive(Clone, Debug, Default)]
pub struct NotificationFilter {
    pub outcome: Option<NotificationOutcome>,
    pub receiver: Option<String>,
}

/// An alert of the Alertmanager group a run investigates, as the intake recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAlert {
    pub fingerprint: String,
    pub starts_at: DateTime<Utc>,
    pub labels: BTreeMap<String, String>,
    /// Recorded on this run while it was active, after it started (not in its input).
    pub joined: bool,
    /// When Alertmanager said it resolved (its `endsAt`), if it did.
    pub resolved_at: Option<DateTime<Utc>>,
}

//! Newtypes for the ids that cross module boundaries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered (v7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

id_type!(
    /// Identifies a run.
    RunId
);
id_type!(
    /// Identifies an approval request.
    ApprovalId
);
id_type!(
    /// Identifies a question to a human.
    QuestionId
);
id_type!(
    /// Identifies a team.
    TeamId
);
id_type!(
    /// Identifies a user.
    UserId
);
id_type!(
    /// Identifies an API key.
    ApiKeyId
);
id_type!(
    /// Identifies an alert source.
    AlertSourceId
);
id_type!(
    /// Identifies a remediation webhook.
    WebhookId
);
id_type!(
    /// Identifies a language-model provider.
    ProviderId
);
id_type!(
    /// Identifies a provider credential.
    CredentialId
);
id_type!(
    /// Identifies a language model.
    ModelId
);
id_type!(
    /// Identifies a cron schedule.
    ScheduleId
);
id_type!(
    /// Identifies one handled fire time of a schedule.
    ScheduleFireId
);
id_type!(
    /// Identifies an Alertmanager receiver (a webhook token).
    ReceiverId
);
id_type!(
    /// Identifies an Alertmanager notification the webhook accepted.
    NotificationId
);

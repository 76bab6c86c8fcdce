//! The records the engine hands out: runs, steps, events, approvals, questions,
//! teams, users, API keys, alert sources, webhooks, language-model providers and
//! schedules, the Alertmanager intake (receivers, notifications). Plain data; reading
//! and writing them is the store's business, behind the engine.

mod alert_source;
mod alertmanager;
mod api_key;
mod approval;
mod provider;
mod question;
mod run;
mod schedule;
mod step;
mod team;
mod user;
mod webhook;

pub use crate::event::{Event, EventKind};
pub use crate::page::{KeyOf, Keyed, Page, PageRequest};
pub use alert_source::{AlertSource, AuthKind};
pub use alertmanager::{
    AlertNotification, AlertmanagerReceiver, NotificationFilter, NotificationOutcome,
    NotificationRoute, NotificationStatus, RunAlert,
};
pub use api_key::ApiKey;
pub use approval::Approval;
pub use provider::{Credential, LanguageModel, ModelConnection, Provider, ProviderKind};
pub use question::Question;
pub use run::{Run, RunFilter};
pub use schedule::{
    CatchUpPolicy, ClaimedFires, DueFire, FireOutcome, OverlapPolicy, Schedule, ScheduleFire,
};
pub use step::Step;
pub use team::{Team, TeamVersion};
pub use user::User;
pub use webhook::Webhook;

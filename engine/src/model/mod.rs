//! The records the engine hands out: runs, steps, events, approvals, questions,
//! teams, users, API keys, alert sources and webhooks. Plain data; reading and
//! writing them is the store's business, behind the engine.

mod alert_source;
mod api_key;
mod approval;
mod question;
mod run;
mod step;
mod team;
mod user;
mod webhook;

pub use crate::event::{Event, EventKind};
pub use crate::page::{KeyOf, Keyed, Page, PageRequest};
pub use alert_source::{AlertSource, AuthKind};
pub use api_key::ApiKey;
pub use approval::Approval;
pub use question::Question;
pub use run::{Run, RunFilter};
pub use step::Step;
pub use team::{Team, TeamVersion};
pub use user::User;
pub use webhook::Webhook;

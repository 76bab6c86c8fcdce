//! AIOps Agent Executor engine: durable runs of step-checkpointed workflows,
//! their storage, and team topologies.
//!
//! See `ARCHITECTURE.md` at the repository root for the code map and invariants.

pub mod agents;
pub mod auth;
mod bus;
pub mod config;
pub mod context;
pub mod cron;
pub mod database;
pub mod engine;
pub mod error;
pub mod event;
pub mod ids;
pub mod llm;
pub mod metrics;
pub mod model;
pub mod page;
pub mod report;
pub mod retry;
mod role;
pub mod script;
pub mod secrets;
mod stats;
pub mod status;
pub(crate) mod storable;
mod store;
pub mod tools;
pub mod topology;
pub mod triggers;
mod usage;
mod usage_breakdown;
pub mod worker;
pub mod workflow;
mod writer;

pub use auth::{Caller, Principal, Role};
pub use bus::{Change, Changes, Followed};
pub use config::EngineConfig;
pub use context::{
    ApprovalOutcome, ApprovalRequest, Attempt, InputOutcome, LiveEvent, RunInfo, StepContext,
    StepError, StepOptions, decode_key_segment, key_segment,
};
pub use engine::{
    ClusterStats, DEFAULT_CONTEXT_TOKENS, DEFAULT_SOURCE, Decision, DefaultAlertSource, Engine,
    EngineOptions, IncomingAlert, ModelUpdate, NewAlertSource, NewModel, NewProvider, NewSchedule,
    NewWebhook, NotificationIntake, Rotation, ScheduleUpdate, SourceAuth, SourceConnection,
    StartRun, TeamRoute, WebhookTarget, next_fire_times,
};
pub use error::{Error, Result};
pub use event::{Event, EventKind};
pub use ids::{
    AlertSourceId, ApiKeyId, ApprovalId, CredentialId, ModelId, NotificationId, ProviderId,
    QuestionId, ReceiverId, RunId, ScheduleFireId, ScheduleId, TeamId, UserId, WebhookId,
};
pub use metrics::{Metrics, ScheduleOutcome, WebhookOutcome};
pub use page::{KeyOf, Keyed, Page, PageRequest};
pub use retry::{RetryPolicy, StepFailure};
pub use stats::EngineStats;
pub use status::{ApprovalMode, ApprovalStatus, QuestionStatus, RunStatus, StepStatus, Trigger};
pub use usage::Usage;
pub use usage_breakdown::UsageBreakdown;
pub use worker::Worker;
pub use workflow::{Workflow, WorkflowError, WorkflowInfo, Workflows};

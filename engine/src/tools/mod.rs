//! The agents' tools: clients of the systems an investigation reads and acts on.
//!
//! Domain code: built on the engine's public surface only; the durable core never
//! imports it (`tests/architecture.rs`). Every failure is a [`ToolError`] whose kind
//! says whether waiting helps.

mod alertmanager;
mod endpoint;
mod error;
mod prometheus;
mod registry;
mod source;
mod spec;
mod webhook;

pub use alertmanager::{AlertStates, AlertmanagerClient, Matcher, Silence};
pub use endpoint::Auth;
pub use error::{ErrorKind, ToolError};
pub use prometheus::{MAX_POINTS, PrometheusClient};
pub use registry::Registry;
pub use source::SourceClients;
pub use spec::{Policy, ToolSpec};
pub use webhook::{
    IDEMPOTENCY_HEADER, PAYLOAD_VERSION, SIGNATURE_HEADER, TIMESTAMP_HEADER, action_payload,
    post_action,
};

//! Investigations: the workflows that make a team of agents look at alerts, the
//! durable tool calls they make, and the built-in rule-based analyst.
//!
//! Domain code, built on the engine's public surface (`Workflow`, `StepContext`,
//! `Engine`); the durable core never imports it (`tests/architecture.rs`).

mod alert;
mod investigation;
mod ranking;
mod rules;
mod silence;
mod team_run;
mod toolbox;

pub use alert::{Alert, AlertState, MAX_ALERTS};
pub use investigation::{Investigation, NAME as INVESTIGATION, NODE_CONCURRENCY};
pub use ranking::{rank, upstream};
pub use rules::RULES_ANALYST;
pub use team_run::{TeamRun, start_team_run};
pub use toolbox::{MAX_RESULT_BYTES, ToolOutcome, Toolbox, bound};

use crate::workflow::Workflows;

/// `workflows` with the investigation workflow added, using the built-in tools.
pub fn register(workflows: Workflows) -> Workflows {
    workflows.with(
        INVESTIGATION,
        Investigation::new(crate::tools::Registry::builtin()),
    )
}

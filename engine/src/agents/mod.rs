//! Investigations: the workflows that make a team of agents look at alerts, the
//! durable tool calls they make, and the built-in rule-based analyst.
//!
//! Domain code, built on the engine's public surface (`Workflow`, `StepContext`,
//! `Engine`); the durable core never imports it (`tests/architecture.rs`).

mod agent;
mod alert;
mod investigation;
mod model_call;
mod node_team;
mod plan_execute;
mod prompts;
mod ranking;
mod rules;
mod silence;
mod supervisor;
mod team_run;
mod toolbox;

pub use alert::{Alert, AlertState, MAX_ALERTS};
pub use investigation::{Investigation, NAME as INVESTIGATION, NODE_CONCURRENCY};
pub use model_call::{DEFAULT_MODEL, MAX_PARKED};
pub use ranking::{rank, upstream};
pub use rules::RULES_ANALYST;
pub use team_run::{TeamRun, start_team_run, team_run_start};
pub use toolbox::{MAX_RESULT_BYTES, ToolOutcome, Toolbox, bound};

use crate::workflow::Workflows;

/// `workflows` with the investigation workflow added, using the built-in tools and
/// the process's shared model client.
pub fn register(workflows: Workflows) -> Workflows {
    register_with(workflows, crate::llm::shared_client().clone())
}

/// [`register`] with a given model client (its timeouts and breakers).
pub fn register_with(workflows: Workflows, llm: crate::llm::client::LlmClient) -> Workflows {
    workflows.with(
        INVESTIGATION,
        Investigation::with_llm(crate::tools::Registry::builtin(), llm),
    )
}

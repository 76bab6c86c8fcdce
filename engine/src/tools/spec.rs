//! What a tool is to the registry: its name, what it does (for the model), the JSON
//! Schema of its arguments, its policy, timeout and retry policy. Arguments are
//! validated against the schema before any call; invalid ones are a permanent
//! failure that names the field, so a model can correct itself.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;

use super::error::ToolError;
use crate::retry::RetryPolicy;

/// What must happen before a tool runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Runs at once.
    Auto,
    /// Waits for a person to approve the exact arguments (WAITING_APPROVAL).
    Approval,
    /// Is itself a question to a person (WAITING_INPUT).
    AskHuman,
}

/// A tool as the registry and the models know it.
#[derive(Clone)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub parameters: Json,
    pub policy: Policy,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    validator: Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for ToolSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSpec")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ToolSpec {
    /// A tool whose arguments follow `parameters` (a JSON Schema; a broken one is a
    /// programming error of the tool's author, so it panics at start-up).
    pub fn new(
        name: &'static str,
        description: &'static str,
        parameters: Json,
        policy: Policy,
        timeout: Duration,
    ) -> Self {
        let validator = jsonschema::validator_for(&parameters)
            .unwrap_or_else(|e| panic!("tool {name}: invalid argument schema: {e}"));
        Self {
            name,
            description,
            parameters,
            policy,
            timeout,
            retry: RetryPolicy::default(),
            validator: Arc::new(validator),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Checks `args` against the schema: every problem, each with the field it is at
    /// (`/matchers/0/name`, or `(arguments)` for the whole object).
    pub fn validate(&self, args: &Json) -> Result<(), ToolError> {
        let problems: Vec<String> = self
            .validator
            .iter_errors(args)
            .map(|e| {
                let at = e.instance_path().as_str().to_owned();
                let at = if at.is_empty() {
                    "(arguments)".to_owned()
                } else {
                    at
                };
                format!("{at}: {e}")
            })
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        Err(ToolError::permanent(format!(
            "invalid arguments for {}: {}",
            self.name,
            problems.join("; ")
        )))
    }
}

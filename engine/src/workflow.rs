//! Workflows: named orchestration functions the worker can execute.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value as Json;

use crate::context::{StepContext, StepError};

pub type WorkflowFuture = BoxFuture<'static, Result<Json, WorkflowError>>;

/// Why a workflow ended without a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkflowError {
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("{0}")]
    Failed(String),
}

/// Orchestration code: runs from the top on every execution of a run, making its
/// progress durable through the context it receives.
pub trait Workflow: Send + Sync + 'static {
    fn run(&self, ctx: StepContext) -> WorkflowFuture;

    /// Rejects a bad input before any run is stored.
    fn validate_input(&self, _input: &Json) -> Result<(), String> {
        Ok(())
    }
}

/// The workflows a process knows, by name.
#[derive(Clone, Default)]
pub struct Workflows(Arc<BTreeMap<String, Arc<dyn Workflow>>>);

impl Workflows {
    pub fn with(self, name: &str, workflow: impl Workflow) -> Self {
        let mut map = (*self.0).clone();
        map.insert(name.to_owned(), Arc::new(workflow));
        Self(Arc::new(map))
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Workflow>> {
        self.0.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

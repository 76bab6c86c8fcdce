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

    /// What the workflow does and what input it takes (a JSON Schema), for people
    /// and for the console's start form.
    fn describe(&self) -> WorkflowInfo {
        WorkflowInfo::default()
    }
}

/// A workflow as clients see it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowInfo {
    pub description: String,
    /// A JSON Schema of the input; `{}` accepts anything.
    pub input_schema: Json,
}

impl Default for WorkflowInfo {
    fn default() -> Self {
        Self {
            description: String::new(),
            input_schema: Json::Object(Default::default()),
        }
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

    /// Every workflow by name, with what it describes of itself.
    pub fn describe(&self) -> Vec<(String, WorkflowInfo)> {
        self.0
            .iter()
            .map(|(name, w)| (name.clone(), w.describe()))
            .collect()
    }
}

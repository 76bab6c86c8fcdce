//! The analysis result (SPEC §7): a Markdown report and a structured result
//! validated against the team's `output_schema`, both written from one
//! [`Analysis`].

mod analysis;
mod markdown;
mod result;

pub use analysis::{
    Action, ActionStatus, Analysis, Evidence, EvidenceKind, NodeFinding, NodeStatus, RootCause,
    RoutedAlert, Symptom,
};
pub use markdown::render;
pub use result::{default_output_schema, structured, validate};

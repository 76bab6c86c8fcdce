//! Language-model providers: their wire formats, written by hand as thin serde types
//! (see `../shared/research/design-notes.md` §1), and the SSE decoding of streamed
//! answers. Domain code: the durable core never imports it (`tests/architecture.rs`).
//!
//! In progress (issue 9): the OpenAI-compatible and Anthropic formats, SSE decoding
//! and the classification of failures are here; the transport, Azure's URL and
//! header, and the breaker follow.

pub mod anthropic;
pub mod breaker;
pub mod chat;
pub mod classify;
pub mod client;
pub mod endpoint;
pub mod openai;
pub mod probe;
pub mod sse;

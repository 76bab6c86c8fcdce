//! What starts runs without a person: the Alertmanager webhook intake (§8).
//!
//! Domain code on the engine's public surface (`Engine`); the durable core never
//! imports it (`tests/architecture.rs`).

pub mod alertmanager;

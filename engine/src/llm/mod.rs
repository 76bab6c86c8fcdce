//! Language-model providers: their wire formats, written by hand as thin serde types
//! (see `../shared/research/design-notes.md` §1), SSE decoding, the classification of
//! failures, endpoints per provider kind, circuit breakers and the streaming client.
//! Domain code: the durable core never imports it (`tests/architecture.rs`).

pub mod anthropic;
pub mod breaker;
pub mod chat;
pub mod classify;
pub mod client;
pub mod endpoint;
pub mod openai;
pub mod probe;
pub mod sse;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use breaker::{BreakerConfig, Breakers};
use client::{CallLimits, LlmClient};

/// The process's model client: one connection pool and one set of circuit breakers
/// shared by every run (and shown by the API). Timings can be tightened with
/// `AIOPS_LLM_READ_TIMEOUT_MS`, `AIOPS_LLM_CALL_TIMEOUT_MS` and
/// `AIOPS_LLM_BREAKER_OPEN_MS`.
pub fn shared_client() -> &'static LlmClient {
    static CLIENT: OnceLock<LlmClient> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let ms = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|v| *v > 0)
                .map(Duration::from_millis)
        };
        let mut limits = CallLimits::default();
        limits.read = ms("AIOPS_LLM_READ_TIMEOUT_MS").unwrap_or(limits.read);
        limits.deadline = ms("AIOPS_LLM_CALL_TIMEOUT_MS").unwrap_or(limits.deadline);
        let mut breaker = BreakerConfig::default();
        breaker.open_for = ms("AIOPS_LLM_BREAKER_OPEN_MS").unwrap_or(breaker.open_for);
        LlmClient::new(Arc::new(Breakers::new(breaker)), limits)
    })
}

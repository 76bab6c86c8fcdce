//! A model's connection test: one tiny request through the process's [`LlmClient`]
//! (so its breaker sees it like any call), reported as ok or the classified failure.

use std::time::{Duration, Instant};

use super::chat::{ChatMessage, ChatRequest};
use super::client::{LlmClient, redact_key};
use crate::model::ModelConnection;

/// Longest excerpt of the answer a probe reports.
const MAX_EXCERPT_CHARS: usize = 100;

/// How a connection test went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub ok: bool,
    /// From sending the request to the whole answer (or the failure).
    pub latency: Duration,
    /// What the model answered, or why it did not (never the key).
    pub message: String,
}

/// Asks `conn`'s model to reply "ok": at most 8 tokens, no tools.
pub async fn probe(client: &LlmClient, conn: &ModelConnection) -> Probe {
    let request = ChatRequest {
        system: String::new(),
        messages: vec![ChatMessage::User {
            text: "Reply with the word ok.".to_owned(),
        }],
        tools: Vec::new(),
        max_tokens: 8,
    };
    let started = Instant::now();
    let outcome = client.complete(conn, &request, &|_| {}).await;
    let latency = started.elapsed();
    let (ok, message) = match outcome {
        Ok(reply) => {
            let mut excerpt: String = reply.text.trim().chars().take(MAX_EXCERPT_CHARS).collect();
            if reply.text.trim().chars().count() > MAX_EXCERPT_CHARS {
                excerpt.push('…');
            }
            (
                true,
                format!(
                    "model {:?} answered {excerpt:?} ({} input, {} output tokens)",
                    conn.model.name, reply.input_tokens, reply.output_tokens
                ),
            )
        }
        Err(e) => (false, e.to_string()),
    };
    Probe {
        ok,
        latency,
        message: redact_key(message, conn),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::endpoint::tests::connection;
    use crate::model::ProviderKind;

    #[test]
    fn an_echoed_key_is_redacted() {
        let conn = connection(ProviderKind::OpenAi, "http://h/v1", None);
        let shown = redact_key("Incorrect API key provided: sk-secret-1234.".into(), &conn);
        assert_eq!(shown, "Incorrect API key provided: ***.");
    }
}

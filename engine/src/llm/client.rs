//! Calls a model: one HTTP request, streamed when the model streams, behind its
//! endpoint's circuit breaker. A per-read timeout catches a stalled stream and a
//! per-call deadline bounds the whole answer (reqwest's total `timeout` alone would
//! cut long streams). Dropping the future aborts the request: that is how a
//! cancelled run stops its calls at once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use serde_json::Value as Json;

use super::breaker::{Breakers, Permit};
use super::chat::{ChatReply, ChatRequest, ToolCall, calls_of, finish_of};
use super::classify::{Verdict, classify};
use super::endpoint::Endpoint;
use super::sse::SseDecoder;
use super::{anthropic, openai};
use crate::model::{ModelConnection, ProviderKind};

/// Longest error body read from a refusing server.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Longest answer accepted from a model.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Timeouts of model calls.
#[derive(Clone, Debug)]
pub struct CallLimits {
    pub connect: Duration,
    /// Longest silence inside an answer.
    pub read: Duration,
    /// Longest whole call.
    pub deadline: Duration,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(60),
            deadline: Duration::from_secs(180),
        }
    }
}

/// Why a call gave no answer, and what to do about it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CallError {
    /// Try the same model again (after `after` when the server said so).
    #[error("{message}")]
    Retry {
        message: String,
        after: Option<Duration>,
    },
    /// This model will not answer soon: try the next one.
    #[error("{message}")]
    FailOver { message: String },
    /// No model would accept this request.
    #[error("{message}")]
    Permanent { message: String },
    /// The endpoint's breaker is open: not before `retry_after`.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Duration,
    },
}

/// The process's model caller: one connection pool, one set of breakers.
#[derive(Clone, Debug)]
pub struct LlmClient {
    http: reqwest::Client,
    breakers: Arc<Breakers>,
    limits: CallLimits,
}

impl LlmClient {
    pub fn new(breakers: Arc<Breakers>, limits: CallLimits) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(limits.connect)
            .read_timeout(limits.read)
            .build()
            .unwrap_or_default();
        Self {
            http,
            breakers,
            limits,
        }
    }

    pub fn breakers(&self) -> &Arc<Breakers> {
        &self.breakers
    }

    /// Asks `conn`'s model; `on_text` sees the answer's text as it streams.
    pub async fn complete(
        &self,
        conn: &ModelConnection,
        request: &ChatRequest,
        on_text: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ChatReply, CallError> {
        let endpoint = Endpoint::new(conn).map_err(|message| CallError::Permanent { message })?;
        let server = format!(
            "model {} (provider {}, {})",
            conn.model.name, conn.provider.name, conn.provider.kind
        );
        let permit = match self.breakers.admit(endpoint.breaker_key()) {
            Ok(p) => p,
            Err(retry_after) => {
                return Err(CallError::Unavailable {
                    message: format!("{server}: circuit breaker open"),
                    retry_after,
                });
            }
        };
        let mut guard = PermitGuard {
            breakers: &self.breakers,
            permit: Some(permit),
        };
        let call = async {
            let include_usage = conn.model.stream_usage;
            match self
                .call_once(conn, &endpoint, &server, request, include_usage, on_text)
                .await
            {
                Err(Failure {
                    verdict: Verdict::WithoutStreamOptions,
                    ..
                }) => {
                    self.call_once(conn, &endpoint, &server, request, false, on_text)
                        .await
                }
                other => other,
            }
        };
        let outcome = match tokio::time::timeout(self.limits.deadline, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure {
                verdict: Verdict::Retry { after: None },
                message: format!(
                    "{server}: no complete answer within {} s",
                    self.limits.deadline.as_secs()
                ),
                unwell: true,
            }),
        };
        guard.record(outcome.as_ref().err().is_some_and(|f| f.unwell));
        outcome.map_err(|f| {
            // Servers quote the key they refused ("Incorrect API key provided: …"):
            // the message goes to steps, events and logs, the key must not.
            let message = redact_key(f.message, conn);
            match f.verdict {
                Verdict::Retry { after } => CallError::Retry { message, after },
                Verdict::FailOver => CallError::FailOver { message },
                Verdict::Permanent | Verdict::WithoutStreamOptions => {
                    CallError::Permanent { message }
                }
            }
        })
    }

    async fn call_once(
        &self,
        conn: &ModelConnection,
        endpoint: &Endpoint,
        server: &str,
        request: &ChatRequest,
        include_usage: bool,
        on_text: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ChatReply, Failure> {
        let stream = conn.model.supports_streaming;
        // Serialised once, straight to the bytes sent: a prompt can be large, and
        // thousands of calls may be in flight at once.
        let body = match endpoint.kind() {
            ProviderKind::Anthropic => {
                serde_json::to_vec(&request.to_anthropic(endpoint.model(), stream))
            }
            ProviderKind::OpenAi | ProviderKind::AzureOpenAi => {
                serde_json::to_vec(&request.to_openai(endpoint.model(), stream, include_usage))
            }
        }
        .map_err(|e| Failure::permanent(format!("{server}: request not serializable: {e}")))?;
        let prompt_bytes = body.len();
        let response = endpoint
            .post(&self.http)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::transport(server, &e))?;
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let text = read_limited(response, MAX_ERROR_BODY)
                .await
                .unwrap_or_default();
            let c = classify(server, status.as_u16(), &headers, &text, Utc::now());
            return Err(Failure {
                unwell: status.is_server_error() || status.as_u16() == 408,
                verdict: c.verdict,
                message: c.message,
            });
        }
        let model = conn.model.name.clone();
        if !stream {
            let text = read_limited(response, MAX_ANSWER_BYTES)
                .await
                .map_err(|e| Failure::transport(server, &e))?;
            let value: Json = serde_json::from_str(&text).map_err(|e| Failure {
                verdict: Verdict::FailOver,
                message: format!("{server}: unreadable answer: {e}"),
                unwell: true,
            })?;
            let reply = parse_whole(endpoint.kind(), &value, model, prompt_bytes);
            if !reply.text.is_empty() {
                on_text(&reply.text);
            }
            return Ok(reply);
        }
        let mut decoder = SseDecoder::default();
        let mut body = response.bytes_stream();
        let mut received = 0usize;
        let mut acc = Accumulator::new(endpoint.kind());
        loop {
            let chunk = match body.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => return Err(Failure::transport(server, &e)),
                None => break,
            };
            received += chunk.len();
            if received > MAX_ANSWER_BYTES {
                return Err(Failure::permanent(format!(
                    "{server}: the answer exceeds {} MiB",
                    MAX_ANSWER_BYTES / (1024 * 1024)
                )));
            }
            for event in decoder.push(&chunk) {
                if let Some(text) = acc.push(server, &event.data)? {
                    on_text(&text);
                }
            }
        }
        if let Some(event) = decoder.finish()
            && let Some(text) = acc.push(server, &event.data)?
        {
            on_text(&text);
        }
        acc.finish(server, model, prompt_bytes)
    }
}

/// Hands the permit back exactly once: with the outcome, or released when the call
/// was dropped (a cancelled run) so a probe slot is not lost.
struct PermitGuard<'a> {
    breakers: &'a Breakers,
    permit: Option<Permit>,
}

impl PermitGuard<'_> {
    fn record(&mut self, failed: bool) {
        if let Some(p) = self.permit.take() {
            self.breakers.record(p, failed);
        }
    }
}

impl Drop for PermitGuard<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            self.breakers.release(p);
        }
    }
}

struct Failure {
    verdict: Verdict,
    message: String,
    /// Says the endpoint is unwell (counts toward its breaker).
    unwell: bool,
}

impl Failure {
    fn permanent(message: String) -> Self {
        Self {
            verdict: Verdict::Permanent,
            message,
            unwell: false,
        }
    }

    fn transport(server: &str, e: &reqwest::Error) -> Self {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not be reached"
        } else {
            "broke off"
        };
        // reqwest's message carries the URL, never a header.
        Self {
            verdict: Verdict::Retry { after: None },
            message: format!("{server} {what}: {}", error_chain(e)),
            unwell: true,
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

async fn read_limited(response: reqwest::Response, limit: usize) -> Result<String, reqwest::Error> {
    let mut body = response.bytes_stream();
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Streamed answer in either dialect.
enum Accumulator {
    OpenAi(openai::StreamAccumulator),
    Anthropic(anthropic::StreamAccumulator),
}

impl Accumulator {
    fn new(kind: ProviderKind) -> Self {
        match kind {
            ProviderKind::Anthropic => Self::Anthropic(Default::default()),
            ProviderKind::OpenAi | ProviderKind::AzureOpenAi => Self::OpenAi(Default::default()),
        }
    }

    fn push(&mut self, server: &str, data: &str) -> Result<Option<String>, Failure> {
        let pushed = match self {
            Self::OpenAi(acc) => acc.push(data).map_err(|e| match e {
                openai::StreamError::Server(w) => (true, w.to_string()),
                openai::StreamError::Malformed(m) => (false, m),
            }),
            Self::Anthropic(acc) => acc.push(data).map_err(|e| match e {
                anthropic::StreamError::Server(w) => (true, w.to_string()),
                anthropic::StreamError::Malformed(m) => (false, m),
            }),
        };
        pushed.map_err(|(server_error, message)| {
            if server_error {
                // An error after HTTP 200 (overloaded…): the whole call is retried.
                Failure {
                    verdict: Verdict::Retry { after: None },
                    message: format!("{server} failed mid-answer: {message}"),
                    unwell: true,
                }
            } else {
                Failure {
                    verdict: Verdict::FailOver,
                    message: format!("{server} sent an unreadable answer: {message}"),
                    unwell: true,
                }
            }
        })
    }

    fn finish(
        self,
        server: &str,
        model: String,
        prompt_bytes: usize,
    ) -> Result<ChatReply, Failure> {
        let (done, text, calls, reason, usage) = match self {
            Self::OpenAi(acc) => {
                let c = acc.finish();
                let usage = c.usage.map(|u| (u.prompt_tokens, u.completion_tokens));
                (c.done, c.text, c.tool_calls, c.finish_reason, usage)
            }
            Self::Anthropic(acc) => {
                let c = acc.finish();
                let usage = Some((c.usage.input_tokens, c.usage.output_tokens));
                (c.done, c.text, c.tool_calls, c.stop_reason, usage)
            }
        };
        if !done {
            return Err(Failure {
                verdict: Verdict::Retry { after: None },
                message: format!("{server}: the answer stream ended before it was complete"),
                unwell: true,
            });
        }
        let calls = calls_of(calls);
        Ok(reply(
            model,
            text,
            calls,
            reason.as_deref(),
            usage,
            prompt_bytes,
        ))
    }
}

fn reply(
    model: String,
    text: String,
    tool_calls: Vec<ToolCall>,
    reason: Option<&str>,
    usage: Option<(u64, u64)>,
    prompt_bytes: usize,
) -> ChatReply {
    let finish = finish_of(reason, !tool_calls.is_empty());
    // Without reported usage, estimate at ~4 bytes per token so budgets still count.
    let (input_tokens, output_tokens) = usage.unwrap_or_else(|| {
        let out: usize = text.len()
            + tool_calls
                .iter()
                .map(|c| c.name.len() + c.arguments.as_ref().map_or(0, |a| a.to_string().len()))
                .sum::<usize>();
        ((prompt_bytes / 4) as u64, (out / 4) as u64 + 1)
    });
    ChatReply {
        model,
        text,
        tool_calls,
        finish,
        input_tokens,
        output_tokens,
        usage_reported: usage.is_some(),
    }
}

/// A non-streamed answer.
fn parse_whole(kind: ProviderKind, v: &Json, model: String, prompt_bytes: usize) -> ChatReply {
    let tokens = |a: &str, b: &str| {
        let u = &v["usage"];
        u[a].as_u64().zip(u[b].as_u64())
    };
    match kind {
        ProviderKind::Anthropic => {
            let mut text = String::new();
            let mut calls = Vec::new();
            for block in v["content"].as_array().into_iter().flatten() {
                match block["type"].as_str() {
                    Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
                    Some("tool_use") => calls.push(ToolCall {
                        id: block["id"].as_str().unwrap_or_default().to_owned(),
                        name: block["name"].as_str().unwrap_or_default().to_owned(),
                        arguments: Ok(block["input"].clone()),
                    }),
                    _ => {}
                }
            }
            let usage = tokens("input_tokens", "output_tokens");
            reply(
                model,
                text,
                calls,
                v["stop_reason"].as_str(),
                usage,
                prompt_bytes,
            )
        }
        ProviderKind::OpenAi | ProviderKind::AzureOpenAi => {
            let choice = &v["choices"][0];
            let message = &choice["message"];
            let calls = message["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let name = c["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let raw = c["function"]["arguments"].as_str().unwrap_or_default();
                    let arguments = if raw.trim().is_empty() {
                        Ok(Json::Object(Default::default()))
                    } else {
                        serde_json::from_str(raw).map_err(|e| {
                            format!("the arguments of {name} are not valid JSON ({e})")
                        })
                    };
                    ToolCall {
                        id: c["id"].as_str().unwrap_or_default().to_owned(),
                        name,
                        arguments,
                    }
                })
                .collect();
            let text = message["content"].as_str().unwrap_or_default().to_owned();
            let usage = tokens("prompt_tokens", "completion_tokens");
            reply(
                model,
                text,
                calls,
                choice["finish_reason"].as_str(),
                usage,
                prompt_bytes,
            )
        }
    }
}

/// `message` with the connection's API key, wherever a server echoed it, masked.
pub(crate) fn redact_key(message: String, conn: &ModelConnection) -> String {
    match &conn.api_key {
        Some(key) if !key.expose().is_empty() && message.contains(key.expose()) => {
            message.replace(key.expose(), "***")
        }
        _ => message,
    }
}

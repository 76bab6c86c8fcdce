//! A fake language-model provider: real HTTP on a loopback port speaking the
//! OpenAI-compatible, Azure OpenAI and Anthropic Messages wire formats, answering from
//! per-model scripts (replies in order, or a function of the request), with faults on
//! demand (HTTP errors, rate limits, errors inside a stream, stalls, dropped
//! connections, unreadable chunks), and a log of every request with what became of
//! its answer.
//!
//! Routes (the dialect is chosen by the path, as the real servers do):
//! - `POST /v1/chat/completions`: OpenAI-compatible, `Authorization: Bearer KEY`;
//! - `POST /openai/deployments/{deployment}/chat/completions?api-version=…` and
//!   `POST /openai/v1/chat/completions`: Azure OpenAI, `api-key: KEY`; the model is
//!   the deployment (Azure ignores the body's `model`) or, on the v1 surface, the
//!   body's `model`;
//! - `POST /v1/messages`: Anthropic, `x-api-key: KEY` and `anthropic-version`.
//!
//! A model with nothing scripted gets a 500 naming it, so a test fails loudly instead
//! of hanging. `tests/fake_llm.rs` proves the formats against the engine's decoders.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

/// The wire format a request arrived in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Azure,
    Anthropic,
}

/// What became of the answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The answer is still being sent.
    InFlight,
    /// The whole answer (for a stream: through `[DONE]`/`message_stop`) was handed to
    /// the connection.
    Completed,
    /// The fake answered with a fault (an HTTP error, an error in the stream, a dropped
    /// connection…), all of it sent; the text says which.
    Faulted(String),
    /// The client went away before the end of the answer.
    Disconnected,
}

/// One request as received, for assertions.
#[derive(Clone, Debug)]
pub struct Seen {
    pub dialect: Dialect,
    /// The body's `model`, or the Azure deployment of the path.
    pub model: String,
    /// With the query.
    pub path: String,
    /// Names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// `Null` when the body is not JSON.
    pub body: Value,
    pub stream: bool,
    /// `stream_options.include_usage == true`.
    pub include_usage: bool,
    pub outcome: Outcome,
    /// When the request arrived (to check the waits between retries).
    pub at: Instant,
}

impl Seen {
    /// The text of the last user message that has text (Anthropic tool results travel
    /// in user messages; those are skipped).
    pub fn last_user_text(&self) -> String {
        self.messages()
            .iter()
            .rev()
            .filter(|m| m["role"] == "user")
            .map(|m| text_of(&m["content"]))
            .find(|t| !t.is_empty())
            .unwrap_or_default()
    }

    /// The system prompt: OpenAI `system`/`developer` messages (joined by newlines), or
    /// Anthropic's top-level `system`.
    pub fn system_text(&self) -> String {
        match self.dialect {
            Dialect::Anthropic => text_of(&self.body["system"]),
            Dialect::OpenAi | Dialect::Azure => self
                .messages()
                .iter()
                .filter(|m| m["role"] == "system" || m["role"] == "developer")
                .map(|m| text_of(&m["content"]))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The tool results sent back, in order: (`tool_call_id`/`tool_use_id`, content).
    pub fn tool_results(&self) -> Vec<(String, String)> {
        let id = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        match self.dialect {
            Dialect::Anthropic => self
                .messages()
                .iter()
                .filter(|m| m["role"] == "user")
                .filter_map(|m| m["content"].as_array())
                .flatten()
                .filter(|b| b["type"] == "tool_result")
                .map(|b| (id(&b["tool_use_id"]), text_of(&b["content"])))
                .collect(),
            Dialect::OpenAi | Dialect::Azure => self
                .messages()
                .iter()
                .filter(|m| m["role"] == "tool")
                .map(|m| (id(&m["tool_call_id"]), text_of(&m["content"])))
                .collect(),
        }
    }

    /// The ids of the tool results sent back, in order.
    pub fn tool_result_ids(&self) -> Vec<String> {
        self.tool_results().into_iter().map(|(id, _)| id).collect()
    }

    /// The names of the tools offered.
    pub fn tool_names(&self) -> Vec<String> {
        let tools = self.body["tools"].as_array().map(Vec::as_slice);
        tools
            .unwrap_or_default()
            .iter()
            .filter_map(|t| match self.dialect {
                Dialect::Anthropic => t["name"].as_str(),
                Dialect::OpenAi | Dialect::Azure => t["function"]["name"].as_str(),
            })
            .map(str::to_owned)
            .collect()
    }

    fn messages(&self) -> &[Value] {
        self.body["messages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// A string, or the `text` parts of an array of content parts/blocks.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// One scripted answer: a model's answer (text, tool calls) or a fault.
#[derive(Clone, Debug)]
pub struct Reply {
    kind: Kind,
    /// (input, output) tokens.
    usage: (u64, u64),
    /// Between two events of a stream.
    pace: Duration,
    /// Where an answer stops short.
    interrupt: Option<Interrupt>,
    headers: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
enum Kind {
    Answer { text: String, calls: Vec<Call> },
    Status { status: u16, body: Option<Value> },
    RateLimited { after: Duration },
    Overloaded,
    ErrorMidStream,
    Malformed,
    ContextLength,
    RejectStreamOptions,
}

#[derive(Clone, Debug)]
struct Call {
    id: String,
    name: String,
    /// JSON text as the model writes it (maybe not JSON at all).
    arguments: String,
}

#[derive(Clone, Copy, Debug)]
enum Interrupt {
    /// Send `after` events, then nothing for `pause`, then the rest.
    Stall { after: usize, pause: Duration },
    /// Send `after` events, then close the connection without ending the body.
    Drop { after: usize },
}

/// The answer the faults that need one cut short.
const CUT_SHORT: &str = "This answer is cut short before it could say what it meant to say.";

impl Reply {
    /// A plain answer, streamed as several deltas.
    pub fn text(text: &str) -> Reply {
        Reply::of(Kind::Answer {
            text: text.to_owned(),
            calls: Vec::new(),
        })
    }

    /// A text answer holding serialized JSON (structured outputs).
    pub fn json(value: Value) -> Reply {
        Reply::text(&value.to_string())
    }

    /// One or more parallel tool calls `(id, name, arguments)`; `.with_text` adds text
    /// before them.
    pub fn tool_calls(
        calls: impl IntoIterator<Item = (impl Into<String>, impl Into<String>, Value)>,
    ) -> Reply {
        Reply::of(Kind::Answer {
            text: String::new(),
            calls: calls
                .into_iter()
                .map(|(id, name, arguments)| Call {
                    id: id.into(),
                    name: name.into(),
                    arguments: arguments.to_string(),
                })
                .collect(),
        })
    }

    /// A tool call whose arguments are not valid JSON.
    pub fn invalid_tool_arguments(id: &str, name: &str) -> Reply {
        Reply::of(Kind::Answer {
            text: String::new(),
            calls: vec![Call {
                id: id.to_owned(),
                name: name.to_owned(),
                arguments: r#"{"query": "up""#.to_owned(),
            }],
        })
    }

    /// An HTTP error: `body`, or the dialect's error shape when `None`.
    pub fn status(status: u16, body: impl Into<Option<Value>>) -> Reply {
        Reply::of(Kind::Status {
            status,
            body: body.into(),
        })
    }

    /// 429 with `retry-after-ms` and `retry-after` (seconds, rounded up).
    pub fn rate_limited(retry_after_ms: u64) -> Reply {
        Reply::of(Kind::RateLimited {
            after: Duration::from_millis(retry_after_ms),
        })
    }

    /// Anthropic's 529 `overloaded_error`; 503 in the OpenAI dialects.
    pub fn overloaded() -> Reply {
        Reply::of(Kind::Overloaded)
    }

    /// HTTP 200, some text deltas, then an error inside the stream (a 500 when the
    /// request did not stream).
    pub fn error_mid_stream() -> Reply {
        Reply::of(Kind::ErrorMidStream)
    }

    /// HTTP 200, the first events, nothing for `pause`, then the rest of the answer.
    pub fn stall(pause: Duration) -> Reply {
        Reply::text(CUT_SHORT).stall_after(2, pause)
    }

    /// HTTP 200, `events` events, then the connection closed abruptly (no
    /// `[DONE]`/`message_stop`).
    pub fn drop_after(events: usize) -> Reply {
        Reply::text(CUT_SHORT).cut_after(events)
    }

    /// HTTP 200 whose data is not JSON.
    pub fn malformed() -> Reply {
        Reply::of(Kind::Malformed)
    }

    /// 400: the conversation is longer than the context window.
    pub fn context_length() -> Reply {
        Reply::of(Kind::ContextLength)
    }

    /// 400 naming `stream_options` (as Groq and Mistral answer) when the request has
    /// them; otherwise the answer "ok".
    pub fn reject_stream_options() -> Reply {
        Reply::of(Kind::RejectStreamOptions)
    }

    /// Text before the tool calls (or instead of the answer's text).
    pub fn with_text(mut self, text: &str) -> Reply {
        if let Kind::Answer { text: t, .. } = &mut self.kind {
            *t = text.to_owned();
        }
        self
    }

    /// The token counts reported (default 100 in, 20 out).
    pub fn with_usage(mut self, input: u64, output: u64) -> Reply {
        self.usage = (input, output);
        self
    }

    /// A wait between two events of the stream.
    pub fn paced(mut self, pace: Duration) -> Reply {
        self.pace = pace;
        self
    }

    /// An extra response header (e.g. `x-should-retry`).
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// This answer, but the connection closes after `events` events (a non-streamed
    /// answer counts as two: the halves of its body).
    pub fn cut_after(mut self, events: usize) -> Reply {
        self.interrupt = Some(Interrupt::Drop { after: events });
        self
    }

    /// This answer, with nothing sent for `pause` after `events` events.
    pub fn stall_after(mut self, events: usize, pause: Duration) -> Reply {
        self.interrupt = Some(Interrupt::Stall {
            after: events,
            pause,
        });
        self
    }

    fn of(kind: Kind) -> Reply {
        Reply {
            kind,
            usage: (100, 20),
            pace: Duration::ZERO,
            interrupt: None,
            headers: Vec::new(),
        }
    }
}

type Responder = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

struct Shared {
    key: Option<String>,
    log: Mutex<Vec<Seen>>,
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    responders: Mutex<HashMap<String, Responder>>,
    ids: AtomicU64,
}

/// A running fake provider; stops when dropped.
pub struct FakeLlm {
    base: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeLlm {
    /// Accepts any key, or none.
    pub async fn start() -> FakeLlm {
        FakeLlm::serve(None).await
    }

    /// Answers 401 to a request without `key` in the dialect's header.
    pub async fn start_with_key(key: &str) -> FakeLlm {
        FakeLlm::serve(Some(key.to_owned())).await
    }

    async fn serve(key: Option<String>) -> FakeLlm {
        let shared = Arc::new(Shared {
            key,
            log: Mutex::default(),
            scripts: Mutex::default(),
            responders: Mutex::default(),
            ids: AtomicU64::new(1),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route(
                "/openai/deployments/{deployment}/chat/completions",
                post(azure_deployment),
            )
            .route("/openai/v1/chat/completions", post(azure_v1))
            .route("/v1/messages", post(anthropic))
            .fallback(not_found)
            // Long conversations are part of what is tested.
            .layer(DefaultBodyLimit::max(64 << 20))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake LLM");
        let base = format!("http://{}", listener.local_addr().expect("fake LLM addr"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake LLM serves");
        });
        FakeLlm {
            base,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT` (Anthropic's and Azure's base).
    pub fn base_url(&self) -> String {
        self.base.clone()
    }

    /// `http://127.0.0.1:PORT/v1` (the OpenAI-compatible base).
    pub fn openai_url(&self) -> String {
        format!("{}/v1", self.base)
    }

    /// Replies for `model`, served in order, one per request.
    pub fn script(&self, model: &str, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.shared.scripts)
            .entry(model.to_owned())
            .or_default()
            .extend(replies);
    }

    /// Decides the reply from the request (for parallel callers whose order is not
    /// fixed); consulted when the model's scripted replies are used up.
    pub fn respond(&self, model: &str, f: impl Fn(&Seen) -> Reply + Send + Sync + 'static) {
        lock(&self.shared.responders).insert(model.to_owned(), Arc::new(f));
    }

    /// The scripted replies of `model` not served yet.
    pub fn remaining(&self, model: &str) -> usize {
        lock(&self.shared.scripts)
            .get(model)
            .map_or(0, VecDeque::len)
    }

    /// Every request, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.shared.log).clone()
    }

    pub fn requests_for(&self, model: &str) -> Vec<Seen> {
        let log = lock(&self.shared.log);
        log.iter().filter(|s| s.model == model).cloned().collect()
    }

    /// Every request once none is in flight any more; panics after `within`.
    pub async fn wait_settled(&self, within: Duration) -> Vec<Seen> {
        let deadline = Instant::now() + within;
        loop {
            let all = self.requests();
            if all.iter().all(|s| s.outcome != Outcome::InFlight) {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "fake LLM: requests still in flight after {within:?}: {:?}",
                all.iter()
                    .filter(|s| s.outcome == Outcome::InFlight)
                    .map(|s| &s.model)
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A lock that survives a test's panic (the outcome guard locks in `Drop`).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn openai(State(s): State<Arc<Shared>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response {
    s.handle(Dialect::OpenAi, None, &uri, &h, &body)
}

async fn azure_deployment(
    State(s): State<Arc<Shared>>,
    Path(deployment): Path<String>,
    uri: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    s.handle(Dialect::Azure, Some(deployment), &uri, &h, &body)
}

async fn azure_v1(State(s): State<Arc<Shared>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response {
    s.handle(Dialect::Azure, None, &uri, &h, &body)
}

async fn anthropic(State(s): State<Arc<Shared>>, uri: Uri, h: HeaderMap, body: Bytes) -> Response {
    s.handle(Dialect::Anthropic, None, &uri, &h, &body)
}

async fn not_found(uri: Uri) -> Response {
    let body = json!({ "error": { "message": format!("fake LLM: no route {uri}"), "type": "invalid_request_error", "code": "not_found" } });
    Plan::json(404, body, Outcome::Completed).into_response(None)
}

impl Shared {
    fn handle(
        self: &Arc<Self>,
        dialect: Dialect,
        deployment: Option<String>,
        uri: &Uri,
        headers: &HeaderMap,
        raw: &[u8],
    ) -> Response {
        let body: Option<Value> = serde_json::from_slice(raw).ok();
        let body_value = body.clone().unwrap_or(Value::Null);
        let model = deployment
            .or_else(|| body_value["model"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let seen = Seen {
            dialect,
            model,
            path: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.to_string()),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            stream: body_value["stream"] == true,
            include_usage: body_value["stream_options"]["include_usage"] == true,
            body: body_value,
            outcome: Outcome::InFlight,
            at: Instant::now(),
        };
        let index = {
            let mut log = lock(&self.log);
            log.push(seen.clone());
            log.len() - 1
        };
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let plan = match self.refusal(&seen, body.is_some()) {
            Some(plan) => plan,
            None => match self.next_reply(&seen) {
                Some(reply) => plan(reply, &seen, n),
                None => {
                    let message =
                        format!("fake LLM: no scripted reply left for model {}", seen.model);
                    Plan::json(
                        500,
                        error_body(dialect, 500, &message),
                        Outcome::Faulted(message),
                    )
                }
            },
        };
        plan.into_response(Some(Finish {
            shared: self.clone(),
            index,
            done: false,
        }))
    }

    /// What the real servers refuse before looking at the model: a wrong key, a body
    /// that is not JSON, a missing required field or header.
    fn refusal(&self, seen: &Seen, is_json: bool) -> Option<Plan> {
        let header = |name: &str| seen.headers.get(name).map(String::as_str);
        if let Some(key) = &self.key {
            let given = match seen.dialect {
                Dialect::OpenAi => header("authorization").and_then(|v| v.strip_prefix("Bearer ")),
                Dialect::Azure => header("api-key"),
                Dialect::Anthropic => header("x-api-key"),
            };
            if given != Some(key.as_str()) {
                let body = match seen.dialect {
                    Dialect::Anthropic => {
                        anthropic_error("authentication_error", "invalid x-api-key")
                    }
                    Dialect::OpenAi | Dialect::Azure => openai_error(
                        "Incorrect API key provided.",
                        "invalid_request_error",
                        Some("invalid_api_key"),
                    ),
                };
                return Some(Plan::json(401, body, Outcome::Faulted("status 401".into())));
            }
        }
        let missing = if !is_json {
            Some("the body is not JSON")
        } else if !seen.body["messages"].is_array() {
            Some("messages: Field required")
        } else if seen.dialect == Dialect::Anthropic && header("anthropic-version").is_none() {
            Some("anthropic-version: header is required")
        } else if seen.dialect == Dialect::Anthropic && !seen.body["max_tokens"].is_u64() {
            Some("max_tokens: Field required")
        } else if seen.path.starts_with("/openai/deployments/")
            && !seen.path.contains("api-version=")
        {
            Some("Missing required query parameter: api-version")
        } else {
            None
        };
        missing.map(|message| {
            Plan::json(
                400,
                error_body(seen.dialect, 400, message),
                Outcome::Faulted(format!("status 400: {message}")),
            )
        })
    }

    fn next_reply(&self, seen: &Seen) -> Option<Reply> {
        let scripted = lock(&self.scripts)
            .get_mut(&seen.model)
            .and_then(VecDeque::pop_front);
        if scripted.is_some() {
            return scripted;
        }
        // Called without the lock: the function may take its time.
        let responder = lock(&self.responders).get(&seen.model).cloned()?;
        Some(responder(seen))
    }
}

/// Marks the request's outcome when its answer has been handed over, or
/// `Disconnected` when the body is dropped before (the client went away).
struct Finish {
    shared: Arc<Shared>,
    index: usize,
    done: bool,
}

impl Finish {
    fn set(&mut self, outcome: Outcome) {
        lock(&self.shared.log)[self.index].outcome = outcome;
        self.done = true;
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if !self.done {
            self.set(Outcome::Disconnected);
        }
    }
}

enum Step {
    Send(Bytes),
    Pause(Duration),
    /// Ends the body with an error: hyper closes the connection mid-body.
    Drop,
}

/// A response to send: status, headers, and the body as timed steps.
struct Plan {
    status: u16,
    sse: bool,
    headers: Vec<(String, String)>,
    steps: Vec<Step>,
    /// The outcome once every step is done.
    end: Outcome,
}

impl Plan {
    fn json(status: u16, body: Value, end: Outcome) -> Plan {
        Plan {
            status,
            sse: false,
            headers: Vec::new(),
            steps: vec![Step::Send(Bytes::from(body.to_string()))],
            end,
        }
    }

    fn sse(events: Vec<Bytes>, pace: Duration, interrupt: Option<Interrupt>, end: Outcome) -> Plan {
        let (steps, end) = timed(events, pace, interrupt, end);
        Plan {
            status: 200,
            sse: true,
            headers: Vec::new(),
            steps,
            end,
        }
    }

    fn with_header(mut self, name: &str, value: impl ToString) -> Plan {
        self.headers.push((name.to_owned(), value.to_string()));
        self
    }

    fn into_response(self, finish: Option<Finish>) -> Response {
        let content_type = if self.sse {
            "text/event-stream; charset=utf-8"
        } else {
            "application/json"
        };
        let mut response = Response::builder()
            .status(self.status)
            .header("content-type", content_type)
            .header("cache-control", "no-cache");
        for (name, value) in &self.headers {
            response = response.header(name, value);
        }
        response
            .body(body(self.steps, finish, self.end))
            .expect("fake LLM response")
    }
}

/// The body as a stream, so that pauses are real and a client that leaves drops it.
/// The outcome is set when the stream is polled past its last piece: by then hyper has
/// taken every byte.
fn body(steps: Vec<Step>, finish: Option<Finish>, end: Outcome) -> Body {
    let state = Some((steps.into_iter(), finish, end));
    Body::from_stream(futures::stream::unfold(state, |state| async move {
        let (mut steps, mut finish, end) = state?;
        loop {
            match steps.next() {
                Some(Step::Pause(d)) => tokio::time::sleep(d).await,
                Some(Step::Send(bytes)) => {
                    return Some((Ok(bytes), Some((steps, finish, end))));
                }
                Some(Step::Drop) => {
                    // hyper writes out what was ready only when the body waits: without
                    // this pause the events sent before would die in its buffer.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if let Some(f) = &mut finish {
                        f.set(end);
                    }
                    let dropped = std::io::Error::other("fake LLM: connection dropped");
                    return Some((Err(dropped), None));
                }
                None => {
                    if let Some(f) = &mut finish {
                        f.set(end);
                    }
                    return None;
                }
            }
        }
    }))
}

/// `events` with the pace between them and the interrupt applied.
fn timed(
    events: Vec<Bytes>,
    pace: Duration,
    interrupt: Option<Interrupt>,
    end: Outcome,
) -> (Vec<Step>, Outcome) {
    let total = events.len();
    let mut steps = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        match interrupt {
            Some(Interrupt::Drop { after }) if after == i => break,
            Some(Interrupt::Stall { after, pause }) if after == i => {
                steps.push(Step::Pause(pause));
            }
            _ if i > 0 && !pace.is_zero() => steps.push(Step::Pause(pace)),
            _ => {}
        }
        steps.push(Step::Send(event));
    }
    if let Some(Interrupt::Drop { after }) = interrupt {
        steps.push(Step::Drop);
        let sent = after.min(total);
        return (
            steps,
            Outcome::Faulted(format!("dropped after {sent} events")),
        );
    }
    (steps, end)
}

/// The response to `reply` for the request `seen` (the `n`th the fake answered).
fn plan(reply: Reply, seen: &Seen, n: u64) -> Plan {
    let dialect = seen.dialect;
    let wire = Wire {
        dialect,
        id: match dialect {
            Dialect::Anthropic => format!("msg_fake{n}"),
            Dialect::OpenAi | Dialect::Azure => format!("chatcmpl-fake{n}"),
        },
        model: seen.model.clone(),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        include_usage: seen.include_usage,
        usage: reply.usage,
    };
    let fault = |status: u16, body: Value| {
        Plan::json(status, body, Outcome::Faulted(format!("status {status}")))
    };
    let anthropic = dialect == Dialect::Anthropic;
    let mut plan = match reply.kind {
        Kind::Answer { text, calls } => {
            wire.answer(seen.stream, &text, &calls, reply.pace, reply.interrupt)
        }
        Kind::RejectStreamOptions if seen.body.get("stream_options").is_none() => {
            wire.answer(seen.stream, "ok", &[], reply.pace, reply.interrupt)
        }
        Kind::RejectStreamOptions => fault(
            400,
            if anthropic {
                anthropic_error(
                    "invalid_request_error",
                    "stream_options: Extra inputs are not permitted",
                )
            } else {
                openai_error(
                    "property 'stream_options' is unsupported",
                    "invalid_request_error",
                    None,
                )
            },
        ),
        Kind::Status { status, body } => fault(
            status,
            body.unwrap_or_else(|| {
                error_body(
                    dialect,
                    status,
                    &format!("fake LLM: scripted status {status}"),
                )
            }),
        ),
        Kind::RateLimited { after } => {
            let body = if anthropic {
                anthropic_error(
                    "rate_limit_error",
                    "This request would exceed the rate limit for your organization.",
                )
            } else {
                openai_error(
                    "Rate limit reached for requests.",
                    "rate_limit_error",
                    Some("rate_limit_exceeded"),
                )
            };
            let ms = after.as_millis();
            fault(429, body)
                .with_header("retry-after-ms", ms)
                .with_header("retry-after", ms.div_ceil(1000))
        }
        Kind::Overloaded if anthropic => {
            fault(529, anthropic_error("overloaded_error", "Overloaded"))
        }
        Kind::Overloaded => fault(
            503,
            openai_error(
                "The server is overloaded or not ready yet.",
                "server_error",
                None,
            ),
        ),
        Kind::ContextLength => fault(
            400,
            if anthropic {
                anthropic_error(
                    "invalid_request_error",
                    "prompt is too long: 210000 tokens > 200000 maximum",
                )
            } else {
                openai_error(
                    "This model's maximum context length is 128000 tokens. However, your \
                     messages resulted in 131072 tokens. Please reduce the length of the messages.",
                    "invalid_request_error",
                    Some("context_length_exceeded"),
                )
            },
        ),
        Kind::ErrorMidStream if !seen.stream => fault(
            500,
            error_body(
                dialect,
                500,
                "The server had an error while processing your request.",
            ),
        ),
        Kind::ErrorMidStream => Plan::sse(
            wire.error_mid_stream(),
            reply.pace,
            None,
            Outcome::Faulted("error mid-stream".into()),
        ),
        Kind::Malformed => wire.malformed(seen.stream),
    };
    plan.headers.extend(reply.headers);
    let request_id = if anthropic {
        "request-id"
    } else {
        "x-request-id"
    };
    plan.with_header(request_id, format!("req_fake{n}"))
}

/// Writes one answer in one dialect.
struct Wire {
    dialect: Dialect,
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: (u64, u64),
}

impl Wire {
    fn answer(
        &self,
        stream: bool,
        text: &str,
        calls: &[Call],
        pace: Duration,
        interrupt: Option<Interrupt>,
    ) -> Plan {
        let anthropic = self.dialect == Dialect::Anthropic;
        if stream {
            let events = if anthropic {
                self.anthropic_stream(text, calls)
            } else {
                self.openai_stream(text, calls)
            };
            return Plan::sse(events, pace, interrupt, Outcome::Completed);
        }
        let body = Bytes::from(if anthropic {
            self.anthropic_message(text, calls).to_string()
        } else {
            self.openai_completion(text, calls).to_string()
        });
        // An interrupted non-streamed answer stops in the middle of its body.
        let parts = match interrupt {
            Some(_) => vec![body.slice(..body.len() / 2), body.slice(body.len() / 2..)],
            None => vec![body],
        };
        let (steps, end) = timed(parts, Duration::ZERO, interrupt, Outcome::Completed);
        Plan {
            status: 200,
            sse: false,
            headers: Vec::new(),
            steps,
            end,
        }
    }

    /// A few text deltas, then the error the server sends after HTTP 200.
    fn error_mid_stream(&self) -> Vec<Bytes> {
        let text = "Partial answer before the server failed";
        if self.dialect == Dialect::Anthropic {
            // message_start, ping, content_block_start, two text deltas.
            let mut events: Vec<Bytes> = self
                .anthropic_stream(text, &[])
                .into_iter()
                .take(5)
                .collect();
            events.push(anthropic_event(&anthropic_error(
                "overloaded_error",
                "Overloaded",
            )));
            events
        } else {
            // The role chunk and two text deltas.
            let mut events: Vec<Bytes> =
                self.openai_stream(text, &[]).into_iter().take(3).collect();
            events.push(sse_data(&openai_error(
                "The server had an error while processing your request.",
                "server_error",
                None,
            )));
            events
        }
    }

    /// One good event, then one whose data is cut off mid-JSON; or half a JSON body.
    fn malformed(&self, stream: bool) -> Plan {
        let end = Outcome::Faulted("malformed".into());
        if !stream {
            let body = format!(
                r#"{{"id":"{}","object":"chat.completion","choices":[{{"#,
                self.id
            );
            return Plan {
                status: 200,
                sse: false,
                headers: Vec::new(),
                steps: vec![Step::Send(Bytes::from(body))],
                end,
            };
        }
        let events = if self.dialect == Dialect::Anthropic {
            let start = self.anthropic_stream("", &[]).swap_remove(0);
            let broken = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_del\n\n";
            vec![start, Bytes::from_static(broken.as_bytes())]
        } else {
            let first = self.openai_stream("", &[]).swap_remove(0);
            let broken =
                "data: {\"id\":\"chatcmpl\",\"choices\":[{\"delta\":{\"content\":\"Hel\n\n";
            vec![first, Bytes::from_static(broken.as_bytes())]
        };
        Plan::sse(events, Duration::ZERO, None, end)
    }

    fn finish_reason(calls: &[Call], anthropic: bool) -> &'static str {
        match (calls.is_empty(), anthropic) {
            (true, false) => "stop",
            (false, false) => "tool_calls",
            (true, true) => "end_turn",
            (false, true) => "tool_use",
        }
    }

    fn openai_chunk(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
        });
        // With include_usage every chunk but the last carries `"usage": null`, as
        // OpenAI's do.
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        sse_data(&chunk)
    }

    fn openai_usage(&self) -> Value {
        let (prompt, completion) = self.usage;
        json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion })
    }

    fn openai_stream(&self, text: &str, calls: &[Call]) -> Vec<Bytes> {
        let mut events =
            vec![self.openai_chunk(json!({ "role": "assistant", "content": "" }), None)];
        for piece in pieces(text) {
            events.push(self.openai_chunk(json!({ "content": piece }), None));
        }
        // Calls one after the other, as OpenAI sends them: the id and name first, then
        // the arguments in fragments.
        for (index, call) in calls.iter().enumerate() {
            let function = json!({ "name": call.name, "arguments": "" });
            let first =
                json!({ "index": index, "id": call.id, "type": "function", "function": function });
            events.push(self.openai_chunk(json!({ "tool_calls": [first] }), None));
            for fragment in fragments(&call.arguments) {
                let part = json!({ "index": index, "function": { "arguments": fragment } });
                events.push(self.openai_chunk(json!({ "tool_calls": [part] }), None));
            }
        }
        let reason = Wire::finish_reason(calls, false);
        events.push(self.openai_chunk(json!({}), Some(reason)));
        if self.include_usage {
            events.push(sse_data(&json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.openai_usage(),
            })));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        events
    }

    fn openai_completion(&self, text: &str, calls: &[Call]) -> Value {
        let content = if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            json!(text)
        };
        let mut message = json!({ "role": "assistant", "content": content });
        if !calls.is_empty() {
            let calls: Vec<Value> = calls
                .iter()
                .map(|c| json!({ "id": c.id, "type": "function", "function": { "name": c.name, "arguments": c.arguments } }))
                .collect();
            message["tool_calls"] = json!(calls);
        }
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "message": message, "finish_reason": Wire::finish_reason(calls, false) }],
            "usage": self.openai_usage(),
        })
    }

    fn anthropic_stream(&self, text: &str, calls: &[Call]) -> Vec<Bytes> {
        let (input, output) = self.usage;
        let start = json!({
            "type": "message_start",
            "message": {
                "id": self.id, "type": "message", "role": "assistant", "content": [],
                "model": self.model, "stop_reason": null, "stop_sequence": null,
                "usage": { "input_tokens": input, "output_tokens": 1 },
            },
        });
        let mut events = vec![
            anthropic_event(&start),
            anthropic_event(&json!({ "type": "ping" })),
        ];
        let mut index = 0;
        let mut block = |events: &mut Vec<Bytes>, start: Value, deltas: Vec<Value>| {
            events.push(anthropic_event(
                &json!({ "type": "content_block_start", "index": index, "content_block": start }),
            ));
            for delta in deltas {
                events.push(anthropic_event(
                    &json!({ "type": "content_block_delta", "index": index, "delta": delta }),
                ));
            }
            events.push(anthropic_event(
                &json!({ "type": "content_block_stop", "index": index }),
            ));
            index += 1;
        };
        if !text.is_empty() {
            let deltas = pieces(text)
                .into_iter()
                .map(|p| json!({ "type": "text_delta", "text": p }))
                .collect();
            block(&mut events, json!({ "type": "text", "text": "" }), deltas);
        }
        for call in calls {
            let deltas = fragments(&call.arguments)
                .into_iter()
                .map(|p| json!({ "type": "input_json_delta", "partial_json": p }))
                .collect();
            let start =
                json!({ "type": "tool_use", "id": call.id, "name": call.name, "input": {} });
            block(&mut events, start, deltas);
        }
        events.push(anthropic_event(&json!({
            "type": "message_delta",
            "delta": { "stop_reason": Wire::finish_reason(calls, true), "stop_sequence": null },
            "usage": { "output_tokens": output },
        })));
        events.push(anthropic_event(&json!({ "type": "message_stop" })));
        events
    }

    fn anthropic_message(&self, text: &str, calls: &[Call]) -> Value {
        let mut content = Vec::new();
        if !text.is_empty() {
            content.push(json!({ "type": "text", "text": text }));
        }
        for call in calls {
            // Not-JSON arguments (which the real API never sends whole) go as a string.
            let input = serde_json::from_str::<Value>(&call.arguments)
                .unwrap_or_else(|_| json!(call.arguments));
            content.push(
                json!({ "type": "tool_use", "id": call.id, "name": call.name, "input": input }),
            );
        }
        let (input, output) = self.usage;
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": Wire::finish_reason(calls, true),
            "stop_sequence": null,
            "usage": { "input_tokens": input, "output_tokens": output },
        })
    }
}

fn sse_data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// An Anthropic event: its `event:` line repeats the data's `type`.
fn anthropic_event(value: &Value) -> Bytes {
    let name = value["type"].as_str().expect("an event has a type");
    Bytes::from(format!("event: {name}\ndata: {value}\n\n"))
}

/// Text as a model streams it: a word (with the space after it) at a time, long words
/// in pieces.
fn pieces(text: &str) -> Vec<String> {
    text.split_inclusive(char::is_whitespace)
        .flat_map(|word| {
            let chars: Vec<char> = word.chars().collect();
            chars
                .chunks(12)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Tool arguments in at least two fragments (three when long enough), so that a
/// client must join them.
fn fragments(arguments: &str) -> Vec<String> {
    let chars: Vec<char> = arguments.chars().collect();
    let size = chars.len().div_ceil(3).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// An error in the dialect's shape, its type chosen by the status.
fn error_body(dialect: Dialect, status: u16, message: &str) -> Value {
    match dialect {
        Dialect::Anthropic => {
            let kind = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            anthropic_error(kind, message)
        }
        Dialect::OpenAi | Dialect::Azure => {
            let kind = match status {
                429 => "rate_limit_error",
                500..=599 => "server_error",
                _ => "invalid_request_error",
            };
            openai_error(message, kind, None)
        }
    }
}

fn openai_error(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
}

fn anthropic_error(kind: &str, message: &str) -> Value {
    json!({ "type": "error", "error": { "type": kind, "message": message } })
}

//! The OpenAI-compatible chat completions wire format (OpenAI, DeepSeek, Qwen, vLLM,
//! Ollama, LiteLLM; Azure differs only in URL and header): request types and the
//! accumulation of a streamed answer. Ours on purpose, as thin serde types (the way
//! Zed's `open_ai` crate does it).
//!
//! Streamed tool calls arrive as fragments keyed by `index` (the `id` and name only
//! in the first one, `arguments` as string pieces, parallel calls interleaved); they
//! are flushed on *any* `finish_reason` and at the end of the stream, and their
//! arguments parsed only then: invalid JSON is the model's mistake, reported back to
//! it, not a transport error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Request {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDefinition>,
    pub stream: bool,
    /// Asks for a final usage chunk; some "compatible" servers reject the field, so
    /// it is a per-model choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamOptions {
    pub include_usage: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    System {
        content: String,
    },
    User {
        content: String,
    },
    Assistant {
        #[serde(default)]
        content: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

/// A tool call as it is sent back in the conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text, as the model wrote it.
    pub arguments: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolDefinition {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionDefinition,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunctionDefinition {
    pub name: String,
    pub description: String,
    pub parameters: Json,
}

impl ToolDefinition {
    pub fn function(name: &str, description: &str, parameters: Json) -> Self {
        Self {
            kind: "function",
            function: FunctionDefinition {
                name: name.to_owned(),
                description: description.to_owned(),
                parameters,
            },
        }
    }
}

/// One `data:` payload of the stream.
#[derive(Debug, Deserialize)]
struct Chunk {
    // `Option` throughout: some compatible servers send explicit `null`s.
    #[serde(default)]
    choices: Option<Vec<ChunkChoice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallChunk>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallChunk {
    /// Absent on some compatibility layers: then the fragment's position counts.
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionChunk>,
}

#[derive(Debug, Deserialize)]
struct FunctionChunk {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// `{"error": {message, type, code}}`, in an HTTP error body or inside a stream.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, thiserror::Error)]
#[error("{message}{}", code.as_deref().map_or(String::new(), |c| format!(" ({c})")))]
pub struct WireError {
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "code_as_text")]
    pub code: Option<String>,
}

/// Some servers send `code` as a number.
fn code_as_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Json>::deserialize(d)? {
        Some(Json::String(s)) => Some(s),
        Some(Json::Null) | None => None,
        Some(other) => Some(other.to_string()),
    })
}

/// A tool call the model finished writing.
#[derive(Clone, Debug, PartialEq)]
pub struct CompletedToolCall {
    pub id: String,
    pub name: String,
    /// The parsed arguments (`{}` for an empty string), or why they are not JSON.
    pub arguments: Result<Json, String>,
}

/// Everything a streamed answer said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tool_calls: Vec<CompletedToolCall>,
    /// `stop`, `length`, `tool_calls`, `content_filter`…; `None` if the stream ended
    /// without one.
    pub finish_reason: Option<String>,
    /// `None` when the server sent none (not asked, or the stream died).
    pub usage: Option<WireUsage>,
    /// `[DONE]` was seen.
    pub done: bool,
}

#[derive(Debug, Default)]
struct RawCall {
    id: String,
    name: String,
    arguments: String,
}

/// Builds a [`Completion`] from the stream's `data:` payloads.
#[derive(Debug, Default)]
pub struct StreamAccumulator {
    completion: Completion,
    pending: BTreeMap<usize, RawCall>,
}

impl StreamAccumulator {
    /// Takes one `data:` payload; returns the text it added (to stream as tokens), or
    /// the error the server sent inside the stream.
    pub fn push(&mut self, data: &str) -> Result<Option<String>, StreamError> {
        let data = data.trim();
        if data == "[DONE]" {
            self.completion.done = true;
            self.flush();
            return Ok(None);
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            StreamError::Malformed(format!(
                "{e}: {}",
                data.chars().take(200).collect::<String>()
            ))
        })?;
        if let Some(error) = chunk.error {
            return Err(StreamError::Server(error));
        }
        if let Some(usage) = chunk.usage {
            self.completion.usage = Some(usage);
        }
        let mut added = String::new();
        // Azure sends chunks with no choices (`prompt_filter_results`) first.
        for choice in chunk.choices.unwrap_or_default() {
            let delta = choice.delta.unwrap_or_default();
            if let Some(text) = delta.content {
                added.push_str(&text);
            }
            for (position, part) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                let call = self
                    .pending
                    .entry(part.index.unwrap_or(position))
                    .or_default();
                // The id and name come once; servers that repeat them (or send an
                // empty id later) must not blank or double them.
                if let Some(id) = part.id.filter(|id| !id.is_empty())
                    && call.id.is_empty()
                {
                    call.id = id;
                }
                if let Some(f) = part.function {
                    if let Some(name) = f.name.filter(|n| !n.is_empty())
                        && call.name.is_empty()
                    {
                        call.name = name;
                    }
                    if let Some(args) = f.arguments {
                        call.arguments.push_str(&args);
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.completion.finish_reason = Some(reason);
                self.flush();
            }
        }
        self.completion.text.push_str(&added);
        Ok((!added.is_empty()).then_some(added))
    }

    /// The answer so far, with any unfinished tool calls flushed (a stream that ended
    /// without a finish reason still delivers what it carried).
    pub fn finish(mut self) -> Completion {
        self.flush();
        self.completion
    }

    fn flush(&mut self) {
        for (_, call) in std::mem::take(&mut self.pending) {
            let arguments = if call.arguments.trim().is_empty() {
                Ok(Json::Object(Default::default()))
            } else {
                serde_json::from_str(&call.arguments)
                    .map_err(|e| format!("the arguments of {} are not valid JSON ({e})", call.name))
            };
            self.completion.tool_calls.push(CompletedToolCall {
                id: call.id,
                name: call.name,
                arguments,
            });
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StreamError {
    #[error("the model server sent an error in the stream: {0}")]
    Server(WireError),
    #[error("the model server sent an unreadable chunk: {0}")]
    Malformed(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::sse::decode_split;
    use serde_json::json;

    /// Two parallel tool calls whose fragments interleave, text, a finish reason and
    /// the usage chunk, as OpenAI streams them.
    const STREAM: &str = concat!(
        "data: {\"choices\":[],\"prompt_filter_results\":[]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Let me \"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"check.\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"prometheus_query\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"function\":{\"name\":\"topology\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"query\\\": \\\"up\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{job=\\\\\\\"db\\\\\\\"}\\\"}\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":31,\"total_tokens\":151}}\n\n",
        "data: [DONE]\n\n",
    );

    fn run(bytes: &[u8], cut: usize) -> (Completion, String) {
        let mut acc = StreamAccumulator::default();
        let mut tokens = String::new();
        for e in decode_split(bytes, cut) {
            if let Some(t) = acc.push(&e.data).expect("chunk") {
                tokens.push_str(&t);
            }
        }
        (acc.finish(), tokens)
    }

    #[test]
    fn interleaved_tool_calls_are_assembled_at_every_split() {
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            let (c, tokens) = run(bytes, cut);
            assert_eq!(tokens, "Let me check.", "cut {cut}");
            assert_eq!(c.text, "Let me check.");
            assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
            assert_eq!(
                c.usage,
                Some(WireUsage {
                    prompt_tokens: 120,
                    completion_tokens: 31
                })
            );
            assert!(c.done);
            assert_eq!(
                c.tool_calls,
                vec![
                    CompletedToolCall {
                        id: "call_a".into(),
                        name: "prometheus_query".into(),
                        arguments: Ok(json!({ "query": "up{job=\"db\"}" })),
                    },
                    CompletedToolCall {
                        id: "call_b".into(),
                        name: "topology".into(),
                        arguments: Ok(json!({})),
                    },
                ],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn a_stream_cut_short_still_delivers_its_calls_and_bad_json_is_named() {
        let mut acc = StreamAccumulator::default();
        acc.push(r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"t","arguments":"{\"a\":"}}]}}]}"#)
            .unwrap();
        let c = acc.finish();
        assert_eq!(
            (c.done, c.finish_reason.clone(), c.usage),
            (false, None, None)
        );
        let err = c.tool_calls[0].arguments.clone().unwrap_err();
        assert!(
            err.starts_with("the arguments of t are not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn explicit_nulls_missing_indexes_and_repeated_names_are_tolerated() {
        let mut acc = StreamAccumulator::default();
        for data in [
            r#"{"choices":null,"usage":null}"#,
            r#"{"choices":[{"delta":null,"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{"content":null,"tool_calls":null}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"c1","function":{"name":"q","arguments":"{\"a\""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"","function":{"name":"q","arguments":":1}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3}}"#,
        ] {
            acc.push(data).unwrap();
        }
        let c = acc.finish();
        assert_eq!(c.tool_calls.len(), 1);
        assert_eq!(c.tool_calls[0].id, "c1");
        assert_eq!(c.tool_calls[0].name, "q");
        assert_eq!(c.tool_calls[0].arguments, Ok(json!({"a": 1})));
        assert_eq!(
            c.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((3, 0))
        );
    }

    #[test]
    fn errors_inside_the_stream_and_unreadable_chunks() {
        let mut acc = StreamAccumulator::default();
        let err = acc
            .push(r#"{"error":{"message":"Rate limit reached","type":"requests","code":429}}"#)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the model server sent an error in the stream: Rate limit reached (429)"
        );
        assert!(matches!(
            acc.push("{not json").unwrap_err(),
            StreamError::Malformed(_)
        ));
    }

    #[test]
    fn requests_and_messages_are_written_in_the_wire_shape() {
        let request = Request {
            model: "gpt-4o".into(),
            messages: vec![
                Message::System {
                    content: "s".into(),
                },
                Message::Assistant {
                    content: None,
                    tool_calls: vec![ToolCall {
                        id: "call_a".into(),
                        kind: "function".into(),
                        function: FunctionCall {
                            name: "topology".into(),
                            arguments: "{}".into(),
                        },
                    }],
                },
                Message::Tool {
                    tool_call_id: "call_a".into(),
                    content: "{}".into(),
                },
            ],
            tools: vec![ToolDefinition::function(
                "topology",
                "d",
                json!({ "type": "object" }),
            )],
            stream: true,
            stream_options: Some(StreamOptions {
                include_usage: true,
            }),
            max_tokens: None,
            temperature: None,
        };
        let v = serde_json::to_value(&request).unwrap();
        assert_eq!(
            v["messages"][0],
            json!({ "role": "system", "content": "s" })
        );
        assert_eq!(v["messages"][1]["tool_calls"][0]["type"], "function");
        assert_eq!(
            v["messages"][2],
            json!({ "role": "tool", "tool_call_id": "call_a", "content": "{}" })
        );
        assert_eq!(v["tools"][0]["function"]["name"], "topology");
        assert_eq!(v["stream_options"], json!({ "include_usage": true }));
        assert!(v.get("max_tokens").is_none());
    }
}

//! The Anthropic Messages wire format: request types and the accumulation of a
//! streamed answer. `content_block_start` opens a text or `tool_use` block by index,
//! `input_json_delta` pieces are joined per index and parsed at `content_block_stop`
//! (a tool with no arguments may get no delta: its start block's `input` stands),
//! `message_delta.usage.output_tokens` is cumulative (the last value counts), and an
//! `error` event can arrive after HTTP 200.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::openai::{CompletedToolCall, WireError};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Request {
    pub model: String,
    /// Required by the API.
    pub max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub messages: Vec<Message>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDefinition>,
    pub stream: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `user` or `assistant`; tool results go back as a `user` message.
    pub role: String,
    pub content: Vec<ContentBlock>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Json,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    pub input_schema: Json,
}

/// Token counts of a streamed answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Everything a streamed answer said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tool_calls: Vec<CompletedToolCall>,
    /// `end_turn`, `max_tokens`, `tool_use`, …
    pub stop_reason: Option<String>,
    pub usage: Usage,
    /// `message_stop` was seen.
    pub done: bool,
}

#[derive(Debug)]
enum Block {
    Text,
    ToolUse {
        id: String,
        name: String,
        input: Json,
        json: String,
    },
    Other,
}

/// Builds a [`Completion`] from the stream's events (name and data).
#[derive(Debug, Default)]
pub struct StreamAccumulator {
    completion: Completion,
    open: BTreeMap<u64, Block>,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StreamError {
    #[error("the model server sent an error in the stream: {0}")]
    Server(WireError),
    #[error("the model server sent an unreadable event: {0}")]
    Malformed(String),
}

impl StreamAccumulator {
    /// Takes one event; returns the text it added (to stream as tokens).
    pub fn push(&mut self, data: &str) -> Result<Option<String>, StreamError> {
        let event: Json = serde_json::from_str(data).map_err(|e| {
            StreamError::Malformed(format!(
                "{e}: {}",
                data.chars().take(200).collect::<String>()
            ))
        })?;
        let index = event["index"].as_u64().unwrap_or(0);
        match event["type"].as_str().unwrap_or_default() {
            "message_start" => {
                let usage = &event["message"]["usage"];
                self.completion.usage.input_tokens = usage["input_tokens"].as_u64().unwrap_or(0);
                self.completion.usage.output_tokens = usage["output_tokens"].as_u64().unwrap_or(0);
            }
            "content_block_start" => {
                let block = &event["content_block"];
                let opened = match block["type"].as_str() {
                    Some("text") => {
                        let text = block["text"].as_str().unwrap_or_default().to_owned();
                        self.open.insert(index, Block::Text);
                        if !text.is_empty() {
                            self.completion.text.push_str(&text);
                            return Ok(Some(text));
                        }
                        return Ok(None);
                    }
                    Some("tool_use") => Block::ToolUse {
                        id: block["id"].as_str().unwrap_or_default().to_owned(),
                        name: block["name"].as_str().unwrap_or_default().to_owned(),
                        input: block["input"].clone(),
                        json: String::new(),
                    },
                    _ => Block::Other,
                };
                self.open.insert(index, opened);
            }
            "content_block_delta" => {
                let delta = &event["delta"];
                match (delta["type"].as_str(), self.open.get_mut(&index)) {
                    (Some("text_delta"), _) => {
                        let text = delta["text"].as_str().unwrap_or_default().to_owned();
                        self.completion.text.push_str(&text);
                        return Ok((!text.is_empty()).then_some(text));
                    }
                    (Some("input_json_delta"), Some(Block::ToolUse { json, .. })) => {
                        json.push_str(delta["partial_json"].as_str().unwrap_or_default());
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(block) = self.open.remove(&index) {
                    self.close(block);
                }
            }
            "message_delta" => {
                if let Some(reason) = event["delta"]["stop_reason"].as_str() {
                    self.completion.stop_reason = Some(reason.to_owned());
                }
                // Cumulative: the last value counts.
                if let Some(out) = event["usage"]["output_tokens"].as_u64() {
                    self.completion.usage.output_tokens = out;
                }
                if let Some(input) = event["usage"]["input_tokens"].as_u64() {
                    self.completion.usage.input_tokens = input;
                }
            }
            "message_stop" => self.completion.done = true,
            "error" => {
                let error: WireError = serde_json::from_value(event["error"].clone())
                    .map_err(|e| StreamError::Malformed(e.to_string()))?;
                return Err(StreamError::Server(error));
            }
            // `ping` and what later API versions add.
            _ => {}
        }
        Ok(None)
    }

    /// The answer so far, with blocks still open closed (a stream cut short still
    /// delivers the tool calls it carried).
    pub fn finish(mut self) -> Completion {
        for (_, block) in std::mem::take(&mut self.open) {
            self.close(block);
        }
        self.completion
    }

    fn close(&mut self, block: Block) {
        let Block::ToolUse {
            id,
            name,
            input,
            json,
        } = block
        else {
            return;
        };
        let arguments = if json.trim().is_empty() {
            Ok(if input.is_object() {
                input
            } else {
                Json::Object(Default::default())
            })
        } else {
            serde_json::from_str(&json)
                .map_err(|e| format!("the arguments of {name} are not valid JSON ({e})"))
        };
        self.completion.tool_calls.push(CompletedToolCall {
            id,
            name,
            arguments,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::sse::decode_split;
    use serde_json::json;

    const STREAM: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":210,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking the \"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"database.\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"prometheus_query\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"query\\\": \\\"pg_\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"up == 0\\\"}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"topology\",\"input\":{}}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":12}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":48}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    #[test]
    fn blocks_are_assembled_at_every_split() {
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            let events = decode_split(bytes, cut);
            let mut acc = StreamAccumulator::default();
            let mut tokens = String::new();
            for e in events {
                if let Some(t) = acc.push(&e.data).expect("event") {
                    tokens.push_str(&t);
                }
            }
            let c = acc.finish();
            assert_eq!(tokens, "Checking the database.", "cut {cut}");
            assert_eq!(c.text, tokens);
            assert_eq!(c.stop_reason.as_deref(), Some("tool_use"));
            assert_eq!(
                c.usage,
                Usage {
                    input_tokens: 210,
                    output_tokens: 48
                }
            );
            assert!(c.done);
            assert_eq!(
                c.tool_calls,
                vec![
                    CompletedToolCall {
                        id: "toolu_1".into(),
                        name: "prometheus_query".into(),
                        arguments: Ok(json!({ "query": "pg_up == 0" })),
                    },
                    CompletedToolCall {
                        id: "toolu_2".into(),
                        name: "topology".into(),
                        arguments: Ok(json!({})),
                    },
                ],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn an_error_after_200_and_a_stream_cut_short() {
        let mut acc = StreamAccumulator::default();
        let err = acc
            .push(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the model server sent an error in the stream: Overloaded"
        );
        let mut acc = StreamAccumulator::default();
        acc.push(r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"q","input":{}}}"#).unwrap();
        acc.push(r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#).unwrap();
        let c = acc.finish();
        assert!(!c.done);
        assert!(
            c.tool_calls[0]
                .arguments
                .as_ref()
                .unwrap_err()
                .starts_with("the arguments of q")
        );
    }

    #[test]
    fn tool_results_go_back_as_user_blocks() {
        let m = Message {
            role: "user".into(),
            content: vec![ContentBlock::ToolResult {
                tool_use_id: "toolu_1".into(),
                content: "{\"result\":[]}".into(),
                is_error: false,
            }],
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({ "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "toolu_1", "content": "{\"result\":[]}" }] })
        );
    }
}

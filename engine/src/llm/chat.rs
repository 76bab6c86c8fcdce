//! A conversation with a model in provider-neutral terms, and its translation into
//! each wire format. What a model answered is recorded with its step, so these
//! types serialize.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{anthropic, openai};

/// A tool the model may call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: Json,
}

/// A tool call the model made. `arguments` is `Err` when the model wrote invalid
/// JSON: that goes back to the model as the tool's error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Result<Json, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum ChatMessage {
    User {
        text: String,
    },
    Assistant {
        text: String,
        #[serde(default)]
        tool_calls: Vec<ToolCall>,
    },
    ToolResult {
        call_id: String,
        content: String,
        #[serde(default)]
        is_error: bool,
    },
}

/// One call's request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub system: String,
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
}

/// How an answer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    Stop,
    ToolCalls,
    /// Cut at `max_tokens`.
    Length,
    /// The provider's filter refused.
    ContentFilter,
}

/// A model's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatReply {
    /// The model that answered (a fallback list's entry).
    pub model: String,
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish: Finish,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// False when the server reported no usage (then the counts are estimates).
    pub usage_reported: bool,
}

impl ChatRequest {
    pub(crate) fn to_openai(
        &self,
        model: &str,
        stream: bool,
        include_usage: bool,
    ) -> openai::Request {
        let mut messages = Vec::with_capacity(self.messages.len() + 1);
        if !self.system.is_empty() {
            messages.push(openai::Message::System {
                content: self.system.clone(),
            });
        }
        for m in &self.messages {
            messages.push(match m {
                ChatMessage::User { text } => openai::Message::User {
                    content: text.clone(),
                },
                ChatMessage::Assistant { text, tool_calls } => openai::Message::Assistant {
                    content: (!text.is_empty()).then(|| text.clone()),
                    tool_calls: tool_calls
                        .iter()
                        .map(|c| openai::ToolCall {
                            id: c.id.clone(),
                            kind: "function".to_owned(),
                            function: openai::FunctionCall {
                                name: c.name.clone(),
                                arguments: arguments_text(&c.arguments),
                            },
                        })
                        .collect(),
                },
                ChatMessage::ToolResult {
                    call_id, content, ..
                } => openai::Message::Tool {
                    tool_call_id: call_id.clone(),
                    content: content.clone(),
                },
            });
        }
        openai::Request {
            model: model.to_owned(),
            messages,
            tools: self
                .tools
                .iter()
                .map(|t| {
                    openai::ToolDefinition::function(&t.name, &t.description, t.parameters.clone())
                })
                .collect(),
            stream,
            stream_options: (stream && include_usage).then_some(openai::StreamOptions {
                include_usage: true,
            }),
            max_tokens: Some(self.max_tokens),
            temperature: Some(0.0),
        }
    }

    pub(crate) fn to_anthropic(&self, model: &str, stream: bool) -> anthropic::Request {
        let mut messages: Vec<anthropic::Message> = Vec::new();
        // Consecutive tool results (and user text) form one user message.
        let mut push = |role: &str, block: anthropic::ContentBlock| match messages.last_mut() {
            Some(last) if last.role == role => last.content.push(block),
            _ => messages.push(anthropic::Message {
                role: role.to_owned(),
                content: vec![block],
            }),
        };
        for m in &self.messages {
            match m {
                ChatMessage::User { text } => {
                    push("user", anthropic::ContentBlock::Text { text: text.clone() })
                }
                ChatMessage::Assistant { text, tool_calls } => {
                    if !text.is_empty() {
                        push(
                            "assistant",
                            anthropic::ContentBlock::Text { text: text.clone() },
                        );
                    }
                    for c in tool_calls {
                        push(
                            "assistant",
                            anthropic::ContentBlock::ToolUse {
                                id: c.id.clone(),
                                name: c.name.clone(),
                                input: c
                                    .arguments
                                    .clone()
                                    .unwrap_or_else(|_| Json::Object(Default::default())),
                            },
                        );
                    }
                }
                ChatMessage::ToolResult {
                    call_id,
                    content,
                    is_error,
                } => push(
                    "user",
                    anthropic::ContentBlock::ToolResult {
                        tool_use_id: call_id.clone(),
                        content: content.clone(),
                        is_error: *is_error,
                    },
                ),
            }
        }
        anthropic::Request {
            model: model.to_owned(),
            max_tokens: self.max_tokens,
            system: (!self.system.is_empty()).then(|| self.system.clone()),
            messages,
            tools: self
                .tools
                .iter()
                .map(|t| anthropic::ToolDefinition {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    input_schema: t.parameters.clone(),
                })
                .collect(),
            stream,
        }
    }
}

/// The arguments as the model wrote them; invalid ones go back as an empty object
/// (their error travels in the tool result).
fn arguments_text(arguments: &Result<Json, String>) -> String {
    match arguments {
        Ok(v) => v.to_string(),
        Err(_) => "{}".to_owned(),
    }
}

pub(crate) fn finish_of(reason: Option<&str>, has_calls: bool) -> Finish {
    match reason {
        Some("length" | "max_tokens") => Finish::Length,
        Some("content_filter" | "refusal") => Finish::ContentFilter,
        _ if has_calls => Finish::ToolCalls,
        _ => Finish::Stop,
    }
}

pub(crate) fn calls_of(calls: Vec<openai::CompletedToolCall>) -> Vec<ToolCall> {
    calls
        .into_iter()
        .map(|c| ToolCall {
            id: c.id,
            name: c.name,
            arguments: c.arguments,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conversation() -> ChatRequest {
        ChatRequest {
            system: "be brief".into(),
            messages: vec![
                ChatMessage::User {
                    text: "why?".into(),
                },
                ChatMessage::Assistant {
                    text: String::new(),
                    tool_calls: vec![
                        ToolCall {
                            id: "a".into(),
                            name: "q".into(),
                            arguments: Ok(json!({"x": 1})),
                        },
                        ToolCall {
                            id: "b".into(),
                            name: "q".into(),
                            arguments: Err("bad".into()),
                        },
                    ],
                },
                ChatMessage::ToolResult {
                    call_id: "a".into(),
                    content: "1".into(),
                    is_error: false,
                },
                ChatMessage::ToolResult {
                    call_id: "b".into(),
                    content: "bad".into(),
                    is_error: true,
                },
            ],
            tools: vec![ToolSpec {
                name: "q".into(),
                description: "d".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 100,
        }
    }

    #[test]
    fn openai_wire_carries_system_calls_and_results() {
        let wire = serde_json::to_value(conversation().to_openai("gpt", true, false)).unwrap();
        assert_eq!(
            wire["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(
            wire["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"x\":1}"
        );
        assert_eq!(
            wire["messages"][3],
            json!({"role": "tool", "tool_call_id": "a", "content": "1"})
        );
        assert!(wire.get("stream_options").is_none());
        let wire = serde_json::to_value(conversation().to_openai("gpt", true, true)).unwrap();
        assert_eq!(wire["stream_options"]["include_usage"], true);
    }

    #[test]
    fn anthropic_wire_groups_tool_results_into_one_user_message() {
        let wire = serde_json::to_value(conversation().to_anthropic("claude", true)).unwrap();
        assert_eq!(wire["system"], "be brief");
        let messages = wire["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1]["content"].as_array().unwrap().len(), 2);
        assert_eq!(messages[2]["role"], "user");
        assert_eq!(messages[2]["content"][1]["is_error"], true);
        assert_eq!(wire["tools"][0]["input_schema"], json!({"type": "object"}));
    }
}

//! A GraphQL-over-WebSocket client of `/graphql/ws` (`graphql-transport-ws` and the
//! legacy `graphql-ws`) that checks what it reads.

use std::collections::VecDeque;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// Longest wait for a message that should come at once.
pub const WAIT: Duration = Duration::from_secs(20);

pub const TRANSPORT_WS: &str = "graphql-transport-ws";
pub const LEGACY: &str = "graphql-ws";

pub type Ws = tokio_tungstenite::WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/graphql/ws` offering `protocol`.
pub async fn connect(addr: &str, protocol: &str) -> Result<Ws, tungstenite::Error> {
    let mut req = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        protocol.parse().expect("header value"),
    );
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The `connection_init` payload that carries `token`.
pub fn bearer_payload(token: &str) -> Value {
    json!({ "Authorization": format!("Bearer {token}") })
}

/// A GraphQL WebSocket client that checks what it reads.
pub struct Client {
    pub ws: Ws,
    protocol: &'static str,
    pings: u32,
    /// Messages read while waiting for something else, handed out first by `recv`.
    early: VecDeque<Value>,
}

impl Client {
    pub async fn open(addr: &str, protocol: &'static str) -> Client {
        Client {
            ws: connect(addr, protocol).await.expect("websocket"),
            protocol,
            pings: 0,
            early: VecDeque::new(),
        }
    }

    /// Opened, initialised with `token` and acknowledged.
    pub async fn authenticated(addr: &str, protocol: &'static str, token: &str) -> Client {
        let mut client = Client::open(addr, protocol).await;
        client.init(token).await;
        let ack = client.recv().await;
        assert_eq!(ack, json!({ "type": "connection_ack" }));
        client
    }

    pub async fn init(&mut self, token: &str) {
        self.send(json!({ "type": "connection_init", "payload": bearer_payload(token) }))
            .await;
    }

    pub async fn send(&mut self, msg: Value) {
        self.send_text(&msg.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn subscribe(&mut self, id: &str, query: &str) {
        self.subscribe_with(id, query, json!({})).await;
    }

    pub async fn subscribe_with(&mut self, id: &str, query: &str, variables: Value) {
        let kind = if self.protocol == LEGACY {
            "start"
        } else {
            "subscribe"
        };
        self.send(json!({
            "id": id,
            "type": kind,
            "payload": { "query": query, "variables": variables },
        }))
        .await;
    }

    /// Subscribes `id` to a live view (`runUpdates`, `approvalRequested`) and returns
    /// once the server listens for it, so that every change made afterwards reaches
    /// it. The server polls a socket's new operations in the order it read them
    /// (`SelectAll`'s ready queue is FIFO), and a live view starts listening in its
    /// first poll: a `{ health }` query sent after it is answered only once it listens.
    pub async fn subscribe_live(&mut self, id: &str, query: &str) {
        self.subscribe(id, query).await;
        let probe = format!("{id}:started");
        self.subscribe(&probe, "{ health }").await;
        let result = if self.protocol == LEGACY {
            "data"
        } else {
            "next"
        };
        let mut answered = false;
        loop {
            let msg = self.read().await;
            if msg["id"] != probe.as_str() {
                self.early.push_back(msg);
                continue;
            }
            if answered {
                assert_eq!(msg, json!({ "id": probe, "type": "complete" }));
                return;
            }
            assert_eq!(
                msg,
                json!({ "id": probe, "type": result, "payload": { "data": { "health": "ok" } } })
            );
            answered = true;
        }
    }

    /// The next protocol message other than a keep-alive.
    pub async fn recv(&mut self) -> Value {
        match self.early.pop_front() {
            Some(msg) => msg,
            None => self.read().await,
        }
    }

    /// The `data` of the next result of operation `id`, passing over other
    /// operations' messages; the operation ending or failing first is a failure.
    pub async fn next_data(&mut self, id: &str) -> Value {
        loop {
            let msg = self.recv().await;
            if msg["id"] != id {
                continue;
            }
            assert!(
                matches!(msg["type"].as_str(), Some("next" | "data")),
                "expected a result of {id}, got {msg}"
            );
            return msg["payload"]["data"].clone();
        }
    }

    /// The next message from the socket other than a keep-alive.
    async fn read(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message in time");
            match msg {
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(&text).expect("a JSON message");
                    if v["type"] != "ka" {
                        return v;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// The close frame's code and reason, skipping keep-alives and live results;
    /// anything else first is a failure.
    pub async fn closed(&mut self, within: Duration) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("the socket closed in time");
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(&text).expect("a JSON message");
                    assert!(
                        matches!(v["type"].as_str(), Some("ka" | "next" | "data")),
                        "unexpected message before the close: {v}"
                    );
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// graphql-transport-ws only: the socket is open and everything sent before has
    /// been handled (the server reads in order), shown by a `pong` echoing a fresh
    /// payload as the very next message.
    pub async fn assert_alive(&mut self) {
        self.pings += 1;
        let probe = json!({ "probe": self.pings });
        self.send(json!({ "type": "ping", "payload": probe })).await;
        assert_eq!(
            self.recv().await,
            json!({ "type": "pong", "payload": probe })
        );
    }

    /// Waits until the server has closed the TCP connection (after our close frame).
    pub async fn close_and_wait(mut self) {
        let _ = self.ws.close(None).await;
        let ended = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
        assert!(ended.is_ok(), "the server ends a socket the client closed");
    }
}

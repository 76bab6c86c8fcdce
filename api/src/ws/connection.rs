//! One socket's life: `connection_init` within the deadline, authentication, then
//! operations until the client leaves, breaks the protocol, its key stops being
//! valid or the server goes away. Everything runs on the socket's own task; an
//! operation is a stream polled here, so closing the socket drops them all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aiops_engine::Engine;
use async_graphql::{Data, Response, ServerError};
use axum::extract::ws::{Message, WebSocket};
use futures::stream::{AbortHandle, BoxStream, SelectAll};
use futures::{FutureExt, SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

use super::Protocol;
use super::close::Close;
use super::message::{ClientMessage, ServerMessage};
use super::sessions::{Registration, Sessions};
use crate::graphql::error::{bad_request, ensure_code, to_gql};
use crate::{AiopsSchema, ClientAddr, MAX_BODY_BYTES, graphql};

/// Operations one socket may have running at once.
pub(super) const MAX_OPERATIONS: usize = 100;

/// How often a legacy client hears `ka` (its library closes a socket that falls silent).
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);

/// Everything a socket needs from the server; deliberately not `AppState`, whose
/// last drop is what closes sockets when the server goes away.
pub(super) struct Connection {
    pub schema: AiopsSchema,
    pub engine: Engine,
    pub sessions: Sessions,
    pub protocol: Protocol,
    pub client: Option<ClientAddr>,
    pub init_timeout: Duration,
    pub permit: OwnedSemaphorePermit,
}

/// An operation's output: a response, or `None` once it has ended.
type Output = (String, Option<Response>);

/// A running operation.
struct Operation {
    abort: AbortHandle,
    /// Whether a result went out: only a first response can be a request error.
    answered: bool,
}

/// A socket and the subprotocol it speaks.
struct Peer {
    socket: WebSocket,
    protocol: Protocol,
}

impl Peer {
    /// Sends one message at once.
    async fn send(&mut self, msg: ServerMessage<'_>) -> Result<(), Close> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// Queues one message; [`Peer::flush`] writes what is queued.
    async fn feed(&mut self, msg: ServerMessage<'_>) -> Result<(), Close> {
        let text = match self.protocol.encode(&msg) {
            None => return Ok(()),
            Some(Ok(text)) => text,
            Some(Err(e)) => {
                let id = uuid::Uuid::now_v7();
                tracing::error!(error.id = %id, error = %e, "cannot encode a WebSocket message");
                return Err(Close::Internal(format!("internal error (id {id})")));
            }
        };
        // A failed send means the peer is gone: end quietly.
        self.socket
            .feed(Message::text(text))
            .await
            .map_err(|_| Close::Normal)
    }

    async fn flush(&mut self) -> Result<(), Close> {
        self.socket.flush().await.map_err(|_| Close::Normal)
    }

    /// The next protocol message, `Err(Close::Normal)` when the peer has gone.
    async fn recv(&mut self) -> Result<ClientMessage, Close> {
        loop {
            let msg = match self.socket.next().await {
                None => return Err(Close::Normal),
                Some(Ok(msg)) => msg,
                Some(Err(e)) => return Err(read_error(e)),
            };
            match msg {
                Message::Text(text) => return self.protocol.parse(text.as_str()),
                Message::Binary(_) => {
                    return Err(Close::Invalid("binary messages are not supported".into()));
                }
                // Answered by the WebSocket layer itself.
                Message::Ping(_) | Message::Pong(_) => {}
                Message::Close(_) => return Err(Close::Normal),
            }
        }
    }

    /// Tells the client why the socket ends (unless it left by itself).
    async fn close(&mut self, close: &Close) {
        if let Close::Normal = close {
            // Replies to the client's close frame, if it sent one.
            let _ = self.socket.close().await;
            return;
        }
        if self.protocol == Protocol::Legacy
            && let Ok(text) = super::legacy::connection_error(close)
        {
            let _ = self.socket.send(Message::text(text)).await;
        }
        let _ = self.socket.send(close.frame()).await;
    }
}

/// What a failed read means for the socket.
fn read_error(e: axum::Error) -> Close {
    use tungstenite::error::{CapacityError, Error};
    match e.into_inner().downcast::<Error>().map(|e| *e) {
        // Refused from the frame header: the payload is never read into memory.
        Ok(Error::Capacity(CapacityError::MessageTooLong { .. })) => Close::TooBig(MAX_BODY_BYTES),
        Ok(Error::Protocol(p)) => Close::Protocol(p.to_string()),
        Ok(Error::Utf8(_)) => Close::Protocol("text message is not UTF-8".into()),
        // I/O failures and resets: nobody is left to tell.
        _ => Close::Normal,
    }
}

impl Connection {
    pub(super) async fn serve(self, socket: WebSocket) {
        let Connection {
            schema,
            engine,
            sessions,
            protocol,
            client,
            init_timeout,
            permit,
        } = self;
        let mut peer = Peer { socket, protocol };
        let mut registration = None;
        let close = match initialise(&mut peer, &engine, &sessions, client, init_timeout).await {
            Err(close) => close,
            Ok((data, reg)) => {
                registration = reg;
                operate(&mut peer, &schema, &sessions, registration.as_ref(), data)
                    .await
                    .err()
                    .unwrap_or(Close::Normal)
            }
        };
        peer.close(&close).await;
        // The slot and the registration go before the TCP connection does, so a client
        // that saw its socket end may open another at once.
        drop(registration);
        drop(permit);
        drop(peer);
    }
}

/// Waits for `connection_init` and authenticates its token: the session data of every
/// operation (principal and client address), and the socket's registration.
async fn initialise(
    peer: &mut Peer,
    engine: &Engine,
    sessions: &Sessions,
    client: Option<ClientAddr>,
    timeout: Duration,
) -> Result<(Arc<Data>, Option<Registration>), Close> {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let payload = loop {
        let msg = tokio::select! {
            _ = &mut deadline => return Err(Close::InitTimeout),
            _ = sessions.stopped() => return Err(Close::GoingAway),
            msg = peer.recv() => msg?,
        };
        match msg {
            ClientMessage::Init(payload) => break payload,
            ClientMessage::Subscribe { .. } => return Err(Close::Unauthorized),
            ClientMessage::Ping(payload) => peer.send(ServerMessage::Pong(payload)).await?,
            ClientMessage::Pong | ClientMessage::Stop { .. } => {}
            ClientMessage::Terminate => return Err(Close::Normal),
        }
    };
    let principal = authenticate(engine, &payload).await?;
    let registration = principal.api_key_id.map(|key| sessions.register(key));
    let mut data = Data::default();
    data.insert(principal);
    if let Some(client) = client {
        data.insert(client);
    }
    peer.send(ServerMessage::Ack).await?;
    Ok((Arc::new(data), registration))
}

async fn authenticate(engine: &Engine, payload: &Value) -> Result<aiops_engine::Principal, Close> {
    let token = graphql::auth::token_from_init(payload).ok_or(Close::Forbidden)?;
    match engine.authenticate(&token).await {
        Ok(principal) => Ok(principal),
        Err(aiops_engine::Error::Unauthenticated) => Err(Close::Forbidden),
        // The database failed, not the client: say so (with an id, never the details).
        Err(e) => Err(Close::Internal(to_gql(e).message)),
    }
}

/// Runs operations until the socket must end.
async fn operate(
    peer: &mut Peer,
    schema: &AiopsSchema,
    sessions: &Sessions,
    registration: Option<&Registration>,
    data: Arc<Data>,
) -> Result<(), Close> {
    let mut streams: SelectAll<BoxStream<'static, Output>> = SelectAll::new();
    let mut operations: HashMap<String, Operation> = HashMap::new();
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE_EVERY);
    // After a slow send, one `ka` is enough: no burst of the missed ones.
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let revoked = async {
        match registration {
            Some(r) => r.revoked().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(revoked);
    loop {
        tokio::select! {
            _ = sessions.stopped() => return Err(Close::GoingAway),
            _ = &mut revoked => return Err(Close::Forbidden),
            // The first tick is immediate: `ka` right after the ack, as the legacy
            // server did.
            _ = keep_alive.tick(), if peer.protocol == Protocol::Legacy => {
                peer.send(ServerMessage::KeepAlive).await?;
            }
            Some((id, output)) = streams.next(), if !streams.is_empty() => {
                deliver(peer, &mut operations, id, output).await?;
                // Results already waiting go out in the same write: under load a
                // socket's events come in bursts, and a write per event costs a
                // system call each.
                for _ in 1..MAX_BURST {
                    match streams.next().now_or_never() {
                        Some(Some((id, output))) => {
                            deliver(peer, &mut operations, id, output).await?
                        }
                        _ => break,
                    }
                }
                peer.flush().await?;
            }
            msg = peer.recv() => match msg? {
                ClientMessage::Init(_) => return Err(Close::TooManyInits),
                ClientMessage::Subscribe { id, request } => {
                    if operations.contains_key(&id) {
                        return Err(Close::DuplicateId(id));
                    }
                    if operations.len() >= MAX_OPERATIONS {
                        let errors = [bad_request(format!(
                            "at most {MAX_OPERATIONS} operations may run at once on one socket"
                        ))];
                        peer.send(ServerMessage::Error { id: &id, errors: &errors }).await?;
                        continue;
                    }
                    let results = schema.execute_stream_with_session_data(*request, data.clone());
                    let tagged = {
                        let id = id.clone();
                        results
                            .map(Some)
                            .chain(futures::stream::once(async { None }))
                            .map(move |r| (id.clone(), r))
                    };
                    let (stream, abort) = futures::stream::abortable(tagged);
                    streams.push(stream.boxed());
                    operations.insert(id, Operation { abort, answered: false });
                }
                ClientMessage::Stop { id } => {
                    if let Some(op) = operations.remove(&id) {
                        op.abort.abort();
                        // The legacy protocol confirms a stop; graphql-transport-ws
                        // sends nothing more for the id.
                        if peer.protocol == Protocol::Legacy {
                            peer.send(ServerMessage::Complete { id: &id }).await?;
                        }
                    }
                }
                ClientMessage::Ping(payload) => peer.send(ServerMessage::Pong(payload)).await?,
                ClientMessage::Pong => {}
                ClientMessage::Terminate => return Ok(()),
            },
        }
    }
}

/// Most results queued for one write.
const MAX_BURST: usize = 64;

/// Queues one output of operation `id` (the caller flushes): `error` for a request
/// that failed before executing, else `next`; `complete` when it ends.
async fn deliver(
    peer: &mut Peer,
    operations: &mut HashMap<String, Operation>,
    id: String,
    output: Option<Response>,
) -> Result<(), Close> {
    let Some(op) = operations.get_mut(&id) else {
        return Ok(());
    };
    let Some(mut response) = output else {
        operations.remove(&id);
        return peer.feed(ServerMessage::Complete { id: &id }).await;
    };
    ensure_code(&mut response.errors);
    if !op.answered && is_request_error(&response) {
        if let Some(op) = operations.remove(&id) {
            op.abort.abort();
        }
        return peer
            .feed(ServerMessage::Error {
                id: &id,
                errors: &response.errors,
            })
            .await;
    }
    op.answered = true;
    peer.feed(ServerMessage::Next {
        id: &id,
        response: &response,
    })
    .await
}

/// A response without data whose errors belong to no field: the request was refused
/// before execution (parse, validation, limits, policy). Field errors, including a
/// subscription that could not start, carry a path and are execution results.
fn is_request_error(response: &Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response
            .errors
            .iter()
            .all(|e: &ServerError| e.path.is_empty())
}

#[cfg(test)]
mod tests {
    use async_graphql::{PathSegment, Value};

    use super::*;

    #[test]
    fn request_errors_are_those_of_no_field() {
        let refused = Response::from_errors(vec![bad_request("syntax error")]);
        assert!(is_request_error(&refused));
        let mut field = bad_request("run not found");
        field.path = vec![PathSegment::Field("runEvents".into())];
        assert!(!is_request_error(&Response::from_errors(vec![field])));
        let mut partial =
            Response::new(Value::from_json(serde_json::json!({ "a": null })).unwrap_or_default());
        partial.errors.push(bad_request("x"));
        assert!(!is_request_error(&partial));
        assert!(!is_request_error(&Response::new(Value::Null)));
    }
}

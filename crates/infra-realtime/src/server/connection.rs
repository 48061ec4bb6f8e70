//! One WebSocket connection: the upgrade (with the client address its per-address limit
//! counts), then one task reading frames, writing the socket's queue, and keeping time (the
//! server's ping after `activity_timeout` of silence, 4201 when the pong is late, the write
//! timeout for a client that stops reading).

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::extract::{FromRequestParts, Path, Query, State, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::time::sleep_until;

use super::client_auth::{AppKeys, authorize_subscription, verify_sign_in};
use super::client_message::{ClientEvent, ClientMessage, SignInRequest, SubscribeRequest};
use super::hub::AppHub;
use super::kill_switch::Kill;
use super::node::Node;
use super::outbox::outbox;
use super::protocol::{CloseCode, check_protocol, error_frame, frame, subscription_error};
use super::rate_window::RateWindow;
use super::subscription::Refusal;
use super::watchlist::watchlist_of;

/// Bytes tungstenite reads at a time; small, because an idle connection keeps this buffer
/// (2 KiB rather than 4 KiB took an idle connection from 10.6 to 8.6 KiB of RSS), and client
/// frames are small: a larger one takes a few reads.
const READ_BUFFER_BYTES: usize = 2048;

/// Bytes a frame may have beyond the app's payload limit (event name, channel, auth).
const FRAME_OVERHEAD: usize = 4096;

#[derive(Deserialize)]
pub(crate) struct ConnectParams {
    protocol: Option<String>,
}

/// The request's client address, as the node's trusted proxies allow it to be known: the
/// socket's peer (when the server was started with each connection's `ConnectInfo`), or the
/// address those proxies wrote in `X-Forwarded-For`.
pub(crate) struct ClientAddress(Option<IpAddr>);

impl FromRequestParts<Arc<Node>> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        node: &Arc<Node>,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(node.trusted_proxies.client_ip(parts)))
    }
}

/// `GET /app/{key}`: the WebSocket upgrade.
pub(crate) async fn upgrade(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
    Query(params): Query<ConnectParams>,
    ClientAddress(peer): ClientAddress,
    ws: WebSocketUpgrade,
) -> Response {
    // tungstenite refuses frames beyond this itself; the connection checks the app's own,
    // smaller limit and answers with the protocol's error.
    let max_message = node.hub().by_key(&key).map_or(64 * 1024, |app| {
        4 * app.config.limits.max_payload_bytes + 64 * 1024
    });
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| serve(node, key, params.protocol, peer, socket))
}

/// Removes the socket from the hub however the task ends, or earlier (`leave`) when the
/// connection is being closed and only its goodbye is left to send.
struct Registration {
    app: Arc<AppHub>,
    socket_id: String,
    registered: bool,
}

impl Registration {
    fn leave(&mut self) {
        if std::mem::take(&mut self.registered) {
            self.app.remove(&self.socket_id);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.leave();
    }
}

/// How a connection sends: every write bounded by the server's write timeout, since a client
/// that stops reading would otherwise hold the write (and the task) forever.
struct Writer {
    socket: WebSocket,
    timeout: Duration,
}

/// The write did not finish within the write timeout, or the socket is gone.
struct WriteFailed;

impl Writer {
    async fn send(&mut self, message: Message) -> Result<(), WriteFailed> {
        let send = self.socket.send(message);
        tokio::pin!(send);
        // Nearly every write completes at once (the kernel takes it): only one that has to
        // wait arms a timer, so the fan-out path pays for no timer per frame.
        let first = std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await;
        let sent = match first {
            Poll::Ready(sent) => sent,
            Poll::Pending => match tokio::time::timeout(self.timeout, send).await {
                Ok(sent) => sent,
                Err(_) => return Err(WriteFailed),
            },
        };
        sent.map_err(|_| WriteFailed)
    }

    /// Sends `pusher:error` with the code, then closes with it; gives up after the write
    /// timeout (the client then learns it from the dropped connection).
    async fn close_with_error(mut self, code: CloseCode, message: &str) {
        let error = Message::Text(error_frame(Some(code.code()), message).into());
        if self.send(error).await.is_ok() {
            self.close(code).await;
        }
    }

    async fn close(mut self, code: CloseCode) {
        let close = Message::Close(Some(CloseFrame {
            code: code.code(),
            reason: Utf8Bytes::from_static(code.reason()),
        }));
        let _ = self.send(close).await;
    }
}

/// Serves one upgraded connection until it closes. `peer` is the client's address when the
/// server knows it (for the per-address limit).
async fn serve(
    node: Arc<Node>,
    key: String,
    protocol: Option<String>,
    peer: Option<IpAddr>,
    socket: WebSocket,
) {
    let mut writer = Writer {
        socket,
        timeout: node.write_timeout,
    };
    let Some(app) = node.hub().by_key(&key).cloned() else {
        let code = CloseCode::UnknownApp;
        return writer.close_with_error(code, code.reason()).await;
    };
    if let Err(code) = check_protocol(protocol.as_deref()) {
        return writer.close_with_error(code, code.reason()).await;
    }
    let socket_id = node.hub().new_socket_id();
    let limits = &app.config.limits;
    let (outbox, mut queued) = outbox(limits.send_buffer_frames, limits.max_queued_bytes);
    let kill = Arc::new(Kill::default());
    if let Err((code, message)) = app.register(&socket_id, outbox, kill.clone(), peer) {
        return writer.close_with_error(code, &message).await;
    }
    let mut registration = Registration {
        app: app.clone(),
        socket_id: socket_id.clone(),
        registered: true,
    };
    let established = frame(
        "pusher:connection_established",
        None,
        &json!({"socket_id": socket_id, "activity_timeout": node.activity_timeout.as_secs()}),
    );
    if writer
        .send(Message::Text(established.into()))
        .await
        .is_err()
    {
        return;
    }
    let mut conn = Connection {
        node: node.clone(),
        app,
        socket_id,
        client_events: RateWindow::new(),
        subscribes: RateWindow::new(),
    };
    let timer = sleep_until((Instant::now() + node.activity_timeout).into());
    tokio::pin!(timer);
    // One wait for the connection's whole life: a fresh `Notified` per loop would register
    // with (and leave) the `Notify`'s waiter list, under its lock, for every frame sent.
    let killed = kill.wait();
    let server_metrics = &node.metrics;
    tokio::pin!(killed);
    let mut pinged = false;
    // Whatever ends the loop, the hub forgets the socket before the goodbye is attempted: a
    // client that does not read must not stay subscribed while its close frame waits.
    let ending = loop {
        tokio::select! {
            code = &mut killed => break Ending::Close(code),
            next = queued.recv() => {
                let Some(message) = next else { break Ending::Gone };
                let bytes = message.len();
                // A client that does not read blocks this send: the write timeout, or the
                // kill switch (its queue filled meanwhile), ends the connection.
                tokio::select! {
                    sent = writer.send(Message::Text(message)) => {
                        if sent.is_err() {
                            break Ending::Close(CloseCode::SlowClient);
                        }
                        server_metrics.sent(bytes);
                    }
                    code = &mut killed => break Ending::Close(code),
                }
            }
            received = writer.socket.recv() => {
                let text = match received {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        break Ending::Error(CloseCode::InvalidMessage, "binary frames are not part of the protocol".into());
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        timer.as_mut().reset((Instant::now() + node.activity_timeout).into());
                        pinged = false;
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => break Ending::Gone,
                    Some(Err(e)) => {
                        // Mostly frames over the size limit; say so if the socket still takes it.
                        break Ending::Error(CloseCode::InvalidMessage, format!("unreadable frame: {e}"));
                    }
                };
                server_metrics.received(text.len());
                timer.as_mut().reset((Instant::now() + node.activity_timeout).into());
                pinged = false;
                if let Err((code, message)) = conn.handle(&text) {
                    break Ending::Error(code, message);
                }
            }
            () = &mut timer => {
                if pinged {
                    break Ending::Close(CloseCode::PongTimeout);
                }
                pinged = true;
                conn.app.send_to_socket(&conn.socket_id, frame("pusher:ping", None, &json!({})));
                timer.as_mut().reset((Instant::now() + node.pong_timeout).into());
            }
        }
    };
    registration.leave();
    match ending {
        Ending::Gone => {}
        Ending::Close(code) => writer.close(code).await,
        Ending::Error(code, message) => writer.close_with_error(code, &message).await,
    }
}

/// How a connection ends.
enum Ending {
    /// The client closed it or the socket is gone: nothing to say.
    Gone,
    /// Closed with a code.
    Close(CloseCode),
    /// `pusher:error` with the message, then closed with the code.
    Error(CloseCode, String),
}

/// What a connection knows about itself.
struct Connection {
    node: Arc<Node>,
    app: Arc<AppHub>,
    socket_id: String,
    client_events: RateWindow,
    subscribes: RateWindow,
}

type Fatal = (CloseCode, String);

impl Connection {
    fn reply(&self, message: String) {
        self.app.send_to_socket(&self.socket_id, message);
    }

    fn error(&self, code: Option<u16>, message: &str) {
        self.reply(error_frame(code, message));
    }

    fn keys(&self) -> AppKeys<'_> {
        AppKeys {
            key: &self.app.config.key,
            secret: &self.app.config.secret,
            max_user_info_bytes: self.app.config.limits.max_presence_user_info_bytes,
        }
    }

    /// Handles one text frame; `Err` closes the connection.
    fn handle(&mut self, text: &str) -> Result<(), Fatal> {
        let limit = self.app.config.limits.max_payload_bytes + FRAME_OVERHEAD;
        let message = ClientMessage::parse(text, limit)
            .map_err(|e| (CloseCode::InvalidMessage, e.to_string()))?;
        match message {
            ClientMessage::Ping => self.reply(frame("pusher:pong", None, &json!({}))),
            ClientMessage::Pong | ClientMessage::Unknown => {}
            ClientMessage::Subscribe(request) => self.subscribe(&request),
            ClientMessage::Unsubscribe { channel } => {
                self.app.unsubscribe(&self.socket_id, &channel);
            }
            ClientMessage::SignIn(request) => self.sign_in(&request)?,
            ClientMessage::ClientEvent(event) => self.client_event(&event),
            ClientMessage::Incomplete(why) => self.error(None, why),
        }
        Ok(())
    }

    fn subscribe(&mut self, request: &SubscribeRequest) {
        let per_second = self.app.config.limits.max_subscribes_per_second;
        if !self.subscribes.admit(per_second, Instant::now()) {
            return self.refuse(
                &request.channel,
                Refusal {
                    status: 429,
                    message: format!(
                        "more than {per_second} subscribes in one second; try again later"
                    ),
                },
            );
        }
        let authorized = authorize_subscription(&self.keys(), &self.socket_id, request);
        let outcome = authorized.and_then(|presence| {
            self.app
                .subscribe(&self.socket_id, &request.channel, presence)
        });
        if let Err(refusal) = outcome {
            self.refuse(&request.channel, refusal);
        }
    }

    fn refuse(&self, channel: &str, refusal: Refusal) {
        self.reply(subscription_error(
            channel,
            refusal.status,
            &refusal.message,
        ));
    }

    fn sign_in(&mut self, request: &SignInRequest) -> Result<(), Fatal> {
        let (user_data, id) = verify_sign_in(&self.keys(), &self.socket_id, request)
            .map_err(|refused| (CloseCode::Unauthorized, refused.0.to_owned()))?;
        let watchlist = if self.app.config.watchlist_events {
            watchlist_of(&user_data).unwrap_or_else(|problem| {
                // Signed in all the same, watching no one: the client is told why.
                self.error(None, &problem);
                Vec::new()
            })
        } else {
            Vec::new()
        };
        self.app.sign_in(&self.socket_id, &id, watchlist);
        self.reply(frame(
            "pusher:signin_success",
            None,
            &json!({"user_data": user_data}),
        ));
        Ok(())
    }

    fn client_event(&mut self, event: &ClientEvent) {
        let limits = &self.app.config.limits;
        if !limits.client_events {
            return self.error(None, "client events are disabled for this app");
        }
        let Some(channel) = event.channel.as_deref() else {
            return self.error(None, "a client event needs a `channel`");
        };
        let kind_allowed = (channel.starts_with("private-") || channel.starts_with("presence-"))
            && !channel.starts_with("private-encrypted-");
        if !kind_allowed {
            return self.error(
                None,
                "client events are allowed on private and presence channels only (not encrypted ones)",
            );
        }
        if !self.app.is_subscribed(&self.socket_id, channel) {
            return self.error(
                None,
                "subscribe to the channel before sending client events",
            );
        }
        if !self
            .client_events
            .admit(limits.client_events_per_second, Instant::now())
        {
            return self.error(
                Some(CloseCode::ClientEventRateLimit.code()),
                CloseCode::ClientEventRateLimit.reason(),
            );
        }
        let size = match &event.data {
            serde_json::Value::String(s) => s.len(),
            other => other.to_string().len(),
        };
        if size > limits.max_payload_bytes {
            return self.error(
                None,
                &format!(
                    "client event data is {size} bytes; the limit is {}",
                    limits.max_payload_bytes
                ),
            );
        }
        let user_id = if channel.starts_with("presence-") {
            self.app.presence_user(&self.socket_id, channel)
        } else {
            None
        };
        self.node.client_event(
            &self.app,
            &self.socket_id,
            channel,
            &event.event,
            &event.data,
            user_id.as_deref(),
        );
        self.node.metrics.client_event();
    }
}

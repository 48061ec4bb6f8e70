//! One WebSocket connection: one task reading frames, writing the socket's queue, and keeping
//! time (the server's ping after `activity_timeout` of silence, 4201 when the pong is late).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use infra_core::ChannelName;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::sleep_until;

use super::hub::{AppHub, Hub, Kill, Presence, Refusal, USER_CHANNEL_PREFIX};
use super::protocol::{
    ClientFrame, CloseCode, check_protocol, error_frame, frame, subscription_error,
};
use crate::signature::verify_hmac_hex;

/// Bytes a frame may have beyond the app's payload limit (event name, channel, auth).
const FRAME_OVERHEAD: usize = 4096;

/// Removes the socket from the hub however the task ends.
struct Registration {
    app: Arc<AppHub>,
    socket_id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.app.remove(&self.socket_id);
    }
}

/// Counts client events in one-second windows.
struct ClientEventRate {
    window_start: Instant,
    count: u32,
}

impl ClientEventRate {
    fn admit(&mut self, per_second: u32) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window_start).as_secs() >= 1 {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count <= per_second
    }
}

/// Serves one upgraded connection until it closes.
pub(crate) async fn serve(
    hub: Arc<Hub>,
    key: String,
    protocol: Option<String>,
    mut socket: WebSocket,
) {
    let Some(app) = hub.by_key(&key).cloned() else {
        return refuse(socket, CloseCode::UnknownApp).await;
    };
    if let Err(code) = check_protocol(protocol.as_deref()) {
        return refuse(socket, code).await;
    }
    let socket_id = hub.new_socket_id();
    let (tx, mut rx) = mpsc::channel(app.config.limits.send_buffer_frames);
    let kill = Arc::new(Kill::default());
    if let Err(code) = app.register(&socket_id, tx, kill.clone()) {
        return refuse(socket, code).await;
    }
    let _registration = Registration {
        app: app.clone(),
        socket_id: socket_id.clone(),
    };
    let established = frame(
        "pusher:connection_established",
        None,
        &json!({"socket_id": socket_id, "activity_timeout": hub.activity_timeout.as_secs()}),
    );
    if socket
        .send(Message::Text(established.into()))
        .await
        .is_err()
    {
        return;
    }
    let mut conn = Connection {
        app,
        socket_id,
        rate: ClientEventRate {
            window_start: Instant::now(),
            count: 0,
        },
    };
    let timer = sleep_until((Instant::now() + hub.activity_timeout).into());
    tokio::pin!(timer);
    // One wait for the connection's whole life: a fresh `Notified` per loop would register
    // with (and leave) the `Notify`'s waiter list, under its lock, for every frame sent.
    let killed = kill.wait();
    tokio::pin!(killed);
    let mut pinged = false;
    loop {
        tokio::select! {
            code = &mut killed => return close(socket, code).await,
            queued = rx.recv() => {
                let Some(message) = queued else { return };
                // A client that does not read blocks this send; the kill switch (its queue
                // filled meanwhile) still ends the connection.
                tokio::select! {
                    sent = socket.send(Message::Text(message)) => if sent.is_err() { return },
                    code = &mut killed => return close(socket, code).await,
                }
            }
            received = socket.recv() => {
                let text = match received {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        return close_with_error(socket, CloseCode::InvalidMessage, "binary frames are not part of the protocol").await;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        timer.as_mut().reset((Instant::now() + hub.activity_timeout).into());
                        pinged = false;
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Err(e)) => {
                        // Mostly frames over the size limit; say so if the socket still takes it.
                        let message = format!("unreadable frame: {e}");
                        return close_with_error(socket, CloseCode::InvalidMessage, &message).await;
                    }
                };
                timer.as_mut().reset((Instant::now() + hub.activity_timeout).into());
                pinged = false;
                if let Err((code, message)) = conn.handle(&text) {
                    return close_with_error(socket, code, &message).await;
                }
            }
            () = &mut timer => {
                if pinged {
                    return close(socket, CloseCode::PongTimeout).await;
                }
                pinged = true;
                conn.app.send_to_socket(&conn.socket_id, frame("pusher:ping", None, &json!({})));
                timer.as_mut().reset((Instant::now() + hub.pong_timeout).into());
            }
        }
    }
}

/// Sends `pusher:error` with the code, then closes with it.
async fn refuse(socket: WebSocket, code: CloseCode) {
    close_with_error(socket, code, code.reason()).await;
}

async fn close_with_error(mut socket: WebSocket, code: CloseCode, message: &str) {
    let _ = socket
        .send(Message::Text(
            error_frame(Some(code.code()), message).into(),
        ))
        .await;
    close(socket, code).await;
}

async fn close(mut socket: WebSocket, code: CloseCode) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: code.code(),
            reason: Utf8Bytes::from_static(code.reason()),
        })))
        .await;
}

/// What a connection knows about itself.
struct Connection {
    app: Arc<AppHub>,
    socket_id: String,
    rate: ClientEventRate,
}

type Fatal = (CloseCode, String);

impl Connection {
    fn reply(&self, message: String) {
        self.app.send_to_socket(&self.socket_id, message);
    }

    fn error(&self, code: Option<u16>, message: &str) {
        self.reply(error_frame(code, message));
    }

    /// Handles one text frame; `Err` closes the connection.
    fn handle(&mut self, text: &str) -> Result<(), Fatal> {
        let limit = self.app.config.limits.max_payload_bytes + FRAME_OVERHEAD;
        if text.len() > limit {
            return Err((
                CloseCode::InvalidMessage,
                format!("frame of {} bytes; the limit is {limit}", text.len()),
            ));
        }
        let frame: ClientFrame = serde_json::from_str(text).map_err(|e| {
            (
                CloseCode::InvalidMessage,
                format!("frame is not a protocol message: {e}"),
            )
        })?;
        match frame.event.as_str() {
            "pusher:ping" => self.reply(super::protocol::frame("pusher:pong", None, &json!({}))),
            "pusher:pong" => {}
            "pusher:subscribe" => self.subscribe(&frame.data_object()),
            "pusher:unsubscribe" => {
                if let Some(channel) = frame.data_object().get("channel").and_then(Value::as_str) {
                    self.app.unsubscribe(&self.socket_id, channel);
                }
            }
            "pusher:signin" => self.sign_in(&frame.data_object())?,
            event if event.starts_with("client-") => self.client_event(&frame),
            // Unknown events are ignored, as Pusher does.
            _ => {}
        }
        Ok(())
    }

    fn subscribe(&mut self, data: &Value) {
        let Some(channel) = data.get("channel").and_then(Value::as_str) else {
            return self.error(None, "pusher:subscribe needs a `channel`");
        };
        match self.authorize(channel, data) {
            Ok(presence) => {
                if let Err(refusal) = self.app.subscribe(&self.socket_id, channel, presence) {
                    self.refuse(channel, refusal);
                }
            }
            Err(refusal) => self.refuse(channel, refusal),
        }
    }

    fn refuse(&self, channel: &str, refusal: Refusal) {
        self.reply(subscription_error(
            channel,
            refusal.status,
            &refusal.message,
        ));
    }

    /// Checks the channel name and, on private and presence channels, the signature.
    fn authorize(&self, channel: &str, data: &Value) -> Result<Option<Presence>, Refusal> {
        let refusal = |status: u16, message: &str| Refusal {
            status,
            message: message.to_owned(),
        };
        if channel.starts_with(USER_CHANNEL_PREFIX) {
            // Signed-in users only; the hub checks the id.
            return Ok(None);
        }
        let name = ChannelName::new(channel).map_err(|e| refusal(400, &e.to_string()))?;
        if !(name.is_private() || name.is_presence()) {
            return Ok(None);
        }
        let auth = data.get("auth").and_then(Value::as_str).unwrap_or_default();
        let Some((key, signature)) = auth.split_once(':') else {
            return Err(refusal(401, "`auth` must be `key:signature`"));
        };
        if key != self.app.config.key {
            return Err(refusal(401, "`auth` is for another app key"));
        }
        let channel_data = data.get("channel_data").and_then(Value::as_str);
        let to_sign = match (name.is_presence(), channel_data) {
            (true, Some(channel_data)) => format!("{}:{channel}:{channel_data}", self.socket_id),
            (true, None) => return Err(refusal(400, "presence channels need `channel_data`")),
            (false, _) => format!("{}:{channel}", self.socket_id),
        };
        if !verify_hmac_hex(&self.app.config.secret, to_sign.as_bytes(), signature) {
            return Err(refusal(401, "invalid signature"));
        }
        let Some(channel_data) = channel_data else {
            return Ok(None);
        };
        let parsed: Value = serde_json::from_str(channel_data)
            .map_err(|_| refusal(400, "`channel_data` must be JSON"))?;
        let user_id = match parsed.get("user_id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(refusal(400, "`channel_data` needs a `user_id`")),
        };
        if user_id.len() > 128 {
            return Err(refusal(400, "`user_id` is longer than 128 characters"));
        }
        let user_info = parsed.get("user_info").cloned().unwrap_or(Value::Null);
        let info_limit = self.app.config.limits.max_presence_user_info_bytes;
        if user_info.to_string().len() > info_limit {
            return Err(refusal(
                400,
                &format!("`user_info` is larger than {info_limit} bytes"),
            ));
        }
        Ok(Some(Presence { user_id, user_info }))
    }

    fn sign_in(&mut self, data: &Value) -> Result<(), Fatal> {
        let unauthorized = |message: &str| (CloseCode::Unauthorized, message.to_owned());
        let auth = data.get("auth").and_then(Value::as_str).unwrap_or_default();
        let user_data = data
            .get("user_data")
            .and_then(Value::as_str)
            .ok_or_else(|| unauthorized("pusher:signin needs `user_data`"))?;
        let (key, signature) = auth
            .split_once(':')
            .ok_or_else(|| unauthorized("`auth` must be `key:signature`"))?;
        let to_sign = format!("{}::user::{user_data}", self.socket_id);
        if key != self.app.config.key
            || !verify_hmac_hex(&self.app.config.secret, to_sign.as_bytes(), signature)
        {
            return Err(unauthorized("invalid sign-in signature"));
        }
        let id = serde_json::from_str::<Value>(user_data)
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
            .filter(|id| !id.is_empty())
            .ok_or_else(|| unauthorized("`user_data` needs a string `id`"))?;
        self.app.sign_in(&self.socket_id, &id);
        self.reply(frame(
            "pusher:signin_success",
            None,
            &json!({"user_data": user_data}),
        ));
        Ok(())
    }

    fn client_event(&mut self, frame: &ClientFrame) {
        let limits = &self.app.config.limits;
        if !limits.client_events {
            return self.error(None, "client events are disabled for this app");
        }
        let Some(channel) = frame.channel.as_deref() else {
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
        if !self.rate.admit(limits.client_events_per_second) {
            return self.error(
                Some(CloseCode::ClientEventRateLimit.code()),
                CloseCode::ClientEventRateLimit.reason(),
            );
        }
        let size = match &frame.data {
            Value::String(s) => s.len(),
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
        self.app.client_event(
            &self.socket_id,
            channel,
            &frame.event,
            &frame.data,
            user_id.as_deref(),
        );
    }
}

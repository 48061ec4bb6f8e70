//! The Pusher Channels HTTP API client.
//!
//! Every call is signed afresh per attempt (the signature covers `auth_timestamp`, so a
//! retried request must not reuse the first one's), retried on 5xx, 429 and transport
//! failures as [`PusherConfig::retry`](crate::PusherConfig::retry) says, and bounded as a whole by
//! `PUSHER_TIMEOUT`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use infra_core::{
    BatchEvent, ChannelName, Error, ErrorKind, EventName, HealthCheck, Probe, Realtime, Result,
    http_status_error, parse_retry_after,
};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::auth_payload::{ChannelAuth, PresenceMember, UserAuth, UserData};
use crate::channel_kind::ChannelKind;
use crate::config::PusherConfig;
use crate::credentials::AppCredentials;
use crate::http_api::{
    ChannelAttribute, ChannelInfo, ChannelsList, ChannelsQuery, PresenceUser, PresenceUsers,
    TriggerOptions, TriggerReply, check_user_id, info_param,
};
use crate::limits::{check_batch, check_data_size, check_trigger};
use crate::pusher_retry::retry_wait;
use crate::signature;
use crate::webhook::Webhook;

/// Triggers events through Pusher's HTTP API (or a Pusher-compatible server), queries
/// channels, and signs channel authorizations for pusher-js.
#[derive(Debug, Clone)]
pub struct PusherClient {
    config: PusherConfig,
    credentials: AppCredentials,
    http: reqwest::Client,
}

impl PusherClient {
    /// A client for `config`.
    pub fn new(config: PusherConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| Error::backend("cannot build the HTTP client").with_source(e))?;
        Ok(PusherClient {
            credentials: AppCredentials::from(&config),
            config,
            http,
        })
    }

    /// The app's configuration.
    pub fn config(&self) -> &PusherConfig {
        &self.config
    }

    /// The app's credentials, for an auth router or webhook extractor.
    pub fn credentials(&self) -> &AppCredentials {
        &self.credentials
    }

    /// Signs a private, presence or encrypted channel subscription for pusher-js's auth
    /// endpoint; `channel_data` is the presence member as a JSON string.
    pub fn authorize_channel(
        &self,
        socket_id: &str,
        channel: &ChannelName,
        channel_data: Option<&str>,
    ) -> Result<ChannelAuth> {
        self.credentials
            .authorize_channel_raw(socket_id, channel, channel_data)
    }

    /// Signs a presence channel subscription for `member`.
    pub fn authorize_presence(
        &self,
        socket_id: &str,
        channel: &ChannelName,
        member: &PresenceMember,
    ) -> Result<ChannelAuth> {
        self.credentials
            .authorize_channel(socket_id, channel, Some(member))
    }

    /// Signs a user in for pusher-js's user authentication endpoint; `user_data` is JSON with
    /// a string `id`.
    pub fn authenticate_user(&self, socket_id: &str, user_data: &str) -> Result<UserAuth> {
        signature::authenticate_user(&self.config.key, &self.config.secret, socket_id, user_data)
    }

    /// Signs `user` in.
    pub fn authenticate(&self, socket_id: &str, user: &UserData) -> Result<UserAuth> {
        self.credentials.authenticate_user(socket_id, user)
    }

    /// Verifies a webhook's headers against its raw body, checks its `time_ms` within
    /// [`PusherConfig::webhook_tolerance`] and returns its typed events.
    pub fn verify_webhook(
        &self,
        header_key: &str,
        header_signature: &str,
        body: &[u8],
    ) -> Result<Webhook> {
        self.credentials
            .verify_webhook(header_key, header_signature, body)
    }

    /// Triggers `event` on `channels` excluding a socket and/or returning the channels'
    /// attributes. An encrypted channel's data is sealed with its shared secret; such a
    /// channel must be the only one.
    pub async fn trigger_with(
        &self,
        channels: &[ChannelName],
        event: &EventName,
        data: &Value,
        options: &TriggerOptions,
    ) -> Result<TriggerReply> {
        let data = check_trigger(channels, data)?;
        let data = match channels {
            [only] if ChannelKind::of(only) == ChannelKind::PrivateEncrypted => {
                self.seal(only, &data)?
            }
            _ => data,
        };
        let mut body = json!({ "name": event, "data": data, "channels": channels });
        if let Some(socket_id) = &options.socket_id {
            signature::check_socket_id(socket_id)?;
            body["socket_id"] = json!(socket_id);
        }
        if let Some(info) = info_param(&options.info) {
            body["info"] = json!(info);
        }
        self.call(Method::POST, "events", &[], Some(body)).await
    }

    /// Encrypts `data` for `channel` into the `{"nonce", "ciphertext"}` string Pusher carries.
    fn seal(&self, channel: &ChannelName, data: &str) -> Result<String> {
        let secret = self.credentials.master_key()?.shared_secret(channel)?;
        let sealed = serde_json::to_string(&secret.encrypt(data.as_bytes())?)?;
        check_data_size(&sealed)?;
        Ok(sealed)
    }

    /// Lists occupied channels.
    pub async fn channels(&self, query: &ChannelsQuery) -> Result<ChannelsList> {
        let params = query.params()?;
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.call(Method::GET, "channels", &params, None).await
    }

    /// One channel's state: whether it is occupied, and the attributes asked for
    /// (`user_count` on presence channels only).
    pub async fn channel(
        &self,
        channel: &ChannelName,
        info: &[ChannelAttribute],
    ) -> Result<ChannelInfo> {
        if info.contains(&ChannelAttribute::UserCount)
            && ChannelKind::of(channel) != ChannelKind::Presence
        {
            return Err(Error::invalid_input(
                "info",
                format_args!("asks for user_count of `{channel}`, which is not a presence channel"),
            ));
        }
        let info = info_param(info);
        let params: Vec<(&str, &str)> = info.iter().map(|i| ("info", i.as_str())).collect();
        self.call(Method::GET, &format!("channels/{channel}"), &params, None)
            .await
    }

    /// The users on a presence channel.
    pub async fn presence_users(&self, channel: &ChannelName) -> Result<Vec<PresenceUser>> {
        if ChannelKind::of(channel) != ChannelKind::Presence {
            return Err(Error::invalid_input(
                "channel",
                format_args!("`{channel}` is not a presence channel"),
            ));
        }
        let reply: PresenceUsers = self
            .call(Method::GET, &format!("channels/{channel}/users"), &[], None)
            .await?;
        Ok(reply.users)
    }

    /// Disconnects every socket of a signed-in user (`pusher:signin` with this `id`).
    pub async fn terminate_user_connections(&self, user_id: &str) -> Result<()> {
        check_user_id(user_id)?;
        let _: Value = self
            .call(
                Method::POST,
                &format!("users/{user_id}/terminate_connections"),
                &[],
                Some(json!({})),
            )
            .await?;
        Ok(())
    }

    /// Sends a signed request, retrying as the policy says within the deadline, and decodes
    /// the reply.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        resource: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<T> {
        let path = format!("/apps/{}/{resource}", self.config.app_id);
        let body = body.map(|b| serde_json::to_vec(&b)).transpose()?;
        // Time left is the timeout less the time spent, never a deadline on the clock: no
        // timeout or wait, however long, is added to an `Instant`.
        let started = Instant::now();
        let remaining = || self.config.timeout.saturating_sub(started.elapsed());
        let policy = self.config.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self
                .attempt(&method, &path, query, body.as_deref(), remaining())
                .await
            {
                Ok(text) => return decode_reply(&text),
                Err(err) => err,
            };
            if !err.is_retryable() || attempt >= policy.max_attempts {
                return Err(with_attempts(err, attempt));
            }
            let wait = retry_wait(&policy, attempt, err.retry_after());
            if wait >= remaining() {
                return Err(with_attempts(err, attempt));
            }
            tracing::debug!(
                path,
                attempt,
                wait_ms = wait.as_millis() as u64,
                error = %err,
                "retrying Pusher call"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt: signs with the current time, sends, and returns the success body or the
    /// typed error.
    async fn attempt(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&[u8]>,
        remaining: Duration,
    ) -> Result<String> {
        if remaining.is_zero() {
            return Err(Error::timeout("Pusher call", self.config.timeout));
        }
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let params = signature::sign_request(
            &self.config.key,
            &self.config.secret,
            method.as_str(),
            path,
            body,
            timestamp,
            query,
        );
        let mut url = self.config.base_url.clone();
        url.set_path(path);
        url.query_pairs_mut().extend_pairs(params.iter());
        let mut request = self.http.request(method.clone(), url).timeout(remaining);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v).ok());
        let text = response.text().await.map_err(|e| self.transport_error(e))?;
        if status.is_success() {
            return Ok(text);
        }
        let mut err = http_status_error("Pusher", status.as_u16(), &text, retry_after);
        match status.as_u16() {
            401 => err = err.with_context("variable", "PUSHER_SECRET"),
            403 => err = err.with_context("variable", "PUSHER_APP_ID"),
            _ => {}
        }
        Err(err)
    }

    fn transport_error(&self, err: reqwest::Error) -> Error {
        let host = self.config.base_url.host_str().unwrap_or("?").to_owned();
        let err = err.without_url();
        if err.is_timeout() {
            Error::timeout(&format!("Pusher call to {host}"), self.config.timeout).with_source(err)
        } else if err.is_connect() {
            Error::unavailable(format!("cannot reach Pusher at {host}")).with_source(err)
        } else {
            // A reset or truncated reply: the service may answer the next attempt.
            Error::unavailable(format!("Pusher call to {host} failed")).with_source(err)
        }
    }
}

/// Decodes a success body; an empty body reads as `{}`.
fn decode_reply<T: DeserializeOwned>(text: &str) -> Result<T> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_json::from_str(text).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("Pusher replied with a body that is not the expected JSON: {e}"),
        )
        .with_source(e)
    })
}

fn with_attempts(err: Error, attempts: u32) -> Error {
    if attempts > 1 {
        err.with_context("attempts", attempts.to_string())
    } else {
        err
    }
}

#[async_trait]
impl Realtime for PusherClient {
    async fn trigger(
        &self,
        channels: &[ChannelName],
        event: &EventName,
        data: &Value,
    ) -> Result<()> {
        self.trigger_with(channels, event, data, &TriggerOptions::default())
            .await?;
        Ok(())
    }

    async fn trigger_batch(&self, batch: &[BatchEvent]) -> Result<()> {
        let encoded = check_batch(batch)?;
        let events = batch
            .iter()
            .zip(encoded)
            .map(|(e, data)| {
                let data = if ChannelKind::of(&e.channel) == ChannelKind::PrivateEncrypted {
                    self.seal(&e.channel, &data)?
                } else {
                    data
                };
                Ok(json!({ "channel": e.channel, "name": e.name, "data": data }))
            })
            .collect::<Result<Vec<_>>>()?;
        let _: Value = self
            .call(
                Method::POST,
                "batch_events",
                &[],
                Some(json!({ "batch": events })),
            )
            .await?;
        Ok(())
    }
}

#[async_trait]
impl HealthCheck for PusherClient {
    fn service(&self) -> &str {
        "realtime"
    }
    fn backend(&self) -> &str {
        "pusher"
    }
    /// Lists channels: a signed read that proves the host answers and accepts the
    /// credentials, and counts the occupied channels (the TypeScript module's "monitor connection count").
    async fn probe(&self) -> Result<Probe> {
        let listed = self.channels(&ChannelsQuery::all()).await?;
        Ok(Probe::healthy(format!(
            "app {} at {}: {} occupied channel(s)",
            self.config.app_id,
            self.config.base_url.host_str().unwrap_or("?"),
            listed.channels.len()
        )))
    }
}

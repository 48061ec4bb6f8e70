//! The Pusher Channels HTTP API client.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use infra_core::{
    BatchEvent, ChannelName, Error, ErrorKind, EventName, HealthCheck, Probe, Realtime, Result,
};
use serde_json::json;

use crate::config::PusherConfig;
use crate::limits::{check_batch, check_trigger};
use crate::signature::{self, ChannelAuth, UserAuth};

/// Triggers events through Pusher's HTTP API (or a Pusher-compatible server) and signs
/// channel authorizations for pusher-js.
#[derive(Debug, Clone)]
pub struct PusherClient {
    config: PusherConfig,
    http: reqwest::Client,
}

impl PusherClient {
    /// A client for `config`.
    pub fn new(config: PusherConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| Error::backend("cannot build the HTTP client").with_source(e))?;
        Ok(PusherClient { config, http })
    }

    /// The app's configuration.
    pub fn config(&self) -> &PusherConfig {
        &self.config
    }

    /// Signs a private or presence channel subscription for pusher-js's auth endpoint.
    pub fn authorize_channel(
        &self,
        socket_id: &str,
        channel: &ChannelName,
        channel_data: Option<&str>,
    ) -> Result<ChannelAuth> {
        signature::authorize_channel(
            &self.config.key,
            &self.config.secret,
            socket_id,
            channel,
            channel_data,
        )
    }

    /// Signs a user in for pusher-js's user authentication endpoint.
    pub fn authenticate_user(&self, socket_id: &str, user_data: &str) -> Result<UserAuth> {
        signature::authenticate_user(&self.config.key, &self.config.secret, socket_id, user_data)
    }

    /// Verifies a webhook's headers against its raw body.
    pub fn verify_webhook(
        &self,
        header_key: &str,
        header_signature: &str,
        body: &[u8],
    ) -> Result<()> {
        signature::verify_webhook(
            &self.config.key,
            &self.config.secret,
            header_key,
            header_signature,
            body,
        )
    }

    /// Sends a signed request and returns the reply's JSON body.
    async fn call(
        &self,
        method: reqwest::Method,
        resource: &str,
        body: Option<serde_json::Value>,
        query: &[(&str, &str)],
    ) -> Result<serde_json::Value> {
        let path = format!("/apps/{}/{resource}", self.config.app_id);
        let body = body.map(|b| serde_json::to_vec(&b)).transpose()?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let params = signature::sign_request(
            &self.config.key,
            &self.config.secret,
            method.as_str(),
            &path,
            body.as_deref(),
            timestamp,
            query,
        );
        let mut url = self.config.base_url.clone();
        url.set_path(&path);
        url.query_pairs_mut().extend_pairs(params.iter());
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.transport_error(e))?;
        if status.is_success() {
            return if text.trim().is_empty() {
                Ok(json!({}))
            } else {
                serde_json::from_str(&text).map_err(|e| {
                    Error::new(
                        ErrorKind::Decode,
                        format!("Pusher replied {status} with a body that is not JSON"),
                    )
                    .with_source(e)
                })
            };
        }
        let reason: String = text.chars().take(200).collect();
        let kind = ErrorKind::from_http_status(status.as_u16());
        let variable = match status.as_u16() {
            401 => Some("PUSHER_SECRET"),
            403 => Some("PUSHER_APP_ID"),
            _ => None,
        };
        let mut err = Error::new(kind, format!("Pusher replied {status}: {}", reason.trim()))
            .with_context("status", status.as_str());
        if let Some(variable) = variable {
            err = err.with_context("variable", variable);
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
            Error::backend(format!("Pusher call to {host} failed")).with_source(err)
        }
    }
}

#[async_trait]
impl Realtime for PusherClient {
    async fn trigger(
        &self,
        channels: &[ChannelName],
        event: &EventName,
        data: &serde_json::Value,
    ) -> Result<()> {
        let data = check_trigger(channels, data)?;
        let body = json!({ "name": event, "data": data, "channels": channels });
        self.call(reqwest::Method::POST, "events", Some(body), &[])
            .await?;
        Ok(())
    }

    async fn trigger_batch(&self, batch: &[BatchEvent]) -> Result<()> {
        let encoded = check_batch(batch)?;
        let events: Vec<_> = batch
            .iter()
            .zip(encoded)
            .map(|(e, data)| json!({ "channel": e.channel, "name": e.name, "data": data }))
            .collect();
        self.call(
            reqwest::Method::POST,
            "batch_events",
            Some(json!({ "batch": events })),
            &[],
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
    /// Lists channels: a signed read that proves the host answers and accepts the credentials.
    async fn probe(&self) -> Result<Probe> {
        let reply = self
            .call(reqwest::Method::GET, "channels", None, &[])
            .await?;
        let occupied = reply
            .get("channels")
            .and_then(|c| c.as_object())
            .map_or(0, |channels| channels.len());
        Ok(Probe::healthy(format!(
            "app {} at {}: {occupied} occupied channel(s)",
            self.config.app_id,
            self.config.base_url.host_str().unwrap_or("?")
        )))
    }
}

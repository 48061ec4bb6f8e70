//! The Inngest Event API client.

use std::time::Duration;

use async_trait::async_trait;
use infra_core::{
    Error, ErrorKind, Event, EventSender, HealthCheck, Probe, Result, http_status_error, redact_url,
};
use serde::Deserialize;

use crate::config::InngestConfig;
use crate::event_id::now_ms;

/// Sends events to Inngest Cloud or the Inngest dev server: `POST {base}/e/{event_key}`.
#[derive(Debug, Clone)]
pub struct InngestClient {
    config: InngestConfig,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct SendReply {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    error: Option<String>,
}

impl InngestClient {
    /// A client for `config`.
    pub fn new(config: InngestConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| Error::backend("cannot build the HTTP client").with_source(e))?;
        Ok(InngestClient { config, http })
    }

    /// The event endpoint, with the key; never log it.
    fn endpoint(&self) -> Result<url::Url> {
        let mut url = self.config.base_url.clone();
        url.path_segments_mut()
            .map_err(|_| Error::config("INNGEST_BASE_URL", "cannot be a base URL"))?
            .pop_if_empty()
            .push("e")
            .push(self.config.event_key.expose());
        Ok(url)
    }

    async fn post(&self, body: &serde_json::Value) -> Result<SendReply> {
        let response = self
            .http
            .post(self.endpoint()?)
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.transport_error(e))?;
        let reply: Option<SendReply> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return reply.ok_or_else(|| {
                Error::new(
                    ErrorKind::Decode,
                    format!("Inngest replied {status} with an unexpected body"),
                )
            });
        }
        let reason = reply
            .and_then(|r| r.error)
            .unwrap_or_else(|| text.chars().take(200).collect());
        let mut err = http_status_error("Inngest", status.as_u16(), &reason, None);
        if err.kind() == ErrorKind::Config {
            err = err.with_context("variable", "INNGEST_EVENT_KEY");
        }
        Err(err)
    }

    /// Maps a reqwest failure without printing the URL, which holds the event key.
    fn transport_error(&self, err: reqwest::Error) -> Error {
        let host = redact_url(self.config.base_url.as_str());
        let err = err.without_url();
        if err.is_timeout() {
            Error::timeout(&format!("Inngest send to {host}"), self.config.timeout).with_source(err)
        } else if err.is_connect() {
            Error::unavailable(format!("cannot reach Inngest at {host}")).with_source(err)
        } else {
            Error::backend(format!("Inngest request to {host} failed")).with_source(err)
        }
    }
}

#[async_trait]
impl EventSender for InngestClient {
    async fn send(&self, event: Event) -> Result<String> {
        let mut ids = self.send_many(vec![event]).await?;
        ids.pop()
            .ok_or_else(|| Error::new(ErrorKind::Decode, "Inngest returned no id for the event"))
    }

    async fn send_many(&self, mut events: Vec<Event>) -> Result<Vec<String>> {
        for event in &mut events {
            event.validate()?;
            event.ts.get_or_insert_with(now_ms);
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let body = serde_json::to_value(&events)?;
        let reply = self.post(&body).await?;
        if reply.ids.len() != events.len() {
            return Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "Inngest returned {} ids for {} events",
                    reply.ids.len(),
                    events.len()
                ),
            ));
        }
        Ok(reply.ids)
    }
}

#[async_trait]
impl HealthCheck for InngestClient {
    fn service(&self) -> &str {
        "jobs"
    }
    fn backend(&self) -> &str {
        "inngest"
    }
    /// Posts an empty batch: it proves the endpoint answers and accepts the key, and sends
    /// nothing.
    async fn probe(&self) -> Result<Probe> {
        self.post(&serde_json::json!([])).await?;
        Ok(Probe::healthy(format!(
            "event API at {} accepted the key",
            redact_url(self.config.base_url.as_str())
        )))
    }
}

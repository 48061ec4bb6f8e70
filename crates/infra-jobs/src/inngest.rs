//! The Inngest Event API client.
//!
//! One send is one deadline (`INNGEST_TIMEOUT`): within it, 429s, 5xx replies and transport
//! failures are retried with jittered exponential back-off (a 429's `Retry-After` is honoured
//! when the deadline allows it), as Inngest's own SDKs do. Other 4xx replies are final and
//! carry the server's `error` message.

use std::time::Duration;

use async_trait::async_trait;
use infra_core::{
    Error, ErrorKind, Event, EventSender, HealthCheck, Probe, Result, http_status_error,
    parse_retry_after, redact_url,
};
use serde::Deserialize;
use tokio::time::Instant;

use crate::config::InngestConfig;
use crate::event_id::now_ms;

/// Sends events to Inngest Cloud or the Inngest dev server: `POST {base}/e/{event_key}`.
#[derive(Debug, Clone)]
pub struct InngestClient {
    config: InngestConfig,
    http: reqwest::Client,
}

/// The Event API's reply: `{"ids": [...], "status": 200, "error"?: "..."}`.
#[derive(Debug, Deserialize)]
struct SendReply {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    error: Option<String>,
}

/// One attempt's failure and whether another attempt may succeed.
struct Attempt {
    error: Error,
    retry: bool,
    retry_after: Option<Duration>,
}

impl InngestClient {
    /// A client for `config`.
    pub fn new(config: InngestConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
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

    /// Posts `body`, retrying what may succeed later until the deadline or the attempt limit.
    async fn post(&self, body: &serde_json::Value) -> Result<SendReply> {
        let endpoint = self.endpoint()?;
        // Time left is the timeout less the time spent, never a deadline on the clock: no
        // timeout or wait, however long, is added to an `Instant`.
        let started = Instant::now();
        let remaining = || self.config.timeout.saturating_sub(started.elapsed());
        let retry = self.config.retry;
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(&endpoint, body, remaining()).await {
                Ok(reply) => return Ok(reply),
                Err(failure) => failure,
            };
            let wait = failure.retry_after.unwrap_or_else(|| retry.delay(attempt));
            if !failure.retry || !retry.allows_another(attempt) || wait >= remaining() {
                return Err(failure.error.with_context("attempts", attempt.to_string()));
            }
            tracing::debug!(attempt, error = %failure.error, ?wait, "retrying Inngest send");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        endpoint: &url::Url,
        body: &serde_json::Value,
        remaining: Duration,
    ) -> std::result::Result<SendReply, Attempt> {
        if remaining.is_zero() {
            return Err(Attempt {
                error: Error::timeout("Inngest send", self.config.timeout),
                retry: false,
                retry_after: None,
            });
        }
        let transport = |e: reqwest::Error| {
            let error = self.transport_error(e);
            Attempt {
                retry: error.is_retryable(),
                error,
                retry_after: None,
            }
        };
        let response = self
            .http
            .post(endpoint.clone())
            .timeout(remaining)
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        let http_status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v).ok());
        let text = response.text().await.map_err(transport)?;
        let reply: Option<SendReply> = serde_json::from_str(&text).ok();
        // The body's `status` is the Event API's verdict; it matches the HTTP status except
        // behind proxies that flatten errors to 200.
        let status = reply
            .as_ref()
            .and_then(|r| r.status)
            .filter(|s| !(200..300).contains(s))
            .unwrap_or(http_status);
        if (200..300).contains(&status) {
            return reply.ok_or_else(|| Attempt {
                error: Error::new(
                    ErrorKind::Decode,
                    format!("Inngest replied {status} with a body that is not the Event API's"),
                ),
                retry: false,
                retry_after: None,
            });
        }
        let reason = reply
            .and_then(|r| r.error)
            .unwrap_or_else(|| text.chars().take(200).collect());
        let mut error = http_status_error("Inngest", status, &reason, retry_after);
        if error.kind() == ErrorKind::Config {
            error = error.with_context("variable", "INNGEST_EVENT_KEY");
        }
        Err(Attempt {
            error,
            retry: status == 429 || (500..600).contains(&status),
            retry_after: retry_after.filter(|_| status == 429 || status == 503),
        })
    }

    /// Maps a reqwest failure without printing the URL, which holds the event key.
    fn transport_error(&self, err: reqwest::Error) -> Error {
        let host = redact_url(self.config.base_url.as_str());
        let err = err.without_url();
        if err.is_timeout() {
            Error::timeout(&format!("Inngest send to {host}"), self.config.timeout).with_source(err)
        } else if err.is_connect() || err.is_request() {
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
    /// No request: readiness must not post to Inngest for every caller. The event key and
    /// API are checked by [`probe`](HealthCheck::probe) (`/api/test-infrastructure`).
    async fn ping(&self) -> Result<Probe> {
        Ok(Probe::healthy(format!(
            "sending to {} (not contacted by readiness)",
            redact_url(self.config.base_url.as_str())
        )))
    }
}

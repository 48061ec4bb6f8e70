//! `verify`'s end-to-end check of the embedded realtime server: a real WebSocket subscriber
//! on a loopback port receives an event triggered through `Realtime`, as pusher-js would.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use infra::{ChannelName, EventName, HealthReport, HealthStatus, Infra, Realtime};
use tokio_tungstenite::tungstenite::Message;

const CHANNEL: &str = "infra-verify-probe";
const EVENT: &str = "infra.verify.probe";

/// The realtime report to put in place of the service's own, when realtime runs embedded.
pub async fn probe(infra: &Infra, deadline: Duration) -> Option<HealthReport> {
    let service = infra.realtime();
    let server = service.server()?;
    let started = Instant::now();
    let outcome = tokio::time::timeout(deadline, round_trip(infra, server.router())).await;
    let (status, detail) = match outcome {
        Ok(Ok(())) => (
            HealthStatus::Healthy,
            format!(
                "a WebSocket subscriber received the probe event in {} ms",
                started.elapsed().as_millis()
            ),
        ),
        Ok(Err(err)) => (HealthStatus::Unhealthy, format!("probe failed: {err:#}")),
        Err(_) => (
            HealthStatus::Unhealthy,
            format!(
                "no probe event reached the subscriber within {}",
                infra::core::format_duration(deadline)
            ),
        ),
    };
    Some(HealthReport {
        service: "realtime".into(),
        backend: service.backend().into(),
        status,
        latency: started.elapsed(),
        detail,
    })
}

async fn round_trip(infra: &Infra, router: axum::Router) -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let outcome = subscribe_and_receive(infra, addr).await;
    server.abort();
    outcome
}

async fn subscribe_and_receive(infra: &Infra, addr: std::net::SocketAddr) -> Result<()> {
    let key = &infra.realtime().credentials().key;
    let url = format!("ws://{addr}/app/{key}?protocol=7&client=infra-verify&version=1");
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .context("WebSocket connect")?;
    expect_event(&mut socket, "pusher:connection_established").await?;
    let subscribe = serde_json::json!({
        "event": "pusher:subscribe",
        "data": { "channel": CHANNEL },
    });
    socket
        .send(Message::text(subscribe.to_string()))
        .await
        .context("subscribe")?;
    expect_event(&mut socket, "pusher_internal:subscription_succeeded").await?;
    let nonce = format!("{:x}", rand_nonce());
    infra
        .realtime()
        .trigger(
            &[ChannelName::new(CHANNEL)?],
            &EventName::new(EVENT)?,
            &serde_json::json!({ "nonce": nonce }),
        )
        .await
        .context("trigger")?;
    let data = expect_event(&mut socket, EVENT).await?;
    let data: serde_json::Value = serde_json::from_str(data.as_str().unwrap_or_default())
        .context("the event's data is a JSON string")?;
    if data["nonce"] != nonce.as_str() {
        bail!("the subscriber received another event's data: {data}");
    }
    let _ = socket.close(None).await;
    Ok(())
}

/// Reads frames until `event` arrives; returns its `data`.
async fn expect_event<S>(socket: &mut S, event: &str) -> Result<serde_json::Value>
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(frame) = socket.next().await {
        let Message::Text(text) = frame? else {
            continue;
        };
        let frame: serde_json::Value = serde_json::from_str(&text)?;
        if frame["event"] == "pusher:error" {
            bail!("the server answered an error: {}", frame["data"]);
        }
        if frame["event"] == event {
            return Ok(frame["data"].clone());
        }
    }
    bail!("the connection closed before {event}")
}

fn rand_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

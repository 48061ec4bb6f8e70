//! The embedded server's metrics: frames and bytes in and out, client events, HTTP API
//! requests by status class, webhooks, fan-out latency and the cluster's Redis errors
//! (counters and histograms, recorded as things happen), and connections, channels,
//! subscriptions and presence members (gauges, read from the hub once per metrics interval
//! by [`RealtimeServer::record_metrics`](super::RealtimeServer::record_metrics)).
//!
//! Each part of a server (the node, each app's hub, each webhook queue, the cluster's link)
//! registers its handles when it is built, so the Prometheus recorder must be installed
//! before the server is built (the apps and the standalone binary do); handles of the same
//! name and labels share one series. Labels come from bounded sets: channel kind,
//! direction, status class, outcome — never a channel name, a socket id or a user id.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Gauge, Histogram};

use super::hub::Hub;
use super::node::Node;
use super::state_counts::StateCounts;

/// Every handle of the server.
pub(crate) struct ServerMetrics {
    messages_in: Counter,
    messages_out: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    client_events: Counter,
    api: [Counter; 5],
    webhooks_sent: Counter,
    webhooks_failed: Counter,
    webhooks_dropped: Counter,
    fanout: Histogram,
    #[cfg_attr(not(feature = "server-redis"), allow(dead_code))]
    redis_errors: Counter,
    connections: Gauge,
    presence_members: Gauge,
    users: Gauge,
    webhooks_queued: Gauge,
    cluster_changes_queued: Gauge,
    channels: [Gauge; 4],
    subscriptions: [Gauge; 4],
}

/// The channel kinds, as labels, in the order of the per-kind arrays.
const KINDS: [&str; 4] = ["public", "private", "presence", "encrypted"];

impl Default for ServerMetrics {
    fn default() -> Self {
        ServerMetrics::new()
    }
}

impl ServerMetrics {
    /// Registers the handles with the installed recorder.
    pub(crate) fn new() -> Self {
        describe();
        let direction =
            |name: &'static str, d: &'static str| metrics::counter!(name, "direction" => d);
        let webhook = |outcome: &'static str| metrics::counter!("infra_realtime_webhooks_total", "outcome" => outcome);
        let api = |class: &'static str| metrics::counter!("infra_realtime_api_requests_total", "status_class" => class);
        ServerMetrics {
            messages_in: direction("infra_realtime_messages_total", "in"),
            messages_out: direction("infra_realtime_messages_total", "out"),
            bytes_in: direction("infra_realtime_bytes_total", "in"),
            bytes_out: direction("infra_realtime_bytes_total", "out"),
            client_events: metrics::counter!("infra_realtime_client_events_total"),
            api: [api("1xx"), api("2xx"), api("3xx"), api("4xx"), api("5xx")],
            webhooks_sent: webhook("sent"),
            webhooks_failed: webhook("failed"),
            webhooks_dropped: webhook("dropped"),
            fanout: metrics::histogram!("infra_realtime_fanout_seconds"),
            redis_errors: metrics::counter!("infra_realtime_redis_errors_total"),
            connections: metrics::gauge!("infra_realtime_connections"),
            presence_members: metrics::gauge!("infra_realtime_presence_members"),
            users: metrics::gauge!("infra_realtime_users"),
            webhooks_queued: metrics::gauge!("infra_realtime_webhooks_queued"),
            cluster_changes_queued: metrics::gauge!("infra_realtime_cluster_changes_queued"),
            channels: KINDS.map(|k| metrics::gauge!("infra_realtime_channels", "kind" => k)),
            subscriptions: KINDS
                .map(|k| metrics::gauge!("infra_realtime_subscriptions", "kind" => k)),
        }
    }

    /// A frame of `bytes` came from a client.
    pub(crate) fn received(&self, bytes: usize) {
        self.messages_in.increment(1);
        self.bytes_in.increment(bytes as u64);
    }

    /// A frame of `bytes` went to a client.
    pub(crate) fn sent(&self, bytes: usize) {
        self.messages_out.increment(1);
        self.bytes_out.increment(bytes as u64);
    }

    /// A client event was accepted and delivered.
    pub(crate) fn client_event(&self) {
        self.client_events.increment(1);
    }

    /// A webhook batch was delivered (`true`) or given up after its retries.
    pub(crate) fn webhook(&self, delivered: bool) {
        if delivered {
            self.webhooks_sent.increment(1);
        } else {
            self.webhooks_failed.increment(1);
        }
    }

    /// `events` webhook events were dropped (the backlog full, or their batch given up).
    pub(crate) fn webhooks_dropped(&self, events: u64) {
        self.webhooks_dropped.increment(events);
    }

    /// Handing one publish to this node's subscribers took `took`.
    pub(crate) fn fanned_out(&self, took: Duration) {
        self.fanout.record(took);
    }

    /// A call to the cluster's Redis failed.
    #[cfg_attr(not(feature = "server-redis"), allow(dead_code))]
    pub(crate) fn redis_error(&self) {
        self.redis_errors.increment(1);
    }

    /// Reads the hub's state into the gauges.
    pub(crate) fn sample(&self, counts: StateCounts, hub: &Hub) {
        self.connections.set(counts.sockets as f64);
        self.presence_members.set(counts.members as f64);
        self.users.set(counts.users as f64);
        self.webhooks_queued.set(counts.webhooks_queued as f64);
        self.cluster_changes_queued
            .set(counts.cluster_changes_queued as f64);
        let mut channels = [0usize; 4];
        let mut subscriptions = [0usize; 4];
        for app in hub.apps() {
            for (name, stats) in app.channels("") {
                let kind = kind_index(&name);
                channels[kind] += 1;
                subscriptions[kind] += stats.subscription_count;
            }
        }
        for kind in 0..KINDS.len() {
            self.channels[kind].set(channels[kind] as f64);
            self.subscriptions[kind].set(subscriptions[kind] as f64);
        }
    }
}

/// The index in [`KINDS`] of a channel's kind, by its name's prefix.
fn kind_index(name: &str) -> usize {
    if name.starts_with("private-encrypted-") {
        3
    } else if name.starts_with("presence-") {
        2
    } else if name.starts_with("private-") {
        1
    } else {
        0
    }
}

/// Counts an HTTP API answer by its status class.
pub(crate) async fn count_api_request(
    State(node): State<Arc<Node>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let class = (response.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    node.metrics.api[class].increment(1);
    response
}

fn describe() {
    metrics::describe_counter!(
        "infra_realtime_messages_total",
        "WebSocket frames by direction: in (from clients), out (to clients)."
    );
    metrics::describe_counter!(
        "infra_realtime_bytes_total",
        metrics::Unit::Bytes,
        "Bytes of WebSocket frames by direction: in, out."
    );
    metrics::describe_counter!(
        "infra_realtime_client_events_total",
        "Client events (client-*) accepted and delivered."
    );
    metrics::describe_counter!(
        "infra_realtime_api_requests_total",
        "HTTP API requests (/apps/...) by status class (1xx to 5xx)."
    );
    metrics::describe_counter!(
        "infra_realtime_webhooks_total",
        "Webhook batches sent or failed (given up after retries), and webhook events dropped (backlog full)."
    );
    metrics::describe_histogram!(
        "infra_realtime_fanout_seconds",
        metrics::Unit::Seconds,
        "Time to hand one published frame to this node's subscribers of its channel."
    );
    metrics::describe_counter!(
        "infra_realtime_redis_errors_total",
        "Failed calls to the cluster's Redis (INFRA_REALTIME_REDIS_URL)."
    );
    metrics::describe_gauge!("infra_realtime_connections", "Open WebSocket connections.");
    metrics::describe_gauge!(
        "infra_realtime_channels",
        "Occupied channels by kind: public, private, presence, encrypted."
    );
    metrics::describe_gauge!(
        "infra_realtime_subscriptions",
        "Subscriptions by channel kind: public, private, presence, encrypted."
    );
    metrics::describe_gauge!(
        "infra_realtime_presence_members",
        "Presence members over all presence channels."
    );
    metrics::describe_gauge!("infra_realtime_users", "Signed-in users (pusher:signin).");
    metrics::describe_gauge!(
        "infra_realtime_webhooks_queued",
        "Webhook events waiting for delivery."
    );
    metrics::describe_gauge!(
        "infra_realtime_cluster_changes_queued",
        "Changes of this node's state waiting for the cluster's Redis (0 on a single node)."
    );
}

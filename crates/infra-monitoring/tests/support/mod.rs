//! A local stand-in for Sentry's envelope endpoint (`POST /api/{project}/envelope/`): it
//! keeps every envelope with its project and `X-Sentry-Auth` header, and answers the status
//! the test sets (200 unless told otherwise).

#![allow(dead_code)] // each test binary uses part of it

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

/// One envelope as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub project: String,
    pub auth: String,
    pub body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

/// The running stand-in.
pub struct EnvelopeReceiver {
    pub addr: SocketAddr,
    shared: Shared,
}

impl EnvelopeReceiver {
    /// Serves on a free local port, answering 200.
    pub async fn start() -> Self {
        let shared = Shared::default();
        shared.status.store(200, Ordering::SeqCst);
        let app = axum::Router::new()
            .route("/api/{project}/envelope/", post(envelope))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        EnvelopeReceiver { addr, shared }
    }

    /// A DSN for `project` on this receiver.
    pub fn dsn(&self, key: &str, project: u32) -> String {
        format!("http://{key}@{}/{project}", self.addr)
    }

    /// The status every following envelope is answered with.
    pub fn answer(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Every envelope so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

async fn envelope(
    State(shared): State<Shared>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let auth = headers
        .get("x-sentry-auth")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    shared
        .received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Received {
            project,
            auth,
            body: body.to_vec(),
        });
    StatusCode::from_u16(shared.status.load(Ordering::SeqCst)).unwrap()
}

/// Splits an envelope into (item header, payload) pairs of JSON.
pub fn items(body: &[u8]) -> Vec<(Value, Value)> {
    let text = String::from_utf8_lossy(body);
    let mut lines = text.lines();
    let _header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(item_header) = lines.next() {
        if item_header.trim().is_empty() {
            continue;
        }
        let header: Value = serde_json::from_str(item_header).unwrap();
        let payload: Value =
            serde_json::from_str(lines.next().unwrap_or("null")).unwrap_or(Value::Null);
        out.push((header, payload));
    }
    out
}

/// The item types of an envelope (`event`, `client_report`, …).
pub fn item_types(body: &[u8]) -> Vec<String> {
    items(body)
        .iter()
        .filter_map(|(h, _)| h["type"].as_str().map(str::to_owned))
        .collect()
}

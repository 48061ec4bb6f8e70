//! `GET /api/health/ready`, which anyone may call: cheap ([`Infra::readiness_report`], no
//! end-to-end probe) and coalesced — one report in flight at a time, its answer reused for
//! `INFRA_READINESS_CACHE_TTL` — so a flood of requests costs the backends one `PING` per
//! window, not one full probe per request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::{ConnectionReport, Infra};

/// The readiness answer, serialized once and reused while fresh.
struct Answer {
    ready: bool,
    body: Bytes,
}

/// The last answer and when it was made; the lock is held while a report runs, so callers
/// arriving meanwhile wait for that report instead of starting their own.
pub(crate) struct ReadinessCache {
    infra: Arc<Infra>,
    ttl: Duration,
    last: Mutex<Option<(Instant, Arc<Answer>)>>,
}

impl ReadinessCache {
    pub(crate) fn new(infra: Arc<Infra>) -> Self {
        ReadinessCache {
            ttl: infra.readiness_cache_ttl(),
            infra,
            last: Mutex::new(None),
        }
    }

    async fn answer(&self) -> Arc<Answer> {
        let mut last = self.last.lock().await;
        if let Some((made, answer)) = last.as_ref()
            && made.elapsed() < self.ttl
        {
            return Arc::clone(answer);
        }
        let answer = Arc::new(compact(&self.infra.readiness_report().await));
        *last = Some((Instant::now(), Arc::clone(&answer)));
        answer
    }
}

#[derive(Serialize)]
struct Readiness<'a> {
    ready: bool,
    services: BTreeMap<&'a str, ServiceReadiness<'a>>,
}

#[derive(Serialize)]
struct ServiceReadiness<'a> {
    ok: bool,
    status: &'static str,
    backend: &'a str,
}

/// `{ "ready": bool, "services": { name: { ok, status, backend } } }`: no details, which name
/// hosts and versions and are the admin report's.
fn compact(report: &ConnectionReport) -> Answer {
    let body = Readiness {
        ready: report.all_ok(),
        services: report
            .services
            .iter()
            .map(|r| {
                (
                    r.service.as_str(),
                    ServiceReadiness {
                        ok: r.is_ok(),
                        status: r.status.as_str(),
                        backend: r.backend.as_str(),
                    },
                )
            })
            .collect(),
    };
    Answer {
        ready: body.ready,
        body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
    }
}

pub(crate) async fn ready(State(cache): State<Arc<ReadinessCache>>) -> Response {
    let answer = cache.answer().await;
    let status = if answer.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body.clone(),
    )
        .into_response()
}

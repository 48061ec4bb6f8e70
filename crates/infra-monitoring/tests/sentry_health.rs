//! The Sentry backend's health check against a local stand-in of the envelope endpoint: a
//! DSN Sentry refuses (401/403/404) or a failing server (5xx) is unhealthy, naming the
//! status, what it usually means and the variable, never the key.
#![cfg(feature = "sentry")]

mod support;

use infra_core::{Env, HealthCheck, HealthStatus};
use infra_monitoring::Monitoring;
use support::{EnvelopeReceiver, item_types};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_reads_the_envelope_endpoints_answer() {
    let receiver = EnvelopeReceiver::start().await;
    // The TypeScript module's name, so every message must name it rather than SENTRY_DSN.
    let env = Env::from_pairs([("NEXT_PUBLIC_SENTRY_DSN", receiver.dsn("publickeyabc", 9))]);
    let monitoring = Monitoring::from_env(&env).unwrap();

    let report = monitoring.check().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{}", report.detail);
    assert!(report.detail.contains("HTTP 200"), "{}", report.detail);

    for (status, meaning) in [
        (401, "public key is wrong"),
        (403, "wrong project"),
        (404, "wrong host"),
        (500, "server error"),
        (503, "server error"),
    ] {
        receiver.answer(status);
        let report = monitoring.check().await;
        assert_eq!(
            report.status,
            HealthStatus::Unhealthy,
            "{status}: {}",
            report.detail
        );
        for words in [&format!("HTTP {status}"), meaning, "NEXT_PUBLIC_SENTRY_DSN"] {
            assert!(report.detail.contains(words), "{status}: {}", report.detail);
        }
        assert!(!report.detail.contains("publickeyabc"), "{}", report.detail);
    }

    receiver.answer(429);
    let report = monitoring.check().await;
    assert_eq!(report.status, HealthStatus::Degraded, "{}", report.detail);

    // Every probe was one empty client report, authenticated with the DSN's key: the
    // endpoint checked the key on it, and no event was created.
    let received = receiver.received();
    assert_eq!(received.len(), 7);
    for envelope in &received {
        assert_eq!(envelope.project, "9");
        assert_eq!(item_types(&envelope.body), ["client_report"]);
        assert!(
            envelope.auth.contains("sentry_key=publickeyabc"),
            "{}",
            envelope.auth
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_does_not_answer_is_unhealthy() {
    // A port nothing listens on: bind one, note it, close it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let env = Env::from_pairs([("SENTRY_DSN", format!("http://k@{addr}/3"))]);
    let monitoring = Monitoring::from_env(&env).unwrap();
    let report = monitoring.check().await;
    assert_eq!(report.status, HealthStatus::Unhealthy, "{}", report.detail);
    assert!(report.detail.contains("cannot reach"), "{}", report.detail);
}

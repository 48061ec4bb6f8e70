//! `Monitoring::attach` with a Sentry client the app built itself (on the same `sentry`
//! major as ours): events, user, breadcrumbs and tags reach that client's transport, with
//! our scrubbers and each default integration once; the health check probes that client's
//! DSN, and is unhealthy when no client is bound.
#![cfg(feature = "sentry")]

mod support;

use std::sync::Arc;

use infra_core::{Breadcrumb, Context, Env, ErrorReporter, HealthCheck, HealthStatus, User};
use infra_monitoring::{Monitoring, MonitoringConfig, sentry_options};
use sentry::test::TestTransport;
use support::EnvelopeReceiver;

fn config(dsn: &str) -> MonitoringConfig {
    MonitoringConfig::from_env(&Env::from_pairs([
        ("SENTRY_DSN", dsn),
        ("SENTRY_RELEASE", "agent@3.1.0"),
    ]))
    .unwrap()
}

/// What an app does: its own options (ours as a start), its own transport, its own client
/// on its own hub.
fn app_hub(config: &MonitoringConfig, transport: &Arc<TestTransport>) -> Arc<sentry::Hub> {
    let mut options = sentry_options(config).unwrap();
    options.transport = Some(Arc::new(transport.clone()));
    let client = Arc::new(sentry::Client::from(options));
    Arc::new(sentry::Hub::new(Some(client), Arc::default()))
}

#[test]
fn events_reach_the_apps_own_client() {
    let config = config("https://public@sentry.example/11");
    let transport = TestTransport::new();
    let hub = app_hub(&config, &transport);
    sentry::Hub::run(hub, || {
        let monitoring = Monitoring::attach(config.clone()).unwrap();
        monitoring.set_user(Some(User {
            id: Some("u-3".into()),
            workspace: Some("acme".into()),
            ..User::default()
        }));
        monitoring.add_breadcrumb(Breadcrumb::new("agent planned the week"));
        let mut context = Context::new();
        context.insert("password".into(), "hunter2".into());
        let err = std::io::Error::other("calendar provider refused");
        monitoring.capture_error(&err, &context).unwrap();
        monitoring
            .tracking()
            .database_error("find_user", &std::io::Error::other("pool timed out"));
    });
    let events: Vec<_> = transport
        .fetch_and_clear_envelopes()
        .into_iter()
        .filter_map(|e| e.event().cloned())
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    for event in &events {
        assert_eq!(event.release.as_deref(), Some("agent@3.1.0"));
        assert_eq!(
            event.user.as_ref().and_then(|u| u.id.as_deref()),
            Some("u-3")
        );
        assert_eq!(
            event.tags.get("workspace").map(String::as_str),
            Some("acme")
        );
        let crumbs: Vec<_> = event
            .breadcrumbs
            .values
            .iter()
            .filter_map(|b| b.message.as_deref())
            .collect();
        assert_eq!(crumbs, ["agent planned the week"]);
        let sdk = event.sdk.as_ref().expect("the client's sdk info");
        for integration in &sdk.integrations {
            let count = sdk
                .integrations
                .iter()
                .filter(|i| *i == integration)
                .count();
            assert_eq!(count, 1, "{integration} in {:?}", sdk.integrations);
        }
        assert!(sdk.integrations.iter().any(|i| i == "panic"), "{sdk:?}");
    }
    let text = serde_json::to_string(&events[0]).unwrap();
    assert!(text.contains("calendar provider refused"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "our scrubber runs in the app's client: {text}"
    );
    assert_eq!(
        events[1].tags.get("db.operation").map(String::as_str),
        Some("find_user")
    );
}

#[test]
fn the_health_check_probes_the_apps_client() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = runtime.block_on(EnvelopeReceiver::start());
    let config = config(&receiver.dsn("appkey", 12));
    let transport = TestTransport::new();

    // block_on polls on this thread, so the probe sees the hub `Hub::run` made current.
    let monitoring = Monitoring::attach(config.clone()).unwrap();
    let report = sentry::Hub::run(app_hub(&config, &transport), || {
        runtime.block_on(monitoring.check())
    });
    assert_eq!(report.status, HealthStatus::Healthy, "{}", report.detail);
    receiver.answer(403);
    let report = sentry::Hub::run(app_hub(&config, &transport), || {
        runtime.block_on(monitoring.check())
    });
    assert_eq!(report.status, HealthStatus::Unhealthy, "{}", report.detail);
    assert!(report.detail.contains("HTTP 403"), "{}", report.detail);
    assert_eq!(receiver.received().len(), 2);

    let no_client = Arc::new(sentry::Hub::new(None, Arc::default()));
    let report = sentry::Hub::run(no_client, || runtime.block_on(monitoring.check()));
    assert_eq!(report.status, HealthStatus::Unhealthy, "{}", report.detail);
    assert!(
        report.detail.contains("no Sentry client"),
        "{}",
        report.detail
    );
}

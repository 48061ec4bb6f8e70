//! `infra::compat`: the TypeScript module's names reach the one method each stands for — on
//! mocks (so a test expecting the real method passes when ported code calls the TypeScript
//! name) and on real backends.

#![cfg(all(feature = "cache", feature = "jobs"))]

use std::time::Duration;

use infra::compat::{check_rate_limit, get_cached, send_event, set_cached, test_all_connections};
use infra::{Env, Infra};

#[cfg(feature = "mock")]
mod on_mocks {
    use super::*;
    use infra::compat::trigger_event;
    use infra::mock::{MockCache, MockEventSender, MockRateLimiter, MockRealtime};
    use infra::{ErrorKind, RateLimitDecision};

    /// Code under test written with the TypeScript module's names.
    async fn guarded_agent_call(
        limiter: &dyn infra::RateLimiter,
        cache: &dyn infra::Cache,
        ip: &str,
    ) -> infra::Result<bool> {
        let decision =
            check_rate_limit(limiter, &format!("agent:{ip}"), 10, Duration::from_secs(60)).await?;
        if decision.allowed {
            set_cached(cache, "agent:last", &ip, Duration::from_secs(60)).await?;
            let last: Option<String> = get_cached(cache, "agent:last").await?;
            assert_eq!(last.as_deref(), Some(ip));
        }
        Ok(decision.allowed)
    }

    #[tokio::test]
    async fn cache_and_rate_limit_names_reach_the_required_methods() {
        let mut limiter = MockRateLimiter::new();
        limiter
            .expect_check()
            .withf(|key, limit, window| {
                key == "agent:203.0.113.9" && *limit == 10 && *window == Duration::from_secs(60)
            })
            .times(1)
            .returning(|_, limit, window| {
                Ok(RateLimitDecision {
                    allowed: true,
                    limit,
                    remaining: limit - 1,
                    reset_after: window,
                    fallback: false,
                })
            });
        let mut cache = MockCache::new();
        cache
            .expect_set()
            .withf(|key, value, ttl| {
                key == "agent:last"
                    && value == br#""203.0.113.9""#
                    && *ttl == Duration::from_secs(60)
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        cache
            .expect_get()
            .withf(|key| key == "agent:last")
            .times(1)
            .returning(|_| Ok(Some(br#""203.0.113.9""#.to_vec())));
        assert!(
            guarded_agent_call(&limiter, &cache, "203.0.113.9")
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn send_event_sends_one_event_by_name_and_data() {
        let mut events = MockEventSender::new();
        events
            .expect_send()
            .withf(|event| {
                event.name == "email/send.requested"
                    && event.data == serde_json::json!({ "to": "a@example.com" })
                    && event.id.is_none()
            })
            .times(1)
            .returning(|_| Ok("evt-1".into()));
        let id = send_event(
            &events,
            "email/send.requested",
            serde_json::json!({ "to": "a@example.com" }),
        )
        .await
        .unwrap();
        assert_eq!(id, "evt-1");
    }

    #[tokio::test]
    async fn trigger_event_checks_the_names_then_triggers_on_one_channel() {
        let mut realtime = MockRealtime::new();
        realtime
            .expect_trigger()
            .withf(|channels, event, data| {
                channels.len() == 1
                    && channels[0].as_str() == "private-user-7"
                    && event.as_str() == "task.created"
                    && *data == serde_json::json!({ "id": 1 })
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        trigger_event(
            &realtime,
            "private-user-7",
            "task.created",
            &serde_json::json!({ "id": 1 }),
        )
        .await
        .unwrap();

        // A name Pusher refuses is an InvalidInput error naming it, and nothing is sent.
        let mut refused = MockRealtime::new();
        refused.expect_trigger().never();
        let data = serde_json::json!({});
        let err = trigger_event(&refused, "has space", "e", &data)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        let err = trigger_event(&refused, "c", "", &data).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }
}

#[tokio::test]
async fn cache_names_read_the_same_on_the_embedded_backend() {
    let infra = Infra::from_env(&Env::empty()).unwrap();
    let cache = infra.cache();
    set_cached(
        cache,
        "compat:prefs:1",
        &serde_json::json!({ "tz": "UTC" }),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let got: Option<serde_json::Value> = get_cached(cache, "compat:prefs:1").await.unwrap();
    assert_eq!(got.unwrap()["tz"], "UTC");
    let missing: Option<serde_json::Value> = get_cached(cache, "compat:none").await.unwrap();
    assert!(missing.is_none());

    let limiter = cache.rate_limiter();
    let first = check_rate_limit(limiter.as_ref(), "compat:ip:1", 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(first.allowed && first.remaining == 0);
    let second = check_rate_limit(limiter.as_ref(), "compat:ip:1", 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(!second.allowed);
}

#[tokio::test]
async fn send_event_goes_through_the_jobs_runtime() {
    use infra::jobs::{Function, Outcome};

    let infra = Infra::from_env(&Env::empty()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    infra
        .jobs()
        .register(
            Function::builder("compat-greet")
                .on_event("compat/greet.requested")
                .raw_handler(move |event: infra::Event, _ctx| {
                    let tx = tx.clone();
                    async move {
                        tx.send(event.data).unwrap();
                        Outcome::success()
                    }
                })
                .unwrap(),
        )
        .unwrap();
    infra.start().await.unwrap();
    let id = send_event(
        infra.jobs(),
        "compat/greet.requested",
        serde_json::json!({ "name": "Ada" }),
    )
    .await
    .unwrap();
    assert!(!id.is_empty());
    let data = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the function ran")
        .unwrap();
    assert_eq!(data, serde_json::json!({ "name": "Ada" }));
    infra.shutdown().await;
}

#[tokio::test]
async fn test_all_connections_is_the_full_check() {
    let infra = Infra::from_env(&Env::empty()).unwrap();
    let report = test_all_connections(&infra).await;
    let check = infra.check().await;
    let names = |r: &infra::ConnectionReport| {
        r.services
            .iter()
            .map(|s| (s.service.clone(), s.backend.clone(), s.status))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&report), names(&check));
    #[cfg(feature = "db")]
    assert_eq!(
        report.get("database").map(|r| r.status),
        Some(infra::HealthStatus::NotConfigured)
    );
}

#[cfg(feature = "db")]
#[tokio::test]
async fn test_database_connection_is_the_database_health_check() {
    use infra::HealthStatus;
    use infra::compat::test_database_connection;
    use infra::db::{Database, DbConfig};

    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let db = Database::from_config(DbConfig::new(&url).unwrap()).unwrap();
    let report = test_database_connection(&db).await;
    assert_eq!(report.status, HealthStatus::Healthy, "{}", report.detail);
    assert!(
        report.detail.starts_with("PostgreSQL "),
        "{}",
        report.detail
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = Database::from_config(
        DbConfig::new(&format!("postgres://postgres@127.0.0.1:{closed}/x")).unwrap(),
    )
    .unwrap();
    let report = test_database_connection(&down).await;
    assert_eq!(report.status, HealthStatus::Unhealthy);
}

/// `infra.realtime()` is the realtime service and a `Realtime` itself: an event triggered
/// through it — by the Rust name or by `compat::trigger_event` — reaches a WebSocket
/// subscriber of the embedded server the app serves.
#[cfg(all(feature = "realtime", feature = "http"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_event_reaches_a_subscriber_of_the_embedded_server() {
    use futures::{SinkExt, StreamExt};
    use infra::compat::trigger_event;
    use infra::{ChannelName, EventName, Realtime};
    use tokio_tungstenite::tungstenite::Message;

    /// The next text frame as JSON; generous, since a loaded machine must not fail this.
    async fn next_json<S>(ws: &mut S) -> serde_json::Value
    where
        S: StreamExt<Item = tokio_tungstenite::tungstenite::Result<Message>> + Unpin,
    {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .expect("a frame")
                .expect("the socket is open")
                .unwrap();
            if let Message::Text(text) = frame {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    let infra = std::sync::Arc::new(Infra::from_env(&Env::empty()).unwrap());
    assert_eq!(infra.realtime().backend(), "local");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = infra.router();
    tokio::spawn({
        let infra = infra.clone();
        async move { infra.serve(listener, router, std::future::pending()).await }
    });
    let key = infra.realtime().credentials().key.clone();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/app/{key}?protocol=7"))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut ws).await["event"],
        "pusher:connection_established"
    );
    ws.send(Message::text(
        r#"{"event":"pusher:subscribe","data":{"channel":"updates"}}"#,
    ))
    .await
    .unwrap();
    assert_eq!(
        next_json(&mut ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );

    infra
        .realtime()
        .trigger(
            &[ChannelName::new("updates").unwrap()],
            &EventName::new("item.added").unwrap(),
            &serde_json::json!({ "id": 1 }),
        )
        .await
        .unwrap();
    let got = next_json(&mut ws).await;
    assert_eq!(
        (&got["event"], &got["channel"]),
        (&"item.added".into(), &"updates".into())
    );
    assert_eq!(got["data"], r#"{"id":1}"#);

    trigger_event(
        infra.realtime(),
        "updates",
        "item.removed",
        &serde_json::json!({ "id": 1 }),
    )
    .await
    .unwrap();
    let got = next_json(&mut ws).await;
    assert_eq!(
        (&got["event"], &got["channel"]),
        (&"item.removed".into(), &"updates".into())
    );
    assert_eq!(got["data"], r#"{"id":1}"#);
}

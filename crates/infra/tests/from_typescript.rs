//! The Rust lines of `docs/from-typescript.md`, compiled and run: each TypeScript call's
//! counterpart, as the guide writes it, on the embedded backends (the database against the
//! real PostgreSQL). The `infra::compat` aliases have their own tests (`tests/compat.rs`).

#![cfg(all(
    feature = "db",
    feature = "cache",
    feature = "jobs",
    feature = "realtime",
    feature = "monitoring"
))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use infra::db::diesel;
use infra::db::{DEFAULT_TRANSACTION_RETRY, Isolation};
use infra::jobs::{Function, JobContext, Outcome};
use infra::realtime::{RealtimeEvent, RealtimeNotify, private_user_channel};
use infra::{
    Breadcrumb, CacheExt, ChannelName, Context, Env, ErrorReporter, Event, EventName, EventSender,
    HealthStatus, Infra, RateLimiter, Realtime, TypedEvent, User,
};
use serde::{Deserialize, Serialize};

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `prisma`, a query through it, `prisma.$transaction`, `testDatabaseConnection()`.
#[tokio::test]
async fn database_lines() {
    use infra::db::diesel_async::RunQueryDsl;

    let infra = Infra::from_env(&Env::from_pairs([("DATABASE_URL", database_url())])).unwrap();
    let db = infra.database().expect("DATABASE_URL set: a database");

    #[derive(diesel::QueryableByName)]
    struct Answer {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        answer: i32,
    }
    let mut conn = db.get().await.unwrap();
    let rows: Vec<Answer> = diesel::sql_query("SELECT 42 AS answer")
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows[0].answer, 42);
    drop(conn);

    let inserted = db
        .transaction(
            Isolation::ReadCommitted,
            DEFAULT_TRANSACTION_RETRY,
            |conn| Box::pin(async move { diesel::sql_query("SELECT 1").execute(conn).await }),
        )
        .await
        .unwrap();
    assert_eq!(inserted, 1);

    use infra::HealthCheck;
    assert_eq!(db.check().await.status, HealthStatus::Healthy);
}

/// `getCached`, `setCached`, `checkRateLimit`.
#[tokio::test]
async fn cache_lines() {
    let infra = Infra::from_env(&Env::empty()).unwrap();
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Preferences {
        timezone: String,
    }
    let value = Preferences {
        timezone: "Europe/Berlin".into(),
    };
    let ttl = Duration::from_secs(300);
    infra
        .cache()
        .set_json("user:1:prefs", &value, ttl)
        .await
        .unwrap();
    let read = infra
        .cache()
        .get_json::<Preferences>("user:1:prefs")
        .await
        .unwrap();
    assert_eq!(read, Some(value));

    let limiter = infra.cache().rate_limiter();
    let (limit, window) = (2, Duration::from_secs(60));
    for expected in [true, true, false] {
        let decision = limiter
            .check("ip:203.0.113.9", limit, window)
            .await
            .unwrap();
        assert_eq!(decision.allowed, expected);
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InvoiceOverdue {
    invoice_id: String,
}

impl TypedEvent for InvoiceOverdue {
    const NAME: &'static str = "billing/invoice.overdue";
}

/// `sendEvent`, `inngest.send([…])`, `inngest.createFunction` with its handler's dependencies.
#[tokio::test]
async fn jobs_lines() {
    let infra = Infra::from_env(&Env::empty()).unwrap();
    #[derive(Clone)]
    struct Deps {
        runs: Arc<AtomicUsize>,
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let function = Function::typed::<InvoiceOverdue>("remind-overdue")
        .retries(3)
        .concurrency(4)
        .with_state(Deps { runs: runs.clone() })
        .handler(|event: InvoiceOverdue, ctx: JobContext<Deps>| async move {
            assert!(event.invoice_id.starts_with("inv_"));
            ctx.state().runs.fetch_add(1, Ordering::SeqCst);
            Outcome::success()
        })
        .unwrap();
    infra.jobs().register(function).unwrap();
    infra.start().await.unwrap();

    let payload = InvoiceOverdue {
        invoice_id: "inv_1".into(),
    };
    let id = infra
        .jobs()
        .send(payload.to_event().unwrap())
        .await
        .unwrap();
    assert!(!id.is_empty());
    let ids = infra
        .jobs()
        .send_many(vec![
            Event::new(
                InvoiceOverdue::NAME,
                serde_json::json!({ "invoiceId": "inv_2" }),
            ),
            Event::new("audit/logged", serde_json::json!({})),
        ])
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);

    // Both invoice events run; no deadline asserted, the test's own timeout bounds it.
    while runs.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    infra.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SyncCompleted {
    calendar_id: String,
    events_synced: u64,
}

impl RealtimeEvent for SyncCompleted {
    const NAME: &'static str = "calendar.sync.completed";
}

/// `triggerEvent`, `Channels.userPrivate`, a `notify…` helper.
#[tokio::test]
async fn realtime_lines() {
    let infra = Infra::from_env(&Env::empty()).unwrap();
    let (channel, event) = ("private-user-42", "task.created");
    let data = serde_json::json!({ "title": "Call Ada" });
    infra
        .realtime()
        .trigger(
            &[ChannelName::new(channel).unwrap()],
            &EventName::new(event).unwrap(),
            &data,
        )
        .await
        .unwrap();
    assert_eq!(private_user_channel("42").unwrap().as_str(), channel);
    infra
        .realtime()
        .notify_user(
            "42",
            &SyncCompleted {
                calendar_id: "c1".into(),
                events_synced: 17,
            },
        )
        .await
        .unwrap();
    // A name the channel rules refuse is an error naming `channel`, nothing sent.
    let err = infra
        .realtime()
        .notify_user(
            "has space",
            &SyncCompleted {
                calendar_id: "c1".into(),
                events_synced: 0,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("channel"));
}

/// `captureException`, `addBreadcrumb`, `setUserContext`, `ErrorTracking.apiError` — read
/// back from the local sink's file.
#[tokio::test]
async fn monitoring_lines() {
    let dir = std::env::temp_dir().join(format!("infra-from-ts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("events.jsonl");
    let _ = std::fs::remove_file(&log);
    let infra = Infra::from_env(&Env::from_pairs([(
        "INFRA_MONITORING_LOG_FILE",
        log.to_str().unwrap(),
    )]))
    .unwrap();

    let (id, workspace) = ("u-42".to_owned(), "acme".to_owned());
    infra.monitoring().set_user(Some(User {
        id: Some(id),
        workspace: Some(workspace),
        ..Default::default()
    }));
    infra.monitoring().add_breadcrumb(
        Breadcrumb::new("calendar synced")
            .category("sync")
            .data("events", 12),
    );
    let error = std::io::Error::other("provider timed out");
    let mut context = Context::new();
    context.insert("calendar_id".into(), "cal-1".into());
    let captured = infra.monitoring().capture_error(&error, &context);
    assert!(captured.is_some());
    let tracked = infra
        .monitoring()
        .tracking()
        .api_error("/api/calendars/{id}/sync", &error, 502);
    assert!(tracked.is_some());

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["user"]["id"], "u-42");
    assert_eq!(lines[0]["tags"]["workspace"], "acme");
    assert_eq!(lines[0]["breadcrumbs"][0]["category"], "sync");
    assert_eq!(lines[0]["context"]["calendar_id"], "cal-1");
    assert_eq!(lines[1]["tags"]["route"], "/api/calendars/{id}/sync");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `testAllConnections()` and its `{ service: bool }` shape.
#[tokio::test]
async fn health_lines() {
    let infra = Infra::from_env(&Env::empty()).unwrap();
    infra.start().await.unwrap();
    let report = infra.check().await;
    let summary = report.summary();
    assert!(summary["cache"]);
    assert!(!summary["database"], "no DATABASE_URL: not configured");
    assert!(infra.check_ready().await.all_ok());
    infra.shutdown().await;
}

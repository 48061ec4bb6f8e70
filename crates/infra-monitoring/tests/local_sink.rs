//! Without a DSN the local sink writes one parseable JSON line per event, with the scope.

use infra_core::{Breadcrumb, Context, Env, ErrorReporter, HealthCheck, HealthStatus, Level, User};
use infra_monitoring::Monitoring;
use serde_json::Value;

#[tokio::test]
async fn one_json_line_per_event_with_breadcrumbs_user_and_tags() {
    let path = std::env::temp_dir().join(format!("infra-monitoring-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let env = Env::from_pairs([
        ("INFRA_MONITORING_LOG_FILE", path.to_str().unwrap()),
        ("SENTRY_ENVIRONMENT", "test"),
    ]);
    let monitoring = Monitoring::from_env(&env).unwrap();
    assert_eq!(monitoring.backend(), "local");
    assert_eq!(monitoring.check().await.status, HealthStatus::Healthy);

    monitoring.set_user(Some(User {
        id: Some("u1".into()),
        email: Some("a@b.c".into()),
        workspace: Some("acme".into()),
        ..User::default()
    }));
    monitoring.add_breadcrumb(Breadcrumb::new("step one"));
    monitoring.add_breadcrumb(Breadcrumb::new("step two").data("password", "pw1"));
    let mut context = Context::new();
    context.insert("route".into(), "/api/events".into());
    monitoring.capture_error(&std::io::Error::other("boom"), &context);
    monitoring.capture_message("slow sync", Level::Warning, &Context::new());
    monitoring.set_user(None);
    monitoring.capture_message("anonymous", Level::Info, &Context::new());

    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["exception"]["value"], "boom");
    assert_eq!(events[0]["level"], "error");
    assert_eq!(events[0]["environment"], "test");
    assert_eq!(events[0]["context"]["route"], "/api/events");
    assert_eq!(events[0]["user"]["id"], "u1");
    assert!(
        events[0]["user"]["email"].is_null(),
        "emails are dropped by default"
    );
    assert_eq!(events[0]["tags"]["workspace"], "acme");
    let crumbs: Vec<&str> = events[0]["breadcrumbs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["message"].as_str().unwrap())
        .collect();
    assert_eq!(crumbs, ["step one", "step two"]);
    assert_eq!(
        events[0]["breadcrumbs"][1]["data"]["password"],
        "[redacted]"
    );
    assert!(!text.contains("pw1"));
    assert_eq!(events[1]["message"], "slow sync");
    assert_eq!(events[1]["level"], "warning");
    assert!(events[2]["user"].is_null());
}

//! `cargo xtask jobs` against a real PostgreSQL queue in a database of its own: counts,
//! dead letters by function, replay of one and of all, and clear refusals.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use infra::Event;
use infra::core::{JobBackend, JobId, NewJob, Settlement};
use infra::db::{Database, DbConfig};
use infra::jobs::PgQueue;
use serde_json::{Value, json};

mod support;
use support::{TempDb, url_for};

/// Runs `cargo xtask jobs …` with only `envs` among the service variables.
fn xtask(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("jobs").args(args);
    for (key, _) in std::env::vars() {
        if ["DATABASE_", "INNGEST_", "INFRA_"]
            .iter()
            .any(|p| key.starts_with(p))
        {
            cmd.env_remove(key);
        }
    }
    // Empty values also keep a developer's `.env` (which never overrides) out of the test.
    for key in [
        "DATABASE_URL",
        "INNGEST_EVENT_KEY",
        "INNGEST_DEV",
        "INFRA_JOBS_BACKEND",
    ] {
        cmd.env(key, "");
    }
    cmd.envs(envs.iter().copied());
    cmd.output().expect("run xtask")
}

/// The JSON a successful run printed.
fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "xtask failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn counts(stats: &Value, function: &str) -> (u64, u64) {
    let s = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["function_id"] == function)
        .unwrap_or_else(|| panic!("{function} listed: {stats}"));
    (s["ready"].as_u64().unwrap(), s["dead"].as_u64().unwrap())
}

/// Enqueues one job per function of `functions` and makes each a dead letter.
async fn dead_letters(queue: &dyn JobBackend, functions: &[&str]) -> Vec<(String, JobId)> {
    let jobs = functions
        .iter()
        .map(|f| NewJob::new(*f, Event::new("t/fail", json!({ "f": f })), 0))
        .collect();
    queue.enqueue(jobs).await.unwrap();
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while held.len() < functions.len() {
        assert!(tokio::time::Instant::now() < deadline, "claimed in time");
        held.extend(
            queue
                .claim("test", functions.len(), Duration::from_secs(60))
                .await
                .unwrap(),
        );
    }
    let dead = held
        .iter()
        .map(|j| {
            (
                j.id,
                Settlement::Dead {
                    error: format!("{} broke", j.function_id),
                },
            )
        })
        .collect();
    queue.settle("test", dead).await.unwrap();
    held.into_iter().map(|j| (j.function_id, j.id)).collect()
}

#[test]
fn stats_dead_letters_and_replay_through_the_admin_trait() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let temp = rt.block_on(TempDb::create("infra_xtask_jobs"));
    let url = url_for(&temp.name);
    let env = [("DATABASE_URL", url.as_str())];

    // Before the queue's tables exist: an empty queue, and nothing is created.
    let out = xtask(&["stats"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no jobs");

    let queue: Arc<dyn JobBackend> = Arc::new(PgQueue::new(
        Database::from_config(DbConfig::new(&url).unwrap()).unwrap(),
    ));
    let held = rt.block_on(async {
        queue.prepare().await.unwrap();
        dead_letters(queue.as_ref(), &["sync-a", "sync-a", "mail-b"]).await
    });

    let stats = json_of(&xtask(&["stats", "--json"], &env));
    assert_eq!(counts(&stats, "sync-a"), (0, 2));
    assert_eq!(counts(&stats, "mail-b"), (0, 1));

    let dead = json_of(&xtask(&["dead", "--function", "sync-a", "--json"], &env));
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|d| d["function_id"] == "sync-a"));
    assert_eq!(dead[0]["error"], "sync-a broke");
    let limited = json_of(&xtask(&["dead", "--limit", "1", "--json"], &env));
    assert_eq!(limited.as_array().unwrap().len(), 1);
    let listed = xtask(&["dead"], &env);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("mail-b broke") && text.contains("event t/fail"),
        "{text}"
    );

    let mail = held.iter().find(|(f, _)| f == "mail-b").unwrap().1;
    let out = xtask(&["replay", &mail.to_string()], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("replayed dead letter {mail}")
    );
    let stats = json_of(&xtask(&["stats", "--json"], &env));
    assert_eq!(counts(&stats, "mail-b"), (1, 0), "due again at once");
    assert_eq!(counts(&stats, "sync-a"), (0, 2), "the others stay dead");

    let out = xtask(&["replay", &mail.to_string()], &env);
    assert!(!out.status.success(), "a job that is no dead letter");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("no dead letter with id {mail}")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = xtask(&["replay", "--all", "--function", "sync-a"], &env);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "replayed 2 dead letter(s) of sync-a"
    );
    let stats = json_of(&xtask(&["stats", "--json"], &env));
    assert_eq!(counts(&stats, "sync-a"), (2, 0));
    let again = rt.block_on(async {
        queue
            .claim("test", 10, Duration::from_secs(60))
            .await
            .unwrap()
    });
    assert_eq!(again.len(), 3, "every replayed job runs again");
    assert!(
        again.iter().all(|j| j.attempt == 1),
        "from its first attempt"
    );
    drop(queue);
    drop(temp);
}

#[test]
fn refuses_clearly_without_a_postgres_queue_or_with_bad_arguments() {
    let out = xtask(&["stats"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DATABASE_URL"), "names the variable: {err}");

    let out = xtask(&["dead"], &[("INNGEST_DEV", "1")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Inngest"));

    let out = xtask(&["replay"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}

//! The queue's tables come from infra-db's migration runner: racing workers apply each
//! migration once, and a database an earlier release set up (its own
//! `infra_jobs_migrations` table, no diesel records) adopts the migrations without change.

mod support;

use std::sync::Arc;

use diesel_async::SimpleAsyncConnection;
use infra_core::{Event, JobBackend, JobQueue, NewJob, Settlement};
use infra_jobs::PgQueue;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_workers_apply_each_migration_once() {
    let test_db = support::TestDb::create("migrate_race").await;
    let db = test_db.database();
    let starts = (0..3).map(|_| {
        let queue = PgQueue::new(db.clone());
        tokio::spawn(async move { queue.migrate().await })
    });
    let mut applied = Vec::new();
    for start in futures::future::join_all(starts).await {
        applied.extend(start.unwrap().expect("every start succeeds"));
    }
    applied.sort();
    assert_eq!(
        applied,
        [
            "00000000000001",
            "00000000000002",
            "00000000000003",
            "00000000000004"
        ]
    );
    assert_eq!(
        support::count(
            &db,
            "SELECT count(*) AS n FROM __diesel_schema_migrations WHERE version LIKE '0000%'"
        )
        .await,
        4
    );
    works(Arc::new(PgQueue::new(db))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_earlier_runner_adopts_the_migrations() {
    let test_db = support::TestDb::create("migrate_adopt").await;
    let db = test_db.database();
    // What the earlier release left: the queue's schema, recorded in its own table.
    let legacy = format!(
        "{}\n{}\n\
         CREATE TABLE infra_jobs_migrations (version text PRIMARY KEY, \
           applied_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO infra_jobs_migrations (version) VALUES ('0001'), ('0002'); \
         INSERT INTO infra_jobs (function_id, event, run_at, max_attempts) \
           VALUES ('kept', '{{\"name\":\"t/kept\",\"data\":{{}}}}', 0, 1);",
        include_str!("../migrations/0000-00-00-000001_infra_jobs/up.sql"),
        include_str!("../migrations/0000-00-00-000002_concurrency_slots/up.sql"),
    );
    db.get()
        .await
        .unwrap()
        .batch_execute(&legacy)
        .await
        .unwrap();

    let queue = Arc::new(PgQueue::new(db.clone()));
    let applied = queue.migrate().await.expect("adopting migrations succeeds");
    assert_eq!(
        applied,
        [
            "00000000000001",
            "00000000000002",
            "00000000000003",
            "00000000000004"
        ]
    );
    assert!(
        queue.migrate().await.unwrap().is_empty(),
        "then nothing is pending"
    );
    let kept = queue
        .claim("w", 10, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(kept.len(), 1, "the waiting job survived");
    assert_eq!(kept[0].function_id, "kept");
    queue
        .settle("w", vec![(kept[0].id, Settlement::Completed)])
        .await
        .unwrap();
    works(queue).await;
}

/// The migrated queue takes, hands out and settles a job.
async fn works(queue: Arc<dyn JobBackend>) {
    queue.prepare().await.unwrap();
    let job = NewJob::new("after", Event::new("t/after", serde_json::json!({})), 0);
    queue.enqueue(vec![job]).await.unwrap();
    let claimed = queue
        .claim("w", 10, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    queue
        .settle("w", vec![(claimed[0].id, Settlement::Completed)])
        .await
        .unwrap();
    let stats = queue.stats().await.unwrap();
    assert!(
        stats.iter().all(|s| s.ready + s.running + s.dead == 0),
        "{stats:?}"
    );
}

//! Migrations, transactions with retry, read replicas and pagination against the real
//! PostgreSQL, each test in a database of its own.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use infra_core::ErrorKind;
use infra_db::{
    Database, DbConfig, Isolation, Keyset, Page, RetryPolicy, migration_status,
    run_pending_migrations,
};
use support::schema::{users, workspaces};
use support::{FIXTURE_MIGRATIONS, TestDb};

#[tokio::test]
async fn migrations_apply_once_and_report_status() {
    let db = TestDb::create("migrate").await;
    let database = db.database();
    let before = migration_status(&database, FIXTURE_MIGRATIONS)
        .await
        .unwrap();
    assert!(!before.is_empty() && before.iter().all(|m| !m.applied));
    let applied = run_pending_migrations(&database, FIXTURE_MIGRATIONS)
        .await
        .unwrap();
    assert_eq!(applied.len(), before.len());
    assert!(
        run_pending_migrations(&database, FIXTURE_MIGRATIONS)
            .await
            .unwrap()
            .is_empty(),
        "idempotent"
    );
    assert!(
        migration_status(&database, FIXTURE_MIGRATIONS)
            .await
            .unwrap()
            .iter()
            .all(|m| m.applied)
    );
    // The tables and indexes exist.
    let mut conn = database.get().await.unwrap();
    let n: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "count(*) FROM pg_indexes WHERE indexname IN ('users_email_key', 'users_workspace_id_idx')",
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(n, 2);
    drop(conn);
    drop(database);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_apply_each_migration_once() {
    let db = TestDb::create("migrate_race").await;
    let database = db.database();
    let runs = (0..4).map(|_| {
        let database = database.clone();
        tokio::spawn(async move { run_pending_migrations(&database, FIXTURE_MIGRATIONS).await })
    });
    let mut applied = Vec::new();
    for run in futures::future::join_all(runs).await {
        applied.extend(run.unwrap().expect("every concurrent run succeeds"));
    }
    let all = migration_status(&database, FIXTURE_MIGRATIONS)
        .await
        .unwrap();
    assert_eq!(
        applied.len(),
        all.len(),
        "each migration applied by one run"
    );
    assert!(all.iter().all(|m| m.applied));
    drop(database);
    db.drop_now().await;
}

async fn seeded(test: &str, users_count: i64) -> (TestDb, Database, i64) {
    let db = TestDb::create(test).await;
    let database = db.database();
    run_pending_migrations(&database, FIXTURE_MIGRATIONS)
        .await
        .unwrap();
    let mut conn = database.get().await.unwrap();
    let workspace: i64 = diesel::insert_into(workspaces::table)
        .values(workspaces::name.eq("acme"))
        .returning(workspaces::id)
        .get_result(&mut conn)
        .await
        .unwrap();
    let rows: Vec<_> = (0..users_count)
        .map(|i| {
            (
                users::workspace_id.eq(workspace),
                users::email.eq(format!("user{i}@acme.test")),
            )
        })
        .collect();
    diesel::insert_into(users::table)
        .values(&rows)
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    (db, database, workspace)
}

#[tokio::test]
async fn unique_email_is_a_conflict_and_is_not_retried() {
    let (db, database, workspace) = seeded("conflict", 1).await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let err = database
        .transaction(
            Isolation::ReadCommitted,
            RetryPolicy::default(),
            move |conn| {
                counter.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    diesel::insert_into(users::table)
                        .values((
                            users::workspace_id.eq(workspace),
                            users::email.eq("USER0@acme.test"),
                        ))
                        .execute(conn)
                        .await
                })
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.context("sqlstate"), Some("23505"));
    assert_eq!(
        AtomicUsize::load(&attempts, Ordering::SeqCst),
        1,
        "a unique violation is not retried"
    );
    drop(database);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serialization_failure_is_retried_until_it_commits() {
    let (db, database, workspace) = seeded("serial", 2).await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let go_tx = Arc::new(std::sync::Mutex::new(Some(go_tx)));
    let done_rx = Arc::new(tokio::sync::Mutex::new(Some(done_rx)));

    // A concurrent serializable transaction that reads the same rows and commits first.
    let other = database.clone();
    let rival = tokio::spawn(async move {
        go_rx.await.unwrap();
        let mut conn = other.get().await.unwrap();
        diesel::sql_query("BEGIN ISOLATION LEVEL SERIALIZABLE")
            .execute(&mut conn)
            .await
            .unwrap();
        let _: i64 = users::table.count().get_result(&mut conn).await.unwrap();
        diesel::update(users::table.filter(users::email.eq("user1@acme.test")))
            .set(users::timezone.eq("Asia/Tokyo"))
            .execute(&mut conn)
            .await
            .unwrap();
        diesel::sql_query("COMMIT")
            .execute(&mut conn)
            .await
            .unwrap();
        done_tx.send(()).unwrap();
    });

    let counter = attempts.clone();
    let updated = database
        .transaction(
            Isolation::Serializable,
            RetryPolicy {
                max_attempts: 5,
                ..RetryPolicy::default()
            },
            move |conn| {
                let attempt = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let go_tx = go_tx.clone();
                let done_rx = done_rx.clone();
                Box::pin(async move {
                    let _: i64 = users::table
                        .filter(users::workspace_id.eq(workspace))
                        .count()
                        .get_result(conn)
                        .await?;
                    if attempt == 1 {
                        // Let the rival read and commit between our read and our write.
                        if let Some(tx) = go_tx.lock().unwrap().take() {
                            tx.send(()).unwrap();
                        }
                        if let Some(rx) = done_rx.lock().await.take() {
                            rx.await.unwrap();
                        }
                    }
                    diesel::update(users::table.filter(users::email.eq("user0@acme.test")))
                        .set(users::timezone.eq("Europe/Paris"))
                        .execute(conn)
                        .await
                })
            },
        )
        .await
        .unwrap();
    rival.await.unwrap();
    assert_eq!(updated, 1);
    assert_eq!(
        AtomicUsize::load(&attempts, Ordering::SeqCst),
        2,
        "the serialization failure was retried once"
    );
    let mut conn = database.get().await.unwrap();
    let zones: Vec<String> = users::table
        .select(users::timezone)
        .order(users::id)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(zones, ["Europe/Paris", "Asia/Tokyo"]);
    drop(conn);
    drop(database);
    db.drop_now().await;
}

#[tokio::test]
async fn take_skip_and_keyset_pages_walk_all_users_once() {
    let (db, database, workspace) = seeded("pages", 45).await;
    let mut conn = database.read().await.unwrap();
    let page = Page::new(20, 40).unwrap();
    let last: Vec<String> = users::table
        .filter(users::workspace_id.eq(workspace))
        .order(users::id)
        .select(users::email)
        .limit(page.limit())
        .offset(page.offset())
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(last.len(), 5);

    let mut seen = Vec::new();
    let mut next = Some(Keyset::first(20).unwrap());
    while let Some(k) = next {
        let rows: Vec<(i64, String)> = users::table
            .filter(users::workspace_id.eq(workspace))
            .filter(users::id.gt(k.after_key()))
            .order(users::id)
            .select((users::id, users::email))
            .limit(k.limit())
            .load(&mut conn)
            .await
            .unwrap();
        let (rows, following) = k.finish(rows, |r| r.0);
        seen.extend(rows.into_iter().map(|r| r.1));
        next = following;
    }
    assert_eq!(seen.len(), 45);
    seen.dedup();
    assert_eq!(seen.len(), 45);
    drop(conn);
    drop(database);
    db.drop_now().await;
}

#[tokio::test]
async fn reads_go_to_healthy_replicas_and_fall_back_to_the_primary() {
    let primary = TestDb::create("primary").await;
    let replica = TestDb::create("replica").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = DbConfig::new(&primary.url).unwrap();
    config.replica_urls = vec![
        infra_core::Secret::new(format!("postgres://postgres@127.0.0.1:{closed}/replica")),
        infra_core::Secret::new(replica.url.clone()),
    ];
    let database = Database::new(config).unwrap();
    assert_eq!(database.replica_count(), 2);
    let current =
        |name: &'static str| diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(name));
    for _ in 0..4 {
        let mut conn = database.read().await.unwrap();
        let db_name: String = current("current_database()")
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            db_name, replica.name,
            "reads skip the dead replica and use the live one"
        );
    }
    let mut conn = database.write().await.unwrap();
    let db_name: String = current("current_database()")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(db_name, primary.name, "writes always go to the primary");
    drop(conn);

    // With every replica down, reads fall back to the primary.
    let mut config = DbConfig::new(&primary.url).unwrap();
    config.replica_urls = vec![infra_core::Secret::new(format!(
        "postgres://postgres@127.0.0.1:{closed}/replica"
    ))];
    let only_dead = Database::new(config).unwrap();
    let mut conn = only_dead.read().await.unwrap();
    let db_name: String = current("current_database()")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(db_name, primary.name);
    drop(conn);
    drop((database, only_dead));
    primary.drop_now().await;
    replica.drop_now().await;
}

/// A rival that deadlocks with the transaction under test once per round: the body locks
/// `user0` then `user1`, the rival `user1` then `user0`. The body starts waiting first and its
/// deadlock check fires after 1 s, the rival's after 30 s, so PostgreSQL aborts the body
/// (SQLSTATE 40P01); the rival then gets its locks and commits.
struct DeadlockRival {
    /// The body says "I hold user0" (its attempt number).
    body_has_first: tokio::sync::mpsc::UnboundedSender<usize>,
    /// The rival says "I hold user1".
    rival_has_second: Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<()>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DeadlockRival {
    fn spawn(database: &Database, rounds: usize) -> DeadlockRival {
        let (body_tx, mut body_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let (rival_tx, rival_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let database = database.clone();
        let task = tokio::spawn(async move {
            for _ in 0..rounds {
                body_rx.recv().await.expect("the body starts a round");
                let mut conn = database.get().await.unwrap();
                let mut watcher = database.get().await.unwrap();
                diesel::sql_query("BEGIN").execute(&mut conn).await.unwrap();
                // The rival's deadlock check waits far longer than the body's (1 s), so on a
                // loaded machine too the body is the one PostgreSQL aborts. Superuser-only
                // setting; the tests connect as `postgres`.
                diesel::sql_query("SET LOCAL deadlock_timeout = '30s'")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                lock_user(&mut conn, "user1@acme.test").await.unwrap();
                rival_tx.send(()).unwrap();
                // Wait until the body is blocked on user1, so its deadlock check runs first.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                while lock_waiters(&mut watcher).await < 1 {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the body never waited for user1"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                // Blocks on user0 until PostgreSQL aborts the body; then commits.
                lock_user(&mut conn, "user0@acme.test").await.unwrap();
                diesel::sql_query("COMMIT")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        });
        DeadlockRival {
            body_has_first: body_tx,
            rival_has_second: Arc::new(tokio::sync::Mutex::new(rival_rx)),
            task,
        }
    }
}

async fn lock_user(conn: &mut infra_db::DbConnection, email: &str) -> diesel::QueryResult<usize> {
    diesel::update(users::table.filter(users::email.eq(email.to_owned())))
        .set(users::timezone.eq("Europe/Berlin"))
        .execute(conn)
        .await
}

/// Backends of this test's database blocked on a lock.
async fn lock_waiters(conn: &mut infra_db::DbConnection) -> i64 {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    ))
    .get_result(conn)
    .await
    .unwrap()
}

/// Runs the body of the deadlock tests: user0, then (while the rival holds it) user1.
async fn run_deadlocking(
    database: &Database,
    rival: &DeadlockRival,
    rounds: usize,
    policy: RetryPolicy,
    attempts: Arc<AtomicUsize>,
) -> infra_core::Result<usize> {
    let body_has_first = rival.body_has_first.clone();
    let rival_has_second = rival.rival_has_second.clone();
    database
        .transaction(Isolation::ReadCommitted, policy, move |conn| {
            let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
            let body_has_first = body_has_first.clone();
            let rival_has_second = rival_has_second.clone();
            Box::pin(async move {
                let mut n = lock_user(conn, "user0@acme.test").await?;
                if attempt <= rounds {
                    body_has_first.send(attempt).unwrap();
                    rival_has_second.lock().await.recv().await.unwrap();
                }
                n += lock_user(conn, "user1@acme.test").await?;
                Ok(n)
            })
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlock_is_retried_until_it_commits() {
    let (db, database, _) = seeded("deadlock", 2).await;
    let rival = DeadlockRival::spawn(&database, 1);
    let attempts = Arc::new(AtomicUsize::new(0));
    let updated = run_deadlocking(
        &database,
        &rival,
        1,
        RetryPolicy::default(),
        attempts.clone(),
    )
    .await
    .unwrap();
    rival.task.await.unwrap();
    assert_eq!(updated, 2);
    assert_eq!(
        AtomicUsize::load(&attempts, Ordering::SeqCst),
        2,
        "the deadlock aborted the first attempt and the second committed"
    );
    drop(database);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_deadlock_retries_return_the_sqlstate_and_the_attempts() {
    let (db, database, _) = seeded("deadlock_exhausted", 2).await;
    let rival = DeadlockRival::spawn(&database, 2);
    let attempts = Arc::new(AtomicUsize::new(0));
    let policy = RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::default()
    };
    let err = run_deadlocking(&database, &rival, 2, policy, attempts.clone())
        .await
        .unwrap_err();
    rival.task.await.unwrap();
    assert_eq!(AtomicUsize::load(&attempts, Ordering::SeqCst), 2);
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.context("sqlstate"), Some("40P01"));
    assert_eq!(err.context("attempts"), Some("2"));
    assert!(err.is_retryable(), "a deadlock may succeed later: {err}");
    assert!(err.to_string().contains("after 2 attempts"), "{err}");
    drop(database);
    db.drop_now().await;
}

//! `Database` against the real PostgreSQL: health, killed connections, unreachable servers,
//! error mapping.

mod support;

use std::time::{Duration, Instant};

use diesel::sql_types::Integer;
use diesel_async::RunQueryDsl;
use infra_core::{ErrorKind, HealthCheck, HealthStatus};
use infra_db::{Database, DbConfig, map_diesel_error};
use support::TestDb;

#[tokio::test]
async fn health_reports_version_and_pool_state() {
    let db = TestDb::create("health").await;
    let database = db.database();
    database.probe().await.unwrap();
    let report = database.check().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{}", report.detail);
    assert!(
        report.detail.starts_with("PostgreSQL "),
        "{}",
        report.detail
    );
    for part in ["pool size", "idle", "in use", "waiting"] {
        assert!(report.detail.contains(part), "{}", report.detail);
    }
    drop(database);
    db.drop_now().await;
}

#[tokio::test]
async fn connections_killed_server_side_are_replaced() {
    let db = TestDb::create("killed").await;
    let database = db.database();
    // Warm the pool with several connections.
    let conns: Vec<_> = futures::future::join_all((0..3).map(|_| database.get())).await;
    drop(conns);
    let mut admin = database.get().await.unwrap();
    let killed: Vec<bool> = diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    ))
    .load::<Killed>(&mut admin)
    .await
    .unwrap()
    .into_iter()
    .map(|k| k.killed)
    .collect();
    assert!(
        !killed.is_empty(),
        "some pooled connections were terminated"
    );
    drop(admin);
    for _ in 0..5 {
        database
            .probe()
            .await
            .expect("the pool replaces dead connections");
    }
    drop(database);
    db.drop_now().await;
}

/// Terminates every backend connected to `db` from outside its pool and waits (up to 5 s)
/// until they are gone; returns how many there were.
async fn kill_all_and_wait(db: &TestDb) -> usize {
    use diesel_async::AsyncConnection;
    let mut admin = diesel_async::AsyncPgConnection::establish(&support::url_for("postgres"))
        .await
        .unwrap();
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid, 5000) AS killed FROM pg_stat_activity WHERE datname = '{}'",
        db.name
    ))
    .load::<Killed>(&mut admin)
    .await
    .unwrap()
    .into_iter()
    .filter(|k| k.killed)
    .count()
}

async fn select_one(conn: &mut infra_db::PooledConnection) -> i32 {
    diesel::select(diesel::dsl::sql::<Integer>("1"))
        .get_result(conn)
        .await
        .map_err(map_diesel_error)
        .expect("a handed-out connection answers")
}

/// Within the verify window no `SELECT 1` runs on checkout: what keeps a connection the server
/// closed from being handed out is the local check (tokio-postgres saw the socket close).
/// The window is an hour here, so only that check can save this test.
#[tokio::test]
async fn closed_connections_are_dropped_on_checkout_without_a_round_trip() {
    let db = TestDb::create("closed").await;
    let mut config = DbConfig::new(&db.url).unwrap();
    config.verify_after_idle = Duration::from_secs(3600);
    let database = Database::from_config(config).unwrap();
    let warm: Vec<_> = futures::future::join_all((0..4).map(|_| database.get())).await;
    assert!(warm.iter().all(|c| c.is_ok()));
    drop(warm);
    assert_eq!(kill_all_and_wait(&db).await, 4);
    // The server's FATAL and the end of stream are on the sockets now; give the client's
    // connection tasks a moment to read them (a deadline, not a measurement).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut conns: Vec<_> = futures::future::join_all((0..4).map(|_| database.get()))
        .await
        .into_iter()
        .map(|c| c.expect("a fresh connection replaces the closed one"))
        .collect();
    for conn in &mut conns {
        assert_eq!(select_one(conn).await, 1);
    }
    drop(conns);
    drop(database);
    db.drop_now().await;
}

/// A zero window verifies every checkout with `SELECT 1`, as before the window existed: a
/// connection killed an instant before its checkout is caught even when the client has not
/// read the server's goodbye yet.
#[tokio::test]
async fn zero_window_verifies_every_checkout() {
    let db = TestDb::create("verify").await;
    let mut config = DbConfig::new(&db.url).unwrap();
    config.verify_after_idle = Duration::ZERO;
    let database = Database::from_config(config).unwrap();
    let warm: Vec<_> = futures::future::join_all((0..3).map(|_| database.get())).await;
    drop(warm);
    let mut admin = database.get().await.unwrap();
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name
    ))
    .load::<Killed>(&mut admin)
    .await
    .unwrap();
    drop(admin);
    let mut conns: Vec<_> = futures::future::join_all((0..3).map(|_| database.get()))
        .await
        .into_iter()
        .map(|c| c.expect("verified or fresh"))
        .collect();
    for conn in &mut conns {
        assert_eq!(select_one(conn).await, 1);
    }
    drop(conns);
    drop(database);
    db.drop_now().await;
}

#[derive(diesel::QueryableByName)]
struct Killed {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    killed: bool,
}

#[tokio::test]
async fn closed_port_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let database = Database::from_config(
        DbConfig::new(&format!("postgres://postgres:pw@127.0.0.1:{port}/x")).unwrap(),
    )
    .unwrap();
    let err = database.probe().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert!(err.is_retryable());
    assert!(!format!("{err:?}").contains(":pw@"));
    assert_eq!(database.check().await.status, HealthStatus::Unhealthy);
}

#[tokio::test]
async fn silent_server_is_unhealthy_within_the_deadline() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut config = DbConfig::new(&format!("postgres://postgres@127.0.0.1:{port}/x")).unwrap();
    config.connect_timeout = Duration::from_secs(30);
    config.acquire_timeout = Duration::from_secs(30);
    let database = Database::from_config(config).unwrap();
    let started = Instant::now();
    let report = database.check().await;
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert_eq!(report.detail, "timed out after 5s");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn unique_violation_is_a_conflict_with_its_sqlstate() {
    let db = TestDb::create("unique").await;
    let database = db.database();
    let mut conn = database.get().await.unwrap();
    diesel::sql_query("CREATE TABLE t (email text UNIQUE)")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("INSERT INTO t VALUES ('a@b.c')")
        .execute(&mut conn)
        .await
        .unwrap();
    let err = map_diesel_error(
        diesel::sql_query("INSERT INTO t VALUES ('a@b.c')")
            .execute(&mut conn)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.context("sqlstate"), Some("23505"));
    assert!(!err.is_retryable());
    let err = map_diesel_error(
        diesel::select(diesel::dsl::sql::<Integer>("1 WHERE false"))
            .get_result::<i32>(&mut conn)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.kind(), ErrorKind::NotFound);
    drop(conn);
    drop(database);
    db.drop_now().await;
}

#[tokio::test]
async fn statement_timeout_applies_to_every_connection() {
    let db = TestDb::create("stmt").await;
    let mut config = DbConfig::new(&db.url).unwrap();
    config.statement_timeout = Duration::from_millis(200);
    let database = Database::from_config(config).unwrap();
    let mut conn = database.get().await.unwrap();
    let err = diesel::sql_query("SELECT pg_sleep(2)")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("statement timeout"), "{err}");
    drop(conn);
    drop(database);
    db.drop_now().await;
}

#[derive(diesel::QueryableByName)]
struct Ssl {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ssl: bool,
}

async fn uses_tls(database: &Database) -> bool {
    let mut conn = database.get().await.unwrap();
    diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result::<Ssl>(&mut conn)
        .await
        .unwrap()
        .ssl
}

#[tokio::test]
async fn sslmode_selects_rustls_and_verify_full_checks_the_certificate() {
    // The local server offers TLS with Debian's self-signed "snakeoil" certificate.
    let with_mode = |mode: &str| {
        let mut url = support::base_url();
        url.set_query(Some(&format!("sslmode={mode}")));
        Database::from_config(DbConfig::new(url.as_str()).unwrap()).unwrap()
    };
    let required = with_mode("require");
    assert!(uses_tls(&required).await, "sslmode=require encrypts");
    let disabled = with_mode("disable");
    assert!(!uses_tls(&disabled).await, "sslmode=disable does not");
    // verify-full must refuse a certificate no trusted root signed.
    let err = with_mode("verify-full").probe().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    let err = DbConfig::new("postgres://h/db?sslmode=sometimes").unwrap_err();
    assert_eq!(err.variable(), Some("DATABASE_URL"));
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let db = TestDb::create("idle").await;
    let mut config = DbConfig::new(&db.url).unwrap();
    config.idle_timeout = Duration::from_millis(300);
    let database = Database::from_config(config).unwrap();
    let held: Vec<_> = futures::future::join_all((0..3).map(|_| database.get())).await;
    assert!(held.iter().all(|c| c.is_ok()));
    drop(held);
    assert_eq!(database.pool().status().size, 3);
    let deadline = Instant::now() + Duration::from_secs(5);
    while database.pool().status().size > 0 {
        assert!(
            Instant::now() < deadline,
            "idle connections were not closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    database.probe().await.unwrap();
    drop(database);
    db.drop_now().await;
}

/// A transaction whose future is dropped mid-way (a timeout, a client that went away) must not
/// leave its connection open in the pool: the next user's autocommit write would run inside
/// the abandoned transaction and never commit.
#[tokio::test]
async fn a_dropped_transaction_never_reaches_the_next_user() {
    use infra_db::{DEFAULT_TRANSACTION_RETRY, Isolation};

    let db = TestDb::create("dropped_tx").await;
    let mut config = DbConfig::new(&db.url).unwrap();
    config.pool_size = 1;
    let database = Database::from_config(config).unwrap();
    let mut conn = database.get().await.unwrap();
    diesel::sql_query("CREATE TABLE marks (n int)")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);

    let abandoned =
        database.transaction(Isolation::ReadCommitted, DEFAULT_TRANSACTION_RETRY, |c| {
            Box::pin(async move {
                diesel::sql_query("INSERT INTO marks VALUES (1)")
                    .execute(c)
                    .await?;
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            })
        });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), abandoned)
            .await
            .is_err(),
        "the body sleeps: the timeout drops the transaction mid-way"
    );

    // The pool's only connection: the abandoned one must have been replaced, not reused.
    let mut conn = database.get().await.unwrap();
    diesel::sql_query("INSERT INTO marks VALUES (2)")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let mut other = database.dedicated_connection().await.unwrap();
    let committed: Vec<i32> =
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Array<Integer>>(
            "coalesce(array_agg(n ORDER BY n), '{}') FROM marks",
        ))
        .get_result(&mut other)
        .await
        .unwrap();
    assert_eq!(
        committed,
        [2],
        "only the second, autocommitted insert is there"
    );
    drop((database, other));
    db.drop_now().await;
}

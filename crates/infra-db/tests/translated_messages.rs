//! Deadlocks (SQLSTATE 40P01) and serialization failures (40001) are retried by their code,
//! whatever language the server speaks: every session here runs with
//! `lc_messages = de_DE.UTF-8`, so PostgreSQL reports the deadlock as
//! `Verklemmung (Deadlock) entdeckt`, not `deadlock detected`.
//!
//! The setting is a session parameter (`options=-c lc_messages=…` in the URL; a superuser
//! may set it), so nothing of the shared server's configuration changes. The server's machine
//! needs the `de_DE.UTF-8` locale (`.ci/run` generates it with `localedef`) and PostgreSQL's
//! German message catalogue (Debian's server package ships it). Without them the tests fail,
//! naming the remedy; they never skip.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use diesel::sql_types::{BigInt, Integer};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use infra_core::ErrorKind;
use infra_db::{DEFAULT_TRANSACTION_RETRY, Database, DbConfig, Isolation, RetryPolicy};
use support::TestDb;

/// The URL of `db` with German server messages. Written out by hand: tokio-postgres
/// decodes `%20` but not the `+` that form encoding would write for the space.
fn german_url(db: &TestDb) -> String {
    let separator = if db.url.contains('?') { '&' } else { '?' };
    format!(
        "{}{separator}options=-c%20lc_messages%3Dde_DE.UTF-8",
        db.url
    )
}

/// A database of its own with two accounts, 1 and 2, at 100, reached through a pool whose
/// sessions speak German; fails, naming the remedy, when the server cannot.
async fn german_accounts(test: &str) -> (TestDb, Database) {
    let db = TestDb::create(test).await;
    let database = Database::from_config(DbConfig::new(&german_url(&db)).unwrap()).unwrap();
    let mut conn = database.get().await.unwrap_or_else(|err| {
        panic!(
            "a session with lc_messages = de_DE.UTF-8 was refused ({err}); the server's machine \
             needs the locale: `localedef --no-archive -i de_DE -f UTF-8 de_DE.UTF-8` \
             (.ci/run does it)"
        )
    });
    let division = diesel::select(diesel::dsl::sql::<Integer>("1 / 0"))
        .get_result::<i32>(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(
        division.to_string(),
        "Division durch Null",
        "the server does not translate its messages (is PostgreSQL's German catalogue installed?)"
    );
    // Any server error keeps its code, not only the ones diesel has a kind for.
    assert_eq!(infra_db::sqlstate(&division).as_deref(), Some("22012"));
    let mapped = infra_db::map_diesel_error(division);
    assert_eq!(mapped.context("sqlstate"), Some("22012"));
    assert_eq!(mapped.kind(), ErrorKind::Backend);
    conn.batch_execute(
        "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL);
         INSERT INTO accounts VALUES (1, 100), (2, 100)",
    )
    .await
    .unwrap();
    drop(conn);
    (db, database)
}

async fn add(
    conn: &mut infra_db::DbConnection,
    account: i32,
    amount: i64,
) -> diesel::QueryResult<usize> {
    diesel::sql_query("UPDATE accounts SET balance = balance + $1 WHERE id = $2")
        .bind::<BigInt, _>(amount)
        .bind::<Integer, _>(account)
        .execute(conn)
        .await
}

async fn balances(database: &Database) -> (i64, i64) {
    let mut conn = database.get().await.unwrap();
    let rows: Vec<i64> = diesel::select(diesel::dsl::sql::<BigInt>(
        "balance FROM accounts ORDER BY id",
    ))
    .load(&mut conn)
    .await
    .unwrap();
    (rows[0], rows[1])
}

/// What the attempts of two racing transactions saw: how many ran, and the errors their
/// statements got (as PostgreSQL worded them).
#[derive(Default)]
struct Attempts {
    count: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl Attempts {
    fn record<T>(&self, outcome: diesel::QueryResult<T>) -> diesel::QueryResult<T> {
        if let Err(err) = &outcome {
            self.errors.lock().unwrap().push(err.to_string());
        }
        outcome
    }
}

/// Moves `amount` onto `first` then `second` in one transaction. On the first attempt it
/// waits at `barrier` while holding `first`'s row, so that two of these, run with opposite
/// orders, lock each other out: PostgreSQL aborts one of them as a deadlock.
async fn crosswise(
    database: &Database,
    policy: RetryPolicy,
    (first, second): (i32, i32),
    amount: i64,
    barrier: Arc<tokio::sync::Barrier>,
    attempts: Arc<Attempts>,
) -> infra_core::Result<()> {
    database
        .transaction(Isolation::ReadCommitted, policy, move |conn| {
            let attempt = attempts.count.fetch_add(1, Ordering::SeqCst);
            let (barrier, attempts) = (barrier.clone(), attempts.clone());
            Box::pin(async move {
                attempts.record(add(conn, first, amount).await)?;
                // Only the two first attempts meet; a retry goes straight on.
                if attempt < 2 {
                    barrier.wait().await;
                }
                attempts.record(add(conn, second, amount).await)?;
                Ok(())
            })
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deadlocking_transactions_are_retried_by_sqlstate_and_both_commit() {
    let (db, database) = german_accounts("deadlock_de").await;
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let attempts = Arc::new(Attempts::default());
    let policy = DEFAULT_TRANSACTION_RETRY;
    let one_then_two = crosswise(
        &database,
        policy,
        (1, 2),
        1,
        barrier.clone(),
        attempts.clone(),
    );
    let two_then_one = crosswise(&database, policy, (2, 1), 10, barrier, attempts.clone());
    let (a, b) = tokio::join!(one_then_two, two_then_one);
    let errors = attempts.errors.lock().unwrap().clone();
    a.unwrap_or_else(|err| panic!("1→2 did not commit: {err} {err:?}; seen: {errors:?}"));
    b.unwrap_or_else(|err| panic!("2→1 did not commit: {err} {err:?}; seen: {errors:?}"));
    assert_eq!(
        errors,
        ["Verklemmung (Deadlock) entdeckt"],
        "exactly one attempt was aborted, in German"
    );
    assert_eq!(
        AtomicUsize::load(&attempts.count, Ordering::SeqCst),
        3,
        "the aborted transaction ran once more"
    );
    assert_eq!(
        balances(&database).await,
        (111, 111),
        "both transactions committed, each once"
    );
    drop(database);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_left_unretried_is_a_retryable_conflict_with_its_sqlstate() {
    let (db, database) = german_accounts("deadlock_once_de").await;
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let attempts = Arc::new(Attempts::default());
    let once = RetryPolicy {
        max_attempts: 1,
        ..DEFAULT_TRANSACTION_RETRY
    };
    let (a, b) = tokio::join!(
        crosswise(
            &database,
            once,
            (1, 2),
            1,
            barrier.clone(),
            attempts.clone()
        ),
        crosswise(&database, once, (2, 1), 10, barrier, attempts.clone()),
    );
    let (err, committed) = match (a, b) {
        (Err(err), Ok(())) => (err, (110, 110)),
        (Ok(()), Err(err)) => (err, (101, 101)),
        other => panic!("exactly one should have been aborted: {other:?}"),
    };
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err:?}");
    assert_eq!(err.context("sqlstate"), Some("40P01"), "{err:?}");
    assert_eq!(err.context("attempts"), Some("1"));
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.message().contains("Verklemmung"), "{err}");
    assert_eq!(balances(&database).await, committed);
    drop(database);
    db.drop_now().await;
}

/// Reads both balances, then (first attempt only: after the other transaction has read them
/// too) moves `amount` onto `account` if their sum is still 200 — two of these under
/// SERIALIZABLE form a write skew, and PostgreSQL fails one with SQLSTATE 40001.
async fn skewed(
    database: &Database,
    account: i32,
    amount: i64,
    barrier: Arc<tokio::sync::Barrier>,
    attempts: Arc<Attempts>,
) -> infra_core::Result<()> {
    database
        .transaction(
            Isolation::Serializable,
            DEFAULT_TRANSACTION_RETRY,
            move |conn| {
                let attempt = attempts.count.fetch_add(1, Ordering::SeqCst);
                let (barrier, attempts) = (barrier.clone(), attempts.clone());
                Box::pin(async move {
                    let total: i64 = attempts.record(
                        diesel::select(diesel::dsl::sql::<BigInt>(
                            "sum(balance)::bigint FROM accounts",
                        ))
                        .get_result(conn)
                        .await,
                    )?;
                    if attempt < 2 {
                        barrier.wait().await;
                    }
                    if total >= 200 {
                        attempts.record(add(conn, account, amount).await)?;
                    }
                    Ok(())
                })
            },
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serialization_failure_is_retried_by_sqlstate_and_both_commit() {
    let (db, database) = german_accounts("serialization_de").await;
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let attempts = Arc::new(Attempts::default());
    let (a, b) = tokio::join!(
        skewed(&database, 1, 1, barrier.clone(), attempts.clone()),
        skewed(&database, 2, 10, barrier, attempts.clone()),
    );
    let errors = attempts.errors.lock().unwrap().clone();
    a.unwrap_or_else(|err| panic!("account 1 did not commit: {err} {err:?}; seen: {errors:?}"));
    b.unwrap_or_else(|err| panic!("account 2 did not commit: {err} {err:?}; seen: {errors:?}"));
    assert_eq!(
        AtomicUsize::load(&attempts.count, Ordering::SeqCst),
        3,
        "one transaction failed and ran once more; seen: {errors:?}"
    );
    assert_eq!(balances(&database).await, (101, 110));
    drop(database);
    db.drop_now().await;
}

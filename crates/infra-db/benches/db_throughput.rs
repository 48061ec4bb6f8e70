//! `Database` against raw diesel-async with an identical pool, side by side in one run.
//!
//! `cargo bench -p infra-db` (or `cargo xtask bench db`). Needs PostgreSQL on `DATABASE_URL`
//! (default 127.0.0.1:5432); creates and drops its own database.

use std::time::Instant;

use diesel::prelude::*;
use diesel::sql_types::Integer;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use infra_db::schema::{users, workspaces};
use infra_db::{Database, DbConfig, run_pending_migrations};

const TASKS: usize = 32;
const OPS_PER_TASK: usize = 300;
const ROUNDS: usize = 7;

fn url_for(database: &str) -> String {
    let raw = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut url = url::Url::parse(&raw).unwrap();
    url.set_path(&format!("/{database}"));
    url.to_string()
}

async fn throughput<F, Fut>(op: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let op = op.clone();
            tokio::spawn(async move {
                for _ in 0..OPS_PER_TASK {
                    op().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (TASKS * OPS_PER_TASK) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn row(name: &str, ours: f64, raw: f64) {
    println!(
        "{name:<34} ours {ours:>9.0}/s   raw diesel-async {raw:>9.0}/s   ratio {:.3}",
        ours / raw
    );
}

async fn compare<A, AF, B, BF>(name: &str, ours: A, raw: B)
where
    A: Fn() -> AF + Clone + Send + 'static,
    AF: std::future::Future<Output = ()> + Send,
    B: Fn() -> BF + Clone + Send + 'static,
    BF: std::future::Future<Output = ()> + Send,
{
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        // Alternate, so drift in the machine's load hits both sides alike.
        a.push(throughput(ours.clone()).await);
        b.push(throughput(raw.clone()).await);
    }
    row(name, median(a), median(b));
}

/// 20 users of a workspace after an id, through the `(workspace_id, id)` index.
async fn lookup(conn: &mut AsyncPgConnection, workspace: i64) -> Vec<(i64, String)> {
    users::table
        .filter(users::workspace_id.eq(workspace))
        .filter(users::id.gt(5000))
        .order(users::id)
        .select((users::id, users::email))
        .limit(20)
        .load(conn)
        .await
        .unwrap()
}

async fn run() {
    let name = format!("infra_bench_{}", std::process::id());
    let mut admin = AsyncPgConnection::establish(&url_for("postgres"))
        .await
        .unwrap();
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = url_for(&name);

    let mut config = DbConfig::new(&url).unwrap();
    config.pool_size = TASKS;
    let db = Database::new(config).unwrap();
    let raw: Pool<AsyncPgConnection> =
        Pool::builder(AsyncDieselConnectionManager::<AsyncPgConnection>::new(&url))
            .max_size(TASKS)
            .build()
            .unwrap();

    run_pending_migrations(&db).await.unwrap();
    let workspace: i64 = {
        let mut conn = db.get().await.unwrap();
        let w: i64 = diesel::insert_into(workspaces::table)
            .values(workspaces::name.eq("bench"))
            .returning(workspaces::id)
            .get_result(&mut conn)
            .await
            .unwrap();
        for chunk in 0..10 {
            let rows: Vec<_> = (0..1000)
                .map(|i| {
                    (
                        users::workspace_id.eq(w),
                        users::email.eq(format!("u{chunk}-{i}@bench.test")),
                    )
                })
                .collect();
            diesel::insert_into(users::table)
                .values(&rows)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        diesel::sql_query("ANALYZE users")
            .execute(&mut conn)
            .await
            .unwrap();
        w
    };

    println!("infra-db benchmarks ({TASKS} tasks, median of {ROUNDS} rounds; ratio = ours / raw)");
    let (d, r) = (db.clone(), raw.clone());
    compare(
        "pooled SELECT 1",
        move || {
            let d = d.clone();
            async move {
                let mut conn = d.get().await.unwrap();
                let _: i32 = diesel::select(diesel::dsl::sql::<Integer>("1"))
                    .get_result(&mut conn)
                    .await
                    .unwrap();
            }
        },
        move || {
            let r = r.clone();
            async move {
                let mut conn = r.get().await.unwrap();
                let _: i32 = diesel::select(diesel::dsl::sql::<Integer>("1"))
                    .get_result(&mut conn)
                    .await
                    .unwrap();
            }
        },
    )
    .await;

    let (d, r) = (db.clone(), raw.clone());
    compare(
        "20-row indexed users lookup",
        move || {
            let d = d.clone();
            async move {
                let mut conn = d.read().await.unwrap();
                assert_eq!(lookup(&mut conn, workspace).await.len(), 20);
            }
        },
        move || {
            let r = r.clone();
            async move {
                let mut conn = r.get().await.unwrap();
                assert_eq!(lookup(&mut conn, workspace).await.len(), 20);
            }
        },
    )
    .await;

    drop((db, raw));
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

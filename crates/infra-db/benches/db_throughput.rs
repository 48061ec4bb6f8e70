//! `Database` against the strongest raw use of the same client, side by side in one run.
//!
//! The baseline is what a hand-written service would do to go fast: one dedicated
//! tokio-postgres connection per task, the statement prepared once. Ours is what users of
//! `infra-db` write: a connection from `Database::get()` (the pool, its checkout check) and a
//! typed diesel query, whose prepared statement diesel-async caches per connection. When
//! `pgbench` is installed its `-M prepared` rate for the same statement is printed as well:
//! the C client, i.e. what the server manages on this machine.
//!
//! `cargo bench -p infra-db` (or `cargo xtask bench db`). Needs PostgreSQL on `DATABASE_URL`
//! (default 127.0.0.1:5432); creates and drops its own database. `DB_BENCH_ONLY=ours` (or
//! `baseline`) runs one side alone, without pgbench: for profiling each side with `perf`.

use std::process::Command;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::Integer;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
#[path = "../tests/support/schema.rs"]
mod schema;

use infra_core::testkit::bench_report::{Goal, Row, Side, process_cpu};
use infra_db::diesel_migrations::{EmbeddedMigrations, embed_migrations};
use infra_db::{Database, DbConfig, run_pending_migrations};
use schema::{users, workspaces};

/// The tests' fixture schema (a users table to look rows up in).
const FIXTURE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/fixtures/migrations");

const TASKS: usize = 32;
const OPS_PER_TASK: usize = 400;
/// Each side runs this many times, alternating, so drift in the machine's load (other builds
/// share it) hits both sides alike.
const ROUNDS: usize = 7;

fn url_for(database: &str) -> String {
    let raw = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut url = url::Url::parse(&raw).unwrap();
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// What one side did in one round: its rate, every operation's latency, and the CPU time this
/// process (the client) spent per operation.
struct Round {
    rate: f64,
    latencies: Vec<Duration>,
    cpu_per_op: Duration,
}

/// Runs `OPS_PER_TASK` operations on each of `TASKS` tasks; task `t` gets `state[t]`.
async fn round<S, F, Fut>(state: &[S], op: F) -> Round
where
    S: Clone + Send + 'static,
    F: Fn(S) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let cpu = process_cpu();
    let tasks: Vec<_> = state
        .iter()
        .cloned()
        .map(|s| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(OPS_PER_TASK);
                for _ in 0..OPS_PER_TASK {
                    let t = Instant::now();
                    op(s.clone()).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(TASKS * OPS_PER_TASK);
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let ops = latencies.len() as u32;
    Round {
        rate: latencies.len() as f64 / started.elapsed().as_secs_f64(),
        cpu_per_op: (process_cpu() - cpu) / ops,
        latencies,
    }
}

/// Median, lowest and highest rate of the rounds; p50 and p99 latency over all of them.
struct Summary {
    median: f64,
    low: f64,
    high: f64,
    p50: Duration,
    p99: Duration,
    cpu_per_op: Duration,
}

fn summarise(rounds: Vec<Round>) -> Summary {
    let mut rates: Vec<f64> = rounds.iter().map(|r| r.rate).collect();
    let cpu_per_op = rounds.iter().map(|r| r.cpu_per_op).sum::<Duration>() / rounds.len() as u32;
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut all: Vec<Duration> = rounds.into_iter().flat_map(|r| r.latencies).collect();
    all.sort_unstable();
    let at = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
    Summary {
        median: rates[rates.len() / 2],
        low: rates[0],
        high: rates[rates.len() - 1],
        p50: at(0.50),
        p99: at(0.99),
        cpu_per_op,
    }
}

fn line(label: &str, s: &Summary) {
    println!(
        "  {label:<52} {:>6.0}/s (rounds {:.0}–{:.0})  p50 {:>6.1} µs  p99 {:>7.1} µs  client CPU {:.1} µs/query",
        s.median,
        s.low,
        s.high,
        s.p50.as_secs_f64() * 1e6,
        s.p99.as_secs_f64() * 1e6,
        s.cpu_per_op.as_secs_f64() * 1e6,
    )
}

/// Alternates the sides `ROUNDS` times and prints the baseline first, then ours and the ratio;
/// returns the row for `cargo xtask bench`'s table (none when one side ran alone).
#[allow(clippy::too_many_arguments)]
async fn compare<S, F, Fut, R, G, Gut>(
    name: &str,
    baseline_label: &str,
    baseline_state: &[R],
    baseline: G,
    ours_label: &str,
    ours_state: &[S],
    ours: F,
) -> Option<Row>
where
    S: Clone + Send + 'static,
    F: Fn(S) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
    R: Clone + Send + 'static,
    G: Fn(R) -> Gut + Clone + Send + 'static,
    Gut: std::future::Future<Output = ()> + Send,
{
    // `DB_BENCH_ONLY=baseline` (or `ours`) runs one side alone: for profiling each side.
    let only = std::env::var("DB_BENCH_ONLY")
        .ok()
        .filter(|side| side == "ours" || side == "baseline")
        .unwrap_or_default();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        if only != "ours" {
            b.push(round(baseline_state, baseline.clone()).await);
        }
        if only != "baseline" {
            a.push(round(ours_state, ours.clone()).await);
        }
    }
    println!("{name}");
    if !only.is_empty() {
        let side = summarise(if a.is_empty() { b } else { a });
        line(&format!("{only} only (DB_BENCH_ONLY)"), &side);
        return None;
    }
    let (ours, raw) = (summarise(a), summarise(b));
    line(baseline_label, &raw);
    line(ours_label, &ours);
    let ratio = ours.median / raw.median;
    println!("  ratio ours / baseline: {ratio:.3}\n");
    let side = |label: &str, s: &Summary| {
        Side::new(label, s.median)
            .with_latency(s.p50, s.p99)
            .with_cpu_per_op(s.cpu_per_op)
    };
    Some(
        Row::new("infra-db", format!("{name}, {TASKS} tasks"), "queries/s")
            .ours(side(ours_label, &ours))
            .baseline(side(baseline_label, &raw)),
    )
}

/// `pgbench -M prepared` running `sql` on `TASKS` clients for a few seconds: its rate and mean
/// latency, or `None` when pgbench is not installed (it ships in Debian's `postgresql-<v>`
/// package, not in `postgresql-client`).
fn pgbench(url: &str, sql: &str) -> Option<(f64, f64)> {
    let script = std::env::temp_dir().join(format!("infra-bench-{}.sql", std::process::id()));
    std::fs::write(&script, format!("{sql};\n")).ok()?;
    let clients = TASKS.to_string();
    let out = Command::new("pgbench")
        .args([
            "-n", "-M", "prepared", "-c", &clients, "-j", "2", "-T", "5", "-f",
        ])
        .arg(&script)
        .arg(url)
        .output();
    let _ = std::fs::remove_file(&script);
    let out = out.ok()?;
    if !out.status.success() {
        eprintln!(
            "pgbench failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let after = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
    };
    Some((after("tps = ")?, after("latency average = ")?))
}

/// The 20 users of a workspace after an id, through the `(workspace_id, id)` index.
async fn lookup(conn: &mut infra_db::DbConnection, workspace: i64) -> Vec<(i64, String)> {
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

const LOOKUP_SQL: &str =
    "SELECT id, email FROM users WHERE workspace_id = $1 AND id > 5000 ORDER BY id LIMIT 20";

/// One dedicated tokio-postgres connection per task, each with `sql` prepared once.
async fn dedicated(
    url: &str,
    sql: &str,
) -> Vec<std::sync::Arc<(tokio_postgres::Client, tokio_postgres::Statement)>> {
    let mut out = Vec::new();
    for _ in 0..TASKS {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let statement = client.prepare(sql).await.unwrap();
        out.push(std::sync::Arc::new((client, statement)));
    }
    out
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
    let db = Database::from_config(config.clone()).unwrap();

    run_pending_migrations(&db, FIXTURE_MIGRATIONS)
        .await
        .unwrap();
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

    println!(
        "infra-db benchmarks: {TASKS} tasks x {OPS_PER_TASK} queries, {ROUNDS} alternating rounds; \
         rate = median round (range), latency over all rounds"
    );
    let ours_state = vec![db.clone(); TASKS];

    let select_one = dedicated(&url, "SELECT 1").await;
    let mut select_one_row = compare(
        "pooled SELECT 1",
        "tokio-postgres, dedicated connection per task, prepared",
        &select_one,
        |c| async move {
            let row = c.0.query_one(&c.1, &[]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), 1);
        },
        "Database::get() + select(1.into_sql::<Integer>())",
        &ours_state,
        |d: Database| async move {
            let mut conn = d.get().await.unwrap();
            let one: i32 = diesel::select(1.into_sql::<Integer>())
                .get_result(&mut conn)
                .await
                .unwrap();
            assert_eq!(one, 1);
        },
    )
    .await;
    drop(select_one);
    let pgbench_rate = if std::env::var("DB_BENCH_ONLY").is_ok_and(|side| !side.is_empty()) {
        None
    } else {
        pgbench(&url, "SELECT 1")
    };
    match pgbench_rate {
        Some((tps, latency_ms)) => {
            println!(
                "  pgbench -M prepared -c {TASKS} -j 2 -T 5, SELECT 1 (the server's limit): {tps:.0}/s, mean latency {:.1} µs\n",
                latency_ms * 1000.0
            );
            select_one_row = select_one_row.map(|row| {
                row.other(Side::new(
                    format!("pgbench -M prepared -c {TASKS} -j 2 (C client, the server's limit)"),
                    tps,
                ))
            });
        }
        None => println!("  pgbench row skipped (pgbench not installed or failed)\n"),
    }
    // Issue 9's goal for the pooled path.
    let select_one_row = select_one_row.map(|row| row.goal(Goal::ratio_at_least(0.85)));

    let lookups = dedicated(&url, LOOKUP_SQL).await;
    let lookup_row = compare(
        "20-row indexed users lookup",
        "tokio-postgres, dedicated connection per task, prepared",
        &lookups,
        move |c| async move {
            let rows = c.0.query(&c.1, &[&workspace]).await.unwrap();
            assert_eq!(rows.len(), 20);
        },
        "Database::read() + typed diesel query",
        &ours_state,
        move |d: Database| async move {
            let mut conn = d.read().await.unwrap();
            assert_eq!(lookup(&mut conn, workspace).await.len(), 20);
        },
    )
    .await;
    drop(lookups);
    // The baseline above sends other SQL than diesel does: its id bound and LIMIT are literals,
    // so after five executions PostgreSQL runs it with a cached generic plan. diesel binds
    // them (`$2`, `$3`), and with an unknown LIMIT the generic plan looks dearer than a custom
    // one, so the server plans ours again on every execution. It also never reads the rows'
    // values, which ours decodes into `(i64, String)`. The same lookup against a baseline that
    // prepares diesel's own SQL, binds the same three values and decodes the same tuples
    // leaves only what our layers (pool, diesel, diesel-async) add on the client.
    let diesel_sql = {
        let query = users::table
            .filter(users::workspace_id.eq(workspace))
            .filter(users::id.gt(5000))
            .order(users::id)
            .select((users::id, users::email))
            .limit(20);
        let text = diesel::debug_query::<diesel::pg::Pg, _>(&query).to_string();
        text.split(" -- binds:").next().unwrap().to_owned()
    };
    let same_statement = dedicated(&url, &diesel_sql).await;
    let same_statement_row = compare(
        "20-row indexed users lookup, same statement on both sides (diesel's SQL, 3 binds, rows decoded)",
        "tokio-postgres, dedicated, prepared, diesel's SQL, decoded",
        &same_statement,
        move |c| async move {
            let rows: Vec<(i64, String)> =
                c.0.query(&c.1, &[&workspace, &5000_i64, &20_i64])
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
            assert_eq!(rows.len(), 20);
        },
        "Database::read() + typed diesel query",
        &ours_state,
        move |d: Database| async move {
            let mut conn = d.read().await.unwrap();
            assert_eq!(lookup(&mut conn, workspace).await.len(), 20);
        },
    )
    .await;
    drop(same_statement);

    // Last, as it installs the process-wide recorder: the same pooled query through a
    // `Database` built after the Prometheus recorder was installed (its handles record: the
    // acquire-wait histogram on every checkout) against the one built before it (no-op
    // handles), alternating rounds. Issue 21's goal: ratio ≥ 0.97.
    infra_core::metrics_exporter::install_prometheus_recorder().unwrap();
    let recorded = Database::from_config(config).unwrap();
    let recorded_state = vec![recorded.clone(); TASKS];
    let pooled_select = |d: Database| async move {
        let mut conn = d.get().await.unwrap();
        let one: i32 = diesel::select(1.into_sql::<Integer>())
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(one, 1);
    };
    let metrics_row = compare(
        "pooled SELECT 1 with the Prometheus recorder installed",
        "Database::get() + select(1), no recorder",
        &ours_state,
        pooled_select,
        "Database::get() + select(1), Prometheus recorder",
        &recorded_state,
        pooled_select,
    )
    .await
    .map(|row| row.goal(Goal::ratio_at_least(0.97)));
    drop((recorded, recorded_state));
    for row in [select_one_row, lookup_row, same_statement_row, metrics_row]
        .into_iter()
        .flatten()
    {
        row.emit().expect("bench report written");
    }

    drop((db, ours_state));
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

//! `PgQueue` end to end against a raw-SQL queue and graphile-worker, plus `MemoryQueue`.
//!
//! `cargo bench -p infra-jobs --features postgres` (or `cargo xtask bench jobs`). Needs
//! PostgreSQL on `DATABASE_URL` (default 127.0.0.1:5432); creates and drops its own
//! databases. graphile-worker runs from `benches/graphile` when `npm ci` has been run there
//! (xtask does it); set `INFRA_JOBS_BENCH_JOBS` to change the 50,000 jobs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use infra_core::testkit::bench_report::{Goal, Row, Side};
use infra_core::{Event, EventSender, JobBackend};
use infra_db::{Database, DbConfig};
use infra_jobs::{
    Function, JobContext, JobsRuntime, Match, MemoryQueue, Outcome, PgQueue, WorkerSettings,
};
use serde_json::json;
use tokio::sync::Mutex;

const CONCURRENCY: usize = 500;

fn jobs() -> u64 {
    std::env::var("INFRA_JOBS_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000)
}

fn url_for(database: &str) -> String {
    let raw = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut url = url::Url::parse(&raw).unwrap();
    url.set_path(&format!("/{database}"));
    url.to_string()
}

async fn fresh_database(name: &str) -> String {
    let mut admin = AsyncPgConnection::establish(&url_for("postgres"))
        .await
        .unwrap();
    // Two statements: CREATE DATABASE cannot share an implicit transaction.
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    url_for(name)
}

async fn drop_database(name: &str) {
    let mut admin = AsyncPgConnection::establish(&url_for("postgres"))
        .await
        .unwrap();
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await;
}

fn settings() -> WorkerSettings {
    WorkerSettings::default()
        .with_concurrency(CONCURRENCY)
        .with_claim_batch(CONCURRENCY)
        .with_poll_interval(Duration::from_millis(500))
}

/// Enqueues `n` no-op jobs with the runtime stopped, then starts it and times the drain.
async fn drain(queue: Arc<dyn JobBackend>, n: u64) -> (f64, f64) {
    let done = Arc::new(AtomicU64::new(0));
    let rt = JobsRuntime::with_settings(queue, Default::default(), settings());
    let d = done.clone();
    rt.register(
        Function::builder("noop")
            .on_event("bench/noop")
            .raw_handler(move |_, _| {
                d.fetch_add(1, Ordering::Relaxed);
                std::future::ready(Outcome::success())
            })
            .unwrap(),
    )
    .unwrap();
    rt.prepare().await.unwrap();
    let started = Instant::now();
    let mut sent = 0;
    while sent < n {
        let batch = (n - sent).min(5_000);
        let events = (0..batch)
            .map(|_| Event::new("bench/noop", json!({})))
            .collect();
        rt.send_many(events).await.unwrap();
        sent += batch;
    }
    let enqueue_rate = n as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    rt.start().await.unwrap();
    while AtomicU64::load(&done, Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Settled (deleted), not only run.
    loop {
        let stats = rt.stats().await.unwrap();
        let left: u64 = stats
            .functions
            .iter()
            .map(|f| f.queue.ready + f.queue.running + f.queue.scheduled)
            .sum();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    rt.shutdown().await;
    (enqueue_rate, rate)
}

/// Enqueues `n` jobs of a function with `steps` no-op run steps (0: a plain function) and
/// `keys` concurrency keys limited to one run each (0: no limit), with the runtime stopped,
/// then starts it and times the drain, as [`drain`] does.
async fn drain_with(queue: Arc<dyn JobBackend>, n: u64, steps: usize, keys: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let rt = JobsRuntime::with_settings(queue, Default::default(), settings());
    let d = done.clone();
    let mut function = Function::builder("shaped").on_event("bench/shaped");
    if keys > 0 {
        function = function.concurrency_per_key(1, "event.data.k");
    }
    rt.register(
        function
            .raw_handler(move |_, ctx: JobContext| {
                let d = d.clone();
                async move {
                    for _ in 0..steps {
                        ctx.step()
                            .run("noop", || async { Ok::<_, infra_core::Error>(()) })
                            .await?;
                    }
                    d.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, infra_core::Error>(())
                }
            })
            .unwrap(),
    )
    .unwrap();
    rt.prepare().await.unwrap();
    let mut sent = 0;
    while sent < n {
        let batch = (n - sent).min(5_000);
        let events = (sent..sent + batch)
            .map(|i| Event::new("bench/shaped", json!({ "k": i % keys.max(1) })))
            .collect();
        rt.send_many(events).await.unwrap();
        sent += batch;
    }
    let started = Instant::now();
    rt.start().await.unwrap();
    while AtomicU64::load(&done, Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    loop {
        let stats = rt.stats().await.unwrap();
        let left: u64 = stats
            .functions
            .iter()
            .map(|f| f.queue.ready + f.queue.running + f.queue.scheduled)
            .sum();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    rt.shutdown().await;
    rate
}

/// Send-to-start latency of an event resuming one of `waiting` runs parked on
/// `wait_for_event`: from the send to the code after the wait running.
async fn resume_latency(queue: Arc<dyn JobBackend>, waiting: u64) -> (f64, f64) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let rt = JobsRuntime::with_settings(queue, Default::default(), settings());
    let s = samples.clone();
    rt.register(
        Function::builder("waiter")
            .on_event("bench/wait")
            .raw_handler(move |_, ctx: JobContext| {
                let s = s.clone();
                async move {
                    let got = ctx
                        .step()
                        .wait_for_event(
                            "go",
                            "bench/go",
                            Match::field("data.id"),
                            Duration::from_secs(3600),
                        )
                        .await?;
                    if let Some(event) = got {
                        let now_us = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap()
                            .as_micros() as i64;
                        let sent_us = event.data["sent_us"].as_i64().unwrap_or(now_us);
                        s.lock().await.push((now_us - sent_us) as f64 / 1000.0);
                    }
                    Ok::<_, infra_core::Error>(())
                }
            })
            .unwrap(),
    )
    .unwrap();
    rt.start().await.unwrap();
    let mut sent = 0;
    while sent < waiting {
        let batch = (waiting - sent).min(2_000);
        let events = (sent..sent + batch)
            .map(|i| Event::new("bench/wait", json!({ "id": i })))
            .collect();
        rt.send_many(events).await.unwrap();
        sent += batch;
    }
    let admin = rt.admin().unwrap();
    loop {
        let stats = admin.stats().await.unwrap();
        let parked: u64 = stats
            .iter()
            .filter(|f| f.function_id == "waiter")
            .map(|f| f.scheduled)
            .sum();
        let busy: u64 = stats.iter().map(|f| f.ready + f.running).sum();
        if parked == waiting && busy == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let n = 200.min(waiting);
    for i in 0..n {
        let sent_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        // Spread over the waiting runs, one event at a time.
        let id = (i * 7919) % waiting;
        rt.send(Event::new(
            "bench/go",
            json!({ "id": id, "sent_us": sent_us }),
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while (samples.lock().await.len() as u64) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rt.shutdown().await;
    let mut xs = samples.lock().await.clone();
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (xs[xs.len() / 2], xs[(xs.len() * 99) / 100])
}

/// Send-to-start latency on an idle queue: one event at a time, spaced out.
async fn latency(queue: Arc<dyn JobBackend>) -> (f64, f64) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let rt = JobsRuntime::with_settings(queue, Default::default(), settings());
    let s = samples.clone();
    rt.register(
        Function::builder("timed")
            .on_event("bench/timed")
            .raw_handler(move |event: Event, _| {
                let s = s.clone();
                let sent_us = event.data["sent_us"].as_i64().unwrap();
                async move {
                    let now_us = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_micros() as i64;
                    s.lock().await.push((now_us - sent_us) as f64 / 1000.0);
                    Outcome::success()
                }
            })
            .unwrap(),
    )
    .unwrap();
    rt.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = 300;
    for _ in 0..n {
        let sent_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        rt.send(Event::new("bench/timed", json!({ "sent_us": sent_us })))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while samples.lock().await.len() < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rt.shutdown().await;
    let mut xs = samples.lock().await.clone();
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (xs[xs.len() / 2], xs[(xs.len() * 99) / 100])
}

#[derive(diesel::QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// The baseline: a bare table, one batched insert, workers claiming 500 at a time with
/// `FOR UPDATE SKIP LOCKED` and deleting what they claimed.
async fn raw_sql(url: &str, n: u64, workers: usize) -> f64 {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    conn.batch_execute(
        "CREATE TABLE raw_jobs (id bigserial PRIMARY KEY, payload jsonb NOT NULL, run_at timestamptz NOT NULL DEFAULT now(), locked_by text);
         CREATE INDEX raw_jobs_claim ON raw_jobs (run_at, id) WHERE locked_by IS NULL;",
    )
    .await
    .unwrap();
    let payloads: Vec<String> = (0..n).map(|_| "{}".to_owned()).collect();
    for chunk in payloads.chunks(5_000) {
        diesel::sql_query(
            "INSERT INTO raw_jobs (payload) SELECT p::jsonb FROM unnest($1::text[]) p",
        )
        .bind::<Array<Text>, _>(chunk)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
                let me = format!("w{w}");
                loop {
                    let claimed: Vec<IdRow> = diesel::sql_query(
                        "UPDATE raw_jobs j SET locked_by = $1 FROM (SELECT id FROM raw_jobs WHERE locked_by IS NULL AND run_at <= now() ORDER BY run_at, id LIMIT 500 FOR UPDATE SKIP LOCKED) c WHERE j.id = c.id RETURNING j.id",
                    )
                    .bind::<Text, _>(&me)
                    .load(&mut conn)
                    .await
                    .unwrap();
                    if claimed.is_empty() {
                        break;
                    }
                    let ids: Vec<i64> = claimed.iter().map(|r| r.id).collect();
                    diesel::sql_query("DELETE FROM raw_jobs WHERE id = ANY($1)")
                        .bind::<Array<BigInt>, _>(&ids)
                        .execute(&mut conn)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// graphile-worker at its best settings, through `benches/graphile/bench.mjs`.
fn graphile(url: &str, n: u64) -> Option<f64> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/graphile");
    if !dir.join("node_modules").exists() {
        eprintln!(
            "graphile-worker: skipped (run `npm ci` in {})",
            dir.display()
        );
        return None;
    }
    let out = std::process::Command::new("node")
        .arg("bench.mjs")
        .current_dir(&dir)
        .env("DATABASE_URL", url)
        .env("JOBS", n.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "graphile-worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("jobs_per_second="))
        .and_then(|v| v.trim().parse().ok())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let n = jobs();
    runtime.block_on(async {
        let name = format!("infra_jobs_bench_{}", std::process::id());
        let url = fresh_database(&name).await;
        let db = Database::from_config(DbConfig::new(&url).unwrap()).unwrap();
        let (pg_enqueue, pg_rate) = drain(Arc::new(PgQueue::new(db.clone())), n).await;
        let (p50, p99) = latency(Arc::new(PgQueue::new(db.clone()))).await;
        let waiting = if n < 50_000 { 2_000 } else { 10_000 };
        let shaped = |name: &str| {
            let name = format!("{name}_{}", std::process::id());
            async move {
                let url = fresh_database(&name).await;
                let db = Database::from_config(DbConfig::new(&url).unwrap()).unwrap();
                (name, db)
            }
        };
        let (steps_db_name, steps_db) = shaped("infra_jobs_bench_steps").await;
        let single = drain_with(Arc::new(PgQueue::new(steps_db.clone())), n, 0, 0).await;
        let three = drain_with(Arc::new(PgQueue::new(steps_db.clone())), n, 3, 0).await;
        drop(steps_db);
        drop_database(&steps_db_name).await;
        let (keyed_db_name, keyed_db) = shaped("infra_jobs_bench_keyed").await;
        let keyed = drain_with(Arc::new(PgQueue::new(keyed_db.clone())), n, 0, 1_000).await;
        drop(keyed_db);
        drop_database(&keyed_db_name).await;
        let (wait_db_name, wait_db) = shaped("infra_jobs_bench_wait").await;
        let (rp50, rp99) = resume_latency(Arc::new(PgQueue::new(wait_db.clone())), waiting).await;
        drop(wait_db);
        drop_database(&wait_db_name).await;
        drop(db);
        let raw = raw_sql(&url, n, 4).await;
        drop_database(&name).await;

        let gname = format!("infra_jobs_bench_graphile_{}", std::process::id());
        let gurl = fresh_database(&gname).await;
        let graphile = graphile(&gurl, n);
        drop_database(&gname).await;

        let (mem_enqueue, mem_rate) = drain(Arc::new(MemoryQueue::new()), n).await;
        let (mp50, mp99) = latency(Arc::new(MemoryQueue::new())).await;

        println!("jobs: {n} no-op jobs, {CONCURRENCY} in flight, one worker process, 2 tokio threads");
        println!("PgQueue       enqueue {pg_enqueue:>9.0}/s   process {pg_rate:>9.0}/s   send-to-start p50 {p50:.2} ms  p99 {p99:.2} ms");
        println!("raw SQL       process {raw:>9.0}/s   PgQueue/raw {:.3}", pg_rate / raw);
        match graphile {
            Some(g) => println!("graphile      process {g:>9.0}/s   PgQueue/graphile {:.3}", pg_rate / g),
            None => println!("graphile      not run"),
        }
        println!("MemoryQueue   enqueue {mem_enqueue:>9.0}/s   process {mem_rate:>9.0}/s   send-to-start p50 {mp50:.2} ms  p99 {mp99:.2} ms");
        println!("PgQueue steps three-step {three:>9.0}/s   single-step {single:>9.0}/s   ratio {:.3}", three / single);
        println!("PgQueue keyed concurrency_per_key(1) over 1,000 keys {keyed:>9.0}/s   unlimited {single:>9.0}/s   ratio {:.3}", keyed / single);
        println!("PgQueue resume one of {waiting} waiting runs: send-to-step p50 {rp50:.2} ms  p99 {rp99:.2} ms");

        // The same figures for `cargo xtask bench`'s table; latencies are send-to-start on an
        // idle queue, measured apart from the drain.
        let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
        let workload = format!("drain {n} no-op jobs, {CONCURRENCY} in flight, one process");
        let mut pg = Row::new("infra-jobs", workload.clone(), "jobs/s")
            .ours(
                Side::new("PgQueue (latency: send-to-start, idle queue)", pg_rate)
                    .with_latency(ms(p50), ms(p99)),
            )
            .baseline(Side::new("raw SQL queue, SKIP LOCKED claim of 500, 4 connections", raw))
            // Issue 13's goals: at least half the raw SQL queue, send-to-start p99 ≤ 20 ms.
            .goal(Goal::ratio_at_least(0.5))
            .goal(Goal::p99_at_most(Duration::from_millis(20)));
        let mut rows = Vec::new();
        if let Some(g) = graphile {
            let graphile_side = || Side::new("graphile-worker, local queue 500, batched completion", g);
            pg = pg.other(graphile_side());
            // The fastest PostgreSQL queue we know gets its own row: the goal is to match it.
            rows.push(
                Row::new("infra-jobs", format!("{workload}, vs graphile-worker's best"), "jobs/s")
                    .ours(Side::new("PgQueue", pg_rate))
                    .baseline(graphile_side())
                    .goal(Goal::ratio_at_least(1.0)),
            );
        }
        rows.insert(0, pg);
        let memory = Row::new("infra-jobs", workload, "jobs/s").ours(
            Side::new("MemoryQueue (latency: send-to-start, idle queue)", mem_rate)
                .with_latency(ms(mp50), ms(mp99)),
        );
        rows.push(memory);
        // Issue 23's goals: steps, keyed limits and waits.
        rows.push(
            Row::new("infra-jobs", format!("drain {n} runs of a three-step no-op function"), "runs/s")
                .ours(Side::new("PgQueue, three durable steps", three))
                .baseline(Side::new("PgQueue, the same function without steps, same run", single))
                .goal(Goal::ratio_at_least(0.33)),
        );
        rows.push(
            Row::new("infra-jobs", format!("drain {n} jobs with concurrency_per_key(1) over 1,000 keys"), "jobs/s")
                .ours(Side::new("PgQueue, one run per key at a time", keyed))
                .baseline(Side::new("PgQueue, the same jobs unlimited, same run", single))
                .goal(Goal::ratio_at_least(0.5)),
        );
        rows.push(
            Row::new("infra-jobs", format!("an event resumes one of {waiting} runs waiting for events"), "ms")
                .ours(
                    Side::new("PgQueue wait_for_event (send to the step after the wait)", rp50)
                        .with_latency(ms(rp50), ms(rp99)),
                )
                .goal(Goal::p99_at_most(Duration::from_millis(50))),
        );
        rows.extend(metrics_overhead(n).await);
        for row in rows {
            row.emit().expect("bench report written");
        }
    });
}

/// Issue 21's rows: the drain with the Prometheus recorder installed against the same drain
/// without one (goal: ratio ≥ 0.97). Last, since it installs the process-wide recorder: the
/// "without" drains run first, on queues and pools built before it, whose handles stay
/// no-ops; the "with" drains run on ones built after it, recording every attempt's counters
/// and histograms and every checkout's wait. One pair per queue (a recorder cannot be
/// uninstalled), so the machine's drift between the two drains is in the ratio.
async fn metrics_overhead(n: u64) -> Vec<Row> {
    let plain_name = format!("infra_jobs_bench_plain_{}", std::process::id());
    let plain_db =
        Database::from_config(DbConfig::new(&fresh_database(&plain_name).await).unwrap()).unwrap();
    let pg_plain = drain_with(Arc::new(PgQueue::new(plain_db.clone())), n, 0, 0).await;
    drop(plain_db);
    drop_database(&plain_name).await;
    let (_, mem_plain) = drain(Arc::new(MemoryQueue::new()), n).await;

    infra_core::metrics_exporter::install_prometheus_recorder().unwrap();
    let recorded_name = format!("infra_jobs_bench_recorded_{}", std::process::id());
    let recorded_db =
        Database::from_config(DbConfig::new(&fresh_database(&recorded_name).await).unwrap())
            .unwrap();
    let pg_recorded = drain_with(Arc::new(PgQueue::new(recorded_db.clone())), n, 0, 0).await;
    drop(recorded_db);
    drop_database(&recorded_name).await;
    let (_, mem_recorded) = drain(Arc::new(MemoryQueue::new()), n).await;
    println!(
        "PgQueue with the Prometheus recorder {pg_recorded:>9.0}/s   without {pg_plain:>9.0}/s   ratio {:.3}",
        pg_recorded / pg_plain
    );
    println!(
        "MemoryQueue with the Prometheus recorder {mem_recorded:>9.0}/s   without {mem_plain:>9.0}/s   ratio {:.3}",
        mem_recorded / mem_plain
    );
    let workload = |queue: &str| {
        format!(
            "drain {n} no-op jobs on {queue}, {CONCURRENCY} in flight, with the Prometheus recorder"
        )
    };
    vec![
        Row::new("infra-jobs", workload("PgQueue"), "jobs/s")
            .ours(Side::new("PgQueue, Prometheus recorder", pg_recorded))
            .baseline(Side::new("PgQueue, no recorder, same run", pg_plain))
            .goal(Goal::ratio_at_least(0.97)),
        Row::new("infra-jobs", workload("MemoryQueue"), "jobs/s")
            .ours(Side::new("MemoryQueue, Prometheus recorder", mem_recorded))
            .baseline(Side::new("MemoryQueue, no recorder, same run", mem_plain))
            .goal(Goal::ratio_at_least(0.97)),
    ]
}

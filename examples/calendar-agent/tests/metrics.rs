//! Issue 21's Prometheus half, end to end with real parts: the `calendar-agent` binary on a
//! real PostgreSQL (the durable job queue too) and a real Redis (cache, rate limit), with
//! `INFRA_METRICS_ADDR` set.
//!
//! - its exposition passes `promtool check metrics` (Debian's `prometheus` package, which
//!   `.ci/run` installs; a missing `promtool` fails the test), and names every metric
//!   `docs/metrics.md` says is there from the start — and documents every one it names;
//! - a real `prometheus` server scraping it reads back, through its HTTP query API, the
//!   queue depth, the sync runs and the realtime connection of a WebSocket client speaking
//!   the Pusher protocol.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::TestDatabase;
use tokio_tungstenite::tungstenite::Message;

/// How long the test waits for anything; far beyond the 250 ms metrics interval and the 1 s
/// scrape interval it configures.
const PATIENCE: Duration = Duration::from_secs(60);
/// The function a sync request runs.
const SYNC_FUNCTION: &str = "sync-calendar";

/// A child process killed (by its own handle) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The app as a child process, with the addresses it printed.
struct App {
    _child: Running,
    addr: String,
    metrics: String,
}

impl App {
    fn start(database_url: &str) -> App {
        let redis_url =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let mut child = Command::new(env!("CARGO_BIN_EXE_calendar-agent"))
            .env_clear()
            .env("DATABASE_URL", database_url)
            .env("REDIS_URL", redis_url)
            .env(
                "REDIS_KEY_PREFIX",
                format!("metrics-test-{}:", std::process::id()),
            )
            .env("INFRA_JOBS_BACKEND", "postgres")
            .env("INFRA_EXAMPLE_ADDR", "127.0.0.1:0")
            .env("INFRA_METRICS_ADDR", "127.0.0.1:0")
            .env("INFRA_METRICS_INTERVAL", "250ms")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the calendar-agent binary starts");
        let stdout = child.stdout.take().unwrap();
        let child = Running(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("calendar agent on http://") {
                    let _ = tx.send(("app", url.trim_end_matches('/').to_owned()));
                }
                if let Some(url) = line.strip_prefix("metrics on http://") {
                    let _ = tx.send(("metrics", url.trim_end_matches("/metrics").to_owned()));
                }
            }
        });
        let (mut addr, mut metrics) = (None, None);
        while addr.is_none() || metrics.is_none() {
            match rx
                .recv_timeout(PATIENCE)
                .expect("the app prints both addresses")
            {
                ("app", url) => addr = Some(url),
                (_, url) => metrics = Some(url),
            }
        }
        App {
            _child: child,
            addr: addr.unwrap(),
            metrics: metrics.unwrap(),
        }
    }
}

/// Polls `probe` until it gives a value, failing with `what` after [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Signs the first demo user in and requests `syncs` syncs of their calendar; returns the
/// app's Pusher key.
async fn sign_in_and_sync(http: &reqwest::Client, app: &str, syncs: usize) -> String {
    let config: Value = http
        .get(format!("http://{app}/api/demo/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_id = config["users"][0]["id"].as_i64().expect("a demo user");
    let session: Value = http
        .post(format!("http://{app}/api/demo/sign-in"))
        .json(&json!({ "user_id": user_id }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().expect("a session token");
    let calendar = session["calendar_id"]
        .as_i64()
        .expect("the user's calendar");
    for _ in 0..syncs {
        let answer = http
            .post(format!("http://{app}/api/calendars/{calendar}/sync"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202, "{}", answer.text().await.unwrap());
    }
    config["pusher"]["key"]
        .as_str()
        .expect("the Pusher key")
        .to_owned()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client speaking the Pusher protocol: connected, subscribed to a public
/// channel.
async fn pusher_client(app: &str, key: &str) -> Socket {
    let url = format!("ws://{app}/app/{key}?protocol=7&client=metrics-test&version=1.0");
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the WebSocket endpoint answers");
    let first = next_event(&mut socket).await;
    assert_eq!(first["event"], "pusher:connection_established");
    socket
        .send(Message::Text(
            json!({"event": "pusher:subscribe", "data": {"channel": "metrics-watch"}})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let subscribed = next_event(&mut socket).await;
    assert_eq!(
        subscribed["event"], "pusher_internal:subscription_succeeded",
        "{subscribed}"
    );
    socket
}

async fn next_event(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("a frame in time")
            .expect("the socket stays open")
            .expect("a readable frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

async fn scrape(http: &reqwest::Client, metrics: &str) -> String {
    let answer = http
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .expect("the metrics listener answers");
    assert_eq!(answer.status(), 200);
    answer.text().await.unwrap()
}

/// The value of the sample `series` (name and labels exactly as exposed), if present.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The metric names the exposition declares (`# TYPE name kind`).
fn exposed_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// docs/metrics.md's table rows: (name, the *shows* column).
fn documented() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md"),
    )
    .expect("docs/metrics.md is readable");
    doc.lines()
        .filter(|line| line.starts_with("| `"))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | name | type | labels | shows | meaning |: cells[0] is before the first bar.
            let name = cells.get(1)?.trim_matches('`');
            let shows = cells.get(4)?;
            (cells.len() >= 6 && !name.starts_with("INFRA_"))
                .then(|| (name.to_owned(), (*shows).to_owned()))
        })
        .collect()
}

/// Runs `promtool check metrics` on `exposition`; a missing promtool fails.
fn promtool_check(exposition: &str) -> std::process::Output {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool cannot be run ({e}): install Debian's `prometheus` package (.ci/run does)"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exposition_passes_promtool_and_matches_docs_metrics_md() {
    let db = TestDatabase::create("metrics_promtool").await;
    let app = App::start(&db.url());
    let http = reqwest::Client::new();
    let key = sign_in_and_sync(&http, &app.addr, 2).await;
    let _socket = pusher_client(&app.addr, &key).await;
    let attempts = format!("infra_jobs_attempts_total{{function=\"{SYNC_FUNCTION}\"}}");
    let exposition = eventually("the syncs' attempts and the connection in a scrape", || {
        let http = http.clone();
        let metrics = app.metrics.clone();
        let attempts = attempts.clone();
        async move {
            let body = scrape(&http, &metrics).await;
            let ran = sample(&body, &attempts).is_some_and(|n| n >= 1.0);
            let connected = sample(&body, "infra_realtime_connections").is_some_and(|n| n >= 1.0);
            (ran && connected).then_some(body)
        }
    })
    .await;

    let checked = promtool_check(&exposition);
    assert!(
        checked.status.success(),
        "promtool check metrics refused the exposition:\n{}{}\n--- exposition ---\n{exposition}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr),
    );

    let exposed = exposed_names(&exposition);
    let documented = documented();
    assert!(documented.len() > 30, "docs/metrics.md's table is read");
    let missing: Vec<&str> = documented
        .iter()
        .filter(|(_, shows)| shows == "built" || shows == "sampled")
        .map(|(name, _)| name.as_str())
        .filter(|name| !exposed.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "documented but not in the scrape: {missing:?}\n{exposition}"
    );
    let names: BTreeSet<&str> = documented.iter().map(|(n, _)| n.as_str()).collect();
    let undocumented: Vec<&String> = exposed
        .iter()
        .filter(|name| !names.contains(name.as_str()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "in the scrape but not in docs/metrics.md: {undocumented:?}"
    );
    // The run the syncs made was timed, and the pool served it.
    assert!(exposed.contains("infra_jobs_run_duration_seconds"));
    assert!(
        sample(&exposition, "db_client_connection_max").is_some_and(|n| n >= 1.0),
        "the pool's size limit is sampled"
    );
    db.drop_now().await;
}

/// A `prometheus` server of the test's own, scraping `target` every second.
struct Prometheus {
    _child: Running,
    _dir: TempDir,
    url: String,
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Prometheus {
    async fn start(target: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("infra-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let dir = TempDir(dir);
        std::fs::write(
            dir.0.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: calendar-agent\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.0.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "prometheus cannot be run ({e}): install Debian's `prometheus` package (.ci/run does)"
                )
            });
        let prometheus = Prometheus {
            _child: Running(child),
            _dir: dir,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        eventually("prometheus to be ready", || {
            let ready = http.get(format!("{}/-/ready", prometheus.url)).send();
            async move { ready.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
        })
        .await;
        prometheus
    }

    /// The instant vector `query` answers, through the HTTP query API.
    async fn query(&self, http: &reqwest::Client, query: &str) -> Vec<Value> {
        let mut url = url::Url::parse(&format!("{}/api/v1/query", self.url)).unwrap();
        url.query_pairs_mut().append_pair("query", query);
        let answer: Value = http
            .get(url)
            .send()
            .await
            .expect("prometheus answers")
            .json()
            .await
            .expect("a JSON answer");
        assert_eq!(answer["status"], "success", "{query}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// A sample's value (`"value": [time, "1"]`).
fn value_of(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a sample value")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reads_queue_depth_runs_and_connections_from_the_app() {
    let db = TestDatabase::create("metrics_prometheus").await;
    let app = App::start(&db.url());
    let prometheus = Prometheus::start(&app.metrics).await;
    let http = reqwest::Client::new();
    let key = sign_in_and_sync(&http, &app.addr, 3).await;
    let _socket = pusher_client(&app.addr, &key).await;

    let up = eventually("prometheus to scrape the app", || {
        let http = http.clone();
        let prometheus = &prometheus;
        async move {
            let up = prometheus.query(&http, "up{job=\"calendar-agent\"}").await;
            up.first().filter(|s| value_of(s) == 1.0).cloned()
        }
    })
    .await;
    assert_eq!(up["metric"]["job"], "calendar-agent");

    let runs = format!("sum(infra_jobs_attempts_total{{function=\"{SYNC_FUNCTION}\"}})");
    let attempts = eventually("the three syncs' runs in prometheus", || {
        let http = http.clone();
        let prometheus = &prometheus;
        let runs = runs.clone();
        async move {
            let found = prometheus.query(&http, &runs).await;
            found.first().map(value_of).filter(|n| *n >= 3.0)
        }
    })
    .await;
    assert!(attempts >= 3.0);

    let connections = eventually("the connection gauge in prometheus", || {
        let http = http.clone();
        let prometheus = &prometheus;
        async move {
            let found = prometheus.query(&http, "infra_realtime_connections").await;
            found.first().map(value_of).filter(|n| *n == 1.0)
        }
    })
    .await;
    assert_eq!(connections, 1.0, "the one Pusher client is connected");

    // The depth, by state, from the sampler's stats query: the syncs ran, nothing waits.
    let depth_query = format!("infra_jobs_queue_depth{{function=\"{SYNC_FUNCTION}\"}}");
    let depth = eventually("the queue depth by state in prometheus", || {
        let http = http.clone();
        let prometheus = &prometheus;
        let depth_query = depth_query.clone();
        async move {
            let found = prometheus.query(&http, &depth_query).await;
            let drained = found
                .iter()
                .any(|s| s["metric"]["state"] == "ready" && value_of(s) == 0.0);
            (found.len() == 4 && drained).then_some(found)
        }
    })
    .await;
    let states: BTreeSet<&str> = depth
        .iter()
        .filter_map(|s| s["metric"]["state"].as_str())
        .collect();
    assert_eq!(
        states,
        BTreeSet::from(["dead", "ready", "running", "scheduled"])
    );
    drop(prometheus);
    drop(app);
    db.drop_now().await;
}

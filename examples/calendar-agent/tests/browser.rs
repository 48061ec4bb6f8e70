//! The live page in a real browser: Debian's headless Chromium, driven through chromedriver
//! (WebDriver, nothing downloaded). A demo user signs in, joins `private-user-{id}` through
//! the app's auth endpoint, presses Sync and sees started → completed arrive over the embedded
//! realtime server; a second tab signed in as another user is refused that channel.
//!
//! The app runs in this process on its own database, with the job queue on PostgreSQL. On
//! failure a screenshot is saved as `target/calendar-agent-browser-failure.png`.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use calendar_agent::provider::FakeProvider;
use fantoccini::{Client, ClientBuilder, Locator};
use infra::{Env, Infra};
use support::TestDatabase;

const EVENTS_PER_CALENDAR: usize = 7;

/// chromedriver on a spare port, stopped on drop.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (.ci/run installs Debian's chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        ChromeDriver { child, port }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &ChromeDriver, profile: &std::path::Path) -> Client {
    let capabilities = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1100,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("chromedriver starts a Chromium session")
}

fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("calendar-agent-browser-failure.png")
}

/// Signs in as the `index`-th demo user and waits until their private channel is joined.
async fn sign_in(client: &Client, app: &str, index: usize) -> String {
    client.goto(app).await.unwrap();
    let option = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(&format!(
            "#user option:nth-child({})",
            index + 1
        )))
        .await
        .expect("the page lists the demo users");
    let user_id = option.attr("value").await.unwrap().unwrap();
    option.click().await.unwrap();
    client
        .find(Locator::Id("sign-in-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#subscription[data-state='subscribed']"))
        .await
        .expect("the user's private channel is joined through /api/pusher/auth");
    user_id
}

async fn drive(client: &Client, app: &str) {
    // Tab 1: Ada syncs and watches it happen.
    let ada = sign_in(client, app, 0).await;
    client
        .find(Locator::Id("sync"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let completed = client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#events li[data-kind='completed']"))
        .await
        .expect("calendar.sync.completed arrives live");
    let text = completed.text().await.unwrap();
    assert!(
        text.contains(&format!("{EVENTS_PER_CALENDAR} events")),
        "the completed event carries the count: {text}"
    );
    let kinds = client
        .execute(
            "return [...document.querySelectorAll('#events li')].map(li => li.dataset.kind)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        kinds,
        serde_json::json!(["started", "completed"]),
        "started, then completed"
    );
    let first_tab = client.window().await.unwrap();

    // Tab 2: Grace may not join Ada's channel.
    let tab = client.new_window(true).await.unwrap();
    client.switch_to_window(tab.handle).await.unwrap();
    let grace = sign_in(client, app, 1).await;
    assert_ne!(ada, grace);
    let input = client.find(Locator::Id("foreign-user")).await.unwrap();
    input.send_keys(&ada).await.unwrap();
    client
        .find(Locator::Id("spy"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#spy-result[data-state='refused']"))
        .await
        .expect("another user's private channel is refused");
    client.switch_to_window(first_tab).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_happens_live_and_a_foreign_channel_is_refused() {
    let database = TestDatabase::create("browser").await;
    let env = Env::from_pairs([
        ("DATABASE_URL", database.url()),
        ("INFRA_JOBS_BACKEND", "postgres".to_owned()),
    ]);
    let infra = Arc::new(Infra::from_env_with(&env).expect("the environment is valid"));
    let router = calendar_agent::start(
        infra.clone(),
        Arc::new(FakeProvider::new(EVENTS_PER_CALENDAR)),
    )
    .await
    .expect("the app starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn({
        let infra = infra.clone();
        async move { infra.serve(listener, router, std::future::pending()).await }
    });

    let driver = ChromeDriver::start();
    let profile =
        std::env::temp_dir().join(format!("calendar-agent-chromium-{}", std::process::id()));
    let client = browser(&driver, &profile).await;
    let outcome = tokio::spawn({
        let client = client.clone();
        let app = app.clone();
        async move { drive(&client, &app).await }
    })
    .await;
    if outcome.is_err()
        && let Ok(png) = client.screenshot().await
    {
        let path = screenshot_path();
        let _ = std::fs::create_dir_all(path.parent().unwrap());
        let _ = std::fs::write(&path, png);
        eprintln!("screenshot saved to {}", path.display());
    }
    let _ = client.close().await;
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
    server.abort();
    infra.jobs().runtime().shutdown().await;
    database.drop_now().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}

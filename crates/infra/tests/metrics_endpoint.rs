//! `INFRA_METRICS_ADDR` on `Infra`: unset, nothing listens; set, `Infra::start` serves
//! `GET /metrics` there with the services' metrics (this test binary's own process: the
//! recorder it installs is process-wide), refreshed by the sampler; an address that cannot be
//! bound is an error naming the variable.

use std::time::{Duration, Instant};

use infra::{CacheExt, Env, ErrorKind, Infra};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One `GET path` over HTTP/1.0: the status line and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unset_nothing_listens_set_get_metrics_serves_the_services_metrics() {
    let off = Infra::from_env(&Env::empty()).unwrap();
    off.start().await.unwrap();
    assert_eq!(
        off.metrics_addr(),
        None,
        "no listener without INFRA_METRICS_ADDR"
    );
    off.shutdown().await;

    let infra = Infra::from_env(&Env::from_pairs([
        ("INFRA_METRICS_ADDR", "127.0.0.1:0"),
        ("INFRA_METRICS_INTERVAL", "100ms"),
    ]))
    .unwrap();
    assert_eq!(infra.metrics_config().interval, Duration::from_millis(100));
    infra.start().await.unwrap();
    let addr = infra.metrics_addr().expect("the listener is bound");
    assert_ne!(addr.port(), 0, "the bound port, not the requested 0");

    infra
        .cache()
        .set_json("metrics:probe", &1, Duration::from_secs(60))
        .await
        .unwrap();
    let _: Option<i32> = infra.cache().get_json("metrics:probe").await.unwrap();
    let _: Option<i32> = infra.cache().get_json("metrics:absent").await.unwrap();

    // The memory cache's size gauge comes from the sampler, within a few intervals.
    let started = Instant::now();
    let body = loop {
        let (status, body) = get(addr, "/metrics").await;
        assert!(status.contains(" 200"), "{status}");
        if body.contains("infra_cache_memory_entries 1") {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the sampler never set the memory cache's size:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        body.contains("infra_cache_hits_total{backend=\"memory\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("infra_cache_misses_total{backend=\"memory\"} 1"),
        "{body}"
    );
    assert!(body.contains("# TYPE process_resident_memory_bytes gauge"));
    assert!(body.contains("# TYPE infra_realtime_connections gauge"));
    let (status, _) = get(addr, "/elsewhere").await;
    assert!(status.contains(" 404"), "only /metrics is served: {status}");

    // A second app on the same address cannot bind it: the error names the variable.
    let clash =
        Infra::from_env(&Env::from_pairs([("INFRA_METRICS_ADDR", addr.to_string())])).unwrap();
    let err = clash.start().await.expect_err("the address is taken");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(err.variable(), Some("INFRA_METRICS_ADDR"), "{err}");
    clash.shutdown().await;

    infra.shutdown().await;
    assert_eq!(infra.metrics_addr(), None, "shutdown stops the listener");
}

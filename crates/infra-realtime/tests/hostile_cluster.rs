//! A subscribe flood on a clustered node whose Redis answers slowly: the changes waiting for
//! Redis are coalesced per channel, so the queue stays as small as the set of channels that
//! changed, and Redis ends up with the node's state as the hub last had it.
#![cfg(all(feature = "server-redis", unix))]

mod server_support;

use std::time::Duration;

use infra_realtime::server::{AppLimits, ClusterConfig, ServerConfig};
use serde_json::json;
use server_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every reply from Redis waits this long: a busy or distant Redis.
const REDIS_DELAY: Duration = Duration::from_millis(5);

/// A TCP proxy to the local Redis that delays what Redis sends back.
async fn slow_redis() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = tokio::net::TcpStream::connect("127.0.0.1:6379").await else {
                continue;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut redis_read, mut redis_write) = upstream.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut redis_write).await;
            });
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let n = match redis_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    tokio::time::sleep(REDIS_DELAY).await;
                    if client_write.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("redis://{addr}")
}

async fn subscription_count(prefix: &str, channel: &str) -> usize {
    let mut conn = redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let per_node: Vec<usize> = redis::cmd("HVALS")
        .arg(format!("{prefix}:ch:{{{APP_ID}:{channel}}}:subs"))
        .query_async(&mut conn)
        .await
        .unwrap();
    per_node.iter().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_flood_leaves_the_cluster_writer_a_bounded_queue() {
    let prefix = unique_prefix("flood");
    let cluster = ClusterConfig::new(slow_redis().await)
        .unwrap()
        .with_key_prefix(prefix.to_string());
    let mut limits = AppLimits::default();
    limits.max_subscribes_per_second = 1_000_000;
    let config = ServerConfig::new(vec![app().with_limits(limits)]).with_cluster(Some(cluster));
    let (server, addr) = start(config).await;
    assert!(server.cluster_ready(PATIENCE).await);

    let mut holder = Client::connect(addr).await;
    holder.subscribe("held").await;
    // 2,000 subscribe/unsubscribe pairs over 5 channels: 4,000 changes of this node's
    // subscription counts, far more than a Redis answering in 5 ms takes in the meantime.
    let mut flooder = Client::connect(addr).await;
    let mut most_queued = 0;
    for round in 0..20 {
        for i in 0..100 {
            let channel = format!("churn-{}", (round * 100 + i) % 5);
            flooder
                .send(json!({"event": "pusher:subscribe", "data": {"channel": channel}}))
                .await;
            flooder
                .send(json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
                .await;
        }
        flooder
            .send(json!({"event": "pusher:ping", "data": {}}))
            .await;
        flooder.recv_event("pusher:pong", None).await;
        most_queued = most_queued.max(server.state_counts().cluster_changes_queued);
    }
    assert!(
        most_queued <= 16,
        "{most_queued} changes waited for Redis; coalesced per channel they are at most the \
         6 channels that changed"
    );

    // Redis ends with the hub's last state: the churned channels empty, `held` with one.
    eventually("the writer catches up", || {
        server.state_counts().cluster_changes_queued == 0
    })
    .await;
    for i in 0..5 {
        assert_eq!(subscription_count(&prefix, &format!("churn-{i}")).await, 0);
    }
    assert_eq!(subscription_count(&prefix, "held").await, 1);
    drop(flooder);
    drop(holder);
    server.shutdown(PATIENCE).await;
}

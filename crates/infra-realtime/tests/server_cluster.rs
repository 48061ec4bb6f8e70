//! Several server nodes sharing the local Redis (127.0.0.1:6379) act as one: events, presence,
//! the HTTP API's answers, webhooks and terminations span the nodes, and a killed node's
//! state is cleaned up by the survivors. Each test uses its own key prefix (pub/sub channels
//! are global to the Redis, whatever the database number), so suites can share the Redis.
//! Every test but the two about losing the one Redis runs twice: in `one_server` against the
//! local Redis, in `redis_cluster` against a local Redis Cluster (three masters, three
//! replicas) through `INFRA_REALTIME_REDIS_CLUSTER_NODES`.
#![cfg(all(feature = "server-redis", feature = "pusher", unix))]

mod server_support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use infra_core::{ChannelName, EventName, HealthCheck, HealthStatus, Realtime};
use infra_realtime::server::{ClusterConfig, RealtimeServer, ServerConfig};
use infra_realtime::{
    ChannelAttribute, ChannelsQuery, PusherClient, PusherConfig, TriggerOptions, signature,
};
use serde_json::{Value, json};
use server_support::*;

/// Short, so a killed node is noticed quickly; waits below are bounded by `PATIENCE`.
const LEASE: &str = "1500ms";

fn node_env(backend: &Backend, prefix: &str, node: &str) -> Vec<(&'static str, String)> {
    vec![
        backend.env(),
        ("INFRA_REALTIME_REDIS_PREFIX", prefix.to_owned()),
        ("INFRA_REALTIME_NODE_ID", node.to_owned()),
        ("INFRA_REALTIME_NODE_LEASE", LEASE.to_owned()),
    ]
}

fn api(addr: SocketAddr) -> PusherClient {
    let base = url::Url::parse(&format!("http://{addr}")).unwrap();
    PusherClient::new(PusherConfig::new(base, APP_ID, KEY, SECRET)).unwrap()
}

fn channel(name: &str) -> ChannelName {
    ChannelName::new(name).unwrap()
}

/// Every key under the prefix, sorted.
async fn keys_under(backend: &Backend, prefix: &str) -> Vec<String> {
    backend.keys_under(prefix).await
}

/// Stops the nodes gracefully; they leave nothing behind in Redis.
async fn shut_down(backend: &Backend, prefix: &str, nodes: &[RealtimeServer]) {
    for node in nodes {
        node.shutdown(PATIENCE).await;
    }
    assert_eq!(keys_under(backend, prefix).await, Vec::<String>::new());
}

/// Polls an async condition until it holds (fails after `PATIENCE`).
async fn eventually_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < until,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sign_in(client: &mut Client, user_id: &str) {
    let user_data = json!({"id": user_id}).to_string();
    let auth = signature::authenticate_user(KEY, &secret(), &client.socket_id, &user_data).unwrap();
    client
        .send(
            json!({"event": "pusher:signin", "data": {"auth": auth.auth, "user_data": user_data}}),
        )
        .await;
    client.recv_event("pusher:signin_success", None).await;
}

fn presence_ids(succeeded: &Value) -> Vec<String> {
    let data = data_of(succeeded);
    let mut ids: Vec<String> = data["presence"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn user_ids(api: &PusherClient, name: &str) -> Vec<String> {
    let mut ids: Vec<String> = api
        .presence_users(&channel(name))
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    ids.sort();
    ids
}

async fn three_processes_act_as_one_and_clean_up_a_killed_node(backend: &Backend) {
    let prefix = unique_prefix("procs");
    let (hooks, hooks_url) = webhook_receiver().await;
    let env = |node: &str| {
        let mut env = node_env(backend, &prefix, node);
        env.push(("INFRA_REALTIME_WEBHOOK_URL", hooks_url.to_string()));
        env
    };
    let n1 = ServerProcess::start_with(free_port(), &env("n1"));
    let n2 = ServerProcess::start_with(free_port(), &env("n2"));
    let n3 = ServerProcess::start_with(free_port(), &env("n3"));
    let (api1, api2) = (api(n1.addr), api(n2.addr));

    // An event triggered on node 1 reaches subscribers on nodes 2 and 3.
    let mut on2 = Client::connect(n2.addr).await;
    let mut on3 = Client::connect(n3.addr).await;
    let mut on1 = Client::connect(n1.addr).await;
    for client in [&mut on1, &mut on2, &mut on3] {
        assert_eq!(
            client.subscribe("news").await["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    api1.trigger(
        &[channel("news")],
        &EventName::new("hello").unwrap(),
        &json!({"n": 1}),
    )
    .await
    .unwrap();
    for client in [&mut on1, &mut on2, &mut on3] {
        assert_eq!(
            client.recv_event("hello", Some("news")).await["data"],
            r#"{"n":1}"#
        );
    }

    // Presence: one member per user over the cluster, whatever node its sockets are on.
    let room = "presence-room";
    let mut alice1 = Client::connect(n1.addr).await;
    assert_eq!(
        presence_ids(&alice1.subscribe_presence(room, "alice").await),
        ["alice"]
    );
    let mut bob2 = Client::connect(n2.addr).await;
    assert_eq!(
        presence_ids(&bob2.subscribe_presence(room, "bob").await),
        ["alice", "bob"]
    );
    let added = alice1
        .recv_event("pusher_internal:member_added", Some(room))
        .await;
    assert_eq!(data_of(&added)["user_id"], "bob");
    assert_eq!(data_of(&added)["user_info"]["name"], "user bob");
    // Alice's second socket, on node 3: the same member, announced to nobody.
    let mut alice3 = Client::connect(n3.addr).await;
    let joined = alice3.subscribe_presence(room, "alice").await;
    assert_eq!(presence_ids(&joined), ["alice", "bob"]);
    assert_eq!(data_of(&joined)["presence"]["count"], 2);
    let mut carol3 = Client::connect(n3.addr).await;
    assert_eq!(
        presence_ids(&carol3.subscribe_presence(room, "carol").await),
        ["alice", "bob", "carol"]
    );
    for client in [&mut alice1, &mut bob2] {
        let added = client
            .recv_event("pusher_internal:member_added", Some(room))
            .await;
        assert_eq!(
            data_of(&added)["user_id"],
            "carol",
            "alice was not added twice"
        );
    }

    // The HTTP API of node 1 answers for sockets it does not host.
    let info = [
        ChannelAttribute::UserCount,
        ChannelAttribute::SubscriptionCount,
    ];
    let stats = api1.channel(&channel(room), &info).await.unwrap();
    assert!(stats.occupied);
    assert_eq!(
        (stats.user_count, stats.subscription_count),
        (Some(3), Some(4))
    );
    assert_eq!(user_ids(&api1, room).await, ["alice", "bob", "carol"]);
    let news = api2
        .channel(&channel("news"), &[ChannelAttribute::SubscriptionCount])
        .await
        .unwrap();
    assert_eq!(news.subscription_count, Some(3));
    let listed = api1
        .channels(&ChannelsQuery::with_prefix("presence-").with_info(ChannelAttribute::UserCount))
        .await
        .unwrap();
    assert_eq!(listed.channels[room].user_count, Some(3));
    let all = api2.channels(&ChannelsQuery::all()).await.unwrap();
    assert_eq!(all.channels.keys().collect::<Vec<_>>(), ["news", room]);

    // Terminating a user through node 1 closes its socket on node 2.
    let mut dave2 = Client::connect(n2.addr).await;
    sign_in(&mut dave2, "dave").await;
    api1.terminate_user_connections("dave").await.unwrap();
    assert_eq!(dave2.closed().await.0, 4009);

    // A channel only node 3 holds.
    assert_eq!(
        carol3.subscribe("only-on-3").await["event"],
        "pusher_internal:subscription_succeeded"
    );

    // A node's webhooks wait in its memory until delivered: let node 3's arrive first.
    eventually("node 3's webhooks", || {
        hooks.count("channel_occupied", "only-on-3") == 1 && hooks.count("member_added", room) == 3
    })
    .await;

    // SIGKILL node 3: the survivors hear carol leave (alice stays: she is on node 1 too)...
    n3.kill();
    drop((on3, alice3, carol3));
    for client in [&mut alice1, &mut bob2] {
        let removed = client
            .recv_event("pusher_internal:member_removed", Some(room))
            .await;
        assert_eq!(data_of(&removed)["user_id"], "carol");
    }
    // ...the counts drop its sockets...
    assert_eq!(user_ids(&api2, room).await, ["alice", "bob"]);
    let stats = api2.channel(&channel(room), &info).await.unwrap();
    assert_eq!(
        (stats.user_count, stats.subscription_count),
        (Some(2), Some(2))
    );
    eventually_async("news counts node 3's subscriber out", || async {
        let news = api1
            .channel(&channel("news"), &[ChannelAttribute::SubscriptionCount])
            .await
            .unwrap();
        news.subscription_count == Some(2)
    })
    .await;
    // ...and events keep flowing between the survivors, in order.
    for n in 0..20 {
        api2.trigger(
            &[channel("news")],
            &EventName::new("tick").unwrap(),
            &json!({"n": n}),
        )
        .await
        .unwrap();
    }
    for n in 0..20 {
        let tick = on1.recv_event("tick", Some("news")).await;
        assert_eq!(data_of(&tick)["n"], n);
    }
    alice1.assert_quiet(Duration::from_millis(300)).await;

    // Once every client is gone, Redis holds the live nodes' leases and registry, nothing else.
    drop((on1, on2, alice1, bob2, dave2));
    let expected = vec![
        format!("{{{prefix}}}:lease:n1"),
        format!("{{{prefix}}}:lease:n2"),
        format!("{{{prefix}}}:nodes"),
    ];
    eventually_async("Redis forgets the cluster's channels", || async {
        keys_under(backend, &prefix).await == expected
    })
    .await;
    let stats = api1.channel(&channel(room), &info).await.unwrap();
    assert!(!stats.occupied);
    // Webhooks came once for the cluster, node 3's death included (one survivor reaped it).
    eventually("the last webhooks", || {
        hooks.count("channel_vacated", room) == 1 && hooks.count("channel_vacated", "news") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // room for a duplicate to show up
    for (name, channel, times) in [
        ("channel_occupied", "news", 1),
        ("channel_occupied", room, 1),
        ("channel_occupied", "only-on-3", 1),
        ("channel_vacated", "only-on-3", 1),
        ("member_added", room, 3),
        ("member_removed", room, 3),
    ] {
        assert_eq!(hooks.count(name, channel), times, "{name} on {channel}");
    }
    assert_eq!(hooks.member_events("member_removed", "carol"), 1);
    // Stopped gracefully, the nodes leave nothing at all behind.
    let stopped = tokio::task::spawn_blocking(move || (n1.terminate(), n2.terminate()));
    assert_eq!(stopped.await.unwrap(), (true, true));
    assert_eq!(keys_under(backend, &prefix).await, Vec::<String>::new());
}

#[derive(Default)]
struct Hooks {
    events: Mutex<Vec<Value>>,
}

async fn receive(State(hooks): State<Arc<Hooks>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    signature::verify_webhook(
        KEY,
        &secret(),
        &header("x-pusher-key"),
        &header("x-pusher-signature"),
        &body,
    )
    .expect("a valid webhook signature");
    let body: Value = serde_json::from_slice(&body).unwrap();
    hooks
        .events
        .lock()
        .unwrap()
        .extend(body["events"].as_array().unwrap().iter().cloned());
    StatusCode::OK
}

impl Hooks {
    fn member_events(&self, name: &str, user_id: &str) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == name && e["user_id"] == user_id)
            .count()
    }

    fn count(&self, name: &str, channel: &str) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == name && e["channel"] == channel)
            .count()
    }
}

async fn embedded_node(
    backend: &Backend,
    prefix: &str,
    node: &str,
    hooks: &url::Url,
) -> (RealtimeServer, SocketAddr) {
    let cluster = backend
        .config()
        .with_key_prefix(prefix)
        .with_node_id(node)
        .with_lease(Duration::from_millis(1500));
    let config = ServerConfig::new(vec![app().with_webhook_url(hooks.clone())])
        .with_leave_delay(Duration::from_millis(50))
        .with_cluster(Some(cluster));
    let (server, addr) = start(config).await;
    assert!(
        server.cluster_ready(PATIENCE).await,
        "the node reaches Redis"
    );
    (server, addr)
}

/// A webhook receiver on a free port that records verified events.
async fn webhook_receiver() -> (Arc<Hooks>, url::Url) {
    let hooks = Arc::new(Hooks::default());
    let receiver = axum::Router::new()
        .route("/hooks", axum::routing::post(receive))
        .with_state(hooks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hooks_url =
        url::Url::parse(&format!("http://{}/hooks", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });
    (hooks, hooks_url)
}

async fn embedded_nodes_share_client_events_exclusions_and_fire_webhooks_once(backend: &Backend) {
    let prefix = unique_prefix("embedded");
    let (hooks, hooks_url) = webhook_receiver().await;
    let (s1, a1) = embedded_node(backend, &prefix, "e1", &hooks_url).await;
    let (s2, a2) = embedded_node(backend, &prefix, "e2", &hooks_url).await;
    assert_eq!(s1.backend(), "redis");
    assert_eq!(s1.probe().await.unwrap().status, HealthStatus::Healthy);

    // Both nodes get a subscriber at once: one channel_occupied for the cluster.
    let chat = "private-chat";
    let mut x1 = Client::connect(a1).await;
    let mut y2 = Client::connect(a2).await;
    let mut z2 = Client::connect(a2).await;
    let (rx, ry, rz) = tokio::join!(
        x1.subscribe_private(chat),
        y2.subscribe_private(chat),
        z2.subscribe_private(chat)
    );
    for reply in [rx, ry, rz] {
        assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    }

    // A client event from node 1 reaches node 2's subscribers, not its sender.
    x1.send(json!({"event": "client-typing", "channel": chat, "data": {"by": "x"}}))
        .await;
    for client in [&mut y2, &mut z2] {
        let typing = client.recv_event("client-typing", Some(chat)).await;
        assert_eq!(data_of(&typing)["by"], "x");
    }

    // A trigger on node 1 excluding y's socket (on node 2) skips y only.
    api(a1)
        .trigger_with(
            &[channel(chat)],
            &EventName::new("note").unwrap(),
            &json!({"n": 1}),
            &TriggerOptions::excluding(y2.socket_id.clone()),
        )
        .await
        .unwrap();
    x1.recv_event("note", Some(chat)).await;
    z2.recv_event("note", Some(chat)).await;
    // In-process publishing through the `Realtime` handle of node 2 reaches node 1.
    s2.trigger(
        &[channel(chat)],
        &EventName::new("after").unwrap(),
        &json!({}),
    )
    .await
    .unwrap();
    x1.recv_event("after", Some(chat)).await;
    let after = y2.recv().await;
    assert_eq!(after["event"], "after", "y skipped `note`: {after}");
    x1.assert_quiet(Duration::from_millis(200)).await;

    // The same user on both nodes: one member_added, and one member_removed when both leave.
    let room = "presence-hall";
    let mut u1 = Client::connect(a1).await;
    let mut u2 = Client::connect(a2).await;
    u1.subscribe_presence(room, "u").await;
    u2.subscribe_presence(room, "u").await;
    drop((x1, y2, z2, u1, u2));
    eventually("each channel vacated once", || {
        hooks.count("channel_vacated", chat) == 1 && hooks.count("channel_vacated", room) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // room for a duplicate to show up
    assert_eq!(hooks.count("channel_occupied", chat), 1);
    assert_eq!(hooks.count("channel_vacated", chat), 1);
    assert_eq!(hooks.count("channel_occupied", room), 1);
    assert_eq!(hooks.count("member_added", room), 1);
    assert_eq!(hooks.count("member_removed", room), 1);
    assert_eq!(
        hooks.count("client_event", chat),
        1,
        "sent by the sender's node only"
    );

    // Nothing stays behind, in either process or in Redis, but the two leases.
    eventually("the hubs are empty", || {
        s1.state_counts().sockets + s2.state_counts().sockets == 0
            && s1.state_counts().channels + s2.state_counts().channels == 0
    })
    .await;
    let expected = vec![
        format!("{{{prefix}}}:lease:e1"),
        format!("{{{prefix}}}:lease:e2"),
        format!("{{{prefix}}}:nodes"),
    ];
    eventually_async("Redis forgets the channels", || async {
        keys_under(backend, &prefix).await == expected
    })
    .await;

    // A graceful shutdown leaves at once: the lease and the node's members go with it.
    let mut v1 = Client::connect(a1).await;
    v1.subscribe_presence(room, "v").await;
    let mut w2 = Client::connect(a2).await;
    w2.subscribe_presence(room, "w").await;
    v1.recv_event("pusher_internal:member_added", Some(room))
        .await;
    assert_eq!(s2.shutdown(PATIENCE).await, 0);
    let removed = v1
        .recv_event("pusher_internal:member_removed", Some(room))
        .await;
    assert_eq!(data_of(&removed)["user_id"], "w");
    drop(v1);
    let expected = vec![
        format!("{{{prefix}}}:lease:e1"),
        format!("{{{prefix}}}:nodes"),
    ];
    eventually_async("only node 1 is left in Redis", || async {
        keys_under(backend, &prefix).await == expected
    })
    .await;
    shut_down(backend, &prefix, &[s1, s2]).await;
}

#[tokio::test]
async fn without_redis_a_node_serves_its_own_clients_and_reports_degraded() {
    // Nothing listens on port 1: the node never reaches its cluster.
    let cluster = ClusterConfig::new("redis://127.0.0.1:1")
        .unwrap()
        .with_key_prefix(unique_prefix("down").to_string());
    let (server, addr) = start(ServerConfig::new(vec![app()]).with_cluster(Some(cluster))).await;
    assert!(!server.cluster_ready(Duration::from_millis(300)).await);
    let probe = server.probe().await.unwrap();
    assert_eq!(probe.status, HealthStatus::Degraded);
    assert!(probe.detail.contains("cannot reach"), "{}", probe.detail);
    assert!(
        !probe.detail.contains("127.0.0.1:1"),
        "no URL in health: {}",
        probe.detail
    );

    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    a.subscribe("news").await;
    let joined_a = a.subscribe_presence("presence-x", "1").await;
    assert_eq!(presence_ids(&joined_a), ["1"]);
    let joined_b = b.subscribe_presence("presence-x", "2").await;
    assert_eq!(
        presence_ids(&joined_b),
        ["1", "2"],
        "this node's members stand in"
    );
    server
        .trigger(
            &[channel("news")],
            &EventName::new("local").unwrap(),
            &json!({}),
        )
        .await
        .unwrap();
    a.recv_event("local", Some("news")).await;
}

/// A `redis-server` of this test's own (no persistence), so it can be stopped and started.
struct OwnRedis {
    child: std::process::Child,
}

impl OwnRedis {
    async fn start(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--bind", "127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let url = format!("redis://127.0.0.1:{port}");
        eventually_async("the test's redis-server answers", || async {
            match redis::Client::open(url.as_str()) {
                Ok(client) => client.get_multiplexed_async_connection().await.is_ok(),
                Err(_) => false,
            }
        })
        .await;
        OwnRedis { child }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_ride_out_a_redis_restart_and_write_their_state_again() {
    let port = free_port();
    let redis_server = OwnRedis::start(port).await;
    let url = format!("redis://127.0.0.1:{port}");
    let node = |id: &str| {
        let cluster = ClusterConfig::new(url.as_str())
            .unwrap()
            .with_node_id(id)
            .with_lease(Duration::from_millis(1500));
        ServerConfig::new(vec![app()]).with_cluster(Some(cluster))
    };
    let (s1, a1) = start(node("r1")).await;
    let (s2, a2) = start(node("r2")).await;
    assert!(s1.cluster_ready(PATIENCE).await && s2.cluster_ready(PATIENCE).await);
    let mut c1 = Client::connect(a1).await;
    let mut c2 = Client::connect(a2).await;
    c1.subscribe("news").await;
    c2.subscribe("news").await;

    // Redis goes away (with everything it held): each node serves its own clients, degraded.
    drop(redis_server);
    eventually_async("node 1 reports degraded", || async {
        s1.probe().await.unwrap().status == HealthStatus::Degraded
    })
    .await;
    s1.trigger(
        &[channel("news")],
        &EventName::new("alone").unwrap(),
        &json!({}),
    )
    .await
    .unwrap();
    c1.recv_event("alone", Some("news")).await;

    // Redis comes back empty: the nodes reconnect and write their state again.
    let _redis_server = OwnRedis::start(port).await;
    assert!(s1.cluster_ready(PATIENCE).await && s2.cluster_ready(PATIENCE).await);
    let api1 = api(a1);
    eventually_async(
        "the channel counts both nodes' subscribers again",
        || async {
            api1.channel(&channel("news"), &[ChannelAttribute::SubscriptionCount])
                .await
                .is_ok_and(|info| info.subscription_count == Some(2))
        },
    )
    .await;
    // Relays sent before the subscription is back are lost (pub/sub keeps nothing): retry.
    let until = tokio::time::Instant::now() + PATIENCE;
    loop {
        s1.trigger(
            &[channel("news")],
            &EventName::new("again").unwrap(),
            &json!({}),
        )
        .await
        .unwrap();
        let wait = Duration::from_millis(200);
        if tokio::time::timeout(wait, c2.recv_event("again", Some("news")))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "events never flowed again"
        );
    }
    assert_eq!(s1.probe().await.unwrap().status, HealthStatus::Healthy);
}

async fn the_presence_member_limit_counts_every_node(backend: &Backend) {
    let prefix = unique_prefix("limit");
    let node = |id: &str| {
        let cluster = backend
            .config()
            .with_key_prefix(prefix.to_string())
            .with_node_id(id)
            .with_lease(Duration::from_millis(1500));
        let mut limits = infra_realtime::server::AppLimits::default();
        limits.max_presence_members = 2;
        ServerConfig::new(vec![app().with_limits(limits)]).with_cluster(Some(cluster))
    };
    let (s1, a1) = start(node("l1")).await;
    let (s2, a2) = start(node("l2")).await;
    assert!(s1.cluster_ready(PATIENCE).await && s2.cluster_ready(PATIENCE).await);
    let room = "presence-small";
    let mut first = Client::connect(a1).await;
    let mut second = Client::connect(a2).await;
    first.subscribe_presence(room, "1").await;
    second.subscribe_presence(room, "2").await;
    // A third user is refused on either node; a known user's extra socket is not.
    let mut third = Client::connect(a1).await;
    let refused = third.subscribe_presence(room, "3").await;
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    assert_eq!(data_of(&refused)["status"], 403);
    let mut again = Client::connect(a1).await;
    let joined = again.subscribe_presence(room, "2").await;
    assert_eq!(presence_ids(&joined), ["1", "2"]);
    // The refusal left nothing behind: user 3 is not counted anywhere.
    assert_eq!(user_ids(&api(a2), room).await, ["1", "2"]);
    drop((first, second, third, again));
    eventually_async("Redis forgets the channel", || async {
        keys_under(backend, &prefix).await
            == vec![
                format!("{{{prefix}}}:lease:l1"),
                format!("{{{prefix}}}:lease:l2"),
                format!("{{{prefix}}}:nodes"),
            ]
    })
    .await;
    shut_down(backend, &prefix, &[s1, s2]).await;
}

async fn a_node_that_left_writes_nothing_more_to_redis(backend: &Backend) {
    let prefix = unique_prefix("left");
    // A long lease: the node would still be connected for a while after leaving.
    let cluster = backend
        .config()
        .with_key_prefix(prefix.to_string())
        .with_node_id("q1")
        .with_lease(Duration::from_secs(9));
    let (server, addr) = start(ServerConfig::new(vec![app()]).with_cluster(Some(cluster))).await;
    assert!(server.cluster_ready(PATIENCE).await);
    // Past the first heartbeat: the next one, when the node notices it left, is seconds away.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.shutdown(PATIENCE).await, 0);
    // A connection that outlives the shutdown (past its deadline, or on a router still
    // mounted) is served alone: the node has no lease and is no longer in the node set, so
    // whatever it wrote now would stay in Redis with no one to reap it.
    let mut late = Client::connect(addr).await;
    let reply = late.subscribe("late").await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    let reply = late.subscribe_presence("presence-late", "x").await;
    assert_eq!(presence_ids(&reply), vec!["x".to_owned()]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(keys_under(backend, &prefix).await, Vec::<String>::new());
}

async fn member_frames_still_arrive_after_redis_lost_the_member_versions(backend: &Backend) {
    let prefix = unique_prefix("lost");
    let (_hooks, hooks_url) = webhook_receiver().await;
    let (s1, a1) = embedded_node(backend, &prefix, "f1", &hooks_url).await;
    let (s2, a2) = embedded_node(backend, &prefix, "f2", &hooks_url).await;
    let room = "presence-lost";
    // `s` takes its list at a version others then raise (two joins, two leaves).
    let mut a = Client::connect(a2).await;
    a.subscribe_presence(room, "a").await;
    let mut b = Client::connect(a2).await;
    b.subscribe_presence(room, "b").await;
    let mut s = Client::connect(a1).await;
    let listed = s.subscribe_presence(room, "s").await;
    assert_eq!(presence_ids(&listed), vec!["a", "b", "s"]);
    drop((a, b));
    for _ in 0..2 {
        s.recv_event("pusher_internal:member_removed", Some(room))
            .await;
    }

    // Redis loses everything under the prefix (a restart without persistence): both nodes
    // find their lease gone and write their state again, the version counting from 0.
    backend.delete_under(&prefix).await;
    let conn = backend.conn().await;
    let members = format!("{prefix}:ch:{{{APP_ID}:{room}}}:members");
    eventually_async("node 1 writes its member again", || {
        let members = members.clone();
        let mut conn = conn.clone();
        async move {
            redis::cmd("HEXISTS")
                .arg(members)
                .arg("s")
                .query_async::<bool>(&mut conn)
                .await
                .unwrap()
        }
    })
    .await;

    // A member joining later is announced to `s`, whose list predates the loss.
    let mut n = Client::connect(a2).await;
    n.subscribe_presence(room, "n").await;
    let added = s
        .recv_event("pusher_internal:member_added", Some(room))
        .await;
    assert_eq!(data_of(&added)["user_id"], "n", "{added}");
    drop((s, n));
    shut_down(backend, &prefix, &[s1, s2]).await;
}

async fn a_reaped_node_that_writes_again_can_be_reaped_again(backend: &Backend) {
    let prefix = unique_prefix("rewrite");
    // A long lease: the node's next heartbeat is seconds away.
    let cluster = backend
        .config()
        .with_key_prefix(prefix.to_string())
        .with_node_id("r1")
        .with_lease(Duration::from_secs(9));
    let (server, addr) = start(ServerConfig::new(vec![app()]).with_cluster(Some(cluster))).await;
    assert!(server.cluster_ready(PATIENCE).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Survivors reaped it while it was paused: no lease, no state, not in the node set.
    backend.delete_under(&prefix).await;
    let mut conn = backend.conn().await;
    // It writes before its next heartbeat, and could die before it: the node set must name
    // it, or nobody would ever reap what it wrote.
    let mut client = Client::connect(addr).await;
    client.subscribe("chat").await;
    client.subscribe_presence("presence-chat", "u").await;
    let node_state = format!("{{{prefix}}}:node:r1");
    eventually_async("the node's state is written", || {
        let key = node_state.clone();
        let mut conn = conn.clone();
        async move {
            redis::cmd("HLEN")
                .arg(key)
                .query_async::<usize>(&mut conn)
                .await
                .unwrap()
                == 3
        }
    })
    .await;
    let listed: bool = redis::cmd("SISMEMBER")
        .arg(format!("{{{prefix}}}:nodes"))
        .arg("r1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(listed, "a node holding state is in the node set");
    drop(client);
    server.shutdown(PATIENCE).await;
}

async fn a_return_on_another_node_within_the_leave_delay_sends_no_leave_webhook(backend: &Backend) {
    let prefix = unique_prefix("moved");
    let (hooks, hooks_url) = webhook_receiver().await;
    let node = |id: &str| {
        let cluster = backend
            .config()
            .with_key_prefix(prefix.to_string())
            .with_node_id(id)
            .with_lease(Duration::from_millis(1500));
        ServerConfig::new(vec![app().with_webhook_url(hooks_url.clone())])
            .with_leave_delay(Duration::from_secs(2))
            .with_cluster(Some(cluster))
    };
    let (s1, a1) = start(node("m1")).await;
    let (s2, a2) = start(node("m2")).await;
    assert!(s1.cluster_ready(PATIENCE).await && s2.cluster_ready(PATIENCE).await);

    // A page reload that lands on the other node: the channel and the member leave node 1
    // and are back on node 2 before the leave webhooks are due.
    let room = "presence-moved";
    let mut before = Client::connect(a1).await;
    before.subscribe_presence(room, "u").await;
    eventually("the arrival webhooks", || {
        hooks.count("channel_occupied", room) == 1 && hooks.count("member_added", room) == 1
    })
    .await;
    drop(before);
    eventually_async("node 1 let go of the member", || async {
        keys_under(backend, &prefix)
            .await
            .iter()
            .all(|k| !k.ends_with(":members"))
    })
    .await;
    let mut after = Client::connect(a2).await;
    after.subscribe_presence(room, "u").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The receiver's last word on the channel and the member must be that they are there.
    assert_eq!(hooks.count("channel_vacated", room), 0);
    assert_eq!(hooks.count("member_removed", room), 0);
    drop(after);
    shut_down(backend, &prefix, &[s1, s2]).await;
}

/// Each test of the list, against one Redis server and against a Redis Cluster.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod one_server {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&super::Backend::single()).await
                }
            )*
        }
        mod redis_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&super::Backend::cluster()).await
                }
            )*
        }
    };
}

on_both_backends!(
    three_processes_act_as_one_and_clean_up_a_killed_node,
    embedded_nodes_share_client_events_exclusions_and_fire_webhooks_once,
    the_presence_member_limit_counts_every_node,
    a_node_that_left_writes_nothing_more_to_redis,
    member_frames_still_arrive_after_redis_lost_the_member_versions,
    a_reaped_node_that_writes_again_can_be_reaped_again,
    a_return_on_another_node_within_the_leave_delay_sends_no_leave_webhook,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster_the_bus_is_sharded_over_the_masters() {
    let backend = Backend::cluster();
    let Backend::Cluster(cluster) = backend else {
        unreachable!()
    };
    let prefix = unique_prefix("shards");
    let (_hooks, hooks_url) = webhook_receiver().await;
    let (s1, _) = embedded_node(&backend, &prefix, "h1", &hooks_url).await;
    let (s2, _) = embedded_node(&backend, &prefix, "h2", &hooks_url).await;
    // Each master lists the shard channels it serves; both nodes subscribe to every one.
    let mut shards_per_master = Vec::new();
    let mut all = Vec::new();
    for port in cluster.masters().unwrap() {
        let listed = cluster
            .cli(
                port,
                &["PUBSUB", "SHARDCHANNELS", &format!("{prefix}:bus:*")],
            )
            .unwrap();
        let names: Vec<String> = listed.lines().map(str::to_owned).collect();
        for name in &names {
            let counted = cluster.cli(port, &["PUBSUB", "SHARDNUMSUB", name]).unwrap();
            assert_eq!(counted.lines().nth(1), Some("2"), "{name}: {counted}");
        }
        shards_per_master.push(names.len());
        all.extend(names);
    }
    all.sort();
    assert_eq!(all.len(), 16, "{all:?}");
    assert!(
        shards_per_master.iter().filter(|&&n| n > 0).count() >= 2,
        "the shards spread over the masters: {shards_per_master:?}"
    );
    shut_down(&backend, &prefix, &[s1, s2]).await;
}

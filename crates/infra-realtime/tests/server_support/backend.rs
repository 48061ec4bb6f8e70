//! The Redis a clustered test's nodes share: the local server (127.0.0.1:6379) or a local
//! Redis Cluster of the test binary's own (three masters, three replicas), so the same test
//! runs against both.

use std::sync::OnceLock;

use infra_core::testkit::redis_cluster::LocalRedisCluster;
use infra_realtime::server::{ClusterConfig, REDIS_CLUSTER_NODES_VAR, REDIS_URL_VAR};
use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::REDIS_URL;

/// Started by the first test that needs it; its servers stop when the test binary ends.
static CLUSTER: OnceLock<LocalRedisCluster> = OnceLock::new();

/// Where the nodes of a test meet.
#[derive(Clone, Copy)]
pub enum Backend {
    Single,
    Cluster(&'static LocalRedisCluster),
}

/// A command connection to either backend.
#[derive(Clone)]
pub enum TestConn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for TestConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            TestConn::Single(c) => c.req_packed_command(cmd),
            TestConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            TestConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            TestConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            TestConn::Single(c) => c.get_db(),
            TestConn::Cluster(c) => c.get_db(),
        }
    }
}

impl Backend {
    pub fn single() -> Self {
        Backend::Single
    }

    pub fn cluster() -> Self {
        Backend::Cluster(CLUSTER.get_or_init(|| {
            LocalRedisCluster::builder()
                .start()
                .expect("a local Redis Cluster (redis-server and redis-cli ≥ 7)")
        }))
    }

    /// The variable and value that point a server process at this backend.
    pub fn env(&self) -> (&'static str, String) {
        match self {
            Backend::Single => (REDIS_URL_VAR, REDIS_URL.to_owned()),
            Backend::Cluster(c) => (REDIS_CLUSTER_NODES_VAR, c.nodes_variable()),
        }
    }

    /// An embedded node's cluster settings, under the default prefix.
    pub fn config(&self) -> ClusterConfig {
        match self {
            Backend::Single => ClusterConfig::new(REDIS_URL).unwrap(),
            Backend::Cluster(c) => ClusterConfig::redis_cluster(c.urls()).unwrap(),
        }
    }

    pub async fn conn(&self) -> TestConn {
        match self {
            Backend::Single => TestConn::Single(
                redis::Client::open(REDIS_URL)
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .expect("the local Redis on 127.0.0.1:6379"),
            ),
            Backend::Cluster(c) => TestConn::Cluster(
                redis::cluster::ClusterClient::new(c.urls())
                    .unwrap()
                    .get_async_connection()
                    .await
                    .expect("the local Redis Cluster"),
            ),
        }
    }

    /// Every key under the prefix (`prefix:…` and the hash-tagged `{prefix}:…`), sorted; on
    /// a cluster from every master.
    pub async fn keys_under(&self, prefix: &str) -> Vec<String> {
        let servers = match self {
            Backend::Single => vec![REDIS_URL.to_owned()],
            Backend::Cluster(c) => c
                .masters()
                .unwrap()
                .into_iter()
                .map(|port| format!("redis://127.0.0.1:{port}"))
                .collect(),
        };
        let mut keys = Vec::new();
        for server in servers {
            let mut conn = redis::Client::open(server)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            for pattern in [format!("{prefix}:*"), format!("{{{prefix}}}:*")] {
                let found: Vec<String> = redis::cmd("KEYS")
                    .arg(pattern)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                keys.extend(found);
            }
        }
        keys.sort();
        keys
    }

    /// Deletes every key under the prefix, one at a time (a cluster refuses a `DEL` across
    /// slots).
    pub async fn delete_under(&self, prefix: &str) {
        let mut conn = self.conn().await;
        for key in self.keys_under(prefix).await {
            let _: () = redis::cmd("DEL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
}

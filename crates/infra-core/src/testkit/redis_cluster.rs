//! A Redis Cluster of the test's own: by default three masters and three replicas of
//! `redis-server --cluster-enabled yes` on free loopback ports, each in its own temporary
//! directory, joined by `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`.
//!
//! Tests, benchmarks and `cargo xtask faults` start one where they need a cluster, the way they
//! start a private `redis-server` for faults: the shared Redis on 6379 is never touched. Each
//! server runs under a small `sh` guard reading the parent's pipe; when the owning process
//! ends — normally, by a panic or by `SIGKILL` — the pipe closes and the guard kills its server
//! and removes its directory, so a cluster kept in a `static` for a whole test binary is still
//! stopped afterwards. [`Drop`] stops everything at once.
//!
//! Starting fails (never skips) with an error naming what is missing: `redis-server` or
//! `redis-cli` not installed, a Redis older than 7 (whose cluster bus port cannot be chosen),
//! a server that did not start, or a cluster that did not converge.
//!
//! ```no_run
//! use infra_core::testkit::redis_cluster::LocalRedisCluster;
//!
//! let cluster = LocalRedisCluster::builder().start().expect("a local Redis Cluster");
//! // `redis://127.0.0.1:p1,redis://127.0.0.1:p2,…`, the value of REDIS_CLUSTER_NODES.
//! let nodes = cluster.nodes_variable();
//! # drop(nodes);
//! ```

use std::io::{self, BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a fresh cluster may take to agree on its slots and replicas.
const CONVERGE: Duration = Duration::from_secs(60);

/// Attempts at starting, each on fresh ports: a port found free can be taken by another
/// process before the server binds it.
const ATTEMPTS: usize = 3;

/// The guard around each server: prints the server's pid, waits for the parent's pipe to
/// close, then kills the server and removes its directory.
const GUARD: &str = r#"dir="$1"; shift
redis-server "$@" </dev/null >"$dir/stdout.log" 2>&1 &
pid=$!
echo "$pid"
read _ignored
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir"
rmdir "$(dirname "$dir")" 2>/dev/null
exit 0
"#;

/// Settings of a [`LocalRedisCluster`]; [`start`](LocalRedisClusterBuilder::start) launches it.
#[derive(Debug, Clone)]
pub struct LocalRedisClusterBuilder {
    masters: usize,
    replicas_per_master: usize,
    node_timeout: Duration,
    password: Option<String>,
}

impl LocalRedisClusterBuilder {
    /// Masters (at least 3, Redis Cluster's minimum). Default 3.
    pub fn masters(mut self, masters: usize) -> Self {
        self.masters = masters.max(3);
        self
    }

    /// Replicas of each master. Default 1.
    pub fn replicas_per_master(mut self, replicas: usize) -> Self {
        self.replicas_per_master = replicas;
        self
    }

    /// `cluster-node-timeout`: how long a node may be unreachable before it is failed over.
    /// Default 3 s: short enough for a fault test, long enough that a loaded machine does not
    /// fail a slow master over by itself.
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// Every node requires this password (`requirepass`, `masterauth`); the URLs carry it.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Starts the servers, joins them into a cluster and waits until every node reports
    /// `cluster_state:ok` with all slots assigned and every replica in sync.
    pub fn start(self) -> io::Result<LocalRedisCluster> {
        check_tools()?;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match self.try_start() {
                Ok(cluster) => return Ok(cluster),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("the cluster did not start")))
    }

    fn try_start(&self) -> io::Result<LocalRedisCluster> {
        let count = self.masters * (1 + self.replicas_per_master);
        let ports = free_ports(count * 2)?;
        let dir = std::env::temp_dir().join(format!(
            "infra-redis-cluster-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = LocalRedisCluster {
            nodes: Vec::with_capacity(count),
            dir,
            password: self.password.clone(),
        };
        for i in 0..count {
            let node = cluster.spawn(ports[2 * i], ports[2 * i + 1], self)?;
            cluster.nodes.push(node);
        }
        for node in &cluster.nodes {
            wait_for_port(node)?;
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        create
            .arg("--cluster-replicas")
            .arg(self.replicas_per_master.to_string())
            .arg("--cluster-yes");
        cluster.authenticate(&mut create);
        let out = create.stdin(Stdio::null()).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        cluster.wait_until_converged(CONVERGE)?;
        Ok(cluster)
    }
}

/// A running local Redis Cluster; stopped (servers killed, directories removed) when dropped.
#[derive(Debug)]
pub struct LocalRedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
    password: Option<String>,
}

/// One `redis-server` of the cluster.
#[derive(Debug)]
struct Node {
    port: u16,
    /// The server's process id (for `SIGKILL`).
    pid: u32,
    /// The guard shell: closing its stdin stops the server.
    guard: Child,
    pipe: Option<ChildStdin>,
    killed: bool,
    dir: PathBuf,
}

/// One node as `CLUSTER NODES` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNodeInfo {
    /// The node's client port on 127.0.0.1.
    pub port: u16,
    /// Serves slots (a master) rather than replicating one.
    pub master: bool,
    /// The client port of the master this node replicates, for a replica.
    pub master_port: Option<u16>,
    /// Flagged `fail` or `fail?` by the node asked.
    pub failed: bool,
    /// Slot ranges served (inclusive), for a master.
    pub slots: Vec<(u16, u16)>,
}

impl LocalRedisCluster {
    /// Three masters, one replica each, a 3 s node timeout, no password.
    pub fn builder() -> LocalRedisClusterBuilder {
        LocalRedisClusterBuilder {
            masters: 3,
            replicas_per_master: 1,
            node_timeout: Duration::from_secs(3),
            password: None,
        }
    }

    /// The nodes' URLs (`redis://[:password@]127.0.0.1:port`), killed nodes included.
    pub fn urls(&self) -> Vec<String> {
        let auth = self
            .password
            .as_deref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        self.nodes
            .iter()
            .map(|n| format!("redis://{auth}127.0.0.1:{}", n.port))
            .collect()
    }

    /// The URLs joined by commas: the value of `REDIS_CLUSTER_NODES`.
    pub fn nodes_variable(&self) -> String {
        self.urls().join(",")
    }

    /// The temporary directory holding one sub-directory per node (`node-<port>`, with the
    /// server's `redis.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every node's client port, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Runs `redis-cli` against the node on `port` and returns its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> io::Result<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args);
        self.authenticate(&mut cmd);
        let out = cmd.stdin(Stdio::null()).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli -p {port} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The cluster as the live node on `port` sees it (`CLUSTER NODES`).
    pub fn topology(&self, port: u16) -> io::Result<Vec<ClusterNodeInfo>> {
        let text = self.cli(port, &["CLUSTER", "NODES"])?;
        Ok(parse_cluster_nodes(&text))
    }

    /// The live node ports currently serving slots, as the first live node sees it.
    pub fn masters(&self) -> io::Result<Vec<u16>> {
        let asked = self.live_port()?;
        Ok(self
            .topology(asked)?
            .into_iter()
            .filter(|n| n.master && !n.failed && !n.slots.is_empty())
            .map(|n| n.port)
            .collect())
    }

    /// The port of the live master serving `slot`, as the first live node sees it.
    pub fn master_of(&self, slot: u16) -> io::Result<u16> {
        self.topology(self.live_port()?)?
            .into_iter()
            .find(|n| {
                n.master && !n.failed && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
            })
            .map(|n| n.port)
            .ok_or_else(|| io::Error::other(format!("no live master serves slot {slot}")))
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`, Redis's own answer).
    pub fn key_slot(&self, key: &str) -> io::Result<u16> {
        let answer = self.cli(self.live_port()?, &["CLUSTER", "KEYSLOT", key])?;
        answer
            .trim()
            .parse()
            .map_err(|_| io::Error::other(format!("CLUSTER KEYSLOT answered `{answer}`")))
    }

    /// Kills (`SIGKILL`) the server on `port`, as a crash would.
    pub fn kill(&mut self, port: u16) -> io::Result<()> {
        self.signal(port, "KILL")?;
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            node.killed = true;
        }
        Ok(())
    }

    /// Sends `signal` (`STOP` to freeze the server with its sockets open, `CONT` to resume it)
    /// to the server on `port`.
    pub fn signal(&self, port: u16, signal: &str) -> io::Result<()> {
        let node =
            self.nodes.iter().find(|n| n.port == port).ok_or_else(|| {
                io::Error::other(format!("no node of this cluster on port {port}"))
            })?;
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &node.pid.to_string()])
            .status()?;
        if !status.success() {
            return Err(io::Error::other(format!(
                "kill -{signal} {} failed",
                node.pid
            )));
        }
        Ok(())
    }

    /// Waits until every live node reports `cluster_state:ok`, with every slot assigned and,
    /// for a replica, its link to its master up.
    pub fn wait_until_converged(&self, patience: Duration) -> io::Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            match self.converged() {
                Ok(()) => return Ok(()),
                Err(why) if Instant::now() >= deadline => {
                    return Err(io::Error::other(format!(
                        "the local Redis Cluster did not converge within {patience:?}: {why}"
                    )));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn converged(&self) -> Result<(), String> {
        // Every live node sees the same roles of the live nodes (gossip settled: a client
        // asking any of them for the slot map learns every replica).
        let live: Vec<u16> = self
            .nodes
            .iter()
            .filter(|n| !n.killed)
            .map(|n| n.port)
            .collect();
        let mut first_view = None;
        for &port in &live {
            let mut view: Vec<(u16, bool, Option<u16>, bool)> = self
                .topology(port)
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|n| live.contains(&n.port))
                .map(|n| (n.port, n.master, n.master_port, n.failed))
                .collect();
            view.sort_unstable();
            if view.len() != live.len() || view.iter().any(|n| n.3) {
                return Err(format!(
                    "node {port} does not see every live node healthy yet"
                ));
            }
            match &first_view {
                None => first_view = Some(view),
                Some(first) if *first != view => {
                    return Err(format!(
                        "node {port} sees other roles than node {}",
                        live[0]
                    ));
                }
                Some(_) => {}
            }
        }
        for &port in &live {
            // `CLUSTER SHARDS` says `online` for a node clients may use (`loading` for a
            // replica whose offset has not moved yet).
            let shards = self
                .cli(port, &["CLUSTER", "SHARDS"])
                .map_err(|e| e.to_string())?;
            let online = shards.lines().filter(|l| l.trim() == "online").count();
            if online < live.len() {
                return Err(format!(
                    "node {port} sees {online} of {} nodes online",
                    live.len()
                ));
            }
        }
        for node in self.nodes.iter().filter(|n| !n.killed) {
            let info = self
                .cli(node.port, &["CLUSTER", "INFO"])
                .map_err(|e| e.to_string())?;
            for want in ["cluster_state:ok", "cluster_slots_assigned:16384"] {
                if !info.lines().any(|l| l.trim() == want) {
                    return Err(format!("node {} lacks {want}", node.port));
                }
            }
            let replication = self
                .cli(node.port, &["INFO", "replication"])
                .map_err(|e| e.to_string())?;
            let replica = replication.lines().any(|l| l.trim() == "role:slave");
            if replica
                && !replication
                    .lines()
                    .any(|l| l.trim() == "master_link_status:up")
            {
                return Err(format!("replica {} is not in sync", node.port));
            }
        }
        Ok(())
    }

    fn live_port(&self) -> io::Result<u16> {
        self.nodes
            .iter()
            .find(|n| !n.killed)
            .map(|n| n.port)
            .ok_or_else(|| io::Error::other("every node of the cluster was killed"))
    }

    fn authenticate(&self, cmd: &mut Command) {
        if let Some(password) = &self.password {
            // Through the environment: `-a` on the command line warns and shows in `ps`.
            cmd.env("REDISCLI_AUTH", password);
        }
    }

    fn spawn(
        &self,
        port: u16,
        bus_port: u16,
        settings: &LocalRedisClusterBuilder,
    ) -> io::Result<Node> {
        let dir = self.dir.join(format!("node-{port}"));
        std::fs::create_dir_all(&dir)?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(GUARD)
            .arg("infra-redis-cluster-guard")
            .arg(&dir)
            .args(["--port", &port.to_string()])
            .args(["--cluster-port", &bus_port.to_string()])
            .args(["--bind", "127.0.0.1", "--cluster-enabled", "yes"])
            .arg("--cluster-config-file")
            .arg(dir.join("nodes.conf"))
            .args([
                "--cluster-node-timeout",
                &settings.node_timeout.as_millis().to_string(),
            ])
            .arg("--dir")
            .arg(&dir)
            .args(["--save", "", "--appendonly", "no"])
            // A replica is listed in `CLUSTER SLOTS` (where clients learn of it) once its
            // replication offset has moved, which the master's pings do: every second here
            // rather than every ten, so a fresh cluster's replicas are usable at once.
            .args(["--repl-ping-replica-period", "1"])
            .arg("--logfile")
            .arg(dir.join("redis.log"));
        if let Some(password) = &settings.password {
            cmd.args(["--requirepass", password, "--masterauth", password]);
        }
        let mut guard = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut first = String::new();
        if let Some(out) = guard.stdout.take() {
            BufReader::new(out).read_line(&mut first)?;
        }
        let pid = first.trim().parse::<u32>().map_err(|_| {
            io::Error::other(format!(
                "the guard of port {port} printed no pid: `{first}`"
            ))
        })?;
        Ok(Node {
            port,
            pid,
            pipe: guard.stdin.take(),
            guard,
            killed: false,
            dir,
        })
    }
}

impl Drop for LocalRedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            // EOF on the guard's stdin: it kills the server and removes the node's directory.
            drop(node.pipe.take());
        }
        for node in &mut self.nodes {
            let _ = node.guard.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Parses `CLUSTER NODES`: one line per node, `<id> <ip:port@bus> <flags> <master-id> <ping>
/// <pong> <epoch> <link> <slot ranges…>`.
fn parse_cluster_nodes(text: &str) -> Vec<ClusterNodeInfo> {
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 8)
        .collect();
    let port_of = |address: &str| -> Option<u16> {
        let host_port = address.split(['@', ',']).next()?;
        host_port.rsplit_once(':')?.1.parse().ok()
    };
    let port_by_id = |id: &str| {
        lines
            .iter()
            .find(|f| f[0] == id)
            .and_then(|f| port_of(f[1]))
    };
    lines
        .iter()
        .filter_map(|f| {
            let flags: Vec<&str> = f[2].split(',').collect();
            let slots = f[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .filter_map(|r| match r.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => r.parse().ok().map(|s| (s, s)),
                })
                .collect();
            Some(ClusterNodeInfo {
                port: port_of(f[1])?,
                master: flags.contains(&"master"),
                master_port: (f[3] != "-").then(|| port_by_id(f[3])).flatten(),
                failed: flags.iter().any(|s| *s == "fail" || *s == "fail?"),
                slots,
            })
        })
        .collect()
}

fn check_tools() -> io::Result<()> {
    let version = Command::new("redis-server")
        .arg("--version")
        .output()
        .map_err(|e| {
            io::Error::other(format!(
                "redis-server is not installed ({e}); the cluster tests need Redis 7 or later \
                 (.ci/run installs it)"
            ))
        })?;
    let text = String::from_utf8_lossy(&version.stdout);
    let major = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    if major.is_none_or(|m| m < 7) {
        return Err(io::Error::other(format!(
            "a local Redis Cluster needs redis-server 7 or later (for --cluster-port), found `{}`",
            text.trim()
        )));
    }
    Command::new("redis-cli")
        .arg("--version")
        .output()
        .map_err(|e| io::Error::other(format!("redis-cli is not installed ({e})")))?;
    Ok(())
}

/// `n` distinct ports free right now.
fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

fn wait_for_port(node: &Node) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", node.port)).is_err() {
        if Instant::now() >= deadline {
            let mut log = String::new();
            if let Ok(mut file) = std::fs::File::open(node.dir.join("redis.log")) {
                let _ = file.read_to_string(&mut log);
            }
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            return Err(io::Error::other(format!(
                "redis-server did not start on port {}: {}",
                node.port,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::parse_cluster_nodes;

    #[test]
    fn cluster_nodes_lines_give_roles_slots_and_failures() {
        let text = "\
27087b 127.0.0.1:7303@7403 master - 0 1 3 connected 10923-16383
a66745 127.0.0.1:7305@7405 slave bbdbdf 0 1 2 connected
0196bf 127.0.0.1:7301@7401,host myself,master - 0 1 1 connected 0-5460 [5461->-bbdbdf]
bbdbdf 127.0.0.1:7302@7402 master,fail - 0 1 2 disconnected
f98684 127.0.0.1:7306@7406 master - 0 1 4 connected 5461-10922
";
        let nodes = parse_cluster_nodes(text);
        assert_eq!(nodes.len(), 5);
        assert_eq!(
            (nodes[0].port, nodes[0].slots.clone()),
            (7303, vec![(10923, 16383)])
        );
        assert_eq!(nodes[1].master_port, Some(7302));
        assert!(!nodes[1].master);
        assert_eq!(
            (nodes[2].port, nodes[2].slots.clone()),
            (7301, vec![(0, 5460)])
        );
        assert!(nodes[3].failed && nodes[3].slots.is_empty());
        assert_eq!(nodes[4].slots, vec![(5461, 10922)]);
    }
}

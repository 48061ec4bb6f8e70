//! Makes sure PostgreSQL and Redis answer before tests run: starts a local one that is down,
//! fails naming whatever is still missing. Tests never skip a service. The Redis Cluster tests
//! start clusters of their own; this checks one can start here (redis-server 7+, redis-cli).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

struct Service {
    name: &'static str,
    variable: &'static str,
    default_url: &'static str,
    default_port: u16,
    answers: fn(&mut TcpStream) -> bool,
    start: &'static str,
}

const SERVICES: [Service; 2] = [
    Service {
        name: "PostgreSQL",
        variable: "DATABASE_URL",
        default_url: "postgres://postgres@127.0.0.1:5432/test",
        default_port: 5432,
        answers: postgres_answers,
        start: "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | sort -V | tail -n1) main start",
    },
    Service {
        name: "Redis",
        variable: "REDIS_URL",
        default_url: "redis://127.0.0.1:6379",
        default_port: 6379,
        answers: redis_answers,
        start: "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
    },
];

/// Checks every service, starting local ones that are down.
pub fn ensure_running() -> Result<()> {
    let mut missing = Vec::new();
    for service in &SERVICES {
        let url = std::env::var(service.variable).unwrap_or_else(|_| service.default_url.into());
        let (host, port) = host_port(&url, service.default_port)?;
        if probe(&host, port, service.answers) {
            println!("  {} answers on {host}:{port}", service.name);
            continue;
        }
        let local = matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1");
        if local && port == service.default_port {
            println!(
                "  {} is down on {host}:{port}; starting it: {}",
                service.name, service.start
            );
            let _ = Command::new("sh").arg("-c").arg(service.start).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && !probe(&host, port, service.answers) {
                std::thread::sleep(Duration::from_millis(250));
            }
            if probe(&host, port, service.answers) {
                println!("  {} started and answers", service.name);
                continue;
            }
        }
        missing.push(format!(
            "{} does not answer on {host}:{port} (from {}; start it, or point {} at one)",
            service.name, service.variable, service.variable
        ));
    }
    let started = Instant::now();
    match infra::core::testkit::redis_cluster::LocalRedisCluster::builder().start() {
        Ok(cluster) => {
            println!(
                "  a local Redis Cluster (3 masters, 3 replicas) starts: {} nodes in {} ms",
                cluster.ports().len(),
                started.elapsed().as_millis()
            );
        }
        Err(err) => missing.push(format!(
            "a local Redis Cluster cannot start ({err}); the cluster tests need redis-server 7+ \
             and redis-cli"
        )),
    }
    if !missing.is_empty() {
        bail!(
            "services missing, tests cannot run:\n  {}",
            missing.join("\n  ")
        );
    }
    Ok(())
}

fn host_port(url: &str, default_port: u16) -> Result<(String, u16)> {
    // Only the authority is needed; split by hand to avoid printing or parsing a password.
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, p.parse().unwrap_or(default_port))
        }
        _ => (host_port, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((
        if host.is_empty() {
            "127.0.0.1".into()
        } else {
            host.into()
        },
        port,
    ))
}

fn probe(host: &str, port: u16, answers: fn(&mut TcpStream) -> bool) -> bool {
    let Ok(mut addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    let Some(addr) = addrs.next() else {
        return false;
    };
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(mut stream) => {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
            answers(&mut stream)
        }
        Err(_) => false,
    }
}

/// PostgreSQL answers an SSLRequest with one byte, `S` or `N`.
fn postgres_answers(stream: &mut TcpStream) -> bool {
    let ssl_request = [0u8, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let mut reply = [0u8; 1];
    stream.write_all(&ssl_request).is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && matches!(reply[0], b'S' | b'N')
}

/// Redis answers `PING` with `+PONG` (or `-NOAUTH`, which still proves it is Redis).
fn redis_answers(stream: &mut TcpStream) -> bool {
    let mut reply = [0u8; 5];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && (reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAU"))
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn host_and_port_from_urls() {
        assert_eq!(
            host_port("postgres://u:p@db:6543/x", 5432).unwrap(),
            ("db".into(), 6543)
        );
        assert_eq!(
            host_port("redis://127.0.0.1", 6379).unwrap(),
            ("127.0.0.1".into(), 6379)
        );
        assert_eq!(
            host_port("redis://:pw@[::1]:7000/0", 6379).unwrap(),
            ("::1".into(), 7000)
        );
    }
}

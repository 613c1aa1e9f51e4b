//! Real servers for tests: `redis-server` and a Redis Cluster on free loopback ports.
//!
//! - [`free_port`]: a loopback port nobody listens on right now.
//! - [`RedisServer`]: one `redis-server` in its own temporary directory, gone on drop.
//! - [`RedisCluster`]: several cluster-enabled servers joined with `redis-cli --cluster
//!   create`, every slot served, gone on drop.
//!
//! Every server runs under a small shell guard that holds the read end of a pipe whose write
//! end only this process holds: when the test process ends, however it ends (a panic, an
//! abort, a server kept in a `static` that is never dropped), the pipe closes and the guard
//! stops its server. No test leaves a `redis-server` behind.
//!
//! What it does not do: anything async (callers poll with blocking sockets), or install
//! Redis (`make test` does; the binaries are taken from `PATH`).

mod resp;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

pub use resp::command as redis_command;

/// How long a server may take to answer PING, or a cluster to report `cluster_state:ok`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a server that is not up yet is probed.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// Starts tried before giving up: another process may grab a port between
/// [`free_port`] and the server binding it.
const START_ATTEMPTS: usize = 5;

const REDIS_MISSING: &str =
    "redis-server not found: run `make test`, which installs it, or apt-get install redis-server";

/// Starts `redis-server` with the given arguments in the background and stops it when stdin
/// reaches end of file (this process closed it or ended). Exits when the server exits, so the
/// caller sees a server that died (say, on a port clash) as a finished child. (A background
/// job's stdin is /dev/null, so the watcher reads the pipe through a copy on fd 3.)
const GUARD_SCRIPT: &str = r#"
redis-server "$@" &
server=$!
exec 3<&0
( read -r _unused <&3; kill "$server" 2>/dev/null ) &
wait "$server"
"#;

/// A loopback TCP port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for a free port");
    listener
        .local_addr()
        .expect("read the local address of a bound listener")
        .port()
}

/// One `redis-server` on 127.0.0.1, in its own temporary directory. Dropping it stops the
/// server and waits for it.
pub struct RedisServer {
    port: u16,
    /// Holds the guard's stdin open; closing it stops the server.
    guard_stdin: Option<ChildStdin>,
    guard: Child,
    /// Working directory (logs, cluster state, dumps); removed after the server stops.
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A server without persistence (`--save "" --appendonly no`).
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// A server with extra `redis-server` arguments, given after the defaults so that they
    /// win (e.g. `["--appendonly", "yes"]`).
    pub fn start_with_args(extra_args: &[&str]) -> Self {
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match Self::try_start(port, extra_args) {
                Ok(server) => return server,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("redis-server did not start after {START_ATTEMPTS} attempts: {last_failure}");
    }

    fn try_start(port: u16, extra_args: &[&str]) -> Result<Self, String> {
        require_binary("redis-server");
        let dir = tempfile::tempdir().map_err(|error| format!("temp dir: {error}"))?;
        let port_text = port.to_string();
        let log_file = dir.path().join("redis.log");
        let mut args: Vec<&str> = vec![
            "--port",
            &port_text,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            log_file.to_str().ok_or("temp dir path is not UTF-8")?,
        ];
        args.extend_from_slice(extra_args);
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(GUARD_SCRIPT)
            .arg("redis-guard")
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("spawn sh: {error}"))?;
        let guard_stdin = guard.stdin.take();
        let mut server = Self {
            port,
            guard_stdin,
            guard,
            dir,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if matches!(redis_command(port, &["PING"]), Ok(reply) if reply == "PONG") {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.guard.try_wait() {
                return Err(format!(
                    "redis-server on port {port} exited ({status}): {}",
                    server.log_tail()
                ));
            }
            if Instant::now() > deadline {
                let failure = format!(
                    "redis-server on port {port} did not answer PING within {STARTUP_TIMEOUT:?}: {}",
                    server.log_tail()
                );
                server.stop();
                return Err(failure);
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// `redis://127.0.0.1:PORT`, the URL `RedisStore::connect` takes.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (its log is `redis.log` there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends one command and answers the reply as text (see [`redis_command`]).
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        redis_command(self.port, args)
    }

    /// Stops the server now and waits for it (what dropping it does).
    pub fn stop(&mut self) {
        // Closing the pipe makes the guard kill the server and reap it, then exit.
        drop(self.guard_stdin.take());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match self.guard.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => {
                    let _ = self.guard.kill();
                    let _ = self.guard.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(POLL_EVERY),
            }
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of `masters` primaries without replicas, every slot assigned. Dropping it
/// stops every node.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` cluster-enabled servers (at least 3, Redis's minimum), joins them and
    /// waits until every node reports `cluster_state:ok`.
    pub fn start(masters: usize) -> Self {
        assert!(masters >= 3, "a Redis Cluster needs at least 3 masters");
        require_binary("redis-cli");
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                // The bus port is chosen too: the default (port + 10000) may be taken or
                // beyond 65535 for a port from the ephemeral range.
                let bus_port = free_port().to_string();
                RedisServer::start_with_args(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    "--cluster-port",
                    &bus_port,
                ])
            })
            .collect();
        let cluster = Self { nodes };
        cluster.create();
        cluster.wait_until_ok();
        cluster
    }

    fn create(&self) {
        let addresses: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        for node in &self.nodes {
            loop {
                let info = node.command(&["CLUSTER", "INFO"]).unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {} did not reach cluster_state:ok within {STARTUP_TIMEOUT:?}: {info}",
                    node.port()
                );
                std::thread::sleep(POLL_EVERY);
            }
        }
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...`, the URL `RedisStore::connect` takes.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// The nodes, in the order they were started.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}

/// Panics with the install hint if `binary` is not on PATH.
fn require_binary(binary: &str) {
    match Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Err(error) if error.kind() == ErrorKind::NotFound => {
            if binary == "redis-server" {
                panic!("{REDIS_MISSING}");
            }
            panic!(
                "{binary} not found: run `make test`, which installs it, or apt-get install redis-tools"
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_answers_and_goes_away_on_drop() {
        let server = RedisServer::start();
        let port = server.port();
        assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
        assert_eq!(server.command(&["SET", "k", "v"]).unwrap(), "OK");
        assert_eq!(server.command(&["GET", "k"]).unwrap(), "v");
        drop(server);
        assert!(redis_command(port, &["PING"]).is_err());
    }

    #[test]
    fn two_servers_get_different_ports() {
        let first = RedisServer::start();
        let second = RedisServer::start();
        assert_ne!(first.port(), second.port());
    }

    #[test]
    fn extra_arguments_reach_the_server() {
        let server = RedisServer::start_with_args(&["--maxmemory", "12345678"]);
        let reply = server.command(&["CONFIG", "GET", "maxmemory"]).unwrap();
        assert!(reply.contains("12345678"), "{reply}");
    }

    #[test]
    fn cluster_serves_every_slot_and_stops_on_drop() {
        let cluster = RedisCluster::start(3);
        let ports: Vec<u16> = cluster.nodes().iter().map(RedisServer::port).collect();
        assert_eq!(
            cluster.url(),
            format!(
                "redis+cluster://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
                ports[0], ports[1], ports[2]
            )
        );
        let info = cluster.nodes()[0].command(&["CLUSTER", "INFO"]).unwrap();
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        assert!(info.contains("cluster_known_nodes:3"), "{info}");
        drop(cluster);
        for port in ports {
            assert!(redis_command(port, &["PING"]).is_err());
        }
    }
}

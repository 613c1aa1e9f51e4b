//! Real servers for tests: `redis-server` and a Redis Cluster on free loopback ports, and a
//! throwaway PKI ([`TestPki`]) for TLS tests.
//!
//! - [`free_port`]: a loopback port nobody listens on right now.
//! - [`RedisServer`]: one `redis-server` in its own temporary directory, gone on drop; it can
//!   be killed (SIGKILL) and restarted on the same port and data directory, for tests of
//!   what survives a crash (with `--appendonly yes`).
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

mod pki;
mod resp;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

pub use pki::TestPki;
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
    /// The arguments given after the defaults, kept for a restart.
    extra_args: Vec<String>,
    /// Holds the guard's stdin open; closing it stops the server.
    guard_stdin: Option<ChildStdin>,
    guard: Child,
    /// Working directory (logs, cluster state, dumps, the append-only file); removed after
    /// the server stops, kept across a restart.
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
        require_binary("redis-server");
        let extra_args: Vec<String> = extra_args.iter().map(|arg| arg.to_string()).collect();
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let dir = tempfile::tempdir().expect("a temporary directory for redis-server");
            match Self::try_start(port, &extra_args, dir.path()) {
                Ok((guard, guard_stdin)) => {
                    return Self {
                        port,
                        extra_args,
                        guard_stdin: Some(guard_stdin),
                        guard,
                        dir,
                    };
                }
                Err(failure) => last_failure = failure,
            }
        }
        panic!("redis-server did not start after {START_ATTEMPTS} attempts: {last_failure}");
    }

    /// Kills the server with SIGKILL (no shutdown save, no goodbye to clients) and waits for
    /// it to be gone; [`restart`](Self::restart) starts it again. What it had acknowledged
    /// survives only as far as its persistence options say (`--appendonly yes
    /// --appendfsync always`: every acknowledged write).
    pub fn kill9(&mut self) {
        if let Ok(info) = self.command(&["INFO", "server"]) {
            let pid = info
                .lines()
                .find_map(|line| line.strip_prefix("process_id:"))
                .map(|pid| pid.trim().to_owned());
            if let Some(pid) = pid {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
        self.stop();
    }

    /// Starts the server again, stopped or not, on the same port, in the same directory and
    /// with the same arguments, and waits until it answers PING (it has read its data back
    /// by then). Panics if it cannot.
    pub fn restart(&mut self) {
        self.stop();
        let mut last_failure = String::new();
        // The port was ours a moment ago; retried briefly in case the old socket lingers.
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(self.port, &self.extra_args, self.dir.path()) {
                Ok((guard, guard_stdin)) => {
                    self.guard = guard;
                    self.guard_stdin = Some(guard_stdin);
                    return;
                }
                Err(failure) => last_failure = failure,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "redis-server did not restart on port {} after {START_ATTEMPTS} attempts: {last_failure}",
            self.port
        );
    }

    /// Starts a guarded server and waits until it answers PING; answers the guard and the
    /// pipe that keeps it alive.
    fn try_start(
        port: u16,
        extra_args: &[String],
        dir: &Path,
    ) -> Result<(Child, ChildStdin), String> {
        let port_text = port.to_string();
        let log_file = dir.join("redis.log");
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
        args.extend(extra_args.iter().map(String::as_str));
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(GUARD_SCRIPT)
            .arg("redis-guard")
            .args(&args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("spawn sh: {error}"))?;
        let mut guard_stdin = guard.stdin.take();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            // A server loading a large append-only file answers -LOADING until it is done.
            if matches!(redis_command(port, &["PING"]), Ok(reply) if reply == "PONG") {
                let guard_stdin = guard_stdin.take().expect("the guard's stdin is piped");
                return Ok((guard, guard_stdin));
            }
            if let Ok(Some(status)) = guard.try_wait() {
                return Err(format!(
                    "redis-server on port {port} exited ({status}): {}",
                    log_tail(dir)
                ));
            }
            if Instant::now() > deadline {
                let failure = format!(
                    "redis-server on port {port} did not answer PING within {STARTUP_TIMEOUT:?}: {}",
                    log_tail(dir)
                );
                stop_guard(&mut guard, guard_stdin.take());
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
        stop_guard(&mut self.guard, self.guard_stdin.take());
    }
}

/// Stops a guard and its server and waits for them: closing the pipe makes the guard kill
/// the server and reap it, then exit.
fn stop_guard(guard: &mut Child, guard_stdin: Option<ChildStdin>) {
    drop(guard_stdin);
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match guard.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() > deadline => {
                let _ = guard.kill();
                let _ = guard.wait();
                return;
            }
            Ok(None) => std::thread::sleep(POLL_EVERY),
        }
    }
}

/// The last lines of the server log in `dir`, on one line.
fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
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
    fn a_killed_server_restarts_on_its_port_with_its_append_only_data() {
        let mut server =
            RedisServer::start_with_args(&["--appendonly", "yes", "--appendfsync", "always"]);
        let port = server.port();
        assert_eq!(server.command(&["SET", "k", "kept"]).unwrap(), "OK");
        server.kill9();
        assert!(
            redis_command(port, &["PING"]).is_err(),
            "the server is gone"
        );
        server.restart();
        assert_eq!(server.port(), port);
        assert_eq!(server.command(&["GET", "k"]).unwrap(), "kept");
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

//! A deployment: redis-server, a controller, a dispatcher and connectors, each a real
//! `ringpush` process on free loopback ports, and a REST client for the controller.

use std::net::SocketAddr;
use std::time::Duration;

use ringpush_testkit::{RedisServer, free_port};
use serde_json::{Value, json};

use crate::process::{Proc, eventually, wait_for_port};
use crate::watchdog::{self, Watchdog};

/// The bootstrap admin token every harness controller is started with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A connector process and its addresses.
pub struct ConnectorProc {
    pub id: String,
    pub device_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub admin_addr: SocketAddr,
    pub proc: Proc,
}

/// Redis plus the three kinds of process.
pub struct Platform {
    pub redis: RedisServer,
    pub controller_url: String,
    pub dispatcher_url: String,
    /// Where the controller and the dispatcher listen; a restart listens there again.
    pub controller_addr: SocketAddr,
    pub dispatcher_addr: SocketAddr,
    pub controller: Proc,
    pub dispatcher: Proc,
    pub connectors: Vec<ConnectorProc>,
    pub http: reqwest::Client,
    /// More flags for every connector this platform starts ([`PlatformOptions::connector_args`]).
    connector_args: Vec<String>,
    /// [`PlatformOptions::connector_ping_interval_seconds`], for connectors started later.
    connector_ping_interval_seconds: u64,
    /// Aborts the test process, with the logs, if this deployment outlives its limit.
    _watchdog: Watchdog,
    /// Last: fields drop in order, and the processes print their logs from here when they
    /// drop during a panic.
    pub dir: tempfile::TempDir,
}

/// Lease TTL of test connectors: short, so a killed connector leaves the ring quickly.
pub const LEASE_TTL_MS: u64 = 1000;

/// How often test processes re-read the ring by default.
pub const RING_REFRESH_MS: u64 = 100;

fn membership_flags(ring_refresh_ms: u64) -> Vec<String> {
    vec![
        "--lease-ttl-ms".into(),
        LEASE_TTL_MS.to_string(),
        "--ring-refresh-ms".into(),
        ring_refresh_ms.to_string(),
    ]
}

/// What [`Platform::start_with`] starts.
#[derive(Debug, Clone)]
pub struct PlatformOptions {
    /// Connectors started at once.
    pub connectors: usize,
    /// How often the controller re-reads the ring: a long one makes a controller whose view
    /// of the connectors lags the dispatcher's.
    pub controller_ring_refresh_ms: u64,
    /// More flags for the controller.
    pub controller_args: Vec<String>,
    /// More flags for the dispatcher.
    pub dispatcher_args: Vec<String>,
    /// More flags for every connector, those started later included (say, gRPC TLS).
    pub connector_args: Vec<String>,
    /// The keepalive interval connectors name in their Welcome (2 s by default, so that
    /// tests see timeouts quickly; a benchmark of idle devices wants a realistic one).
    pub connector_ping_interval_seconds: u64,
    /// How long the deployment may live before the watchdog aborts the process (a
    /// benchmark runs longer than a test).
    pub watchdog: std::time::Duration,
    /// More `redis-server` arguments (say, `--appendonly yes` for a Redis that restarts
    /// with its data).
    pub redis_args: Vec<String>,
}

/// What [`Platform::add_connector_with`] starts.
#[derive(Debug, Clone, Default)]
pub struct ConnectorOptions {
    /// The Redis URL the connector uses instead of the platform's (say, a
    /// [`TcpProxy`](crate::TcpProxy) in front of it, to cut the connector off).
    pub redis_url: Option<String>,
    /// More environment variables for its process (say, a skewed clock from
    /// [`skewed_clock_env`](crate::clock_skew::skewed_clock_env)).
    pub env: Vec<(String, String)>,
}

impl Default for PlatformOptions {
    fn default() -> Self {
        Self {
            connectors: 1,
            controller_ring_refresh_ms: RING_REFRESH_MS,
            controller_args: Vec::new(),
            dispatcher_args: Vec::new(),
            connector_args: Vec::new(),
            connector_ping_interval_seconds: 2,
            watchdog: watchdog::DEFAULT_LIMIT,
            redis_args: Vec::new(),
        }
    }
}

impl Platform {
    /// Starts Redis, a controller, a dispatcher and `connectors` connectors.
    pub async fn start(connectors: usize) -> Platform {
        Platform::start_with(PlatformOptions {
            connectors,
            ..PlatformOptions::default()
        })
        .await
    }

    /// Starts Redis, a controller, a dispatcher and connectors, as `options` say.
    pub async fn start_with(options: PlatformOptions) -> Platform {
        let connectors = options.connectors;
        let dir = tempfile::tempdir().expect("tempdir");
        let redis_args: Vec<&str> = options.redis_args.iter().map(String::as_str).collect();
        let redis = RedisServer::start_with_args(&redis_args);
        let controller_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let dispatcher_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut args = vec![
            "controller".to_string(),
            "--redis-url".into(),
            redis.url(),
            "--listen".into(),
            controller_addr.to_string(),
            "--admin-token".into(),
            ADMIN_TOKEN.into(),
        ];
        args.extend(membership_flags(options.controller_ring_refresh_ms));
        args.extend(options.controller_args);
        let controller = Proc::spawn("controller", dir.path(), &args);
        let mut args = vec![
            "dispatcher".to_string(),
            "--redis-url".into(),
            redis.url(),
            "--listen".into(),
            dispatcher_addr.to_string(),
        ];
        args.extend(membership_flags(RING_REFRESH_MS));
        args.extend(options.dispatcher_args);
        let dispatcher = Proc::spawn("dispatcher", dir.path(), &args);
        let log_dir = dir.path().to_path_buf();
        let mut platform = Platform {
            controller_url: format!("http://{controller_addr}"),
            dispatcher_url: format!("http://{dispatcher_addr}"),
            controller_addr,
            dispatcher_addr,
            dir,
            redis,
            controller,
            dispatcher,
            connectors: Vec::new(),
            http: reqwest::Client::new(),
            connector_args: options.connector_args,
            connector_ping_interval_seconds: options.connector_ping_interval_seconds,
            _watchdog: Watchdog::start(log_dir, options.watchdog),
        };
        for _ in 0..connectors {
            platform.add_connector().await;
        }
        wait_for_port(controller_addr, Duration::from_secs(20));
        wait_for_port(dispatcher_addr, Duration::from_secs(20));
        platform
    }

    /// Starts one more connector and waits until the dispatcher's ring includes it.
    pub async fn add_connector(&mut self) -> usize {
        self.add_connector_with(ConnectorOptions::default()).await
    }

    /// Starts one more connector as `options` say and waits until the dispatcher's ring
    /// includes it; answers its index in `connectors`.
    pub async fn add_connector_with(&mut self, options: ConnectorOptions) -> usize {
        let index = self.connectors.len();
        let id = format!("c{index}");
        let device_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let grpc_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut args = vec![
            "connector".to_string(),
            "--admin-listen".into(),
            admin_addr.to_string(),
            "--redis-url".into(),
            options.redis_url.unwrap_or_else(|| self.redis.url()),
            "--id".into(),
            id.clone(),
            "--device-listen".into(),
            device_addr.to_string(),
            "--grpc-listen".into(),
            grpc_addr.to_string(),
            "--ping-interval-seconds".into(),
            self.connector_ping_interval_seconds.to_string(),
            "--drain-timeout-seconds".into(),
            "10".into(),
        ];
        args.extend(membership_flags(RING_REFRESH_MS));
        args.extend(self.connector_args.iter().cloned());
        // Tests hold thousands of simulated devices on one loopback address: no bound on
        // connections per address unless the options set one (later entries win).
        let mut env = vec![(
            "RINGPUSH_CONNECTIONS_PER_IP_PER_SECOND".to_owned(),
            "0".to_owned(),
        )];
        env.extend(options.env);
        let proc = Proc::spawn_with_env(&id, self.dir.path(), &args, &env);
        wait_for_port(device_addr, Duration::from_secs(20));
        wait_for_port(grpc_addr, Duration::from_secs(20));
        self.connectors.push(ConnectorProc {
            id,
            device_addr,
            grpc_addr,
            admin_addr,
            proc,
        });
        let live = self.live_connectors();
        self.wait_for_ring_size(live).await;
        index
    }

    /// Kills the controller (SIGKILL) if it runs, starts it again with the same arguments,
    /// and waits until it listens on its address again.
    pub async fn restart_controller(&mut self) {
        self.controller.restart();
        wait_until_listening(self.controller_addr, "the restarted controller").await;
    }

    /// Kills the dispatcher (SIGKILL) if it runs, starts it again with the same arguments,
    /// and waits until it listens on its address again.
    pub async fn restart_dispatcher(&mut self) {
        self.dispatcher.restart();
        wait_until_listening(self.dispatcher_addr, "the restarted dispatcher").await;
    }

    pub fn live_connectors(&mut self) -> usize {
        self.connectors
            .iter_mut()
            .map(|c| c.proc.is_running())
            .filter(|running| *running)
            .count()
    }

    /// Waits until the dispatcher's readiness reports `count` connectors.
    pub async fn wait_for_ring_size(&self, count: usize) {
        let url = format!("{}/readyz", self.dispatcher_url);
        let http = self.http.clone();
        eventually(
            &format!("a ring of {count}"),
            Duration::from_secs(20),
            async || match http.get(&url).send().await {
                Ok(response) => response
                    .text()
                    .await
                    .is_ok_and(|text| text.contains(&format!("ready: {count} connectors"))),
                Err(_) => false,
            },
        )
        .await;
    }

    /// Creates an app; answers (app_id, server_key, client_key).
    pub async fn create_app(&self) -> (String, String, String) {
        let answer = self
            .post("/v1/apps", ADMIN_TOKEN, &json!({ "name": "test" }), None)
            .await;
        assert_eq!(answer.0, 201, "{}", answer.1);
        let body = answer.1;
        (
            body["app_id"].as_str().unwrap().to_owned(),
            body["server_key"].as_str().unwrap().to_owned(),
            body["client_key"].as_str().unwrap().to_owned(),
        )
    }

    /// POSTs JSON; answers the status and the JSON body.
    pub async fn post(
        &self,
        path: &str,
        bearer: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.controller_url))
            .bearer_auth(bearer)
            .json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("controller answers");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// PUTs JSON; answers the status and the JSON body.
    pub async fn put(&self, path: &str, bearer: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .put(format!("{}{path}", self.controller_url))
            .bearer_auth(bearer)
            .json(body)
            .send()
            .await
            .expect("controller answers");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// GETs JSON; answers the status and the JSON body.
    pub async fn get(&self, path: &str, bearer: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.controller_url))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("controller answers");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Sends `data` to devices; answers the message ids (panics on a non-200).
    pub async fn send(
        &self,
        app: &str,
        server_key: &str,
        devices: &[String],
        data: &str,
    ) -> Vec<String> {
        let (status, body) = self
            .post(
                &format!("/v1/apps/{app}/messages"),
                server_key,
                &json!({ "device_ids": devices, "data": data }),
                None,
            )
            .await;
        assert_eq!(status, 200, "send failed: {body}");
        body["message_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect()
    }
}

/// Waits (without blocking a runtime thread) until `address` accepts TCP connections.
async fn wait_until_listening(address: SocketAddr, what: &str) {
    eventually(
        &format!("{what} listening on {address}"),
        Duration::from_secs(20),
        async || tokio::net::TcpStream::connect(address).await.is_ok(),
    )
    .await;
}

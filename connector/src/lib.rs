//! The connector: holds long-lived device WebSocket connections and writes each device's
//! pushes to it in sequence order.
//!
//! A connector authenticates devices, sends away (Redirect) the devices another connector
//! owns on the ring, records presence, replays each device's pending inbox on Hello before
//! any live push, takes cumulative acks, closes silent connections, serves the internal gRPC
//! service `ringpush.internal.v1.Connector` through which controllers hand it messages
//! already durable in the store (Deliver: to one device; Broadcast: to every device of an app
//! it holds whose attributes match an audience), and drains on shutdown so that a rolling
//! upgrade loses nothing. It keeps each device's attributes (interned) for matching and
//! writes them to the registry, catches devices up from their app's timeline (stream 1)
//! after their inbox, and counts delivered, acked, opened and clicked for the statistics of
//! audience messages and campaigns (docs/audiences.md).
//!
//! It is built for about a million idle devices per small box: an idle connection is a
//! small record in a slab and its socket in an epoll set, with no task, no tokio I/O
//! registration and no buffer of its own (see DEPENDENCIES.md, "Memory per idle
//! connection").
//!
//! Layout:
//! - [`run`] (this file): configuration, errors, [`ConnectorStats`];
//! - `accept`: the listener task, handing each socket to a shard;
//! - `shard`: one event loop per core over a `mio::Poll` behind one `AsyncFd`, owning a slab
//!   of `conn` records, the device index and one shared read and write buffer;
//! - `conn`: the per-connection record (72 bytes) and the `Busy` part allocated only when
//!   needed;
//! - `profile`: a device's app and attributes, interned per shard, and the Attributes frame;
//! - `session`: the WebSocket handshake and the device protocol's frames;
//! - `output`: writing (one write per connection per wake-up) and every close path;
//! - `catchup`: replay from the inbox, held live pushes and gap repair (invariant 6);
//! - `timeline`: catch-up from the app's timeline and the same ordering rule for stream 1;
//! - `broadcast`: an audience message to a shard's matching devices, and throttled pacing;
//! - `hello`: a Hello from frame to Welcome (ring check, move to the device's shard, store
//!   work in a background task), and the background inbox reads;
//! - `batcher`: acks and delivered positions, coalesced per device and written in batches;
//! - `registry`: device attributes, coalesced per device and written in batches;
//! - `statistics`: Report frames, and counters summed per minute and written in batches;
//! - `grpc`: the Deliver and Broadcast services, routing work to the shards;
//! - `drain`: start-up and the phased drain;
//! - `tls`: TLS on device connections (`wss://`), when configured: rustls driven inside the
//!   shard's event loop, beside the connection record rather than in it.
//!
//! Does not own: the ring's placement rule (`ringpush_ring`), durable state and leases
//! (`ringpush_store`), the wire formats (`ringpush_protocol`), certificates and keys
//! (`ringpush_tls` builds the rustls configuration), TLS on the internal gRPC service, or the
//! metrics exporter (the binary installs it). At scale TLS in front of the connector is still
//! the cheaper answer: an idle TLS connection costs kilobytes, a plain one bytes.

mod accept;
mod app_cache;
mod batcher;
mod broadcast;
mod catchup;
mod conn;
mod drain;
mod grpc;
mod hello;
mod output;
mod profile;
mod registry;
mod session;
mod shard;
mod statistics;
mod timeline;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use app_cache::APP_CACHE_TTL;
pub use profile::attributes_of;
use ringpush_protocol::frame::{DEFAULT_MAX_PAYLOAD_BYTES, FRAME_OVERHEAD_BYTES};
use ringpush_store::Store;
use ringpush_store::membership::MembershipConfig;
use tokio_util::sync::CancellationToken;

/// How a connector runs.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// The connector's member id on the ring; stable across restarts so it gets its devices
    /// back.
    pub id: String,
    /// The advertised WebSocket URL devices connect to, e.g. `ws://10.0.0.5:8082/v1/connect`.
    pub device_url: String,
    /// The advertised address of the internal gRPC service, e.g. `http://10.0.0.5:8083`.
    pub grpc_url: String,
    /// TLS of the internal gRPC service (`None`: plain HTTP/2); with a client CA in it,
    /// controllers must present a certificate (mutual TLS). `grpc_url` is then `https://`.
    pub grpc_tls: Option<tonic::transport::ServerTlsConfig>,
    /// Event loops, each owning a share of the connections.
    pub shards: usize,
    /// The largest WebSocket message accepted from a device (payload bytes).
    pub max_frame_bytes: usize,
    /// How often devices must ping; a connection silent for three intervals is closed.
    pub ping_interval: Duration,
    /// Inbox messages read per store call during replay.
    pub replay_batch: usize,
    /// Unsent output a connection may have before it is closed as a slow consumer.
    pub max_pending_output_bytes: usize,
    /// How long a drain waits for devices to leave before closing the rest.
    pub drain_timeout: Duration,
    /// New connections allowed per client address (`None`: no limit). Many devices can share
    /// one address behind a carrier's NAT: keep the burst well above a reconnect wave's share.
    pub connections_per_ip: Option<ringpush_limits::Rate>,
    /// The kernel send buffer of each device socket (`None`: the kernel's, which grows up to
    /// `net.ipv4.tcp_wmem`'s maximum, 4 MiB by default, for a device that reads slowly).
    /// Bounds what a slow consumer holds in the kernel besides `max_pending_output_bytes`.
    pub socket_send_buffer_bytes: Option<usize>,
    /// Lease and ring-watch timing.
    pub membership: MembershipConfig,
    /// When set, every device connection speaks TLS (`wss://`) with this configuration
    /// (e.g. `ringpush_tls::ServerTls::config(&[b"http/1.1"])`); a socket whose handshake
    /// fails or does not finish within three ping intervals is closed and counted.
    pub device_tls: Option<Arc<rustls::ServerConfig>>,
}

/// The default bound on new connections per client address: 100 a second, 2,000 at once.
pub const DEFAULT_CONNECTIONS_PER_IP: ringpush_limits::Rate = ringpush_limits::Rate {
    per_second: 100.0,
    burst: 2000.0,
};

impl Default for ConnectorConfig {
    fn default() -> Self {
        Self {
            id: "connector-1".to_owned(),
            device_url: format!("ws://127.0.0.1:8082{}", ringpush_protocol::CONNECT_PATH),
            grpc_url: "http://127.0.0.1:8083".to_owned(),
            grpc_tls: None,
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_frame_bytes: DEFAULT_MAX_PAYLOAD_BYTES + FRAME_OVERHEAD_BYTES,
            ping_interval: Duration::from_secs(30),
            replay_batch: 100,
            max_pending_output_bytes: 256 * 1024,
            drain_timeout: Duration::from_secs(10),
            connections_per_ip: Some(DEFAULT_CONNECTIONS_PER_IP),
            socket_send_buffer_bytes: None,
            membership: MembershipConfig::default(),
            device_tls: None,
        }
    }
}

impl ConnectorConfig {
    fn validate(&self) -> Result<(), ConnectorError> {
        let invalid = |reason: &str| Err(ConnectorError::InvalidConfig(reason.to_owned()));
        if self.id.is_empty() {
            return invalid("id must not be empty");
        }
        if self.shards == 0 {
            return invalid("shards must be at least 1");
        }
        if self.replay_batch == 0 {
            return invalid("replay_batch must be at least 1");
        }
        if self.ping_interval < Duration::from_secs(1) {
            return invalid("ping_interval must be at least one second");
        }
        if self.max_frame_bytes < 64 {
            return invalid("max_frame_bytes must be at least 64");
        }
        if let Some(rate) = self.connections_per_ip
            && !(rate.per_second > 0.0 && rate.burst >= 1.0)
        {
            return invalid("connections_per_ip must allow at least one connection");
        }
        if self.max_pending_output_bytes < self.max_frame_bytes {
            return invalid("max_pending_output_bytes must be at least max_frame_bytes");
        }
        Ok(())
    }
}

/// Why a connector could not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("invalid connector config: {0}")]
    InvalidConfig(String),
    #[error("could not join the ring: {0}")]
    Lease(#[source] ringpush_store::StoreError),
    #[error("could not take over the device listener: {0}")]
    Listener(#[source] std::io::Error),
    #[error("could not set up an event loop: {0}")]
    EventLoop(#[source] std::io::Error),
    #[error("internal grpc server failed: {0}")]
    Grpc(#[source] tonic::transport::Error),
}

/// Live counts of a running connector, for tests and health pages. Every close path brings
/// them back down (DESIGN.md invariant 10).
#[derive(Debug, Default)]
pub struct ConnectorStats {
    connections: AtomicU64,
    devices: AtomicU64,
    busy: AtomicU64,
    attribute_sets: AtomicU64,
    tls_handshake_failures: AtomicU64,
}

impl ConnectorStats {
    /// Sockets held, in every state.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Devices in the shards' device indexes (authenticating, catching up or live).
    pub fn devices(&self) -> u64 {
        self.devices.load(Ordering::Relaxed)
    }

    /// Connections holding a `Busy` record (partial input, unsent output or held pushes);
    /// 0 when every connection is idle.
    pub fn busy(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }

    /// Distinct (app, attributes) sets the connections hold: devices with equal sets share
    /// one copy.
    pub fn attribute_sets(&self) -> u64 {
        self.attribute_sets.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed or timed out since the connector started.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.tls_handshake_failures.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, delta: i64) {
        if delta >= 0 {
            counter.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            counter.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }
}

/// Runs a connector until `shutdown` fires, then drains it and returns.
///
/// `device_listener` takes device WebSocket connections; `grpc_listener` serves the internal
/// Deliver service.
pub async fn run(
    config: ConnectorConfig,
    device_listener: tokio::net::TcpListener,
    grpc_listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) -> Result<(), ConnectorError> {
    let stats = Arc::new(ConnectorStats::default());
    run_with_stats(
        config,
        device_listener,
        grpc_listener,
        store,
        shutdown,
        stats,
    )
    .await
}

/// [`run`], updating `stats` as it goes.
pub async fn run_with_stats(
    config: ConnectorConfig,
    device_listener: tokio::net::TcpListener,
    grpc_listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
    stats: Arc<ConnectorStats>,
) -> Result<(), ConnectorError> {
    config.validate()?;
    accept::raise_open_files_limit();
    let running = drain::start(config, store, stats, device_listener, grpc_listener).await?;
    running.serve_until(shutdown).await
}

//! One event loop over a share of the connections.
//!
//! A shard owns a `mio::Poll` (an epoll set) whose own fd is registered once with tokio
//! through an `AsyncFd`, so that a million sockets cost tokio nothing: when the epoll set
//! has events, the shard drains them with zero-timeout polls and serves each socket from
//! one shared read buffer and one shared write buffer. Sockets are registered edge-triggered
//! for reading and writing once; a socket is read until it would block, or put on the
//! `still_readable` list when it had its fair share of one wake-up.
//!
//! Everything else reaches a shard as a [`Command`] on its bounded channel: new sockets,
//! connections moved from another shard after their Hello, results of store work, deliveries
//! and broadcasts from the gRPC service, and the drain. A shard never awaits another shard, so shards cannot
//! deadlock on each other's full channels.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::gauge;
use mio::unix::SourceFd;
use ringpush_protocol::DeviceId;
use ringpush_protocol::device::Push;
use ringpush_protocol::internal::DeliveryOutcome;
use ringpush_ring::Ring;
use ringpush_store::{StatIncrement, Store};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app_cache::AppCache;
use crate::broadcast::{BroadcastJob, BroadcastScan};
use crate::conn::{Conn, ConnState};
use crate::hello::{HelloDone, PendingHello, ReadDone};
use crate::profile::Profiles;
use crate::registry::AttributesUpdate;
use crate::timeline::{AudienceCache, TimelineDone};
use crate::tls::{HandshakeFailure, TlsConn, TlsTable};
use crate::{ConnectorConfig, ConnectorStats};

/// Commands queued per shard before senders wait (the gRPC service and the acceptor).
pub(crate) const COMMAND_QUEUE: usize = 1024;
/// Socket events taken from the epoll set per poll call.
const EVENTS_PER_POLL: usize = 1024;
/// Poll calls per wake-up before the shard lets other tasks run.
const POLLS_PER_WAKE: usize = 16;
/// Commands handled per wake-up before the shard looks at its sockets again.
const COMMANDS_PER_WAKE: usize = 64;
/// Bytes read per read call; one buffer per shard.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// How long a closing connection may take to flush its last frames and see the peer go.
pub(crate) const CLOSE_LINGER_SECS: u32 = 2;

/// What every shard of one connector shares.
pub(crate) struct Shared {
    pub config: ConnectorConfig,
    pub store: Arc<dyn Store>,
    /// Each shard's command channel, indexed by shard: where a device's connection lives
    /// after its Hello, and where store results come back to.
    pub shards: Vec<mpsc::Sender<Command>>,
    /// To the ack batcher; full means the ack is dropped (the device acks again later).
    pub acks: mpsc::Sender<(DeviceId, u64)>,
    /// To the delivered-position batcher.
    pub delivered: mpsc::Sender<(DeviceId, u64)>,
    /// To the registry batcher (device attributes); full means the set is dropped.
    pub attributes: mpsc::Sender<AttributesUpdate>,
    /// To the statistics batcher; full means the increment is dropped (and counted).
    pub stat_increments: mpsc::Sender<StatIncrement>,
    /// Timeline entries' audiences, parsed once for every catch-up.
    pub audiences: AudienceCache,
    /// Apps, for their token-signing keys.
    pub apps: AppCache,
    pub stats: Arc<ConnectorStats>,
    /// Every background task (store work, presence clean-up), so the drain can wait for them.
    pub tasks: TaskTracker,
    /// Caps store calls in flight on behalf of connections, so a reconnect storm queues
    /// here instead of flooding the store.
    pub store_permits: Arc<Semaphore>,
    /// The origin of the coarse seconds kept in each connection record.
    pub clock: Instant,
}

impl Shared {
    /// The shard that holds `device` once it has said Hello.
    pub fn shard_of(&self, device: DeviceId) -> usize {
        let folded = (device.0 as u64) ^ ((device.0 >> 64) as u64);
        (folded % self.shards.len() as u64) as usize
    }
}

/// A connection moving to its device's shard, with the Hello that names the device.
pub(crate) struct Moved {
    pub conn: Conn,
    pub hello: PendingHello,
    /// The connection's TLS state, when TLS is on.
    pub tls: Option<Box<TlsConn>>,
}

/// Deliveries for one shard, in request order, with where each sits in the request.
pub(crate) struct DeliverBatch {
    pub items: Vec<(usize, DeviceId, Push)>,
    pub reply: oneshot::Sender<Vec<(usize, DeliveryOutcome)>>,
}

/// Work for a shard.
pub(crate) enum Command {
    /// A fresh socket from the acceptor.
    Accept(std::net::TcpStream),
    /// A connection whose Hello named a device of this shard.
    Adopt(Box<Moved>),
    HelloDone(Box<HelloDone>),
    ReadDone(Box<ReadDone>),
    TimelineDone(Box<TimelineDone>),
    Deliver(DeliverBatch),
    /// An audience message for every matching device of the shard.
    Broadcast(BroadcastScan),
    /// The pacer's turn for some connections of a throttled broadcast.
    BroadcastWrite(Arc<BroadcastJob>, Vec<(u32, u32)>),
    /// Send every device to its owner on this ring (which leaves this connector out).
    Drain(Arc<Ring>),
}

/// The state of one shard; see the module docs.
pub(crate) struct Shard {
    pub index: usize,
    pub shared: Arc<Shared>,
    /// Registers sockets in this shard's epoll set (a clone of the `Poll`'s registry, so the
    /// `Poll` itself can stay inside the `AsyncFd`).
    pub registry: mio::Registry,
    pub conns: Slab<Conn>,
    /// Device id bytes → slab key, for every device authenticating, catching up or live.
    pub devices: HashMap<[u8; 16], u32>,
    /// The distinct (app, attributes) of the shard's connections, shared by the records.
    pub profiles: Profiles,
    /// The one read buffer of the shard (its length is its capacity).
    pub read_buf: Vec<u8>,
    /// The one write buffer of the shard: frames for `scratch_owner`, written in one call.
    pub scratch: Vec<u8>,
    pub scratch_owner: Option<usize>,
    /// The highest push seq encoded into `scratch`, reported as delivered once written.
    pub scratch_seq: u64,
    pub ring: Arc<Ring>,
    /// Set when the drain began: the ring without this connector.
    pub drain_ring: Option<Arc<Ring>>,
    next_generation: u32,
    /// Connections that had more to read when their share of a wake-up ran out.
    pub still_readable: Vec<(usize, u32)>,
    ready: Vec<(usize, Ready)>,
    /// Each connection's TLS state, when the connector serves `wss://` (`None`: plain, and
    /// plain connections cost nothing for it).
    pub tls: Option<TlsTable>,
    /// Records sealed for the connection being written, before they go to its socket; one
    /// buffer per shard, like `scratch`.
    pub tls_out: Vec<u8>,
    /// Records read from a TLS connection's socket, decrypted into `read_buf`; one buffer per
    /// shard (a connection keeps only the start of a record still in flight).
    pub tls_in: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Ready {
    readable: bool,
    writable: bool,
}

impl Shard {
    pub fn new(
        index: usize,
        shared: Arc<Shared>,
        registry: mio::Registry,
        ring: Arc<Ring>,
    ) -> Self {
        Self {
            index,
            registry,
            conns: Slab::new(),
            devices: HashMap::new(),
            profiles: Profiles::default(),
            read_buf: vec![0; READ_BUFFER_BYTES],
            scratch: Vec::with_capacity(READ_BUFFER_BYTES),
            scratch_owner: None,
            scratch_seq: 0,
            ring,
            drain_ring: None,
            next_generation: 0,
            still_readable: Vec::new(),
            ready: Vec::with_capacity(EVENTS_PER_POLL),
            tls: shared.config.device_tls.clone().map(TlsTable::new),
            tls_out: Vec::new(),
            tls_in: Vec::new(),
            shared,
        }
    }

    /// Coarse seconds since the connector started, as kept in connection records.
    pub fn now_secs(&self) -> u32 {
        self.shared.clock.elapsed().as_secs() as u32
    }

    /// This shard's own command sender, for background work to answer on.
    pub fn sender(&self) -> mpsc::Sender<Command> {
        self.shared.shards[self.index].clone()
    }

    /// The valid slab key of a connection named by an asynchronous result.
    pub fn live_key(&self, key: usize, generation: u32) -> Option<usize> {
        self.conns
            .get(key)
            .filter(|conn| conn.generation == generation)
            .map(|_| key)
    }

    /// Puts a connection into this shard's slab and epoll set; `None` if it cannot be
    /// registered (the socket is then closed and forgotten).
    pub fn insert(&mut self, mut conn: Conn) -> Option<usize> {
        self.next_generation = self.next_generation.wrapping_add(1);
        conn.generation = self.next_generation;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
        let fd = conn.stream.as_raw_fd();
        if let Err(error) = self
            .registry
            .register(&mut SourceFd(&fd), mio::Token(key), interest)
        {
            tracing::warn!(%error, "could not register a connection");
            self.shared.forget(&conn);
            return None;
        }
        entry.insert(conn);
        Some(key)
    }

    fn accept(&mut self, stream: std::net::TcpStream) {
        let conn = Conn::new(stream, 0, self.now_secs());
        ConnectorStats::add(&self.shared.stats.connections, 1);
        gauge!("ringpush_connector_connections").increment(1.0);
        if self.drain_ring.is_some() {
            // Accepted just before the drain began: nothing was said yet, just close it.
            self.shared.forget(&conn);
            return;
        }
        let Some(key) = self.insert(conn) else {
            return;
        };
        tracing::debug!(peer = ?self.conns[key].stream.peer_addr().ok(), "connection accepted");
        if let Some(table) = &mut self.tls {
            match TlsConn::new(table.config.clone()) {
                Ok(tls) => table.put(key, tls),
                Err(error) => {
                    tracing::warn!(%error, "could not start TLS on a connection");
                    self.remove(key);
                }
            }
        }
    }

    fn adopt(&mut self, moved: Moved) {
        let Moved { conn, hello, tls } = moved;
        if let Some(key) = self.insert(conn) {
            if let (Some(table), Some(tls)) = (&mut self.tls, tls) {
                table.put(key, tls);
            }
            self.begin_hello(key, hello);
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Accept(stream) => self.accept(stream),
            Command::Adopt(moved) => self.adopt(*moved),
            Command::HelloDone(done) => self.on_hello_done(*done),
            Command::ReadDone(done) => self.on_read_done(*done),
            Command::TimelineDone(done) => self.on_timeline_done(*done),
            Command::Deliver(batch) => self.on_deliver(batch),
            Command::Broadcast(scan) => self.on_broadcast(scan),
            Command::BroadcastWrite(job, targets) => self.on_broadcast_write(job, targets),
            Command::Drain(ring) => self.on_drain(ring),
        }
    }

    /// Takes every pending event from the epoll set, up to `POLLS_PER_WAKE` polls. Answers
    /// whether the set is empty now (so readiness may be cleared).
    fn poll_events(&mut self, poll: &mut mio::Poll, events: &mut mio::Events) -> bool {
        for _ in 0..POLLS_PER_WAKE {
            if let Err(error) = poll.poll(events, Some(Duration::ZERO)) {
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(shard = self.index, %error, "epoll wait failed");
                return true;
            }
            if events.is_empty() {
                return true;
            }
            let mut ready = std::mem::take(&mut self.ready);
            ready.extend(events.iter().map(|event| {
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                let writable = event.is_writable() || event.is_write_closed();
                (event.token().0, Ready { readable, writable })
            }));
            for &(key, ready) in &ready {
                if ready.writable {
                    self.on_writable(key);
                }
                if ready.readable {
                    self.on_readable(key);
                }
            }
            ready.clear();
            self.ready = ready;
        }
        false
    }

    fn service_still_readable(&mut self) {
        let waiting = std::mem::take(&mut self.still_readable);
        for (key, generation) in waiting {
            if self.live_key(key, generation).is_some() {
                self.on_readable(key);
            }
        }
    }

    /// Closes connections silent for three ping intervals, and closing ones whose linger is
    /// over.
    fn sweep(&mut self) {
        let now = self.now_secs();
        let timeout = 3 * self.shared.config.ping_interval.as_secs().max(1) as u32;
        let mut silent = Vec::new();
        let mut lingering = Vec::new();
        for (key, conn) in &self.conns {
            let quiet = now.saturating_sub(conn.last_heard);
            match conn.state {
                ConnState::Closing if quiet >= CLOSE_LINGER_SECS => lingering.push(key),
                ConnState::Closing => {}
                _ if quiet >= timeout => silent.push(key),
                _ => {}
            }
        }
        for key in lingering {
            self.remove(key);
        }
        for key in silent {
            tracing::debug!(device_id = %self.conns[key].device(), "connection timed out");
            if self.conns[key].state == ConnState::AwaitingHandshake {
                let handshaking = self
                    .tls
                    .as_mut()
                    .and_then(|table| table.get_mut(key))
                    .is_some_and(|tls| tls.is_handshaking());
                if handshaking {
                    crate::tls::count_handshake_failure(
                        &self.shared.stats,
                        HandshakeFailure::Timeout,
                    );
                }
                self.remove(key);
            } else {
                self.close_with_error(
                    key,
                    ringpush_protocol::device::ErrorCode::Timeout,
                    "no frame for three ping intervals",
                    ringpush_protocol::ws::close_code::GOING_AWAY,
                );
            }
        }
    }

    /// After a ring change, sends away exactly the devices the new ring places elsewhere.
    fn on_ring_changed(&mut self, ring: Arc<Ring>) {
        self.ring = ring.clone();
        if self.drain_ring.is_some() {
            return;
        }
        let own_id = self.shared.config.id.as_str();
        let moved: Vec<(usize, String)> = self
            .devices
            .iter()
            .filter_map(|(device, &key)| {
                let owner = ring.owner(DeviceId(u128::from_be_bytes(*device)))?;
                (owner.id != own_id).then(|| (key as usize, owner.device_url.clone()))
            })
            .collect();
        if !moved.is_empty() {
            tracing::info!(
                shard = self.index,
                devices = moved.len(),
                "ring change moves devices away"
            );
        }
        for (key, url) in moved {
            self.redirect(
                key,
                url,
                ring.version(),
                "device moved to another connector",
            );
        }
    }

    /// Sends every device to its owner on `ring` (this connector is not on it) and closes
    /// every other connection.
    fn on_drain(&mut self, ring: Arc<Ring>) {
        self.drain_ring = Some(ring.clone());
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let conn = &self.conns[key];
            match conn.state {
                ConnState::AwaitingHandshake => self.remove(key),
                ConnState::AwaitingHello => self.close_ws(
                    key,
                    ringpush_protocol::ws::close_code::GOING_AWAY,
                    "connector shutting down",
                ),
                ConnState::Authenticating | ConnState::CatchingUp | ConnState::Live => {
                    let url = ring
                        .owner(conn.device())
                        .map(|owner| owner.device_url.clone())
                        .unwrap_or_default();
                    self.redirect(key, url, ring.version(), "connector shutting down");
                }
                ConnState::Closing => {}
            }
        }
    }

    fn close_all(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.remove(key);
        }
    }
}

impl Shared {
    /// Takes a connection that is being dropped outside any slab off the counts.
    pub fn forget(&self, conn: &Conn) {
        ConnectorStats::add(&self.stats.connections, -1);
        gauge!("ringpush_connector_connections").decrement(1.0);
        if conn.busy.is_some() {
            ConnectorStats::add(&self.stats.busy, -1);
        }
    }
}

/// Runs a shard until `stop` fires; then closes every connection it still holds.
pub(crate) async fn run(
    mut shard: Shard,
    mut io: AsyncFd<mio::Poll>,
    mut commands: mpsc::Receiver<Command>,
    mut ring: watch::Receiver<Arc<Ring>>,
    stop: CancellationToken,
) {
    let mut events = mio::Events::with_capacity(EVENTS_PER_POLL);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ring_open = true;
    loop {
        let backlog = !shard.still_readable.is_empty();
        tokio::select! {
            () = stop.cancelled() => break,
            guard = io.readable_mut() => match guard {
                Ok(mut guard) => {
                    if shard.poll_events(guard.get_inner_mut(), &mut events) {
                        guard.clear_ready();
                    }
                }
                Err(error) => {
                    tracing::error!(shard = shard.index, %error, "event loop lost its reactor");
                    break;
                }
            },
            command = commands.recv() => {
                let Some(command) = command else { break };
                shard.handle(command);
                for _ in 1..COMMANDS_PER_WAKE {
                    let Ok(command) = commands.try_recv() else { break };
                    shard.handle(command);
                }
            }
            changed = ring.changed(), if ring_open => match changed {
                Ok(()) => {
                    let latest = ring.borrow_and_update().clone();
                    shard.on_ring_changed(latest);
                }
                Err(_) => ring_open = false,
            },
            _ = tick.tick() => shard.sweep(),
            () = std::future::ready(()), if backlog => shard.service_still_readable(),
        }
        // Output for one connection is coalesced within a wake-up; nothing waits past it.
        shard.flush();
    }
    shard.close_all();
    tracing::debug!(shard = shard.index, "shard stopped");
}

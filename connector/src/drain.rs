//! Start-up, and the phased drain that lets a rolling upgrade lose nothing.
//!
//! Start: join the ring (one lease renewal before any device is accepted, so the connector
//! is on the ring it checks Hellos against), watch the ring, start the batchers, the shards,
//! the gRPC service (over TLS, mutual when a client CA is set, when `grpc_tls` says) and the
//! acceptor.
//!
//! Drain, when the shutdown token fires:
//! 1. stop accepting, stop renewing the lease and drop it;
//! 2. read the ring without this connector and send every device a Redirect to its owner
//!    there, closing each connection once that is flushed;
//! 3. wait until every connection is gone, or `drain_timeout`; then stop the shards, which
//!    close whatever is left;
//! 4. write the last acks, delivered positions, attributes and statistics;
//! 5. stop the gRPC service (it answers Deliver and Broadcast until here: devices still
//!    connected are still written to) and wait for background store work (and the pacers
//!    of throttled broadcasts, which stop once the shards have).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringpush_protocol::internal::connector_server::ConnectorServer;
use ringpush_ring::{Member, Ring};
use ringpush_store::Store;
use ringpush_store::membership::{self, keep_lease, watch_ring};
use tokio::io::unix::AsyncFd;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app_cache::AppCache;
use crate::batcher::{self, Position};
use crate::grpc::{DeliverService, MAX_DELIVER_REQUEST_BYTES};
use crate::shard::{self, COMMAND_QUEUE, Command, Shard, Shared};
use crate::timeline::AudienceCache;
use crate::{ConnectorConfig, ConnectorError, ConnectorStats, accept, registry, statistics};

/// Store calls in flight at once on behalf of connections (Hellos and inbox reads).
const MAX_STORE_CALLS: usize = 256;
/// How long the end of the drain waits for background store work (presence clean-up).
const BACKGROUND_GRACE: Duration = Duration::from_secs(2);
/// How often the drain looks whether every connection is gone.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// A started connector: every task, and the token that stops each.
pub(crate) struct Running {
    shared: Arc<Shared>,
    member: Member,
    lease: (CancellationToken, JoinHandle<()>),
    ring_stop: CancellationToken,
    accept: (CancellationToken, JoinHandle<()>),
    shards: (CancellationToken, Vec<JoinHandle<()>>),
    batchers: (CancellationToken, Vec<JoinHandle<()>>),
    grpc: (
        CancellationToken,
        Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    ),
}

pub(crate) async fn start(
    config: ConnectorConfig,
    store: Arc<dyn Store>,
    stats: Arc<ConnectorStats>,
    device_listener: tokio::net::TcpListener,
    grpc_listener: tokio::net::TcpListener,
) -> Result<Running, ConnectorError> {
    let member = Member {
        id: config.id.clone(),
        device_url: config.device_url.clone(),
        grpc_url: config.grpc_url.clone(),
    };
    // Fallible set-up with no side effects first, so a failure leaves nothing running.
    let mut loops = Vec::with_capacity(config.shards);
    for _ in 0..config.shards {
        let poll = mio::Poll::new().map_err(ConnectorError::EventLoop)?;
        let registry = poll
            .registry()
            .try_clone()
            .map_err(ConnectorError::EventLoop)?;
        // The safe constructor is deprecated in favour of an `unsafe` one whose contract (the
        // fd stays open while registered) holds here: the AsyncFd owns the Poll.
        #[allow(deprecated)]
        let io = AsyncFd::with_interest(poll, tokio::io::Interest::READABLE)
            .map_err(ConnectorError::EventLoop)?;
        let (sender, receiver) = mpsc::channel(COMMAND_QUEUE);
        loops.push((io, registry, sender, receiver));
    }
    let mut grpc_server = tonic::transport::Server::builder();
    if let Some(tls) = config.grpc_tls.clone() {
        // Handshakes run beside the accept loop; a failed one is logged at debug by tonic
        // and closes that connection only.
        grpc_server = grpc_server.tls_config(tls).map_err(ConnectorError::Grpc)?;
    }
    let device_listener_addr = device_listener.local_addr().ok();
    let device_listener = accept::listener(device_listener).map_err(ConnectorError::Listener)?;
    let lease_ttl = config.membership.lease_ttl;
    membership::renew_lease(store.as_ref(), &member, lease_ttl)
        .await
        .map_err(ConnectorError::Lease)?;
    let lease_stop = CancellationToken::new();
    let lease_task = tokio::spawn(keep_lease(
        store.clone(),
        member.clone(),
        lease_ttl,
        lease_stop.clone(),
    ));
    let ring_stop = CancellationToken::new();
    let ring = watch_ring(store.clone(), config.membership, ring_stop.clone()).await;

    let batch_stop = CancellationToken::new();
    let (acks, ack_task) = batcher::spawn(Position::Acked, store.clone(), batch_stop.clone());
    let (delivered, delivered_task) =
        batcher::spawn(Position::Delivered, store.clone(), batch_stop.clone());
    let (attributes, attributes_task) = registry::spawn(store.clone(), batch_stop.clone());
    let (stat_increments, stats_task) = statistics::spawn(store.clone(), batch_stop.clone());

    let shared = Arc::new(Shared {
        config,
        store,
        shards: loops
            .iter()
            .map(|(_, _, sender, _)| sender.clone())
            .collect(),
        acks,
        delivered,
        attributes,
        stat_increments,
        audiences: AudienceCache::default(),
        apps: AppCache::default(),
        stats,
        tasks: TaskTracker::new(),
        store_permits: Arc::new(Semaphore::new(MAX_STORE_CALLS)),
        clock: Instant::now(),
    });

    let shard_stop = CancellationToken::new();
    let first_ring = ring.borrow().clone();
    let mut shard_tasks = Vec::with_capacity(loops.len());
    for (index, (io, registry, _, commands)) in loops.into_iter().enumerate() {
        let shard = Shard::new(index, shared.clone(), registry, first_ring.clone());
        let task = shard::run(shard, io, commands, ring.clone(), shard_stop.clone());
        shard_tasks.push(tokio::spawn(task));
    }

    let grpc_stop = CancellationToken::new();
    let grpc_addr = grpc_listener.local_addr().ok();
    let service = ConnectorServer::new(DeliverService::new(shared.clone()))
        .max_decoding_message_size(MAX_DELIVER_REQUEST_BYTES);
    let server = grpc_server
        .add_service(service)
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(grpc_listener),
            grpc_stop.clone().cancelled_owned(),
        );
    let grpc_task = tokio::spawn(server);

    let accept_stop = CancellationToken::new();
    let accept_task = tokio::spawn(accept::run(
        device_listener,
        shared.clone(),
        accept_stop.clone(),
    ));
    tracing::info!(
        id = %member.id,
        devices = ?device_listener_addr,
        grpc = ?grpc_addr,
        shards = shared.shards.len(),
        ring_version = first_ring.version(),
        "connector serving"
    );
    Ok(Running {
        shared,
        member,
        lease: (lease_stop, lease_task),
        ring_stop,
        accept: (accept_stop, accept_task),
        shards: (shard_stop, shard_tasks),
        batchers: (
            batch_stop,
            vec![ack_task, delivered_task, attributes_task, stats_task],
        ),
        grpc: (grpc_stop, Some(grpc_task)),
    })
}

impl Running {
    /// Serves until `shutdown` fires (or the gRPC service fails), then drains.
    pub async fn serve_until(mut self, shutdown: CancellationToken) -> Result<(), ConnectorError> {
        let Some(mut grpc_task) = self.grpc.1.take() else {
            return Ok(());
        };
        let outcome = tokio::select! {
            () = shutdown.cancelled() => Ok(()),
            finished = &mut grpc_task => {
                tracing::error!("internal grpc service stopped; draining");
                match finished {
                    Ok(Err(error)) => Err(ConnectorError::Grpc(error)),
                    _ => Ok(()),
                }
            }
        };
        if !grpc_task.is_finished() {
            self.grpc.1 = Some(grpc_task);
        }
        self.drain().await;
        outcome
    }

    async fn drain(self) {
        let started = Instant::now();
        let shared = self.shared;
        let config = &shared.config;
        tracing::info!(id = %config.id, connections = shared.stats.connections(), "draining");

        // 1. Stop accepting and leave the ring.
        self.accept.0.cancel();
        let _ = self.accept.1.await;
        self.lease.0.cancel();
        let _ = self.lease.1.await;
        if let Err(error) = shared.store.drop_lease(&self.member.id).await {
            tracing::warn!(%error, "could not drop the lease; it lapses on its own");
        }

        // 2. Send every device to its owner on the ring without this connector.
        let vnodes = config.membership.vnodes;
        let members = match membership::read_ring(shared.store.as_ref(), vnodes).await {
            Ok(ring) => ring.members().to_vec(),
            Err(error) => {
                tracing::warn!(%error, "could not read the ring; devices go back to the dispatcher");
                Vec::new()
            }
        };
        let others = members
            .into_iter()
            .filter(|member| member.id != config.id)
            .collect();
        let ring = Arc::new(Ring::new(others, vnodes));
        for sender in &shared.shards {
            let _ = sender.send(Command::Drain(ring.clone())).await;
        }

        // 3. Wait for the devices to leave, then close what is left.
        let deadline = started + config.drain_timeout;
        while shared.stats.connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        let left = shared.stats.connections();
        if left > 0 {
            tracing::warn!(connections = left, "drain timed out; closing the rest");
        }
        self.shards.0.cancel();
        for task in self.shards.1 {
            let _ = task.await;
        }

        // 4. Write the last positions.
        self.batchers.0.cancel();
        for task in self.batchers.1 {
            let _ = task.await;
        }

        // 5. Stop serving controllers, and wait for background store work.
        self.grpc.0.cancel();
        if let Some(task) = self.grpc.1 {
            match task.await {
                Ok(Err(error)) => {
                    tracing::warn!(%error, "internal grpc service failed while stopping")
                }
                Err(error) => tracing::warn!(%error, "internal grpc service task failed"),
                Ok(Ok(())) => {}
            }
        }
        self.ring_stop.cancel();
        shared.tasks.close();
        if tokio::time::timeout(BACKGROUND_GRACE, shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background store work still running after the drain");
        }
        tracing::info!(id = %config.id, elapsed_ms = started.elapsed().as_millis() as u64, "drained");
    }
}

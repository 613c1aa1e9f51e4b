//! Hands durable messages to the connectors that hold their devices.
//!
//! One long-lived HTTP/2 channel per connector (tonic multiplexes every call over it), fed by
//! one sender task per connector through a bounded queue: concurrent sends are batched into
//! one `Deliver` call, and a full queue slows callers down instead of growing without bound.
//!
//! A live send is an optimisation, never the source of truth: the message is already in the
//! device's inbox, so a connector that is down, slow or wrong only delays it until the device
//! reconnects. When a connector answers NOT_CONNECTED (the rings of two processes disagree
//! for a moment, or the device just moved) the message is retried once at the connector that
//! the device's presence names.

mod share;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringpush_protocol::DeviceId;
use ringpush_protocol::device::Push;
use ringpush_protocol::internal::connector_client::ConnectorClient;
use ringpush_protocol::internal::{BroadcastRequest, DeliverRequest, Delivery, DeliveryOutcome};
use ringpush_ring::{Member, Ring};
use ringpush_store::{Presence, Store};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// Presence reads in flight at once when delivering across regions.
const PRESENCE_LOOKUPS_IN_FLIGHT: usize = 64;

/// Limits of the delivery path, and how connectors are dialed.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Messages queued per connector before senders wait.
    pub queue_per_connector: usize,
    /// Most messages in one `Deliver` call.
    pub max_batch: usize,
    /// `Deliver` calls in flight per connector.
    pub calls_in_flight: usize,
    /// How long one `Deliver` call may take before it is abandoned (the inbox keeps the messages).
    pub call_timeout: Duration,
    /// TLS towards connectors (`None`: plain HTTP/2): the CA their certificates chain to and,
    /// for connectors that require one, this controller's client certificate. Each
    /// connector's name is checked against the host of its advertised gRPC URL, which must
    /// be `https://`; a connector advertising `http://` is not dialed (no downgrade).
    pub connector_tls: Option<ClientTlsConfig>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            queue_per_connector: 16_384,
            max_batch: 512,
            calls_in_flight: 8,
            call_timeout: Duration::from_secs(5),
            connector_tls: None,
        }
    }
}

/// A message on its way to a connector.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub device: DeviceId,
    pub push: Push,
    /// Whether this is already the retry at the presence connector.
    retried: bool,
    /// Across regions: the device's presence as read while its message was being appended.
    presence_hint: Option<Presence>,
}

impl Outgoing {
    /// A first attempt.
    pub fn new(device: DeviceId, push: Push) -> Self {
        Self {
            device,
            push,
            retried: false,
            presence_hint: None,
        }
    }

    /// A first attempt at the connector of `presence` (see [`DeliveryRouter::presences`]).
    pub fn with_presence_hint(mut self, presence: Option<Presence>) -> Self {
        self.presence_hint = presence;
        self
    }
}

/// Routes messages to the connector that owns each device on the current ring.
#[derive(Clone)]
pub struct DeliveryRouter {
    inner: Arc<RouterInner>,
}

struct RouterInner {
    config: DeliveryConfig,
    ring: watch::Receiver<Arc<Ring>>,
    store: Arc<dyn Store>,
    /// One queue per connector id; the sender task behind it ends when the queue is dropped
    /// (the connector left the ring) or at shutdown. Locked only to look up or insert.
    links: Mutex<HashMap<String, mpsc::Sender<Outgoing>>>,
    /// The rings of the other regions, when there are several: a device may be connected in
    /// any region, so each message goes where its presence (in its home store) says.
    remote_rings: std::sync::OnceLock<Vec<watch::Receiver<Arc<Ring>>>>,
    /// One HTTP/2 channel per connector (by gRPC URL), shared by its sender task and by
    /// broadcasts. Locked only to look up or insert.
    channels: Mutex<HashMap<String, Channel>>,
    shutdown: CancellationToken,
}

impl DeliveryRouter {
    /// A router over the ring published in `ring`.
    pub fn new(
        config: DeliveryConfig,
        ring: watch::Receiver<Arc<Ring>>,
        store: Arc<dyn Store>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(RouterInner {
                config,
                ring,
                store,
                links: Mutex::new(HashMap::new()),
                remote_rings: std::sync::OnceLock::new(),
                channels: Mutex::new(HashMap::new()),
                shutdown,
            }),
        }
    }

    /// Makes this router deliver across regions: `rings` are the other regions' rings, and
    /// every message goes to the connector its device's presence names, in whichever region
    /// (see [`Self::send`]). Set once, before the first send; later calls are ignored.
    pub fn deliver_across_regions(&self, rings: Vec<watch::Receiver<Arc<Ring>>>) {
        let _ = self.inner.remote_rings.set(rings);
    }

    /// Queues messages for their owners; waits while a connector's queue is full. Messages
    /// whose device has no owner (no live connector) stay in their inboxes.
    ///
    /// In one region the owner is the device's place on the ring (no store read). Across
    /// regions it is the connector that the device's presence names: presence lives in the
    /// device's home store, is set by the connector that accepted the device with a new
    /// epoch, and is cleared only by that same connection, so it names the latest connection
    /// wherever it is. A device without presence is offline: its inbox keeps the message.
    pub async fn send(&self, messages: Vec<Outgoing>) {
        if self.inner.remote_rings.get().is_some() {
            use futures_util::StreamExt;
            futures_util::stream::iter(messages)
                .for_each_concurrent(PRESENCE_LOOKUPS_IN_FLIGHT, |message| {
                    self.send_by_presence(message)
                })
                .await;
            return;
        }
        let ring = self.inner.ring.borrow().clone();
        for message in messages {
            match ring.owner(message.device) {
                Some(owner) => self.send_to(owner, message).await,
                // This controller's ring may lag the dispatcher's: a connector that joined a
                // moment ago can already hold the device, past its inbox replay.
                None => self.retry_at_presence("", message).await,
            }
        }
    }

    async fn send_to(&self, member: &Member, message: Outgoing) {
        let queue = self.link(member);
        if queue.send(message).await.is_err() {
            // The sender task ended (shutdown): the inbox keeps the message.
            metrics::counter!("ringpush_controller_deliveries_total", "outcome" => "dropped")
                .increment(1);
        }
    }

    fn link(&self, member: &Member) -> mpsc::Sender<Outgoing> {
        let mut links = self.inner.links.lock().expect("links lock poisoned");
        if let Some(queue) = links.get(&member.id).filter(|queue| !queue.is_closed()) {
            return queue.clone();
        }
        let (queue, receiver) = mpsc::channel(self.inner.config.queue_per_connector);
        links.insert(member.id.clone(), queue.clone());
        // Forget connectors that left the ring; their tasks end once their queues drain.
        links.retain(|id, _| *id == member.id || self.member_anywhere(id).is_some());
        tokio::spawn(run_link(self.clone(), member.clone(), receiver));
        queue
    }

    /// Queues messages at no more than `per_second` a second, and returns once the last is
    /// queued: a campaign firing is done only when its paced deliveries are (its claim's
    /// lease covers them; a controller that dies mid-way leaves the firing to another, which
    /// sends again under the same idempotency key and delivers what is still pending).
    pub async fn send_paced(&self, messages: Vec<Outgoing>, per_second: u32) {
        let shutdown = self.inner.shutdown.clone();
        let mut tick = tokio::time::interval(share::PACE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut pace = share::Pace::new(per_second, Instant::now());
        let mut messages = messages.into_iter().peekable();
        while messages.peek().is_some() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let ready = pace.release(Instant::now());
            if ready > 0 {
                self.send(messages.by_ref().take(ready).collect()).await;
            }
        }
    }

    /// Hands an audience message to every connector on the ring (one call each): each
    /// matches it against the devices it holds. `per_second` is the whole rate; each
    /// connector gets a share in proportion to the part of the audience it holds
    /// (`audience_per_member`, in `members` order: see `audience_scan`; an even split if
    /// empty). A connector that fails to answer is logged: its devices read the message from
    /// the timeline when they reconnect.
    pub(crate) async fn broadcast(
        &self,
        members: &[Member],
        audience_per_member: &[u64],
        app: ringpush_protocol::AppId,
        audience: &str,
        push: Push,
        per_second: Option<u32>,
    ) {
        if members.is_empty() {
            return;
        }
        let shares = match per_second {
            Some(rate) if audience_per_member.len() == members.len() => {
                share::split_rate(rate, audience_per_member)
            }
            Some(rate) => share::split_rate(rate, &vec![0; members.len()]),
            None => vec![0; members.len()],
        };
        let calls = members.iter().zip(shares).filter_map(|(member, share)| {
            let channel = self.channel(member)?;
            let request = BroadcastRequest {
                app_id: app.to_string(),
                audience: audience.to_owned(),
                push: Some(push.clone()),
                max_per_second: share,
            };
            let mut client = ConnectorClient::new(channel);
            let timeout = self.inner.config.call_timeout;
            Some(async move {
                let started = Instant::now();
                let answer = tokio::time::timeout(timeout, client.broadcast(request)).await;
                metrics::histogram!("ringpush_controller_broadcast_call_seconds")
                    .record(started.elapsed().as_secs_f64());
                match answer {
                    Ok(Ok(response)) => {
                        let response = response.into_inner();
                        metrics::counter!("ringpush_controller_broadcast_written_total")
                            .increment(response.written);
                    }
                    Ok(Err(status)) => tracing::warn!(connector = %member.id, code = ?status.code(), message = status.message(), "broadcast call failed; its devices catch up from the timeline"),
                    Err(_) => tracing::warn!(connector = %member.id, "broadcast call timed out; its devices catch up from the timeline"),
                }
            })
        });
        futures_util::future::join_all(calls).await;
    }

    /// The HTTP/2 channel to a connector, created on first use (it connects lazily and
    /// reconnects by itself); `None` if the connector advertised an unusable URL.
    fn channel(&self, member: &Member) -> Option<Channel> {
        let mut channels = self.inner.channels.lock().expect("channels lock poisoned");
        if let Some(channel) = channels.get(&member.grpc_url) {
            return Some(channel.clone());
        }
        let endpoint = match Endpoint::from_shared(member.grpc_url.clone()) {
            Ok(endpoint) => endpoint,
            Err(error) => {
                tracing::error!(connector = %member.id, url = %member.grpc_url, %error, "bad connector address");
                return None;
            }
        };
        let https = member.grpc_url.starts_with("https://");
        let endpoint = match (&self.inner.config.connector_tls, https) {
            (Some(tls), true) => match endpoint.tls_config(tls.clone()) {
                Ok(endpoint) => endpoint,
                Err(error) => {
                    tracing::error!(connector = %member.id, url = %member.grpc_url, %error, "cannot dial the connector over TLS");
                    return None;
                }
            },
            (Some(_), false) => {
                tracing::error!(connector = %member.id, url = %member.grpc_url, "the connector advertises plain gRPC, but this controller dials connectors over TLS only (controller.connector_ca)");
                return None;
            }
            (None, true) => {
                tracing::error!(connector = %member.id, url = %member.grpc_url, "the connector advertises gRPC over TLS, but this controller has no CA for connectors (controller.connector_ca)");
                return None;
            }
            (None, false) => endpoint,
        };
        let channel = endpoint
            .connect_timeout(Duration::from_secs(2))
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .connect_lazy();
        channels.insert(member.grpc_url.clone(), channel.clone());
        Some(channel)
    }

    /// Across regions, the presences of `devices` read now, for sends to hint their messages
    /// with: reading them while the messages are appended saves a round trip to the home
    /// region. In one region: no reads, all `None`.
    pub async fn presences(&self, devices: &[DeviceId]) -> Vec<Option<Presence>> {
        if self.inner.remote_rings.get().is_none() {
            return vec![None; devices.len()];
        }
        let mut presences = Vec::with_capacity(devices.len());
        for chunk in devices.chunks(PRESENCE_LOOKUPS_IN_FLIGHT) {
            let reads = chunk
                .iter()
                .map(|device| self.inner.store.presence(*device));
            for read in futures_util::future::join_all(reads).await {
                presences.push(read.ok().flatten());
            }
        }
        presences
    }

    /// Across regions: to the connector of the hinted presence at once, then, from the
    /// presence read now that the message is in the inbox, to another connector if the
    /// device moved meanwhile. A presence read before the append may miss a connection that
    /// read the inbox before the append landed; the read after it cannot (the connection
    /// sets its presence before it reads the inbox).
    async fn send_by_presence(&self, mut message: Outgoing) {
        let Some(hint) = message.presence_hint.take() else {
            return self.retry_at_presence("", message).await;
        };
        if let Some(member) = self.member_anywhere(&hint.connector_id) {
            let mut first = message.clone();
            first.retried = true;
            self.send_to(&member, first).await;
        }
        self.retry_at_presence(&hint.connector_id, message).await;
    }

    /// After NOT_CONNECTED: if the device's presence names another live connector, try there once.
    async fn retry_at_presence(&self, tried: &str, mut message: Outgoing) {
        let presence = match self.inner.store.presence(message.device).await {
            Ok(Some(presence)) if presence.connector_id != tried => presence,
            _ => return,
        };
        let member = match self.member_anywhere(&presence.connector_id) {
            Some(member) => member,
            None => {
                let members = self.current_members().await;
                match members.into_iter().find(|m| m.id == presence.connector_id) {
                    Some(member) => member,
                    None => {
                        metrics::counter!("ringpush_controller_deliveries_total", "outcome" => "no_connector").increment(1);
                        return;
                    }
                }
            }
        };
        message.retried = true;
        self.send_to(&member, message).await;
    }

    /// The connector with this id on this region's ring or another region's.
    fn member_anywhere(&self, id: &str) -> Option<Member> {
        if let Some(member) = self.inner.ring.borrow().member(id) {
            return Some(member.clone());
        }
        let remote = self.inner.remote_rings.get()?;
        remote
            .iter()
            .find_map(|ring| ring.borrow().member(id).cloned())
    }

    /// Virtual nodes per member of this controller's ring (to build rings that agree).
    pub(crate) fn vnodes(&self) -> u32 {
        self.inner.ring.borrow().vnodes()
    }

    /// The live connectors as the store has them now, not as this controller's ring last
    /// saw them. An audience message is appended to the timeline before this is read, and a
    /// connector takes its lease before it accepts devices, so every connector whose devices
    /// caught up before the append is in the answer: none misses the message live. Falls
    /// back to the ring if the store cannot answer.
    pub(crate) async fn current_members(&self) -> Vec<Member> {
        match ringpush_store::membership::live_members(self.inner.store.as_ref()).await {
            Ok(members) => members,
            Err(error) => {
                tracing::warn!(%error, "cannot read the live connectors; using the last ring");
                self.inner.ring.borrow().members().to_vec()
            }
        }
    }
}

/// The sender task of one connector: batches its queue into `Deliver` calls.
async fn run_link(router: DeliveryRouter, member: Member, mut queue: mpsc::Receiver<Outgoing>) {
    let config = &router.inner.config;
    let Some(channel) = router.channel(&member) else {
        return;
    };
    let in_flight = Arc::new(Semaphore::new(config.calls_in_flight));
    let shutdown = router.inner.shutdown.clone();
    loop {
        let first = tokio::select! {
            message = queue.recv() => match message { Some(message) => message, None => return },
            _ = shutdown.cancelled() => return,
        };
        let mut batch = vec![first];
        while batch.len() < config.max_batch {
            match queue.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let router = router.clone();
        let channel = channel.clone();
        let member_id = member.id.clone();
        tokio::spawn(async move {
            deliver_batch(&router, channel, &member_id, batch).await;
            drop(permit);
        });
    }
}

/// The errors under a failed call's status, outermost first (a refused TLS handshake shows
/// only here: the status says "transport error").
fn causes(status: &tonic::Status) -> String {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        causes.push(error.to_string());
        source = error.source();
    }
    causes.join(": ")
}

async fn deliver_batch(
    router: &DeliveryRouter,
    channel: Channel,
    member_id: &str,
    batch: Vec<Outgoing>,
) {
    let started = Instant::now();
    let request = DeliverRequest {
        deliveries: batch
            .iter()
            .map(|message| Delivery {
                device_id: message.device.to_string(),
                push: Some(message.push.clone()),
            })
            .collect(),
    };
    let mut client = ConnectorClient::new(channel);
    let call = client.deliver(request);
    let answer = tokio::time::timeout(router.inner.config.call_timeout, call).await;
    metrics::histogram!("ringpush_controller_deliver_call_seconds")
        .record(started.elapsed().as_secs_f64());
    let outcomes = match answer {
        Ok(Ok(response)) => response.into_inner().outcomes,
        Ok(Err(status)) => {
            tracing::warn!(connector = member_id, code = ?status.code(), message = status.message(), cause = %causes(&status), count = batch.len(), "deliver call failed; the inboxes keep the messages");
            return retry_failed_call(router, member_id, batch).await;
        }
        Err(_) => {
            tracing::warn!(
                connector = member_id,
                count = batch.len(),
                "deliver call timed out; the inboxes keep the messages"
            );
            return retry_failed_call(router, member_id, batch).await;
        }
    };
    let mut not_connected = Vec::new();
    for (message, outcome) in batch.into_iter().zip(outcomes) {
        let outcome = DeliveryOutcome::try_from(outcome).unwrap_or(DeliveryOutcome::Unspecified);
        let label = match outcome {
            DeliveryOutcome::Written => "written",
            DeliveryOutcome::CatchingUp => "catching_up",
            DeliveryOutcome::NotConnected => "not_connected",
            DeliveryOutcome::Unspecified => "unspecified",
        };
        metrics::counter!("ringpush_controller_deliveries_total", "outcome" => label).increment(1);
        if outcome == DeliveryOutcome::NotConnected && !message.retried {
            not_connected.push(router.retry_at_presence(member_id, message));
        }
    }
    futures_util::future::join_all(not_connected).await;
}

/// A call that failed (the connector died, or its ring lease outlived it): a device that
/// already connected elsewhere has a presence naming the connector that holds it now, so
/// each message is tried there once. Without this, a message sent in the moment between a
/// device reconnecting and this controller's ring dropping the dead connector would wait in
/// the inbox, while its device is connected, until the device's next reconnect.
async fn retry_failed_call(router: &DeliveryRouter, member_id: &str, batch: Vec<Outgoing>) {
    metrics::counter!("ringpush_controller_deliveries_total", "outcome" => "call_failed")
        .increment(batch.len() as u64);
    let retries = batch
        .into_iter()
        .filter(|message| !message.retried)
        .map(|message| router.retry_at_presence(member_id, message));
    futures_util::future::join_all(retries).await;
}

//! A Hello, from the frame to the Welcome: the ring check, the move to the device's shard,
//! and the store work (token check, presence, first inbox page, stored attributes) done in a
//! background task that reports back to the shard with the connection's slab key and
//! generation.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use metrics::{counter, histogram};
use mio::unix::SourceFd;
use ringpush_audience::DeviceAttributes;
use ringpush_protocol::device::{ErrorCode, ServerFrame, Welcome, server_frame};
use ringpush_protocol::ws::close_code;
use ringpush_protocol::{AppId, DeviceId, PROTOCOL_VERSION};
use ringpush_store::{Store, StoreError, StoredMessage, TokenRejection, now_ms};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{SendError, TrySendError};

use crate::ConnectorStats;
use crate::conn::{ConnState, TimelineCatchUp, TimelinePhase};
use crate::output::busy_mut;
use crate::profile::Profile;
use crate::shard::{Command, Moved, Shard, Shared};

/// A Hello that passed its checks on the wire and waits for the store.
#[derive(Debug)]
pub(crate) struct PendingHello {
    pub device: DeviceId,
    pub token: String,
    pub last_seq: u64,
    /// The device's timeline position (stream 1); 0: from its registration.
    pub timeline_seq: u64,
    /// When the Hello frame arrived, for the hello latency histogram.
    pub started: Instant,
}

/// A device the store accepted.
pub(crate) struct Authed {
    pub epoch: u64,
    pub app: AppId,
    pub registered_at_ms: i64,
    /// A renewed device token, when half of the presented one's lifetime has passed.
    pub renewed_token: Option<String>,
    /// What the registry holds for it (a device that reconnects without reporting them again
    /// still matches audiences).
    pub attributes: Option<DeviceAttributes>,
    /// The first page of its inbox after the Hello's `last_seq` (or after `inbox_last_seq`
    /// if that is lower).
    pub page: Vec<StoredMessage>,
    /// Where the device's positions move back to when the store is behind them (it lost
    /// writes): see `Welcome.rewind_inbox_to`.
    pub rewind_inbox_to: Option<u64>,
    pub rewind_timeline_to: Option<u64>,
}

/// The store's answer to a Hello.
pub(crate) struct HelloDone {
    pub key: usize,
    pub generation: u32,
    pub device: DeviceId,
    pub started: Instant,
    pub result: Result<Authed, (ErrorCode, String)>,
}

/// The store's answer to a catch-up read.
pub(crate) struct ReadDone {
    pub key: usize,
    pub generation: u32,
    pub result: Result<Vec<StoredMessage>, StoreError>,
}

impl Shard {
    /// Sends the device away if another connector owns it, else moves the connection to the
    /// device's shard, or starts the store work if it is there already.
    pub fn begin_hello(&mut self, key: usize, hello: PendingHello) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.set_device(hello.device);
        conn.last_sent_seq = hello.last_seq;
        conn.timeline_seq = hello.timeline_seq;
        let ring = self.drain_ring.clone().unwrap_or_else(|| self.ring.clone());
        let owner = ring.owner(hello.device);
        let elsewhere = owner.is_some_and(|owner| owner.id != self.shared.config.id);
        if self.drain_ring.is_some() || elsewhere {
            let url = owner
                .map(|owner| owner.device_url.clone())
                .unwrap_or_default();
            let reason = if self.drain_ring.is_some() {
                "connector shutting down"
            } else {
                "device belongs to another connector"
            };
            self.redirect(key, url, ring.version(), reason);
            return;
        }
        let target = self.shared.shard_of(hello.device);
        if target == self.index {
            self.authenticate(key, hello);
        } else {
            self.move_to(key, target, hello);
        }
    }

    /// Hands the connection to another shard; it is never waited for, so shards cannot
    /// block each other.
    fn move_to(&mut self, key: usize, target: usize, hello: PendingHello) {
        self.flush();
        if !self.conns.contains(key) {
            return;
        }
        let tls = self.tls.as_mut().and_then(|table| table.take(key));
        let conn = self.conns.remove(key);
        let fd = conn.stream.as_raw_fd();
        if let Err(error) = self.registry.deregister(&mut SourceFd(&fd)) {
            tracing::debug!(%error, "could not deregister a moving connection");
        }
        let command = Command::Adopt(Box::new(Moved { conn, hello, tls }));
        match self.shared.shards[target].try_send(command) {
            Ok(()) => {}
            Err(TrySendError::Full(command)) => {
                let sender = self.shared.shards[target].clone();
                let shared = self.shared.clone();
                self.shared.tasks.spawn(async move {
                    if let Err(SendError(Command::Adopt(moved))) = sender.send(command).await {
                        shared.forget(&moved.conn);
                    }
                });
            }
            Err(TrySendError::Closed(Command::Adopt(moved))) => self.shared.forget(&moved.conn),
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Indexes the device (holding its live pushes from now on) and starts the store work.
    fn authenticate(&mut self, key: usize, hello: PendingHello) {
        let stats = &self.shared.stats;
        let conn = &mut self.conns[key];
        conn.state = ConnState::Authenticating;
        let generation = conn.generation;
        match self
            .devices
            .insert(hello.device.0.to_be_bytes(), key as u32)
        {
            None => ConnectorStats::add(&stats.devices, 1),
            Some(old) => {
                // The same device on another connection: that one keeps going until this one
                // is authenticated, so a wrong token cannot push a device off.
                let old = old as usize;
                if let Some(old_generation) = self.conns.get(old).map(|c| c.generation) {
                    busy_mut(&mut self.conns[key], stats).displaced = Some((old, old_generation));
                }
            }
        }
        let reply = self.sender();
        let shared = self.shared.clone();
        self.shared
            .tasks
            .spawn(authenticate(shared, reply, key, generation, hello));
    }

    pub fn on_hello_done(&mut self, done: HelloDone) {
        let key = self
            .live_key(done.key, done.generation)
            .filter(|&key| self.conns[key].state == ConnState::Authenticating);
        let Some(key) = key else {
            if let Ok(authed) = &done.result {
                self.presence_of_stale_hello(done.device, authed.epoch);
            }
            return;
        };
        let authed = match done.result {
            Ok(authed) => authed,
            Err((code, message)) => {
                let ws_code = match code {
                    ErrorCode::Unavailable => close_code::TRY_AGAIN_LATER,
                    _ => close_code::POLICY_VIOLATION,
                };
                self.close_with_error(key, code, &message, ws_code);
                return;
            }
        };
        let profile = Profile {
            app: authed.app,
            attributes: authed.attributes.unwrap_or_default(),
        };
        self.set_profile(key, profile);
        let conn = &mut self.conns[key];
        conn.presence_epoch = conn.presence_epoch.max(authed.epoch);
        // Positions past the store's (it lost writes) move back; the Welcome says so.
        if let Some(to) = authed.rewind_inbox_to {
            conn.last_sent_seq = to;
        }
        if let Some(to) = authed.rewind_timeline_to {
            conn.timeline_seq = to;
        }
        conn.state = ConnState::CatchingUp;
        // The timeline is read once the inbox replay is done; live broadcasts wait for it.
        busy_mut(conn, &self.shared.stats).timeline = TimelineCatchUp {
            phase: TimelinePhase::AfterInbox,
            seen: 0,
            covered: 0,
            registered_at_ms: authed.registered_at_ms,
        };
        let displaced = conn.busy.as_mut().and_then(|busy| busy.displaced.take());
        if let Some(old) = displaced.and_then(|(old, generation)| self.live_key(old, generation)) {
            self.close_ws(old, close_code::NORMAL, "replaced by a newer connection");
        }
        let welcome = ServerFrame {
            kind: Some(server_frame::Kind::Welcome(Welcome {
                protocol_version: PROTOCOL_VERSION,
                ping_interval_seconds: self.shared.config.ping_interval.as_secs() as u32,
                connector_id: self.shared.config.id.clone(),
                ring_version: self.ring.version(),
                max_frame_bytes: self.shared.config.max_frame_bytes as u32,
                rewind_inbox_to: authed.rewind_inbox_to,
                rewind_timeline_to: authed.rewind_timeline_to,
                device_token: authed.renewed_token.unwrap_or_default(),
            })),
        };
        self.queue_frame(key, &welcome);
        histogram!("ringpush_connector_hello_seconds").record(done.started.elapsed().as_secs_f64());
        tracing::debug!(device_id = %done.device, epoch = authed.epoch, "device authenticated");
        self.apply_page(key, authed.page);
        if self.live_key(key, done.generation).is_some() {
            self.resume_input(key);
        }
    }

    /// A Hello finished for a connection that is gone. Its presence record names this
    /// connector; if another connection of the device is here now, it takes that record
    /// over, else the record is cleared.
    fn presence_of_stale_hello(&mut self, device: DeviceId, epoch: u64) {
        let holder = self
            .devices
            .get(&device.0.to_be_bytes())
            .map(|&key| key as usize);
        if let Some(conn) = holder.and_then(|key| self.conns.get_mut(key))
            && conn.presence_epoch < epoch
        {
            // The store replaced the holder's older epoch with this one.
            conn.presence_epoch = epoch;
            return;
        }
        self.clear_presence(device, epoch);
    }

    /// Clears the device's presence if it still is (this connector, epoch); best effort.
    pub fn clear_presence(&self, device: DeviceId, epoch: u64) {
        let shared = self.shared.clone();
        self.shared.tasks.spawn(async move {
            let id = shared.config.id.as_str();
            if let Err(error) = shared.store.clear_presence(device, id, epoch).await {
                tracing::debug!(device_id = %device, %error, "could not clear presence");
            }
        });
    }

    /// Reads the next inbox page after `last_sent_seq` in the background.
    pub fn spawn_inbox_read(&self, key: usize) {
        let conn = &self.conns[key];
        let (device, after, generation) = (conn.device(), conn.last_sent_seq, conn.generation);
        let reply = self.sender();
        let shared = self.shared.clone();
        self.shared.tasks.spawn(async move {
            let result = {
                let _permit = shared.store_permits.acquire().await;
                let batch = shared.config.replay_batch;
                shared
                    .store
                    .read_inbox(device, after, batch, now_ms())
                    .await
            };
            let done = ReadDone {
                key,
                generation,
                result,
            };
            // A closed channel means the shard stopped; nothing is left to do.
            let _ = reply.send(Command::ReadDone(Box::new(done))).await;
        });
    }
}

/// The store work of a Hello; reports to the shard, or undoes the presence if the shard is
/// gone.
async fn authenticate(
    shared: Arc<Shared>,
    reply: mpsc::Sender<Command>,
    key: usize,
    generation: u32,
    hello: PendingHello,
) {
    let result = check_hello(&shared, &hello).await;
    let done = HelloDone {
        key,
        generation,
        device: hello.device,
        started: hello.started,
        result,
    };
    if let Err(SendError(Command::HelloDone(done))) =
        reply.send(Command::HelloDone(Box::new(done))).await
        && let Ok(authed) = done.result
    {
        let id = shared.config.id.as_str();
        let _ = shared
            .store
            .clear_presence(done.device, id, authed.epoch)
            .await;
    }
}

async fn check_hello(shared: &Shared, hello: &PendingHello) -> Result<Authed, (ErrorCode, String)> {
    let _permit = shared.store_permits.acquire().await;
    let store = shared.store.as_ref();
    let id = shared.config.id.as_str();
    let unavailable = |error: StoreError| {
        tracing::warn!(device_id = %hello.device, %error, "store call for a hello failed");
        let message = "the connector cannot reach its store; retry later";
        (ErrorCode::Unavailable, message.to_owned())
    };
    let Some(record) = store.device(hello.device).await.map_err(unavailable)? else {
        let message = "no device with this id is registered";
        return Err((ErrorCode::UnknownDevice, message.to_owned()));
    };
    let renewed_token = check_token(shared, hello, record.app)
        .await
        .map_err(|error| error.map_store(unavailable))?;
    let epoch = store
        .set_presence(hello.device, id, now_ms())
        .await
        .map_err(unavailable)?;
    let batch = shared.config.replay_batch;
    let timeline_head = async {
        // A device at 0 has nothing to move back.
        if hello.timeline_seq == 0 {
            return Ok(None);
        }
        store.timelines().timeline_head(record.app).await.map(Some)
    };
    let answers = async {
        let (page, attributes, head) = tokio::join!(
            store.read_inbox(hello.device, hello.last_seq, batch, now_ms()),
            store.registry().attributes(hello.device),
            timeline_head,
        );
        let (page, rewind_inbox_to) = rewind_if_store_behind(store, hello, page?, batch).await?;
        let rewind_timeline_to = head?.filter(|head| hello.timeline_seq > *head);
        Ok::<_, StoreError>((page, attributes?, rewind_inbox_to, rewind_timeline_to))
    };
    match answers.await {
        Ok((page, attributes, rewind_inbox_to, rewind_timeline_to)) => Ok(Authed {
            epoch,
            renewed_token,
            app: record.app,
            registered_at_ms: record.created_at_ms,
            attributes,
            page,
            rewind_inbox_to,
            rewind_timeline_to,
        }),
        Err(error) => {
            let _ = store.clear_presence(hello.device, id, epoch).await;
            Err(unavailable(error))
        }
    }
}

/// Why a Hello's token was refused, or the store error that kept it from being checked.
enum TokenCheckError {
    Refused(String),
    Store(StoreError),
}

impl TokenCheckError {
    fn map_store(
        self,
        unavailable: impl FnOnce(StoreError) -> (ErrorCode, String),
    ) -> (ErrorCode, String) {
        match self {
            Self::Refused(message) => (ErrorCode::Unauthenticated, message),
            Self::Store(error) => unavailable(error),
        }
    }
}

/// Checks the Hello's token against the device's app (see `AppRecord::check_device_token`);
/// answers a renewed token once half of the presented one's lifetime has passed, or when a
/// newer token-signing key exists (so that after a rotation every device that connects
/// moves to the new key, and the old one can be revoked without cutting anyone off).
async fn check_token(
    shared: &Shared,
    hello: &PendingHello,
    app: AppId,
) -> Result<Option<String>, TokenCheckError> {
    let store = shared.store.as_ref();
    let now = now_ms();
    let mut fresh = false;
    loop {
        let record = shared
            .apps
            .app(store, app, fresh)
            .await
            .map_err(TokenCheckError::Store)?
            .ok_or_else(|| TokenCheckError::Refused("the device's app was deleted".into()))?;
        match record.check_device_token(hello.device, &hello.token, now) {
            Ok(token) => {
                let half_gone = now >= token.issued_at_ms + token.lifetime_ms() / 2;
                let key_replaced = record
                    .token_signing_key()
                    .is_some_and(|newest| newest.id != token.key_id);
                return Ok((half_gone || key_replaced)
                    .then(|| record.issue_device_token(hello.device, now, token.lifetime_ms()))
                    .flatten());
            }
            // A key created since the app was cached: read it again once.
            Err(TokenRejection::UnknownKey) if !fresh => fresh = true,
            Err(rejection) => {
                counter!("ringpush_connector_tokens_refused_total", "reason" => rejection.label())
                    .increment(1);
                return Err(TokenCheckError::Refused(rejection.to_string()));
            }
        }
    }
}

/// Where a store that lost writes (a failover to a lagging replica) shows: a device whose
/// position is past the inbox's last seq. The device then moves back to what the store has
/// as acked, and the inbox is read again from there; answers the page to send and, if the
/// device moves back, where to. Costs nothing in the usual case: a message above the
/// device's position proves the store is not behind it, and a device at 0 cannot be ahead;
/// otherwise the inbox holds only what the device has received and not acked, which
/// `inbox_state` reads cheaply.
async fn rewind_if_store_behind(
    store: &dyn Store,
    hello: &PendingHello,
    page: Vec<StoredMessage>,
    batch: usize,
) -> Result<(Vec<StoredMessage>, Option<u64>), StoreError> {
    if !page.is_empty() || hello.last_seq == 0 {
        return Ok((page, None));
    }
    let inbox = store.inbox_state(hello.device, now_ms()).await?;
    if hello.last_seq <= inbox.last_seq {
        return Ok((page, None));
    }
    tracing::warn!(device_id = %hello.device, device_last_seq = hello.last_seq, inbox_last_seq = inbox.last_seq, "device is ahead of its inbox (the store lost writes?); it moves back to the acked position");
    let page = store
        .read_inbox(hello.device, inbox.acked_up_to, batch, now_ms())
        .await?;
    Ok((page, Some(inbox.acked_up_to)))
}

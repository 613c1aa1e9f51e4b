//! The app's side of the SDK: a [`Client`] that hands each message to the app exactly once,
//! and takes the app's attributes (`attributes` below), reports, platform token and platform
//! notifications (`platform` below).

mod attributes;
mod platform;

use std::collections::BTreeSet;
use std::sync::Arc;

use ringpush_protocol::DeviceId;
use ringpush_protocol::device::ReportKind;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ack::{AckCoalescer, Handed};
use crate::attributes::{AttributeSync, starting_set};
use crate::backoff::Backoff;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::inbound::Inbound;
use crate::message::Message;
use crate::platform::{FromConnection, HandedInbox};
use crate::registration::{Identity, register_with};
use crate::reports::{self, REPORT_QUEUE_CAPACITY, ReportPacer, Reports};
use crate::state::{self, DeviceState, StateKeeper};
use crate::stats::{Counters, Stats};
use crate::stream::{Positions, Stream};
use crate::task::{ConnectionTask, Event};

/// A device's connection to ringpush, and the queue of its messages.
///
/// [`Client::start`] loads the device's state (or registers the device) and starts a
/// background task that connects, reconnects and follows redirects on its own. The app takes
/// messages with [`Client::next_message`]; each is saved as handed before it is returned, so
/// the app never sees a message twice, even across restarts. Messages come from two streams
/// (the device's inbox and its app's timeline, see [`Stream`]), each in order and each
/// exactly once.
///
/// The app describes the device with attributes ([`Config::with_attributes`],
/// [`Client::set_attributes`], [`Client::add_tag`], ...), which audiences are matched
/// against, and tells what the user did with a message ([`Client::report_opened`],
/// [`Client::report_clicked`]).
///
/// A device that cannot always hold its connection registers its platform token
/// ([`Client::set_platform_token`]) and passes the ringpush envelope of each platform
/// notification to [`Client::handle_platform_push`], which hands each message once across
/// both paths.
///
/// Dropping the client stops its task; [`Client::close`] does so and waits for it.
#[derive(Debug)]
pub struct Client {
    identity: Identity,
    state: StateKeeper,
    /// Messages from the connection task, in seq order; bounded by `Config::queue_capacity`.
    events: mpsc::Receiver<Event>,
    /// Tells the connection task how far the app has got, which is what it may ack.
    handed: watch::Sender<Handed>,
    /// Wakes the connection task after the app changed the attributes (saved in `state`).
    attributes_changed: Arc<Notify>,
    /// Report events for the connection task to send.
    reports: Arc<Reports>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    /// The highest seq handed to the app (and saved), per stream, in order.
    handed_up_to: Positions,
    /// Inbox seqs above `handed_up_to.inbox` handed (and saved) from platform notifications
    /// (see [`crate::platform`]); bounded by [`crate::MAX_PLATFORM_HANDED`].
    platform_handed: BTreeSet<u64>,
    /// For the controller calls of the app side (the platform token).
    http: reqwest::Client,
    controller_url: String,
    /// Whether `http://` Web Push endpoints pass the SDK's own check: only with an
    /// `http://` controller, that is a test or development deployment (the controller has
    /// the last word either way).
    allow_http_endpoints: bool,
    /// A message taken from the queue but not yet handed: its save failed, or the
    /// `next_message` call was cancelled while saving. The next call hands it.
    pending: Option<Message>,
}

impl Client {
    /// Loads the state file (or registers the device and creates it), settles the device's
    /// attributes from the saved and the configured ones ([`Config::with_attributes`]), then
    /// starts connecting in the background. Must be called within a Tokio runtime.
    ///
    /// Fails on an invalid configuration, an unusable state file, or a failed registration;
    /// the connection itself is never waited for here.
    pub async fn start(config: Config) -> Result<Self> {
        config.validate()?;
        let tls = crate::tls::client_config(config.tls_ca.as_ref())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .connect_timeout(config.connect_timeout)
            .timeout(config.connect_timeout * 2)
            .build()
            .map_err(|error| Error::InvalidConfig(format!("http client: {error}")))?;
        let device_state = load_or_register(&config, &http).await?;
        let identity = device_state.identity.clone();
        let handed_up_to = Positions {
            inbox: device_state.last_seq,
            timeline: device_state.timeline_seq,
        };
        let platform_handed = device_state.platform_handed.clone();
        let starting_attributes =
            starting_set(device_state.attributes.as_ref(), config.attributes.as_ref());
        let controller_url = config.controller_url.clone();
        let allow_http_endpoints = controller_url.starts_with("http://");
        let state = StateKeeper::new(config.state_path.clone(), device_state);
        state
            .update(move |state| state.attributes = starting_attributes)
            .await?;

        let (event_sender, events) = mpsc::channel(config.queue_capacity);
        let (handed, handed_receiver) = watch::channel(Handed {
            up_to: handed_up_to,
            more_queued: false,
        });
        let counters = Arc::new(Counters::default());
        let attributes_changed = Arc::new(Notify::new());
        let reports = Arc::new(Reports::new(REPORT_QUEUE_CAPACITY, counters.clone()));
        let shutdown = CancellationToken::new();
        let task = ConnectionTask {
            backoff: Backoff::new(config.backoff),
            config,
            identity: identity.clone(),
            state: state.clone(),
            counters: counters.clone(),
            events: event_sender,
            handed: handed_receiver,
            attributes_changed: attributes_changed.clone(),
            reports: reports.clone(),
            shutdown: shutdown.clone(),
            http: http.clone(),
            tls,
            inbound: Inbound::new(handed_up_to),
            acks: AckCoalescer::new(),
            attribute_sync: AttributeSync::default(),
            report_pacer: ReportPacer::default(),
        };
        let task = tokio::spawn(task.run());
        Ok(Self {
            identity,
            state,
            events,
            handed,
            attributes_changed,
            reports,
            counters,
            shutdown,
            task: Some(task),
            handed_up_to,
            platform_handed,
            http,
            controller_url,
            allow_http_endpoints,
            pending: None,
        })
    }

    /// Waits for the next message and hands it to the app.
    ///
    /// Messages come in increasing seq order within their [`Stream`], each exactly once: the
    /// SDK saves the message's seq as handed in its stream (in the state file, if there is
    /// one) before returning it, so a message returned here is never returned again, not even
    /// after a restart. The connector is told (by a cumulative Ack) only after that, and a
    /// RECEIVED report is queued for the message's statistics. A message the app already had
    /// from a platform notification ([`Client::handle_platform_push`]) is not returned again.
    ///
    /// Errors: a fatal refusal of the device by the connector ([`Error::Unauthenticated`],
    /// [`Error::UnknownDevice`], [`Error::UnsupportedVersion`]), after which the client is
    /// closed; a failure to save the state file ([`Error::StateIo`]), after which the same
    /// message is offered again on the next call; [`Error::Closed`] once the client has stopped.
    ///
    /// Cancellation safe: if the future is dropped before it completes, no message is lost.
    pub async fn next_message(&mut self) -> Result<Message> {
        loop {
            let message = match self.pending.take() {
                Some(message) => message,
                None => match self.events.recv().await {
                    Some(Event::Message(message)) => message,
                    Some(Event::Fatal(error)) => return Err(error),
                    Some(Event::LowerPositions(limit)) => {
                        self.lower_positions(limit).await?;
                        continue;
                    }
                    None => return Err(Error::Closed),
                },
            };
            let (stream, seq) = (message.stream, message.seq);
            if seq <= self.handed_up_to.get(stream) {
                // The connection task already drops these; this guards the promise here too.
                Counters::bump(&self.counters.duplicates_dropped);
                continue;
            }
            self.pending = Some(message);
            let verdict = match stream {
                Stream::Inbox => {
                    let mut inbox = self.handed_inbox();
                    let verdict = inbox.hand_from_connection(seq);
                    self.save_inbox(inbox).await?;
                    verdict
                }
                Stream::Timeline => {
                    self.state
                        .update(move |state| state.timeline_seq = state.timeline_seq.max(seq))
                        .await?;
                    self.handed_up_to.raise(stream, seq);
                    // Timeline gaps are not losses: the message says so already.
                    FromConnection::New { missed_before: 0 }
                }
            };
            let Some(mut message) = self.pending.take() else {
                continue; // nothing else takes the pending message; kept for clarity of types
            };
            let missed_before = match verdict {
                FromConnection::New { missed_before } => missed_before,
                // (`AlreadyReceived` cannot come here: replays were dropped above.)
                FromConnection::HandedFromPlatform | FromConnection::AlreadyReceived => {
                    // Handed from a platform notification: not again, but the position moved
                    // (and was saved), so the Ack covers it and the inbox drops it.
                    tracing::debug!(device_id = %self.identity.device_id, seq, "push already handed from a platform notification dropped");
                    Counters::bump(&self.counters.duplicates_dropped);
                    self.publish_handed();
                    continue;
                }
            };
            // The connection counts the seqs it did not bring; those a platform notification
            // handed were not missed by the app.
            message.skipped_before = message.skipped_before.min(missed_before);
            Counters::bump(&self.counters.messages_handed);
            self.counters
                .messages_skipped
                .fetch_add(message.skipped_before, std::sync::atomic::Ordering::Relaxed);
            // Queued before the position is published, so that it rides with the Ack.
            self.reports
                .push(reports::event(&message, ReportKind::Received));
            self.publish_handed();
            return Ok(message);
        }
    }

    /// The inbox seqs handed so far, by either path.
    fn handed_inbox(&self) -> HandedInbox {
        HandedInbox {
            up_to: self.handed_up_to.inbox,
            from_platform: self.platform_handed.clone(),
        }
    }

    /// Saves `inbox` as the inbox seqs handed, then makes it the client's; on a failed save
    /// nothing changes.
    async fn save_inbox(&mut self, inbox: HandedInbox) -> Result<()> {
        let saved = inbox.clone();
        self.state
            .update(move |state| {
                state.last_seq = saved.up_to;
                state.platform_handed = saved.from_platform;
            })
            .await?;
        self.handed_up_to.inbox = inbox.up_to;
        self.platform_handed = inbox.from_platform;
        Ok(())
    }

    /// Tells the connection task how far the app has got, which is what it may ack.
    fn publish_handed(&self) {
        self.handed.send_replace(Handed {
            up_to: self.handed_up_to,
            more_queued: !self.events.is_empty(),
        });
    }

    /// Moves the handed (and saved) positions back to `limit` where they are past it: the
    /// store lost writes and numbers new messages from there again.
    async fn lower_positions(&mut self, limit: Positions) -> Result<()> {
        let mut inbox = self.handed_inbox();
        inbox.lower_to(limit.inbox);
        let saved = inbox.clone();
        self.state
            .update(move |state| {
                state.last_seq = saved.up_to;
                state.platform_handed = saved.from_platform;
                state.timeline_seq = state.timeline_seq.min(limit.timeline);
            })
            .await?;
        self.handed_up_to.lower_to(limit);
        self.platform_handed = inbox.from_platform;
        self.publish_handed();
        Ok(())
    }

    /// Who this device is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// This device's id.
    pub fn device_id(&self) -> DeviceId {
        self.identity.device_id
    }

    /// The inbox position (as saved): the highest seq handed to the app in order, over the
    /// connection. Messages handed from platform notifications ahead of the connection are
    /// above it until the connection brings them (see [`Client::handle_platform_push`]).
    pub fn last_seq(&self) -> u64 {
        self.handed_up_to.inbox
    }

    /// The highest timeline seq handed to the app so far (as saved).
    pub fn timeline_seq(&self) -> u64 {
        self.handed_up_to.timeline
    }

    /// Reports that the user opened `message` (its notification), for the message's and its
    /// campaign's statistics.
    ///
    /// Queued and sent on the live connection in batches; while disconnected, up to 1,000
    /// events wait (past that the oldest are dropped, counted in
    /// [`Stats::reports_dropped`]). Not kept across restarts.
    pub fn report_opened(&self, message: &Message) {
        self.reports
            .push(reports::event(message, ReportKind::Opened));
    }

    /// Reports that the user clicked an action or link of `message`; queued and sent as
    /// [`Client::report_opened`] describes.
    pub fn report_clicked(&self, message: &Message) {
        self.reports
            .push(reports::event(message, ReportKind::Clicked));
    }

    /// The connector this device last reached, if any.
    pub fn connector_url(&self) -> Option<String> {
        self.state.snapshot().connector_url
    }

    /// The client's counters now.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Why the last attempt to open a connection to a connector failed, until one succeeds
    /// (for instance a `wss://` connector whose certificate is not trusted: see
    /// [`Config::with_tls_ca`](crate::Config::with_tls_ca)). The client keeps retrying
    /// meanwhile.
    pub fn last_connect_error(&self) -> Option<String> {
        self.counters.connect_error()
    }

    /// Stops the connection (acking what was handed, sending the queued reports and closing
    /// the WebSocket cleanly, within about a second) and waits for the background task to
    /// end. Messages received but not handed are not lost: they were not acked and come again
    /// on the next start.
    pub async fn close(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
impl Client {
    /// A client without a connection task, for tests of the app side: the test plays the
    /// task, queuing its events with the sender and reading the published position.
    pub(crate) fn detached(
        state: StateKeeper,
    ) -> (Self, mpsc::Sender<Event>, watch::Receiver<Handed>) {
        let saved = state.snapshot();
        let handed_up_to = Positions {
            inbox: saved.last_seq,
            timeline: saved.timeline_seq,
        };
        let (event_sender, events) = mpsc::channel(16);
        let (handed, handed_receiver) = watch::channel(Handed {
            up_to: handed_up_to,
            more_queued: false,
        });
        let counters = Arc::new(Counters::default());
        let client = Self {
            identity: saved.identity.clone(),
            state,
            events,
            handed,
            attributes_changed: Arc::new(Notify::new()),
            reports: Arc::new(Reports::new(REPORT_QUEUE_CAPACITY, counters.clone())),
            counters,
            shutdown: CancellationToken::new(),
            task: None,
            handed_up_to,
            platform_handed: saved.platform_handed,
            http: reqwest::Client::new(),
            controller_url: "http://127.0.0.1:9".into(),
            allow_http_endpoints: true,
            pending: None,
        };
        (client, event_sender, handed_receiver)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // The task sees this, acks what was handed, closes its socket and ends.
        self.shutdown.cancel();
    }
}

/// The device's state: from the state file if there is one, else a new one from the configured
/// identity or a registration (saved before anything else happens).
async fn load_or_register(config: &Config, http: &reqwest::Client) -> Result<DeviceState> {
    if let Some(path) = config.state_path.clone() {
        let loaded = blocking(move || state::load(&path)).await?;
        if let Some(loaded) = loaded {
            if let Some(path) = &config.state_path {
                state::check_app(path, &loaded, config.app_id)?;
            }
            return Ok(loaded);
        }
    }
    let identity = match &config.identity {
        Some(identity) => identity.clone(),
        None => {
            let identity = register_with(
                http,
                &config.controller_url,
                config.app_id,
                &config.client_key,
            )
            .await?;
            tracing::info!(device_id = %identity.device_id, "device registered");
            identity
        }
    };
    let fresh = DeviceState::new(identity);
    if let Some(path) = config.state_path.clone() {
        let to_save = fresh.clone();
        blocking(move || state::save(&path, &to_save)).await?;
    }
    Ok(fresh)
}

/// Runs file work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join_error| Error::StateIo {
            path: Default::default(),
            source: std::io::Error::other(join_error.to_string()),
        })?
}

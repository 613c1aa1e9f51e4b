//! The background task that keeps a device connected: where to connect, when to retry, and
//! what to remember.
//!
//! Where to connect: the remembered connector first; the dispatcher only when there is none,
//! after a failure to open a connection to it, on a Redirect without a URL, or after more than
//! [`MAX_REDIRECTS_IN_A_ROW`] redirects in a row (two connectors that disagree for a moment
//! must not bounce the device between them). When to retry: a Redirect with a URL is followed
//! at once; everything else waits a backoff first (see [`crate::backoff`]), which starts over
//! after a connection that reached Welcome and stayed up for `backoff_reset_after`.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::ack::{AckCoalescer, Handed};
use crate::attributes::AttributeSync;
use crate::backoff::Backoff;
use crate::config::Config;
use crate::dispatcher;
use crate::error::Error;
use crate::inbound::Inbound;
use crate::message::Message;
use crate::registration::Identity;
use crate::reports::{ReportPacer, Reports};
use crate::session::{self, SessionEnd};
use crate::state::StateKeeper;
use crate::stats::Counters;

/// Redirects followed in a row, without a Welcome between them, before the client backs off
/// and asks the dispatcher instead.
pub(crate) const MAX_REDIRECTS_IN_A_ROW: u32 = 3;

/// What the task sends to the app side.
#[derive(Debug)]
pub(crate) enum Event {
    /// A new message, in seq order.
    Message(Message),
    /// The device was refused for good; the task has ended.
    Fatal(Error),
    /// The store is behind the device's positions (it lost writes): the app side moves its
    /// handed and saved positions back to these, before any later message.
    LowerPositions(crate::stream::Positions),
}

/// Where the next connection goes.
#[derive(Debug)]
enum Target {
    /// A known connector URL; `ring_version` of the Redirect that named it, else 0.
    Connector { url: String, ring_version: u64 },
    /// Ask the dispatcher first.
    Dispatcher,
}

/// Everything the connection task owns.
pub(crate) struct ConnectionTask {
    pub(crate) config: Config,
    pub(crate) identity: Identity,
    /// Shared with the app side, which persists the positions and the attributes; the task
    /// persists the connector URL and reads the attributes to send.
    pub(crate) state: StateKeeper,
    pub(crate) counters: Arc<Counters>,
    /// The bounded queue of messages to the app; its capacity is the read-ahead limit.
    pub(crate) events: mpsc::Sender<Event>,
    /// The app's position, published after each handed (and persisted) message.
    pub(crate) handed: watch::Receiver<Handed>,
    /// Fired by the app side after it saved new attributes.
    pub(crate) attributes_changed: Arc<Notify>,
    /// Report events queued by the app side, to send on the live connection.
    pub(crate) reports: Arc<Reports>,
    /// Fired by `Client::close` or by dropping the client.
    pub(crate) shutdown: CancellationToken,
    pub(crate) http: reqwest::Client,
    /// What `wss://` connectors are trusted with (the platform's roots and the app's CA).
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) inbound: Inbound,
    pub(crate) acks: AckCoalescer,
    pub(crate) attribute_sync: AttributeSync,
    pub(crate) report_pacer: ReportPacer,
    pub(crate) backoff: Backoff,
}

impl ConnectionTask {
    /// Connects, and reconnects, until shutdown or a fatal error.
    pub(crate) async fn run(mut self) {
        let device_id = self.identity.device_id;
        let saved = self.state.snapshot().connector_url;
        let mut target = match saved.filter(|_| self.config.reuse_saved_connector) {
            Some(url) => Target::Connector {
                url,
                ring_version: 0,
            },
            None => Target::Dispatcher,
        };
        let mut redirects_in_a_row = 0u32;
        loop {
            let (url, ring_version) = match target {
                Target::Connector { url, ring_version } => (url, ring_version),
                Target::Dispatcher => match self.ask_dispatcher().await {
                    Some(url) => (url, 0),
                    None => {
                        if !self.wait_backoff("no connector from the dispatcher").await {
                            return;
                        }
                        target = Target::Dispatcher;
                        continue;
                    }
                },
            };
            let socket = match session::open(
                &url,
                &self.tls,
                self.config.connect_timeout,
                self.config.max_frame_bytes,
            )
            .await
            {
                Ok(socket) => socket,
                Err(reason) => {
                    tracing::warn!(%device_id, url, reason, "could not connect to the connector");
                    self.counters.set_connect_error(Some(reason));
                    self.forget_connector().await;
                    if !self.wait_backoff("connection failed").await {
                        return;
                    }
                    target = Target::Dispatcher;
                    continue;
                }
            };
            let outcome = self.run_session(socket, &url, ring_version).await;
            if outcome.welcomed_for.is_some() {
                redirects_in_a_row = 0;
            }
            if outcome
                .welcomed_for
                .is_some_and(|up_for| up_for >= self.config.backoff_reset_after)
            {
                self.backoff.reset();
            }
            target = match outcome.end {
                SessionEnd::Shutdown => return,
                SessionEnd::Fatal(error) => {
                    tracing::error!(%device_id, %error, "the connector refused the device");
                    tokio::select! {
                        () = self.shutdown.cancelled() => {}
                        _ = self.events.send(Event::Fatal(error)) => {}
                    }
                    return;
                }
                SessionEnd::Redirect {
                    url: next,
                    ring_version,
                    reason,
                } => {
                    redirects_in_a_row += 1;
                    Counters::bump(&self.counters.redirects_followed);
                    tracing::info!(%device_id, from = url, to = next, ring_version, reason, redirects_in_a_row, "redirect");
                    if redirects_in_a_row > MAX_REDIRECTS_IN_A_ROW {
                        redirects_in_a_row = 0;
                        if !self.wait_backoff("too many redirects in a row").await {
                            return;
                        }
                        Target::Dispatcher
                    } else if next.is_empty() {
                        Target::Dispatcher
                    } else {
                        Target::Connector {
                            url: next,
                            ring_version,
                        }
                    }
                }
                SessionEnd::Lost { reason } => {
                    tracing::info!(%device_id, url, reason, "connection lost");
                    if !self.wait_backoff("connection lost").await {
                        return;
                    }
                    Target::Connector {
                        url,
                        ring_version: 0,
                    }
                }
            };
        }
    }

    /// The connector URL for this device from the first dispatcher that answers (the nearest
    /// region's, then the fallbacks in order), or `None` after logging why none did.
    async fn ask_dispatcher(&mut self) -> Option<String> {
        let device_id = self.identity.device_id;
        for dispatcher_url in self.config.dispatchers() {
            Counters::bump(&self.counters.dispatcher_lookups);
            match dispatcher::lookup(
                &self.http,
                dispatcher_url,
                device_id,
                self.config.connect_timeout,
            )
            .await
            {
                Ok(assignment) => {
                    tracing::debug!(%device_id, dispatcher_url, url = assignment.url, connector_id = assignment.connector_id, "dispatcher answered");
                    return Some(assignment.url);
                }
                Err(error) => {
                    tracing::warn!(%device_id, dispatcher_url, %error, "dispatcher lookup failed");
                }
            }
        }
        None
    }

    /// Waits the next backoff delay, counting a reconnect; `false` if the client closed meanwhile.
    async fn wait_backoff(&mut self, why: &'static str) -> bool {
        let delay = self.backoff.next_delay();
        Counters::bump(&self.counters.reconnects);
        tracing::info!(device_id = %self.identity.device_id, ?delay, why, "reconnect");
        tokio::select! {
            () = self.shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }

    /// Remembers the connector that welcomed the device, for the next start.
    pub(crate) async fn remember_connector(&self, url: &str) {
        let url = url.to_owned();
        let saved = self
            .state
            .update(move |state| state.connector_url = Some(url))
            .await;
        if let Err(error) = saved {
            tracing::warn!(device_id = %self.identity.device_id, %error, "could not save the connector url");
        }
    }

    /// Keeps the renewed device token a Welcome carried: used from the next Hello on, and
    /// saved (the old token stays valid until it expires, so a failed save loses nothing).
    pub(crate) async fn keep_renewed_token(&mut self, token: String) {
        self.identity.device_token = token.clone();
        let saved = self
            .state
            .update(move |state| state.identity.device_token = token)
            .await;
        match saved {
            Ok(()) => tracing::info!(device_id = %self.identity.device_id, "device token renewed"),
            Err(error) => {
                tracing::warn!(device_id = %self.identity.device_id, %error, "could not save the renewed device token");
            }
        }
    }

    /// Forgets a connector that could not be reached, so that the next start asks the dispatcher.
    async fn forget_connector(&self) {
        let saved = self.state.update(|state| state.connector_url = None).await;
        if let Err(error) = saved {
            tracing::warn!(device_id = %self.identity.device_id, %error, "could not save the state");
        }
    }
}

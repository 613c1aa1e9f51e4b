//! One connection to one connector: Hello, Welcome, then pushes, pings, acks, attributes and
//! reports until it ends (what the device sends is in [`crate::outbound`]).
//!
//! The session owns the socket and reads it only while the queue to the app has room (it holds
//! a reserved slot before it reads), so a slow app slows the socket instead of growing memory;
//! the connector keeps the rest in the device's inbox. Liveness: after Welcome the session
//! pings every interval and gives the connection up after two intervals without any frame.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use ringpush_protocol::device::{self, ErrorCode, Hello, Ping, client_frame, server_frame};
use ringpush_protocol::{PROTOCOL_VERSION, frame};
use tokio::net::TcpStream;
use tokio::sync::mpsc::OwnedPermit;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::Error;
use crate::inbound::Verdict;
use crate::message::Message;
use crate::stats::Counters;
use crate::stream::{Positions, Stream};
use crate::task::{ConnectionTask, Event};

/// The socket of one session.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the SDK tells connectors it is, in Hello.
pub(crate) const SDK_NAME: &str = concat!("ringpush-rust/", env!("CARGO_PKG_VERSION"));

/// The longest a clean close waits for the connector before the socket is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The largest frame to send a connector whose Welcome has not said (docs/protocol.md §4).
pub(crate) const DEFAULT_SEND_LIMIT: usize = 4096;

/// How a session ended.
#[derive(Debug)]
pub(crate) enum SessionEnd {
    /// The client is closing.
    Shutdown,
    /// The connector refused the device for good.
    Fatal(Error),
    /// The connector sent the device elsewhere (`url` empty: ask the dispatcher).
    Redirect {
        url: String,
        ring_version: u64,
        reason: String,
    },
    /// The connection broke or was closed; try again after a backoff.
    Lost { reason: String },
}

/// A session's end, and how long it had been up since its Welcome (if it got one).
#[derive(Debug)]
pub(crate) struct SessionOutcome {
    pub(crate) end: SessionEnd,
    pub(crate) welcomed_for: Option<Duration>,
}

/// What an Error frame means for the client.
pub(crate) fn classify_error(code: ErrorCode, message: String) -> SessionEnd {
    match code {
        ErrorCode::Unauthenticated => SessionEnd::Fatal(Error::Unauthenticated { message }),
        ErrorCode::UnknownDevice => SessionEnd::Fatal(Error::UnknownDevice { message }),
        ErrorCode::UnsupportedVersion => SessionEnd::Fatal(Error::UnsupportedVersion {
            version: PROTOCOL_VERSION,
            message,
        }),
        // Unavailable, timeout, slow consumer, bad frame and the rest: transient or a bug on
        // one side; a new connection after a backoff is the cure in every case.
        other => SessionEnd::Lost {
            reason: format!("connector error {}: {message}", other.as_str_name()),
        },
    }
}

/// Opens the WebSocket to `url`, within `connect_timeout`.
pub(crate) async fn open(
    url: &str,
    tls: &Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
    max_frame_bytes: usize,
) -> Result<Socket, String> {
    // Small buffers: a device holds one idle connection for hours and receives small frames.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(max_frame_bytes))
        .max_frame_size(Some(max_frame_bytes));
    // Used for `wss://` URLs only; `ws://` stays plain.
    let connector = tokio_tungstenite::Connector::Rustls(tls.clone());
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, Some(connector));
    match timeout(connect_timeout, connecting).await {
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(error)) => Err(crate::tls::explain_connect_error(&error)),
        Err(_) => Err(format!("no connection within {connect_timeout:?}")),
    }
}

/// The liveness clock of a session, and what its Welcome said.
struct Liveness {
    /// Set by Welcome.
    welcomed_at: Option<Instant>,
    /// The largest frame the connector accepts: its Welcome's `max_frame_bytes`.
    send_limit: usize,
    ping_every: Duration,
    /// Silence allowed before the connection counts as dead.
    silence_limit: Duration,
    dead_at: Instant,
    next_ping_at: Instant,
    next_nonce: u64,
}

impl Liveness {
    fn awaiting_welcome(handshake_timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            welcomed_at: None,
            send_limit: DEFAULT_SEND_LIMIT,
            ping_every: handshake_timeout,
            silence_limit: handshake_timeout,
            dead_at: now + handshake_timeout,
            next_ping_at: now + handshake_timeout,
            next_nonce: 1,
        }
    }

    fn welcomed(&mut self, ping_interval_seconds: u32, max_frame_bytes: u32) {
        let now = Instant::now();
        self.welcomed_at = Some(now);
        if max_frame_bytes > 0 {
            self.send_limit = max_frame_bytes as usize;
        }
        self.ping_every = Duration::from_secs(u64::from(ping_interval_seconds.max(1)));
        self.silence_limit = self.ping_every * 2;
        self.dead_at = now + self.silence_limit;
        self.next_ping_at = now + self.ping_every;
    }

    fn heard_from_peer(&mut self) {
        self.dead_at = Instant::now() + self.silence_limit;
    }

    fn up_for(&self) -> Option<Duration> {
        self.welcomed_at.map(|at| at.elapsed())
    }
}

impl ConnectionTask {
    /// Runs one session on `socket`, opened to `url`; `ring_version` is that of the Redirect
    /// that led here (0 if none).
    pub(crate) async fn run_session(
        &mut self,
        mut socket: Socket,
        url: &str,
        ring_version: u64,
    ) -> SessionOutcome {
        self.inbound.start_connection();
        self.attribute_sync.connection_started();
        let mut live = Liveness::awaiting_welcome(self.config.handshake_timeout);
        let end = self.drive(&mut socket, url, ring_version, &mut live).await;
        self.acks.connection_ended();
        self.counters
            .connected
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if matches!(end, SessionEnd::Shutdown) {
            // Best effort: the closing handshake lets the connector free the device at once.
            let _ = timeout(CLOSE_GRACE, socket.close(None)).await;
        }
        SessionOutcome {
            end,
            welcomed_for: live.up_for(),
        }
    }

    async fn drive(
        &mut self,
        socket: &mut Socket,
        url: &str,
        ring_version: u64,
        live: &mut Liveness,
    ) -> SessionEnd {
        let received = self.inbound.received_up_to();
        let hello = client_frame::Kind::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            device_id: self.identity.device_id.to_string(),
            device_token: self.identity.device_token.clone(),
            last_seq: received.inbox,
            ring_version,
            sdk: SDK_NAME.to_owned(),
            timeline_seq: received.timeline,
        });
        if let Err(reason) = self.send(socket, hello).await {
            return SessionEnd::Lost { reason };
        }
        // A reserved slot in the queue to the app: the socket is read only while one is held.
        let mut slot: Option<OwnedPermit<Event>> = None;
        loop {
            let welcomed = live.welcomed_at.is_some();
            let ack_due = self.acks.due_at();
            let attributes_due = self.attribute_sync.due_at();
            let reports_due = if welcomed {
                self.report_pacer.due_at(
                    !self.reports.is_empty(),
                    ack_due.is_some(),
                    Instant::now(),
                )
            } else {
                None
            };
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => {
                    if welcomed {
                        // Best effort, as the client is going: the last Ack, then every report.
                        if self.send_owed_ack(socket, true).await.is_ok() {
                            let _ = self.send_reports(socket, live.send_limit, true).await;
                        }
                    }
                    return SessionEnd::Shutdown;
                }
                reserved = self.events.clone().reserve_owned(), if slot.is_none() => {
                    let Ok(reserved) = reserved else {
                        return SessionEnd::Shutdown; // the app side is gone
                    };
                    slot = Some(reserved);
                    // The socket was not read while the app's queue was full: silence then
                    // says nothing about the connection.
                    live.heard_from_peer();
                }
                changed = self.handed.changed(), if welcomed => {
                    if changed.is_err() {
                        return SessionEnd::Shutdown; // the client was dropped
                    }
                    if let Err(reason) = self.send_owed_ack(socket, false).await {
                        return SessionEnd::Lost { reason };
                    }
                }
                () = sleep_until(ack_due.unwrap_or(live.dead_at)), if welcomed && ack_due.is_some() => {
                    if let Err(reason) = self.send_owed_ack(socket, false).await {
                        return SessionEnd::Lost { reason };
                    }
                }
                () = sleep_until(live.next_ping_at), if welcomed => {
                    let ping = client_frame::Kind::Ping(Ping { nonce: live.next_nonce });
                    live.next_nonce += 1;
                    live.next_ping_at = Instant::now() + live.ping_every;
                    if let Err(reason) = self.send(socket, ping).await {
                        return SessionEnd::Lost { reason };
                    }
                }
                () = self.attributes_changed.notified(), if welcomed => {
                    if let Err(reason) = self.sync_attributes(socket, live.send_limit).await {
                        return SessionEnd::Lost { reason };
                    }
                }
                () = sleep_until(attributes_due.unwrap_or(live.dead_at)), if welcomed && attributes_due.is_some() => {
                    if let Err(reason) = self.sync_attributes(socket, live.send_limit).await {
                        return SessionEnd::Lost { reason };
                    }
                }
                () = sleep_until(reports_due.unwrap_or(live.dead_at)), if reports_due.is_some() => {
                    if let Err(reason) = self.send_reports(socket, live.send_limit, false).await {
                        return SessionEnd::Lost { reason };
                    }
                }
                // Only wakes the loop: the next turn's `reports_due` sees the new events.
                () = self.reports.queued.notified(), if welcomed => {}
                incoming = socket.next(), if slot.is_some() => {
                    live.heard_from_peer();
                    let bytes = match incoming {
                        Some(Ok(WsMessage::Binary(bytes))) => bytes,
                        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                        Some(Ok(WsMessage::Close(_))) | None => {
                            return SessionEnd::Lost { reason: "closed by the connector".into() };
                        }
                        Some(Ok(WsMessage::Text(_) | WsMessage::Frame(_))) => {
                            return SessionEnd::Lost { reason: "the connector sent a text message".into() };
                        }
                        Some(Err(error)) => return SessionEnd::Lost { reason: error.to_string() },
                    };
                    let decoded = frame::decode_server(&bytes, self.config.max_frame_bytes);
                    let kind = match decoded {
                        Ok(device::ServerFrame { kind: Some(kind) }) => kind,
                        Ok(device::ServerFrame { kind: None }) => continue,
                        Err(error) => return SessionEnd::Lost { reason: format!("bad frame: {error}") },
                    };
                    if let Some(end) = self.on_frame(socket, url, kind, live, &mut slot).await {
                        return end;
                    }
                }
                // After the read branch: a frame that arrived just in time still counts.
                () = sleep_until(live.dead_at), if slot.is_some() => {
                    return SessionEnd::Lost {
                        reason: format!("no frame from the connector for {:?}", live.silence_limit),
                    };
                }
            }
        }
    }

    /// Handles one frame from the connector; `Some` ends the session.
    async fn on_frame(
        &mut self,
        socket: &mut Socket,
        url: &str,
        kind: server_frame::Kind,
        live: &mut Liveness,
        slot: &mut Option<OwnedPermit<Event>>,
    ) -> Option<SessionEnd> {
        match kind {
            server_frame::Kind::Welcome(welcome) => {
                if live.welcomed_at.is_some() {
                    return None;
                }
                live.welcomed(welcome.ping_interval_seconds, welcome.max_frame_bytes);
                Counters::bump(&self.counters.connections_established);
                self.counters.set_connect_error(None);
                self.counters
                    .connected
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                let store_at = Positions {
                    inbox: welcome.rewind_inbox_to.unwrap_or(u64::MAX),
                    timeline: welcome.rewind_timeline_to.unwrap_or(u64::MAX),
                };
                if self.inbound.received_up_to().any_ahead_of(store_at) {
                    tracing::warn!(
                        device_id = %self.identity.device_id,
                        rewind_inbox_to = ?welcome.rewind_inbox_to,
                        rewind_timeline_to = ?welcome.rewind_timeline_to,
                        "the store is behind this device (it lost writes?): moving back to it"
                    );
                    self.inbound.lower_to(store_at);
                    self.acks.lower_to(store_at);
                    // The socket is read only with a slot reserved, so there is one.
                    if let Some(permit) = slot.take() {
                        permit.send(Event::LowerPositions(store_at));
                    }
                }
                let received = self.inbound.received_up_to();
                tracing::info!(
                    device_id = %self.identity.device_id,
                    connector_id = %welcome.connector_id,
                    url,
                    last_seq = received.inbox,
                    timeline_seq = received.timeline,
                    ping_interval_seconds = welcome.ping_interval_seconds,
                    "connected"
                );
                self.remember_connector(url).await;
                if !welcome.device_token.is_empty() {
                    self.keep_renewed_token(welcome.device_token).await;
                }
                // The attributes first: audiences are matched against them from now on.
                if let Err(reason) = self.sync_attributes(socket, live.send_limit).await {
                    return Some(SessionEnd::Lost { reason });
                }
                // After a restart, or if the last connection broke before its Ack went out.
                if let Err(reason) = self.send_owed_ack(socket, false).await {
                    return Some(SessionEnd::Lost { reason });
                }
                None
            }
            server_frame::Kind::Push(push) => {
                if live.welcomed_at.is_none() {
                    return Some(SessionEnd::Lost {
                        reason: "the connector sent a push before its welcome".into(),
                    });
                }
                let Some(stream) = Stream::from_wire(push.stream) else {
                    // Not of protocol version 1: a connector bug. Dropping it is all this SDK
                    // can do; ending the connection would only bring it again.
                    tracing::warn!(device_id = %self.identity.device_id, stream = push.stream, seq = push.seq, "push of an unknown stream dropped");
                    return None;
                };
                let Some(reserved) = slot.take() else {
                    // Unreachable: the socket is read only while a slot is held. Nothing was
                    // recorded as received, so the next connection replays this push.
                    return Some(SessionEnd::Lost {
                        reason: "no room for a push".into(),
                    });
                };
                match self.inbound.accept(stream, &push.message_id, push.seq) {
                    Verdict::Deliver { skipped_before } => {
                        reserved.send(Event::Message(Message::open_push(
                            push,
                            stream,
                            skipped_before,
                            self.identity.device_id,
                            self.identity.seal_key.as_ref(),
                        )));
                    }
                    Verdict::AlreadyReceived | Verdict::RepeatedId => {
                        tracing::debug!(device_id = %self.identity.device_id, ?stream, seq = push.seq, "duplicate push dropped");
                        Counters::bump(&self.counters.duplicates_dropped);
                        *slot = Some(reserved);
                    }
                }
                None
            }
            server_frame::Kind::Pong(_) => None,
            server_frame::Kind::Redirect(redirect) => Some(SessionEnd::Redirect {
                url: redirect.url,
                ring_version: redirect.ring_version,
                reason: redirect.reason,
            }),
            server_frame::Kind::Error(error) => {
                let code = error.code();
                Some(classify_error(code, error.message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_identity_and_version_errors_are_fatal() {
        for code in [
            ErrorCode::Unauthenticated,
            ErrorCode::UnknownDevice,
            ErrorCode::UnsupportedVersion,
        ] {
            assert!(
                matches!(classify_error(code, "x".into()), SessionEnd::Fatal(_)),
                "{code:?}"
            );
        }
        for code in [
            ErrorCode::Unspecified,
            ErrorCode::BadFrame,
            ErrorCode::FrameTooLarge,
            ErrorCode::HelloRequired,
            ErrorCode::SlowConsumer,
            ErrorCode::Unavailable,
            ErrorCode::Timeout,
        ] {
            assert!(
                matches!(classify_error(code, "x".into()), SessionEnd::Lost { .. }),
                "{code:?}"
            );
        }
    }

    #[test]
    fn fatal_errors_keep_the_connector_message() {
        let SessionEnd::Fatal(error) =
            classify_error(ErrorCode::Unauthenticated, "bad token".into())
        else {
            panic!("not fatal");
        };
        assert!(error.needs_new_identity());
        assert!(error.to_string().contains("bad token"));
    }
}

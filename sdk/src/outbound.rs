//! What the device sends on a welcomed connection besides pings: cumulative Acks, its
//! attributes and its reports, each when its rules (in `ack`, `attributes` and `reports`)
//! say so; and the one place frames are written.

use futures_util::SinkExt;
use ringpush_protocol::device::{ClientFrame, Report, client_frame};
use ringpush_protocol::frame;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::ack::Handed;
use crate::attributes;
use crate::session::Socket;
use crate::stats::Counters;
use crate::task::ConnectionTask;

impl ConnectionTask {
    /// Sends the Ack the app's positions call for, if any. `final_flush` acks everything
    /// handed even if more is queued (the client is closing).
    pub(crate) async fn send_owed_ack(
        &mut self,
        socket: &mut Socket,
        final_flush: bool,
    ) -> Result<(), String> {
        let mut handed: Handed = *self.handed.borrow_and_update();
        if final_flush {
            handed.more_queued = false;
        }
        let Some(ack) = self.acks.poll(handed, Instant::now()) else {
            return Ok(());
        };
        self.send(socket, client_frame::Kind::Ack(ack)).await?;
        self.acks.sent(&ack);
        Ok(())
    }

    /// Sends the app's attributes if this connection does not have them yet and the debounce
    /// allows; otherwise the sync records when to try again. `send_limit`: the connector's
    /// largest frame.
    pub(crate) async fn sync_attributes(
        &mut self,
        socket: &mut Socket,
        send_limit: usize,
    ) -> Result<(), String> {
        // The newest saved set: whatever the app changed meanwhile, the last value wins.
        let current = self.state.snapshot().attributes;
        let now = Instant::now();
        if !self.attribute_sync.poll(current.as_ref(), now) {
            return Ok(());
        }
        let Some(current) = current else {
            return Ok(());
        };
        let bytes = encode(attributes::to_frame(&current));
        if bytes.len() > send_limit {
            // The SDK refuses sets over the limit every connector accepts; only a connector
            // configured below it gets here. Sending would get the connection closed.
            tracing::error!(device_id = %self.identity.device_id, len = bytes.len(), send_limit, "attributes too large for this connector; not sent");
        } else {
            self.write(socket, bytes).await?;
            Counters::bump(&self.counters.attributes_sent);
        }
        self.attribute_sync.sent(current, now);
        Ok(())
    }

    /// Sends one Report frame of queued events (or, with `until_empty`, as many as it takes
    /// to empty the queue). Events of a frame that could not be written go back to the queue.
    pub(crate) async fn send_reports(
        &mut self,
        socket: &mut Socket,
        send_limit: usize,
        until_empty: bool,
    ) -> Result<(), String> {
        loop {
            let events = self.reports.take_batch(send_limit);
            if events.is_empty() {
                return Ok(());
            }
            let count = events.len() as u64;
            let report = ClientFrame {
                kind: Some(client_frame::Kind::Report(Report { events })),
            };
            let mut bytes = Vec::new();
            frame::encode_into(&report, &mut bytes);
            if let Err(reason) = self.write(socket, bytes).await {
                if let Some(client_frame::Kind::Report(report)) = report.kind {
                    self.reports.put_back(report.events);
                }
                return Err(reason);
            }
            self.report_pacer.sent(Instant::now());
            self.counters
                .reports_sent
                .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            if !until_empty {
                return Ok(());
            }
        }
    }

    /// Writes one frame, within the connect timeout.
    pub(crate) async fn send(
        &self,
        socket: &mut Socket,
        kind: client_frame::Kind,
    ) -> Result<(), String> {
        self.write(socket, encode(kind)).await
    }

    /// Writes one encoded frame, within the connect timeout.
    async fn write(&self, socket: &mut Socket, bytes: Vec<u8>) -> Result<(), String> {
        match timeout(
            self.config.connect_timeout,
            socket.send(WsMessage::Binary(bytes.into())),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("write failed: {error}")),
            Err(_) => Err(format!(
                "write blocked for {:?}",
                self.config.connect_timeout
            )),
        }
    }
}

/// The bytes of a frame.
fn encode(kind: client_frame::Kind) -> Vec<u8> {
    let mut bytes = Vec::new();
    frame::encode_into(&ClientFrame { kind: Some(kind) }, &mut bytes);
    bytes
}

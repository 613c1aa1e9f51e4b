//! Writing to connections, and every way a connection ends.
//!
//! Frames are encoded into the shard's one scratch buffer and written with one call per
//! connection per wake-up; only the bytes the kernel does not take are copied into the
//! connection's `Busy::output`. Closing is a state, not an event: the last frames are
//! flushed, the write side is shut, and the record goes when the peer closes its side or
//! the linger runs out. Whatever the path, [`Shard::remove`] frees the slab slot, the device
//! index entry, the `Busy` record, the TLS state, the profile and the presence (DESIGN.md
//! invariant 10).
//!
//! On a TLS connection the scratch buffer holds plaintext; it is sealed into records at the
//! flush (`tls`), and from there on everything here is about the records: `Busy::output`
//! holds ciphertext, so the slow-consumer bound counts what really waits.

use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;

use metrics::counter;
use mio::unix::SourceFd;
use ringpush_protocol::device::{self, ErrorCode, Push, ServerFrame, server_frame};
use ringpush_protocol::ws;
use ringpush_store::Counter;

use crate::ConnectorStats;
use crate::conn::{Busy, Conn, ConnState};
use crate::shard::Shard;
use crate::timeline::TIMELINE_STREAM;

/// Capacity the shared write buffer keeps between wake-ups.
const SCRATCH_KEPT_BYTES: usize = 256 * 1024;

/// How a write to a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// Everything is in the kernel.
    All,
    /// Some output waits in `Busy::output`.
    Partly,
    /// The socket failed; the connection is gone.
    Failed,
}

/// The connection's `Busy` record, allocated (and counted) if it had none.
pub(crate) fn busy_mut<'a>(conn: &'a mut Conn, stats: &ConnectorStats) -> &'a mut Busy {
    if conn.busy.is_none() {
        ConnectorStats::add(&stats.busy, 1);
    }
    conn.busy.get_or_insert_with(Box::default)
}

/// Frees the connection's `Busy` record if nothing in it is pending.
pub(crate) fn trim_busy(conn: &mut Conn, stats: &ConnectorStats) {
    if conn.busy.as_ref().is_some_and(|busy| busy.is_empty()) {
        conn.busy = None;
        ConnectorStats::add(&stats.busy, -1);
    }
}

impl Shard {
    /// Makes the scratch buffer hold output for `key`, flushing another connection's first.
    fn claim_scratch(&mut self, key: usize) -> &mut Vec<u8> {
        if self.scratch_owner != Some(key) {
            self.flush();
            self.scratch_owner = Some(key);
        }
        &mut self.scratch
    }

    /// Encodes a frame for `key`; it is written at the next [`Shard::flush`].
    pub fn queue_frame(&mut self, key: usize, frame: &ServerFrame) {
        ws::write_message(frame, self.claim_scratch(key));
    }

    /// Encodes raw output (HTTP answers, WebSocket control frames) for `key`.
    pub fn queue_raw(&mut self, key: usize, encode: impl FnOnce(&mut Vec<u8>)) {
        encode(self.claim_scratch(key));
    }

    /// Encodes a push for `key`; the caller has advanced `last_sent_seq` (inbox) or
    /// `timeline_seq` (timeline). Counts it as delivered for the statistics of audience and
    /// campaign messages: a connection writes each seq of a stream once, and only above the
    /// position its Hello gave, so each write is the first to the device.
    pub fn queue_push(&mut self, key: usize, push: Push) {
        let (seq, stream) = (push.seq, push.stream);
        if stream == TIMELINE_STREAM || !push.campaign_id.is_empty() {
            let app = self.conns.get(key).and_then(|conn| conn.profile.as_ref());
            if let Some(app) = app.map(|profile| profile.app) {
                let (message, campaign) = (&push.message_id, &push.campaign_id);
                self.shared
                    .count(app, message, campaign, Counter::Delivered, 1);
            }
        }
        let frame = ServerFrame {
            kind: Some(server_frame::Kind::Push(push)),
        };
        self.queue_frame(key, &frame);
        if stream != TIMELINE_STREAM {
            // Delivered positions are the inbox's.
            self.scratch_seq = self.scratch_seq.max(seq);
        }
        counter!("ringpush_connector_pushes_written_total").increment(1);
    }

    /// Writes the scratch buffer to its connection.
    pub fn flush(&mut self) {
        let Some(key) = self.scratch_owner.take() else {
            return;
        };
        let seq = std::mem::take(&mut self.scratch_seq);
        if self.scratch.is_empty() {
            return;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let written = self.write(key, &scratch, seq);
        scratch.clear();
        // A large replay page may have grown it; do not keep that much for good.
        scratch.shrink_to(SCRATCH_KEPT_BYTES);
        self.scratch = scratch;
        self.after_write(key, written);
    }

    /// The socket can take more: writes what waits in `Busy::output`.
    pub fn on_writable(&mut self, key: usize) {
        if self.conns.get(key).is_some_and(Conn::has_output) {
            let written = self.write(key, &[], 0);
            self.after_write(key, written);
        }
    }

    /// Writes `bytes` (plaintext) behind whatever output already waits, sealing them first on
    /// a TLS connection; `seq` is the highest push in them.
    fn write(&mut self, key: usize, bytes: &[u8], seq: u64) -> Written {
        let Some(tls) = self.tls.as_mut().and_then(|table| table.get_mut(key)) else {
            return self.write_wire(key, bytes, seq);
        };
        let mut records = std::mem::take(&mut self.tls_out);
        let written = match tls.seal(bytes, &mut records) {
            Ok(()) => self.write_wire(key, &records, seq),
            Err(error) => {
                tracing::debug!(%error, "could not seal output");
                Written::Failed
            }
        };
        records.clear();
        records.shrink_to(SCRATCH_KEPT_BYTES);
        self.tls_out = records;
        written
    }

    /// Writes records TLS produced on its own (handshake flights, close_notify), if any, and
    /// gives the buffer back to the shard; answers whether the connection is still there.
    pub fn write_tls_records(&mut self, key: usize, mut records: Vec<u8>) -> bool {
        let written = (!records.is_empty()).then(|| self.write_wire(key, &records, 0));
        records.clear();
        self.tls_out = records;
        if let Some(written) = written {
            self.after_write(key, written);
        }
        self.conns.contains(key)
    }

    /// Writes bytes as they go on the wire behind whatever output already waits; `seq` is
    /// the highest push in them.
    fn write_wire(&mut self, key: usize, bytes: &[u8], seq: u64) -> Written {
        let stats = &self.shared.stats;
        let Some(conn) = self.conns.get_mut(key) else {
            return Written::Failed;
        };
        let device = conn.device();
        let waiting = conn.has_output();
        if waiting {
            let busy = busy_mut(conn, stats);
            busy.output.extend_from_slice(bytes);
            busy.unflushed_seq = busy.unflushed_seq.max(seq);
        }
        let pending: &[u8] = match &conn.busy {
            Some(busy) if waiting => &busy.output,
            _ => bytes,
        };
        let mut done = 0;
        while done < pending.len() {
            match conn.stream.write(&pending[done..]) {
                Ok(0) => return Written::Failed,
                Ok(n) => done += n,
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    tracing::debug!(device_id = %device, %error, "write failed");
                    return Written::Failed;
                }
            }
        }
        let complete = done == pending.len();
        let delivered = if waiting {
            let busy = busy_mut(conn, stats);
            busy.output.drain(..done);
            if complete {
                busy.output = Vec::new();
                std::mem::take(&mut busy.unflushed_seq)
            } else {
                0
            }
        } else if complete {
            seq
        } else {
            let busy = busy_mut(conn, stats);
            busy.output.extend_from_slice(&bytes[done..]);
            busy.unflushed_seq = seq;
            0
        };
        if delivered > 0 && self.shared.delivered.try_send((device, delivered)).is_err() {
            counter!("ringpush_connector_delivered_dropped_total").increment(1);
        }
        if complete {
            trim_busy(conn, stats);
            Written::All
        } else {
            Written::Partly
        }
    }

    fn after_write(&mut self, key: usize, written: Written) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match written {
            Written::Failed => self.remove(key),
            Written::All if conn.state == ConnState::Closing => {
                // A TLS peer is owed a close_notify before the socket's write side shuts.
                if let Some(tls) = self.tls.as_mut().and_then(|table| table.get_mut(key)) {
                    let mut records = std::mem::take(&mut self.tls_out);
                    match tls.close_notify(&mut records) {
                        Ok(false) => self.tls_out = records,
                        Ok(true) => {
                            // Comes back here once the alert is flushed, and then shuts.
                            self.write_tls_records(key, records);
                            return;
                        }
                        Err(_) => {
                            self.tls_out = records;
                            return self.remove(key);
                        }
                    }
                }
                let conn = &self.conns[key];
                if conn.stream.shutdown(std::net::Shutdown::Write).is_err() {
                    self.remove(key);
                }
            }
            Written::All => {
                self.read_if_flushed(key);
                self.timeline_read_if_flushed(key);
            }
            Written::Partly => {
                let unsent = conn.busy.as_ref().map_or(0, |busy| busy.output.len());
                if conn.state != ConnState::Closing
                    && unsent > self.shared.config.max_pending_output_bytes
                {
                    counter!("ringpush_connector_slow_consumers_total").increment(1);
                    tracing::debug!(device_id = %conn.device(), unsent, "slow consumer");
                    self.close_with_error(
                        key,
                        ErrorCode::SlowConsumer,
                        "too much unread output; pending messages stay in the inbox",
                        ws::close_code::POLICY_VIOLATION,
                    );
                }
            }
        }
    }

    /// Sends a protocol Error and a WebSocket Close, then closes.
    pub fn close_with_error(&mut self, key: usize, code: ErrorCode, message: &str, ws_code: u16) {
        counter!("ringpush_connector_protocol_errors_total", "code" => code.as_str_name())
            .increment(1);
        if let Some(conn) = self.conns.get(key) {
            tracing::debug!(
                device_id = %conn.device(),
                peer = ?conn.stream.peer_addr().ok(),
                code = code.as_str_name(),
                detail = message,
                "closing connection with an error"
            );
        }
        let frame = ServerFrame {
            kind: Some(server_frame::Kind::Error(device::Error {
                code: code.into(),
                message: message.to_owned(),
            })),
        };
        self.queue_frame(key, &frame);
        self.close_ws(key, ws_code, code.as_str_name());
    }

    /// Sends a Redirect and a WebSocket Close, then closes.
    pub fn redirect(&mut self, key: usize, url: String, ring_version: u64, reason: &str) {
        counter!("ringpush_connector_redirects_total").increment(1);
        if let Some(conn) = self.conns.get(key) {
            tracing::debug!(device_id = %conn.device(), url, reason, "redirecting device");
        }
        let frame = ServerFrame {
            kind: Some(server_frame::Kind::Redirect(device::Redirect {
                url,
                ring_version,
                reason: reason.to_owned(),
            })),
        };
        self.queue_frame(key, &frame);
        self.close_ws(key, ws::close_code::NORMAL, reason);
    }

    /// Sends a WebSocket Close, then closes.
    pub fn close_ws(&mut self, key: usize, code: u16, reason: &str) {
        self.queue_raw(key, |out| ws::write_close(code, reason, out));
        self.begin_closing(key);
    }

    /// Answers a request that is not a valid upgrade with a plain HTTP error, then closes.
    pub fn refuse_http(&mut self, key: usize, status: u16, reason: &str, body: &str) {
        counter!("ringpush_connector_protocol_errors_total", "code" => "HTTP").increment(1);
        self.queue_raw(key, |out| ws::write_http_error(status, reason, body, out));
        self.begin_closing(key);
    }

    /// Lets go of the device and everything but unsent output, flushes, and waits for the
    /// peer to close (bounded by the linger in the sweep).
    fn begin_closing(&mut self, key: usize) {
        if self
            .conns
            .get(key)
            .is_none_or(|conn| conn.state == ConnState::Closing)
        {
            return;
        }
        self.release_device(key);
        let now = self.now_secs();
        let conn = &mut self.conns[key];
        conn.state = ConnState::Closing;
        conn.last_heard = now;
        if let Some(busy) = conn.busy.as_mut() {
            let output = std::mem::take(&mut busy.output);
            let unflushed_seq = busy.unflushed_seq;
            **busy = Busy {
                output,
                unflushed_seq,
                ..Busy::default()
            };
        }
        trim_busy(conn, &self.shared.stats);
        if self.scratch_owner == Some(key) {
            self.flush();
        } else if !self.conns[key].has_output() {
            self.after_write(key, Written::All);
        }
    }

    /// Removes the device from the index (or hands the index back to the connection this one
    /// displaced) and clears its presence in the background.
    pub fn release_device(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let indexed = matches!(
            conn.state,
            ConnState::Authenticating | ConnState::CatchingUp | ConnState::Live
        );
        let device = conn.device();
        let displaced = conn.busy.as_mut().and_then(|busy| busy.displaced.take());
        let epoch = std::mem::take(&mut conn.presence_epoch);
        if epoch != 0 {
            self.clear_presence(device, epoch);
        }
        let bytes = device.0.to_be_bytes();
        if !indexed || self.devices.get(&bytes) != Some(&(key as u32)) {
            return;
        }
        match displaced.and_then(|(old, generation)| self.live_key(old, generation)) {
            Some(old)
                if self.conns[old].device() == device
                    && self.conns[old].state != ConnState::Closing =>
            {
                self.devices.insert(bytes, old as u32);
                self.catch_up_again(old);
            }
            _ => {
                self.devices.remove(&bytes);
                ConnectorStats::add(&self.shared.stats.devices, -1);
            }
        }
    }

    /// Frees everything the connection holds, now.
    pub fn remove(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        if self.conns[key].state != ConnState::Closing {
            self.release_device(key);
        }
        if self.scratch_owner == Some(key) {
            self.scratch_owner = None;
            self.scratch_seq = 0;
            self.scratch.clear();
        }
        let mut conn = self.conns.remove(key);
        if let Some(table) = &mut self.tls {
            table.take(key);
        }
        if let Some(profile) = conn.profile.take() {
            self.release_profile(profile);
        }
        if let Err(error) = self
            .registry
            .deregister(&mut SourceFd(&conn.stream.as_raw_fd()))
        {
            tracing::debug!(%error, "could not deregister a closed connection");
        }
        tracing::debug!(device_id = %conn.device(), "connection closed");
        self.shared.forget(&conn);
    }

    /// Reads and drops whatever a closing connection still sends, until it closes.
    pub fn discard_input(&mut self, key: usize) {
        for _ in 0..16 {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            match std::io::Read::read(&mut conn.stream, &mut self.read_buf) {
                Ok(0) => return self.remove(key),
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.remove(key),
            }
        }
        let generation = self.conns[key].generation;
        self.still_readable.push((key, generation));
    }
}

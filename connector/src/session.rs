//! Bytes from a device: the WebSocket handshake, WebSocket frames and protocol frames.
//!
//! Input is parsed straight from the shard's read buffer; only an incomplete handshake or
//! frame (or bytes that arrive behind a Hello) is copied into the connection's
//! `Busy::input`. Any bad input ends the connection with a clear Error frame and close code,
//! never anything worse.

use std::io::{ErrorKind, Read};
use std::time::Instant;

use metrics::counter;
use ringpush_protocol::device::{
    ClientFrame, ErrorCode, Pong, ServerFrame, client_frame, server_frame,
};
use ringpush_protocol::ws::{self, Opcode, close_code};
use ringpush_protocol::{CONNECT_PATH, DeviceId, PROTOCOL_VERSION, frame};

use crate::conn::ConnState;
use crate::hello::PendingHello;
use crate::output::{busy_mut, trim_busy};
use crate::shard::Shard;

/// Reads per connection per wake-up, so that one busy device cannot starve the others.
const READS_PER_WAKE: usize = 8;

/// What reading should do next.
pub(crate) enum Flow {
    Continue,
    /// The connection is closing (or gone): stop reading it.
    Stop,
    /// A valid Hello arrived: stop reading until it is dealt with.
    Hello(PendingHello),
}

impl Shard {
    /// The socket has input (or closed): reads it until it would block.
    pub fn on_readable(&mut self, key: usize) {
        for _ in 0..READS_PER_WAKE {
            let now = self.now_secs();
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            match conn.state {
                // Resumed once the store has answered; the bytes wait in the kernel.
                ConnState::Authenticating => return,
                ConnState::Closing => return self.discard_input(key),
                _ => {}
            }
            let read = self.read_input(key);
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let fresh = match read {
                Ok(0) => {
                    tracing::debug!(device_id = %conn.device(), "peer closed the connection");
                    return self.remove(key);
                }
                Ok(n) => n,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::debug!(device_id = %conn.device(), %error, "read failed");
                    return self.remove(key);
                }
            };
            conn.last_heard = now;
            match self.consume(key, fresh) {
                Flow::Continue => {}
                Flow::Stop => return,
                Flow::Hello(hello) => return self.begin_hello(key, hello),
            }
        }
        if let Some(conn) = self.conns.get(key) {
            self.still_readable.push((key, conn.generation));
        }
    }

    /// Reads the connection's input into the read buffer: from the socket, or through TLS
    /// (whose own records to send, such as handshake flights, are written right away).
    fn read_input(&mut self, key: usize) -> std::io::Result<usize> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Err(ErrorKind::NotConnected.into());
        };
        let Some(tls) = self.tls.as_mut().and_then(|table| table.get_mut(key)) else {
            return conn.stream.read(&mut self.read_buf);
        };
        let mut records = std::mem::take(&mut self.tls_out);
        let read = tls.read(
            &mut conn.stream,
            &mut self.read_buf,
            &mut self.tls_in,
            &mut records,
            &self.shared.stats,
        );
        if read
            .as_ref()
            .is_err_and(|error| error.kind() != ErrorKind::WouldBlock)
        {
            self.tls_out = records;
            return read;
        }
        if !self.write_tls_records(key, records) {
            return Err(ErrorKind::NotConnected.into());
        }
        read
    }

    /// Handles input that arrived while the Hello was checked, then reads on.
    pub fn resume_input(&mut self, key: usize) {
        let mut pending = self.take_input(key);
        if !pending.is_empty() {
            let (used, flow) = self.process_input(key, &mut pending);
            pending.drain(..used);
            self.keep_input(key, pending);
            if !matches!(flow, Flow::Continue) {
                return;
            }
        }
        self.on_readable(key);
    }

    /// Processes `fresh` bytes just read into the read buffer, behind any partial input.
    fn consume(&mut self, key: usize, fresh: usize) -> Flow {
        let mut pending = self.take_input(key);
        if pending.is_empty() {
            let mut buf = std::mem::take(&mut self.read_buf);
            let (used, flow) = self.process_input(key, &mut buf[..fresh]);
            self.keep_input(key, buf[used..fresh].to_vec());
            self.read_buf = buf;
            flow
        } else {
            pending.extend_from_slice(&self.read_buf[..fresh]);
            let (used, flow) = self.process_input(key, &mut pending);
            pending.drain(..used);
            self.keep_input(key, pending);
            flow
        }
    }

    fn take_input(&mut self, key: usize) -> Vec<u8> {
        match self.conns.get_mut(key).and_then(|conn| conn.busy.as_mut()) {
            Some(busy) => std::mem::take(&mut busy.input),
            None => Vec::new(),
        }
    }

    /// Keeps unprocessed input for later, unless the connection is closing.
    fn keep_input(&mut self, key: usize, rest: Vec<u8>) {
        let stats = &self.shared.stats;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !rest.is_empty() && conn.state != ConnState::Closing {
            let mut rest = rest;
            rest.shrink_to_fit();
            busy_mut(conn, stats).input = rest;
        } else {
            trim_busy(conn, stats);
        }
    }

    /// Handles whole handshakes and frames at the start of `data`; answers how many bytes
    /// were used.
    fn process_input(&mut self, key: usize, data: &mut [u8]) -> (usize, Flow) {
        let mut used = 0;
        if self.conns[key].state == ConnState::AwaitingHandshake {
            match ws::parse_handshake(data) {
                Ok(None) => return (0, Flow::Continue),
                Err(error) => {
                    self.refuse_http(key, 400, "Bad Request", &error.to_string());
                    return (data.len(), Flow::Stop);
                }
                Ok(Some((handshake, taken))) => {
                    let path = handshake.path.split('?').next().unwrap_or_default();
                    if path != CONNECT_PATH {
                        let body = format!("no such endpoint: devices connect to {CONNECT_PATH}");
                        self.refuse_http(key, 404, "Not Found", &body);
                        return (data.len(), Flow::Stop);
                    }
                    self.queue_raw(key, |out| ws::write_accept(&handshake, out));
                    self.conns[key].state = ConnState::AwaitingHello;
                    used = taken;
                }
            }
        }
        let max = self.shared.config.max_frame_bytes;
        while used < data.len() {
            let frame = match ws::decode_frame(&mut data[used..], max, ws::Sender::Client) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    let code = match error {
                        ws::WsError::TooLarge { .. } => ErrorCode::FrameTooLarge,
                        _ => ErrorCode::BadFrame,
                    };
                    self.close_with_error(key, code, &error.to_string(), error.close_code());
                    return (data.len(), Flow::Stop);
                }
            };
            let payload = used + frame.payload.start..used + frame.payload.end;
            used += frame.len;
            match self.handle_ws_frame(key, frame.opcode, &data[payload]) {
                Flow::Continue => {}
                flow => return (used, flow),
            }
        }
        (used, Flow::Continue)
    }

    fn handle_ws_frame(&mut self, key: usize, opcode: Opcode, payload: &[u8]) -> Flow {
        match opcode {
            Opcode::Binary => {
                match frame::decode_client(payload, self.shared.config.max_frame_bytes) {
                    Ok(frame) => self.handle_client_frame(key, frame),
                    Err(error) => self.refuse(key, ErrorCode::BadFrame, &error.to_string()),
                }
            }
            Opcode::Ping => {
                self.queue_raw(key, |out| ws::write_frame(Opcode::Pong, payload, out));
                Flow::Continue
            }
            Opcode::Pong => Flow::Continue,
            Opcode::Close => {
                self.close_ws(key, close_code::NORMAL, "");
                Flow::Stop
            }
            Opcode::Text | Opcode::Continuation => self.refuse(
                key,
                ErrorCode::BadFrame,
                "frames must be binary WebSocket messages holding one protobuf frame",
            ),
        }
    }

    fn handle_client_frame(&mut self, key: usize, frame: ClientFrame) -> Flow {
        use client_frame::Kind;
        let state = self.conns[key].state;
        match (state, frame.kind) {
            (ConnState::AwaitingHello, Some(Kind::Hello(hello))) => {
                if hello.protocol_version != PROTOCOL_VERSION {
                    let message = format!(
                        "protocol version {} is not supported; this connector speaks {PROTOCOL_VERSION}",
                        hello.protocol_version
                    );
                    return self.refuse(key, ErrorCode::UnsupportedVersion, &message);
                }
                match hello.device_id.parse::<DeviceId>() {
                    Ok(device) => Flow::Hello(PendingHello {
                        device,
                        token: hello.device_token,
                        last_seq: hello.last_seq,
                        timeline_seq: hello.timeline_seq,
                        started: Instant::now(),
                    }),
                    Err(error) => self.refuse(key, ErrorCode::BadFrame, &error.to_string()),
                }
            }
            (ConnState::AwaitingHello, _) => self.refuse(
                key,
                ErrorCode::HelloRequired,
                "the first frame must be a Hello",
            ),
            (_, Some(Kind::Hello(_))) => {
                self.refuse(key, ErrorCode::BadFrame, "a connection says Hello once")
            }
            (_, Some(Kind::Ack(ack))) => {
                // `timeline_up_to` is the SDK's own business: the timeline is not trimmed per
                // device, and the SDK's Hello says where it stands on the next connection.
                self.on_ack(key, ack.up_to_seq);
                Flow::Continue
            }
            (_, Some(Kind::Attributes(attributes))) => self.on_attributes(key, attributes),
            (_, Some(Kind::Report(report))) => self.on_report(key, report),
            (_, Some(Kind::Ping(ping))) => {
                let pong = ServerFrame {
                    kind: Some(server_frame::Kind::Pong(Pong { nonce: ping.nonce })),
                };
                self.queue_frame(key, &pong);
                Flow::Continue
            }
            (_, None) => self.refuse(key, ErrorCode::BadFrame, "frame carries no message"),
        }
    }

    /// Closes with an application-level error.
    pub fn refuse(&mut self, key: usize, code: ErrorCode, message: &str) -> Flow {
        self.close_with_error(key, code, message, close_code::POLICY_VIOLATION);
        Flow::Stop
    }

    /// A cumulative ack: never above what this connection sent (or the Hello said it had).
    fn on_ack(&mut self, key: usize, up_to_seq: u64) {
        let conn = &self.conns[key];
        let up_to = up_to_seq.min(conn.last_sent_seq);
        if up_to == 0 {
            return;
        }
        counter!("ringpush_connector_acks_total").increment(1);
        if self.shared.acks.try_send((conn.device(), up_to)).is_err() {
            // The inbox keeps the messages; they are re-sent after a reconnect and the SDK
            // drops what it already has.
            counter!("ringpush_connector_acks_dropped_total").increment(1);
        }
    }
}

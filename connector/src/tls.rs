//! TLS on device connections (`wss://`), when the connector has a server configuration: a
//! `rustls::server::UnbufferedServerConnection` per connection, driven over the non-blocking
//! socket inside the shard's event loop, with the WebSocket and protocol code unchanged on top
//! of the plaintext.
//!
//! rustls's unbuffered API is used rather than `ServerConnection` because the buffered one
//! keeps a 4 KiB buffer for incoming records in every connection that has read anything (its
//! `read_tls` sizes it before each read, and nothing releases it), which doubled what an idle
//! TLS connection costs (7.7 KB against 3.6 KB, measured with `examples/idle_memory.rs`).
//! Here a connection owns no buffer while idle:
//!
//! - Reading: [`TlsConn::read`] reads the socket into the shard's one record buffer
//!   (`Shard::tls_in`), has rustls process the whole records in place, and copies their
//!   plaintext into the shard's read buffer, so the rest of the connector sees what a plain
//!   socket would give. Only the start of a record still in flight is kept, in the
//!   connection's `partial` (unallocated when empty). Handshake flights go into the caller's
//!   buffer and out at once.
//! - Writing: [`TlsConn::seal`] encrypts plaintext into records in a buffer the caller owns;
//!   what the socket does not take waits, as ciphertext, in the connection's `Busy::output`
//!   like any other output, so the slow-consumer bound counts exactly the bytes that wait.
//!
//! The handshake has no clock of its own: a connection's `last_heard` moves only when
//! plaintext arrives, so a handshake that does not finish within the silence timeout (three
//! ping intervals) is closed by the shard's sweep like any silent connection, and counted.
//!
//! What an idle TLS connection still costs is rustls's connection state (about 1.1 KB inline,
//! plus the record keys and key schedule). A plain connection costs none of it: the shard
//! keeps TLS state in a side table ([`TlsTable`]), empty and unused when TLS is off, so the
//! connection record stays 72 bytes.
//!
//! Does not own: the certificate and key files (`ringpush_tls`, settings), sockets, epoll
//! registration or close paths (`shard`, `output`), TLS for the gRPC service.

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::Arc;

use metrics::counter;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

/// The largest plaintext a TLS record carries: reading stops while less room than this is
/// left, so that rustls never keeps a decrypted record between calls.
const MAX_RECORD_PLAINTEXT: usize = 16 * 1024;
/// Bytes asked of the socket per read into the shard's record buffer.
const READ_CHUNK_BYTES: usize = 32 * 1024;

/// Why a TLS connection failed, for the handshake-failure counter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HandshakeFailure {
    /// The peer's bytes were not TLS, or the handshake failed (bad message, no common
    /// parameters, an alert from the peer such as an unknown CA).
    Error,
    /// The peer closed before the handshake finished.
    Closed,
    /// The handshake did not finish within the silence timeout.
    Timeout,
}

impl HandshakeFailure {
    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Closed => "closed",
            Self::Timeout => "timeout",
        }
    }
}

/// Counts a failed handshake (`ringpush_connector_tls_handshake_failures_total`).
pub(crate) fn count_handshake_failure(stats: &crate::ConnectorStats, why: HandshakeFailure) {
    counter!("ringpush_connector_tls_handshake_failures_total", "reason" => why.as_str())
        .increment(1);
    crate::ConnectorStats::add(&stats.tls_handshake_failures, 1);
}

/// What processing the records at hand came to.
enum Progress {
    /// Every whole record is processed: more input is needed.
    NeedInput,
    /// The plaintext buffer has less room left than a record can carry.
    PlainFull,
    /// The peer sent close_notify (or the connection is closed both ways).
    Closed,
}

/// One connection's TLS state: rustls's unbuffered connection, which keeps no buffer of its
/// own (records are read into the shard's buffer and written into the caller's), plus the
/// bytes of a record that has not fully arrived yet.
pub(crate) struct TlsConn {
    session: UnbufferedServerConnection,
    /// The start of a record (or of a handshake flight) whose rest is still in flight;
    /// unallocated when nothing is pending, which is the idle case.
    partial: Vec<u8>,
    /// The close_notify alert was queued: the next flushed close shuts the socket.
    close_notify_queued: bool,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn")
            .field("handshaking", &self.session.is_handshaking())
            .field("partial", &self.partial.len())
            .finish()
    }
}

fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// Appends what `write` puts into spare room at the end of `out`, growing the room as
/// rustls says it needs.
fn append_with<E>(
    out: &mut Vec<u8>,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    required: impl Fn(&E) -> Option<usize>,
) -> Result<(), E> {
    let mut room = 1024;
    loop {
        let used = out.len();
        out.resize(used + room, 0);
        match write(&mut out[used..]) {
            Ok(written) => {
                out.truncate(used + written);
                return Ok(());
            }
            Err(error) => {
                out.truncate(used);
                match required(&error) {
                    Some(size) if size > room => room = size,
                    _ => return Err(error),
                }
            }
        }
    }
}

fn encode_room(error: &EncodeError) -> Option<usize> {
    match error {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}

fn encrypt_room(error: &EncryptError) -> Option<usize> {
    match error {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}

impl TlsConn {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Result<Box<Self>, rustls::Error> {
        Ok(Box::new(Self {
            session: UnbufferedServerConnection::new(config)?,
            partial: Vec::new(),
            close_notify_queued: false,
        }))
    }

    pub fn is_handshaking(&self) -> bool {
        self.session.is_handshaking()
    }

    /// Reads plaintext into `plain`, with the socket's semantics: `Ok(0)` when the peer
    /// closed (cleanly or not), `WouldBlock` when the socket has nothing more, an
    /// `InvalidData` error when the peer's bytes are not valid TLS (counted if the handshake
    /// was not done). `cipher` is the shard's record buffer; records rustls has to send
    /// (handshake flights) are appended to `records`, for the caller to write.
    pub fn read(
        &mut self,
        stream: &mut TcpStream,
        plain: &mut [u8],
        cipher: &mut Vec<u8>,
        records: &mut Vec<u8>,
        stats: &crate::ConnectorStats,
    ) -> io::Result<usize> {
        cipher.clear();
        cipher.append(&mut self.partial);
        let mut start = 0;
        let mut produced = 0;
        let outcome = loop {
            match self.process(cipher, &mut start, plain, &mut produced, records) {
                Err(error) => {
                    if self.session.is_handshaking() {
                        count_handshake_failure(stats, HandshakeFailure::Error);
                    }
                    break Err(tls_error(error));
                }
                Ok(Progress::Closed) => break Ok(produced),
                Ok(Progress::PlainFull) => break Ok(produced),
                Ok(Progress::NeedInput) if produced > 0 => break Ok(produced),
                Ok(Progress::NeedInput) => {}
            }
            cipher.drain(..start);
            start = 0;
            let used = cipher.len();
            cipher.resize(used + READ_CHUNK_BYTES, 0);
            match stream.read(&mut cipher[used..]) {
                Ok(0) => {
                    cipher.truncate(used);
                    if self.session.is_handshaking() {
                        count_handshake_failure(stats, HandshakeFailure::Closed);
                    }
                    break Ok(0);
                }
                Ok(n) => cipher.truncate(used + n),
                Err(error) => {
                    cipher.truncate(used);
                    break Err(error);
                }
            }
        };
        if start < cipher.len() {
            self.partial = cipher[start..].to_vec();
        }
        cipher.clear();
        outcome
    }

    /// Processes the whole records in `cipher[*start..]`, moving `start` past them and
    /// copying their plaintext to `plain[*produced..]`.
    fn process(
        &mut self,
        cipher: &mut [u8],
        start: &mut usize,
        plain: &mut [u8],
        produced: &mut usize,
        records: &mut Vec<u8>,
    ) -> Result<Progress, rustls::Error> {
        loop {
            if plain.len() - *produced < MAX_RECORD_PLAINTEXT {
                return Ok(Progress::PlainFull);
            }
            let UnbufferedStatus { mut discard, state } =
                self.session.process_tls_records(&mut cipher[*start..]);
            let state = match state {
                Ok(state) => state,
                Err(error) => {
                    *start += discard;
                    return Err(error);
                }
            };
            let progress = match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    // One record at most: rustls decrypts one before answering ReadTraffic.
                    while let Some(record) = traffic.next_record() {
                        let record = record?;
                        discard += record.discard;
                        let payload = record.payload;
                        plain[*produced..*produced + payload.len()].copy_from_slice(payload);
                        *produced += payload.len();
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    append_with(records, |room| encode.encode(room), encode_room)
                        .map_err(|error| rustls::Error::General(error.to_string()))?;
                    None
                }
                // The caller writes `records` as soon as this returns.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => {
                    Some(Progress::NeedInput)
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => Some(Progress::Closed),
                _ => {
                    return Err(rustls::Error::General(
                        "unexpected TLS state (early data is off)".to_owned(),
                    ));
                }
            };
            *start += discard;
            if let Some(progress) = progress {
                return Ok(progress);
            }
        }
    }

    /// Runs `write` once the connection may send application data, first appending any
    /// records rustls has pending.
    fn when_writable(
        &mut self,
        records: &mut Vec<u8>,
        mut write: impl FnMut(
            &mut rustls::unbuffered::WriteTraffic<'_, rustls::server::ServerConnectionData>,
            &mut Vec<u8>,
        ) -> io::Result<()>,
    ) -> io::Result<()> {
        loop {
            let status = self.session.process_tls_records(&mut []);
            match status.state.map_err(tls_error)? {
                ConnectionState::WriteTraffic(mut traffic) => return write(&mut traffic, records),
                ConnectionState::EncodeTlsData(mut encode) => {
                    append_with(records, |room| encode.encode(room), encode_room)
                        .map_err(|error| io::Error::other(error.to_string()))?;
                }
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("TLS connection cannot send in state {other:?}"),
                    ));
                }
            }
        }
    }

    /// Encrypts `plaintext` into records appended to `out`.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if plaintext.is_empty() {
            return Ok(());
        }
        self.when_writable(out, |traffic, out| {
            append_with(out, |room| traffic.encrypt(plaintext, room), encrypt_room)
                .map_err(|error| io::Error::other(error.to_string()))
        })
    }

    /// Appends the close_notify alert to `out` once; answers whether it was added now.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        if std::mem::replace(&mut self.close_notify_queued, true) {
            return Ok(false);
        }
        self.when_writable(out, |traffic, out| {
            append_with(out, |room| traffic.queue_close_notify(room), encrypt_room)
                .map_err(|error| io::Error::other(error.to_string()))
        })?;
        Ok(true)
    }
}

/// The TLS state of a shard's connections, by slab key: a vector beside the slab (slab keys
/// are dense), holding a pointer per slot. Exists only when TLS is on.
pub(crate) struct TlsTable {
    pub config: Arc<rustls::ServerConfig>,
    by_key: Vec<Option<Box<TlsConn>>>,
}

impl TlsTable {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            config,
            by_key: Vec::new(),
        }
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut TlsConn> {
        self.by_key
            .get_mut(key)
            .and_then(|slot| slot.as_deref_mut())
    }

    pub fn put(&mut self, key: usize, conn: Box<TlsConn>) {
        if self.by_key.len() <= key {
            self.by_key.resize_with(key + 1, || None);
        }
        self.by_key[key] = Some(conn);
    }

    pub fn take(&mut self, key: usize) -> Option<Box<TlsConn>> {
        let taken = self.by_key.get_mut(key).and_then(Option::take);
        // Give back the tail the slab no longer uses, so a burst does not stay allocated.
        while self.by_key.last().is_some_and(Option::is_none) {
            self.by_key.pop();
        }
        if self.by_key.capacity() > 2 * self.by_key.len() + 64 {
            self.by_key.shrink_to_fit();
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_back_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ringpush_testkit::TestPki::write(dir.path());
        let config = ringpush_tls::ServerTls {
            cert: pki.server_cert,
            key: pki.server_key,
            client_ca: None,
        }
        .config(&[b"http/1.1"])
        .unwrap();
        let mut table = TlsTable::new(config.clone());
        table.put(3, TlsConn::new(config.clone()).unwrap());
        table.put(0, TlsConn::new(config).unwrap());
        assert!(table.get_mut(3).is_some() && table.get_mut(1).is_none());
        assert!(table.take(3).is_some());
        assert_eq!(table.by_key.len(), 1);
        assert!(table.take(0).is_some());
        assert!(table.by_key.is_empty());
        // What each TLS connection holds inline, before rustls's own heap allocations.
        println!(
            "UnbufferedServerConnection: {} bytes, TlsConn: {} bytes",
            std::mem::size_of::<UnbufferedServerConnection>(),
            std::mem::size_of::<TlsConn>()
        );
    }
}

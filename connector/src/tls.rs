//! TLS on device connections (`wss://`), when the connector has a server configuration: a
//! `rustls::ServerConnection` per connection, driven over the non-blocking socket inside the
//! shard's event loop, with the WebSocket and protocol code unchanged on top of the plaintext.
//!
//! Reading: [`TlsConn::read`] takes records from the socket (`read_tls`), decrypts them
//! (`process_new_packets`) and hands plaintext to the shard's one read buffer, so the rest of
//! the connector sees what a plain socket would give. Writing: [`TlsConn::seal`] encrypts
//! plaintext and takes every record out of rustls at once into a buffer the caller owns, so
//! rustls never holds output of its own: what the socket does not take waits, as ciphertext,
//! in the connection's `Busy::output` like any other output, and the slow-consumer bound
//! counts exactly the bytes that wait. Handshake flights and alerts that reading produces are
//! taken out the same way ([`TlsConn::take_records`]).
//!
//! The handshake has no clock of its own: a connection's `last_heard` moves only when
//! plaintext arrives, so a handshake that does not finish within the silence timeout (three
//! ping intervals) is closed by the shard's sweep like any silent connection, and counted.
//!
//! The memory an idle TLS connection costs is rustls's: the connection state (keys, record
//! layer) and the 4 KiB buffer rustls keeps for incoming records once a connection has read
//! anything. A plain connection costs none of it: the shard keeps TLS state in a side table
//! ([`TlsTable`]), empty and unused when TLS is off, so the connection record stays 72 bytes.
//!
//! Does not own: the certificate and key files (`ringpush_tls`, settings), sockets, epoll
//! registration or close paths (`shard`, `output`), TLS for the gRPC service.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use metrics::counter;

/// The most plaintext rustls may buffer (it does only before the handshake completes, when
/// there is nothing to send yet); after it, [`TlsConn::seal`] drains every record at once.
const PLAINTEXT_LIMIT_BYTES: usize = 16 * 1024;

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

/// One connection's TLS state.
pub(crate) struct TlsConn {
    session: rustls::ServerConnection,
    /// The close_notify alert was queued: the next flushed close shuts the socket.
    close_notify_queued: bool,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn")
            .field("handshaking", &self.session.is_handshaking())
            .finish()
    }
}

impl TlsConn {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Result<Box<Self>, rustls::Error> {
        let mut session = rustls::ServerConnection::new(config)?;
        session.set_buffer_limit(Some(PLAINTEXT_LIMIT_BYTES));
        Ok(Box::new(Self {
            session,
            close_notify_queued: false,
        }))
    }

    pub fn is_handshaking(&self) -> bool {
        self.session.is_handshaking()
    }

    /// Reads plaintext into `buf`, with the socket's semantics: `Ok(0)` when the peer closed
    /// (cleanly or not), `WouldBlock` when the socket has nothing more, an `InvalidData` error
    /// when the peer's bytes are not valid TLS (counted if the handshake was not done).
    /// Afterwards, records rustls wants to send (handshake flights, alerts) wait in
    /// [`TlsConn::take_records`].
    pub fn read(
        &mut self,
        stream: &mut TcpStream,
        buf: &mut [u8],
        stats: &crate::ConnectorStats,
    ) -> io::Result<usize> {
        loop {
            // Plaintext already decrypted first: the socket may hold nothing more.
            match self.session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(error) => return Err(error),
            }
            match self.session.read_tls(stream) {
                Ok(0) => {
                    if self.session.is_handshaking() {
                        count_handshake_failure(stats, HandshakeFailure::Closed);
                    }
                    return Ok(0);
                }
                Ok(_) => {}
                Err(error) => return Err(error),
            }
            if let Err(error) = self.session.process_new_packets() {
                if self.session.is_handshaking() {
                    count_handshake_failure(stats, HandshakeFailure::Error);
                }
                // Best effort: tell the peer why (the alert rustls queued), then give up.
                let _ = self.session.write_tls(stream);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
    }

    /// Encrypts `plaintext` and appends every record rustls has to send to `out`.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let mut rest = plaintext;
        while !rest.is_empty() {
            let taken = self.session.writer().write(rest)?;
            if taken == 0 {
                // Only before the handshake completes, with the plaintext buffer full: no
                // well-behaved path writes that much before the upgrade request arrived.
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "TLS plaintext buffer full before the handshake completed",
                ));
            }
            rest = &rest[taken..];
            self.take_records(out)?;
        }
        self.take_records(out)
    }

    /// Appends the records rustls has to send (if any) to `out`.
    pub fn take_records(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        while self.session.wants_write() {
            self.session.write_tls(out)?;
        }
        Ok(())
    }

    /// Queues the close_notify alert once; answers whether it was queued now.
    pub fn queue_close_notify(&mut self) -> bool {
        if std::mem::replace(&mut self.close_notify_queued, true) {
            return false;
        }
        self.session.send_close_notify();
        true
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
            "ServerConnection: {} bytes, TlsConn: {} bytes",
            std::mem::size_of::<rustls::ServerConnection>(),
            std::mem::size_of::<TlsConn>()
        );
    }
}

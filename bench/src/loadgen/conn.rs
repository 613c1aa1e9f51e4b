//! One simulated device's connection as a small record, and the steps of its life: ask the
//! dispatcher (when it must), open the socket from the load generator's source address,
//! upgrade, Hello, Welcome, then idle. Backoff follows the SDK (`sdk/src/backoff.rs`):
//! attempt n waits a uniform time in `[0, min(30 s, 100 ms × 2ⁿ)]`; a Redirect with a URL is
//! followed at once (at most three in a row); after a failure the next attempt asks the
//! dispatcher first; after a connection that was up drops, the remembered connector is
//! tried first, after a backoff.
//!
//! Does not own: the event loop, timers or the counts (see `event_loop`).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No socket: waiting for its backoff, or in the queue to start.
    Waiting,
    /// Connecting to the dispatcher, then reading its answer to the end.
    LookupConnecting,
    LookupReading,
    /// Connecting to a connector, then waiting for the 101, then for the Welcome.
    Connecting,
    Upgrading,
    Hello,
    /// Welcomed and idle.
    Up,
}

impl Phase {
    /// Counted against the load generator's limit of attempts at once.
    pub fn in_flight(self) -> bool {
        !matches!(self, Phase::Waiting | Phase::Up)
    }
}

/// One device's connection: at most 56 bytes while idle (the socket, a few counters, an
/// empty buffer; debug builds of mio add a selector id to the socket).
#[derive(Debug)]
pub struct Conn {
    pub stream: Option<TcpStream>,
    pub phase: Phase,
    /// Index of the connector to connect to (the remembered one).
    pub target: u8,
    /// Failed attempts in a row, for the backoff.
    pub failures: u8,
    /// Redirects followed in a row without a Welcome.
    pub redirects: u8,
    /// The next attempt asks the dispatcher first.
    pub ask_dispatcher: bool,
    /// When the attempt under way started, ms since the load generator started.
    pub started_ms: u32,
    /// Bytes read but not yet used (a part of a head or frame); empty while idle.
    pub partial: Vec<u8>,
}

impl Conn {
    pub fn new(target: u8) -> Self {
        Self {
            stream: None,
            phase: Phase::Waiting,
            target,
            failures: 0,
            redirects: 0,
            ask_dispatcher: false,
            started_ms: 0,
            partial: Vec::new(),
        }
    }
}

/// Opens a non-blocking TCP connection from `source` (port chosen by the kernel) to `to`:
/// bind before connect, so that each source address has its own 64k ports.
pub fn open(source: IpAddr, to: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    match socket.connect(&to.into()) {
        Ok(()) => {}
        // EINPROGRESS (115 on Linux): the connection completes later, signalled writable.
        Err(error) if error.raw_os_error() == Some(115) => {}
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
        Err(error) => return Err(error),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Writes `bytes` at once or fails: a benchmark client's writes are a few hundred bytes
/// into an empty socket buffer, so a short write means the connection is in trouble.
pub fn write_now(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    match stream.write(bytes) {
        Ok(written) if written == bytes.len() => Ok(()),
        Ok(_) => Err(io::Error::other("short write")),
        Err(error) => Err(error),
    }
}

/// Reads everything available into `partial` through `scratch`. Answers whether the peer
/// closed (or reset) the connection.
pub fn read_available(stream: &mut TcpStream, partial: &mut Vec<u8>, scratch: &mut [u8]) -> bool {
    // Bounded: a connector sends an idle device a few frames; 64 reads of the scratch
    // buffer are far more than a wake-up brings.
    for _ in 0..64 {
        match stream.read(scratch) {
            Ok(0) => return true,
            Ok(read) => partial.extend_from_slice(&scratch[..read]),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return false,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
    false
}

/// A small xorshift generator: the backoff's jitter needs no more.
#[derive(Debug)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// The SDK's backoff: uniform in `[0, min(30 s, 100 ms × 2^failures)]`.
    pub fn backoff(&mut self, failures: u8) -> Duration {
        let ceiling_ms = 100u64
            .saturating_mul(1u64 << u32::from(failures.min(20)))
            .min(30_000);
        Duration::from_millis(self.next() % (ceiling_ms + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_stays_under_its_ceiling() {
        let mut jitter = Jitter::new(7);
        for failures in 0..40u8 {
            let ceiling = (100u64 << failures.min(20)).min(30_000);
            for _ in 0..100 {
                assert!(jitter.backoff(failures) <= Duration::from_millis(ceiling));
            }
        }
    }

    #[test]
    fn an_idle_record_is_small() {
        assert!(
            std::mem::size_of::<Conn>() <= 56,
            "{}",
            std::mem::size_of::<Conn>()
        );
    }
}

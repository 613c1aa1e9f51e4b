//! Accepting device sockets and handing them to the shards, round robin, after the per
//! address connection rate (a socket over it is answered `429` with `Retry-After` and
//! closed before it costs a shard anything; its device backs off and comes back).
//!
//! The listener is read through an `AsyncFd` on the std listener, so an accepted socket goes
//! straight to a shard's epoll set without ever being registered with tokio.

use std::io::{ErrorKind, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringpush_limits::TokenBuckets;

use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;

use crate::shard::{Command, Shared};

/// How long to wait after an accept error such as EMFILE before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Sockets accepted per wake-up before the task lets others run.
const ACCEPTS_PER_WAKE: usize = 256;

/// Raises the soft limit of open files to the hard limit: each connection is a file.
pub(crate) fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open files limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open files limit"),
    }
}

/// Prepares the device listener for [`run`].
pub(crate) fn listener(listener: tokio::net::TcpListener) -> std::io::Result<AsyncFd<TcpListener>> {
    let listener = listener.into_std()?;
    listener.set_nonblocking(true)?;
    // The safe constructor is deprecated in favour of an `unsafe` one whose contract (the fd
    // stays open while registered) holds here: the AsyncFd owns the listener.
    #[allow(deprecated)]
    AsyncFd::with_interest(listener, tokio::io::Interest::READABLE)
}

/// Accepts until `stop` fires.
pub(crate) async fn run(
    listener: AsyncFd<TcpListener>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut next_shard = 0usize;
    let mut per_address = shared.config.connections_per_ip.map(TokenBuckets::new);
    loop {
        let mut guard = tokio::select! {
            () = stop.cancelled() => return,
            guard = listener.readable() => match guard {
                Ok(guard) => guard,
                Err(error) => {
                    tracing::error!(%error, "device listener lost its reactor");
                    return;
                }
            },
        };
        for _ in 0..ACCEPTS_PER_WAKE {
            let stream = match guard.get_inner().accept() {
                Ok((stream, peer)) => match &mut per_address {
                    Some(limit) => match limit.take(&peer.ip(), 1.0, Instant::now()) {
                        Ok(()) => stream,
                        Err(wait) => {
                            let plain = shared.config.device_tls.is_none();
                            refuse_over_rate(stream, peer.ip(), wait, plain);
                            continue;
                        }
                    },
                    None => stream,
                },
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        ErrorKind::ConnectionAborted
                            | ErrorKind::ConnectionReset
                            | ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(error) => {
                    // Typically EMFILE or ENFILE: out of file descriptors. Waiting lets
                    // closing connections give some back instead of spinning on the error.
                    tracing::warn!(%error, "accept failed; backing off");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => break,
                    }
                }
            };
            if let Err(error) = stream.set_nonblocking(true) {
                tracing::debug!(%error, "could not make an accepted socket non-blocking");
                continue;
            }
            // Pushes are small and latency matters more than packet count.
            let _ = stream.set_nodelay(true);
            if let Some(bytes) = shared.config.socket_send_buffer_bytes {
                let _ = socket2::SockRef::from(&stream).set_send_buffer_size(bytes);
            }
            let shard = next_shard % shared.shards.len();
            next_shard = next_shard.wrapping_add(1);
            if shared.shards[shard]
                .send(Command::Accept(stream))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Answers a connection over its address's rate with `429 Too Many Requests` and closes it.
/// The socket is new, so its send buffer has room for the few bytes; if not, it just closes.
/// A TLS socket is only closed: a handshake just to say 429 would cost what the limit saves.
fn refuse_over_rate(mut stream: TcpStream, address: IpAddr, wait: Duration, answer: bool) {
    metrics::counter!("ringpush_connector_connections_refused_total", "reason" => "address_rate")
        .increment(1);
    tracing::debug!(%address, ?wait, "connection over its address's rate refused");
    if !answer {
        return;
    }
    let retry_after = wait.as_secs().max(1);
    let body = format!("too many new connections from {address}; retry after {retry_after} s\n");
    let mut answer = Vec::with_capacity(200 + body.len());
    answer.extend_from_slice(
        format!(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {retry_after}\r\nContent-Type: \
             text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    answer.extend_from_slice(body.as_bytes());
    let _ = stream.set_nonblocking(true);
    let _ = stream.write(&answer);
}

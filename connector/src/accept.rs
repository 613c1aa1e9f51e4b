//! Accepting device sockets and handing them to the shards, round robin.
//!
//! The listener is read through an `AsyncFd` on the std listener, so an accepted socket goes
//! straight to a shard's epoll set without ever being registered with tokio.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

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
                Ok((stream, _peer)) => stream,
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

//! Acks and delivered positions, written to the store in batches.
//!
//! Shards hand `(device, seq)` pairs to a batcher over a bounded channel without waiting
//! (full means the pair is dropped and counted: an ack is repeated by the device after a
//! reconnect, a delivered position is implied by the next one or by the ack). The batcher
//! keeps the highest seq per device and writes them every few milliseconds, or as soon as
//! enough devices are waiting, with one store call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use ringpush_protocol::DeviceId;
use ringpush_store::Store;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Pairs queued before senders drop them.
pub(crate) const QUEUE: usize = 64 * 1024;
/// How long the first pair of a batch may wait.
const FLUSH_EVERY: Duration = Duration::from_millis(5);
/// Devices per store call.
const MAX_BATCH: usize = 512;

/// Which positions a batcher writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// Cumulative acks (`Store::ack`): trims the inbox.
    Acked,
    /// Written to the device's socket (`Store::mark_delivered`).
    Delivered,
}

impl Position {
    fn name(self) -> &'static str {
        match self {
            Self::Acked => "acked",
            Self::Delivered => "delivered",
        }
    }
}

/// Starts a batcher; it writes what it holds and stops when `stop` fires.
pub(crate) fn spawn(
    position: Position,
    store: Arc<dyn Store>,
    stop: CancellationToken,
) -> (mpsc::Sender<(DeviceId, u64)>, JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run(position, store, receiver, stop));
    (sender, task)
}

async fn run(
    position: Position,
    store: Arc<dyn Store>,
    mut receiver: mpsc::Receiver<(DeviceId, u64)>,
    stop: CancellationToken,
) {
    let mut pending: HashMap<DeviceId, u64> = HashMap::new();
    let mut deadline = Instant::now();
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            received = receiver.recv() => {
                let Some((device, seq)) = received else { break };
                if pending.is_empty() {
                    deadline = Instant::now() + FLUSH_EVERY;
                }
                let highest = pending.entry(device).or_insert(seq);
                *highest = (*highest).max(seq);
                if pending.len() >= MAX_BATCH {
                    write(position, store.as_ref(), &mut pending).await;
                }
            }
            () = tokio::time::sleep_until(deadline), if !pending.is_empty() => {
                write(position, store.as_ref(), &mut pending).await;
            }
        }
    }
    // Stopping: take what is still queued, then write everything.
    while let Ok((device, seq)) = receiver.try_recv() {
        let highest = pending.entry(device).or_insert(seq);
        *highest = (*highest).max(seq);
        if pending.len() >= MAX_BATCH {
            write(position, store.as_ref(), &mut pending).await;
        }
    }
    write(position, store.as_ref(), &mut pending).await;
}

async fn write(position: Position, store: &dyn Store, pending: &mut HashMap<DeviceId, u64>) {
    if pending.is_empty() {
        return;
    }
    let batch: Vec<(DeviceId, u64)> = pending.drain().collect();
    let result = match position {
        Position::Acked => store.ack(&batch).await,
        Position::Delivered => store.mark_delivered(&batch).await,
    };
    if let Err(error) = result {
        // Positions only move forward and are repeated (acks after a reconnect, delivered
        // by the next push), so a lost batch delays them rather than losing anything.
        counter!("ringpush_connector_position_writes_failed_total", "position" => position.name())
            .increment(1);
        tracing::warn!(position = position.name(), devices = batch.len(), %error, "could not write positions");
    }
}

//! Device attributes, written to the registry in batches.
//!
//! Shards hand each reported set to the batcher over a bounded channel without waiting; a
//! full channel drops the set and counts it (the connection still matches audiences with
//! it; the registry catches up at the device's next report). The batcher keeps the latest
//! set per device and writes them every few milliseconds, or as soon as enough devices wait,
//! with one `put_attributes` call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use ringpush_audience::DeviceAttributes;
use ringpush_protocol::{AppId, DeviceId};
use ringpush_store::Store;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One device's reported attributes.
pub(crate) type AttributesUpdate = (AppId, DeviceId, DeviceAttributes);

/// Sets queued before senders drop them (a set is a few hundred bytes).
const QUEUE: usize = 8 * 1024;
/// How long the first set of a batch may wait.
const FLUSH_EVERY: Duration = Duration::from_millis(5);
/// Devices per store call.
const MAX_BATCH: usize = 256;

/// Starts the batcher; it writes what it holds and stops when `stop` fires.
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    stop: CancellationToken,
) -> (mpsc::Sender<AttributesUpdate>, JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run(store, receiver, stop));
    (sender, task)
}

async fn run(
    store: Arc<dyn Store>,
    mut receiver: mpsc::Receiver<AttributesUpdate>,
    stop: CancellationToken,
) {
    let mut pending: HashMap<DeviceId, (AppId, DeviceAttributes)> = HashMap::new();
    let mut deadline = Instant::now();
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            received = receiver.recv() => {
                let Some((app, device, attributes)) = received else { break };
                if pending.is_empty() {
                    deadline = Instant::now() + FLUSH_EVERY;
                }
                // The SDK always reports the whole set: the latest one wins.
                pending.insert(device, (app, attributes));
                if pending.len() >= MAX_BATCH {
                    write(store.as_ref(), &mut pending).await;
                }
            }
            () = tokio::time::sleep_until(deadline), if !pending.is_empty() => {
                write(store.as_ref(), &mut pending).await;
            }
        }
    }
    // Stopping: take what is still queued, then write everything.
    while let Ok((app, device, attributes)) = receiver.try_recv() {
        pending.insert(device, (app, attributes));
        if pending.len() >= MAX_BATCH {
            write(store.as_ref(), &mut pending).await;
        }
    }
    write(store.as_ref(), &mut pending).await;
}

async fn write(store: &dyn Store, pending: &mut HashMap<DeviceId, (AppId, DeviceAttributes)>) {
    if pending.is_empty() {
        return;
    }
    let batch: Vec<AttributesUpdate> = pending
        .drain()
        .map(|(device, (app, attributes))| (app, device, attributes))
        .collect();
    match store.registry().put_attributes(&batch).await {
        Ok(()) => {
            counter!("ringpush_connector_attributes_written_total").increment(batch.len() as u64);
        }
        Err(error) => {
            // The connections keep matching with these sets; the registry gets them at the
            // devices' next report.
            counter!("ringpush_connector_attributes_dropped_total").increment(batch.len() as u64);
            tracing::warn!(devices = batch.len(), %error, "could not write device attributes");
        }
    }
}

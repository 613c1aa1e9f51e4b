//! Message and campaign statistics (delivered, acked, opened, clicked), counted in memory and
//! written in batches so that counting never slows delivery.
//!
//! Shards hand increments to the batcher over a bounded channel without waiting; a full
//! channel drops the increment and counts the drop in
//! `ringpush_connector_stats_dropped_total` (statistics are an estimate under overload,
//! never a reason to hold a push back). The batcher adds up increments per (app, subject,
//! counter, minute) and writes the sums every `FLUSH_EVERY`, or as soon as `MAX_KEYS` sums
//! are held, with one `add_stats` call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use ringpush_protocol::AppId;
use ringpush_protocol::device::{ErrorCode, Report, ReportKind};
use ringpush_store::{Counter, StatIncrement, Store, now_ms};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::session::Flow;
use crate::shard::{Shard, Shared};

/// Increments queued before senders drop them.
const QUEUE: usize = 64 * 1024;
/// How often the sums are written.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Sums held before they are written early.
const MAX_KEYS: usize = 4096;

/// Events in one Report frame.
const MAX_REPORT_EVENTS: usize = 256;
/// Bytes in a reported message or campaign id.
const MAX_REPORTED_ID: usize = 128;

type Key = (AppId, String, Counter, i64);

/// Starts the batcher; it writes what it holds and stops when `stop` fires.
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    stop: CancellationToken,
) -> (mpsc::Sender<StatIncrement>, JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run(store, receiver, stop));
    (sender, task)
}

impl Shared {
    /// Counts `by` more of `counter` for a message and, when it has one, its campaign.
    pub fn count(
        &self,
        app: AppId,
        message_id: &str,
        campaign_id: &str,
        counter: Counter,
        by: u64,
    ) {
        if by == 0 {
            return;
        }
        let minute = now_ms().div_euclid(60_000);
        let subjects = [message_id, campaign_id];
        for subject in subjects.into_iter().filter(|subject| !subject.is_empty()) {
            let increment = StatIncrement {
                app,
                subject: subject.to_owned(),
                counter,
                minute,
                by,
            };
            if self.stat_increments.try_send(increment).is_err() {
                counter!("ringpush_connector_stats_dropped_total").increment(by);
            }
        }
    }
}

impl Shard {
    /// A Report frame: each event counted for its message and campaign, under the device's
    /// app.
    pub fn on_report(&mut self, key: usize, report: Report) -> Flow {
        let Some(app) = self.conns[key].profile.as_ref().map(|profile| profile.app) else {
            return self.refuse(key, ErrorCode::BadFrame, "reports come after the welcome");
        };
        if report.events.len() > MAX_REPORT_EVENTS {
            let message = format!(
                "a report holds {} events; at most {MAX_REPORT_EVENTS} are allowed",
                report.events.len()
            );
            return self.refuse(key, ErrorCode::BadFrame, &message);
        }
        for event in &report.events {
            let ids = [&event.message_id, &event.campaign_id];
            if event.message_id.is_empty() || ids.iter().any(|id| id.len() > MAX_REPORTED_ID) {
                let message = format!(
                    "a report event needs a message_id, and ids of at most {MAX_REPORTED_ID} bytes"
                );
                return self.refuse(key, ErrorCode::BadFrame, &message);
            }
        }
        for event in report.events {
            let counter = match event.kind() {
                ReportKind::Received => Counter::Acked,
                ReportKind::Opened => Counter::Opened,
                ReportKind::Clicked => Counter::Clicked,
                ReportKind::Unspecified => {
                    // Unknown kinds decode as unspecified: a newer SDK's event, ignored.
                    counter!("ringpush_connector_report_events_ignored_total").increment(1);
                    continue;
                }
            };
            counter!("ringpush_connector_report_events_total", "kind" => counter.name())
                .increment(1);
            self.shared
                .count(app, &event.message_id, &event.campaign_id, counter, 1);
        }
        Flow::Continue
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut receiver: mpsc::Receiver<StatIncrement>,
    stop: CancellationToken,
) {
    let mut sums: HashMap<Key, u64> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            received = receiver.recv() => {
                let Some(increment) = received else { break };
                add(&mut sums, increment);
                if sums.len() >= MAX_KEYS {
                    write(store.as_ref(), &mut sums).await;
                }
            }
            _ = tick.tick() => write(store.as_ref(), &mut sums).await,
        }
    }
    // Stopping: take what is still queued, then write everything.
    while let Ok(increment) = receiver.try_recv() {
        add(&mut sums, increment);
        if sums.len() >= MAX_KEYS {
            write(store.as_ref(), &mut sums).await;
        }
    }
    write(store.as_ref(), &mut sums).await;
}

fn add(sums: &mut HashMap<Key, u64>, increment: StatIncrement) {
    let StatIncrement {
        app,
        subject,
        counter,
        minute,
        by,
    } = increment;
    *sums.entry((app, subject, counter, minute)).or_default() += by;
}

async fn write(store: &dyn Store, sums: &mut HashMap<Key, u64>) {
    if sums.is_empty() {
        return;
    }
    let batch: Vec<StatIncrement> = sums
        .drain()
        .map(|((app, subject, counter, minute), by)| StatIncrement {
            app,
            subject,
            counter,
            minute,
            by,
        })
        .collect();
    if let Err(error) = store.stats().add_stats(&batch).await {
        let lost: u64 = batch.iter().map(|increment| increment.by).sum();
        counter!("ringpush_connector_stats_dropped_total").increment(lost);
        tracing::warn!(sums = batch.len(), %error, "could not write statistics");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_to_one_key_add_up() {
        let mut sums = HashMap::new();
        let increment = |subject: &str, by| StatIncrement {
            app: AppId(1),
            subject: subject.to_owned(),
            counter: Counter::Opened,
            minute: 10,
            by,
        };
        add(&mut sums, increment("m", 2));
        add(&mut sums, increment("m", 3));
        add(&mut sums, increment("c", 1));
        assert_eq!(sums.len(), 2);
        assert_eq!(sums[&(AppId(1), "m".to_owned(), Counter::Opened, 10)], 5);
    }
}

//! Reporting what happened to messages (received, opened, clicked): the bounded queue and the
//! pacing rules, kept apart from the socket.
//!
//! The app side queues events (RECEIVED when a message is handed, OPENED and CLICKED when the
//! app says so); the connection task sends them on the live connection in Report frames of at
//! most [`REPORT_BATCH_EVENTS`] events, at most one frame per [`REPORT_INTERVAL`], and not
//! while an Ack is waiting to go, so that the RECEIVED events of a burst follow its Ack in one
//! frame. While disconnected, events wait in the queue, bounded by [`REPORT_QUEUE_CAPACITY`]:
//! past it the oldest is dropped and counted. Reports are statistics, written once: an event
//! written to a connection that then dies is not sent again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prost::Message as _;
use prost::encoding::encoded_len_varint;
use ringpush_protocol::device::{ReportEvent, ReportKind};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::message::Message;
use crate::stats::Counters;

/// The most events in one Report frame.
pub(crate) const REPORT_BATCH_EVENTS: usize = 100;

/// The shortest time between two Report frames.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_millis(200);

/// The most events waiting to be sent; past it the oldest is dropped.
pub(crate) const REPORT_QUEUE_CAPACITY: usize = 1000;

/// The longest message or campaign id a connector accepts in a report event, in bytes; a
/// Report with a longer one is refused whole (and its connection closed).
const MAX_REPORTED_ID_BYTES: usize = 128;

/// Bytes of a Report frame besides its events: the frame's and the report's tags and lengths.
const REPORT_FRAME_OVERHEAD: usize = 1 + 5;

/// The event of `kind` for `message`.
pub(crate) fn event(message: &Message, kind: ReportKind) -> ReportEvent {
    ReportEvent {
        message_id: message.message_id.clone(),
        campaign_id: message.campaign_id.clone().unwrap_or_default(),
        kind: kind.into(),
    }
}

/// Events waiting to be sent, oldest first.
#[derive(Debug)]
pub(crate) struct ReportQueue {
    events: VecDeque<ReportEvent>,
    capacity: usize,
}

impl ReportQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            events: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queues `event`; answers how many events were dropped (0 or 1): the oldest, to make
    /// room, or `event` itself if a connector would refuse it (no id, or an id too long).
    pub(crate) fn push(&mut self, event: ReportEvent) -> u64 {
        let ids = [&event.message_id, &event.campaign_id];
        if event.message_id.is_empty() || ids.iter().any(|id| id.len() > MAX_REPORTED_ID_BYTES) {
            return 1;
        }
        let dropped = if self.events.len() == self.capacity {
            self.events.pop_front();
            1
        } else {
            0
        };
        self.events.push_back(event);
        dropped
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Takes the oldest events for one frame: at most [`REPORT_BATCH_EVENTS`], and no more
    /// than fit in `max_frame_bytes`. An event that could never fit is dropped; the answer
    /// says how many were.
    pub(crate) fn take_batch(&mut self, max_frame_bytes: usize) -> (Vec<ReportEvent>, u64) {
        let room = max_frame_bytes.saturating_sub(REPORT_FRAME_OVERHEAD);
        let mut batch = Vec::new();
        let mut used = 0;
        let mut dropped = 0;
        while batch.len() < REPORT_BATCH_EVENTS {
            let Some(next) = self.events.front() else {
                break;
            };
            let len = next.encoded_len();
            let cost = 1 + encoded_len_varint(len as u64) + len;
            if cost > room {
                // Only an absurd message id does this; it must not block the queue.
                self.events.pop_front();
                dropped += 1;
                continue;
            }
            if used + cost > room {
                break;
            }
            used += cost;
            batch.extend(self.events.pop_front());
        }
        (batch, dropped)
    }

    /// Puts back, at the front, a batch that could not be written; answers how many of the
    /// oldest events were dropped to stay within the capacity.
    pub(crate) fn put_back(&mut self, batch: Vec<ReportEvent>) -> u64 {
        for event in batch.into_iter().rev() {
            self.events.push_front(event);
        }
        let excess = self.events.len().saturating_sub(self.capacity);
        self.events.drain(..excess);
        excess as u64
    }
}

/// The queue shared by the app side (which fills it) and the connection task (which sends it).
/// The lock is held only to push or take, never across an `.await`.
#[derive(Debug)]
pub(crate) struct Reports {
    queue: Mutex<ReportQueue>,
    /// Wakes the connection task when an event is queued (a permit is kept if it is busy).
    pub(crate) queued: Notify,
    counters: Arc<Counters>,
}

impl Reports {
    pub(crate) fn new(capacity: usize, counters: Arc<Counters>) -> Self {
        Self {
            queue: Mutex::new(ReportQueue::new(capacity)),
            queued: Notify::new(),
            counters,
        }
    }

    /// Queues an event and wakes the connection task.
    pub(crate) fn push(&self, event: ReportEvent) {
        let dropped = self.lock().push(event);
        self.count_dropped(dropped);
        self.queued.notify_one();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// See [`ReportQueue::take_batch`]; drops are counted here.
    pub(crate) fn take_batch(&self, max_frame_bytes: usize) -> Vec<ReportEvent> {
        let (batch, dropped) = self.lock().take_batch(max_frame_bytes);
        self.count_dropped(dropped);
        batch
    }

    /// See [`ReportQueue::put_back`]; drops are counted here.
    pub(crate) fn put_back(&self, batch: Vec<ReportEvent>) {
        let dropped = self.lock().put_back(batch);
        self.count_dropped(dropped);
    }

    fn count_dropped(&self, dropped: u64) {
        if dropped > 0 {
            self.counters
                .reports_dropped
                .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReportQueue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// When the next Report frame may go.
#[derive(Debug, Default)]
pub(crate) struct ReportPacer {
    last_sent_at: Option<Instant>,
}

impl ReportPacer {
    /// When to send the next frame: `None` with nothing queued or while an Ack is waiting
    /// (the events go right after it), else at once or when [`REPORT_INTERVAL`] has passed
    /// since the last frame.
    pub(crate) fn due_at(
        &self,
        events_queued: bool,
        ack_waiting: bool,
        now: Instant,
    ) -> Option<Instant> {
        if !events_queued || ack_waiting {
            return None;
        }
        Some(match self.last_sent_at {
            Some(last) => (last + REPORT_INTERVAL).max(now),
            None => now,
        })
    }

    pub(crate) fn sent(&mut self, now: Instant) {
        self.last_sent_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringpush_protocol::device::{ClientFrame, Report, client_frame};

    fn opened(index: usize) -> ReportEvent {
        ReportEvent {
            message_id: format!("0123456789abcdef0123456789abcdef-{index}"),
            campaign_id: "spring-sale-2026".into(),
            kind: ReportKind::Opened.into(),
        }
    }

    fn ids(events: &[ReportEvent]) -> Vec<String> {
        events
            .iter()
            .map(|event| event.message_id.clone())
            .collect()
    }

    #[test]
    fn the_queue_keeps_the_newest_events_and_counts_what_it_drops() {
        let mut queue = ReportQueue::new(3);
        let dropped: u64 = (0..5).map(|index| queue.push(opened(index))).sum();
        assert_eq!(dropped, 2);
        let (batch, dropped) = queue.take_batch(4352);
        assert_eq!(dropped, 0);
        assert_eq!(ids(&batch), ids(&[opened(2), opened(3), opened(4)]));
        assert!(queue.is_empty());
    }

    #[test]
    fn a_batch_holds_at_most_100_events_and_fits_the_frame_limit() {
        let mut queue = ReportQueue::new(REPORT_QUEUE_CAPACITY);
        for index in 0..250 {
            queue.push(opened(index));
        }
        // A roomy limit: the count is the bound.
        let (first, _) = queue.take_batch(1 << 20);
        assert_eq!(first.len(), REPORT_BATCH_EVENTS);
        assert_eq!(first[0].message_id, opened(0).message_id, "oldest first");
        // The default connector limit: the bytes are the bound, and the frame fits.
        let limit = 4352;
        let (second, dropped) = queue.take_batch(limit);
        assert_eq!(dropped, 0);
        assert!(!second.is_empty() && second.len() < REPORT_BATCH_EVENTS);
        let frame = ClientFrame {
            kind: Some(client_frame::Kind::Report(Report {
                events: second.clone(),
            })),
        };
        assert!(
            frame.encoded_len() <= limit,
            "{} bytes",
            frame.encoded_len()
        );
        assert_eq!(second[0].message_id, opened(100).message_id);
        // An event that can never fit is dropped, not left to block the queue.
        let mut queue = ReportQueue::new(10);
        queue.push(opened(0));
        queue.push(opened(1));
        let tiny = opened(0).encoded_len() + REPORT_FRAME_OVERHEAD - 1;
        let (batch, dropped) = queue.take_batch(tiny);
        assert_eq!((batch.len(), dropped), (0, 2));
    }

    #[test]
    fn events_a_connector_would_refuse_are_never_queued() {
        let mut queue = ReportQueue::new(10);
        let no_id = ReportEvent {
            message_id: String::new(),
            ..opened(0)
        };
        let long_campaign = ReportEvent {
            campaign_id: "c".repeat(129),
            ..opened(1)
        };
        assert_eq!(queue.push(no_id), 1);
        assert_eq!(queue.push(long_campaign), 1);
        assert!(queue.is_empty());
        assert_eq!(queue.push(opened(2)), 0);
    }

    #[test]
    fn an_unwritten_batch_goes_back_in_front_within_the_bound() {
        let mut queue = ReportQueue::new(4);
        for index in 0..3 {
            queue.push(opened(index));
        }
        let (batch, _) = queue.take_batch(4352);
        queue.push(opened(3));
        queue.push(opened(4));
        // Five events for four places: the oldest of the batch is the one dropped.
        assert_eq!(queue.put_back(batch), 1);
        let (again, _) = queue.take_batch(4352);
        assert_eq!(
            ids(&again),
            ids(&[opened(1), opened(2), opened(3), opened(4)])
        );
    }

    #[test]
    fn the_shared_queue_counts_drops_in_the_stats() {
        let counters = Arc::new(Counters::default());
        let reports = Reports::new(2, counters.clone());
        for index in 0..5 {
            reports.push(opened(index));
        }
        assert_eq!(counters.snapshot().reports_dropped, 3);
        assert_eq!(reports.take_batch(4352).len(), 2);
        assert!(reports.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn frames_go_at_most_every_interval_and_never_before_a_waiting_ack() {
        let mut pacer = ReportPacer::default();
        let now = Instant::now();
        assert_eq!(pacer.due_at(false, false, now), None, "nothing queued");
        assert_eq!(
            pacer.due_at(true, false, now),
            Some(now),
            "first frame at once"
        );
        assert_eq!(pacer.due_at(true, true, now), None, "after the Ack");
        pacer.sent(now);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            pacer.due_at(true, false, Instant::now()),
            Some(now + REPORT_INTERVAL)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let later = Instant::now();
        assert_eq!(pacer.due_at(true, false, later), Some(later));
    }
}

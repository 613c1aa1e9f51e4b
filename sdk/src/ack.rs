//! When to send a cumulative Ack: the coalescing rules, kept apart from any I/O.
//!
//! An Ack covers only what was handed to the app (and so already persisted), per stream: one
//! frame carries the inbox position (`up_to_seq`) and the timeline position (`timeline_up_to`),
//! each 0 when that stream has nothing new to ack. One Ack per burst: the Ack goes out as soon
//! as the app has caught up with everything received, or, while the app is still working
//! through a backlog, at most [`ACK_DELAY`] after the first message that is not yet acked, so
//! that a long backlog does not keep the connector's inbox full.

use std::time::Duration;

use ringpush_protocol::device::Ack;
use tokio::time::Instant;

use crate::stream::{Positions, Stream};

/// The longest an Ack for a handed message waits while more messages are queued for the app.
pub(crate) const ACK_DELAY: Duration = Duration::from_millis(20);

/// How far the app has got, as the app side publishes it after each handed message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Handed {
    /// The highest seq handed to the app (and persisted), per stream.
    pub(crate) up_to: Positions,
    /// Whether more received messages were already waiting for the app at that moment.
    pub(crate) more_queued: bool,
}

/// The acking position of a client, across its connections.
#[derive(Debug)]
pub(crate) struct AckCoalescer {
    /// The highest seqs acked on any connection of this run (0 at start, so that the first
    /// connection after a restart acks what was handed before the restart).
    sent_up_to: Positions,
    /// When the pending Ack is due, if one is waiting.
    due_at: Option<Instant>,
}

impl AckCoalescer {
    pub(crate) fn new() -> Self {
        Self {
            sent_up_to: Positions::default(),
            due_at: None,
        }
    }

    /// Moves the acked positions back to `limit` where they are past it: the store's
    /// sequence restarted below them, and what it numbers from there is acked anew.
    pub(crate) fn lower_to(&mut self, limit: Positions) {
        self.sent_up_to.lower_to(limit);
    }

    /// Decides, given the app's position now, whether to send an Ack now, and which. When it
    /// answers `None` with an Ack still owed, [`AckCoalescer::due_at`] says when to ask again.
    /// The caller reports a sent Ack with [`AckCoalescer::sent`].
    pub(crate) fn poll(&mut self, handed: Handed, now: Instant) -> Option<Ack> {
        if !handed.up_to.any_ahead_of(self.sent_up_to) {
            self.due_at = None;
            return None;
        }
        if !handed.more_queued {
            return Some(self.ack_for(handed.up_to));
        }
        let due_at = *self.due_at.get_or_insert(now + ACK_DELAY);
        (now >= due_at).then(|| self.ack_for(handed.up_to))
    }

    /// The Ack that brings the connector to `handed`: 0 for a stream that has not moved.
    fn ack_for(&self, handed: Positions) -> Ack {
        let moved = |handed: u64, sent: u64| if handed > sent { handed } else { 0 };
        Ack {
            up_to_seq: moved(handed.inbox, self.sent_up_to.inbox),
            timeline_up_to: moved(handed.timeline, self.sent_up_to.timeline),
        }
    }

    /// Records an Ack written to the connection.
    pub(crate) fn sent(&mut self, ack: &Ack) {
        self.sent_up_to.raise(Stream::Inbox, ack.up_to_seq);
        self.sent_up_to.raise(Stream::Timeline, ack.timeline_up_to);
        self.due_at = None;
    }

    /// When the owed Ack is due, if one is owed and waiting.
    pub(crate) fn due_at(&self) -> Option<Instant> {
        self.due_at
    }

    /// Forgets the due time of an Ack owed on a connection that ended; the next connection
    /// asks again from its start.
    pub(crate) fn connection_ended(&mut self) {
        self.due_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The app's position in the inbox only.
    fn handed(inbox: u64, more_queued: bool) -> Handed {
        both(inbox, 0, more_queued)
    }

    fn both(inbox: u64, timeline: u64, more_queued: bool) -> Handed {
        Handed {
            up_to: Positions { inbox, timeline },
            more_queued,
        }
    }

    fn ack(up_to_seq: u64, timeline_up_to: u64) -> Ack {
        Ack {
            up_to_seq,
            timeline_up_to,
        }
    }

    #[test]
    fn acks_at_once_when_the_app_has_caught_up() {
        let now = Instant::now();
        let mut acks = AckCoalescer::new();
        assert_eq!(
            acks.poll(handed(0, false), now),
            None,
            "nothing handed, nothing acked"
        );
        assert_eq!(acks.poll(handed(1, false), now), Some(ack(1, 0)));
        acks.sent(&ack(1, 0));
        assert_eq!(acks.poll(handed(1, false), now), None, "never twice");
        assert_eq!(acks.due_at(), None);
    }

    #[test]
    fn a_burst_gets_one_ack_per_delay_and_one_at_the_end() {
        let start = Instant::now();
        let mut acks = AckCoalescer::new();
        let mut sent = Vec::new();
        // The app works through 10 queued messages, 5 ms apart.
        for seq in 1..=10u64 {
            let now = start + Duration::from_millis(5 * (seq - 1));
            if let Some(owed) = acks.poll(handed(seq, seq < 10), now) {
                acks.sent(&owed);
                sent.push(owed.up_to_seq);
            }
        }
        // Due 20 ms after seq 1 (handed at 0 ms): seq 5 is handed at 20 ms; then due 20 ms after
        // seq 6 (25 ms): seq 10 at 45 ms, which is also the end of the burst.
        assert_eq!(sent, [5, 10]);
    }

    #[test]
    fn the_timer_fires_an_ack_owed_for_a_slow_app() {
        let start = Instant::now();
        let mut acks = AckCoalescer::new();
        assert_eq!(acks.poll(handed(3, true), start), None);
        let due = acks.due_at().unwrap();
        assert_eq!(due, start + ACK_DELAY);
        assert_eq!(
            acks.poll(handed(3, true), due - Duration::from_millis(1)),
            None
        );
        assert_eq!(acks.poll(handed(3, true), due), Some(ack(3, 0)));
        acks.sent(&ack(3, 0));
        assert_eq!(acks.due_at(), None);
    }

    #[test]
    fn never_acks_below_what_was_sent_and_survives_reconnects() {
        let now = Instant::now();
        let mut acks = AckCoalescer::new();
        acks.sent(&ack(7, 0));
        assert_eq!(acks.poll(handed(5, false), now), None);
        assert_eq!(acks.poll(handed(8, true), now), None);
        acks.connection_ended();
        assert_eq!(acks.due_at(), None);
        // The next connection asks again and gets the owed ack once the app catches up.
        assert_eq!(acks.poll(handed(9, false), now), Some(ack(9, 0)));
    }

    #[test]
    fn each_stream_is_acked_on_its_own_and_zero_leaves_the_other_unchanged() {
        let now = Instant::now();
        let mut acks = AckCoalescer::new();
        // Only the timeline moved: the inbox field stays 0 (unchanged).
        assert_eq!(acks.poll(both(0, 40, false), now), Some(ack(0, 40)));
        acks.sent(&ack(0, 40));
        // Then only the inbox.
        assert_eq!(acks.poll(both(2, 40, false), now), Some(ack(2, 0)));
        acks.sent(&ack(2, 0));
        assert_eq!(acks.poll(both(2, 40, false), now), None);
        // Both in one frame.
        assert_eq!(acks.poll(both(3, 41, false), now), Some(ack(3, 41)));
        acks.sent(&ack(3, 41));
        // A stream never goes back, whatever the other does.
        assert_eq!(acks.poll(both(1, 41, false), now), None);
        assert_eq!(acks.poll(both(4, 7, false), now), Some(ack(4, 0)));
    }

    #[test]
    fn a_burst_mixing_both_streams_is_coalesced_into_one_frame() {
        let start = Instant::now();
        let mut acks = AckCoalescer::new();
        // Inbox seq 1, timeline seq 50, inbox seq 2, timeline seq 51, all queued together,
        // handed 1 ms apart: one Ack at the end of the burst covers both streams.
        let steps = [(1, 0), (1, 50), (2, 50), (2, 51)];
        let mut sent = Vec::new();
        for (index, (inbox, timeline)) in steps.into_iter().enumerate() {
            let now = start + Duration::from_millis(index as u64);
            let last = index == steps.len() - 1;
            if let Some(owed) = acks.poll(both(inbox, timeline, !last), now) {
                acks.sent(&owed);
                sent.push(owed);
            }
        }
        assert_eq!(sent, [ack(2, 51)]);
        // A restart: the first connection acks the saved positions of both streams.
        let mut restarted = AckCoalescer::new();
        assert_eq!(restarted.poll(both(2, 51, false), start), Some(ack(2, 51)));
    }
}

//! When to send a cumulative Ack: the coalescing rules, kept apart from any I/O.
//!
//! An Ack covers only what was handed to the app (and so already persisted). One Ack per burst:
//! the Ack goes out as soon as the app has caught up with everything received, or, while the
//! app is still working through a backlog, at most [`ACK_DELAY`] after the first message that
//! is not yet acked, so that a long backlog does not keep the connector's inbox full.

use std::time::Duration;

use tokio::time::Instant;

/// The longest an Ack for a handed message waits while more messages are queued for the app.
pub(crate) const ACK_DELAY: Duration = Duration::from_millis(20);

/// How far the app has got, as the app side publishes it after each handed message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Handed {
    /// The highest seq handed to the app (and persisted).
    pub(crate) up_to: u64,
    /// Whether more received messages were already waiting for the app at that moment.
    pub(crate) more_queued: bool,
}

/// The acking position of a client, across its connections.
#[derive(Debug)]
pub(crate) struct AckCoalescer {
    /// The highest seq acked on any connection of this run (0 at start, so that the first
    /// connection after a restart acks what was handed before the restart).
    sent_up_to: u64,
    /// When the pending Ack is due, if one is waiting.
    due_at: Option<Instant>,
}

impl AckCoalescer {
    pub(crate) fn new() -> Self {
        Self {
            sent_up_to: 0,
            due_at: None,
        }
    }

    /// Decides, given the app's position now, whether to send `Ack{up_to_seq}` now. When it
    /// answers `None` with an Ack still owed, [`AckCoalescer::due_at`] says when to ask again.
    /// The caller reports a sent Ack with [`AckCoalescer::sent`].
    pub(crate) fn poll(&mut self, handed: Handed, now: Instant) -> Option<u64> {
        if handed.up_to <= self.sent_up_to {
            self.due_at = None;
            return None;
        }
        if !handed.more_queued {
            return Some(handed.up_to);
        }
        let due_at = *self.due_at.get_or_insert(now + ACK_DELAY);
        (now >= due_at).then_some(handed.up_to)
    }

    /// Records an Ack written to the connection.
    pub(crate) fn sent(&mut self, up_to: u64) {
        self.sent_up_to = self.sent_up_to.max(up_to);
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

    fn handed(up_to: u64, more_queued: bool) -> Handed {
        Handed { up_to, more_queued }
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
        assert_eq!(acks.poll(handed(1, false), now), Some(1));
        acks.sent(1);
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
            if let Some(up_to) = acks.poll(handed(seq, seq < 10), now) {
                acks.sent(up_to);
                sent.push(up_to);
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
        assert_eq!(acks.poll(handed(3, true), due), Some(3));
        acks.sent(3);
        assert_eq!(acks.due_at(), None);
    }

    #[test]
    fn never_acks_below_what_was_sent_and_survives_reconnects() {
        let now = Instant::now();
        let mut acks = AckCoalescer::new();
        acks.sent(7);
        assert_eq!(acks.poll(handed(5, false), now), None);
        assert_eq!(acks.poll(handed(8, true), now), None);
        acks.connection_ended();
        assert_eq!(acks.due_at(), None);
        // The next connection asks again and gets the owed ack once the app catches up.
        assert_eq!(acks.poll(handed(9, false), now), Some(9));
    }
}

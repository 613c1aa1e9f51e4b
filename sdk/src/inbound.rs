//! Which pushes reach the app: the de-duplication rules, kept apart from any I/O.
//!
//! Delivery on the wire is at-least-once (a reconnect replays what was not acked); the app
//! must see each message once. The rule that guarantees it is the seq: a push at or below the
//! highest seq already received on this run (handed to the app, or queued for it) is a
//! duplicate. The message id check is a second, independent guard within one connection, in
//! case a connector ever sends the same message under two seqs.

use std::collections::{HashSet, VecDeque};

/// How many message ids of the current connection are remembered (the oldest are forgotten).
const RECENT_IDS: usize = 1024;

/// What to do with one push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// New: hand it to the app. `skipped_before` seqs between the previous message and this
    /// one never came (expired or dropped by the inbox cap).
    Deliver { skipped_before: u64 },
    /// Its seq is at or below one already received: a replay.
    AlreadyReceived,
    /// Its id was already received on this connection under another seq.
    RepeatedId,
}

/// The receiving position of a client.
#[derive(Debug)]
pub(crate) struct Inbound {
    /// The highest seq received on this run, handed or queued; starts at the persisted handed
    /// position. Sent as Hello's `last_seq`, so a reconnect does not resend what is queued.
    received_up_to: u64,
    /// Ids received on the current connection, bounded by [`RECENT_IDS`].
    recent_ids: HashSet<String>,
    /// The same ids in arrival order, to forget the oldest.
    recent_order: VecDeque<String>,
}

impl Inbound {
    /// Starts from the highest seq already handed to the app (0 for a new device).
    pub(crate) fn new(handed_up_to: u64) -> Self {
        Self {
            received_up_to: handed_up_to,
            recent_ids: HashSet::new(),
            recent_order: VecDeque::new(),
        }
    }

    /// The position to announce in Hello.
    pub(crate) fn received_up_to(&self) -> u64 {
        self.received_up_to
    }

    /// Forgets the ids of the previous connection (the seq rule still holds across them).
    pub(crate) fn start_connection(&mut self) {
        self.recent_ids.clear();
        self.recent_order.clear();
    }

    /// Judges one push and, if it is new, records it as received.
    pub(crate) fn accept(&mut self, message_id: &str, seq: u64) -> Verdict {
        if seq <= self.received_up_to {
            return Verdict::AlreadyReceived;
        }
        if self.recent_ids.contains(message_id) {
            return Verdict::RepeatedId;
        }
        let skipped_before = seq - self.received_up_to - 1;
        self.received_up_to = seq;
        if self.recent_order.len() == RECENT_IDS
            && let Some(oldest) = self.recent_order.pop_front()
        {
            self.recent_ids.remove(&oldest);
        }
        self.recent_ids.insert(message_id.to_owned());
        self.recent_order.push_back(message_id.to_owned());
        Verdict::Deliver { skipped_before }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_replays_at_or_below_the_received_position() {
        let mut inbound = Inbound::new(0);
        assert_eq!(
            inbound.accept("m1", 1),
            Verdict::Deliver { skipped_before: 0 }
        );
        assert_eq!(
            inbound.accept("m2", 2),
            Verdict::Deliver { skipped_before: 0 }
        );
        assert_eq!(inbound.accept("m2", 2), Verdict::AlreadyReceived);
        assert_eq!(inbound.accept("m1", 1), Verdict::AlreadyReceived);
        assert_eq!(
            inbound.accept("m0", 0),
            Verdict::AlreadyReceived,
            "seqs start at 1"
        );
        assert_eq!(inbound.received_up_to(), 2);
        // A reconnect replays from the Hello position; anything older is still dropped.
        inbound.start_connection();
        assert_eq!(inbound.accept("m2", 2), Verdict::AlreadyReceived);
        assert_eq!(
            inbound.accept("m3", 3),
            Verdict::Deliver { skipped_before: 0 }
        );
    }

    #[test]
    fn a_restart_starts_from_the_handed_position_and_counts_gaps() {
        let mut inbound = Inbound::new(10);
        assert_eq!(inbound.received_up_to(), 10);
        assert_eq!(inbound.accept("m10", 10), Verdict::AlreadyReceived);
        assert_eq!(
            inbound.accept("m13", 13),
            Verdict::Deliver { skipped_before: 2 }
        );
        assert_eq!(
            inbound.accept("m12", 12),
            Verdict::AlreadyReceived,
            "never backwards"
        );
        let mut fresh = Inbound::new(0);
        assert_eq!(
            fresh.accept("m4", 4),
            Verdict::Deliver { skipped_before: 3 }
        );
    }

    #[test]
    fn the_id_guard_holds_within_a_connection_and_stays_bounded() {
        let mut inbound = Inbound::new(0);
        assert_eq!(
            inbound.accept("same", 1),
            Verdict::Deliver { skipped_before: 0 }
        );
        assert_eq!(inbound.accept("same", 2), Verdict::RepeatedId);
        assert_eq!(inbound.received_up_to(), 1, "a refused push moves nothing");
        inbound.start_connection();
        assert_eq!(
            inbound.accept("same", 2),
            Verdict::Deliver { skipped_before: 0 }
        );
        for seq in 3..3 + RECENT_IDS as u64 * 2 {
            inbound.accept(&format!("m{seq}"), seq);
        }
        assert_eq!(inbound.recent_ids.len(), RECENT_IDS);
        assert_eq!(inbound.recent_order.len(), RECENT_IDS);
    }
}

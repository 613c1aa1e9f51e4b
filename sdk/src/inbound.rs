//! Which pushes reach the app: the de-duplication rules, kept apart from any I/O.
//!
//! Delivery on the wire is at-least-once (a reconnect replays what was not acked); the app
//! must see each message once. The rule that guarantees it is the seq, per stream: a push at
//! or below the highest seq already received on this run in its stream (handed to the app, or
//! queued for it) is a duplicate. The message id check is a second, independent guard within
//! one connection, in case a connector ever sends the same message under two seqs.

use std::collections::{HashSet, VecDeque};

use crate::stream::{Positions, Stream};

/// How many message ids of the current connection are remembered (the oldest are forgotten).
const RECENT_IDS: usize = 1024;

/// What to do with one push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// New: hand it to the app. `skipped_before` seqs between the previous message of the
    /// inbox and this one never came (expired or dropped by the inbox cap); always 0 on the
    /// timeline, where a gap only means messages for other audiences.
    Deliver { skipped_before: u64 },
    /// Its seq is at or below one already received in its stream: a replay.
    AlreadyReceived,
    /// Its id was already received on this connection under another seq.
    RepeatedId,
}

/// The receiving position of a client, per stream.
#[derive(Debug)]
pub(crate) struct Inbound {
    /// The highest seq received on this run in each stream, handed or queued; starts at the
    /// persisted handed positions. Sent in Hello (`last_seq`, `timeline_seq`), so a reconnect
    /// does not resend what is queued.
    received_up_to: Positions,
    /// Ids received on the current connection (both streams), bounded by [`RECENT_IDS`].
    recent_ids: HashSet<String>,
    /// The same ids in arrival order, to forget the oldest.
    recent_order: VecDeque<String>,
}

impl Inbound {
    /// Starts from the highest seqs already handed to the app (0 for a new device).
    pub(crate) fn new(handed_up_to: Positions) -> Self {
        Self {
            received_up_to: handed_up_to,
            recent_ids: HashSet::new(),
            recent_order: VecDeque::new(),
        }
    }

    /// The positions to announce in Hello.
    pub(crate) fn received_up_to(&self) -> Positions {
        self.received_up_to
    }

    /// Moves the received positions back to `limit` where they are past it.
    pub(crate) fn lower_to(&mut self, limit: Positions) {
        self.received_up_to.lower_to(limit);
    }

    /// Forgets the ids of the previous connection (the seq rule still holds across them).
    pub(crate) fn start_connection(&mut self) {
        self.recent_ids.clear();
        self.recent_order.clear();
    }

    /// Judges one push of `stream` and, if it is new, records it as received.
    pub(crate) fn accept(&mut self, stream: Stream, message_id: &str, seq: u64) -> Verdict {
        let received_up_to = self.received_up_to.get(stream);
        if seq <= received_up_to {
            return Verdict::AlreadyReceived;
        }
        if self.recent_ids.contains(message_id) {
            return Verdict::RepeatedId;
        }
        let skipped_before = if stream.gaps_are_losses() {
            seq - received_up_to - 1
        } else {
            0
        };
        self.received_up_to.raise(stream, seq);
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

    fn inbox_at(seq: u64) -> Positions {
        Positions {
            inbox: seq,
            timeline: 0,
        }
    }

    #[test]
    fn drops_replays_at_or_below_the_received_position() {
        let mut inbound = Inbound::new(Positions::default());
        assert_eq!(
            inbound.accept(Stream::Inbox, "m1", 1),
            Verdict::Deliver { skipped_before: 0 }
        );
        assert_eq!(
            inbound.accept(Stream::Inbox, "m2", 2),
            Verdict::Deliver { skipped_before: 0 }
        );
        assert_eq!(
            inbound.accept(Stream::Inbox, "m2", 2),
            Verdict::AlreadyReceived
        );
        assert_eq!(
            inbound.accept(Stream::Inbox, "m1", 1),
            Verdict::AlreadyReceived
        );
        assert_eq!(
            inbound.accept(Stream::Inbox, "m0", 0),
            Verdict::AlreadyReceived,
            "seqs start at 1"
        );
        assert_eq!(inbound.received_up_to().inbox, 2);
        // A reconnect replays from the Hello position; anything older is still dropped.
        inbound.start_connection();
        assert_eq!(
            inbound.accept(Stream::Inbox, "m2", 2),
            Verdict::AlreadyReceived
        );
        assert_eq!(
            inbound.accept(Stream::Inbox, "m3", 3),
            Verdict::Deliver { skipped_before: 0 }
        );
    }

    #[test]
    fn a_restart_starts_from_the_handed_position_and_counts_gaps() {
        let mut inbound = Inbound::new(inbox_at(10));
        assert_eq!(inbound.received_up_to().inbox, 10);
        assert_eq!(
            inbound.accept(Stream::Inbox, "m10", 10),
            Verdict::AlreadyReceived
        );
        assert_eq!(
            inbound.accept(Stream::Inbox, "m13", 13),
            Verdict::Deliver { skipped_before: 2 }
        );
        assert_eq!(
            inbound.accept(Stream::Inbox, "m12", 12),
            Verdict::AlreadyReceived,
            "never backwards"
        );
        let mut fresh = Inbound::new(Positions::default());
        assert_eq!(
            fresh.accept(Stream::Inbox, "m4", 4),
            Verdict::Deliver { skipped_before: 3 }
        );
    }

    #[test]
    fn the_id_guard_holds_within_a_connection_and_stays_bounded() {
        let mut inbound = Inbound::new(Positions::default());
        assert_eq!(
            inbound.accept(Stream::Inbox, "same", 1),
            Verdict::Deliver { skipped_before: 0 }
        );
        assert_eq!(
            inbound.accept(Stream::Inbox, "same", 2),
            Verdict::RepeatedId
        );
        assert_eq!(
            inbound.received_up_to().inbox,
            1,
            "a refused push moves nothing"
        );
        inbound.start_connection();
        assert_eq!(
            inbound.accept(Stream::Inbox, "same", 2),
            Verdict::Deliver { skipped_before: 0 }
        );
        for seq in 3..3 + RECENT_IDS as u64 * 2 {
            inbound.accept(Stream::Inbox, &format!("m{seq}"), seq);
        }
        assert_eq!(inbound.recent_ids.len(), RECENT_IDS);
        assert_eq!(inbound.recent_order.len(), RECENT_IDS);
    }

    #[test]
    fn each_stream_has_its_own_position_and_timeline_gaps_are_not_losses() {
        let mut inbound = Inbound::new(Positions {
            inbox: 5,
            timeline: 100,
        });
        // The same seq in the other stream is another message.
        assert_eq!(
            inbound.accept(Stream::Timeline, "t101", 101),
            Verdict::Deliver { skipped_before: 0 }
        );
        assert_eq!(
            inbound.accept(Stream::Inbox, "d-6", 6),
            Verdict::Deliver { skipped_before: 0 }
        );
        // Timeline seqs the device did not match are simply not sent: no loss is counted.
        assert_eq!(
            inbound.accept(Stream::Timeline, "t150", 150),
            Verdict::Deliver { skipped_before: 0 }
        );
        // An inbox gap still is one.
        assert_eq!(
            inbound.accept(Stream::Inbox, "d-9", 9),
            Verdict::Deliver { skipped_before: 2 }
        );
        // Replays are judged against their own stream's position only.
        assert_eq!(
            inbound.accept(Stream::Timeline, "t101", 101),
            Verdict::AlreadyReceived
        );
        assert_eq!(
            inbound.accept(Stream::Timeline, "t120", 120),
            Verdict::AlreadyReceived,
            "never backwards, even into a gap"
        );
        assert_eq!(
            inbound.accept(Stream::Inbox, "d-7", 7),
            Verdict::AlreadyReceived
        );
        assert_eq!(
            inbound.received_up_to(),
            Positions {
                inbox: 9,
                timeline: 150
            }
        );
        // A restart from the saved positions drops what was handed, per stream.
        let mut restarted = Inbound::new(Positions {
            inbox: 9,
            timeline: 150,
        });
        assert_eq!(
            restarted.accept(Stream::Timeline, "t150", 150),
            Verdict::AlreadyReceived
        );
        assert_eq!(
            restarted.accept(Stream::Timeline, "t151", 151),
            Verdict::Deliver { skipped_before: 0 }
        );
    }
}

//! The two sequences a device follows, and a position in each.
//!
//! A device receives messages from two streams, each numbered on its own: its inbox (messages
//! sent to this device: unicast and aliases) and its app's timeline (audience messages:
//! broadcasts, tags, topics, segments, stored once for the whole app). Every rule about
//! positions (de-duplication, acks, what is saved as handed) holds per stream (DESIGN.md
//! invariant 4).

/// Which sequence a message's `seq` belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The device's own inbox. A gap between two seqs means the messages in between expired
    /// or were dropped by the inbox cap.
    Inbox,
    /// The app's timeline of audience messages. A gap between two seqs is normal: those
    /// messages were for audiences this device is not part of.
    Timeline,
}

impl Stream {
    /// The stream a `Push.stream` value names; `None` for a value this SDK does not know.
    pub(crate) fn from_wire(value: u32) -> Option<Self> {
        match value {
            0 => Some(Self::Inbox),
            1 => Some(Self::Timeline),
            _ => None,
        }
    }

    /// Whether a gap between two seqs of this stream means messages were lost.
    pub(crate) fn gaps_are_losses(self) -> bool {
        matches!(self, Self::Inbox)
    }
}

/// A position (a seq) in each stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Positions {
    pub(crate) inbox: u64,
    pub(crate) timeline: u64,
}

impl Positions {
    /// The position in `stream`.
    pub(crate) fn get(self, stream: Stream) -> u64 {
        match stream {
            Stream::Inbox => self.inbox,
            Stream::Timeline => self.timeline,
        }
    }

    /// Moves the position in `stream` up to `seq`; never moves it back.
    pub(crate) fn raise(&mut self, stream: Stream, seq: u64) {
        let position = match stream {
            Stream::Inbox => &mut self.inbox,
            Stream::Timeline => &mut self.timeline,
        };
        *position = (*position).max(seq);
    }

    /// Moves each position back to `limit`'s where it is past it (the store lost writes:
    /// see `Welcome.inbox_last_seq`).
    pub(crate) fn lower_to(&mut self, limit: Positions) {
        self.inbox = self.inbox.min(limit.inbox);
        self.timeline = self.timeline.min(limit.timeline);
    }

    /// Whether any stream is ahead of `other`.
    pub(crate) fn any_ahead_of(self, other: Positions) -> bool {
        self.inbox > other.inbox || self.timeline > other.timeline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_wire_values_and_keeps_positions_apart() {
        assert_eq!(Stream::from_wire(0), Some(Stream::Inbox));
        assert_eq!(Stream::from_wire(1), Some(Stream::Timeline));
        assert_eq!(Stream::from_wire(2), None);
        let mut positions = Positions::default();
        positions.raise(Stream::Timeline, 9);
        positions.raise(Stream::Inbox, 4);
        positions.raise(Stream::Inbox, 2);
        assert_eq!(
            positions,
            Positions {
                inbox: 4,
                timeline: 9
            }
        );
        assert_eq!(positions.get(Stream::Timeline), 9);
        assert!(!positions.any_ahead_of(positions));
        assert!(positions.any_ahead_of(Positions {
            inbox: 4,
            timeline: 8
        }));
    }

    #[test]
    fn lowering_moves_back_only_what_is_past_the_limit() {
        let mut positions = Positions {
            inbox: 7,
            timeline: 3,
        };
        positions.lower_to(Positions {
            inbox: 2,
            timeline: u64::MAX,
        });
        assert_eq!(
            positions,
            Positions {
                inbox: 2,
                timeline: 3
            }
        );
    }
}

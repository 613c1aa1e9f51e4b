//! The record each shard keeps per connection, kept small because an idle connection is
//! nothing but this record (and the kernel's socket).

use std::sync::Arc;

use ringpush_protocol::DeviceId;
use ringpush_protocol::device::Push;

use crate::profile::Profile;

/// Where a connection is in its life. One byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ConnState {
    /// Waiting for (the rest of) the HTTP upgrade request.
    AwaitingHandshake,
    /// Upgraded; the next protocol frame must be a Hello.
    AwaitingHello,
    /// Hello accepted; the store is checking the token and reading the inbox. The socket is
    /// not read meanwhile (its bytes wait in the kernel), and live pushes are held.
    Authenticating,
    /// Welcome sent; the inbox is being read after `last_sent_seq` and live pushes are held
    /// until it is done (DESIGN.md invariant 6). The timeline (stream 1) has its own
    /// catch-up, in `Busy::timeline`.
    CatchingUp,
    /// Every pending message up to `last_sent_seq` is written; live pushes go straight out.
    Live,
    /// The last frames (Error, Redirect, Close) are being flushed; input is discarded.
    /// The device is no longer indexed and its presence is already cleared.
    Closing,
}

/// One connection. Everything a busy connection needs beyond this lives in [`Busy`], which is
/// `None` while the connection is idle.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The device id's bytes (big-endian), all zero until a Hello names it. Bytes rather
    /// than `u128` so the record is 8-aligned and fits 64 bytes in a slab entry.
    device: [u8; 16],
    /// The highest seq written (or queued behind earlier output) on this connection; starts
    /// at the Hello's `last_seq`.
    pub last_sent_seq: u64,
    /// The highest seq of the app's timeline (stream 1) processed on this connection, written
    /// or not (an entry whose audience the device does not match is processed too); starts
    /// at the Hello's `timeline_seq`.
    pub timeline_seq: u64,
    /// The presence epoch the store gave this connection; 0 when none is held.
    pub presence_epoch: u64,
    /// What only a non-idle connection needs; freed as soon as it is empty.
    pub busy: Option<Box<Busy>>,
    /// The device's app and attributes, interned per shard (`profile`); set once the Hello
    /// is accepted, and released only by `Shard::remove`.
    pub profile: Option<Arc<Profile>>,
    /// The socket, non-blocking, registered in the shard's epoll set through its fd (a std
    /// stream is 4 bytes in every build; mio's adds a registry id in debug builds).
    pub stream: std::net::TcpStream,
    /// Tells the results of asynchronous work for an earlier occupant of this slab slot
    /// from results for this connection.
    pub generation: u32,
    /// Coarse seconds (see `Shard::now_secs`) of the last bytes read, or of the moment the
    /// connection started closing.
    pub last_heard: u32,
    pub state: ConnState,
}

// An idle connection costs its slab entry. The budget was 56 bytes (one cache line per
// slab entry); audiences need two more words that every live connection uses on every
// broadcast: the timeline position and the profile pointer. A side table keyed by slab key
// would cost more (a hash map entry is at least 24 bytes with its control byte and load
// factor) and a lookup per connection per broadcast.
const _: () = assert!(std::mem::size_of::<Conn>() <= 72);

impl Conn {
    pub fn new(stream: std::net::TcpStream, generation: u32, now: u32) -> Self {
        Self {
            device: [0; 16],
            last_sent_seq: 0,
            timeline_seq: 0,
            presence_epoch: 0,
            busy: None,
            profile: None,
            stream,
            generation,
            last_heard: now,
            state: ConnState::AwaitingHandshake,
        }
    }

    pub fn device(&self) -> DeviceId {
        DeviceId(u128::from_be_bytes(self.device))
    }

    pub fn set_device(&mut self, device: DeviceId) {
        self.device = device.0.to_be_bytes();
    }

    /// Whether unsent output is waiting for the socket to drain.
    pub fn has_output(&self) -> bool {
        self.busy
            .as_ref()
            .is_some_and(|busy| !busy.output.is_empty())
    }
}

/// What a connection needs only while it is not idle.
#[derive(Debug, Default)]
pub(crate) struct Busy {
    /// Input bytes not yet forming a whole handshake or frame, or bytes that arrived behind a
    /// Hello and wait for its outcome.
    pub input: Vec<u8>,
    /// Output the kernel did not take yet, in order.
    pub output: Vec<u8>,
    /// The highest push seq inside `output`: reported as delivered once `output` is flushed.
    pub unflushed_seq: u64,
    /// Live pushes held back during authentication or catch-up (at most `MAX_HELD_PUSHES`).
    pub held: Vec<Push>,
    /// A push was held after the inbox read now in flight was issued, so that read may not
    /// include it: a gap in front of it must be read again rather than skipped.
    pub held_during_read: bool,
    /// Held pushes were dropped at the limit: read the inbox once more before going live.
    pub reread: bool,
    /// The next inbox read waits until `output` is flushed.
    pub read_when_flushed: bool,
    /// The connection of the same device that this one displaced from the device index when
    /// its Hello began (slab key, generation). It is closed once this one authenticates, and
    /// takes the index back if this one fails.
    pub displaced: Option<(usize, u32)>,
    /// Where the timeline (stream 1) catch-up stands; the default when it is not running.
    pub timeline: TimelineCatchUp,
}

/// A connection's timeline catch-up (see `timeline`).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TimelineCatchUp {
    pub phase: TimelinePhase,
    /// The highest seq of a live broadcast skipped during the catch-up (its entry is durable
    /// in the timeline, so the catch-up must read at least up to it).
    pub seen: u64,
    /// `seen` when the read in flight was issued. Its entry was durable before the read
    /// began, so once a short page comes back the position may move up to it: an entry the
    /// timeline did not return by then has expired (or was never there), and reading again
    /// for it would never end.
    pub covered: u64,
    /// Entries created before this (the device's registration, ms) are not for the device;
    /// 0 after the first catch-up, which reads past all of them.
    pub registered_at_ms: i64,
}

/// Where a timeline catch-up is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimelinePhase {
    /// Not catching up: live broadcasts are written when they are next in line.
    #[default]
    UpToDate,
    /// Hello accepted: the timeline is read once the inbox replay is done.
    AfterInbox,
    /// The next read waits until the connection's output is flushed.
    ReadWhenFlushed,
    /// A read is in flight.
    Reading,
}

impl Busy {
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
            && self.output.is_empty()
            && self.unflushed_seq == 0
            && self.held.is_empty()
            && !self.held_during_read
            && !self.reread
            && !self.read_when_flushed
            && self.displaced.is_none()
            && self.timeline == TimelineCatchUp::default()
    }
}

/// Live pushes held per connection during catch-up; past it they are dropped (the inbox has
/// them) and the inbox is read once more.
pub(crate) const MAX_HELD_PUSHES: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_records_stay_small() {
        let conn = std::mem::size_of::<Conn>();
        // The shape of a slab entry (slab's own enum is private).
        #[allow(dead_code)]
        enum Entry {
            Vacant(usize),
            Occupied(Conn),
        }
        let entry = std::mem::size_of::<Entry>();
        println!("Conn: {conn} bytes, slab entry: {entry} bytes");
        assert!(entry <= 72);
        assert!(conn <= 72);
    }

    #[test]
    fn busy_is_empty_only_when_nothing_is_pending() {
        let mut busy = Busy::default();
        assert!(busy.is_empty());
        busy.reread = true;
        assert!(!busy.is_empty());
    }
}

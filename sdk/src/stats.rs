//! Counters the app can read at any time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A snapshot of a client's counters, from [`Client::stats`](crate::Client::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages returned to the app by `next_message`.
    pub messages_handed: u64,
    /// Pushes dropped because they had already been received (replays after a reconnect), or
    /// handed from a platform notification.
    pub duplicates_dropped: u64,
    /// Messages handed to the app from platform notifications by `handle_platform_push`.
    pub platform_messages_handed: u64,
    /// Platform notifications answered `Duplicate`: the app already had their message.
    pub platform_duplicates: u64,
    /// Platform notifications answered `Pending`: their message comes over the connection.
    pub platform_pending: u64,
    /// Inbox seqs handed from platform notifications that were forgotten to respect the bound
    /// on how many are remembered ahead of the connection (see `MAX_PLATFORM_HANDED`).
    pub platform_seqs_forgotten: u64,
    /// Inbox seqs that never arrived (expired or dropped by the inbox cap before delivery).
    /// Timeline gaps are not counted: they are messages for other audiences.
    pub messages_skipped: u64,
    /// Connection attempts made after a lost or failed connection (redirects not counted).
    pub reconnects: u64,
    /// Redirects followed to another connector.
    pub redirects_followed: u64,
    /// Times the dispatcher was asked for a connector.
    pub dispatcher_lookups: u64,
    /// Connections that reached Welcome.
    pub connections_established: u64,
    /// Attributes frames written (after each Welcome and after changes, debounced).
    pub attributes_sent: u64,
    /// Report events (received, opened, clicked) written to a connection.
    pub reports_sent: u64,
    /// Report events dropped: the oldest, when more than the queue holds waited for a
    /// connection.
    pub reports_dropped: u64,
    /// Whether a connection is established now.
    pub connected: bool,
}

/// The live counters, shared by the connection task and the app side.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) messages_handed: AtomicU64,
    pub(crate) duplicates_dropped: AtomicU64,
    pub(crate) platform_messages_handed: AtomicU64,
    pub(crate) platform_duplicates: AtomicU64,
    pub(crate) platform_pending: AtomicU64,
    pub(crate) platform_seqs_forgotten: AtomicU64,
    pub(crate) messages_skipped: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) redirects_followed: AtomicU64,
    pub(crate) dispatcher_lookups: AtomicU64,
    pub(crate) connections_established: AtomicU64,
    pub(crate) attributes_sent: AtomicU64,
    pub(crate) reports_sent: AtomicU64,
    pub(crate) reports_dropped: AtomicU64,
    pub(crate) connected: AtomicBool,
    /// Why the last attempt to open a connection failed (cleared by a Welcome); a plain
    /// mutex, held only to swap the text.
    pub(crate) last_connect_error: std::sync::Mutex<Option<String>>,
}

impl Counters {
    /// Records why a connection could not be opened (`None`: one was).
    pub(crate) fn set_connect_error(&self, error: Option<String>) {
        let mut last = self
            .last_connect_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = error;
    }

    pub(crate) fn connect_error(&self) -> Option<String> {
        self.last_connect_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Adds one to a counter.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            messages_handed: read(&self.messages_handed),
            duplicates_dropped: read(&self.duplicates_dropped),
            platform_messages_handed: read(&self.platform_messages_handed),
            platform_duplicates: read(&self.platform_duplicates),
            platform_pending: read(&self.platform_pending),
            platform_seqs_forgotten: read(&self.platform_seqs_forgotten),
            messages_skipped: read(&self.messages_skipped),
            reconnects: read(&self.reconnects),
            redirects_followed: read(&self.redirects_followed),
            dispatcher_lookups: read(&self.dispatcher_lookups),
            connections_established: read(&self.connections_established),
            attributes_sent: read(&self.attributes_sent),
            reports_sent: read(&self.reports_sent),
            reports_dropped: read(&self.reports_dropped),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}

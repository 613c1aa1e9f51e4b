//! Audience messages (broadcasts, topics, tags, segments): stored once per app in a timeline,
//! not copied into each device's inbox (DESIGN.md invariant 7). Devices catch up from their
//! own position in it.

pub(crate) mod record;

use async_trait::async_trait;
use ringpush_protocol::AppId;

use crate::{Appended, ContentType, StoreResult};

/// A message for an audience, to append to its app's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTimelineEntry {
    /// The id the API answered for the whole audience.
    pub message_id: String,
    /// The audience in its canonical text form (`ringpush_audience::Audience`'s Display).
    pub audience: String,
    pub payload: Vec<u8>,
    pub content_type: ContentType,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// The campaign this message belongs to, if any (statistics are kept per campaign too).
    pub campaign_id: Option<String>,
    /// Set for requests made with an idempotency key: a retry appends nothing new.
    pub idempotency_key: Option<String>,
    /// Collapse key, priority, notification. A collapse key is applied when devices catch
    /// up: of the entries one read answers, a device gets only the newest it matches.
    pub options: crate::MessageOptions,
}

/// An entry as read back from a timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// The entry's number in its app's timeline.
    pub seq: u64,
    pub message_id: String,
    pub audience: String,
    pub payload: Vec<u8>,
    pub content_type: ContentType,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub campaign_id: Option<String>,
    pub options: crate::MessageOptions,
}

/// Per-app timelines of audience messages.
#[async_trait]
pub trait TimelineStore: Send + Sync {
    /// Appends an entry with the app's next timeline seq, atomically; first drops entries
    /// already expired at the entry's `created_at_ms` (a bounded number per call, not
    /// counted), then the oldest entries past `max_len` (`Appended::dropped` counts those
    /// that had not expired). With an idempotency key seen in the last 24 h, answers the
    /// earlier seq (`duplicate: true`) and appends nothing.
    ///
    /// Seqs are never reused, even after every entry has expired: devices keep positions in
    /// them.
    async fn append_timeline(
        &self,
        app: AppId,
        entry: &NewTimelineEntry,
        max_len: u32,
    ) -> StoreResult<Appended>;

    /// Up to `limit` unexpired entries with seq > `after_seq`, in seq order.
    async fn read_timeline(
        &self,
        app: AppId,
        after_seq: u64,
        limit: usize,
        now_ms: i64,
    ) -> StoreResult<Vec<TimelineEntry>>;

    /// The last seq given out in the app's timeline (0 if none): a device registered now
    /// starts after it, so it does not receive audience messages sent before it existed.
    async fn timeline_head(&self, app: AppId) -> StoreResult<u64>;

    /// The entry with the given message id, if it is still in the timeline (not yet dropped
    /// by the cap or an expiry trim; an expired entry not yet trimmed is answered).
    async fn timeline_entry(
        &self,
        app: AppId,
        message_id: &str,
    ) -> StoreResult<Option<TimelineEntry>>;
}

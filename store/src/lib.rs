//! Durable state of ringpush behind one trait, [`Store`], with two backends:
//! - [`RedisStore`]: Redis, a plain server or a Redis Cluster, for deployments;
//! - [`EmbeddedStore`]: a redb file in the process, for `ringpush dev`.
//!
//! [`RegionalStore`] puts several regions' stores behind the same trait: each device's state
//! in its home region's store.
//!
//! What it owns: apps and their keys (kind, hash, creation and revocation of each), devices
//! and their token hashes, each device's inbox (sequence, pending messages, delivered and
//! acked positions), presence, connector leases (the ring's membership) and idempotency
//! records; and, behind accessors, the device registry, timelines, statistics, campaigns, and
//! the web portal's operators and their sessions ([`OperatorStore`]), and what the platform
//! gateways keep: tokens, settings, the queue of platform sends ([`PlatformStore`]). [`conformance`] is the
//! behaviour both backends must show; each backend's tests run all of it.
//!
//! What it does not own: routing, sockets, key generation or checking (callers hash keys and
//! tokens with [`secret_hash`] and compare), or any policy beyond the limits passed in.
//!
//! Atomicity: everything about one device (sequence, inbox, positions, presence) changes
//! atomically per call; batches over many devices are pipelined, not transactional.

mod campaigns;
pub mod conformance;
mod embedded;
mod inbox_record;
pub mod membership;
mod model;
mod operators;
mod options;
mod platform;
mod record_bytes;
mod redis_store;
mod regional;
mod registry;
mod stats;
mod timeline;

use async_trait::async_trait;
use ringpush_protocol::{AppId, DeviceId, MessageId};
use ringpush_ring::Member;

pub use campaigns::{
    CampaignRecord, CampaignState, CampaignStore, Claim, FIRING_DONE_TTL_MS, Schedule,
};
pub use embedded::EmbeddedStore;
pub use model::*;
pub use operators::{OperatorRecord, OperatorStore, Role, SessionRecord, UnknownRole};
pub use options::{MessageOptions, Notification, Priority};
pub use platform::{
    PLATFORM_OUTCOME_TTL_MS, PlatformJob, PlatformOutcome, PlatformRegistration, PlatformState,
    PlatformStore,
};
pub use redis_store::RedisStore;
pub use regional::{
    HandedOff, HeldId, HeldStatus, Holding, MAX_HELD_PER_HOME, Region, RegionalStore, Written,
};
pub use registry::RegistryStore;
pub use stats::{Counter, STATS_TTL_MS, StatIncrement, StatsRecord, StatsStore};
pub use timeline::{NewTimelineEntry, TimelineEntry, TimelineStore};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or answered with an error; the call may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend holds data this build cannot read.
    #[error("store holds unreadable data at {key}: {detail}")]
    Corrupt { key: String, detail: String },
    /// A record that must be new already exists (e.g. two registrations drew the same id).
    #[error("{0} already exists")]
    AlreadyExists(String),
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// The durable state of a ringpush deployment. Cheap to share: `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- apps and devices ----

    /// Stores a new app with the keys it carries (their ids distinct); `AlreadyExists` if its
    /// id is taken.
    async fn create_app(&self, app: &AppRecord) -> StoreResult<()>;
    /// The app with this id.
    async fn app(&self, id: AppId) -> StoreResult<Option<AppRecord>>;
    /// Every app, oldest first (by `created_at_ms`, then by id).
    async fn apps(&self) -> StoreResult<Vec<AppRecord>>;
    /// Adds a key to an app, after its other keys; answers `false` if there is no such app,
    /// `AlreadyExists` if the app already has a key with this id (revoked or not). Atomic per
    /// app: two adds of different ids at once both stay.
    async fn add_app_key(&self, app: AppId, key: &AppKey) -> StoreResult<bool>;
    /// Revokes a key at `now_ms`; answers `true` if it was live and is now revoked, `false` if
    /// there is no such app or key or it was revoked already (its first revocation time
    /// stays). Atomic: of racing revocations, one answers `true`.
    async fn revoke_app_key(&self, app: AppId, key_id: &str, now_ms: i64) -> StoreResult<bool>;
    /// Stores a new device; `AlreadyExists` if its id is taken.
    async fn create_device(&self, device: &DeviceRecord) -> StoreResult<()>;
    /// The device with this id.
    async fn device(&self, id: DeviceId) -> StoreResult<Option<DeviceRecord>>;

    // ---- inboxes ----

    /// Appends messages to their devices' inboxes (write ahead: durable when this returns).
    ///
    /// Per message, atomically: if `idempotency_key` is set and was seen for this device
    /// within [`IDEMPOTENCY_TTL_MS`], answers the seq it got then (`duplicate: true`) and
    /// changes nothing; otherwise takes the device's next seq, appends, drops the oldest
    /// entries past `limits.max_inbox_len` (counted in `dropped`), and extends the inbox's
    /// lifetime to cover the message's expiry. Answers come in request order; one device may
    /// appear several times and gets increasing seqs in request order.
    async fn append(
        &self,
        messages: &[NewMessage],
        limits: InboxLimits,
    ) -> StoreResult<Vec<Appended>>;

    /// Up to `limit` pending messages of `device` with seq > `after_seq`, in seq order,
    /// leaving out those expired at `now_ms`.
    async fn read_inbox(
        &self,
        device: DeviceId,
        after_seq: u64,
        limit: usize,
        now_ms: i64,
    ) -> StoreResult<Vec<StoredMessage>>;

    /// Cumulative acks: for each (device, up_to), removes inbox entries with seq <= up_to and
    /// raises the device's acked and delivered positions to up_to (never lowers them, never
    /// above the device's last seq).
    async fn ack(&self, acks: &[(DeviceId, u64)]) -> StoreResult<()>;

    /// Raises each device's delivered position (messages written to its socket) to the given
    /// seq; never lowers it, never above the device's last seq.
    async fn mark_delivered(&self, marks: &[(DeviceId, u64)]) -> StoreResult<()>;

    /// Positions and pending count of a device's inbox, counting only unexpired entries.
    async fn inbox_state(&self, device: DeviceId, now_ms: i64) -> StoreResult<InboxState>;

    /// Whether the inbox still holds an unexpired entry with this seq.
    async fn inbox_contains(&self, device: DeviceId, seq: u64, now_ms: i64) -> StoreResult<bool>;

    // ---- presence ----

    /// Records that `connector_id` now holds `device`; answers the new epoch, which is
    /// greater than every earlier epoch of this device.
    async fn set_presence(
        &self,
        device: DeviceId,
        connector_id: &str,
        now_ms: i64,
    ) -> StoreResult<u64>;
    /// Clears presence only if it is still (connector_id, epoch): a newer connection elsewhere
    /// is never erased by an old one closing. Answers whether it cleared.
    async fn clear_presence(
        &self,
        device: DeviceId,
        connector_id: &str,
        epoch: u64,
    ) -> StoreResult<bool>;
    /// Who holds the device now, if anyone.
    async fn presence(&self, device: DeviceId) -> StoreResult<Option<Presence>>;

    // ---- membership ----

    /// The store's clock, in ms since the Unix epoch: the clock leases are written and read
    /// by (see [`membership`]), so that a process whose own clock is off still holds and sees
    /// leases right. Redis answers its `TIME`; a store inside one process answers that
    /// process's clock.
    async fn clock_ms(&self) -> StoreResult<i64> {
        Ok(now_ms())
    }
    /// Creates or extends the lease of a connector until `now_ms + ttl_ms` (`now_ms` read
    /// from [`clock_ms`](Store::clock_ms), as [`membership::renew_lease`] does).
    async fn renew_lease(&self, member: &Member, ttl_ms: u64, now_ms: i64) -> StoreResult<()>;
    /// Ends a connector's lease at once (a clean shutdown).
    async fn drop_lease(&self, member_id: &str) -> StoreResult<()>;
    /// Connectors whose leases are live at `now_ms` (read from [`clock_ms`](Store::clock_ms),
    /// as [`membership::live_members`] does), sorted by id.
    async fn live_members(&self, now_ms: i64) -> StoreResult<Vec<Member>>;

    // ---- idempotency ----

    /// Remembers the fingerprint of a request made under an idempotency key for
    /// [`IDEMPOTENCY_TTL_MS`]. Answers `None` if the key is new, or the fingerprint remembered
    /// before (so the caller can refuse a key reused for a different request).
    async fn remember_request(
        &self,
        app: AppId,
        key: &str,
        fingerprint: [u8; 32],
    ) -> StoreResult<Option<[u8; 32]>>;

    // ---- the other parts of the store ----
    // (accessors `registry()`, `timelines()`, `stats()`, `campaigns()`, `operators()` are
    // added here as each part's backends land)

    /// Device attributes, aliases and time zones.
    fn registry(&self) -> &dyn RegistryStore;
    /// Per-app timelines of audience messages.
    fn timelines(&self) -> &dyn TimelineStore;
    /// Delivery statistics.
    fn stats(&self) -> &dyn StatsStore;
    /// Campaigns and their firings.
    fn campaigns(&self) -> &dyn CampaignStore;
    /// Operators of the web portal and their sessions.
    fn operators(&self) -> &dyn OperatorStore;
    /// Platform tokens, gateway settings and the queue of platform sends.
    fn platform(&self) -> &dyn PlatformStore;

    // ---- derived ----

    /// The status of one message, derived from its device's positions (no record per
    /// message): acked at or below the acked position; delivered at or below the delivered
    /// position while still pending; accepted while pending; expired when no longer pending
    /// and never acked (its TTL passed or the inbox cap dropped it). `None` for a seq the
    /// device never had.
    async fn message_status(
        &self,
        id: MessageId,
        now_ms: i64,
    ) -> StoreResult<Option<MessageStatus>> {
        let state = self.inbox_state(id.device, now_ms).await?;
        if id.seq == 0 || id.seq > state.last_seq {
            return Ok(None);
        }
        if id.seq <= state.acked_up_to {
            return Ok(Some(MessageStatus::Acked));
        }
        if !self.inbox_contains(id.device, id.seq, now_ms).await? {
            return Ok(Some(MessageStatus::Expired));
        }
        Ok(Some(if id.seq <= state.delivered_up_to {
            MessageStatus::Delivered
        } else {
            MessageStatus::Accepted
        }))
    }
}

/// Milliseconds since the Unix epoch, the time unit of every record.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// SHA-256 of a secret (key or token), as stored and compared.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes()).into()
}

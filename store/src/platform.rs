//! What the gateways to the platform push services (APNs, FCM, Web Push) keep: each device's
//! platform token, each app's gateway settings, the durable queue of platform sends, and the
//! outcome of each message's platform send.
//!
//! The queue makes a platform send survive the controller that planned it: a send is a job
//! due at a time (now, or after the socket had its chance); a controller claims due jobs for
//! a lease, and a job neither finished nor rescheduled when its lease ends is due again, so a
//! controller killed mid-send delays the notification by a lease but never loses it. The
//! message itself is in the device's inbox all along (DESIGN.md invariant 1): the platform
//! path only wakes the device or shows the notification sooner.
//!
//! Where each piece lives across regions: tokens with their device (home region); settings
//! in every region, as apps are; the queue and outcomes in the region that sent.
//!
//! Does not own: the settings' meaning (the store keeps the JSON the controller gives it),
//! sending, or backoff (callers choose when a rescheduled job is due).

use async_trait::async_trait;
use ringpush_protocol::platform::{PlatformService, PlatformToken};
use ringpush_protocol::{AppId, DeviceId, MessageId};
use serde::{Deserialize, Serialize};

use crate::StoreResult;

/// How long a message's platform outcome is kept: 7 days.
pub const PLATFORM_OUTCOME_TTL_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// A device's platform token, as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformRegistration {
    pub token: PlatformToken,
    pub registered_at_ms: i64,
}

/// One planned platform send of one inbox message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformJob {
    /// The message (its device and seq): one job per message.
    pub message: MessageId,
    pub app: AppId,
    /// Send only if the device has not taken the message over its connection by then
    /// (socket first); `false`: send regardless (platform only).
    pub unless_delivered: bool,
    /// Sends tried so far (0 on the first).
    pub attempts: u32,
}

/// Where a message's platform send stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformState {
    /// Planned; not sent yet (or being retried after `reason`).
    Scheduled,
    /// The service accepted it.
    Sent,
    /// Not needed: the device took the message over its connection first.
    Skipped,
    /// The service refused it for good, or the token was retired; `reason` says which.
    Failed,
}

/// The outcome of a message's platform send, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformOutcome {
    pub state: PlatformState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<PlatformService>,
    /// The service's reason for the last failure or retry (`Unregistered`, `QUOTA_EXCEEDED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempts: u32,
    pub at_ms: i64,
}

/// Platform tokens, gateway settings, the queue of platform sends and their outcomes.
#[async_trait]
pub trait PlatformStore: Send + Sync {
    /// Sets (or replaces, when the platform rotated it) the device's platform token.
    async fn set_platform_token(
        &self,
        device: DeviceId,
        registration: &PlatformRegistration,
    ) -> StoreResult<()>;
    /// The device's platform token, if it registered one.
    async fn platform_token(&self, device: DeviceId) -> StoreResult<Option<PlatformRegistration>>;
    /// Removes the device's token if it is still `token` (one registered meanwhile stays);
    /// answers whether it removed it.
    async fn retire_platform_token(
        &self,
        device: DeviceId,
        token: &PlatformToken,
    ) -> StoreResult<bool>;

    /// Stores an app's gateway settings (JSON, opaque to the store), replacing any.
    async fn set_app_gateways(&self, app: AppId, settings_json: &str) -> StoreResult<()>;
    /// An app's gateway settings, if it has any.
    async fn app_gateways(&self, app: AppId) -> StoreResult<Option<String>>;

    /// Plans each job at its due time (ms, on the store's clock); a job for a message that
    /// already has one replaces it (a retry plans its job again,
    /// with its attempts counted).
    async fn schedule_platform_sends(&self, jobs: &[(PlatformJob, i64)]) -> StoreResult<()>;
    /// Takes up to `limit` jobs due at `now_ms`, oldest due first, and hides each until
    /// `now_ms + lease_ms`: unless finished or rescheduled by then, it is due again.
    async fn claim_platform_sends(
        &self,
        now_ms: i64,
        lease_ms: u64,
        limit: usize,
    ) -> StoreResult<Vec<PlatformJob>>;
    /// Removes a job (sent, skipped, or failed for good).
    async fn finish_platform_send(&self, message: MessageId) -> StoreResult<()>;
    /// Jobs planned and not finished (for readiness and tests).
    async fn pending_platform_sends(&self) -> StoreResult<u64>;

    /// Records where a message's platform send stands, kept [`PLATFORM_OUTCOME_TTL_MS`].
    async fn record_platform_outcome(
        &self,
        message: MessageId,
        outcome: &PlatformOutcome,
    ) -> StoreResult<()>;
    /// Where a message's platform send stands, if it had one (in this region).
    async fn platform_outcome(&self, message: MessageId) -> StoreResult<Option<PlatformOutcome>>;
}

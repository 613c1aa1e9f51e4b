//! Campaigns (scheduled sends) and the claims that make each firing happen exactly once
//! when several controllers run.
//!
//! Campaign ids are unique across apps (they are random): firing claims are keyed by the
//! campaign id alone.

use async_trait::async_trait;
use ringpush_protocol::AppId;
use serde::{Deserialize, Serialize};

use crate::StoreResult;

/// When a campaign sends. Defined in `ringpush_schedule`, which computes its firings: the
/// schedule is a value of the scheduling domain, and that crate stays free of storage.
pub use ringpush_schedule::Schedule;

/// How long a finished firing is remembered as done (its claim answers [`Claim::Done`]):
/// 30 days, far longer than any scheduler looks back.
pub const FIRING_DONE_TTL_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// Where a campaign is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    /// Will fire when due.
    Scheduled,
    /// Kept, but does not fire until resumed; firings that fall due while paused are skipped.
    Paused,
    /// Will never fire again.
    Cancelled,
    /// Every firing has happened.
    Finished,
}

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignRecord {
    pub id: String,
    pub app: AppId,
    pub name: String,
    /// The message to send, as the API accepted it (a send request body: targets, data, TTL,
    /// options), validated before it was stored.
    pub request: serde_json::Value,
    pub schedule: Schedule,
    /// Deliveries per second at most, if throttled.
    pub throttle_per_second: Option<u32>,
    pub state: CampaignState,
    pub created_at_ms: i64,
}

/// The outcome of trying to claim a firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller owns the firing until `now + lease`: it must send, then `finish_firing`.
    Claimed,
    /// Another owner holds a live claim.
    HeldBy(String),
    /// The firing has happened.
    Done,
}

/// Campaign records and firing claims.
#[async_trait]
pub trait CampaignStore: Send + Sync {
    /// Creates or replaces a campaign; keeps the index of campaigns in `Scheduled` state.
    async fn put_campaign(&self, campaign: &CampaignRecord) -> StoreResult<()>;
    async fn campaign(&self, app: AppId, id: &str) -> StoreResult<Option<CampaignRecord>>;
    /// The app's campaigns, newest first (by `created_at_ms`, then by id, both descending).
    async fn app_campaigns(&self, app: AppId) -> StoreResult<Vec<CampaignRecord>>;
    /// Moves a campaign to `to` only if it is in one of `from`, atomically with the index of
    /// scheduled campaigns; answers whether it moved (`false` for an unknown campaign).
    async fn transition_campaign(
        &self,
        app: AppId,
        id: &str,
        from: &[CampaignState],
        to: CampaignState,
    ) -> StoreResult<bool>;
    /// Every campaign in `Scheduled` state, across apps, oldest first (by `created_at_ms`,
    /// then by id).
    async fn scheduled_campaigns(&self) -> StoreResult<Vec<CampaignRecord>>;

    /// Claims one firing (`firing` names it, e.g. `2026-11-23T09:00@Asia/Tokyo`) for `owner`
    /// until `now_ms + lease_ms`, atomically. While a claim is live (`now_ms` before its end)
    /// every caller, its owner too, gets `HeldBy(owner)`; once its lease has passed (its
    /// owner died, or failed to send) the next caller takes it over. A finished firing is
    /// `Done` for [`FIRING_DONE_TTL_MS`].
    async fn claim_firing(
        &self,
        campaign_id: &str,
        firing: &str,
        owner: &str,
        lease_ms: u64,
        now_ms: i64,
    ) -> StoreResult<Claim>;
    /// Extends `owner`'s claim on a firing to `now_ms + lease_ms`, atomically, if the firing
    /// is still claimed by `owner` (its send takes longer than one lease); answers whether it
    /// was. `false`: the firing is done, or another owner took it over.
    async fn renew_firing(
        &self,
        campaign_id: &str,
        firing: &str,
        owner: &str,
        lease_ms: u64,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// Marks a firing done for [`FIRING_DONE_TTL_MS`], claimed or not (a scheduler also marks
    /// done the firings it decides to skip).
    async fn finish_firing(&self, campaign_id: &str, firing: &str) -> StoreResult<()>;
}

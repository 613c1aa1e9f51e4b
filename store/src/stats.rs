//! Delivery statistics per message and per campaign: totals and per-minute series.
//!
//! Counting must never slow delivery: callers aggregate increments in memory and write them
//! in batches; the store pipelines a batch in one round trip.

use std::collections::BTreeMap;

use async_trait::async_trait;
use ringpush_protocol::AppId;
use serde::{Deserialize, Serialize};

use crate::StoreResult;

/// How long statistics are kept after their last increment: 90 days.
pub const STATS_TTL_MS: u64 = 90 * 24 * 60 * 60 * 1000;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counter {
    /// Devices the message was meant for, fixed when it is sent.
    Targeted,
    /// Written to a device's connection for the first time.
    Delivered,
    /// Received by the SDK and handed to the app.
    Acked,
    /// Opened by the user (reported by the app through the SDK).
    Opened,
    /// Clicked by the user (reported by the app through the SDK).
    Clicked,
    /// Its TTL passed before it reached the device.
    Expired,
    /// Could not be sent at all (e.g. refused by a platform gateway).
    Failed,
    /// Accepted by APNs for a device not connected (the platform path).
    DeliveredApns,
    /// Accepted by FCM for a device not connected.
    DeliveredFcm,
    /// Accepted by a browser's Web Push service for a device not connected.
    #[serde(rename = "delivered_webpush")]
    DeliveredWebPush,
}

impl Counter {
    /// Every counter, in a fixed order.
    pub const ALL: [Counter; 10] = [
        Counter::Targeted,
        Counter::Delivered,
        Counter::Acked,
        Counter::Opened,
        Counter::Clicked,
        Counter::Expired,
        Counter::Failed,
        Counter::DeliveredApns,
        Counter::DeliveredFcm,
        Counter::DeliveredWebPush,
    ];

    /// The counter's name in keys and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Targeted => "targeted",
            Counter::Delivered => "delivered",
            Counter::Acked => "acked",
            Counter::Opened => "opened",
            Counter::Clicked => "clicked",
            Counter::Expired => "expired",
            Counter::Failed => "failed",
            Counter::DeliveredApns => "delivered_apns",
            Counter::DeliveredFcm => "delivered_fcm",
            Counter::DeliveredWebPush => "delivered_webpush",
        }
    }
}

/// One increment: `by` more of `counter` for `subject` (a message id or a campaign id) in the
/// minute starting at `minute` (Unix seconds / 60).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatIncrement {
    pub app: AppId,
    pub subject: String,
    pub counter: Counter,
    pub minute: i64,
    pub by: u64,
}

/// The statistics of one subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsRecord {
    /// Counters that were never incremented are absent.
    pub totals: BTreeMap<Counter, u64>,
    /// Per minute (Unix seconds / 60), the counters incremented in it.
    pub per_minute: BTreeMap<i64, BTreeMap<Counter, u64>>,
}

/// Statistics, kept [`STATS_TTL_MS`] (90 days) after their last increment.
#[async_trait]
pub trait StatsStore: Send + Sync {
    /// Adds every increment (a batch is one pipelined round trip; increments to the same
    /// subject, counter and minute may repeat and add up).
    async fn add_stats(&self, increments: &[StatIncrement]) -> StoreResult<()>;

    /// The statistics of `subject` in `app` (empty if none).
    async fn read_stats(&self, app: AppId, subject: &str) -> StoreResult<StatsRecord>;
}

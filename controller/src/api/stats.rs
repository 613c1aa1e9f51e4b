//! Statistics as the API answers them.

use std::collections::BTreeMap;

use ringpush_store::{Counter, StatsRecord, now_ms};
use serde::{Deserialize, Serialize};

/// Totals of one message or campaign, and their per-minute series.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatsResponse {
    /// The message id or campaign id.
    pub subject: String,
    /// Every counter (0 when never counted), and `pending`.
    pub totals: BTreeMap<String, u64>,
    /// One entry per minute with any activity, oldest first.
    pub per_minute: Vec<MinuteStats>,
}

/// The counters of one minute.
#[derive(Debug, Serialize, Deserialize)]
pub struct MinuteStats {
    /// The minute's start, in milliseconds since the Unix epoch.
    pub minute_start_ms: i64,
    pub counters: BTreeMap<String, u64>,
}

/// Builds the answer: `pending` is targeted − delivered − expired − failed; once the message
/// has expired (`expires_at_ms` passed), what was still pending is counted as expired, so
/// targeted = delivered + pending + expired + failed always holds.
pub(crate) fn stats_of(
    subject: &str,
    record: StatsRecord,
    expires_at_ms: Option<i64>,
) -> StatsResponse {
    let get = |counter: Counter| record.totals.get(&counter).copied().unwrap_or(0);
    let targeted = get(Counter::Targeted);
    let delivered = get(Counter::Delivered).min(targeted);
    let failed = get(Counter::Failed).min(targeted - delivered);
    let mut expired = get(Counter::Expired).min(targeted - delivered - failed);
    let mut pending = targeted - delivered - failed - expired;
    if expires_at_ms.is_some_and(|at| at <= now_ms()) {
        expired += pending;
        pending = 0;
    }
    let mut totals: BTreeMap<String, u64> = Counter::ALL
        .iter()
        .map(|counter| (counter.name().to_owned(), get(*counter)))
        .collect();
    totals.insert("delivered".into(), delivered);
    totals.insert("failed".into(), failed);
    totals.insert("expired".into(), expired);
    totals.insert("pending".into(), pending);
    let per_minute = record
        .per_minute
        .into_iter()
        .map(|(minute, counters)| MinuteStats {
            minute_start_ms: minute * 60_000,
            counters: counters
                .into_iter()
                .map(|(counter, n)| (counter.name().to_owned(), n))
                .collect(),
        })
        .collect();
    StatsResponse {
        subject: subject.to_owned(),
        totals,
        per_minute,
    }
}

//! How a throttle is shared out over time and over connectors: the pace of a throttled
//! unicast send, and each connector's share of a throttled audience message.
//!
//! An audience message is paced by the connectors, each at the rate the controller gives
//! it. Splitting the rate evenly made the campaign as slow as its most loaded connector: with
//! three quarters of an audience on one of two connectors, that one paced at half the rate
//! for one and a half times as long while the other finished early, and the campaign ran at
//! two thirds of its rate. So each connector's share follows the part of the audience it
//! holds, estimated from the registry (the app's devices whose attributes match) and the
//! ring (the connector that owns each of them): `crate::audience_scan` counts it.

use std::time::{Duration, Instant};

/// How often a paced unicast send releases messages: small bursts, twenty a second
/// whatever the rate.
pub(super) const PACE_TICK: Duration = Duration::from_millis(50);

/// A paced send that fell behind (its queues were full, or its task did not run) drops the
/// debt beyond this much time's worth instead of catching up in a burst above the rate.
const PACE_MAX_DEBT: Duration = Duration::from_millis(250);

/// Counts what a paced send may release: by each instant, at most one plus `per_second` for
/// every second since the start, in total. Counting the total, not a fixed amount per tick,
/// keeps the rate exact whatever the rate and however late the ticks come (a fixed
/// `ceil(rate / 10)` every 100 ms sent 10 a second for a rate of 5, and 30 for 25).
#[derive(Debug)]
pub(super) struct Pace {
    per_second: f64,
    /// The instant the schedule counts from; moved forward when a debt is dropped.
    start: Instant,
    released: u64,
}

impl Pace {
    pub(super) fn new(per_second: u32, start: Instant) -> Self {
        Self {
            per_second: f64::from(per_second.max(1)),
            start,
            released: 0,
        }
    }

    /// How many to release at `now` (counted as released).
    pub(super) fn release(&mut self, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
        let due = 1 + (self.per_second * elapsed).floor() as u64;
        let mut ready = due.saturating_sub(self.released);
        let max_debt = ((self.per_second * PACE_MAX_DEBT.as_secs_f64()).ceil() as u64).max(1);
        if ready > max_debt {
            ready = max_debt;
            // Count the schedule again from what is released now.
            let counted = (self.released + ready - 1) as f64 / self.per_second;
            if let Some(start) = now.checked_sub(Duration::from_secs_f64(counted)) {
                self.start = start;
            }
        }
        self.released += ready;
        ready as usize
    }
}

/// Splits `rate` over connectors in proportion to `weights` (what each holds of the
/// audience): shares that add up to `rate` (largest remainders get the odd units), evenly
/// when no weight is known. Every share is at least 1, since 0 would mean unthrottled: a
/// connector the estimate missed still sends, slowly, and a rate below the number of
/// connectors is exceeded by at most one a second per connector.
pub(super) fn split_rate(rate: u32, weights: &[u64]) -> Vec<u32> {
    let total: u64 = weights.iter().sum();
    let weights: Vec<u64> = if total == 0 {
        vec![1; weights.len()]
    } else {
        weights.to_vec()
    };
    let total: u64 = weights.iter().sum();
    if total == 0 {
        return Vec::new();
    }
    let exact: Vec<u64> = weights.iter().map(|w| u64::from(rate) * w).collect();
    let mut shares: Vec<u64> = exact.iter().map(|e| e / total).collect();
    let mut left = u64::from(rate) - shares.iter().sum::<u64>();
    // Largest remainder first; ties to the earlier connector.
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(exact[index] % total));
    for index in order {
        if left == 0 {
            break;
        }
        shares[index] += 1;
        left -= 1;
    }
    shares
        .into_iter()
        .map(|share| u32::try_from(share).unwrap_or(u32::MAX).max(1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Releases at every `tick` for `seconds`; answers the total released.
    fn released_over(per_second: u32, tick: Duration, seconds: u64) -> u64 {
        let start = Instant::now();
        let mut pace = Pace::new(per_second, start);
        let ticks = Duration::from_secs(seconds).as_nanos() / tick.as_nanos();
        (0..=ticks as u32)
            .map(|n| pace.release(start + tick * n) as u64)
            .sum()
    }

    #[test]
    fn a_pace_keeps_any_rate_exactly() {
        for rate in [1, 5, 25, 55, 200, 1_000, 5_000, 12_345] {
            // One at the start, then `rate` a second.
            let released = released_over(rate, PACE_TICK, 10);
            assert_eq!(released, 1 + 10 * u64::from(rate), "{rate}/s");
        }
    }

    #[test]
    fn late_ticks_catch_up_within_the_debt() {
        // Ticks 120 ms apart instead of 50: still the rate.
        assert_eq!(released_over(1_000, Duration::from_millis(120), 6), 6_001);
    }

    #[test]
    fn a_long_stall_is_not_sent_as_one_burst() {
        let start = Instant::now();
        let mut pace = Pace::new(1_000, start);
        assert_eq!(pace.release(start), 1);
        // Two seconds without a turn: a quarter of a second's worth, not two seconds'.
        assert_eq!(pace.release(start + Duration::from_secs(2)), 250);
        // Then the rate again, from there.
        assert_eq!(pace.release(start + Duration::from_millis(2_100)), 100);
    }

    #[test]
    fn shares_follow_the_weights_and_add_up_to_the_rate() {
        assert_eq!(split_rate(1_000, &[3, 1]), vec![750, 250]);
        assert_eq!(split_rate(1_000, &[1, 1, 1]), vec![334, 333, 333]);
        assert_eq!(split_rate(5, &[2, 1]), vec![3, 2]);
        assert_eq!(split_rate(200, &[0, 0]), vec![100, 100]);
        // A connector the estimate gives nothing still gets one a second (0 is unthrottled).
        assert_eq!(split_rate(200, &[7, 0]), vec![200, 1]);
        assert_eq!(split_rate(2, &[1, 1, 1]), vec![1, 1, 1]);
        assert!(split_rate(7, &[]).is_empty());
    }
}

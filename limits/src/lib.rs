//! Rate limits as token buckets, one per key (a client address, an app), in a map of bounded
//! size: what the connector uses to bound new connections per address and the controller
//! to bound sends per app.
//!
//! A bucket holds up to `burst` tokens and gains `per_second` of them each second; a request
//! of cost `n` takes `n` tokens or is refused, and then learns how long until it would fit.
//! Time is passed in (an `Instant`), so the owner decides the clock and tests need no sleep.
//!
//! Does not own: locking (the owner holds the map: one task, or a mutex held for one call),
//! what a refusal does (an HTTP 429, a closed socket), sharing counts across processes (each
//! process limits on its own; N processes allow N times the rate).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A rate: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// Keys tracked by default before idle buckets are forgotten.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Token buckets by key.
#[derive(Debug)]
pub struct TokenBuckets<K> {
    rate: Rate,
    max_keys: usize,
    /// Key → (tokens, when they were counted).
    buckets: HashMap<K, (f64, Instant)>,
}

impl<K: Hash + Eq + Clone> TokenBuckets<K> {
    /// Buckets of `rate`, tracking at most [`DEFAULT_MAX_KEYS`] keys.
    pub fn new(rate: Rate) -> Self {
        Self::with_max_keys(rate, DEFAULT_MAX_KEYS)
    }

    /// Buckets of `rate`, tracking at most `max_keys` keys: when full, the keys whose buckets
    /// have filled up again are forgotten (a new bucket starts full, so nothing changes for
    /// them); if none has, the map is emptied, which lets every key through once more rather
    /// than refusing keys it cannot track.
    pub fn with_max_keys(rate: Rate, max_keys: usize) -> Self {
        assert!(
            rate.per_second > 0.0 && rate.burst >= 1.0,
            "a rate must let something through"
        );
        Self {
            rate,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// The rate these buckets enforce.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes `cost` tokens from `key`'s bucket at `now`; `Err(wait)` if there are too few
    /// (nothing is taken), `wait` being how long until there would be enough. A cost above
    /// the burst counts as the burst: it passes only with a full bucket, and empties it.
    pub fn take(&mut self, key: &K, cost: f64, now: Instant) -> Result<(), Duration> {
        let cost = cost.min(self.rate.burst);
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            self.forget_full(now);
        }
        let rate = self.rate;
        let (tokens, counted) = self.buckets.entry(key.clone()).or_insert((rate.burst, now));
        let elapsed = now.saturating_duration_since(*counted).as_secs_f64();
        *tokens = (*tokens + elapsed * rate.per_second).min(rate.burst);
        *counted = now;
        if *tokens >= cost {
            *tokens -= cost;
            return Ok(());
        }
        Err(Duration::from_secs_f64((cost - *tokens) / rate.per_second))
    }

    fn forget_full(&mut self, now: Instant) {
        let rate = self.rate;
        self.buckets.retain(|_, (tokens, counted)| {
            let elapsed = now.saturating_duration_since(*counted).as_secs_f64();
            *tokens + elapsed * rate.per_second < rate.burst
        });
        if self.buckets.len() >= self.max_keys {
            self.buckets.clear();
        }
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        per_second: 10.0,
        burst: 5.0,
    };

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let mut buckets = TokenBuckets::new(RATE);
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(buckets.take(&"a", 1.0, start), Ok(()));
        }
        let wait = buckets.take(&"a", 1.0, start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 0.01, "{wait:?}");
        // Another key has its own bucket.
        assert_eq!(buckets.take(&"b", 1.0, start), Ok(()));
        // A tenth of a second later, one more token.
        let later = start + Duration::from_millis(100);
        assert_eq!(buckets.take(&"a", 1.0, later), Ok(()));
        assert!(buckets.take(&"a", 1.0, later).is_err());
        // A long pause refills to the burst, never beyond.
        let much_later = later + Duration::from_secs(60);
        assert_eq!(buckets.take(&"a", 5.0, much_later), Ok(()));
        assert!(buckets.take(&"a", 1.0, much_later).is_err());
    }

    #[test]
    fn a_refused_request_takes_nothing_and_costs_are_weighed() {
        let mut buckets = TokenBuckets::new(RATE);
        let now = Instant::now();
        assert_eq!(buckets.take(&1, 3.0, now), Ok(()));
        let wait = buckets.take(&1, 3.0, now).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 0.01, "{wait:?}");
        assert_eq!(
            buckets.take(&1, 2.0, now),
            Ok(()),
            "the refusal took nothing"
        );
        // More than the burst passes with a full bucket only, and empties it.
        assert_eq!(buckets.take(&2, 50.0, now), Ok(()));
        let wait = buckets.take(&2, 50.0, now).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
    }

    #[test]
    fn the_map_stays_bounded_and_forgets_only_idle_keys() {
        let mut buckets = TokenBuckets::with_max_keys(RATE, 3);
        let now = Instant::now();
        for key in 0..3 {
            buckets.take(&key, 5.0, now).unwrap();
        }
        // All three are empty: tracking a fourth empties the map (failing open).
        buckets.take(&3, 1.0, now).unwrap();
        assert_eq!(buckets.len(), 1);
        // Once the old buckets have refilled, they are what is forgotten.
        buckets.take(&4, 5.0, now).unwrap();
        buckets.take(&5, 1.0, now).unwrap();
        let later = now + Duration::from_millis(450);
        buckets.take(&6, 1.0, later).unwrap();
        assert!(
            buckets.take(&4, 1.0, later).is_ok(),
            "4 refilled 4.5 tokens"
        );
        assert!(buckets.len() <= 3);
    }
}

//! How long to wait before the next connection attempt: exponential backoff with full jitter.
//!
//! Attempt n waits a uniformly random time in `[0, min(max, initial * 2^n)]`. Full jitter (as
//! opposed to a fixed or "equal" jitter) spreads the reconnections of many devices that lost
//! the same connector at once over the whole window, so that they do not come back in waves.

use std::time::Duration;

use rand::Rng;

/// The bounds of the reconnection backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The ceiling of the first wait.
    pub initial: Duration,
    /// The largest ceiling any wait can have.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
}

/// The backoff state of one client: how many attempts in a row have failed.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    config: BackoffConfig,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            failures: 0,
        }
    }

    /// The ceiling of the next wait: `initial * 2^failures`, capped at `max`.
    pub(crate) fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures).unwrap_or(u32::MAX);
        self.config
            .initial
            .saturating_mul(factor)
            .min(self.config.max)
    }

    /// The next wait, drawn from `rng`, and one more failure counted.
    pub(crate) fn next_delay_with(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let ceiling_micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rng.random_range(0..=ceiling_micros))
    }

    /// The next wait, drawn from the thread's random generator.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.next_delay_with(&mut rand::rng())
    }

    /// Starts over from `initial`: the last connection worked.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn the_ceiling_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
        });
        let mut rng = StdRng::seed_from_u64(1);
        let mut ceilings = Vec::new();
        for _ in 0..12 {
            ceilings.push(backoff.ceiling());
            backoff.next_delay_with(&mut rng);
        }
        let millis: Vec<u128> = ceilings.iter().map(Duration::as_millis).collect();
        assert_eq!(
            millis,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
            ]
        );
        for _ in 0..100 {
            backoff.next_delay_with(&mut rng);
        }
        assert_eq!(backoff.ceiling(), Duration::from_secs(30), "no overflow");
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn every_delay_lies_within_the_ceiling_and_spreads_over_it() {
        let config = BackoffConfig {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(80),
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut longest = Duration::ZERO;
        let mut shortest = Duration::MAX;
        for _ in 0..500 {
            let mut backoff = Backoff::new(config);
            for _ in 0..6 {
                let ceiling = backoff.ceiling();
                let delay = backoff.next_delay_with(&mut rng);
                assert!(delay <= ceiling, "{delay:?} above {ceiling:?}");
                assert!(delay <= config.max);
                if ceiling == config.max {
                    longest = longest.max(delay);
                    shortest = shortest.min(delay);
                }
            }
        }
        // Full jitter: capped waits cover nearly the whole window, from near zero to the cap.
        assert!(longest > Duration::from_millis(70), "{longest:?}");
        assert!(shortest < Duration::from_millis(10), "{shortest:?}");
    }
}

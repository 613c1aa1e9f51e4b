//! Where the controller reads campaign time: the system clock, or a simulated clock that runs
//! from an anchor at a chosen rate (a testing and demo aid: a day of campaigns in minutes).
//!
//! Campaign time is what schedules are read against: when a firing is due, the look-back
//! window, a campaign's `created_at_ms`. Everything else stays on the real clock: message
//! TTLs, statistics minutes, and the leases of firing claims ([`Clock::lease_now_ms`]), which
//! must keep their real length however fast campaign time runs.
//!
//! A simulated clock is a pure function of the real clock,
//! `sim_now = sim_anchor_ms + (real_now_ms - real_anchor_ms) * rate`, so controllers given the
//! same three numbers agree on campaign time without talking to each other, and a test can
//! turn the real time it observes something at into the controllers' campaign time.

use std::fmt;
use std::str::FromStr;

/// Where the scheduler and the campaign API read the time (milliseconds since the Unix epoch).
pub trait Clock: Send + Sync {
    /// Campaign time: schedules, firings and campaign creation are read against it.
    fn now_ms(&self) -> i64;

    /// The time claims' leases are judged by. It must move like the real clock for every
    /// clock controllers run on, so that a lease means the same span to all of them and a
    /// dead controller's claims lapse after their real length; a clock that tests move by
    /// hand moves both together (the default).
    fn lease_now_ms(&self) -> i64 {
        self.now_ms()
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        ringpush_store::now_ms()
    }
}

/// The fastest a simulated clock may run: 100 000 times real time (a day in under a second).
pub const MAX_SIMULATED_RATE: f64 = 100_000.0;

/// Why a simulated clock cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClockError {
    #[error(
        "simulated clock {0:?}: expected REAL_ANCHOR_MS:SIM_ANCHOR_MS:RATE, e.g. 1795391700000:1795392000000:60"
    )]
    Format(String),
    #[error(
        "simulated clock anchors must be non-negative milliseconds since the Unix epoch, got {0}"
    )]
    NegativeAnchor(i64),
    #[error("simulated clock rate must be above 0 and at most {MAX_SIMULATED_RATE}, got {0}")]
    Rate(f64),
}

/// Campaign time that reads `sim_anchor_ms` when the real clock reads `real_anchor_ms`, and
/// runs `rate` times as fast as the real clock (before the real anchor too). Leases stay on
/// the real clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulatedClock {
    real_anchor_ms: i64,
    sim_anchor_ms: i64,
    rate: f64,
}

impl SimulatedClock {
    pub fn new(real_anchor_ms: i64, sim_anchor_ms: i64, rate: f64) -> Result<Self, ClockError> {
        for anchor in [real_anchor_ms, sim_anchor_ms] {
            if anchor < 0 {
                return Err(ClockError::NegativeAnchor(anchor));
            }
        }
        // Written so that NaN fails too.
        if !(rate > 0.0 && rate <= MAX_SIMULATED_RATE) {
            return Err(ClockError::Rate(rate));
        }
        Ok(Self {
            real_anchor_ms,
            sim_anchor_ms,
            rate,
        })
    }

    pub fn real_anchor_ms(&self) -> i64 {
        self.real_anchor_ms
    }

    pub fn sim_anchor_ms(&self) -> i64 {
        self.sim_anchor_ms
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The campaign time when the real clock reads `real_ms`. Exact for whole rates (every
    /// controller computes the same millisecond); saturates at the ends of `i64`.
    pub fn sim_at(&self, real_ms: i64) -> i64 {
        let elapsed = i128::from(real_ms) - i128::from(self.real_anchor_ms);
        let scaled = if self.rate.fract() == 0.0 {
            elapsed * self.rate as i128
        } else {
            (elapsed as f64 * self.rate).round() as i128
        };
        let sim = i128::from(self.sim_anchor_ms) + scaled;
        sim.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// The first real millisecond at which campaign time has reached `sim_ms`.
    pub fn real_at(&self, sim_ms: i64) -> i64 {
        let mut real = self.real_anchor_ms
            + ((sim_ms as f64 - self.sim_anchor_ms as f64) / self.rate).floor() as i64;
        // Float rounding may land a millisecond off either way: settle on the first one.
        while self.sim_at(real) < sim_ms {
            real += 1;
        }
        while self.sim_at(real - 1) >= sim_ms {
            real -= 1;
        }
        real
    }
}

impl Clock for SimulatedClock {
    fn now_ms(&self) -> i64 {
        self.sim_at(ringpush_store::now_ms())
    }

    fn lease_now_ms(&self) -> i64 {
        ringpush_store::now_ms()
    }
}

/// `REAL_ANCHOR_MS:SIM_ANCHOR_MS:RATE`, e.g. `1795391700000:1795392000000:60`.
impl FromStr for SimulatedClock {
    type Err = ClockError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let format = || ClockError::Format(text.chars().take(100).collect());
        let mut parts = text.trim().split(':');
        let (Some(real), Some(sim), Some(rate), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format());
        };
        let real_anchor_ms: i64 = real.trim().parse().map_err(|_| format())?;
        let sim_anchor_ms: i64 = sim.trim().parse().map_err(|_| format())?;
        let rate: f64 = rate.trim().parse().map_err(|_| format())?;
        Self::new(real_anchor_ms, sim_anchor_ms, rate)
    }
}

impl fmt::Display for SimulatedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.real_anchor_ms, self.sim_anchor_ms, self.rate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOV_23: i64 = 1_795_392_000_000;

    #[test]
    fn runs_from_its_anchor_at_its_rate_before_and_after_it() {
        let clock = SimulatedClock::new(1_000_000, NOV_23, 60.0).unwrap();
        assert_eq!(clock.sim_at(1_000_000), NOV_23);
        assert_eq!(clock.sim_at(1_001_000), NOV_23 + 60_000, "a real second");
        assert_eq!(clock.sim_at(999_000), NOV_23 - 60_000, "before the anchor");
        let slow = SimulatedClock::new(0, NOV_23, 0.5).unwrap();
        assert_eq!(slow.sim_at(3), NOV_23 + 2, "1.5 rounds to 2");
        assert_eq!(slow.sim_at(1_000), NOV_23 + 500);
    }

    #[test]
    fn two_clocks_with_the_same_numbers_agree_and_real_at_inverts_sim_at() {
        let text = "1795391700000:1795392000000:1234.5";
        let a: SimulatedClock = text.parse().unwrap();
        let b: SimulatedClock = text.parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), text);
        for real in [0, 1_795_391_700_000, 1_795_391_700_001, 1_795_400_000_123] {
            assert_eq!(a.sim_at(real), b.sim_at(real));
        }
        for sim in [NOV_23, NOV_23 + 1, NOV_23 + 3_600_000 + 7, NOV_23 - 99_999] {
            let real = a.real_at(sim);
            assert!(a.sim_at(real) >= sim, "{sim}");
            assert!(
                a.sim_at(real - 1) < sim,
                "{sim}: the first such millisecond"
            );
        }
    }

    #[test]
    fn reads_now_from_the_real_clock_and_keeps_leases_real() {
        let real_now = ringpush_store::now_ms();
        let clock = SimulatedClock::new(real_now, NOV_23, 1000.0).unwrap();
        let sim_now = clock.now_ms();
        // A generous bound (a slow machine may take seconds between the two reads), not speed.
        assert!(
            (NOV_23..NOV_23 + 60 * 60_000).contains(&sim_now),
            "{sim_now}"
        );
        let lease_now = clock.lease_now_ms();
        assert!((real_now..real_now + 60_000).contains(&lease_now));
    }

    #[test]
    fn refuses_what_cannot_be_a_clock() {
        let parse = |text: &str| text.parse::<SimulatedClock>();
        assert!(matches!(parse("1:2"), Err(ClockError::Format(_))));
        assert!(matches!(parse("1:2:3:4"), Err(ClockError::Format(_))));
        assert!(matches!(parse("a:2:3"), Err(ClockError::Format(_))));
        assert!(matches!(parse(""), Err(ClockError::Format(_))));
        assert_eq!(parse("-1:2:3"), Err(ClockError::NegativeAnchor(-1)));
        assert_eq!(parse("1:-2:3"), Err(ClockError::NegativeAnchor(-2)));
        assert_eq!(parse("1:2:0"), Err(ClockError::Rate(0.0)));
        assert_eq!(parse("1:2:-5"), Err(ClockError::Rate(-5.0)));
        assert_eq!(parse("1:2:100001"), Err(ClockError::Rate(100_001.0)));
        assert!(matches!(parse("1:2:NaN"), Err(ClockError::Rate(_))));
        assert!(matches!(parse("1:2:inf"), Err(ClockError::Rate(_))));
        assert!(parse(" 1:2:100000 ").is_ok());
        let error = parse("1:2:0").unwrap_err().to_string();
        assert!(error.contains("rate"), "{error}");
    }
}

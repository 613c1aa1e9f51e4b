//! Figures from the instants at which deliveries arrived: the achieved rate over the steady
//! part of a run, one-second window counts, and lateness against the ideal schedule.
//!
//! Pure functions on instants, so that they are tested without a deployment.

use std::time::{Duration, Instant};

/// Share of the deliveries left out at each end of a run when the steady rate is computed.
///
/// Why: a paced send starts with a burst released at once (the pacer's first tick) and each
/// connector starts pacing when its own Broadcast call arrives, and at the end the last
/// burst lands at once; over a few seconds these edges move the rate by several percent in
/// either direction although the pacing between them is right. Five percent at each end
/// removes them and keeps nine tenths of the run, so that a connector that finishes early or
/// a pacer that drifts still shows.
pub const EDGE_SHARE: f64 = 0.05;

/// Three points of a distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub low: f64,
    pub p50: f64,
    pub high: f64,
}

/// What one paced run achieved, as the devices saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Achieved {
    /// Deliveries measured (all of them, edges included).
    pub deliveries: usize,
    /// First to last delivery.
    pub span: Duration,
    /// Deliveries per second between the first and the last delivery of the steady part.
    pub steady_rate: f64,
    /// Deliveries in each whole one-second window of the steady part (min, p50, max); `None`
    /// when the steady part is shorter than a second.
    pub per_second: Option<Spread>,
    /// Milliseconds each delivery came after its slot in the ideal schedule (the first
    /// delivery, then one every 1/rate s), as p50, p99 and p999; negative is early.
    pub lateness_ms: Percentiles,
}

/// p50, p99 and p999 of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

/// Measures a run paced at `set_rate` a second from its arrival instants (any order).
/// `None` with fewer than 20 deliveries: too few to say anything.
pub fn achieved(arrivals: &[Instant], set_rate: f64) -> Option<Achieved> {
    if arrivals.len() < 20 || set_rate <= 0.0 {
        return None;
    }
    let mut sorted = arrivals.to_vec();
    sorted.sort_unstable();
    let first = sorted[0];
    let offsets: Vec<f64> = sorted
        .iter()
        .map(|at| at.duration_since(first).as_secs_f64())
        .collect();
    let edge = (offsets.len() as f64 * EDGE_SHARE).floor() as usize;
    let steady = &offsets[edge..offsets.len() - edge];
    let steady_span = steady[steady.len() - 1] - steady[0];
    let steady_rate = if steady_span > 0.0 {
        (steady.len() - 1) as f64 / steady_span
    } else {
        f64::INFINITY
    };
    let lateness: Vec<f64> = offsets
        .iter()
        .enumerate()
        .map(|(index, offset)| (offset - index as f64 / set_rate) * 1000.0)
        .collect();
    Some(Achieved {
        deliveries: offsets.len(),
        span: sorted[sorted.len() - 1].duration_since(first),
        steady_rate,
        per_second: window_counts(steady).map(|counts| spread(&counts)),
        lateness_ms: percentiles(&lateness),
    })
}

/// Counts in each whole one-second window from the first offset (seconds, sorted).
fn window_counts(offsets: &[f64]) -> Option<Vec<f64>> {
    let start = *offsets.first()?;
    let whole_windows = (offsets[offsets.len() - 1] - start).floor() as usize;
    if whole_windows == 0 {
        return None;
    }
    let mut counts = vec![0.0; whole_windows];
    for offset in offsets {
        let window = (offset - start).floor() as usize;
        if let Some(count) = counts.get_mut(window) {
            *count += 1.0;
        }
    }
    Some(counts)
}

fn spread(values: &[f64]) -> Spread {
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    Spread {
        low: sorted[0],
        p50: quantile(&sorted, 0.5),
        high: sorted[sorted.len() - 1],
    }
}

/// p50, p99, p999 of a non-empty sample (nearest rank).
pub fn percentiles(values: &[f64]) -> Percentiles {
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    Percentiles {
        p50: quantile(&sorted, 0.5),
        p99: quantile(&sorted, 0.99),
        p999: quantile(&sorted, 0.999),
    }
}

/// The nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Whether `achieved` is within `tolerance` (0.10 for 10%) of `set`.
pub fn within(achieved: f64, set: f64, tolerance: f64) -> bool {
    (achieved / set - 1.0).abs() <= tolerance
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` instants spaced by `gap`, starting at `start`.
    fn evenly(start: Instant, count: usize, gap: Duration) -> Vec<Instant> {
        (0..count).map(|i| start + gap * i as u32).collect()
    }

    #[test]
    fn an_even_run_achieves_its_rate_with_no_lateness() {
        let arrivals = evenly(Instant::now(), 1000, Duration::from_millis(5));
        let run = achieved(&arrivals, 200.0).unwrap();
        assert_eq!(run.deliveries, 1000);
        assert!(
            (run.steady_rate - 200.0).abs() < 0.01,
            "{}",
            run.steady_rate
        );
        let windows = run.per_second.unwrap();
        assert_eq!((windows.low, windows.high), (200.0, 200.0));
        assert!(run.lateness_ms.p999.abs() < 0.01);
    }

    #[test]
    fn bursts_at_the_edges_do_not_count() {
        let start = Instant::now();
        // 40 at once, 920 at 100/s, 40 at once: the whole span says 1000/9.19 s ≈ 109/s.
        let mut arrivals = vec![start; 40];
        arrivals.extend(evenly(start, 920, Duration::from_millis(10)));
        arrivals.extend(vec![start + Duration::from_millis(9190); 40]);
        let run = achieved(&arrivals, 100.0).unwrap();
        assert!((run.steady_rate - 100.0).abs() < 0.5, "{}", run.steady_rate);
    }

    #[test]
    fn a_half_rate_tail_shows_in_the_rate_and_the_windows() {
        // Two pacers at 100/s each; one finishes after 4 s, the other after 6 s.
        let start = Instant::now();
        let mut arrivals = evenly(start, 400, Duration::from_millis(10));
        arrivals.extend(evenly(
            start + Duration::from_millis(5),
            600,
            Duration::from_millis(10),
        ));
        let run = achieved(&arrivals, 200.0).unwrap();
        assert!(!within(run.steady_rate, 200.0, 0.10), "{}", run.steady_rate);
        let windows = run.per_second.unwrap();
        assert_eq!(windows.low, 100.0);
        assert_eq!(windows.high, 200.0);
        // The slow tail puts the last deliveries a second behind the schedule.
        assert!(run.lateness_ms.p999 > 900.0, "{:?}", run.lateness_ms);
    }

    #[test]
    fn a_short_run_has_no_whole_window() {
        let arrivals = evenly(Instant::now(), 100, Duration::from_millis(5));
        let run = achieved(&arrivals, 200.0).unwrap();
        assert_eq!(run.per_second, None);
        assert!(achieved(&arrivals[..10], 200.0).is_none());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=1000).map(f64::from).collect();
        let p = percentiles(&values);
        assert_eq!((p.p50, p.p99, p.p999), (500.0, 990.0, 999.0));
        assert!(within(109.0, 100.0, 0.10));
        assert!(!within(111.0, 100.0, 0.10));
        assert!(within(91.0, 100.0, 0.10));
    }
}

//! `ringpush-bench ring`: how evenly the ring spreads devices, and how many move when a
//! connector joins or leaves.
//!
//! Pure computation on [`ringpush_ring::Ring`] built exactly as the dispatcher builds it
//! (members `c0`, `c1`…, [`ringpush_ring::DEFAULT_VNODES`] points each), over device ids
//! drawn from a fixed seed so that every run places the same devices. For each ring size N:
//! the busiest connector's count over the mean (max/mean) and the standard deviation of the
//! counts; on a join (N+1 members) the share of devices that changed owner against the ideal
//! 1/(N+1); on a leave (the last member removed) the share moved against the ideal 1/N (only
//! the leaving member's devices, whatever their number).
//!
//! Does not own: the placement rule (`ringpush_ring`).

use std::fmt::Write as _;

use ringpush_protocol::DeviceId;
use ringpush_ring::{DEFAULT_VNODES, Member, Ring};

/// Target: the busiest connector holds at most this much over the mean.
pub const MAX_OVER_MEAN: f64 = 1.05;
/// Target: the share moved on a join is within this fraction of the ideal 1/(N+1).
pub const MOVE_TOLERANCE: f64 = 0.10;

/// What the ring benchmark computes.
#[derive(Debug, Clone)]
pub struct RingOptions {
    /// Ring sizes.
    pub sizes: Vec<usize>,
    /// Devices placed.
    pub devices: usize,
    /// Points per member.
    pub vnodes: u32,
}

impl RingOptions {
    /// Small: checks that it runs.
    pub fn quick() -> Self {
        Self {
            sizes: vec![3, 10],
            devices: 20_000,
            vnodes: DEFAULT_VNODES,
        }
    }
}

impl Default for RingOptions {
    fn default() -> Self {
        Self {
            sizes: vec![3, 5, 10, 20, 50, 100],
            devices: 1_000_000,
            vnodes: DEFAULT_VNODES,
        }
    }
}

/// The figures of one ring size.
#[derive(Debug, Clone, PartialEq)]
pub struct RingRow {
    pub members: usize,
    pub max_over_mean: f64,
    /// Standard deviation of the per-member counts, as a share of the mean.
    pub stddev_share: f64,
    /// Share of devices whose owner changed when member N+1 joined.
    pub moved_on_join: f64,
    /// Share of devices whose owner changed when the last member left.
    pub moved_on_leave: f64,
    /// Whether every moved device went to the joining member, and on a leave came only
    /// from the leaving one (consistent hashing's promise).
    pub only_necessary_moves: bool,
}

impl RingRow {
    pub fn ideal_join(&self) -> f64 {
        1.0 / (self.members + 1) as f64
    }

    pub fn ideal_leave(&self) -> f64 {
        1.0 / self.members as f64
    }

    pub fn spread_within(&self) -> bool {
        self.max_over_mean <= MAX_OVER_MEAN
    }

    pub fn join_within(&self) -> bool {
        (self.moved_on_join / self.ideal_join() - 1.0).abs() <= MOVE_TOLERANCE
    }

    pub fn within(&self) -> bool {
        self.spread_within() && self.join_within() && self.only_necessary_moves
    }
}

/// `count` device ids from a fixed seed (splitmix64), the same on every run.
pub fn device_ids(count: usize) -> Vec<DeviceId> {
    let mut state: u64 = 0x005e_ed0f_714e_0000;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..count)
        .map(|_| DeviceId((u128::from(next()) << 64) | u128::from(next())))
        .collect()
}

/// Members `c0`…`c{count-1}`, as the harness names its connectors.
pub fn members(count: usize) -> Vec<Member> {
    (0..count)
        .map(|index| Member {
            id: format!("c{index}"),
            device_url: format!("ws://127.0.0.1:{}/v1/connect", 20_000 + index),
            grpc_url: format!("http://127.0.0.1:{}", 30_000 + index),
        })
        .collect()
}

/// Each device's owner, as an index into `members` (sorted by id, as the ring sorts them).
fn owners(ring: &Ring, devices: &[DeviceId]) -> Vec<u32> {
    let index_of: std::collections::HashMap<&str, u32> = ring
        .members()
        .iter()
        .enumerate()
        .map(|(index, member)| (member.id.as_str(), index as u32))
        .collect();
    devices
        .iter()
        .map(|device| {
            let owner = ring.owner(*device).expect("the ring has members");
            index_of[owner.id.as_str()]
        })
        .collect()
}

/// Computes one row: `size` members, then a join and a leave.
pub fn measure(size: usize, devices: &[DeviceId], vnodes: u32) -> RingRow {
    let all = members(size + 1);
    let base = Ring::new(all[..size].to_vec(), vnodes);
    let joined = Ring::new(all.clone(), vnodes);
    let left = Ring::new(all[..size - 1].to_vec(), vnodes);
    let id_of = |ring: &Ring, index: u32| ring.members()[index as usize].id.clone();
    let before = owners(&base, devices);
    let mut counts = vec![0usize; size];
    for owner in &before {
        counts[*owner as usize] += 1;
    }
    let mean = devices.len() as f64 / size as f64;
    let max = *counts.iter().max().unwrap_or(&0) as f64;
    let variance = counts
        .iter()
        .map(|count| (*count as f64 - mean).powi(2))
        .sum::<f64>()
        / size as f64;
    let joiner = format!("c{size}");
    let leaver = format!("c{}", size - 1);
    let mut only_necessary_moves = true;
    let mut moved_join = 0usize;
    for (old, new) in before.iter().zip(owners(&joined, devices)) {
        let (old, new) = (id_of(&base, *old), id_of(&joined, new));
        if old != new {
            moved_join += 1;
            only_necessary_moves &= new == joiner;
        }
    }
    let mut moved_leave = 0usize;
    for (old, new) in before.iter().zip(owners(&left, devices)) {
        let (old, new) = (id_of(&base, *old), id_of(&left, new));
        if old != new {
            moved_leave += 1;
            only_necessary_moves &= old == leaver;
        }
    }
    RingRow {
        members: size,
        max_over_mean: max / mean,
        stddev_share: variance.sqrt() / mean,
        moved_on_join: moved_join as f64 / devices.len() as f64,
        moved_on_leave: moved_leave as f64 / devices.len() as f64,
        only_necessary_moves,
    }
}

/// Runs every size.
pub fn run(options: &RingOptions) -> Vec<RingRow> {
    let devices = device_ids(options.devices);
    options
        .sizes
        .iter()
        .filter(|size| **size >= 2)
        .map(|size| measure(*size, &devices, options.vnodes))
        .collect()
}

const HEADER: &str = "members  max/mean  stddev  join_moved  join_ideal  join/ideal  \
                      leave_moved  leave_ideal  only_needed  verdict";

/// The table of every row.
pub fn table(rows: &[RingRow], options: &RingOptions) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ring: {} devices (fixed seed), {} virtual nodes per member; join adds member N+1, \
         leave removes the last; targets: max/mean <= {MAX_OVER_MEAN}, join moves within \
         {:.0}% of 1/(N+1), and nothing moves but to the joiner or from the leaver",
        options.devices,
        options.vnodes,
        MOVE_TOLERANCE * 100.0
    );
    let _ = writeln!(out, "{HEADER}");
    for row in rows {
        let verdict = match (
            row.spread_within(),
            row.join_within(),
            row.only_necessary_moves,
        ) {
            (true, true, true) => "within",
            (false, _, _) => "SPREAD",
            (_, false, _) => "MOVES",
            (_, _, false) => "EXTRA MOVES",
        };
        let _ = writeln!(
            out,
            "{:>7} {:>9.3} {:>6.1}% {:>10.2}% {:>10.2}% {:>11.3} {:>11.2}% {:>11.2}% {:>12} {verdict}",
            row.members,
            row.max_over_mean,
            row.stddev_share * 100.0,
            row.moved_on_join * 100.0,
            row.ideal_join() * 100.0,
            row.moved_on_join / row.ideal_join(),
            row.moved_on_leave * 100.0,
            row.ideal_leave() * 100.0,
            if row.only_necessary_moves {
                "yes"
            } else {
                "no"
            },
        );
    }
    let missed = rows.iter().filter(|row| !row.within()).count();
    let _ = writeln!(
        out,
        "{} of {} ring sizes within the targets",
        rows.len() - missed,
        rows.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_same_on_every_run_and_distinct() {
        let a = device_ids(1000);
        assert_eq!(a, device_ids(1000));
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), 1000);
    }

    #[test]
    fn a_join_moves_devices_only_to_the_joiner() {
        let row = measure(3, &device_ids(5000), 64);
        assert!(row.only_necessary_moves);
        assert!(row.moved_on_join > 0.0 && row.moved_on_join < 0.5);
        assert!(row.max_over_mean >= 1.0);
    }
}

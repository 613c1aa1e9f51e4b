//! `ringpush-bench throttle`: does a throttled campaign keep within 10% of its set rate?
//!
//! Starts a platform (Redis, a controller, a dispatcher, two connectors, each a real
//! process), holds a fleet of simulated devices online over both connectors, and runs
//! throttled campaigns at each set rate, for two kinds of target:
//! - `audience`: a segment (`attr.slot < k`, the first k devices), paced by the connectors,
//!   each at its share of the rate;
//! - `unicast`: a `device_ids` list, paced by the controller's token bucket;
//! - `skewed`: an audience three quarters of which is on the first connector, as a small
//!   audience or an unbalanced ring can be: each connector's share of the rate must follow
//!   what it holds, not the number of connectors.
//!
//! Each run sends `rate × seconds` deliveries (an audience run at most one per device, so a
//! fast one can be shorter) and measures them where they land: the arrival instant of each
//! push at its device. The table gives the achieved rate over the steady part (see
//! [`measure::EDGE_SHARE`]), the ratio achieved/set, the one-second window counts, the
//! lateness against the ideal schedule and the delay before the first delivery, and a
//! verdict per row.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ringpush_harness::{Platform, PlatformOptions};
use serde_json::{Value, json};

use crate::fleet::{Fleet, SLOT_ATTRIBUTE};
use crate::measure::{self, Achieved};

/// How far the achieved rate may stray from the set one.
pub const TOLERANCE: f64 = 0.10;

/// What the throttle benchmark runs.
#[derive(Debug, Clone)]
pub struct ThrottleOptions {
    /// Simulated devices held online (over two connectors).
    pub devices: usize,
    /// Set rates, deliveries per second.
    pub rates: Vec<u32>,
    /// How long each run should last at its rate.
    pub seconds: f64,
    /// Times each configuration runs.
    pub rounds: usize,
}

impl ThrottleOptions {
    /// Small and short: checks that the benchmark runs, not what it measures.
    pub fn quick() -> Self {
        Self {
            devices: 400,
            rates: vec![100, 400],
            seconds: 1.5,
            rounds: 1,
        }
    }
}

impl Default for ThrottleOptions {
    fn default() -> Self {
        Self {
            devices: 16_000,
            rates: vec![200, 1_000, 5_000],
            seconds: 5.0,
            rounds: 2,
        }
    }
}

/// The two ways a campaign is paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Audience,
    Unicast,
    Skewed,
}

impl TargetKind {
    fn name(self) -> &'static str {
        match self {
            TargetKind::Audience => "audience",
            TargetKind::Unicast => "unicast",
            TargetKind::Skewed => "skewed",
        }
    }
}

/// Share of a skewed audience on the first connector.
const SKEW: f64 = 0.75;

/// One measured run.
#[derive(Debug, Clone)]
pub struct Row {
    pub target: TargetKind,
    pub set_rate: u32,
    pub round: usize,
    /// Deliveries the campaign was to make.
    pub expected: usize,
    /// First delivery after the campaign was created (the scheduler's tick included).
    pub start_delay: Duration,
    pub achieved: Achieved,
}

impl Row {
    pub fn ratio(&self) -> f64 {
        self.achieved.steady_rate / f64::from(self.set_rate)
    }

    /// Within the tolerance, and every expected delivery arrived.
    pub fn within(&self) -> bool {
        self.achieved.deliveries == self.expected
            && measure::within(
                self.achieved.steady_rate,
                f64::from(self.set_rate),
                TOLERANCE,
            )
    }
}

/// Runs the benchmark; answers the rows in the order they ran.
pub async fn run(options: &ThrottleOptions) -> anyhow::Result<Vec<Row>> {
    if options.devices < 20 || options.rates.is_empty() || options.seconds <= 0.0 {
        bail!("the throttle benchmark needs at least 20 devices, a rate and a duration");
    }
    let longest_list = options
        .rates
        .iter()
        .map(|rate| unicast_count(*rate, options.seconds))
        .max()
        .unwrap_or(0);
    let (_config_dir, controller_args) = controller_args(longest_list)?;
    // Three runs per rate and round, each its length plus set-up and drain.
    let runs = (options.rounds * options.rates.len() * 3) as f64;
    let watchdog = Duration::from_secs_f64(300.0 + runs * (options.seconds + 30.0));
    let platform = Platform::start_with(PlatformOptions {
        connectors: 2,
        controller_args,
        watchdog,
        ..PlatformOptions::default()
    })
    .await;
    let fleet = Fleet::start(&platform, options.devices).await?;
    let mut rows = Vec::new();
    for round in 1..=options.rounds {
        for &rate in &options.rates {
            for target in [
                TargetKind::Audience,
                TargetKind::Skewed,
                TargetKind::Unicast,
            ] {
                match run_once(&platform, &fleet, target, rate, round, options).await {
                    Ok(row) => {
                        eprintln!("run: {}", row_line(&row));
                        rows.push(row);
                    }
                    Err(error) => {
                        print_logs(&platform);
                        return Err(error);
                    }
                }
            }
        }
    }
    Ok(rows)
}

/// The last lines of every process's log, for a run that went wrong.
fn print_logs(platform: &Platform) {
    let connectors = platform.connectors.iter().map(|c| &c.proc);
    for proc in [&platform.controller, &platform.dispatcher]
        .into_iter()
        .chain(connectors)
    {
        let text = proc.log_text();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("---- last lines of {} ----", proc.name);
        for line in &lines[lines.len().saturating_sub(30)..] {
            eprintln!("{line}");
        }
    }
}

/// Messages in a unicast run at `rate`.
fn unicast_count(rate: u32, seconds: f64) -> usize {
    (f64::from(rate) * seconds).round().max(1.0) as usize
}

/// A controller that takes a `device_ids` list as long as the longest run, and looks for
/// due campaigns every 20 ms instead of every second. The directory holds its config file.
fn controller_args(longest_list: usize) -> anyhow::Result<(tempfile::TempDir, Vec<String>)> {
    let dir = tempfile::tempdir().context("a directory for the controller's config")?;
    let path = dir.path().join("controller.toml");
    let max = longest_list.max(1000);
    std::fs::write(
        &path,
        format!("[controller]\nmax_devices_per_request = {max}\n"),
    )
    .context("writing the controller's config")?;
    let args = vec![
        "--config".into(),
        path.display().to_string(),
        "--scheduler-tick-ms".into(),
        "20".into(),
    ];
    Ok((dir, args))
}

async fn run_once(
    platform: &Platform,
    fleet: &Fleet,
    target: TargetKind,
    rate: u32,
    round: usize,
    options: &ThrottleOptions,
) -> anyhow::Result<Row> {
    let wanted = unicast_count(rate, options.seconds);
    let (message, expected) = match target {
        TargetKind::Audience => {
            let reach = wanted.min(fleet.ids.len());
            let segment = format!("attr.{SLOT_ATTRIBUTE} < {reach}");
            (json!({ "segment": segment, "data": "bench" }), reach)
        }
        TargetKind::Unicast => {
            let ids: Vec<&String> = fleet.ids.iter().cycle().take(wanted).collect();
            (json!({ "device_ids": ids, "data": "bench" }), wanted)
        }
        TargetKind::Skewed => {
            let (first, second) = (fleet.per_connector[0], fleet.per_connector[1]);
            // As many as the rate and duration ask, if the first connector holds enough.
            let reach = wanted.min((first as f64 / SKEW) as usize);
            let on_first = (reach as f64 * SKEW).round() as usize;
            let on_second = (reach - on_first).min(second);
            let segment = format!(
                "(attr.connector = 0 and attr.rank < {on_first}) or \
                 (attr.connector = 1 and attr.rank < {on_second})"
            );
            (
                json!({ "segment": segment, "data": "bench" }),
                on_first + on_second,
            )
        }
    };
    // Anything still arriving from an earlier run is not this one's.
    fleet.arrivals.take();
    let body = json!({
        "name": format!("throttle {} {rate}/s #{round}", target.name()),
        "message": message,
        "throttle_per_second": rate,
    });
    let created = Instant::now();
    let path = format!("/v1/apps/{}/campaigns", fleet.app);
    let (status, answer) = platform.post(&path, &fleet.server_key, &body, None).await;
    if status != 201 {
        bail!("creating the campaign answered {status}: {answer}");
    }
    let campaign = campaign_id(&answer)?;

    // Generous: twice the paced time, plus room for the start.
    let limit = Duration::from_secs_f64(2.0 * expected as f64 / f64::from(rate) + 15.0);
    let mut arrivals = Vec::with_capacity(expected);
    let mut last_growth = Instant::now();
    loop {
        let before = arrivals.len();
        arrivals.extend(
            fleet
                .arrivals
                .take()
                .into_iter()
                .filter(|arrival| arrival.campaign_id == campaign)
                .map(|arrival| arrival.at),
        );
        if arrivals.len() > before {
            last_growth = Instant::now();
        }
        let waited = created.elapsed();
        // Done when all came, or nothing came for 3 s after some did, or at the limit.
        let stalled = !arrivals.is_empty() && last_growth.elapsed() > Duration::from_secs(3);
        if arrivals.len() >= expected || stalled || waited > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(first) = arrivals.iter().min().copied() else {
        bail!("campaign {campaign} delivered nothing within {limit:?}");
    };
    let achieved = measure::achieved(&arrivals, f64::from(rate))
        .with_context(|| format!("campaign {campaign} delivered only {}", arrivals.len()))?;
    Ok(Row {
        target,
        set_rate: rate,
        round,
        expected,
        start_delay: first.saturating_duration_since(created),
        achieved,
    })
}

fn campaign_id(answer: &Value) -> anyhow::Result<String> {
    answer["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the campaign has no id: {answer}"))
}

const HEADER: &str = "target    set/s  round  delivered  span_s  achieved/s  ratio  \
                      per_s_min  per_s_p50  per_s_max  late_p50_ms  late_p99_ms  late_p999_ms  \
                      start_ms  verdict";

fn row_line(row: &Row) -> String {
    let a = &row.achieved;
    let windows = |pick: fn(&measure::Spread) -> f64| {
        a.per_second
            .as_ref()
            .map_or("-".to_owned(), |spread| format!("{:.0}", pick(spread)))
    };
    let verdict = if row.within() {
        "within 10%"
    } else if a.deliveries != row.expected {
        "MISSING"
    } else {
        "OUTSIDE 10%"
    };
    format!(
        "{:<8} {:>6} {:>6} {:>10} {:>7.2} {:>11.1} {:>6.3} {:>10} {:>10} {:>10} {:>12.0} {:>12.0} {:>13.0} {:>9} {verdict}",
        row.target.name(),
        row.set_rate,
        row.round,
        format!("{}/{}", a.deliveries, row.expected),
        a.span.as_secs_f64(),
        a.steady_rate,
        row.ratio(),
        windows(|s| s.low),
        windows(|s| s.p50),
        windows(|s| s.high),
        a.lateness_ms.p50,
        a.lateness_ms.p99,
        a.lateness_ms.p999,
        row.start_delay.as_millis(),
    )
}

/// The table of every row, with a note on how the figures were taken.
pub fn table(rows: &[Row], options: &ThrottleOptions) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "throttle: {} devices over 2 connectors; {} s per run at each set rate; every \
         process on this machine ({} cores)",
        options.devices,
        options.seconds,
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    let _ = writeln!(
        out,
        "achieved/s: deliveries per second at the devices, first and last {:.0}% of each \
         run left out; per_s: deliveries in each whole second of that part; late: ms after \
         the ideal schedule (first delivery, then one every 1/rate s); start: campaign \
         created to first delivery",
        measure::EDGE_SHARE * 100.0
    );
    let _ = writeln!(out, "{HEADER}");
    for row in rows {
        let _ = writeln!(out, "{}", row_line(row));
    }
    let outside = rows.iter().filter(|row| !row.within()).count();
    let _ = writeln!(
        out,
        "{} of {} runs within {:.0}% of their set rate",
        rows.len() - outside,
        rows.len(),
        TOLERANCE * 100.0
    );
    out
}

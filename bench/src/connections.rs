//! `ringpush-bench connections`: what idle devices cost a connector, how fast they connect,
//! and how fast a killed connector's devices are back on their new owners.
//!
//! Starts a platform (Redis, a controller, a dispatcher, K connectors, each a real process),
//! registers N devices through the REST API, and starts load-generator processes
//! ([`crate::loadgen`], this binary) each holding up to [`PER_LOADGEN`] idle authenticated
//! WebSocket connections from its own 127.0.0.x addresses, every device straight to its owner
//! on the ring. Then, per connector: resident memory before and after (bytes per
//! connection), the kernel's TCP memory (/proc/net/sockstat, both ends of every socket are
//! on this machine), the connect rate over the ramp, CPU while idle with keepalives; then
//! kill -9 of the busiest connector and the time until every one of its devices is
//! welcomed again (the load generators reconnect as the SDK does). Verdicts: at most
//! [`TARGET_BYTES_PER_CONNECTION`] per connection on a connector holding at least
//! [`MEMORY_VERDICT_MIN`] (fewer say little: allocator steps dominate), and every device
//! back within [`TARGET_RECONNECT`].

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use ringpush_harness::{Platform, PlatformOptions};
use ringpush_protocol::DeviceId;
use ringpush_ring::Ring;

use crate::fleet;
use crate::loadgen::plan_line;
use crate::loadgens::{Loadgens, Shared};
use crate::procfs::{self, TcpSockstat};

/// Devices per load generator: under the 20,000 open files a process may hold here.
pub const PER_LOADGEN: usize = 18_000;
/// Target: connector user-space memory per idle connection.
pub const TARGET_BYTES_PER_CONNECTION: f64 = 256.0;
/// Connections a connector must hold for its memory verdict to count.
pub const MEMORY_VERDICT_MIN: usize = 10_000;
/// Target: a killed connector's devices all welcomed again within this.
pub const TARGET_RECONNECT: Duration = Duration::from_secs(5);
/// How long the storm is waited for before it is reported as not finished.
const STORM_LIMIT: Duration = Duration::from_secs(120);
/// Registrations in flight at once.
const REGISTER_CONCURRENCY: usize = 128;

/// What the connections benchmark runs.
#[derive(Debug, Clone)]
pub struct ConnectionsOptions {
    pub devices: usize,
    pub connectors: usize,
    /// How long CPU is measured while every device idles.
    pub idle_seconds: f64,
    /// Connection attempts under way at once, per load generator.
    pub concurrency: usize,
    /// The keepalive interval the connectors ask for (devices ping a little more often).
    pub ping_interval_seconds: u64,
}

impl ConnectionsOptions {
    /// A few hundred devices over two connectors, seconds: checks that it runs.
    pub fn quick() -> Self {
        Self {
            devices: 300,
            connectors: 2,
            idle_seconds: 2.0,
            concurrency: 64,
            ping_interval_seconds: 2,
        }
    }
}

impl Default for ConnectionsOptions {
    /// 19,000 devices on one connector: the memory target's size.
    fn default() -> Self {
        Self {
            devices: 19_000,
            connectors: 1,
            idle_seconds: 10.0,
            concurrency: 256,
            ping_interval_seconds: 30,
        }
    }
}

/// One connector's figures.
#[derive(Debug, Clone)]
pub struct ConnectorRow {
    pub id: String,
    pub devices: usize,
    pub rss_before: Option<u64>,
    pub rss_after: Option<u64>,
    /// CPU share of one core while idle.
    pub idle_cpu: Option<f64>,
}

impl ConnectorRow {
    pub fn bytes_per_connection(&self) -> Option<f64> {
        let (before, after) = (self.rss_before?, self.rss_after?);
        (self.devices > 0).then(|| (after as f64 - before as f64) / self.devices as f64)
    }

    /// `None`: too few connections for the figure to count.
    pub fn memory_within(&self) -> Option<bool> {
        if self.devices < MEMORY_VERDICT_MIN {
            return None;
        }
        Some(self.bytes_per_connection()? <= TARGET_BYTES_PER_CONNECTION)
    }
}

/// Everything measured.
#[derive(Debug, Clone)]
pub struct ConnectionsReport {
    pub options: ConnectionsOptions,
    pub rows: Vec<ConnectorRow>,
    pub loadgens: usize,
    pub register_seconds: f64,
    pub ramp_seconds: f64,
    pub sockstat_before: Option<TcpSockstat>,
    pub sockstat_after: Option<TcpSockstat>,
    /// Resident memory of the load generators, summed, once all were connected.
    pub loadgen_rss: u64,
    /// Which connector was killed, how many devices it held, how long until all were back.
    /// `Err` holds what was left when the wait ended: the devices not back in time.
    pub storm: Option<(String, usize, Result<Duration, String>)>,
}

impl ConnectionsReport {
    pub fn within(&self) -> bool {
        let memory = self
            .rows
            .iter()
            .all(|row| row.memory_within() != Some(false));
        let storm = self
            .storm
            .as_ref()
            .is_none_or(|(_, _, took)| took.as_ref().is_ok_and(|took| *took <= TARGET_RECONNECT));
        memory && storm
    }
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

/// Runs the benchmark.
pub async fn run(options: &ConnectionsOptions) -> anyhow::Result<ConnectionsReport> {
    if options.devices == 0 || options.connectors == 0 {
        bail!("the connections benchmark needs devices and connectors");
    }
    let watchdog = Duration::from_secs(600 + options.devices as u64 / 50);
    let mut platform = Platform::start_with(PlatformOptions {
        connectors: options.connectors,
        connector_ping_interval_seconds: options.ping_interval_seconds,
        watchdog,
        ..PlatformOptions::default()
    })
    .await;
    let (app, _server_key, client_key) = platform.create_app().await;
    let started = Instant::now();
    let registered: Vec<(String, String)> = futures_util::stream::iter(0..options.devices)
        .map(|_| fleet::register(&platform, &app, &client_key))
        .buffer_unordered(REGISTER_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let register_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "registered {} devices in {register_seconds:.1} s",
        options.devices
    );

    // Owners as the dispatcher computes them, from the live members.
    let members = fleet::members(&platform);
    let ring = Ring::new(members.clone(), ringpush_ring::DEFAULT_VNODES);
    let mut per_connector = vec![0usize; members.len()];
    let plan_dir = tempfile::tempdir().context("a directory for the plans")?;
    let chunks = options.devices.div_ceil(PER_LOADGEN);
    let mut plans: Vec<(std::path::PathBuf, usize)> = Vec::new();
    // Devices of each plan on each connector: who must reconnect in the storm.
    let mut plan_counts: Vec<Vec<usize>> = Vec::new();
    for (chunk_index, chunk) in registered
        .chunks(options.devices.div_ceil(chunks))
        .enumerate()
    {
        let mut text = String::new();
        let mut counts = vec![0usize; members.len()];
        for (id, token) in chunk {
            let device: DeviceId = id.parse().context("the controller answered a bad id")?;
            let owner = ring.owner(device).context("the ring has no members")?;
            let index = members
                .iter()
                .position(|member| member.id == owner.id)
                .context("the owner is a member")?;
            per_connector[index] += 1;
            counts[index] += 1;
            text.push_str(&plan_line(id, token, index));
        }
        let path = plan_dir.path().join(format!("plan-{chunk_index}.txt"));
        std::fs::write(&path, text).context("writing a plan")?;
        plans.push((path, chunk.len()));
        plan_counts.push(counts);
    }

    let pids: Vec<u32> = platform.connectors.iter().map(|c| c.proc.pid()).collect();
    let rss_before: Vec<Option<u64>> = pids.iter().map(|pid| procfs::rss_bytes(*pid)).collect();
    let sockstat_before = procfs::tcp_sockstat();
    let connectors: Vec<SocketAddr> = platform.connectors.iter().map(|c| c.device_addr).collect();
    let shared = Shared {
        connectors: &connectors,
        dispatcher: platform.dispatcher_addr,
        concurrency: options.concurrency,
        max_seconds: watchdog.as_secs(),
    };
    let ramp_started = Instant::now();
    let since = unix_ms();
    let loadgens = Loadgens::start(&plans, &shared)?;
    let everyone: Vec<usize> = (0..plans.len()).collect();
    let ramp_limit = Duration::from_secs(60 + options.devices as u64 / 200);
    loadgens.wait_all(&everyone, since, ramp_limit)?;
    let ramp_seconds = ramp_started.elapsed().as_secs_f64();
    eprintln!(
        "connected {} devices in {ramp_seconds:.1} s",
        options.devices
    );

    // Let the connectors finish their background work (registry, presence) and settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after: Vec<Option<u64>> = pids.iter().map(|pid| procfs::rss_bytes(*pid)).collect();
    let sockstat_after = procfs::tcp_sockstat();
    let loadgen_rss = loadgens
        .pids()
        .iter()
        .filter_map(|pid| procfs::rss_bytes(*pid))
        .sum();
    let cpu_before: Vec<Option<u64>> = pids.iter().map(|pid| procfs::cpu_ticks(*pid)).collect();
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(options.idle_seconds)).await;
    let idle_span = idle_started.elapsed().as_secs_f64();
    let rows: Vec<ConnectorRow> = (0..pids.len())
        .map(|index| ConnectorRow {
            id: platform.connectors[index].id.clone(),
            devices: per_connector[index],
            rss_before: rss_before[index],
            rss_after: rss_after[index],
            idle_cpu: cpu_before[index].zip(procfs::cpu_ticks(pids[index])).map(
                |(before, after)| {
                    (after - before) as f64 / procfs::CLOCK_TICKS_PER_SECOND / idle_span
                },
            ),
        })
        .collect();

    // The reconnect storm: kill the busiest connector, wait for its devices elsewhere.
    let storm = if options.connectors >= 2 {
        let victim = (0..per_connector.len())
            .max_by_key(|index| per_connector[*index])
            .unwrap_or(0);
        let holders: Vec<usize> = (0..plans.len())
            .filter(|plan| plan_counts[*plan][victim] > 0)
            .collect();
        let killed_at = unix_ms();
        platform.connectors[victim].proc.kill9();
        let took = loadgens
            .wait_all(&holders, killed_at, STORM_LIMIT)
            .map(|back| Duration::from_millis((back - killed_at) as u64))
            .map_err(|error| format!("{error:#}"));
        eprintln!(
            "{} devices of {}: {took:?}",
            per_connector[victim], rows[victim].id
        );
        Some((rows[victim].id.clone(), per_connector[victim], took))
    } else {
        None
    };
    drop(loadgens);
    Ok(ConnectionsReport {
        options: options.clone(),
        rows,
        loadgens: plans.len(),
        register_seconds,
        ramp_seconds,
        sockstat_before,
        sockstat_after,
        loadgen_rss,
        storm,
    })
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| {
        format!("{:.1}", b as f64 / (1024.0 * 1024.0))
    })
}

/// The table and the notes under it.
pub fn table(report: &ConnectionsReport) -> String {
    let mut out = String::new();
    let options = &report.options;
    let _ = writeln!(
        out,
        "connections: {} idle devices (WebSocket, authenticated, a keepalive Ping every {:.1} s \
         for a {} s interval) over {} connector(s), from {} load generator(s); every process \
         on this machine ({} cores)",
        options.devices,
        options.ping_interval_seconds as f64 * 0.8,
        options.ping_interval_seconds,
        options.connectors,
        report.loadgens,
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    let _ = writeln!(
        out,
        "connector  devices  rss_before_MiB  rss_after_MiB  bytes/conn  idle_cpu_%  verdict"
    );
    for row in &report.rows {
        let verdict = match row.memory_within() {
            Some(true) => format!("within {TARGET_BYTES_PER_CONNECTION:.0} B"),
            Some(false) => format!("OVER {TARGET_BYTES_PER_CONNECTION:.0} B"),
            None => format!("(below {MEMORY_VERDICT_MIN}: not judged)"),
        };
        let _ = writeln!(
            out,
            "{:<9} {:>8} {:>15} {:>14} {:>11} {:>11} {verdict}",
            row.id,
            row.devices,
            mib(row.rss_before),
            mib(row.rss_after),
            row.bytes_per_connection()
                .map_or("-".into(), |b| format!("{b:.0}")),
            row.idle_cpu
                .map_or("-".into(), |c| format!("{:.1}", c * 100.0)),
        );
    }
    let rate = options.devices as f64 / report.ramp_seconds.max(f64::EPSILON);
    let _ = writeln!(
        out,
        "registered in {:.1} s; connected in {:.1} s: {rate:.0} connections/s; load generators \
         {:.1} MiB resident in all ({:.0} B per connection)",
        report.register_seconds,
        report.ramp_seconds,
        report.loadgen_rss as f64 / (1024.0 * 1024.0),
        report.loadgen_rss as f64 / options.devices as f64,
    );
    if let (Some(before), Some(after)) = (report.sockstat_before, report.sockstat_after) {
        let pages = after.mem_pages as i64 - before.mem_pages as i64;
        let _ = writeln!(
            out,
            "kernel TCP (sockstat): inuse {} -> {}, mem {} -> {} pages ({:+.0} B per device, \
             both ends)",
            before.inuse,
            after.inuse,
            before.mem_pages,
            after.mem_pages,
            pages as f64 * procfs::PAGE_BYTES as f64 / options.devices as f64,
        );
    }
    match &report.storm {
        Some((id, held, Err(left))) => {
            let _ = writeln!(
                out,
                "reconnect storm: kill -9 {id} ({held} devices): NOT all back within {} s: {left}",
                STORM_LIMIT.as_secs()
            );
        }
        Some((id, held, Ok(took))) => {
            let verdict = if *took <= TARGET_RECONNECT {
                "within"
            } else {
                "OVER"
            };
            let _ = writeln!(
                out,
                "reconnect storm: kill -9 {id} ({held} devices): all back in {:.2} s, {verdict} \
                 {} s",
                took.as_secs_f64(),
                TARGET_RECONNECT.as_secs()
            );
        }
        None => {
            let _ = writeln!(out, "reconnect storm: not run (one connector)");
        }
    }
    let _ = writeln!(
        out,
        "{}",
        if report.within() {
            "every target met"
        } else {
            "a target was missed"
        }
    );
    out
}

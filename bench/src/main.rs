//! `ringpush-bench`: runs a benchmark against a real deployment and prints its table.
//! Exit code 0: every row met its target; 1: some row did not; 2: the benchmark failed.
//! `loadgen` is not a benchmark: it is the load-generator process `connections` starts.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ringpush_bench::connections::{self, ConnectionsOptions};
use ringpush_bench::loadgen::{self, LoadgenOptions};
use ringpush_bench::ring::{self, RingOptions};
use ringpush_bench::throttle::{self, ThrottleOptions};

#[derive(Debug, Parser)]
#[command(
    name = "ringpush-bench",
    about = "Benchmarks of a real ringpush deployment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Throttled campaigns: achieved rate against set rate, audience and unicast.
    Throttle(ThrottleArgs),
    /// Ring spread and moves on join/leave, 3 to 100 connectors (pure computation).
    Ring(RingArgs),
    /// Idle devices: connector memory and CPU per connection, connect rate, reconnect storm.
    Connections(ConnectionsArgs),
    /// One load-generator process (started by `connections`).
    Loadgen(LoadgenArgs),
}

#[derive(Debug, Args)]
struct ThrottleArgs {
    /// Small and short (a few hundred devices, one round): checks that it runs.
    #[arg(long)]
    quick: bool,
    /// Simulated devices held online.
    #[arg(long)]
    devices: Option<usize>,
    /// Set rates, deliveries per second, comma-separated.
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<u32>>,
    /// Seconds each run should last at its rate.
    #[arg(long)]
    seconds: Option<f64>,
    /// Times each configuration runs.
    #[arg(long)]
    rounds: Option<usize>,
}

impl ThrottleArgs {
    fn options(self) -> ThrottleOptions {
        let base = if self.quick {
            ThrottleOptions::quick()
        } else {
            ThrottleOptions::default()
        };
        ThrottleOptions {
            devices: self.devices.unwrap_or(base.devices),
            rates: self.rates.unwrap_or(base.rates),
            seconds: self.seconds.unwrap_or(base.seconds),
            rounds: self.rounds.unwrap_or(base.rounds),
        }
    }
}

#[derive(Debug, Args)]
struct RingArgs {
    /// Two ring sizes and 20,000 devices: checks that it runs.
    #[arg(long)]
    quick: bool,
    /// Devices placed.
    #[arg(long)]
    devices: Option<usize>,
    /// Ring sizes, comma-separated.
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
}

impl RingArgs {
    fn options(self) -> RingOptions {
        let base = if self.quick {
            RingOptions::quick()
        } else {
            RingOptions::default()
        };
        RingOptions {
            devices: self.devices.unwrap_or(base.devices).max(1),
            sizes: self.sizes.unwrap_or(base.sizes),
            vnodes: base.vnodes,
        }
    }
}

#[derive(Debug, Args)]
struct ConnectionsArgs {
    /// A few hundred devices over two connectors: checks that it runs.
    #[arg(long)]
    quick: bool,
    /// Idle devices held.
    #[arg(long)]
    devices: Option<usize>,
    /// Connector processes on the ring.
    #[arg(long)]
    connectors: Option<usize>,
    /// Seconds over which idle CPU is measured.
    #[arg(long)]
    idle_seconds: Option<f64>,
    /// Connection attempts under way at once, per load generator.
    #[arg(long)]
    concurrency: Option<usize>,
    /// The connectors' keepalive interval, seconds (30 by default; 2 in quick mode).
    #[arg(long)]
    ping_interval: Option<u64>,
}

impl ConnectionsArgs {
    fn options(self) -> ConnectionsOptions {
        let base = if self.quick {
            ConnectionsOptions::quick()
        } else {
            ConnectionsOptions::default()
        };
        ConnectionsOptions {
            devices: self.devices.unwrap_or(base.devices),
            connectors: self.connectors.unwrap_or(base.connectors),
            idle_seconds: self.idle_seconds.unwrap_or(base.idle_seconds),
            concurrency: self.concurrency.unwrap_or(base.concurrency).max(1),
            ping_interval_seconds: self
                .ping_interval
                .unwrap_or(base.ping_interval_seconds)
                .max(1),
        }
    }
}

#[derive(Debug, Args)]
struct LoadgenArgs {
    /// Lines of `device_id device_token connector_index`.
    #[arg(long)]
    plan: PathBuf,
    /// The addresses sockets bind to before connecting, comma-separated (device i uses
    /// address i mod count).
    #[arg(long, value_delimiter = ',', required = true)]
    sources: Vec<IpAddr>,
    /// The connectors' device addresses, comma-separated, in plan index order.
    #[arg(long, value_delimiter = ',')]
    connectors: Vec<SocketAddr>,
    /// The dispatcher's address.
    #[arg(long)]
    dispatcher: SocketAddr,
    /// Connection attempts under way at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Stop after this many seconds whatever happens.
    #[arg(long, default_value_t = 3600)]
    max_seconds: u64,
}

/// Exit code 0 when every row met its target, 1 otherwise.
fn verdict(all_within: bool) -> ExitCode {
    if all_within {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("ringpush-bench: cannot start the runtime: {error}");
            ExitCode::from(2)
        })
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Ring(args) => {
            let options = args.options();
            let rows = ring::run(&options);
            print!("{}", ring::table(&rows, &options));
            verdict(rows.iter().all(ring::RingRow::within))
        }
        Command::Loadgen(args) => run_loadgen(args),
        Command::Throttle(args) => {
            let options = args.options();
            let runtime = match runtime() {
                Ok(runtime) => runtime,
                Err(code) => return code,
            };
            match runtime.block_on(throttle::run(&options)) {
                Ok(rows) => {
                    print!("{}", throttle::table(&rows, &options));
                    verdict(rows.iter().all(throttle::Row::within))
                }
                Err(error) => {
                    eprintln!("ringpush-bench throttle: {error:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Connections(args) => {
            let options = args.options();
            let runtime = match runtime() {
                Ok(runtime) => runtime,
                Err(code) => return code,
            };
            match runtime.block_on(connections::run(&options)) {
                Ok(report) => {
                    print!("{}", connections::table(&report));
                    verdict(report.within())
                }
                Err(error) => {
                    eprintln!("ringpush-bench connections: {error:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn run_loadgen(args: LoadgenArgs) -> ExitCode {
    let devices = match loadgen::read_plan(&args.plan, args.connectors.len()) {
        Ok(devices) => devices,
        Err(error) => {
            eprintln!("ringpush-bench loadgen: {error}");
            return ExitCode::from(2);
        }
    };
    let options = LoadgenOptions {
        sources: args.sources,
        connectors: args.connectors,
        dispatcher: args.dispatcher,
        concurrency: args.concurrency.max(1),
        max_seconds: args.max_seconds,
    };
    match loadgen::run(&options, &devices) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ringpush-bench loadgen: {error}");
            ExitCode::from(2)
        }
    }
}

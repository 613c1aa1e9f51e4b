//! `ringpush-bench`: runs a benchmark against a real deployment and prints its table.
//! Exit code 0: every row met its target; 1: some row did not; 2: the benchmark failed.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ringpush-bench: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Throttle(args) => {
            let options = args.options();
            match runtime.block_on(throttle::run(&options)) {
                Ok(rows) => {
                    print!("{}", throttle::table(&rows, &options));
                    if rows.iter().all(throttle::Row::within) {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(error) => {
                    eprintln!("ringpush-bench throttle: {error:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

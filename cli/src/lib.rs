//! The `ringpush` command: each subcommand builds one component from its library and runs it.
//!
//! - [`serve`]: `dev` (everything in one process on the embedded store), `connector`,
//!   `dispatcher`, `controller` (each alone, on Redis);
//! - [`client`]: `app create`, `send` and `listen` (a device built on the SDK);
//! - [`operator`]: `operator create` (portal operators);
//! - [`settings`]: defaults, TOML file, environment and flags (TLS files checked there);
//! - [`https`]: the controller and the dispatcher served over TLS;
//! - [`telemetry`] and [`shutdown`]: logs, metrics, signals.
//!
//! Exit codes: 0 success, 1 a failed operation, 64 invalid configuration or usage.

pub mod client;
pub mod gateway_settings;
pub mod https;
pub mod operator;
pub mod regions;
pub mod send;
pub mod serve;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Exit code for an invalid configuration (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "ringpush",
    version,
    about = "ringpush: a geo-distributed push platform",
    long_about = "ringpush: a geo-distributed push platform.\n\nStart everything with `ringpush dev`, then try `ringpush app create`, `ringpush listen` and `ringpush send`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run dispatcher, connector and controller in one process on an embedded store.
    Dev(serve::DevArgs),
    /// Run a connector (holds device connections), backed by Redis.
    Connector(serve::ConnectorArgs),
    /// Run a dispatcher (assigns devices to connectors), backed by Redis.
    Dispatcher(serve::DispatcherArgs),
    /// Run a controller (the REST API), backed by Redis.
    Controller(serve::ControllerArgs),
    /// Manage apps through the REST API.
    App {
        #[command(subcommand)]
        command: client::AppCommand,
    },
    /// Manage the portal's operators through the REST API.
    Operator {
        #[command(subcommand)]
        command: operator::OperatorCommand,
    },
    /// Send a push to devices, aliases or an audience, now or on a schedule; prints the JSON answer.
    Send(Box<send::SendArgs>),
    /// Act as a device: register (or reuse --identity), then print each message as a JSON line.
    Listen(client::ListenArgs),
    /// Print the default settings as TOML (a starting point for --config).
    Config,
}

/// Options every server command takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// A TOML settings file (see `ringpush config`).
    #[arg(long, env = "RINGPUSH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `ringpush_connector=debug,info`.
    #[arg(long, env = "RINGPUSH_LOG", default_value = "info")]
    pub log: String,
    /// Log one JSON object per line instead of text.
    #[arg(long, env = "RINGPUSH_LOG_JSON")]
    pub log_json: bool,
    /// How long a connector lease lives without renewal, in milliseconds.
    #[arg(long, env = "RINGPUSH_LEASE_TTL_MS")]
    pub lease_ttl_ms: Option<u64>,
    /// How often the ring is read back from the store, in milliseconds.
    #[arg(long, env = "RINGPUSH_RING_REFRESH_MS")]
    pub ring_refresh_ms: Option<u64>,
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Dev(args) => serve::dev(args).await,
        Command::Connector(args) => serve::connector(args).await,
        Command::Dispatcher(args) => serve::dispatcher(args).await,
        Command::Controller(args) => serve::controller(args).await,
        Command::App { command } => client::app(command).await,
        Command::Operator { command } => operator::operator(command).await,
        Command::Send(args) => send::send(*args).await,
        Command::Listen(args) => client::listen(args).await,
        Command::Config => {
            print!("{}", settings::Settings::default_toml());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = if error.is::<serve::ConfigError>() {
                EXIT_CONFIG
            } else {
                1
            };
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

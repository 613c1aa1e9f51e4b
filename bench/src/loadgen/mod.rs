//! `ringpush-bench loadgen`: one load-generator process, holding up to ~18,000 idle
//! authenticated device connections (one process may hold 20,000 open files here) from one
//! few source addresses of its own, as the `connections` scenario starts several of.
//!
//! It reads a plan (one line per device: `device_id device_token connector_index`), opens
//! every connection on one thread with no task per connection (see `event_loop`), answers
//! pings, sends the device protocol's keepalive, and reconnects dropped devices as the SDK
//! does. It prints status lines on stdout for its parent:
//! - `up <welcomed> <total> <unix_ms> phases [..] failed [..]` when the welcomed count
//!   changed (at most every 300 ms), with the devices in each phase and the failed attempts
//!   by phase (waiting, lookup connecting, lookup reading, connecting, upgrading, hello, up);
//! - `all <unix_ms> <seconds since start> failed [..]` each time every device is welcomed
//!   again, with the failed attempts so far by phase (waiting, lookup connecting, lookup
//!   reading, connecting, upgrading, hello, up).
//!
//! It stops when its stdin closes (its parent ended) or after `max_seconds`.
//!
//! Does not own: registering devices or measuring the connectors (`connections`).

mod conn;
mod event_loop;
mod wire;

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How one load generator runs.
#[derive(Debug, Clone)]
pub struct LoadgenOptions {
    /// The addresses sockets are bound to before they connect, device i to address
    /// i mod len: a few per load generator keep each address's ports sparse, where the
    /// kernel finds a free one fast (its search slows as an address fills).
    pub sources: Vec<IpAddr>,
    /// The connectors' device addresses; a plan's connector index points in here.
    pub connectors: Vec<SocketAddr>,
    /// The dispatcher's address, asked after a failed attempt.
    pub dispatcher: SocketAddr,
    /// Attempts (lookup, connect, upgrade, Hello) under way at once.
    pub concurrency: usize,
    /// A bound on the process's life, whatever its parent does.
    pub max_seconds: u64,
}

/// One device of the plan.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub token: String,
    /// The connector to try first.
    pub connector: u8,
}

/// Why a plan could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read the plan: {0}")]
    Io(#[from] std::io::Error),
    #[error("plan line {line} is not `device_id token connector_index`")]
    BadLine { line: usize },
}

/// Reads a plan file.
pub fn read_plan(path: &Path, connectors: usize) -> Result<Vec<Device>, PlanError> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            let mut fields = line.split_whitespace();
            let bad = || PlanError::BadLine { line: number + 1 };
            let id = fields.next().ok_or_else(bad)?.to_owned();
            let token = fields.next().ok_or_else(bad)?.to_owned();
            let connector: u8 = fields
                .next()
                .and_then(|field| field.parse().ok())
                .filter(|index| usize::from(*index) < connectors)
                .ok_or_else(bad)?;
            Ok(Device {
                id,
                token,
                connector,
            })
        })
        .collect()
}

/// The plan line of one device.
pub fn plan_line(id: &str, token: &str, connector: usize) -> String {
    format!("{id} {token} {connector}\n")
}

/// Runs a load generator over `devices` until stdin closes or the time limit.
pub fn run(options: &LoadgenOptions, devices: &[Device]) -> std::io::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = stop.clone();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        // Ends at EOF or an error: the parent is gone or wants us to stop.
        while matches!(stdin.read(&mut sink), Ok(read) if read > 0) {}
        watcher.store(true, Ordering::Relaxed);
    });
    event_loop::run(options, devices, &stop)
}

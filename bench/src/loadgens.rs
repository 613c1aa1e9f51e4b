//! Load-generator child processes (`ringpush-bench loadgen`, this same binary) as the
//! `connections` scenario starts them: one per ~18,000 devices, each on its own four
//! source addresses (127.0.0.2–5 for the first, …), its status lines read by a thread
//! into one channel, each killed when dropped.
//!
//! Does not own: what a load generator does (`loadgen`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Source addresses per load generator: ~4,500 devices each, so that the kernel's search
/// for a free port on `bind` stays short.
const SOURCES_PER_LOADGEN: usize = 4;
/// Load generators that fit in 127.0.0.2–127.0.0.253 (about 1,000,000 devices).
const MAX_LOADGENS: usize = 252 / SOURCES_PER_LOADGEN;

/// A status line from load generator `index`.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// `up <welcomed> <total> <unix_ms>`.
    Up {
        welcomed: usize,
        total: usize,
        detail: String,
    },
    /// `all <unix_ms> …`: every device welcomed (again), at that instant.
    All { unix_ms: u128, detail: String },
}

fn parse(line: &str) -> Option<Status> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields.as_slice() {
        ["up", welcomed, total, _, rest @ ..] => Some(Status::Up {
            welcomed: welcomed.parse().ok()?,
            total: total.parse().ok()?,
            detail: rest.join(" "),
        }),
        ["all", unix_ms, rest @ ..] => Some(Status::All {
            unix_ms: unix_ms.parse().ok()?,
            detail: rest.join(" "),
        }),
        _ => None,
    }
}

/// The running load generators; dropping this kills every one.
pub struct Loadgens {
    children: Vec<Child>,
    /// Every status line of every child, tagged with the child's index.
    pub lines: mpsc::Receiver<(usize, Status)>,
    /// Devices each child holds.
    pub sizes: Vec<usize>,
}

/// What every child is told besides its plan.
pub struct Shared<'a> {
    pub connectors: &'a [SocketAddr],
    pub dispatcher: SocketAddr,
    pub concurrency: usize,
    pub max_seconds: u64,
}

impl Loadgens {
    /// Starts one child per plan file; child i binds to 127.0.0.(2+4i) to 127.0.0.(5+4i).
    pub fn start(plans: &[(std::path::PathBuf, usize)], shared: &Shared) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("the bench binary's path")?;
        let (sender, lines) = mpsc::channel();
        let mut loadgens = Loadgens {
            children: Vec::new(),
            lines,
            sizes: plans.iter().map(|(_, size)| *size).collect(),
        };
        let connectors: Vec<String> = shared.connectors.iter().map(|a| a.to_string()).collect();
        for (index, (plan, _)) in plans.iter().enumerate() {
            let mut child = spawn(&exe, plan, index, &connectors.join(","), shared)?;
            let stdout = child.stdout.take().context("the child's stdout")?;
            loadgens.children.push(child);
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { return };
                    if let Some(status) = parse(&line)
                        && sender.send((index, status)).is_err()
                    {
                        return;
                    }
                }
            });
        }
        Ok(loadgens)
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Waits until each child in `which` reported every device welcomed after `since_ms`;
    /// answers the latest such instant.
    pub fn wait_all(
        &self,
        which: &[usize],
        since_ms: u128,
        timeout: Duration,
    ) -> anyhow::Result<u128> {
        let deadline = Instant::now() + timeout;
        let mut done: Vec<Option<u128>> = vec![None; self.sizes.len()];
        let mut welcomed = vec![0usize; self.sizes.len()];
        let mut details = vec![String::new(); self.sizes.len()];
        while which.iter().any(|index| done[*index].is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((index, Status::All { unix_ms, detail })) if unix_ms > since_ms => {
                    eprintln!("load generator {index}: all welcomed ({detail})");
                    done[index] = Some(unix_ms);
                }
                Ok((
                    index,
                    Status::Up {
                        welcomed: up,
                        detail,
                        ..
                    },
                )) => {
                    welcomed[index] = up;
                    details[index] = detail;
                }
                Ok(_) => {}
                Err(_) => {
                    let held: usize = which.iter().map(|index| welcomed[*index]).sum();
                    let wanted: usize = which.iter().map(|index| self.sizes[*index]).sum();
                    let late: Vec<String> = which
                        .iter()
                        .filter(|index| done[**index].is_none())
                        .map(|index| format!("load generator {index}: {}", details[*index]))
                        .collect();
                    bail!(
                        "after {timeout:?}: {held} of {wanted} devices welcomed (the last \
                         count each reported; {})",
                        late.join("; ")
                    );
                }
            }
        }
        Ok(which
            .iter()
            .filter_map(|index| done[*index])
            .max()
            .unwrap_or(since_ms))
    }
}

fn spawn(
    exe: &Path,
    plan: &Path,
    index: usize,
    connectors: &str,
    shared: &Shared,
) -> anyhow::Result<Child> {
    if index >= MAX_LOADGENS {
        bail!("more load generators than 127.0.0.x addresses");
    }
    let sources: Vec<String> = (0..SOURCES_PER_LOADGEN)
        .map(|k| format!("127.0.0.{}", 2 + index * SOURCES_PER_LOADGEN + k))
        .collect();
    Command::new(exe)
        .args(["loadgen", "--plan"])
        .arg(plan)
        .args(["--sources", &sources.join(","), "--connectors", connectors])
        .args(["--dispatcher", &shared.dispatcher.to_string()])
        .args(["--concurrency", &shared.concurrency.to_string()])
        .args(["--max-seconds", &shared.max_seconds.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting a load generator")
}

impl Drop for Loadgens {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

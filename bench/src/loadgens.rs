//! Load-generator child processes (`ringpush-bench loadgen`, this same binary) as the
//! `connections` scenario starts them: one per ~18,000 devices, each on its own source
//! address, its status lines read by a thread into one channel, each killed when dropped.
//!
//! Does not own: what a load generator does (`loadgen`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A status line from load generator `index`.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// `up <welcomed> <total> <unix_ms>`.
    Up { welcomed: usize, total: usize },
    /// `all <unix_ms> …`: every device welcomed (again), at that instant.
    All { unix_ms: u128 },
}

fn parse(line: &str) -> Option<Status> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields.as_slice() {
        ["up", welcomed, total, _] => Some(Status::Up {
            welcomed: welcomed.parse().ok()?,
            total: total.parse().ok()?,
        }),
        ["all", unix_ms, ..] => Some(Status::All {
            unix_ms: unix_ms.parse().ok()?,
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
    /// Starts one child per plan file; child i binds to 127.0.0.(2+i).
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
        while which.iter().any(|index| done[*index].is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((index, Status::All { unix_ms })) if unix_ms > since_ms => {
                    done[index] = Some(unix_ms);
                }
                Ok((index, Status::Up { welcomed: up, .. })) => welcomed[index] = up,
                Ok(_) => {}
                Err(_) => {
                    let held: usize = which.iter().map(|index| welcomed[*index]).sum();
                    let wanted: usize = which.iter().map(|index| self.sizes[*index]).sum();
                    bail!("after {timeout:?}: {held} of {wanted} devices welcomed");
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
    let source = format!("127.0.0.{}", 2 + index);
    if index > 250 {
        bail!("more load generators than 127.0.0.x addresses");
    }
    Command::new(exe)
        .args(["loadgen", "--plan"])
        .arg(plan)
        .args(["--source", &source, "--connectors", connectors])
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

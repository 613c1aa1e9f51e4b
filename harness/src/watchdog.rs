//! A watchdog for a deployment: a test that hangs (a blocking read that never returns, a
//! wait without a timeout) would otherwise hang the whole suite until CI's limit. If the
//! watchdog is not dropped in time it prints the logs of the deployment's processes and
//! aborts the test process, which fails the suite at once with the evidence.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// How long one deployment may live before the watchdog fires: far above any test's needs.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(300);

/// Fires unless dropped within its limit.
pub struct Watchdog {
    /// Dropping the sender wakes the thread, which then exits quietly.
    _disarm: mpsc::Sender<()>,
}

impl Watchdog {
    /// Watches a deployment whose process logs (`*.log`) are in `log_dir`.
    pub fn start(log_dir: PathBuf, limit: Duration) -> Watchdog {
        let (disarm, disarmed) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("harness-watchdog".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = disarmed.recv_timeout(limit) {
                    eprintln!("harness watchdog: the deployment outlived {limit:?}; a test hangs");
                    print_logs(&log_dir);
                    std::process::abort();
                }
            })
            .expect("spawn the watchdog thread");
        Watchdog { _disarm: disarm }
    }
}

fn print_logs(dir: &PathBuf) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("---- last lines of {} ----", path.display());
            for line in &lines[lines.len().saturating_sub(80)..] {
                eprintln!("{line}");
            }
        }
    }
}

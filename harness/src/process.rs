//! Child processes of the harness: a `ringpush` process whose log goes to a file and that
//! dies with its handle, and waiting helpers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ringpush_binary;

/// A child process killed (SIGKILL) when dropped; its stderr goes to a log file.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
    /// The command line and environment it was started with, for [`Proc::restart`].
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Proc {
    pub fn spawn(name: &str, dir: &Path, args: &[String]) -> Proc {
        Proc::spawn_with_env(name, dir, args, &[])
    }

    /// Like [`Proc::spawn`], with more environment variables (say, `LD_PRELOAD` and
    /// `FAKETIME` for a process whose clock is off).
    pub fn spawn_with_env(
        name: &str,
        dir: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let mut proc = Proc {
            name: name.to_owned(),
            child: None,
            log,
            args: args.to_vec(),
            env: env.to_vec(),
        };
        std::fs::File::create(&proc.log).expect("create log file");
        proc.child = Some(proc.start_child());
        proc
    }

    /// Starts the process's command, its output appended to its log.
    fn start_child(&self) -> Child {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .expect("open log file");
        Command::new(ringpush_binary())
            .args(&self.args)
            .env("RINGPUSH_LOG", "info,ringpush_connector=debug")
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log file"))
            .stderr(file)
            .spawn()
            .expect("spawn ringpush")
    }

    /// Kills the process (SIGKILL) if it still runs, and starts it again with the same
    /// arguments and environment; the new one's output goes on in the same log.
    pub fn restart(&mut self) {
        self.kill9();
        self.child = Some(self.start_child());
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn sigterm(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }

    /// Waits up to `timeout` for the process to exit; answers its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not exit within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "---- log of {} ----\n{}",
                self.name,
                tail(&self.log_text(), 60)
            );
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until a TCP port accepts connections.
pub fn wait_for_port(address: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {address}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` until it answers true.
pub async fn eventually(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The lines a child prints, read on a thread of their own so that waiting for one can time
/// out (a blocking read on a runtime thread would hang the test instead of failing it).
pub struct Lines {
    lines: std::sync::mpsc::Receiver<String>,
}

impl Lines {
    pub fn new(output: impl std::io::Read + Send + 'static) -> Lines {
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(output).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Lines { lines }
    }

    /// The next line, waiting at most `timeout`; panics (saying `what`) on a timeout or if
    /// the output ended.
    pub fn next(&self, what: &str, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("timed out after {timeout:?} waiting for {what}")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the output ended before {what}")
            }
        }
    }
}

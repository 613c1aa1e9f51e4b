//! A real ringpush deployment driven from Rust, for end-to-end tests and benchmarks.
//!
//! - [`Platform`]: redis-server, a controller, a dispatcher and connectors, each a real
//!   `ringpush` process on free loopback ports ([`process::Proc`] kills each on drop and
//!   prints the tail of its log when a test panics), plus a REST client for the controller.
//! - [`sim::SimDevice`]: a simulated device speaking the device protocol directly, cheap
//!   enough to hold thousands in one process.
//! - [`watchdog::Watchdog`]: every `Platform` has one; a test that hangs aborts with the
//!   logs instead of hanging the suite.
//! - [`tcp_proxy::TcpProxy`]: a TCP proxy a test can cut, to cut a process off from Redis.
//! - [`clock_skew`]: the environment of a process whose wall clock is off (libfaketime).
//! - [`browser::Browser`]: a headless Chromium driven over WebDriver (chromedriver), for
//!   end-to-end tests of the web portal.
//!
//! What it does not own: devices built on the SDK (the CLI's tests have those), assertions.
//!
//! The `ringpush` binary is found by [`ringpush_binary`]: `RINGPUSH_BIN` if set, else the
//! `ringpush` beside the running executable (cargo puts test and bench executables in
//! `target/<profile>/deps/` and binaries in `target/<profile>/`).

pub mod browser;
pub mod clock_skew;
pub mod platform;
pub mod process;
pub mod sim;
pub mod tcp_proxy;
pub mod watchdog;

use std::path::PathBuf;
use std::sync::OnceLock;

pub use browser::{Browser, BrowserError, Element};
pub use platform::{
    ADMIN_TOKEN, ConnectorOptions, ConnectorProc, LEASE_TTL_MS, Platform, PlatformOptions,
};
pub use process::{Lines, Proc, eventually, wait_for_port};
pub use tcp_proxy::TcpProxy;

/// The `ringpush` binary the harness starts (see the crate doc).
pub fn ringpush_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("RINGPUSH_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("the running executable's path");
        let mut dir = exe
            .parent()
            .expect("an executable has a directory")
            .to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        let binary = dir.join("ringpush");
        assert!(
            binary.exists(),
            "no ringpush binary at {} (build it, or set RINGPUSH_BIN)",
            binary.display()
        );
        binary
    })
}

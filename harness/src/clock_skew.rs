//! Processes whose wall clock is off: finds libfaketime (Debian's `faketime` package) and
//! builds the environment that makes a child process see its wall clock shifted. Monotonic
//! clocks are left alone, as a host whose NTP is off would have them.
//!
//! What it does not do: install libfaketime (`deploy/install-test-deps.sh` does).

use std::path::PathBuf;

/// Where to look for the library, besides `RINGPUSH_LIBFAKETIME` and `/usr/lib/<arch>/`.
const LIBFAKETIME_DIRS: [&str; 3] = [
    "/usr/lib/faketime",
    "/usr/local/lib/faketime",
    "/usr/lib64/faketime",
];
/// The thread-safe variant: every ringpush process is multi-threaded.
const LIBFAKETIME_FILE: &str = "libfaketimeMT.so.1";

/// The libfaketime to preload, if one is installed: `RINGPUSH_LIBFAKETIME` if set, else the
/// first found in the usual places.
pub fn libfaketime() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RINGPUSH_LIBFAKETIME") {
        return Some(PathBuf::from(path)).filter(|path| path.exists());
    }
    // Debian's multiarch directories: /usr/lib/x86_64-linux-gnu/faketime, and so on.
    let multiarch = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("faketime"));
    LIBFAKETIME_DIRS
        .iter()
        .map(PathBuf::from)
        .chain(multiarch)
        .map(|dir| dir.join(LIBFAKETIME_FILE))
        .find(|path| path.exists())
}

/// The environment of a process whose wall clock runs `offset_seconds` ahead (behind, if
/// negative) of the real one; `None` if libfaketime is not installed.
pub fn skewed_clock_env(offset_seconds: i64) -> Option<Vec<(String, String)>> {
    let library = libfaketime()?;
    Some(vec![
        ("LD_PRELOAD".into(), library.display().to_string()),
        ("FAKETIME".into(), format!("{offset_seconds:+}")),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ])
}

//! The bench command runs end to end and prints its table. Its figures are not checked here
//! (no timed assertions in the test suite): `make bench` is where they count.
//!
//! Needs the `ringpush` binary beside this package's (`cargo test --workspace` builds it; on
//! its own, `cargo build -p ringpush` first), or `RINGPUSH_BIN`.

use std::process::Command;

/// Runs `ringpush-bench` with `args`; answers its standard output once it ran (exit 0: every
/// row within its target, 1: some row outside; 2 or a panic: it could not run) and printed
/// a table with `header`.
fn run_bench(args: &[&str], header: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ringpush-bench"))
        .args(args)
        .output()
        .expect("run ringpush-bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "ringpush-bench {args:?} failed ({:?})\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains(header), "no table header:\n{stdout}");
    stdout
}

#[test]
fn the_throttle_benchmark_runs_and_prints_its_table() {
    let stdout = run_bench(&["throttle", "--quick"], "achieved/s");
    for target in ["audience", "skewed", "unicast"] {
        assert!(
            stdout.lines().any(|line| line.starts_with(target)),
            "no {target} row:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("runs within 10% of their set rate"),
        "{stdout}"
    );
}

#[test]
fn the_ring_benchmark_runs_and_prints_its_table() {
    let stdout = run_bench(&["ring", "--quick"], "max/mean");
    for size in ["3", "10"] {
        assert!(
            stdout
                .lines()
                .any(|line| line.trim_start().starts_with(&format!("{size} "))),
            "no row for {size} members:\n{stdout}"
        );
    }
    assert!(stdout.contains("ring sizes within the targets"), "{stdout}");
}

#[test]
fn the_connections_benchmark_runs_and_prints_its_table() {
    let stdout = run_bench(&["connections", "--quick"], "bytes/conn");
    for connector in ["c0", "c1"] {
        assert!(
            stdout.lines().any(|line| line.starts_with(connector)),
            "no {connector} row:\n{stdout}"
        );
    }
    assert!(stdout.contains("reconnect storm: kill -9"), "{stdout}");
    assert!(stdout.contains("connections/s"), "{stdout}");
}

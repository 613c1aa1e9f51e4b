//! The bench command runs end to end and prints its table. Its figures are not checked here
//! (no timed assertions in the test suite): `make bench` is where they count.
//!
//! Needs the `ringpush` binary beside this package's (`cargo test --workspace` builds it; on
//! its own, `cargo build -p ringpush` first), or `RINGPUSH_BIN`.

use std::process::Command;

#[test]
fn the_throttle_benchmark_runs_and_prints_its_table() {
    let output = Command::new(env!("CARGO_BIN_EXE_ringpush-bench"))
        .args(["throttle", "--quick"])
        .output()
        .expect("run ringpush-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // 0: every row within its target, 1: some row outside; 2 or a panic: it could not run.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "ringpush-bench failed ({:?})\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("achieved/s"), "no table header:\n{stdout}");
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

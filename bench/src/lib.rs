//! Benchmarks of a real ringpush deployment, behind the `ringpush-bench` command.
//!
//! Each benchmark starts the platform with the harness (redis-server and `ringpush`
//! processes on free loopback ports, simulated devices in this process), drives it, and
//! prints figures and ratios measured where the work lands: speed targets are checked here,
//! never by timed tests. A benchmark answers its rows and a verdict per row; the command
//! exits non-zero when a row misses its target, so it can be run as a check.
//!
//! - [`throttle`]: does a throttled campaign keep within 10% of its set rate, for an
//!   audience (paced by the connectors) and for a device list (paced by the controller)?
//! - [`ring`]: how evenly the ring spreads devices and how many move on a join or leave
//!   (pure computation, no deployment).
//! - [`connections`]: what idle devices cost a connector (memory, kernel memory, CPU), the
//!   connect rate, and how fast a killed connector's devices come back on their new owners;
//!   [`loadgen`] is the lean load-generator process it starts ([`loadgens`] runs them) and
//!   [`procfs`] reads /proc.
//! - [`fleet`]: simulated devices registered and held online over the connectors.
//! - [`measure`]: achieved rates, one-second windows and lateness from arrival instants.
//!
//! What it does not own: the deployment ([`ringpush_harness`]), assertions in the test suite
//! (its one smoke test checks that the command runs, not its figures). Build with `--release`
//! (`make bench`): debug builds measure the compiler, not the platform.

pub mod connections;
pub mod fleet;
pub mod loadgen;
pub mod loadgens;
pub mod measure;
pub mod procfs;
pub mod ring;
pub mod throttle;

//! Logs (tracing, to stderr so that client commands keep stdout for their JSON) and the
//! Prometheus metrics recorder.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusBuilder;
use tracing_subscriber::EnvFilter;

/// Starts logging at `level` (a tracing filter such as `info` or `ringpush=debug,info`),
/// as text or, with `json`, one JSON object per line.
pub fn init_logs(level: &str, json: bool) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests calling twice) keeps the first subscriber.
    drop(result);
}

/// Bucket bounds of every latency histogram, in seconds: 50 µs to 10 s, about three per
/// decade, so that p50, p99 and p999 can be read (and aggregated across processes).
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Installs the process-wide metrics recorder; answers a renderer for `/metrics`.
pub fn init_metrics() -> ringpush_controller::MetricsRender {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            LATENCY_BUCKETS,
        )
        .expect("bucket bounds are not empty")
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::debug!("a metrics recorder was already installed");
    }
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        })
        .expect("spawn the metrics upkeep thread");
    Arc::new(move || handle.render())
}

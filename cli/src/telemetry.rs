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
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests calling twice) keeps the first subscriber.
    drop(result);
}

/// Installs the process-wide metrics recorder; answers a renderer for `/metrics`.
pub fn init_metrics() -> ringpush_controller::MetricsRender {
    let recorder = PrometheusBuilder::new().build_recorder();
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

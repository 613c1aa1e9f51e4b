//! Devices on the SDK, in the test process, talking to the platform's real processes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringpush_sdk::{AppId, Client, Config};
use tokio::task::JoinHandle;

use super::Platform;

/// What each device's app has been handed, by device id: (message id, seq) in order.
pub type Received = Arc<Mutex<HashMap<String, Vec<(String, u64)>>>>;

/// A device whose app records every message it is handed.
pub struct Device {
    pub id: String,
    pub stats: Arc<dyn Fn() -> ringpush_sdk::Stats + Send + Sync>,
    pub connector_url: Arc<dyn Fn() -> Option<String> + Send + Sync>,
    task: JoinHandle<()>,
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The SDK configuration of a test device of `app`, its state in `state`, reconnecting
/// quickly (50 ms to 800 ms).
pub fn device_config(
    platform: &Platform,
    app: &str,
    client_key: &str,
    state: impl Into<std::path::PathBuf>,
) -> Config {
    let app_id: AppId = app.parse().expect("an app id");
    Config::new(
        &platform.controller_url,
        &platform.dispatcher_url,
        app_id,
        client_key,
    )
    .with_state_file(state)
    .with_backoff(Duration::from_millis(50), Duration::from_millis(800))
}

/// Starts a device (registering it, its state in `dir`) whose messages land in `received`.
pub async fn start_device(
    platform: &Platform,
    app: &str,
    client_key: &str,
    dir: &Path,
    received: &Received,
) -> Device {
    let state = dir.join(format!("device-{}.json", next_number()));
    let config = device_config(platform, app, client_key, state);
    let mut client = Client::start(config).await.expect("device starts");
    let id = client.device_id().to_string();
    received.lock().unwrap().entry(id.clone()).or_default();
    let client_stats = Arc::new(Mutex::new((client.stats(), client.connector_url())));
    let shared = client_stats.clone();
    let sink = received.clone();
    let device_id = id.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                message = client.next_message() => {
                    let message = message.expect("no fatal device error");
                    sink.lock().unwrap().entry(device_id.clone()).or_default().push((message.message_id.clone(), message.seq));
                }
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            *shared.lock().unwrap() = (client.stats(), client.connector_url());
        }
    });
    let for_stats = client_stats.clone();
    let for_url = client_stats;
    Device {
        id,
        stats: Arc::new(move || for_stats.lock().unwrap().0),
        connector_url: Arc::new(move || for_url.lock().unwrap().1.clone()),
        task,
    }
}

/// A number no other call in this test process gets (for unique file names).
pub fn next_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Starts `count` devices (state files in the platform's directory) and waits until every
/// one is connected.
pub async fn start_connected_devices(
    platform: &Platform,
    app: &str,
    client_key: &str,
    count: usize,
    received: &Received,
) -> Vec<Device> {
    let mut devices = Vec::with_capacity(count);
    for _ in 0..count {
        devices.push(start_device(platform, app, client_key, platform.dir.path(), received).await);
    }
    wait_connected(&devices).await;
    devices
}

/// Waits until every device reports a live connection.
pub async fn wait_connected(devices: &[Device]) {
    super::eventually(
        "every device connected",
        Duration::from_secs(30),
        async || devices.iter().all(|d| (d.stats)().connected),
    )
    .await;
}

/// Asserts that every device's app got exactly `expected[device]`, in order, once each.
pub fn assert_exactly_once(received: &Received, expected: &HashMap<String, Vec<String>>) {
    let received = received.lock().unwrap();
    for (device, want) in expected {
        let got: Vec<&str> = received
            .get(device)
            .map(|v| v.iter().map(|(id, _)| id.as_str()).collect())
            .unwrap_or_default();
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        assert_eq!(
            got, want,
            "device {device}: the app's messages differ from those accepted"
        );
    }
}

/// Waits until every device's app has as many messages as `expected` lists for it; on a
/// timeout, says which devices miss which messages.
pub async fn wait_all_received(
    received: &Received,
    expected: &HashMap<String, Vec<String>>,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let missing: Vec<String> = {
            let received = received.lock().unwrap();
            expected
                .iter()
                .filter_map(|(device, want)| {
                    let got: Vec<&str> = received
                        .get(device)
                        .map(|v| v.iter().map(|(id, _)| id.as_str()).collect())
                        .unwrap_or_default();
                    let lacking: Vec<&str> = want
                        .iter()
                        .map(String::as_str)
                        .filter(|id| !got.contains(id))
                        .collect();
                    (!lacking.is_empty()).then(|| format!("{device} lacks {lacking:?}"))
                })
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for every accepted message: {} devices miss some:\n{}",
            missing.len(),
            missing.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

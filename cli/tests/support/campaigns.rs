//! Campaign tests' helpers: SDK devices in a time zone that record when each message arrived
//! (real time, which a test turns into campaign time with the controllers' simulated clock),
//! more controllers on the platform's Redis, and the campaign endpoints.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringpush_controller::clock::SimulatedClock;
use ringpush_sdk::{Client, DeviceAttributes};
use ringpush_store::{RedisStore, Store};
use ringpush_testkit::free_port;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::devices::{device_config, next_number};
use super::{ADMIN_TOKEN, LEASE_TTL_MS, Platform, Proc, eventually, wait_for_port};

/// A message as a device's app was handed it.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub message_id: String,
    pub seq: u64,
    pub campaign_id: Option<String>,
    /// When the app got it, by the real clock (ms since the Unix epoch).
    pub real_ms: i64,
}

/// What each device's app has been handed, by device id, in order.
pub type Arrivals = Arc<Mutex<HashMap<String, Vec<Arrival>>>>;

/// An SDK device whose app records every message with its arrival time.
pub struct TimedDevice {
    pub id: String,
    connected: Arc<Mutex<bool>>,
    task: JoinHandle<()>,
}

impl TimedDevice {
    pub fn connected(&self) -> bool {
        *self.connected.lock().unwrap()
    }
}

impl Drop for TimedDevice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a device that reports `timezone` (none: it reports no zone), its state in the
/// platform's directory, its messages recorded in `arrivals`.
pub async fn start_timed_device(
    platform: &Platform,
    app: &str,
    client_key: &str,
    timezone: Option<&str>,
    arrivals: &Arrivals,
) -> TimedDevice {
    let state = platform
        .dir
        .path()
        .join(format!("timed-device-{}.json", next_number()));
    let attributes = DeviceAttributes {
        timezone: timezone.map(str::to_owned),
        platform: Some("test".to_owned()),
        ..DeviceAttributes::default()
    };
    let config = device_config(platform, app, client_key, state).with_attributes(attributes);
    let mut client = Client::start(config).await.expect("device starts");
    let id = client.device_id().to_string();
    arrivals.lock().unwrap().entry(id.clone()).or_default();
    let connected = Arc::new(Mutex::new(false));
    let (sink, device_id, flag) = (arrivals.clone(), id.clone(), connected.clone());
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                message = client.next_message() => {
                    let message = message.expect("no fatal device error");
                    let arrival = Arrival {
                        message_id: message.message_id,
                        seq: message.seq,
                        campaign_id: message.campaign_id,
                        real_ms: ringpush_store::now_ms(),
                    };
                    sink.lock().unwrap().entry(device_id.clone()).or_default().push(arrival);
                }
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            *flag.lock().unwrap() = client.stats().connected;
        }
    });
    TimedDevice {
        id,
        connected,
        task,
    }
}

/// Waits until every device reports a live connection.
pub async fn wait_timed_connected(devices: &[TimedDevice]) {
    eventually(
        "every device connected",
        Duration::from_secs(30),
        async || devices.iter().all(TimedDevice::connected),
    )
    .await;
}

/// The flags that put a controller's campaigns on `clock`, ticking every `tick_ms`.
pub fn clock_flags(clock: &SimulatedClock, tick_ms: u64) -> Vec<String> {
    vec![
        "--simulated-clock".into(),
        clock.to_string(),
        "--scheduler-tick-ms".into(),
        tick_ms.to_string(),
    ]
}

/// Starts another controller on the platform's Redis (named `name`, its log beside the
/// others) with `extra` flags; answers the process and its URL once it listens.
pub fn start_controller(platform: &Platform, name: &str, extra: &[String]) -> (Proc, String) {
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut args = vec![
        "controller".to_string(),
        "--redis-url".into(),
        platform.redis.url(),
        "--listen".into(),
        address.to_string(),
        "--admin-token".into(),
        ADMIN_TOKEN.into(),
        "--lease-ttl-ms".into(),
        LEASE_TTL_MS.to_string(),
        "--ring-refresh-ms".into(),
        "100".into(),
    ];
    args.extend(extra.iter().cloned());
    let proc = Proc::spawn(name, platform.dir.path(), &args);
    wait_for_port(address, Duration::from_secs(20));
    (proc, format!("http://{address}"))
}

/// The platform's Redis through the store's public API.
pub async fn store(platform: &Platform) -> Arc<dyn Store> {
    Arc::new(
        RedisStore::connect(&platform.redis.url())
            .await
            .expect("the platform's redis"),
    )
}

/// Creates a campaign; answers its view (panics on a non-201).
pub async fn create_campaign(
    platform: &Platform,
    app: &str,
    server_key: &str,
    body: &Value,
) -> Value {
    let (status, view) = platform
        .post(&format!("/v1/apps/{app}/campaigns"), server_key, body, None)
        .await;
    assert_eq!(status, 201, "campaign refused: {view}");
    view
}

/// Waits until the campaign is in `state`, for at most `timeout`.
pub async fn wait_campaign_state(
    platform: &Platform,
    app: &str,
    server_key: &str,
    campaign_id: &str,
    state: &str,
    timeout: Duration,
) {
    let path = format!("/v1/apps/{app}/campaigns/{campaign_id}");
    eventually(
        &format!("campaign {campaign_id} {state}"),
        timeout,
        async || platform.get(&path, server_key).await.1["state"] == state,
    )
    .await;
}

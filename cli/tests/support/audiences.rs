//! Audience tests' helpers: SDK devices with attributes that record every message by stream
//! and can report it opened or clicked, devices registered in bulk and connected as
//! simulated devices to their owners, the audience endpoints, and Redis key listings.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ringpush_harness::sim::SimDevice;
use ringpush_ring::{Member, Ring};
use ringpush_sdk::{AppId, Client, DeviceAttributes, Identity, Stream};

use super::devices::device_config;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::{Platform, eventually};

/// Registrations and connections in flight at once.
const CONCURRENCY: usize = 64;

/// An app and its keys.
#[derive(Debug, Clone)]
pub struct App {
    pub id: String,
    pub server_key: String,
    pub client_key: String,
}

impl App {
    pub async fn create(platform: &Platform) -> App {
        let (id, server_key, client_key) = platform.create_app().await;
        App {
            id,
            server_key,
            client_key,
        }
    }
}

/// A message as a device's app was handed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handed {
    pub stream: Stream,
    pub message_id: String,
    pub seq: u64,
}

/// What each device's app has been handed, by device id, in order.
pub type Log = Arc<Mutex<HashMap<String, Vec<Handed>>>>;

/// What a device's app does with each message it is handed, beyond recording it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reaction {
    pub open: bool,
    pub click: bool,
}

/// An SDK device in the test process.
pub struct AudienceDevice {
    pub id: String,
    state: Arc<Mutex<ringpush_sdk::Stats>>,
    task: JoinHandle<()>,
}

impl AudienceDevice {
    pub fn stats(&self) -> ringpush_sdk::Stats {
        *self.state.lock().unwrap()
    }

    /// Stops the device (its socket closes); its state file stays for a restart.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for AudienceDevice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Registers a device through the SDK (the same call a device makes on its first start).
pub async fn register_identity(platform: &Platform, app: &App) -> Identity {
    let app_id: AppId = app.id.parse().unwrap();
    ringpush_sdk::register(&platform.controller_url, app_id, &app.client_key)
        .await
        .expect("registration")
}

/// Starts (or restarts, with the same `state_file`) an SDK device with `identity` that
/// reports `attributes` (none: it reports none), records what its app is handed in `log`,
/// and reacts to each message as `reaction` says.
pub async fn start_audience_device(
    platform: &Platform,
    identity: Identity,
    state_file: PathBuf,
    attributes: Option<DeviceAttributes>,
    reaction: Reaction,
    log: &Log,
) -> AudienceDevice {
    let app = identity.app_id.to_string();
    let mut config = device_config(platform, &app, "unused: the identity is given", state_file)
        .with_identity(identity);
    if let Some(attributes) = attributes {
        config = config.with_attributes(attributes);
    }
    let mut client = Client::start(config).await.expect("device starts");
    let id = client.device_id().to_string();
    log.lock().unwrap().entry(id.clone()).or_default();
    let state = Arc::new(Mutex::new(client.stats()));
    let (sink, device_id, shared) = (log.clone(), id.clone(), state.clone());
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                message = client.next_message() => {
                    let message = message.expect("no fatal device error");
                    if reaction.open {
                        client.report_opened(&message);
                    }
                    if reaction.click {
                        client.report_clicked(&message);
                    }
                    let handed = Handed {
                        stream: message.stream,
                        message_id: message.message_id,
                        seq: message.seq,
                    };
                    sink.lock().unwrap().entry(device_id.clone()).or_default().push(handed);
                }
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            *shared.lock().unwrap() = client.stats();
        }
    });
    AudienceDevice { id, state, task }
}

/// Waits until every device reports a live connection.
pub async fn wait_connected(devices: &[&AudienceDevice]) {
    eventually(
        "every device connected",
        Duration::from_secs(30),
        async || devices.iter().all(|d| d.stats().connected),
    )
    .await;
}

/// The message ids `device`'s app was handed on `stream`, in order.
pub fn handed(log: &Log, device: &str, stream: Stream) -> Vec<String> {
    log.lock().unwrap()[device]
        .iter()
        .filter(|h| h.stream == stream)
        .map(|h| h.message_id.clone())
        .collect()
}

/// The platform's connectors as ring members, in the platform's order.
pub fn members(platform: &Platform) -> Vec<Member> {
    platform
        .connectors
        .iter()
        .map(|c| Member {
            id: c.id.clone(),
            device_url: format!("ws://{}/v1/connect", c.device_addr),
            grpc_url: format!("http://{}", c.grpc_addr),
        })
        .collect()
}

/// The index (in the platform's order) of the connector that owns `device` on the ring of
/// every connector.
pub fn owner_index(platform: &Platform, device: &str) -> usize {
    let members = members(platform);
    let ring = Ring::new(members.clone(), ringpush_ring::DEFAULT_VNODES);
    let owner = ring.owner(device.parse().unwrap()).unwrap();
    members.iter().position(|m| m.id == owner.id).unwrap()
}

/// Registers `count` devices through the REST API, `CONCURRENCY` at a time; answers (id,
/// token) pairs and how long it took.
pub async fn register_many(
    platform: &Platform,
    app: &App,
    count: usize,
) -> (Vec<(String, String)>, Duration) {
    let started = Instant::now();
    let path = format!("/v1/apps/{}/devices", app.id);
    let devices = futures_util::stream::iter(0..count)
        .map(|_| async {
            let (status, body) = platform
                .post(&path, &app.client_key, &json!({}), None)
                .await;
            assert_eq!(status, 201, "registration refused: {body}");
            (
                body["device_id"].as_str().unwrap().to_owned(),
                body["device_token"].as_str().unwrap().to_owned(),
            )
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    (devices, started.elapsed())
}

/// Connects each device as a simulated device to the connector that owns it (Hello with
/// timeline position 0: from its registration), `CONCURRENCY` at a time, and waits for each
/// Welcome; answers them in `devices` order and how many each connector holds.
pub async fn connect_sims(
    platform: &Platform,
    devices: &[(String, String)],
) -> (Vec<SimDevice>, Vec<usize>) {
    let members = members(platform);
    let ring = Ring::new(members.clone(), ringpush_ring::DEFAULT_VNODES);
    let mut per_connector = vec![0; members.len()];
    let plan: Vec<(String, &str, &str)> = devices
        .iter()
        .map(|(id, token)| {
            let owner = ring.owner(id.parse().unwrap()).unwrap();
            let index = members.iter().position(|m| m.id == owner.id).unwrap();
            per_connector[index] += 1;
            (owner.device_url.clone(), id.as_str(), token.as_str())
        })
        .collect();
    let sims = futures_util::stream::iter(plan)
        .map(|(url, id, token)| async move {
            let device = SimDevice::connect(&url, id, token, 0).await;
            device.welcomed().await;
            device
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    (sims, per_connector)
}

/// `POST /v1/apps/{app}/audience/estimate` with `target`; answers the reach.
pub async fn estimate(platform: &Platform, app: &App, target: &Value) -> u64 {
    let path = format!("/v1/apps/{}/audience/estimate", app.id);
    let (status, body) = platform.post(&path, &app.server_key, target, None).await;
    assert_eq!(status, 200, "estimate of {target} refused: {body}");
    body["reach"].as_u64().unwrap()
}

/// Waits until the estimate of `target` is `reach` (the registry learns attributes from the
/// connectors in batches).
pub async fn wait_estimate(platform: &Platform, app: &App, target: &Value, reach: u64) {
    eventually(
        &format!("an estimate of {reach} for {target}"),
        Duration::from_secs(20),
        async || estimate(platform, app, target).await == reach,
    )
    .await;
}

/// `POST /v1/apps/{app}/messages` with `body` (a target, data, ttl); answers the JSON answer
/// (panics on a non-200).
pub async fn send(platform: &Platform, app: &App, body: &Value) -> Value {
    let path = format!("/v1/apps/{}/messages", app.id);
    let (status, answer) = platform.post(&path, &app.server_key, body, None).await;
    assert_eq!(status, 200, "send of {body} refused: {answer}");
    answer
}

/// GETs the statistics at `path` (of a message or a campaign).
pub async fn stats(platform: &Platform, app: &App, path: &str) -> Value {
    let (status, body) = platform.get(path, &app.server_key).await;
    assert_eq!(status, 200, "stats at {path}: {body}");
    body
}

/// Every key in the platform's Redis.
pub fn redis_keys(platform: &Platform) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut cursor = "0".to_owned();
    loop {
        let answer = platform
            .redis
            .command(&["SCAN", &cursor, "COUNT", "5000"])
            .expect("SCAN answers");
        let mut lines = answer.lines();
        cursor = lines.next().unwrap_or("0").to_owned();
        keys.extend(lines.map(str::to_owned));
        if cursor == "0" {
            return keys;
        }
    }
}

/// The platform's Redis `DBSIZE`.
pub fn db_size(platform: &Platform) -> u64 {
    platform
        .redis
        .command(&["DBSIZE"])
        .expect("DBSIZE answers")
        .parse()
        .unwrap()
}

/// The totals of a stats answer, by counter.
pub fn totals(stats: &Value) -> BTreeMap<String, u64> {
    stats["totals"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(counter, n)| (counter.clone(), n.as_u64().unwrap()))
        .collect()
}

/// Checks that the totals add up and that each counted series sums to its total.
/// Waits up to `timeout` until the statistics at `path` read `expected` (in the order of
/// [`counts`]), then checks that they add up.
pub async fn wait_for_counts(
    platform: &Platform,
    app: &App,
    what: &str,
    path: &str,
    expected: [u64; 8],
    timeout: Duration,
) {
    let read = async || counts(&stats(platform, app, path).await) == expected;
    eventually(&format!("the {what} at {expected:?}"), timeout, read).await;
    assert_adds_up(&stats(platform, app, path).await, what);
}

pub fn assert_adds_up(stats: &Value, what: &str) {
    let t = totals(stats);
    assert_eq!(
        t["targeted"],
        t["delivered"] + t["pending"] + t["expired"] + t["failed"],
        "{what}: targeted = delivered + pending + expired + failed: {t:?}"
    );
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    for minute in stats["per_minute"].as_array().unwrap() {
        for (counter, n) in minute["counters"].as_object().unwrap() {
            *sums.entry(counter.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    for counter in ["targeted", "delivered", "acked", "opened", "clicked"] {
        assert_eq!(
            sums.get(counter).copied().unwrap_or(0),
            t[counter],
            "{what}: the per-minute series of {counter} sums to its total"
        );
    }
}

/// The totals as (targeted, delivered, acked, opened, clicked, pending, expired, failed).
pub fn counts(stats: &Value) -> [u64; 8] {
    let t = totals(stats);
    [
        "targeted",
        "delivered",
        "acked",
        "opened",
        "clicked",
        "pending",
        "expired",
        "failed",
    ]
    .map(|counter| t[counter])
}

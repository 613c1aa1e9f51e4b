//! The chaos suite: under a steady load of sends through the REST API, every kind of process
//! is killed in turn (kill -9 of a connector, of the controller, of the dispatcher, and of
//! Redis, which restarts with its append-only file), a connector is cut off from Redis for
//! a while, a connector whose clock runs 30 s behind joins, and one whose clock runs 30 s
//! ahead joins and is killed. After each fault every device must be connected again and
//! have every message accepted so far within `RECOVERY_LIMIT`; at the end every message the
//! API accepted must have reached its device's app exactly once (the SDK drops the
//! redeliveries), in order, and nothing else.
//!
//! It prints one line per fault and the counts, `chaos: sent=… accepted=… delivered=…
//! duplicates_suppressed=… lost=0`; `cargo test -p ringpush --test chaos -- --nocapture`
//! shows them. `sent` counts every message put in a request, retries included; `accepted`
//! the message ids the API answered; `delivered` the messages the apps were handed;
//! `duplicates_suppressed` the redeliveries the SDKs dropped; `lost` the accepted ids no app
//! got.
//!
//! Small by default (for CI, well under two minutes on two cores); bigger with
//! `CHAOS_DEVICES` (devices, default 50), `CHAOS_RATE` (messages per device per second,
//! default 2), `CHAOS_SECONDS` (seconds of steady load before each fault, default 2) and
//! `CHAOS_ROUNDS` (times through the whole list of faults, default 1).

mod support;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use ringpush_harness::clock_skew::skewed_clock_env;
use serde_json::{Value, json};
use support::devices::{
    Device, Received, assert_exactly_once, start_connected_devices, wait_all_received,
};
use support::{ConnectorOptions, Platform, PlatformOptions, TcpProxy, eventually};
use tokio::task::JoinHandle;

/// Devices in one send request.
const DEVICES_PER_REQUEST: usize = 25;
/// How long a killed controller, dispatcher or Redis stays down before it restarts.
const DOWNTIME: Duration = Duration::from_secs(1);
/// How long the cut-off connector stays cut off from Redis: several lease TTLs.
const CUT_OFF_FOR: Duration = Duration::from_secs(5);
/// How far off the skewed connectors' wall clocks are: far more than a lease's TTL.
const CLOCK_SKEW_SECONDS: i64 = 30;
/// How long after a fault every device must be connected again and have every message
/// accepted so far (a few seconds on two busy cores).
const RECOVERY_LIMIT: Duration = Duration::from_secs(20);
/// How long after the load stops the apps may take to get the last messages.
const FINAL_DELIVERY_LIMIT: Duration = Duration::from_secs(45);
/// How long one logical send may keep failing before the suite gives up on the platform.
const SEND_LIMIT: Duration = Duration::from_secs(40);

/// How big a run is (see the file's doc).
#[derive(Debug, Clone, Copy)]
struct Size {
    devices: usize,
    messages_per_device_per_second: u32,
    calm: Duration,
    rounds: usize,
}

impl Size {
    fn from_env() -> Size {
        fn number(name: &str, default: u64) -> u64 {
            match std::env::var(name) {
                Ok(text) => text
                    .parse()
                    .unwrap_or_else(|_| panic!("{name} must be a whole number, not {text:?}")),
                Err(_) => default,
            }
        }
        Size {
            devices: number("CHAOS_DEVICES", 50) as usize,
            messages_per_device_per_second: number("CHAOS_RATE", 2).max(1) as u32,
            calm: Duration::from_secs(number("CHAOS_SECONDS", 2)),
            rounds: number("CHAOS_ROUNDS", 1).max(1) as usize,
        }
    }
}

/// What the sender did, shared with the test.
#[derive(Debug, Default)]
struct Ledger {
    /// Messages put in send requests (one per device of a request), retries included.
    sent: u64,
    /// The ids the API answered, by device, in the order they were accepted.
    accepted: HashMap<String, Vec<String>>,
    /// Requests that got no 2xx answer (no connection, a timeout, a 5xx) and were retried.
    failed_requests: u64,
    /// How the last failed request failed.
    last_failure: Option<String>,
}

type SharedLedger = Arc<Mutex<Ledger>>;

/// The sender: one logical send after the other, each to `DEVICES_PER_REQUEST` devices
/// under an idempotency key of its own, retried with the same key until the API accepts
/// it (so a retry after a lost answer adds nothing and each device's messages are accepted
/// in the order sent).
struct Sender {
    ledger: SharedLedger,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Sender {
    fn start(
        controller_url: &str,
        app: &str,
        server_key: &str,
        devices: Vec<String>,
        rate: u32,
    ) -> Sender {
        let ledger = SharedLedger::default();
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        let url = format!("{controller_url}/v1/apps/{app}/messages");
        let task = tokio::spawn(send_steadily(
            http,
            url,
            server_key.to_owned(),
            devices,
            rate,
            ledger.clone(),
            stop.clone(),
        ));
        Sender { ledger, stop, task }
    }

    fn failed_requests(&self) -> u64 {
        self.ledger.lock().unwrap().failed_requests
    }

    /// What has been accepted so far.
    fn accepted(&self) -> HashMap<String, Vec<String>> {
        self.ledger.lock().unwrap().accepted.clone()
    }

    /// Stops after the round under way is accepted; answers the ledger.
    async fn finish(self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        match tokio::time::timeout(SEND_LIMIT * 2, self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => std::panic::resume_unwind(error.into_panic()),
            Err(_) => panic!("the sender did not finish its last round"),
        }
        std::mem::take(&mut *self.ledger.lock().unwrap())
    }
}

/// One round every `1 / rate` seconds: a message to every device.
async fn send_steadily(
    http: reqwest::Client,
    url: String,
    server_key: String,
    devices: Vec<String>,
    rate: u32,
    ledger: SharedLedger,
    stop: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 0.. {
        tick.tick().await;
        if stop.load(Ordering::Relaxed) {
            return;
        }
        for (index, chunk) in devices.chunks(DEVICES_PER_REQUEST).enumerate() {
            let body = json!({ "device_ids": chunk, "data": format!("round {round}") });
            let key = format!("chaos-{round}-{index}");
            let ids = send_until_accepted(&http, &url, &server_key, &key, &body, &ledger).await;
            assert_eq!(ids.len(), chunk.len(), "one id per device: {ids:?}");
            let mut ledger = ledger.lock().unwrap();
            for (device, id) in chunk.iter().zip(ids) {
                ledger.accepted.entry(device.clone()).or_default().push(id);
            }
        }
    }
}

/// Posts one send until it is accepted; answers its message ids. A transient failure (no
/// connection, a timeout, a 5xx) is retried under the same key; any other answer is a bug.
async fn send_until_accepted(
    http: &reqwest::Client,
    url: &str,
    server_key: &str,
    idempotency_key: &str,
    body: &Value,
    ledger: &SharedLedger,
) -> Vec<String> {
    let devices = body["device_ids"].as_array().map_or(0, Vec::len) as u64;
    let started = Instant::now();
    loop {
        ledger.lock().unwrap().sent += devices;
        let answer = http
            .post(url)
            .bearer_auth(server_key)
            .header("Idempotency-Key", idempotency_key)
            .json(body)
            .send()
            .await;
        let failure = match answer {
            Ok(response) if response.status().is_success() => {
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                match answer["message_ids"].as_array() {
                    Some(ids) => {
                        return ids
                            .iter()
                            .map(|id| id.as_str().expect("a message id").to_owned())
                            .collect();
                    }
                    None => format!("a 2xx answer without message ids: {answer}"),
                }
            }
            Ok(response) if response.status().is_server_error() => {
                let status = response.status();
                format!("{status}: {}", response.text().await.unwrap_or_default())
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                panic!("send {idempotency_key} refused with {status}: {text}");
            }
            Err(error) => format!("no answer: {error}"),
        };
        {
            let mut ledger = ledger.lock().unwrap();
            ledger.failed_requests += 1;
            ledger.last_failure = Some(failure.clone());
        }
        assert!(
            started.elapsed() < SEND_LIMIT,
            "send {idempotency_key} not accepted within {SEND_LIMIT:?}; last: {failure}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The faults, in the order they strike.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillConnector,
    KillController,
    KillDispatcher,
    KillRedis,
    CutConnectorFromRedis,
    /// A connector whose clock runs behind joins: it must enter everyone's ring.
    ConnectorClockBehind,
    /// A connector whose clock runs ahead joins and is killed: it must leave everyone's
    /// ring, so its devices can go elsewhere.
    ConnectorClockAhead,
}

const FAULTS: [Fault; 7] = [
    Fault::KillConnector,
    Fault::KillController,
    Fault::KillDispatcher,
    Fault::KillRedis,
    Fault::CutConnectorFromRedis,
    Fault::ConnectorClockBehind,
    Fault::ConnectorClockAhead,
];

/// The deployment under test, and what the faults need to reach into it.
struct Chaos {
    platform: Platform,
    /// Between one connector (`proxied_connector`) and Redis; cutting it cuts that one off.
    redis_proxy: TcpProxy,
    proxied_connector: usize,
}

impl Chaos {
    /// Strikes `fault` and heals it; answers what was done, for the report.
    async fn strike(&mut self, fault: Fault) -> String {
        let platform = &mut self.platform;
        match fault {
            Fault::KillConnector => {
                // The oldest live connector that is not the proxied one.
                let victim = (0..platform.connectors.len())
                    .find(|&index| {
                        index != self.proxied_connector
                            && platform.connectors[index].proc.is_running()
                    })
                    .expect("a live connector besides the proxied one");
                let id = platform.connectors[victim].id.clone();
                platform.connectors[victim].proc.kill9();
                // Its devices go to the others once its lease lapses; a new one joins.
                let live = platform.live_connectors();
                platform.wait_for_ring_size(live).await;
                let replacement = platform.add_connector().await;
                format!(
                    "kill -9 connector {id}, replaced by {}",
                    platform.connectors[replacement].id
                )
            }
            Fault::KillController => {
                platform.controller.kill9();
                tokio::time::sleep(DOWNTIME).await;
                platform.restart_controller().await;
                format!("kill -9 the controller, restarted after {DOWNTIME:?}")
            }
            Fault::KillDispatcher => {
                platform.dispatcher.kill9();
                tokio::time::sleep(DOWNTIME).await;
                platform.restart_dispatcher().await;
                format!("kill -9 the dispatcher, restarted after {DOWNTIME:?}")
            }
            Fault::KillRedis => {
                // The testkit's server calls block: the sender goes on on the other thread.
                let process_before = tokio::task::block_in_place(|| redis_process(platform));
                tokio::task::block_in_place(|| platform.redis.kill9());
                tokio::time::sleep(DOWNTIME).await;
                tokio::task::block_in_place(|| platform.redis.restart());
                let process_after = tokio::task::block_in_place(|| redis_process(platform));
                assert_ne!(process_before, process_after, "Redis was not restarted");
                format!("kill -9 Redis, restarted after {DOWNTIME:?} from its append-only file")
            }
            Fault::CutConnectorFromRedis => {
                let id = platform.connectors[self.proxied_connector].id.clone();
                self.redis_proxy.cut();
                tokio::time::sleep(CUT_OFF_FOR).await;
                self.redis_proxy.restore();
                format!("connector {id} cut off from Redis for {CUT_OFF_FOR:?}")
            }
            Fault::ConnectorClockBehind => {
                let Some(joined) = add_skewed_connector(platform, -CLOCK_SKEW_SECONDS).await else {
                    return skipped_clock_skew();
                };
                format!(
                    "connector {} joins with its clock {CLOCK_SKEW_SECONDS} s behind",
                    platform.connectors[joined].id
                )
            }
            Fault::ConnectorClockAhead => {
                let Some(joined) = add_skewed_connector(platform, CLOCK_SKEW_SECONDS).await else {
                    return skipped_clock_skew();
                };
                // Long enough for the ring's move to reach its devices.
                tokio::time::sleep(Duration::from_secs(2)).await;
                platform.connectors[joined].proc.kill9();
                let live = platform.live_connectors();
                platform.wait_for_ring_size(live).await;
                format!(
                    "connector {} joins with its clock {CLOCK_SKEW_SECONDS} s ahead, then kill -9",
                    platform.connectors[joined].id
                )
            }
        }
    }
}

/// The id of the Redis server's process.
fn redis_process(platform: &Platform) -> String {
    let info = platform
        .redis
        .command(&["INFO", "server"])
        .expect("Redis answers");
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .expect("INFO server names the process")
        .trim()
        .to_owned()
}

/// Reconnects and redirects followed, summed over the devices.
fn connection_moves(devices: &[Device]) -> u64 {
    devices
        .iter()
        .map(|device| {
            let stats = (device.stats)();
            stats.reconnects + stats.redirects_followed
        })
        .sum()
}

/// Starts a connector whose wall clock is `seconds` off; answers its index, or `None` when
/// libfaketime is not installed.
async fn add_skewed_connector(platform: &mut Platform, seconds: i64) -> Option<usize> {
    let env = skewed_clock_env(seconds)?;
    let options = ConnectorOptions {
        env,
        ..ConnectorOptions::default()
    };
    Some(platform.add_connector_with(options).await)
}

/// Says (once per fault) that a clock fault was skipped, and why.
fn skipped_clock_skew() -> String {
    println!(
        "chaos: SKIPPED a clock skew: libfaketime not found (apt-get install faketime, or set \
         RINGPUSH_LIBFAKETIME)"
    );
    "clock skew skipped (no libfaketime)".to_owned()
}

/// Waits until every device is connected and every device's app has every message
/// accepted so far.
async fn wait_recovered(devices: &[Device], received: &Received, sender: &Sender) {
    eventually("every device connected again", RECOVERY_LIMIT, async || {
        devices.iter().all(|device| (device.stats)().connected)
    })
    .await;
    wait_all_received(received, &sender.accepted(), RECOVERY_LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_message_reaches_its_app_exactly_once_through_every_fault() {
    let size = Size::from_env();
    let started = Instant::now();
    let mut platform = Platform::start_with(PlatformOptions {
        connectors: 0,
        redis_args: ["--appendonly", "yes", "--appendfsync", "always"]
            .map(String::from)
            .to_vec(),
        ..PlatformOptions::default()
    })
    .await;
    platform.add_connector().await;
    let redis_address = format!("127.0.0.1:{}", platform.redis.port())
        .parse()
        .unwrap();
    let redis_proxy = TcpProxy::start(redis_address).await;
    let proxied_connector = platform
        .add_connector_with(ConnectorOptions {
            redis_url: Some(redis_proxy.redis_url()),
            ..ConnectorOptions::default()
        })
        .await;
    let (app, server_key, client_key) = platform.create_app().await;
    let received = Received::default();
    let devices =
        start_connected_devices(&platform, &app, &client_key, size.devices, &received).await;
    let device_ids: Vec<String> = devices.iter().map(|device| device.id.clone()).collect();
    let mut chaos = Chaos {
        platform,
        redis_proxy,
        proxied_connector,
    };
    println!(
        "chaos: {} devices, {} messages per device per second, {:?} calm before each fault, {} round(s)",
        size.devices, size.messages_per_device_per_second, size.calm, size.rounds
    );

    let sender = Sender::start(
        &chaos.platform.controller_url,
        &app,
        &server_key,
        device_ids,
        size.messages_per_device_per_second,
    );
    for _ in 0..size.rounds {
        for fault in FAULTS {
            tokio::time::sleep(size.calm).await;
            let failed_before = sender.failed_requests();
            let moves_before = connection_moves(&devices);
            let struck = Instant::now();
            let what = chaos.strike(fault).await;
            let healed = struck.elapsed();
            wait_recovered(&devices, &received, &sender).await;
            println!(
                "chaos: {what}: healed after {:.1} s; every device connected and caught up {:.1} s after the fault; {} reconnects and redirects; {} send requests failed and were retried",
                healed.as_secs_f64(),
                struck.elapsed().as_secs_f64(),
                connection_moves(&devices) - moves_before,
                sender.failed_requests() - failed_before,
            );
        }
    }
    tokio::time::sleep(size.calm).await;
    let ledger = sender.finish().await;

    // Every accepted message reaches its app, or the wait says which are missing.
    let accepted_count: usize = ledger.accepted.values().map(Vec::len).sum();
    let wait_result = AssertUnwindSafe(wait_all_received(
        &received,
        &ledger.accepted,
        FINAL_DELIVERY_LIMIT,
    ))
    .catch_unwind()
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // room for a stray duplicate to show
    let (delivered, lost) = {
        let received = received.lock().unwrap();
        let delivered: usize = received.values().map(Vec::len).sum();
        let lost: usize = ledger
            .accepted
            .iter()
            .map(|(device, ids)| {
                let got = received.get(device);
                ids.iter()
                    .filter(|id| got.is_none_or(|got| !got.iter().any(|(got, _)| got == *id)))
                    .count()
            })
            .sum();
        (delivered, lost)
    };
    let duplicates_suppressed: u64 = devices
        .iter()
        .map(|device| (device.stats)().duplicates_dropped)
        .sum();
    println!(
        "chaos: sent={} accepted={accepted_count} delivered={delivered} duplicates_suppressed={duplicates_suppressed} lost={lost} ({} send requests retried; {:.0} s)",
        ledger.sent,
        ledger.failed_requests,
        started.elapsed().as_secs_f64()
    );
    if let Err(panic) = wait_result {
        std::panic::resume_unwind(panic);
    }
    assert_eq!(lost, 0, "accepted messages never reached their app");
    assert_exactly_once(&received, &ledger.accepted);
    assert_eq!(
        delivered, accepted_count,
        "the apps were handed messages nobody sent"
    );
    assert!(accepted_count > 0, "nothing was accepted");
    if let Some(failure) = &ledger.last_failure {
        println!("chaos: the last failed send request: {failure}");
    }
}

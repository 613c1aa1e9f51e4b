//! Three regions on one machine, each in its own network namespace with real latency between
//! them (deploy/local/three-regions.sh: round trips cn–us 80 ms, cn–eu 90 ms, us–eu 70 ms),
//! each with its own redis-server, controller, dispatcher and connector. The test process
//! plays the devices and the senders from the default namespace, which reaches every region
//! without added latency (a device is near the region it connects to).
//!
//! One test runs the scenarios in turn on one deployment (starting three regions takes a
//! few seconds, and two deployments would need two address ranges):
//! 1. a push sent in one region to a device connected in another arrives in about one
//!    inter-region round trip (the figures are printed);
//! 2. read-your-writes: right after region A answers 200, the device connecting to region B
//!    or C receives the message, 1,000 trials;
//! 3. a device that roams between regions in the middle of a stream loses nothing and its
//!    app sees no duplicate;
//! 4. a region cut off from the others for 30 seconds: every send to its devices is still
//!    accepted (held in the sender's region), and after the heal every message arrives, once
//!    and in order.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ringpush_sdk::{AppId, Client, Config, Identity};
use serde_json::{Value, json};

const TRIALS: usize = 1_000;
const TRIALS_IN_FLIGHT: usize = 25;
const ROAMING_MESSAGES: usize = 300;

/// One region as the launcher prints it.
#[derive(Debug, Clone)]
struct Region {
    name: String,
    controller: String,
    dispatcher: String,
}

/// A running three-region deployment; stopped on drop.
struct Deployment {
    regions: Vec<Region>,
    admin_token: String,
    env: Vec<(&'static str, String)>,
    _dir: tempfile::TempDir,
}

fn launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/three-regions.sh")
}

impl Deployment {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = vec![
            ("RINGPUSH_BIN", env!("CARGO_BIN_EXE_ringpush").to_owned()),
            ("RINGPUSH_REGIONS_PREFIX", "rpt".to_owned()),
            ("RINGPUSH_REGIONS_OCTET", "78".to_owned()),
            (
                "RINGPUSH_REGIONS_DIR",
                dir.path().join("regions").display().to_string(),
            ),
        ];
        // A deployment left over by an earlier, killed run of this test.
        let _ = run(&env, &["stop"]);
        let output = run(&env, &["start"]);
        if !output.status.success() {
            let _ = run(&env, &["stop"]);
            panic!(
                "three-regions.sh start failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let status: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "start printed no JSON ({error}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        let regions = status["regions"]
            .as_array()
            .expect("regions")
            .iter()
            .map(|region| Region {
                name: region["name"].as_str().expect("name").to_owned(),
                controller: region["controller"]
                    .as_str()
                    .expect("controller")
                    .to_owned(),
                dispatcher: region["dispatcher"]
                    .as_str()
                    .expect("dispatcher")
                    .to_owned(),
            })
            .collect();
        let admin_token = status["admin_token"].as_str().expect("token").to_owned();
        Self {
            regions,
            admin_token,
            env,
            _dir: dir,
        }
    }

    fn region(&self, name: &str) -> &Region {
        self.regions
            .iter()
            .find(|region| region.name == name)
            .unwrap_or_else(|| panic!("no region {name}"))
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let output = run(&self.env, &["stop"]);
        if !output.status.success() {
            eprintln!(
                "three-regions.sh stop: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

fn run(env: &[(&'static str, String)], args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(launcher())
        .args(args)
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .output()
        .expect("run three-regions.sh")
}

/// An app, created in one region and valid in all.
#[derive(Debug, Clone)]
struct App {
    id: AppId,
    server_key: String,
    client_key: String,
}

async fn create_app(http: &reqwest::Client, region: &Region, admin_token: &str) -> App {
    let response = http
        .post(format!("{}/v1/apps", region.controller))
        .bearer_auth(admin_token)
        .json(&json!({ "name": "regions" }))
        .send()
        .await
        .expect("controller answers");
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("json");
    App {
        id: body["app_id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("app id"),
        server_key: body["server_key"].as_str().expect("key").to_owned(),
        client_key: body["client_key"].as_str().expect("key").to_owned(),
    }
}

/// Sends `data` to one device through `region`'s controller; panics unless it answers 200.
async fn send(http: &reqwest::Client, region: &Region, app: &App, device: &str, data: &str) {
    send_answer(http, region, app, device, data).await;
}

/// [`send`], answering the controller's JSON answer.
async fn send_answer(
    http: &reqwest::Client,
    region: &Region,
    app: &App,
    device: &str,
    data: &str,
) -> Value {
    let response = http
        .post(format!("{}/v1/apps/{}/messages", region.controller, app.id))
        .bearer_auth(&app.server_key)
        .json(&json!({ "device_ids": [device], "data": data }))
        .send()
        .await
        .expect("controller answers");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "send through {} refused: {body}", region.name);
    serde_json::from_str(&body).expect("a JSON answer")
}

/// An SDK device of `app` connecting through `dispatcher` (reconnecting quickly).
fn device_config(
    app: &App,
    controller: &Region,
    dispatcher: &Region,
    identity: Identity,
) -> Config {
    Config::new(
        &controller.controller,
        &dispatcher.dispatcher,
        app.id,
        &app.client_key,
    )
    .with_identity(identity)
    .with_backoff(Duration::from_millis(50), Duration::from_millis(800))
}

async fn next_data(client: &mut Client, within: Duration) -> Option<(String, u64)> {
    let message = tokio::time::timeout(within, client.next_message())
        .await
        .ok()?
        .ok()?;
    Some((
        String::from_utf8_lossy(&message.data).into_owned(),
        message.seq,
    ))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_regions_with_real_latency() {
    let deployment = Deployment::start();
    let http = reqwest::Client::new();
    let app = create_app(&http, deployment.region("cn"), &deployment.admin_token).await;
    cross_region_latency(&deployment, &http, &app).await;
    read_your_writes(&deployment, &http, &app).await;
    roaming_mid_stream(&deployment, &http, &app).await;
    region_cut_off(&deployment, &http, &app).await;
}

/// Scenario 1. Home us, connected in eu, sent from cn: the send writes the inbox in us (cn–us 80 ms)
/// and reads the presence there at the same time, then hands the message to eu's connector
/// over its HTTP/2 channel (cn–eu 90 ms, half of it one way).
async fn cross_region_latency(deployment: &Deployment, http: &reqwest::Client, app: &App) {
    let (cn, us, eu) = (
        deployment.region("cn"),
        deployment.region("us"),
        deployment.region("eu"),
    );
    let identity = ringpush_sdk::register(&us.controller, app.id, &app.client_key)
        .await
        .expect("register in us");
    let device = identity.device_id.to_string();
    let mut client = Client::start(device_config(app, us, eu, identity))
        .await
        .expect("device starts");
    // The first sends open the channels (Redis connections, HTTP/2 to eu's connector).
    for warm in 0..3 {
        send(http, cn, app, &device, &format!("warm {warm}")).await;
        next_data(&mut client, Duration::from_secs(10))
            .await
            .expect("warm-up message arrives");
    }
    let mut latencies = Vec::new();
    for round in 0..30 {
        let data = format!("timed {round}");
        let started = Instant::now();
        let answer = async {
            send(http, cn, app, &device, &data).await;
            started.elapsed()
        };
        let arrival = async {
            let got = next_data(&mut client, Duration::from_secs(10)).await;
            (got, started.elapsed())
        };
        let (answered, (got, arrived)) = tokio::join!(answer, arrival);
        let (got, _) = got.expect("timed message arrives");
        assert_eq!(got, data);
        latencies.push((answered, arrived));
    }
    client.close().await;
    let mut answered: Vec<Duration> = latencies.iter().map(|l| l.0).collect();
    let mut arrived: Vec<Duration> = latencies.iter().map(|l| l.1).collect();
    answered.sort();
    arrived.sort();
    println!(
        "cross-region push (home us, connected eu, sent from cn; round trips cn-us 80 ms, \
         cn-eu 90 ms), {} sends: cn answered 200 after p50 {:?} / max {:?}; the device had it \
         after p50 {:?} / p90 {:?} / max {:?}",
        latencies.len(),
        percentile(&answered, 0.5),
        answered[answered.len() - 1],
        percentile(&arrived, 0.5),
        percentile(&arrived, 0.9),
        arrived[arrived.len() - 1],
    );
}

/// Scenario 2. Each trial: a device (home: any region) gets a message sent through region A, and right
/// after A answers 200 it connects to region B or C for the first time: it must get it.
async fn read_your_writes(deployment: &Deployment, http: &reqwest::Client, app: &App) {
    let regions = &deployment.regions;
    let started = Instant::now();
    let identities: Vec<Identity> = futures_util::stream::iter(0..TRIALS)
        .map(|trial| {
            let home = &regions[trial % 3];
            async move {
                ringpush_sdk::register(&home.controller, app.id, &app.client_key)
                    .await
                    .expect("register")
            }
        })
        .buffered(TRIALS_IN_FLIGHT)
        .collect()
        .await;
    let trials = identities.into_iter().enumerate().map(|(trial, identity)| {
        let sender = &regions[(trial / 3) % 3];
        let other = (trial / 9) % 2 + 1;
        let reader = &regions[((trial / 3) % 3 + other) % 3];
        async move {
            let device = identity.device_id.to_string();
            let data = format!("trial {trial}");
            send(http, sender, app, &device, &data).await;
            let mut client = Client::start(device_config(app, reader, reader, identity))
                .await
                .expect("device starts");
            let got = next_data(&mut client, Duration::from_secs(15)).await;
            client.close().await;
            (
                trial,
                sender.name.clone(),
                reader.name.clone(),
                got.map(|g| g.0) == Some(data),
            )
        }
    });
    let outcomes: Vec<(usize, String, String, bool)> = futures_util::stream::iter(trials)
        .buffer_unordered(TRIALS_IN_FLIGHT)
        .collect()
        .await;
    let misses: Vec<_> = outcomes.iter().filter(|o| !o.3).collect();
    let pairs: std::collections::BTreeSet<(String, String)> = outcomes
        .iter()
        .map(|o| (o.1.clone(), o.2.clone()))
        .collect();
    println!(
        "read-your-writes: {} trials over the sender/reader pairs {pairs:?}, {} misses, in {:?}",
        outcomes.len(),
        misses.len(),
        started.elapsed()
    );
    assert_eq!(pairs.len(), 6, "every ordered pair of regions is tried");
    assert!(misses.is_empty(), "missed: {misses:?}");
}

/// Scenario 3. Home cn; connected in us, then, a third of the way through a stream sent from eu, the
/// device moves and connects in eu (its state file kept): every message once, in order.
async fn roaming_mid_stream(deployment: &Deployment, http: &reqwest::Client, app: &App) {
    let (cn, us, eu) = (
        deployment.region("cn"),
        deployment.region("us"),
        deployment.region("eu"),
    );
    let state_dir = tempfile::tempdir().expect("temp dir");
    let state = state_dir.path().join("roaming.json");
    let identity = ringpush_sdk::register(&cn.controller, app.id, &app.client_key)
        .await
        .expect("register in cn");
    let device = identity.device_id.to_string();
    let config = device_config(app, cn, us, identity.clone()).with_state_file(&state);
    let mut client = Client::start(config).await.expect("device starts in us");

    let sender = {
        let (http, eu, app, device) = (http.clone(), eu.clone(), app.clone(), device.clone());
        tokio::spawn(async move {
            for number in 0..ROAMING_MESSAGES {
                send(&http, &eu, &app, &device, &format!("{number}")).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut handed: Vec<(usize, u64)> = Vec::new();
    let mut roamed = false;
    while handed.len() < ROAMING_MESSAGES {
        if !roamed && handed.len() == ROAMING_MESSAGES / 3 {
            roamed = true;
            let before = client.connector_url().unwrap_or_default();
            client.close().await;
            let mut config = device_config(app, cn, eu, identity.clone())
                .with_state_file(&state)
                .with_fallback_dispatchers(vec![us.dispatcher.clone()]);
            config.reuse_saved_connector = false;
            client = Client::start(config).await.expect("device starts in eu");
            println!(
                "roaming: after {} messages the device moved from {before} to eu",
                handed.len()
            );
        }
        let Some((data, seq)) = next_data(&mut client, Duration::from_secs(20)).await else {
            panic!(
                "the stream stopped after {} messages: {:?}",
                handed.len(),
                handed.last()
            );
        };
        handed.push((data.parse().expect("a number"), seq));
    }
    sender.await.expect("sender");
    let connected = client.connector_url().unwrap_or_default();
    // Nothing more comes: every message was handed once.
    let extra = next_data(&mut client, Duration::from_millis(1500)).await;
    client.close().await;
    assert!(extra.is_none(), "a message came twice: {extra:?}");
    assert!(
        connected.contains(".13:"),
        "the device ended in eu: {connected}"
    );
    let numbers: Vec<usize> = handed.iter().map(|h| h.0).collect();
    assert_eq!(numbers, (0..ROAMING_MESSAGES).collect::<Vec<_>>());
    assert!(handed.windows(2).all(|pair| pair[0].1 < pair[1].1));
    println!(
        "roaming: {} messages, each handed once and in order, across the move",
        handed.len()
    );
}

/// Scenario 4. Home eu, connected in eu, sent from cn every 100 ms while eu is cut off from the
/// other regions for 30 s (the test process still reaches eu, as a device there would): cn
/// accepts every send, holding those it cannot write in eu; after the heal they are handed
/// home and arrive, each once and in order.
async fn region_cut_off(deployment: &Deployment, http: &reqwest::Client, app: &App) {
    const BEFORE_CUT: Duration = Duration::from_secs(5);
    const CUT: Duration = Duration::from_secs(30);
    const AFTER_HEAL: Duration = Duration::from_secs(10);
    let (cn, eu) = (deployment.region("cn"), deployment.region("eu"));
    let identity = ringpush_sdk::register(&eu.controller, app.id, &app.client_key)
        .await
        .expect("register in eu");
    let device = identity.device_id.to_string();
    let mut client = Client::start(device_config(app, eu, eu, identity))
        .await
        .expect("device starts in eu");
    send(http, cn, app, &device, "warm").await;
    next_data(&mut client, Duration::from_secs(10))
        .await
        .expect("warm-up message arrives");

    let (received_tx, mut received_rx) = tokio::sync::mpsc::unbounded_channel();
    let receiver = tokio::spawn(async move {
        while let Some((data, seq)) = next_data(&mut client, Duration::from_secs(120)).await {
            let number: usize = data.parse().expect("a number");
            if received_tx.send((number, seq, Instant::now())).is_err() {
                break;
            }
        }
        client.close().await;
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let sender = {
        let (http, cn, app, device, stop) = (
            http.clone(),
            cn.clone(),
            app.clone(),
            device.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let (mut accepted, mut held) = (0usize, 0usize);
            while !stop.is_cancelled() {
                let answer = send_answer(&http, &cn, &app, &device, &accepted.to_string()).await;
                accepted += 1;
                held += answer["held"].as_array().map_or(0, Vec::len);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (accepted, held)
        })
    };
    tokio::time::sleep(BEFORE_CUT).await;
    let output = run(&deployment.env, &["cut", "eu"]);
    assert!(output.status.success(), "cut eu: {output:?}");
    tokio::time::sleep(CUT).await;
    let output = run(&deployment.env, &["heal", "eu"]);
    assert!(output.status.success(), "heal eu: {output:?}");
    let healed = Instant::now();
    tokio::time::sleep(AFTER_HEAL).await;
    stop.cancel();
    let (accepted, held) = sender.await.expect("sender");

    let mut received: Vec<(usize, u64, Instant)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while received.len() < accepted {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, received_rx.recv()).await {
            Ok(Some(message)) => received.push(message),
            _ => break,
        }
    }
    // Anything more would be a duplicate.
    if let Ok(Some(extra)) =
        tokio::time::timeout(Duration::from_millis(1500), received_rx.recv()).await
    {
        received.push(extra);
    }
    receiver.abort();
    let distinct: std::collections::BTreeSet<usize> = received.iter().map(|r| r.0).collect();
    let duplicates = received.len() - distinct.len();
    let lost = (0..accepted).filter(|n| !distinct.contains(n)).count();
    let last_arrival = received.iter().map(|r| r.2).max().unwrap_or(healed);
    println!(
        "region cut off: eu cut from cn and us for {CUT:?} while cn sent to an eu device every \
         100 ms: sent {accepted}, accepted {accepted} (held in cn {held}), delivered {}, \
         duplicates {duplicates}, lost {lost}; the last arrived {:?} after the heal",
        distinct.len(),
        last_arrival.saturating_duration_since(healed),
    );
    assert!(held > 0, "the cut held messages in cn");
    assert_eq!(lost, 0, "every accepted message arrives");
    assert_eq!(duplicates, 0, "no message arrives twice");
    let numbers: Vec<usize> = received.iter().map(|r| r.0).collect();
    assert_eq!(numbers, (0..accepted).collect::<Vec<_>>(), "in send order");
    assert!(received.windows(2).all(|pair| pair[0].1 < pair[1].1));
}

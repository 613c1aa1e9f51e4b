//! End-to-end tests of the core push path: real `ringpush` processes (controller, dispatcher,
//! connectors) over a real redis-server, devices on the SDK.

mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use ringpush_ring::{Member, Ring};
use serde_json::Value;
use support::devices::{Received, assert_exactly_once, start_connected_devices, wait_all_received};
use support::{ADMIN_TOKEN, Lines, Platform, eventually, ringpush_bin};

/// 1. An online device gets a push, acks it, and the status reads acked — with the CLI
/// commands as a user would run them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_device_gets_a_push_and_the_status_reads_acked() {
    let platform = Platform::start(1).await;
    let created = Command::new(ringpush_bin())
        .args([
            "app",
            "create",
            "demo",
            "--controller",
            &platform.controller_url,
        ])
        .env("RINGPUSH_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let app: Value = serde_json::from_slice(&created.stdout).unwrap();
    let app_id = app["app_id"].as_str().unwrap();
    let server_key = app["server_key"].as_str().unwrap();

    let identity = platform.dir.path().join("phone.json");
    let mut listen = Command::new(ringpush_bin())
        .args([
            "listen",
            "--count",
            "1",
            "--log",
            "info,ringpush_sdk=debug",
            "--identity",
        ])
        .arg(&identity)
        .args([
            "--controller",
            &platform.controller_url,
            "--dispatcher",
            &platform.dispatcher_url,
        ])
        .env("RINGPUSH_APP_ID", app_id)
        .env("RINGPUSH_CLIENT_KEY", app["client_key"].as_str().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::new(listen.stdout.take().unwrap());
    let first: Value =
        serde_json::from_str(&lines.next("the device id", Duration::from_secs(30))).unwrap();
    let device_id = first["device_id"].as_str().unwrap().to_owned();

    // Wait until the device is online, so the push goes live.
    let device_path = format!("/v1/apps/{app_id}/devices/{device_id}");
    eventually("the device online", Duration::from_secs(20), async || {
        platform.get(&device_path, server_key).await.1["online"] == true
    })
    .await;

    let sent = Command::new(ringpush_bin())
        .args([
            "send",
            "--device",
            &device_id,
            "--data",
            "hello",
            "--controller",
            &platform.controller_url,
        ])
        .env("RINGPUSH_APP_ID", app_id)
        .env("RINGPUSH_SERVER_KEY", server_key)
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let answer: Value = serde_json::from_slice(&sent.stdout).unwrap();
    let message_id = answer["message_ids"][0].as_str().unwrap().to_owned();

    let line: Value =
        serde_json::from_str(&lines.next("the pushed message", Duration::from_secs(30))).unwrap();
    assert_eq!(line["message_id"], message_id.as_str());
    assert_eq!(line["data"], "hello");
    assert_eq!(line["seq"], 1);
    assert!(
        listen.wait().unwrap().success(),
        "listen exits after --count 1"
    );

    let status_path = format!("/v1/apps/{app_id}/messages/{message_id}");
    eventually("the status acked", Duration::from_secs(10), async || {
        platform.get(&status_path, server_key).await.1["status"] == "acked"
    })
    .await;
    let (_, device) = platform.get(&device_path, server_key).await;
    assert_eq!(device["pending"], 0);
}

/// 2. A device offline at send time gets all its pushes, in order, when it connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_device_gets_every_push_in_order_when_it_connects() {
    let platform = Platform::start(1).await;
    let (app, server_key, client_key) = platform.create_app().await;
    let identity =
        ringpush_sdk::register(&platform.controller_url, app.parse().unwrap(), &client_key)
            .await
            .unwrap();
    let device = identity.device_id.to_string();
    let mut expected = Vec::new();
    for n in 0..25 {
        expected.extend(
            platform
                .send(
                    &app,
                    &server_key,
                    std::slice::from_ref(&device),
                    &format!("m{n}"),
                )
                .await,
        );
    }
    let config = ringpush_sdk::Config::new(
        &platform.controller_url,
        &platform.dispatcher_url,
        app.parse().unwrap(),
        &client_key,
    )
    .with_identity(identity);
    let mut client = ringpush_sdk::Client::start(config).await.unwrap();
    for (n, want) in expected.iter().enumerate() {
        let message = tokio::time::timeout(Duration::from_secs(20), client.next_message())
            .await
            .expect("message in time")
            .unwrap();
        assert_eq!(&message.message_id, want);
        assert_eq!(message.seq, n as u64 + 1);
        assert_eq!(message.data_str().unwrap(), format!("m{n}"));
    }
    client.close().await;
}

/// Sends one message to each device per round, `rounds` rounds, in requests of `per_request`
/// devices; answers what was accepted, by device, in order.
async fn send_rounds(
    platform: &Platform,
    app: &str,
    server_key: &str,
    devices: &[String],
    rounds: usize,
    per_request: usize,
    mut between: impl FnMut(usize),
) -> HashMap<String, Vec<String>> {
    let mut accepted: HashMap<String, Vec<String>> = HashMap::new();
    for round in 0..rounds {
        for chunk in devices.chunks(per_request) {
            let ids = platform
                .send(app, server_key, chunk, &format!("round {round}"))
                .await;
            for (device, id) in chunk.iter().zip(ids) {
                accepted.entry(device.clone()).or_default().push(id);
            }
        }
        between(round);
    }
    accepted
}

/// 3. A connector killed with SIGKILL while 1,000 messages go to its 100 devices: once they
/// reconnect (to the connector that takes over), the app has every accepted message exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_connector_loses_nothing_and_duplicates_nothing() {
    let mut platform = Platform::start(1).await;
    let (app, server_key, client_key) = platform.create_app().await;
    let received = Received::default();
    let devices = start_connected_devices(&platform, &app, &client_key, 100, &received).await;
    let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();

    let mut accepted = HashMap::new();
    let first = send_rounds(&platform, &app, &server_key, &ids, 3, 25, |_| {}).await;
    platform.connectors[0].proc.kill9();
    // Sends go on while the devices have nowhere to go; a new connector takes over.
    let during = send_rounds(&platform, &app, &server_key, &ids, 3, 25, |_| {}).await;
    platform.add_connector().await;
    let after = send_rounds(&platform, &app, &server_key, &ids, 4, 25, |_| {}).await;
    for part in [first, during, after] {
        for (device, ids) in part {
            accepted.entry(device).or_insert_with(Vec::new).extend(ids);
        }
    }
    assert_eq!(accepted.values().map(Vec::len).sum::<usize>(), 1000);
    wait_all_received(&received, &accepted, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // room for a stray duplicate to show
    assert_exactly_once(&received, &accepted);
    let new_url = member(&platform, 1).device_url;
    for device in &devices {
        let stats = (device.stats)();
        assert!(
            stats.reconnects >= 1,
            "device {} never lost its connection",
            device.id
        );
        assert_eq!((device.connector_url)().as_deref(), Some(new_url.as_str()));
    }
}

fn member(platform: &Platform, index: usize) -> Member {
    let c = &platform.connectors[index];
    Member {
        id: c.id.clone(),
        device_url: format!("ws://{}/v1/connect", c.device_addr),
        grpc_url: format!("http://{}", c.grpc_addr),
    }
}

/// 4. A second connector joins: only the devices the ring moves are redirected, and they lose
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_connector_takes_only_the_devices_the_ring_moves() {
    let mut platform = Platform::start(1).await;
    let (app, server_key, client_key) = platform.create_app().await;
    let received = Received::default();
    let devices = start_connected_devices(&platform, &app, &client_key, 60, &received).await;
    let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    let before = send_rounds(&platform, &app, &server_key, &ids, 2, 30, |_| {}).await;

    platform.add_connector().await;
    let ring = Ring::new(
        vec![member(&platform, 0), member(&platform, 1)],
        ringpush_ring::DEFAULT_VNODES,
    );
    let new_url = member(&platform, 1).device_url;
    let moves: Vec<bool> = devices
        .iter()
        .map(|d| ring.owner(d.id.parse().unwrap()).unwrap().id == platform.connectors[1].id)
        .collect();
    let moved = moves.iter().filter(|m| **m).count();
    assert!(
        moved > 0 && moved < devices.len(),
        "{moved} of {} move",
        devices.len()
    );

    eventually(
        "moved devices on the new connector",
        Duration::from_secs(30),
        async || {
            devices.iter().zip(&moves).all(|(d, moves)| {
                let stats = (d.stats)();
                stats.connected
                    && (!moves || (d.connector_url)().as_deref() == Some(new_url.as_str()))
            })
        },
    )
    .await;
    for (device, moves) in devices.iter().zip(&moves) {
        let stats = (device.stats)();
        if *moves {
            assert!(
                stats.redirects_followed >= 1,
                "device {} moved without a redirect",
                device.id
            );
        } else {
            assert_eq!(
                (
                    stats.redirects_followed,
                    stats.reconnects,
                    stats.connections_established
                ),
                (0, 0, 1),
                "device {} should not have moved",
                device.id
            );
        }
    }
    let after = send_rounds(&platform, &app, &server_key, &ids, 2, 30, |_| {}).await;
    let mut accepted = before;
    for (device, ids) in after {
        accepted.entry(device).or_default().extend(ids);
    }
    wait_all_received(&received, &accepted, Duration::from_secs(30)).await;
    assert_exactly_once(&received, &accepted);
}

/// 5. SIGTERM drain: the connector's devices move to the other one and nothing is lost, with
/// messages being sent all the while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_connector_without_losing_anything() {
    let mut platform = Platform::start(2).await;
    let (app, server_key, client_key) = platform.create_app().await;
    let received = Received::default();
    let devices = start_connected_devices(&platform, &app, &client_key, 60, &received).await;
    let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    let survivor_url = member(&platform, 1).device_url;
    let drained_url = member(&platform, 0).device_url;
    let on_drained = devices
        .iter()
        .filter(|d| (d.connector_url)().as_deref() == Some(drained_url.as_str()))
        .count();
    assert!(
        on_drained > 0,
        "some devices must be on the connector that drains"
    );

    let before = send_rounds(&platform, &app, &server_key, &ids, 2, 20, |_| {}).await;
    let admin = format!("http://{}", platform.connectors[0].admin_addr);
    let ready = platform
        .http
        .get(format!("{admin}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let metrics = platform
        .http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("ringpush_connector_connections"),
        "{metrics}"
    );
    platform.connectors[0].proc.sigterm();
    let during = send_rounds(&platform, &app, &server_key, &ids, 3, 20, |_| {}).await;
    let exit = platform.connectors[0]
        .proc
        .wait_exit(Duration::from_secs(20));
    assert_eq!(exit, Some(0), "the connector exits cleanly after draining");
    let after = send_rounds(&platform, &app, &server_key, &ids, 2, 20, |_| {}).await;

    let mut accepted = before;
    for part in [during, after] {
        for (device, ids) in part {
            accepted.entry(device).or_default().extend(ids);
        }
    }
    wait_all_received(&received, &accepted, Duration::from_secs(45)).await;
    assert_exactly_once(&received, &accepted);
    assert!(
        devices
            .iter()
            .all(|d| (d.connector_url)().as_deref() == Some(survivor_url.as_str()))
    );
}

/// A controller whose ring lags the dispatcher's (it re-reads the ring every minute, and
/// started before the connector) still delivers live: to the connector the device's presence
/// names for a unicast push, and to every live connector for an audience push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_behind_on_the_ring_still_delivers_live() {
    let mut platform = Platform::start_with(support::PlatformOptions {
        connectors: 0,
        controller_ring_refresh_ms: 60_000,
        ..Default::default()
    })
    .await;
    platform.add_connector().await;
    let (app, server_key, client_key) = platform.create_app().await;
    let received = Received::default();
    let devices = start_connected_devices(&platform, &app, &client_key, 3, &received).await;
    let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    // Past the devices' replays and timeline catch-ups: only a live push can reach them now.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    for (device, id) in ids
        .iter()
        .zip(platform.send(&app, &server_key, &ids, "unicast").await)
    {
        expected.entry(device.clone()).or_default().push(id);
    }
    wait_all_received(&received, &expected, Duration::from_secs(20)).await;

    let (status, body) = platform
        .post(
            &format!("/v1/apps/{app}/messages"),
            &server_key,
            &serde_json::json!({ "broadcast": true, "data": "everyone" }),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(
        "the broadcast on every device",
        Duration::from_secs(20),
        async || {
            let received = received.lock().unwrap();
            ids.iter()
                .all(|device| received.get(device).is_some_and(|got| got.len() == 2))
        },
    )
    .await;
}

/// A store that lost writes (a failover to a replica that lagged) numbers a device's new
/// messages from below what the device has seen: the device moves back to the store's
/// position (the Welcome says it) and gets them, instead of dropping them as replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_ahead_of_a_store_that_lost_writes_moves_back_and_loses_nothing() {
    let platform = Platform::start(1).await;
    let (app, server_key, client_key) = platform.create_app().await;
    let state = platform.dir.path().join("phone.json");
    let config = || support::devices::device_config(&platform, &app, &client_key, &state);
    let next = async |phone: &mut ringpush_sdk::Client| {
        let message = tokio::time::timeout(Duration::from_secs(20), phone.next_message())
            .await
            .expect("a message within 20 s")
            .expect("no device error");
        (message.data_str().unwrap().to_owned(), message.seq)
    };
    let mut phone = ringpush_sdk::Client::start(config()).await.unwrap();
    let id = phone.device_id().to_string();
    for text in ["one", "two", "three"] {
        platform
            .send(&app, &server_key, std::slice::from_ref(&id), text)
            .await;
    }
    for expected in [("one", 1), ("two", 2), ("three", 3)] {
        let (text, seq) = next(&mut phone).await;
        assert_eq!((text.as_str(), seq), expected);
    }
    phone.close().await;

    // Once the last Ack is in the store (acks are written in batches), the store loses the
    // device's sequence and inbox; new messages get seqs 1 and 2 again.
    let port = platform.redis.port();
    let keys = [format!("{{d:{id}}}:meta"), format!("{{d:{id}}}:inbox")];
    eventually("the last ack stored", Duration::from_secs(20), async || {
        ringpush_testkit::redis_command(port, &["HGET", &keys[0], "acked"])
            .is_ok_and(|reply| reply.contains('3'))
    })
    .await;
    let deleted = ringpush_testkit::redis_command(port, &["DEL", &keys[0], &keys[1]]).unwrap();
    // The meta key at least (the inbox is gone once everything in it was acked).
    assert!(deleted.contains('1') || deleted.contains('2'), "{deleted}");
    for text in ["after one", "after two"] {
        platform
            .send(&app, &server_key, std::slice::from_ref(&id), text)
            .await;
    }
    let mut phone = ringpush_sdk::Client::start(config()).await.unwrap();
    assert_eq!(next(&mut phone).await, ("after one".to_owned(), 1));
    assert_eq!(next(&mut phone).await, ("after two".to_owned(), 2));
    assert_eq!(
        phone.last_seq(),
        2,
        "the saved position moved back, then on"
    );
    phone.close().await;
}

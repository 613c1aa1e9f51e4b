//! Limits, on real processes: an app's send quota (429 with Retry-After, nothing of a refused
//! request accepted), the connector's bound on new connections per client address, and a
//! slow consumer cut off with its messages kept, so that it later gets every one.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::SinkExt;
use prost::Message as _;
use ringpush_protocol::device::{ClientFrame, Hello, client_frame};
use ringpush_sdk::{Client, Identity};
use serde_json::{Value, json};
use support::devices::device_config;
use support::platform::ConnectorOptions;
use support::{Platform, PlatformOptions, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Registers a device over REST; answers its identity.
async fn register(platform: &Platform, app: &str, client_key: &str) -> Identity {
    ringpush_sdk::register(&platform.controller_url, app.parse().unwrap(), client_key)
        .await
        .expect("registration")
}

async fn send_one(platform: &Platform, app: &str, key: &str, device: &str) -> (u16, Value) {
    platform
        .post(
            &format!("/v1/apps/{app}/messages"),
            key,
            &json!({ "device_ids": [device], "data": "quota" }),
            None,
        )
        .await
}

async fn pending(platform: &Platform, app: &str, key: &str, device: &str) -> u64 {
    let (status, body) = platform
        .get(&format!("/v1/apps/{app}/devices/{device}"), key)
        .await;
    assert_eq!(status, 200, "{body}");
    body["pending"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_over_its_send_quota_is_refused_with_retry_after_and_nothing_is_accepted() {
    let platform = Platform::start_with(PlatformOptions {
        controller_args: [
            "--app-messages-per-second",
            "2",
            "--app-messages-burst",
            "5",
        ]
        .map(String::from)
        .to_vec(),
        ..PlatformOptions::default()
    })
    .await;
    let (app, key, client_key) = platform.create_app().await;
    let (other_app, other_key, other_client_key) = platform.create_app().await;
    let device = register(&platform, &app, &client_key)
        .await
        .device_id
        .to_string();
    let other_device = register(&platform, &other_app, &other_client_key)
        .await
        .device_id
        .to_string();

    for n in 0..5 {
        let (status, body) = send_one(&platform, &app, &key, &device).await;
        assert_eq!(status, 200, "send {n} within the burst: {body}");
    }
    // A request for more than is left is refused whole.
    let (status, body) = platform
        .post(
            &format!("/v1/apps/{app}/messages"),
            &key,
            &json!({ "device_ids": [&device, &device], "data": "two" }),
            None,
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("2 messages a second"), "{message}");
    let retry = platform
        .http
        .post(format!(
            "{}/v1/apps/{app}/messages",
            platform.controller_url
        ))
        .bearer_auth(&key)
        .json(&json!({ "device_ids": [&device], "data": "again" }))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 429);
    let retry_after: u64 = retry.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}");
    // Another app has its own quota.
    let (status, body) = send_one(&platform, &other_app, &other_key, &other_device).await;
    assert_eq!(status, 200, "{body}");
    // Nothing of the refused requests was accepted.
    assert_eq!(pending(&platform, &app, &key, &device).await, 5);
    // After the wait it names, the app sends again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let (status, body) = send_one(&platform, &app, &key, &device).await;
    assert_eq!(status, 200, "after Retry-After: {body}");
    assert_eq!(pending(&platform, &app, &key, &device).await, 6);
}

/// A platform whose one connector runs with these environment variables.
async fn with_connector_env(env: &[(&str, &str)]) -> Platform {
    let mut platform = Platform::start_with(PlatformOptions {
        connectors: 0,
        ..PlatformOptions::default()
    })
    .await;
    platform
        .add_connector_with(ConnectorOptions {
            env: env
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            ..ConnectorOptions::default()
        })
        .await;
    platform
}

/// Opens a WebSocket upgrade from `from` to `to`; answers the status line of the answer.
async fn upgrade_status(from: &str, to: SocketAddr) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let request = "GET /v1/connect HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: \
                   Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0; 512];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..read]).into_owned();
    if text.starts_with("HTTP/1.1 429") {
        assert!(text.contains("\r\nRetry-After: "), "{text}");
    }
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_from_one_address_are_bounded_and_other_addresses_are_not() {
    let platform = with_connector_env(&[
        ("RINGPUSH_CONNECTIONS_PER_IP_PER_SECOND", "0.5"),
        ("RINGPUSH_CONNECTIONS_PER_IP_BURST", "3"),
    ])
    .await;
    let address = platform.connectors[0].device_addr;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(upgrade_status("127.0.0.1", address).await);
    }
    // The burst of 3 lets the first through (the harness's readiness probe took one token),
    // then refuses every one over it: none of these waits the two seconds a token takes.
    let accepted = statuses
        .iter()
        .take_while(|s| s.starts_with("HTTP/1.1 101"))
        .count();
    let refused = statuses[accepted..]
        .iter()
        .filter(|s| s.starts_with("HTTP/1.1 429"))
        .count();
    assert!(
        (2..=3).contains(&accepted) && accepted + refused == statuses.len(),
        "{statuses:?}"
    );
    // Another address has its own bound.
    assert!(
        upgrade_status("127.0.0.2", address)
            .await
            .starts_with("HTTP/1.1 101")
    );
    // A device refused this way backs off and gets in once the address has room again.
    let (app, _, client_key) = platform.create_app().await;
    let dir = platform.dir.path().join("rate-device.json");
    let mut client = Client::start(device_config(&platform, &app, &client_key, dir))
        .await
        .unwrap();
    eventually(
        "the refused device connects",
        Duration::from_secs(20),
        async || {
            let _ = tokio::time::timeout(Duration::from_millis(100), client.next_message()).await;
            client.stats().connected
        },
    )
    .await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_off_and_later_gets_every_message_in_order() {
    let platform = with_connector_env(&[
        ("RINGPUSH_MAX_PENDING_OUTPUT_BYTES", "16384"),
        ("RINGPUSH_SOCKET_SEND_BUFFER_BYTES", "16384"),
    ])
    .await;
    let (app, key, client_key) = platform.create_app().await;
    let identity = register(&platform, &app, &client_key).await;
    let device = identity.device_id.to_string();

    // A device with a tiny receive window that says Hello, then never reads again.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(platform.connectors[0].device_addr)
        .await
        .unwrap();
    let url = format!("ws://{}/v1/connect", platform.connectors[0].device_addr);
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let hello = ClientFrame {
        kind: Some(client_frame::Kind::Hello(Hello {
            protocol_version: 1,
            device_id: device.clone(),
            device_token: identity.device_token.clone(),
            sdk: "slow-reader".into(),
            ..Default::default()
        })),
    };
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        hello.encode_to_vec().into(),
    ))
    .await
    .unwrap();
    let online = async || {
        let (_, body) = platform
            .get(&format!("/v1/apps/{app}/devices/{device}"), &key)
            .await;
        body["online"].as_bool().unwrap()
    };
    eventually("the slow device is online", Duration::from_secs(10), online).await;

    // Messages of 4,000 bytes, until the connector has cut it off (and a few more).
    let payload = "x".repeat(4000);
    let mut accepted = Vec::new();
    let mut after_cut = 0;
    while after_cut < 3 {
        // The inbox keeps 1,000: far more than the connector and the kernel buffer here.
        assert!(
            accepted.len() < 600,
            "never cut off after {} messages",
            accepted.len()
        );
        let devices = vec![device.clone(); 20];
        let (status, body) = platform
            .post(
                &format!("/v1/apps/{app}/messages"),
                &key,
                &json!({ "device_ids": devices, "data": payload }),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        accepted.extend(
            body["message_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_str().unwrap().to_owned()),
        );
        if !online().await {
            after_cut += 1;
        }
    }
    println!(
        "slow consumer cut off; {} messages accepted",
        accepted.len()
    );
    drop(ws);

    // The device comes back on the SDK and reads everything, once, in order.
    let state = platform.dir.path().join("slow-device.json");
    let config = device_config(&platform, &app, &client_key, state).with_identity(identity);
    let mut client = Client::start(config).await.unwrap();
    for want in &accepted {
        let message = tokio::time::timeout(Duration::from_secs(30), client.next_message())
            .await
            .expect("the next message within 30 s")
            .unwrap();
        assert_eq!(&message.message_id, want);
        assert_eq!(message.data_str().unwrap(), payload);
    }
    let extra = tokio::time::timeout(Duration::from_millis(500), client.next_message()).await;
    assert!(extra.is_err(), "a message beyond those sent: {extra:?}");
    client.close().await;
}

//! Sealed payloads end to end, on real processes and a real redis-server: an app created with
//! `payload_sealing` has every payload sealed to its device's key before it is written, so
//! that Redis holds only ciphertext, and the device's app reads exactly what was sent.

mod support;

use std::time::Duration;

use ringpush_sdk::{Client, Message};
use serde_json::{Value, json};
use support::devices::{device_config, next_number};
use support::{ADMIN_TOKEN, Platform};

/// Creates an app; answers its id, server key and client key.
async fn create_app(platform: &Platform, sealing: bool) -> (String, String, String) {
    let (status, body) = platform
        .post(
            "/v1/apps",
            ADMIN_TOKEN,
            &json!({ "name": "sealing", "payload_sealing": sealing }),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["payload_sealing"], sealing);
    let field = |name: &str| body[name].as_str().unwrap().to_owned();
    (field("app_id"), field("server_key"), field("client_key"))
}

/// Every byte Redis holds, as it writes them to disk (uncompressed).
fn redis_bytes(platform: &Platform) -> Vec<u8> {
    let redis = &platform.redis;
    redis
        .command(&["CONFIG", "SET", "rdbcompression", "no"])
        .unwrap();
    redis.command(&["SAVE"]).unwrap();
    std::fs::read(redis.dir().join("dump.rdb")).expect("redis wrote its dump")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Starts an SDK device (it registers, keeping its identity in `state`), then stops it;
/// answers its id.
async fn register_and_leave(
    platform: &Platform,
    app: &str,
    client_key: &str,
    state: &std::path::Path,
) -> String {
    let client = Client::start(device_config(platform, app, client_key, state))
        .await
        .unwrap();
    let device = client.device_id().to_string();
    client.close().await;
    device
}

async fn next(client: &mut Client) -> Message {
    tokio::time::timeout(Duration::from_secs(30), client.next_message())
        .await
        .expect("a message within 30 s")
        .expect("no device error")
}

/// Sends `body` (device_ids added) and answers the message id.
async fn send(platform: &Platform, app: &str, key: &str, device: &str, body: Value) -> String {
    let mut body = body;
    body["device_ids"] = json!([device]);
    let (status, answer) = platform
        .post(&format!("/v1/apps/{app}/messages"), key, &body, None)
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["message_ids"][0].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sealing_on_redis_holds_only_ciphertext_and_the_device_reads_the_message() {
    let platform = Platform::start(1).await;
    let (sealed_app, sealed_key, sealed_client_key) = create_app(&platform, true).await;
    let (plain_app, plain_key, plain_client_key) = create_app(&platform, false).await;

    // Two devices register (the SDK gives a key), then go offline: their messages wait in
    // Redis.
    let state = |name: &str| {
        platform
            .dir
            .path()
            .join(format!("{name}-{}.json", next_number()))
    };
    let sealed_state = state("sealed");
    let plain_state = state("plain");
    let sealed_device =
        register_and_leave(&platform, &sealed_app, &sealed_client_key, &sealed_state).await;
    let plain_device =
        register_and_leave(&platform, &plain_app, &plain_client_key, &plain_state).await;

    let marker = format!("marker-{:016x}", rand::random::<u64>());
    let short = format!("{marker} the launch code is 0000");
    let long = json!({ "note": format!("{marker} {}", "all work and no play ".repeat(40)) });
    let short_id = send(
        &platform,
        &sealed_app,
        &sealed_key,
        &sealed_device,
        json!({
            "data": short,
            "notification": { "title": format!("{marker} title"), "deep_link": "app://x" },
        }),
    )
    .await;
    let long_id = send(
        &platform,
        &sealed_app,
        &sealed_key,
        &sealed_device,
        json!({ "data": long }),
    )
    .await;
    let plain_marker = format!("{marker}-plain");
    send(
        &platform,
        &plain_app,
        &plain_key,
        &plain_device,
        json!({ "data": plain_marker }),
    )
    .await;

    let stored = redis_bytes(&platform);
    // The search finds plaintext where there is some: the app without sealing.
    assert!(
        contains(&stored, &plain_marker),
        "the control message is not in the dump"
    );
    let sealed_copies = stored
        .windows(marker.len())
        .filter(|window| *window == marker.as_bytes())
        .count();
    assert_eq!(
        sealed_copies, 1,
        "only the unsealed app's message may show the marker"
    );

    // The long payload was compressed before sealing: its envelope is far smaller.
    let (status, state_body) = platform
        .get(
            &format!("/v1/apps/{sealed_app}/devices/{sealed_device}"),
            &sealed_key,
        )
        .await;
    assert_eq!(status, 200, "{state_body}");
    let previews: Vec<&str> = state_body["pending_messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["preview"].as_str().unwrap())
        .collect();
    assert_eq!(previews.len(), 2, "{state_body}");
    let sealed_len = |preview: &str| -> usize {
        preview
            .strip_prefix("(sealed, ")
            .and_then(|rest| rest.strip_suffix(" bytes)"))
            .unwrap_or_else(|| panic!("not a sealed preview: {preview}"))
            .parse()
            .unwrap()
    };
    let long_text = long.to_string();
    assert!(
        sealed_len(previews[1]) * 3 < long_text.len(),
        "{} sealed bytes for {} of JSON",
        sealed_len(previews[1]),
        long_text.len()
    );

    // The device comes back and reads both messages as they were sent.
    let mut client = Client::start(device_config(
        &platform,
        &sealed_app,
        &sealed_client_key,
        &sealed_state,
    ))
    .await
    .unwrap();
    let first = next(&mut client).await;
    assert_eq!(first.message_id, short_id);
    assert_eq!(first.data_str().unwrap(), short);
    assert_eq!(first.content_type, "text/plain; charset=utf-8");
    let notification = first.notification.expect("the notification opened too");
    assert_eq!(notification.title, Some(format!("{marker} title")));
    assert_eq!(notification.deep_link.as_deref(), Some("app://x"));
    let second = next(&mut client).await;
    assert_eq!(second.message_id, long_id);
    assert_eq!(second.content_type, "application/json");
    let read: Value = serde_json::from_slice(&second.data).unwrap();
    assert_eq!(read, long);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealing_app_refuses_what_it_cannot_seal() {
    let platform = Platform::start(1).await;
    let (app, server_key, client_key) = create_app(&platform, true).await;
    let register = |body: Value| {
        let platform = &platform;
        let client_key = client_key.clone();
        let app = app.clone();
        async move {
            platform
                .post(&format!("/v1/apps/{app}/devices"), &client_key, &body, None)
                .await
        }
    };
    // A device without a key could never read its messages.
    let (status, body) = register(json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("seal_public_key"),
        "{body}"
    );
    // Keys that are not X25519 public keys, or are weak, or unknown compressions.
    for bad in [
        json!({ "seal_public_key": "short" }),
        json!({ "seal_public_key": "A".repeat(44) }),
        json!({ "seal_public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }),
        json!({ "seal_public_key": "9u4jVd_vgjHlGxZyyvSvr_aBD3n7Yo-0uURZdoCljTI", "compression": ["gzip"] }),
    ] {
        let (status, body) = register(bad.clone()).await;
        assert_eq!(status, 400, "{bad} answered {body}");
    }
    let (status, body) =
        register(json!({ "seal_public_key": "9u4jVd_vgjHlGxZyyvSvr_aBD3n7Yo-0uURZdoCljTI" })).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["payload_sealing"], true);

    // An audience message is stored once for every device: it cannot be sealed to each.
    let (status, body) = platform
        .post(
            &format!("/v1/apps/{app}/messages"),
            &server_key,
            &json!({ "broadcast": true, "data": "hello" }),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
}

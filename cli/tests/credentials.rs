//! Credentials across processes: two controllers over one Redis, so that what one revokes
//! the other refuses at once (controllers keep no copy of an app's keys), and keys never
//! reach another app.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{ADMIN_TOKEN, Platform, Proc, wait_for_port};

/// Starts a second controller on the platform's Redis; answers its URL and process.
fn second_controller(platform: &Platform) -> (String, Proc) {
    let address: SocketAddr = format!("127.0.0.1:{}", ringpush_testkit::free_port())
        .parse()
        .unwrap();
    let args: Vec<String> = [
        "controller",
        "--redis-url",
        &platform.redis.url(),
        "--listen",
        &address.to_string(),
        "--admin-token",
        ADMIN_TOKEN,
        "--lease-ttl-ms",
        "1000",
        "--ring-refresh-ms",
        "100",
    ]
    .map(String::from)
    .to_vec();
    let process = Proc::spawn("controller-2", platform.dir.path(), &args);
    wait_for_port(address, Duration::from_secs(20));
    (format!("http://{address}"), process)
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    bearer: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, url).bearer_auth(bearer);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_controller_is_refused_by_every_other_at_once() {
    let platform = Platform::start(1).await;
    let (second_url, _second) = second_controller(&platform);
    let http = &platform.http;
    let (app, _, client_key) = platform.create_app().await;
    let (other_app, other_server_key, _) = platform.create_app().await;
    let device =
        ringpush_sdk::register(&platform.controller_url, app.parse().unwrap(), &client_key)
            .await
            .unwrap()
            .device_id
            .to_string();

    // A send-only key, made on the first controller.
    let (status, created) = call(
        http,
        reqwest::Method::POST,
        format!("{}/v1/apps/{app}/keys", platform.controller_url),
        ADMIN_TOKEN,
        Some(json!({ "kind": "server", "scopes": ["send"] })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    let send = |base: &str| {
        call(
            http,
            reqwest::Method::POST,
            format!("{base}/v1/apps/{app}/messages"),
            &key,
            Some(json!({ "device_ids": [&device], "data": "hi" })),
        )
    };
    // Both controllers take it, for what its scope allows only.
    assert_eq!(send(&platform.controller_url).await.0, 200);
    assert_eq!(send(&second_url).await.0, 200);
    let (status, body) = call(
        http,
        reqwest::Method::GET,
        format!("{second_url}/v1/apps/{app}/devices/{device}"),
        &key,
        None,
    )
    .await;
    assert_eq!(status, 403, "a send-only key reads a device: {body}");
    assert_eq!(body["error"]["code"], "missing_scope");
    // It never touches another app, nor does that app's key touch this one.
    let (status, _) = call(
        http,
        reqwest::Method::POST,
        format!("{second_url}/v1/apps/{other_app}/messages"),
        &key,
        Some(json!({ "device_ids": [&device], "data": "hi" })),
    )
    .await;
    assert!(status == 401 || status == 403, "{status}");
    let (status, _) = call(
        http,
        reqwest::Method::POST,
        format!("{second_url}/v1/apps/{app}/messages"),
        &other_server_key,
        Some(json!({ "device_ids": [&device], "data": "hi" })),
    )
    .await;
    assert!(status == 401 || status == 403, "{status}");

    // Revoked on the first controller: the second refuses the very next request.
    let (status, body) = call(
        http,
        reqwest::Method::POST,
        format!(
            "{}/v1/apps/{app}/keys/{key_id}/revoke",
            platform.controller_url
        ),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let revoked = Instant::now();
    let (status, body) = send(&second_url).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_credentials");
    println!(
        "revocation seen by the other controller after {} ms (its first request)",
        revoked.elapsed().as_millis()
    );
    assert_eq!(send(&platform.controller_url).await.0, 401);
}

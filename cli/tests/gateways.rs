//! End-to-end tests of the platform path: real `ringpush` processes (controller, dispatcher,
//! connector) over a real redis-server, with local servers that speak APNs (HTTP/2 over TLS,
//! ES256 provider tokens), FCM v1 (OAuth token and send endpoints) and Web Push (VAPID,
//! aes128gcm) in place of Apple's, Google's and browsers' services, which cannot be reached
//! from here.

mod support;

use std::path::Path;
use std::time::Duration;

use ringpush_platform_doubles::apns::{
    ApnsDouble, ApnsDoubleConfig, ApnsRequest, server_tls_config_from_files,
};
use ringpush_platform_doubles::fcm::{
    FcmDouble, TEST_CLIENT_EMAIL, TEST_PROJECT_ID, test_public_key, test_service_account,
};
use ringpush_platform_doubles::webpush::{PushService, vapid_key_pair};
use ringpush_protocol::platform::Envelope;
use serde_json::{Value, json};
use support::{ADMIN_TOKEN, Platform, PlatformOptions, eventually};

const TEAM_ID: &str = "TEAM123456";
const KEY_ID: &str = "KEY1234567";
const TOPIC: &str = "com.example.ringpush";

/// The three services' doubles and the settings that point a controller at them.
struct Services {
    apns: ApnsDouble,
    fcm: FcmDouble,
    webpush: PushService,
    /// The app's gateway settings (credentials of each service), as `PUT .../gateways` takes.
    app_settings: Value,
    _dir: tempfile::TempDir,
    config_file: std::path::PathBuf,
}

impl Services {
    async fn start() -> Services {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = ringpush_testkit::TestPki::write(dir.path());
        let apns_key = rcgen::KeyPair::generate().expect("P-256 key");
        let tls = server_tls_config_from_files(&pki.server_cert, &pki.server_key).expect("TLS");
        let apns = ApnsDouble::start(ApnsDoubleConfig::new(
            tls,
            TEAM_ID,
            KEY_ID,
            apns_key.public_key_raw(),
        ))
        .await
        .expect("APNs double");
        let fcm = FcmDouble::start(TEST_PROJECT_ID, TEST_CLIENT_EMAIL, test_public_key())
            .await
            .expect("FCM double");
        let vapid = vapid_key_pair();
        let webpush = PushService::start(&vapid.public_key)
            .await
            .expect("Web Push double");
        let (service_account, _) = test_service_account(&fcm.token_url());
        let service_account: Value = serde_json::from_str(&service_account).expect("JSON");
        let app_settings = json!({
            "apns": {
                "team_id": TEAM_ID, "key_id": KEY_ID, "topic": TOPIC,
                "private_key": apns_key.serialize_pem(),
            },
            "fcm": service_account,
            "webpush": {
                "subject": "mailto:ops@example.com",
                "private_key": vapid.private_key, "public_key": vapid.public_key,
            },
            "policy": { "route": "socket_first", "delay_seconds": 1 },
        });
        let config_file = dir.path().join("ringpush.toml");
        write_config(&config_file, &apns, &fcm, &pki.ca);
        Services {
            apns,
            fcm,
            webpush,
            app_settings,
            _dir: dir,
            config_file,
        }
    }

    /// A platform whose controller sends through these services.
    async fn platform(&self) -> Platform {
        Platform::start_with(PlatformOptions {
            connectors: 1,
            controller_args: vec!["--config".into(), self.config_file.display().to_string()],
            ..PlatformOptions::default()
        })
        .await
    }
}

fn write_config(path: &Path, apns: &ApnsDouble, fcm: &FcmDouble, ca: &Path) {
    let config = format!(
        "[gateways]\n\
         apns_production_url = {apns:?}\n\
         apns_sandbox_url = {apns:?}\n\
         fcm_url = {fcm_url:?}\n\
         fcm_token_url = {token_url:?}\n\
         ca_file = {ca:?}\n\
         allow_plain_http = true\n\
         poll_ms = 50\n\
         backoff_base_ms = 400\n\
         request_timeout_ms = 5000\n",
        apns = apns.url(),
        fcm_url = fcm.url(),
        token_url = fcm.token_url(),
        ca = ca.display().to_string(),
    );
    std::fs::write(path, config).expect("write the config file");
}

/// An app with the services' credentials; answers (app id, server key, client key).
async fn app_with_gateways(platform: &Platform, services: &Services) -> (String, String, String) {
    let (app, server_key, client_key) = platform.create_app().await;
    let (status, body) = platform
        .put(
            &format!("/v1/apps/{app}/gateways"),
            ADMIN_TOKEN,
            &services.app_settings,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.to_string().contains("PRIVATE KEY"),
        "secrets must not be answered: {body}"
    );
    (app, server_key, client_key)
}

/// Registers a device (client key) and its platform token (the device's own token); answers
/// the device id.
async fn device_with_token(
    platform: &Platform,
    app: &str,
    client_key: &str,
    token: Value,
) -> String {
    let (status, body) = platform
        .post(
            &format!("/v1/apps/{app}/devices"),
            client_key,
            &json!({}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let device = body["device_id"].as_str().expect("device id").to_owned();
    let device_token = body["device_token"].as_str().expect("device token");
    let path = format!("/v1/apps/{app}/devices/{device}/platform-token");
    let (status, body) = platform.put(&path, device_token, &token).await;
    assert_eq!(status, 200, "{body}");
    device
}

async fn send(platform: &Platform, app: &str, server_key: &str, body: Value) -> String {
    let (status, answer) = platform
        .post(&format!("/v1/apps/{app}/messages"), server_key, &body, None)
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["message_ids"][0]
        .as_str()
        .expect("a message id")
        .to_owned()
}

/// The platform part of a message's status, once it is `state`.
async fn wait_platform_state(
    platform: &Platform,
    app: &str,
    server_key: &str,
    message_id: &str,
    state: &str,
) -> Value {
    let path = format!("/v1/apps/{app}/messages/{message_id}");
    let mut last = Value::Null;
    eventually(
        &format!("platform state {state} of {message_id}"),
        Duration::from_secs(20),
        async || {
            last = platform.get(&path, server_key).await.1;
            last["platform"]["state"] == state
        },
    )
    .await;
    last["platform"].clone()
}

/// The requests APNs received for `token`, once there are `count`.
async fn apns_requests(apns: &ApnsDouble, token: &str, count: usize) -> Vec<ApnsRequest> {
    let mut found = Vec::new();
    eventually(
        &format!("{count} APNs requests for a device"),
        Duration::from_secs(20),
        async || {
            found = apns
                .received()
                .into_iter()
                .filter(|request| request.device_token == token)
                .collect();
            found.len() >= count
        },
    )
    .await;
    found
}

fn apns_token(seed: u8) -> String {
    hex_of(&[seed; 32])
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// APNs: an offline iOS device gets a high-priority alert at once with Apple's headers and a
/// provider token the server verified; a normal message waits for the socket first; a 429 is
/// retried after a backoff; a 410 retires the token; a connected device is not sent to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_carries_messages_to_offline_ios_devices() {
    let services = Services::start().await;
    let platform = services.platform().await;
    let (app, server_key, client_key) = app_with_gateways(&platform, &services).await;
    let token = apns_token(0xab);
    let device = device_with_token(
        &platform,
        &app,
        &client_key,
        json!({"service": "apns", "token": token}),
    )
    .await;

    // 1. High priority with a notification: out at once, with Apple's headers.
    let message_id = send(
        &platform,
        &app,
        &server_key,
        json!({"device_ids": [device], "data": {"order": 42}, "priority": "high",
               "collapse_key": "order-42", "ttl_seconds": 600,
               "notification": {"title": "Order shipped", "body": "Tuesday"}}),
    )
    .await;
    let outcome = wait_platform_state(&platform, &app, &server_key, &message_id, "sent").await;
    assert_eq!(outcome["service"], "apns", "{outcome}");
    let request = apns_requests(&services.apns, &token, 1).await.remove(0);
    assert_eq!(request.status, 200, "{:?}", request.reason);
    assert_eq!(request.headers["apns-topic"], TOPIC);
    assert_eq!(request.headers["apns-push-type"], "alert");
    assert_eq!(request.headers["apns-priority"], "10");
    assert_eq!(request.headers["apns-collapse-id"], "order-42");
    assert!(request.headers.contains_key("apns-expiration"));
    assert_eq!(request.jwt_header["alg"], "ES256");
    assert_eq!(request.jwt_header["kid"], KEY_ID);
    assert_eq!(request.jwt_claims["iss"], TEAM_ID);
    assert_eq!(request.body["aps"]["alert"]["title"], "Order shipped");
    let envelope = request.body["ringpush"].as_str().expect("an envelope");
    match Envelope::decode(envelope).expect("a ringpush envelope") {
        Envelope::Whole(push) => {
            assert_eq!(push.message_id, message_id);
            assert_eq!(push.payload, br#"{"order":42}"#);
        }
        other => panic!("expected the whole message, got {other:?}"),
    }

    // 2. A 429 is retried after the backoff (400 ms here), then delivered.
    services.apns.fail_next(&token, 429, "TooManyRequests", 1);
    let message_id = send(
        &platform,
        &app,
        &server_key,
        json!({"device_ids": [device], "data": "retried", "priority": "high"}),
    )
    .await;
    let outcome = wait_platform_state(&platform, &app, &server_key, &message_id, "sent").await;
    assert_eq!(outcome["attempts"], 2, "{outcome}");
    let requests = apns_requests(&services.apns, &token, 3).await;
    assert_eq!(requests[1].status, 429);
    assert_eq!(requests[2].status, 200);
    let waited = requests[2].received_at - requests[1].received_at;
    assert!(
        waited >= Duration::from_millis(400),
        "the retry came {waited:?} after the 429, before the backoff"
    );

    // 3. Normal priority, socket first: sent only after the app's delay (1 s), since the
    // device is not connected by then.
    let message_id = send(
        &platform,
        &app,
        &server_key,
        json!({"device_ids": [device], "data": "after the socket had its chance"}),
    )
    .await;
    wait_platform_state(&platform, &app, &server_key, &message_id, "sent").await;
    let requests = apns_requests(&services.apns, &token, 4).await;
    assert_eq!(requests[3].headers["apns-push-type"], "background");
    assert_eq!(requests[3].headers["apns-priority"], "5");

    // 4. A 410 retires the token: the device reads as having none, and later sends skip it.
    services.apns.unregister(&token);
    let message_id = send(
        &platform,
        &app,
        &server_key,
        json!({"device_ids": [device], "data": "to a dead token", "priority": "high"}),
    )
    .await;
    let outcome = wait_platform_state(&platform, &app, &server_key, &message_id, "failed").await;
    assert_eq!(outcome["reason"], "Unregistered", "{outcome}");
    let (_, state) = platform
        .get(&format!("/v1/apps/{app}/devices/{device}"), &server_key)
        .await;
    assert_eq!(state["platform"], Value::Null, "{state}");
    let before = services.apns.received().len();
    let message_id = send(
        &platform,
        &app,
        &server_key,
        json!({"device_ids": [device], "data": "no token now", "priority": "high"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(services.apns.received().len(), before);
    let (_, status) = platform
        .get(
            &format!("/v1/apps/{app}/messages/{message_id}"),
            &server_key,
        )
        .await;
    assert_eq!(
        status["status"], "accepted",
        "still waits in the inbox: {status}"
    );

    // The app's platform statistics count each path.
    let (_, stats) = platform
        .get(&format!("/v1/apps/{app}/platform/stats"), &server_key)
        .await;
    assert_eq!(stats["totals"]["delivered_apns"], 3, "{stats}");
    assert_eq!(stats["totals"]["failed"], 1, "{stats}");
}

/// FCM and Web Push: messages go out through each; FCM's OAuth token is fetched once and
/// reused; a device's token is checked at registration and only the device (or a server key)
/// may set it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcm_and_web_push_carry_messages_and_tokens_are_guarded() {
    let services = Services::start().await;
    let platform = services.platform().await;
    let (app, server_key, client_key) = app_with_gateways(&platform, &services).await;
    let android = device_with_token(
        &platform,
        &app,
        &client_key,
        json!({"service": "fcm", "token": "fcm-registration-token-1"}),
    )
    .await;
    let subscription = services.webpush.subscribe();
    let browser = device_with_token(
        &platform,
        &app,
        &client_key,
        json!({"service": "webpush", "endpoint": subscription.endpoint,
               "p256dh": subscription.p256dh, "auth": subscription.auth}),
    )
    .await;

    let mut fcm_ids = Vec::new();
    for n in 0..5 {
        fcm_ids.push(
            send(
                &platform,
                &app,
                &server_key,
                json!({"device_ids": [android], "data": format!("fcm {n}"),
                       "priority": "high", "ttl_seconds": 120}),
            )
            .await,
        );
    }
    for id in &fcm_ids {
        let outcome = wait_platform_state(&platform, &app, &server_key, id, "sent").await;
        assert_eq!(outcome["service"], "fcm", "{outcome}");
    }
    assert_eq!(
        services.fcm.token_requests(),
        1,
        "one OAuth token for every send"
    );
    let sent = services.fcm.delivered();
    assert_eq!(sent.len(), 5);
    let message = &sent[0].message;
    assert_eq!(message["android"]["priority"], "HIGH", "{message}");
    // The time left of the message's 120 s, in whole seconds.
    let ttl = message["android"]["ttl"].as_str().unwrap_or("");
    assert!(["119s", "120s"].contains(&ttl), "{message}");
    let envelope = message["data"]["ringpush"].as_str().expect("an envelope");
    assert!(matches!(Envelope::decode(envelope), Ok(Envelope::Whole(_))));

    let web_id = send(
        &platform,
        &app,
        &server_key,
        json!({"device_ids": [browser], "data": "to the browser", "priority": "high",
               "notification": {"title": "Hello", "body": "from ringpush"}}),
    )
    .await;
    let outcome = wait_platform_state(&platform, &app, &server_key, &web_id, "sent").await;
    assert_eq!(outcome["service"], "webpush", "{outcome}");
    let delivery = services
        .webpush
        .received()
        .into_iter()
        .find(|delivery| delivery.status == 201)
        .expect("a delivered Web Push message");
    assert_eq!(delivery.urgency.as_deref(), Some("high"));
    let plaintext: Value = serde_json::from_slice(&delivery.plaintext).expect("JSON inside");
    assert_eq!(plaintext["notification"]["title"], "Hello");
    match Envelope::decode(plaintext["ringpush"].as_str().expect("an envelope")) {
        Ok(Envelope::Whole(push)) => assert_eq!(push.message_id, web_id),
        other => panic!("expected the whole message, got {other:?}"),
    }

    // Tokens are checked, and guarded: a client key (shipped in every app) may not set one.
    let path = format!("/v1/apps/{app}/devices/{android}/platform-token");
    let fcm = json!({"service": "fcm", "token": "rotated"});
    let not_hex = json!({"service": "apns", "token": "not hex"});
    for (bearer, token, status, message) in [
        (client_key.as_str(), &fcm, 403, "client key"),
        (server_key.as_str(), &not_hex, 400, "hexadecimal"),
        ("dt1.forged.1.2.abc", &fcm, 401, "device token"),
        // A server key that manages devices may.
        (server_key.as_str(), &fcm, 200, ""),
    ] {
        let (answered, body) = platform.put(&path, bearer, token).await;
        assert_eq!(answered, status, "{token} with {bearer}: {body}");
        let text = body["error"]["message"].as_str().unwrap_or("");
        assert!(text.contains(message), "{body}");
    }

    // Bad credentials are refused with the field named, and nothing is stored.
    let (status, body) = platform.put(&format!("/v1/apps/{app}/gateways"),
        ADMIN_TOKEN,
        &json!({"apns": {"team_id": "x", "key_id": KEY_ID, "topic": TOPIC, "private_key": "nope"}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("apns.team_id"),
        "{body}"
    );
    let (status, body) = platform
        .get(&format!("/v1/apps/{app}/gateways"), ADMIN_TOKEN)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["apns"]["team_id"], TEAM_ID, "{body}");
}

/// A message that reaches a device through both paths — APNs while the app was in the
/// background, then the socket's replay when it comes back — is handed to the app once; and
/// a `platform_only` message to a connected device arrives both ways and is handed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_came_both_ways_is_handed_to_the_app_once() {
    use ringpush_sdk::{Client, Config, PlatformPush, PlatformToken};

    let services = Services::start().await;
    let platform = services.platform().await;
    let (app, server_key, client_key) = app_with_gateways(&platform, &services).await;
    let state_file = platform.dir.path().join("phone.json");
    let config = || {
        Config::new(
            platform.controller_url.clone(),
            platform.dispatcher_url.clone(),
            app.parse().expect("app id"),
            client_key.clone(),
        )
        .with_state_file(&state_file)
    };
    let token = apns_token(0x5e);
    let mut client = Client::start(config()).await.expect("client starts");
    client
        .set_platform_token(PlatformToken::Apns {
            token: token.clone(),
            sandbox: false,
        })
        .await
        .expect("token registered");
    let device = client.device_id().to_string();
    let first = send(
        &platform,
        &app,
        &server_key,
        json!({"device_ids": [device], "data": "first"}),
    )
    .await;
    let handed = next_message(&mut client).await;
    assert_eq!(handed.message_id, first);
    client.close().await;

    // In the background: the message reaches APNs at once (high priority, not connected).
    let second = send(
        &platform,
        &app,
        &server_key,
        json!({"device_ids": [device], "data": "second", "priority": "high",
               "notification": {"title": "Second"}}),
    )
    .await;
    let request = apns_requests(&services.apns, &token, 1).await.remove(0);
    let envelope = request.body["ringpush"]
        .as_str()
        .expect("an envelope")
        .to_owned();
    let third = send(
        &platform,
        &app,
        &server_key,
        json!({"device_ids": [device], "data": "third"}),
    )
    .await;

    // The app is woken by the notification, then connects: the socket replays second and
    // third; second was handed from the notification already.
    let mut client = Client::start(config()).await.expect("client starts again");
    match client
        .handle_platform_push(&envelope)
        .await
        .expect("envelope")
    {
        PlatformPush::Message(message) => {
            assert_eq!(message.message_id, second);
            assert_eq!(message.data, b"second");
        }
        other => panic!("expected the message, got {other:?}"),
    }
    let next = next_message(&mut client).await;
    assert_eq!(next.message_id, third, "second must not be handed twice");
    assert!(matches!(
        client.handle_platform_push(&envelope).await,
        Ok(PlatformPush::Duplicate)
    ));

    // Connected, platform only: both paths carry it, the app sees it once.
    let fourth = send(
        &platform,
        &app,
        &server_key,
        json!({"device_ids": [device], "data": "fourth", "route": "platform_only"}),
    )
    .await;
    let next = next_message(&mut client).await;
    assert_eq!(next.message_id, fourth);
    let request = apns_requests(&services.apns, &token, 2).await.remove(1);
    let envelope = request.body["ringpush"].as_str().expect("an envelope");
    assert!(matches!(
        client.handle_platform_push(envelope).await,
        Ok(PlatformPush::Duplicate)
    ));
    let fifth = send(
        &platform,
        &app,
        &server_key,
        json!({"device_ids": [device], "data": "fifth"}),
    )
    .await;
    assert_eq!(next_message(&mut client).await.message_id, fifth);
    // Everything handed was acked: the inbox is empty.
    let path = format!("/v1/apps/{app}/devices/{device}");
    eventually("the inbox empties", Duration::from_secs(20), async || {
        platform.get(&path, &server_key).await.1["pending"] == 0
    })
    .await;
    client.close().await;
}

async fn next_message(client: &mut ringpush_sdk::Client) -> ringpush_sdk::Message {
    tokio::time::timeout(Duration::from_secs(20), client.next_message())
        .await
        .expect("a message within 20 s")
        .expect("a message")
}

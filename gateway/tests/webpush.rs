//! The Web Push provider against the platform-doubles push service, over real loopback
//! sockets: encryption checked by an independent implementation (RustCrypto), VAPID
//! verified, headers, and every answer's outcome.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{SilentServer, unix_millis};
use ringpush_gateway::webpush::{Subscription, WebPushClient};
use ringpush_gateway::{GatewayConfig, Outcome, VapidCredentials};
use ringpush_platform_doubles::webpush::{
    PushService, SubscriptionKeys, WebPushDelivery, decrypt_aes128gcm, vapid_key_pair,
};
use ringpush_protocol::device::{Notification, Priority, Push};
use ringpush_protocol::platform::Envelope;

fn local_config() -> GatewayConfig {
    GatewayConfig {
        allow_plain_http: true,
        request_timeout: Duration::from_secs(10),
        ..GatewayConfig::default()
    }
}

fn client() -> WebPushClient {
    WebPushClient::new(&local_config()).expect("a client")
}

fn credentials() -> VapidCredentials {
    let pair = vapid_key_pair();
    VapidCredentials {
        subject: "mailto:ops@example.com".into(),
        private_key: pair.private_key,
        public_key: pair.public_key,
    }
}

fn subscription(keys: &SubscriptionKeys) -> Subscription<'_> {
    Subscription {
        endpoint: &keys.endpoint,
        p256dh: &keys.p256dh,
        auth: &keys.auth,
    }
}

fn push(payload: &[u8]) -> Push {
    Push {
        message_id: "0000000000000abc-3".into(),
        seq: 3,
        payload: payload.to_vec(),
        content_type: "application/json".into(),
        created_at_ms: unix_millis(),
        ..Default::default()
    }
}

/// A push service bound to a new VAPID key, one subscription on it, those credentials, and a
/// client on the local configuration.
struct Setup {
    service: PushService,
    keys: SubscriptionKeys,
    credentials: VapidCredentials,
    client: WebPushClient,
}

impl Setup {
    async fn start() -> Self {
        let credentials = credentials();
        let service = PushService::start(&credentials.public_key)
            .await
            .expect("the push service starts");
        let keys = service.subscribe();
        Self {
            service,
            keys,
            credentials,
            client: client(),
        }
    }

    /// Sends `push` to the subscription with the setup's client and credentials.
    async fn send(&self, push: &Push) -> Outcome {
        self.send_with(&self.client, &self.keys.endpoint, push)
            .await
    }

    /// Sends `push` through `client` to the subscription's keys at `endpoint`.
    async fn send_with(&self, client: &WebPushClient, endpoint: &str, push: &Push) -> Outcome {
        let keys = SubscriptionKeys {
            endpoint: endpoint.to_owned(),
            ..self.keys.clone()
        };
        client
            .send(&self.credentials, &subscription(&keys), push)
            .await
    }
}

/// The decrypted plaintext of a delivery, as JSON.
fn plaintext_json(delivery: &WebPushDelivery) -> serde_json::Value {
    serde_json::from_slice(&delivery.plaintext).expect("JSON")
}

/// Fails unless `outcome` is `label` with a reason that starts with `reason_start`.
fn assert_outcome(outcome: &Outcome, label: &str, reason_start: &str) {
    assert!(
        outcome.label() == label
            && outcome
                .reason()
                .is_some_and(|reason| reason.starts_with(reason_start)),
        "expected {label} with a reason starting {reason_start:?}, got {outcome:?}"
    );
}

#[tokio::test]
async fn a_push_arrives_decrypted_as_built_with_its_headers() {
    let setup = Setup::start().await;
    let mut push = push(br#"{"order":42}"#);
    push.expires_at_ms = unix_millis() + 3_600_000;
    push.collapse_key = "order-42".into();
    push.priority = Priority::High as i32;
    push.notification = Some(Notification {
        title: "Your \"order\"".into(),
        body: "has shipped".into(),
        deep_link: "shop://orders/42".into(),
        badge: None,
    });

    let outcome = setup.send(&push).await;
    assert_eq!(outcome, Outcome::Delivered);

    let received = setup.service.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let delivery = &received[0];
    assert_eq!(delivery.status, 201);
    assert_eq!(delivery.endpoint, setup.keys.endpoint);
    let expected = format!(
        r#"{{"ringpush":{},"notification":{{"title":"Your \"order\"","body":"has shipped","deep_link":"shop://orders/42"}}}}"#,
        serde_json::to_string(&Envelope::encode(&push, usize::MAX)).expect("a string"),
    );
    assert_eq!(
        String::from_utf8_lossy(&delivery.plaintext),
        expected,
        "the decrypted plaintext, byte for byte"
    );
    let json = plaintext_json(delivery);
    let envelope = json["ringpush"].as_str().expect("the envelope");
    assert_eq!(
        Envelope::decode(envelope),
        Ok(Envelope::Whole(push.clone()))
    );
    assert!(
        (3590..=3600).contains(&delivery.ttl),
        "TTL {} for an hour",
        delivery.ttl
    );
    assert_eq!(delivery.urgency.as_deref(), Some("high"));
    assert_eq!(delivery.topic.as_deref(), Some("order-42"));
}

#[tokio::test]
async fn a_push_without_expiry_or_priority_gets_28_days_normal_urgency_and_no_topic() {
    let setup = Setup::start().await;
    assert_eq!(setup.send(&push(b"hello")).await, Outcome::Delivered);
    let delivery = setup.service.received().pop().expect("one delivery");
    assert_eq!(delivery.ttl, 28 * 24 * 3600);
    assert_eq!(delivery.urgency.as_deref(), Some("normal"));
    assert_eq!(delivery.topic, None);
    assert_eq!(plaintext_json(&delivery).get("notification"), None);
}

#[test]
fn the_doubles_decryption_reads_the_rfc_8291_example() {
    // RFC 8291 section 5: the encrypted message, the receiver's private key, auth secret.
    let body = concat!(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml",
        "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT",
        "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
    );
    let decode = |text: &str| URL_SAFE_NO_PAD.decode(text).expect("base64url");
    let plaintext = decrypt_aes128gcm(
        &decode(body),
        &decode("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"),
        &decode("BTBZMqHH6r4Tts7J_aSIgg"),
    )
    .expect("the RFC's example decrypts");
    assert_eq!(plaintext, b"When I grow up, I want to be a watermelon");
}

#[tokio::test]
async fn each_send_uses_its_own_salt_and_ephemeral_key() {
    let setup = Setup::start().await;
    let push = push(b"same message");
    for _ in 0..2 {
        assert_eq!(setup.send(&push).await, Outcome::Delivered);
    }
    let received = setup.service.received();
    assert_eq!(received.len(), 2);
    let (first, second) = (&received[0].body, &received[1].body);
    assert_eq!(first.len(), second.len());
    assert_ne!(first[..16], second[..16], "the salts differ");
    assert_eq!(first[20], 65, "the key id is the sender's public point");
    assert_ne!(first[21..86], second[21..86], "the ephemeral keys differ");
    assert_eq!(received[0].plaintext, received[1].plaintext);
}

#[tokio::test]
async fn an_unsubscribed_browser_is_retired_on_410() {
    let setup = Setup::start().await;
    setup.service.gone(&setup.keys.endpoint);
    let outcome = setup.send(&push(b"x")).await;
    assert_outcome(&outcome, "token_retired", "HTTP 410");
}

#[tokio::test]
async fn an_unknown_endpoint_is_retired_on_404() {
    let setup = Setup::start().await;
    let unknown = format!("{}/push/never-subscribed", setup.service.origin());
    let outcome = setup.send_with(&setup.client, &unknown, &push(b"x")).await;
    assert_outcome(&outcome, "token_retired", "HTTP 404");
}

#[tokio::test]
async fn rate_limiting_is_retried_after_the_services_delay() {
    let setup = Setup::start().await;
    setup
        .service
        .fail_next(&setup.keys.endpoint, 429, Some(30), 1);
    let outcome = setup.send(&push(b"x")).await;
    assert!(
        matches!(outcome, Outcome::Retry { after: Some(after), .. } if after == Duration::from_secs(30)),
        "{outcome:?}"
    );
    // The fault was for one push only: the next goes through.
    assert_eq!(setup.send(&push(b"x")).await, Outcome::Delivered);
}

#[tokio::test]
async fn an_unavailable_service_is_retried() {
    let setup = Setup::start().await;
    setup.service.fail_next(&setup.keys.endpoint, 503, None, 1);
    let outcome = setup.send(&push(b"x")).await;
    assert_outcome(&outcome, "retry", "HTTP 503");
    assert!(
        matches!(outcome, Outcome::Retry { after: None, .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn another_application_server_key_is_rejected_as_refused_vapid() {
    let setup = Setup::start().await;
    let other_credentials = credentials();
    let outcome = setup
        .client
        .send(&other_credentials, &subscription(&setup.keys), &push(b"x"))
        .await;
    assert_outcome(&outcome, "rejected", "HTTP 403");
    assert!(
        outcome
            .reason()
            .is_some_and(|reason| reason.contains("VAPID")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_large_payload_goes_id_only_within_4096_bytes() {
    let setup = Setup::start().await;
    let mut large = push(&vec![b'z'; 5000]);
    large.notification = Some(Notification {
        title: "Big".into(),
        ..Default::default()
    });
    assert_eq!(setup.send(&large).await, Outcome::Delivered);
    let delivery = setup.service.received().pop().expect("one delivery");
    assert!(delivery.body.len() <= 4096, "{}", delivery.body.len());
    let json = plaintext_json(&delivery);
    assert_eq!(
        Envelope::decode(json["ringpush"].as_str().expect("the envelope")),
        Ok(Envelope::IdOnly {
            message_id: "0000000000000abc-3".into(),
            seq: 3,
            stream: 0
        })
    );
    assert_eq!(json["notification"]["title"], "Big");
}

#[tokio::test]
async fn an_unreachable_service_is_retried() {
    let setup = Setup::start().await;
    let nobody_listens = format!(
        "http://127.0.0.1:{}/push/abc",
        ringpush_testkit::free_port()
    );
    let outcome = setup
        .send_with(&setup.client, &nobody_listens, &push(b"x"))
        .await;
    assert!(
        matches!(&outcome, Outcome::Retry { after: None, reason } if !reason.contains("/push/abc")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_service_that_never_answers_times_out_into_a_retry() {
    let setup = Setup::start().await;
    // Accepts connections and reads nothing: the request can only time out.
    let silent = SilentServer::start().await;
    let config = GatewayConfig {
        request_timeout: Duration::from_millis(300),
        ..local_config()
    };
    let client = WebPushClient::new(&config).expect("a client");
    let silent_endpoint = format!("http://{}/push/abc", silent.address);
    let outcome = setup
        .send_with(&client, &silent_endpoint, &push(b"x"))
        .await;
    drop(silent);
    assert!(
        matches!(&outcome, Outcome::Retry { reason, .. } if reason.contains("timed out")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn plain_http_endpoints_are_rejected_unless_allowed() {
    let setup = Setup::start().await;
    let strict = WebPushClient::new(&GatewayConfig::default()).expect("a client");
    let outcome = setup
        .send_with(&strict, &setup.keys.endpoint, &push(b"x"))
        .await;
    assert!(matches!(outcome, Outcome::Rejected { .. }), "{outcome:?}");
    assert!(setup.service.received().is_empty(), "nothing was sent");
}

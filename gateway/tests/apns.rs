//! The APNs provider against the APNs double, over real TLS and HTTP/2 on 127.0.0.1: what
//! goes on the wire (headers, provider token, payload), what each answer becomes, and how
//! connections and provider tokens are shared and renewed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::SilentServer;
use ringpush_gateway::apns::ApnsClient;
use ringpush_gateway::{ApnsCredentials, GatewayConfig, Outcome};
use ringpush_platform_doubles::apns::{
    ApnsDouble, ApnsDoubleConfig, ApnsRequest, server_tls_config_from_files,
};
use ringpush_protocol::device::{Notification, Priority, Push};
use ringpush_protocol::platform::{ENVELOPE_KEY, Envelope};
use ringpush_testkit::TestPki;

const TEAM_ID: &str = "TEAM123456";
const KEY_ID: &str = "KEY1234567";
const TOPIC: &str = "com.example.app";

/// A CA and server certificate, an APNs signing key, and the credentials that use it.
struct Fixture {
    /// Holds the PEM files for the fixture's life.
    _dir: tempfile::TempDir,
    pki: TestPki,
    public_key: Vec<u8>,
    credentials: ApnsCredentials,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pki = TestPki::write(dir.path());
        let key = rcgen::KeyPair::generate().expect("a P-256 key");
        Self {
            _dir: dir,
            pki,
            public_key: key.public_key_raw().to_vec(),
            credentials: ApnsCredentials {
                team_id: TEAM_ID.into(),
                key_id: KEY_ID.into(),
                private_key: key.serialize_pem(),
                topic: TOPIC.into(),
            },
        }
    }

    async fn double(&self, max_concurrent_streams: u32) -> ApnsDouble {
        let tls = server_tls_config_from_files(&self.pki.server_cert, &self.pki.server_key)
            .expect("the test PKI's server certificate");
        let mut config = ApnsDoubleConfig::new(tls, TEAM_ID, KEY_ID, &self.public_key);
        config.max_concurrent_streams = max_concurrent_streams;
        ApnsDouble::start(config).await.expect("the double starts")
    }

    /// A gateway configuration whose production and sandbox endpoints are `production` and
    /// `sandbox`, trusting the test CA.
    fn config(&self, production: String, sandbox: String) -> GatewayConfig {
        GatewayConfig {
            apns_production_url: production,
            apns_sandbox_url: sandbox,
            extra_ca_pem: Some(std::fs::read(&self.pki.ca).expect("the CA file")),
            request_timeout: Duration::from_secs(10),
            ..GatewayConfig::default()
        }
    }

    /// Sends `push` to the device `device_token(1)` through `client`, at its production
    /// endpoint.
    async fn send(&self, client: &ApnsClient, push: &Push) -> Outcome {
        client
            .send(&self.credentials, &device_token(1), false, push)
            .await
    }

    /// A client whose both endpoints are `double`.
    fn client(&self, double: &ApnsDouble) -> ApnsClient {
        ApnsClient::new(&self.config(double.url(), double.url())).expect("a client")
    }
}

/// A fixture, a double on it (1000 concurrent streams) and a client whose both endpoints are
/// the double.
struct Running {
    fixture: Fixture,
    double: ApnsDouble,
    client: ApnsClient,
}

impl Running {
    async fn start() -> Self {
        let fixture = Fixture::new();
        let double = fixture.double(1000).await;
        let client = fixture.client(&double);
        Self {
            fixture,
            double,
            client,
        }
    }

    /// Sends `push` to the device `device_token(1)`, at the production endpoint.
    async fn send(&self, push: &Push) -> Outcome {
        self.fixture.send(&self.client, push).await
    }

    /// Sends `push`, which must be delivered, and answers the one request the double got.
    async fn deliver(&self, push: &Push) -> ApnsRequest {
        assert_eq!(self.send(push).await, Outcome::Delivered);
        only_request(&self.double)
    }
}

fn device_token(number: u32) -> String {
    format!("{number:064x}")
}

fn alert(title: &str, body: &str) -> Push {
    Push {
        message_id: "00000000000000ab-7".into(),
        seq: 7,
        payload: br#"{"order":42}"#.to_vec(),
        content_type: "application/json".into(),
        created_at_ms: 1_700_000_000_000,
        notification: Some(Notification {
            title: title.into(),
            body: body.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn data_only() -> Push {
    Push {
        notification: None,
        ..alert("", "")
    }
}

fn only_request(double: &ApnsDouble) -> ApnsRequest {
    let mut received = double.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    received.remove(0)
}

fn header<'a>(request: &'a ApnsRequest, name: &str) -> Option<&'a str> {
    request.headers.get(name).map(String::as_str)
}

fn envelope_of(request: &ApnsRequest) -> Envelope {
    let text = request.body[ENVELOPE_KEY]
        .as_str()
        .expect("the envelope is a string");
    Envelope::decode(text).expect("a valid envelope")
}

#[tokio::test]
async fn an_alert_arrives_with_apples_headers_and_a_verified_provider_token() {
    let running = Running::start().await;
    let push = alert("Order shipped", "Your order 42 is on its way");

    let request = running.deliver(&push).await;

    assert_eq!((request.status, request.reason.as_deref()), (200, None));
    assert_eq!(request.device_token, device_token(1));
    assert_eq!(header(&request, "apns-topic"), Some(TOPIC));
    assert_eq!(header(&request, "apns-push-type"), Some("alert"));
    assert_eq!(header(&request, "apns-priority"), Some("5"));
    assert_eq!(header(&request, "content-type"), Some("application/json"));
    // A message without expiry leaves APNs to store it for an offline device.
    assert_eq!(header(&request, "apns-expiration"), None);
    assert_eq!(header(&request, "apns-collapse-id"), None);
    let authorization = header(&request, "authorization").expect("a provider token");
    assert!(authorization.starts_with("bearer "), "{authorization}");
    // The double answered 200, so the signature verified with the key's public half.
    assert_eq!(request.jwt_header["alg"], "ES256");
    assert_eq!(request.jwt_header["kid"], KEY_ID);
    assert_eq!(request.jwt_claims["iss"], TEAM_ID);
    assert!(request.jwt_claims["iat"].as_u64().is_some());
    assert_eq!(
        request.body["aps"],
        serde_json::json!({
            "alert": {"title": "Order shipped", "body": "Your order 42 is on its way"},
            "sound": "default",
        })
    );
    assert_eq!(envelope_of(&request), Envelope::Whole(push));
}

#[tokio::test]
async fn a_data_only_push_is_a_background_push_at_priority_5() {
    let running = Running::start().await;
    let mut push = data_only();
    push.set_priority(Priority::High);

    let request = running.deliver(&push).await;

    assert_eq!(header(&request, "apns-push-type"), Some("background"));
    assert_eq!(header(&request, "apns-priority"), Some("5"));
    assert_eq!(
        request.body["aps"],
        serde_json::json!({"content-available": 1})
    );
}

#[tokio::test]
async fn a_high_priority_alert_goes_at_priority_10() {
    let running = Running::start().await;
    let mut push = alert("Your driver is here", "");
    push.set_priority(Priority::High);

    let request = running.deliver(&push).await;

    assert_eq!(header(&request, "apns-push-type"), Some("alert"));
    assert_eq!(header(&request, "apns-priority"), Some("10"));
}

#[tokio::test]
async fn collapse_id_expiration_badge_and_deep_link_are_passed() {
    let running = Running::start().await;
    let mut push = alert("Score", "2 - 1");
    push.collapse_key = "match-17".into();
    push.expires_at_ms = 4_102_444_800_500;
    if let Some(notification) = &mut push.notification {
        notification.badge = Some(4);
        notification.deep_link = "sports://matches/17".into();
    }

    let request = running.deliver(&push).await;

    assert_eq!(header(&request, "apns-collapse-id"), Some("match-17"));
    assert_eq!(header(&request, "apns-expiration"), Some("4102444800"));
    assert_eq!(request.body["aps"]["badge"], 4);
    assert_eq!(request.body["deep_link"], "sports://matches/17");
}

#[tokio::test]
async fn a_large_message_goes_id_only_within_4096_bytes() {
    let running = Running::start().await;
    let mut push = alert("A long read", "Open the app to read it");
    push.payload = vec![b'x'; 10_000];

    let request = running.deliver(&push).await;

    assert!(request.body_len <= 4096, "{}", request.body_len);
    assert_eq!(
        envelope_of(&request),
        Envelope::IdOnly {
            message_id: push.message_id.clone(),
            seq: 7,
            stream: 0
        }
    );
}

#[tokio::test]
async fn an_unregistered_token_is_retired() {
    let running = Running::start().await;
    running.double.unregister(&device_token(1));

    let outcome = running.send(&alert("Hi", "")).await;

    assert_eq!(
        outcome,
        Outcome::TokenRetired {
            reason: "Unregistered".into()
        }
    );
    assert_eq!(only_request(&running.double).status, 410);
}

#[tokio::test]
async fn rate_limits_and_unavailability_answer_retry() {
    let running = Running::start().await;
    let (double, token) = (&running.double, device_token(1));
    double.fail_next(&token, 429, "TooManyRequests", 1);
    double.fail_next(&token, 503, "ServiceUnavailable", 1);
    double.fail_next_with_retry_after(
        &token,
        503,
        "ServiceUnavailable",
        1,
        Duration::from_secs(30),
    );
    let push = alert("Hi", "");
    let send = || running.send(&push);

    assert_eq!(
        send().await,
        Outcome::Retry {
            reason: "TooManyRequests".into(),
            after: None
        }
    );
    assert_eq!(
        send().await,
        Outcome::Retry {
            reason: "ServiceUnavailable".into(),
            after: None
        }
    );
    assert_eq!(
        send().await,
        Outcome::Retry {
            reason: "ServiceUnavailable".into(),
            after: Some(Duration::from_secs(30))
        }
    );
    assert_eq!(send().await, Outcome::Delivered);
}

#[tokio::test]
async fn apples_other_answers_retire_the_token_or_reject_the_message() {
    let running = Running::start().await;
    let cases = [
        (400, "BadDeviceToken", "token_retired"),
        (400, "DeviceTokenNotForTopic", "token_retired"),
        (410, "ExpiredToken", "token_retired"),
        (413, "PayloadTooLarge", "rejected"),
        (400, "TopicDisallowed", "rejected"),
        (500, "InternalServerError", "retry"),
    ];
    for (status, reason, label) in cases {
        running
            .double
            .fail_next(&device_token(1), status, reason, 1);
        let outcome = running.send(&alert("Hi", "")).await;
        assert_eq!((outcome.label(), outcome.reason()), (label, Some(reason)));
    }
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_rejected_naming_the_credentials() {
    let running = Running::start().await;
    let wrong_key = ApnsCredentials {
        private_key: rcgen::KeyPair::generate().expect("a key").serialize_pem(),
        ..running.fixture.credentials.clone()
    };

    let outcome = running
        .client
        .send(&wrong_key, &device_token(1), false, &alert("Hi", ""))
        .await;

    let Outcome::Rejected { reason } = outcome else {
        panic!("expected Rejected, got {outcome:?}");
    };
    assert!(reason.starts_with("InvalidProviderToken"), "{reason}");
    assert!(
        reason.contains(TEAM_ID) && reason.contains(KEY_ID),
        "{reason}"
    );
    let request = only_request(&running.double);
    assert_eq!(
        (request.status, request.reason.as_deref()),
        (403, Some("InvalidProviderToken"))
    );
}

#[tokio::test]
async fn two_hundred_concurrent_sends_share_one_connection_of_10_streams() {
    let fixture = Fixture::new();
    let double = fixture.double(10).await;
    let client = Arc::new(fixture.client(&double));
    let credentials = Arc::new(fixture.credentials.clone());

    let mut sends = tokio::task::JoinSet::new();
    for number in 0..200 {
        let client = Arc::clone(&client);
        let credentials = Arc::clone(&credentials);
        sends.spawn(async move {
            let mut push = alert("Hi", "");
            push.seq = u64::from(number);
            client
                .send(&credentials, &device_token(number), false, &push)
                .await
        });
    }
    let outcomes = sends.join_all().await;

    let not_delivered: Vec<&Outcome> = outcomes
        .iter()
        .filter(|outcome| **outcome != Outcome::Delivered)
        .collect();
    assert!(not_delivered.is_empty(), "{not_delivered:?}");
    assert_eq!(double.connections(), 1);
    assert_eq!(double.received().len(), 200);
}

#[tokio::test]
async fn the_provider_token_is_re_signed_after_the_refresh_interval() {
    let fixture = Fixture::new();
    let double = fixture.double(1000).await;
    let mut config = fixture.config(double.url(), double.url());
    config.apns_token_refresh = Duration::from_secs(1);
    let client = ApnsClient::new(&config).expect("a client");
    let push = alert("Hi", "");
    let send = || fixture.send(&client, &push);

    assert_eq!(send().await, Outcome::Delivered);
    assert_eq!(send().await, Outcome::Delivered);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send().await, Outcome::Delivered);

    let tokens: Vec<String> = double
        .received()
        .iter()
        .map(|request| {
            header(request, "authorization")
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(tokens[0], tokens[1], "reused within the interval");
    assert_ne!(tokens[1], tokens[2], "re-signed after it");
}

#[tokio::test]
async fn an_expired_provider_token_is_re_signed_and_the_send_retried_once() {
    let running = Running::start().await;
    let (double, token) = (&running.double, device_token(1));
    double.fail_next(&token, 403, "ExpiredProviderToken", 1);

    let outcome = running.send(&alert("Hi", "")).await;

    assert_eq!(outcome, Outcome::Delivered);
    let received = double.received();
    let statuses: Vec<u16> = received.iter().map(|request| request.status).collect();
    assert_eq!(statuses, [403, 200]);
    assert_ne!(
        header(&received[0], "authorization"),
        header(&received[1], "authorization")
    );

    // Only once: a second expiry in a row is the caller's to retry.
    double.fail_next(&token, 403, "ExpiredProviderToken", 2);
    let outcome = running.send(&alert("Hi", "")).await;
    assert_eq!(outcome.label(), "rejected");
    assert_eq!(double.received().len(), 4);
}

#[tokio::test]
async fn a_sandbox_token_goes_to_the_sandbox_endpoint() {
    let fixture = Fixture::new();
    let production = fixture.double(1000).await;
    let sandbox = fixture.double(1000).await;
    let client =
        ApnsClient::new(&fixture.config(production.url(), sandbox.url())).expect("a client");

    let to_sandbox = client
        .send(
            &fixture.credentials,
            &device_token(1),
            true,
            &alert("Hi", ""),
        )
        .await;
    let to_production = client
        .send(
            &fixture.credentials,
            &device_token(2),
            false,
            &alert("Hi", ""),
        )
        .await;

    assert_eq!(
        (to_sandbox, to_production),
        (Outcome::Delivered, Outcome::Delivered)
    );
    assert_eq!(only_request(&sandbox).device_token, device_token(1));
    assert_eq!(only_request(&production).device_token, device_token(2));
}

#[tokio::test]
async fn an_unreachable_endpoint_answers_retry() {
    let fixture = Fixture::new();
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("its address").port()
    };
    let url = format!("https://127.0.0.1:{closed_port}");
    let client = ApnsClient::new(&fixture.config(url.clone(), url)).expect("a client");

    let outcome = fixture.send(&client, &alert("Hi", "")).await;

    assert!(
        matches!(outcome, Outcome::Retry { after: None, .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_as_retry() {
    let fixture = Fixture::new();
    // Accepts TCP connections and holds them without a word of TLS.
    let silent = SilentServer::start().await;
    let url = format!("https://{}", silent.address);
    let mut config = fixture.config(url.clone(), url);
    config.request_timeout = Duration::from_millis(300);
    let client = ApnsClient::new(&config).expect("a client");

    let outcome = fixture.send(&client, &alert("Hi", "")).await;

    let Outcome::Retry {
        reason,
        after: None,
    } = outcome
    else {
        panic!("expected Retry, got {outcome:?}");
    };
    assert!(reason.contains("within"), "{reason}");
}

#[tokio::test]
async fn a_connection_closed_by_goaway_is_replaced() {
    let running = Running::start().await;
    let double = &running.double;
    let push = alert("Hi", "");
    let send = || running.send(&push);
    assert_eq!(send().await, Outcome::Delivered);

    double.close_connections().await;
    assert_eq!(double.open_connections(), 0);
    // A send that finds the old connection before noticing its GOAWAY fails as Retry; the
    // one after it uses a new connection.
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let outcome = send().await;
        let delivered = outcome == Outcome::Delivered;
        outcomes.push(outcome);
        if delivered {
            break;
        }
    }

    assert_eq!(outcomes.last(), Some(&Outcome::Delivered), "{outcomes:?}");
    assert!(
        outcomes.iter().all(|outcome| outcome.label() != "rejected"),
        "{outcomes:?}"
    );
    assert_eq!(double.connections(), 2);
    let last = double.received().pop().expect("a request");
    assert_eq!(last.connection, 2);
}

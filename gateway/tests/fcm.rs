//! The FCM provider against the FCM double (Google's token endpoint and FCM's v1 send
//! endpoint on a loopback port): what goes out, how access tokens are fetched and reused,
//! and what each of Google's answers becomes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{SilentServer, unix_millis};
use ringpush_gateway::fcm::FcmClient;
use ringpush_gateway::{FcmCredentials, GatewayConfig, Outcome};
use ringpush_platform_doubles::fcm::{
    FcmDouble, TEST_CLIENT_EMAIL, TEST_PROJECT_ID, test_public_key, test_service_account,
    untrusted_service_account,
};
use ringpush_protocol::device::{Notification, Priority, Push};
use ringpush_protocol::platform::{ENVELOPE_KEY, Envelope};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEVICE: &str = "fcm-registration-token-1";

struct Setup {
    double: FcmDouble,
    client: FcmClient,
    credentials: FcmCredentials,
}

impl Setup {
    /// Sends `push` to [`DEVICE`] with the test service account.
    async fn send(&self, push: &Push) -> Outcome {
        self.client.send(&self.credentials, DEVICE, push).await
    }
}

async fn start_double() -> FcmDouble {
    FcmDouble::start(TEST_PROJECT_ID, TEST_CLIENT_EMAIL, test_public_key())
        .await
        .expect("the double starts")
}

fn config_for(double: &FcmDouble) -> GatewayConfig {
    GatewayConfig {
        fcm_url: double.url(),
        fcm_token_url: Some(double.token_url()),
        allow_plain_http: true,
        ..GatewayConfig::default()
    }
}

fn client(config: &GatewayConfig) -> FcmClient {
    FcmClient::new(config).expect("a client")
}

fn credentials_from(service_account_json: &str) -> FcmCredentials {
    let credentials: FcmCredentials =
        serde_json::from_str(service_account_json).expect("a service account key file");
    credentials.validate().expect("valid credentials");
    credentials
}

/// The test service account, whose key the double trusts and whose `token_uri` is the
/// double's.
fn test_credentials(double: &FcmDouble) -> FcmCredentials {
    let (json, _) = test_service_account(&double.token_url());
    credentials_from(&json)
}

async fn setup() -> Setup {
    let double = start_double().await;
    Setup {
        client: client(&config_for(&double)),
        credentials: test_credentials(&double),
        double,
    }
}

fn push(seq: u64) -> Push {
    Push {
        message_id: format!("00000000000000ab-{seq}"),
        seq,
        payload: br#"{"order":42}"#.to_vec(),
        content_type: "application/json".into(),
        created_at_ms: 1_700_000_000_000,
        ..Default::default()
    }
}

fn envelope_of(message: &serde_json::Value) -> Envelope {
    let text = message["data"][ENVELOPE_KEY]
        .as_str()
        .expect("data.ringpush is a string");
    Envelope::decode(text).expect("an envelope")
}

/// The reason of a `Rejected` outcome; any other outcome fails the test.
fn rejected_reason(outcome: &Outcome) -> &str {
    let Outcome::Rejected { reason } = outcome else {
        panic!("expected Rejected, got {outcome:?}");
    };
    reason
}

/// The reason of a `Retry` without the service's delay; any other outcome fails the test.
fn retry_reason(outcome: &Outcome) -> &str {
    let Outcome::Retry {
        reason,
        after: None,
    } = outcome
    else {
        panic!("expected Retry without a delay, got {outcome:?}");
    };
    reason
}

#[tokio::test]
async fn a_message_goes_out_with_its_envelope_notification_and_android_options() {
    let setup = setup().await;
    let mut push = push(7);
    push.expires_at_ms = unix_millis() + 3_600_000;
    push.collapse_key = "order-42".into();
    push.priority = Priority::High as i32;
    push.notification = Some(Notification {
        title: "Order 42".into(),
        body: "is on its way".into(),
        ..Default::default()
    });

    let outcome = setup.send(&push).await;

    assert_eq!(outcome, Outcome::Delivered);
    let delivered = setup.double.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].token, DEVICE);
    let message = &delivered[0].message;
    assert_eq!(envelope_of(message), Envelope::Whole(push.clone()));
    assert_eq!(
        message["notification"],
        serde_json::json!({"title": "Order 42", "body": "is on its way"})
    );
    let android = &message["android"];
    assert_eq!(android["priority"], "HIGH");
    assert_eq!(android["collapse_key"], "order-42");
    let ttl: u64 = android["ttl"]
        .as_str()
        .and_then(|ttl| ttl.strip_suffix('s'))
        .and_then(|seconds| seconds.parse().ok())
        .expect("a ttl in seconds");
    assert!((3000..=3600).contains(&ttl), "ttl {ttl}");
    assert_eq!(message["apns"]["headers"]["apns-priority"], "10");
    assert_eq!(message["apns"]["headers"]["apns-collapse-id"], "order-42");
    assert_eq!(message["webpush"]["headers"]["Urgency"], "high");
}

#[tokio::test]
async fn a_data_only_message_without_expiry_has_no_notification_and_no_ttl() {
    let setup = setup().await;
    assert_eq!(setup.send(&push(1)).await, Outcome::Delivered);
    let message = &setup.double.delivered()[0].message;
    assert!(message.get("notification").is_none(), "{message}");
    assert_eq!(
        message["android"],
        serde_json::json!({"priority": "NORMAL"})
    );
    assert_eq!(message["apns"]["headers"]["apns-priority"], "5");
    assert_eq!(envelope_of(message), Envelope::Whole(push(1)));
}

#[tokio::test]
async fn one_access_token_serves_many_sends() {
    let setup = setup().await;
    for seq in 1..=20 {
        assert_eq!(
            setup.send(&push(seq)).await,
            Outcome::Delivered,
            "send {seq}"
        );
    }
    assert_eq!(setup.double.token_requests(), 1);
    assert_eq!(setup.double.delivered().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_without_a_token_fetch_it_once() {
    let setup = Arc::new(setup().await);
    // The token request stays outstanding while the other sends start.
    setup.double.delay_token_answers(Duration::from_millis(200));
    let mut sends = tokio::task::JoinSet::new();
    for seq in 1..=20 {
        let setup = Arc::clone(&setup);
        sends.spawn(async move { setup.send(&push(seq)).await });
    }
    while let Some(outcome) = sends.join_next().await {
        assert_eq!(outcome.expect("the send task ends"), Outcome::Delivered);
    }
    assert_eq!(setup.double.token_requests(), 1);
    assert_eq!(setup.double.delivered().len(), 20);
}

#[tokio::test]
async fn a_token_near_its_expiry_is_not_used() {
    let setup = setup().await;
    // Tokens granted for 30 s are within the provider's one-minute refresh margin at once.
    setup
        .double
        .set_access_token_lifetime(Duration::from_secs(30));
    for seq in 1..=3 {
        assert_eq!(setup.send(&push(seq)).await, Outcome::Delivered);
    }
    assert_eq!(setup.double.token_requests(), 3);
}

#[tokio::test]
async fn a_refused_access_token_is_replaced_and_the_send_succeeds() {
    let setup = setup().await;
    assert_eq!(setup.send(&push(1)).await, Outcome::Delivered);
    setup.double.expire_access_tokens();

    let outcome = setup.send(&push(2)).await;

    assert_eq!(outcome, Outcome::Delivered);
    assert_eq!(setup.double.token_requests(), 2);
    let statuses: Vec<u16> = setup
        .double
        .received()
        .iter()
        .map(|request| request.status)
        .collect();
    assert_eq!(statuses, [200, 401, 200]);
    // The new token is kept.
    assert_eq!(setup.send(&push(3)).await, Outcome::Delivered);
    assert_eq!(setup.double.token_requests(), 2);
}

#[tokio::test]
async fn an_access_token_refused_twice_is_rejected_without_a_third_try() {
    let setup = setup().await;
    setup
        .double
        .fail_next(DEVICE, 401, "UNAUTHENTICATED", None, 2);

    let outcome = setup.send(&push(1)).await;

    let reason = rejected_reason(&outcome);
    assert!(reason.starts_with("UNAUTHENTICATED"), "{reason}");
    assert!(reason.contains(TEST_CLIENT_EMAIL), "{reason}");
    assert_eq!(setup.double.received().len(), 2);
    assert_eq!(setup.double.token_requests(), 2);
}

#[tokio::test]
async fn an_unregistered_token_is_retired() {
    let setup = setup().await;
    setup.double.unregister(DEVICE);
    assert_eq!(
        setup.send(&push(1)).await,
        Outcome::TokenRetired {
            reason: "UNREGISTERED".into()
        }
    );
}

#[tokio::test]
async fn a_sender_id_mismatch_retires_the_token() {
    let setup = setup().await;
    setup
        .double
        .fail_next(DEVICE, 403, "SENDER_ID_MISMATCH", None, 1);
    assert_eq!(
        setup.send(&push(1)).await,
        Outcome::TokenRetired {
            reason: "SENDER_ID_MISMATCH".into()
        }
    );
}

#[tokio::test]
async fn quota_exceeded_is_retried_after_the_services_delay() {
    let setup = setup().await;
    setup
        .double
        .fail_next(DEVICE, 429, "QUOTA_EXCEEDED", Some(7), 1);

    let outcome = setup.send(&push(1)).await;

    assert_eq!(
        outcome,
        Outcome::Retry {
            reason: "QUOTA_EXCEEDED".into(),
            after: Some(Duration::from_secs(7))
        }
    );
    // The failure was for one send only, and the provider itself did not send again.
    assert_eq!(setup.double.received().len(), 1);
    assert_eq!(setup.send(&push(1)).await, Outcome::Delivered);
}

#[tokio::test]
async fn unavailable_and_internal_are_retried() {
    let setup = setup().await;
    setup.double.fail_next(DEVICE, 503, "UNAVAILABLE", None, 1);
    setup.double.fail_next(DEVICE, 500, "INTERNAL", Some(30), 1);

    let first = setup.send(&push(1)).await;
    let second = setup.send(&push(1)).await;

    assert_eq!(
        first,
        Outcome::Retry {
            reason: "UNAVAILABLE".into(),
            after: None
        }
    );
    assert_eq!(
        second,
        Outcome::Retry {
            reason: "INTERNAL".into(),
            after: Some(Duration::from_secs(30))
        }
    );
}

#[tokio::test]
async fn invalid_argument_and_third_party_auth_errors_are_rejected() {
    let setup = setup().await;
    setup
        .double
        .fail_next(DEVICE, 400, "INVALID_ARGUMENT", None, 1);
    setup
        .double
        .fail_next(DEVICE, 401, "THIRD_PARTY_AUTH_ERROR", None, 1);

    let invalid = setup.send(&push(1)).await;
    let third_party = setup.send(&push(1)).await;

    let reason = rejected_reason(&invalid);
    assert!(reason.starts_with("INVALID_ARGUMENT: "), "{reason}");
    let reason = rejected_reason(&third_party);
    assert!(reason.starts_with("THIRD_PARTY_AUTH_ERROR"), "{reason}");
    // A 401 about APNs or Web Push credentials does not make the provider fetch a new token.
    assert_eq!(setup.double.token_requests(), 1);
}

#[tokio::test]
async fn a_key_the_service_does_not_know_is_rejected_naming_the_credentials() {
    let double = start_double().await;
    let credentials = credentials_from(&untrusted_service_account(&double.token_url()));

    let outcome = client(&config_for(&double))
        .send(&credentials, DEVICE, &push(1))
        .await;

    let reason = rejected_reason(&outcome);
    assert!(reason.starts_with("fcm credentials:"), "{reason}");
    assert!(reason.contains(TEST_CLIENT_EMAIL), "{reason}");
    assert!(reason.contains("invalid_grant"), "{reason}");
    assert_eq!(double.token_requests(), 1);
    assert!(double.received().is_empty());
}

#[tokio::test]
async fn a_failing_token_endpoint_is_retried_and_not_remembered() {
    let setup = setup().await;
    setup.double.fail_token_requests(503, 1);

    let outcome = setup.send(&push(1)).await;

    let reason = retry_reason(&outcome);
    assert!(reason.contains("http 503"), "{reason}");
    assert!(setup.double.received().is_empty());
    assert_eq!(setup.send(&push(1)).await, Outcome::Delivered);
    assert_eq!(setup.double.token_requests(), 2);
}

#[tokio::test]
async fn the_service_accounts_token_uri_is_used_when_the_config_names_none() {
    let double = start_double().await;
    let config = GatewayConfig {
        fcm_token_url: None,
        ..config_for(&double)
    };
    let outcome = client(&config)
        .send(&test_credentials(&double), DEVICE, &push(1))
        .await;
    assert_eq!(outcome, Outcome::Delivered);
    assert_eq!(double.token_requests(), 1);
}

#[tokio::test]
async fn a_large_message_goes_by_id_only() {
    let setup = setup().await;
    let mut large = push(9);
    large.payload = vec![b'x'; 5000];

    let outcome = setup.send(&large).await;

    assert_eq!(outcome, Outcome::Delivered);
    let message = &setup.double.delivered()[0].message;
    assert_eq!(
        envelope_of(message),
        Envelope::IdOnly {
            message_id: large.message_id.clone(),
            seq: 9,
            stream: 0
        }
    );
}

#[tokio::test]
async fn an_unreachable_service_is_retried() {
    let double = start_double().await;
    let nobody = format!("http://127.0.0.1:{}", ringpush_testkit::free_port());
    let credentials = test_credentials(&double);

    // FCM unreachable (the token endpoint answers).
    let config = GatewayConfig {
        fcm_url: nobody.clone(),
        ..config_for(&double)
    };
    let outcome = client(&config).send(&credentials, DEVICE, &push(1)).await;
    let reason = retry_reason(&outcome);
    assert!(reason.starts_with("unreachable"), "{reason}");

    // The token endpoint unreachable.
    let config = GatewayConfig {
        fcm_token_url: Some(format!("{nobody}/token")),
        ..config_for(&double)
    };
    let outcome = client(&config).send(&credentials, DEVICE, &push(1)).await;
    let reason = retry_reason(&outcome);
    assert!(reason.contains("unreachable"), "{reason}");
    assert!(double.received().is_empty());
}

#[tokio::test]
async fn services_that_never_answer_time_out_into_retries() {
    let double = start_double().await;
    let silent = SilentServer::start().await;
    let silent_url = format!("http://{}", silent.address);
    let credentials = test_credentials(&double);

    // A silent token endpoint.
    let config = GatewayConfig {
        fcm_token_url: Some(format!("{silent_url}/token")),
        request_timeout: Duration::from_millis(300),
        ..config_for(&double)
    };
    let outcome = client(&config).send(&credentials, DEVICE, &push(1)).await;
    assert_eq!(
        outcome,
        Outcome::Retry {
            reason: "fcm token endpoint: timeout".into(),
            after: None
        }
    );

    // A silent FCM (the double grants the token).
    let config = GatewayConfig {
        fcm_url: silent_url,
        request_timeout: Duration::from_secs(1),
        ..config_for(&double)
    };
    let outcome = client(&config).send(&credentials, DEVICE, &push(1)).await;
    let reason = retry_reason(&outcome);
    assert!(reason.ends_with("timeout"), "{reason}");
    assert_eq!(double.token_requests(), 1);
    assert!(double.received().is_empty());
}

/// A token endpoint that answers 200 with a body that never ends (the `token_uri` of a
/// service account is the app's word). Stops when the returned task is aborted.
async fn endless_token_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a listener");
    let url = format!(
        "http://{}/token",
        listener.local_addr().expect("an address")
    );
    let server = tokio::spawn(async move {
        while let Ok((mut connection, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match connection.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            transfer-encoding: chunked\r\n\r\n";
                let opening = br#"{"access_token":""#;
                let mut answer = head.as_bytes().to_vec();
                answer.extend_from_slice(format!("{:x}\r\n", opening.len()).as_bytes());
                answer.extend_from_slice(opening);
                answer.extend_from_slice(b"\r\n");
                if connection.write_all(&answer).await.is_err() {
                    return;
                }
                let chunk = [b'x'; 16 * 1024];
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(&chunk);
                framed.extend_from_slice(b"\r\n");
                while connection.write_all(&framed).await.is_ok() {}
            });
        }
    });
    (url, server)
}

#[tokio::test]
async fn an_endless_token_answer_is_cut_off_not_buffered_until_the_timeout() {
    let double = start_double().await;
    let (token_url, endless) = endless_token_endpoint().await;
    let request_timeout = Duration::from_secs(10);
    let config = GatewayConfig {
        fcm_token_url: Some(token_url),
        request_timeout,
        ..config_for(&double)
    };

    let started = std::time::Instant::now();
    let outcome = client(&config)
        .send(&test_credentials(&double), DEVICE, &push(1))
        .await;

    let reason = retry_reason(&outcome);
    assert!(reason.contains("an answer longer than"), "{reason}");
    assert!(
        started.elapsed() < request_timeout / 2,
        "{:?}",
        started.elapsed()
    );
    assert!(double.received().is_empty());
    endless.abort();
}

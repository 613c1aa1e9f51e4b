//! The SDK's side of platform notifications against a real deployment in the test process:
//! registering a platform token through the controller, and one message arriving both in a
//! platform notification and over the connection, handed to the app once.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Cluster, assert_quiet, eventually, init_logs, next, sign_token, texts};
use ringpush_protocol::DeviceId;
use ringpush_protocol::platform::Envelope;
use ringpush_sdk::{Client, Config, Error, Identity, PlatformPush, PlatformToken, state};
use ringpush_store::now_ms;

fn apns_token() -> PlatformToken {
    PlatformToken::Apns {
        token: "ab".repeat(32),
        sandbox: true,
    }
}

/// The device's platform token as the store has it.
async fn stored_token(cluster: &Cluster, device: DeviceId) -> Option<PlatformToken> {
    let registration = cluster
        .store
        .platform()
        .platform_token(device)
        .await
        .expect("read the platform token");
    registration.map(|registration| registration.token)
}

/// The envelopes a gateway would send for the device's pending inbox messages, in seq order.
async fn envelopes(cluster: &Cluster, device: DeviceId) -> Vec<(u64, String)> {
    let pending = cluster
        .store
        .read_inbox(device, 0, 10, now_ms())
        .await
        .expect("read the inbox");
    pending
        .into_iter()
        .map(|message| {
            let push = message.into_push(device);
            (push.seq, Envelope::encode(&push, 4000))
        })
        .collect()
}

async fn platform_push(client: &mut Client, envelope: &str) -> PlatformPush {
    client
        .handle_platform_push(envelope)
        .await
        .expect("a readable envelope")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_platform_tokens_through_the_controller_and_names_refusals() {
    init_logs();
    let cluster = Cluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Registered through the real controller: the device token is a real one.
    let client = Client::start(
        cluster
            .config()
            .with_state_file(dir.path().join("device.json")),
    )
    .await
    .expect("start");
    let device = client.device_id();
    assert_eq!(stored_token(&cluster, device).await, None);

    client
        .set_platform_token(apns_token())
        .await
        .expect("registered");
    assert_eq!(stored_token(&cluster, device).await, Some(apns_token()));
    // The platform rotated it (or the app moved to FCM): the new one replaces it.
    let fcm = PlatformToken::Fcm {
        token: "fcm:registration-token-1".into(),
    };
    client
        .set_platform_token(fcm.clone())
        .await
        .expect("rotated");
    assert_eq!(stored_token(&cluster, device).await, Some(fcm.clone()));

    // Refused by the SDK before any request.
    let refused = client
        .set_platform_token(PlatformToken::Apns {
            token: "not hex!".into(),
            sandbox: false,
        })
        .await;
    assert!(
        matches!(&refused, Err(Error::InvalidPlatformToken(text)) if text.contains("hexadecimal")),
        "{refused:?}"
    );
    // Passes the SDK's check (its controller is http://, so http:// endpoints may be local
    // test services) but not the controller's, which has no plain-http push services.
    let web_push = PlatformToken::WebPush {
        endpoint: "http://127.0.0.1:9/push/abc".into(),
        p256dh: URL_SAFE_NO_PAD.encode([4u8; 65]),
        auth: URL_SAFE_NO_PAD.encode([1u8; 16]),
    };
    let refused = client.set_platform_token(web_push).await;
    assert!(
        matches!(&refused, Err(Error::InvalidPlatformToken(text)) if text.contains("https://")),
        "{refused:?}"
    );
    assert_eq!(
        stored_token(&cluster, device).await,
        Some(fcm),
        "a refused token changes nothing"
    );

    // A device token the controller refuses: the identity must be replaced.
    let mut stranger: Identity = cluster.new_device().await;
    stranger.device_token = sign_token(DeviceId::random());
    let impostor = Client::start(cluster.config().with_identity(stranger.clone()))
        .await
        .expect("start");
    let refused = impostor.set_platform_token(apns_token()).await;
    assert!(
        matches!(&refused, Err(Error::Unauthenticated { .. })),
        "{refused:?}"
    );
    assert!(refused.unwrap_err().needs_new_identity());
    assert_eq!(stored_token(&cluster, stranger.device_id).await, None);
    impostor.close().await;

    client.clear_platform_token().await.expect("removed");
    assert_eq!(stored_token(&cluster, device).await, None);
    client
        .clear_platform_token()
        .await
        .expect("removing none succeeds");
    client.close().await;

    // No controller there at all.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let offline = Client::start(
        Config::new(nowhere.clone(), nowhere, cluster.app, common::CLIENT_KEY)
            .with_identity(cluster.new_device().await),
    )
    .await
    .expect("start");
    let refused = offline.set_platform_token(apns_token()).await;
    assert!(
        matches!(&refused, Err(Error::ControllerUnreachable(_))),
        "{refused:?}"
    );
    offline.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_both_notified_and_replayed_is_handed_once() {
    init_logs();
    let cluster = Cluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.json");
    let config = || cluster.config().with_state_file(&path);
    let client = Client::start(config()).await.expect("start");
    let device = client.device_id();
    client
        .set_platform_token(apns_token())
        .await
        .expect("registered");
    client.close().await;

    // Two messages while the app is not running: the gateway would notify both.
    cluster.send(device, &texts("away", 2)).await;
    let notified = envelopes(&cluster, device).await;
    assert_eq!(
        notified.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [1, 2]
    );

    // The notification of the second wakes the app, which starts the client: its connection
    // replays both from the inbox, while the notification is handled first.
    let mut client = Client::start(config()).await.expect("restart");
    let PlatformPush::Message(message) = platform_push(&mut client, &notified[1].1).await else {
        panic!("the notification's message is new to the app");
    };
    assert_eq!((message.seq, message.data_str().unwrap()), (2, "away-1"));
    let saved = state::load(&path).unwrap().unwrap();
    assert!(
        saved.platform_handed.contains(&2),
        "saved before it was returned"
    );

    // The connection brings 1 (new), then 2 (already handed: dropped, but acked).
    let first = next(&mut client).await;
    assert_eq!((first.seq, first.data_str().unwrap()), (1, "away-0"));
    assert_quiet(&mut client).await;
    eventually("the ack of the replayed message 2", || async {
        (cluster.acked_up_to(device).await == 2).then_some(())
    })
    .await;
    // Later notifications of either message are duplicates.
    for (_, envelope) in &notified {
        assert_eq!(
            platform_push(&mut client, envelope).await,
            PlatformPush::Duplicate
        );
    }
    let stats = client.stats();
    assert_eq!(
        (
            stats.platform_messages_handed,
            stats.messages_handed,
            stats.duplicates_dropped,
            stats.platform_duplicates,
        ),
        (1, 1, 1, 2)
    );
    let saved = state::load(&path).unwrap().unwrap();
    assert_eq!((saved.last_seq, saved.platform_handed.len()), (2, 0));

    // A live message comes over the connection first; its late notification is a duplicate.
    cluster.send(device, &texts("live", 1)).await;
    let late = envelopes(&cluster, device).await;
    let live = next(&mut client).await;
    assert_eq!((live.seq, live.data_str().unwrap()), (3, "live-0"));
    assert_eq!(late.len(), 1);
    assert_eq!(
        platform_push(&mut client, &late[0].1).await,
        PlatformPush::Duplicate
    );
    client.close().await;

    // After another restart, nothing comes again, by either path.
    let mut client = Client::start(config()).await.expect("restart");
    for (_, envelope) in notified.iter().chain(&late) {
        assert_eq!(
            platform_push(&mut client, envelope).await,
            PlatformPush::Duplicate
        );
    }
    assert_quiet(&mut client).await;
    assert_eq!(client.stats().messages_handed, 0);
    client.close().await;
}

//! The SDK against a real deployment in the test process: order, exactly once across
//! restarts, acks, reconnects, redirects and fatal errors.

mod common;

use std::time::Duration;

use common::{Cluster, FreezableRelay, assert_quiet, eventually, init_logs, next, take, texts};
use ringpush_sdk::{Client, Error, state};

fn expected(seqs: std::ops::RangeInclusive<u64>, prefix: &str) -> Vec<(u64, String)> {
    let first = *seqs.start();
    seqs.map(|seq| (seq, format!("{prefix}-{}", seq - first)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_then_receives_replayed_and_live_messages_in_order() {
    init_logs();
    let cluster = Cluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.json");
    // No identity configured: the client registers through the real controller.
    let mut client = Client::start(cluster.config().with_state_file(&path))
        .await
        .expect("start");
    let device = client.device_id();
    assert_eq!(
        state::load(&path).unwrap().unwrap().identity.device_id,
        device
    );

    cluster.send(device, &texts("first", 10)).await;
    assert_eq!(take(&mut client, 10).await, expected(1..=10, "first"));
    cluster.send(device, &texts("second", 10)).await;
    assert_eq!(take(&mut client, 10).await, expected(11..=20, "second"));
    assert_quiet(&mut client).await;

    let stats = client.stats();
    assert_eq!(stats.messages_handed, 20);
    assert_eq!(stats.messages_skipped, 0);
    assert!(stats.connected);
    assert_eq!(client.last_seq(), 20);
    assert_eq!(state::load(&path).unwrap().unwrap().last_seq, 20);
    eventually("the connector to record the ack", || async {
        (cluster.acked_up_to(device).await == 20).then_some(())
    })
    .await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_only_what_was_handed_to_the_app() {
    init_logs();
    let cluster = Cluster::start().await;
    let identity = cluster.new_device().await;
    let device = identity.device_id;
    let mut client = Client::start(cluster.config().with_identity(identity))
        .await
        .unwrap();
    cluster.send(device, &texts("m", 10)).await;
    assert_eq!(take(&mut client, 4).await, expected(1..=4, "m")[..4]);
    eventually("the ack of the handed messages", || async {
        (cluster.acked_up_to(device).await == 4).then_some(())
    })
    .await;
    // The other six are received and queued in the client, but not handed: never acked.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cluster.acked_up_to(device).await, 4);
    assert_eq!(take(&mut client, 6).await, expected(1..=10, "m")[4..]);
    eventually("the ack of the rest", || async {
        (cluster.acked_up_to(device).await == 10).then_some(())
    })
    .await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_from_the_same_state_file_sees_no_message_twice() {
    init_logs();
    let cluster = Cluster::start().await;
    let identity = cluster.new_device().await;
    let device = identity.device_id;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.json");

    let mut first = Client::start(
        cluster
            .config()
            .with_identity(identity.clone())
            .with_state_file(&path),
    )
    .await
    .unwrap();
    cluster.send(device, &texts("m", 6)).await;
    assert_eq!(take(&mut first, 3).await, expected(1..=6, "m")[..3]);
    // Wait until all six are received (three of them queued, not handed), then end the
    // process's client abruptly, as a crash would.
    eventually("the rest to be queued", || async {
        (cluster
            .store
            .inbox_state(device, ringpush_store::now_ms())
            .await
            .ok()?
            .delivered_up_to
            == 6)
            .then_some(())
    })
    .await;
    drop(first);

    // A new client from the state file alone: same device, no registration, and it starts
    // after the three handed messages; the three queued ones are not lost.
    let mut config = cluster.config().with_state_file(&path);
    config.controller_url = "http://127.0.0.1:1".into(); // registering would fail
    let mut second = Client::start(config).await.unwrap();
    assert_eq!(second.device_id(), device);
    assert_eq!(second.last_seq(), 3);
    assert_eq!(take(&mut second, 3).await, expected(1..=6, "m")[3..]);
    assert_quiet(&mut second).await;
    second.close().await;

    // And once more after a clean close, with new messages waiting.
    cluster.send(device, &texts("n", 2)).await;
    let mut third = Client::start(cluster.config().with_state_file(&path))
        .await
        .unwrap();
    assert_eq!(take(&mut third, 2).await, expected(7..=8, "n"));
    assert_quiet(&mut third).await;
    assert_eq!(third.stats().messages_handed, 2);
    third.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_saving_and_acking_does_not_hand_a_message_again() {
    init_logs();
    let cluster = Cluster::start().await;
    let identity = cluster.new_device().await;
    let device = identity.device_id;
    cluster.send(device, &texts("m", 6)).await;
    // The state a crash leaves when the app had messages 1..=3 (saved as handed) but the
    // process died before its Ack reached the connector: the inbox still holds all six.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.json");
    let mut crashed = state::DeviceState::new(identity);
    crashed.last_seq = 3;
    state::save(&path, &crashed).unwrap();
    assert_eq!(cluster.acked_up_to(device).await, 0);

    let mut client = Client::start(cluster.config().with_state_file(&path))
        .await
        .unwrap();
    assert_eq!(take(&mut client, 3).await, expected(1..=6, "m")[3..]);
    assert_quiet(&mut client).await;
    eventually("the ack of everything", || async {
        (cluster.acked_up_to(device).await == 6).then_some(())
    })
    .await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_resumes_where_it_left_off() {
    init_logs();
    let mut cluster = Cluster::start().await;
    let identity = cluster.new_device().await;
    let device = identity.device_id;
    let mut client = Client::start(cluster.config().with_identity(identity))
        .await
        .unwrap();
    cluster.send(device, &texts("before", 5)).await;
    assert_eq!(take(&mut client, 5).await, expected(1..=5, "before"));

    // The connector goes away; messages accepted meanwhile wait in the inbox.
    let address = cluster.stop_connector(0).await;
    cluster.send(device, &texts("during", 5)).await;
    // It comes back at the same address: the client resumes from seq 5.
    cluster.start_connector("c1", &address).await;
    assert_eq!(take(&mut client, 5).await, expected(6..=10, "during"));
    cluster.send(device, &texts("after", 2)).await;
    assert_eq!(take(&mut client, 2).await, expected(11..=12, "after"));
    assert_quiet(&mut client).await;

    let stats = client.stats();
    assert!(stats.connections_established >= 2, "{stats:?}");
    assert_eq!(stats.messages_handed, 12);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_to_another_connector_when_its_connector_leaves() {
    init_logs();
    let mut cluster = Cluster::start().await;
    let identity = cluster.new_device().await;
    let device = identity.device_id;
    let mut client = Client::start(cluster.config().with_identity(identity))
        .await
        .unwrap();
    cluster.send(device, &texts("one", 3)).await;
    assert_eq!(take(&mut client, 3).await, expected(1..=3, "one"));
    let first_url = client.connector_url().expect("remembered connector");

    cluster.start_connector("c2", "127.0.0.1:0").await;
    cluster.stop_connector(0).await;
    let second_url = cluster.connectors[0].device_url.clone();
    cluster.send(device, &texts("two", 3)).await;
    assert_eq!(take(&mut client, 3).await, expected(4..=6, "two"));
    eventually("the new connector to be remembered", || async {
        (client.connector_url().as_deref() == Some(second_url.as_str())).then_some(())
    })
    .await;
    assert_ne!(first_url, second_url);
    // The first lookup found c1; the move came from c1's Redirect (to c2 when it owns the
    // device) or from a second lookup (after a Redirect without a URL).
    let stats = client.stats();
    assert!(
        stats.redirects_followed + stats.dispatcher_lookups >= 2,
        "{stats:?}"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_remembered_connector_sends_the_device_to_the_dispatcher() {
    init_logs();
    let cluster = Cluster::start().await;
    let identity = cluster.new_device().await;
    let device = identity.device_id;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("ws://{}/v1/connect", dead.local_addr().unwrap());
    drop(dead);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.json");
    let mut remembered = state::DeviceState::new(identity);
    remembered.connector_url = Some(dead_url);
    state::save(&path, &remembered).unwrap();

    let mut client = Client::start(cluster.config().with_state_file(&path))
        .await
        .unwrap();
    cluster.send(device, &texts("m", 1)).await;
    assert_eq!(take(&mut client, 1).await, expected(1..=1, "m"));
    let stats = client.stats();
    assert_eq!(stats.dispatcher_lookups, 1, "{stats:?}");
    assert!(stats.reconnects >= 1, "{stats:?}");
    let live_url = cluster.connectors[0].device_url.clone();
    assert_eq!(client.connector_url(), Some(live_url.clone()));
    assert_eq!(
        state::load(&path).unwrap().unwrap().connector_url,
        Some(live_url)
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_redirect_to_the_owner_without_the_dispatcher() {
    init_logs();
    let mut cluster = Cluster::start().await;
    cluster.start_connector("c2", "127.0.0.1:0").await;
    let identity = cluster.new_device().await;
    let device = identity.device_id;
    let members = cluster
        .store
        .live_members(ringpush_store::now_ms())
        .await
        .unwrap();
    let ring = ringpush_ring::Ring::new(
        members,
        ringpush_store::membership::MembershipConfig::default().vnodes,
    );
    let owner = ring.owner(device).unwrap().device_url.clone();
    let stranger = cluster
        .connectors
        .iter()
        .map(|connector| connector.device_url.clone())
        .find(|url| *url != owner)
        .unwrap();

    // The device remembers the connector that does not own it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.json");
    let mut remembered = state::DeviceState::new(identity);
    remembered.connector_url = Some(stranger);
    state::save(&path, &remembered).unwrap();

    let mut client = Client::start(cluster.config().with_state_file(&path))
        .await
        .unwrap();
    cluster.send(device, &texts("m", 2)).await;
    assert_eq!(take(&mut client, 2).await, expected(1..=2, "m"));
    let stats = client.stats();
    assert_eq!(stats.redirects_followed, 1, "{stats:?}");
    assert_eq!(stats.dispatcher_lookups, 0, "{stats:?}");
    assert_eq!(client.connector_url(), Some(owner));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_app_with_a_small_queue_gets_everything_in_order() {
    init_logs();
    let cluster = Cluster::start().await;
    let identity = cluster.new_device().await;
    let device = identity.device_id;
    let mut config = cluster.config().with_identity(identity);
    config.queue_capacity = 2;
    let mut client = Client::start(config).await.unwrap();
    cluster.send(device, &texts("m", 60)).await;
    let mut got = Vec::new();
    for index in 0..60 {
        if index % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let message = next(&mut client).await;
        got.push((message.seq, message.data_str().unwrap().to_owned()));
    }
    assert_eq!(got, expected(1..=60, "m"));
    assert_quiet(&mut client).await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_a_connector_when_none_is_live() {
    init_logs();
    let mut cluster = Cluster::start().await;
    let address = cluster.stop_connector(0).await;
    let identity = cluster.new_device().await;
    let device = identity.device_id;
    let mut client = Client::start(cluster.config().with_identity(identity))
        .await
        .unwrap();
    eventually("the client to retry the dispatcher", || async {
        (client.stats().dispatcher_lookups >= 2).then_some(())
    })
    .await;
    cluster.start_connector("c1", &address).await;
    cluster.send(device, &texts("m", 1)).await;
    assert_eq!(take(&mut client, 1).await, expected(1..=1, "m"));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_identities_are_fatal_errors() {
    init_logs();
    let cluster = Cluster::start().await;
    let mut wrong_token = cluster.new_device().await;
    wrong_token.device_token = "not-the-token".into();
    let mut client = Client::start(cluster.config().with_identity(wrong_token))
        .await
        .unwrap();
    let outcome = tokio::time::timeout(common::PATIENCE, client.next_message())
        .await
        .unwrap();
    assert!(
        matches!(outcome, Err(Error::Unauthenticated { .. })),
        "{outcome:?}"
    );
    assert!(matches!(client.next_message().await, Err(Error::Closed)));

    let mut unknown = cluster.new_device().await;
    unknown.device_id = ringpush_sdk::DeviceId::random();
    let mut client = Client::start(cluster.config().with_identity(unknown))
        .await
        .unwrap();
    let outcome = tokio::time::timeout(common::PATIENCE, client.next_message())
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            Err(Error::UnknownDevice { .. } | Error::Unauthenticated { .. })
        ),
        "{outcome:?}"
    );

    // A wrong client key is a typed registration error.
    let mut config = cluster.config();
    config.client_key = "wrong".into();
    let outcome = Client::start(config).await;
    assert!(
        matches!(outcome, Err(Error::Registration { status: 401, .. })),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_connection_is_noticed_and_replaced() {
    init_logs();
    let cluster = Cluster::start().await;
    let identity = cluster.new_device().await;
    let device = identity.device_id;
    let relay = FreezableRelay::start(&cluster.connectors[0].device_url).await;
    // The device reaches its connector through the relay first.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.json");
    let mut remembered = state::DeviceState::new(identity);
    remembered.connector_url = Some(relay.url.clone());
    state::save(&path, &remembered).unwrap();
    let mut config = cluster.config().with_state_file(&path);
    config.connect_timeout = Duration::from_secs(1);
    let mut client = Client::start(config).await.unwrap();
    cluster.send(device, &texts("m", 2)).await;
    assert_eq!(take(&mut client, 2).await, expected(1..=2, "m"));
    assert_eq!(client.stats().dispatcher_lookups, 0);

    // The path dies without a word. The Welcome asked for a ping every second, so two
    // seconds without a frame (no Pong) tell the client; reconnecting through the frozen
    // relay times out, so the client asks the dispatcher and reaches the connector directly.
    relay.freeze();
    cluster.send(device, &texts("n", 2)).await;
    assert_eq!(take(&mut client, 2).await, expected(3..=4, "n"));
    let stats = client.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert_eq!(stats.dispatcher_lookups, 1, "{stats:?}");
    assert_eq!(
        client.connector_url(),
        Some(cluster.connectors[0].device_url.clone())
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_dispatcher_is_passed_over_for_the_next_one() {
    init_logs();
    let cluster = Cluster::start().await;
    // A port nothing listens on: the nearest region's dispatcher is down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut config = cluster.config();
    let working = std::mem::replace(&mut config.dispatcher_url, dead_url);
    let mut client = Client::start(config.with_fallback_dispatchers(vec![working]))
        .await
        .expect("start");
    let device = client.device_id();
    cluster.send(device, &texts("via-fallback", 3)).await;
    assert_eq!(take(&mut client, 3).await, expected(1..=3, "via-fallback"));
    let stats = client.stats();
    assert!(stats.dispatcher_lookups >= 2, "{stats:?}");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_past_half_its_life_is_renewed_and_saved() {
    init_logs();
    let cluster = Cluster::start().await;
    let mut identity = cluster.new_device().await;
    let device = identity.device_id;
    let now = ringpush_store::now_ms();
    let (hour, old_issue) = (3_600_000, now - 40 * 60_000);
    identity.device_token = ringpush_protocol::token::DeviceToken::sign(
        device,
        "tokens",
        &common::TOKEN_SECRET,
        old_issue,
        old_issue + hour,
    );
    let old_token = identity.device_token.clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.json");
    let mut client = Client::start(
        cluster
            .config()
            .with_identity(identity)
            .with_state_file(&path),
    )
    .await
    .unwrap();
    cluster.send(device, &texts("m", 1)).await;
    assert_eq!(take(&mut client, 1).await, expected(1..=1, "m"));
    let saved = eventually("the renewed token to be saved", || async {
        let saved = state::load(&path).unwrap().unwrap().identity.device_token;
        (saved != old_token).then_some(saved)
    })
    .await;
    let renewed = ringpush_protocol::token::DeviceToken::parse(&saved).expect("a token");
    assert!(renewed.verify(device, &common::TOKEN_SECRET));
    assert!(renewed.issued_at_ms >= now && renewed.lifetime_ms() == hour);
    client.close().await;

    // The next start uses the renewed token.
    let mut again = Client::start(cluster.config().with_state_file(&path))
        .await
        .unwrap();
    cluster.send(device, &texts("n", 1)).await;
    assert_eq!(take(&mut again, 1).await, vec![(2, "n-0".to_owned())]);
    again.close().await;
}

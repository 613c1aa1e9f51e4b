//! Audience messages on one connector: attributes, Broadcast, timeline catch-up, ordering
//! and statistics.

mod common;

use std::time::Duration;

use common::{Connector, Device, Env, eventually};
use ringpush_protocol::DeviceId;
use ringpush_protocol::device::{Attributes, ErrorCode, Push, ReportKind};
use ringpush_protocol::internal::DeliveryOutcome;
use ringpush_store::{Counter, now_ms};

fn tagged(tags: &[&str]) -> Attributes {
    Attributes {
        tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
        ..Attributes::default()
    }
}

/// Connects a registered device and waits until its catch-up is over.
async fn connect(
    connector: &Connector,
    device: DeviceId,
    token: &str,
    timeline_seq: u64,
) -> Device {
    let mut client = Device::connect(&connector.url()).await;
    client.hello_at(device, token, 0, timeline_seq).await;
    client.welcome().await;
    client
}

/// Waits until no connection is busy (every catch-up is over).
async fn settled(connector: &Connector) {
    eventually("every catch-up is over", || async {
        connector.stats.busy() == 0
    })
    .await;
}

/// Reads the next push and checks it is `expected`, on the timeline.
async fn expect_push(client: &mut Device, expected: &Push) {
    let push = client.push().await;
    assert_eq!(push.stream, 1, "{push:?}");
    assert_eq!(&push, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_only_the_live_devices_that_match() {
    let env = Env::new().await;
    // One shard, so that equal attribute sets are interned together (interning is per
    // shard).
    let connector = env.start(|config| config.shards = 1).await;
    let mut clients = Vec::new();
    let sets = [
        Attributes {
            platform: "ios".into(),
            topics: vec!["news".into()],
            ..tagged(&["vip", "cn"])
        },
        Attributes {
            platform: "android".into(),
            app_version: "2.10.1".into(),
            ..tagged(&["vip", "us"])
        },
        Attributes::default(),
        // The same set as the first device: interned, one copy for both.
        Attributes {
            platform: "ios".into(),
            topics: vec!["news".into()],
            ..tagged(&["cn", "vip"])
        },
    ];
    for attributes in sets {
        let (device, token) = env.device().await;
        let mut client = connect(&connector, device, &token, 0).await;
        client.attributes(attributes).await;
        clients.push(client);
    }
    settled(&connector).await;
    assert_eq!(connector.stats.attribute_sets(), 3);

    // (audience, devices it reaches)
    let cases: [(&str, &[usize]); 5] = [
        ("vip and cn", &[0, 3]),
        ("platform = android and app_version >= 2.3", &[1]),
        ("topic = news", &[0, 3]),
        ("not vip", &[2]),
        ("everyone", &[0, 1, 2, 3]),
    ];
    for (audience, reached) in cases {
        let push = env.append_timeline(audience, None).await;
        let answer = connector
            .broadcast(env.app, audience, &push, 0)
            .await
            .expect("broadcast");
        assert_eq!(answer.matched, reached.len() as u64, "{audience}");
        assert_eq!(answer.written, reached.len() as u64, "{audience}");
        for &index in reached {
            expect_push(&mut clients[index], &push).await;
        }
        for (index, client) in clients.iter_mut().enumerate() {
            if !reached.contains(&index) {
                client.expect_quiet(push.seq).await;
            }
        }
    }

    // Another app's broadcast reaches none of them.
    let other = ringpush_protocol::AppId::random();
    let push = env.append_timeline("everyone", None).await;
    let answer = connector.broadcast(other, "everyone", &push, 0).await;
    assert_eq!(answer.expect("broadcast").matched, 0);

    // Requests that are not valid.
    let push = env.append_timeline("everyone", None).await;
    let refused = connector.broadcast(env.app, "vip and (", &push, 0).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::InvalidArgument);
    let inbox_push = Push {
        stream: 0,
        ..push.clone()
    };
    let refused = connector
        .broadcast(env.app, "everyone", &inbox_push, 0)
        .await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::InvalidArgument);

    // A set beyond the limits is refused with a clear error.
    let too_many = (0..70).map(|i| format!("t{i}")).collect();
    let mut client = clients.pop().expect("a client");
    client
        .send(ringpush_protocol::device::client_frame::Kind::Attributes(
            Attributes {
                tags: too_many,
                ..Attributes::default()
            },
        ))
        .await;
    client.expect_error(ErrorCode::BadFrame).await;
    drop(clients);
    connector.wait_idle().await;
    assert_eq!(connector.stats.attribute_sets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_broadcasts_are_scheduled_and_written() {
    let env = Env::new().await;
    let connector = env.start(|_| {}).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        let (device, token) = env.device().await;
        let mut client = connect(&connector, device, &token, 0).await;
        client.attributes(tagged(&["vip"])).await;
        clients.push(client);
    }
    settled(&connector).await;
    let push = env.append_timeline("vip", Some("slow-campaign")).await;
    let answer = connector
        .broadcast(env.app, "vip", &push, 20)
        .await
        .expect("broadcast");
    assert_eq!((answer.matched, answer.written), (5, 5));
    for client in &mut clients {
        expect_push(client, &push).await;
        client.expect_quiet(1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_catch_up_from_the_timeline_with_their_stored_attributes() {
    let env = Env::new().await;
    let connector = env.start(|_| {}).await;
    let (early, early_token) = env.device().await;

    // The device reports its attributes once; the registry keeps them.
    let mut client = connect(&connector, early, &early_token, 0).await;
    client.attributes(tagged(&["vip"])).await;
    drop(client);
    eventually("the attributes reach the registry", || async {
        let stored = env.store.registry().attributes(early).await.unwrap();
        stored.is_some_and(|attributes| attributes.tags.contains("vip"))
    })
    .await;
    connector.wait_idle().await;

    // Two broadcasts while it is away.
    let for_vip = env.append_timeline("vip", None).await;
    let for_others = env.append_timeline("not vip", None).await;
    for (audience, push) in [("vip", &for_vip), ("not vip", &for_others)] {
        let answer = connector.broadcast(env.app, audience, push, 0).await;
        assert_eq!(answer.expect("broadcast").matched, 0);
    }

    // A device registered after them, with the same attributes, does not get them.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (late, late_token) = env.device().await;
    let vip = ringpush_audience::DeviceAttributes {
        tags: ["vip".to_owned()].into(),
        ..Default::default()
    };
    env.store
        .registry()
        .put_attributes(&[(env.app, late, vip)])
        .await
        .unwrap();
    let mut late_client = connect(&connector, late, &late_token, 0).await;

    // The early device reconnects from "registration" without reporting its attributes
    // again: it gets what it matches, from the timeline.
    let mut early_client = connect(&connector, early, &early_token, 0).await;
    expect_push(&mut early_client, &for_vip).await;
    early_client.expect_quiet(1).await;
    late_client.expect_quiet(1).await;
    settled(&connector).await;

    // Both are at the head now: the next broadcast is written live to both.
    let live = env.append_timeline("vip", None).await;
    let answer = connector.broadcast(env.app, "vip", &live, 0).await;
    assert_eq!(answer.expect("broadcast").written, 2);
    expect_push(&mut early_client, &live).await;
    expect_push(&mut late_client, &live).await;

    // Reconnecting at its position, it gets nothing twice.
    drop(early_client);
    let mut early_client = connect(&connector, early, &early_token, live.seq).await;
    early_client.expect_quiet(2).await;
    settled(&connector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_broadcasts_reach_a_device_in_timeline_order() {
    let env = Env::new().await;
    // Small pages, so the catch-up takes several reads.
    let connector = env.start(|config| config.replay_batch = 2).await;
    let (device, token) = env.device().await;
    let mut client = connect(&connector, device, &token, 0).await;
    client.attributes(tagged(&["vip"])).await;
    settled(&connector).await;

    let audiences = ["vip", "not vip", "vip", "everyone", "vip"];
    let mut pushes = Vec::new();
    for audience in audiences {
        pushes.push((audience, env.append_timeline(audience, None).await));
    }
    // The last one arrives first: the device reads the others from the timeline.
    let (audience, push) = &pushes[4];
    let answer = connector.broadcast(env.app, audience, push, 0).await;
    let answer = answer.expect("broadcast");
    assert_eq!((answer.matched, answer.written), (1, 0));
    for index in [0, 2, 3, 4] {
        expect_push(&mut client, &pushes[index].1).await;
    }
    // The late ones are not written again.
    for (audience, push) in &pushes[..4] {
        let answer = connector.broadcast(env.app, audience, push, 0).await;
        assert_eq!(answer.expect("broadcast").written, 0);
    }
    client.expect_quiet(1).await;

    // Inbox pushes and timeline pushes keep their own order side by side.
    let inbox = env.append(device, 1).await;
    let outcomes = connector.deliver(&[(device, inbox[0].clone())]).await;
    assert_eq!(outcomes, [DeliveryOutcome::Written]);
    assert_eq!(client.push().await, inbox[0]);
    let next = env.append_timeline("vip", None).await;
    let answer = connector.broadcast(env.app, "vip", &next, 0).await;
    assert_eq!(answer.expect("broadcast").written, 1);
    expect_push(&mut client, &next).await;
    settled(&connector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_reach_the_store() {
    let env = Env::new().await;
    let connector = env.start(|_| {}).await;
    let mut devices = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (device, token) = env.device().await;
        let mut client = connect(&connector, device, &token, 0).await;
        client.attributes(tagged(&["vip"])).await;
        devices.push((device, token));
        clients.push(client);
    }
    settled(&connector).await;

    let push = env.append_timeline("vip", Some("spring-sale")).await;
    let answer = connector.broadcast(env.app, "vip", &push, 0).await;
    assert_eq!(answer.expect("broadcast").written, 2);
    for client in &mut clients {
        expect_push(client, &push).await;
    }
    // A repeated Broadcast and a reconnect at the device's position deliver nothing twice.
    let answer = connector.broadcast(env.app, "vip", &push, 0).await;
    assert_eq!(answer.expect("broadcast").written, 0);
    let (device, token) = &devices[0];
    clients[0] = connect(&connector, *device, token, push.seq).await;
    clients[0].expect_quiet(1).await;

    let id = push.message_id.as_str();
    use ReportKind::{Clicked, Opened, Received};
    clients[0]
        .report(id, "spring-sale", &[Received, Opened])
        .await;
    clients[1]
        .report(id, "spring-sale", &[Received, Clicked])
        .await;
    // An inbox message of the same campaign counts for the campaign too.
    let (device, _) = devices[1];
    let mut inbox = env.append(device, 1).await.remove(0);
    inbox.campaign_id = "spring-sale".into();
    let outcomes = connector.deliver(&[(device, inbox.clone())]).await;
    assert_eq!(outcomes, [DeliveryOutcome::Written]);
    assert_eq!(clients[1].push().await, inbox);

    let expected_message = [
        (Counter::Delivered, 2),
        (Counter::Acked, 2),
        (Counter::Opened, 1),
        (Counter::Clicked, 1),
    ];
    let expected_campaign = [
        (Counter::Delivered, 3),
        (Counter::Acked, 2),
        (Counter::Opened, 1),
        (Counter::Clicked, 1),
    ];
    let minute = now_ms() / 60_000;
    for (subject, expected) in [(id, expected_message), ("spring-sale", expected_campaign)] {
        eventually("the statistics reach the store", || async {
            let stats = env
                .store
                .stats()
                .read_stats(env.app, subject)
                .await
                .unwrap();
            expected
                .iter()
                .all(|(counter, count)| stats.totals.get(counter) == Some(count))
        })
        .await;
        let stats = env
            .store
            .stats()
            .read_stats(env.app, subject)
            .await
            .unwrap();
        assert_eq!(stats.totals.len(), 4, "{subject}: {stats:?}");
        let per_minute: u64 = stats
            .per_minute
            .range(minute - 1..=minute)
            .flat_map(|(_, counters)| counters.values())
            .sum();
        assert_eq!(per_minute, expected.iter().map(|(_, n)| n).sum::<u64>());
    }
    // The inbox message itself is counted under its own id.
    let stats = env
        .store
        .stats()
        .read_stats(env.app, &inbox.message_id)
        .await
        .unwrap();
    assert_eq!(stats.totals.get(&Counter::Delivered), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_racing_a_hello_reaches_the_device_once_after_its_inbox() {
    let env = Env::new().await;
    // Small pages, so the inbox replay takes several reads while broadcasts arrive.
    let connector = env.start(|config| config.replay_batch = 2).await;
    let (device, token) = env.device().await;
    let vip = ringpush_audience::DeviceAttributes {
        tags: ["vip".to_owned()].into(),
        ..Default::default()
    };
    env.store
        .registry()
        .put_attributes(&[(env.app, device, vip)])
        .await
        .unwrap();
    let inbox = env.append(device, 7).await;

    let mut client = Device::connect(&connector.url()).await;
    client.hello_at(device, &token, 0, 0).await;
    let mut entries = Vec::new();
    for _ in 0..3 {
        let push = env.append_timeline("vip", None).await;
        connector
            .broadcast(env.app, "vip", &push, 0)
            .await
            .expect("broadcast");
        entries.push(push);
    }
    client.welcome().await;
    for expected in &inbox {
        assert_eq!(&client.push().await, expected);
    }
    for expected in &entries {
        expect_push(&mut client, expected).await;
    }
    client.expect_quiet(1).await;
    settled(&connector).await;
}

//! The ring and the connector: redirects, ring changes and the drain.
//!
//! Other connectors are leases written to the store (data, as a real connector writes them);
//! their URLs only need to appear in redirects.

mod common;

use common::{Device, Env, device_owned, eventually};
use ringpush_protocol::internal::DeliveryOutcome;
use ringpush_ring::{Member, Ring};
use ringpush_store::now_ms;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_another_member_owns_is_redirected() {
    let env = Env::new().await;
    let other = env.add_member("connector-b").await;
    let connector = env.start(|_| {}).await;
    let ring = Ring::new(
        vec![connector.member.clone(), other.clone()],
        connector.vnodes,
    );
    eventually("the connector sees both members", || async {
        env.store.live_members(now_ms()).await.unwrap().len() == 2
    })
    .await;

    let elsewhere = device_owned(&ring, "connector-b", true);
    let token = env.register(elsewhere).await;
    let mut client = Device::connect(&connector.url()).await;
    client.hello(elsewhere, &token, 0).await;
    let redirect = client.expect_redirect().await;
    assert_eq!(redirect.url, other.device_url);
    assert_eq!(redirect.ring_version, ring.version());

    let here = device_owned(&ring, "connector-a", true);
    let token = env.register(here).await;
    let mut client = Device::connect(&connector.url()).await;
    client.hello(here, &token, 0).await;
    assert_eq!(client.welcome().await.ring_version, ring.version());
    drop(client);
    connector.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_change_redirects_only_the_devices_it_moves() {
    let env = Env::new().await;
    let connector = env.start(|_| {}).await;
    let newcomer = Member {
        id: "connector-b".into(),
        device_url: "ws://connector-b.invalid:8082/v1/connect".into(),
        grpc_url: "http://connector-b.invalid:8083".into(),
    };
    let after = Ring::new(
        vec![connector.member.clone(), newcomer.clone()],
        connector.vnodes,
    );

    let mut moving = Vec::new();
    let mut staying = Vec::new();
    for _ in 0..3 {
        for (owner, list) in [("connector-b", &mut moving), ("connector-a", &mut staying)] {
            let device = device_owned(&after, owner, true);
            let token = env.register(device).await;
            let mut client = Device::connect(&connector.url()).await;
            client.hello(device, &token, 0).await;
            client.welcome().await;
            list.push((device, client));
        }
    }
    assert_eq!(connector.stats.devices(), 6);

    env.add_member("connector-b").await;
    for (_, client) in &mut moving {
        let redirect = client.expect_redirect().await;
        assert_eq!(redirect.url, newcomer.device_url);
        assert_eq!(redirect.ring_version, after.version());
    }
    for (nonce, (device, client)) in staying.iter_mut().enumerate() {
        client.expect_quiet(nonce as u64).await;
        let push = env.append(*device, 1).await.remove(0);
        let outcomes = connector.deliver(&[(*device, push)]).await;
        assert_eq!(outcomes, [DeliveryOutcome::Written]);
        assert_eq!(client.push().await.seq, 1);
    }
    eventually("only the staying devices are held", || async {
        connector.stats.devices() == 3 && connector.stats.connections() == 3
    })
    .await;
    for (device, _) in &moving {
        eventually("a moved device's presence is cleared", || async {
            env.store.presence(*device).await.unwrap().is_none()
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_redirects_every_device_and_run_returns() {
    let env = Env::new().await;
    let other = env.add_member("connector-b").await;
    let mut connector = env.start(|_| {}).await;
    let ring = Ring::new(
        vec![connector.member.clone(), other.clone()],
        connector.vnodes,
    );
    eventually("the connector sees both members", || async {
        env.store.live_members(now_ms()).await.unwrap().len() == 2
    })
    .await;

    let mut clients = Vec::new();
    for _ in 0..4 {
        let device = device_owned(&ring, "connector-a", true);
        let token = env.register(device).await;
        let mut client = Device::connect(&connector.url()).await;
        client.hello(device, &token, 0).await;
        client.welcome().await;
        clients.push((device, client));
    }

    connector.shutdown.cancel();
    for (_, client) in &mut clients {
        let redirect = client.expect_redirect().await;
        assert_eq!(redirect.url, other.device_url);
        assert_eq!(redirect.reason, "connector shutting down");
    }
    connector.stop().await;

    let members = env.store.live_members(now_ms()).await.unwrap();
    assert_eq!(members, vec![other]);
    for (device, _) in &clients {
        assert!(env.store.presence(*device).await.unwrap().is_none());
    }
    let stats = &connector.stats;
    assert_eq!(
        (stats.connections(), stats.devices(), stats.busy()),
        (0, 0, 0)
    );
    assert!(
        tokio::net::TcpStream::connect(connector.device_addr)
            .await
            .is_err(),
        "the device listener is closed"
    );
}

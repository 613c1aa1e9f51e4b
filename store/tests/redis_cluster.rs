//! The Redis store on a 3-master Redis Cluster, started once for this test binary: the whole
//! conformance suite (each test in its own namespace), and checks that batches really span
//! slots and nodes.

use std::sync::OnceLock;

use ringpush_protocol::DeviceId;
use ringpush_store::{ContentType, InboxLimits, NewMessage, RedisStore, Store, now_ms};
use ringpush_testkit::RedisCluster;

/// One cluster for the whole test binary; it stops when the binary exits.
fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start(3))
}

fn fresh_namespace() -> String {
    format!("t{:016x}", rand::random::<u64>())
}

async fn fresh_store() -> RedisStore {
    RedisStore::connect(&cluster().url())
        .await
        .expect("connect to the cluster")
        .with_namespace(&fresh_namespace())
}

ringpush_store::store_conformance_tests!(fresh_store());

#[tokio::test]
async fn one_batch_spreads_over_every_node() {
    let namespace = fresh_namespace();
    let store = RedisStore::connect(&cluster().url())
        .await
        .expect("connect")
        .with_namespace(&namespace);
    let devices: Vec<DeviceId> = (0..64).map(|_| DeviceId::random()).collect();
    let now = now_ms();
    let messages: Vec<NewMessage> = devices
        .iter()
        .chain(&devices)
        .map(|&device| NewMessage {
            device,
            payload: b"m".to_vec(),
            content_type: ContentType::Text,
            created_at_ms: now,
            expires_at_ms: now + 60_000,
            idempotency_key: None,
            options: Default::default(),
            campaign_id: None,
        })
        .collect();
    let answers = store
        .append(&messages, InboxLimits::default())
        .await
        .expect("append");
    let seqs: Vec<u64> = answers.iter().map(|answer| answer.seq).collect();
    assert_eq!(&seqs[..64], &[1; 64]);
    assert_eq!(&seqs[64..], &[2; 64]);
    for node in cluster().nodes() {
        let keys = node
            .command(&["KEYS", &format!("{namespace}:*")])
            .expect("KEYS");
        assert!(
            keys.lines().count() > 0,
            "node {} holds none of the batch",
            node.port()
        );
    }
    let acks: Vec<(DeviceId, u64)> = devices.iter().map(|&device| (device, 1)).collect();
    store.ack(&acks).await.expect("ack");
    for &device in &devices {
        let state = store.inbox_state(device, now).await.expect("state");
        assert_eq!(
            (state.last_seq, state.acked_up_to, state.pending),
            (2, 1, 1)
        );
    }
}

#[tokio::test]
async fn any_one_node_is_enough_to_find_the_cluster() {
    let first = &cluster().nodes()[0];
    let url = format!("redis+cluster://127.0.0.1:{}", first.port());
    let store = RedisStore::connect(&url)
        .await
        .expect("connect")
        .with_namespace(&fresh_namespace());
    let devices: Vec<DeviceId> = (0..16).map(|_| DeviceId::random()).collect();
    let marks: Vec<(DeviceId, u64)> = devices.iter().map(|&device| (device, 3)).collect();
    store.mark_delivered(&marks).await.expect("mark delivered");
    for &device in &devices {
        assert_eq!(store.presence(device).await.expect("presence"), None);
    }
}

//! What only Redis shows about the registry, timelines and statistics: the keys they write
//! and how long those live (the behaviour itself is in the conformance suite).

use std::sync::OnceLock;

use ringpush_audience::DeviceAttributes;
use ringpush_protocol::{AppId, DeviceId};
use ringpush_store::{
    ContentType, Counter, DeviceRecord, NewTimelineEntry, RedisStore, STATS_TTL_MS, StatIncrement,
    Store, StoreError, now_ms,
};
use ringpush_testkit::RedisServer;

/// One server for the whole test binary; it stops when the binary exits.
fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

/// A store in the given namespace; names are unique per test.
async fn store(namespace: &str) -> RedisStore {
    RedisStore::connect(&server().url())
        .await
        .expect("connect")
        .with_namespace(namespace)
}

fn redis(args: &[&str]) -> String {
    server().command(args).expect("redis command")
}

fn number(args: &[&str]) -> i64 {
    redis(args).parse().expect("a number")
}

fn entry(message_id: &str, expires_at_ms: i64) -> NewTimelineEntry {
    NewTimelineEntry {
        message_id: message_id.to_owned(),
        audience: "everyone".to_owned(),
        payload: b"m".to_vec(),
        content_type: ContentType::Text,
        created_at_ms: now_ms(),
        expires_at_ms,
        campaign_id: None,
        idempotency_key: None,
        options: Default::default(),
    }
}

#[tokio::test]
async fn timeline_keys_live_until_the_last_entry_expires_but_the_seq_stays() {
    let store = store("tl").await;
    let app = AppId::random();
    let now = now_ms();
    let timelines = store.timelines();
    timelines
        .append_timeline(app, &entry("m-1", now + 60_000), 100)
        .await
        .expect("append");
    timelines
        .append_timeline(app, &entry("m-2", now + 120_000), 100)
        .await
        .expect("append");
    // An earlier expiry never shortens the keys' lives.
    timelines
        .append_timeline(app, &entry("m-3", now + 30_000), 100)
        .await
        .expect("append");
    for suffix in ["timeline", "texp", "tids"] {
        let key = format!("tl:{{a:{app}}}:{suffix}");
        assert_eq!(number(&["PEXPIRETIME", &key]), now + 120_000, "{key}");
    }
    let seq_key = format!("tl:{{a:{app}}}:tseq");
    assert_eq!(number(&["PTTL", &seq_key]), -1, "the seq never expires");
    assert_eq!(redis(&["GET", &seq_key]), "3");
    // Once the timeline's keys are gone, the seq goes on.
    for suffix in ["timeline", "texp", "tids"] {
        redis(&["DEL", &format!("tl:{{a:{app}}}:{suffix}")]);
    }
    let next = timelines
        .append_timeline(app, &entry("m-4", now + 60_000), 100)
        .await
        .expect("append");
    assert_eq!(next.seq, 4);
}

#[tokio::test]
async fn timeline_markers_carry_their_ttl() {
    let store = store("tm").await;
    let app = AppId::random();
    let keyed = NewTimelineEntry {
        idempotency_key: Some("campaign:1:f".to_owned()),
        ..entry("m-1", now_ms() + 60_000)
    };
    store
        .timelines()
        .append_timeline(app, &keyed, 100)
        .await
        .expect("append");
    let ttl = number(&["PTTL", &format!("tm:{{a:{app}}}:tidem:campaign:1:f")]);
    let day_ms = 24 * 3_600_000;
    assert!(ttl > day_ms - 60_000 && ttl <= day_ms, "{ttl}");
}

#[tokio::test]
async fn stats_keys_expire_90_days_after_the_last_increment() {
    let store = store("st").await;
    let app = AppId::random();
    let increment = StatIncrement {
        app,
        subject: "msg-1".to_owned(),
        counter: Counter::Delivered,
        minute: now_ms() / 60_000,
        by: 4,
    };
    store.stats().add_stats(&[increment]).await.expect("add");
    let totals = format!("st:{{s:{app}:msg-1}}:totals");
    let minutes = format!("st:{{s:{app}:msg-1}}:minutes");
    assert_eq!(redis(&["HGET", &totals, "delivered"]), "4");
    for key in [&totals, &minutes] {
        let ttl = number(&["PTTL", key]);
        let ttl_ms = STATS_TTL_MS as i64;
        assert!(ttl > ttl_ms - 60_000 && ttl <= ttl_ms, "{key}: {ttl}");
    }
    // Unreadable fields are reported, not skipped.
    redis(&["HSET", &minutes, "not-a-minute", "1"]);
    let result = store.stats().read_stats(app, "msg-1").await;
    assert!(
        matches!(result, Err(StoreError::Corrupt { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn registry_keys_hold_what_the_table_says() {
    let store = store("rg").await;
    let app = AppId::random();
    let device = DeviceRecord {
        id: DeviceId::random(),
        app,
        created_at_ms: now_ms(),
        sealing: None,
    };
    store.create_device(&device).await.expect("create");
    assert_eq!(number(&["ZCARD", &format!("rg:{{a:{app}}}:devices")]), 1);
    assert_eq!(redis(&["GET", &format!("rg:{{a:{app}}}:registered")]), "1");
    let attributes = DeviceAttributes {
        alias: Some("user-1".to_owned()),
        timezone: Some("Asia/Tokyo".to_owned()),
        ..DeviceAttributes::default()
    };
    store
        .registry()
        .put_attributes(&[(app, device.id, attributes)])
        .await
        .expect("put");
    let json = redis(&["GET", &format!("rg:{{d:{}}}:attrs", device.id)]);
    assert!(json.contains("\"alias\":\"user-1\""), "{json}");
    assert_eq!(
        redis(&["HGET", &format!("rg:{{a:{app}}}:zones"), "Asia/Tokyo"]),
        "1"
    );
    assert_eq!(number(&["ZCARD", &format!("rg:{{a:{app}}}:aliases")]), 1);
    // Attributes this build cannot read are reported (unknown fields are not: a newer build
    // may have written them).
    redis(&[
        "SET",
        &format!("rg:{{d:{}}}:attrs", device.id),
        "{\"tags\":5}",
    ]);
    let result = store.registry().attributes(device.id).await;
    assert!(
        matches!(result, Err(StoreError::Corrupt { .. })),
        "{result:?}"
    );
}

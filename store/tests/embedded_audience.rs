//! The embedded store keeps the registry, timelines and statistics in its file: all of it is
//! there after close and reopen, and the timeline's seq goes on.

use ringpush_audience::DeviceAttributes;
use ringpush_protocol::{AppId, DeviceId};
use ringpush_store::{
    ContentType, Counter, DeviceRecord, EmbeddedStore, NewTimelineEntry, StatIncrement, Store,
    now_ms,
};

fn entry(message_id: &str) -> NewTimelineEntry {
    NewTimelineEntry {
        message_id: message_id.to_owned(),
        audience: "topic = news".to_owned(),
        payload: b"{}".to_vec(),
        content_type: ContentType::Json,
        created_at_ms: now_ms(),
        expires_at_ms: now_ms() + 3_600_000,
        campaign_id: Some("c-1".to_owned()),
        idempotency_key: Some("campaign:c-1:f".to_owned()),
        options: Default::default(),
    }
}

#[tokio::test]
async fn registry_timeline_and_stats_survive_close_and_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let app = AppId::random();
    let device = DeviceRecord {
        id: DeviceId::random(),
        app,
        created_at_ms: now_ms(),
        sealing: None,
    };
    let attributes = DeviceAttributes {
        alias: Some("user-1".to_owned()),
        timezone: Some("Asia/Tokyo".to_owned()),
        ..DeviceAttributes::default()
    };
    let increment = StatIncrement {
        app,
        subject: "m-1".to_owned(),
        counter: Counter::Acked,
        minute: now_ms() / 60_000,
        by: 2,
    };
    {
        let store = EmbeddedStore::open(&path).expect("open");
        store.create_device(&device).await.expect("create");
        store
            .registry()
            .put_attributes(&[(app, device.id, attributes.clone())])
            .await
            .expect("put");
        let appended = store
            .timelines()
            .append_timeline(app, &entry("m-1"), 100)
            .await
            .expect("append");
        assert_eq!(appended.seq, 1);
        store
            .stats()
            .add_stats(std::slice::from_ref(&increment))
            .await
            .expect("add");
    }
    let store = EmbeddedStore::open(&path).expect("reopen");
    let registry = store.registry();
    assert_eq!(
        registry.attributes(device.id).await.expect("read"),
        Some(attributes)
    );
    assert_eq!(
        registry
            .devices_with_alias(app, "user-1")
            .await
            .expect("alias"),
        [device.id]
    );
    assert_eq!(
        registry.app_time_zones(app).await.expect("zones"),
        ["Asia/Tokyo"]
    );
    assert_eq!(
        registry.app_devices(app, 0, 10).await.expect("devices"),
        (0, vec![device.id])
    );
    let timelines = store.timelines();
    assert_eq!(timelines.timeline_head(app).await.expect("head"), 1);
    let retry = timelines
        .append_timeline(app, &entry("m-1"), 100)
        .await
        .expect("append");
    assert_eq!((retry.seq, retry.duplicate), (1, true));
    let next = NewTimelineEntry {
        idempotency_key: None,
        ..entry("m-2")
    };
    let appended = timelines
        .append_timeline(app, &next, 100)
        .await
        .expect("append");
    assert_eq!(appended.seq, 2);
    let stats = store.stats().read_stats(app, "m-1").await.expect("stats");
    assert_eq!(stats.totals.get(&Counter::Acked), Some(&2));
}

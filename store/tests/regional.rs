//! The regional store: the conformance suite over three regions' embedded stores, and what
//! only several regions show (a device's state in its home region, apps everywhere, app-wide
//! queries over every region).

use std::sync::Arc;

use ringpush_audience::DeviceAttributes;
use ringpush_protocol::{AppId, DeviceId, RegionCode};
use ringpush_store::{
    AppRecord, DeviceRecord, EmbeddedStore, HeldId, HeldStatus, InboxLimits, NewMessage, Region,
    RegionalStore, Store, Written,
};

const NOW: i64 = 1_700_000_000_000;

fn three_regions() -> (RegionalStore, [EmbeddedStore; 3], tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let open = |name: &str| EmbeddedStore::open(&dir.path().join(name)).expect("open store");
    let stores = [open("cn.redb"), open("us.redb"), open("eu.redb")];
    let regions = ["cn", "us", "eu"]
        .iter()
        .zip(&stores)
        .enumerate()
        .map(|(index, (name, store))| Region {
            name: (*name).to_owned(),
            code: RegionCode(index as u8 + 1),
            store: Arc::new(store.clone()),
        })
        .collect();
    let regional = RegionalStore::new("us", regions).expect("regions");
    (regional, stores, dir)
}

// The whole suite through the regional store of one region. (Over three regions the random
// device ids of the suite would land in other regions now and then, and the app's device walk
// goes region by region, not in registration order across them: the tests below cover that.)
ringpush_store::store_conformance_tests!(async {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("one.redb")).expect("open store");
    let region = Region {
        name: "solo".to_owned(),
        code: RegionCode(1),
        store: Arc::new(store),
    };
    (
        RegionalStore::new("solo", vec![region]).expect("region"),
        dir,
    )
});

fn message(device: DeviceId, text: &str) -> NewMessage {
    ringpush_store::conformance::message(NOW, device, text, NOW + 3_600_000)
}

async fn register(store: &RegionalStore, app: AppId, region: u8) -> DeviceId {
    let device = DeviceId::random_in(RegionCode(region));
    store
        .create_device(&DeviceRecord {
            id: device,
            app,
            created_at_ms: NOW,
            sealing: None,
        })
        .await
        .expect("create device");
    device
}

#[tokio::test]
async fn a_device_lives_in_its_home_region_only() {
    let (store, [cn, us, eu], _dir) = three_regions();
    let app = AppId::random();
    let device = register(&store, app, 3).await;
    store
        .append(&[message(device, "hello")], InboxLimits::default())
        .await
        .expect("append");
    store
        .set_presence(device, "cn-1", NOW)
        .await
        .expect("presence");
    assert!(eu.device(device).await.expect("eu").is_some());
    assert!(cn.device(device).await.expect("cn").is_none());
    assert!(us.device(device).await.expect("us").is_none());
    assert_eq!(eu.inbox_state(device, NOW).await.expect("eu").last_seq, 1);
    assert_eq!(us.inbox_state(device, NOW).await.expect("us").last_seq, 0);
    let presence = eu
        .presence(device)
        .await
        .expect("eu presence")
        .expect("set");
    assert_eq!(presence.connector_id, "cn-1");
    assert!(us.presence(device).await.expect("us presence").is_none());
}

#[tokio::test]
async fn a_batch_over_three_homes_answers_in_request_order() {
    let (store, stores, _dir) = three_regions();
    let app = AppId::random();
    let devices = [
        register(&store, app, 1).await,
        register(&store, app, 2).await,
        register(&store, app, 3).await,
    ];
    let batch: Vec<NewMessage> = [0, 1, 2, 0, 2, 0]
        .iter()
        .map(|&i| message(devices[i], "m"))
        .collect();
    let appended = store
        .append(&batch, InboxLimits::default())
        .await
        .expect("append");
    let seqs: Vec<u64> = appended.iter().map(|a| a.seq).collect();
    assert_eq!(seqs, [1, 1, 1, 2, 2, 3]);
    store
        .ack(&[(devices[0], 2), (devices[2], 1)])
        .await
        .expect("ack");
    assert_eq!(
        stores[0]
            .inbox_state(devices[0], NOW)
            .await
            .expect("cn")
            .acked_up_to,
        2
    );
    assert_eq!(
        stores[2]
            .inbox_state(devices[2], NOW)
            .await
            .expect("eu")
            .acked_up_to,
        1
    );
}

#[tokio::test]
async fn apps_are_written_to_every_region() {
    let (store, stores, _dir) = three_regions();
    let app = AppRecord {
        id: AppId::random(),
        name: "global".to_owned(),
        keys: Vec::new(),
        created_at_ms: NOW,
        payload_sealing: false,
    };
    store.create_app(&app).await.expect("create");
    for region in &stores {
        assert_eq!(region.app(app.id).await.expect("read"), Some(app.clone()));
    }
}

#[tokio::test]
async fn app_wide_queries_read_every_region() {
    let (store, _stores, _dir) = three_regions();
    let app = AppId::random();
    let mut registered = Vec::new();
    for region in [1, 2, 3, 1, 3, 3, 2] {
        registered.push(register(&store, app, region).await);
    }
    let mut walked = Vec::new();
    let mut cursor = 0;
    loop {
        let (next, page) = store
            .registry()
            .app_devices(app, cursor, 2)
            .await
            .expect("walk");
        walked.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    walked.sort();
    registered.sort();
    assert_eq!(walked, registered);

    let attributes = |alias: &str, zone: &str| DeviceAttributes {
        alias: Some(alias.to_owned()),
        timezone: Some(zone.to_owned()),
        ..DeviceAttributes::default()
    };
    store
        .registry()
        .put_attributes(&[
            (app, registered[0], attributes("ana", "Asia/Shanghai")),
            (app, registered[6], attributes("ana", "Europe/Paris")),
        ])
        .await
        .expect("put");
    let mut expected = vec![registered[0], registered[6]];
    expected.sort();
    assert_eq!(
        store
            .registry()
            .devices_with_alias(app, "ana")
            .await
            .expect("alias"),
        expected
    );
    // Read from two homes at once, answered in request order.
    let unknown = DeviceId::random_in(RegionCode(3));
    let read = store
        .registry()
        .attributes_many(&[registered[6], unknown, registered[0]])
        .await
        .expect("attributes");
    let zones: Vec<Option<String>> = read
        .into_iter()
        .map(|found| found.and_then(|attributes| attributes.timezone))
        .collect();
    assert_eq!(
        zones,
        [
            Some("Europe/Paris".to_owned()),
            None,
            Some("Asia/Shanghai".to_owned())
        ]
    );
    assert_eq!(
        store.registry().app_time_zones(app).await.expect("zones"),
        ["Asia/Shanghai", "Europe/Paris"]
    );
}

/// Regions cn and us on embedded stores, eu on a real redis-server (which the test can pause,
/// as a partition would), seen from us.
async fn two_embedded_and_redis(
    eu: &ringpush_testkit::RedisServer,
) -> (RegionalStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let open = |name: &str| EmbeddedStore::open(&dir.path().join(name)).expect("open store");
    let eu_store = ringpush_store::RedisStore::connect(&eu.url())
        .await
        .expect("connect to redis");
    let regions = vec![
        Region {
            name: "cn".into(),
            code: RegionCode(1),
            store: Arc::new(open("cn.redb")),
        },
        Region {
            name: "us".into(),
            code: RegionCode(2),
            store: Arc::new(open("us.redb")),
        },
        Region {
            name: "eu".into(),
            code: RegionCode(3),
            store: Arc::new(eu_store),
        },
    ];
    (RegionalStore::new("us", regions).expect("regions"), dir)
}

fn live_message(device: DeviceId, text: &str) -> NewMessage {
    let now = ringpush_store::now_ms();
    ringpush_store::conformance::message(now, device, text, now + 3_600_000)
}

async fn write(store: &RegionalStore, message: NewMessage) -> Written {
    let mut batch = [message];
    let holding = store
        .holding(batch.iter().map(|m| m.device))
        .await
        .expect("holding");
    let mut written = store
        .write_ahead(&mut batch, &holding, InboxLimits::default())
        .await
        .expect("write ahead");
    written.pop().expect("one answer")
}

#[tokio::test]
async fn messages_for_an_unreachable_home_are_held_and_handed_home_once_in_order() {
    let eu = ringpush_testkit::RedisServer::start();
    let (store, _dir) = two_embedded_and_redis(&eu).await;
    let device = DeviceId::random_in(RegionCode(3));
    let eu_code = RegionCode(3);

    assert!(matches!(
        write(&store, live_message(device, "one")).await,
        Written::Appended(_)
    ));
    // eu stops taking writes: the write in flight times out (and lands once eu takes writes,
    // unknown to the writer), so the message is held here; the next is held behind it
    // without trying eu.
    eu.command(&["CLIENT", "PAUSE", "20000", "WRITE"])
        .expect("pause");
    let Written::Held(two) = write(&store, live_message(device, "two")).await else {
        panic!("a message for an unreachable home is held");
    };
    let started = std::time::Instant::now();
    let Written::Held(three) = write(&store, live_message(device, "three")).await else {
        panic!("a message behind held ones is held");
    };
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "held without trying eu"
    );
    assert_eq!(two.home, eu_code);
    assert_eq!(two.to_string().parse::<HeldId>(), Ok(two));
    assert_eq!(
        store.held_status(three).await.expect("status"),
        Some(HeldStatus::Held)
    );

    eu.command(&["CLIENT", "UNPAUSE"]).expect("unpause");
    let mut handed = Vec::new();
    for _ in 0..50 {
        match store.hand_off(eu_code, 100, InboxLimits::default()).await {
            Ok(moved) if moved.is_empty() => break,
            Ok(moved) => handed.extend(moved),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let handed_ids: Vec<HeldId> = handed.iter().map(|h| h.held).collect();
    assert_eq!(handed_ids, vec![two, three]);
    let inbox = store
        .read_inbox(device, 0, 10, ringpush_store::now_ms())
        .await
        .expect("read inbox");
    let texts: Vec<&[u8]> = inbox.iter().map(|m| m.payload.as_slice()).collect();
    assert_eq!(
        texts,
        vec![&b"one"[..], b"two", b"three"],
        "each once, in order"
    );
    assert_eq!(
        store.held_status(two).await.expect("status"),
        Some(HeldStatus::HandedHome)
    );
    assert!(
        !store
            .holding([device])
            .await
            .expect("holding")
            .holds(device),
        "nothing held any more: the next message goes home directly"
    );
    assert!(matches!(
        write(&store, live_message(device, "four")).await,
        Written::Appended(_)
    ));
}

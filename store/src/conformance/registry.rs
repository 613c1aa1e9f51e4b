//! Conformance cases of the registry: attributes, the alias index, time zones and the app's
//! device list.

use std::collections::BTreeSet;

use ringpush_audience::DeviceAttributes;
use ringpush_protocol::{AppId, DeviceId};

use crate::{DeviceRecord, Store, now_ms};

fn with(alias: Option<&str>, timezone: Option<&str>) -> DeviceAttributes {
    DeviceAttributes {
        platform: Some("ios".to_owned()),
        alias: alias.map(str::to_owned),
        timezone: timezone.map(str::to_owned),
        ..DeviceAttributes::default()
    }
}

async fn alias_devices(store: &dyn Store, app: AppId, alias: &str) -> Vec<DeviceId> {
    store
        .registry()
        .devices_with_alias(app, alias)
        .await
        .expect("devices with alias")
}

fn sorted(mut devices: Vec<DeviceId>) -> Vec<DeviceId> {
    devices.sort();
    devices
}

async fn zones(store: &dyn Store, app: AppId) -> Vec<String> {
    store
        .registry()
        .app_time_zones(app)
        .await
        .expect("time zones")
}

async fn register(store: &dyn Store, app: AppId) -> DeviceId {
    let device = DeviceRecord {
        id: DeviceId::random(),
        app,
        created_at_ms: now_ms(),
        sealing: None,
    };
    store.create_device(&device).await.expect("create device");
    device.id
}

pub async fn registry_attributes_round_trip_and_are_replaced(store: &dyn Store) {
    let registry = store.registry();
    let app = AppId::random();
    let (first, second, unknown) = (DeviceId::random(), DeviceId::random(), DeviceId::random());
    let full = DeviceAttributes {
        platform: Some("android".to_owned()),
        os_version: Some("14".to_owned()),
        app_version: Some("2.10.1".to_owned()),
        locale: Some("zh-CN".to_owned()),
        timezone: Some("Asia/Shanghai".to_owned()),
        alias: Some("用户-42".to_owned()),
        tags: BTreeSet::from(["vip".to_owned(), "cn".to_owned()]),
        topics: BTreeSet::from(["news".to_owned()]),
        custom: [("plan".to_owned(), "gold \"annual\"".to_owned())].into(),
    };
    assert_eq!(registry.attributes(first).await.expect("read"), None);
    registry.put_attributes(&[]).await.expect("empty batch");
    registry
        .put_attributes(&[
            (app, first, full.clone()),
            (app, second, DeviceAttributes::default()),
        ])
        .await
        .expect("put");
    assert_eq!(
        registry.attributes(first).await.expect("read"),
        Some(full.clone())
    );
    // An empty set is a set: the device reported, with nothing in it.
    assert_eq!(
        registry.attributes(second).await.expect("read"),
        Some(DeviceAttributes::default())
    );
    let many = registry
        .attributes_many(&[unknown, second, first, second])
        .await
        .expect("read many");
    assert_eq!(
        many,
        [
            None,
            Some(DeviceAttributes::default()),
            Some(full.clone()),
            Some(DeviceAttributes::default())
        ]
    );
    assert!(
        registry
            .attributes_many(&[])
            .await
            .expect("read none")
            .is_empty()
    );
    // The SDK reports the whole set: a put replaces, it does not merge.
    let smaller = DeviceAttributes {
        tags: BTreeSet::from(["churned".to_owned()]),
        ..DeviceAttributes::default()
    };
    registry
        .put_attributes(&[(app, first, smaller.clone())])
        .await
        .expect("put");
    assert_eq!(
        registry.attributes(first).await.expect("read"),
        Some(smaller)
    );
    // Many devices in one call (on a cluster: many slots).
    let devices: Vec<DeviceId> = (0..100).map(|_| DeviceId::random()).collect();
    let updates: Vec<(AppId, DeviceId, DeviceAttributes)> = devices
        .iter()
        .enumerate()
        .map(|(i, &device)| (app, device, with(None, Some(&format!("Zone/{}", i % 3)))))
        .collect();
    registry.put_attributes(&updates).await.expect("put many");
    let read = registry.attributes_many(&devices).await.expect("read many");
    let expected: Vec<Option<DeviceAttributes>> =
        updates.into_iter().map(|(_, _, set)| Some(set)).collect();
    assert_eq!(read, expected);
}

pub async fn registry_alias_change_moves_the_device(store: &dyn Store) {
    let registry = store.registry();
    let (app, other_app) = (AppId::random(), AppId::random());
    let (a, b, c, elsewhere) = (
        DeviceId::random(),
        DeviceId::random(),
        DeviceId::random(),
        DeviceId::random(),
    );
    registry
        .put_attributes(&[
            (app, a, with(Some("user-1"), None)),
            (app, b, with(Some("user-1"), None)),
            (app, c, with(Some("user-2"), None)),
            (other_app, elsewhere, with(Some("user-1"), None)),
        ])
        .await
        .expect("put");
    assert_eq!(
        alias_devices(store, app, "user-1").await,
        sorted(vec![a, b])
    );
    assert_eq!(alias_devices(store, app, "user-2").await, [c]);
    assert_eq!(alias_devices(store, other_app, "user-1").await, [elsewhere]);
    // Aliases match whole: neither a prefix nor an extension of one lists its devices.
    assert!(alias_devices(store, app, "user-").await.is_empty());
    assert!(alias_devices(store, app, "user-10").await.is_empty());
    assert!(alias_devices(store, app, "").await.is_empty());
    // A changed alias leaves the old one.
    registry
        .put_attributes(&[(app, a, with(Some("user-2"), None))])
        .await
        .expect("put");
    assert_eq!(alias_devices(store, app, "user-1").await, [b]);
    assert_eq!(
        alias_devices(store, app, "user-2").await,
        sorted(vec![a, c])
    );
    // An alias dropped (or emptied) leaves the index; the same alias again changes nothing.
    registry
        .put_attributes(&[
            (app, b, with(None, None)),
            (app, c, with(Some(""), None)),
            (app, a, with(Some("user-2"), Some("Europe/Paris"))),
        ])
        .await
        .expect("put");
    assert!(alias_devices(store, app, "user-1").await.is_empty());
    assert_eq!(alias_devices(store, app, "user-2").await, [a]);
    // A device twice in one call ends with the later set.
    registry
        .put_attributes(&[
            (app, b, with(Some("first"), None)),
            (app, b, with(Some("second"), None)),
        ])
        .await
        .expect("put");
    assert!(alias_devices(store, app, "first").await.is_empty());
    assert_eq!(alias_devices(store, app, "second").await, [b]);
    // Any text is an alias, braces and separators included.
    let odd = "{a}:b\n\u{0}c ☂";
    registry
        .put_attributes(&[(app, c, with(Some(odd), None))])
        .await
        .expect("put");
    assert_eq!(alias_devices(store, app, odd).await, [c]);
    assert_eq!(alias_devices(store, other_app, "user-1").await, [elsewhere]);
}

pub async fn registry_time_zones_follow_the_devices(store: &dyn Store) {
    let registry = store.registry();
    let (app, other_app) = (AppId::random(), AppId::random());
    let (a, b, c) = (DeviceId::random(), DeviceId::random(), DeviceId::random());
    assert!(zones(store, app).await.is_empty());
    registry
        .put_attributes(&[
            (app, a, with(None, Some("Asia/Tokyo"))),
            (app, b, with(None, Some("America/New_York"))),
            (app, c, with(None, Some("Asia/Tokyo"))),
            (
                other_app,
                DeviceId::random(),
                with(None, Some("Europe/Berlin")),
            ),
        ])
        .await
        .expect("put");
    assert_eq!(zones(store, app).await, ["America/New_York", "Asia/Tokyo"]);
    assert_eq!(zones(store, other_app).await, ["Europe/Berlin"]);
    // A zone stays while any device reports it, and goes with the last one.
    registry
        .put_attributes(&[(app, a, with(None, Some("Europe/Paris")))])
        .await
        .expect("put");
    assert_eq!(
        zones(store, app).await,
        ["America/New_York", "Asia/Tokyo", "Europe/Paris"]
    );
    registry
        .put_attributes(&[
            (app, c, with(None, None)),
            (app, b, with(Some("x"), Some(""))),
        ])
        .await
        .expect("put");
    assert_eq!(zones(store, app).await, ["Europe/Paris"]);
    // Reporting the same zone again counts the device once.
    registry
        .put_attributes(&[
            (app, a, with(None, Some("Europe/Paris"))),
            (app, a, with(None, Some("Europe/Paris"))),
        ])
        .await
        .expect("put");
    registry
        .put_attributes(&[(app, a, with(None, Some("UTC")))])
        .await
        .expect("put");
    assert_eq!(zones(store, app).await, ["UTC"]);
}

pub async fn registry_app_devices_pages_through_every_device(store: &dyn Store) {
    let registry = store.registry();
    let (app, other_app, empty_app) = (AppId::random(), AppId::random(), AppId::random());
    let mut registered = Vec::new();
    for _ in 0..23 {
        registered.push(register(store, app).await);
    }
    let other = register(store, other_app).await;
    assert_eq!(
        registry.app_devices(empty_app, 0, 10).await.expect("list"),
        (0, Vec::new())
    );
    // Pages of 5: every device once, in registration order, cursor 0 after the last page.
    let mut listed = Vec::new();
    let mut cursor = 0;
    let mut pages = 0;
    loop {
        let (next, page) = registry.app_devices(app, cursor, 5).await.expect("list");
        assert!(page.len() <= 5);
        listed.extend(page);
        pages += 1;
        assert!(pages <= 10, "the walk does not end");
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(listed, registered);
    // A page that ends exactly at the last device: the next (empty) one ends the walk.
    let (next, page) = registry.app_devices(app, 0, 23).await.expect("list");
    assert_eq!(page, registered);
    if next != 0 {
        assert_eq!(
            registry.app_devices(app, next, 23).await.expect("list"),
            (0, Vec::new())
        );
    }
    // Devices registered after a page was read come after it.
    let (middle, first_page) = registry.app_devices(app, 0, 20).await.expect("list");
    assert_eq!(first_page, registered[..20]);
    let late = register(store, app).await;
    let (next, rest) = registry.app_devices(app, middle, 20).await.expect("list");
    assert_eq!(
        (next, rest.as_slice()),
        (0, [&registered[20..], &[late]].concat().as_slice())
    );
    assert_eq!(
        registry.app_devices(other_app, 0, 10).await.expect("list"),
        (0, vec![other])
    );
    // Attributes put for a device do not list it: only registration does.
    registry
        .put_attributes(&[(empty_app, DeviceId::random(), with(None, None))])
        .await
        .expect("put");
    assert_eq!(
        registry.app_devices(empty_app, 0, 10).await.expect("list"),
        (0, Vec::new())
    );
}

//! Conformance cases of apps and their keys.

use ringpush_protocol::AppId;

use crate::{AppKey, AppRecord, KeyKind, Store, StoreError, now_ms, secret_hash};

fn key(id: &str, kind: KeyKind, created_at_ms: i64) -> AppKey {
    AppKey {
        id: id.to_owned(),
        kind,
        hash: secret_hash(&format!("secret of {id}")),
        created_at_ms,
        revoked_at_ms: None,
        scopes: crate::KeyScope::all(),
    }
}

/// An app with a server and a client key, created at `created_at_ms`.
fn new_app(name: &str, created_at_ms: i64) -> AppRecord {
    AppRecord {
        id: AppId::random(),
        name: name.to_owned(),
        keys: vec![
            key("server", KeyKind::Server, created_at_ms),
            key("client", KeyKind::Client, created_at_ms),
        ],
        created_at_ms,
        payload_sealing: false,
    }
}

async fn read(store: &dyn Store, id: AppId) -> AppRecord {
    store
        .app(id)
        .await
        .expect("read app")
        .expect("the app exists")
}

fn key_ids(app: &AppRecord) -> Vec<&str> {
    app.keys.iter().map(|key| key.id.as_str()).collect()
}

pub async fn apps_are_created_once_and_read_back(store: &dyn Store) {
    let now = now_ms();
    let mut app = new_app("Weather — alerts ☂", now);
    // Every field of a key round-trips: a revocation time, a negative time, some scopes and
    // none.
    app.keys.push(AppKey {
        revoked_at_ms: Some(now + 5),
        scopes: vec![crate::KeyScope::ReadStats],
        ..key("key_0a1B-_", KeyKind::Server, -7)
    });
    app.keys.push(AppKey {
        scopes: Vec::new(),
        ..key("key_no_scope", KeyKind::Server, now)
    });
    store.create_app(&app).await.expect("create app");
    assert_eq!(read(store, app.id).await, app);
    let sealing = AppRecord {
        payload_sealing: true,
        ..new_app("sealed", now)
    };
    store.create_app(&sealing).await.expect("create app");
    assert_eq!(read(store, sealing.id).await, sealing);
    let again = AppRecord {
        name: "another".to_owned(),
        keys: Vec::new(),
        ..app.clone()
    };
    let result = store.create_app(&again).await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists(_))),
        "{result:?}"
    );
    assert_eq!(read(store, app.id).await, app);
    assert_eq!(store.app(AppId::random()).await.expect("read app"), None);
    // An app may have no keys at all.
    let bare = AppRecord {
        keys: Vec::new(),
        ..new_app("bare", now)
    };
    store.create_app(&bare).await.expect("create app");
    assert_eq!(read(store, bare.id).await, bare);
}

pub async fn apps_are_listed_oldest_first(store: &dyn Store) {
    assert_eq!(store.apps().await.expect("apps"), []);
    let now = now_ms();
    let late = new_app("late", now + 2_000);
    let early = new_app("early", now);
    let middle = new_app("middle", now + 1_000);
    let twins = [new_app("twin", now + 1_000), new_app("twin", now + 1_000)];
    for created in [&late, &early, &twins[0], &middle, &twins[1]] {
        store.create_app(created).await.expect("create app");
    }
    // Ties by id.
    let mut expected = vec![early.clone(), middle, twins[0].clone(), twins[1].clone()];
    expected[1..].sort_by_key(|app| app.id);
    expected.push(late);
    assert_eq!(store.apps().await.expect("apps"), expected);
    // The listing carries the keys, and follows changes to them.
    let extra = key("extra", KeyKind::Client, now + 3_000);
    assert!(store.add_app_key(early.id, &extra).await.expect("add key"));
    let listed = store.apps().await.expect("apps");
    assert_eq!(key_ids(&listed[0]), ["server", "client", "extra"]);
}

pub async fn app_keys_are_added_once_in_creation_order(store: &dyn Store) {
    let now = now_ms();
    let app = new_app("keys", now);
    store.create_app(&app).await.expect("create app");
    let rotated = key("key_1", KeyKind::Server, now + 1_000);
    assert!(store.add_app_key(app.id, &rotated).await.expect("add key"));
    let later = key("key_0", KeyKind::Client, now + 2_000);
    assert!(store.add_app_key(app.id, &later).await.expect("add key"));
    let signing = key("tk_0", KeyKind::TokenSigning, now + 2_500);
    assert!(store.add_app_key(app.id, &signing).await.expect("add key"));
    let stored = read(store, app.id).await;
    assert_eq!(
        key_ids(&stored),
        ["server", "client", "key_1", "key_0", "tk_0"]
    );
    assert_eq!(stored.keys[2], rotated);
    assert_eq!(stored.live_key(&rotated.hash), Some(&rotated));
    // A token-signing key keeps its secret, and never authenticates a caller.
    assert_eq!(stored.keys[4], signing);
    assert_eq!(stored.token_signing_key(), Some(&signing));
    assert_eq!(stored.live_key(&signing.hash), None);
    // The old keys still work beside the new ones.
    assert_eq!(stored.live_key(&app.keys[0].hash), Some(&app.keys[0]));
    // An id is taken for good, whatever the new key's hash or kind.
    let duplicate = key("key_1", KeyKind::Client, now + 3_000);
    let result = store.add_app_key(app.id, &duplicate).await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists(_))),
        "{result:?}"
    );
    assert_eq!(read(store, app.id).await, stored);
    // A key of no app creates no app.
    let unknown = AppId::random();
    assert!(!store.add_app_key(unknown, &rotated).await.expect("add key"));
    assert_eq!(store.app(unknown).await.expect("read app"), None);
}

pub async fn app_keys_are_revoked_once(store: &dyn Store) {
    let now = now_ms();
    let app = new_app("revocations", now);
    store.create_app(&app).await.expect("create app");
    let client = &app.keys[1];
    assert!(
        store
            .revoke_app_key(app.id, "client", now + 1_000)
            .await
            .expect("revoke")
    );
    assert!(
        !store
            .revoke_app_key(app.id, "client", now + 2_000)
            .await
            .expect("revoke again")
    );
    let stored = read(store, app.id).await;
    assert_eq!(stored.keys[1].revoked_at_ms, Some(now + 1_000));
    assert_eq!(stored.keys[1].hash, client.hash);
    assert_eq!(stored.live_key(&client.hash), None);
    assert_eq!(stored.keys[0], app.keys[0]);
    assert_eq!(stored.live_key(&app.keys[0].hash), Some(&app.keys[0]));
    // A revoked id stays taken.
    let reuse = key("client", KeyKind::Client, now + 3_000);
    let result = store.add_app_key(app.id, &reuse).await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists(_))),
        "{result:?}"
    );
    for (id, key_id) in [(app.id, "nope"), (AppId::random(), "client")] {
        let revoked = store.revoke_app_key(id, key_id, now).await;
        assert!(!revoked.expect("revoke"), "{key_id}");
    }
    assert_eq!(read(store, app.id).await, stored);
}

pub async fn racing_key_changes_all_hold(store: &dyn Store) {
    let now = now_ms();
    let app = new_app("races", now);
    store.create_app(&app).await.expect("create app");
    let added: Vec<AppKey> = (0..16)
        .map(|index| key(&format!("key_{index:02}"), KeyKind::Server, now + index))
        .collect();
    let adds = added.iter().map(|key| store.add_app_key(app.id, key));
    let revokes = (0..8).map(|index| store.revoke_app_key(app.id, "client", now + index));
    let (adds, revokes) = futures_util::future::join(
        futures_util::future::join_all(adds),
        futures_util::future::join_all(revokes),
    )
    .await;
    assert!(adds.into_iter().all(|added| added.expect("add key")));
    let revoked: Vec<bool> = revokes
        .into_iter()
        .map(|revoked| revoked.expect("revoke"))
        .collect();
    assert_eq!(revoked.iter().filter(|&&won| won).count(), 1, "{revoked:?}");
    let stored = read(store, app.id).await;
    assert_eq!(stored.keys.len(), 2 + added.len());
    assert_eq!(key_ids(&stored)[..2], ["server", "client"]);
    for key in &added {
        assert_eq!(stored.live_key(&key.hash), Some(key), "{}", key.id);
    }
    assert!(stored.keys[1].revoked_at_ms.is_some());
}

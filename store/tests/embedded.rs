//! The embedded store: the whole conformance suite on a fresh file per test, and what only a
//! file can show (data kept across close and reopen, one process per file).

use ringpush_protocol::{AppId, DeviceId};
use ringpush_store::{
    AppKey, AppRecord, ContentType, EmbeddedStore, InboxLimits, KeyKind, NewMessage, Store,
    StoreError, secret_hash,
};

ringpush_store::store_conformance_tests!(async {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open store");
    (store, dir)
});

const NOW: i64 = 1_700_000_000_000;

fn message(device: DeviceId, text: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        device,
        payload: text.as_bytes().to_vec(),
        content_type: ContentType::Text,
        created_at_ms: NOW,
        expires_at_ms: NOW + 3_600_000,
        idempotency_key: key.map(str::to_owned),
        options: Default::default(),
        campaign_id: None,
    }
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let device = DeviceId::random();
    let app = AppRecord {
        id: AppId::random(),
        name: "kept".to_owned(),
        keys: vec![
            AppKey {
                id: "server".to_owned(),
                kind: KeyKind::Server,
                hash: secret_hash("s"),
                created_at_ms: NOW,
                revoked_at_ms: None,
                scopes: ringpush_store::KeyScope::all(),
            },
            AppKey {
                id: "client".to_owned(),
                kind: KeyKind::Client,
                hash: secret_hash("c"),
                created_at_ms: NOW,
                revoked_at_ms: None,
                scopes: ringpush_store::KeyScope::all(),
            },
        ],
        created_at_ms: NOW,
        payload_sealing: false,
    };
    {
        let store = EmbeddedStore::open(&path).expect("open");
        store.create_app(&app).await.expect("create app");
        let batch = [
            message(device, "one", Some("k")),
            message(device, "two", None),
            message(device, "three", None),
        ];
        store
            .append(&batch, InboxLimits::default())
            .await
            .expect("append");
        store.ack(&[(device, 1)]).await.expect("ack");
        store.mark_delivered(&[(device, 2)]).await.expect("mark");
        let fingerprint = secret_hash("request");
        assert_eq!(
            store
                .remember_request(app.id, "r", fingerprint)
                .await
                .expect("remember"),
            None
        );
    }
    let store = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(store.app(app.id).await.expect("app"), Some(app.clone()));
    let state = store.inbox_state(device, NOW).await.expect("state");
    assert_eq!(
        (
            state.last_seq,
            state.delivered_up_to,
            state.acked_up_to,
            state.pending
        ),
        (3, 2, 1, 2)
    );
    let texts: Vec<Vec<u8>> = store
        .read_inbox(device, 0, 10, NOW)
        .await
        .expect("read")
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(texts, [b"two".to_vec(), b"three".to_vec()]);
    // Sequence and idempotency records continue where they were.
    let again = store
        .append(
            &[
                message(device, "one", Some("k")),
                message(device, "four", None),
            ],
            InboxLimits::default(),
        )
        .await
        .expect("append");
    assert_eq!((again[0].seq, again[0].duplicate), (1, true));
    assert_eq!((again[1].seq, again[1].duplicate), (4, false));
    let remembered = store
        .remember_request(app.id, "r", secret_hash("other"))
        .await
        .expect("remember");
    assert_eq!(remembered, Some(secret_hash("request")));
}

#[tokio::test]
async fn a_file_open_elsewhere_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let _first = EmbeddedStore::open(&path).expect("open");
    let second = EmbeddedStore::open(&path);
    assert!(
        matches!(second, Err(StoreError::Unavailable(_))),
        "{:?}",
        second.err()
    );
}

#[tokio::test]
async fn clones_share_one_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open");
    let clone = store.clone();
    let device = DeviceId::random();
    store
        .append(&[message(device, "m", None)], InboxLimits::default())
        .await
        .expect("append");
    let epoch = clone
        .set_presence(device, "c", NOW)
        .await
        .expect("presence");
    assert_eq!(
        clone
            .inbox_state(device, NOW)
            .await
            .expect("state")
            .last_seq,
        1
    );
    assert_eq!(
        store
            .presence(device)
            .await
            .expect("presence")
            .map(|p| p.epoch),
        Some(epoch)
    );
}

#[tokio::test]
async fn campaigns_and_firings_survive_close_and_reopen() {
    use ringpush_store::{CampaignRecord, CampaignState, Claim, Schedule};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let campaign = CampaignRecord {
        id: "cmp_kept".to_owned(),
        app: AppId::random(),
        name: "kept".to_owned(),
        request: serde_json::json!({"broadcast": true}),
        schedule: Schedule::Once { at_ms: NOW },
        throttle_per_second: Some(10),
        state: CampaignState::Scheduled,
        created_at_ms: NOW,
    };
    {
        let store = EmbeddedStore::open(&path).expect("open");
        let campaigns = store.campaigns();
        campaigns.put_campaign(&campaign).await.expect("put");
        let claim = campaigns
            .claim_firing("cmp_kept", "a", "ctl-a", 60_000, NOW)
            .await
            .expect("claim");
        assert_eq!(claim, Claim::Claimed);
        campaigns
            .finish_firing("cmp_kept", "b")
            .await
            .expect("finish");
    }
    let store = EmbeddedStore::open(&path).expect("reopen");
    let campaigns = store.campaigns();
    assert_eq!(
        campaigns.scheduled_campaigns().await.expect("scheduled"),
        [campaign]
    );
    let held = campaigns
        .claim_firing("cmp_kept", "a", "ctl-b", 60_000, NOW + 1)
        .await
        .expect("claim");
    assert_eq!(held, Claim::HeldBy("ctl-a".to_owned()));
    let done = campaigns
        .claim_firing("cmp_kept", "b", "ctl-b", 60_000, NOW + 1)
        .await
        .expect("claim");
    assert_eq!(done, Claim::Done);
}

#[tokio::test]
async fn apps_of_the_layout_before_key_lists_keep_their_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let id = AppId(0x0123_4567_89ab_cdef);
    {
        // The app record as the earlier layout wrote it: server hash, client hash, created, name.
        let database = redb::Database::create(&path).expect("create");
        let transaction = database.begin_write().expect("write");
        {
            let table: redb::TableDefinition<&[u8; 8], &[u8]> = redb::TableDefinition::new("apps");
            let mut apps = transaction.open_table(table).expect("table");
            let mut value = secret_hash("old server key").to_vec();
            value.extend_from_slice(&secret_hash("old client key"));
            value.extend_from_slice(&NOW.to_be_bytes());
            value.extend_from_slice(b"legacy");
            apps.insert(&id.0.to_be_bytes(), value.as_slice())
                .expect("insert");
        }
        transaction.commit().expect("commit");
    }
    let store = EmbeddedStore::open(&path).expect("open migrates");
    let app = store.app(id).await.expect("read").expect("app kept");
    assert_eq!((app.name.as_str(), app.created_at_ms), ("legacy", NOW));
    let server = app
        .live_key(&secret_hash("old server key"))
        .expect("server key");
    assert_eq!(
        (server.id.as_str(), server.kind),
        ("key_server", KeyKind::Server)
    );
    let client = app
        .live_key(&secret_hash("old client key"))
        .expect("client key");
    assert_eq!(client.kind, KeyKind::Client);
    assert!(
        store
            .revoke_app_key(id, "key_server", NOW)
            .await
            .expect("revoke")
    );
    let app = store.app(id).await.expect("read").expect("app");
    assert!(app.live_key(&secret_hash("old server key")).is_none());
}

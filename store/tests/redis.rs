//! The Redis store on a single server: the whole conformance suite, each test in its own
//! namespace of one shared server (a namespace is an empty store), and what only Redis shows:
//! key expiry, failure reporting, namespaces.

use std::sync::OnceLock;
use std::time::Duration;

use ringpush_protocol::DeviceId;
use ringpush_store::{ContentType, InboxLimits, NewMessage, RedisStore, Store, StoreError, now_ms};
use ringpush_testkit::RedisServer;

/// One server for the whole test binary; it stops when the binary exits.
fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

async fn fresh_store() -> RedisStore {
    let namespace = format!("t{:016x}", rand::random::<u64>());
    RedisStore::connect(&server().url())
        .await
        .expect("connect")
        .with_namespace(&namespace)
}

ringpush_store::store_conformance_tests!(fresh_store());

fn message(device: DeviceId, expires_at_ms: i64, key: Option<&str>) -> NewMessage {
    NewMessage {
        device,
        payload: b"m".to_vec(),
        content_type: ContentType::Text,
        created_at_ms: now_ms(),
        expires_at_ms,
        idempotency_key: key.map(str::to_owned),
        options: Default::default(),
        campaign_id: None,
    }
}

fn pexpiretime(key: &str) -> i64 {
    let reply = server()
        .command(&["PEXPIRETIME", key])
        .expect("PEXPIRETIME");
    reply.parse().expect("a number")
}

#[tokio::test]
async fn inbox_lives_until_its_last_message_expires() {
    let store = fresh_store().await.with_namespace("expiry");
    let device = DeviceId::random();
    let inbox = format!("expiry:{{d:{device}}}:inbox");
    let now = now_ms();
    let limits = InboxLimits::default();
    store
        .append(&[message(device, now + 60_000, None)], limits)
        .await
        .expect("append");
    assert_eq!(pexpiretime(&inbox), now + 60_000);
    // A later expiry extends the key's life...
    store
        .append(&[message(device, now + 120_000, None)], limits)
        .await
        .expect("append");
    assert_eq!(pexpiretime(&inbox), now + 120_000);
    // ...an earlier one, even one already past, never shortens it.
    store
        .append(&[message(device, now + 30_000, None)], limits)
        .await
        .expect("append");
    store
        .append(&[message(device, now - 1_000, None)], limits)
        .await
        .expect("append");
    assert_eq!(pexpiretime(&inbox), now + 120_000);
    let pending = store.inbox_state(device, now).await.expect("state").pending;
    assert_eq!(pending, 3);
}

#[tokio::test]
async fn idempotency_records_carry_their_ttl() {
    let store = fresh_store().await.with_namespace("ttl");
    let device = DeviceId::random();
    let far = now_ms() + 60_000;
    store
        .append(
            &[message(device, far, Some("app:key"))],
            InboxLimits::default(),
        )
        .await
        .expect("append");
    let app = ringpush_protocol::AppId::random();
    store
        .remember_request(app, "key", [7; 32])
        .await
        .expect("remember");
    let day_ms = 24 * 3_600_000;
    for key in [
        format!("ttl:{{d:{device}}}:idem:app:key"),
        format!("ttl:idem:{app}:key"),
    ] {
        let ttl: i64 = server()
            .command(&["PTTL", &key])
            .expect("PTTL")
            .parse()
            .expect("number");
        assert!(ttl > day_ms - 60_000 && ttl <= day_ms, "{key}: {ttl}");
    }
}

#[tokio::test]
async fn namespaces_do_not_see_each_other() {
    let first = fresh_store().await;
    let second = fresh_store().await;
    let device = DeviceId::random();
    let far = now_ms() + 60_000;
    first
        .append(&[message(device, far, None)], InboxLimits::default())
        .await
        .expect("append");
    assert_eq!(
        first
            .inbox_state(device, now_ms())
            .await
            .expect("state")
            .last_seq,
        1
    );
    assert_eq!(
        second
            .inbox_state(device, now_ms())
            .await
            .expect("state")
            .last_seq,
        0
    );
}

#[tokio::test]
async fn nothing_listening_is_unavailable() {
    let url = format!("redis://127.0.0.1:{}", ringpush_testkit::free_port());
    let result = tokio::time::timeout(Duration::from_secs(30), RedisStore::connect(&url))
        .await
        .expect("connect gives up in time");
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{:?}",
        result.err()
    );
    let result = RedisStore::connect("not a url").await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn a_server_that_goes_away_is_unavailable_and_comes_back() {
    let mut own_server = RedisServer::start();
    let store = RedisStore::connect(&own_server.url())
        .await
        .expect("connect");
    let device = DeviceId::random();
    assert_eq!(
        store.inbox_state(device, 0).await.expect("state").last_seq,
        0
    );
    own_server.stop();
    let result = tokio::time::timeout(Duration::from_secs(30), store.inbox_state(device, 0))
        .await
        .expect("the call gives up in time");
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn undecodable_records_are_corrupt() {
    let store = fresh_store().await.with_namespace("corrupt");
    let device = DeviceId::random();
    let record = format!("corrupt:{{d:{device}}}:device");
    server()
        .command(&["HSET", &record, "app", "not hex", "created_at", "x"])
        .expect("HSET");
    let result = store.device(device).await;
    assert!(
        matches!(result, Err(StoreError::Corrupt { .. })),
        "{result:?}"
    );
    let inbox = format!("corrupt:{{d:{device}}}:inbox");
    server()
        .command(&["ZADD", &inbox, "1", "short"])
        .expect("ZADD");
    let result = store.read_inbox(device, 0, 10, 0).await;
    assert!(
        matches!(result, Err(StoreError::Corrupt { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn leases_long_expired_are_removed() {
    let store = fresh_store().await.with_namespace("leases");
    let member = ringpush_ring::Member {
        id: "conn-1".to_owned(),
        device_url: "ws://127.0.0.1:1/v1/connect".to_owned(),
        grpc_url: "http://127.0.0.1:2".to_owned(),
    };
    let now = now_ms();
    store.renew_lease(&member, 1_000, now).await.expect("renew");
    let count =
        |key: &str, command: &str| -> String { server().command(&[command, key]).expect("count") };
    // Expired a moment ago: no longer live, but kept (clocks of callers differ).
    assert!(
        store
            .live_members(now + 2_000)
            .await
            .expect("members")
            .is_empty()
    );
    assert_eq!(count("leases:{ring}:leases", "ZCARD"), "1");
    // Expired a long time ago: removed with its description.
    assert!(
        store
            .live_members(now + 120_000)
            .await
            .expect("members")
            .is_empty()
    );
    assert_eq!(count("leases:{ring}:leases", "ZCARD"), "0");
    assert_eq!(count("leases:{ring}:members", "HLEN"), "0");
}

#[tokio::test]
async fn firing_claims_are_kept_thirty_days() {
    let store = fresh_store().await.with_namespace("firings");
    let campaigns = ringpush_store::Store::campaigns(&store);
    let now = now_ms();
    let claimed = campaigns
        .claim_firing("cmp_1", "cron:2026-11-23T09:00Z", "ctl-a", 30_000, now)
        .await
        .expect("claim");
    assert_eq!(claimed, ringpush_store::Claim::Claimed);
    campaigns
        .finish_firing("cmp_1", "once:2026-11-23T09:00:00Z")
        .await
        .expect("finish");
    let kept = ringpush_store::FIRING_DONE_TTL_MS as i64;
    for key in [
        "firings:firing:5:cmp_1:cron:2026-11-23T09:00Z",
        "firings:firing:5:cmp_1:once:2026-11-23T09:00:00Z",
    ] {
        let ttl: i64 = server()
            .command(&["PTTL", key])
            .expect("PTTL")
            .parse()
            .expect("number");
        assert!(ttl > kept - 60_000 && ttl <= kept, "{key}: {ttl}");
    }
}

#[tokio::test]
async fn app_keys_and_sessions_keep_their_documented_layout() {
    use ringpush_store::{AppKey, AppRecord, KeyKind, SessionRecord, secret_hash};
    let store = fresh_store().await.with_namespace("layout");
    let now = now_ms();
    let key = AppKey {
        id: "key_a1".to_owned(),
        kind: KeyKind::Server,
        hash: secret_hash("s"),
        created_at_ms: now,
        revoked_at_ms: None,
        scopes: ringpush_store::KeyScope::all(),
    };
    let app = AppRecord {
        id: ringpush_protocol::AppId::random(),
        name: "layout".to_owned(),
        keys: vec![key.clone()],
        created_at_ms: now,
        payload_sealing: false,
    };
    store.create_app(&app).await.expect("create app");
    let record = format!("layout:app:{}", app.id);
    let field = |name: &str| server().command(&["HGET", &record, name]).expect("HGET");
    let hash = hex::encode(key.hash);
    let scopes = "send,read_stats,manage_devices";
    assert_eq!(
        field("key:key_a1"),
        format!("0 server {hash} {now} {scopes} -")
    );
    let score = server()
        .command(&["ZSCORE", "layout:apps", &app.id.to_string()])
        .expect("ZSCORE");
    assert_eq!(score, now.to_string());
    store
        .revoke_app_key(app.id, "key_a1", now + 5)
        .await
        .expect("revoke");
    assert_eq!(
        field("key:key_a1"),
        format!("0 server {hash} {now} {scopes} {}", now + 5)
    );
    // A key of five words (written before keys had scopes) has every scope.
    let legacy = format!("1 server {hash} {now} -");
    server()
        .command(&["HSET", &record, "key:key_old", &legacy])
        .expect("HSET");
    let read = store.app(app.id).await.expect("read").expect("app");
    assert_eq!(read.keys[1].id, "key_old");
    assert_eq!(read.keys[1].scopes, ringpush_store::KeyScope::all());

    let session = SessionRecord {
        id_hash: secret_hash("session"),
        operator: "ada".to_owned(),
        csrf_token: "t".to_owned(),
        created_at_ms: now,
        expires_at_ms: now + 3_600_000,
    };
    store
        .operators()
        .create_session(&session)
        .await
        .expect("create session");
    let key = format!("layout:{{portal}}:session:{}", hex::encode(session.id_hash));
    let ttl: i64 = server()
        .command(&["PTTL", &key])
        .expect("PTTL")
        .parse()
        .expect("number");
    assert!(ttl > 3_600_000 - 60_000 && ttl <= 3_600_000, "{ttl}");
}

/// Leases go by the server's clock: `clock_ms` answers Redis's TIME (on this host, close to
/// ours), and a lease renewed through the membership helpers is live by it.
#[tokio::test]
async fn leases_go_by_the_servers_clock() {
    let store = fresh_store().await;
    let clock = store.clock_ms().await.expect("TIME");
    let time = server().command(&["TIME"]).expect("TIME");
    let seconds: i64 = time
        .split_whitespace()
        .next()
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or_else(|| panic!("TIME answered {time:?}"));
    assert!(
        (clock / 1000 - seconds).abs() <= 1,
        "{clock} ms vs {time:?}"
    );
    let member = ringpush_ring::Member {
        id: "conn-clock".to_owned(),
        device_url: "ws://127.0.0.1:1/v1/connect".to_owned(),
        grpc_url: "http://127.0.0.1:2".to_owned(),
    };
    ringpush_store::membership::renew_lease(&store, &member, Duration::from_secs(10))
        .await
        .expect("renew");
    let live = ringpush_store::membership::live_members(&store)
        .await
        .expect("members");
    assert_eq!(live, vec![member]);
}

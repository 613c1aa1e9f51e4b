//! Device tokens on a connector: signed by the app's token-signing key and bound to one
//! device; refused once expired or once their key is revoked (within the app cache's time);
//! renewed in the Welcome once half their lifetime has passed, or once a newer key signs.

mod common;

use std::time::{Duration, Instant};

use common::{Device, Env, TOKEN_SECRET, sign_token};
use ringpush_connector::APP_CACHE_TTL;
use ringpush_protocol::DeviceId;
use ringpush_protocol::device::{ErrorCode, server_frame};
use ringpush_protocol::token::DeviceToken;
use ringpush_store::{AppKey, KeyKind, now_ms};

/// Says Hello with `token`; answers the Welcome's renewed token (`Ok`) or the error's
/// code and message (`Err`).
async fn hello(url: &str, device: DeviceId, token: &str) -> Result<String, (ErrorCode, String)> {
    let mut client = Device::connect(url).await;
    client.hello(device, token, 0).await;
    match client.frame().await {
        server_frame::Kind::Welcome(welcome) => Ok(welcome.device_token),
        server_frame::Kind::Error(error) => Err((error.code(), error.message)),
        other => panic!("expected Welcome or Error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_and_a_half_used_one_is_renewed() {
    let env = Env::new().await;
    let connector = env.start(|_| {}).await;
    let url = connector.url();
    let (device, fresh) = env.device().await;
    let hour = 3_600_000;
    let now = now_ms();

    assert_eq!(
        hello(&url, device, &fresh).await,
        Ok(String::new()),
        "fresh: kept"
    );

    let expired = DeviceToken::sign(device, "tokens", &TOKEN_SECRET, now - 2 * hour, now - hour);
    let (code, message) = hello(&url, device, &expired).await.unwrap_err();
    assert_eq!(code, ErrorCode::Unauthenticated);
    assert!(message.contains("expired"), "{message}");

    let half_used = DeviceToken::sign(
        device,
        "tokens",
        &TOKEN_SECRET,
        now - 40 * 60_000,
        now + 20 * 60_000,
    );
    let renewed = hello(&url, device, &half_used).await.expect("still valid");
    let parsed = DeviceToken::parse(&renewed).expect("a token");
    assert!(parsed.verify(device, &TOKEN_SECRET));
    assert_eq!(parsed.lifetime_ms(), hour, "renewed for the same lifetime");
    assert!(parsed.expires_at_ms > now + 50 * 60_000);
    assert_eq!(hello(&url, device, &renewed).await, Ok(String::new()));

    // Forged or foreign tokens say what is wrong, without opening the stream.
    let forged = DeviceToken::sign(device, "tokens", &[0; 32], now, now + hour);
    let (code, message) = hello(&url, device, &forged).await.unwrap_err();
    assert_eq!(code, ErrorCode::Unauthenticated);
    assert!(message.contains("not signed for this device"), "{message}");
    let (code, _) = hello(&url, device, &sign_token(DeviceId::random()))
        .await
        .unwrap_err();
    assert_eq!(code, ErrorCode::Unauthenticated);
    let (code, message) = hello(&url, device, "dt_random_legacy").await.unwrap_err();
    assert_eq!(code, ErrorCode::Unauthenticated);
    assert!(message.contains("malformed"), "{message}");
    connector.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_signing_key_works_at_once_and_a_revoked_one_stops_within_the_cache_time() {
    let env = Env::new().await;
    let connector = env.start(|_| {}).await;
    let url = connector.url();
    let (device, old_token) = env.device().await;
    assert!(hello(&url, device, &old_token).await.is_ok());

    // Rotation: a second key, used at once although the app is cached.
    let new_secret = [7u8; 32];
    let key = AppKey {
        id: "tokens-2".into(),
        kind: KeyKind::TokenSigning,
        hash: new_secret,
        created_at_ms: now_ms(),
        revoked_at_ms: None,
        scopes: Vec::new(),
    };
    assert!(env.store.add_app_key(env.app, &key).await.unwrap());
    let new_token = DeviceToken::sign(
        device,
        "tokens-2",
        &new_secret,
        now_ms(),
        now_ms() + 3_600_000,
    );
    assert_eq!(hello(&url, device, &new_token).await, Ok(String::new()));
    // A device still on the old key is moved to the new one at its next connection, so the
    // old key can be revoked without cutting anyone off.
    let moved = hello(&url, device, &old_token)
        .await
        .expect("the old key still works");
    assert_eq!(DeviceToken::parse(&moved).unwrap().key_id, "tokens-2");

    let revoked_at = Instant::now();
    assert!(
        env.store
            .revoke_app_key(env.app, "tokens", now_ms())
            .await
            .unwrap()
    );
    let refused = loop {
        match hello(&url, device, &old_token).await {
            Ok(_) => {
                assert!(
                    revoked_at.elapsed() < APP_CACHE_TTL + Duration::from_secs(3),
                    "the revoked key still works after {:?}",
                    revoked_at.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(refused) => break refused,
        }
    };
    println!(
        "a revoked signing key was refused {:?} after the revocation",
        revoked_at.elapsed()
    );
    assert_eq!(refused.0, ErrorCode::Unauthenticated);
    assert!(refused.1.contains("revoked"), "{}", refused.1);
    assert!(
        hello(&url, device, &new_token).await.is_ok(),
        "the other key still works"
    );
    connector.wait_idle().await;
}

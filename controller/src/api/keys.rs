//! `/v1/apps/{app}/keys`: an app's keys (admin only): list them (never the secrets), create
//! one (a server key with some or all scopes, or a client key: its secret is answered once;
//! or a token-signing key, which then signs every new device token and whose secret is
//! never shown), revoke one. A revoked server or client key stops working at once on every
//! controller (each request reads the app's keys from the store); a revoked token-signing
//! key ends every device token it signed on every connector within
//! `ringpush_connector::APP_CACHE_TTL` (devices then register again).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use ringpush_store::{AppKey, KeyKind, KeyScope, StoreError, now_ms, secret_hash};
use serde::{Deserialize, Serialize};

use super::{parse_json, random_secret};
use crate::ControllerState;
use crate::auth::{Credentials, load_app};
use crate::error::ApiError;

/// A new server or client key with `scopes`: its record (with the secret's hash) and the
/// secret, to show once.
pub(crate) fn new_key(kind: KeyKind, scopes: Vec<KeyScope>, now_ms: i64) -> (AppKey, String) {
    debug_assert_ne!(kind, KeyKind::TokenSigning, "see new_signing_key");
    let prefix = if kind == KeyKind::Server {
        "sk_"
    } else {
        "ck_"
    };
    let secret = random_secret(prefix);
    (
        key_record(kind, secret_hash(&secret), scopes, now_ms),
        secret,
    )
}

/// A new token-signing key: its record holds its secret, which is never shown.
pub(crate) fn new_signing_key(now_ms: i64) -> AppKey {
    key_record(KeyKind::TokenSigning, rand::random(), Vec::new(), now_ms)
}

fn key_record(kind: KeyKind, hash: [u8; 32], scopes: Vec<KeyScope>, now_ms: i64) -> AppKey {
    let id_bytes: [u8; 6] = rand::random();
    AppKey {
        id: format!("key_{}", hex::encode(id_bytes)),
        kind,
        hash,
        created_at_ms: now_ms,
        revoked_at_ms: None,
        scopes,
    }
}

/// A key as listed.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyView {
    pub key_id: String,
    pub kind: KeyKind,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// What a server key may do (empty for client keys, which only register devices).
    pub scopes: Vec<KeyScope>,
}

impl From<&AppKey> for KeyView {
    fn from(key: &AppKey) -> Self {
        Self {
            key_id: key.id.clone(),
            kind: key.kind,
            created_at_ms: key.created_at_ms,
            revoked_at_ms: key.revoked_at_ms,
            scopes: match key.kind {
                KeyKind::Server => key.scopes.clone(),
                KeyKind::Client | KeyKind::TokenSigning => Vec::new(),
            },
        }
    }
}

/// The answer to `GET .../keys`.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

pub(crate) async fn list_keys(
    State(state): State<ControllerState>,
    credentials: Credentials,
    Path(app_id): Path<String>,
) -> Result<Json<KeyList>, ApiError> {
    credentials.admin(&state).await?;
    let app = load_app(&state, &app_id).await?;
    Ok(Json(KeyList {
        keys: app.keys.iter().map(KeyView::from).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    kind: KeyKind,
    /// For a server key: what it may do; every scope if absent.
    scopes: Option<Vec<KeyScope>>,
}

/// The answer to `POST .../keys`: the only time the secret is shown (a token-signing key
/// has none to show).
#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedKey {
    pub key_id: String,
    pub kind: KeyKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub created_at_ms: i64,
    pub scopes: Vec<KeyScope>,
}

pub(crate) async fn create_key(
    State(state): State<ControllerState>,
    credentials: Credentials,
    Path(app_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    credentials.admin(&state).await?;
    let app = load_app(&state, &app_id).await?;
    let request: CreateKey = parse_json(&body)?;
    let scopes = match (request.kind, request.scopes) {
        (KeyKind::Server, None) => KeyScope::all(),
        (KeyKind::Server, Some(mut scopes)) => {
            scopes.sort();
            scopes.dedup();
            if scopes.is_empty() {
                return Err(ApiError::InvalidRequest(
                    "a server key needs at least one scope: send, read_stats, manage_devices"
                        .into(),
                ));
            }
            scopes
        }
        (KeyKind::Client | KeyKind::TokenSigning, None) => Vec::new(),
        (KeyKind::Client, Some(_)) => {
            return Err(ApiError::InvalidRequest(
                "client keys have no scopes: they only register devices".into(),
            ));
        }
        (KeyKind::TokenSigning, Some(_)) => {
            return Err(ApiError::InvalidRequest(
                "token-signing keys have no scopes: they only sign device tokens".into(),
            ));
        }
    };
    loop {
        let (key, secret) = match request.kind {
            KeyKind::TokenSigning => (new_signing_key(now_ms()), None),
            kind => {
                let (key, secret) = new_key(kind, scopes.clone(), now_ms());
                (key, Some(secret))
            }
        };
        match state.store.add_app_key(app.id, &key).await {
            Ok(true) => {
                tracing::info!(app_id = %app.id, key_id = %key.id, kind = key.kind.as_str(), "key created");
                let created = CreatedKey {
                    key_id: key.id,
                    kind: key.kind,
                    key: secret,
                    created_at_ms: key.created_at_ms,
                    scopes: key.scopes,
                };
                return Ok((StatusCode::CREATED, Json(created)));
            }
            Ok(false) => return Err(ApiError::UnknownApp(app.id.to_string())),
            // 48 random bits of id collided: draw again.
            Err(StoreError::AlreadyExists(_)) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

pub(crate) async fn revoke_key(
    State(state): State<ControllerState>,
    credentials: Credentials,
    Path((app_id, key_id)): Path<(String, String)>,
) -> Result<Json<KeyView>, ApiError> {
    credentials.admin(&state).await?;
    let app = load_app(&state, &app_id).await?;
    let Some(key) = app.keys.iter().find(|key| key.id == key_id) else {
        return Err(ApiError::UnknownKey(key_id.chars().take(40).collect()));
    };
    let now = now_ms();
    // False when another request revoked it first (or before): its first time stands.
    if !state.store.revoke_app_key(app.id, &key_id, now).await? {
        return Err(ApiError::Conflict(format!(
            "key {key_id} is already revoked"
        )));
    }
    let key = AppKey {
        revoked_at_ms: Some(now),
        ..key.clone()
    };
    tracing::info!(app_id = %app.id, key_id = %key.id, "key revoked");
    Ok(Json(KeyView::from(&key)))
}

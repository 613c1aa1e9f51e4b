//! `/v1/apps/{app}/keys`: an app's API keys (admin only): list them (never the secrets),
//! create one, a server key with some or all scopes (its secret is answered once), revoke one (it stops working at once on every
//! controller: each request reads the app's keys from the store).

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

/// A new key of `kind` with `scopes`: its record (with the secret's hash) and the secret.
pub(crate) fn new_key(kind: KeyKind, scopes: Vec<KeyScope>, now_ms: i64) -> (AppKey, String) {
    let secret = match kind {
        KeyKind::Server => random_secret("sk_"),
        KeyKind::Client => random_secret("ck_"),
    };
    let id_bytes: [u8; 6] = rand::random();
    let key = AppKey {
        id: format!("key_{}", hex::encode(id_bytes)),
        kind,
        hash: secret_hash(&secret),
        created_at_ms: now_ms,
        revoked_at_ms: None,
        scopes,
    };
    (key, secret)
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
                KeyKind::Client => Vec::new(),
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

/// The answer to `POST .../keys`: the only time the secret is shown.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedKey {
    pub key_id: String,
    pub kind: KeyKind,
    pub key: String,
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
        (KeyKind::Client, None) => Vec::new(),
        (KeyKind::Client, Some(_)) => {
            return Err(ApiError::InvalidRequest(
                "client keys have no scopes: they only register devices".into(),
            ));
        }
    };
    loop {
        let (key, secret) = new_key(request.kind, scopes.clone(), now_ms());
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

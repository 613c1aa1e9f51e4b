//! `POST /v1/apps`: creating an app and its keys (admin token).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use ringpush_protocol::AppId;
use ringpush_store::{AppRecord, StoreError, now_ms, secret_hash};
use serde::{Deserialize, Serialize};

use super::{parse_json, random_secret};
use crate::ControllerState;
use crate::auth::require_admin;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateApp {
    name: String,
}

/// The answer to `POST /v1/apps`: the only time the keys are shown.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedApp {
    pub app_id: String,
    pub name: String,
    pub server_key: String,
    pub client_key: String,
}

const MAX_NAME_LEN: usize = 200;

pub(crate) async fn create_app(
    State(state): State<ControllerState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedApp>), ApiError> {
    require_admin(&headers, &state.admin_token_hash)?;
    let request: CreateApp = parse_json(&body)?;
    let name = request.name.trim().to_owned();
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(ApiError::InvalidRequest(format!(
            "name must be 1 to {MAX_NAME_LEN} characters"
        )));
    }
    loop {
        let server_key = random_secret("sk_");
        let client_key = random_secret("ck_");
        let app = AppRecord {
            id: AppId::random(),
            name: name.clone(),
            server_key_hash: secret_hash(&server_key),
            client_key_hash: secret_hash(&client_key),
            created_at_ms: now_ms(),
        };
        match state.store.create_app(&app).await {
            Ok(()) => {
                tracing::info!(app_id = %app.id, name = %app.name, "app created");
                let created = CreatedApp {
                    app_id: app.id.to_string(),
                    name,
                    server_key,
                    client_key,
                };
                return Ok((StatusCode::CREATED, Json(created)));
            }
            // 64 random bits collided: draw again.
            Err(StoreError::AlreadyExists(_)) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

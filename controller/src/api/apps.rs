//! `/v1/apps`: creating an app with its first keys (admin), listing apps and reading one
//! (admin or any operator).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use ringpush_protocol::AppId;
use ringpush_store::{AppRecord, KeyKind, KeyScope, StoreError, now_ms};
use serde::{Deserialize, Serialize};

use super::keys::{new_key, new_signing_key};
use super::parse_json;
use crate::ControllerState;
use crate::auth::{Credentials, load_app};
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateApp {
    name: String,
    /// Seal every payload to its device's key (see docs/security.md); fixed for the app's
    /// life, since its devices must register with a key.
    #[serde(default)]
    payload_sealing: bool,
}

/// The answer to `POST /v1/apps`: the only time the keys are shown.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedApp {
    pub app_id: String,
    pub name: String,
    pub server_key_id: String,
    pub server_key: String,
    pub client_key_id: String,
    pub client_key: String,
    pub payload_sealing: bool,
}

const MAX_NAME_LEN: usize = 200;

pub(crate) async fn create_app(
    State(state): State<ControllerState>,
    credentials: Credentials,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedApp>), ApiError> {
    credentials.admin(&state).await?;
    let request: CreateApp = parse_json(&body)?;
    let name = request.name.trim().to_owned();
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(ApiError::InvalidRequest(format!(
            "name must be 1 to {MAX_NAME_LEN} characters"
        )));
    }
    loop {
        let now = now_ms();
        let (server, server_key) = new_key(KeyKind::Server, KeyScope::all(), now);
        let (client, client_key) = new_key(KeyKind::Client, Vec::new(), now);
        let signing = new_signing_key(now);
        let app = AppRecord {
            id: AppId::random(),
            name: name.clone(),
            keys: vec![server.clone(), client.clone(), signing],
            created_at_ms: now,
            payload_sealing: request.payload_sealing,
        };
        match state.store.create_app(&app).await {
            Ok(()) => {
                tracing::info!(app_id = %app.id, name = %app.name, payload_sealing = app.payload_sealing, "app created");
                let created = CreatedApp {
                    app_id: app.id.to_string(),
                    name: app.name,
                    server_key_id: server.id,
                    server_key,
                    client_key_id: client.id,
                    client_key,
                    payload_sealing: app.payload_sealing,
                };
                return Ok((StatusCode::CREATED, Json(created)));
            }
            // 64 random bits collided: draw again.
            Err(StoreError::AlreadyExists(_)) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// An app as listed (never its keys).
#[derive(Debug, Serialize, Deserialize)]
pub struct AppView {
    pub app_id: String,
    pub name: String,
    pub created_at_ms: i64,
    pub payload_sealing: bool,
}

impl From<&AppRecord> for AppView {
    fn from(app: &AppRecord) -> Self {
        Self {
            app_id: app.id.to_string(),
            name: app.name.clone(),
            created_at_ms: app.created_at_ms,
            payload_sealing: app.payload_sealing,
        }
    }
}

/// The answer to `GET /v1/apps`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AppList {
    pub apps: Vec<AppView>,
}

pub(crate) async fn list_apps(
    State(state): State<ControllerState>,
    credentials: Credentials,
) -> Result<Json<AppList>, ApiError> {
    credentials.admin_or_operator(&state).await?;
    let apps = state.store.apps().await?;
    Ok(Json(AppList {
        apps: apps.iter().map(AppView::from).collect(),
    }))
}

pub(crate) async fn get_app(
    State(state): State<ControllerState>,
    credentials: Credentials,
    Path(app_id): Path<String>,
) -> Result<Json<AppView>, ApiError> {
    credentials.admin_or_operator(&state).await?;
    let app = load_app(&state, &app_id).await?;
    Ok(Json(AppView::from(&app)))
}

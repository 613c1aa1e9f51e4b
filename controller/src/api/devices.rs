//! Devices: registration (client key) and their state (server key).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use ringpush_protocol::DeviceId;
use ringpush_store::{DeviceRecord, StoreError, now_ms, secret_hash};
use serde::{Deserialize, Serialize};

use super::random_secret;
use crate::ControllerState;
use crate::auth::{KeyKind, require_app_key};
use crate::error::ApiError;

/// The answer to a registration: the device's identity, to be kept by the device.
#[derive(Debug, Serialize, Deserialize)]
pub struct RegisteredDevice {
    pub device_id: String,
    pub device_token: String,
}

pub(crate) async fn register_device(
    State(state): State<ControllerState>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<RegisteredDevice>), ApiError> {
    let app = require_app_key(state.store.as_ref(), &headers, &app_id, KeyKind::Client).await?;
    loop {
        let token = random_secret("dt_");
        let device = DeviceRecord {
            id: DeviceId::random(),
            app: app.id,
            token_hash: secret_hash(&token),
            created_at_ms: now_ms(),
        };
        match state.store.create_device(&device).await {
            Ok(()) => {
                metrics::counter!("ringpush_controller_devices_registered_total").increment(1);
                let registered = RegisteredDevice {
                    device_id: device.id.to_string(),
                    device_token: token,
                };
                return Ok((StatusCode::CREATED, Json(registered)));
            }
            Err(StoreError::AlreadyExists(_)) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// The answer to `GET /v1/apps/{app_id}/devices/{device_id}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeviceState {
    pub device_id: String,
    pub online: bool,
    /// The connector holding the device, when online.
    pub connector_id: Option<String>,
    pub online_since_ms: Option<i64>,
    /// Messages waiting for the device's ack.
    pub pending: u64,
    pub last_seq: u64,
    pub delivered_up_to: u64,
    pub acked_up_to: u64,
}

pub(crate) async fn device_state(
    State(state): State<ControllerState>,
    Path((app_id, device_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<DeviceState>, ApiError> {
    let app = require_app_key(state.store.as_ref(), &headers, &app_id, KeyKind::Server).await?;
    let unknown = || ApiError::UnknownDevice(device_id.chars().take(40).collect());
    let id: DeviceId = device_id.parse().map_err(|_| unknown())?;
    match state.store.device(id).await? {
        Some(device) if device.app == app.id => {}
        _ => return Err(unknown()),
    }
    let (presence, inbox) = tokio::try_join!(
        state.store.presence(id),
        state.store.inbox_state(id, now_ms())
    )?;
    Ok(Json(DeviceState {
        device_id: id.to_string(),
        online: presence.is_some(),
        connector_id: presence.as_ref().map(|p| p.connector_id.clone()),
        online_since_ms: presence.as_ref().map(|p| p.since_ms),
        pending: inbox.pending,
        last_seq: inbox.last_seq,
        delivered_up_to: inbox.delivered_up_to,
        acked_up_to: inbox.acked_up_to,
    }))
}

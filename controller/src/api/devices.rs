//! Devices: registration (client key) and their state (server key).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use ringpush_protocol::{DeviceId, seal};
use ringpush_store::{AppRecord, ContentType, DeviceRecord, DeviceSealing, StoreError, now_ms};
use serde::{Deserialize, Serialize};

use super::keys::new_signing_key;
use super::parse_json;
use crate::ControllerState;
use crate::auth::{Access, Credentials, load_app};
use crate::error::ApiError;

/// The body of a registration (optional: an empty body registers a device that cannot read
/// sealed payloads).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterDevice {
    /// The device's X25519 public key, base64url without padding.
    seal_public_key: Option<String>,
    /// What the device decompresses: `["lz4"]` or nothing.
    #[serde(default)]
    compression: Vec<String>,
}

/// The answer to a registration: the device's identity, to be kept by the device.
#[derive(Debug, Serialize, Deserialize)]
pub struct RegisteredDevice {
    pub device_id: String,
    pub device_token: String,
    /// Whether the app seals payloads to the key the device gave.
    #[serde(default)]
    pub payload_sealing: bool,
}

pub(crate) async fn register_device(
    State(state): State<ControllerState>,
    Path(app_id): Path<String>,
    credentials: Credentials,
    body: Bytes,
) -> Result<(StatusCode, Json<RegisteredDevice>), ApiError> {
    let app = credentials
        .app(&state, &app_id, Access::RegisterDevices)
        .await?;
    let request: RegisterDevice = match body.iter().all(u8::is_ascii_whitespace) {
        true => RegisterDevice::default(),
        false => parse_json(&body)?,
    };
    let sealing = device_sealing(&request)?;
    if app.payload_sealing && sealing.is_none() {
        return Err(ApiError::InvalidRequest(
            "this app seals payloads: register with seal_public_key (the device's X25519 \
             public key, base64url)"
                .into(),
        ));
    }
    let app = with_signing_key(&state, app).await?;
    loop {
        let device = DeviceRecord {
            id: match state.config.region {
                Some(home) => DeviceId::random_in(home),
                None => DeviceId::random(),
            },
            app: app.id,
            created_at_ms: now_ms(),
            sealing,
        };
        let token = app
            .issue_device_token(
                device.id,
                device.created_at_ms,
                state.config.device_token_lifetime_ms,
            )
            .expect("with_signing_key gave the app a live signing key");
        match state.store.create_device(&device).await {
            Ok(()) => {
                metrics::counter!("ringpush_controller_devices_registered_total").increment(1);
                state.device_owners.remember(&device);
                let registered = RegisteredDevice {
                    device_id: device.id.to_string(),
                    device_token: token,
                    payload_sealing: app.payload_sealing,
                };
                return Ok((StatusCode::CREATED, Json(registered)));
            }
            Err(StoreError::AlreadyExists(_)) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// The sealing key and abilities a registration gives, checked.
fn device_sealing(request: &RegisterDevice) -> Result<Option<DeviceSealing>, ApiError> {
    let mut lz4 = false;
    for name in &request.compression {
        match name.as_str() {
            "lz4" => lz4 = true,
            other => {
                return Err(ApiError::InvalidRequest(format!(
                    "compression: unknown algorithm {other:?} (known: \"lz4\")"
                )));
            }
        }
    }
    let Some(text) = &request.seal_public_key else {
        return Ok(None);
    };
    let bad = || {
        ApiError::InvalidRequest(
            "seal_public_key must be an X25519 public key: 32 bytes in base64url without \
             padding (43 characters)"
                .into(),
        )
    };
    let bytes: [u8; seal::KEY_LEN] = URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(bad)?;
    let key = seal::PublicKey::from_bytes(bytes).ok_or_else(|| {
        ApiError::InvalidRequest(
            "seal_public_key is a weak X25519 key (low order); draw another".into(),
        )
    })?;
    Ok(Some(DeviceSealing {
        public_key: key.0,
        lz4,
    }))
}

/// The app, with a live token-signing key: an app whose signing keys were all revoked, or
/// that was created before device tokens were signed, is given one here.
async fn with_signing_key(state: &ControllerState, app: AppRecord) -> Result<AppRecord, ApiError> {
    if app.token_signing_key().is_some() {
        return Ok(app);
    }
    let key = new_signing_key(now_ms());
    match state.store.add_app_key(app.id, &key).await {
        Ok(true) => tracing::info!(app_id = %app.id, key_id = %key.id, "token-signing key created"),
        Ok(false) => return Err(ApiError::UnknownApp(app.id.to_string())),
        // 48 random bits of id collided; the app is read again below either way.
        Err(StoreError::AlreadyExists(_)) => {}
        Err(error) => return Err(error.into()),
    }
    let app = load_app(state, &app.id.to_string()).await?;
    if app.token_signing_key().is_none() {
        return Err(ApiError::Unavailable(
            "the app's token-signing key could not be created; retry".into(),
        ));
    }
    Ok(app)
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
    /// What the device last reported of itself (empty if it never did).
    pub attributes: ringpush_audience::DeviceAttributes,
    /// The oldest pending messages, at most [`PENDING_SHOWN`].
    pub pending_messages: Vec<PendingMessage>,
    /// The platform push service the device registered a token for, if any (the token
    /// itself is not shown: a Web Push endpoint is a capability).
    pub platform: Option<DevicePlatform>,
}

/// A device's platform registration, as its state shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct DevicePlatform {
    pub service: String,
    pub registered_at_ms: i64,
}

/// Pending messages shown with a device's state.
pub const PENDING_SHOWN: usize = 20;
/// Characters of a payload shown in a preview.
const PREVIEW_CHARS: usize = 120;

/// A message waiting in a device's inbox.
#[derive(Debug, Serialize, Deserialize)]
pub struct PendingMessage {
    pub message_id: String,
    pub seq: u64,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    /// The payload's start as text (binary payloads as their length).
    pub preview: String,
}

fn preview(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(text) if text.chars().count() > PREVIEW_CHARS => {
            format!("{}…", text.chars().take(PREVIEW_CHARS).collect::<String>())
        }
        Ok(text) => text.to_owned(),
        Err(_) => format!("({} bytes)", payload.len()),
    }
}

pub(crate) async fn device_state(
    State(state): State<ControllerState>,
    Path((app_id, device_id)): Path<(String, String)>,
    credentials: Credentials,
) -> Result<Json<DeviceState>, ApiError> {
    let app = credentials.app(&state, &app_id, Access::Read).await?;
    let unknown = || ApiError::UnknownDevice(device_id.chars().take(40).collect());
    let id: DeviceId = device_id.parse().map_err(|_| unknown())?;
    match state.store.device(id).await? {
        Some(device) if device.app == app.id => {}
        _ => return Err(unknown()),
    }
    let now = now_ms();
    let (presence, inbox, attributes, pending, platform) = tokio::try_join!(
        state.store.presence(id),
        state.store.inbox_state(id, now),
        state.store.registry().attributes(id),
        state.store.read_inbox(id, 0, PENDING_SHOWN, now),
        state.store.platform().platform_token(id),
    )?;
    let pending_messages = pending
        .into_iter()
        .map(|message| PendingMessage {
            message_id: ringpush_protocol::MessageId {
                device: id,
                seq: message.seq,
            }
            .to_string(),
            seq: message.seq,
            created_at_ms: message.created_at_ms,
            expires_at_ms: message.expires_at_ms,
            campaign_id: message.campaign_id,
            preview: match message.content_type {
                ContentType::Sealed => format!("(sealed, {} bytes)", message.payload.len()),
                _ => preview(&message.payload),
            },
        })
        .collect();
    Ok(Json(DeviceState {
        device_id: id.to_string(),
        online: presence.is_some(),
        connector_id: presence.as_ref().map(|p| p.connector_id.clone()),
        online_since_ms: presence.as_ref().map(|p| p.since_ms),
        pending: inbox.pending,
        last_seq: inbox.last_seq,
        delivered_up_to: inbox.delivered_up_to,
        acked_up_to: inbox.acked_up_to,
        attributes: attributes.unwrap_or_default(),
        pending_messages,
        platform: platform.map(|registration| DevicePlatform {
            service: registration.token.service().as_str().to_owned(),
            registered_at_ms: registration.registered_at_ms,
        }),
    }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct AliasQuery {
    alias: Option<String>,
}

/// The answer to `GET /v1/apps/{app_id}/devices?alias=...`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AliasDevices {
    pub alias: String,
    pub device_ids: Vec<String>,
}

/// `GET /v1/apps/{app_id}/devices?alias=...`: the devices of a user.
pub(crate) async fn devices_with_alias(
    State(state): State<ControllerState>,
    Path(app_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<AliasQuery>,
    credentials: Credentials,
) -> Result<Json<AliasDevices>, ApiError> {
    let app = credentials.app(&state, &app_id, Access::Read).await?;
    let Some(alias) = query.alias.filter(|alias| !alias.is_empty()) else {
        return Err(ApiError::InvalidRequest(
            "give the alias to look up: ?alias=<alias>".into(),
        ));
    };
    let devices = state
        .store
        .registry()
        .devices_with_alias(app.id, &alias)
        .await?;
    Ok(Json(AliasDevices {
        alias,
        device_ids: devices.iter().map(ToString::to_string).collect(),
    }))
}

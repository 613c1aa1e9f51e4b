//! Messages: sending (to devices, aliases or an audience), a message's status, its statistics.

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use bytes::Bytes;
use ringpush_protocol::MessageId;
use ringpush_store::{AppRecord, HeldId, HeldStatus, MessageStatus, now_ms};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::stats::{StatsResponse, stats_of};
use crate::ControllerState;
use crate::auth::{Access, Credentials};
use crate::error::ApiError;
use crate::send::{SendContext, Sent};
use crate::target::SendRequest;

/// The longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The answer to a send: `message_ids` (one per device, in order) for devices and aliases;
/// `message_id` and `targeted` for an audience.
#[derive(Debug, Serialize, Deserialize)]
pub struct SendResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_ids: Option<Vec<String>>,
    /// The ids among `message_ids` of messages held in this region because their home
    /// region did not answer; each is handed home and delivered when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targeted: Option<u64>,
}

impl From<Sent> for SendResponse {
    fn from(sent: Sent) -> Self {
        match sent {
            Sent::Unicast { message_ids, held } => Self {
                message_ids: Some(message_ids),
                held: (!held.is_empty()).then_some(held),
                message_id: None,
                targeted: None,
            },
            Sent::Audience {
                message_id,
                targeted,
            } => Self {
                message_ids: None,
                held: None,
                message_id: Some(message_id),
                targeted: Some(targeted),
            },
        }
    }
}

pub(crate) async fn send_messages(
    State(state): State<ControllerState>,
    Path(app_id): Path<String>,
    credentials: Credentials,
    body: Bytes,
) -> Result<Json<SendResponse>, ApiError> {
    let started = Instant::now();
    let app = credentials.app(&state, &app_id, Access::Send).await?;
    let headers = &credentials.headers;
    let send = SendRequest::from_json(&body)?.validate(&state.config)?;
    state.take_send_quota(&app, &send.target)?;
    let idempotency_key = idempotency_key(&state, &app, headers, &body).await?;
    let context = SendContext {
        idempotency_key,
        ..SendContext::default()
    };
    let sent = state.execute_send(&app, send, context).await?;
    metrics::histogram!("ringpush_controller_send_seconds").record(started.elapsed().as_secs_f64());
    Ok(Json(sent.into()))
}

/// Checks and remembers the request's `Idempotency-Key`; answers the key scoped to the app.
pub(crate) async fn idempotency_key(
    state: &ControllerState,
    app: &AppRecord,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN)
        .ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ))
        })?;
    let fingerprint: [u8; 32] = sha2::Sha256::digest(body).into();
    match state
        .store
        .remember_request(app.id, key, fingerprint)
        .await?
    {
        Some(earlier) if earlier != fingerprint => Err(ApiError::IdempotencyKeyReused),
        _ => Ok(Some(format!("{}:{key}", app.id))),
    }
}

/// The answer to `GET /v1/apps/{app_id}/messages/{message_id}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct MessageStatusResponse {
    pub message_id: String,
    /// For a message to one device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The message's seq in its device's inbox, or in its app's timeline.
    pub seq: u64,
    /// For an audience message: its audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    pub status: MessageStatus,
    /// For a message to a device with a platform token: where its platform send stands
    /// (scheduled, sent, skipped or failed, with the service and its reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<ringpush_store::PlatformOutcome>,
}

pub(crate) async fn message_status(
    State(state): State<ControllerState>,
    Path((app_id, message_id)): Path<(String, String)>,
    credentials: Credentials,
) -> Result<Json<MessageStatusResponse>, ApiError> {
    let app = credentials.app(&state, &app_id, Access::Read).await?;
    let unknown = || ApiError::UnknownMessage(message_id.chars().take(80).collect());
    if message_id.starts_with("aud_") {
        let entry = state
            .store
            .timelines()
            .timeline_entry(app.id, &message_id)
            .await?
            .ok_or_else(unknown)?;
        let status = if entry.expires_at_ms <= now_ms() {
            MessageStatus::Expired
        } else {
            MessageStatus::Accepted
        };
        return Ok(Json(MessageStatusResponse {
            message_id,
            device_id: None,
            seq: entry.seq,
            audience: Some(entry.audience),
            status,
            platform: None,
        }));
    }
    if let Ok(held) = message_id.parse::<HeldId>() {
        return held_message_status(&state, &app, held).await.map(Json);
    }
    let id: MessageId = message_id.parse().map_err(|_| unknown())?;
    match state.store.device(id.device).await? {
        Some(device) if device.app == app.id => {}
        _ => return Err(unknown()),
    }
    let status = state
        .store
        .message_status(id, now_ms())
        .await?
        .ok_or_else(unknown)?;
    let platform = state.store.platform().platform_outcome(id).await?;
    Ok(Json(MessageStatusResponse {
        message_id: id.to_string(),
        device_id: Some(id.device.to_string()),
        seq: id.seq,
        audience: None,
        status,
        platform,
    }))
}

/// The status of a message held in some region for its unreachable home.
async fn held_message_status(
    state: &ControllerState,
    app: &AppRecord,
    held: HeldId,
) -> Result<MessageStatusResponse, ApiError> {
    let unknown = || ApiError::UnknownMessage(held.to_string());
    let Some(regional) = &state.regional else {
        return Err(unknown());
    };
    match state.check_devices_belong(app, &[held.device]).await {
        Ok(()) => {}
        Err(ApiError::UnknownDevices(_)) => return Err(unknown()),
        Err(other) => return Err(other),
    }
    let status = match regional.held_status(held).await?.ok_or_else(unknown)? {
        HeldStatus::Held => MessageStatus::Held,
        HeldStatus::HandedHome => MessageStatus::HandedHome,
        HeldStatus::Expired => MessageStatus::Expired,
    };
    Ok(MessageStatusResponse {
        message_id: held.to_string(),
        device_id: Some(held.device.to_string()),
        seq: 0,
        audience: None,
        status,
        platform: None,
    })
}

/// `GET /v1/apps/{app_id}/messages/{message_id}/stats`: an audience message's statistics.
pub(crate) async fn message_stats(
    State(state): State<ControllerState>,
    Path((app_id, message_id)): Path<(String, String)>,
    credentials: Credentials,
) -> Result<Json<StatsResponse>, ApiError> {
    let app = credentials.app(&state, &app_id, Access::Read).await?;
    let entry = state
        .store
        .timelines()
        .timeline_entry(app.id, &message_id)
        .await?;
    let expires_at_ms = entry.map(|e| e.expires_at_ms);
    let record = state.store.stats().read_stats(app.id, &message_id).await?;
    if record.totals.is_empty() && expires_at_ms.is_none() {
        return Err(ApiError::UnknownMessage(
            message_id.chars().take(80).collect(),
        ));
    }
    Ok(Json(stats_of(&message_id, record, expires_at_ms)))
}

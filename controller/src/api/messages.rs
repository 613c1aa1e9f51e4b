//! Messages: sending to devices (write ahead, then live delivery) and reading a status.

use std::collections::HashSet;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use bytes::Bytes;
use ringpush_protocol::device::Push;
use ringpush_protocol::{DeviceId, MessageId};
use ringpush_store::{AppRecord, ContentType, MessageStatus, NewMessage, now_ms};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::parse_json;
use crate::ControllerState;
use crate::auth::{KeyKind, require_app_key};
use crate::delivery::Outgoing;
use crate::error::ApiError;

/// The longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    device_ids: Vec<String>,
    data: Option<serde_json::Value>,
    ttl_seconds: Option<u64>,
}

/// The answer to a send: one message id per device, in request order.
#[derive(Debug, Serialize, Deserialize)]
pub struct SendResponse {
    pub message_ids: Vec<String>,
}

pub(crate) async fn send_messages(
    State(state): State<ControllerState>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SendResponse>, ApiError> {
    let started = Instant::now();
    let app = require_app_key(state.store.as_ref(), &headers, &app_id, KeyKind::Server).await?;
    let request: SendRequest = parse_json(&body)?;
    let limits = &state.config;
    let devices = parse_devices(&request.device_ids, limits.max_devices_per_request)?;
    let (payload, content_type) = encode_data(request.data, limits.max_payload_bytes)?;
    let ttl_seconds = request.ttl_seconds.unwrap_or(limits.default_ttl_seconds);
    if ttl_seconds == 0 || ttl_seconds > limits.max_ttl_seconds {
        return Err(ApiError::InvalidRequest(format!(
            "ttl_seconds must be between 1 and {}",
            limits.max_ttl_seconds
        )));
    }
    check_devices_belong(&state, &app, &devices).await?;
    let idempotency_key = idempotency_key(&state, &app, &headers, &body).await?;

    let created_at_ms = now_ms();
    let expires_at_ms = created_at_ms + (ttl_seconds * 1000) as i64;
    let messages: Vec<NewMessage> = devices
        .iter()
        .enumerate()
        .map(|(index, device)| NewMessage {
            device: *device,
            payload: payload.clone(),
            content_type,
            created_at_ms,
            expires_at_ms,
            // One key per message of the request, so two messages to the same device in one
            // request stay two messages on a retry.
            idempotency_key: idempotency_key.as_ref().map(|key| format!("{key}:{index}")),
        })
        .collect();
    let appended = state.store.append(&messages, limits.inbox).await?;

    let dropped: u64 = appended.iter().map(|a| u64::from(a.dropped)).sum();
    if dropped > 0 {
        metrics::counter!("ringpush_inbox_dropped_total").increment(dropped);
    }
    metrics::counter!("ringpush_controller_messages_accepted_total")
        .increment(appended.iter().filter(|a| !a.duplicate).count() as u64);

    let mut message_ids = Vec::with_capacity(messages.len());
    let mut outgoing = Vec::with_capacity(messages.len());
    for (message, appended) in messages.into_iter().zip(&appended) {
        let id = MessageId {
            device: message.device,
            seq: appended.seq,
        };
        message_ids.push(id.to_string());
        outgoing.push(Outgoing::new(
            message.device,
            Push {
                message_id: id.to_string(),
                seq: appended.seq,
                payload: message.payload,
                content_type: content_type.mime().to_owned(),
                created_at_ms,
                expires_at_ms,
            },
        ));
    }
    tracing::debug!(app_id = %app.id, count = message_ids.len(), "messages accepted");
    state.delivery.send(outgoing).await;
    metrics::histogram!("ringpush_controller_send_seconds").record(started.elapsed().as_secs_f64());
    Ok(Json(SendResponse { message_ids }))
}

fn parse_devices(ids: &[String], max: usize) -> Result<Vec<DeviceId>, ApiError> {
    if ids.is_empty() || ids.len() > max {
        return Err(ApiError::InvalidRequest(format!(
            "device_ids must list 1 to {max} devices, got {}",
            ids.len()
        )));
    }
    ids.iter()
        .map(|id| {
            id.parse()
                .map_err(|error| ApiError::InvalidRequest(format!("device_ids: {error}")))
        })
        .collect()
}

/// A string is sent as text; any other JSON value as compact JSON.
fn encode_data(
    data: Option<serde_json::Value>,
    max_payload_bytes: usize,
) -> Result<(Vec<u8>, ContentType), ApiError> {
    let (payload, content_type) = match data {
        None | Some(serde_json::Value::Null) => {
            return Err(ApiError::InvalidRequest(
                "data is required: a string or any JSON value".into(),
            ));
        }
        Some(serde_json::Value::String(text)) => (text.into_bytes(), ContentType::Text),
        Some(value) => (
            serde_json::to_vec(&value).map_err(|error| ApiError::Internal(error.to_string()))?,
            ContentType::Json,
        ),
    };
    if payload.len() > max_payload_bytes {
        return Err(ApiError::PayloadTooLarge {
            len: payload.len(),
            max: max_payload_bytes,
        });
    }
    Ok((payload, content_type))
}

async fn check_devices_belong(
    state: &ControllerState,
    app: &AppRecord,
    devices: &[DeviceId],
) -> Result<(), ApiError> {
    let unique: Vec<DeviceId> = devices
        .iter()
        .copied()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let records =
        futures_util::future::try_join_all(unique.iter().map(|id| state.store.device(*id))).await?;
    let unknown: Vec<String> = unique
        .iter()
        .zip(records)
        .filter(|(_, record)| record.as_ref().is_none_or(|r| r.app != app.id))
        .map(|(id, _)| id.to_string())
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let mut listed = unknown
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if unknown.len() > 10 {
        listed.push_str(&format!(" and {} more", unknown.len() - 10));
    }
    Err(ApiError::UnknownDevices(listed))
}

/// Checks and remembers the request's `Idempotency-Key`; answers the key scoped to the app.
async fn idempotency_key(
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
    pub device_id: String,
    pub seq: u64,
    pub status: MessageStatus,
}

pub(crate) async fn message_status(
    State(state): State<ControllerState>,
    Path((app_id, message_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<MessageStatusResponse>, ApiError> {
    let app = require_app_key(state.store.as_ref(), &headers, &app_id, KeyKind::Server).await?;
    let unknown = || ApiError::UnknownMessage(message_id.chars().take(80).collect());
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
    Ok(Json(MessageStatusResponse {
        message_id: id.to_string(),
        device_id: id.device.to_string(),
        seq: id.seq,
        status,
    }))
}

//! The platform path's API: an app's gateway settings (admin), a device's platform token
//! (the device itself, or a server key that manages devices), and an app's platform
//! statistics.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use ringpush_gateway::AppGateways;
use ringpush_protocol::DeviceId;
use ringpush_protocol::platform::PlatformToken;
use ringpush_store::{AppRecord, PlatformRegistration, now_ms};
use serde::Serialize;

use super::parse_json;
use crate::ControllerState;
use crate::auth::{Access, Credentials, bearer, load_app};
use crate::error::ApiError;
use crate::platform::PLATFORM_STATS_SUBJECT;

/// `PUT /v1/apps/{app}/gateways`: replaces the app's gateway settings (credentials of each
/// service and the default route). Answers them without their secrets.
pub(crate) async fn put_gateways(
    State(state): State<ControllerState>,
    Path(app_id): Path<String>,
    credentials: Credentials,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    credentials.admin(&state).await?;
    let app = load_app(&state, &app_id).await?;
    let settings: AppGateways = parse_json(&body)?;
    settings
        .validate()
        .map_err(|error| ApiError::InvalidRequest(error.to_string()))?;
    let json = serde_json::to_string(&settings).expect("settings serialize");
    state
        .store
        .platform()
        .set_app_gateways(app.id, &json)
        .await?;
    if let Some(platform) = &state.platform {
        platform.forget_settings(app.id);
    }
    tracing::info!(app_id = %app.id, apns = settings.apns.is_some(), fcm = settings.fcm.is_some(),
        webpush = settings.webpush.is_some(), route = settings.policy.route.as_str(),
        "gateway settings changed");
    Ok(Json(settings.public_view()))
}

/// `GET /v1/apps/{app}/gateways`: the app's gateway settings without their secrets.
pub(crate) async fn get_gateways(
    State(state): State<ControllerState>,
    Path(app_id): Path<String>,
    credentials: Credentials,
) -> Result<Json<serde_json::Value>, ApiError> {
    credentials.admin(&state).await?;
    let app = load_app(&state, &app_id).await?;
    let settings = crate::platform::read_settings(state.store.as_ref(), app.id)
        .await?
        .unwrap_or_default();
    Ok(Json(settings.public_view()))
}

/// A device's platform token as the API answers it (the token itself is not repeated: a Web
/// Push endpoint is a capability).
#[derive(Debug, Serialize)]
pub(crate) struct PlatformTokenState {
    pub(crate) device_id: String,
    pub(crate) service: &'static str,
    pub(crate) registered_at_ms: i64,
}

/// `PUT /v1/apps/{app}/devices/{device}/platform-token`: registers (or replaces, after the
/// platform rotated it) the device's APNs, FCM or Web Push token.
pub(crate) async fn put_platform_token(
    State(state): State<ControllerState>,
    Path((app_id, device_id)): Path<(String, String)>,
    credentials: Credentials,
    body: Bytes,
) -> Result<Json<PlatformTokenState>, ApiError> {
    let (_, device) = device_caller(&state, &credentials, &app_id, &device_id).await?;
    let token: PlatformToken = parse_json(&body)?;
    let allow_http = state
        .platform
        .as_ref()
        .is_some_and(|platform| platform.config.allow_plain_http);
    token
        .validate(allow_http)
        .map_err(|error| ApiError::InvalidRequest(error.to_string()))?;
    let registration = PlatformRegistration {
        token,
        registered_at_ms: now_ms(),
    };
    state
        .store
        .platform()
        .set_platform_token(device, &registration)
        .await?;
    Ok(Json(PlatformTokenState {
        device_id: device.to_string(),
        service: registration.token.service().as_str(),
        registered_at_ms: registration.registered_at_ms,
    }))
}

/// `DELETE /v1/apps/{app}/devices/{device}/platform-token`: the device no longer wants
/// platform notifications (e.g. the user turned them off).
pub(crate) async fn delete_platform_token(
    State(state): State<ControllerState>,
    Path((app_id, device_id)): Path<(String, String)>,
    credentials: Credentials,
) -> Result<StatusCode, ApiError> {
    let (_, device) = device_caller(&state, &credentials, &app_id, &device_id).await?;
    let platform = state.store.platform();
    if let Some(current) = platform.platform_token(device).await? {
        platform
            .retire_platform_token(device, &current.token)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/apps/{app}/platform/stats`: the app's deliveries through each service and its
/// failures, in total and per minute.
pub(crate) async fn platform_stats(
    State(state): State<ControllerState>,
    Path(app_id): Path<String>,
    credentials: Credentials,
) -> Result<Json<serde_json::Value>, ApiError> {
    let app = credentials.app(&state, &app_id, Access::Read).await?;
    let record = state
        .store
        .stats()
        .read_stats(app.id, PLATFORM_STATS_SUBJECT)
        .await?;
    use ringpush_store::Counter;
    let counters = [
        Counter::DeliveredApns,
        Counter::DeliveredFcm,
        Counter::DeliveredWebPush,
        Counter::Failed,
    ];
    let totals: serde_json::Map<String, serde_json::Value> = counters
        .iter()
        .map(|counter| {
            let total = record.totals.get(counter).copied().unwrap_or(0);
            (counter.name().to_owned(), total.into())
        })
        .collect();
    let per_minute: Vec<serde_json::Value> = record
        .per_minute
        .iter()
        .map(|(minute, counts)| {
            let counts: serde_json::Map<String, serde_json::Value> = counts
                .iter()
                .map(|(counter, n)| (counter.name().to_owned(), (*n).into()))
                .collect();
            serde_json::json!({"minute_start_ms": minute * 60_000, "counters": counts})
        })
        .collect();
    Ok(Json(serde_json::json!({
        "app_id": app.id.to_string(),
        "totals": totals,
        "per_minute": per_minute,
    })))
}

/// Checks that the caller may change `device_id`'s platform token: the device itself (its
/// device token, `dt1.…`) or a server key with the `manage_devices` scope. A client key may
/// not: it ships inside every copy of the app.
async fn device_caller(
    state: &ControllerState,
    credentials: &Credentials,
    app_id: &str,
    device_id: &str,
) -> Result<(AppRecord, DeviceId), ApiError> {
    let unknown = || ApiError::UnknownDevice(device_id.chars().take(40).collect());
    let parse_device = || device_id.parse::<DeviceId>().map_err(|_| unknown());
    let presented = bearer(&credentials.headers)?;
    let (app, device) = if presented.starts_with("dt1.") {
        let app = load_app(state, app_id).await?;
        let device = parse_device()?;
        app.check_device_token(device, presented, now_ms())
            .map_err(ApiError::DeviceTokenRefused)?;
        (app, device)
    } else {
        // A server key with manage_devices (or an operator); a client key passes this check
        // too, since it may register devices, and is refused here.
        let app = credentials
            .app(state, app_id, Access::RegisterDevices)
            .await?;
        let key = app.live_key(&ringpush_store::secret_hash(presented));
        if key.is_some_and(|key| key.kind == ringpush_store::KeyKind::Client) {
            return Err(ApiError::WrongKey {
                needed: "device token or a server key",
                given: "client key",
            });
        }
        (app, parse_device()?)
    };
    match state.store.device(device).await? {
        Some(record) if record.app == app.id => Ok((app, device)),
        _ => Err(unknown()),
    }
}

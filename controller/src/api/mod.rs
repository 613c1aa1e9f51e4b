//! The REST API under `/v1`, plus `/openapi.json`, `/healthz`, `/readyz` and `/metrics`.
//! Each handler checks its caller first, through [`crate::auth::Credentials`].

pub mod apps;
pub mod audience;
pub mod campaigns;
pub mod devices;
pub mod keys;
pub mod messages;
pub mod operators;
pub mod platform;
pub mod sessions;
pub mod stats;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use base64::Engine;
use serde::de::DeserializeOwned;

use crate::ControllerState;
use crate::error::ApiError;

/// The largest request body accepted (a send to the most devices with the largest payload
/// fits well within it).
const MAX_BODY_BYTES: usize = 1 << 20;

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

pub(crate) fn routes(state: ControllerState) -> Router {
    Router::new()
        .route("/v1/apps", post(apps::create_app).get(apps::list_apps))
        .route("/v1/apps/{app_id}", get(apps::get_app))
        .route(
            "/v1/apps/{app_id}/keys",
            get(keys::list_keys).post(keys::create_key),
        )
        .route(
            "/v1/apps/{app_id}/keys/{key_id}/revoke",
            post(keys::revoke_key),
        )
        .route(
            "/v1/operators",
            post(operators::create_operator).get(operators::list_operators),
        )
        .route("/v1/operators/{name}", delete(operators::delete_operator))
        .route("/v1/sessions", post(sessions::create_session))
        .route(
            "/v1/sessions/current",
            get(sessions::current_session).delete(sessions::delete_session),
        )
        .route(
            "/v1/apps/{app_id}/devices",
            post(devices::register_device).get(devices::devices_with_alias),
        )
        .route(
            "/v1/apps/{app_id}/devices/{device_id}",
            get(devices::device_state),
        )
        .route(
            "/v1/apps/{app_id}/devices/{device_id}/platform-token",
            put(platform::put_platform_token).delete(platform::delete_platform_token),
        )
        .route(
            "/v1/apps/{app_id}/gateways",
            get(platform::get_gateways).put(platform::put_gateways),
        )
        .route(
            "/v1/apps/{app_id}/platform/stats",
            get(platform::platform_stats),
        )
        .route("/v1/apps/{app_id}/messages", post(messages::send_messages))
        .route(
            "/v1/apps/{app_id}/messages/{message_id}",
            get(messages::message_status),
        )
        .route(
            "/v1/apps/{app_id}/messages/{message_id}/stats",
            get(messages::message_stats),
        )
        .route(
            "/v1/apps/{app_id}/audience/estimate",
            post(audience::estimate),
        )
        .route(
            "/v1/apps/{app_id}/campaigns",
            post(campaigns::create_campaign).get(campaigns::list_campaigns),
        )
        .route(
            "/v1/apps/{app_id}/campaigns/{campaign_id}",
            get(campaigns::get_campaign),
        )
        .route(
            "/v1/apps/{app_id}/campaigns/{campaign_id}/stats",
            get(campaigns::campaign_stats),
        )
        .route(
            "/v1/apps/{app_id}/campaigns/{campaign_id}/{action}",
            post(campaigns::change_campaign),
        )
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

/// Ready when the store answers.
async fn ready(State(state): State<ControllerState>) -> Response {
    match ringpush_store::membership::live_members(state.store.as_ref()).await {
        Ok(members) => format!("ready: {} connectors\n", members.len()).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

async fn metrics_text(State(state): State<ControllerState>) -> Response {
    match &state.metrics {
        Some(render) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            render(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are not enabled in this process\n",
        )
            .into_response(),
    }
}

async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NoSuchEndpoint(format!("{method} {}", uri.path()))
}

/// Parses a JSON body with a message that names what is wrong.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::InvalidRequest(format!("request body: {error}")))
}

/// A new secret: `prefix` and 32 random bytes in URL-safe base64.
pub(crate) fn random_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

//! Every error the REST API answers, mapped to its HTTP status and JSON body in one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ringpush_store::StoreError;

/// An error answered to a REST caller as `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing credentials: send `Authorization: Bearer <key>`, or log in to the portal")]
    MissingCredentials,
    #[error("wrong operator name or password")]
    InvalidLogin,
    #[error("{0}")]
    Forbidden(String),
    #[error("this key lacks the {0} scope; an admin can create a key with it")]
    MissingScope(&'static str),
    #[error(
        "a change made with a portal session needs the session's CSRF token in X-CSRF-Token (reload the page)"
    )]
    CsrfFailed,
    #[error("too many failed logins; try again in {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    #[error(
        "this app is over its send quota of {per_second} messages a second ({burst} at once) \
         on this controller; nothing of this request was accepted: retry in \
         {retry_after_seconds} s"
    )]
    QuotaExceeded {
        per_second: f64,
        burst: f64,
        retry_after_seconds: u64,
    },
    #[error("no key with id {0} in this app")]
    UnknownKey(String),
    #[error("no operator named {0}")]
    UnknownOperator(String),
    #[error("the key is not valid for this {0}")]
    InvalidCredentials(&'static str),
    #[error("the device token was refused: {0}")]
    DeviceTokenRefused(ringpush_store::TokenRejection),
    #[error("this endpoint needs the {needed}; the {given} cannot call it")]
    WrongKey {
        needed: &'static str,
        given: &'static str,
    },
    #[error("no app with id {0}")]
    UnknownApp(String),
    #[error("no device with id {0} in this app")]
    UnknownDevice(String),
    #[error("unknown devices in this app: {0}")]
    UnknownDevices(String),
    #[error("no message with id {0} in this app")]
    UnknownMessage(String),
    #[error("no campaign with id {0} in this app")]
    UnknownCampaign(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("no such endpoint: {0} (see /openapi.json)")]
    NoSuchEndpoint(String),
    #[error("payload of {len} bytes is over the limit of {max} bytes")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("the Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("the store is unavailable, nothing was accepted; retry with backoff ({0})")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::MissingCredentials => (StatusCode::UNAUTHORIZED, "missing_credentials"),
            Self::InvalidCredentials(_) | Self::DeviceTokenRefused(_) => {
                (StatusCode::UNAUTHORIZED, "invalid_credentials")
            }
            Self::WrongKey { .. } => (StatusCode::FORBIDDEN, "wrong_key"),
            Self::InvalidLogin => (StatusCode::UNAUTHORIZED, "invalid_login"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::MissingScope(_) => (StatusCode::FORBIDDEN, "missing_scope"),
            Self::CsrfFailed => (StatusCode::FORBIDDEN, "csrf_failed"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::QuotaExceeded { .. } => (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
            Self::UnknownKey(_) => (StatusCode::NOT_FOUND, "unknown_key"),
            Self::UnknownOperator(_) => (StatusCode::NOT_FOUND, "unknown_operator"),
            Self::UnknownApp(_) => (StatusCode::NOT_FOUND, "unknown_app"),
            Self::UnknownDevice(_) | Self::UnknownDevices(_) => {
                (StatusCode::NOT_FOUND, "unknown_device")
            }
            Self::UnknownMessage(_) => (StatusCode::NOT_FOUND, "unknown_message"),
            Self::UnknownCampaign(_) => (StatusCode::NOT_FOUND, "unknown_campaign"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::NoSuchEndpoint(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::IdempotencyKeyReused => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
            }
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(detail) => Self::Unavailable(detail),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(code, error = %self, "request failed");
        }
        let body = serde_json::json!({ "error": { "code": code, "message": self.to_string() } });
        let mut response = (status, Json(body)).into_response();
        if let Self::RateLimited {
            retry_after_seconds,
        }
        | Self::QuotaExceeded {
            retry_after_seconds,
            ..
        } = self
        {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_seconds),
            );
        }
        response
    }
}

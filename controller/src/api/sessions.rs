//! `/v1/sessions`: operators log in (name and password; answers a session cookie and the
//! CSRF token that changes made with it must carry), read their session, and log out.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ringpush_store::{SessionRecord, now_ms, secret_hash};
use serde::{Deserialize, Serialize};

use super::{parse_json, random_secret};
use crate::ControllerState;
use crate::auth::{Credentials, SESSION_COOKIE, cookie};
use crate::error::ApiError;

/// How long a session lasts.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    name: String,
    password: String,
}

/// A session as the API shows it to its operator.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionView {
    pub operator: String,
    pub role: String,
    /// Send it as `X-CSRF-Token` with every change made with the session cookie.
    pub csrf_token: String,
    pub expires_at_ms: i64,
}

/// The client's address, when the server was started with connection info.
pub(crate) struct PeerAddress(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(Self(peer.map(|ConnectInfo(address)| address.ip())))
    }
}

/// `Secure` when the deployment says it is served over TLS, or a TLS proxy says so.
fn secure(state: &ControllerState, headers: &HeaderMap) -> &'static str {
    let proxied_tls = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    if state.config.secure_cookies || proxied_tls {
        "; Secure"
    } else {
        ""
    }
}

fn session_cookie(
    value: &str,
    max_age_seconds: i64,
    secure: &str,
) -> Result<HeaderValue, ApiError> {
    format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}{secure}")
        .parse()
        .map_err(|_| ApiError::Internal("session cookie is not a header value".into()))
}

/// `POST /v1/sessions`: log in.
pub(crate) async fn create_session(
    State(state): State<ControllerState>,
    PeerAddress(address): PeerAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // A JSON body only: a cross-site form cannot send one without the browser asking first.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !json {
        return Err(ApiError::InvalidRequest(
            "send the login as JSON (Content-Type: application/json)".into(),
        ));
    }
    let login: Login = parse_json(&body)?;
    let now = now_ms();
    if let Err(retry_after_seconds) = state.login_limiter.check(&login.name, address, now) {
        tracing::warn!(operator = %login.name, ?address, "login refused: too many failures");
        return Err(ApiError::RateLimited {
            retry_after_seconds,
        });
    }
    let operator = state.store.operators().operator(&login.name).await?;
    let phc = operator
        .as_ref()
        .map(|operator| operator.password_hash.clone());
    let matches = crate::password::verify(login.password, phc).await;
    let Some(operator) = operator.filter(|_| matches) else {
        state.login_limiter.failed(&login.name, address, now);
        tracing::info!(operator = %login.name, ?address, "login failed");
        return Err(ApiError::InvalidLogin);
    };
    state.login_limiter.succeeded(&operator.name);
    let secret = random_secret("rs_");
    let session = SessionRecord {
        id_hash: secret_hash(&secret),
        operator: operator.name.clone(),
        csrf_token: random_secret("csrf_"),
        created_at_ms: now,
        expires_at_ms: now + SESSION_TTL_MS,
    };
    state.store.operators().create_session(&session).await?;
    tracing::info!(operator = %operator.name, role = operator.role.as_str(), "operator logged in");
    let view = SessionView {
        operator: operator.name,
        role: operator.role.as_str().to_owned(),
        csrf_token: session.csrf_token,
        expires_at_ms: session.expires_at_ms,
    };
    let cookie = session_cookie(&secret, SESSION_TTL_MS / 1000, secure(&state, &headers))?;
    Ok((
        StatusCode::CREATED,
        [
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Json(view),
    )
        .into_response())
}

/// `GET /v1/sessions/current`: who is logged in, and the CSRF token.
pub(crate) async fn current_session(
    State(state): State<ControllerState>,
    credentials: Credentials,
) -> Result<Response, ApiError> {
    let session = credentials
        .operator(&state)
        .await?
        .ok_or(ApiError::MissingCredentials)?;
    let view = SessionView {
        operator: session.operator.name,
        role: session.operator.role.as_str().to_owned(),
        csrf_token: session.session.csrf_token,
        expires_at_ms: session.session.expires_at_ms,
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(view)).into_response())
}

/// `DELETE /v1/sessions/current`: log out (the session ends on every controller).
pub(crate) async fn delete_session(
    State(state): State<ControllerState>,
    credentials: Credentials,
) -> Result<Response, ApiError> {
    credentials
        .operator(&state)
        .await?
        .ok_or(ApiError::MissingCredentials)?;
    if let Some(secret) = cookie(&credentials.headers, SESSION_COOKIE) {
        state
            .store
            .operators()
            .delete_session(&secret_hash(secret))
            .await?;
    }
    let cookie = session_cookie("", 0, secure(&state, &credentials.headers))?;
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(serde_json::json!({ "logged_out": true })),
    )
        .into_response())
}

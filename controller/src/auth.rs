//! Who is calling: the admin token, an app's server key or its client key.
//!
//! Keys travel as `Authorization: Bearer <key>` and are compared by their SHA-256, which is
//! all the store keeps.

use axum::http::HeaderMap;
use ringpush_protocol::AppId;
use ringpush_store::{AppRecord, Store, secret_hash};

use crate::error::ApiError;

/// Which key an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Sends messages and reads statuses: for the app's backend only.
    Server,
    /// Registers devices: shipped inside the app. The server key may do this too.
    Client,
}

impl KeyKind {
    fn name(self) -> &'static str {
        match self {
            Self::Server => "server key",
            Self::Client => "client key",
        }
    }
}

/// The bearer token of a request.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(ApiError::MissingCredentials)?;
    let value = value.to_str().map_err(|_| ApiError::MissingCredentials)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or(ApiError::MissingCredentials)?;
    Ok(token)
}

/// Checks the admin token (compared by hash, so the comparison time does not reveal it).
pub fn require_admin(headers: &HeaderMap, admin_token_hash: &[u8; 32]) -> Result<(), ApiError> {
    if secret_hash(bearer(headers)?) == *admin_token_hash {
        Ok(())
    } else {
        Err(ApiError::InvalidCredentials(
            "deployment: the admin token is needed",
        ))
    }
}

/// Loads the app named in the path and checks that the caller holds its key of `kind`.
pub async fn require_app_key(
    store: &dyn Store,
    headers: &HeaderMap,
    app_id: &str,
    kind: KeyKind,
) -> Result<AppRecord, ApiError> {
    let token = bearer(headers)?;
    let id: AppId = app_id
        .parse()
        .map_err(|_| ApiError::UnknownApp(app_id.chars().take(40).collect()))?;
    let app = store
        .app(id)
        .await?
        .ok_or_else(|| ApiError::UnknownApp(id.to_string()))?;
    let presented = secret_hash(token);
    let (wanted, other) = match kind {
        KeyKind::Server => (app.server_key_hash, app.client_key_hash),
        KeyKind::Client => (app.client_key_hash, app.server_key_hash),
    };
    if presented == wanted || (kind == KeyKind::Client && presented == app.server_key_hash) {
        return Ok(app);
    }
    if presented == other {
        let given = match kind {
            KeyKind::Server => KeyKind::Client,
            KeyKind::Client => KeyKind::Server,
        };
        return Err(ApiError::WrongKey {
            needed: kind.name(),
            given: given.name(),
        });
    }
    Err(ApiError::InvalidCredentials("app"))
}

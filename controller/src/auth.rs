//! Who is calling and what they may do: the admin token, an app's server and client keys,
//! and portal operators' sessions.
//!
//! Keys travel as `Authorization: Bearer <key>` and are compared by their SHA-256, which is
//! all the store keeps. An operator's session travels as the `ringpush_session` cookie; a
//! change made with it (any method but GET and HEAD) must also carry the session's CSRF token
//! in `X-CSRF-Token`, so another site cannot make the browser act.
//!
//! | caller | may |
//! |---|---|
//! | admin token | create and list apps, manage keys and operators |
//! | server key | on its own app, what its scopes allow: `send`, `read_stats` (statuses, statistics, campaigns, devices, estimates), `manage_devices` (register devices); all three unless created with fewer |
//! | client key | register devices of its app |
//! | operator, admin | what the admin token may, and send and read on every app |
//! | operator, marketer | send (messages, campaigns, pause/resume/cancel) and read on every app |
//! | operator, viewer | read on every app |

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use ringpush_protocol::AppId;
use ringpush_store::{
    AppRecord, KeyKind, KeyScope, OperatorRecord, Role, SessionRecord, now_ms, secret_hash,
};

use crate::ControllerState;
use crate::error::ApiError;

/// The cookie that holds an operator's session secret.
pub const SESSION_COOKIE: &str = "ringpush_session";
/// The header that carries the session's CSRF token on changes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What a call does with an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Register devices: client keys (shipped inside apps) may do this, and server keys.
    RegisterDevices,
    /// Send messages and create or change campaigns.
    Send,
    /// Read statuses, statistics, campaigns, devices, estimates.
    Read,
}

impl Access {
    /// The scope a server key needs for this.
    fn scope(self) -> KeyScope {
        match self {
            Self::RegisterDevices => KeyScope::ManageDevices,
            Self::Send => KeyScope::Send,
            Self::Read => KeyScope::ReadStats,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Self::RegisterDevices => "register devices",
            Self::Send => "send or change campaigns",
            Self::Read => "read this app",
        }
    }
}

/// An operator's live session.
#[derive(Debug, Clone)]
pub struct OperatorSession {
    pub session: SessionRecord,
    pub operator: OperatorRecord,
}

impl OperatorSession {
    fn may(&self, access: Access) -> Result<(), ApiError> {
        let allowed = match self.operator.role {
            Role::Admin | Role::Marketer => access != Access::RegisterDevices,
            Role::Viewer => access == Access::Read,
        };
        if allowed {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role cannot {}",
                self.operator.role.as_str(),
                access.verb()
            )))
        }
    }
}

/// The credentials of a request: its headers and whether it changes anything. An extractor,
/// so that every handler checks them the same way.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub headers: HeaderMap,
    /// GET and HEAD change nothing and need no CSRF token.
    safe_method: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Credentials {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            headers: parts.headers.clone(),
            safe_method: matches!(parts.method, Method::GET | Method::HEAD),
        })
    }
}

impl Credentials {
    /// Whether the request carries `Authorization` (a key or the admin token).
    fn has_authorization(&self) -> bool {
        self.headers.contains_key(axum::http::header::AUTHORIZATION)
    }

    /// The operator's session, if the request carries a session cookie; an unknown or
    /// expired session, a removed operator or a missing CSRF token on a change is an error.
    pub async fn operator(
        &self,
        state: &ControllerState,
    ) -> Result<Option<OperatorSession>, ApiError> {
        let Some(secret) = cookie(&self.headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let operators = state.store.operators();
        let session = operators
            .session(&secret_hash(secret), now_ms())
            .await?
            .ok_or(ApiError::InvalidCredentials(
                "portal session (log in again)",
            ))?;
        let operator =
            operators
                .operator(&session.operator)
                .await?
                .ok_or(ApiError::InvalidCredentials(
                    "portal session (log in again)",
                ))?;
        if !self.safe_method {
            let presented = self
                .headers
                .get(CSRF_HEADER)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            if !same_secret(presented, &session.csrf_token) {
                return Err(ApiError::CsrfFailed);
            }
        }
        Ok(Some(OperatorSession { session, operator }))
    }

    /// The admin token, or an admin operator.
    pub async fn admin(&self, state: &ControllerState) -> Result<(), ApiError> {
        if self.has_authorization() {
            return require_admin_token(&self.headers, &state.admin_token_hash);
        }
        match self.operator(state).await? {
            Some(operator) if operator.operator.role == Role::Admin => Ok(()),
            Some(operator) => Err(ApiError::Forbidden(format!(
                "this needs the admin role; {} is a {}",
                operator.operator.name,
                operator.operator.role.as_str()
            ))),
            None => Err(ApiError::MissingCredentials),
        }
    }

    /// The admin token, or any operator: for what every operator may see (the app list).
    pub async fn admin_or_operator(&self, state: &ControllerState) -> Result<(), ApiError> {
        if self.has_authorization() {
            return require_admin_token(&self.headers, &state.admin_token_hash);
        }
        match self.operator(state).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::MissingCredentials),
        }
    }

    /// Loads the app named in the path and checks that the caller may do `access` on it.
    pub async fn app(
        &self,
        state: &ControllerState,
        app_id: &str,
        access: Access,
    ) -> Result<AppRecord, ApiError> {
        // Credentials first: an anonymous caller learns nothing about which apps exist.
        let operator = if self.has_authorization() {
            None
        } else {
            let operator = self
                .operator(state)
                .await?
                .ok_or(ApiError::MissingCredentials)?;
            operator.may(access)?;
            Some(operator)
        };
        let app = load_app(state, app_id).await?;
        if operator.is_some() {
            return Ok(app);
        }
        let presented = secret_hash(bearer(&self.headers)?);
        let Some(key) = app.live_key(&presented) else {
            return Err(ApiError::InvalidCredentials("app"));
        };
        match (key.kind, access) {
            (KeyKind::Server, _) if key.scopes.contains(&access.scope()) => Ok(app),
            (KeyKind::Server, _) => Err(ApiError::MissingScope(access.scope().as_str())),
            (KeyKind::Client, Access::RegisterDevices) => Ok(app),
            (KeyKind::Client, _) => Err(ApiError::WrongKey {
                needed: "server key",
                given: "client key",
            }),
            // `live_key` never answers one: nothing presents a token-signing key.
            (KeyKind::TokenSigning, _) => Err(ApiError::InvalidCredentials("app")),
        }
    }
}

/// The app with this id, or `UnknownApp`.
pub async fn load_app(state: &ControllerState, app_id: &str) -> Result<AppRecord, ApiError> {
    let id: AppId = app_id
        .parse()
        .map_err(|_| ApiError::UnknownApp(app_id.chars().take(40).collect()))?;
    state
        .store
        .app(id)
        .await?
        .ok_or_else(|| ApiError::UnknownApp(id.to_string()))
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
pub fn require_admin_token(
    headers: &HeaderMap,
    admin_token_hash: &[u8; 32],
) -> Result<(), ApiError> {
    if secret_hash(bearer(headers)?) == *admin_token_hash {
        Ok(())
    } else {
        Err(ApiError::InvalidCredentials(
            "deployment: the admin token is needed",
        ))
    }
}

/// The value of cookie `name`, if the request has it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// Compares two secrets by their hashes, so the time taken does not reveal a common prefix.
pub fn same_secret(presented: &str, expected: &str) -> bool {
    !expected.is_empty() && secret_hash(presented) == secret_hash(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            "cookie",
            "a=1; ringpush_session=s3cret".parse().expect("header"),
        );
        headers.append("cookie", "b=2".parse().expect("header"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("s3cret"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "ringpush"), None);
    }

    #[test]
    fn secrets_compare_equal_only_when_equal_and_set() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("", ""));
    }
}

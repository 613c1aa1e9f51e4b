//! The portal's calls to the REST API: in-process, through the very router that serves
//! `/v1`, carrying the browser's session cookie (and, for changes, the session's CSRF token),
//! so that every page meets the same authentication, roles and validation as any caller.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use super::view::PortalError;
use crate::auth::CSRF_HEADER;

/// Largest API answer the portal reads (a campaign list or a device's inbox page).
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// The REST API, as the portal calls it.
#[derive(Clone)]
pub(crate) struct Api {
    router: Router,
}

/// What the browser presented, handed on to each API call: the session cookie, the peer
/// address (the API rate-limits logins by it) and the forwarded scheme (for `Secure`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    cookie: Option<HeaderValue>,
    forwarded_proto: Option<HeaderValue>,
    peer: Option<ConnectInfo<SocketAddr>>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            cookie: parts.headers.get(header::COOKIE).cloned(),
            forwarded_proto: parts.headers.get("x-forwarded-proto").cloned(),
            peer: parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned(),
        })
    }
}

/// An API answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

impl Answer {
    /// The body as `T` when the status is a success, else the API's error.
    pub(crate) fn into_result<T: DeserializeOwned>(self) -> Result<T, PortalError> {
        if !self.status.is_success() {
            return Err(PortalError::from_api(self.status, &self.body));
        }
        serde_json::from_value(self.body)
            .map_err(|error| PortalError::internal(format!("unexpected API answer: {error}")))
    }
}

impl Api {
    pub(crate) fn new(router: Router) -> Self {
        Self { router }
    }

    /// Calls `method path` with an optional JSON body; `csrf` is the session's token, needed
    /// by every change made with a session cookie.
    pub(crate) async fn call(
        &self,
        caller: &Caller,
        csrf: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, PortalError> {
        self.send(caller, csrf, method, path, body, None).await
    }

    /// `POST path` under an `Idempotency-Key`, as its answer.
    pub(crate) async fn call_idempotent(
        &self,
        caller: &Caller,
        csrf: &str,
        path: &str,
        body: &serde_json::Value,
        idempotency_key: &str,
    ) -> Result<Answer, PortalError> {
        let key = Some(idempotency_key);
        self.send(caller, Some(csrf), Method::POST, path, Some(body), key)
            .await
    }

    async fn send(
        &self,
        caller: &Caller,
        csrf: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, PortalError> {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        if let Some(cookie) = &caller.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        if let Some(proto) = &caller.forwarded_proto {
            request = request.header("x-forwarded-proto", proto);
        }
        if let Some(csrf) = csrf {
            request = request.header(CSRF_HEADER, csrf);
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let mut request = request
            .body(body)
            .map_err(|error| PortalError::internal(format!("building an API request: {error}")))?;
        if let Some(peer) = caller.peer {
            request.extensions_mut().insert(peer);
        }
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|never| match never {})?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|error| PortalError::internal(format!("reading an API answer: {error}")))?;
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::json!({ "error": { "code": "internal",
                    "message": String::from_utf8_lossy(&bytes).trim().to_owned() } })
            })
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// `GET path` as `T`.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        path: &str,
    ) -> Result<T, PortalError> {
        self.call(caller, None, Method::GET, path, None)
            .await?
            .into_result()
    }

    /// `POST path` with a JSON body, as `T`.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        csrf: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, PortalError> {
        self.call(caller, Some(csrf), Method::POST, path, Some(body))
            .await?
            .into_result()
    }
}

//! FCM's HTTP v1 `projects.messages.send` endpoint: authentication, the message's shape and
//! size, and the errors of Google's `ErrorCode` reference.
//!
//! Checks in the order Google answers them: the bearer token (401 `UNAUTHENTICATED`), the
//! project (403 `PERMISSION_DENIED`), the message (400 `INVALID_ARGUMENT`: unknown fields,
//! non-string data values, reserved data keys, data over 4096 bytes, bad `ttl`, `priority`
//! or platform headers), then what the test arranged (an injected error, an unregistered
//! token: 404 `UNREGISTERED`). An accepted message answers `{"name": "projects/<p>/messages/<id>"}`.
//!
//! Does not own: the message's shape rules ([`super::message_shape`]), `validate_only`
//! semantics beyond answering without counting.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::message_shape::{FieldViolation, Rejection, check_request};
use super::{FcmRequest, InjectedFailure, Records, Shared, status_name};

const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";

/// The values of FCM's `ErrorCode` enum.
pub const FCM_ERROR_CODES: &[&str] = &[
    "UNSPECIFIED_ERROR",
    "INVALID_ARGUMENT",
    "UNREGISTERED",
    "SENDER_ID_MISMATCH",
    "QUOTA_EXCEEDED",
    "UNAVAILABLE",
    "INTERNAL",
    "THIRD_PARTY_AUTH_ERROR",
];

/// What the double answers one send.
struct SendAnswer {
    status: u16,
    body: Value,
    retry_after: Option<u64>,
    www_authenticate: bool,
}

impl SendAnswer {
    fn accepted(name: String) -> Self {
        Self {
            status: 200,
            body: serde_json::json!({ "name": name }),
            retry_after: None,
            www_authenticate: false,
        }
    }

    /// FCM's error shape; `error_code` fills the `FcmError` detail.
    fn fcm_error(status: u16, error_code: Option<&str>, message: &str) -> Self {
        let details: Vec<Value> = error_code
            .map(|code| serde_json::json!({ "@type": FCM_ERROR_TYPE, "errorCode": code }))
            .into_iter()
            .collect();
        Self::error(status, message, details)
    }

    fn error(status: u16, message: &str, details: Vec<Value>) -> Self {
        let mut error = serde_json::json!({
            "code": status,
            "message": message,
            "status": status_name(status),
        });
        if !details.is_empty() {
            error["details"] = Value::Array(details);
        }
        Self {
            status,
            body: serde_json::json!({ "error": error }),
            retry_after: None,
            www_authenticate: false,
        }
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.www_authenticate {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
            );
        }
        response
    }
}

/// A `google.rpc.BadRequest` answer naming the field at fault.
fn violation_answer(violation: &FieldViolation) -> SendAnswer {
    let detail = serde_json::json!({
        "@type": BAD_REQUEST_TYPE,
        "fieldViolations": [{ "field": violation.field, "description": violation.description }],
    });
    SendAnswer::error(400, &violation.description, vec![detail])
}

/// `POST /v1/projects/{project_id}/messages:send`.
pub(super) async fn send_endpoint(
    State(shared): State<Arc<Shared>>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    let message = request
        .as_ref()
        .and_then(|request| request.get("message"))
        .cloned()
        .unwrap_or(Value::Null);
    let token = message["token"].as_str().unwrap_or("").to_owned();
    let mut records = shared.records();
    let answer = answer_send(
        &shared,
        &mut records,
        &project_id,
        &headers,
        request.as_ref(),
    );
    records.received.push(FcmRequest {
        token,
        message,
        status: answer.status,
    });
    drop(records);
    answer.into_response()
}

fn answer_send(
    shared: &Shared,
    records: &mut Records,
    project_id: &str,
    headers: &HeaderMap,
    request: Option<&Value>,
) -> SendAnswer {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let now = Instant::now();
    let authenticated = bearer
        .and_then(|token| records.access_tokens.get(token))
        .is_some_and(|expires_at| *expires_at > now);
    if !authenticated {
        let mut answer = SendAnswer::fcm_error(
            401,
            None,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential. See \
             https://developers.google.com/identity/sign-in/web/devconsole-project.",
        );
        answer.www_authenticate = true;
        return answer;
    }
    if project_id != shared.project_id {
        return SendAnswer::fcm_error(
            403,
            None,
            &format!(
                "Permission 'cloudmessaging.messages.create' denied on resource \
                 '//cloudresourcemanager.googleapis.com/projects/{project_id}' (or it may not exist)."
            ),
        );
    }
    let Some(request) = request else {
        return violation_answer(&FieldViolation {
            field: String::new(),
            description: "Invalid JSON payload received.".into(),
        });
    };
    let token = match check_request(request) {
        Ok(token) => token,
        Err(Rejection::Field(violation)) => return violation_answer(&violation),
        Err(Rejection::Fcm(message)) => {
            return SendAnswer::fcm_error(400, Some("INVALID_ARGUMENT"), &message);
        }
    };
    if let Some(failure) = take_injected_failure(records, &token) {
        // FCM adds an `FcmError` detail only for its own error codes; others (e.g.
        // UNAUTHENTICATED, PERMISSION_DENIED) come as the status alone.
        let error_code =
            Some(failure.error_code.as_str()).filter(|code| FCM_ERROR_CODES.contains(code));
        let mut answer = SendAnswer::fcm_error(
            failure.status,
            error_code,
            &format!("{} (injected by the test)", failure.error_code),
        );
        answer.retry_after = failure.retry_after;
        return answer;
    }
    if records.unregistered.contains(&token) {
        return SendAnswer::fcm_error(404, Some("UNREGISTERED"), "Requested entity was not found.");
    }
    let validate_only = request["validate_only"].as_bool().unwrap_or(false)
        || request["validateOnly"].as_bool().unwrap_or(false);
    if validate_only {
        return SendAnswer::accepted(format!("projects/{project_id}/messages/fake_message_id"));
    }
    records.messages_accepted += 1;
    SendAnswer::accepted(format!(
        "projects/{project_id}/messages/0:{}%double",
        records.messages_accepted
    ))
}

fn take_injected_failure(records: &mut Records, token: &str) -> Option<InjectedFailure> {
    let queue = records.failures.get_mut(token)?;
    while let Some(front) = queue.front_mut() {
        if front.remaining == 0 {
            queue.pop_front();
            continue;
        }
        front.remaining -= 1;
        return Some(front.clone());
    }
    None
}

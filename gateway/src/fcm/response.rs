//! What FCM's answer to `messages:send` means for ringpush, after Google's `ErrorCode`
//! reference.
//!
//! An error answer is `{"error": {"code", "message", "status", "details": [{"@type":
//! "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": ...}]}}`. The
//! `errorCode` decides when there is one (`THIRD_PARTY_AUTH_ERROR` comes with status
//! `UNAUTHENTICATED` yet is not about ringpush's access token); otherwise the status, and
//! failing that the HTTP status:
//!
//! | errorCode / status                          | outcome                               |
//! |---------------------------------------------|---------------------------------------|
//! | `UNREGISTERED`, `SENDER_ID_MISMATCH`        | retire the token                      |
//! | `QUOTA_EXCEEDED`, `UNAVAILABLE`, `INTERNAL` | retry (after Retry-After when given)  |
//! | `INVALID_ARGUMENT`, `THIRD_PARTY_AUTH_ERROR`| rejected                              |
//! | status `UNAUTHENTICATED` (401)              | new access token, send once more      |
//! | 429 / 5xx otherwise                         | retry                                 |
//! | anything else                               | rejected                              |
//!
//! Does not own: the request, the access tokens, logging.

use std::time::Duration;

use serde::Deserialize;

use crate::Outcome;

const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";

/// Google's messages can be long; a reason carries at most this many bytes of one.
const MAX_MESSAGE_BYTES: usize = 300;

/// What a send's answer calls for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SendVerdict {
    /// Tell the caller this.
    Done(Outcome),
    /// FCM refused the access token: fetch a new one and send again.
    AccessTokenRefused,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorBody,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

impl ErrorBody {
    fn error_code(&self) -> Option<&str> {
        self.details
            .iter()
            .find(|detail| detail["@type"] == FCM_ERROR_TYPE)
            .and_then(|detail| detail["errorCode"].as_str())
            .filter(|code| !code.is_empty() && *code != "UNSPECIFIED_ERROR")
    }
}

/// The verdict on a non-success answer: HTTP `status`, its `Retry-After` and body.
pub(super) fn error_verdict(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> SendVerdict {
    let error = serde_json::from_slice::<ErrorAnswer>(body)
        .map(|answer| answer.error)
        .unwrap_or_default();
    let error_code = error.error_code();
    let status_name = Some(error.status.as_str()).filter(|name| !name.is_empty());
    let reason = error_code
        .or(status_name)
        .map_or_else(|| format!("http {status}"), str::to_owned);
    let retire = || Outcome::TokenRetired {
        reason: reason.clone(),
    };
    let retry = || Outcome::Retry {
        reason: reason.clone(),
        after: retry_after,
    };
    let reject = || Outcome::Rejected {
        reason: with_message(&reason, &error.message),
    };
    let outcome = match error_code {
        Some("UNREGISTERED" | "SENDER_ID_MISMATCH") => retire(),
        Some("QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL") => retry(),
        Some("INVALID_ARGUMENT" | "THIRD_PARTY_AUTH_ERROR") => reject(),
        _ => match (status_name, status) {
            (Some("UNAUTHENTICATED"), _) | (None, 401) => return SendVerdict::AccessTokenRefused,
            (Some("RESOURCE_EXHAUSTED" | "UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED"), _) => {
                retry()
            }
            (_, 429 | 500..=599) => retry(),
            _ => reject(),
        },
    };
    SendVerdict::Done(outcome)
}

/// `reason: message`, the message cut to a bounded length on a character boundary.
fn with_message(reason: &str, message: &str) -> String {
    if message.is_empty() {
        return reason.to_owned();
    }
    let mut end = message.len().min(MAX_MESSAGE_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{reason}: {}", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, status_name: &str, error_code: Option<&str>) -> Vec<u8> {
        let details: Vec<serde_json::Value> = error_code
            .map(|code| serde_json::json!({"@type": FCM_ERROR_TYPE, "errorCode": code}))
            .into_iter()
            .collect();
        serde_json::json!({"error": {
            "code": status, "message": "what went wrong", "status": status_name, "details": details,
        }})
        .to_string()
        .into_bytes()
    }

    fn retired(reason: &str) -> SendVerdict {
        SendVerdict::Done(Outcome::TokenRetired {
            reason: reason.into(),
        })
    }

    fn retry(reason: &str, after: Option<Duration>) -> SendVerdict {
        SendVerdict::Done(Outcome::Retry {
            reason: reason.into(),
            after,
        })
    }

    fn rejected(reason: &str) -> SendVerdict {
        SendVerdict::Done(Outcome::Rejected {
            reason: reason.into(),
        })
    }

    #[test]
    fn googles_error_codes_map_as_documented() {
        let verdict =
            |status, name, code, after| error_verdict(status, after, &answer(status, name, code));
        let seven = Some(Duration::from_secs(7));
        let unregistered = verdict(404, "NOT_FOUND", Some("UNREGISTERED"), None);
        assert_eq!(unregistered, retired("UNREGISTERED"));
        let mismatch = verdict(403, "PERMISSION_DENIED", Some("SENDER_ID_MISMATCH"), None);
        assert_eq!(mismatch, retired("SENDER_ID_MISMATCH"));
        let quota = verdict(429, "RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED"), seven);
        assert_eq!(quota, retry("QUOTA_EXCEEDED", seven));
        let internal = verdict(500, "INTERNAL", Some("INTERNAL"), None);
        assert_eq!(internal, retry("INTERNAL", None));
        let invalid = verdict(400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT"), None);
        assert_eq!(invalid, rejected("INVALID_ARGUMENT: what went wrong"));
        let third_party = verdict(401, "UNAUTHENTICATED", Some("THIRD_PARTY_AUTH_ERROR"), None);
        assert_eq!(
            third_party,
            rejected("THIRD_PARTY_AUTH_ERROR: what went wrong")
        );
        let refused = verdict(401, "UNAUTHENTICATED", None, None);
        assert_eq!(refused, SendVerdict::AccessTokenRefused);
    }

    #[test]
    fn without_an_error_code_the_status_then_the_http_status_decide() {
        assert_eq!(
            error_verdict(400, None, &answer(400, "INVALID_ARGUMENT", None)),
            rejected("INVALID_ARGUMENT: what went wrong")
        );
        assert_eq!(
            error_verdict(503, None, b"<html>bad gateway</html>"),
            retry("http 503", None)
        );
        assert_eq!(
            error_verdict(401, None, b""),
            SendVerdict::AccessTokenRefused
        );
        assert_eq!(error_verdict(404, None, b""), rejected("http 404"));
    }

    #[test]
    fn a_long_message_is_cut_on_a_character_boundary() {
        let message = "é".repeat(400);
        let reason = with_message("INVALID_ARGUMENT", &message);
        assert!(reason.len() <= "INVALID_ARGUMENT: ".len() + MAX_MESSAGE_BYTES);
        assert!(reason.ends_with('é'));
    }
}

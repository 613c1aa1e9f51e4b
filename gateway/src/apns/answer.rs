//! What APNs answers to one request, and what that means for the caller: the exchange on an
//! HTTP/2 stream (request head and body out, status, headers and JSON reason in) and the
//! mapping of Apple's statuses and reasons to an [`Outcome`].
//!
//! Does not own the connection the stream runs on (`connection`) nor the decision to re-sign
//! and retry after `ExpiredProviderToken` (the parent module).

use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;

use crate::{ApnsCredentials, Outcome};

/// The most of an answer's body that is read (APNs's error bodies are a few dozen bytes).
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// What APNs answered to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// Apple's JSON `reason`, when the answer has one.
    pub(crate) reason: Option<String>,
    /// A `Retry-After` header in seconds, if the server gave one.
    pub(crate) retry_after: Option<Duration>,
    /// APNs's id of the notification, for support requests to Apple.
    pub(crate) apns_id: Option<String>,
}

/// A request that got no answer, and whether its connection is unusable for the next one.
pub(crate) struct ExchangeError {
    pub(crate) source: h2::Error,
    pub(crate) connection_broken: bool,
}

impl From<h2::Error> for ExchangeError {
    fn from(source: h2::Error) -> Self {
        // A reset stream (e.g. REFUSED_STREAM) leaves the connection usable; anything else
        // (GOAWAY, I/O, a protocol error) means it is gone.
        let connection_broken = !source.is_reset() || source.is_go_away();
        Self {
            source,
            connection_broken,
        }
    }
}

/// Sends one request on the connection and reads the whole answer.
pub(crate) async fn exchange(
    send_request: SendRequest<Bytes>,
    request: http::Request<()>,
    body: Bytes,
) -> Result<Answer, ExchangeError> {
    // Waits for a free stream within the server's SETTINGS_MAX_CONCURRENT_STREAMS.
    let mut send_request = send_request.ready().await?;
    let (response, mut request_body) = send_request.send_request(request, false)?;
    request_body.send_data(body, true)?;
    let response = response.await?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let status = response.status().as_u16();
    let apns_id = header("apns-id");
    let retry_after = header("retry-after")
        .and_then(|value| value.trim().parse().ok())
        .map(Duration::from_secs);
    let mut answer_body = response.into_body();
    let mut collected = Vec::new();
    while let Some(chunk) = answer_body.data().await {
        let chunk = chunk?;
        let _ = answer_body.flow_control().release_capacity(chunk.len());
        if collected.len() + chunk.len() <= MAX_ANSWER_BYTES {
            collected.extend_from_slice(&chunk);
        }
    }
    Ok(Answer {
        status,
        reason: reason_of(&collected),
        retry_after,
        apns_id,
    })
}

/// The `reason` of APNs's JSON error body (`{"reason": "BadDeviceToken"}`).
fn reason_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        reason: String,
    }
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|error| error.reason)
        .filter(|reason| !reason.is_empty())
}

/// What an answer means for the caller.
pub(crate) fn outcome_of(answer: &Answer, credentials: &ApnsCredentials) -> Outcome {
    let reason = answer
        .reason
        .clone()
        .unwrap_or_else(|| format!("http {}", answer.status));
    match answer.status {
        200 => Outcome::Delivered,
        // 410: Unregistered (the app is gone from the device) or ExpiredToken.
        410 => Outcome::TokenRetired { reason },
        400 if matches!(reason.as_str(), "BadDeviceToken" | "DeviceTokenNotForTopic") => {
            Outcome::TokenRetired { reason }
        }
        // TooManyRequests (to one device) and TooManyProviderTokenUpdates.
        429 => Outcome::Retry {
            reason,
            after: answer.retry_after,
        },
        500..=599 => Outcome::Retry {
            reason,
            after: answer.retry_after,
        },
        403 => Outcome::Rejected {
            reason: format!(
                "{reason}: check the APNs credentials (team {}, key {}, topic {})",
                credentials.team_id, credentials.key_id, credentials.topic
            ),
        },
        _ => Outcome::Rejected { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, reason: Option<&str>) -> Answer {
        Answer {
            status,
            reason: reason.map(str::to_owned),
            retry_after: None,
            apns_id: None,
        }
    }

    fn credentials() -> ApnsCredentials {
        ApnsCredentials {
            team_id: "TEAM123456".into(),
            key_id: "KEY1234567".into(),
            private_key: String::new(),
            topic: "com.example.app".into(),
        }
    }

    #[test]
    fn answers_map_to_outcomes() {
        let credentials = credentials();
        let outcome = |status, reason| outcome_of(&answer(status, reason), &credentials);
        assert_eq!(outcome(200, None), Outcome::Delivered);
        assert_eq!(outcome(410, Some("Unregistered")).label(), "token_retired");
        assert_eq!(outcome(410, Some("ExpiredToken")).label(), "token_retired");
        assert_eq!(
            outcome(400, Some("BadDeviceToken")).label(),
            "token_retired"
        );
        assert_eq!(
            outcome(400, Some("DeviceTokenNotForTopic")).label(),
            "token_retired"
        );
        assert_eq!(
            outcome(429, Some("TooManyRequests")),
            Outcome::Retry {
                reason: "TooManyRequests".into(),
                after: None
            }
        );
        assert_eq!(outcome(503, None).reason(), Some("http 503"));
        assert_eq!(outcome(500, Some("InternalServerError")).label(), "retry");
        assert_eq!(
            outcome(413, Some("PayloadTooLarge")),
            Outcome::Rejected {
                reason: "PayloadTooLarge".into()
            }
        );
        assert_eq!(outcome(400, Some("BadTopic")).label(), "rejected");
        let rejected = outcome(403, Some("InvalidProviderToken"));
        let reason = rejected.reason().expect("a reason");
        assert!(reason.starts_with("InvalidProviderToken"), "{reason}");
        assert!(
            reason.contains("TEAM123456") && reason.contains("KEY1234567"),
            "{reason}"
        );
    }

    #[test]
    fn a_retry_after_is_passed_on() {
        let mut answer = answer(503, Some("ServiceUnavailable"));
        answer.retry_after = Some(Duration::from_secs(30));
        assert_eq!(
            outcome_of(&answer, &credentials()),
            Outcome::Retry {
                reason: "ServiceUnavailable".into(),
                after: Some(Duration::from_secs(30))
            }
        );
    }

    #[test]
    fn the_reason_is_read_from_apples_json() {
        assert_eq!(
            reason_of(br#"{"reason":"Unregistered","timestamp":1700000000000}"#).as_deref(),
            Some("Unregistered")
        );
        assert_eq!(reason_of(b""), None);
        assert_eq!(reason_of(b"<html>"), None);
    }
}

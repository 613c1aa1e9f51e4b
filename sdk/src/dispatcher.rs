//! Asking the dispatcher which connector holds this device.

use std::time::Duration;

use ringpush_protocol::DeviceId;
use serde::Deserialize;

use crate::registration::error_from_body;

/// The dispatcher's answer to `GET /v1/connector?device_id=<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Assignment {
    /// The connector's WebSocket URL.
    pub(crate) url: String,
    /// The connector's id on the ring (for logs).
    pub(crate) connector_id: String,
}

/// Why a lookup gave no connector; every case is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    #[error("dispatcher unreachable: {0}")]
    Unreachable(#[from] reqwest::Error),
    #[error("dispatcher answered {status}: {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("dispatcher answer unreadable: {0}")]
    BadAnswer(String),
}

/// Asks the dispatcher at `dispatcher_url` for the connector of `device`.
pub(crate) async fn lookup(
    http: &reqwest::Client,
    dispatcher_url: &str,
    device: DeviceId,
    timeout: Duration,
) -> Result<Assignment, LookupError> {
    let url = format!(
        "{}/v1/connector?device_id={device}",
        dispatcher_url.trim_end_matches('/')
    );
    let response = http.get(url).timeout(timeout).send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        let detail = error_from_body(status.as_u16(), &body);
        return Err(LookupError::Refused {
            status: status.as_u16(),
            code: detail.code,
            message: detail.message,
        });
    }
    let assignment: Assignment =
        serde_json::from_slice(&body).map_err(|error| LookupError::BadAnswer(error.to_string()))?;
    if !(assignment.url.starts_with("ws://") || assignment.url.starts_with("wss://")) {
        return Err(LookupError::BadAnswer(format!(
            "connector url {:?} is not a WebSocket URL",
            assignment.url
        )));
    }
    Ok(assignment)
}

//! `POST /v1/apps/{app_id}/audience/estimate`: how many devices a target reaches now.

use axum::Json;
use axum::extract::{Path, State};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ControllerState;
use crate::auth::{Access, Credentials};
use crate::error::ApiError;
use crate::target::SendRequest;

/// The answer to an estimate.
#[derive(Debug, Serialize, Deserialize)]
pub struct Estimate {
    /// Registered devices the target reaches now.
    pub reach: u64,
}

pub(crate) async fn estimate(
    State(state): State<ControllerState>,
    Path(app_id): Path<String>,
    credentials: Credentials,
    body: Bytes,
) -> Result<Json<Estimate>, ApiError> {
    let app = credentials.app(&state, &app_id, Access::Read).await?;
    let target = SendRequest::from_json(&body)?.target(&state.config)?;
    let reach = match state.reach(&app, &target).await {
        // An alias nobody uses reaches nobody; for an estimate that is an answer, not an error.
        Err(ApiError::UnknownDevices(_)) if matches!(target, crate::target::Target::Aliases(_)) => {
            0
        }
        other => other?,
    };
    Ok(Json(Estimate { reach }))
}

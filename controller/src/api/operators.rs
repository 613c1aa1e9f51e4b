//! `/v1/operators`: the portal's operators (admin only): add with a role and a password,
//! list, remove. Removing an operator ends their sessions at once (every request reads the
//! operator behind its session).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use ringpush_store::{OperatorRecord, Role, StoreError, now_ms};
use serde::{Deserialize, Serialize};

use super::parse_json;
use crate::ControllerState;
use crate::auth::Credentials;
use crate::error::ApiError;

const MAX_NAME_CHARS: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOperator {
    name: String,
    role: String,
    password: String,
}

/// An operator as the API shows it (never the password hash).
#[derive(Debug, Serialize, Deserialize)]
pub struct OperatorView {
    pub name: String,
    pub role: String,
    pub created_at_ms: i64,
}

impl From<OperatorRecord> for OperatorView {
    fn from(operator: OperatorRecord) -> Self {
        Self {
            name: operator.name,
            role: operator.role.as_str().to_owned(),
            created_at_ms: operator.created_at_ms,
        }
    }
}

/// Checks an operator name: 1 to 64 characters of a-z 0-9 . _ -
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
    if name.is_empty() || name.len() > MAX_NAME_CHARS || !name.chars().all(allowed) {
        return Err(ApiError::InvalidRequest(format!(
            "operator name must be 1 to {MAX_NAME_CHARS} characters of a-z 0-9 . _ -"
        )));
    }
    Ok(())
}

pub(crate) async fn create_operator(
    State(state): State<ControllerState>,
    credentials: Credentials,
    body: Bytes,
) -> Result<(StatusCode, Json<OperatorView>), ApiError> {
    credentials.admin(&state).await?;
    let request: CreateOperator = parse_json(&body)?;
    validate_name(&request.name)?;
    let role: Role = request.role.parse().map_err(|_| {
        ApiError::InvalidRequest(format!(
            "role must be admin, marketer or viewer, got {:?}",
            request.role
        ))
    })?;
    crate::password::validate(&request.password)?;
    let operator = OperatorRecord {
        name: request.name,
        password_hash: crate::password::hash(request.password).await?,
        role,
        created_at_ms: now_ms(),
    };
    match state.store.operators().create_operator(&operator).await {
        Ok(()) => {}
        Err(StoreError::AlreadyExists(_)) => {
            return Err(ApiError::Conflict(format!(
                "an operator named {} exists",
                operator.name
            )));
        }
        Err(error) => return Err(error.into()),
    }
    tracing::info!(operator = %operator.name, role = role.as_str(), "operator created");
    Ok((StatusCode::CREATED, Json(operator.into())))
}

/// The answer to `GET /v1/operators`.
#[derive(Debug, Serialize, Deserialize)]
pub struct OperatorList {
    pub operators: Vec<OperatorView>,
}

pub(crate) async fn list_operators(
    State(state): State<ControllerState>,
    credentials: Credentials,
) -> Result<Json<OperatorList>, ApiError> {
    credentials.admin(&state).await?;
    let operators = state.store.operators().operators().await?;
    Ok(Json(OperatorList {
        operators: operators.into_iter().map(Into::into).collect(),
    }))
}

pub(crate) async fn delete_operator(
    State(state): State<ControllerState>,
    credentials: Credentials,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    credentials.admin(&state).await?;
    if !state.store.operators().delete_operator(&name).await? {
        return Err(ApiError::UnknownOperator(name.chars().take(64).collect()));
    }
    tracing::info!(operator = %name, "operator removed");
    Ok(Json(serde_json::json!({ "deleted": name })))
}

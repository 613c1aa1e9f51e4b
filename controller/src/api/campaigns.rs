//! Campaigns: a send with a schedule and an optional throttle; listing, reading, pausing,
//! resuming, cancelling, and their statistics.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use ringpush_store::{AppRecord, CampaignRecord, CampaignState, Schedule};
use serde::{Deserialize, Serialize};

use super::stats::{StatsResponse, stats_of};
use crate::ControllerState;
use crate::auth::{Access, Credentials};
use crate::error::ApiError;
use crate::target::SendRequest;

/// The most a campaign may be throttled to, and the least.
const MAX_THROTTLE_PER_SECOND: u32 = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCampaign {
    name: String,
    /// A send request body: target, data, ttl_seconds.
    message: serde_json::Value,
    /// When to send; now if absent.
    schedule: Option<Schedule>,
    throttle_per_second: Option<u32>,
}

/// A campaign as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct CampaignView {
    pub id: String,
    pub name: String,
    pub state: CampaignState,
    pub schedule: Schedule,
    pub message: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_per_second: Option<u32>,
    pub created_at_ms: i64,
}

impl From<CampaignRecord> for CampaignView {
    fn from(record: CampaignRecord) -> Self {
        Self {
            id: record.id,
            name: record.name,
            state: record.state,
            schedule: record.schedule,
            message: record.request,
            throttle_per_second: record.throttle_per_second,
            created_at_ms: record.created_at_ms,
        }
    }
}

pub(crate) async fn create_campaign(
    State(state): State<ControllerState>,
    Path(app_id): Path<String>,
    credentials: Credentials,
    body: Bytes,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    let app = credentials.app(&state, &app_id, Access::Send).await?;
    let request: CreateCampaign = serde_json::from_slice(&body)
        .map_err(|error| ApiError::InvalidRequest(format!("request body: {error}")))?;
    let name = request.name.trim().to_owned();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::InvalidRequest(
            "name must be 1 to 200 characters".into(),
        ));
    }
    let message: SendRequest = serde_json::from_value(request.message.clone())
        .map_err(|error| ApiError::InvalidRequest(format!("message: {error}")))?;
    message.validate(&state.config)?;
    if app.payload_sealing && message.device_ids.is_none() && message.aliases.is_none() {
        return Err(ApiError::Conflict(
            crate::send::AUDIENCE_NOT_SEALABLE.into(),
        ));
    }
    // Campaign time (the scheduler's clock): a simulated clock runs campaigns on its own time.
    let now_ms = state.clock.now_ms();
    let schedule = request.schedule.unwrap_or(Schedule::Once { at_ms: now_ms });
    ringpush_schedule::validate(&schedule)
        .map_err(|error| ApiError::InvalidRequest(format!("schedule: {error}")))?;
    if let Some(rate) = request.throttle_per_second
        && !(1..=MAX_THROTTLE_PER_SECOND).contains(&rate)
    {
        return Err(ApiError::InvalidRequest(format!(
            "throttle_per_second must be between 1 and {MAX_THROTTLE_PER_SECOND}"
        )));
    }
    // Under an Idempotency-Key the id is derived from the key: a retry finds the campaign
    // the first request created and answers it (200) instead of creating another.
    let id =
        match super::messages::idempotency_key(&state, &app, &credentials.headers, &body).await? {
            Some(scoped_key) => {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(format!("campaign:{scoped_key}"));
                let id = format!("cmp_{}", hex::encode(&digest[..8]));
                if let Some(existing) = state.store.campaigns().campaign(app.id, &id).await? {
                    return Ok((StatusCode::OK, Json(existing.into())));
                }
                id
            }
            None => format!("cmp_{}", hex::encode(rand::random::<[u8; 8]>())),
        };
    let record = CampaignRecord {
        id,
        app: app.id,
        name,
        request: serde_json::to_value(&message).map_err(|e| ApiError::Internal(e.to_string()))?,
        schedule,
        throttle_per_second: request.throttle_per_second,
        state: CampaignState::Scheduled,
        created_at_ms: now_ms,
    };
    state.store.campaigns().put_campaign(&record).await?;
    tracing::info!(app_id = %app.id, campaign_id = %record.id, "campaign created");
    Ok((StatusCode::CREATED, Json(record.into())))
}

pub(crate) async fn list_campaigns(
    State(state): State<ControllerState>,
    Path(app_id): Path<String>,
    credentials: Credentials,
) -> Result<Json<Vec<CampaignView>>, ApiError> {
    let app = credentials.app(&state, &app_id, Access::Read).await?;
    let campaigns = state.store.campaigns().app_campaigns(app.id).await?;
    Ok(Json(campaigns.into_iter().map(Into::into).collect()))
}

async fn load(
    state: &ControllerState,
    credentials: &Credentials,
    app_id: &str,
    id: &str,
    access: Access,
) -> Result<(AppRecord, CampaignRecord), ApiError> {
    let app = credentials.app(state, app_id, access).await?;
    let campaign = state
        .store
        .campaigns()
        .campaign(app.id, id)
        .await?
        .ok_or_else(|| ApiError::UnknownCampaign(id.chars().take(80).collect()))?;
    Ok((app, campaign))
}

pub(crate) async fn get_campaign(
    State(state): State<ControllerState>,
    Path((app_id, id)): Path<(String, String)>,
    credentials: Credentials,
) -> Result<Json<CampaignView>, ApiError> {
    let (_, campaign) = load(&state, &credentials, &app_id, &id, Access::Read).await?;
    Ok(Json(campaign.into()))
}

pub(crate) async fn campaign_stats(
    State(state): State<ControllerState>,
    Path((app_id, id)): Path<(String, String)>,
    credentials: Credentials,
) -> Result<Json<StatsResponse>, ApiError> {
    let (app, campaign) = load(&state, &credentials, &app_id, &id, Access::Read).await?;
    let record = state.store.stats().read_stats(app.id, &campaign.id).await?;
    let expires_at_ms = campaign_expiry(&campaign, &record, state.config.default_ttl_seconds);
    Ok(Json(stats_of(&campaign.id, record, expires_at_ms)))
}

/// When every message of an ended (finished or cancelled) campaign has expired: the TTL after
/// the end of the last minute it targeted devices in. A campaign that may still send has no
/// such time: its undelivered messages stay pending (each message's own statistics expire
/// them).
fn campaign_expiry(
    campaign: &CampaignRecord,
    record: &ringpush_store::StatsRecord,
    default_ttl_seconds: u64,
) -> Option<i64> {
    if !matches!(
        campaign.state,
        CampaignState::Finished | CampaignState::Cancelled
    ) {
        return None;
    }
    let last_minute = record
        .per_minute
        .iter()
        .filter(|(_, counters)| counters.contains_key(&ringpush_store::Counter::Targeted))
        .map(|(minute, _)| *minute)
        .max()?;
    let ttl_seconds = campaign.request["ttl_seconds"]
        .as_u64()
        .unwrap_or(default_ttl_seconds);
    Some((last_minute + 1) * 60_000 + (ttl_seconds * 1000) as i64)
}

/// `POST .../campaigns/{id}/{action}` with action pause, resume or cancel.
pub(crate) async fn change_campaign(
    State(state): State<ControllerState>,
    Path((app_id, id, action)): Path<(String, String, String)>,
    credentials: Credentials,
) -> Result<Json<CampaignView>, ApiError> {
    let (app, campaign) = load(&state, &credentials, &app_id, &id, Access::Send).await?;
    let (from, to): (&[CampaignState], CampaignState) = match action.as_str() {
        "pause" => (&[CampaignState::Scheduled], CampaignState::Paused),
        "resume" => (&[CampaignState::Paused], CampaignState::Scheduled),
        "cancel" => (
            &[CampaignState::Scheduled, CampaignState::Paused],
            CampaignState::Cancelled,
        ),
        other => {
            return Err(ApiError::NoSuchEndpoint(format!(
                "POST .../campaigns/{{id}}/{other} (actions: pause, resume, cancel)"
            )));
        }
    };
    if action == "resume" {
        // Firings that fell due while paused are skipped, not sent late.
        crate::scheduler::skip_missed_firings(
            state.store.as_ref(),
            &campaign,
            state.clock.now_ms(),
            crate::scheduler::DEFAULT_LOOKBACK_MS,
        )
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    let moved = state
        .store
        .campaigns()
        .transition_campaign(app.id, &campaign.id, from, to)
        .await?;
    let campaign = state
        .store
        .campaigns()
        .campaign(app.id, &campaign.id)
        .await?
        .ok_or_else(|| ApiError::UnknownCampaign(id.clone()))?;
    if !moved && campaign.state != to {
        return Err(ApiError::Conflict(format!(
            "cannot {action} a campaign that is {:?}",
            campaign.state
        )));
    }
    Ok(Json(campaign.into()))
}

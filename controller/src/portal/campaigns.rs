//! The campaigns of an app, and one campaign's page: live counters, funnel and chart (the
//! script reads the API's statistics every second), pause, resume and cancel.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::forward::{Api, Caller};
use super::view::{Nav, PortalError, context, form_session, path_part, render, time_text};

/// A campaign as the API answers it (the fields the pages show).
#[derive(Debug, Deserialize)]
struct CampaignView {
    id: String,
    name: String,
    state: String,
    schedule: serde_json::Value,
    message: serde_json::Value,
    throttle_per_second: Option<u32>,
    created_at_ms: i64,
}

struct CampaignRow {
    id: String,
    name: String,
    state: String,
    schedule: String,
    created: String,
}

/// A schedule in words.
fn schedule_text(schedule: &serde_json::Value) -> String {
    let text = |field: &str| schedule[field].as_str().unwrap_or_default().to_owned();
    match schedule["kind"].as_str() {
        Some("once") => schedule["at_ms"]
            .as_i64()
            .map_or_else(|| "once".into(), |at| format!("once, {}", time_text(at))),
        Some("local_time") => format!(
            "{} at {} local time (default zone {})",
            text("date"),
            text("time"),
            text("default_zone")
        ),
        Some("cron") => format!("cron {} ({})", text("expression"), text("zone")),
        _ => "unknown schedule".into(),
    }
}

#[derive(Template)]
#[template(path = "campaigns.html")]
struct CampaignsPage {
    nav: Nav,
    app_id: String,
    campaigns: Vec<CampaignRow>,
}

pub(crate) async fn app_home(Path(app_id): Path<String>) -> Response {
    Redirect::to(&format!("/portal/apps/{}/campaigns", path_part(&app_id))).into_response()
}

pub(crate) async fn list(
    State(api): State<Api>,
    caller: Caller,
    Path(app_id): Path<String>,
) -> Result<Response, PortalError> {
    let app_id = path_part(&app_id);
    let here = format!("/portal/apps/{app_id}/campaigns");
    let (_, nav) = context(&api, &caller, Some(&app_id), &here).await?;
    let mut campaigns: Vec<CampaignView> = api
        .get(&caller, &format!("/v1/apps/{app_id}/campaigns"))
        .await?;
    campaigns.sort_by_key(|campaign| std::cmp::Reverse(campaign.created_at_ms));
    let campaigns = campaigns
        .into_iter()
        .map(|campaign| CampaignRow {
            schedule: schedule_text(&campaign.schedule),
            created: time_text(campaign.created_at_ms),
            id: campaign.id,
            name: campaign.name,
            state: campaign.state,
        })
        .collect();
    Ok(render(&CampaignsPage {
        nav,
        app_id,
        campaigns,
    }))
}

struct CampaignDetail {
    id: String,
    name: String,
    state: String,
    schedule: String,
    throttle: String,
    created: String,
    message: String,
    can_change: bool,
    actions: Vec<Action>,
}

/// A button on the campaign page.
struct Action {
    name: &'static str,
    label: &'static str,
    class: &'static str,
}

impl Action {
    const fn new(name: &'static str, label: &'static str, class: &'static str) -> Self {
        Self { name, label, class }
    }
}

#[derive(Template)]
#[template(path = "campaign.html")]
struct CampaignPage {
    nav: Nav,
    app_id: String,
    campaign: CampaignDetail,
    counters: &'static [&'static str],
    funnel: &'static [&'static str],
}

const COUNTERS: &[&str] = &[
    "targeted",
    "delivered",
    "acked",
    "opened",
    "clicked",
    "pending",
    "expired",
    "failed",
];
const PAUSE: Action = Action::new("pause", "Pause", "");
const RESUME: Action = Action::new("resume", "Resume", "");
const CANCEL: Action = Action::new("cancel", "Cancel", "danger");
const FUNNEL: &[&str] = &["targeted", "delivered", "acked", "opened", "clicked"];

pub(crate) async fn show(
    State(api): State<Api>,
    caller: Caller,
    Path((app_id, campaign_id)): Path<(String, String)>,
) -> Result<Response, PortalError> {
    let (app_id, campaign_id) = (path_part(&app_id), path_part(&campaign_id));
    let here = format!("/portal/apps/{app_id}/campaigns/{campaign_id}");
    let (_, nav) = context(&api, &caller, Some(&app_id), &here).await?;
    let campaign: CampaignView = api
        .get(
            &caller,
            &format!("/v1/apps/{app_id}/campaigns/{campaign_id}"),
        )
        .await?;
    let actions = match campaign.state.as_str() {
        "scheduled" => vec![PAUSE, CANCEL],
        "paused" => vec![RESUME, CANCEL],
        _ => Vec::new(),
    };
    let detail = CampaignDetail {
        schedule: schedule_text(&campaign.schedule),
        throttle: campaign
            .throttle_per_second
            .map_or_else(|| "none".into(), |rate| format!("{rate}/s")),
        created: time_text(campaign.created_at_ms),
        message: serde_json::to_string_pretty(&campaign.message).unwrap_or_default(),
        can_change: !actions.is_empty(),
        actions,
        id: campaign.id,
        name: campaign.name,
        state: campaign.state,
    };
    Ok(render(&CampaignPage {
        nav,
        app_id,
        campaign: detail,
        counters: COUNTERS,
        funnel: FUNNEL,
    }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    csrf: String,
}

/// `POST .../campaigns/{id}/{action}`: pause, resume or cancel, then back to the campaign.
pub(crate) async fn change(
    State(api): State<Api>,
    caller: Caller,
    Path((app_id, campaign_id, action)): Path<(String, String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PortalError> {
    let (app_id, campaign_id, action) = (
        path_part(&app_id),
        path_part(&campaign_id),
        path_part(&action),
    );
    let session = form_session(&api, &caller, "/portal/apps", &form.csrf).await?;
    let path = format!("/v1/apps/{app_id}/campaigns/{campaign_id}/{action}");
    let _: serde_json::Value = api
        .post(&caller, &session.csrf_token, &path, &serde_json::json!({}))
        .await?;
    Ok(Redirect::to(&format!("/portal/apps/{app_id}/campaigns/{campaign_id}")).into_response())
}

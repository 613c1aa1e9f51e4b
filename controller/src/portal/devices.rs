//! Device lookup by id or alias: attributes, presence, positions and pending messages, as
//! the API's device endpoints answer them.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::forward::{Api, Caller};
use super::view::{Nav, PortalError, context, path_part, render, time_text, url_encode};

/// Most devices of one alias shown (each is one API call).
const MAX_DEVICES_SHOWN: usize = 20;

#[derive(Debug, Deserialize)]
pub(crate) struct LookupQuery {
    q: Option<String>,
}

/// `GET /v1/apps/{app}/devices/{id}`, the fields shown.
#[derive(Debug, Deserialize)]
struct DeviceState {
    device_id: String,
    online: bool,
    connector_id: Option<String>,
    online_since_ms: Option<i64>,
    pending: u64,
    last_seq: u64,
    delivered_up_to: u64,
    acked_up_to: u64,
    home_region: Option<String>,
    #[serde(default)]
    attributes: serde_json::Value,
    #[serde(default)]
    pending_messages: Vec<PendingMessage>,
}

#[derive(Debug, Deserialize)]
struct PendingMessage {
    seq: u64,
    expires_at_ms: i64,
    preview: String,
}

#[derive(Debug, Deserialize)]
struct AliasDevices {
    device_ids: Vec<String>,
}

struct PendingRow {
    seq: u64,
    expires: String,
    preview: String,
}

struct DeviceCard {
    id: String,
    presence: String,
    presence_class: &'static str,
    connector: String,
    home_region: String,
    alias: String,
    tags: String,
    topics: String,
    platform: String,
    timezone: String,
    locale: String,
    custom: String,
    last_seq: u64,
    delivered_up_to: u64,
    acked_up_to: u64,
    pending: u64,
    pending_messages: Vec<PendingRow>,
}

impl From<DeviceState> for DeviceCard {
    fn from(device: DeviceState) -> Self {
        let attributes = &device.attributes;
        let text = |field: &str| attributes[field].as_str().unwrap_or("–").to_owned();
        let list = |field: &str| {
            let items: Vec<&str> = attributes[field]
                .as_array()
                .map(|items| items.iter().filter_map(|item| item.as_str()).collect())
                .unwrap_or_default();
            if items.is_empty() {
                "–".to_owned()
            } else {
                items.join(", ")
            }
        };
        let custom = match attributes["custom"].as_object() {
            Some(map) if !map.is_empty() => map
                .iter()
                .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", "),
            _ => "–".to_owned(),
        };
        let platform = match (
            attributes["platform"].as_str(),
            attributes["app_version"].as_str(),
        ) {
            (Some(platform), Some(version)) => format!("{platform}, app {version}"),
            (Some(platform), None) => platform.to_owned(),
            _ => "–".to_owned(),
        };
        Self {
            presence: if device.online {
                device.online_since_ms.map_or_else(
                    || "online".into(),
                    |since| format!("online since {}", time_text(since)),
                )
            } else {
                "offline".into()
            },
            presence_class: if device.online { "online" } else { "offline" },
            connector: device.connector_id.unwrap_or_else(|| "–".into()),
            home_region: device
                .home_region
                .unwrap_or_else(|| "this deployment (one region)".into()),
            alias: text("alias"),
            tags: list("tags"),
            topics: list("topics"),
            platform,
            timezone: text("timezone"),
            locale: text("locale"),
            custom,
            last_seq: device.last_seq,
            delivered_up_to: device.delivered_up_to,
            acked_up_to: device.acked_up_to,
            pending: device.pending,
            pending_messages: device
                .pending_messages
                .into_iter()
                .map(|message| PendingRow {
                    seq: message.seq,
                    expires: time_text(message.expires_at_ms),
                    preview: message.preview,
                })
                .collect(),
            id: device.device_id,
        }
    }
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    nav: Nav,
    app_id: String,
    query: String,
    devices: Vec<DeviceCard>,
    error: Option<String>,
}

pub(crate) async fn lookup(
    State(api): State<Api>,
    caller: Caller,
    Path(app_id): Path<String>,
    Query(query): Query<LookupQuery>,
) -> Result<Response, PortalError> {
    let app_id = path_part(&app_id);
    let query = query.q.unwrap_or_default().trim().to_owned();
    let here = format!("/portal/apps/{app_id}/devices?q={}", url_encode(&query));
    let (_, nav) = context(&api, &caller, Some(&app_id), &here).await?;
    let mut page = DevicesPage {
        nav,
        app_id: app_id.clone(),
        query: query.clone(),
        devices: Vec::new(),
        error: None,
    };
    if query.is_empty() {
        return Ok(render(&page));
    }
    let by_id = format!("/v1/apps/{app_id}/devices/{}", path_part(&query));
    let ids = match api.get::<DeviceState>(&caller, &by_id).await {
        Ok(device) => {
            page.devices.push(device.into());
            Vec::new()
        }
        Err(PortalError::Api { status, .. }) if status == StatusCode::NOT_FOUND => {
            let by_alias = format!("/v1/apps/{app_id}/devices?alias={}", url_encode(&query));
            api.get::<AliasDevices>(&caller, &by_alias)
                .await?
                .device_ids
        }
        Err(other) => return Err(other),
    };
    let shown = ids.len().min(MAX_DEVICES_SHOWN);
    if ids.len() > shown {
        page.nav = page.nav.notice(format!(
            "the alias has {} devices; the first {shown} are shown",
            ids.len()
        ));
    }
    for id in ids.into_iter().take(shown) {
        let device: DeviceState = api
            .get(&caller, &format!("/v1/apps/{app_id}/devices/{id}"))
            .await?;
        page.devices.push(device.into());
    }
    if page.devices.is_empty() {
        page.error = Some(format!("no device has the id or alias {query:?}"));
    }
    Ok(render(&page))
}

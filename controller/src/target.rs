//! What a send request asks for: its target and its message, parsed and validated.
//!
//! The same request body is accepted by `POST /v1/apps/{app}/messages` and stored as a
//! campaign's message, so both go through [`SendRequest::validate`].

use ringpush_audience::Audience;
use ringpush_protocol::DeviceId;
use ringpush_store::{ContentType, MessageOptions};

use crate::message_options::{NotificationRequest, validate_options};
use serde::{Deserialize, Serialize};

use crate::ControllerConfig;
use crate::error::ApiError;

/// The JSON body of a send, as callers write it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aliases: Option<Vec<String>>,
    /// A tag expression, e.g. `vip and (cn or us) and not churned`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// A segment filter, e.g. `platform = ios and app_version >= 2.3`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// A newer pending message with the same key replaces an older one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collapse_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// `"normal"` (the default) or `"high"`.
    pub priority: Option<String>,
    /// What to show: title, body, deep link, badge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<NotificationRequest>,
    /// For devices with a platform token: `"socket_first"`, `"socket_only"` or
    /// `"platform_only"` (default: the app's gateway policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

/// Who a message goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Listed devices: one inbox entry each.
    Devices(Vec<DeviceId>),
    /// The devices of the app's users with these aliases: one inbox entry each.
    Aliases(Vec<String>),
    /// An audience: one timeline entry for all.
    Audience(Audience),
}

/// A validated send.
#[derive(Debug, Clone)]
pub struct Send {
    pub target: Target,
    pub payload: Vec<u8>,
    pub content_type: ContentType,
    pub ttl_seconds: u64,
    pub options: MessageOptions,
    /// The message's own route on the platform path (`None`: the app's).
    pub route: Option<ringpush_gateway::Route>,
}

impl SendRequest {
    /// Parses a JSON body with a message that names what is wrong.
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        serde_json::from_slice(body)
            .map_err(|error| ApiError::InvalidRequest(format!("request body: {error}")))
    }

    /// Only the target fields, for an audience estimate.
    pub fn target(&self, config: &ControllerConfig) -> Result<Target, ApiError> {
        let invalid = |text: String| Err(ApiError::InvalidRequest(text));
        let given = [
            self.device_ids.is_some(),
            self.aliases.is_some(),
            self.tags.is_some(),
            self.topic.is_some(),
            self.segment.is_some(),
            self.broadcast.is_some(),
        ]
        .iter()
        .filter(|given| **given)
        .count();
        if given != 1 {
            return invalid(format!(
                "give exactly one target of device_ids, aliases, tags, topic, segment, broadcast (got {given})"
            ));
        }
        let max = config.max_devices_per_request;
        if let Some(ids) = &self.device_ids {
            if ids.is_empty() || ids.len() > max {
                return invalid(format!(
                    "device_ids must list 1 to {max} devices, got {}",
                    ids.len()
                ));
            }
            let devices = ids
                .iter()
                .map(|id| {
                    id.parse()
                        .map_err(|error| ApiError::InvalidRequest(format!("device_ids: {error}")))
                })
                .collect::<Result<_, _>>()?;
            return Ok(Target::Devices(devices));
        }
        if let Some(aliases) = &self.aliases {
            if aliases.is_empty() || aliases.len() > max {
                return invalid(format!(
                    "aliases must list 1 to {max} aliases, got {}",
                    aliases.len()
                ));
            }
            if let Some(bad) = aliases.iter().find(|a| a.is_empty() || a.len() > 128) {
                return invalid(format!("aliases: {bad:?} must be 1 to 128 characters"));
            }
            return Ok(Target::Aliases(aliases.clone()));
        }
        let audience = if let Some(text) = &self.tags {
            Audience::parse_tags(text)
                .map_err(|e| ApiError::InvalidRequest(format!("tags: {e}")))?
        } else if let Some(name) = &self.topic {
            Audience::topic(name).map_err(|e| ApiError::InvalidRequest(format!("topic: {e}")))?
        } else if let Some(text) = &self.segment {
            Audience::parse(text).map_err(|e| ApiError::InvalidRequest(format!("segment: {e}")))?
        } else if self.broadcast == Some(true) {
            Audience::everyone()
        } else {
            return invalid("broadcast must be true when given".into());
        };
        Ok(Target::Audience(audience))
    }

    /// The whole send: target, payload and TTL, within the configured limits.
    pub fn validate(&self, config: &ControllerConfig) -> Result<Send, ApiError> {
        let target = self.target(config)?;
        let options = validate_options(
            self.collapse_key.as_deref(),
            self.priority.as_deref(),
            self.notification.as_ref(),
        )?;
        let (payload, content_type) = encode_data(
            self.data.clone(),
            options.notification.is_some(),
            config.max_payload_bytes,
        )?;
        let ttl_seconds = self.ttl_seconds.unwrap_or(config.default_ttl_seconds);
        if ttl_seconds == 0 || ttl_seconds > config.max_ttl_seconds {
            return Err(ApiError::InvalidRequest(format!(
                "ttl_seconds must be between 1 and {}",
                config.max_ttl_seconds
            )));
        }
        let route = match self.route.as_deref() {
            None => None,
            Some(_) if matches!(target, Target::Audience(_)) => {
                return Err(ApiError::InvalidRequest(
                    "route applies to sends to device_ids or aliases: an audience message \
                     reaches connected devices and catches the others up when they connect"
                        .into(),
                ));
            }
            Some("socket_first") => Some(ringpush_gateway::Route::SocketFirst),
            Some("socket_only") => Some(ringpush_gateway::Route::SocketOnly),
            Some("platform_only") => Some(ringpush_gateway::Route::PlatformOnly),
            Some(other) => {
                return Err(ApiError::InvalidRequest(format!(
                    "route must be \"socket_first\", \"socket_only\" or \"platform_only\", \
                     got {other:?}"
                )));
            }
        };
        Ok(Send {
            target,
            payload,
            content_type,
            ttl_seconds,
            options,
            route,
        })
    }
}

/// A string is sent as text; any other JSON value as compact JSON. Data may be left out
/// when a notification says what to show (the payload is then empty text).
fn encode_data(
    data: Option<serde_json::Value>,
    has_notification: bool,
    max_payload_bytes: usize,
) -> Result<(Vec<u8>, ContentType), ApiError> {
    let (payload, content_type) = match data {
        None | Some(serde_json::Value::Null) if has_notification => {
            return Ok((Vec::new(), ContentType::Text));
        }
        None | Some(serde_json::Value::Null) => {
            return Err(ApiError::InvalidRequest(
                "data or notification is required: data as a string or any JSON value".into(),
            ));
        }
        Some(serde_json::Value::String(text)) => (text.into_bytes(), ContentType::Text),
        Some(value) => (
            serde_json::to_vec(&value).map_err(|error| ApiError::Internal(error.to_string()))?,
            ContentType::Json,
        ),
    };
    if payload.len() > max_payload_bytes {
        return Err(ApiError::PayloadTooLarge {
            len: payload.len(),
            max: max_payload_bytes,
        });
    }
    Ok((payload, content_type))
}

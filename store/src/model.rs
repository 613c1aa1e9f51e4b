//! The records the store keeps and answers.

use ringpush_protocol::{AppId, DeviceId};
use serde::{Deserialize, Serialize};

/// How long an idempotency key is remembered: 24 hours.
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// An app (tenant) and the hashes of its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub id: AppId,
    pub name: String,
    /// SHA-256 of the server key (sends messages, reads statuses).
    pub server_key_hash: [u8; 32],
    /// SHA-256 of the client key (registers devices).
    pub client_key_hash: [u8; 32],
    pub created_at_ms: i64,
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub app: AppId,
    /// SHA-256 of the device token.
    pub token_hash: [u8; 32],
    pub created_at_ms: i64,
}

/// How a payload is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentType {
    /// UTF-8 JSON.
    Json,
    /// UTF-8 text.
    Text,
}

impl ContentType {
    /// The MIME type sent to devices.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Text => "text/plain; charset=utf-8",
        }
    }
}

/// A message to append to a device's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub device: DeviceId,
    pub payload: Vec<u8>,
    pub content_type: ContentType,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// Set for requests made with an `Idempotency-Key`: the app's key, scoped by the caller
    /// (e.g. `"<app>:<key>"`), so a retried request appends nothing new.
    pub idempotency_key: Option<String>,
    /// Collapse key, priority, notification. With a collapse key, the append removes the
    /// device's pending message with the same key, if any (its status then reads expired).
    pub options: crate::MessageOptions,
    /// The campaign this message belongs to, if any: read back with it, so that a message
    /// delivered from the inbox still counts for its campaign.
    pub campaign_id: Option<String>,
}

/// Limits applied on append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxLimits {
    /// Pending messages kept per device; the oldest are dropped past it.
    pub max_inbox_len: u32,
}

impl Default for InboxLimits {
    fn default() -> Self {
        Self {
            max_inbox_len: 1000,
        }
    }
}

/// The outcome of appending one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// The idempotency key was seen before: `seq` is the one given then, nothing was added.
    pub duplicate: bool,
    /// Oldest pending messages dropped to respect the inbox cap.
    pub dropped: u32,
}

/// A pending message as read back from an inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub seq: u64,
    pub payload: Vec<u8>,
    pub content_type: ContentType,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub options: crate::MessageOptions,
    pub campaign_id: Option<String>,
}

/// A device's inbox positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxState {
    /// The last seq given out (0 if none yet).
    pub last_seq: u64,
    /// Highest seq written to the device's socket.
    pub delivered_up_to: u64,
    /// Highest seq the device acked.
    pub acked_up_to: u64,
    /// Unexpired messages still waiting for an ack.
    pub pending: u64,
}

/// Who holds a device's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub connector_id: String,
    pub epoch: u64,
    pub since_ms: i64,
}

/// Where a message is in its life; it only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Accepted,
    Delivered,
    Acked,
    Expired,
}

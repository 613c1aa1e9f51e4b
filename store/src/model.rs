//! The records the store keeps and answers.

use ringpush_protocol::{AppId, DeviceId};
use serde::{Deserialize, Serialize};

/// How long an idempotency key is remembered: 24 hours.
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// An app (tenant) and its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub id: AppId,
    pub name: String,
    /// Every key the app was given, revoked ones too, in creation order. Ids are distinct.
    pub keys: Vec<AppKey>,
    pub created_at_ms: i64,
}

impl AppRecord {
    /// The unrevoked key with this hash, if the app has one.
    pub fn live_key(&self, hash: &[u8; 32]) -> Option<&AppKey> {
        self.keys
            .iter()
            .find(|key| key.revoked_at_ms.is_none() && key.hash == *hash)
    }
}

/// Which kind of credential a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// Sends messages and reads statuses: for the app's backend only.
    Server,
    /// Registers devices: shipped inside the app.
    Client,
}

impl KeyKind {
    /// `"server"` or `"client"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// One key of an app: the caller holds the secret, the store its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppKey {
    /// Chosen by the caller: `[A-Za-z0-9_-]`, at most 40 characters, unique in its app.
    pub id: String,
    pub kind: KeyKind,
    /// SHA-256 of the key (see [`crate::secret_hash`]).
    pub hash: [u8; 32],
    pub created_at_ms: i64,
    /// When the key was revoked; a revoked key no longer authenticates, and stays listed.
    pub revoked_at_ms: Option<i64>,
    /// What a server key may do (client keys only ever register devices). Records written
    /// before scopes existed read as [`KeyScope::ALL`].
    #[serde(default = "KeyScope::all")]
    pub scopes: Vec<KeyScope>,
}

/// One right of a server key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Send messages, create and change campaigns.
    Send,
    /// Read statuses, statistics, campaigns, devices and estimates.
    ReadStats,
    /// Register devices.
    ManageDevices,
}

impl KeyScope {
    /// Every scope, in a fixed order.
    pub const ALL: [KeyScope; 3] = [Self::Send, Self::ReadStats, Self::ManageDevices];

    /// Every scope, as a list (the default of a key).
    pub fn all() -> Vec<KeyScope> {
        Self::ALL.to_vec()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::ReadStats => "read_stats",
            Self::ManageDevices => "manage_devices",
        }
    }

    /// The scope named `text`, if any.
    pub fn parse(text: &str) -> Option<KeyScope> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == text)
    }
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

impl StoredMessage {
    /// The frame that hands this message of `device` to the device (stream 0, its inbox).
    pub fn into_push(self, device: DeviceId) -> ringpush_protocol::device::Push {
        let mut push = ringpush_protocol::device::Push {
            message_id: ringpush_protocol::MessageId {
                device,
                seq: self.seq,
            }
            .to_string(),
            seq: self.seq,
            payload: self.payload,
            content_type: self.content_type.mime().to_owned(),
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            stream: 0,
            campaign_id: self.campaign_id.unwrap_or_default(),
            ..Default::default()
        };
        self.options.apply_to(&mut push);
        push
    }
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
    /// Kept in the region that accepted it while the device's home region is unreachable
    /// (a `held_` id; see [`crate::HeldId`]).
    Held,
    /// A held message now in its home inbox, where its status goes on under its new id.
    HandedHome,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, kind: KeyKind, secret: &str, revoked_at_ms: Option<i64>) -> AppKey {
        AppKey {
            id: id.to_owned(),
            kind,
            hash: crate::secret_hash(secret),
            created_at_ms: 1,
            revoked_at_ms,
            scopes: crate::KeyScope::all(),
        }
    }

    #[test]
    fn live_key_skips_revoked_keys() {
        let app = AppRecord {
            id: AppId(1),
            name: "a".to_owned(),
            keys: vec![
                key("old", KeyKind::Server, "s", Some(5)),
                key("new", KeyKind::Server, "s", None),
                key("gone", KeyKind::Client, "c", Some(5)),
            ],
            created_at_ms: 1,
        };
        let found = app
            .live_key(&crate::secret_hash("s"))
            .map(|key| key.id.as_str());
        assert_eq!(found, Some("new"));
        assert_eq!(app.live_key(&crate::secret_hash("c")), None);
        assert_eq!(app.live_key(&crate::secret_hash("x")), None);
    }

    #[test]
    fn key_kinds_have_lowercase_names() {
        assert_eq!(KeyKind::Server.as_str(), "server");
        assert_eq!(KeyKind::Client.as_str(), "client");
        let json = serde_json::to_string(&KeyKind::Client).unwrap();
        assert_eq!(json, "\"client\"");
    }
}

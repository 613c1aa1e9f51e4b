//! The records the store keeps and answers.

use ringpush_protocol::token::DeviceToken;
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
    /// Every payload sent to the app's devices is sealed to the device's key, so that
    /// connectors and the store hold only ciphertext. Chosen when the app is created.
    #[serde(default)]
    pub payload_sealing: bool,
}

impl AppRecord {
    /// The unrevoked server or client key with this hash, if the app has one.
    pub fn live_key(&self, hash: &[u8; 32]) -> Option<&AppKey> {
        self.keys.iter().find(|key| {
            key.kind != KeyKind::TokenSigning && key.revoked_at_ms.is_none() && key.hash == *hash
        })
    }

    /// The key that signs new device tokens: the newest unrevoked token-signing key.
    pub fn token_signing_key(&self) -> Option<&AppKey> {
        self.keys
            .iter()
            .filter(|key| key.kind == KeyKind::TokenSigning && key.revoked_at_ms.is_none())
            .max_by_key(|key| key.created_at_ms)
    }

    /// A device token for `device`, signed by [`Self::token_signing_key`], valid from `now_ms`
    /// for `lifetime_ms`; `None` if the app has no live token-signing key.
    pub fn issue_device_token(
        &self,
        device: DeviceId,
        now_ms: i64,
        lifetime_ms: i64,
    ) -> Option<String> {
        let key = self.token_signing_key()?;
        Some(DeviceToken::sign(
            device,
            &key.id,
            &key.hash,
            now_ms,
            // A token names times of at most 15 digits: a lifetime past them is cut there.
            now_ms
                .saturating_add(lifetime_ms.max(1))
                .min(ringpush_protocol::token::MAX_TIME_MS),
        ))
    }

    /// Checks the token a device presents: well formed, signed for `device` by a live
    /// token-signing key of this app, not expired at `now_ms`. Answers the parsed token.
    pub fn check_device_token<'t>(
        &self,
        device: DeviceId,
        text: &'t str,
        now_ms: i64,
    ) -> Result<DeviceToken<'t>, TokenRejection> {
        let token = DeviceToken::parse(text).map_err(|_| TokenRejection::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|key| key.kind == KeyKind::TokenSigning && key.id == token.key_id)
            .ok_or(TokenRejection::UnknownKey)?;
        if !token.verify(device, &key.hash) {
            return Err(TokenRejection::BadSignature);
        }
        if key.revoked_at_ms.is_some() {
            return Err(TokenRejection::KeyRevoked);
        }
        if token.expires_at_ms <= now_ms {
            return Err(TokenRejection::Expired);
        }
        Ok(token)
    }
}

impl TokenRejection {
    /// A short name, for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::KeyRevoked => "key_revoked",
            Self::Expired => "expired",
        }
    }
}

/// Why a device token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("the device token is malformed")]
    Malformed,
    #[error("the device token names no token-signing key of the device's app")]
    UnknownKey,
    #[error("the device token is not signed for this device")]
    BadSignature,
    #[error("the key that signed the device token was revoked: register the device again")]
    KeyRevoked,
    #[error("the device token expired: register the device again")]
    Expired,
}

/// Which kind of credential a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// Sends messages and reads statuses: for the app's backend only.
    Server,
    /// Registers devices: shipped inside the app.
    Client,
    /// Signs device tokens; nobody presents it. Revoking it ends every token it signed.
    #[serde(rename = "token_signing")]
    TokenSigning,
}

impl KeyKind {
    /// `"server"` or `"client"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
            Self::TokenSigning => "token_signing",
        }
    }
}

/// One key of an app: the caller holds the secret, the store its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppKey {
    /// Chosen by the caller: `[A-Za-z0-9_-]`, at most 40 characters, unique in its app.
    pub id: String,
    pub kind: KeyKind,
    /// SHA-256 of a server or client key (see [`crate::secret_hash`]). Of a token-signing
    /// key, its HMAC secret itself: the store must hold it so that every process can check
    /// tokens, and nothing presents it.
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

/// A registered device. Its tokens are signed by its app's token-signing keys, so the
/// record holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub app: AppId,
    pub created_at_ms: i64,
    /// The device's public key for sealed payloads, if it gave one at registration.
    pub sealing: Option<DeviceSealing>,
}

/// What a device said at registration about reading sealed payloads (see
/// `ringpush_protocol::seal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSealing {
    /// Its X25519 public key (checked at registration).
    pub public_key: [u8; 32],
    /// It decompresses LZ4: long payloads are compressed before sealing.
    pub lz4: bool,
}

/// How a payload is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentType {
    /// UTF-8 JSON.
    Json,
    /// UTF-8 text.
    Text,
    /// Sealed to the device (`ringpush_protocol::seal`): the payload is an envelope whose
    /// content names the real type.
    Sealed,
}

impl ContentType {
    /// The MIME type sent to devices.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Text => "text/plain; charset=utf-8",
            Self::Sealed => ringpush_protocol::seal::SEALED_CONTENT_TYPE,
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
            payload_sealing: false,
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

#[cfg(test)]
mod token_tests {
    use super::*;

    fn signing_key(id: &str, created_at_ms: i64) -> AppKey {
        AppKey {
            id: id.to_owned(),
            kind: KeyKind::TokenSigning,
            hash: rand::random(),
            created_at_ms,
            revoked_at_ms: None,
            scopes: Vec::new(),
        }
    }

    fn app(keys: Vec<AppKey>) -> AppRecord {
        AppRecord {
            id: AppId(1),
            name: "tokens".into(),
            keys,
            created_at_ms: 0,
            payload_sealing: false,
        }
    }

    #[test]
    fn the_newest_live_key_signs_and_every_unrevoked_key_is_accepted() {
        let (device, other) = (DeviceId(10), DeviceId(11));
        let mut app = app(vec![signing_key("tk_old", 1), signing_key("tk_new", 2)]);
        let token = app
            .issue_device_token(device, 1_000, 60_000)
            .expect("a key");
        assert!(token.starts_with("dt1.tk_new."), "{token}");
        let checked = app
            .check_device_token(device, &token, 2_000)
            .expect("valid");
        assert_eq!(checked.expires_at_ms, 61_000);
        assert_eq!(
            app.check_device_token(other, &token, 2_000),
            Err(TokenRejection::BadSignature)
        );
        assert_eq!(
            app.check_device_token(device, &token, 61_000),
            Err(TokenRejection::Expired)
        );
        // Rotation: revoking the signing key ends its tokens, and the older key signs.
        app.keys[1].revoked_at_ms = Some(3_000);
        assert_eq!(
            app.check_device_token(device, &token, 4_000),
            Err(TokenRejection::KeyRevoked)
        );
        let renewed = app
            .issue_device_token(device, 4_000, 60_000)
            .expect("a key");
        assert!(renewed.starts_with("dt1.tk_old."), "{renewed}");
        assert!(app.check_device_token(device, &renewed, 5_000).is_ok());
        app.keys[0].revoked_at_ms = Some(6_000);
        assert_eq!(app.issue_device_token(device, 7_000, 60_000), None);
    }

    #[test]
    fn a_lifetime_past_the_last_token_time_is_cut_there() {
        // A token names times of at most 15 digits; an expiry past that would make a token
        // that no connector can parse.
        let device = DeviceId(10);
        let app = app(vec![signing_key("tk_1", 1)]);
        let token = app
            .issue_device_token(device, 1_000, i64::MAX)
            .expect("a key");
        let checked = app
            .check_device_token(device, &token, 2_000)
            .expect("valid");
        assert_eq!(checked.expires_at_ms, ringpush_protocol::token::MAX_TIME_MS);
    }

    #[test]
    fn a_token_of_another_app_or_no_token_is_refused() {
        let device = DeviceId(10);
        let ours = app(vec![signing_key("tk_1", 1)]);
        let theirs = app(vec![signing_key("tk_1", 1)]);
        let token = theirs.issue_device_token(device, 0, 60_000).expect("a key");
        assert_eq!(
            ours.check_device_token(device, &token, 1),
            Err(TokenRejection::BadSignature)
        );
        assert_eq!(
            ours.check_device_token(device, "dt_legacy", 1),
            Err(TokenRejection::Malformed)
        );
        let unknown = DeviceToken::sign(device, "tk_2", &[0; 32], 0, 60_000);
        assert_eq!(
            ours.check_device_token(device, &unknown, 1),
            Err(TokenRejection::UnknownKey)
        );
    }
}

//! How records are laid out in Redis values.
//!
//! An inbox member is the seq (u64, big-endian: members are unique, and sort by seq within a
//! score) followed by the entry body of `crate::inbox_record`. The Rust side builds the body
//! ([`member_body`]); the append script prepends the seq it
//! draws. Apps and devices are hashes of text fields, hashes in hex.

use std::collections::HashMap;

use ringpush_protocol::{AppId, DeviceId};
use ringpush_ring::Member;
use serde::{Deserialize, Serialize};

use crate::{
    AppRecord, DeviceRecord, NewMessage, StoreError, StoreResult, StoredMessage, inbox_record,
};

/// Bytes 8.. of an inbox member: everything but the seq.
pub(super) fn member_body(message: &NewMessage) -> Vec<u8> {
    inbox_record::entry_body(message)
}

/// Reads an inbox member back; `key` names the inbox in the error.
pub(super) fn decode_member(key: &str, member: &[u8]) -> StoreResult<StoredMessage> {
    let Some((seq, body)) = member.split_first_chunk::<8>() else {
        return Err(corrupt(key, "inbox member shorter than its seq"));
    };
    inbox_record::decode_entry(u64::from_be_bytes(*seq), body)
        .map_err(|detail| corrupt(key, &detail))
}

/// Field, value pairs of an app's hash.
pub(super) fn app_fields(app: &AppRecord) -> Vec<(&'static str, String)> {
    vec![
        ("name", app.name.clone()),
        ("server_key_hash", hex::encode(app.server_key_hash)),
        ("client_key_hash", hex::encode(app.client_key_hash)),
        ("created_at", app.created_at_ms.to_string()),
    ]
}

/// Reads an app's hash back.
pub(super) fn decode_app(
    key: &str,
    id: AppId,
    mut fields: HashMap<String, String>,
) -> StoreResult<AppRecord> {
    Ok(AppRecord {
        id,
        name: fields
            .remove("name")
            .ok_or_else(|| corrupt(key, "missing field name"))?,
        server_key_hash: hash_field(key, &fields, "server_key_hash")?,
        client_key_hash: hash_field(key, &fields, "client_key_hash")?,
        created_at_ms: number_field(key, &fields, "created_at")?,
    })
}

/// Field, value pairs of a device's hash.
pub(super) fn device_fields(device: &DeviceRecord) -> Vec<(&'static str, String)> {
    vec![
        ("app", device.app.to_string()),
        ("token_hash", hex::encode(device.token_hash)),
        ("created_at", device.created_at_ms.to_string()),
    ]
}

/// Reads a device's hash back.
pub(super) fn decode_device(
    key: &str,
    id: DeviceId,
    fields: HashMap<String, String>,
) -> StoreResult<DeviceRecord> {
    let app = fields
        .get("app")
        .ok_or_else(|| corrupt(key, "missing field app"))?
        .parse()
        .map_err(|error| corrupt(key, &format!("field app: {error}")))?;
    Ok(DeviceRecord {
        id,
        app,
        token_hash: hash_field(key, &fields, "token_hash")?,
        created_at_ms: number_field(key, &fields, "created_at")?,
    })
}

/// A 32-byte hash from its hex text.
pub(super) fn decode_hash(key: &str, text: &str) -> StoreResult<[u8; 32]> {
    let mut hash = [0; 32];
    hex::decode_to_slice(text, &mut hash)
        .map_err(|error| corrupt(key, &format!("bad hex hash: {error}")))?;
    Ok(hash)
}

fn hash_field(key: &str, fields: &HashMap<String, String>, name: &str) -> StoreResult<[u8; 32]> {
    let text = fields
        .get(name)
        .ok_or_else(|| corrupt(key, &format!("missing field {name}")))?;
    decode_hash(key, text)
}

fn number_field(key: &str, fields: &HashMap<String, String>, name: &str) -> StoreResult<i64> {
    fields
        .get(name)
        .ok_or_else(|| corrupt(key, &format!("missing field {name}")))?
        .parse()
        .map_err(|error| corrupt(key, &format!("field {name}: {error}")))
}

/// What a lease stores about a member besides its id.
#[derive(Serialize, Deserialize)]
struct MemberInfo {
    device_url: String,
    grpc_url: String,
}

/// The JSON stored for a member.
pub(super) fn member_info_json(member: &Member) -> String {
    let info = MemberInfo {
        device_url: member.device_url.clone(),
        grpc_url: member.grpc_url.clone(),
    };
    // Serializing two strings into JSON cannot fail.
    serde_json::to_string(&info).unwrap_or_default()
}

/// A member from its id and stored JSON.
pub(super) fn decode_member_info(key: &str, id: String, json: &[u8]) -> StoreResult<Member> {
    let info: MemberInfo = serde_json::from_slice(json)
        .map_err(|error| corrupt(key, &format!("member {id}: {error}")))?;
    Ok(Member {
        id,
        device_url: info.device_url,
        grpc_url: info.grpc_url,
    })
}

pub(super) fn corrupt(key: &str, detail: &str) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ContentType;

    #[test]
    fn member_round_trip() {
        let message = NewMessage {
            device: DeviceId(1),
            payload: b"{\"a\":1}".to_vec(),
            content_type: ContentType::Json,
            created_at_ms: -5,
            expires_at_ms: 1_700_000_000_000,
            idempotency_key: None,
            options: crate::MessageOptions::default(),
            campaign_id: Some("camp".to_owned()),
        };
        let mut member = 42u64.to_be_bytes().to_vec();
        member.extend(member_body(&message));
        let stored = decode_member("k", &member).unwrap();
        assert_eq!(stored.seq, 42);
        assert_eq!(stored.created_at_ms, -5);
        assert_eq!(stored.expires_at_ms, 1_700_000_000_000);
        assert_eq!(stored.content_type, ContentType::Json);
        assert_eq!(stored.payload, message.payload);
        assert_eq!(stored.campaign_id.as_deref(), Some("camp"));
    }

    #[test]
    fn short_or_unknown_members_are_corrupt() {
        assert!(matches!(
            decode_member("k", &[0; 10]),
            Err(StoreError::Corrupt { .. })
        ));
        let mut member = vec![0; 24];
        member.push(9);
        assert!(matches!(
            decode_member("k", &member),
            Err(StoreError::Corrupt { .. })
        ));
    }
}

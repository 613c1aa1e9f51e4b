//! How records are laid out in Redis values.
//!
//! An inbox member is the seq (u64, big-endian: members are unique, and sort by seq within a
//! score) followed by the entry body of `crate::inbox_record`. The Rust side builds the body
//! ([`member_body`]); the append script prepends the seq it
//! draws. Apps and devices are hashes of text fields, hashes in hex.
//!
//! An app's key `<id>` is the field `key:<id>` of the app's hash, whose value is six words
//! separated by single spaces: `<ordinal> <kind> <hash hex> <created_at> <scopes>
//! <revoked_at or ->`, e.g. `1 server 9f86…0a08 1700000000000 send,read_stats -`; scopes are
//! comma-separated, `none` for none, and a value of five words (written before scopes) has
//! every scope. The ordinal (0, 1, … in the order keys were
//! added; keys are never removed, so the add script takes the count of key fields) keeps
//! creation order, which a hash does not; `-` marks a live key.

use std::collections::HashMap;

use ringpush_protocol::{AppId, DeviceId};
use ringpush_ring::Member;
use serde::{Deserialize, Serialize};

use crate::{
    AppKey, AppRecord, DeviceRecord, DeviceSealing, KeyKind, KeyScope, NewMessage, StoreError,
    StoreResult, StoredMessage, inbox_record,
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

/// Prefix of the hash fields that hold an app's keys.
pub(super) const KEY_FIELD_PREFIX: &str = "key:";

/// The field of an app's key.
pub(super) fn key_field(id: &str) -> String {
    format!("{KEY_FIELD_PREFIX}{id}")
}

/// A key's value without its leading ordinal (which the add script prepends).
pub(super) fn key_value_tail(key: &AppKey) -> String {
    let revoked = key
        .revoked_at_ms
        .map_or_else(|| "-".to_owned(), |at| at.to_string());
    let scopes: Vec<&str> = key.scopes.iter().map(|scope| scope.as_str()).collect();
    let scopes = if scopes.is_empty() {
        "none".to_owned()
    } else {
        scopes.join(",")
    };
    format!(
        "{} {} {} {scopes} {revoked}",
        key.kind.as_str(),
        hex::encode(key.hash),
        key.created_at_ms
    )
}

/// Field, value pairs of an app's hash.
pub(super) fn app_fields(app: &AppRecord) -> Vec<(String, String)> {
    let mut fields = vec![
        ("name".to_owned(), app.name.clone()),
        ("created_at".to_owned(), app.created_at_ms.to_string()),
    ];
    if app.payload_sealing {
        fields.push(("payload_sealing".to_owned(), "1".to_owned()));
    }
    for (ordinal, key) in app.keys.iter().enumerate() {
        let value = format!("{ordinal} {}", key_value_tail(key));
        fields.push((key_field(&key.id), value));
    }
    fields
}

/// Reads an app's hash back; fields other than its name, creation time and keys are ignored.
pub(super) fn decode_app(
    key: &str,
    id: AppId,
    mut fields: HashMap<String, String>,
) -> StoreResult<AppRecord> {
    let mut keys = Vec::new();
    for (field, value) in &fields {
        if let Some(key_id) = field.strip_prefix(KEY_FIELD_PREFIX) {
            keys.push(decode_key(key, key_id, value)?);
        }
    }
    keys.sort_by_key(|(ordinal, _)| *ordinal);
    Ok(AppRecord {
        id,
        name: fields
            .remove("name")
            .ok_or_else(|| corrupt(key, "missing field name"))?,
        keys: keys.into_iter().map(|(_, app_key)| app_key).collect(),
        created_at_ms: number_field(key, &fields, "created_at")?,
        payload_sealing: fields
            .get("payload_sealing")
            .is_some_and(|flag| flag == "1"),
    })
}

/// One key's value read back, with its ordinal.
fn decode_key(key: &str, id: &str, value: &str) -> StoreResult<(u64, AppKey)> {
    let bad = |detail: &str| corrupt(key, &format!("key {id}: {detail}"));
    let words: Vec<&str> = value.split(' ').collect();
    // Five words: written before keys had scopes (they have all of them).
    let (ordinal, kind, hash, created_at, scopes, revoked_at) = match words[..] {
        [ordinal, kind, hash, created_at, scopes, revoked_at] => {
            (ordinal, kind, hash, created_at, Some(scopes), revoked_at)
        }
        [ordinal, kind, hash, created_at, revoked_at] => {
            (ordinal, kind, hash, created_at, None, revoked_at)
        }
        _ => return Err(bad("expected 6 words")),
    };
    let scopes = match scopes {
        None => KeyScope::all(),
        Some("none") => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|name| {
                KeyScope::parse(name).ok_or_else(|| bad(&format!("unknown scope {name:?}")))
            })
            .collect::<StoreResult<_>>()?,
    };
    let kind = match kind {
        "server" => KeyKind::Server,
        "client" => KeyKind::Client,
        "token_signing" => KeyKind::TokenSigning,
        other => return Err(bad(&format!("unknown kind {other:?}"))),
    };
    let number = |text: &str| -> StoreResult<i64> {
        text.parse()
            .map_err(|error| bad(&format!("{text:?}: {error}")))
    };
    let revoked_at_ms = match revoked_at {
        "-" => None,
        text => Some(number(text)?),
    };
    let ordinal = ordinal
        .parse()
        .map_err(|error| bad(&format!("ordinal: {error}")))?;
    let app_key = AppKey {
        id: id.to_owned(),
        kind,
        hash: decode_hash(key, hash)?,
        created_at_ms: number(created_at)?,
        revoked_at_ms,
        scopes,
    };
    Ok((ordinal, app_key))
}

/// Field, value pairs of a device's hash.
pub(super) fn device_fields(device: &DeviceRecord) -> Vec<(String, String)> {
    let mut fields = vec![
        ("app".to_owned(), device.app.to_string()),
        ("created_at".to_owned(), device.created_at_ms.to_string()),
    ];
    if let Some(sealing) = &device.sealing {
        fields.push(("seal_key".to_owned(), hex::encode(sealing.public_key)));
        fields.push(("seal_lz4".to_owned(), u8::from(sealing.lz4).to_string()));
    }
    fields
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
    let sealing = match fields.get("seal_key") {
        Some(public_key) => Some(DeviceSealing {
            public_key: decode_hash(key, public_key)?,
            lz4: fields.get("seal_lz4").is_some_and(|flag| flag == "1"),
        }),
        None => None,
    };
    Ok(DeviceRecord {
        id,
        app,
        created_at_ms: number_field(key, &fields, "created_at")?,
        sealing,
    })
}

/// A 32-byte hash from its hex text.
pub(super) fn decode_hash(key: &str, text: &str) -> StoreResult<[u8; 32]> {
    let mut hash = [0; 32];
    hex::decode_to_slice(text, &mut hash)
        .map_err(|error| corrupt(key, &format!("bad hex hash: {error}")))?;
    Ok(hash)
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
    fn apps_round_trip_their_keys_in_creation_order() {
        let key = |id: &str, kind, revoked_at_ms| AppKey {
            id: id.to_owned(),
            kind,
            hash: crate::secret_hash(id),
            created_at_ms: 7,
            revoked_at_ms,
            scopes: crate::KeyScope::all(),
        };
        let app = AppRecord {
            id: AppId(9),
            name: "a b".to_owned(),
            // More than ten, so that ordinals sorted as text would come out of order.
            keys: (0..12)
                .map(|n| key(&format!("k{}", 12 - n), KeyKind::Client, None))
                .chain([key("s-1", KeyKind::Server, Some(-3))])
                .collect(),
            created_at_ms: 5,
            payload_sealing: false,
        };
        let fields: HashMap<String, String> = app_fields(&app).into_iter().collect();
        assert_eq!(decode_app("k", AppId(9), fields).unwrap(), app);
    }

    #[test]
    fn bad_key_values_are_corrupt() {
        let hash = "ab".repeat(32);
        for value in [
            "0 client 00 1 -".to_owned(),
            format!("0 root {hash} 1 -"),
            format!("x client {hash} 1 -"),
            format!("0 client {hash} 1 never"),
            format!("0 client {hash} 1"),
        ] {
            let fields = HashMap::from([
                ("name".to_owned(), "a".to_owned()),
                ("created_at".to_owned(), "1".to_owned()),
                ("key:k".to_owned(), value.clone()),
            ]);
            let result = decode_app("k", AppId(1), fields);
            assert!(matches!(result, Err(StoreError::Corrupt { .. })), "{value}");
        }
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

//! The redb tables of the embedded store and the byte layout of their keys and values.
//!
//! All integers are big-endian, so that byte order is numeric order and a range scan over
//! `device ++ seq` reads one device's inbox in seq order.
//!
//! | table | key | value |
//! |---|---|---|
//! | `apps` | app id (8) | JSON of `AppRecord` (name, created_at, keys in creation order with kind, hash as 32 numbers, created and revoked times) |
//! | `devices` | device id (16) | app id (8), 32 bytes unused (zeros; held a token hash before tokens were signed), created_at (8) |
//! | `positions` | device id (16) | last seq, delivered, acked, inbox rows (8 each) |
//! | `inbox` | device id (16) ++ seq (8) | the entry body of `crate::inbox_record` |
//! | `idempotency` | scope (1: `m` append marker, `r` request) ++ device or app id ++ key | expires_at (8) ++ seq (8) or fingerprint (32) |
//! | `idempotency_expiry` | expires_at (8) ++ idempotency key | (), to sweep expired records in expiry order |
//! | `collapse` | device id (16) ++ collapse key (UTF-8) | seq (8) of the device's latest message with the key |

use redb::TableDefinition;
use ringpush_protocol::{AppId, DeviceId};

use crate::{AppRecord, DeviceRecord, StoreError, StoreResult, StoredMessage, inbox_record};

pub(super) const APPS: TableDefinition<&[u8; 8], &[u8]> = TableDefinition::new("apps");
pub(super) const DEVICES: TableDefinition<&[u8; 16], &[u8; 48]> = TableDefinition::new("devices");
/// Devices that gave a key for sealed payloads: the key, then 1 if they decompress LZ4.
pub(super) const DEVICE_SEALING: TableDefinition<&[u8; 16], &[u8; 33]> =
    TableDefinition::new("device_sealing");
pub(super) const POSITIONS: TableDefinition<&[u8; 16], &[u8; 32]> =
    TableDefinition::new("positions");
pub(super) const INBOX: TableDefinition<&[u8; 24], &[u8]> = TableDefinition::new("inbox");
pub(super) const IDEMPOTENCY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("idempotency");
pub(super) const IDEMPOTENCY_EXPIRY: TableDefinition<&[u8], ()> =
    TableDefinition::new("idempotency_expiry");
pub(super) const COLLAPSE: TableDefinition<&[u8], u64> = TableDefinition::new("collapse");

/// Key of a device's collapse key in `collapse`.
pub(super) fn collapse_key(device: DeviceId, key: &str) -> Vec<u8> {
    let mut bytes = device.0.to_be_bytes().to_vec();
    bytes.extend_from_slice(key.as_bytes());
    bytes
}

/// Scope byte of an append marker in `idempotency`.
const APPEND_MARKER: u8 = b'm';
/// Scope byte of a request fingerprint in `idempotency`.
const REQUEST: u8 = b'r';

/// Key of an inbox entry.
pub(super) fn inbox_key(device: DeviceId, seq: u64) -> [u8; 24] {
    let mut key = [0; 24];
    key[..16].copy_from_slice(&device.0.to_be_bytes());
    key[16..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The seq of an inbox key.
pub(super) fn inbox_key_seq(key: &[u8; 24]) -> u64 {
    u64::from_be_bytes(word(&key[16..]))
}

/// When an inbox entry expires, read without copying its payload.
pub(super) fn inbox_value_expires_at(value: &[u8]) -> StoreResult<i64> {
    inbox_record::body_expires_at(value).map_err(|detail| corrupt("inbox", &detail))
}

/// An inbox entry read back.
pub(super) fn decode_inbox_entry(key: &[u8; 24], value: &[u8]) -> StoreResult<StoredMessage> {
    inbox_record::decode_entry(inbox_key_seq(key), value)
        .map_err(|detail| corrupt("inbox", &detail))
}

/// A device's inbox positions and how many inbox rows it has (expired or not), kept so that
/// the cap needs no count.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Positions {
    pub(super) last_seq: u64,
    pub(super) delivered_up_to: u64,
    pub(super) acked_up_to: u64,
    pub(super) rows: u64,
}

impl Positions {
    pub(super) fn decode(value: &[u8; 32]) -> Self {
        Self {
            last_seq: u64::from_be_bytes(word(&value[..8])),
            delivered_up_to: u64::from_be_bytes(word(&value[8..16])),
            acked_up_to: u64::from_be_bytes(word(&value[16..24])),
            rows: u64::from_be_bytes(word(&value[24..])),
        }
    }

    pub(super) fn encode(&self) -> [u8; 32] {
        let mut value = [0; 32];
        value[..8].copy_from_slice(&self.last_seq.to_be_bytes());
        value[8..16].copy_from_slice(&self.delivered_up_to.to_be_bytes());
        value[16..24].copy_from_slice(&self.acked_up_to.to_be_bytes());
        value[24..].copy_from_slice(&self.rows.to_be_bytes());
        value
    }
}

pub(super) fn encode_app(app: &AppRecord) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(app).map_err(|error| corrupt("apps", &format!("app {}: {error}", app.id)))
}

pub(super) fn decode_app(id: AppId, value: &[u8]) -> StoreResult<AppRecord> {
    let app: AppRecord = serde_json::from_slice(value)
        .map_err(|error| corrupt("apps", &format!("app {id}: {error}")))?;
    if app.id != id {
        return Err(corrupt(
            "apps",
            &format!("app {id} holds the record of {}", app.id),
        ));
    }
    Ok(app)
}

/// An app record in the layout before keys were a list (server key hash, client key hash,
/// created, name), as the record it is now: its two keys become `key_server` and
/// `key_client`. `None` for any other value.
pub(super) fn decode_legacy_app(id: AppId, value: &[u8]) -> Option<AppRecord> {
    if value.len() < 72 || value.first() == Some(&b'{') {
        return None;
    }
    let name = String::from_utf8(value[72..].to_vec()).ok()?;
    let created_at_ms = i64::from_be_bytes(word(&value[64..72]));
    let key = |id: &str, kind, hash_bytes: &[u8]| crate::AppKey {
        id: id.to_owned(),
        kind,
        hash: hash(hash_bytes),
        created_at_ms,
        revoked_at_ms: None,
        scopes: crate::KeyScope::all(),
    };
    Some(AppRecord {
        id,
        name,
        keys: vec![
            key("key_server", crate::KeyKind::Server, &value[..32]),
            key("key_client", crate::KeyKind::Client, &value[32..64]),
        ],
        created_at_ms,
        payload_sealing: false,
    })
}

pub(super) fn encode_device(device: &DeviceRecord) -> [u8; 48] {
    let mut value = [0; 48];
    value[..8].copy_from_slice(&device.app.0.to_be_bytes());
    value[40..].copy_from_slice(&device.created_at_ms.to_be_bytes());
    value
}

pub(super) fn decode_device(
    id: DeviceId,
    value: &[u8; 48],
    sealing: Option<&[u8; 33]>,
) -> DeviceRecord {
    DeviceRecord {
        id,
        app: AppId(u64::from_be_bytes(word(&value[..8]))),
        created_at_ms: i64::from_be_bytes(word(&value[40..])),
        sealing: sealing.map(|value| crate::DeviceSealing {
            public_key: hash(&value[..32]),
            lz4: value[32] == 1,
        }),
    }
}

/// The sealing row of a device that gave a key.
pub(super) fn encode_device_sealing(sealing: &crate::DeviceSealing) -> [u8; 33] {
    let mut value = [0; 33];
    value[..32].copy_from_slice(&sealing.public_key);
    value[32] = u8::from(sealing.lz4);
    value
}

/// Key of an append marker: scope, device, the caller's idempotency key.
pub(super) fn append_marker_key(device: DeviceId, idempotency_key: &str) -> Vec<u8> {
    scoped_key(APPEND_MARKER, &device.0.to_be_bytes(), idempotency_key)
}

/// Key of a request fingerprint: scope, app, the caller's idempotency key.
pub(super) fn request_key(app: AppId, idempotency_key: &str) -> Vec<u8> {
    scoped_key(REQUEST, &app.0.to_be_bytes(), idempotency_key)
}

fn scoped_key(scope: u8, owner: &[u8], idempotency_key: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + owner.len() + idempotency_key.len());
    key.push(scope);
    key.extend_from_slice(owner);
    key.extend_from_slice(idempotency_key.as_bytes());
    key
}

/// Splits an idempotency value into its expiry and its data.
pub(super) fn split_idempotency_value(value: &[u8]) -> StoreResult<(i64, &[u8])> {
    if value.len() < 8 {
        return Err(corrupt("idempotency", "record shorter than its expiry"));
    }
    Ok((i64::from_be_bytes(word(&value[..8])), &value[8..]))
}

pub(super) fn hash(bytes: &[u8]) -> [u8; 32] {
    let mut hash = [0; 32];
    hash.copy_from_slice(&bytes[..32]);
    hash
}

/// The first 8 bytes of a slice that has at least 8.
pub(super) fn word(bytes: &[u8]) -> [u8; 8] {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[..8]);
    word
}

pub(super) fn corrupt(table: &str, detail: &str) -> StoreError {
    StoreError::Corrupt {
        key: format!("redb table {table}"),
        detail: detail.to_owned(),
    }
}

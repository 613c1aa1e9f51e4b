//! The byte layout of an inbox entry, shared by both backends: the Redis inbox member is the
//! seq (8 bytes) followed by this body; the redb value is the body alone (the seq is in the
//! key). All integers big-endian.
//!
//! | bytes (of the body) | field |
//! |---|---|
//! | 0..8 | created_at_ms (i64) |
//! | 8..16 | expires_at_ms (i64): the Redis scripts read it here (member bytes 17..24) |
//! | 16 | content type in bits 0..7: 0 JSON, 1 text; bit 7 set when extras follow |
//! | 17.. | with bit 7: the extras' length (u32) and the extras (JSON: the fields of `MessageOptions` and `campaign_id`); then the payload |
//!
//! A message without options or campaign has the layout it had before they existed.

use serde::{Deserialize, Serialize};

use crate::record_bytes::{put_block, read_block, word};
use crate::{ContentType, MessageOptions, NewMessage, StoredMessage};

/// What an entry holds beyond its header and payload, when it holds anything.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Extras {
    #[serde(flatten)]
    options: MessageOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    campaign_id: Option<String>,
}

/// Length of the body before its options and payload.
pub(crate) const BODY_HEADER_LEN: usize = 17;
const HAS_OPTIONS: u8 = 0x80;

/// The entry's bytes after the seq.
pub(crate) fn entry_body(message: &NewMessage) -> Vec<u8> {
    let options = if message.options.is_empty() && message.campaign_id.is_none() {
        Vec::new()
    } else {
        let extras = Extras {
            options: message.options.clone(),
            campaign_id: message.campaign_id.clone(),
        };
        serde_json::to_vec(&extras).expect("extras serialize")
    };
    let mut body = Vec::with_capacity(BODY_HEADER_LEN + 4 + options.len() + message.payload.len());
    body.extend_from_slice(&message.created_at_ms.to_be_bytes());
    body.extend_from_slice(&message.expires_at_ms.to_be_bytes());
    let content_type = match message.content_type {
        ContentType::Json => 0,
        ContentType::Text => 1,
        ContentType::Sealed => 2,
    };
    if options.is_empty() {
        body.push(content_type);
    } else {
        body.push(content_type | HAS_OPTIONS);
        put_block(&mut body, &options);
    }
    body.extend_from_slice(&message.payload);
    body
}

/// When the entry of this body expires, read without copying anything.
pub(crate) fn body_expires_at(body: &[u8]) -> Result<i64, String> {
    body.get(8..16)
        .map(|bytes| i64::from_be_bytes(word(bytes)))
        .ok_or_else(|| "inbox entry shorter than its header".to_owned())
}

/// An entry read back from its seq and body; the error says what is wrong with the bytes.
pub(crate) fn decode_entry(seq: u64, body: &[u8]) -> Result<StoredMessage, String> {
    if body.len() < BODY_HEADER_LEN {
        return Err("inbox entry shorter than its header".to_owned());
    }
    let content_type = match body[16] & !HAS_OPTIONS {
        0 => ContentType::Json,
        1 => ContentType::Text,
        2 => ContentType::Sealed,
        other => return Err(format!("unknown content type byte {other}")),
    };
    let mut at = BODY_HEADER_LEN;
    let extras = if body[16] & HAS_OPTIONS != 0 {
        let bytes = read_block(body, &mut at, "inbox entry")?;
        serde_json::from_slice::<Extras>(bytes)
            .map_err(|error| format!("inbox entry extras: {error}"))?
    } else {
        Extras::default()
    };
    Ok(StoredMessage {
        seq,
        created_at_ms: i64::from_be_bytes(word(&body[..8])),
        expires_at_ms: i64::from_be_bytes(word(&body[8..16])),
        content_type,
        payload: body[at..].to_vec(),
        options: extras.options,
        campaign_id: extras.campaign_id,
    })
}

#[cfg(test)]
mod tests {
    use ringpush_protocol::DeviceId;

    use super::*;
    use crate::{Notification, Priority};

    fn message(options: MessageOptions) -> NewMessage {
        NewMessage {
            device: DeviceId(7),
            payload: b"{\"n\":1}".to_vec(),
            content_type: ContentType::Text,
            created_at_ms: -5,
            expires_at_ms: 1_700_000_000_000,
            idempotency_key: None,
            options,
            campaign_id: None,
        }
    }

    #[test]
    fn entries_round_trip_with_and_without_options() {
        let with = MessageOptions {
            collapse_key: Some("k".into()),
            priority: Priority::High,
            notification: Some(Notification {
                body: Some("hi".into()),
                ..Notification::default()
            }),
        };
        for options in [MessageOptions::default(), with] {
            let new = message(options);
            let body = entry_body(&new);
            let read = decode_entry(3, &body).expect("decode");
            assert_eq!(read.seq, 3);
            assert_eq!(read.payload, new.payload);
            assert_eq!(read.content_type, ContentType::Text);
            assert_eq!(
                (read.created_at_ms, read.expires_at_ms),
                (-5, new.expires_at_ms)
            );
            assert_eq!(read.options, new.options);
            assert_eq!(read.campaign_id, None);
            assert_eq!(body_expires_at(&body), Ok(new.expires_at_ms));
        }
    }

    #[test]
    fn the_campaign_rides_with_or_without_options() {
        for options in [
            MessageOptions::default(),
            MessageOptions {
                collapse_key: Some("k".into()),
                ..MessageOptions::default()
            },
        ] {
            let new = NewMessage {
                campaign_id: Some("camp-1".into()),
                ..message(options)
            };
            let read = decode_entry(1, &entry_body(&new)).expect("decode");
            assert_eq!(
                (read.campaign_id.as_deref(), read.options),
                (Some("camp-1"), new.options)
            );
        }
    }

    #[test]
    fn without_options_the_layout_is_the_old_one() {
        let body = entry_body(&message(MessageOptions::default()));
        assert_eq!(body.len(), BODY_HEADER_LEN + 7);
        assert_eq!(body[16], 1);
    }

    #[test]
    fn truncated_or_unknown_entries_are_refused() {
        let new = message(MessageOptions {
            collapse_key: Some("k".into()),
            ..MessageOptions::default()
        });
        let body = entry_body(&new);
        assert!(decode_entry(1, &body[..10]).is_err());
        assert!(decode_entry(1, &body[..BODY_HEADER_LEN + 2]).is_err());
        let mut bad = body.clone();
        bad[16] = 0x85;
        assert!(decode_entry(1, &bad).is_err());
    }
}

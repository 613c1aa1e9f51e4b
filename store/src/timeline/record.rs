//! The byte layout of a timeline entry, shared by both backends: the Redis timeline member is
//! the seq (8 bytes) followed by this body; the redb value is the body alone (the seq is in
//! the key). All integers big-endian.
//!
//! | bytes (of the Redis member) | field |
//! |---|---|
//! | 0..8 | seq (u64), Redis only: members are unique and sort by seq |
//! | 8..16 | created_at_ms (i64) |
//! | 16..24 | expires_at_ms (i64): the Lua scripts read it here, as in an inbox member |
//! | 24 | content type: 0 JSON, 1 text |
//! | 25 | flags: bit 0 set when a campaign id is present, bit 1 when options follow the strings |
//! | 26..30 | message id length (u32) |
//! | 30..34 | audience length (u32) |
//! | 34..38 | campaign id length (u32) |
//! | 38.. | message id, audience, campaign id (UTF-8); with bit 1, the options' length (u32) and the options (JSON, `MessageOptions`); then the payload |

use crate::record_bytes::{put_block, read_block, word};
use crate::{ContentType, MessageOptions, NewTimelineEntry, TimelineEntry};

/// Length of the body before its strings (the Redis member's header is 8 bytes more).
const BODY_HEADER_LEN: usize = 30;
const HAS_CAMPAIGN: u8 = 1;
const HAS_OPTIONS: u8 = 2;

/// The entry's bytes after the seq.
pub(crate) fn entry_body(entry: &NewTimelineEntry) -> Vec<u8> {
    let campaign = entry.campaign_id.as_deref().unwrap_or_default();
    let strings = [entry.message_id.as_str(), entry.audience.as_str(), campaign];
    let strings_len: usize = strings.iter().map(|text| text.len()).sum();
    let mut body = Vec::with_capacity(BODY_HEADER_LEN + strings_len + entry.payload.len());
    body.extend_from_slice(&entry.created_at_ms.to_be_bytes());
    body.extend_from_slice(&entry.expires_at_ms.to_be_bytes());
    body.push(match entry.content_type {
        ContentType::Json => 0,
        ContentType::Text => 1,
        ContentType::Sealed => 2,
    });
    let options = entry.options.encode();
    let mut flags = 0;
    if entry.campaign_id.is_some() {
        flags |= HAS_CAMPAIGN;
    }
    if !options.is_empty() {
        flags |= HAS_OPTIONS;
    }
    body.push(flags);
    for text in strings {
        // Ids and audiences are far below 4 GiB (the audience is capped at 1,024 characters).
        body.extend_from_slice(&(text.len() as u32).to_be_bytes());
    }
    for text in strings {
        body.extend_from_slice(text.as_bytes());
    }
    if !options.is_empty() {
        put_block(&mut body, &options);
    }
    body.extend_from_slice(&entry.payload);
    body
}

/// When the entry of this body expires, read without copying anything.
pub(crate) fn body_expires_at(body: &[u8]) -> Result<i64, String> {
    body.get(8..16)
        .map(|bytes| i64::from_be_bytes(word(bytes)))
        .ok_or_else(|| "timeline entry shorter than its header".to_owned())
}

/// The message id of this body, read without copying the rest.
pub(crate) fn body_message_id(body: &[u8]) -> Result<&str, String> {
    let lengths = lengths(body)?;
    let text = body
        .get(BODY_HEADER_LEN..BODY_HEADER_LEN + lengths[0])
        .ok_or_else(|| "timeline entry shorter than its message id".to_owned())?;
    std::str::from_utf8(text).map_err(|_| "timeline message id is not UTF-8".to_owned())
}

/// An entry read back from its seq and body; the error says what is wrong with the bytes.
pub(crate) fn decode_entry(seq: u64, body: &[u8]) -> Result<TimelineEntry, String> {
    let lengths = lengths(body)?;
    let content_type = match body[16] {
        0 => ContentType::Json,
        1 => ContentType::Text,
        2 => ContentType::Sealed,
        other => return Err(format!("unknown content type byte {other}")),
    };
    let mut at = BODY_HEADER_LEN;
    let mut next_text = |length: usize| -> Result<String, String> {
        let bytes = body
            .get(at..at + length)
            .ok_or_else(|| "timeline entry shorter than its strings".to_owned())?;
        at += length;
        String::from_utf8(bytes.to_vec()).map_err(|_| "timeline string is not UTF-8".to_owned())
    };
    let message_id = next_text(lengths[0])?;
    let audience = next_text(lengths[1])?;
    let campaign_id = next_text(lengths[2])?;
    let options = if body[17] & HAS_OPTIONS != 0 {
        let bytes = read_block(body, &mut at, "timeline entry")?;
        MessageOptions::decode("timeline entry", bytes).map_err(|error| error.to_string())?
    } else {
        MessageOptions::default()
    };
    Ok(TimelineEntry {
        seq,
        message_id,
        audience,
        payload: body[at..].to_vec(),
        content_type,
        created_at_ms: i64::from_be_bytes(word(&body[..8])),
        expires_at_ms: i64::from_be_bytes(word(&body[8..16])),
        campaign_id: (body[17] & HAS_CAMPAIGN != 0).then_some(campaign_id),
        options,
    })
}

/// The three string lengths, after checking the header is all there.
fn lengths(body: &[u8]) -> Result<[usize; 3], String> {
    if body.len() < BODY_HEADER_LEN {
        return Err("timeline entry shorter than its header".to_owned());
    }
    let length = |at: usize| {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(&body[at..at + 4]);
        u32::from_be_bytes(bytes) as usize
    };
    Ok([length(18), length(22), length(26)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(campaign_id: Option<&str>) -> NewTimelineEntry {
        NewTimelineEntry {
            message_id: "t-msg-1".to_owned(),
            audience: "vip and (cn or us)".to_owned(),
            payload: vec![0, 1, 2, 255],
            content_type: ContentType::Json,
            created_at_ms: -3,
            expires_at_ms: 1_700_000_000_000,
            campaign_id: campaign_id.map(str::to_owned),
            idempotency_key: Some("ignored".to_owned()),
            options: MessageOptions::default(),
        }
    }

    #[test]
    fn options_round_trip_and_keep_the_payload() {
        let mut new = entry(Some("camp"));
        new.options = MessageOptions {
            collapse_key: Some("score".to_owned()),
            priority: crate::Priority::High,
            notification: Some(crate::Notification {
                title: Some("Goal".to_owned()),
                ..Default::default()
            }),
        };
        let body = entry_body(&new);
        let read = decode_entry(4, &body).expect("decode");
        assert_eq!(read.options, new.options);
        assert_eq!(read.payload, new.payload);
        assert_eq!(read.campaign_id.as_deref(), Some("camp"));
        assert_eq!(
            decode_entry(4, &entry_body(&entry(None))).unwrap().options,
            MessageOptions::default()
        );
        assert!(decode_entry(4, &body[..body.len() - new.payload.len() - 2]).is_err());
    }

    #[test]
    fn body_round_trip_with_and_without_a_campaign() {
        for campaign_id in [None, Some(""), Some("camp-7")] {
            let new = entry(campaign_id);
            let body = entry_body(&new);
            let read = decode_entry(9, &body).expect("decode");
            assert_eq!(read.seq, 9);
            assert_eq!(read.message_id, new.message_id);
            assert_eq!(read.audience, new.audience);
            assert_eq!(read.payload, new.payload);
            assert_eq!(read.content_type, new.content_type);
            assert_eq!(
                (read.created_at_ms, read.expires_at_ms),
                (-3, new.expires_at_ms)
            );
            assert_eq!(read.campaign_id, new.campaign_id);
            assert_eq!(body_expires_at(&body), Ok(new.expires_at_ms));
            assert_eq!(body_message_id(&body), Ok("t-msg-1"));
        }
    }

    #[test]
    fn the_lua_offsets_match() {
        // The scripts read expires_at at member bytes 17..24 (1-based) and the message id
        // length at 27..30, the id itself from 39: body offsets + 8 for the seq.
        let body = entry_body(&entry(None));
        let mut member = 5u64.to_be_bytes().to_vec();
        member.extend_from_slice(&body);
        assert_eq!(&member[16..24], &1_700_000_000_000i64.to_be_bytes());
        assert_eq!(&member[26..30], &7u32.to_be_bytes());
        assert_eq!(&member[38..45], b"t-msg-1");
    }

    #[test]
    fn truncated_or_unknown_bodies_are_refused() {
        let body = entry_body(&entry(Some("c")));
        assert!(decode_entry(1, &body[..20]).is_err());
        assert!(decode_entry(1, &body[..BODY_HEADER_LEN + 3]).is_err());
        let mut bad = body.clone();
        bad[16] = 7;
        assert!(decode_entry(1, &bad).is_err());
    }
}

//! What one ringpush [`Push`] becomes in a Web Push message: the plaintext the browser's
//! service worker reads, and the `TTL`, `Urgency` and `Topic` headers (RFC 8030 section 5).
//!
//! The plaintext is JSON:
//! `{"ringpush":"<envelope>","notification":{"title":…,"body":…,"deep_link":…}}`, with the
//! envelope of [`ringpush_protocol::platform`] as a string and `notification` only when the
//! sender shaped one (empty fields left out). It must stay within
//! [`MAX_PLAINTEXT_LEN`] = 3993 bytes, so that the encrypted body stays within the 4096
//! bytes every push service accepts (86-byte header + plaintext + 1 delimiter + 16-byte tag).
//! Without a notification, `{"ringpush":""}` takes 15 of them and the whole envelope's six
//! quotes are escaped (6 more), so the whole frame rides along while its envelope text is at
//! most 3972 bytes: a protobuf `Push` of up to 2964 bytes (base64 grows it by a third).
//! Larger ones ride as the id-only envelope, and the SDK fetches the message by connecting;
//! a notification that does not fit even beside that is shortened (the body first).
//!
//! Does not own: encryption (`encrypt`), VAPID, sending.

use ring::digest::{SHA256, digest};
use ringpush_protocol::device::{Notification, Priority, Push};
use ringpush_protocol::platform::Envelope;
use serde::Serialize;

use super::encrypt::MAX_PLAINTEXT_LEN;

/// `TTL` when the push has no expiry: 28 days, what push services commonly keep at most.
const DEFAULT_TTL_SECONDS: u64 = 28 * 24 * 60 * 60;
/// RFC 8030 section 5.4: a topic is at most 32 characters of the base64url alphabet.
const MAX_TOPIC_LEN: usize = 32;
/// Quotes in a whole envelope's text (`{"v":1,"push":"…"}`), each escaped as `\"` inside the
/// plaintext's JSON string; base64's alphabet needs no escaping.
const WHOLE_ENVELOPE_ESCAPES: usize = 6;
/// What a shortened notification text ends with.
const ELLIPSIS: char = '…';

#[derive(Serialize)]
struct Plaintext<'a> {
    ringpush: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification: Option<&'a NotificationJson>,
}

#[derive(Clone, Serialize)]
struct NotificationJson {
    #[serde(skip_serializing_if = "String::is_empty")]
    title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    body: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    deep_link: String,
}

impl NotificationJson {
    fn of(notification: &Notification) -> Option<Self> {
        let json = Self {
            title: notification.title.clone(),
            body: notification.body.clone(),
            deep_link: notification.deep_link.clone(),
        };
        let empty = json.title.is_empty() && json.body.is_empty() && json.deep_link.is_empty();
        (!empty).then_some(json)
    }
}

/// The plaintext of `push`'s Web Push message, at most [`MAX_PLAINTEXT_LEN`] bytes (unless a
/// message id alone would not fit, which ringpush's ids never approach).
pub(crate) fn plaintext(push: &Push) -> Vec<u8> {
    let mut notification = push.notification.as_ref().and_then(NotificationJson::of);
    let around_envelope = render("", notification.as_ref()).len();
    let envelope_budget = MAX_PLAINTEXT_LEN
        .saturating_sub(around_envelope)
        .saturating_sub(WHOLE_ENVELOPE_ESCAPES);
    let envelope = Envelope::encode(push, envelope_budget);
    let text = render(&envelope, notification.as_ref());
    if text.len() <= MAX_PLAINTEXT_LEN {
        return text;
    }
    // Only a notification too large to share the message with gets here (or an envelope
    // whose shape changed): the id-only envelope, and the notification shortened to fit.
    let envelope = Envelope::encode(push, 0);
    loop {
        let text = render(&envelope, notification.as_ref());
        if text.len() <= MAX_PLAINTEXT_LEN {
            return text;
        }
        let excess = text.len() - MAX_PLAINTEXT_LEN;
        let Some(shown) = notification.as_mut() else {
            return text;
        };
        if !shown.body.is_empty() {
            shorten(&mut shown.body, excess);
        } else if !shown.deep_link.is_empty() {
            // A cut link leads nowhere: it goes whole.
            shown.deep_link.clear();
        } else if !shown.title.is_empty() {
            shorten(&mut shown.title, excess);
        } else {
            return text;
        }
    }
}

fn render(envelope: &str, notification: Option<&NotificationJson>) -> Vec<u8> {
    serde_json::to_vec(&Plaintext {
        ringpush: envelope,
        notification,
    })
    .expect("strings serialize")
}

/// Cuts `text` so that its JSON form is at least `excess` bytes shorter, ending it with an
/// ellipsis (or empties it when that cannot be done).
fn shorten(text: &mut String, excess: usize) {
    let to_remove = excess + ELLIPSIS.len_utf8();
    let mut removed = 0;
    while removed < to_remove {
        match text.pop() {
            Some(character) => removed += json_escaped_len(character),
            None => return,
        }
    }
    if text.is_empty() {
        return;
    }
    text.push(ELLIPSIS);
}

/// The bytes `character` takes inside a JSON string as serde_json writes it.
fn json_escaped_len(character: char) -> usize {
    match character {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        control if u32::from(control) < 0x20 => 6,
        other => other.len_utf8(),
    }
}

/// `TTL`: the seconds until the push expires (0 when it already has), or 28 days when it
/// never does (`expires_at_ms` 0).
pub(crate) fn ttl_seconds(expires_at_ms: i64, now_ms: i64) -> u64 {
    if expires_at_ms == 0 {
        return DEFAULT_TTL_SECONDS;
    }
    u64::try_from(expires_at_ms.saturating_sub(now_ms) / 1000).unwrap_or(0)
}

/// `Urgency`: `high` for a high-priority push, otherwise `normal`.
pub(crate) fn urgency(push: &Push) -> &'static str {
    match push.priority() {
        Priority::High => "high",
        Priority::Normal => "normal",
    }
}

/// `Topic`: the collapse key as it is when it is a valid topic, otherwise base64url of the
/// first 24 bytes of its SHA-256 (32 characters); `None` without a collapse key.
pub(crate) fn topic(collapse_key: &str) -> Option<String> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    if collapse_key.is_empty() {
        return None;
    }
    if is_topic(collapse_key) {
        return Some(collapse_key.to_owned());
    }
    let hash = digest(&SHA256, collapse_key.as_bytes());
    Some(URL_SAFE_NO_PAD.encode(&hash.as_ref()[..24]))
}

/// Whether `text` is a valid `Topic` as it is: 1 to 32 characters of the base64url
/// alphabet (RFC 8030 section 5.4).
pub(crate) fn is_topic(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_TOPIC_LEN
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(payload_len: usize, notification: Option<Notification>) -> Push {
        Push {
            message_id: "00000000000000ab-7".into(),
            seq: 7,
            payload: vec![b'x'; payload_len],
            content_type: "text/plain; charset=utf-8".into(),
            notification,
            ..Default::default()
        }
    }

    fn parse(text: &[u8]) -> serde_json::Value {
        serde_json::from_slice(text).expect("the plaintext is JSON")
    }

    #[test]
    fn a_small_push_rides_whole_beside_its_notification() {
        let notification = Notification {
            title: "Order \"42\"".into(),
            body: "shipped\n".into(),
            ..Default::default()
        };
        let push = push(10, Some(notification));
        let json = parse(&plaintext(&push));
        assert_eq!(
            Envelope::decode(json["ringpush"].as_str().expect("a string")),
            Ok(Envelope::Whole(push))
        );
        assert_eq!(
            json["notification"],
            serde_json::json!({"title": "Order \"42\"", "body": "shipped\n"})
        );
    }

    #[test]
    fn the_whole_frame_rides_up_to_the_documented_limit_and_never_past_3993_bytes() {
        let mut largest_whole = 0;
        for payload_len in 2800..3100 {
            let push = push(payload_len, None);
            let text = plaintext(&push);
            assert!(
                text.len() <= MAX_PLAINTEXT_LEN,
                "{payload_len}: {}",
                text.len()
            );
            let json = parse(&text);
            let envelope = json["ringpush"].as_str().expect("a string");
            if let Ok(Envelope::Whole(_)) = Envelope::decode(envelope) {
                largest_whole = largest_whole.max(text.len());
                assert!(envelope.len() <= 3972, "{}", envelope.len());
            }
        }
        // The budget is used to the last base64 quantum (4 characters).
        assert!(largest_whole > MAX_PLAINTEXT_LEN - 4, "{largest_whole}");
    }

    #[test]
    fn an_oversized_notification_is_shortened_body_first_with_an_ellipsis() {
        let notification = Notification {
            title: "t".repeat(256),
            body: "\u{1}\"é".repeat(1000),
            deep_link: format!("https://example.com/{}", "l".repeat(2000)),
            ..Default::default()
        };
        let push = push(10, Some(notification));
        let text = plaintext(&push);
        assert!(text.len() <= MAX_PLAINTEXT_LEN, "{}", text.len());
        let json = parse(&text);
        assert!(matches!(
            Envelope::decode(json["ringpush"].as_str().expect("a string")),
            Ok(Envelope::IdOnly { .. })
        ));
        let body = json["notification"]["body"].as_str().expect("a body");
        assert!(body.ends_with(ELLIPSIS), "{body}");
        assert_eq!(json["notification"]["title"], "t".repeat(256));
        assert!(json["notification"]["deep_link"].as_str().is_some());
    }

    #[test]
    fn ttl_counts_seconds_to_expiry_with_28_days_for_none() {
        assert_eq!(ttl_seconds(0, 1_000_000), 28 * 24 * 3600);
        assert_eq!(ttl_seconds(1_060_500, 1_000_000), 60);
        assert_eq!(ttl_seconds(999_000, 1_000_000), 0);
    }

    #[test]
    fn topics_are_the_collapse_key_when_valid_and_a_hash_otherwise() {
        assert_eq!(topic(""), None);
        assert_eq!(topic("order-42_b").as_deref(), Some("order-42_b"));
        let hashed = topic("orders:42").expect("a topic");
        assert_eq!(hashed.len(), 32);
        assert_ne!(hashed, topic("orders:43").expect("a topic"));
        let long = topic(&"a".repeat(33)).expect("a topic");
        assert_eq!(long.len(), 32);
        assert!(
            long.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
}

//! What APNs is told about one ringpush [`Push`]: the request headers that say how to deliver
//! it (push type, priority, expiration, collapse id) and the JSON body (the `aps` dictionary
//! and the ringpush envelope), kept within APNs's 4096-byte limit.
//!
//! Pure functions, no I/O: the client in the parent module puts them on the wire. Does not
//! own the provider token or the device token (the request's path).

use ringpush_protocol::device::{Priority, Push};
use ringpush_protocol::platform::{ENVELOPE_KEY, Envelope};
use ringpush_protocol::seal::SEALED_CONTENT_TYPE;
use serde_json::{Map, Value};

/// The largest body APNs accepts for a regular (non-VoIP) notification.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 4096;

/// The longest `apns-collapse-id` APNs accepts.
const MAX_COLLAPSE_ID_BYTES: usize = 64;

/// APNs's `apns-push-type`: what the device does with the notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushType {
    /// Shown to the user (a title or a body to display).
    Alert,
    /// Wakes the app in the background to fetch content; nothing is shown.
    Background,
}

impl PushType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Background => "background",
        }
    }
}

/// The delivery headers of one notification, besides authorization and topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeliveryHeaders {
    pub(crate) push_type: PushType,
    /// `apns-priority`: 10 (deliver now) or 5 (deliver when it saves the device's power).
    pub(crate) priority: u8,
    /// `apns-expiration` in Unix seconds; `None` leaves the header out, so APNs stores the
    /// notification for an offline device under its own policy (up to 30 days).
    pub(crate) expiration: Option<u64>,
    /// `apns-collapse-id`: the sender's collapse key, when APNs accepts it (1 to 64 bytes, no
    /// control characters).
    pub(crate) collapse_id: Option<String>,
}

/// The body could not be made to fit APNs's limit even with an id-only envelope: the
/// notification's own text is too long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the notification's title and body alone make a {size}-byte payload (APNs takes 4096)")]
pub(crate) struct PayloadTooLarge {
    pub(crate) size: usize,
}

fn shows_an_alert(push: &Push) -> bool {
    push.notification
        .as_ref()
        .is_some_and(|notification| !notification.title.is_empty() || !notification.body.is_empty())
}

/// The headers for `push`.
///
/// `apns-expiration` follows the message's own expiry. A message that never expires
/// (`expires_at_ms == 0`) sends no expiration header: `apns-expiration: 0` would tell APNs to
/// try once and drop the notification if the device is offline, which is the very case a
/// gateway is used for.
pub(crate) fn delivery_headers(push: &Push) -> DeliveryHeaders {
    let push_type = if shows_an_alert(push) {
        PushType::Alert
    } else {
        PushType::Background
    };
    // Apple refuses priority 10 on background pushes, and throttles them anyway.
    let priority = match (push_type, push.priority()) {
        (PushType::Alert, Priority::High) => 10,
        _ => 5,
    };
    let expiration = u64::try_from(push.expires_at_ms / 1000)
        .ok()
        .filter(|seconds| *seconds > 0);
    // A key APNs would refuse (or HTTP cannot carry) is left out: the notification still goes.
    let collapse_id = Some(push.collapse_key.clone()).filter(|key| {
        !key.is_empty() && key.len() <= MAX_COLLAPSE_ID_BYTES && !key.chars().any(char::is_control)
    });
    DeliveryHeaders {
        push_type,
        priority,
        expiration,
        collapse_id,
    }
}

/// The `aps` dictionary (what iOS itself reads) and the app's own top-level keys, without
/// the envelope.
fn payload_without_envelope(push: &Push, push_type: PushType) -> Map<String, Value> {
    let mut aps = Map::new();
    if let Some(notification) = &push.notification {
        let mut alert = Map::new();
        if !notification.title.is_empty() {
            alert.insert("title".into(), notification.title.clone().into());
        }
        if !notification.body.is_empty() {
            alert.insert("body".into(), notification.body.clone().into());
        }
        if !alert.is_empty() {
            aps.insert("alert".into(), alert.into());
        }
        if let Some(badge) = notification.badge {
            aps.insert("badge".into(), badge.into());
        }
    }
    match push_type {
        PushType::Alert => {
            aps.insert("sound".into(), "default".into());
        }
        PushType::Background => {
            aps.insert("content-available".into(), 1.into());
        }
    }
    if push.content_type == SEALED_CONTENT_TYPE {
        // The app's notification service extension opens the sealed payload.
        aps.insert("mutable-content".into(), 1.into());
    }
    let mut payload = Map::new();
    payload.insert("aps".into(), aps.into());
    if let Some(notification) = &push.notification
        && !notification.deep_link.is_empty()
    {
        payload.insert("deep_link".into(), notification.deep_link.clone().into());
    }
    payload
}

/// The JSON body for `push`: `{"aps": {...}, "ringpush": "<envelope>", "deep_link": ...}`,
/// at most [`MAX_PAYLOAD_BYTES`]. The envelope carries the whole frame when it fits in what
/// the rest leaves, otherwise the message's id only.
pub(crate) fn body(push: &Push, push_type: PushType) -> Result<Vec<u8>, PayloadTooLarge> {
    let mut payload = payload_without_envelope(push, push_type);
    payload.insert(ENVELOPE_KEY.into(), Value::String(String::new()));
    let without_envelope = serialize(&payload).len();
    // The envelope's text is budgeted before JSON escapes it (its quotes become `\"`), so a
    // first try may overflow by a few bytes: the next one has that much less room, which
    // turns the envelope into its id-only form.
    let mut budget = MAX_PAYLOAD_BYTES.saturating_sub(without_envelope);
    loop {
        let envelope = Envelope::encode(push, budget);
        payload.insert(ENVELOPE_KEY.into(), Value::String(envelope));
        let bytes = serialize(&payload);
        if bytes.len() <= MAX_PAYLOAD_BYTES {
            return Ok(bytes);
        }
        let overflow = bytes.len() - MAX_PAYLOAD_BYTES;
        if budget == 0 {
            return Err(PayloadTooLarge { size: bytes.len() });
        }
        budget = budget.saturating_sub(overflow);
    }
}

fn serialize(payload: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(payload).expect("a JSON map of strings and numbers serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringpush_protocol::device::Notification;
    use serde_json::json;

    fn alert(title: &str, body: &str) -> Push {
        Push {
            message_id: "00000000000000ab-7".into(),
            seq: 7,
            payload: b"{\"order\":42}".to_vec(),
            content_type: "application/json".into(),
            notification: Some(Notification {
                title: title.into(),
                body: body.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("the body is JSON")
    }

    #[test]
    fn an_alert_shows_its_given_fields_with_the_default_sound() {
        let mut push = alert("Order shipped", "");
        if let Some(notification) = &mut push.notification {
            notification.badge = Some(3);
            notification.deep_link = "shop://orders/42".into();
        }
        let headers = delivery_headers(&push);
        assert_eq!(headers.push_type, PushType::Alert);
        assert_eq!(headers.priority, 5);
        let body = parse(&body(&push, headers.push_type).expect("fits"));
        assert_eq!(
            body["aps"],
            json!({"alert": {"title": "Order shipped"}, "badge": 3, "sound": "default"})
        );
        assert_eq!(body["deep_link"], "shop://orders/42");
        let envelope = body[ENVELOPE_KEY].as_str().expect("a string");
        assert_eq!(Envelope::decode(envelope), Ok(Envelope::Whole(push)));
    }

    #[test]
    fn a_data_only_push_is_a_background_push_at_priority_5_even_when_high() {
        let mut push = alert("", "");
        push.notification = None;
        push.set_priority(Priority::High);
        let headers = delivery_headers(&push);
        assert_eq!(headers.push_type, PushType::Background);
        assert_eq!(headers.priority, 5);
        let body = parse(&body(&push, headers.push_type).expect("fits"));
        assert_eq!(body["aps"], json!({"content-available": 1}));
    }

    #[test]
    fn a_high_priority_alert_is_priority_10() {
        let mut push = alert("Hi", "there");
        push.set_priority(Priority::High);
        assert_eq!(delivery_headers(&push).priority, 10);
    }

    #[test]
    fn a_sealed_push_asks_for_the_service_extension() {
        let mut push = alert("New message", "");
        push.content_type = SEALED_CONTENT_TYPE.into();
        let body = parse(&body(&push, PushType::Alert).expect("fits"));
        assert_eq!(body["aps"]["mutable-content"], 1);
    }

    #[test]
    fn expiration_and_collapse_id_follow_the_message() {
        let mut push = alert("Hi", "");
        assert_eq!(delivery_headers(&push).expiration, None);
        assert_eq!(delivery_headers(&push).collapse_id, None);
        push.expires_at_ms = 1_700_000_000_999;
        push.collapse_key = "score".into();
        let headers = delivery_headers(&push);
        assert_eq!(headers.expiration, Some(1_700_000_000));
        assert_eq!(headers.collapse_id.as_deref(), Some("score"));
        push.collapse_key = "k".repeat(65);
        assert_eq!(delivery_headers(&push).collapse_id, None);
    }

    #[test]
    fn a_large_message_goes_by_id_within_the_limit_whatever_its_escaping() {
        for payload_len in [2500, 2900, 2950, 3000, 3050, 4000, 100_000] {
            // Quotes and backslashes in the alert grow under JSON escaping too.
            let mut push = alert("\"quoted\"", "back\\slash");
            push.payload = vec![b'x'; payload_len];
            let bytes = body(&push, PushType::Alert).expect("fits");
            assert!(
                bytes.len() <= MAX_PAYLOAD_BYTES,
                "{payload_len}: {}",
                bytes.len()
            );
            let body = parse(&bytes);
            let envelope = Envelope::decode(body[ENVELOPE_KEY].as_str().expect("a string"))
                .expect("an envelope");
            assert_eq!(envelope.position(), (0, 7), "{payload_len}");
        }
    }

    #[test]
    fn the_budget_is_used_fully_before_falling_back_to_the_id() {
        // Find the largest payload that still rides whole: its body is close to the limit.
        let mut largest_whole = 0;
        for payload_len in (2000..3200).step_by(7) {
            let mut push = alert("Hi", "");
            push.payload = vec![b'x'; payload_len];
            let bytes = body(&push, PushType::Alert).expect("fits");
            let body = parse(&bytes);
            let envelope = body[ENVELOPE_KEY].as_str().expect("a string");
            if matches!(Envelope::decode(envelope), Ok(Envelope::Whole(_))) {
                largest_whole = bytes.len();
            }
        }
        assert!(largest_whole > MAX_PAYLOAD_BYTES - 16, "{largest_whole}");
    }

    #[test]
    fn an_alert_too_long_for_apns_is_refused_here() {
        let push = alert("t", &"b".repeat(5000));
        let error = body(&push, PushType::Alert).expect_err("too large");
        assert!(error.size > MAX_PAYLOAD_BYTES, "{error}");
    }
}

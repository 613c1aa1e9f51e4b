//! The FCM v1 `Message` ringpush sends for one [`Push`]: the envelope under `data.ringpush`,
//! the notification the sender shaped, and each platform's delivery options (expiry,
//! collapsing, priority) in the form FCM passes on to Android, APNs and Web Push.
//!
//! Does not own: sending, authentication, or what the answer means (see the parent module).

use ringpush_protocol::device::{Notification, Priority, Push};
use ringpush_protocol::platform::{ENVELOPE_KEY, Envelope};
use serde_json::{Value, json};

/// FCM refuses messages whose `data` (keys and values) exceeds 4096 bytes. ringpush keeps
/// the data, and the notification text FCM carries beside it to the device, under 4000,
/// leaving room for what the platforms add.
const DATA_BUDGET_BYTES: usize = 4000;

/// FCM's longest TTL: four weeks.
const MAX_TTL_SECONDS: i64 = 28 * 24 * 3600;

/// APNs refuses an `apns-collapse-id` longer than 64 bytes; a longer collapse key is only
/// applied on Android.
const MAX_APNS_COLLAPSE_ID_BYTES: usize = 64;

/// The request body of `messages:send` for `push` to `registration_token`, at `now_ms`
/// (milliseconds since the Unix epoch, to turn the push's expiry into a TTL).
pub(super) fn send_request_body(registration_token: &str, push: &Push, now_ms: i64) -> Value {
    let shown = shown_notification(push);
    let shown_bytes = shown.map_or(0, |notification| {
        notification.title.len() + notification.body.len()
    });
    let envelope_budget = DATA_BUDGET_BYTES.saturating_sub(ENVELOPE_KEY.len() + shown_bytes);
    let envelope = Envelope::encode(push, envelope_budget);

    let mut message = json!({
        "token": registration_token,
        "data": { ENVELOPE_KEY: envelope },
        "android": android_config(push, now_ms),
        "apns": apns_config(push, shown),
        "webpush": webpush_config(push, now_ms),
    });
    if let Some(notification) = shown {
        let mut shape = serde_json::Map::new();
        if !notification.title.is_empty() {
            shape.insert("title".into(), notification.title.clone().into());
        }
        if !notification.body.is_empty() {
            shape.insert("body".into(), notification.body.clone().into());
        }
        message["notification"] = Value::Object(shape);
    }
    json!({ "message": message })
}

/// The push's notification if it has something to show (a title or a body).
fn shown_notification(push: &Push) -> Option<&Notification> {
    push.notification
        .as_ref()
        .filter(|notification| !notification.title.is_empty() || !notification.body.is_empty())
}

fn is_high_priority(push: &Push) -> bool {
    push.priority() == Priority::High
}

/// Seconds the push has left, or `None` when it never expires (`expires_at_ms` 0).
/// An expired push gets 0: deliver now or not at all.
fn ttl_seconds(push: &Push, now_ms: i64) -> Option<i64> {
    if push.expires_at_ms <= 0 {
        return None;
    }
    let remaining_ms = push.expires_at_ms.saturating_sub(now_ms).max(0);
    Some((remaining_ms / 1000).min(MAX_TTL_SECONDS))
}

fn android_config(push: &Push, now_ms: i64) -> Value {
    let priority = if is_high_priority(push) {
        "HIGH"
    } else {
        "NORMAL"
    };
    let mut android = json!({ "priority": priority });
    if let Some(ttl) = ttl_seconds(push, now_ms) {
        android["ttl"] = format!("{ttl}s").into();
    }
    if !push.collapse_key.is_empty() {
        android["collapse_key"] = push.collapse_key.clone().into();
    }
    android
}

/// APNs headers and `aps` through FCM. Apple allows priority 10 only for notifications the
/// user sees; a data-only push is a background push (`content-available`, priority 5), the
/// only kind that wakes an iOS app to read the envelope.
fn apns_config(push: &Push, shown: Option<&Notification>) -> Value {
    let (push_type, priority) = match shown {
        Some(_) if is_high_priority(push) => ("alert", "10"),
        Some(_) => ("alert", "5"),
        None => ("background", "5"),
    };
    let mut headers = json!({ "apns-priority": priority, "apns-push-type": push_type });
    if push.expires_at_ms > 0 {
        // A date (Unix seconds) after which APNs stops trying.
        headers["apns-expiration"] = (push.expires_at_ms / 1000).to_string().into();
    }
    if !push.collapse_key.is_empty() && push.collapse_key.len() <= MAX_APNS_COLLAPSE_ID_BYTES {
        headers["apns-collapse-id"] = push.collapse_key.clone().into();
    }
    let mut aps = serde_json::Map::new();
    if shown.is_none() {
        aps.insert("content-available".into(), 1.into());
    }
    if let Some(badge) = push.notification.as_ref().and_then(|n| n.badge) {
        aps.insert("badge".into(), badge.into());
    }
    json!({ "headers": headers, "payload": { "aps": aps } })
}

fn webpush_config(push: &Push, now_ms: i64) -> Value {
    let urgency = if is_high_priority(push) {
        "high"
    } else {
        "normal"
    };
    let mut headers = json!({ "Urgency": urgency });
    if let Some(ttl) = ttl_seconds(push, now_ms) {
        headers["TTL"] = ttl.to_string().into();
    }
    // A collapse key that is not a valid topic as it is stays out of the Web Push headers.
    if crate::webpush::is_topic(&push.collapse_key) {
        headers["Topic"] = push.collapse_key.clone().into();
    }
    json!({ "headers": headers })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_800_000_000_000;

    fn push() -> Push {
        Push {
            message_id: "00000000000000ab-7".into(),
            seq: 7,
            payload: b"hello".to_vec(),
            content_type: "text/plain; charset=utf-8".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_data_only_normal_push_wakes_the_app_quietly() {
        let body = send_request_body("device", &push(), NOW_MS);
        let message = &body["message"];
        assert_eq!(message["token"], "device");
        assert!(message.get("notification").is_none());
        assert_eq!(message["android"], json!({"priority": "NORMAL"}));
        assert_eq!(message["apns"]["headers"]["apns-priority"], "5");
        assert_eq!(message["apns"]["headers"]["apns-push-type"], "background");
        assert_eq!(message["apns"]["payload"]["aps"]["content-available"], 1);
        assert_eq!(message["webpush"]["headers"], json!({"Urgency": "normal"}));
        let envelope = message["data"][ENVELOPE_KEY].as_str().expect("a string");
        assert_eq!(Envelope::decode(envelope), Ok(Envelope::Whole(push())));
    }

    #[test]
    fn expiry_collapse_key_and_priority_reach_every_platform() {
        let mut push = push();
        push.expires_at_ms = NOW_MS + 90_500;
        push.collapse_key = "score".into();
        push.priority = Priority::High as i32;
        push.notification = Some(Notification {
            title: "Goal".into(),
            body: "2-1".into(),
            badge: Some(3),
            ..Default::default()
        });
        let body = send_request_body("device", &push, NOW_MS);
        let message = &body["message"];
        assert_eq!(
            message["notification"],
            json!({"title": "Goal", "body": "2-1"})
        );
        assert_eq!(
            message["android"],
            json!({"priority": "HIGH", "ttl": "90s", "collapse_key": "score"})
        );
        let apns_headers = &message["apns"]["headers"];
        assert_eq!(apns_headers["apns-priority"], "10");
        assert_eq!(apns_headers["apns-push-type"], "alert");
        assert_eq!(apns_headers["apns-collapse-id"], "score");
        assert_eq!(apns_headers["apns-expiration"], "1800000090");
        assert_eq!(message["apns"]["payload"]["aps"], json!({"badge": 3}));
        assert_eq!(
            message["webpush"]["headers"],
            json!({"Urgency": "high", "TTL": "90", "Topic": "score"})
        );
    }

    #[test]
    fn an_expired_push_gets_a_zero_ttl_and_a_distant_one_four_weeks() {
        let mut push = push();
        push.expires_at_ms = NOW_MS - 1;
        assert_eq!(ttl_seconds(&push, NOW_MS), Some(0));
        push.expires_at_ms = NOW_MS + 365 * 24 * 3600 * 1000;
        assert_eq!(ttl_seconds(&push, NOW_MS), Some(MAX_TTL_SECONDS));
        push.expires_at_ms = 0;
        assert_eq!(ttl_seconds(&push, NOW_MS), None);
    }

    #[test]
    fn a_large_push_goes_by_id_and_the_data_stays_under_fcms_limit() {
        let mut push = push();
        push.payload = vec![b'x'; 3500];
        push.notification = Some(Notification {
            title: "t".repeat(200),
            body: "b".repeat(600),
            ..Default::default()
        });
        let body = send_request_body("device", &push, NOW_MS);
        let envelope = body["message"]["data"][ENVELOPE_KEY]
            .as_str()
            .expect("a string");
        assert!(matches!(
            Envelope::decode(envelope),
            Ok(Envelope::IdOnly { seq: 7, .. })
        ));
        push.payload = vec![b'x'; 2000];
        push.notification = None;
        let body = send_request_body("device", &push, NOW_MS);
        let envelope = body["message"]["data"][ENVELOPE_KEY]
            .as_str()
            .expect("a string");
        assert!(ENVELOPE_KEY.len() + envelope.len() <= DATA_BUDGET_BYTES);
        assert!(matches!(Envelope::decode(envelope), Ok(Envelope::Whole(_))));
    }
}

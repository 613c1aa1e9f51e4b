//! A message as the app receives it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringpush_protocol::DeviceId;
use ringpush_protocol::device::Push;
use ringpush_protocol::seal::{self, SecretKey};

use crate::stream::Stream;

/// The MIME type of JSON payloads.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// One message for this device, handed to the app exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message's id, as the sender's API answered it: `<device_id>-<seq>` for a message
    /// to this device, one id for the whole audience for an audience message.
    pub message_id: String,
    /// Which of the device's two sequences `seq` belongs to: its inbox, or its app's timeline.
    pub stream: Stream,
    /// The message's number in its stream. Within a stream, messages come in increasing `seq`;
    /// the two streams are numbered (and ordered) independently.
    pub seq: u64,
    /// The payload, as sent.
    pub data: Vec<u8>,
    /// How to read `data`: `"application/json"` or `"text/plain; charset=utf-8"`.
    pub content_type: String,
    /// When the message was accepted, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// When the message stops being worth delivering, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
    /// The campaign the message belongs to, if any.
    pub campaign_id: Option<String>,
    /// How many inbox seqs were skipped just before this message: messages that expired, were
    /// dropped by the inbox cap, or were replaced by a newer message with the same collapse
    /// key before they could be delivered. 0 in the usual case, and always 0 on the timeline
    /// (its gaps are messages for other audiences).
    pub skipped_before: u64,
    /// The sender's collapse key: a newer message with the same key replaces this one, so an
    /// app showing messages may replace what it shows under the same key.
    pub collapse_key: Option<String>,
    /// How urgent the sender says the message is.
    pub priority: Priority,
    /// What to show, if the sender shaped a notification (else the message is data only).
    pub notification: Option<Notification>,
}

/// How urgent the sender says a message is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Priority {
    /// The usual.
    #[default]
    Normal,
    /// Worth interrupting the user for (gateways map it to the platform's high priority).
    High,
}

/// A notification as the sender shaped it; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notification {
    /// The notification's title.
    pub title: Option<String>,
    /// The notification's text.
    pub body: Option<String>,
    /// A URL the app opens when the user taps the notification.
    pub deep_link: Option<String>,
    /// The number to show on the app's icon; `None`: leave it as it is.
    pub badge: Option<u32>,
}

fn non_empty(text: String) -> Option<String> {
    Some(text).filter(|text| !text.is_empty())
}

impl Message {
    pub(crate) fn from_push(push: Push, stream: Stream, skipped_before: u64) -> Self {
        Self {
            message_id: push.message_id,
            stream,
            seq: push.seq,
            data: push.payload,
            content_type: push.content_type,
            created_at_ms: push.created_at_ms,
            expires_at_ms: push.expires_at_ms,
            campaign_id: non_empty(push.campaign_id),
            skipped_before,
            collapse_key: non_empty(push.collapse_key),
            priority: match ringpush_protocol::device::Priority::try_from(push.priority) {
                Ok(ringpush_protocol::device::Priority::High) => Priority::High,
                // An unknown priority from a newer server reads as normal.
                _ => Priority::Normal,
            },
            notification: push.notification.map(|n| Notification {
                title: non_empty(n.title),
                body: non_empty(n.body),
                deep_link: non_empty(n.deep_link),
                badge: n.badge,
            }),
        }
    }

    /// The message as its app reads it: a sealed push opened with the device's key (its
    /// payload, content type and notification come out of the envelope). A sealed push that
    /// does not open (the device has no key, or not the one it was sealed to) comes as it
    /// is, with the sealed content type, and is logged.
    pub(crate) fn open_push(
        mut push: Push,
        stream: Stream,
        skipped_before: u64,
        device: DeviceId,
        key: Option<&SecretKey>,
    ) -> Self {
        if push.content_type == seal::SEALED_CONTENT_TYPE {
            let opened = match key {
                Some(key) => seal::open(key, device, &push.payload).map_err(|e| e.to_string()),
                None => Err("this device registered without a sealing key".to_owned()),
            };
            match opened {
                Ok(content) => {
                    push.payload = content.payload;
                    push.content_type = content.content_type;
                    push.notification = content.notification;
                }
                Err(error) => {
                    tracing::error!(device_id = %device, message_id = %push.message_id, %error, "sealed message could not be opened; handed over sealed");
                }
            }
        }
        Self::from_push(push, stream, skipped_before)
    }

    /// The payload as text, if it is valid UTF-8 (both content types are).
    pub fn data_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.data)
    }

    /// Whether the payload is JSON.
    pub fn is_json(&self) -> bool {
        self.content_type
            .split(';')
            .next()
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case(CONTENT_TYPE_JSON))
    }

    /// The payload parsed as JSON into `T` (use `serde_json::Value` for any JSON).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.data)
    }

    /// When the message was accepted.
    pub fn created_at(&self) -> SystemTime {
        system_time(self.created_at_ms)
    }

    /// When the message expires.
    pub fn expires_at(&self) -> SystemTime {
        system_time(self.expires_at_ms)
    }
}

fn system_time(ms: i64) -> SystemTime {
    let offset = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + offset
    } else {
        UNIX_EPOCH - offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_payloads_and_times() {
        let push = Push {
            message_id: "d-3".into(),
            seq: 3,
            payload: br#"{"title":"hi"}"#.to_vec(),
            content_type: "application/json".into(),
            created_at_ms: 1_000,
            expires_at_ms: 61_000,
            stream: 0,
            campaign_id: String::new(),
            ..Push::default()
        };
        let message = Message::from_push(push, Stream::Inbox, 2);
        assert_eq!(message.campaign_id, None, "an empty campaign id is none");
        assert_eq!(
            (
                message.collapse_key.clone(),
                message.priority,
                message.notification.clone()
            ),
            (None, Priority::Normal, None),
            "no options given, none read"
        );
        assert!(message.is_json());
        assert_eq!(message.data_str().unwrap(), r#"{"title":"hi"}"#);
        let value: serde_json::Value = message.json().unwrap();
        assert_eq!(value["title"], "hi");
        assert_eq!(message.skipped_before, 2);
        assert_eq!(
            message
                .expires_at()
                .duration_since(message.created_at())
                .unwrap(),
            Duration::from_secs(60)
        );
        let text = Message {
            content_type: "text/plain; charset=utf-8".into(),
            data: vec![0xff],
            ..message
        };
        assert!(!text.is_json());
        assert!(text.data_str().is_err());
    }

    #[test]
    fn carries_the_stream_and_campaign_of_an_audience_message() {
        let push = Push {
            message_id: "0123456789abcdef0123456789abcdef".into(),
            seq: 77,
            campaign_id: "spring-sale".into(),
            stream: 1,
            ..Push::default()
        };
        let message = Message::from_push(push, Stream::Timeline, 0);
        assert_eq!(message.stream, Stream::Timeline);
        assert_eq!(message.seq, 77);
        assert_eq!(message.campaign_id.as_deref(), Some("spring-sale"));
    }

    #[test]
    fn reads_the_options() {
        let push = Push {
            collapse_key: "score".into(),
            priority: ringpush_protocol::device::Priority::High as i32,
            notification: Some(ringpush_protocol::device::Notification {
                title: "Goal".into(),
                body: String::new(),
                deep_link: "sports://match/7".into(),
                badge: Some(0),
            }),
            ..Push::default()
        };
        let message = Message::from_push(push, Stream::Inbox, 0);
        assert_eq!(message.collapse_key.as_deref(), Some("score"));
        assert_eq!(message.priority, Priority::High);
        assert_eq!(
            message.notification,
            Some(Notification {
                title: Some("Goal".into()),
                body: None,
                deep_link: Some("sports://match/7".into()),
                badge: Some(0),
            })
        );
    }
}

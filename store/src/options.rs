//! A message's delivery hints and notification shape, as the sender gave them: stored with
//! the message (inbox member or timeline entry) and written into its `Push`.
//!
//! Stored as JSON after the fixed header of a member (see the codecs): the common message
//! has no options and pays one flag bit for them.

use ringpush_protocol::device::{self, Push};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// How urgent the sender says a message is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    #[default]
    Normal,
    High,
}

/// What to show for a message; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deep_link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub badge: Option<u32>,
}

impl Notification {
    /// The notification as a device reads it (absent fields empty).
    pub fn to_frame(&self) -> device::Notification {
        device::Notification {
            title: self.title.clone().unwrap_or_default(),
            body: self.body.clone().unwrap_or_default(),
            deep_link: self.deep_link.clone().unwrap_or_default(),
            badge: self.badge,
        }
    }
}

/// The options of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageOptions {
    /// A newer pending message with the same key replaces this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapse_key: Option<String>,
    #[serde(default, skip_serializing_if = "is_normal")]
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<Notification>,
}

fn is_normal(priority: &Priority) -> bool {
    *priority == Priority::Normal
}

impl MessageOptions {
    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Writes these options into the frame a device gets.
    pub fn apply_to(&self, push: &mut Push) {
        push.collapse_key = self.collapse_key.clone().unwrap_or_default();
        push.priority = match self.priority {
            Priority::Normal => device::Priority::Normal,
            Priority::High => device::Priority::High,
        } as i32;
        push.notification = self.notification.as_ref().map(Notification::to_frame);
    }

    /// The stored bytes (empty for no options).
    pub(crate) fn encode(&self) -> Vec<u8> {
        if self.is_empty() {
            return Vec::new();
        }
        serde_json::to_vec(self).expect("options serialize")
    }

    /// Reads stored bytes back; `key` names the record in the error.
    pub(crate) fn decode(key: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt {
            key: key.to_owned(),
            detail: format!("message options: {error}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_and_no_options_cost_no_bytes() {
        assert!(MessageOptions::default().encode().is_empty());
        let options = MessageOptions {
            collapse_key: Some("score".into()),
            priority: Priority::High,
            notification: Some(Notification {
                title: Some("Goal".into()),
                body: None,
                deep_link: Some("app://match/7".into()),
                badge: Some(0),
            }),
        };
        let bytes = options.encode();
        assert_eq!(MessageOptions::decode("k", &bytes).unwrap(), options);
        assert!(MessageOptions::decode("k", b"{").is_err());
    }

    #[test]
    fn options_fill_the_push() {
        let mut push = Push::default();
        MessageOptions {
            collapse_key: Some("c".into()),
            priority: Priority::High,
            notification: Some(Notification {
                badge: Some(3),
                ..Notification::default()
            }),
        }
        .apply_to(&mut push);
        assert_eq!(push.collapse_key, "c");
        assert_eq!(push.priority, device::Priority::High as i32);
        assert_eq!(push.notification.unwrap().badge, Some(3));
    }
}

//! Reporting the device's attributes to its connector: when to send them, what they look like
//! on the wire, and which set a client starts with; kept apart from any I/O.
//!
//! The connector matches audiences (tags, topics, segments) against the attributes the device
//! sent on its connection, so the SDK sends the whole set after each Welcome, and again when
//! the app changes it: at most once per [`ATTRIBUTES_MIN_INTERVAL`] on a connection (an app
//! that changes tags in a loop must not wake the radio each time), the newest set winning,
//! and never a set equal to the one this connection already has.

use std::time::Duration;

use prost::Message as _;
use ringpush_audience::DeviceAttributes;
use ringpush_protocol::device::{self, ClientFrame, client_frame};
use tokio::time::Instant;

use crate::error::{Error, Result};

/// The shortest time between two Attributes frames on one connection.
pub(crate) const ATTRIBUTES_MIN_INTERVAL: Duration = Duration::from_secs(2);

/// The largest Attributes frame the app may set, in bytes: what every connector accepts
/// (docs/protocol.md §4), so that a set accepted here is never refused by a connector.
pub(crate) const ATTRIBUTES_MAX_BYTES: usize = 4096;

/// What has been sent on the current connection, and when the next send may go.
#[derive(Debug, Default)]
pub(crate) struct AttributeSync {
    /// The set this connection already has.
    sent: Option<DeviceAttributes>,
    /// When it was sent.
    sent_at: Option<Instant>,
    /// When a change that had to wait may be sent, if one is waiting.
    due_at: Option<Instant>,
}

impl AttributeSync {
    /// A new connection has nothing yet: its first poll sends the whole set at once.
    pub(crate) fn connection_started(&mut self) {
        *self = Self::default();
    }

    /// Decides, given the app's set now, whether to send it now. When it answers `false` with
    /// a change waiting, [`AttributeSync::due_at`] says when to ask again.
    pub(crate) fn poll(&mut self, current: Option<&DeviceAttributes>, now: Instant) -> bool {
        self.due_at = None;
        let Some(current) = current else {
            return false; // the app never set any: nothing to tell
        };
        if self.sent.as_ref() == Some(current) {
            return false;
        }
        match self.sent_at {
            Some(sent_at) if now < sent_at + ATTRIBUTES_MIN_INTERVAL => {
                self.due_at = Some(sent_at + ATTRIBUTES_MIN_INTERVAL);
                false
            }
            _ => true,
        }
    }

    /// Records a set written to the connection.
    pub(crate) fn sent(&mut self, attributes: DeviceAttributes, now: Instant) {
        self.sent = Some(attributes);
        self.sent_at = Some(now);
        self.due_at = None;
    }

    /// When the waiting change may be sent, if one is waiting.
    pub(crate) fn due_at(&self) -> Option<Instant> {
        self.due_at
    }
}

/// The Attributes frame for `attributes` (absent values travel as empty strings).
pub(crate) fn to_frame(attributes: &DeviceAttributes) -> client_frame::Kind {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    client_frame::Kind::Attributes(device::Attributes {
        platform: text(&attributes.platform),
        os_version: text(&attributes.os_version),
        app_version: text(&attributes.app_version),
        locale: text(&attributes.locale),
        timezone: text(&attributes.timezone),
        alias: text(&attributes.alias),
        tags: attributes.tags.iter().cloned().collect(),
        topics: attributes.topics.iter().cloned().collect(),
        custom: attributes
            .custom
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
    })
}

/// The size of the Attributes frame for `attributes`, in bytes.
pub(crate) fn frame_len(attributes: &DeviceAttributes) -> usize {
    ClientFrame {
        kind: Some(to_frame(attributes)),
    }
    .encoded_len()
}

/// Refuses a set that connectors would refuse (closing the connection): one outside the
/// bounds of [`DeviceAttributes::validate`] (64 tags, 64 topics, 32 custom keys, words as
/// audiences write them, ...) or too large for one frame ([`ATTRIBUTES_MAX_BYTES`]).
pub(crate) fn check(attributes: &DeviceAttributes) -> Result<()> {
    attributes
        .validate()
        .map_err(|error| Error::InvalidAttributes(error.to_string()))?;
    let len = frame_len(attributes);
    if len > ATTRIBUTES_MAX_BYTES {
        return Err(Error::InvalidAttributes(format!(
            "the attributes take {len} bytes on the wire, over the limit of {ATTRIBUTES_MAX_BYTES}"
        )));
    }
    Ok(())
}

/// The set a client starts with, from the saved set and the configured one.
///
/// The device facts the configuration gives (`platform`, `os_version`, `app_version`,
/// `locale`, `timezone`, those that are set) replace the saved ones, since they describe the
/// software running now: an app update must not keep reporting the old version. The app's
/// own labels (`alias`, `tags`, `topics`, `custom`) come from the configuration only when no
/// set was saved yet; after that, the saved set (changed at run time) is kept.
pub(crate) fn starting_set(
    saved: Option<&DeviceAttributes>,
    configured: Option<&DeviceAttributes>,
) -> Option<DeviceAttributes> {
    let (saved, configured) = match (saved, configured) {
        (saved, None) => return saved.cloned(),
        (None, Some(configured)) => return Some(configured.clone()),
        (Some(saved), Some(configured)) => (saved, configured),
    };
    let mut merged = saved.clone();
    let facts = [
        (&mut merged.platform, &configured.platform),
        (&mut merged.os_version, &configured.os_version),
        (&mut merged.app_version, &configured.app_version),
        (&mut merged.locale, &configured.locale),
        (&mut merged.timezone, &configured.timezone),
    ];
    for (fact, configured) in facts {
        if configured.is_some() {
            fact.clone_from(configured);
        }
    }
    Some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(tags: &[&str]) -> DeviceAttributes {
        DeviceAttributes {
            platform: Some("linux".into()),
            tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
            ..DeviceAttributes::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sends_at_once_on_a_new_connection_then_at_most_every_two_seconds() {
        let mut sync = AttributeSync::default();
        assert!(!sync.poll(None, Instant::now()), "no set, nothing to send");

        let first = tagged(&["a"]);
        assert!(
            sync.poll(Some(&first), Instant::now()),
            "the first send is at once"
        );
        let first_sent_at = Instant::now();
        sync.sent(first.clone(), first_sent_at);
        assert!(
            !sync.poll(Some(&first), Instant::now()),
            "the same set is not sent again"
        );
        assert_eq!(sync.due_at(), None);

        // The app changes its tags five times within the next second: nothing goes out
        // before two seconds have passed since the first send.
        let mut latest = first.clone();
        for step in 0..5 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            latest = tagged(&["a", &format!("b{step}")]);
            assert!(!sync.poll(Some(&latest), Instant::now()));
            assert_eq!(sync.due_at(), Some(first_sent_at + ATTRIBUTES_MIN_INTERVAL));
        }
        tokio::time::sleep_until(sync.due_at().unwrap() - Duration::from_millis(1)).await;
        assert!(!sync.poll(Some(&latest), Instant::now()));
        tokio::time::sleep_until(sync.due_at().unwrap()).await;
        // Then one send, of the newest set only.
        assert!(sync.poll(Some(&latest), Instant::now()));
        sync.sent(latest.clone(), Instant::now());
        assert_eq!(Instant::now() - first_sent_at, ATTRIBUTES_MIN_INTERVAL);
        assert!(latest.tags.contains("b4"));

        // A change that is undone before its time is not sent at all.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!sync.poll(Some(&tagged(&["c"])), Instant::now()));
        assert!(sync.due_at().is_some());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!sync.poll(Some(&latest), Instant::now()));
        assert_eq!(sync.due_at(), None, "back to what the connection has");

        // A quiet device's next change goes at once.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(sync.poll(Some(&tagged(&["d"])), Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn every_new_connection_gets_the_whole_set_at_once() {
        let mut sync = AttributeSync::default();
        let set = tagged(&["vip"]);
        sync.sent(set.clone(), Instant::now());
        tokio::time::sleep(Duration::from_millis(100)).await;
        sync.connection_started();
        assert!(
            sync.poll(Some(&set), Instant::now()),
            "a new connection has nothing yet, however recent the last send"
        );
    }

    #[test]
    fn the_wire_form_carries_every_field_and_large_sets_are_refused() {
        let attributes = DeviceAttributes {
            platform: Some("ios".into()),
            os_version: Some("17.4".into()),
            app_version: Some("2.3.1".into()),
            locale: Some("zh-CN".into()),
            timezone: Some("Asia/Shanghai".into()),
            alias: Some("user-42".into()),
            tags: ["vip".to_owned(), "cn".to_owned()].into(),
            topics: ["news".to_owned()].into(),
            custom: [("plan".to_owned(), "gold".to_owned())].into(),
        };
        let client_frame::Kind::Attributes(wire) = to_frame(&attributes) else {
            panic!("not an attributes frame");
        };
        assert_eq!(wire.platform, "ios");
        assert_eq!(wire.timezone, "Asia/Shanghai");
        assert_eq!(wire.alias, "user-42");
        assert_eq!(wire.tags, ["cn", "vip"], "sorted, as the set is");
        assert_eq!(wire.topics, ["news"]);
        assert_eq!(wire.custom.get("plan").map(String::as_str), Some("gold"));
        let client_frame::Kind::Attributes(empty) = to_frame(&DeviceAttributes::default()) else {
            panic!("not an attributes frame");
        };
        assert_eq!(empty.platform, "", "absent travels as empty");
        assert!(check(&attributes).is_ok());

        // Within every count and length bound, but too large for one frame.
        let huge = DeviceAttributes {
            tags: (0..64).map(|index| format!("{index:0>100}")).collect(),
            ..DeviceAttributes::default()
        };
        assert!(huge.validate().is_ok());
        assert!(frame_len(&huge) > ATTRIBUTES_MAX_BYTES);
        assert!(
            matches!(check(&huge), Err(Error::InvalidAttributes(text)) if text.contains("bytes"))
        );
        // Outside the bounds connectors enforce.
        let not_a_word = DeviceAttributes {
            tags: ["not a word".to_owned()].into(),
            ..DeviceAttributes::default()
        };
        assert!(
            matches!(check(&not_a_word), Err(Error::InvalidAttributes(text)) if text.contains("letters"))
        );
        let blank_alias = DeviceAttributes {
            alias: Some(String::new()),
            ..DeviceAttributes::default()
        };
        assert!(check(&blank_alias).is_err());
    }

    #[test]
    fn a_start_takes_device_facts_from_the_config_and_labels_from_the_saved_set() {
        let configured = DeviceAttributes {
            platform: Some("android".into()),
            app_version: Some("2.4".into()),
            tags: ["default-tag".to_owned()].into(),
            ..DeviceAttributes::default()
        };
        // First start: the configured set as it is.
        assert_eq!(
            starting_set(None, Some(&configured)),
            Some(configured.clone())
        );
        assert_eq!(starting_set(None, None), None);
        // Later starts: the saved labels survive, the facts follow the running app.
        let saved = DeviceAttributes {
            platform: Some("android".into()),
            app_version: Some("2.3".into()),
            locale: Some("fr-FR".into()),
            alias: Some("user-7".into()),
            tags: ["vip".to_owned()].into(),
            topics: ["news".to_owned()].into(),
            ..DeviceAttributes::default()
        };
        let started = starting_set(Some(&saved), Some(&configured)).unwrap();
        assert_eq!(started.app_version.as_deref(), Some("2.4"));
        assert_eq!(
            started.locale.as_deref(),
            Some("fr-FR"),
            "not configured: kept"
        );
        assert_eq!(started.alias.as_deref(), Some("user-7"));
        assert_eq!(started.tags, saved.tags, "run-time tag changes are kept");
        assert_eq!(started.topics, saved.topics);
        assert_eq!(starting_set(Some(&saved), None), Some(saved));
    }
}

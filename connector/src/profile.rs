//! What a connection knows about its device for audience matching: its app and its
//! attributes, interned per shard so that devices with equal sets share one allocation.
//!
//! A connection holds at most one `Arc<Profile>` (8 bytes in its record). The shard's
//! [`Profiles`] table holds one more reference to each distinct profile; a profile leaves
//! the table when the last connection using it lets go ([`Profiles::release`]). Profiles
//! never leave their shard (background tasks get copies of what they need, not the `Arc`),
//! so the reference count tells exactly how many connections use one.

use std::collections::HashSet;
use std::sync::Arc;

use metrics::counter;
use ringpush_audience::{AttributesError, DeviceAttributes};
use ringpush_protocol::AppId;
use ringpush_protocol::device::{Attributes, ErrorCode};

use crate::ConnectorStats;
use crate::session::Flow;
use crate::shard::Shard;

/// A device's app and attributes; equal profiles are one allocation per shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Profile {
    pub app: AppId,
    pub attributes: DeviceAttributes,
}

/// The distinct profiles of one shard's connections.
#[derive(Debug, Default)]
pub(crate) struct Profiles {
    interned: HashSet<Arc<Profile>>,
}

impl Profiles {
    /// The shared copy of `profile`, added if no connection uses an equal one yet.
    pub fn intern(&mut self, profile: Profile) -> Arc<Profile> {
        if let Some(shared) = self.interned.get(&profile) {
            return shared.clone();
        }
        let shared = Arc::new(profile);
        self.interned.insert(shared.clone());
        shared
    }

    /// A connection lets go of its profile; the table forgets it once nobody uses it.
    pub fn release(&mut self, profile: Arc<Profile>) {
        // The table's reference and this one.
        if Arc::strong_count(&profile) == 2 {
            self.interned.remove(&*profile);
        }
    }

    /// Distinct profiles held.
    pub fn len(&self) -> usize {
        self.interned.len()
    }
}

impl Shard {
    /// Gives connection `key` the shared copy of `profile`, letting go of its old one.
    pub fn set_profile(&mut self, key: usize, profile: Profile) {
        let before = self.profiles.len();
        let shared = self.profiles.intern(profile);
        let old = self.conns[key].profile.replace(shared);
        if let Some(old) = old {
            self.profiles.release(old);
        }
        self.count_profiles(before);
    }

    /// A connection that is going away lets go of its profile.
    pub fn release_profile(&mut self, profile: Arc<Profile>) {
        let before = self.profiles.len();
        self.profiles.release(profile);
        self.count_profiles(before);
    }

    fn count_profiles(&self, before: usize) {
        let delta = self.profiles.len() as i64 - before as i64;
        ConnectorStats::add(&self.shared.stats.attribute_sets, delta);
    }

    /// An Attributes frame: checked, kept for matching, and sent to the registry.
    pub fn on_attributes(&mut self, key: usize, wire: Attributes) -> Flow {
        let Some(app) = self.conns[key].profile.as_ref().map(|profile| profile.app) else {
            return self.refuse(
                key,
                ErrorCode::BadFrame,
                "attributes come after the welcome",
            );
        };
        let attributes = match attributes_of(wire) {
            Ok(attributes) => attributes,
            Err(reason) => {
                let message = format!("invalid attributes: {reason}");
                return self.refuse(key, ErrorCode::BadFrame, &message);
            }
        };
        counter!("ringpush_connector_attributes_total").increment(1);
        let device = self.conns[key].device();
        let update = (app, device, attributes.clone());
        if self.shared.attributes.try_send(update).is_err() {
            // Matching here still uses the new set; the registry gets the device's next one.
            counter!("ringpush_connector_attributes_dropped_total").increment(1);
        }
        self.set_profile(key, Profile { app, attributes });
        Flow::Continue
    }
}

/// Turns a device's report into [`DeviceAttributes`] (an empty field is an absent one) and
/// checks it against the audience crate's bounds; the error says what is wrong.
pub fn attributes_of(wire: Attributes) -> Result<DeviceAttributes, AttributesError> {
    let present = |value: String| (!value.is_empty()).then_some(value);
    let attributes = DeviceAttributes {
        platform: present(wire.platform),
        os_version: present(wire.os_version),
        app_version: present(wire.app_version),
        locale: present(wire.locale),
        timezone: present(wire.timezone),
        alias: present(wire.alias),
        tags: wire.tags.into_iter().collect(),
        topics: wire.topics.into_iter().collect(),
        custom: wire.custom.into_iter().collect(),
    };
    attributes.validate()?;
    Ok(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(tags: &[&str]) -> Profile {
        Profile {
            app: AppId(7),
            attributes: DeviceAttributes {
                tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
                ..DeviceAttributes::default()
            },
        }
    }

    #[test]
    fn equal_profiles_share_one_copy_until_the_last_user_leaves() {
        let mut profiles = Profiles::default();
        let first = profiles.intern(profile(&["vip", "cn"]));
        let second = profiles.intern(profile(&["cn", "vip"]));
        let other = profiles.intern(profile(&["us"]));
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(profiles.len(), 2);
        profiles.release(first);
        assert_eq!(profiles.len(), 2);
        profiles.release(second);
        profiles.release(other);
        assert_eq!(profiles.len(), 0);
    }

    #[test]
    fn reports_are_converted_and_checked() {
        let wire = Attributes {
            platform: "ios".into(),
            tags: vec!["vip".into(), "vip".into()],
            custom: [("plan".to_owned(), "gold".to_owned())].into(),
            ..Attributes::default()
        };
        let attributes = attributes_of(wire).unwrap();
        assert_eq!(attributes.platform.as_deref(), Some("ios"));
        assert_eq!(attributes.locale, None);
        assert_eq!(attributes.tags.len(), 1);
        assert_eq!(attributes.custom["plan"], "gold");

        let too_many = Attributes {
            tags: (0..65).map(|i| format!("t{i}")).collect(),
            ..Attributes::default()
        };
        let error = attributes_of(too_many).unwrap_err().to_string();
        assert_eq!(error, "too many tags: 65 (at most 64)");
        let too_long = Attributes {
            locale: "x".repeat(129),
            ..Attributes::default()
        };
        assert!(attributes_of(too_long).is_err());
    }
}

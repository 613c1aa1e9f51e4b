//! What a device tells about itself, and the bounds on what it may tell.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::syntax::{MAX_VALUE_CHARS, is_word};

/// At most this many tags per device.
pub const MAX_TAGS: usize = 64;
/// At most this many topics per device.
pub const MAX_TOPICS: usize = 64;
/// At most this many custom keys per device.
pub const MAX_CUSTOM_KEYS: usize = 32;

/// The attributes an SDK reports for its device (at registration and when they change).
///
/// Every field is optional: a device that never said its platform does not match
/// `platform = ios`, and matches `platform != ios`. `Hash` lets a connector intern equal
/// sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
// Unknown fields are ignored, so that an older build reads what a newer one stored.
#[serde(default)]
pub struct DeviceAttributes {
    /// `ios`, `android`, `web`, ... (lowercase).
    pub platform: Option<String>,
    pub os_version: Option<String>,
    pub app_version: Option<String>,
    /// A BCP 47 tag, e.g. `zh-CN`.
    pub locale: Option<String>,
    /// An IANA time zone, e.g. `Asia/Shanghai`.
    pub timezone: Option<String>,
    /// The app's own id for its user; several devices may share one.
    pub alias: Option<String>,
    pub tags: BTreeSet<String>,
    pub topics: BTreeSet<String>,
    /// The app's own key/values, matched as `attr.<key>`.
    pub custom: BTreeMap<String, String>,
}

/// Why a reported attribute set is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributesError {
    #[error("too many {what}: {count} (at most {limit})")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("{field} is longer than {MAX_VALUE_CHARS} characters")]
    TooLong { field: String },
    #[error("{field} is empty (leave it unset instead)")]
    Empty { field: String },
    #[error("{field} contains a control character")]
    ControlCharacter { field: String },
    #[error("{what} {name:?} may only use letters, digits and _ . : -")]
    NotAWord { what: &'static str, name: String },
}

impl DeviceAttributes {
    /// Checks a reported set against the bounds: at most [`MAX_TAGS`] tags, [`MAX_TOPICS`]
    /// topics and [`MAX_CUSTOM_KEYS`] custom keys; every value, name and key at most 128
    /// characters without control characters; tag names, topic names and custom keys are
    /// words (letters, digits and `_ . : -`, as audiences write them); the named fields, when
    /// set, are not empty (an SDK that does not know a value leaves it unset).
    pub fn validate(&self) -> Result<(), AttributesError> {
        let named_fields = [
            ("platform", &self.platform),
            ("os_version", &self.os_version),
            ("app_version", &self.app_version),
            ("locale", &self.locale),
            ("timezone", &self.timezone),
            ("alias", &self.alias),
        ];
        for (field, value) in named_fields {
            if let Some(value) = value {
                if value.is_empty() {
                    return Err(AttributesError::Empty {
                        field: field.to_owned(),
                    });
                }
                check_value(field, value)?;
            }
        }
        check_names("tags", "tag", MAX_TAGS, &self.tags)?;
        check_names("topics", "topic", MAX_TOPICS, &self.topics)?;
        check_count("custom keys", self.custom.len(), MAX_CUSTOM_KEYS)?;
        for (key, value) in &self.custom {
            check_name("custom key", key)?;
            check_value(&format!("attr.{key}"), value)?;
        }
        Ok(())
    }
}

fn check_count(what: &'static str, count: usize, limit: usize) -> Result<(), AttributesError> {
    if count > limit {
        return Err(AttributesError::TooMany { what, count, limit });
    }
    Ok(())
}

fn check_names(
    what: &'static str,
    one: &'static str,
    limit: usize,
    names: &BTreeSet<String>,
) -> Result<(), AttributesError> {
    check_count(what, names.len(), limit)?;
    names.iter().try_for_each(|name| check_name(one, name))
}

fn check_name(what: &'static str, name: &str) -> Result<(), AttributesError> {
    if name.len() > MAX_VALUE_CHARS {
        return Err(AttributesError::TooLong {
            field: format!("a {what}"),
        });
    }
    if !is_word(name) {
        return Err(AttributesError::NotAWord {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

fn check_value(field: &str, value: &str) -> Result<(), AttributesError> {
    if value.chars().count() > MAX_VALUE_CHARS {
        return Err(AttributesError::TooLong {
            field: field.to_owned(),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(AttributesError::ControlCharacter {
            field: field.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> DeviceAttributes {
        DeviceAttributes {
            platform: Some("ios".into()),
            os_version: Some("17.4".into()),
            app_version: Some("2.3.0".into()),
            locale: Some("zh-CN".into()),
            timezone: Some("Asia/Shanghai".into()),
            alias: Some("user 42 / ünïcode".into()),
            tags: ["vip".to_string(), "cohort:2026-01".to_string()].into(),
            topics: ["news".to_string()].into(),
            custom: [
                ("plan".to_string(), "Gold plan".to_string()),
                ("empty".to_string(), String::new()),
            ]
            .into(),
        }
    }

    fn error(change: impl FnOnce(&mut DeviceAttributes)) -> String {
        let mut attributes = valid();
        change(&mut attributes);
        attributes.validate().unwrap_err().to_string()
    }

    #[test]
    fn accepts_a_typical_set_and_the_empty_set() {
        valid().validate().unwrap();
        DeviceAttributes::default().validate().unwrap();
        let mut at_limits = valid();
        at_limits.tags = (0..MAX_TAGS).map(|index| format!("t{index}")).collect();
        at_limits.topics = (0..MAX_TOPICS).map(|index| format!("t{index}")).collect();
        at_limits.custom = (0..MAX_CUSTOM_KEYS)
            .map(|index| (format!("k{index}"), "é".repeat(128)))
            .collect();
        at_limits.alias = Some("é".repeat(128));
        at_limits.validate().unwrap();
    }

    #[test]
    fn refuses_what_audiences_could_not_express_or_bound() {
        assert_eq!(
            error(|a| a.tags = (0..65).map(|i| format!("t{i}")).collect()),
            "too many tags: 65 (at most 64)"
        );
        assert_eq!(
            error(|a| a.topics = (0..65).map(|i| format!("t{i}")).collect()),
            "too many topics: 65 (at most 64)"
        );
        assert_eq!(
            error(|a| a.custom = (0..33).map(|i| (format!("k{i}"), String::new())).collect()),
            "too many custom keys: 33 (at most 32)"
        );
        assert_eq!(
            error(|a| a.platform = Some(String::new())),
            "platform is empty (leave it unset instead)"
        );
        assert_eq!(
            error(|a| a.locale = Some("x".repeat(129))),
            "locale is longer than 128 characters"
        );
        assert_eq!(
            error(|a| a.alias = Some("a\nb".into())),
            "alias contains a control character"
        );
        assert_eq!(
            error(|a| {
                a.tags.insert("not a word".into());
            }),
            "tag \"not a word\" may only use letters, digits and _ . : -"
        );
        assert_eq!(
            error(|a| {
                a.topics.insert(String::new());
            }),
            "topic \"\" may only use letters, digits and _ . : -"
        );
        assert_eq!(
            error(|a| {
                a.tags.insert("t".repeat(129));
            }),
            "a tag is longer than 128 characters"
        );
        assert_eq!(
            error(|a| {
                a.custom.insert("a/b".into(), "x".into());
            }),
            "custom key \"a/b\" may only use letters, digits and _ . : -"
        );
        assert_eq!(
            error(|a| {
                a.custom.insert("plan".into(), "\u{7}".into());
            }),
            "attr.plan contains a control character"
        );
    }
}

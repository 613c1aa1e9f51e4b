//! The compose form as the operator filled it in, and what it becomes: the API's campaign
//! request (target, message, schedule, throttle) and the words the review page shows.

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use serde_json::{Map, Value, json};

/// Defines the form's fields once: the struct, setting a field by name, and listing them.
macro_rules! compose_fields {
    ($($field:ident),* $(,)?) => {
        /// Every field of the compose form, as text (empty when not filled in).
        #[derive(Debug, Clone, Default)]
        pub(crate) struct ComposeForm { $(pub $field: String,)* }

        impl ComposeForm {
            fn set(&mut self, name: &str, value: &str) {
                match name {
                    $(stringify!($field) => self.$field = value.trim().to_owned(),)*
                    _ => {}
                }
            }

            /// Name and value of every field, to carry the form through the review page.
            pub(crate) fn fields(&self) -> Vec<(&'static str, String)> {
                vec![$((stringify!($field), self.$field.clone()),)*]
            }
        }
    };
}

compose_fields!(
    name, title, body, deep_link, data, audience, tags, segment, topic, list_kind, list, timing,
    at, at_zone, local_date, local_time, local_zone, cron, cron_zone, cron_until, throttle,
    ttl_hours, priority,
);

/// Most entries in a pasted or uploaded list (the API's limit per send).
const MAX_LIST_ENTRIES: usize = 1000;

impl ComposeForm {
    /// An empty form with safe defaults: a tag audience (never everyone by default), now.
    pub(crate) fn new() -> Self {
        let mut form = Self::default();
        form.fill_defaults();
        form
    }

    fn fill_defaults(&mut self) {
        let default = |field: &mut String, value: &str| {
            if field.is_empty() {
                *field = value.to_owned();
            }
        };
        default(&mut self.audience, "tags");
        default(&mut self.list_kind, "device_ids");
        default(&mut self.timing, "now");
        default(&mut self.at_zone, "UTC");
        default(&mut self.local_zone, "UTC");
        default(&mut self.cron_zone, "UTC");
        default(&mut self.priority, "normal");
    }

    /// The form from posted fields; unknown fields are ignored.
    pub(crate) fn from_fields(fields: &HashMap<String, String>) -> Self {
        let mut form = Self::default();
        for (name, value) in fields {
            form.set(name, value);
        }
        form.fill_defaults();
        form
    }

    /// Adds an uploaded file's entries (first column of each line) to the list.
    pub(crate) fn add_uploaded_list(&mut self, file: &str) {
        let entries: Vec<&str> = file
            .lines()
            .filter_map(|line| line.split(',').next())
            .map(|entry| entry.trim().trim_matches('"'))
            .filter(|entry| !entry.is_empty())
            .collect();
        if entries.is_empty() {
            return;
        }
        if !self.list.is_empty() {
            self.list.push('\n');
        }
        self.list.push_str(&entries.join("\n"));
    }

    fn list_entries(&self) -> Vec<String> {
        self.list
            .lines()
            .filter_map(|line| line.split(',').next())
            .map(|entry| entry.trim().to_owned())
            .filter(|entry| !entry.is_empty())
            .collect()
    }

    /// The target fields of the API request.
    pub(crate) fn target(&self) -> Result<Value, String> {
        let need = |value: &str, what: &str| {
            if value.is_empty() {
                Err(format!("write the {what}, or choose another audience"))
            } else {
                Ok(value.to_owned())
            }
        };
        Ok(match self.audience.as_str() {
            "everyone" => json!({ "broadcast": true }),
            "tags" => json!({ "tags": need(&self.tags, "tag expression")? }),
            "segment" => json!({ "segment": need(&self.segment, "segment filter")? }),
            "topic" => json!({ "topic": need(&self.topic, "topic")? }),
            "list" => {
                let entries = self.list_entries();
                if entries.is_empty() {
                    return Err("paste or upload at least one device id or alias".into());
                }
                if entries.len() > MAX_LIST_ENTRIES {
                    return Err(format!(
                        "the list has {} entries; at most {MAX_LIST_ENTRIES} per push",
                        entries.len()
                    ));
                }
                match self.list_kind.as_str() {
                    "aliases" => json!({ "aliases": entries }),
                    _ => json!({ "device_ids": entries }),
                }
            }
            other => return Err(format!("unknown audience {other:?}")),
        })
    }

    /// The message: target, notification, data, TTL, priority.
    fn message(&self) -> Result<Value, String> {
        let Value::Object(mut message) = self.target()? else {
            return Err("the audience is not an object".into());
        };
        let mut notification = Map::new();
        for (key, value) in [
            ("title", &self.title),
            ("body", &self.body),
            ("deep_link", &self.deep_link),
        ] {
            if !value.is_empty() {
                notification.insert(key.into(), Value::String(value.clone()));
            }
        }
        if notification.is_empty() && self.data.is_empty() {
            return Err("write a title, a body or data: the push would be empty".into());
        }
        if !notification.is_empty() {
            message.insert("notification".into(), Value::Object(notification));
        }
        if !self.data.is_empty() {
            let looks_like_json = self.data.starts_with('{') || self.data.starts_with('[');
            let data = match serde_json::from_str::<Value>(&self.data) {
                Ok(json) if looks_like_json => json,
                Err(error) if looks_like_json => {
                    return Err(format!("the data starts like JSON but is not: {error}"));
                }
                _ => Value::String(self.data.clone()),
            };
            message.insert("data".into(), data);
        }
        if !self.ttl_hours.is_empty() {
            let hours: u64 = self
                .ttl_hours
                .parse()
                .map_err(|_| "keep for offline devices: a whole number of hours".to_owned())?;
            message.insert("ttl_seconds".into(), json!(hours.saturating_mul(3600)));
        }
        if self.priority == "high" {
            message.insert("priority".into(), json!("high"));
        }
        Ok(Value::Object(message))
    }

    /// The schedule, `None` for now.
    fn schedule(&self, now_ms: i64) -> Result<Option<Value>, String> {
        Ok(Some(match self.timing.as_str() {
            "now" => return Ok(None),
            "at" => {
                let zone = parse_zone(&self.at_zone)?;
                let local = NaiveDateTime::parse_from_str(&self.at, "%Y-%m-%dT%H:%M")
                    .map_err(|_| "choose the date and time to send at".to_owned())?;
                let at = zone
                    .from_local_datetime(&local)
                    .earliest()
                    .ok_or_else(|| format!("{} does not exist in {zone}", self.at))?;
                let at_ms = at.timestamp_millis();
                if at_ms <= now_ms {
                    return Err("that time has passed: choose a later one, or Now".into());
                }
                json!({ "kind": "once", "at_ms": at_ms })
            }
            "local" => {
                if self.local_date.is_empty() || self.local_time.is_empty() {
                    return Err("choose the date and the local time".into());
                }
                parse_zone(&self.local_zone)?;
                json!({ "kind": "local_time", "date": self.local_date,
                        "time": self.local_time, "default_zone": self.local_zone })
            }
            "cron" => {
                if self.cron.is_empty() {
                    return Err("write the cron expression (e.g. 0 9 * * 1)".into());
                }
                let zone = parse_zone(&self.cron_zone)?;
                let until_ms = if self.cron_until.is_empty() {
                    Value::Null
                } else {
                    let date = NaiveDate::parse_from_str(&self.cron_until, "%Y-%m-%d")
                        .map_err(|_| "until: a date (YYYY-MM-DD)".to_owned())?;
                    let start = date.and_hms_opt(0, 0, 0).unwrap_or_default();
                    let until = zone
                        .from_local_datetime(&start)
                        .earliest()
                        .ok_or_else(|| format!("{} does not start in {zone}", self.cron_until))?;
                    json!(until.timestamp_millis())
                };
                json!({ "kind": "cron", "expression": self.cron, "zone": self.cron_zone,
                        "until_ms": until_ms })
            }
            other => return Err(format!("unknown timing {other:?}")),
        }))
    }

    /// The API's campaign request.
    pub(crate) fn campaign(&self, now_ms: i64) -> Result<Value, String> {
        if self.name.is_empty() {
            return Err("give the campaign a name".into());
        }
        let mut campaign = json!({ "name": self.name, "message": self.message()? });
        if let Some(schedule) = self.schedule(now_ms)? {
            campaign["schedule"] = schedule;
        }
        if !self.throttle.is_empty() {
            let rate: u32 = self
                .throttle
                .parse()
                .map_err(|_| "throttle: a whole number of deliveries per second".to_owned())?;
            campaign["throttle_per_second"] = json!(rate);
        }
        Ok(campaign)
    }

    pub(crate) fn describe_audience(&self) -> String {
        match self.audience.as_str() {
            "everyone" => "everyone (every registered device of the app)".into(),
            "tags" => format!("devices with tags: {}", self.tags),
            "segment" => format!("the segment: {}", self.segment),
            "topic" => format!("subscribers of the topic {}", self.topic),
            _ => {
                let kind = if self.list_kind == "aliases" {
                    "aliases"
                } else {
                    "device ids"
                };
                format!("a list of {} {kind}", self.list_entries().len())
            }
        }
    }

    pub(crate) fn describe_timing(&self) -> String {
        match self.timing.as_str() {
            "at" => format!("once, at {} ({})", self.at.replace('T', " "), self.at_zone),
            "local" => format!(
                "{} at {} in each device's own zone ({} for devices without one)",
                self.local_date, self.local_time, self.local_zone
            ),
            "cron" if self.cron_until.is_empty() => {
                format!("recurring: {} ({})", self.cron, self.cron_zone)
            }
            "cron" => format!(
                "recurring: {} ({}) until {}",
                self.cron, self.cron_zone, self.cron_until
            ),
            _ => "now".into(),
        }
    }

    pub(crate) fn describe_throttle(&self) -> String {
        if self.throttle.is_empty() {
            "none (as fast as possible)".into()
        } else {
            format!("{} deliveries a second", self.throttle)
        }
    }

    pub(crate) fn describe_ttl(&self) -> String {
        if self.ttl_hours.is_empty() {
            "the default (7 days)".into()
        } else {
            format!("{} hours", self.ttl_hours)
        }
    }
}

fn parse_zone(zone: &str) -> Result<chrono_tz::Tz, String> {
    zone.parse()
        .map_err(|_| format!("unknown time zone {zone:?} (e.g. UTC, Europe/Paris, Asia/Tokyo)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> ComposeForm {
        let fields = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        ComposeForm::from_fields(&fields)
    }

    #[test]
    fn a_tag_campaign_now_with_a_throttle() {
        let campaign = form(&[
            ("name", "spring"),
            ("title", "Sale"),
            ("audience", "tags"),
            ("tags", "vip and jp"),
            ("throttle", "5"),
            ("ttl_hours", "2"),
        ])
        .campaign(0)
        .expect("valid");
        assert_eq!(
            campaign,
            json!({ "name": "spring", "throttle_per_second": 5, "message": {
                "tags": "vip and jp", "notification": { "title": "Sale" }, "ttl_seconds": 7200 } })
        );
    }

    #[test]
    fn an_absolute_time_is_read_in_its_zone_and_must_be_ahead() {
        let at = form(&[
            ("name", "n"),
            ("data", "{\"a\": 1}"),
            ("audience", "everyone"),
            ("timing", "at"),
            ("at", "2030-01-01T09:00"),
            ("at_zone", "Asia/Tokyo"),
        ]);
        let campaign = at.campaign(0).expect("valid");
        // 09:00 in Tokyo is 00:00 UTC.
        assert_eq!(campaign["schedule"]["at_ms"], json!(1_893_456_000_000_i64));
        assert_eq!(campaign["message"]["data"], json!({ "a": 1 }));
        let later = at.campaign(1_893_456_000_000).expect_err("passed");
        assert!(later.contains("passed"), "{later}");
    }

    #[test]
    fn lists_come_from_the_text_and_the_uploaded_file() {
        let mut list = form(&[
            ("audience", "list"),
            ("list_kind", "aliases"),
            ("list", "a\n"),
        ]);
        list.add_uploaded_list("b,extra\n\"c\"\n\n");
        assert_eq!(
            list.target().expect("valid"),
            json!({ "aliases": ["a", "b", "c"] })
        );
    }

    #[test]
    fn what_is_missing_is_said() {
        let empty_tags = form(&[("name", "n"), ("title", "t")]).campaign(0);
        assert!(empty_tags.expect_err("no tags").contains("tag expression"));
        let empty_message = form(&[("name", "n"), ("tags", "vip")]).campaign(0);
        assert!(empty_message.expect_err("empty").contains("empty"));
        let bad_zone = form(&[
            ("name", "n"),
            ("title", "t"),
            ("tags", "v"),
            ("timing", "cron"),
            ("cron", "0 9 * * *"),
            ("cron_zone", "Mars/Base"),
        ])
        .campaign(0);
        assert!(bad_zone.expect_err("zone").contains("Mars/Base"));
    }
}

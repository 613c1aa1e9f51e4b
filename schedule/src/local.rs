//! Firings of `local_time` schedules: one per time zone, at a date and wall-clock time read
//! in that zone.

use std::collections::BTreeSet;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use crate::{Firing, MAX_FIRINGS_PER_CALL, ScheduleError, zone};

/// The furthest west a zone's clock runs behind UTC (UTC-12, e.g. `Etc/GMT+12`): the wall
/// clock reads a given time there last, so no zone's firing is due later than the time read
/// as UTC plus this. A test checks it against every zone this build knows.
const WESTMOST_OFFSET_MS: i64 = 12 * 3_600_000;

/// A date and a wall-clock time, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalTime(NaiveDateTime);

impl LocalTime {
    /// Reads `YYYY-MM-DD` and `HH:MM`, strictly (two-digit fields, a real day).
    pub(crate) fn parse(date: &str, time: &str) -> Result<Self, ScheduleError> {
        let bad_date = || ScheduleError::BadDate(date.to_owned());
        let [y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2] = *date.as_bytes() else {
            return Err(bad_date());
        };
        let year = digits(&[y1, y2, y3, y4]).ok_or_else(bad_date)?;
        let month = digits(&[m1, m2]).ok_or_else(bad_date)?;
        let day = digits(&[d1, d2]).ok_or_else(bad_date)?;
        let date_value = NaiveDate::from_ymd_opt(year as i32, month, day).ok_or_else(bad_date)?;

        let bad_time = || ScheduleError::BadTime(time.to_owned());
        let [h1, h2, b':', n1, n2] = *time.as_bytes() else {
            return Err(bad_time());
        };
        let hour = digits(&[h1, h2]).ok_or_else(bad_time)?;
        let minute = digits(&[n1, n2]).ok_or_else(bad_time)?;
        let time_value = NaiveTime::from_hms_opt(hour, minute, 0).ok_or_else(bad_time)?;
        Ok(Self(date_value.and_time(time_value)))
    }

    /// The firings due in `start..=end`: one per distinct known zone among the default zone
    /// and `zones` (unknown ones skipped).
    pub(crate) fn firings(
        &self,
        default_zone: &str,
        zones: &[String],
        start: i64,
        end: i64,
    ) -> Result<Vec<Firing>, ScheduleError> {
        // The default zone must be known (validation says so); devices' zones may not be.
        zone::parse(default_zone)?;
        let mut seen = BTreeSet::new();
        let mut firings = Vec::new();
        for name in std::iter::once(default_zone).chain(zones.iter().map(String::as_str)) {
            if !seen.insert(name) {
                continue;
            }
            let Ok(tz) = zone::parse(name) else {
                continue;
            };
            let due_at = zone::resolve(self.0, tz)
                .ok_or_else(|| ScheduleError::BadDate(self.0.date().to_string()))?;
            let due_at_ms = due_at.timestamp_millis();
            if !(start..=end).contains(&due_at_ms) {
                continue;
            }
            if firings.len() == MAX_FIRINGS_PER_CALL {
                return Err(ScheduleError::TooManyFirings {
                    limit: MAX_FIRINGS_PER_CALL,
                });
            }
            firings.push(Firing {
                name: format!("{}@{name}", self.0.format("%Y-%m-%dT%H:%M")),
                due_at_ms,
                zone: Some(name.to_owned()),
            });
        }
        Ok(firings)
    }

    /// The latest any zone's firing can be due.
    pub(crate) fn latest_due_ms(&self) -> Result<i64, ScheduleError> {
        let as_utc = self.0.and_utc().timestamp_millis();
        as_utc
            .checked_add(WESTMOST_OFFSET_MS)
            .ok_or(ScheduleError::TimeOutOfRange(as_utc))
    }
}

/// ASCII digits as a number.
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |number, &byte| {
        byte.is_ascii_digit()
            .then(|| number * 10 + u32::from(byte - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;

    #[test]
    fn dates_and_times_are_read_strictly() {
        assert!(LocalTime::parse("2026-11-23", "09:00").is_ok());
        assert!(LocalTime::parse("2028-02-29", "23:59").is_ok());
        assert!(LocalTime::parse("2026-01-01", "00:00").is_ok());
        for date in [
            "2026-11-31",
            "2027-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-05",
            "26-11-23",
            "2026/11/23",
            "2026-11-23T09:00",
            " 2026-11-23",
            "",
            "２０２６-11-23",
        ] {
            assert_eq!(
                LocalTime::parse(date, "09:00"),
                Err(ScheduleError::BadDate(date.to_owned())),
                "{date:?}"
            );
        }
        for time in [
            "24:00", "23:60", "9:00", "09:00:00", "09h00", "", "-1:00", "0900",
        ] {
            assert_eq!(
                LocalTime::parse("2026-11-23", time),
                Err(ScheduleError::BadTime(time.to_owned())),
                "{time:?}"
            );
        }
        assert_eq!(
            ScheduleError::BadTime("24:00".into()).to_string(),
            "bad time \"24:00\" (expected HH:MM, 00:00 to 23:59)"
        );
    }

    /// Every zone this build knows, on days around the year (both sides of every daylight
    /// saving change) from 2025 to 2040: no firing is due after `latest_due_ms`.
    #[test]
    fn no_zone_fires_after_the_latest_due_time() {
        for year in 2025..=2040 {
            for (month, day) in [
                (1, 1),
                (3, 8),
                (3, 29),
                (4, 5),
                (6, 30),
                (10, 4),
                (10, 25),
                (11, 1),
                (12, 31),
            ] {
                let date = format!("{year}-{month:02}-{day:02}");
                for time in ["00:00", "02:30", "09:00", "23:59"] {
                    let local = LocalTime::parse(&date, time).expect("valid");
                    let latest = local.latest_due_ms().expect("in range");
                    assert_eq!(local.0.year(), year);
                    for tz in chrono_tz::TZ_VARIANTS {
                        let due = zone::resolve(local.0, tz).expect("resolves");
                        assert!(
                            due.timestamp_millis() <= latest,
                            "{date} {time} in {} is due at {due}",
                            tz.name()
                        );
                    }
                }
            }
        }
    }
}

//! When a campaign sends: the firings of a [`Schedule`], computed deterministically.
//!
//! A firing is one send of a campaign, named so that every controller computing it gets the
//! same name (the name is the key of the firing's claim and of its idempotency key):
//!
//! | schedule | firings | name |
//! |---|---|---|
//! | `once` | one | `once:2026-11-23T09:00:00Z` (the instant asked for, UTC) |
//! | `local_time` | one per time zone the app's devices reported, and the default zone | `2026-11-23T09:00@Asia/Tokyo` (the wall clock asked for, and the zone) |
//! | `cron` | one per occurrence, until `until_ms` | `cron:2026-11-23T09:00Z` (the occurrence's instant, UTC) |
//!
//! Layout: [`zone`] reads zone names and turns wall-clock times into instants (the daylight
//! saving rules are there), `local` and `cron` compute the firings of their kinds.
//!
//! What it does not own: storage (the campaign records and firing claims are in
//! `ringpush_store`), the clock (every function takes times as arguments), sending.
//!
//! Times are milliseconds since the Unix epoch, UTC, as everywhere in ringpush.

mod cron;
mod local;
pub mod zone;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Most firings one call of [`firings`] answers: a window holding more is an error rather
/// than an unbounded list (a minutely cron yields 60 an hour).
pub const MAX_FIRINGS_PER_CALL: usize = 10_000;

/// When a campaign sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// Once, at an absolute time.
    Once { at_ms: i64 },
    /// Once per time zone, at a wall-clock time on a date in each device's own zone
    /// (`time` as `HH:MM`, `date` as `YYYY-MM-DD`); devices without a zone use `default_zone`.
    LocalTime {
        date: String,
        time: String,
        default_zone: String,
    },
    /// Recurring, by a cron expression (5 fields: minute hour day-of-month month
    /// day-of-week) read in `zone`, until `until_ms` if set.
    Cron {
        expression: String,
        zone: String,
        until_ms: Option<i64>,
    },
}

/// One send of a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Firing {
    /// Stable across controllers and runs (see the table in the crate doc).
    pub name: String,
    /// When it is due.
    pub due_at_ms: i64,
    /// For `local_time`: the zone this firing is for (its audience is the campaign's,
    /// narrowed to devices in this zone; the default zone's firing also covers devices
    /// without a zone). `None` for the other kinds.
    pub zone: Option<String>,
}

/// Why a schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("bad cron expression {expression:?}: {detail}")]
    BadCron { expression: String, detail: String },
    #[error("unknown time zone {0:?} (expected an IANA name such as Europe/Paris or UTC)")]
    UnknownZone(String),
    #[error("bad date {0:?} (expected YYYY-MM-DD, a real day)")]
    BadDate(String),
    #[error("bad time {0:?} (expected HH:MM, 00:00 to 23:59)")]
    BadTime(String),
    #[error("time {0} ms is outside the dates this scheduler handles")]
    TimeOutOfRange(i64),
    #[error("more than {limit} firings in one window")]
    TooManyFirings { limit: usize },
}

/// Checks everything [`firings`] will need: the cron expression (5 fields, one that matches
/// some day), the zones, the date and time, and that times are representable.
pub fn validate(schedule: &Schedule) -> Result<(), ScheduleError> {
    match schedule {
        Schedule::Once { at_ms } => instant(*at_ms).map(|_| ()),
        Schedule::LocalTime {
            date,
            time,
            default_zone,
        } => {
            local::LocalTime::parse(date, time)?;
            zone::parse(default_zone).map(|_| ())
        }
        Schedule::Cron {
            expression,
            zone,
            until_ms,
        } => {
            let zone = zone::parse(zone)?;
            if let Some(until_ms) = until_ms {
                instant(*until_ms)?;
            }
            cron::CronSchedule::parse(expression, zone)?.check_matches_some_day()
        }
    }
}

/// The firings of `schedule` due in `window_start_ms..=window_end_ms`, sorted by due time
/// then name.
///
/// - `once`: one firing named after `at_ms`, due at `at_ms`, or at
///   `campaign_created_at_ms` if that is later (a campaign asked for "now" or a moment ago
///   sends as soon as it exists).
/// - `local_time`: one firing per distinct known zone among `zones` and the default zone,
///   due at the date and time read in that zone (daylight saving rules in [`zone`]). Zones
///   this build does not know (a device may report anything) are skipped: those devices are
///   left to the default zone's firing. Firings due before the campaign was created are not
///   firings: the campaign was made after that zone's time had passed.
/// - `cron`: each occurrence in the zone at or after the campaign's creation, up to
///   `until_ms` (inclusive); daylight saving rules in the `cron` module.
///
/// `zones` is only read for `local_time`.
pub fn firings(
    schedule: &Schedule,
    campaign_created_at_ms: i64,
    window_start_ms: i64,
    window_end_ms: i64,
    zones: &[String],
) -> Result<Vec<Firing>, ScheduleError> {
    let mut firings = match schedule {
        Schedule::Once { at_ms } => {
            let due_at_ms = (*at_ms).max(campaign_created_at_ms);
            let in_window = (window_start_ms..=window_end_ms).contains(&due_at_ms);
            let name = format!(
                "once:{}",
                instant(*at_ms)?.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            );
            let firing = Firing {
                name,
                due_at_ms,
                zone: None,
            };
            if in_window { vec![firing] } else { Vec::new() }
        }
        Schedule::LocalTime {
            date,
            time,
            default_zone,
        } => {
            let start = window_start_ms.max(campaign_created_at_ms);
            local::LocalTime::parse(date, time)?.firings(
                default_zone,
                zones,
                start,
                window_end_ms,
            )?
        }
        Schedule::Cron {
            expression,
            zone,
            until_ms,
        } => {
            let start = window_start_ms.max(campaign_created_at_ms);
            let end = until_ms.map_or(window_end_ms, |until| until.min(window_end_ms));
            cron::CronSchedule::parse(expression, zone::parse(zone)?)?.firings(start, end)?
        }
    };
    firings.sort_by(|a, b| (a.due_at_ms, &a.name).cmp(&(b.due_at_ms, &b.name)));
    Ok(firings)
}

/// The latest instant any firing of `schedule` can be due, whatever zones devices report;
/// `None` for a schedule that recurs without end. Once this instant has passed (and the
/// firings up to it are done), the campaign has nothing left to send.
pub fn last_due_ms(
    schedule: &Schedule,
    campaign_created_at_ms: i64,
) -> Result<Option<i64>, ScheduleError> {
    match schedule {
        Schedule::Once { at_ms } => Ok(Some((*at_ms).max(campaign_created_at_ms))),
        Schedule::LocalTime { date, time, .. } => local::LocalTime::parse(date, time)?
            .latest_due_ms()
            .map(Some),
        Schedule::Cron { until_ms, .. } => Ok(*until_ms),
    }
}

/// An instant from milliseconds, if chrono can represent it.
fn instant(ms: i64) -> Result<DateTime<Utc>, ScheduleError> {
    DateTime::<Utc>::from_timestamp_millis(ms).ok_or(ScheduleError::TimeOutOfRange(ms))
}

#[cfg(test)]
mod tests;

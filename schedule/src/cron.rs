//! Firings of `cron` schedules: each occurrence of a 5-field cron expression read in a zone.
//!
//! Expressions are croner's (Vixie cron, plus `L`, `W`, `#`, `+` and the `@daily` style
//! nicknames; weekdays 0–7 with 0 and 7 Sunday), with exactly five fields: no seconds, no
//! years. Daylight saving follows croner (and Vixie cron):
//! - an expression with a fixed minute and hour (`0 9 * * *`) whose time the clock jumps
//!   over that day fires at the first minute after the jump (02:30 fires at 03:00 new time);
//!   one whose time the clock repeats fires once, the first time;
//! - an expression with `*` or a step in its minute or hour (`*/15 * * * *`) skips the
//!   occurrences the clock jumps over, and fires at every occurrence of a repeated hour,
//!   both times: those are different instants, so their firings have different names.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};

use crate::{Firing, MAX_FIRINGS_PER_CALL, ScheduleError, instant};

/// A parsed expression and the zone it is read in.
pub(crate) struct CronSchedule<'a> {
    expression: &'a str,
    cron: Cron,
    zone: Tz,
}

impl<'a> CronSchedule<'a> {
    pub(crate) fn parse(expression: &'a str, zone: Tz) -> Result<Self, ScheduleError> {
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(expression)
            .map_err(|error| bad_cron(expression, &error))?;
        Ok(Self {
            expression,
            cron,
            zone,
        })
    }

    /// Refuses an expression that never matches (`0 0 30 2 *`): a campaign that can never
    /// fire is a mistake its author should hear about.
    pub(crate) fn check_matches_some_day(&self) -> Result<(), ScheduleError> {
        // Any start works: a pattern that matches at all matches within 400 years (the
        // Gregorian cycle), and croner searches until the year 5000.
        let start = instant(0)?.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&start, true)
            .map(|_| ())
            .map_err(|error| match error {
                CronError::TimeSearchLimitExceeded => ScheduleError::BadCron {
                    expression: self.expression.to_owned(),
                    detail: "it never matches a real day".to_owned(),
                },
                other => bad_cron(self.expression, &other),
            })
    }

    /// The occurrences in `start..=end`, in time order.
    pub(crate) fn firings(&self, start: i64, end: i64) -> Result<Vec<Firing>, ScheduleError> {
        let mut firings = Vec::new();
        if start > end {
            return Ok(firings);
        }
        let mut cursor = instant(start)?.with_timezone(&self.zone);
        let mut inclusive = true;
        loop {
            let occurrence = match self.cron.find_next_occurrence(&cursor, inclusive) {
                Ok(occurrence) => occurrence,
                // No occurrence before croner's horizon (the year 5000): none in the window.
                Err(CronError::TimeSearchLimitExceeded) => break,
                Err(error) => return Err(bad_cron(self.expression, &error)),
            };
            let due_at_ms = occurrence.timestamp_millis();
            if due_at_ms > end {
                break;
            }
            // croner works in whole seconds: an occurrence a fraction of a second before a
            // start that is not on a second boundary is not in the window.
            if due_at_ms >= start {
                if firings.len() == MAX_FIRINGS_PER_CALL {
                    return Err(ScheduleError::TooManyFirings {
                        limit: MAX_FIRINGS_PER_CALL,
                    });
                }
                let utc: DateTime<Utc> = occurrence.with_timezone(&Utc);
                firings.push(Firing {
                    name: format!("cron:{}", utc.format("%Y-%m-%dT%H:%MZ")),
                    due_at_ms,
                    zone: None,
                });
            }
            cursor = occurrence;
            inclusive = false;
        }
        Ok(firings)
    }
}

fn bad_cron(expression: &str, error: &CronError) -> ScheduleError {
    // croner's messages are sentences; ours are lowercase without a final period.
    let detail = error.to_string();
    let detail = detail.trim_end_matches('.');
    let mut chars = detail.chars();
    let detail = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    ScheduleError::BadCron {
        expression: expression.to_owned(),
        detail,
    }
}

//! Time zones by IANA name, and wall-clock times read in a zone.
//!
//! Daylight saving, for `local_time` schedules (the rules of RFC 5545, which calendars
//! follow):
//! - a wall-clock time that does not exist in a zone that day (the clock jumps over it, e.g.
//!   02:30 when 02:00 becomes 03:00) is read with the offset in force before the jump, so it
//!   lands as far after the jump as it was after the jump's start: 02:30 fires at 03:30 new
//!   time, one hour after 01:30;
//! - a wall-clock time that exists twice (the clock goes back over it) is its first
//!   occurrence, so it fires once.
//!
//! Cron schedules follow croner's rules instead (see the `cron` module).

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use crate::ScheduleError;

/// The longest jump of a clock over wall-clock times that [`resolve`] handles: Samoa skipped
/// a whole day (2011-12-30) when it moved across the date line.
const MAX_GAP: TimeDelta = TimeDelta::hours(48);

/// The zone with this IANA name (case-sensitive, as devices report it; links such as
/// `US/Eastern` are accepted).
pub(crate) fn parse(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::UnknownZone(name.to_owned()))
}

/// Whether this build knows the zone: a `local_time` campaign has no firing for a zone it
/// does not know, so devices that report one are left to the default zone's firing.
pub fn is_known(name: &str) -> bool {
    parse(name).is_ok()
}

/// The instant at which the wall clock of `zone` reads `local`, by the rules in the module
/// doc. `None` only past the dates chrono represents.
pub(crate) fn resolve(local: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(time) => Some(time.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => {
            // In a jump: find the last wall-clock minute before it, and read `local` with
            // the offset in force then.
            let mut probe = local;
            let earliest = local.checked_sub_signed(MAX_GAP)?;
            while probe > earliest {
                probe = probe.checked_sub_signed(TimeDelta::minutes(1))?;
                let before = match zone.from_local_datetime(&probe) {
                    LocalResult::Single(time) => time,
                    LocalResult::Ambiguous(_, second) => second,
                    LocalResult::None => continue,
                };
                let offset = TimeDelta::seconds(i64::from(before.offset().fix().local_minus_utc()));
                return Some(local.checked_sub_signed(offset)?.and_utc());
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(date: (i32, u32, u32), hour: u32, minute: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(date.0, date.1, date.2)
            .and_then(|day| day.and_hms_opt(hour, minute, 0))
            .expect("a real date")
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("rfc 3339")
            .with_timezone(&Utc)
    }

    fn zone(name: &str) -> Tz {
        parse(name).expect("known zone")
    }

    #[test]
    fn names_are_iana_and_case_sensitive() {
        assert!(is_known("Asia/Tokyo"));
        assert!(is_known("UTC"));
        assert!(is_known("Etc/GMT+12"));
        assert!(is_known("US/Eastern"), "links are accepted");
        assert!(!is_known("asia/tokyo"));
        assert!(!is_known("Mars/Olympus_Mons"));
        assert!(!is_known(""));
        assert!(!is_known(" Asia/Tokyo"));
        assert_eq!(
            parse("Nowhere").unwrap_err().to_string(),
            "unknown time zone \"Nowhere\" (expected an IANA name such as Europe/Paris or UTC)"
        );
    }

    #[test]
    fn ordinary_times_read_with_the_zone_offset() {
        let nine = at((2026, 11, 23), 9, 0);
        assert_eq!(
            resolve(nine, zone("Asia/Tokyo")),
            Some(utc("2026-11-23T00:00:00Z"))
        );
        assert_eq!(
            resolve(nine, zone("UTC")),
            Some(utc("2026-11-23T09:00:00Z"))
        );
        assert_eq!(
            resolve(nine, zone("America/New_York")),
            Some(utc("2026-11-23T14:00:00Z"))
        );
        assert_eq!(
            resolve(nine, zone("Asia/Kolkata")),
            Some(utc("2026-11-23T03:30:00Z"))
        );
        assert_eq!(
            resolve(nine, zone("Asia/Kathmandu")),
            Some(utc("2026-11-23T03:15:00Z"))
        );
    }

    #[test]
    fn a_time_the_clock_jumps_over_moves_forward_by_the_jump() {
        // New York, 2026-03-08: 02:00 EST becomes 03:00 EDT.
        let new_york = zone("America/New_York");
        let before = resolve(at((2026, 3, 8), 1, 30), new_york);
        assert_eq!(before, Some(utc("2026-03-08T06:30:00Z")));
        // 02:30 does not exist: read as EST, it is 07:30Z, which is 03:30 EDT.
        let missing = resolve(at((2026, 3, 8), 2, 30), new_york);
        assert_eq!(missing, Some(utc("2026-03-08T07:30:00Z")));
        assert_eq!(
            resolve(at((2026, 3, 8), 2, 0), new_york),
            Some(utc("2026-03-08T07:00:00Z"))
        );
        assert_eq!(
            resolve(at((2026, 3, 8), 3, 0), new_york),
            Some(utc("2026-03-08T07:00:00Z"))
        );
        // Lord Howe jumps by half an hour (02:00 becomes 02:30) on 2026-10-04.
        let lord_howe = zone("Australia/Lord_Howe");
        let missing = resolve(at((2026, 10, 4), 2, 15), lord_howe);
        assert_eq!(missing, Some(utc("2026-10-03T15:45:00Z")), "read at +10:30");
    }

    #[test]
    fn a_time_the_clock_repeats_is_its_first_occurrence() {
        // New York, 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:30 happens twice.
        let twice = resolve(at((2026, 11, 1), 1, 30), zone("America/New_York"));
        assert_eq!(twice, Some(utc("2026-11-01T05:30:00Z")), "the EDT one");
        // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET.
        let twice = resolve(at((2026, 10, 25), 2, 30), zone("Europe/Berlin"));
        assert_eq!(twice, Some(utc("2026-10-25T00:30:00Z")), "the CEST one");
    }

    #[test]
    fn a_day_skipped_across_the_date_line() {
        // Samoa moved from UTC-10 to UTC+14 at the end of 2011-12-29: 2011-12-30 never
        // happened there. 09:00 that day is read at -10: 19:00Z, which was 09:00 on the 31st.
        let apia = zone("Pacific/Apia");
        let skipped = resolve(at((2011, 12, 30), 9, 0), apia);
        assert_eq!(skipped, Some(utc("2011-12-30T19:00:00Z")));
        assert_eq!(
            resolve(at((2011, 12, 29), 9, 0), apia),
            Some(utc("2011-12-29T19:00:00Z"))
        );
        assert_eq!(
            resolve(at((2011, 12, 31), 9, 0), apia),
            Some(utc("2011-12-30T19:00:00Z"))
        );
    }
}

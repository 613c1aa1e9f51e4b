//! The public functions, kind by kind: names, due times, windows, creation time, daylight
//! saving, zones on both sides of the date line, limits and error messages.

use super::*;

/// Milliseconds of an RFC 3339 instant.
fn ms(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .expect("rfc 3339")
        .timestamp_millis()
}

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// A campaign created long before every window below.
const LONG_AGO: i64 = 0;

fn zones(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

fn once(at: &str) -> Schedule {
    Schedule::Once { at_ms: ms(at) }
}

fn local(date: &str, time: &str, default_zone: &str) -> Schedule {
    Schedule::LocalTime {
        date: date.to_owned(),
        time: time.to_owned(),
        default_zone: default_zone.to_owned(),
    }
}

fn cron(expression: &str, zone: &str, until_ms: Option<i64>) -> Schedule {
    Schedule::Cron {
        expression: expression.to_owned(),
        zone: zone.to_owned(),
        until_ms,
    }
}

/// (name, due as RFC 3339 UTC, zone) of each firing, for readable assertions.
fn described(firings: Vec<Firing>) -> Vec<(String, String, Option<String>)> {
    firings
        .into_iter()
        .map(|firing| {
            let due = instant(firing.due_at_ms)
                .expect("in range")
                .to_rfc3339_opts(SecondsFormat::AutoSi, true);
            (firing.name, due, firing.zone)
        })
        .collect()
}

fn names(firings: Vec<Firing>) -> Vec<String> {
    firings.into_iter().map(|firing| firing.name).collect()
}

fn all(schedule: &Schedule, start: &str, end: &str, zone_names: &[&str]) -> Vec<Firing> {
    firings(schedule, LONG_AGO, ms(start), ms(end), &zones(zone_names)).expect("firings")
}

// ---- once ----

#[test]
fn once_fires_once_at_its_time() {
    let schedule = once("2026-11-23T09:00:00Z");
    let fired = all(
        &schedule,
        "2026-11-23T08:00:00Z",
        "2026-11-23T10:00:00Z",
        &[],
    );
    assert_eq!(
        described(fired),
        [(
            "once:2026-11-23T09:00:00Z".to_owned(),
            "2026-11-23T09:00:00Z".to_owned(),
            None
        )]
    );
}

#[test]
fn once_window_includes_both_ends() {
    let schedule = once("2026-11-23T09:00:00Z");
    let at = ms("2026-11-23T09:00:00Z");
    let count = |start, end| {
        firings(&schedule, LONG_AGO, start, end, &[])
            .expect("firings")
            .len()
    };
    assert_eq!(count(at, at), 1);
    assert_eq!(count(at - HOUR, at), 1);
    assert_eq!(count(at, at + HOUR), 1);
    assert_eq!(count(at - HOUR, at - 1), 0);
    assert_eq!(count(at + 1, at + HOUR), 0);
    assert_eq!(count(at + 1, at - 1), 0, "an empty window");
}

#[test]
fn once_in_the_past_at_creation_is_due_when_created_and_keeps_its_name() {
    let schedule = once("2026-11-23T09:00:00Z");
    let created = ms("2026-11-23T09:00:05Z");
    let fired = firings(&schedule, created, created - HOUR, created + HOUR, &[]).expect("ok");
    assert_eq!(
        described(fired),
        [(
            "once:2026-11-23T09:00:00Z".to_owned(),
            "2026-11-23T09:00:05Z".to_owned(),
            None
        )]
    );
    // Not yet due a moment before it was created.
    let early = firings(&schedule, created, created - HOUR, created - 1, &[]).expect("ok");
    assert!(early.is_empty());
}

#[test]
fn once_names_keep_milliseconds_and_ignore_zones() {
    let schedule = Schedule::Once {
        at_ms: ms("2026-11-23T09:00:00.250Z"),
    };
    let fired = all(
        &schedule,
        "2026-11-23T00:00:00Z",
        "2026-11-24T00:00:00Z",
        &["Asia/Tokyo"],
    );
    assert_eq!(names(fired), ["once:2026-11-23T09:00:00.250Z"]);
}

// ---- local_time ----

#[test]
fn local_time_fires_once_per_zone_at_its_wall_clock() {
    let schedule = local("2026-11-23", "09:00", "UTC");
    let fired = all(
        &schedule,
        "2026-11-22T00:00:00Z",
        "2026-11-25T00:00:00Z",
        &[
            "America/New_York",
            "Asia/Tokyo",
            "Europe/Paris",
            "Asia/Kolkata",
        ],
    );
    let expected = [
        (
            "2026-11-23T09:00@Asia/Tokyo",
            "2026-11-23T00:00:00Z",
            "Asia/Tokyo",
        ),
        (
            "2026-11-23T09:00@Asia/Kolkata",
            "2026-11-23T03:30:00Z",
            "Asia/Kolkata",
        ),
        (
            "2026-11-23T09:00@Europe/Paris",
            "2026-11-23T08:00:00Z",
            "Europe/Paris",
        ),
        ("2026-11-23T09:00@UTC", "2026-11-23T09:00:00Z", "UTC"),
        (
            "2026-11-23T09:00@America/New_York",
            "2026-11-23T14:00:00Z",
            "America/New_York",
        ),
    ];
    let expected: Vec<(String, String, Option<String>)> = expected
        .iter()
        .map(|(name, due, zone)| {
            (
                (*name).to_owned(),
                (*due).to_owned(),
                Some((*zone).to_owned()),
            )
        })
        .collect();
    assert_eq!(described(fired), expected);
}

#[test]
fn local_time_default_zone_fires_even_when_no_device_reported_a_zone() {
    let schedule = local("2026-11-23", "09:00", "Europe/Berlin");
    let fired = all(
        &schedule,
        "2026-11-22T00:00:00Z",
        "2026-11-25T00:00:00Z",
        &[],
    );
    assert_eq!(
        described(fired),
        [(
            "2026-11-23T09:00@Europe/Berlin".to_owned(),
            "2026-11-23T08:00:00Z".to_owned(),
            Some("Europe/Berlin".to_owned())
        )]
    );
}

#[test]
fn local_time_zones_count_once_and_unknown_ones_are_skipped() {
    let schedule = local("2026-11-23", "09:00", "Europe/Berlin");
    let fired = all(
        &schedule,
        "2026-11-22T00:00:00Z",
        "2026-11-25T00:00:00Z",
        &[
            "Europe/Berlin",
            "Asia/Tokyo",
            "Asia/Tokyo",
            "Mars/Olympus_Mons",
            "",
            "asia/tokyo",
        ],
    );
    assert_eq!(
        names(fired),
        [
            "2026-11-23T09:00@Asia/Tokyo",
            "2026-11-23T09:00@Europe/Berlin"
        ]
    );
}

#[test]
fn local_time_zones_that_share_an_instant_keep_their_own_firings() {
    // Links and zones with the same offset are different audiences (devices report names).
    let schedule = local("2026-11-23", "09:00", "America/New_York");
    let fired = all(
        &schedule,
        "2026-11-22T00:00:00Z",
        "2026-11-25T00:00:00Z",
        &["US/Eastern", "America/Toronto"],
    );
    let fired = described(fired);
    assert_eq!(fired.len(), 3);
    assert!(
        fired
            .iter()
            .all(|(_, due, _)| due == "2026-11-23T14:00:00Z")
    );
    assert_eq!(
        fired
            .iter()
            .map(|(name, _, _)| name.as_str())
            .collect::<Vec<_>>(),
        [
            "2026-11-23T09:00@America/New_York",
            "2026-11-23T09:00@America/Toronto",
            "2026-11-23T09:00@US/Eastern"
        ],
        "sorted by name within one instant"
    );
}

#[test]
fn local_time_window_and_creation_time_select_zones() {
    let schedule = local("2026-11-23", "09:00", "UTC");
    let zone_names = zones(&["Asia/Tokyo", "America/New_York"]);
    // Only the zones whose 09:00 falls in the window.
    let window = firings(
        &schedule,
        LONG_AGO,
        ms("2026-11-23T08:00:00Z"),
        ms("2026-11-23T09:00:00Z"),
        &zone_names,
    )
    .expect("ok");
    assert_eq!(names(window), ["2026-11-23T09:00@UTC"]);
    // A campaign created after Tokyo's 09:00 does not send late in Tokyo.
    let created = ms("2026-11-23T05:00:00Z");
    let later = firings(
        &schedule,
        created,
        ms("2026-11-22T00:00:00Z"),
        ms("2026-11-25T00:00:00Z"),
        &zone_names,
    )
    .expect("ok");
    assert_eq!(
        names(later),
        ["2026-11-23T09:00@UTC", "2026-11-23T09:00@America/New_York"]
    );
}

#[test]
fn local_time_across_the_date_line() {
    // One date, the zones furthest apart: Kiritimati (UTC+14) reads 09:00 first, Baker
    // Island time (UTC-12) 26 hours later; Samoa (+13) and American Samoa (-11) are
    // neighbours a day apart.
    let schedule = local("2026-11-23", "09:00", "Pacific/Kiritimati");
    let fired = all(
        &schedule,
        "2026-11-21T00:00:00Z",
        "2026-11-26T00:00:00Z",
        &[
            "Etc/GMT+12",
            "Pacific/Apia",
            "Pacific/Pago_Pago",
            "Pacific/Auckland",
            "Pacific/Honolulu",
        ],
    );
    let expected = [
        (
            "2026-11-23T09:00@Pacific/Kiritimati",
            "2026-11-22T19:00:00Z",
        ),
        ("2026-11-23T09:00@Pacific/Apia", "2026-11-22T20:00:00Z"),
        ("2026-11-23T09:00@Pacific/Auckland", "2026-11-22T20:00:00Z"),
        ("2026-11-23T09:00@Pacific/Honolulu", "2026-11-23T19:00:00Z"),
        ("2026-11-23T09:00@Pacific/Pago_Pago", "2026-11-23T20:00:00Z"),
        ("2026-11-23T09:00@Etc/GMT+12", "2026-11-23T21:00:00Z"),
    ];
    let fired = described(fired);
    let got: Vec<(&str, &str)> = fired
        .iter()
        .map(|(name, due, _)| (name.as_str(), due.as_str()))
        .collect();
    assert_eq!(got, expected);
    let spread = ms("2026-11-23T21:00:00Z") - ms("2026-11-22T19:00:00Z");
    assert_eq!(spread, 26 * HOUR);
    // The last of them is the latest any zone can be.
    assert_eq!(
        last_due_ms(&schedule, LONG_AGO),
        Ok(Some(ms("2026-11-23T21:00:00Z")))
    );
}

#[test]
fn local_time_a_skipped_day_across_the_date_line_still_fires() {
    // Samoa skipped 2011-12-30: 09:00 that day is read at its old offset (-10).
    let schedule = local("2011-12-30", "09:00", "Pacific/Apia");
    let fired = all(
        &schedule,
        "2011-12-28T00:00:00Z",
        "2012-01-02T00:00:00Z",
        &[],
    );
    assert_eq!(
        described(fired),
        [(
            "2011-12-30T09:00@Pacific/Apia".to_owned(),
            "2011-12-30T19:00:00Z".to_owned(),
            Some("Pacific/Apia".to_owned())
        )]
    );
}

#[test]
fn local_time_daylight_saving_jump_and_repeat() {
    // New York: 2026-03-08 02:00 → 03:00; 2026-11-01 02:00 → 01:00. Berlin is unaffected.
    let jump = local("2026-03-08", "02:30", "America/New_York");
    let fired = all(
        &jump,
        "2026-03-07T00:00:00Z",
        "2026-03-10T00:00:00Z",
        &["Europe/Berlin"],
    );
    assert_eq!(
        described(fired)
            .into_iter()
            .map(|(name, due, _)| (name, due))
            .collect::<Vec<_>>(),
        [
            (
                "2026-03-08T02:30@Europe/Berlin".to_owned(),
                "2026-03-08T01:30:00Z".to_owned()
            ),
            // 02:30 EST = 07:30Z = 03:30 EDT: as far past the jump as 02:30 is past 02:00.
            (
                "2026-03-08T02:30@America/New_York".to_owned(),
                "2026-03-08T07:30:00Z".to_owned()
            ),
        ]
    );
    let repeat = local("2026-11-01", "01:30", "America/New_York");
    let fired = all(&repeat, "2026-10-31T00:00:00Z", "2026-11-03T00:00:00Z", &[]);
    // Once, the first time (EDT).
    assert_eq!(
        described(fired),
        [(
            "2026-11-01T01:30@America/New_York".to_owned(),
            "2026-11-01T05:30:00Z".to_owned(),
            Some("America/New_York".to_owned())
        )]
    );
}

#[test]
fn local_time_with_a_bad_default_zone_or_date_is_an_error() {
    let window = (ms("2026-11-22T00:00:00Z"), ms("2026-11-25T00:00:00Z"));
    let bad_zone = local("2026-11-23", "09:00", "Moon/Base");
    assert_eq!(
        firings(&bad_zone, LONG_AGO, window.0, window.1, &[]),
        Err(ScheduleError::UnknownZone("Moon/Base".to_owned()))
    );
    let bad_date = local("2026-02-30", "09:00", "UTC");
    assert_eq!(
        firings(&bad_date, LONG_AGO, window.0, window.1, &[]),
        Err(ScheduleError::BadDate("2026-02-30".to_owned()))
    );
}

// ---- cron ----

#[test]
fn cron_fires_at_each_occurrence_in_its_zone() {
    let schedule = cron("0 9 * * *", "Europe/Paris", None);
    let fired = all(
        &schedule,
        "2026-11-22T00:00:00Z",
        "2026-11-25T00:00:00Z",
        &["Asia/Tokyo"],
    );
    assert_eq!(
        described(fired),
        [
            (
                "cron:2026-11-22T08:00Z".to_owned(),
                "2026-11-22T08:00:00Z".to_owned(),
                None
            ),
            (
                "cron:2026-11-23T08:00Z".to_owned(),
                "2026-11-23T08:00:00Z".to_owned(),
                None
            ),
            (
                "cron:2026-11-24T08:00Z".to_owned(),
                "2026-11-24T08:00:00Z".to_owned(),
                None
            ),
        ]
    );
}

#[test]
fn cron_windows_are_inclusive_and_split_without_loss() {
    let schedule = cron("*/15 * * * *", "UTC", None);
    let start = ms("2026-11-23T09:00:00Z");
    let end = ms("2026-11-23T10:00:00Z");
    let whole = firings(&schedule, LONG_AGO, start, end, &[]).expect("ok");
    assert_eq!(whole.len(), 5, "09:00, :15, :30, :45 and 10:00");
    // Any split into adjacent windows gives the same firings, once each.
    for split in [
        start,
        start + 1,
        start + 15 * 60_000,
        start + 15 * 60_000 + 1,
        end,
    ] {
        let mut parts = firings(&schedule, LONG_AGO, start, split - 1, &[]).expect("ok");
        parts.extend(firings(&schedule, LONG_AGO, split, end, &[]).expect("ok"));
        assert_eq!(parts, whole, "split at {split}");
    }
    // A start between seconds does not bring back the occurrence before it.
    let fired = firings(&schedule, LONG_AGO, start + 500, end, &[]).expect("ok");
    assert_eq!(
        fired.first().map(|f| f.name.as_str()),
        Some("cron:2026-11-23T09:15Z")
    );
}

#[test]
fn cron_starts_at_creation_and_ends_at_until() {
    let until = ms("2026-11-25T09:00:00Z");
    let schedule = cron("0 9 * * *", "UTC", Some(until));
    let created = ms("2026-11-22T09:00:00.001Z");
    let fired = firings(
        &schedule,
        created,
        ms("2026-11-20T00:00:00Z"),
        ms("2026-11-30T00:00:00Z"),
        &[],
    )
    .expect("ok");
    // Not the 22nd (a moment before creation); the 25th (exactly at until) is the last.
    assert_eq!(
        names(fired),
        [
            "cron:2026-11-23T09:00Z",
            "cron:2026-11-24T09:00Z",
            "cron:2026-11-25T09:00Z"
        ]
    );
    assert_eq!(last_due_ms(&schedule, created), Ok(Some(until)));
    let after = firings(&schedule, created, until + 1, until + 10 * DAY, &[]).expect("ok");
    assert!(after.is_empty());
}

#[test]
fn cron_fixed_time_in_a_daylight_saving_jump_fires_after_it() {
    // New York, 2026-03-08: 02:00 → 03:00. 02:30 that day fires at 03:00 EDT (07:00Z).
    let schedule = cron("30 2 * * *", "America/New_York", None);
    let fired = all(
        &schedule,
        "2026-03-07T00:00:00Z",
        "2026-03-09T23:59:00Z",
        &[],
    );
    assert_eq!(
        names(fired),
        [
            "cron:2026-03-07T07:30Z",
            "cron:2026-03-08T07:00Z",
            "cron:2026-03-09T06:30Z"
        ]
    );
}

#[test]
fn cron_fixed_time_in_a_daylight_saving_repeat_fires_once() {
    // New York, 2026-11-01: 02:00 EDT → 01:00 EST; 01:30 happens twice, fires the first time.
    let schedule = cron("30 1 * * *", "America/New_York", None);
    let fired = all(
        &schedule,
        "2026-10-31T00:00:00Z",
        "2026-11-02T23:59:00Z",
        &[],
    );
    assert_eq!(
        names(fired),
        [
            "cron:2026-10-31T05:30Z",
            "cron:2026-11-01T05:30Z",
            "cron:2026-11-02T06:30Z"
        ]
    );
}

#[test]
fn cron_interval_skips_a_jump_and_repeats_in_a_repeat() {
    let every_half_hour = cron("*/30 * * * *", "America/New_York", None);
    // Jump: 01:00 and 01:30 EST, then 03:00 EDT; 02:xx does not exist.
    let fired = all(
        &every_half_hour,
        "2026-03-08T06:00:00Z",
        "2026-03-08T07:30:00Z",
        &[],
    );
    assert_eq!(
        names(fired),
        [
            "cron:2026-03-08T06:00Z",
            "cron:2026-03-08T06:30Z",
            "cron:2026-03-08T07:00Z",
            "cron:2026-03-08T07:30Z"
        ]
    );
    // Repeat: 01:00 and 01:30 EDT, then 01:00 and 01:30 EST: four instants, four names.
    let fired = all(
        &every_half_hour,
        "2026-11-01T05:00:00Z",
        "2026-11-01T07:00:00Z",
        &[],
    );
    assert_eq!(
        names(fired),
        [
            "cron:2026-11-01T05:00Z",
            "cron:2026-11-01T05:30Z",
            "cron:2026-11-01T06:00Z",
            "cron:2026-11-01T06:30Z",
            "cron:2026-11-01T07:00Z"
        ]
    );
}

#[test]
fn cron_weekdays_are_read_in_the_zone_across_the_date_line() {
    // Monday 09:00 in Kiritimati (UTC+14) is Sunday 19:00Z; in Pago Pago (UTC-11) Monday
    // 20:00Z. 2026-11-23 is a Monday.
    let east = cron("0 9 * * MON", "Pacific/Kiritimati", None);
    let west = cron("0 9 * * 1", "Pacific/Pago_Pago", None);
    let (start, end) = ("2026-11-20T00:00:00Z", "2026-11-27T00:00:00Z");
    assert_eq!(
        names(all(&east, start, end, &[])),
        ["cron:2026-11-22T19:00Z"]
    );
    assert_eq!(
        names(all(&west, start, end, &[])),
        ["cron:2026-11-23T20:00Z"]
    );
}

#[test]
fn cron_nicknames_and_croner_extensions() {
    let (start, end) = ("2026-11-01T00:00:00Z", "2026-12-31T23:59:00Z");
    assert_eq!(all(&cron("@daily", "UTC", None), start, end, &[]).len(), 61);
    // The last day of each month.
    let last = cron("0 12 L * *", "UTC", None);
    assert_eq!(
        names(all(&last, start, end, &[])),
        ["cron:2026-11-30T12:00Z", "cron:2026-12-31T12:00Z"]
    );
    // Weekdays 0 and 7 are both Sunday.
    let sundays = cron("0 0 * 11 0,7", "UTC", None);
    assert_eq!(all(&sundays, start, end, &[]).len(), 5);
}

#[test]
fn cron_refuses_an_unbounded_window() {
    let every_minute = cron("* * * * *", "UTC", None);
    let start = ms("2026-11-23T00:00:00Z");
    let full = firings(&every_minute, LONG_AGO, start, start + 9_999 * 60_000, &[]);
    assert_eq!(full.map(|f| f.len()), Ok(MAX_FIRINGS_PER_CALL));
    let too_many = firings(&every_minute, LONG_AGO, start, start + 10_000 * 60_000, &[]);
    assert_eq!(
        too_many,
        Err(ScheduleError::TooManyFirings {
            limit: MAX_FIRINGS_PER_CALL
        })
    );
}

#[test]
fn cron_window_before_creation_or_after_until_is_empty() {
    let schedule = cron("0 9 * * *", "UTC", Some(ms("2026-11-20T00:00:00Z")));
    let fired = firings(
        &schedule,
        LONG_AGO,
        ms("2026-11-21T00:00:00Z"),
        ms("2026-11-30T00:00:00Z"),
        &[],
    );
    assert_eq!(fired, Ok(Vec::new()));
    let created_later = ms("2026-12-01T00:00:00Z");
    let fired = firings(
        &cron("0 9 * * *", "UTC", None),
        created_later,
        ms("2026-11-21T00:00:00Z"),
        ms("2026-11-30T00:00:00Z"),
        &[],
    );
    assert_eq!(fired, Ok(Vec::new()));
}

#[test]
fn cron_that_never_matches_has_no_firings() {
    // Refused by validation; a stored one (from an older build) just never fires.
    let never = cron("0 0 30 2 *", "UTC", None);
    assert_eq!(
        all(&never, "2026-01-01T00:00:00Z", "2030-01-01T00:00:00Z", &[]),
        []
    );
}

// ---- validate ----

#[test]
fn good_schedules_validate() {
    for schedule in [
        once("2026-11-23T09:00:00Z"),
        local("2026-11-23", "09:00", "Asia/Tokyo"),
        local("2028-02-29", "23:59", "UTC"),
        cron("0 9 * * MON-FRI", "Europe/Paris", None),
        cron("*/5 * * * *", "UTC", Some(ms("2027-01-01T00:00:00Z"))),
        cron("0 0 29 2 *", "UTC", None),
        cron("@weekly", "America/Sao_Paulo", None),
        cron("0 12 * * 5#L", "Asia/Tokyo", None),
    ] {
        assert_eq!(validate(&schedule), Ok(()), "{schedule:?}");
    }
}

#[test]
fn bad_cron_expressions_are_explained() {
    for expression in [
        "",
        "* * * *",
        "0 9 * * * *",
        "0 9 * * * * 2026",
        "61 * * * *",
        "0 25 * * *",
        "x 9 * * *",
        "0 9 * * FUNDAY",
        "0/10 * * * *",
    ] {
        let error = validate(&cron(expression, "UTC", None)).expect_err(expression);
        let ScheduleError::BadCron {
            expression: said,
            detail,
        } = &error
        else {
            panic!("{expression:?}: {error:?}");
        };
        assert_eq!(said, expression);
        assert!(!detail.is_empty() && !detail.ends_with('.'), "{detail:?}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("bad cron expression {expression:?}: ")),
            "{error}"
        );
    }
    let never = validate(&cron("0 0 30 2 *", "UTC", None));
    assert_eq!(
        never.map_err(|error| error.to_string()),
        Err("bad cron expression \"0 0 30 2 *\": it never matches a real day".to_owned())
    );
}

#[test]
fn bad_zones_dates_times_and_instants_are_explained() {
    assert_eq!(
        validate(&cron("0 9 * * *", "Europe/Pariss", None)),
        Err(ScheduleError::UnknownZone("Europe/Pariss".to_owned()))
    );
    assert_eq!(
        validate(&local("2026-11-23", "09:00", "")),
        Err(ScheduleError::UnknownZone(String::new()))
    );
    assert_eq!(
        validate(&local("2026-11-23", "9am", "UTC")),
        Err(ScheduleError::BadTime("9am".to_owned()))
    );
    assert_eq!(
        validate(&local("23/11/2026", "09:00", "UTC")),
        Err(ScheduleError::BadDate("23/11/2026".to_owned()))
    );
    assert_eq!(
        validate(&Schedule::Once { at_ms: i64::MAX }),
        Err(ScheduleError::TimeOutOfRange(i64::MAX))
    );
    assert_eq!(
        validate(&cron("0 9 * * *", "UTC", Some(i64::MIN))),
        Err(ScheduleError::TimeOutOfRange(i64::MIN))
    );
    assert_eq!(
        ScheduleError::TimeOutOfRange(5).to_string(),
        "time 5 ms is outside the dates this scheduler handles"
    );
}

// ---- last_due_ms ----

#[test]
fn last_due_bounds_every_kind() {
    let created = ms("2026-11-23T10:00:00Z");
    assert_eq!(
        last_due_ms(&once("2026-11-23T09:00:00Z"), created),
        Ok(Some(created)),
        "a once in the past is due at creation"
    );
    assert_eq!(
        last_due_ms(&once("2026-11-24T09:00:00Z"), created),
        Ok(Some(ms("2026-11-24T09:00:00Z")))
    );
    assert_eq!(
        last_due_ms(&local("2026-11-23", "09:00", "UTC"), created),
        Ok(Some(ms("2026-11-23T21:00:00Z")))
    );
    assert_eq!(
        last_due_ms(&cron("0 9 * * *", "UTC", None), created),
        Ok(None)
    );
    assert_eq!(
        last_due_ms(&local("2026-11-23", "9", "UTC"), created),
        Err(ScheduleError::BadTime("9".to_owned()))
    );
}

// ---- the stored form ----

#[test]
fn schedules_read_and_write_as_tagged_json() {
    let cases = [
        (
            r#"{"kind":"once","at_ms":1795424400000}"#,
            Schedule::Once {
                at_ms: 1_795_424_400_000,
            },
        ),
        (
            r#"{"kind":"local_time","date":"2026-11-23","time":"09:00","default_zone":"UTC"}"#,
            local("2026-11-23", "09:00", "UTC"),
        ),
        (
            r#"{"kind":"cron","expression":"0 9 * * *","zone":"UTC","until_ms":null}"#,
            cron("0 9 * * *", "UTC", None),
        ),
    ];
    for (json, schedule) in cases {
        let read: Schedule = serde_json::from_str(json).expect(json);
        assert_eq!(read, schedule);
        assert_eq!(serde_json::to_string(&schedule).expect("json"), json);
    }
    let without_until: Schedule =
        serde_json::from_str(r#"{"kind":"cron","expression":"0 9 * * *","zone":"UTC"}"#)
            .expect("until_ms is optional");
    assert_eq!(without_until, cron("0 9 * * *", "UTC", None));
    for bad in [
        r#"{"kind":"once","at_ms":1,"extra":true}"#,
        r#"{"kind":"weekly","at_ms":1}"#,
        r#"{"at_ms":1}"#,
    ] {
        assert!(serde_json::from_str::<Schedule>(bad).is_err(), "{bad}");
    }
}

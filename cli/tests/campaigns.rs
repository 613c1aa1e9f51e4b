//! End-to-end tests of campaign scheduling: real `ringpush` processes over a real
//! redis-server, devices on the SDK, and controllers whose campaign time runs on a simulated
//! clock (`--simulated-clock`) so that hours of campaign time pass in seconds.
//!
//! Every process computes campaign time from the real clock with the same formula
//! ([`SimulatedClock`]), so the test turns the real time at which a device got a message into
//! the controllers' campaign time exactly.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::NaiveDate;
use ringpush_controller::clock::SimulatedClock;
use ringpush_schedule::Schedule;
use ringpush_store::{Claim, now_ms};
use serde_json::json;
use support::campaigns::{
    Arrivals, TimedDevice, clock_flags, create_campaign, start_controller, start_timed_device,
    store, wait_campaign_state, wait_timed_connected,
};
use support::{Platform, PlatformOptions, eventually};

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;

/// `hour:minute` UTC on 2027-01-12 (winter in the northern hemisphere: no daylight saving in
/// any zone used here), in ms.
fn jan_12(hour: u32, minute: u32) -> i64 {
    NaiveDate::from_ymd_opt(2027, 1, 12)
        .and_then(|day| day.and_hms_opt(hour, minute, 0))
        .expect("a real time")
        .and_utc()
        .timestamp_millis()
}

/// Waits until `check` holds, sleeping until the real time `deadline_real_ms` at the latest.
async fn wait_until(what: &str, deadline_real_ms: i64, check: impl AsyncFnMut() -> bool) {
    let left = (deadline_real_ms - now_ms()).max(1_000) as u64;
    eventually(what, Duration::from_millis(left), check).await;
}

/// Sleeps until the real clock reads `real_ms`.
async fn sleep_until_real(real_ms: i64) {
    let left = real_ms - now_ms();
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
}

/// Campaign time runs 600 times real time: an hour in 6 s.
const LOCAL_RATE: f64 = 600.0;
/// Scheduler tick of the local-time test: 50 ms real, 30 s of campaign time.
const LOCAL_TICK_MS: u64 = 50;
/// How late after its 09:00 a device may get the campaign, in campaign time: one tick (30 s)
/// plus 14.5 minutes (1.45 s real) for the send, the connector's write and the SDK on a busy
/// machine. Zones fire 60 minutes apart, so this still tells each zone's firing from the next.
const LOCAL_TOLERANCE_MS: i64 = 15 * MINUTE;
/// Real time given to start the processes and devices before campaign time reaches 17:55Z.
const LOCAL_SETUP_MS: i64 = 10_000;

/// 1. A `local_time` campaign, 09:00 on 2027-01-12, over devices in three time zones: each
/// device gets it once, at its own 09:00 (in campaign time), in the order of the zones. A
/// device without a zone, and one with a zone this build does not know, get the default
/// zone's firing. The campaign then ends `finished`.
///
/// Zones west of UTC keep the run short: a `local_time` campaign can only finish once 09:00
/// has passed in the furthest west zone there is (UTC-12, 21:00Z), whatever zones devices
/// report, so the run spans 17:55Z to 21:00Z of campaign time, about 19 s real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_time_campaign_reaches_each_zone_at_its_own_nine_o_clock() {
    let first_due = jan_12(18, 0);
    let clock = SimulatedClock::new(
        now_ms() + LOCAL_SETUP_MS,
        first_due - 5 * MINUTE,
        LOCAL_RATE,
    )
    .expect("a valid clock");
    let platform = Platform::start_with(PlatformOptions {
        controller_args: clock_flags(&clock, LOCAL_TICK_MS),
        ..PlatformOptions::default()
    })
    .await;
    let (app, server_key, client_key) = platform.create_app().await;

    // (device, zone it reports, when 09:00 is there: worked out by hand, not by the schedule
    // crate, so that the test checks it).
    let anchorage = jan_12(18, 0); // UTC-9 in January
    let cases: [(Option<&str>, i64); 5] = [
        (Some("America/Anchorage"), anchorage),
        (Some("Pacific/Honolulu"), jan_12(19, 0)), // UTC-10
        (Some("Pacific/Pago_Pago"), jan_12(20, 0)), // UTC-11
        (None, anchorage),                         // no zone: the default zone's firing
        (Some("Mars/Olympus_Mons"), anchorage),    // unknown zone: the default zone's too
    ];
    let arrivals = Arrivals::default();
    let mut devices: Vec<TimedDevice> = Vec::new();
    for (zone, _) in cases {
        devices.push(start_timed_device(&platform, &app, &client_key, zone, &arrivals).await);
    }
    wait_timed_connected(&devices).await;
    // The scheduler reads the zones devices reported from the registry.
    let store = store(&platform).await;
    let app_id = app.parse().unwrap();
    eventually(
        "the registry has every device's zone",
        Duration::from_secs(30),
        async || {
            store
                .registry()
                .app_time_zones(app_id)
                .await
                .is_ok_and(|zones| {
                    ["America/Anchorage", "Pacific/Honolulu", "Pacific/Pago_Pago"]
                        .iter()
                        .all(|zone| zones.iter().any(|z| z == zone))
                })
        },
    )
    .await;

    let before = clock.sim_at(now_ms());
    let campaign = create_campaign(
        &platform,
        &app,
        &server_key,
        &json!({
            "name": "good morning",
            "message": { "broadcast": true, "data": { "text": "good morning" } },
            "schedule": {
                "kind": "local_time",
                "date": "2027-01-12",
                "time": "09:00",
                "default_zone": "America/Anchorage"
            }
        }),
    )
    .await;
    let after = clock.sim_at(now_ms());
    let campaign_id = campaign["id"].as_str().unwrap().to_owned();
    let created_at = campaign["created_at_ms"].as_i64().unwrap();
    assert!(
        (before..=after).contains(&created_at),
        "the campaign is stamped in campaign time: {created_at} not in {before}..={after}"
    );
    assert!(
        created_at < first_due,
        "setup took longer than its {LOCAL_SETUP_MS} ms budget: the campaign was made after the first 09:00"
    );

    let latest = jan_12(21, 0); // 09:00 at UTC-12: no firing can be due later
    wait_until(
        "every device got the campaign",
        clock.real_at(latest) + 30_000,
        async || arrivals.lock().unwrap().values().all(|got| !got.is_empty()),
    )
    .await;
    wait_campaign_state(
        &platform,
        &app,
        &server_key,
        &campaign_id,
        "finished",
        Duration::from_millis((clock.real_at(latest) - now_ms()).max(0) as u64 + 30_000),
    )
    .await;

    let arrivals = arrivals.lock().unwrap().clone();
    let mut order = Vec::new();
    for (device, (_, due)) in devices.iter().zip(&cases) {
        let got = &arrivals[&device.id];
        assert_eq!(got.len(), 1, "device {}: once, got {got:?}", device.id);
        let arrival = &got[0];
        assert_eq!(arrival.campaign_id.as_deref(), Some(campaign_id.as_str()));
        let at = clock.sim_at(arrival.real_ms);
        assert!(
            *due <= at && at <= due + LOCAL_TOLERANCE_MS,
            "device {} (due at {due}) got it at {at} of campaign time: {} s after 09:00 there",
            device.id,
            (at - due) / SECOND
        );
        order.push((arrival.real_ms, *due));
    }
    order.sort();
    assert!(
        order.windows(2).all(|pair| pair[0].1 <= pair[1].1),
        "arrivals follow the zones, east to west: {order:?}"
    );
    // Three firings: the default zone's one message reached three devices.
    let message_ids: HashSet<&str> = arrivals
        .values()
        .flatten()
        .map(|arrival| arrival.message_id.as_str())
        .collect();
    assert_eq!(message_ids.len(), 3, "{message_ids:?}");
    let (status, stats) = platform
        .get(
            &format!("/v1/apps/{app}/campaigns/{campaign_id}/stats"),
            &server_key,
        )
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["totals"]["targeted"], 5, "{stats}");
}

/// Campaign time of the two-controller test runs 60 times real time: a minutely cron fires
/// each real second.
const CRON_RATE: f64 = 60.0;
/// Devices targeted but never connected: they make each firing's send take a little while
/// (more appends), so a controller killed at a firing's due time is likely mid-send; their
/// inboxes show every append.
const OFFLINE_DEVICES: usize = 200;
const ONLINE_DEVICES: usize = 3;

/// 2. Two controllers on one Redis and one simulated clock run a minutely campaign (about 15
/// firings); one is killed with SIGKILL mid-run, as soon as it has started sending a firing
/// (its claim is then left to lapse, and the other sends that firing again). Every due
/// firing is sent exactly once across the run: each device's inbox got exactly one message
/// per firing (no firing missed, none twice), the online devices' apps got each once, the
/// store has every firing done, and the campaign's statistics agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_fire_a_recurring_campaign_once_each_when_one_is_killed() {
    let clock = SimulatedClock::new(now_ms(), jan_12(9, 0), CRON_RATE).expect("a valid clock");
    let lease = ["--campaign-lease-ms".to_owned(), "1000".to_owned()];
    let mut survivor_args = clock_flags(&clock, 50);
    survivor_args.extend(lease.clone());
    let platform = Platform::start_with(PlatformOptions {
        controller_args: survivor_args,
        ..PlatformOptions::default()
    })
    .await;
    // The one to kill ticks faster, so it usually claims a firing first.
    let mut victim_args = clock_flags(&clock, 20);
    victim_args.extend(lease);
    let (mut victim, _) = start_controller(&platform, "controller-victim", &victim_args);
    let (app, server_key, client_key) = platform.create_app().await;

    let arrivals = Arrivals::default();
    let mut online = Vec::new();
    for _ in 0..ONLINE_DEVICES {
        online.push(start_timed_device(&platform, &app, &client_key, None, &arrivals).await);
    }
    wait_timed_connected(&online).await;
    let app_id = app.parse().unwrap();
    let offline = futures_util::future::join_all(
        (0..OFFLINE_DEVICES)
            .map(|_| ringpush_sdk::register(&platform.controller_url, app_id, &client_key)),
    )
    .await;
    let mut device_ids: Vec<String> = online.iter().map(|device| device.id.clone()).collect();
    for identity in offline {
        device_ids.push(identity.expect("registers").device_id.to_string());
    }

    // Every minute up to 15 minutes from the whole minute after next (and that next minute
    // too if the campaign is made before it: 15 or 16 firings).
    let first = (clock.sim_at(now_ms()) / MINUTE + 2) * MINUTE;
    let until = first + 14 * MINUTE;
    let schedule = json!({
        "kind": "cron", "expression": "* * * * *", "zone": "UTC", "until_ms": until
    });
    let campaign = create_campaign(
        &platform,
        &app,
        &server_key,
        &json!({
            "name": "every minute",
            "message": { "device_ids": device_ids, "data": { "text": "tick" } },
            "schedule": schedule,
        }),
    )
    .await;
    let campaign_id = campaign["id"].as_str().unwrap().to_owned();
    let created_at = campaign["created_at_ms"].as_i64().unwrap();
    let schedule: Schedule = serde_json::from_value(schedule).unwrap();
    let expected: Vec<String> =
        ringpush_schedule::firings(&schedule, created_at, created_at, until, &[])
            .expect("firings")
            .into_iter()
            .map(|firing| firing.name)
            .collect();
    assert!(
        (15..=16).contains(&expected.len()),
        "about 15 firings: {expected:?}"
    );

    // Once five firings have reached the devices, kill one controller as soon as its log
    // shows it started sending the next firing (it ticks faster, so it usually claims first;
    // if the other one claims it, kill it half a second later anyway).
    let received = |arrivals: &Arrivals| -> usize {
        let arrivals = arrivals.lock().unwrap();
        arrivals.values().map(Vec::len).min().unwrap_or(0)
    };
    wait_until(
        "five firings received",
        clock.real_at(first + 5 * MINUTE) + 30_000,
        async || received(&arrivals) >= 5,
    )
    .await;
    let next_due = (clock.sim_at(now_ms()) / MINUTE + 1) * MINUTE;
    assert!(next_due < until, "the kill falls mid-run");
    let started = format!("firing={}", cron_firing_name(next_due));
    let give_up = clock.real_at(next_due) + 500;
    sleep_until_real(clock.real_at(next_due) - 5).await;
    while !victim.log_text().contains(&started) && now_ms() < give_up {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    victim.kill9();
    let killed_after = received(&arrivals);

    wait_campaign_state(
        &platform,
        &app,
        &server_key,
        &campaign_id,
        "finished",
        Duration::from_millis((clock.real_at(until) - now_ms()).max(0) as u64 + 30_000),
    )
    .await;
    let firings = expected.len();
    wait_until(
        "every firing received online",
        now_ms() + 30_000,
        async || received(&arrivals) >= firings,
    )
    .await;

    // Appends: each device's inbox sequence counts every message it was ever given.
    for device in &device_ids {
        let (status, state) = platform
            .get(&format!("/v1/apps/{app}/devices/{device}"), &server_key)
            .await;
        assert_eq!(status, 200, "{state}");
        assert_eq!(
            state["last_seq"], firings,
            "device {device}: one message per firing: {state}"
        );
    }
    // What the apps were handed: each firing once, in order.
    for (device, got) in arrivals.lock().unwrap().iter() {
        let seqs: Vec<u64> = got.iter().map(|arrival| arrival.seq).collect();
        assert_eq!(
            seqs,
            (1..=firings as u64).collect::<Vec<_>>(),
            "device {device}"
        );
        let ids: HashSet<&str> = got.iter().map(|a| a.message_id.as_str()).collect();
        assert_eq!(ids.len(), firings, "device {device}: distinct message ids");
        // A message the connector reads back from the inbox (a gap filled after the killed
        // controller appended it but never delivered it) comes without its campaign id: the
        // inbox does not store it. Every message that names a campaign names this one.
        assert!(
            got.iter()
                .all(|a| a.campaign_id.is_none() || a.campaign_id.as_deref() == Some(&campaign_id)),
            "device {device}: {got:?}"
        );
    }
    // The store: every expected firing done; the minutes either side are no firings.
    let store = store(&platform).await;
    let claim = async |firing: &str| {
        store
            .campaigns()
            .claim_firing(&campaign_id, firing, "test-checker", 1_000, now_ms())
            .await
            .expect("claim")
    };
    for firing in &expected {
        assert_eq!(claim(firing).await, Claim::Done, "{firing} done");
    }
    assert!(
        expected.contains(&cron_firing_name(until)),
        "firing names as the schedule makes them: {expected:?}"
    );
    for minute in [until + MINUTE, expected_first_minute(&expected) - MINUTE] {
        assert_eq!(
            claim(&cron_firing_name(minute)).await,
            Claim::Claimed,
            "{minute} fired"
        );
    }
    // Statistics: appends counted once each; the online devices' writes counted.
    let stats_path = format!("/v1/apps/{app}/campaigns/{campaign_id}/stats");
    let targeted = (firings * device_ids.len()) as u64;
    let delivered = (firings * ONLINE_DEVICES) as u64;
    eventually(
        "the campaign's statistics",
        Duration::from_secs(30),
        async || {
            let totals = platform.get(&stats_path, &server_key).await.1["totals"].clone();
            totals["delivered"] == delivered
        },
    )
    .await;
    let (_, stats) = platform.get(&stats_path, &server_key).await;
    let totals = &stats["totals"];
    assert_eq!(
        totals["targeted"], targeted,
        "every append counted once (a kill between a send's append and its count would lose it): {stats}"
    );
    assert_eq!(totals["pending"], targeted - delivered, "{stats}");

    report_who_fired(&platform, &victim, &expected, killed_after);
}

/// The name of the cron firing due at `minute` (as the schedule crate names it; the test
/// checks the two agree).
fn cron_firing_name(minute: i64) -> String {
    let at = chrono::DateTime::from_timestamp_millis(minute).expect("a representable time");
    format!("cron:{}", at.format("%Y-%m-%dT%H:%MZ"))
}

/// The minute of the first expected firing (its name is `cron:<minute>Z`).
fn expected_first_minute(expected: &[String]) -> i64 {
    let first = expected.first().expect("some firing");
    let text = first.trim_start_matches("cron:");
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%MZ")
        .expect("a firing name")
        .and_utc()
        .timestamp_millis()
}

/// Prints which controller sent which firing (from their logs), and whether the survivor
/// sent again a firing the killed one had started: the lease path. Informational: the
/// assertions above hold either way.
fn report_who_fired(
    platform: &Platform,
    victim: &support::Proc,
    expected: &[String],
    killed_after: usize,
) {
    let fired = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|line| line.contains("firing campaign"))
            .filter_map(|line| {
                let start = line.find("firing=")? + "firing=".len();
                let name = line[start..].split_whitespace().next()?;
                Some(name.trim_matches('"').to_owned())
            })
            .collect()
    };
    let by_victim = fired(&victim.log_text());
    let by_survivor = fired(&platform.controller.log_text());
    let both: Vec<&String> = by_victim
        .iter()
        .filter(|name| by_survivor.contains(name))
        .collect();
    let counts: HashMap<&str, usize> = [
        ("killed", by_victim.len()),
        ("survivor", by_survivor.len()),
        ("expected", expected.len()),
        ("received before the kill", killed_after),
    ]
    .into_iter()
    .collect();
    eprintln!(
        "firings sent: {counts:?}; started by the killed controller and sent again by the survivor: {both:?}"
    );
}

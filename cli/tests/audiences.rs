//! End-to-end tests of audiences (issue 3): every target kind, a broadcast to 10,000
//! devices of which half are offline, and statistics that add up; real `ringpush` processes
//! over a real redis-server, devices on the SDK or simulated on the wire protocol.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ringpush_harness::sim::SimDevice;
use ringpush_sdk::{DeviceAttributes, Identity, Stream};
use serde_json::{Value, json};
use support::audiences::{
    App, AudienceDevice, Log, Reaction, connect_sims, db_size, estimate, handed, owner_index,
    redis_keys, register_identity, register_many, send, start_audience_device, stats,
    wait_connected, wait_estimate, wait_for_counts,
};
use support::{Platform, eventually};

/// A device's attributes, as the tests write them.
fn attributes(
    platform: &str,
    app_version: &str,
    locale: &str,
    tags: &[&str],
    topics: &[&str],
    alias: Option<&str>,
) -> DeviceAttributes {
    DeviceAttributes {
        platform: Some(platform.into()),
        app_version: Some(app_version.into()),
        locale: Some(locale.into()),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        alias: alias.map(str::to_owned),
        ..DeviceAttributes::default()
    }
}

/// Registers identities until each connector owns `per_connector` of them; answers them
/// alternately (connector 0, 1, 0, 1, ...) and how many were registered in all (the spare
/// ones are devices of the app too: they count in a broadcast's reach).
async fn identities_over_two_connectors(
    platform: &Platform,
    app: &App,
    per_connector: usize,
) -> (Vec<Identity>, usize) {
    let mut pools: [Vec<Identity>; 2] = [Vec::new(), Vec::new()];
    let mut registered = 0;
    while pools.iter().any(|pool| pool.len() < per_connector) {
        let identity = register_identity(platform, app).await;
        registered += 1;
        let owner = owner_index(platform, &identity.device_id.to_string());
        pools[owner].push(identity);
    }
    let [mut first, mut second] = pools;
    first.truncate(per_connector);
    second.truncate(per_connector);
    let alternate = first
        .into_iter()
        .zip(second)
        .flat_map(|(a, b)| [a, b])
        .collect();
    (alternate, registered)
}

/// 1. Every target kind reaches exactly the devices it names, over two connectors, and the
/// estimate answers the same reach; a device offline at send time gets its messages (inbox
/// replay and timeline catch-up) when it reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_kind_reaches_exactly_its_devices() {
    let platform = Platform::start(2).await;
    let app = App::create(&platform).await;
    let log = Log::default();

    // name, attributes (None: reports none); "g" is offline when the messages are sent.
    let population: Vec<(&str, Option<DeviceAttributes>)> = vec![
        (
            "a",
            Some(attributes(
                "ios",
                "2.10",
                "zh-CN",
                &["vip", "cn"],
                &["news"],
                Some("alice"),
            )),
        ),
        (
            "b",
            Some(attributes(
                "ios",
                "2.2",
                "zh-TW",
                &["vip", "us", "churned"],
                &[],
                Some("alice"),
            )),
        ),
        (
            "c",
            Some(attributes(
                "android",
                "3.0",
                "zh-CN",
                &["vip", "us"],
                &["news", "sports"],
                Some("bob"),
            )),
        ),
        (
            "d",
            Some(attributes(
                "ios",
                "2.3",
                "en-US",
                &["cn"],
                &["sports"],
                None,
            )),
        ),
        (
            "e",
            Some(attributes(
                "ios",
                "2.3.1",
                "zh-HK",
                &["vip", "fr"],
                &["news"],
                None,
            )),
        ),
        ("f", None),
        (
            "g",
            Some(attributes(
                "ios",
                "2.4",
                "zh-CN",
                &["vip", "us"],
                &["news"],
                None,
            )),
        ),
        (
            "h",
            Some(attributes(
                "android",
                "1.0",
                "en",
                &["vip", "cn", "churned"],
                &[],
                Some("carol"),
            )),
        ),
    ];
    let (identities, registered) =
        identities_over_two_connectors(&platform, &app, population.len() / 2).await;
    let mut devices: BTreeMap<&str, AudienceDevice> = BTreeMap::new();
    let mut ids: BTreeMap<&str, String> = BTreeMap::new();
    let mut offline_start = None;
    for ((name, attrs), identity) in population.iter().zip(identities) {
        let state_file = platform.dir.path().join(format!("device-{name}.json"));
        let restart = (identity.clone(), state_file.clone(), attrs.clone());
        let device = start_audience_device(
            &platform,
            identity,
            state_file,
            attrs.clone(),
            Reaction::default(),
            &log,
        )
        .await;
        ids.insert(name, device.id.clone());
        devices.insert(name, device);
        if *name == "g" {
            offline_start = Some(restart);
        }
    }
    wait_connected(&devices.values().collect::<Vec<_>>()).await;
    let holders: BTreeSet<usize> = ids.values().map(|id| owner_index(&platform, id)).collect();
    assert_eq!(
        holders.len(),
        2,
        "the devices are spread over both connectors"
    );

    let id = |name: &str| ids[name].clone();
    let targets: Vec<(&str, Value, &[&str])> = vec![
        (
            "device_ids",
            json!({ "device_ids": [id("a"), id("d"), id("g")] }),
            &["a", "d", "g"],
        ),
        (
            "aliases",
            json!({ "aliases": ["alice", "bob"] }),
            &["a", "b", "c"],
        ),
        (
            "tags",
            json!({ "tags": "vip and (cn or us) and not churned" }),
            &["a", "c", "g"],
        ),
        ("topic", json!({ "topic": "news" }), &["a", "c", "e", "g"]),
        (
            "segment",
            json!({ "segment": "platform = ios and app_version >= 2.3 and locale starts with zh" }),
            &["a", "e", "g"],
        ),
        (
            "broadcast",
            json!({ "broadcast": true }),
            &["a", "b", "c", "d", "e", "f", "g", "h"],
        ),
    ];
    // The registry learns attributes from the connectors in batches: wait until it answers
    // every audience as the attributes say (which also means the connectors have them).
    for (kind, target, expected) in &targets {
        let reach = if *kind == "broadcast" {
            registered as u64
        } else {
            expected.len() as u64
        };
        wait_estimate(&platform, &app, target, reach).await;
    }

    // g goes offline, and the connector knows it, before anything is sent.
    devices.remove("g").unwrap().stop().await;
    let g_path = format!("/v1/apps/{}/devices/{}", app.id, id("g"));
    eventually("g offline", Duration::from_secs(20), async || {
        platform.get(&g_path, &app.server_key).await.1["online"] == false
    })
    .await;

    // name → (stream, message ids in send order); message id → devices it is for.
    let mut expected: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
    let mut audience_messages: Vec<(String, usize)> = Vec::new();
    for (kind, target, names) in &targets {
        let reach = estimate(&platform, &app, target).await;
        let mut body = target.clone();
        body["data"] = json!(format!("to {kind}"));
        let answer = send(&platform, &app, &body).await;
        if let Some(message_ids) = answer["message_ids"].as_array() {
            assert_eq!(
                message_ids.len() as u64,
                reach,
                "{kind}: one message per device"
            );
            // A unicast message id is `<device>-<seq>`.
            let mut reached = BTreeSet::new();
            for message_id in message_ids {
                let message_id = message_id.as_str().unwrap().to_owned();
                let (device, _) = message_id.split_once('-').unwrap();
                reached.insert(device.to_owned());
                expected
                    .entry(device.to_owned())
                    .or_default()
                    .0
                    .push(message_id);
            }
            let wanted: BTreeSet<String> = names.iter().map(|name| id(name)).collect();
            assert_eq!(reached, wanted, "{kind}: the devices it names");
        } else {
            assert_eq!(answer["targeted"].as_u64(), Some(reach), "{kind}: {answer}");
            let message_id = answer["message_id"].as_str().unwrap().to_owned();
            for name in *names {
                expected
                    .entry(id(name))
                    .or_default()
                    .1
                    .push(message_id.clone());
            }
            audience_messages.push((message_id, names.len()));
        }
    }

    // The sentinels: a device that got them would have got every earlier message of the same
    // stream first (each stream reaches a device in order), so once every device has them,
    // no device can still receive a message it was not meant for.
    let everyone: Vec<String> = ids.values().cloned().collect();
    let unicast = send(
        &platform,
        &app,
        &json!({ "device_ids": everyone, "data": "last" }),
    )
    .await;
    let last_broadcast = send(
        &platform,
        &app,
        &json!({ "broadcast": true, "data": "last" }),
    )
    .await;
    for (index, device) in everyone.iter().enumerate() {
        let entry = expected.entry(device.clone()).or_default();
        entry
            .0
            .push(unicast["message_ids"][index].as_str().unwrap().to_owned());
        entry
            .1
            .push(last_broadcast["message_id"].as_str().unwrap().to_owned());
    }

    // g comes back, from its state file: inbox replay, then timeline catch-up.
    let (identity, state_file, attrs) = offline_start.unwrap();
    let g = start_audience_device(
        &platform,
        identity,
        state_file,
        attrs,
        Reaction::default(),
        &log,
    )
    .await;
    devices.insert("g", g);

    eventually(
        "every device has both sentinels",
        Duration::from_secs(30),
        async || {
            expected.iter().all(|(device, (inbox, timeline))| {
                handed(&log, device, Stream::Inbox).len() >= inbox.len()
                    && handed(&log, device, Stream::Timeline).len() >= timeline.len()
            })
        },
    )
    .await;
    for (name, device_id) in &ids {
        let (inbox, timeline) = &expected[device_id];
        assert_eq!(
            &handed(&log, device_id, Stream::Inbox),
            inbox,
            "{name}: its inbox messages"
        );
        assert_eq!(
            &handed(&log, device_id, Stream::Timeline),
            timeline,
            "{name}: its audience messages, once each, in timeline order"
        );
        assert_eq!(
            devices[name].stats().duplicates_dropped,
            0,
            "{name}: nothing sent twice"
        );
    }

    // Each audience message was written once to each of its devices (g's by the catch-up).
    for (message_id, count) in &audience_messages {
        let path = format!("/v1/apps/{}/messages/{message_id}/stats", app.id);
        let counted = async || stats(&platform, &app, &path).await["totals"]["delivered"] == *count;
        eventually(
            &format!("{message_id} delivered {count}"),
            Duration::from_secs(10),
            counted,
        )
        .await;
    }
}

/// What one app's broadcast did to Redis, and to its devices.
struct FanOut {
    app: App,
    message_id: String,
    /// Keys new after the send (live delivery and statistics written).
    keys_by_send: BTreeSet<String>,
    /// Keys new after the offline half connected and caught up.
    keys_by_catch_up: BTreeSet<String>,
    /// DBSIZE just before the send, after it, and after the catch-up.
    db_sizes: [u64; 3],
}

impl FanOut {
    /// A key name with this app's ids and this message's id made generic, to compare the
    /// keys of two apps.
    fn shape(&self, key: &str) -> String {
        let key = key
            .replace(&self.app.id, "<app>")
            .replace(&self.message_id, "<message>");
        match key
            .split_once("{d:")
            .and_then(|(_, rest)| rest.split_once('}'))
        {
            Some((_, tail)) => format!("{{d:<device>}}{tail}"),
            None => key,
        }
    }

    fn shapes(&self, keys: &BTreeSet<String>) -> BTreeSet<String> {
        keys.iter().map(|key| self.shape(key)).collect()
    }
}

/// Waits until each device's timeline count reaches `want`, then checks that none is past it
/// and that no device got an inbox message.
async fn wait_timeline_counts(sims: &[SimDevice], want: u64, what: &str) {
    eventually(what, Duration::from_secs(60), async || {
        sims.iter()
            .all(|sim| sim.counts.timeline.load(Ordering::Relaxed) >= want)
    })
    .await;
    for (index, sim) in sims.iter().enumerate() {
        let timeline = sim.counts.timeline.load(Ordering::Relaxed);
        let inbox = sim.counts.inbox.load(Ordering::Relaxed);
        assert_eq!((timeline, inbox), (want, 0), "device {index}: {what}");
    }
}

/// Registers `count` devices in a new app, connects half of them, broadcasts once, then
/// connects the other half; checks each device gets the broadcast exactly once (live or on
/// reconnect) and records the keys each step adds.
async fn broadcast_to_half_online(platform: &Platform, count: usize) -> FanOut {
    let app = App::create(platform).await;
    let (registered, took) = register_many(platform, &app, count).await;
    eprintln!("{count} devices: registered in {:.1} s", took.as_secs_f64());
    let (online, offline) = registered.split_at(count / 2);

    let started = Instant::now();
    let (online_sims, per_connector) = connect_sims(platform, online).await;
    eprintln!(
        "{count} devices: {} connected in {:.1} s ({per_connector:?} per connector)",
        online.len(),
        started.elapsed().as_secs_f64()
    );
    if count >= 100 {
        assert!(
            per_connector.iter().all(|held| *held > 0),
            "{per_connector:?}"
        );
    }

    let before = redis_keys(platform);
    let size_before = db_size(platform);
    let started = Instant::now();
    let answer = send(platform, &app, &json!({ "broadcast": true, "data": "all" })).await;
    assert_eq!(answer["targeted"], count as u64, "{answer}");
    let message_id = answer["message_id"].as_str().unwrap().to_owned();
    wait_timeline_counts(&online_sims, 1, "the online half has the broadcast live").await;
    eprintln!(
        "{count} devices: {} got it live in {:.1} s",
        online.len(),
        started.elapsed().as_secs_f64()
    );
    let stats_path = format!("/v1/apps/{}/messages/{message_id}/stats", app.id);
    let delivered =
        async |n: usize| stats(platform, &app, &stats_path).await["totals"]["delivered"] == n;
    eventually(
        "the live deliveries counted",
        Duration::from_secs(20),
        async || delivered(online.len()).await,
    )
    .await;
    let after_send = redis_keys(platform);
    let size_after_send = db_size(platform);

    let started = Instant::now();
    let (offline_sims, _) = connect_sims(platform, offline).await;
    wait_timeline_counts(
        &offline_sims,
        1,
        "the offline half has it after reconnecting",
    )
    .await;
    eprintln!(
        "{count} devices: the other {} connected and caught up in {:.1} s",
        offline.len(),
        started.elapsed().as_secs_f64()
    );
    eventually(
        "every delivery counted",
        Duration::from_secs(20),
        async || delivered(count).await,
    )
    .await;
    let after_catch_up = redis_keys(platform);
    let size_after_catch_up = db_size(platform);

    // A sentinel: a device that has it would have had a second copy of the first broadcast
    // before it (one stream reaches a device in order), so each one got the first exactly once.
    send(
        platform,
        &app,
        &json!({ "broadcast": true, "data": "sentinel" }),
    )
    .await;
    wait_timeline_counts(&online_sims, 2, "the sentinel, live").await;
    wait_timeline_counts(&offline_sims, 2, "the sentinel, live").await;
    let open_files = std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count());
    eprintln!("{count} devices: the test process has {open_files} open files");

    FanOut {
        keys_by_send: after_send.difference(&before).cloned().collect(),
        keys_by_catch_up: after_catch_up.difference(&after_send).cloned().collect(),
        db_sizes: [size_before, size_after_send, size_after_catch_up],
        app,
        message_id,
    }
}

/// 2. A broadcast to 10,000 devices over two connectors, half of them offline: the online
/// half gets it live, the other half when it connects, each device exactly once; and the
/// keys the broadcast writes are the same as for an app of 10 devices: the app's timeline
/// (4 keys, created by its first audience message) and the message's statistics (2 keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_ten_thousand_devices_half_offline_once_each() {
    let platform = Platform::start(2).await;
    let small = broadcast_to_half_online(&platform, 10).await;
    let large = broadcast_to_half_online(&platform, 10_000).await;
    for fan_out in [&small, &large] {
        eprintln!(
            "app {}: DBSIZE before the send, after it, after the catch-up: {:?}; keys new after \
             the send: {:?}; after the catch-up: {} of the kinds {:?}",
            fan_out.app.id,
            fan_out.db_sizes,
            fan_out.shapes(&fan_out.keys_by_send),
            fan_out.keys_by_catch_up.len(),
            fan_out.shapes(&fan_out.keys_by_catch_up),
        );
    }

    assert_eq!(
        small.shapes(&small.keys_by_send),
        large.shapes(&large.keys_by_send),
        "the keys a broadcast writes do not depend on its audience"
    );
    assert_eq!(
        large.db_sizes[1] - large.db_sizes[0],
        small.db_sizes[1] - small.db_sizes[0],
        "DBSIZE grows by the same number of keys for both broadcasts"
    );
    // Connecting writes each device's presence (`{d:<device>}:meta`), broadcast or not;
    // the catch-up itself writes nothing: no position, no copy of the message.
    for (fan_out, devices) in [(&small, 10), (&large, 10_000)] {
        let presence = BTreeSet::from(["{d:<device>}:meta".to_owned()]);
        assert_eq!(fan_out.shapes(&fan_out.keys_by_catch_up), presence);
        assert_eq!(fan_out.keys_by_catch_up.len(), devices / 2);
        assert_eq!(
            fan_out.db_sizes[2] - fan_out.db_sizes[1],
            devices as u64 / 2
        );
    }
}

/// 3. The statistics of an audience message and of a campaign add up over online devices
/// (delivered, acked, some opened or clicked), offline ones (pending, then expired after the
/// TTL) and one that connects within the TTL (delivered by the catch-up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_add_up_for_a_message_and_a_campaign() {
    const TTL_SECONDS: u64 = 15;
    let platform = Platform::start(2).await;
    let app = App::create(&platform).await;
    let log = Log::default();
    let reactions = [
        Reaction {
            open: true,
            click: true,
        },
        Reaction {
            open: true,
            click: false,
        },
        Reaction::default(),
        Reaction {
            open: false,
            click: true,
        },
    ];
    let mut online = Vec::new();
    for (index, reaction) in reactions.iter().enumerate() {
        let identity = register_identity(&platform, &app).await;
        let state_file = platform.dir.path().join(format!("online-{index}.json"));
        online.push(
            start_audience_device(&platform, identity, state_file, None, *reaction, &log).await,
        );
    }
    wait_connected(&online.iter().collect::<Vec<_>>()).await;
    // Offline: three devices that never connect, and one that connects within the TTL.
    register_many(&platform, &app, 3).await;
    let late = register_identity(&platform, &app).await;

    let started = Instant::now();
    let ttl_deadline = started + Duration::from_secs(TTL_SECONDS);
    let message = json!({ "broadcast": true, "data": "hello", "ttl_seconds": TTL_SECONDS });
    let answer = send(&platform, &app, &message).await;
    let message_id = answer["message_id"].as_str().unwrap().to_owned();
    let message_path = format!("/v1/apps/{}/messages/{message_id}/stats", app.id);
    let (status, campaign) = platform
        .post(
            &format!("/v1/apps/{}/campaigns", app.id),
            &app.server_key,
            &json!({
                "name": "stats",
                "message": { "broadcast": true, "data": "campaign", "ttl_seconds": TTL_SECONDS },
                "schedule": { "kind": "once", "at_ms": ringpush_store::now_ms() },
            }),
            None,
        )
        .await;
    assert_eq!(status, 201, "{campaign}");
    let campaign_path = format!(
        "/v1/apps/{}/campaigns/{}/stats",
        app.id,
        campaign["id"].as_str().unwrap()
    );

    // Online: delivered and acked; two opened, two clicked; the four offline pending.
    let both = [
        ("message", message_path.as_str()),
        ("campaign", campaign_path.as_str()),
    ];
    let live = [8, 4, 4, 2, 2, 4, 0, 0];
    for (what, path) in both {
        wait_for_counts(&platform, &app, what, path, live, Duration::from_secs(20)).await;
        assert!(
            Instant::now() < ttl_deadline,
            "{what}: the TTL passed before the check"
        );
    }

    // The late device connects within the TTL: the catch-up delivers both; it opens them.
    let state_file = platform.dir.path().join("late.json");
    let opens = Reaction {
        open: true,
        click: false,
    };
    let late = start_audience_device(&platform, late, state_file, None, opens, &log).await;
    let caught_up = [8, 5, 5, 3, 2, 3, 0, 0];
    for (what, path) in both {
        wait_for_counts(
            &platform,
            &app,
            what,
            path,
            caught_up,
            Duration::from_secs(20),
        )
        .await;
        assert!(
            Instant::now() < ttl_deadline,
            "{what}: the TTL passed before the check"
        );
    }
    assert_eq!(handed(&log, &late.id, Stream::Timeline).len(), 2);

    // After the TTL, what was pending is expired. An ended campaign's messages expire a TTL
    // after the end of the last minute it sent in (its statistics know minutes, not each
    // message's time): within a minute of the message's own expiry.
    let expired = [8, 5, 5, 3, 2, 0, 3, 0];
    wait_for_counts(
        &platform,
        &app,
        "message",
        &message_path,
        expired,
        Duration::from_secs(30),
    )
    .await;
    wait_for_counts(
        &platform,
        &app,
        "campaign",
        &campaign_path,
        expired,
        Duration::from_secs(90),
    )
    .await;
}

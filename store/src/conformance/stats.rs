//! Conformance cases of the statistics: totals and per-minute series add up, per subject.

use std::collections::BTreeMap;

use ringpush_protocol::AppId;

use crate::{Counter, StatIncrement, StatsRecord, Store};

fn increment(app: AppId, subject: &str, counter: Counter, minute: i64, by: u64) -> StatIncrement {
    StatIncrement {
        app,
        subject: subject.to_owned(),
        counter,
        minute,
        by,
    }
}

async fn read(store: &dyn Store, app: AppId, subject: &str) -> StatsRecord {
    store
        .stats()
        .read_stats(app, subject)
        .await
        .expect("read stats")
}

pub async fn stats_add_up_per_total_and_minute(store: &dyn Store) {
    let stats = store.stats();
    let (app, other_app) = (AppId::random(), AppId::random());
    let minute = crate::now_ms() / 60_000;
    assert_eq!(read(store, app, "msg-1").await, StatsRecord::default());
    stats.add_stats(&[]).await.expect("empty batch");
    stats
        .add_stats(&[
            increment(app, "msg-1", Counter::Targeted, minute, 1_000),
            increment(app, "msg-1", Counter::Delivered, minute, 5),
            increment(app, "msg-1", Counter::Delivered, minute, 7),
            increment(app, "msg-1", Counter::Delivered, minute + 1, 3),
            increment(app, "msg-1", Counter::Acked, minute + 1, 2),
            increment(app, "msg-1", Counter::Opened, minute + 1, 0),
            increment(app, "camp-1", Counter::Delivered, minute, 12),
            increment(other_app, "msg-1", Counter::Failed, minute, 1),
        ])
        .await
        .expect("add");
    stats
        .add_stats(&[increment(app, "msg-1", Counter::Delivered, minute + 1, 10)])
        .await
        .expect("add");
    let record = read(store, app, "msg-1").await;
    let totals = BTreeMap::from([
        (Counter::Targeted, 1_000),
        (Counter::Delivered, 25),
        (Counter::Acked, 2),
    ]);
    assert_eq!(record.totals, totals);
    let per_minute = BTreeMap::from([
        (
            minute,
            BTreeMap::from([(Counter::Targeted, 1_000), (Counter::Delivered, 12)]),
        ),
        (
            minute + 1,
            BTreeMap::from([(Counter::Delivered, 13), (Counter::Acked, 2)]),
        ),
    ]);
    assert_eq!(record.per_minute, per_minute);
    // Subjects and apps are apart.
    let campaign = read(store, app, "camp-1").await;
    assert_eq!(campaign.totals, BTreeMap::from([(Counter::Delivered, 12)]));
    let other = read(store, other_app, "msg-1").await;
    assert_eq!(other.totals, BTreeMap::from([(Counter::Failed, 1)]));
    assert_eq!(read(store, app, "msg-").await, StatsRecord::default());
    assert_eq!(read(store, app, "msg-10").await, StatsRecord::default());
}

pub async fn stats_batch_over_many_subjects(store: &dyn Store) {
    let app = AppId::random();
    let minute = 29_000_000;
    // Subjects with braces and colons must not mix with each other.
    let subjects: Vec<String> = (0..60)
        .map(|i| match i % 3 {
            0 => format!("msg-{i}"),
            1 => format!("{{c}}:{i}"),
            _ => format!("x:{i}:{{"),
        })
        .collect();
    let increments: Vec<StatIncrement> = subjects
        .iter()
        .enumerate()
        .flat_map(|(i, subject)| {
            Counter::ALL.into_iter().map(move |counter| {
                increment(app, subject, counter, minute - (i as i64 % 2), i as u64 + 1)
            })
        })
        .collect();
    store.stats().add_stats(&increments).await.expect("add");
    for (i, subject) in subjects.iter().enumerate() {
        let record = read(store, app, subject).await;
        let counts: BTreeMap<Counter, u64> = Counter::ALL
            .into_iter()
            .map(|counter| (counter, i as u64 + 1))
            .collect();
        assert_eq!(record.totals, counts, "{subject}");
        let per_minute = BTreeMap::from([(minute - (i as i64 % 2), counts)]);
        assert_eq!(record.per_minute, per_minute, "{subject}");
    }
}

//! Conformance cases of the timelines: order, round trip, expiry, cap, idempotency, lookup by
//! message id.

use ringpush_protocol::AppId;

use super::clock;
use crate::{
    ContentType, MessageOptions, NewTimelineEntry, Notification, Priority, Store, TimelineEntry,
};

const NO_CAP: u32 = 10_000;

fn entry(now: i64, message_id: &str, expires_at_ms: i64) -> NewTimelineEntry {
    NewTimelineEntry {
        message_id: message_id.to_owned(),
        audience: "everyone".to_owned(),
        payload: message_id.as_bytes().to_vec(),
        content_type: ContentType::Text,
        created_at_ms: now,
        expires_at_ms,
        campaign_id: None,
        idempotency_key: None,
        options: MessageOptions::default(),
    }
}

/// Appends; answers (seq, dropped) and checks it was not a duplicate.
async fn append(
    store: &dyn Store,
    app: AppId,
    entry: NewTimelineEntry,
    max_len: u32,
) -> (u64, u32) {
    let appended = store
        .timelines()
        .append_timeline(app, &entry, max_len)
        .await
        .expect("append");
    assert!(!appended.duplicate);
    (appended.seq, appended.dropped)
}

async fn seqs(store: &dyn Store, app: AppId, after: u64, now_ms: i64) -> Vec<u64> {
    let entries = store
        .timelines()
        .read_timeline(app, after, 10_000, now_ms)
        .await
        .expect("read timeline");
    entries.iter().map(|entry| entry.seq).collect()
}

async fn by_id(store: &dyn Store, app: AppId, message_id: &str) -> Option<u64> {
    let entry = store
        .timelines()
        .timeline_entry(app, message_id)
        .await
        .expect("timeline entry");
    entry.map(|entry| entry.seq)
}

pub async fn timeline_appends_in_order_and_reads_back(store: &dyn Store) {
    let timelines = store.timelines();
    let (now, far) = clock();
    let (app, other_app) = (AppId::random(), AppId::random());
    assert_eq!(timelines.timeline_head(app).await.expect("head"), 0);
    assert!(seqs(store, app, 0, now).await.is_empty());
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let rich = NewTimelineEntry {
        message_id: "a-2".to_owned(),
        audience: "(vip and (cn or us)) and not churned".to_owned(),
        payload: binary.clone(),
        content_type: ContentType::Json,
        created_at_ms: now + 1,
        expires_at_ms: far + 1,
        campaign_id: Some("campaign-☂".to_owned()),
        idempotency_key: None,
        options: MessageOptions {
            collapse_key: Some("score".to_owned()),
            priority: Priority::High,
            notification: Some(Notification {
                title: Some("Goal ⚽".to_owned()),
                body: Some("2 : 1".to_owned()),
                deep_link: Some("sports://match/7".to_owned()),
                badge: Some(2),
            }),
        },
    };
    let empty_campaign = NewTimelineEntry {
        campaign_id: Some(String::new()),
        payload: Vec::new(),
        ..entry(now, "a-3", far)
    };
    assert_eq!(
        append(store, app, entry(now, "a-1", far), NO_CAP).await,
        (1, 0)
    );
    assert_eq!(append(store, app, rich.clone(), NO_CAP).await, (2, 0));
    assert_eq!(append(store, app, empty_campaign, NO_CAP).await, (3, 0));
    assert_eq!(timelines.timeline_head(app).await.expect("head"), 3);
    let read = timelines
        .read_timeline(app, 0, 10, now)
        .await
        .expect("read");
    assert_eq!(read.len(), 3);
    let expected = TimelineEntry {
        seq: 2,
        message_id: rich.message_id.clone(),
        audience: rich.audience.clone(),
        payload: binary,
        content_type: ContentType::Json,
        created_at_ms: now + 1,
        expires_at_ms: far + 1,
        campaign_id: rich.campaign_id.clone(),
        options: rich.options.clone(),
    };
    // Compared without printing 70 kB on a failure.
    assert!(read[1] == expected, "entry 2 differs");
    assert_eq!(
        (
            read[0].seq,
            read[0].message_id.as_str(),
            read[0].audience.as_str()
        ),
        (1, "a-1", "everyone")
    );
    assert_eq!(
        (read[0].payload.as_slice(), read[0].campaign_id.as_deref()),
        (&b"a-1"[..], None)
    );
    assert_eq!(read[0].content_type, ContentType::Text);
    assert_eq!(
        (read[2].campaign_id.as_deref(), read[2].payload.len()),
        (Some(""), 0)
    );
    // After and limit.
    let page = timelines.read_timeline(app, 1, 1, now).await.expect("read");
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    assert!(seqs(store, app, 3, now).await.is_empty());
    assert!(
        timelines
            .read_timeline(app, 0, 0, now)
            .await
            .expect("read")
            .is_empty()
    );
    // Lookup by message id.
    let found = timelines.timeline_entry(app, "a-2").await.expect("entry");
    assert!(found == Some(expected), "lookup of a-2 differs");
    assert_eq!(by_id(store, app, "a-9").await, None);
    assert_eq!(by_id(store, other_app, "a-1").await, None);
    // Apps have their own sequences.
    assert_eq!(timelines.timeline_head(other_app).await.expect("head"), 0);
    assert_eq!(
        append(store, other_app, entry(now, "b-1", far), NO_CAP).await,
        (1, 0)
    );
    assert_eq!(
        append(store, app, entry(now, "a-4", far), NO_CAP).await,
        (4, 0)
    );
}

pub async fn timeline_hides_and_trims_expired_entries(store: &dyn Store) {
    let timelines = store.timelines();
    let (now, far) = clock();
    let app = AppId::random();
    // Expiries minutes away: a backend may also expire data by its own clock.
    append(store, app, entry(now, "m-1", now + 50_000), NO_CAP).await;
    append(store, app, entry(now, "m-2", far), NO_CAP).await;
    append(store, app, entry(now, "m-3", now + 100_000), NO_CAP).await;
    assert_eq!(seqs(store, app, 0, now + 49_999).await, [1, 2, 3]);
    // Expired at exactly its expiry.
    assert_eq!(seqs(store, app, 0, now + 50_000).await, [2, 3]);
    assert_eq!(seqs(store, app, 0, now + 200_000).await, [2]);
    // The limit counts unexpired entries only.
    let page = timelines
        .read_timeline(app, 0, 1, now + 60_000)
        .await
        .expect("read");
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    // Not trimmed yet: still found by id.
    assert_eq!(by_id(store, app, "m-1").await, Some(1));
    // An entry created after they expired trims them, uncounted, and their ids go with them.
    let later = now + 120_000;
    assert_eq!(
        append(store, app, entry(later, "m-4", far), NO_CAP).await,
        (4, 0)
    );
    assert_eq!(by_id(store, app, "m-1").await, None);
    assert_eq!(by_id(store, app, "m-3").await, None);
    assert_eq!(by_id(store, app, "m-2").await, Some(2));
    assert_eq!(seqs(store, app, 0, now).await, [2, 4]);
    // Trimmed entries do not count against the cap either.
    assert_eq!(
        append(store, app, entry(later, "m-5", far), 3).await,
        (5, 0)
    );
    assert_eq!(seqs(store, app, 0, now).await, [2, 4, 5]);
    assert_eq!(timelines.timeline_head(app).await.expect("head"), 5);
}

pub async fn timeline_cap_drops_oldest_and_counts_them(store: &dyn Store) {
    let (now, far) = clock();
    let app = AppId::random();
    let mut dropped = Vec::new();
    for n in 1..=5 {
        dropped.push(
            append(store, app, entry(now, &format!("c-{n}"), far), 3)
                .await
                .1,
        );
    }
    assert_eq!(dropped, [0, 0, 0, 1, 1]);
    assert_eq!(seqs(store, app, 0, now).await, [3, 4, 5]);
    assert_eq!(by_id(store, app, "c-2").await, None);
    assert_eq!(by_id(store, app, "c-3").await, Some(3));
    // A lower cap drops several at once.
    assert_eq!(append(store, app, entry(now, "c-6", far), 1).await, (6, 3));
    assert_eq!(seqs(store, app, 0, now).await, [6]);
    // The seq goes on after entries were dropped.
    assert_eq!(store.timelines().timeline_head(app).await.expect("head"), 6);
    // An entry expired when the next one is created is trimmed before the cap applies: the
    // cap then drops (and counts) only entries that had not expired.
    let soon = now + 60_000;
    let app = AppId::random();
    append(store, app, entry(now, "d-1", far), 2).await;
    append(store, app, entry(now, "d-2", soon), 2).await;
    assert_eq!(append(store, app, entry(soon, "d-3", far), 2).await, (3, 0));
    assert_eq!(append(store, app, entry(soon, "d-4", far), 2).await, (4, 1));
    assert_eq!(seqs(store, app, 0, now).await, [3, 4]);
}

pub async fn timeline_idempotent_append_returns_the_same_seq(store: &dyn Store) {
    let timelines = store.timelines();
    let (now, far) = clock();
    let (app, other_app) = (AppId::random(), AppId::random());
    let keyed = |message_id: &str, key: &str| NewTimelineEntry {
        idempotency_key: Some(key.to_owned()),
        ..entry(now, message_id, far)
    };
    let first = timelines
        .append_timeline(
            app,
            &keyed("k-1", "campaign:7:2026-11-23T09:00@UTC"),
            NO_CAP,
        )
        .await
        .expect("append");
    assert_eq!((first.seq, first.duplicate), (1, false));
    let retry = timelines
        .append_timeline(
            app,
            &keyed("k-1-retry", "campaign:7:2026-11-23T09:00@UTC"),
            NO_CAP,
        )
        .await
        .expect("append");
    assert_eq!((retry.seq, retry.duplicate, retry.dropped), (1, true, 0));
    assert_eq!(timelines.timeline_head(app).await.expect("head"), 1);
    assert_eq!(seqs(store, app, 0, now).await, [1]);
    // The retry stored nothing: its message id is unknown.
    assert_eq!(by_id(store, app, "k-1-retry").await, None);
    // Other keys, and the same key in another app, append.
    let other_key = timelines
        .append_timeline(app, &keyed("k-2", "other"), NO_CAP)
        .await
        .expect("append");
    assert_eq!((other_key.seq, other_key.duplicate), (2, false));
    let other_app_answer = timelines
        .append_timeline(
            other_app,
            &keyed("k-1", "campaign:7:2026-11-23T09:00@UTC"),
            NO_CAP,
        )
        .await
        .expect("append");
    assert_eq!(
        (other_app_answer.seq, other_app_answer.duplicate),
        (1, false)
    );
    // The key is remembered after its entry left the timeline.
    append(store, app, entry(now, "k-3", far), 1).await;
    let late = timelines
        .append_timeline(
            app,
            &keyed("k-1", "campaign:7:2026-11-23T09:00@UTC"),
            NO_CAP,
        )
        .await
        .expect("append");
    assert_eq!((late.seq, late.duplicate), (1, true));
    assert_eq!(timelines.timeline_head(app).await.expect("head"), 3);
}

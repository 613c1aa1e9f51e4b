//! The behaviour every [`Store`] backend must show, as public async test cases.
//!
//! Each case takes a fresh, empty store and panics on the first deviation. Time is passed
//! explicitly (`now_ms` arguments, message expiries), so no case sleeps. A backend's test file
//! runs them all, one `#[tokio::test]` per case, with [`store_conformance_tests!`](crate::store_conformance_tests):
//!
//! ```ignore
//! ringpush_store::store_conformance_tests!(async {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
//!     (store, dir) // the store, and whatever must outlive it
//! });
//! ```
//!
//! The expression is evaluated once per case and must yield a [`Fixture`]: a store, or a
//! `(store, guard)` pair whose guard (a temp dir, a server) is dropped after the store.

use ringpush_protocol::{AppId, DeviceId, MessageId};
use ringpush_ring::Member;

use crate::{
    ContentType, DeviceRecord, InboxLimits, InboxState, MessageOptions, MessageStatus, NewMessage,
    Notification, Priority, Store, StoreError, now_ms, secret_hash,
};

// Cases of apps and of the other parts of the store, one module each.
mod apps;
mod campaigns;
mod operators;
mod platform;
mod registry;
mod stats;
mod timeline;
pub use apps::*;
pub use campaigns::*;
pub use operators::*;
pub use platform::*;
pub use registry::*;
pub use stats::*;
pub use timeline::*;

/// What a conformance test gets from its constructor: a store to test.
pub trait Fixture {
    fn store(&self) -> &dyn Store;
}

impl<S: Store> Fixture for S {
    fn store(&self) -> &dyn Store {
        self
    }
}

/// A store and something that must live as long as it (dropped after it).
impl<S: Store, Guard> Fixture for (S, Guard) {
    fn store(&self) -> &dyn Store {
        &self.0
    }
}

/// Expands to one `#[tokio::test]` per conformance case, each on a store made by the given
/// expression (a future yielding a [`Fixture`]). The calling crate needs `tokio` with the
/// `macros` and `rt` features.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make_store:expr) => {
        $crate::store_conformance_tests!(@cases $make_store;
            apps_are_created_once_and_read_back,
            apps_are_listed_oldest_first,
            app_keys_are_added_once_in_creation_order,
            app_keys_are_revoked_once,
            racing_key_changes_all_hold,
            devices_are_created_once_and_read_back,
            unknown_device_answers_nothing_and_zeros,
            append_assigns_sequences_in_order,
            payloads_round_trip_byte_for_byte,
            batch_with_repeated_devices_gets_increasing_seqs,
            batch_over_many_devices_answers_in_request_order,
            cap_drops_oldest_and_counts_them,
            cap_does_not_count_expired_entries,
            expired_messages_are_hidden,
            read_inbox_respects_after_and_limit,
            ack_trims_and_raises_positions,
            ack_never_lowers_and_clamps_to_last_seq,
            ack_batch_over_many_devices,
            mark_delivered_raises_and_clamps,
            message_status_moves_through_every_state,
            idempotent_append_returns_the_same_seq,
            options_round_trip_through_the_inbox,
            a_collapse_key_replaces_the_pending_message,
            remember_request_keeps_the_first_fingerprint,
            presence_epochs_grow_and_only_the_holder_clears,
            leases_expire_and_come_sorted,
            // the registry, timelines and statistics
            registry_attributes_round_trip_and_are_replaced,
            registry_alias_change_moves_the_device,
            registry_time_zones_follow_the_devices,
            registry_app_devices_pages_through_every_device,
            timeline_appends_in_order_and_reads_back,
            timeline_hides_and_trims_expired_entries,
            timeline_cap_drops_oldest_and_counts_them,
            timeline_idempotent_append_returns_the_same_seq,
            stats_add_up_per_total_and_minute,
            stats_batch_over_many_subjects,
            // campaigns and firing claims
            campaigns_round_trip_every_field_and_kind,
            app_campaigns_come_newest_first_and_puts_replace,
            scheduled_index_follows_puts_and_transitions,
            racing_transitions_move_a_campaign_once,
            firing_claims_hold_expire_and_finish,
            firing_claims_are_renewed_by_their_owner_only,
            racing_claims_have_one_winner,
            // the portal's operators and sessions
            operators_are_created_once_listed_and_deleted,
            sessions_are_created_read_expire_and_deleted,
            // the platform gateways' tokens, settings and queue
            a_platform_token_is_replaced_and_retired_only_if_still_current,
            app_gateway_settings_are_kept_whole,
            platform_sends_are_claimed_when_due_and_again_after_their_lease,
            platform_outcomes_are_recorded_per_message,
        );
    };
    (@cases $make_store:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let fixture = $make_store.await;
                $crate::conformance::$case($crate::conformance::Fixture::store(&fixture)).await;
            }
        )*
    };
}

/// The time a case starts at, and an expiry no case reaches. Real time: Redis expires an
/// inbox key with its last message by its own clock, so times in a case must be near it. Every
/// other time in a case is explicit, with margins of seconds so that a slow run changes
/// nothing.
fn clock() -> (i64, i64) {
    let now = now_ms();
    (now, now + 86_400_000)
}

const NO_CAP: InboxLimits = InboxLimits {
    max_inbox_len: 10_000,
};

/// A plain text message created at `now`, for the suite and for tests of one backend.
pub fn message(now: i64, device: DeviceId, text: &str, expires_at_ms: i64) -> NewMessage {
    NewMessage {
        device,
        payload: text.as_bytes().to_vec(),
        content_type: ContentType::Text,
        created_at_ms: now,
        expires_at_ms,
        idempotency_key: None,
        options: MessageOptions::default(),
        campaign_id: None,
    }
}

fn keyed(now: i64, device: DeviceId, text: &str, key: &str) -> NewMessage {
    NewMessage {
        idempotency_key: Some(key.to_owned()),
        ..message(now, device, text, clock().1)
    }
}

async fn append_one(store: &dyn Store, message: NewMessage, limits: InboxLimits) -> (u64, u32) {
    let answers = store.append(&[message], limits).await.expect("append");
    assert_eq!(answers.len(), 1);
    assert!(!answers[0].duplicate);
    (answers[0].seq, answers[0].dropped)
}

/// Appends one message per text to `device`, without cap or expiry; answers their seqs.
async fn fill(store: &dyn Store, now: i64, device: DeviceId, texts: &[&str]) -> Vec<u64> {
    let far = clock().1;
    let messages: Vec<NewMessage> = texts.iter().map(|t| message(now, device, t, far)).collect();
    let answers = store.append(&messages, NO_CAP).await.expect("append");
    answers.iter().map(|answer| answer.seq).collect()
}

async fn read_seqs(store: &dyn Store, device: DeviceId, after: u64, now_ms: i64) -> Vec<u64> {
    let messages = store
        .read_inbox(device, after, 10_000, now_ms)
        .await
        .expect("read inbox");
    messages.iter().map(|message| message.seq).collect()
}

async fn state(store: &dyn Store, device: DeviceId, now: i64) -> InboxState {
    store.inbox_state(device, now).await.expect("inbox state")
}

fn positions(last_seq: u64, delivered_up_to: u64, acked_up_to: u64, pending: u64) -> InboxState {
    InboxState {
        last_seq,
        delivered_up_to,
        acked_up_to,
        pending,
    }
}

fn member(id: &str, port: u16) -> Member {
    Member {
        id: id.to_owned(),
        device_url: format!("ws://127.0.0.1:{port}/v1/connect"),
        grpc_url: format!("http://127.0.0.1:{}", port + 1),
    }
}

pub async fn devices_are_created_once_and_read_back(store: &dyn Store) {
    let now = now_ms();
    let device = DeviceRecord {
        id: DeviceId::random(),
        app: AppId::random(),
        created_at_ms: now,
        sealing: None,
    };
    store.create_device(&device).await.expect("create device");
    assert_eq!(
        store.device(device.id).await.expect("read"),
        Some(device.clone())
    );
    // A device that gave a sealing key reads it back, and its LZ4 flag.
    for lz4 in [false, true] {
        let sealed = DeviceRecord {
            id: DeviceId::random(),
            sealing: Some(crate::DeviceSealing {
                public_key: [lz4 as u8 + 7; 32],
                lz4,
            }),
            ..device.clone()
        };
        store.create_device(&sealed).await.expect("create device");
        assert_eq!(store.device(sealed.id).await.expect("read"), Some(sealed));
    }
    let again = DeviceRecord {
        created_at_ms: now + 1,
        ..device.clone()
    };
    let result = store.create_device(&again).await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists(_))),
        "{result:?}"
    );
    assert_eq!(store.device(device.id).await.expect("read"), Some(device));
    assert_eq!(store.device(DeviceId::random()).await.expect("read"), None);
}

pub async fn unknown_device_answers_nothing_and_zeros(store: &dyn Store) {
    let now = now_ms();
    let device = DeviceId::random();
    assert_eq!(state(store, device, now).await, InboxState::default());
    assert!(read_seqs(store, device, 0, now).await.is_empty());
    assert!(
        !store
            .inbox_contains(device, 1, now)
            .await
            .expect("contains")
    );
    assert_eq!(store.presence(device).await.expect("presence"), None);
    let id = MessageId { device, seq: 1 };
    assert_eq!(store.message_status(id, now).await.expect("status"), None);
    // Acks and delivery marks for a device never written to create no positions.
    store.ack(&[(device, 5)]).await.expect("ack");
    store.mark_delivered(&[(device, 5)]).await.expect("mark");
    assert_eq!(state(store, device, now).await, InboxState::default());
    // Empty batches are fine.
    assert!(store.append(&[], NO_CAP).await.expect("append").is_empty());
    store.ack(&[]).await.expect("ack");
    store.mark_delivered(&[]).await.expect("mark");
}

pub async fn append_assigns_sequences_in_order(store: &dyn Store) {
    let (now, far) = clock();
    let device = DeviceId::random();
    for expected in 1..=3 {
        let (seq, dropped) = append_one(store, message(now, device, "m", far), NO_CAP).await;
        assert_eq!((seq, dropped), (expected, 0));
    }
    let json = NewMessage {
        payload: br#"{"n":4}"#.to_vec(),
        content_type: ContentType::Json,
        created_at_ms: now + 4,
        expires_at_ms: far + 4,
        ..message(now, device, "", far)
    };
    assert_eq!(append_one(store, json, NO_CAP).await, (4, 0));
    let messages = store.read_inbox(device, 0, 100, now).await.expect("read");
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(messages[0].payload, b"m");
    assert_eq!(messages[0].content_type, ContentType::Text);
    assert_eq!(
        (messages[0].created_at_ms, messages[0].expires_at_ms),
        (now, far)
    );
    assert_eq!(messages[3].payload, br#"{"n":4}"#);
    assert_eq!(messages[3].content_type, ContentType::Json);
    assert_eq!(
        (messages[3].created_at_ms, messages[3].expires_at_ms),
        (now + 4, far + 4)
    );
    assert_eq!(state(store, device, now).await, positions(4, 0, 0, 4));
}

pub async fn payloads_round_trip_byte_for_byte(store: &dyn Store) {
    let (now, far) = clock();
    let device = DeviceId::random();
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let payloads = [Vec::new(), vec![0, 0, 255, 13, 10], binary];
    let messages: Vec<NewMessage> = payloads
        .iter()
        .map(|payload| NewMessage {
            payload: payload.clone(),
            ..message(now, device, "", far)
        })
        .collect();
    store.append(&messages, NO_CAP).await.expect("append");
    let read = store.read_inbox(device, 0, 10, now).await.expect("read");
    let read_payloads: Vec<Vec<u8>> = read.into_iter().map(|m| m.payload).collect();
    // Compared without printing 70 kB on a failure.
    let lengths = |payloads: &[Vec<u8>]| payloads.iter().map(Vec::len).collect::<Vec<_>>();
    assert!(
        read_payloads == payloads,
        "payloads differ; lengths read {:?}, written {:?}",
        lengths(&read_payloads),
        lengths(&payloads)
    );
}

pub async fn batch_with_repeated_devices_gets_increasing_seqs(store: &dyn Store) {
    let (now, far) = clock();
    let (a, b, c) = (DeviceId::random(), DeviceId::random(), DeviceId::random());
    let order = [
        (a, "a1"),
        (b, "b1"),
        (a, "a2"),
        (c, "c1"),
        (a, "a3"),
        (b, "b2"),
    ];
    let messages: Vec<NewMessage> = order
        .iter()
        .map(|&(d, t)| message(now, d, t, far))
        .collect();
    let answers = store.append(&messages, NO_CAP).await.expect("append");
    let seqs: Vec<u64> = answers.iter().map(|answer| answer.seq).collect();
    assert_eq!(seqs, [1, 1, 2, 1, 3, 2]);
    let texts = |messages: Vec<crate::StoredMessage>| -> Vec<String> {
        messages
            .into_iter()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect()
    };
    let read_a = store.read_inbox(a, 0, 10, now).await.expect("read");
    assert_eq!(texts(read_a), ["a1", "a2", "a3"]);
    let read_b = store.read_inbox(b, 0, 10, now).await.expect("read");
    assert_eq!(texts(read_b), ["b1", "b2"]);
    let next = store.append(&messages[..1], NO_CAP).await.expect("append");
    assert_eq!(next[0].seq, 4);
}

pub async fn batch_over_many_devices_answers_in_request_order(store: &dyn Store) {
    let (now, far) = clock();
    let devices: Vec<DeviceId> = (0..200).map(|_| DeviceId::random()).collect();
    // Three rounds over every device, interleaved: seqs 1, 2, 3 per device.
    let messages: Vec<NewMessage> = (0..3)
        .flat_map(|round| {
            devices
                .iter()
                .map(move |&d| message(now, d, &format!("{round}"), far))
        })
        .collect();
    let answers = store.append(&messages, NO_CAP).await.expect("append");
    assert_eq!(answers.len(), 600);
    for (index, answer) in answers.iter().enumerate() {
        assert_eq!(answer.seq, (index / 200) as u64 + 1, "answer {index}");
    }
    for &device in devices.iter().step_by(37) {
        assert_eq!(read_seqs(store, device, 0, now).await, [1, 2, 3]);
    }
}

pub async fn cap_drops_oldest_and_counts_them(store: &dyn Store) {
    let (now, far) = clock();
    let device = DeviceId::random();
    let cap = InboxLimits { max_inbox_len: 3 };
    let mut dropped = Vec::new();
    for _ in 0..5 {
        dropped.push(
            append_one(store, message(now, device, "m", far), cap)
                .await
                .1,
        );
    }
    assert_eq!(dropped, [0, 0, 0, 1, 1]);
    assert_eq!(read_seqs(store, device, 0, now).await, [3, 4, 5]);
    assert_eq!(state(store, device, now).await, positions(5, 0, 0, 3));
    // One batch past the cap: each message counts what it pushed out.
    let batch: Vec<NewMessage> = (0..4).map(|_| message(now, device, "b", far)).collect();
    let answers = store.append(&batch, cap).await.expect("append");
    let counts: Vec<u32> = answers.iter().map(|answer| answer.dropped).collect();
    assert_eq!(counts, [1, 1, 1, 1]);
    assert_eq!(read_seqs(store, device, 0, now).await, [7, 8, 9]);
    // Other devices are not affected by this device's cap.
    let other = DeviceId::random();
    assert_eq!(
        append_one(store, message(now, other, "o", far), cap).await,
        (1, 0)
    );
}

pub async fn cap_does_not_count_expired_entries(store: &dyn Store) {
    let (now, far) = clock();
    let device = DeviceId::random();
    let cap = InboxLimits { max_inbox_len: 2 };
    // Entry 1 expires at now + 60 s; the next messages are created a minute later, when it
    // is no longer pending: the cap drops it first and does not count it.
    let later = now + 120_000;
    assert_eq!(
        append_one(store, message(now, device, "old", now + 60_000), cap).await,
        (1, 0)
    );
    assert_eq!(
        append_one(store, message(later, device, "a", far), cap).await,
        (2, 0)
    );
    assert_eq!(
        append_one(store, message(later, device, "b", far), cap).await,
        (3, 0)
    );
    assert_eq!(
        append_one(store, message(later, device, "c", far), cap).await,
        (4, 1)
    );
    assert_eq!(read_seqs(store, device, 0, now).await, [3, 4]);
}

pub async fn expired_messages_are_hidden(store: &dyn Store) {
    let now = now_ms();
    let device = DeviceId::random();
    // Expiries minutes away: a backend may also expire data by its own clock.
    let messages = [
        message(now, device, "short", now + 100_000),
        message(now, device, "long", now + 500_000),
        message(now, device, "shorter", now + 50_000),
    ];
    store.append(&messages, NO_CAP).await.expect("append");
    assert_eq!(read_seqs(store, device, 0, now + 49_999).await, [1, 2, 3]);
    // Expired at exactly its expiry.
    assert_eq!(read_seqs(store, device, 0, now + 50_000).await, [1, 2]);
    assert_eq!(read_seqs(store, device, 0, now + 200_000).await, [2]);
    assert!(read_seqs(store, device, 0, now + 500_000).await.is_empty());
    let at = |now_ms| store.inbox_state(device, now_ms);
    assert_eq!(at(now).await.expect("state"), positions(3, 0, 0, 3));
    assert_eq!(
        at(now + 200_000).await.expect("state"),
        positions(3, 0, 0, 1)
    );
    assert_eq!(
        at(now + 900_000).await.expect("state"),
        positions(3, 0, 0, 0)
    );
    assert!(
        store
            .inbox_contains(device, 1, now + 99_999)
            .await
            .expect("contains")
    );
    assert!(
        !store
            .inbox_contains(device, 1, now + 100_000)
            .await
            .expect("contains")
    );
    assert!(
        store
            .inbox_contains(device, 2, now + 100_000)
            .await
            .expect("contains")
    );
    assert!(
        !store
            .inbox_contains(device, 4, now)
            .await
            .expect("contains")
    );
    // Nothing about expiry changes positions.
    let state = at(now + 900_000).await.expect("state");
    assert_eq!(
        (state.last_seq, state.delivered_up_to, state.acked_up_to),
        (3, 0, 0)
    );
}

pub async fn read_inbox_respects_after_and_limit(store: &dyn Store) {
    let (now, far) = clock();
    let device = DeviceId::random();
    // Seqs 1..=10; the even ones expire at now + 10 s.
    let soon = now + 10_000;
    let messages: Vec<NewMessage> = (1..=10)
        .map(|n| message(now, device, "m", if n % 2 == 0 { soon } else { far }))
        .collect();
    store.append(&messages, NO_CAP).await.expect("append");
    let read = |after, limit, now_ms| async move {
        let messages = store
            .read_inbox(device, after, limit, now_ms)
            .await
            .expect("read");
        messages.iter().map(|m| m.seq).collect::<Vec<u64>>()
    };
    assert_eq!(read(3, 4, now).await, [4, 5, 6, 7]);
    assert_eq!(read(8, 100, now).await, [9, 10]);
    assert!(read(10, 100, now).await.is_empty());
    assert!(read(0, 0, now).await.is_empty());
    // The limit counts unexpired messages only.
    assert_eq!(read(0, 3, soon).await, [1, 3, 5]);
    assert_eq!(read(5, 10, soon).await, [7, 9]);
}

pub async fn ack_trims_and_raises_positions(store: &dyn Store) {
    let now = now_ms();
    let device = DeviceId::random();
    fill(store, now, device, &["1", "2", "3", "4", "5"]).await;
    store.ack(&[(device, 3)]).await.expect("ack");
    assert_eq!(read_seqs(store, device, 0, now).await, [4, 5]);
    assert_eq!(state(store, device, now).await, positions(5, 3, 3, 2));
    assert!(
        !store
            .inbox_contains(device, 3, now)
            .await
            .expect("contains")
    );
    // New messages continue the sequence after an ack.
    assert_eq!(fill(store, now, device, &["6"]).await, [6]);
    assert_eq!(read_seqs(store, device, 3, now).await, [4, 5, 6]);
}

pub async fn ack_never_lowers_and_clamps_to_last_seq(store: &dyn Store) {
    let now = now_ms();
    let device = DeviceId::random();
    fill(store, now, device, &["1", "2", "3", "4", "5"]).await;
    store.ack(&[(device, 4)]).await.expect("ack");
    store.ack(&[(device, 2)]).await.expect("ack");
    assert_eq!(state(store, device, now).await, positions(5, 4, 4, 1));
    store.ack(&[(device, 1_000)]).await.expect("ack");
    assert_eq!(state(store, device, now).await, positions(5, 5, 5, 0));
    assert!(read_seqs(store, device, 0, now).await.is_empty());
    store.ack(&[(device, u64::MAX)]).await.expect("ack");
    assert_eq!(state(store, device, now).await, positions(5, 5, 5, 0));
    // Later messages are not pre-acked by the clamped ack.
    fill(store, now, device, &["6"]).await;
    assert_eq!(read_seqs(store, device, 0, now).await, [6]);
    assert_eq!(state(store, device, now).await, positions(6, 5, 5, 1));
}

pub async fn ack_batch_over_many_devices(store: &dyn Store) {
    let (now, far) = clock();
    let devices: Vec<DeviceId> = (0..50).map(|_| DeviceId::random()).collect();
    let messages: Vec<NewMessage> = devices
        .iter()
        .flat_map(|&d| (0..4).map(move |_| message(now, d, "m", far)))
        .collect();
    store.append(&messages, NO_CAP).await.expect("append");
    // Device i acks up to i % 5, twice for some, in one call.
    let mut acks: Vec<(DeviceId, u64)> = devices
        .iter()
        .enumerate()
        .map(|(i, &d)| (d, (i % 5) as u64))
        .collect();
    acks.push((devices[7], 1));
    store.ack(&acks).await.expect("ack");
    for (i, &device) in devices.iter().enumerate() {
        let acked = ((i % 5) as u64).min(4);
        let pending = 4 - acked;
        assert_eq!(
            state(store, device, now).await,
            positions(4, acked, acked, pending),
            "{i}"
        );
    }
}

pub async fn mark_delivered_raises_and_clamps(store: &dyn Store) {
    let now = now_ms();
    let device = DeviceId::random();
    fill(store, now, device, &["1", "2", "3", "4", "5"]).await;
    store.mark_delivered(&[(device, 2)]).await.expect("mark");
    assert_eq!(state(store, device, now).await, positions(5, 2, 0, 5));
    store.mark_delivered(&[(device, 1)]).await.expect("mark");
    assert_eq!(state(store, device, now).await, positions(5, 2, 0, 5));
    store.mark_delivered(&[(device, 99)]).await.expect("mark");
    assert_eq!(state(store, device, now).await, positions(5, 5, 0, 5));
    // Delivery removes nothing from the inbox.
    assert_eq!(read_seqs(store, device, 0, now).await, [1, 2, 3, 4, 5]);
    // Many devices in one call, one of them twice.
    let other = DeviceId::random();
    fill(store, now, other, &["1", "2", "3"]).await;
    store
        .mark_delivered(&[(other, 1), (device, 5), (other, 3), (other, 2)])
        .await
        .expect("mark");
    assert_eq!(state(store, other, now).await, positions(3, 3, 0, 3));
}

pub async fn message_status_moves_through_every_state(store: &dyn Store) {
    let (now, far) = clock();
    let device = DeviceId::random();
    let status = |seq| store.message_status(MessageId { device, seq }, now);
    let messages = [
        message(now, device, "1", far),
        message(now, device, "2", far),
        message(now, device, "3", now + 10_000),
    ];
    store.append(&messages, NO_CAP).await.expect("append");
    assert_eq!(
        status(1).await.expect("status"),
        Some(MessageStatus::Accepted)
    );
    store.mark_delivered(&[(device, 1)]).await.expect("mark");
    assert_eq!(
        status(1).await.expect("status"),
        Some(MessageStatus::Delivered)
    );
    assert_eq!(
        status(2).await.expect("status"),
        Some(MessageStatus::Accepted)
    );
    store.ack(&[(device, 1)]).await.expect("ack");
    assert_eq!(status(1).await.expect("status"), Some(MessageStatus::Acked));
    // Seq 3 expires at now + 10 s.
    let later = store.message_status(MessageId { device, seq: 3 }, now + 10_000);
    assert_eq!(later.await.expect("status"), Some(MessageStatus::Expired));
    // Dropped by the cap without an ack: expired too.
    let cap = InboxLimits { max_inbox_len: 1 };
    assert_eq!(
        append_one(store, message(now, device, "4", far), cap).await,
        (4, 2)
    );
    assert_eq!(
        status(2).await.expect("status"),
        Some(MessageStatus::Expired)
    );
    assert_eq!(
        status(4).await.expect("status"),
        Some(MessageStatus::Accepted)
    );
    assert_eq!(status(0).await.expect("status"), None);
    assert_eq!(status(5).await.expect("status"), None);
}

pub async fn idempotent_append_returns_the_same_seq(store: &dyn Store) {
    let (now, far) = clock();
    let (device, other) = (DeviceId::random(), DeviceId::random());
    let first = store
        .append(&[keyed(now, device, "a", "app:k1")], NO_CAP)
        .await
        .expect("append");
    assert_eq!((first[0].seq, first[0].duplicate), (1, false));
    let retry = store
        .append(&[keyed(now, device, "a", "app:k1")], NO_CAP)
        .await
        .expect("append");
    assert_eq!(
        (retry[0].seq, retry[0].duplicate, retry[0].dropped),
        (1, true, 0)
    );
    assert_eq!(state(store, device, now).await, positions(1, 0, 0, 1));
    // A repeat inside one batch is a duplicate of the first; other keys and devices are not.
    let batch = [
        keyed(now, device, "b", "app:k2"),
        keyed(now, device, "b", "app:k2"),
        keyed(now, other, "c", "app:k1"),
        message(now, device, "no key", far),
    ];
    let answers = store.append(&batch, NO_CAP).await.expect("append");
    let outcome: Vec<(u64, bool)> = answers.iter().map(|a| (a.seq, a.duplicate)).collect();
    assert_eq!(outcome, [(2, false), (2, true), (1, false), (3, false)]);
    assert_eq!(read_seqs(store, device, 0, now).await, [1, 2, 3]);
    assert_eq!(read_seqs(store, other, 0, now).await, [1]);
    // The key is remembered even after its message was acked.
    store.ack(&[(device, 3)]).await.expect("ack");
    let late = store
        .append(&[keyed(now, device, "a", "app:k1")], NO_CAP)
        .await
        .expect("append");
    assert_eq!((late[0].seq, late[0].duplicate), (1, true));
    assert_eq!(state(store, device, now).await, positions(3, 3, 3, 0));
}

pub async fn options_round_trip_through_the_inbox(store: &dyn Store) {
    let (now, far) = clock();
    let device = DeviceId::random();
    let options = MessageOptions {
        collapse_key: None,
        priority: Priority::High,
        notification: Some(Notification {
            title: Some("Your order ✓".to_owned()),
            body: Some("shipped".to_owned()),
            deep_link: Some("shop://orders/42".to_owned()),
            badge: Some(1),
        }),
    };
    let messages = [
        NewMessage {
            options: options.clone(),
            campaign_id: Some("campaign-7".to_owned()),
            ..message(now, device, "with", far)
        },
        message(now, device, "without", far),
    ];
    store.append(&messages, NO_CAP).await.expect("append");
    let read = store.read_inbox(device, 0, 10, now).await.expect("read");
    assert_eq!(read.len(), 2);
    assert_eq!(
        (read[0].options.clone(), read[0].payload.as_slice()),
        (options, &b"with"[..])
    );
    assert_eq!(read[0].campaign_id.as_deref(), Some("campaign-7"));
    assert_eq!(read[1].options, MessageOptions::default());
    assert_eq!(read[1].campaign_id, None);
}

fn collapsing(now: i64, device: DeviceId, text: &str, key: &str) -> NewMessage {
    NewMessage {
        options: MessageOptions {
            collapse_key: Some(key.to_owned()),
            ..MessageOptions::default()
        },
        ..message(now, device, text, clock().1)
    }
}

pub async fn a_collapse_key_replaces_the_pending_message(store: &dyn Store) {
    let (now, far) = clock();
    let (device, other) = (DeviceId::random(), DeviceId::random());
    let batch = [
        collapsing(now, device, "score 1:0", "score"),
        message(now, device, "unrelated", far),
        collapsing(now, other, "score 1:0", "score"),
        collapsing(now, device, "score 2:0", "score"),
    ];
    store.append(&batch, NO_CAP).await.expect("append");
    // The older pending one is gone; another key, another device: untouched.
    assert_eq!(read_seqs(store, device, 0, now).await, [2, 3]);
    assert_eq!(read_seqs(store, other, 0, now).await, [1]);
    assert_eq!(state(store, device, now).await, positions(3, 0, 0, 2));
    let replaced = MessageId { device, seq: 1 };
    assert_eq!(
        store.message_status(replaced, now).await.expect("status"),
        Some(MessageStatus::Expired)
    );
    // Once acked, a message is not pending: a newer one with its key replaces nothing.
    store.ack(&[(device, 3)]).await.expect("ack");
    store
        .append(&[collapsing(now, device, "score 3:0", "score")], NO_CAP)
        .await
        .expect("append");
    assert_eq!(read_seqs(store, device, 0, now).await, [4]);
    assert_eq!(
        store
            .message_status(MessageId { device, seq: 3 }, now)
            .await
            .expect("status"),
        Some(MessageStatus::Acked)
    );
    // Delivered but not acked is still pending: replaced.
    store.mark_delivered(&[(device, 4)]).await.expect("mark");
    store
        .append(&[collapsing(now, device, "score 4:0", "score")], NO_CAP)
        .await
        .expect("append");
    assert_eq!(read_seqs(store, device, 0, now).await, [5]);
    assert_eq!(state(store, device, now).await, positions(5, 4, 3, 1));
}

pub async fn remember_request_keeps_the_first_fingerprint(store: &dyn Store) {
    let (app, other_app) = (AppId::random(), AppId::random());
    let (first, second) = (secret_hash("request one"), secret_hash("request two"));
    let remember = |app, key, fingerprint| store.remember_request(app, key, fingerprint);
    assert_eq!(remember(app, "key-1", first).await.expect("remember"), None);
    assert_eq!(
        remember(app, "key-1", first).await.expect("remember"),
        Some(first)
    );
    assert_eq!(
        remember(app, "key-1", second).await.expect("remember"),
        Some(first)
    );
    assert_eq!(
        remember(app, "key-2", second).await.expect("remember"),
        None
    );
    assert_eq!(
        remember(other_app, "key-1", second)
            .await
            .expect("remember"),
        None
    );
    assert_eq!(
        remember(other_app, "key-1", first).await.expect("remember"),
        Some(second)
    );
}

pub async fn presence_epochs_grow_and_only_the_holder_clears(store: &dyn Store) {
    let now = now_ms();
    let device = DeviceId::random();
    let first = store.set_presence(device, "c-a", now).await.expect("set");
    let held = store
        .presence(device)
        .await
        .expect("presence")
        .expect("present");
    assert_eq!(
        (held.connector_id.as_str(), held.epoch, held.since_ms),
        ("c-a", first, now)
    );
    let second = store
        .set_presence(device, "c-b", now + 1)
        .await
        .expect("set");
    assert!(second > first);
    // The old connection closing does not erase the new one.
    assert!(
        !store
            .clear_presence(device, "c-a", first)
            .await
            .expect("clear")
    );
    assert!(
        !store
            .clear_presence(device, "c-b", first)
            .await
            .expect("clear")
    );
    assert!(
        !store
            .clear_presence(device, "c-a", second)
            .await
            .expect("clear")
    );
    let held = store
        .presence(device)
        .await
        .expect("presence")
        .expect("present");
    assert_eq!(
        (held.connector_id.as_str(), held.epoch, held.since_ms),
        ("c-b", second, now + 1)
    );
    assert!(
        store
            .clear_presence(device, "c-b", second)
            .await
            .expect("clear")
    );
    assert_eq!(store.presence(device).await.expect("presence"), None);
    assert!(
        !store
            .clear_presence(device, "c-b", second)
            .await
            .expect("clear")
    );
    // Epochs keep growing after a clear, even on the same connector.
    let third = store
        .set_presence(device, "c-b", now + 2)
        .await
        .expect("set");
    assert!(third > second);
    // Devices are independent.
    let other = DeviceId::random();
    assert!(
        !store
            .clear_presence(other, "c-b", third)
            .await
            .expect("clear")
    );
    store.set_presence(other, "c-c", now).await.expect("set");
    let held = store
        .presence(device)
        .await
        .expect("presence")
        .expect("present");
    assert_eq!((held.connector_id.as_str(), held.epoch), ("c-b", third));
}

pub async fn leases_expire_and_come_sorted(store: &dyn Store) {
    let now = now_ms();
    assert!(store.live_members(now).await.expect("members").is_empty());
    for (id, port) in [("conn-c", 9300), ("conn-a", 9100), ("conn-b", 9200)] {
        store
            .renew_lease(&member(id, port), 1_000, now)
            .await
            .expect("renew");
    }
    let live = store.live_members(now + 500).await.expect("members");
    let expected = vec![
        member("conn-a", 9100),
        member("conn-b", 9200),
        member("conn-c", 9300),
    ];
    assert_eq!(live, expected);
    // Renewal extends one lease and replaces what it says about the member.
    store
        .renew_lease(&member("conn-b", 9400), 1_000, now + 900)
        .await
        .expect("renew");
    let live = store.live_members(now + 1_000).await.expect("members");
    assert_eq!(live, vec![member("conn-b", 9400)]);
    let live = store.live_members(now + 1_899).await.expect("members");
    assert_eq!(live, vec![member("conn-b", 9400)]);
    assert!(
        store
            .live_members(now + 1_900)
            .await
            .expect("members")
            .is_empty()
    );
    // A dropped lease ends at once; an expired member may come back by renewing.
    store
        .renew_lease(&member("conn-a", 9100), 1_000, now + 2_000)
        .await
        .expect("renew");
    store
        .renew_lease(&member("conn-c", 9300), 1_000, now + 2_000)
        .await
        .expect("renew");
    store.drop_lease("conn-c").await.expect("drop");
    store.drop_lease("never-there").await.expect("drop");
    let live = store.live_members(now + 2_001).await.expect("members");
    assert_eq!(live, vec![member("conn-a", 9100)]);
}

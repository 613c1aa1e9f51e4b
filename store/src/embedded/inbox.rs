//! Inbox changes of the embedded store, each run inside the caller's write transaction.

use redb::{ReadableTable, Table, WriteTransaction};
use ringpush_protocol::DeviceId;

use super::idempotency::{live_record, put_record, sweep_expired};
use super::records::{
    self, COLLAPSE, IDEMPOTENCY, IDEMPOTENCY_EXPIRY, INBOX, POSITIONS, Positions, inbox_key,
};
use crate::{Appended, IDEMPOTENCY_TTL_MS, InboxLimits, NewMessage, StoreResult, now_ms};

type InboxTable<'txn> = Table<'txn, &'static [u8; 24], &'static [u8]>;

/// All inbox keys of a device, lowest seq first.
pub(super) fn device_range(device: DeviceId) -> ([u8; 24], [u8; 24]) {
    (inbox_key(device, 0), inbox_key(device, u64::MAX))
}

/// Removes the oldest entry of a device's inbox; answers its expiry, or `None` if empty.
fn pop_oldest(inbox: &mut InboxTable<'_>, device: DeviceId) -> StoreResult<Option<i64>> {
    let (low, high) = device_range(device);
    let oldest = match inbox.range::<&[u8; 24]>(&low..=&high)?.next() {
        Some(entry) => {
            let (key, value) = entry?;
            Some((
                *key.value(),
                records::inbox_value_expires_at(value.value())?,
            ))
        }
        None => None,
    };
    let Some((key, expires_at_ms)) = oldest else {
        return Ok(None);
    };
    inbox.remove(&key)?;
    Ok(Some(expires_at_ms))
}

pub(super) fn append_batch(
    transaction: &WriteTransaction,
    messages: &[NewMessage],
    limits: InboxLimits,
) -> StoreResult<Vec<Appended>> {
    let mut positions = transaction.open_table(POSITIONS)?;
    let mut inbox = transaction.open_table(INBOX)?;
    let mut markers = transaction.open_table(IDEMPOTENCY)?;
    let mut expiry = transaction.open_table(IDEMPOTENCY_EXPIRY)?;
    let mut collapse = transaction.open_table(COLLAPSE)?;
    // Markers expire by the wall clock, as Redis keys do.
    let wall_now_ms = now_ms();
    let mut answers = Vec::with_capacity(messages.len());
    for message in messages {
        let device = message.device;
        let marker = message
            .idempotency_key
            .as_deref()
            .map(|key| records::append_marker_key(device, key));
        if let Some(marker) = &marker
            && let Some(seq) = live_record(&markers, marker, wall_now_ms)?
        {
            let seq = seq
                .get(..8)
                .map(|bytes| u64::from_be_bytes(records::word(bytes)))
                .ok_or_else(|| records::corrupt("idempotency", "marker without a seq"))?;
            answers.push(Appended {
                seq,
                duplicate: true,
                dropped: 0,
            });
            continue;
        }
        let device_key = device.0.to_be_bytes();
        let mut state = positions
            .get(&device_key)?
            .map(|value| Positions::decode(value.value()))
            .unwrap_or_default();
        state.last_seq += 1;
        let seq = state.last_seq;
        let value = crate::inbox_record::entry_body(message);
        inbox.insert(&inbox_key(device, seq), value.as_slice())?;
        state.rows += 1;
        if let Some(key) = &message.options.collapse_key {
            // The device's pending message with this key, if any, is replaced (an acked one
            // is no longer in the inbox).
            let key = records::collapse_key(device, key);
            let older = collapse.insert(key.as_slice(), seq)?.map(|seq| seq.value());
            if let Some(older) = older
                && inbox.remove(&inbox_key(device, older))?.is_some()
            {
                state.rows -= 1;
            }
        }
        let mut dropped = 0;
        while state.rows > u64::from(limits.max_inbox_len) {
            let Some(expires_at_ms) = pop_oldest(&mut inbox, device)? else {
                break;
            };
            state.rows -= 1;
            // An entry already expired was no longer pending: dropping it loses nothing.
            if expires_at_ms > message.created_at_ms {
                dropped += 1;
            }
        }
        positions.insert(&device_key, &state.encode())?;
        if let Some(marker) = &marker {
            let expires_at_ms = wall_now_ms.saturating_add_unsigned(IDEMPOTENCY_TTL_MS);
            put_record(
                &mut markers,
                &mut expiry,
                marker,
                expires_at_ms,
                &seq.to_be_bytes(),
            )?;
        }
        answers.push(Appended {
            seq,
            duplicate: false,
            dropped,
        });
    }
    sweep_expired(&mut markers, &mut expiry, wall_now_ms)?;
    Ok(answers)
}

/// Raises positions of each device; `trim` also removes acked entries and raises acked.
pub(super) fn advance(
    transaction: &WriteTransaction,
    marks: &[(DeviceId, u64)],
    trim: bool,
) -> StoreResult<()> {
    let mut positions = transaction.open_table(POSITIONS)?;
    let mut inbox = transaction.open_table(INBOX)?;
    for &(device, up_to) in marks {
        let device_key = device.0.to_be_bytes();
        let Some(mut state) = positions
            .get(&device_key)?
            .map(|value| Positions::decode(value.value()))
        else {
            continue; // never written to: nothing to trim, positions stay 0
        };
        if trim {
            let (low, _) = device_range(device);
            let high = inbox_key(device, up_to);
            for entry in inbox.extract_from_if::<&[u8; 24], _>(&low..=&high, |_, _| true)? {
                entry?;
                state.rows = state.rows.saturating_sub(1);
            }
        }
        let target = up_to.min(state.last_seq);
        if trim {
            state.acked_up_to = state.acked_up_to.max(target);
        }
        state.delivered_up_to = state.delivered_up_to.max(target);
        positions.insert(&device_key, &state.encode())?;
    }
    Ok(())
}

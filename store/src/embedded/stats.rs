//! Statistics in the embedded store: one write transaction per batch. A subject (app id (8)
//! ++ subject length (4) ++ subject) keys its totals and minutes; every write pushes its
//! expiry to 90 days later, and expired subjects are ignored on read and swept a few at a time
//! on write, by the wall clock, as Redis expires keys.
//!
//! | table | key | value |
//! |---|---|---|
//! | `stats_totals` | subject ++ counter (1) | total |
//! | `stats_minutes` | subject ++ biased minute (8) ++ counter (1) | count |
//! | `stats_subjects` | subject | expires_at (i64) |
//! | `stats_expiry` | biased expires_at (8) ++ subject | (), to sweep in expiry order |
//!
//! Counters are stored as their index in `Counter::ALL`; minutes and expiries are biased (sign
//! bit flipped) so that byte order is numeric order.

use std::collections::BTreeSet;

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use ringpush_protocol::AppId;

use super::EmbeddedStore;
use super::records::{corrupt, word};
use crate::stats::STATS_TTL_MS;
use crate::{Counter, StatIncrement, StatsRecord, StatsStore, StoreResult, now_ms};

pub(super) const STATS_TOTALS: TableDefinition<&[u8], u64> = TableDefinition::new("stats_totals");
pub(super) const STATS_MINUTES: TableDefinition<&[u8], u64> = TableDefinition::new("stats_minutes");
pub(super) const STATS_SUBJECTS: TableDefinition<&[u8], i64> =
    TableDefinition::new("stats_subjects");
pub(super) const STATS_EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("stats_expiry");

/// Expired subjects removed per write transaction.
const SWEEP_PER_WRITE: usize = 16;

/// Creates the statistics tables (called when the store is opened).
pub(super) fn create_tables(transaction: &WriteTransaction) -> StoreResult<()> {
    transaction.open_table(STATS_TOTALS)?;
    transaction.open_table(STATS_MINUTES)?;
    transaction.open_table(STATS_SUBJECTS)?;
    transaction.open_table(STATS_EXPIRY)?;
    Ok(())
}

fn subject_key(app: AppId, subject: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(12 + subject.len() + 9);
    key.extend_from_slice(&app.0.to_be_bytes());
    key.extend_from_slice(&(subject.len() as u32).to_be_bytes());
    key.extend_from_slice(subject.as_bytes());
    key
}

fn biased(value: i64) -> [u8; 8] {
    ((value as u64) ^ (1 << 63)).to_be_bytes()
}

fn unbiased(bytes: &[u8]) -> i64 {
    (u64::from_be_bytes(word(bytes)) ^ (1 << 63)) as i64
}

fn counter_byte(counter: Counter) -> u8 {
    // ALL lists every counter, so the position is always found.
    Counter::ALL
        .iter()
        .position(|&each| each == counter)
        .unwrap_or_default() as u8
}

fn counter_of(table: &str, byte: u8) -> StoreResult<Counter> {
    Counter::ALL
        .get(usize::from(byte))
        .copied()
        .ok_or_else(|| corrupt(table, &format!("unknown counter byte {byte}")))
}

fn expiry_key(expires_at_ms: i64, subject: &[u8]) -> Vec<u8> {
    let mut key = biased(expires_at_ms).to_vec();
    key.extend_from_slice(subject);
    key
}

/// Every key of `table` that starts with `prefix`, in order.
fn keys_with_prefix(
    table: &impl ReadableTable<&'static [u8], u64>,
    prefix: &[u8],
) -> StoreResult<Vec<(Vec<u8>, u64)>> {
    let mut found = Vec::new();
    for entry in table.range::<&[u8]>(prefix..)? {
        let (key, value) = entry?;
        if !key.value().starts_with(prefix) {
            break;
        }
        found.push((key.value().to_vec(), value.value()));
    }
    Ok(found)
}

/// Removes a subject's counts and expiry records.
fn remove_subject(transaction: &WriteTransaction, subject: &[u8]) -> StoreResult<()> {
    for table in [STATS_TOTALS, STATS_MINUTES] {
        let mut table = transaction.open_table(table)?;
        for (key, _) in keys_with_prefix(&table, subject)? {
            table.remove(key.as_slice())?;
        }
    }
    let mut subjects = transaction.open_table(STATS_SUBJECTS)?;
    if let Some(expires_at_ms) = subjects.remove(subject)?.map(|value| value.value()) {
        let mut expiry = transaction.open_table(STATS_EXPIRY)?;
        expiry.remove(expiry_key(expires_at_ms, subject).as_slice())?;
    }
    Ok(())
}

fn add_batch(transaction: &WriteTransaction, increments: &[StatIncrement]) -> StoreResult<()> {
    let wall_now_ms = now_ms();
    let increments: Vec<(Vec<u8>, &StatIncrement)> = increments
        .iter()
        .filter(|item| item.by > 0)
        .map(|item| (subject_key(item.app, &item.subject), item))
        .collect();
    let batch_subjects: BTreeSet<&[u8]> = increments
        .iter()
        .map(|(subject, _)| subject.as_slice())
        .collect();
    // Subjects whose time ran out go first: a few of any, and every one this batch adds to,
    // which then starts afresh.
    let mut expired = Vec::new();
    {
        let expiry = transaction.open_table(STATS_EXPIRY)?;
        for entry in expiry.iter()?.take(SWEEP_PER_WRITE) {
            let key = entry?.0.value().to_vec();
            if key.len() < 8 || unbiased(&key[..8]) > wall_now_ms {
                break;
            }
            expired.push(key[8..].to_vec());
        }
        let subjects = transaction.open_table(STATS_SUBJECTS)?;
        for &subject in &batch_subjects {
            let ended = subjects
                .get(subject)?
                .is_some_and(|expires_at_ms| expires_at_ms.value() <= wall_now_ms);
            if ended {
                expired.push(subject.to_vec());
            }
        }
    }
    for subject in expired {
        remove_subject(transaction, &subject)?;
    }
    {
        let mut totals = transaction.open_table(STATS_TOTALS)?;
        let mut minutes = transaction.open_table(STATS_MINUTES)?;
        for (subject, item) in &increments {
            let counter = counter_byte(item.counter);
            let mut total_key = subject.clone();
            total_key.push(counter);
            let total = totals.get(total_key.as_slice())?.map_or(0, |v| v.value());
            totals.insert(total_key.as_slice(), total.saturating_add(item.by))?;
            let mut minute_key = subject.clone();
            minute_key.extend_from_slice(&biased(item.minute));
            minute_key.push(counter);
            let count = minutes.get(minute_key.as_slice())?.map_or(0, |v| v.value());
            minutes.insert(minute_key.as_slice(), count.saturating_add(item.by))?;
        }
    }
    let expires_at_ms = wall_now_ms.saturating_add_unsigned(STATS_TTL_MS);
    let mut subjects = transaction.open_table(STATS_SUBJECTS)?;
    let mut expiry = transaction.open_table(STATS_EXPIRY)?;
    for subject in batch_subjects {
        if let Some(previous) = subjects.insert(subject, expires_at_ms)? {
            expiry.remove(expiry_key(previous.value(), subject).as_slice())?;
        }
        expiry.insert(expiry_key(expires_at_ms, subject).as_slice(), ())?;
    }
    Ok(())
}

#[async_trait]
impl StatsStore for EmbeddedStore {
    async fn add_stats(&self, increments: &[StatIncrement]) -> StoreResult<()> {
        if increments.iter().all(|item| item.by == 0) {
            return Ok(());
        }
        let increments = increments.to_vec();
        self.write(move |transaction| add_batch(transaction, &increments))
            .await
    }

    async fn read_stats(&self, app: AppId, subject: &str) -> StoreResult<StatsRecord> {
        let subject = subject_key(app, subject);
        self.read(move |transaction| {
            let mut record = StatsRecord::default();
            let subjects = transaction.open_table(STATS_SUBJECTS)?;
            let live = subjects
                .get(subject.as_slice())?
                .is_some_and(|expires_at_ms| expires_at_ms.value() > now_ms());
            if !live {
                return Ok(record);
            }
            let totals = transaction.open_table(STATS_TOTALS)?;
            for (key, total) in keys_with_prefix(&totals, &subject)? {
                let byte = key[subject.len()..].first().copied().unwrap_or(u8::MAX);
                record
                    .totals
                    .insert(counter_of("stats_totals", byte)?, total);
            }
            let minutes = transaction.open_table(STATS_MINUTES)?;
            for (key, count) in keys_with_prefix(&minutes, &subject)? {
                let rest = &key[subject.len()..];
                if rest.len() != 9 {
                    return Err(corrupt("stats_minutes", "key is not minute and counter"));
                }
                record
                    .per_minute
                    .entry(unbiased(&rest[..8]))
                    .or_default()
                    .insert(counter_of("stats_minutes", rest[8])?, count);
            }
            Ok(record)
        })
        .await
    }
}

//! Timelines in the embedded store: one write transaction per append does the idempotency
//! check, the expired-entry trim, the next seq, the append and the cap. All integers
//! big-endian; an expiry in a key is biased (sign bit flipped) so that byte order is time
//! order.
//!
//! | table | key | value |
//! |---|---|---|
//! | `timeline` | app id (8) ++ seq (8) | the entry body (layout in `timeline/record.rs`) |
//! | `timeline_heads` | app id (8) | last seq given (8) ++ entries held (8) |
//! | `timeline_expiry` | app id (8) ++ biased expires_at (8) ++ seq (8) | (), to trim in expiry order |
//! | `timeline_ids` | app id (8) ++ message id | seq |
//! | `idempotency` (shared) | `t` ++ app id (8) ++ key | expires_at (8) ++ seq (8) |

use async_trait::async_trait;
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use ringpush_protocol::AppId;

use super::EmbeddedStore;
use super::idempotency::{live_record, put_record, sweep_expired};
use super::records::{IDEMPOTENCY, IDEMPOTENCY_EXPIRY, corrupt, word};
use crate::timeline::record;
use crate::{
    Appended, IDEMPOTENCY_TTL_MS, NewTimelineEntry, StoreResult, TimelineEntry, TimelineStore,
    now_ms,
};

pub(super) const TIMELINE: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("timeline");
pub(super) const TIMELINE_HEADS: TableDefinition<&[u8; 8], &[u8; 16]> =
    TableDefinition::new("timeline_heads");
pub(super) const TIMELINE_EXPIRY: TableDefinition<&[u8; 24], ()> =
    TableDefinition::new("timeline_expiry");
pub(super) const TIMELINE_IDS: TableDefinition<&[u8], u64> = TableDefinition::new("timeline_ids");

/// Scope byte of a timeline append marker in the shared `idempotency` table.
const TIMELINE_MARKER: u8 = b't';
/// Expired entries removed per append (as on Redis): bounds the work of one transaction.
const EXPIRED_PER_APPEND: usize = 1000;

/// Creates the timeline tables (called when the store is opened).
pub(super) fn create_tables(transaction: &WriteTransaction) -> StoreResult<()> {
    transaction.open_table(TIMELINE)?;
    transaction.open_table(TIMELINE_HEADS)?;
    transaction.open_table(TIMELINE_EXPIRY)?;
    transaction.open_table(TIMELINE_IDS)?;
    Ok(())
}

fn entry_key(app: AppId, seq: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&app.0.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn expiry_key(app: AppId, expires_at_ms: i64, seq: u64) -> [u8; 24] {
    let biased = (expires_at_ms as u64) ^ (1 << 63);
    let mut key = [0; 24];
    key[..8].copy_from_slice(&app.0.to_be_bytes());
    key[8..16].copy_from_slice(&biased.to_be_bytes());
    key[16..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn id_key(app: AppId, message_id: &str) -> Vec<u8> {
    let mut key = app.0.to_be_bytes().to_vec();
    key.extend_from_slice(message_id.as_bytes());
    key
}

fn marker_key(app: AppId, idempotency_key: &str) -> Vec<u8> {
    let mut key = vec![TIMELINE_MARKER];
    key.extend_from_slice(&app.0.to_be_bytes());
    key.extend_from_slice(idempotency_key.as_bytes());
    key
}

fn bad_body(detail: String) -> crate::StoreError {
    corrupt("timeline", &detail)
}

/// The timeline tables of one write transaction.
struct Tables<'txn> {
    entries: Table<'txn, &'static [u8; 16], &'static [u8]>,
    expiry: Table<'txn, &'static [u8; 24], ()>,
    ids: Table<'txn, &'static [u8], u64>,
}

impl Tables<'_> {
    /// Removes one entry and what indexes it; answers its expiry, or `None` if it was gone.
    fn remove(&mut self, app: AppId, seq: u64) -> StoreResult<Option<i64>> {
        let Some(body) = self.entries.remove(&entry_key(app, seq))? else {
            return Ok(None);
        };
        let body = body.value().to_vec();
        let expires_at_ms = record::body_expires_at(&body).map_err(bad_body)?;
        self.expiry.remove(&expiry_key(app, expires_at_ms, seq))?;
        let id = id_key(app, record::body_message_id(&body).map_err(bad_body)?);
        // The id may name a later entry now (a reused message id): leave that one.
        if self.ids.get(id.as_slice())?.map(|kept| kept.value()) == Some(seq) {
            self.ids.remove(id.as_slice())?;
        }
        Ok(Some(expires_at_ms))
    }

    /// Removes up to [`EXPIRED_PER_APPEND`] entries expired at `now_ms`; answers how many.
    fn remove_expired(&mut self, app: AppId, now_ms: i64) -> StoreResult<u64> {
        let low = expiry_key(app, i64::MIN, 0);
        let high = expiry_key(app, now_ms, u64::MAX);
        let mut expired = Vec::new();
        for entry in self
            .expiry
            .range::<&[u8; 24]>(&low..=&high)?
            .take(EXPIRED_PER_APPEND)
        {
            expired.push(u64::from_be_bytes(word(&entry?.0.value()[16..])));
        }
        let mut removed = 0;
        for seq in expired {
            if self.remove(app, seq)?.is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The oldest entry's seq, if any.
    fn oldest(&self, app: AppId) -> StoreResult<Option<u64>> {
        let (low, high) = (entry_key(app, 0), entry_key(app, u64::MAX));
        match self.entries.range::<&[u8; 16]>(&low..=&high)?.next() {
            Some(entry) => Ok(Some(u64::from_be_bytes(word(&entry?.0.value()[8..])))),
            None => Ok(None),
        }
    }
}

fn append(
    transaction: &WriteTransaction,
    app: AppId,
    entry: &NewTimelineEntry,
    max_len: u32,
) -> StoreResult<Appended> {
    let mut markers = transaction.open_table(IDEMPOTENCY)?;
    let mut marker_expiry = transaction.open_table(IDEMPOTENCY_EXPIRY)?;
    // Markers expire by the wall clock, as Redis keys do.
    let wall_now_ms = now_ms();
    let marker = entry
        .idempotency_key
        .as_deref()
        .map(|key| marker_key(app, key));
    if let Some(marker) = &marker
        && let Some(seq) = live_record(&markers, marker, wall_now_ms)?
    {
        let seq = seq
            .get(..8)
            .map(|bytes| u64::from_be_bytes(word(bytes)))
            .ok_or_else(|| corrupt("idempotency", "marker without a seq"))?;
        return Ok(Appended {
            seq,
            duplicate: true,
            dropped: 0,
        });
    }
    let mut heads = transaction.open_table(TIMELINE_HEADS)?;
    let mut tables = Tables {
        entries: transaction.open_table(TIMELINE)?,
        expiry: transaction.open_table(TIMELINE_EXPIRY)?,
        ids: transaction.open_table(TIMELINE_IDS)?,
    };
    let app_key = app.0.to_be_bytes();
    let (mut last_seq, mut rows) = match heads.get(&app_key)? {
        Some(head) => {
            let head = head.value();
            (
                u64::from_be_bytes(word(&head[..8])),
                u64::from_be_bytes(word(&head[8..])),
            )
        }
        None => (0, 0),
    };
    // The entry's creation time is the clock, as for inbox appends.
    let now = entry.created_at_ms;
    rows = rows.saturating_sub(tables.remove_expired(app, now)?);
    last_seq += 1;
    let seq = last_seq;
    let body = record::entry_body(entry);
    tables
        .entries
        .insert(&entry_key(app, seq), body.as_slice())?;
    tables
        .expiry
        .insert(&expiry_key(app, entry.expires_at_ms, seq), ())?;
    tables
        .ids
        .insert(id_key(app, &entry.message_id).as_slice(), seq)?;
    rows += 1;
    let mut dropped = 0;
    while rows > u64::from(max_len) {
        let Some(oldest) = tables.oldest(app)? else {
            break;
        };
        let expires_at_ms = tables.remove(app, oldest)?;
        rows -= 1;
        // An entry already expired was no longer deliverable: dropping it loses nothing.
        if expires_at_ms.is_some_and(|expires_at_ms| expires_at_ms > now) {
            dropped += 1;
        }
    }
    let mut head = [0; 16];
    head[..8].copy_from_slice(&last_seq.to_be_bytes());
    head[8..].copy_from_slice(&rows.to_be_bytes());
    heads.insert(&app_key, &head)?;
    if let Some(marker) = &marker {
        let expires_at_ms = wall_now_ms.saturating_add_unsigned(IDEMPOTENCY_TTL_MS);
        put_record(
            &mut markers,
            &mut marker_expiry,
            marker,
            expires_at_ms,
            &seq.to_be_bytes(),
        )?;
    }
    sweep_expired(&mut markers, &mut marker_expiry, wall_now_ms)?;
    Ok(Appended {
        seq,
        duplicate: false,
        dropped,
    })
}

#[async_trait]
impl TimelineStore for EmbeddedStore {
    async fn append_timeline(
        &self,
        app: AppId,
        entry: &NewTimelineEntry,
        max_len: u32,
    ) -> StoreResult<Appended> {
        let entry = entry.clone();
        self.write(move |transaction| append(transaction, app, &entry, max_len))
            .await
    }

    async fn read_timeline(
        &self,
        app: AppId,
        after_seq: u64,
        limit: usize,
        now_ms: i64,
    ) -> StoreResult<Vec<TimelineEntry>> {
        if limit == 0 || after_seq == u64::MAX {
            return Ok(Vec::new());
        }
        self.read(move |transaction| {
            let entries = transaction.open_table(TIMELINE)?;
            let low = entry_key(app, after_seq + 1);
            let high = entry_key(app, u64::MAX);
            let mut read = Vec::new();
            for item in entries.range::<&[u8; 16]>(&low..=&high)? {
                let (key, body) = item?;
                let body = body.value();
                if record::body_expires_at(body).map_err(bad_body)? <= now_ms {
                    continue;
                }
                let seq = u64::from_be_bytes(word(&key.value()[8..]));
                read.push(record::decode_entry(seq, body).map_err(bad_body)?);
                if read.len() == limit {
                    break;
                }
            }
            Ok(read)
        })
        .await
    }

    async fn timeline_head(&self, app: AppId) -> StoreResult<u64> {
        self.read(move |transaction| {
            let heads = transaction.open_table(TIMELINE_HEADS)?;
            Ok(heads
                .get(&app.0.to_be_bytes())?
                .map_or(0, |head| u64::from_be_bytes(word(&head.value()[..8]))))
        })
        .await
    }

    async fn timeline_entry(
        &self,
        app: AppId,
        message_id: &str,
    ) -> StoreResult<Option<TimelineEntry>> {
        let id = id_key(app, message_id);
        self.read(move |transaction| {
            let ids = transaction.open_table(TIMELINE_IDS)?;
            let Some(seq) = ids.get(id.as_slice())?.map(|seq| seq.value()) else {
                return Ok(None);
            };
            let entries = transaction.open_table(TIMELINE)?;
            let Some(body) = entries.get(&entry_key(app, seq))? else {
                return Ok(None);
            };
            record::decode_entry(seq, body.value())
                .map(Some)
                .map_err(bad_body)
        })
        .await
    }
}

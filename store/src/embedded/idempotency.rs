//! Idempotency records of the embedded store (append markers and request fingerprints): each
//! carries its expiry, is ignored once past it, and is swept in expiry order a few at a time.

use redb::{ReadableTable, Table};

use super::records;
use crate::StoreResult;

/// Expired idempotency records removed per write transaction that adds one: enough to keep
/// up with any rate of new records, small enough to keep each commit short.
const SWEEP_PER_WRITE: usize = 64;

pub(super) type IdempotencyTable<'txn> = Table<'txn, &'static [u8], &'static [u8]>;
pub(super) type ExpiryTable<'txn> = Table<'txn, &'static [u8], ()>;

/// The data of an idempotency record that has not expired at `now_ms`.
pub(super) fn live_record(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
    now_ms: i64,
) -> StoreResult<Option<Vec<u8>>> {
    let Some(value) = table.get(key)? else {
        return Ok(None);
    };
    let (expires_at_ms, data) = records::split_idempotency_value(value.value())?;
    Ok((expires_at_ms > now_ms).then(|| data.to_vec()))
}

/// Stores an idempotency record until `expires_at_ms` and indexes it for the sweep.
pub(super) fn put_record(
    records: &mut IdempotencyTable<'_>,
    expiry: &mut ExpiryTable<'_>,
    key: &[u8],
    expires_at_ms: i64,
    data: &[u8],
) -> StoreResult<()> {
    let mut value = expires_at_ms.to_be_bytes().to_vec();
    value.extend_from_slice(data);
    records.insert(key, value.as_slice())?;
    let mut index_key = expires_at_ms.to_be_bytes().to_vec();
    index_key.extend_from_slice(key);
    expiry.insert(index_key.as_slice(), ())?;
    Ok(())
}

/// Removes up to [`SWEEP_PER_WRITE`] idempotency records that expired before `now_ms`.
pub(super) fn sweep_expired(
    records: &mut IdempotencyTable<'_>,
    expiry: &mut ExpiryTable<'_>,
    now_ms: i64,
) -> StoreResult<()> {
    let mut expired = Vec::new();
    for entry in expiry.iter()?.take(SWEEP_PER_WRITE) {
        let (index_key, _) = entry?;
        let index_key = index_key.value();
        if index_key.len() < 8 || i64::from_be_bytes(records::word(index_key)) > now_ms {
            break;
        }
        expired.push(index_key.to_vec());
    }
    for index_key in expired {
        expiry.remove(index_key.as_slice())?;
        let key = &index_key[8..];
        // The record may have been written again since, with a later expiry: keep that one.
        let rewritten = match records.get(key)? {
            Some(value) => records::split_idempotency_value(value.value())?.0 > now_ms,
            None => true,
        };
        if !rewritten {
            records.remove(key)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    #[test]
    fn sweep_removes_expired_records_but_not_rewritten_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = redb::Database::create(dir.path().join("store.redb")).expect("create");
        let transaction = database.begin_write().expect("write");
        {
            let mut records = transaction.open_table(records::IDEMPOTENCY).expect("table");
            let mut expiry = transaction
                .open_table(records::IDEMPOTENCY_EXPIRY)
                .expect("table");
            put_record(&mut records, &mut expiry, b"old", 1_000, b"a").expect("put");
            put_record(&mut records, &mut expiry, b"again", 1_000, b"b").expect("put");
            put_record(&mut records, &mut expiry, b"again", 9_000, b"c").expect("put");
            put_record(&mut records, &mut expiry, b"young", 5_000, b"d").expect("put");
            sweep_expired(&mut records, &mut expiry, 2_000).expect("sweep");
            assert_eq!(live_record(&records, b"old", 0).expect("get"), None);
            let again = live_record(&records, b"again", 2_000).expect("get");
            assert_eq!(again.as_deref(), Some(&b"c"[..]));
            let young = live_record(&records, b"young", 2_000).expect("get");
            assert_eq!(young.as_deref(), Some(&b"d"[..]));
            // Only the index entries of live records are left.
            assert_eq!(expiry.len().expect("len"), 2);
            // A record read after its expiry is absent even before a sweep.
            assert_eq!(live_record(&records, b"young", 5_000).expect("get"), None);
        }
        transaction.commit().expect("commit");
    }
}

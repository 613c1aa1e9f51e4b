//! Timelines on Redis: one sorted set per app scored by timeline seq, its counter, an expiry
//! index and a message id → seq hash, all under the app's hash tag so that one script appends
//! atomically (`lua/timeline_append.lua`).

use async_trait::async_trait;
use redis::{AsyncCommands, Value};
use ringpush_protocol::AppId;

use super::RedisStore;
use super::codec::corrupt;
use super::connection::redis_error;
use super::scripts;
use crate::timeline::record;
use crate::{
    Appended, IDEMPOTENCY_TTL_MS, NewTimelineEntry, StoreResult, TimelineEntry, TimelineStore,
};

/// Most timeline entries one read asks Redis for at a time.
const READ_PAGE: usize = 256;

/// A timeline member read back: the seq, then the shared body layout.
fn decode_member(key: &str, member: &[u8]) -> StoreResult<TimelineEntry> {
    let Some((seq, body)) = member.split_first_chunk::<8>() else {
        return Err(corrupt(key, "timeline member shorter than its seq"));
    };
    record::decode_entry(u64::from_be_bytes(*seq), body).map_err(|detail| corrupt(key, &detail))
}

impl RedisStore {
    /// Timeline entries with `after < seq`, at most `count`, in seq order, expired or not.
    async fn timeline_range(
        &self,
        timeline: &str,
        after: u64,
        count: usize,
    ) -> StoreResult<Vec<TimelineEntry>> {
        let members: Vec<Vec<u8>> = redis::cmd("ZRANGEBYSCORE")
            .arg(timeline)
            .arg(format!("({after}"))
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("read timeline", timeline, error))?;
        members
            .iter()
            .map(|member| decode_member(timeline, member))
            .collect()
    }
}

#[async_trait]
impl TimelineStore for RedisStore {
    async fn append_timeline(
        &self,
        app: AppId,
        entry: &NewTimelineEntry,
        max_len: u32,
    ) -> StoreResult<Appended> {
        let timeline = self.keys.timeline(app);
        let mut invocation = scripts::TIMELINE_APPEND.key(&timeline);
        invocation
            .key(self.keys.timeline_seq(app))
            .key(self.keys.timeline_expiry(app))
            .key(self.keys.timeline_ids(app));
        if let Some(idempotency_key) = &entry.idempotency_key {
            invocation.key(self.keys.timeline_marker(app, idempotency_key));
        }
        invocation
            .arg(record::entry_body(entry))
            .arg(entry.expires_at_ms)
            .arg(max_len)
            .arg(entry.created_at_ms)
            .arg(IDEMPOTENCY_TTL_MS)
            .arg(&entry.message_id);
        let reply: Vec<u64> = invocation
            .invoke_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("append timeline", &timeline, error))?;
        let [seq, duplicate, dropped] = reply[..]
            .try_into()
            .map_err(|_| corrupt(&timeline, &format!("expected 3 numbers, got {reply:?}")))?;
        Ok(Appended {
            seq,
            duplicate: duplicate == 1,
            dropped: u32::try_from(dropped).unwrap_or(u32::MAX),
        })
    }

    async fn read_timeline(
        &self,
        app: AppId,
        after_seq: u64,
        limit: usize,
        now_ms: i64,
    ) -> StoreResult<Vec<TimelineEntry>> {
        let timeline = self.keys.timeline(app);
        let mut entries = Vec::new();
        let mut after = after_seq;
        // Expired entries are skipped, so a page may yield fewer than asked: read on.
        while entries.len() < limit {
            let page_len = (limit - entries.len()).min(READ_PAGE);
            let page = self.timeline_range(&timeline, after, page_len).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            let full_page = page.len() == page_len;
            entries.extend(
                page.into_iter()
                    .filter(|entry| entry.expires_at_ms > now_ms),
            );
            if !full_page {
                break;
            }
        }
        Ok(entries)
    }

    async fn timeline_head(&self, app: AppId) -> StoreResult<u64> {
        let key = self.keys.timeline_seq(app);
        let head: Option<u64> = self
            .connection()
            .get(&key)
            .await
            .map_err(|error| redis_error("timeline head", &key, error))?;
        Ok(head.unwrap_or_default())
    }

    async fn timeline_entry(
        &self,
        app: AppId,
        message_id: &str,
    ) -> StoreResult<Option<TimelineEntry>> {
        let timeline = self.keys.timeline(app);
        let reply: Value = scripts::TIMELINE_ENTRY
            .key(&timeline)
            .key(self.keys.timeline_ids(app))
            .arg(message_id)
            .invoke_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("timeline entry", &timeline, error))?;
        match reply {
            Value::Nil => Ok(None),
            Value::BulkString(member) => decode_member(&timeline, &member).map(Some),
            other => Err(corrupt(&timeline, &format!("unexpected reply {other:?}"))),
        }
    }
}

//! [`RedisStore`]: the store on a single Redis server or a Redis Cluster (Redis 7.0 or
//! newer: the scripts use `PEXPIRETIME`, requests `SET NX GET`).
//!
//! Layout: `keys` names every key (the table of keys and what they hold is there), `codec`
//! lays out values, `scripts` (Lua in `lua/`) changes one device's state atomically,
//! `connection` hides single server versus cluster and runs batches.
//! `registry`, `timeline` and `stats` implement those parts of the store (their Lua is in
//! `lua/` too); `batch` runs plain commands in per-slot pipelines.
//! `campaigns` keeps campaigns and the claims of their firings; `apps` lists apps and changes
//! their keys; `operators` keeps the portal's operators and sessions.

mod apps;
mod batch;
mod campaigns;
mod codec;
mod connection;
mod keys;
mod operators;
mod platform;
mod registry;
mod scripts;
mod stats;
mod timeline;

use std::collections::HashMap;

use async_trait::async_trait;
use redis::{AsyncCommands, Value};
use ringpush_protocol::{AppId, DeviceId};
use ringpush_ring::Member;

use crate::{AppKey, CampaignStore, OperatorStore, PlatformStore};
use crate::{
    AppRecord, Appended, DeviceRecord, IDEMPOTENCY_TTL_MS, InboxLimits, InboxState, NewMessage,
    Presence, Store, StoreError, StoreResult, StoredMessage,
};
use crate::{RegistryStore, StatsStore, TimelineStore};

use codec::corrupt;
use connection::{Connection, ScriptCall, redis_error};
use keys::Keys;

/// Most inbox entries one read asks Redis for at a time.
const READ_PAGE: usize = 256;
/// Leases that ended this long ago are deleted when members are listed. Not at once: callers'
/// clocks differ a little, and one running ahead must not erase a lease others still see.
const LEASE_PRUNE_AFTER_MS: i64 = 60_000;

/// The store on Redis. Cheap to clone (a handle onto one multiplexed connection).
///
/// URLs accepted by [`RedisStore::connect`]:
/// - `redis://[user:password@]host:port[/db]`: a single server, through a connection
///   manager that reconnects by itself;
/// - `redis+cluster://[user:password@]host:port[,host:port...]`: a Redis Cluster, discovered
///   from any of the listed nodes (the credentials apply to every node).
///
/// A call that cannot reach Redis answers [`StoreError::Unavailable`] after at most a few
/// seconds (connection and response timeouts); the next call tries again.
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    keys: Keys,
}

impl RedisStore {
    /// Connects to a single server or a cluster (see the URL forms above).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Ok(Self {
            connection: Connection::open(url).await?,
            keys: Keys::default(),
        })
    }

    /// The same store with every key prefixed by `<namespace>:`, so that several deployments
    /// (or tests) can share one Redis without seeing each other's data. Braces in the
    /// namespace are replaced by `_`: they would break the hash tags that keep a device's
    /// keys in one cluster slot.
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.keys = Keys::with_namespace(namespace);
        self
    }

    fn connection(&self) -> Connection {
        self.connection.clone()
    }

    /// Runs a batch of one script; `what` names it in errors.
    async fn run_batch(
        &self,
        what: &str,
        script: &redis::Script,
        calls: &[ScriptCall],
    ) -> StoreResult<Vec<Value>> {
        let key = calls.first().and_then(|call| call.keys.first());
        self.connection
            .run_script_batch(script, calls)
            .await
            .map_err(|error| redis_error(what, key.map_or("", String::as_str), error))
    }

    /// Creates a hash record unless its key exists.
    async fn create_record(
        &self,
        key: &str,
        fields: Vec<(String, String)>,
        what: String,
    ) -> StoreResult<()> {
        let mut invocation = scripts::CREATE_RECORD.key(key);
        for (field, value) in fields {
            invocation.arg(field).arg(value);
        }
        let created: bool = invocation
            .invoke_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("create record", key, error))?;
        if created {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists(what))
        }
    }

    async fn read_hash(&self, key: &str) -> StoreResult<HashMap<String, String>> {
        self.connection()
            .hgetall(key)
            .await
            .map_err(|error| redis_error("read record", key, error))
    }

    /// Inbox entries with `after < seq <= until`, at most `count`, in seq order.
    async fn inbox_range(
        &self,
        inbox: &str,
        after: u64,
        until: u64,
        count: usize,
    ) -> StoreResult<Vec<StoredMessage>> {
        let members: Vec<Vec<u8>> = redis::cmd("ZRANGEBYSCORE")
            .arg(inbox)
            .arg(format!("({after}"))
            .arg(until)
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("read inbox", inbox, error))?;
        members
            .iter()
            .map(|member| codec::decode_member(inbox, member))
            .collect()
    }
}

/// A reply of a position script: a list of integers.
fn integers<const N: usize>(key: &str, value: Value) -> StoreResult<[u64; N]> {
    let numbers: Vec<u64> = redis::from_redis_value(value)
        .map_err(|error| corrupt(key, &format!("script reply: {error}")))?;
    numbers.try_into().map_err(|numbers: Vec<u64>| {
        corrupt(key, &format!("expected {N} numbers, got {numbers:?}"))
    })
}

#[async_trait]
impl Store for RedisStore {
    async fn create_app(&self, app: &AppRecord) -> StoreResult<()> {
        let key = self.keys.app(app.id);
        self.create_record(&key, codec::app_fields(app), format!("app {}", app.id))
            .await?;
        // The index is another key (another slot on a cluster): a second step, as for devices
        // (see `apps`).
        self.list_app(app).await
    }

    async fn app(&self, id: AppId) -> StoreResult<Option<AppRecord>> {
        let key = self.keys.app(id);
        let fields = self.read_hash(&key).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        codec::decode_app(&key, id, fields).map(Some)
    }

    async fn apps(&self) -> StoreResult<Vec<AppRecord>> {
        self.all_apps().await
    }

    async fn add_app_key(&self, app: AppId, key: &AppKey) -> StoreResult<bool> {
        self.add_key(app, key).await
    }

    async fn revoke_app_key(&self, app: AppId, key_id: &str, now_ms: i64) -> StoreResult<bool> {
        self.revoke_key(app, key_id, now_ms).await
    }

    async fn create_device(&self, device: &DeviceRecord) -> StoreResult<()> {
        let key = self.keys.device(device.id);
        let what = format!("device {}", device.id);
        self.create_record(&key, codec::device_fields(device), what)
            .await?;
        // The record and the app's device list live in different slots, so this is a second
        // step. If it fails the call fails, and the caller never hands out the device: every
        // device in use is listed (listing again is a no-op).
        self.list_app_device(device.app, device.id).await
    }

    async fn device(&self, id: DeviceId) -> StoreResult<Option<DeviceRecord>> {
        let key = self.keys.device(id);
        let fields = self.read_hash(&key).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        codec::decode_device(&key, id, fields).map(Some)
    }

    async fn append(
        &self,
        messages: &[NewMessage],
        limits: InboxLimits,
    ) -> StoreResult<Vec<Appended>> {
        let calls: Vec<ScriptCall> = messages
            .iter()
            .map(|message| {
                let mut keys = vec![
                    self.keys.meta(message.device),
                    self.keys.inbox(message.device),
                    self.keys.collapse(message.device),
                ];
                if let Some(idempotency_key) = &message.idempotency_key {
                    keys.push(self.keys.append_marker(message.device, idempotency_key));
                }
                let collapse_key = message.options.collapse_key.as_deref().unwrap_or_default();
                let args = vec![
                    codec::member_body(message),
                    message.expires_at_ms.to_string().into_bytes(),
                    limits.max_inbox_len.to_string().into_bytes(),
                    message.created_at_ms.to_string().into_bytes(),
                    IDEMPOTENCY_TTL_MS.to_string().into_bytes(),
                    collapse_key.as_bytes().to_vec(),
                ];
                ScriptCall { keys, args }
            })
            .collect();
        let replies = self.run_batch("append", &scripts::APPEND, &calls).await?;
        calls
            .iter()
            .zip(replies)
            .map(|(call, reply)| {
                let [seq, duplicate, dropped] = integers(&call.keys[1], reply)?;
                Ok(Appended {
                    seq,
                    duplicate: duplicate == 1,
                    dropped: u32::try_from(dropped).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    async fn read_inbox(
        &self,
        device: DeviceId,
        after_seq: u64,
        limit: usize,
        now_ms: i64,
    ) -> StoreResult<Vec<StoredMessage>> {
        let inbox = self.keys.inbox(device);
        let mut messages = Vec::new();
        let mut after = after_seq;
        // Expired entries are skipped, so a page may yield fewer than asked: read on.
        while messages.len() < limit {
            let page_len = (limit - messages.len()).min(READ_PAGE);
            let page = self.inbox_range(&inbox, after, u64::MAX, page_len).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            let full_page = page.len() == page_len;
            messages.extend(
                page.into_iter()
                    .filter(|entry| entry.expires_at_ms > now_ms),
            );
            if !full_page {
                break;
            }
        }
        Ok(messages)
    }

    async fn ack(&self, acks: &[(DeviceId, u64)]) -> StoreResult<()> {
        let calls: Vec<ScriptCall> = acks
            .iter()
            .map(|&(device, up_to)| ScriptCall {
                keys: vec![self.keys.meta(device), self.keys.inbox(device)],
                args: vec![up_to.to_string().into_bytes()],
            })
            .collect();
        self.run_batch("ack", &scripts::ACK, &calls).await?;
        Ok(())
    }

    async fn mark_delivered(&self, marks: &[(DeviceId, u64)]) -> StoreResult<()> {
        let calls: Vec<ScriptCall> = marks
            .iter()
            .map(|&(device, seq)| ScriptCall {
                keys: vec![self.keys.meta(device)],
                args: vec![seq.to_string().into_bytes()],
            })
            .collect();
        self.run_batch("mark delivered", &scripts::MARK_DELIVERED, &calls)
            .await?;
        Ok(())
    }

    async fn inbox_state(&self, device: DeviceId, now_ms: i64) -> StoreResult<InboxState> {
        let meta = self.keys.meta(device);
        let reply: Value = scripts::INBOX_STATE
            .key(&meta)
            .key(self.keys.inbox(device))
            .arg(now_ms)
            .invoke_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("inbox state", &meta, error))?;
        let [last_seq, delivered_up_to, acked_up_to, pending] = integers(&meta, reply)?;
        Ok(InboxState {
            last_seq,
            delivered_up_to,
            acked_up_to,
            pending,
        })
    }

    async fn inbox_contains(&self, device: DeviceId, seq: u64, now_ms: i64) -> StoreResult<bool> {
        let inbox = self.keys.inbox(device);
        let entries = self
            .inbox_range(&inbox, seq.saturating_sub(1), seq, 1)
            .await?;
        Ok(entries
            .iter()
            .any(|entry| entry.seq == seq && entry.expires_at_ms > now_ms))
    }

    async fn set_presence(
        &self,
        device: DeviceId,
        connector_id: &str,
        now_ms: i64,
    ) -> StoreResult<u64> {
        let meta = self.keys.meta(device);
        let (epoch,): (u64,) = redis::pipe()
            .atomic()
            .hincr(&meta, "presence_epoch", 1)
            .hset_multiple(
                &meta,
                &[
                    ("presence_connector", connector_id.to_owned()),
                    ("presence_since", now_ms.to_string()),
                ],
            )
            .ignore()
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("set presence", &meta, error))?;
        Ok(epoch)
    }

    async fn clear_presence(
        &self,
        device: DeviceId,
        connector_id: &str,
        epoch: u64,
    ) -> StoreResult<bool> {
        let meta = self.keys.meta(device);
        scripts::CLEAR_PRESENCE
            .key(&meta)
            .arg(connector_id)
            .arg(epoch)
            .invoke_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("clear presence", &meta, error))
    }

    async fn presence(&self, device: DeviceId) -> StoreResult<Option<Presence>> {
        let meta = self.keys.meta(device);
        let (connector_id, epoch, since_ms): (Option<String>, Option<u64>, Option<i64>) =
            redis::cmd("HMGET")
                .arg(&meta)
                .arg(&["presence_connector", "presence_epoch", "presence_since"])
                .query_async(&mut self.connection())
                .await
                .map_err(|error| redis_error("read presence", &meta, error))?;
        let Some(connector_id) = connector_id else {
            return Ok(None);
        };
        Ok(Some(Presence {
            connector_id,
            epoch: epoch.ok_or_else(|| corrupt(&meta, "presence without an epoch"))?,
            since_ms: since_ms.unwrap_or_default(),
        }))
    }

    async fn clock_ms(&self) -> StoreResult<i64> {
        // TIME answers seconds and microseconds, as two strings.
        let (seconds, microseconds): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("read the clock", "TIME", error))?;
        Ok(seconds * 1000 + microseconds / 1000)
    }

    async fn renew_lease(&self, member: &Member, ttl_ms: u64, now_ms: i64) -> StoreResult<()> {
        let leases = self.keys.leases();
        let expires_at_ms = now_ms.saturating_add_unsigned(ttl_ms);
        redis::pipe()
            .atomic()
            .zadd(&leases, &member.id, expires_at_ms)
            .ignore()
            .hset(
                self.keys.members(),
                &member.id,
                codec::member_info_json(member),
            )
            .ignore()
            .exec_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("renew lease", &leases, error))
    }

    async fn drop_lease(&self, member_id: &str) -> StoreResult<()> {
        let leases = self.keys.leases();
        redis::pipe()
            .atomic()
            .zrem(&leases, member_id)
            .ignore()
            .hdel(self.keys.members(), member_id)
            .ignore()
            .exec_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("drop lease", &leases, error))
    }

    async fn live_members(&self, now_ms: i64) -> StoreResult<Vec<Member>> {
        let leases = self.keys.leases();
        let reply: Vec<(String, Option<Vec<u8>>)> = scripts::LIVE_MEMBERS
            .key(&leases)
            .key(self.keys.members())
            .arg(now_ms)
            .arg(now_ms.saturating_sub(LEASE_PRUNE_AFTER_MS))
            .invoke_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("live members", &leases, error))?;
        let mut members = reply
            .into_iter()
            .map(|(id, json)| {
                let json = json
                    .ok_or_else(|| corrupt(&leases, &format!("lease {id} without its member")))?;
                codec::decode_member_info(&leases, id, &json)
            })
            .collect::<StoreResult<Vec<Member>>>()?;
        members.sort();
        Ok(members)
    }

    async fn remember_request(
        &self,
        app: AppId,
        key: &str,
        fingerprint: [u8; 32],
    ) -> StoreResult<Option<[u8; 32]>> {
        let request = self.keys.request(app, key);
        // SET NX GET: sets when absent and answers nil, else answers the value kept.
        let remembered: Option<String> = redis::cmd("SET")
            .arg(&request)
            .arg(hex::encode(fingerprint))
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(IDEMPOTENCY_TTL_MS)
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("remember request", &request, error))?;
        remembered
            .map(|text| codec::decode_hash(&request, &text))
            .transpose()
    }

    fn registry(&self) -> &dyn RegistryStore {
        self
    }

    fn timelines(&self) -> &dyn TimelineStore {
        self
    }

    fn stats(&self) -> &dyn StatsStore {
        self
    }

    fn campaigns(&self) -> &dyn CampaignStore {
        self
    }

    fn operators(&self) -> &dyn OperatorStore {
        self
    }

    fn platform(&self) -> &dyn PlatformStore {
        self
    }
}

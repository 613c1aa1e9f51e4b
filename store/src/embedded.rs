//! [`EmbeddedStore`]: the store in one redb file inside the process, for `ringpush dev`.
//!
//! Durable in the file: apps and their keys, devices, inbox positions and entries, idempotency
//! records (the layout is in `records`; app changes in `apps`); device attributes and registry
//! indexes, timelines and statistics (each part's tables are described in `registry`,
//! `timeline` and `stats`); campaigns and firing claims (`campaigns`); the portal's operators
//! and sessions (`operators`). In memory only (`memory`): presence and connector leases,
//! which describe processes that end with this one.
//!
//! Every call runs its redb work on the blocking pool in one transaction: one write
//! transaction per changing call (a whole append batch at once), durable when it commits.

mod apps;
mod campaigns;
mod idempotency;
mod inbox;
mod memory;
mod operators;
mod platform;
mod records;
mod registry;
mod stats;
mod timeline;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};
use ringpush_protocol::{AppId, DeviceId};
use ringpush_ring::Member;

use crate::{AppKey, CampaignStore, OperatorStore, PlatformStore};
use crate::{
    AppRecord, Appended, DeviceRecord, IDEMPOTENCY_TTL_MS, InboxLimits, InboxState, NewMessage,
    Presence, Store, StoreError, StoreResult, StoredMessage, now_ms,
};
use crate::{RegistryStore, StatsStore, TimelineStore};

use idempotency::{live_record, put_record, sweep_expired};
use inbox::{advance, append_batch, device_range};
use memory::Volatile;
use records::{
    APPS, COLLAPSE, DEVICE_SEALING, DEVICES, IDEMPOTENCY, IDEMPOTENCY_EXPIRY, INBOX, POSITIONS,
    Positions, inbox_key,
};

/// The store in a redb file. Cheap to clone; every clone shares the file and the memory.
#[derive(Clone)]
pub struct EmbeddedStore {
    database: Arc<Database>,
    /// Presence and leases. A std mutex: held only for a few map operations, never across an
    /// `.await`.
    volatile: Arc<Mutex<Volatile>>,
}

impl EmbeddedStore {
    /// Opens the store in `path`, creating the file and its tables if needed. Blocks on file
    /// I/O: call it at start-up (or in `spawn_blocking`). One process at a time may hold a file.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let database = Database::create(path)?;
        let transaction = database.begin_write()?;
        {
            // Opening a table in a write transaction creates it: readers can then rely on it.
            migrate_legacy_apps(&mut transaction.open_table(APPS)?)?;
            transaction.open_table(DEVICES)?;
            transaction.open_table(DEVICE_SEALING)?;
            transaction.open_table(POSITIONS)?;
            transaction.open_table(INBOX)?;
            transaction.open_table(IDEMPOTENCY)?;
            transaction.open_table(IDEMPOTENCY_EXPIRY)?;
            transaction.open_table(COLLAPSE)?;
            registry::create_tables(&transaction)?;
            timeline::create_tables(&transaction)?;
            stats::create_tables(&transaction)?;
            campaigns::create_tables(&transaction)?;
            operators::create_tables(&transaction)?;
            platform::create_tables(&transaction)?;
        }
        transaction.commit()?;
        Ok(Self {
            database: Arc::new(database),
            volatile: Arc::default(),
        })
    }

    /// Runs `work` in one write transaction on the blocking pool; commits if it succeeds.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let database = Arc::clone(&self.database);
        blocking(move || {
            let transaction = database.begin_write()?;
            let answer = work(&transaction)?;
            transaction.commit()?;
            Ok(answer)
        })
        .await
    }

    /// Runs `work` in one read transaction on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&ReadTransaction) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let database = Arc::clone(&self.database);
        blocking(move || work(&database.begin_read()?)).await
    }

    fn volatile(&self) -> MutexGuard<'_, Volatile> {
        // The maps stay consistent even if a holder panicked: every change is one insert or
        // remove.
        self.volatile
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Rewrites apps stored in the layout before keys were a list (files of earlier versions of
/// `ringpush dev`), so that their keys keep working and can be revoked.
fn migrate_legacy_apps(apps: &mut redb::Table<'_, &[u8; 8], &[u8]>) -> StoreResult<()> {
    let mut legacy = Vec::new();
    for entry in apps.iter()? {
        let (key, value) = entry?;
        let id = AppId(u64::from_be_bytes(*key.value()));
        if let Some(app) = records::decode_legacy_app(id, value.value()) {
            legacy.push(app);
        }
    }
    for app in legacy {
        tracing::info!(app_id = %app.id, "app record moved to the layout with a key list");
        apps.insert(
            &app.id.0.to_be_bytes(),
            records::encode_app(&app)?.as_slice(),
        )?;
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| StoreError::Unavailable(format!("embedded store task failed: {error}")))?
}

/// redb failures (I/O, a closed or locked file) mean the store cannot be used right now.
macro_rules! unavailable_from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                StoreError::Unavailable(format!("embedded store: {error}"))
            }
        }
    )*};
}

unavailable_from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

#[async_trait]
impl Store for EmbeddedStore {
    async fn create_app(&self, app: &AppRecord) -> StoreResult<()> {
        let app = app.clone();
        self.write(move |transaction| apps::create(transaction, &app))
            .await
    }

    async fn app(&self, id: AppId) -> StoreResult<Option<AppRecord>> {
        self.read(move |transaction| apps::read(transaction, id))
            .await
    }

    async fn apps(&self) -> StoreResult<Vec<AppRecord>> {
        self.read(apps::all).await
    }

    async fn add_app_key(&self, app: AppId, key: &AppKey) -> StoreResult<bool> {
        let key = key.clone();
        self.write(move |transaction| {
            apps::update(transaction, app, |record| apps::add_key(record, &key))
        })
        .await
    }

    async fn revoke_app_key(&self, app: AppId, key_id: &str, now_ms: i64) -> StoreResult<bool> {
        let key_id = key_id.to_owned();
        self.write(move |transaction| {
            apps::update(transaction, app, |record| {
                Ok(apps::revoke_key(record, &key_id, now_ms))
            })
        })
        .await
    }

    async fn create_device(&self, device: &DeviceRecord) -> StoreResult<()> {
        let device = device.clone();
        self.write(move |transaction| {
            let mut devices = transaction.open_table(DEVICES)?;
            let key = device.id.0.to_be_bytes();
            if devices.get(&key)?.is_some() {
                return Err(StoreError::AlreadyExists(format!("device {}", device.id)));
            }
            devices.insert(&key, &records::encode_device(&device))?;
            if let Some(sealing) = &device.sealing {
                let mut sealings = transaction.open_table(DEVICE_SEALING)?;
                sealings.insert(&key, &records::encode_device_sealing(sealing))?;
            }
            // In the same transaction: a created device is always listed in its app.
            registry::list_app_device(transaction, device.app, device.id)
        })
        .await
    }

    async fn device(&self, id: DeviceId) -> StoreResult<Option<DeviceRecord>> {
        self.read(move |transaction| {
            let devices = transaction.open_table(DEVICES)?;
            let key = id.0.to_be_bytes();
            let Some(value) = devices.get(&key)? else {
                return Ok(None);
            };
            let sealings = transaction.open_table(DEVICE_SEALING)?;
            let sealing = sealings.get(&key)?;
            Ok(Some(records::decode_device(
                id,
                value.value(),
                sealing.as_ref().map(|sealing| sealing.value()),
            )))
        })
        .await
    }

    async fn append(
        &self,
        messages: &[NewMessage],
        limits: InboxLimits,
    ) -> StoreResult<Vec<Appended>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let messages = messages.to_vec();
        self.write(move |transaction| append_batch(transaction, &messages, limits))
            .await
    }

    async fn read_inbox(
        &self,
        device: DeviceId,
        after_seq: u64,
        limit: usize,
        now_ms: i64,
    ) -> StoreResult<Vec<StoredMessage>> {
        if limit == 0 || after_seq == u64::MAX {
            return Ok(Vec::new());
        }
        self.read(move |transaction| {
            let inbox = transaction.open_table(INBOX)?;
            let (_, high) = device_range(device);
            let low = inbox_key(device, after_seq + 1);
            let mut messages = Vec::new();
            for entry in inbox.range::<&[u8; 24]>(&low..=&high)? {
                let (key, value) = entry?;
                let message = records::decode_inbox_entry(key.value(), value.value())?;
                if message.expires_at_ms > now_ms {
                    messages.push(message);
                    if messages.len() == limit {
                        break;
                    }
                }
            }
            Ok(messages)
        })
        .await
    }

    async fn ack(&self, acks: &[(DeviceId, u64)]) -> StoreResult<()> {
        if acks.is_empty() {
            return Ok(());
        }
        let acks = acks.to_vec();
        self.write(move |transaction| advance(transaction, &acks, true))
            .await
    }

    async fn mark_delivered(&self, marks: &[(DeviceId, u64)]) -> StoreResult<()> {
        if marks.is_empty() {
            return Ok(());
        }
        let marks = marks.to_vec();
        self.write(move |transaction| advance(transaction, &marks, false))
            .await
    }

    async fn inbox_state(&self, device: DeviceId, now_ms: i64) -> StoreResult<InboxState> {
        self.read(move |transaction| {
            let positions = transaction.open_table(POSITIONS)?;
            let Some(state) = positions
                .get(&device.0.to_be_bytes())?
                .map(|value| Positions::decode(value.value()))
            else {
                return Ok(InboxState::default());
            };
            let inbox = transaction.open_table(INBOX)?;
            let (low, high) = device_range(device);
            let mut pending = 0;
            for entry in inbox.range::<&[u8; 24]>(&low..=&high)? {
                let (_, value) = entry?;
                if records::inbox_value_expires_at(value.value())? > now_ms {
                    pending += 1;
                }
            }
            Ok(InboxState {
                last_seq: state.last_seq,
                delivered_up_to: state.delivered_up_to,
                acked_up_to: state.acked_up_to,
                pending,
            })
        })
        .await
    }

    async fn inbox_contains(&self, device: DeviceId, seq: u64, now_ms: i64) -> StoreResult<bool> {
        self.read(move |transaction| {
            let inbox = transaction.open_table(INBOX)?;
            match inbox.get(&inbox_key(device, seq))? {
                Some(value) => Ok(records::inbox_value_expires_at(value.value())? > now_ms),
                None => Ok(false),
            }
        })
        .await
    }

    async fn set_presence(
        &self,
        device: DeviceId,
        connector_id: &str,
        now_ms: i64,
    ) -> StoreResult<u64> {
        Ok(self.volatile().set_presence(device, connector_id, now_ms))
    }

    async fn clear_presence(
        &self,
        device: DeviceId,
        connector_id: &str,
        epoch: u64,
    ) -> StoreResult<bool> {
        Ok(self.volatile().clear_presence(device, connector_id, epoch))
    }

    async fn presence(&self, device: DeviceId) -> StoreResult<Option<Presence>> {
        Ok(self.volatile().presence(device))
    }

    async fn renew_lease(&self, member: &Member, ttl_ms: u64, now_ms: i64) -> StoreResult<()> {
        let expires_at_ms = now_ms.saturating_add_unsigned(ttl_ms);
        self.volatile().renew_lease(member, expires_at_ms);
        Ok(())
    }

    async fn drop_lease(&self, member_id: &str) -> StoreResult<()> {
        self.volatile().drop_lease(member_id);
        Ok(())
    }

    async fn live_members(&self, now_ms: i64) -> StoreResult<Vec<Member>> {
        Ok(self.volatile().live_members(now_ms))
    }

    async fn remember_request(
        &self,
        app: AppId,
        key: &str,
        fingerprint: [u8; 32],
    ) -> StoreResult<Option<[u8; 32]>> {
        let key = records::request_key(app, key);
        self.write(move |transaction| {
            let mut requests = transaction.open_table(IDEMPOTENCY)?;
            let mut expiry = transaction.open_table(IDEMPOTENCY_EXPIRY)?;
            let wall_now_ms = now_ms();
            if let Some(remembered) = live_record(&requests, &key, wall_now_ms)? {
                if remembered.len() != 32 {
                    return Err(records::corrupt(
                        "idempotency",
                        "fingerprint is not 32 bytes",
                    ));
                }
                return Ok(Some(records::hash(&remembered)));
            }
            let expires_at_ms = wall_now_ms.saturating_add_unsigned(IDEMPOTENCY_TTL_MS);
            put_record(
                &mut requests,
                &mut expiry,
                &key,
                expires_at_ms,
                &fingerprint,
            )?;
            sweep_expired(&mut requests, &mut expiry, wall_now_ms)?;
            Ok(None)
        })
        .await
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

//! A [`Store`] over several regions' stores: each device's state is read and written in its
//! home region's store, everything else in this region's own.
//!
//! A device's home is the region whose code its id carries
//! ([`DeviceId::region_code`]); an id whose code names no configured region lives in the
//! local store (devices registered before regions were configured). What goes where:
//! - home store: the device record, its inbox and positions, its presence, its attributes;
//! - every store: apps and their keys, written to each region in turn, so that an app and
//!   its keys are valid everywhere (a write fails, and says where it got to, while a region
//!   is unreachable; reads stay local);
//! - local store: messages held for an unreachable home (hinted hand-off, [`HeldId`]),
//!   connector leases (each region has its own ring), idempotency records,
//!   timelines, statistics, campaigns and the portal's operators.
//!
//! Queries over an app's devices (aliases, the device walk, time zones) read every region.

mod held;

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use ringpush_audience::DeviceAttributes;
use ringpush_protocol::{AppId, DeviceId, RegionCode};
use ringpush_ring::Member;

pub use held::{HandedOff, HeldId, HeldStatus, Holding, MAX_HELD_PER_HOME, Written};

use crate::{
    AppKey, AppRecord, Appended, CampaignStore, DeviceRecord, InboxLimits, InboxState, NewMessage,
    OperatorStore, PlatformStore, Presence, RegistryStore, StatsStore, Store, StoreError,
    StoreResult, StoredMessage, TimelineStore,
};

/// One region as the others see it.
#[derive(Clone)]
pub struct Region {
    pub name: String,
    pub code: RegionCode,
    pub store: Arc<dyn Store>,
}

/// The stores of every region, seen from one of them.
#[derive(Clone)]
pub struct RegionalStore {
    inner: Arc<Regions>,
}

/// The regions, once: the store's own state and, through its [`RegistryStore`] impl, the
/// registry part.
struct Regions {
    /// Index of this process's region in `all`.
    local: usize,
    all: Vec<Region>,
}

impl Regions {
    fn home_of(&self, device: DeviceId) -> &Region {
        let code = device.region_code();
        self.all
            .iter()
            .find(|region| region.code == code)
            .unwrap_or(&self.all[self.local])
    }

    /// Splits `items` into one part per home region (by `device` of each item), keeping
    /// where each item stood in `items`.
    fn split_by_home<T: Clone>(
        &self,
        items: &[T],
        device: impl Fn(&T) -> DeviceId,
    ) -> Vec<HomePart<'_, T>> {
        let mut parts: Vec<HomePart<'_, T>> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let home = self.home_of(device(item));
            let part = match parts.iter_mut().position(|p| p.region.code == home.code) {
                Some(at) => &mut parts[at],
                None => {
                    parts.push(HomePart {
                        region: home,
                        indexes: Vec::new(),
                        items: Vec::new(),
                    });
                    parts.last_mut().expect("just pushed")
                }
            };
            part.indexes.push(index);
            part.items.push(item.clone());
        }
        parts
    }
}

/// The items of a batch whose devices share a home region.
struct HomePart<'a, T> {
    region: &'a Region,
    /// Where each item stood in the whole batch.
    indexes: Vec<usize>,
    items: Vec<T>,
}

/// Puts the answers of each part back in the order of the whole batch of `len` items.
fn gather<T, A>(
    len: usize,
    parts: &[HomePart<'_, T>],
    answers: Vec<Vec<A>>,
) -> StoreResult<Vec<A>> {
    let mut ordered: Vec<Option<A>> = std::iter::repeat_with(|| None).take(len).collect();
    for (part, answers) in parts.iter().zip(answers) {
        for (&index, answer) in part.indexes.iter().zip(answers) {
            ordered[index] = Some(answer);
        }
    }
    ordered
        .into_iter()
        .map(|answer| {
            answer.ok_or_else(|| StoreError::Unavailable("a region answered short".into()))
        })
        .collect()
}

impl RegionalStore {
    /// A store over `regions` (codes distinct), from the region named `local`.
    pub fn new(local: &str, regions: Vec<Region>) -> Result<Self, String> {
        let Some(local) = regions.iter().position(|region| region.name == local) else {
            return Err(format!("region {local:?} is not in the list of regions"));
        };
        let codes: BTreeSet<u8> = regions.iter().map(|region| region.code.0).collect();
        if codes.len() != regions.len() {
            return Err("two regions have the same code".into());
        }
        Ok(Self {
            inner: Arc::new(Regions {
                local,
                all: regions,
            }),
        })
    }

    /// This process's region.
    pub fn local_region(&self) -> &Region {
        &self.inner.all[self.inner.local]
    }

    /// Every region, in configuration order.
    pub fn regions(&self) -> &[Region] {
        &self.inner.all
    }

    /// The home region of a device.
    pub fn home_region(&self, device: DeviceId) -> &Region {
        self.inner.home_of(device)
    }

    fn local(&self) -> &dyn Store {
        self.local_region().store.as_ref()
    }

    fn home(&self, device: DeviceId) -> &dyn Store {
        self.home_region(device).store.as_ref()
    }

    /// Every region, this one first: the order of writes that go everywhere.
    fn write_order(&self) -> Vec<&Region> {
        let mut order: Vec<&Region> = vec![self.local_region()];
        order.extend(
            self.inner
                .all
                .iter()
                .enumerate()
                .filter(|(index, _)| *index != self.inner.local)
                .map(|(_, region)| region),
        );
        order
    }
}

/// Runs one write in every region of `order` in turn; on the first failure, says which
/// regions hold the change already (a repeat of the request completes it).
macro_rules! write_everywhere {
    ($self:ident, $what:literal, |$store:ident| $call:expr) => {{
        let order = $self.write_order();
        let mut answers = Vec::with_capacity(order.len());
        for (done, region) in order.iter().enumerate() {
            let $store = region.store.as_ref();
            match $call.await {
                Ok(answer) => answers.push(answer),
                Err(error) => return Err(partial_write($what, &order[..done], region, error)),
            }
        }
        answers
    }};
}

mod platform;

fn partial_write(
    what: &str,
    written: &[&Region],
    failed: &Region,
    error: StoreError,
) -> StoreError {
    let StoreError::Unavailable(detail) = error else {
        return error;
    };
    let written: Vec<&str> = written.iter().map(|region| region.name.as_str()).collect();
    StoreError::Unavailable(format!(
        "{what}: region {} unreachable ({detail}); written so far in [{}], repeat the request \
         when it is back",
        failed.name,
        written.join(", ")
    ))
}

#[async_trait]
impl Store for RegionalStore {
    async fn create_app(&self, app: &AppRecord) -> StoreResult<()> {
        write_everywhere!(self, "create app", |store| store.create_app(app));
        Ok(())
    }

    async fn app(&self, id: AppId) -> StoreResult<Option<AppRecord>> {
        self.local().app(id).await
    }

    async fn apps(&self) -> StoreResult<Vec<AppRecord>> {
        self.local().apps().await
    }

    async fn add_app_key(&self, app: AppId, key: &AppKey) -> StoreResult<bool> {
        let answers = write_everywhere!(self, "add key", |store| store.add_app_key(app, key));
        Ok(answers.first().copied().unwrap_or(false))
    }

    async fn revoke_app_key(&self, app: AppId, key_id: &str, now_ms: i64) -> StoreResult<bool> {
        let answers = write_everywhere!(self, "revoke key", |store| store
            .revoke_app_key(app, key_id, now_ms));
        Ok(answers.first().copied().unwrap_or(false))
    }

    async fn create_device(&self, device: &DeviceRecord) -> StoreResult<()> {
        self.home(device.id).create_device(device).await
    }

    async fn device(&self, id: DeviceId) -> StoreResult<Option<DeviceRecord>> {
        self.home(id).device(id).await
    }

    async fn append(
        &self,
        messages: &[NewMessage],
        limits: InboxLimits,
    ) -> StoreResult<Vec<Appended>> {
        // The usual batch has one home: sent whole, no copy of the payloads.
        if let Some(first) = messages.first() {
            let home = self.home_region(first.device).code;
            if messages
                .iter()
                .all(|m| self.home_region(m.device).code == home)
            {
                return self.home(first.device).append(messages, limits).await;
            }
        }
        let parts = self.inner.split_by_home(messages, |m| m.device);
        let calls = parts
            .iter()
            .map(|part| part.region.store.append(&part.items, limits));
        let answers = futures_util::future::try_join_all(calls).await?;
        gather(messages.len(), &parts, answers)
    }

    async fn read_inbox(
        &self,
        device: DeviceId,
        after_seq: u64,
        limit: usize,
        now_ms: i64,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.home(device)
            .read_inbox(device, after_seq, limit, now_ms)
            .await
    }

    async fn ack(&self, acks: &[(DeviceId, u64)]) -> StoreResult<()> {
        let parts = self.inner.split_by_home(acks, |pair| pair.0);
        let calls = parts.iter().map(|part| part.region.store.ack(&part.items));
        futures_util::future::try_join_all(calls).await.map(drop)
    }

    async fn mark_delivered(&self, marks: &[(DeviceId, u64)]) -> StoreResult<()> {
        let parts = self.inner.split_by_home(marks, |pair| pair.0);
        let calls = parts
            .iter()
            .map(|part| part.region.store.mark_delivered(&part.items));
        futures_util::future::try_join_all(calls).await.map(drop)
    }

    async fn inbox_state(&self, device: DeviceId, now_ms: i64) -> StoreResult<InboxState> {
        self.home(device).inbox_state(device, now_ms).await
    }

    async fn inbox_contains(&self, device: DeviceId, seq: u64, now_ms: i64) -> StoreResult<bool> {
        self.home(device).inbox_contains(device, seq, now_ms).await
    }

    async fn set_presence(
        &self,
        device: DeviceId,
        connector_id: &str,
        now_ms: i64,
    ) -> StoreResult<u64> {
        self.home(device)
            .set_presence(device, connector_id, now_ms)
            .await
    }

    async fn clear_presence(
        &self,
        device: DeviceId,
        connector_id: &str,
        epoch: u64,
    ) -> StoreResult<bool> {
        self.home(device)
            .clear_presence(device, connector_id, epoch)
            .await
    }

    async fn presence(&self, device: DeviceId) -> StoreResult<Option<Presence>> {
        self.home(device).presence(device).await
    }

    async fn clock_ms(&self) -> StoreResult<i64> {
        // Leases are kept in the local region's store, by its clock.
        self.local().clock_ms().await
    }

    async fn renew_lease(&self, member: &Member, ttl_ms: u64, now_ms: i64) -> StoreResult<()> {
        self.local().renew_lease(member, ttl_ms, now_ms).await
    }

    async fn drop_lease(&self, member_id: &str) -> StoreResult<()> {
        self.local().drop_lease(member_id).await
    }

    async fn live_members(&self, now_ms: i64) -> StoreResult<Vec<Member>> {
        self.local().live_members(now_ms).await
    }

    async fn remember_request(
        &self,
        app: AppId,
        key: &str,
        fingerprint: [u8; 32],
    ) -> StoreResult<Option<[u8; 32]>> {
        self.local().remember_request(app, key, fingerprint).await
    }

    fn registry(&self) -> &dyn RegistryStore {
        self.inner.as_ref()
    }

    fn timelines(&self) -> &dyn TimelineStore {
        self.local().timelines()
    }

    fn stats(&self) -> &dyn StatsStore {
        self.local().stats()
    }

    fn campaigns(&self) -> &dyn CampaignStore {
        self.local().campaigns()
    }

    fn operators(&self) -> &dyn OperatorStore {
        self.local().operators()
    }

    fn platform(&self) -> &dyn PlatformStore {
        self
    }
}

/// Cursors of the device walk carry the region's index in their top byte.
const REGION_CURSOR_SHIFT: u32 = 56;

/// The registry part: a device's attributes at home, app-wide queries over every region.
#[async_trait]
impl RegistryStore for Regions {
    async fn put_attributes(
        &self,
        updates: &[(AppId, DeviceId, DeviceAttributes)],
    ) -> StoreResult<()> {
        for part in self.split_by_home(updates, |update| update.1) {
            part.region
                .store
                .registry()
                .put_attributes(&part.items)
                .await?;
        }
        Ok(())
    }

    async fn attributes(&self, device: DeviceId) -> StoreResult<Option<DeviceAttributes>> {
        self.home_of(device)
            .store
            .registry()
            .attributes(device)
            .await
    }

    async fn attributes_many(
        &self,
        devices: &[DeviceId],
    ) -> StoreResult<Vec<Option<DeviceAttributes>>> {
        let parts = self.split_by_home(devices, |device| *device);
        let mut answers = Vec::with_capacity(parts.len());
        for part in &parts {
            answers.push(
                part.region
                    .store
                    .registry()
                    .attributes_many(&part.items)
                    .await?,
            );
        }
        gather(devices.len(), &parts, answers)
    }

    async fn devices_with_alias(&self, app: AppId, alias: &str) -> StoreResult<Vec<DeviceId>> {
        let mut devices = BTreeSet::new();
        for region in &self.all {
            devices.extend(
                region
                    .store
                    .registry()
                    .devices_with_alias(app, alias)
                    .await?,
            );
        }
        Ok(devices.into_iter().collect())
    }

    async fn app_devices(
        &self,
        app: AppId,
        cursor: u64,
        count: usize,
    ) -> StoreResult<(u64, Vec<DeviceId>)> {
        let mut index = (cursor >> REGION_CURSOR_SHIFT) as usize;
        let mut inner = cursor & ((1 << REGION_CURSOR_SHIFT) - 1);
        while let Some(region) = self.all.get(index) {
            let (next, devices) = region
                .store
                .registry()
                .app_devices(app, inner, count)
                .await?;
            if next >> REGION_CURSOR_SHIFT != 0 {
                return Err(StoreError::Corrupt {
                    key: format!("device walk of region {}", region.name),
                    detail: format!("cursor {next} too large to combine"),
                });
            }
            if next != 0 {
                return Ok(((index as u64) << REGION_CURSOR_SHIFT | next, devices));
            }
            index += 1;
            inner = 0;
            if !devices.is_empty() {
                let resume = if index < self.all.len() {
                    (index as u64) << REGION_CURSOR_SHIFT
                } else {
                    0
                };
                return Ok((resume, devices));
            }
        }
        Ok((0, Vec::new()))
    }

    async fn app_time_zones(&self, app: AppId) -> StoreResult<Vec<String>> {
        let mut zones = BTreeSet::new();
        for region in &self.all {
            zones.extend(region.store.registry().app_time_zones(app).await?);
        }
        Ok(zones.into_iter().collect())
    }
}

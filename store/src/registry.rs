//! The device registry: attributes, aliases, topics and time zones of devices.
//!
//! Written far more often than read (every SDK reports its attributes), so writes come in
//! batches and are pipelined.

use async_trait::async_trait;
use ringpush_audience::DeviceAttributes;
use ringpush_protocol::{AppId, DeviceId};

use crate::StoreResult;

/// Attributes of devices, and the indexes that audiences and campaigns need.
#[async_trait]
pub trait RegistryStore: Send + Sync {
    /// Replaces each device's attributes with the given set (the SDK always reports the whole
    /// set). Keeps the indexes in step: alias → devices and the app's set of time zones. An
    /// empty alias or time zone counts as none in the indexes. A device listed twice in one
    /// call ends with the later set.
    ///
    /// Each device's change to the indexes is atomic (a changed alias leaves the old alias's
    /// devices as it joins the new one). The attributes and the indexes may be written in two
    /// steps (on Redis they live in different slots): a call that fails may have stored the
    /// attributes without the index change; repeating it (a full replace) repairs that.
    async fn put_attributes(
        &self,
        updates: &[(AppId, DeviceId, DeviceAttributes)],
    ) -> StoreResult<()>;

    /// The attributes of a device: `None` if it never reported any.
    async fn attributes(&self, device: DeviceId) -> StoreResult<Option<DeviceAttributes>>;

    /// The attributes of many devices, in request order.
    async fn attributes_many(
        &self,
        devices: &[DeviceId],
    ) -> StoreResult<Vec<Option<DeviceAttributes>>>;

    /// The devices whose current alias is `alias` (an alias moved to another value no
    /// longer lists the device), sorted.
    async fn devices_with_alias(&self, app: AppId, alias: &str) -> StoreResult<Vec<DeviceId>>;

    /// The app's registered devices (every device created through `Store::create_device`),
    /// in registration order, a page of at most `count` (at least 1) at a time: start with
    /// cursor 0 and pass back the cursor of each answer; the answer's cursor is 0 after the
    /// last page (which may be empty). A device registered during the walk may or may not be
    /// listed; none is listed twice. (Over several regions, see [`crate::RegionalStore`], the
    /// walk goes region by region, each in registration order.)
    async fn app_devices(
        &self,
        app: AppId,
        cursor: u64,
        count: usize,
    ) -> StoreResult<(u64, Vec<DeviceId>)>;

    /// The distinct time zones the app's devices report now (a zone that no device reports
    /// any more is left out), sorted.
    async fn app_time_zones(&self, app: AppId) -> StoreResult<Vec<String>>;
}

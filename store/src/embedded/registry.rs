//! The registry in the embedded store: attributes, the app's device list, alias → devices and
//! time zones, all changed in one write transaction per call (so an alias change moves the
//! device atomically). All integers big-endian.
//!
//! | table | key | value |
//! |---|---|---|
//! | `device_attributes` | device id (16) | JSON of `DeviceAttributes` |
//! | `app_devices` | app id (8) ++ registration number (8, from 1) | device id (16) |
//! | `aliases` | app id (8) ++ alias length (4) ++ alias ++ device id (16) | () |
//! | `time_zones` | app id (8) ++ zone | devices in the zone (a zone at 0 is removed) |
//!
//! The indexes take the alias and zone out of the device's previous attributes, read in the
//! same transaction; an empty alias or zone counts as none.

use async_trait::async_trait;
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use ringpush_audience::DeviceAttributes;
use ringpush_protocol::{AppId, DeviceId};

use super::EmbeddedStore;
use super::records::{corrupt, word};
use crate::{RegistryStore, StoreResult};

pub(super) const DEVICE_ATTRIBUTES: TableDefinition<&[u8; 16], &[u8]> =
    TableDefinition::new("device_attributes");
pub(super) const APP_DEVICES: TableDefinition<&[u8; 16], &[u8; 16]> =
    TableDefinition::new("app_devices");
pub(super) const ALIASES: TableDefinition<&[u8], ()> = TableDefinition::new("aliases");
pub(super) const TIME_ZONES: TableDefinition<&[u8], u64> = TableDefinition::new("time_zones");

/// Creates the registry's tables (called when the store is opened).
pub(super) fn create_tables(transaction: &WriteTransaction) -> StoreResult<()> {
    transaction.open_table(DEVICE_ATTRIBUTES)?;
    transaction.open_table(APP_DEVICES)?;
    transaction.open_table(ALIASES)?;
    transaction.open_table(TIME_ZONES)?;
    Ok(())
}

fn app_device_key(app: AppId, number: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&app.0.to_be_bytes());
    key[8..].copy_from_slice(&number.to_be_bytes());
    key
}

/// Lists a new device after the app's last one (called by `create_device`, in its
/// transaction).
pub(super) fn list_app_device(
    transaction: &WriteTransaction,
    app: AppId,
    device: DeviceId,
) -> StoreResult<()> {
    let mut devices = transaction.open_table(APP_DEVICES)?;
    let (low, high) = (app_device_key(app, 0), app_device_key(app, u64::MAX));
    let last = match devices.range::<&[u8; 16]>(&low..=&high)?.next_back() {
        Some(entry) => u64::from_be_bytes(word(&entry?.0.value()[8..])),
        None => 0,
    };
    devices.insert(&app_device_key(app, last + 1), &device.0.to_be_bytes())?;
    Ok(())
}

/// An alias index key without its device id: one alias of one app is one key range.
fn alias_prefix(app: AppId, alias: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(12 + alias.len() + 16);
    prefix.extend_from_slice(&app.0.to_be_bytes());
    prefix.extend_from_slice(&(alias.len() as u32).to_be_bytes());
    prefix.extend_from_slice(alias.as_bytes());
    prefix
}

fn alias_key(app: AppId, alias: &str, device: DeviceId) -> Vec<u8> {
    let mut key = alias_prefix(app, alias);
    key.extend_from_slice(&device.0.to_be_bytes());
    key
}

fn zone_key(app: AppId, zone: &str) -> Vec<u8> {
    let mut key = app.0.to_be_bytes().to_vec();
    key.extend_from_slice(zone.as_bytes());
    key
}

/// The alias or zone as indexed: an empty one counts as none.
fn indexed(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|text| !text.is_empty())
}

fn decode_attributes(json: &[u8]) -> StoreResult<DeviceAttributes> {
    serde_json::from_slice(json)
        .map_err(|error| corrupt("device_attributes", &format!("attributes: {error}")))
}

/// The fields of stored attributes that the indexes use. Read on their own, ignoring the
/// rest: a set this build cannot read whole (say, written by a newer one) must not block the
/// device's next put.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct IndexedFields {
    alias: Option<String>,
    timezone: Option<String>,
}

/// Moves a device from one zone's count to another's.
fn move_zone(
    zones: &mut Table<'_, &'static [u8], u64>,
    app: AppId,
    old: Option<&str>,
    new: Option<&str>,
) -> StoreResult<()> {
    if old == new {
        return Ok(());
    }
    if let Some(old) = old {
        let key = zone_key(app, old);
        let count = zones.get(key.as_slice())?.map_or(0, |count| count.value());
        if count <= 1 {
            zones.remove(key.as_slice())?;
        } else {
            zones.insert(key.as_slice(), count - 1)?;
        }
    }
    if let Some(new) = new {
        let key = zone_key(app, new);
        let count = zones.get(key.as_slice())?.map_or(0, |count| count.value());
        zones.insert(key.as_slice(), count + 1)?;
    }
    Ok(())
}

fn put_batch(
    transaction: &WriteTransaction,
    updates: &[(AppId, DeviceId, DeviceAttributes)],
) -> StoreResult<()> {
    let mut attributes = transaction.open_table(DEVICE_ATTRIBUTES)?;
    let mut aliases = transaction.open_table(ALIASES)?;
    let mut zones = transaction.open_table(TIME_ZONES)?;
    for (app, device, new) in updates {
        let device_key = device.0.to_be_bytes();
        let old: IndexedFields = match attributes.get(&device_key)? {
            Some(json) => serde_json::from_slice(json.value()).map_err(|error| {
                corrupt("device_attributes", &format!("alias and zone: {error}"))
            })?,
            None => IndexedFields::default(),
        };
        let (old_alias, new_alias) = (indexed(&old.alias), indexed(&new.alias));
        if old_alias != new_alias {
            if let Some(alias) = old_alias {
                aliases.remove(alias_key(*app, alias, *device).as_slice())?;
            }
            if let Some(alias) = new_alias {
                aliases.insert(alias_key(*app, alias, *device).as_slice(), ())?;
            }
        }
        move_zone(
            &mut zones,
            *app,
            indexed(&old.timezone),
            indexed(&new.timezone),
        )?;
        // Serializing strings and string maps into JSON cannot fail.
        let json = serde_json::to_vec(new).unwrap_or_default();
        attributes.insert(&device_key, json.as_slice())?;
    }
    Ok(())
}

#[async_trait]
impl RegistryStore for EmbeddedStore {
    async fn put_attributes(
        &self,
        updates: &[(AppId, DeviceId, DeviceAttributes)],
    ) -> StoreResult<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let updates = updates.to_vec();
        self.write(move |transaction| put_batch(transaction, &updates))
            .await
    }

    async fn attributes(&self, device: DeviceId) -> StoreResult<Option<DeviceAttributes>> {
        let mut answers = self.attributes_many(&[device]).await?;
        Ok(answers.pop().flatten())
    }

    async fn attributes_many(
        &self,
        devices: &[DeviceId],
    ) -> StoreResult<Vec<Option<DeviceAttributes>>> {
        let devices = devices.to_vec();
        self.read(move |transaction| {
            let attributes = transaction.open_table(DEVICE_ATTRIBUTES)?;
            devices
                .iter()
                .map(|device| match attributes.get(&device.0.to_be_bytes())? {
                    Some(json) => decode_attributes(json.value()).map(Some),
                    None => Ok(None),
                })
                .collect()
        })
        .await
    }

    async fn devices_with_alias(&self, app: AppId, alias: &str) -> StoreResult<Vec<DeviceId>> {
        if alias.is_empty() {
            return Ok(Vec::new());
        }
        let prefix = alias_prefix(app, alias);
        self.read(move |transaction| {
            let aliases = transaction.open_table(ALIASES)?;
            let mut low = prefix.clone();
            low.extend_from_slice(&[0; 16]);
            let mut high = prefix.clone();
            high.extend_from_slice(&[0xff; 16]);
            let mut devices = Vec::new();
            for entry in aliases.range::<&[u8]>(low.as_slice()..=high.as_slice())? {
                let key = entry?.0;
                let id: [u8; 16] = key.value()[prefix.len()..]
                    .try_into()
                    .map_err(|_| corrupt("aliases", "device id is not 16 bytes"))?;
                devices.push(DeviceId(u128::from_be_bytes(id)));
            }
            // Key order is device id order already.
            Ok(devices)
        })
        .await
    }

    async fn app_devices(
        &self,
        app: AppId,
        cursor: u64,
        count: usize,
    ) -> StoreResult<(u64, Vec<DeviceId>)> {
        if cursor == u64::MAX {
            return Ok((0, Vec::new()));
        }
        let count = count.max(1);
        self.read(move |transaction| {
            let devices = transaction.open_table(APP_DEVICES)?;
            let low = app_device_key(app, cursor + 1);
            let high = app_device_key(app, u64::MAX);
            let mut page = Vec::new();
            let mut last_number = 0;
            for entry in devices.range::<&[u8; 16]>(&low..=&high)?.take(count) {
                let (key, device) = entry?;
                last_number = u64::from_be_bytes(word(&key.value()[8..]));
                page.push(DeviceId(u128::from_be_bytes(*device.value())));
            }
            let next = if page.len() == count { last_number } else { 0 };
            Ok((next, page))
        })
        .await
    }

    async fn app_time_zones(&self, app: AppId) -> StoreResult<Vec<String>> {
        self.read(move |transaction| {
            let zones = transaction.open_table(TIME_ZONES)?;
            let prefix = app.0.to_be_bytes();
            let mut names = Vec::new();
            for entry in zones.range::<&[u8]>(prefix.as_slice()..)? {
                let key = entry?.0;
                let Some(zone) = key.value().strip_prefix(prefix.as_slice()) else {
                    break;
                };
                let zone = std::str::from_utf8(zone)
                    .map_err(|_| corrupt("time_zones", "zone is not UTF-8"))?;
                names.push(zone.to_owned());
            }
            // Byte order of UTF-8 is the order of `str`: already sorted.
            Ok(names)
        })
        .await
    }
}

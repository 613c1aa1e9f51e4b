//! The registry on Redis: each device's attributes in its own slot (`{d:<device>}:attrs`),
//! the app's indexes (device list, alias → devices, time zones) in the app's slot, changed by
//! one script per device so that an alias or zone change moves the device atomically.
//!
//! A put writes the attributes first, then the indexes: the two live in different slots, so
//! they cannot change in one step on a cluster. A put that fails between them leaves the
//! indexes behind the attributes until the next put of that device (a full replace, so a
//! retry repairs it).

use async_trait::async_trait;
use redis::{AsyncCommands, Value};
use ringpush_audience::DeviceAttributes;
use ringpush_protocol::{AppId, DeviceId};

use super::RedisStore;
use super::batch::SlotCommands;
use super::codec::corrupt;
use super::connection::{ScriptCall, redis_error};
use super::scripts;
use crate::{RegistryStore, StoreResult};

impl RedisStore {
    /// Lists a new device in its app's device list (called by `create_device`).
    pub(super) async fn list_app_device(&self, app: AppId, device: DeviceId) -> StoreResult<()> {
        let devices = self.keys.app_devices(app);
        let _number: u64 = scripts::REGISTER_DEVICE
            .key(&devices)
            .key(self.keys.app_registered(app))
            .arg(&device.0.to_be_bytes()[..])
            .invoke_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("list app device", &devices, error))?;
        Ok(())
    }
}

/// What an index knows of an alias or zone: an empty one counts as none.
fn indexed(value: &Option<String>) -> &[u8] {
    value.as_deref().unwrap_or_default().as_bytes()
}

/// The lexicographic range of one alias in `{a:<app>}:aliases`: every member is the alias
/// length, the alias and a 16-byte device id.
fn alias_range(alias: &str) -> (Vec<u8>, Vec<u8>) {
    let mut prefix = b"[".to_vec();
    prefix.extend_from_slice(&(alias.len() as u32).to_be_bytes());
    prefix.extend_from_slice(alias.as_bytes());
    let mut low = prefix.clone();
    low.extend_from_slice(&[0; 16]);
    let mut high = prefix;
    high.extend_from_slice(&[0xff; 16]);
    (low, high)
}

fn device_from_bytes(key: &str, bytes: &[u8]) -> StoreResult<DeviceId> {
    let bytes: [u8; 16] = bytes
        .try_into()
        .map_err(|_| corrupt(key, "device id is not 16 bytes"))?;
    Ok(DeviceId(u128::from_be_bytes(bytes)))
}

fn decode_attributes(key: &str, json: &[u8]) -> StoreResult<DeviceAttributes> {
    serde_json::from_slice(json).map_err(|error| corrupt(key, &format!("attributes: {error}")))
}

#[async_trait]
impl RegistryStore for RedisStore {
    async fn put_attributes(
        &self,
        updates: &[(AppId, DeviceId, DeviceAttributes)],
    ) -> StoreResult<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let writes: Vec<SlotCommands> = updates
            .iter()
            .map(|(_, device, attributes)| {
                let key = self.keys.attributes(*device);
                // Serializing strings and string maps into JSON cannot fail.
                let json = serde_json::to_vec(attributes).unwrap_or_default();
                let mut set = redis::cmd("SET");
                set.arg(&key).arg(json);
                SlotCommands {
                    key,
                    commands: vec![set],
                }
            })
            .collect();
        self.connection
            .run_command_batch(&writes)
            .await
            .map_err(|error| redis_error("put attributes", &writes[0].key, error))?;
        let index_calls: Vec<ScriptCall> = updates
            .iter()
            .map(|(app, device, attributes)| ScriptCall {
                keys: vec![
                    self.keys.app_indexed(*app),
                    self.keys.app_aliases(*app),
                    self.keys.app_zones(*app),
                ],
                args: vec![
                    device.0.to_be_bytes().to_vec(),
                    indexed(&attributes.alias).to_vec(),
                    indexed(&attributes.timezone).to_vec(),
                ],
            })
            .collect();
        self.run_batch("index attributes", &scripts::INDEX_ATTRIBUTES, &index_calls)
            .await?;
        Ok(())
    }

    async fn attributes(&self, device: DeviceId) -> StoreResult<Option<DeviceAttributes>> {
        let key = self.keys.attributes(device);
        let json: Option<Vec<u8>> = self
            .connection()
            .get(&key)
            .await
            .map_err(|error| redis_error("read attributes", &key, error))?;
        json.map(|json| decode_attributes(&key, &json)).transpose()
    }

    async fn attributes_many(
        &self,
        devices: &[DeviceId],
    ) -> StoreResult<Vec<Option<DeviceAttributes>>> {
        let reads: Vec<SlotCommands> = devices
            .iter()
            .map(|&device| {
                let key = self.keys.attributes(device);
                let mut get = redis::cmd("GET");
                get.arg(&key);
                SlotCommands {
                    key,
                    commands: vec![get],
                }
            })
            .collect();
        let replies = self
            .connection
            .run_command_batch(&reads)
            .await
            .map_err(|error| {
                let key = reads.first().map_or("", |read| read.key.as_str());
                redis_error("read attributes", key, error)
            })?;
        reads
            .iter()
            .zip(replies)
            .map(|(read, mut reply)| match reply.pop() {
                None | Some(Value::Nil) => Ok(None),
                Some(Value::BulkString(json)) => decode_attributes(&read.key, &json).map(Some),
                Some(other) => Err(corrupt(&read.key, &format!("unexpected reply {other:?}"))),
            })
            .collect()
    }

    async fn devices_with_alias(&self, app: AppId, alias: &str) -> StoreResult<Vec<DeviceId>> {
        if alias.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.keys.app_aliases(app);
        let (low, high) = alias_range(alias);
        let members: Vec<Vec<u8>> = redis::cmd("ZRANGEBYLEX")
            .arg(&key)
            .arg(low)
            .arg(high)
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("devices with alias", &key, error))?;
        let prefix_len = 4 + alias.len();
        let mut devices = members
            .iter()
            .map(|member| device_from_bytes(&key, member.get(prefix_len..).unwrap_or_default()))
            .collect::<StoreResult<Vec<DeviceId>>>()?;
        devices.sort();
        Ok(devices)
    }

    async fn app_devices(
        &self,
        app: AppId,
        cursor: u64,
        count: usize,
    ) -> StoreResult<(u64, Vec<DeviceId>)> {
        let key = self.keys.app_devices(app);
        let count = count.max(1);
        let page: Vec<(Vec<u8>, u64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(&key)
            .arg(format!("({cursor}"))
            .arg("+inf")
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("app devices", &key, error))?;
        let next = match page.last() {
            Some(&(_, number)) if page.len() == count => number,
            _ => 0,
        };
        let devices = page
            .iter()
            .map(|(device, _)| device_from_bytes(&key, device))
            .collect::<StoreResult<Vec<DeviceId>>>()?;
        Ok((next, devices))
    }

    async fn app_time_zones(&self, app: AppId) -> StoreResult<Vec<String>> {
        let key = self.keys.app_zones(app);
        let counts: Vec<(String, i64)> = self
            .connection()
            .hgetall(&key)
            .await
            .map_err(|error| redis_error("app time zones", &key, error))?;
        let mut zones: Vec<String> = counts
            .into_iter()
            .filter(|&(_, count)| count > 0)
            .map(|(zone, _)| zone)
            .collect();
        zones.sort();
        Ok(zones)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alias_range_holds_its_own_members_only() {
        let device = DeviceId(u128::MAX - 1);
        let member = |alias: &str| {
            let mut member = (alias.len() as u32).to_be_bytes().to_vec();
            member.extend_from_slice(alias.as_bytes());
            member.extend_from_slice(&device.0.to_be_bytes());
            member
        };
        let (low, high) = alias_range("user-4");
        let inside = |m: &[u8]| low[1..].to_vec() <= m.to_vec() && m.to_vec() <= high[1..].to_vec();
        assert!(inside(&member("user-4")));
        assert!(!inside(&member("user-42")));
        assert!(!inside(&member("user-")));
        assert!(!inside(&member("user-5")));
    }
}

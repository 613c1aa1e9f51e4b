//! What this controller has read of each device: its app, and its key for sealed payloads.
//! Neither ever changes (devices are never moved, deleted or re-keyed), so a record read once
//! stays true, and a send to a device seen before needs no read of its record (across
//! regions, a round trip to its home region).

use std::collections::HashMap;
use std::sync::Mutex;

use ringpush_protocol::{AppId, DeviceId};
use ringpush_store::{DeviceRecord, DeviceSealing};

/// Devices kept before the map is emptied and refilled (about 80 bytes each).
const CAPACITY: usize = 200_000;

/// The part of a device's record a send needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KnownDevice {
    app: AppId,
    sealing: Option<DeviceSealing>,
}

/// A bounded map of device → what a send needs of it. Locked only to look up or insert,
/// never across an await.
#[derive(Default)]
pub struct DeviceOwners {
    known: Mutex<HashMap<DeviceId, KnownDevice>>,
}

impl DeviceOwners {
    /// The devices of `devices` not known to belong to `app`.
    pub fn unconfirmed(&self, app: AppId, devices: &[DeviceId]) -> Vec<DeviceId> {
        let known = self.known.lock().expect("devices lock poisoned");
        devices
            .iter()
            .copied()
            .filter(|device| known.get(device).map(|known| known.app) != Some(app))
            .collect()
    }

    /// The sealing key of each of `devices` (in order): `None` for a device not read yet,
    /// `Some(None)` for one that gave no key.
    pub fn sealing(&self, devices: &[DeviceId]) -> Vec<Option<Option<DeviceSealing>>> {
        let known = self.known.lock().expect("devices lock poisoned");
        devices
            .iter()
            .map(|device| known.get(device).map(|known| known.sealing))
            .collect()
    }

    /// Remembers what `device`'s record says.
    pub fn remember(&self, device: &DeviceRecord) {
        let mut known = self.known.lock().expect("devices lock poisoned");
        if known.len() >= CAPACITY {
            known.clear();
        }
        known.insert(
            device.id,
            KnownDevice {
                app: device.app,
                sealing: device.sealing,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: DeviceId, app: AppId, sealing: Option<DeviceSealing>) -> DeviceRecord {
        DeviceRecord {
            id,
            app,
            created_at_ms: 0,
            sealing,
        }
    }

    #[test]
    fn only_devices_read_before_are_confirmed() {
        let owners = DeviceOwners::default();
        let (app, other) = (AppId(1), AppId(2));
        let (a, b) = (DeviceId(10), DeviceId(11));
        assert_eq!(owners.unconfirmed(app, &[a, b]), [a, b]);
        owners.remember(&record(a, app, None));
        assert_eq!(owners.unconfirmed(app, &[a, b]), [b]);
        assert_eq!(owners.unconfirmed(other, &[a]), [a]);
    }

    #[test]
    fn sealing_keys_are_known_once_read() {
        let owners = DeviceOwners::default();
        let sealing = DeviceSealing {
            public_key: [9; 32],
            lz4: true,
        };
        let (a, b, c) = (DeviceId(1), DeviceId(2), DeviceId(3));
        owners.remember(&record(a, AppId(1), Some(sealing)));
        owners.remember(&record(b, AppId(1), None));
        assert_eq!(
            owners.sealing(&[a, b, c]),
            [Some(Some(sealing)), Some(None), None]
        );
    }
}

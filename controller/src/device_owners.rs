//! Which app each device belongs to, as this controller has read it: a device's app never
//! changes (devices are never moved or deleted), so a pair read once stays true, and a send
//! to a device seen before needs no read of its record (across regions, a round trip to its
//! home region).

use std::collections::HashMap;
use std::sync::Mutex;

use ringpush_protocol::{AppId, DeviceId};

/// Pairs kept before the map is emptied and refilled (about 48 bytes each).
const CAPACITY: usize = 200_000;

/// A bounded map of device → app. Locked only to look up or insert, never across an await.
#[derive(Default)]
pub struct DeviceOwners {
    owners: Mutex<HashMap<DeviceId, AppId>>,
}

impl DeviceOwners {
    /// The devices of `devices` not known to belong to `app`.
    pub fn unconfirmed(&self, app: AppId, devices: &[DeviceId]) -> Vec<DeviceId> {
        let owners = self.owners.lock().expect("owners lock poisoned");
        devices
            .iter()
            .copied()
            .filter(|device| owners.get(device) != Some(&app))
            .collect()
    }

    /// Remembers that `device` belongs to `app`.
    pub fn remember(&self, device: DeviceId, app: AppId) {
        let mut owners = self.owners.lock().expect("owners lock poisoned");
        if owners.len() >= CAPACITY {
            owners.clear();
        }
        owners.insert(device, app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pairs_read_before_are_confirmed() {
        let owners = DeviceOwners::default();
        let (app, other) = (AppId(1), AppId(2));
        let (a, b) = (DeviceId(10), DeviceId(11));
        assert_eq!(owners.unconfirmed(app, &[a, b]), [a, b]);
        owners.remember(a, app);
        assert_eq!(owners.unconfirmed(app, &[a, b]), [b]);
        assert_eq!(owners.unconfirmed(other, &[a]), [a]);
    }
}

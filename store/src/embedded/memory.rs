//! Presence and leases of the embedded store, kept in memory: both describe live processes,
//! and in `ringpush dev` those all end with the process that holds the store.

use std::collections::{BTreeMap, HashMap};

use ringpush_protocol::DeviceId;
use ringpush_ring::Member;

use crate::Presence;

/// Leases that ended this long ago are forgotten (see the Redis store for why not at once).
const LEASE_PRUNE_AFTER_MS: i64 = 60_000;

#[derive(Default)]
pub(super) struct Volatile {
    /// Who holds each device now.
    presence: HashMap<DeviceId, Presence>,
    /// Last epoch given per device; outlives a cleared presence so that epochs only grow.
    epochs: HashMap<DeviceId, u64>,
    /// Member and lease expiry (ms), by member id: iteration order is id order.
    leases: BTreeMap<String, (Member, i64)>,
}

impl Volatile {
    pub(super) fn set_presence(
        &mut self,
        device: DeviceId,
        connector_id: &str,
        now_ms: i64,
    ) -> u64 {
        let epoch = self.epochs.entry(device).or_default();
        *epoch += 1;
        let presence = Presence {
            connector_id: connector_id.to_owned(),
            epoch: *epoch,
            since_ms: now_ms,
        };
        self.presence.insert(device, presence);
        *epoch
    }

    pub(super) fn clear_presence(
        &mut self,
        device: DeviceId,
        connector_id: &str,
        epoch: u64,
    ) -> bool {
        let still_held = self
            .presence
            .get(&device)
            .is_some_and(|held| held.connector_id == connector_id && held.epoch == epoch);
        if still_held {
            self.presence.remove(&device);
        }
        still_held
    }

    pub(super) fn presence(&self, device: DeviceId) -> Option<Presence> {
        self.presence.get(&device).cloned()
    }

    pub(super) fn renew_lease(&mut self, member: &Member, expires_at_ms: i64) {
        self.leases
            .insert(member.id.clone(), (member.clone(), expires_at_ms));
    }

    pub(super) fn drop_lease(&mut self, member_id: &str) {
        self.leases.remove(member_id);
    }

    pub(super) fn live_members(&mut self, now_ms: i64) -> Vec<Member> {
        let prune_before = now_ms.saturating_sub(LEASE_PRUNE_AFTER_MS);
        self.leases
            .retain(|_, (_, expires_at_ms)| *expires_at_ms >= prune_before);
        self.leases
            .values()
            .filter(|(_, expires_at_ms)| *expires_at_ms > now_ms)
            .map(|(member, _)| member.clone())
            .collect()
    }
}

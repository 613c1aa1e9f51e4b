//! The consistent-hash ring that places each device on one connector.
//!
//! Every dispatcher, connector and controller builds the same [`Ring`] from the same live
//! member list and so computes the same owner for every device, with no coordination and no
//! health checks (DESIGN.md invariant 5). docs/ring.md has the picture.
//!
//! Placement is defined on named bytes with a named hash, never on Rust's `Hash` output:
//! - each member gets [`Ring::vnodes`] points, point `i` of member `m` at
//!   `xxh3_64("{m}#{i}")` (seed 0, UTF-8 bytes, `i` in decimal);
//! - a device's key is `xxh3_64` of its id's 16 big-endian bytes;
//! - the owner is the member of the first point at or after the key, wrapping around; equal
//!   points go to the member whose id sorts first.
//!
//! The ring itself is the `hashring` crate's sorted point list; this crate supplies the
//! stable hasher and the virtual nodes it lacks. Does not own: membership (leases live in
//! the store) or anything about connections.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use hashring::HashRing;
use ringpush_protocol::DeviceId;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// Points per member unless configured otherwise: with 1,024 the busiest member holds within
/// a few percent of the mean (the spread test below prints the figures).
pub const DEFAULT_VNODES: u32 = 1024;

/// A connector as the ring sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// Stable name of the connector; its ring points derive from it, so a connector that
    /// restarts under the same id gets the same devices back.
    pub id: String,
    /// The WebSocket URL devices connect to, e.g. `ws://10.0.0.5:8082/v1/connect`.
    pub device_url: String,
    /// The address of its internal gRPC service, e.g. `http://10.0.0.5:8083`.
    pub grpc_url: String,
}

/// One point on the ring: which member, and its hash input.
#[derive(Debug, Clone)]
struct VNode {
    member: u32,
    label: Arc<str>,
    replica: u32,
}

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(format!("{}#{}", self.label, self.replica).as_bytes());
    }
}

/// A key on the ring: hashes exactly the bytes it holds.
struct RawKey<'a>(&'a [u8]);

impl Hash for RawKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0);
    }
}

/// Builds xxh3-64 (seed 0) hashers that see only the bytes written with `Hasher::write`.
#[derive(Debug, Clone, Copy, Default)]
struct StableXxh3;

impl BuildHasher for StableXxh3 {
    type Hasher = Xxh3;
    fn build_hasher(&self) -> Xxh3 {
        Xxh3::new()
    }
}

/// The placement of devices over a set of members.
#[derive(Clone)]
pub struct Ring {
    members: Vec<Member>,
    points: HashRing<VNode, StableXxh3>,
    vnodes: u32,
    version: u64,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("version", &self.version)
            .field("members", &self.members)
            .finish()
    }
}

impl Ring {
    /// Builds the ring of `members` (order and duplicates do not matter).
    pub fn new(mut members: Vec<Member>, vnodes: u32) -> Self {
        members.sort();
        members.dedup_by(|a, b| a.id == b.id);
        let vnodes = vnodes.max(1);
        let mut points = HashRing::with_hasher(StableXxh3);
        let mut all = Vec::with_capacity(members.len() * vnodes as usize);
        for (index, member) in members.iter().enumerate() {
            let label: Arc<str> = Arc::from(member.id.as_str());
            for replica in 0..vnodes {
                all.push(VNode {
                    member: index as u32,
                    label: label.clone(),
                    replica,
                });
            }
        }
        points.batch_add(all);
        let version = version_of(&members, vnodes);
        Self {
            members,
            points,
            vnodes,
            version,
        }
    }

    /// A ring with no members: every lookup answers `None`.
    pub fn empty() -> Self {
        Self::new(Vec::new(), DEFAULT_VNODES)
    }

    /// The member that owns `device`, or `None` when the ring is empty.
    pub fn owner(&self, device: DeviceId) -> Option<&Member> {
        self.owner_of_key(&device.0.to_be_bytes())
    }

    /// The member that owns an arbitrary key.
    pub fn owner_of_key(&self, key: &[u8]) -> Option<&Member> {
        let point = self.points.get(&RawKey(key))?;
        Some(&self.members[point.member as usize])
    }

    /// Members, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member with this id, if it is on the ring.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members
            .binary_search_by(|m| m.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.members[i])
    }

    /// Points per member.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// A digest of the member list and the point count: two rings with the same version
    /// place every device alike. It identifies a view; it does not order views.
    pub fn version(&self) -> u64 {
        self.version
    }
}

fn version_of(members: &[Member], vnodes: u32) -> u64 {
    let mut text = format!("vnodes={vnodes}\n");
    for member in members {
        text.push_str(&format!(
            "{}\t{}\t{}\n",
            member.id, member.device_url, member.grpc_url
        ));
    }
    // Never 0: 0 means "no version" in the wire protocol.
    xxh3_64(text.as_bytes()).max(1)
}

#[cfg(test)]
mod tests;

//! One pass over an app's registered devices: how many match an audience (its reach, what
//! estimates answer and statistics count as targeted), and how many of those each connector
//! owns on a ring of given members (what a throttled fan-out shares its rate by). Offline
//! devices count too: the share assumes the online part is alike on every connector.

use ringpush_audience::{Audience, DeviceAttributes};
use ringpush_protocol::AppId;
use ringpush_ring::{Member, Ring};
use ringpush_store::{Store, StoreResult};

/// Devices read from the registry per round trip.
const REGISTRY_PAGE: usize = 1000;

/// What one scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AudienceScan {
    /// Registered devices that match.
    pub(crate) reach: u64,
    /// Of those, how many each member owns, in `members` order (empty for no members).
    pub(crate) per_member: Vec<u64>,
}

/// Scans the app's devices; with no `members`, only the reach is counted.
pub(crate) async fn scan(
    store: &dyn Store,
    app: AppId,
    audience: &Audience,
    members: &[Member],
    vnodes: u32,
) -> StoreResult<AudienceScan> {
    let ring = (!members.is_empty()).then(|| Ring::new(members.to_vec(), vnodes));
    let registry = store.registry();
    let nobody = DeviceAttributes::default();
    let mut found = AudienceScan {
        reach: 0,
        per_member: vec![0; members.len()],
    };
    let mut cursor = 0;
    loop {
        let (next, devices) = registry.app_devices(app, cursor, REGISTRY_PAGE).await?;
        let attributes = registry.attributes_many(&devices).await?;
        for (device, attributes) in devices.iter().zip(&attributes) {
            if !audience.matches(attributes.as_ref().unwrap_or(&nobody)) {
                continue;
            }
            found.reach += 1;
            let owner = ring.as_ref().and_then(|ring| ring.owner(*device));
            if let Some(index) =
                owner.and_then(|owner| members.iter().position(|m| m.id == owner.id))
            {
                found.per_member[index] += 1;
            }
        }
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_scan_counts_the_reach_and_what_each_member_owns() {
        use ringpush_protocol::DeviceId;
        use ringpush_store::{DeviceRecord, EmbeddedStore};

        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
        let app = AppId::random();
        let members: Vec<Member> = ["c0", "c1"]
            .iter()
            .map(|id| Member {
                id: (*id).into(),
                device_url: format!("ws://{id}"),
                grpc_url: format!("http://{id}"),
            })
            .collect();
        let ring = Ring::new(members.clone(), 64);
        let mut expected = vec![0u64; 2];
        let mut updates = Vec::new();
        for index in 0..300 {
            let device = DeviceId::random();
            let record = DeviceRecord {
                id: device,
                app,
                created_at_ms: 0,
                sealing: None,
            };
            store.create_device(&record).await.unwrap();
            let vip = index % 3 == 0;
            let mut attributes = DeviceAttributes::default();
            if vip {
                attributes.tags.insert("vip".into());
                let owner = &ring.owner(device).unwrap().id;
                expected[members.iter().position(|m| &m.id == owner).unwrap()] += 1;
            }
            updates.push((app, device, attributes));
        }
        store.registry().put_attributes(&updates).await.unwrap();
        let vip = Audience::parse("vip").unwrap();
        let found = scan(&store, app, &vip, &members, 64).await.unwrap();
        assert_eq!(found.per_member, expected);
        assert_eq!(found.reach, 100);
        assert!(found.per_member.iter().all(|w| *w > 20), "{found:?}");
        let reach_only = scan(&store, app, &vip, &[], 64).await.unwrap();
        assert_eq!((reach_only.reach, reach_only.per_member), (100, Vec::new()));
    }
}

use super::*;

fn member(id: &str) -> Member {
    Member {
        id: id.to_owned(),
        device_url: format!("ws://{id}/v1/connect"),
        grpc_url: format!("http://{id}"),
    }
}

fn ring_of(n: usize, vnodes: u32) -> Ring {
    Ring::new((0..n).map(|i| member(&format!("c{i}"))).collect(), vnodes)
}

fn devices(count: u64) -> impl Iterator<Item = DeviceId> {
    // Spread the ids like random ones without needing a random source.
    (0..count).map(|i| DeviceId(u128::from(xxh3_64(&i.to_le_bytes())) << 64 | u128::from(i)))
}

fn max_over_mean(ring: &Ring, count: u64) -> f64 {
    let mut load = std::collections::HashMap::<&str, u64>::new();
    for device in devices(count) {
        *load.entry(&ring.owner(device).unwrap().id).or_default() += 1;
    }
    let max = *load.values().max().unwrap() as f64;
    max / (count as f64 / ring.members().len() as f64)
}

fn moved_share(before: &Ring, after: &Ring, count: u64) -> f64 {
    let moved = devices(count)
        .filter(|d| before.owner(*d).unwrap().id != after.owner(*d).unwrap().id)
        .count();
    moved as f64 / count as f64
}

#[test]
fn placement_is_pinned_to_named_bytes() {
    // These placements must never change between builds: dispatchers and connectors of
    // different versions must agree. A change here is a breaking change of the ring.
    let ring = ring_of(5, DEFAULT_VNODES);
    let owners: Vec<&str> = [1u128, 2, 3, 0xdead_beef, u128::MAX]
        .into_iter()
        .map(|d| ring.owner(DeviceId(d)).unwrap().id.as_str())
        .collect();
    assert_eq!(owners, GOLDEN_OWNERS);
    assert_eq!(format!("{:016x}", xxh3_64(b"c0#0")), "643f3dbfab7a49d8");
}

const GOLDEN_OWNERS: [&str; 5] = ["c3", "c1", "c0", "c0", "c4"];

#[test]
fn member_order_and_duplicates_do_not_matter() {
    let a = Ring::new(vec![member("x"), member("y"), member("z")], 64);
    let b = Ring::new(vec![member("z"), member("x"), member("y"), member("x")], 64);
    assert_eq!(a.version(), b.version());
    for device in devices(1000) {
        assert_eq!(a.owner(device), b.owner(device));
    }
    assert!(Ring::empty().owner(DeviceId(1)).is_none());
}

#[test]
fn spread_and_movement_stay_near_ideal() {
    const DEVICES: u64 = 200_000;
    for n in [3usize, 16, 50] {
        let ring = ring_of(n, DEFAULT_VNODES);
        let spread = max_over_mean(&ring, DEVICES);
        let grown = ring_of(n + 1, DEFAULT_VNODES);
        let moved = moved_share(&ring, &grown, DEVICES);
        let ideal = 1.0 / (n as f64 + 1.0);
        println!(
            "{n} members: max/mean {spread:.3}, moved on join {:.2}% (ideal {:.2}%)",
            moved * 100.0,
            ideal * 100.0
        );
        assert!(spread < 1.15, "{n} members: max/mean {spread}");
        assert!(
            (moved - ideal).abs() < ideal * 0.2,
            "{n} members: moved {moved} vs ideal {ideal}"
        );
        // Only devices of the new member move: nobody moves between old members.
        for device in devices(20_000) {
            let after = grown.owner(device).unwrap();
            if after.id != format!("c{n}") {
                assert_eq!(ring.owner(device).unwrap(), after);
            }
        }
    }
}

//! The ring's membership, kept in the store: connectors hold leases, everyone else watches.
//!
//! A connector calls [`keep_lease`] for as long as it serves; a lease not renewed within its
//! TTL drops out. Dispatchers, controllers and connectors call [`watch_ring`] and read the
//! latest [`Ring`] from the watch channel it returns: the ring is rebuilt from the live
//! leases only when they change. Nothing here talks to a connector: there is no health check.
//!
//! Leases are written and read on one clock, the store's ([`Store::clock_ms`]): were each
//! process to use its own, a connector whose clock runs a TTL behind would write leases that
//! are over when written (it never joins), one whose clock runs ahead would stay in everyone
//! else's ring that long after it died, and it would see everyone else's leases as over.

use std::sync::Arc;
use std::time::Duration;

use ringpush_ring::{Member, Ring};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Store;

/// How a component follows the membership.
#[derive(Debug, Clone, Copy)]
pub struct MembershipConfig {
    /// How long a lease lives without renewal; renewed every third of it.
    pub lease_ttl: Duration,
    /// How often the live members are read back.
    pub refresh_every: Duration,
    /// Points per member on the ring.
    pub vnodes: u32,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(3),
            refresh_every: Duration::from_millis(500),
            vnodes: ringpush_ring::DEFAULT_VNODES,
        }
    }
}

/// Renews `member`'s lease every `lease_ttl / 3` until `shutdown` fires. Errors are logged
/// and retried at the next tick: the lease lapses only if the store stays unreachable for a
/// whole TTL. Does not drop the lease at the end: draining connectors do that themselves
/// when they are ready to leave.
pub async fn keep_lease(
    store: Arc<dyn Store>,
    member: Member,
    lease_ttl: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(lease_ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(error) = renew_lease(store.as_ref(), &member, lease_ttl).await {
            tracing::warn!(member = %member.id, %error, "could not renew the connector lease");
        }
    }
}

/// Creates or extends `member`'s lease for `lease_ttl` from now on the store's clock.
pub async fn renew_lease(
    store: &dyn Store,
    member: &Member,
    lease_ttl: Duration,
) -> crate::StoreResult<()> {
    let now_ms = store.clock_ms().await?;
    store
        .renew_lease(member, lease_ttl.as_millis() as u64, now_ms)
        .await
}

/// The connectors whose leases are live now on the store's clock, sorted by id.
pub async fn live_members(store: &dyn Store) -> crate::StoreResult<Vec<Member>> {
    let now_ms = store.clock_ms().await?;
    store.live_members(now_ms).await
}

/// Reads the live members once and builds the ring.
pub async fn read_ring(store: &dyn Store, vnodes: u32) -> crate::StoreResult<Ring> {
    Ok(Ring::new(live_members(store).await?, vnodes))
}

/// Follows the membership: the returned channel always holds the latest ring. The first
/// value is read before this returns (an empty ring if the store cannot be reached yet).
/// The watcher task stops when `shutdown` fires.
pub async fn watch_ring(
    store: Arc<dyn Store>,
    config: MembershipConfig,
    shutdown: CancellationToken,
) -> watch::Receiver<Arc<Ring>> {
    let first = match read_ring(store.as_ref(), config.vnodes).await {
        Ok(ring) => ring,
        Err(error) => {
            tracing::warn!(%error, "could not read the ring; starting empty");
            Ring::new(Vec::new(), config.vnodes)
        }
    };
    let (sender, receiver) = watch::channel(Arc::new(first));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(config.refresh_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match live_members(store.as_ref()).await {
                Ok(members) if members != sender.borrow().members() => {
                    let ring = Ring::new(members, config.vnodes);
                    tracing::info!(
                        version = ring.version(),
                        members = ring.members().len(),
                        "ring changed"
                    );
                    sender.send_replace(Arc::new(ring));
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "could not read the ring"),
            }
        }
    });
    receiver
}

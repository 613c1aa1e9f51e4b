//! The stores of a process: its region's Redis, and in a deployment of several regions the
//! other regions' too, behind one [`RegionalStore`] (each device's state in its home
//! region's store).

use std::sync::Arc;

use anyhow::Context;
use ringpush_protocol::RegionCode;
use ringpush_ring::Ring;
use ringpush_store::{RedisStore, Region, RegionalStore, Store, membership};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;

/// What a server process reads and writes.
pub struct Stores {
    /// The store to hand to the component: the regional store across regions, else the
    /// region's own.
    pub store: Arc<dyn Store>,
    /// Across regions: every region's store.
    pub regional: Option<RegionalStore>,
}

impl Stores {
    /// The code devices registered in this region carry, across regions.
    pub fn region_code(&self) -> Option<RegionCode> {
        self.regional
            .as_ref()
            .map(|regional| regional.local_region().code)
    }

    /// Follows the other regions' rings (a controller delivers to devices connected there).
    pub async fn remote_rings(
        &self,
        settings: &Settings,
        shutdown: &CancellationToken,
    ) -> Vec<watch::Receiver<Arc<Ring>>> {
        let Some(regional) = &self.regional else {
            return Vec::new();
        };
        let local = regional.local_region().code;
        let mut rings = Vec::new();
        for region in regional.regions().iter().filter(|r| r.code != local) {
            let ring = membership::watch_ring(
                region.store.clone(),
                settings.membership(),
                shutdown.clone(),
            )
            .await;
            rings.push(ring);
        }
        rings
    }
}

/// Connects to this region's Redis, and to every region's when regions are configured.
pub async fn open(settings: &Settings) -> anyhow::Result<Stores> {
    if settings.region.is_empty() {
        return Ok(Stores {
            store: redis(&settings.redis_url).await?,
            regional: None,
        });
    }
    let mut regions = Vec::with_capacity(settings.regions.len());
    for region in &settings.regions {
        let store = redis(&region.redis_url)
            .await
            .with_context(|| format!("region {}", region.name))?;
        regions.push(Region {
            name: region.name.clone(),
            code: RegionCode(region.code),
            store,
        });
    }
    let regional = RegionalStore::new(&settings.region, regions)
        .map_err(|detail| crate::serve::ConfigError(format!("regions: {detail}")))?;
    tracing::info!(
        region = %settings.region,
        regions = settings.regions.len(),
        "serving one region of several"
    );
    Ok(Stores {
        store: Arc::new(regional.clone()),
        regional: Some(regional),
    })
}

/// One Redis (a plain server or a cluster).
pub async fn redis(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let store = RedisStore::connect(url)
        .await
        .with_context(|| format!("cannot reach Redis at {url}"))?;
    Ok(Arc::new(store))
}

//! The apps a connector checks device tokens against, read from the store and kept for
//! [`APP_CACHE_TTL`], so that a reconnect storm reads each app once, not once per device.
//!
//! A revoked token-signing key therefore stops working here within that time. A token
//! naming a key the cached copy does not have (one created since) reads the app again at
//! once, so a new key works immediately.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ringpush_protocol::AppId;
use ringpush_store::{AppRecord, Store, StoreResult};

/// How long an app read from the store is used before it is read again: the longest a
/// revoked token-signing key keeps working on a connector.
pub const APP_CACHE_TTL: Duration = Duration::from_secs(2);
/// Apps kept at most; past it the cache starts over (apps are few: this bounds memory when
/// devices of very many apps connect).
const MAX_APPS: usize = 10_000;

/// Apps by id, each with when it was read. The lock is never held across an `.await`.
#[derive(Debug, Default)]
pub(crate) struct AppCache {
    apps: Mutex<HashMap<AppId, (Instant, Arc<AppRecord>)>>,
}

impl AppCache {
    /// The app, from the cache if it was read within [`APP_CACHE_TTL`], else from `store`;
    /// `fresh` always reads the store.
    pub async fn app(
        &self,
        store: &dyn Store,
        id: AppId,
        fresh: bool,
    ) -> StoreResult<Option<Arc<AppRecord>>> {
        if !fresh && let Some(app) = self.cached(id) {
            return Ok(Some(app));
        }
        let Some(app) = store.app(id).await? else {
            self.lock().remove(&id);
            return Ok(None);
        };
        let app = Arc::new(app);
        let mut apps = self.lock();
        if apps.len() >= MAX_APPS {
            apps.clear();
        }
        apps.insert(id, (Instant::now(), app.clone()));
        Ok(Some(app))
    }

    fn cached(&self, id: AppId) -> Option<Arc<AppRecord>> {
        let apps = self.lock();
        let (read_at, app) = apps.get(&id)?;
        (read_at.elapsed() < APP_CACHE_TTL).then(|| app.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AppId, (Instant, Arc<AppRecord>)>> {
        self.apps.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

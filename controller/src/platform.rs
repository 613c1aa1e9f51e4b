//! The platform path: messages to devices that registered an APNs, FCM or Web Push token go
//! out through that service too, as the app's (or the message's) route says.
//!
//! ```text
//! send ─▶ inbox append (durable) ─▶ socket (live delivery, as always)
//!                    └─▶ plan: a job in the store's queue, due now (high priority, platform
//!                        only) or after the app's delay (socket first)
//! worker (every controller) ─▶ claim due jobs (leased) ─▶ skip if the device took it over its
//!        connection (socket first) ─▶ send through the gateway ─▶ sent | token retired |
//!        retry later (exponential backoff, or the service's Retry-After) | failed
//! ```
//!
//! A message reached through both paths is shown once: the platform payload carries the
//! same frame as the socket (`ringpush_protocol::platform`), and the SDK drops a message id
//! it has handed to the app already, whichever path brought it first.
//!
//! - `plan`: at send time, which messages get a platform send and when;
//! - `worker`: the loop that claims due jobs, sends them and records what happened.
//!
//! Does not own: the services' protocols (`ringpush_gateway`), where tokens and jobs are
//! kept (`ringpush_store::PlatformStore`), the API (`api::platform`).

mod plan;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringpush_gateway::{AppGateways, Gateways};
use ringpush_protocol::AppId;
use ringpush_store::{StoreResult, now_ms};
use tokio::sync::Notify;

use crate::ControllerState;

/// How long an app's gateway settings are used before they are read again: a change made
/// through any controller counts everywhere within this.
pub const SETTINGS_CACHE_TTL: Duration = Duration::from_secs(2);

/// How the platform path runs.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// How long a claimed job stays hidden from other controllers: a controller that dies
    /// mid-send delays that notification by this much, never loses it.
    pub lease: Duration,
    /// How often the worker looks for due jobs when nothing wakes it.
    pub poll_interval: Duration,
    /// Most jobs claimed at once.
    pub claim_batch: usize,
    /// Sends in flight at once per controller.
    pub sends_in_flight: usize,
    /// The first retry's delay; each further retry doubles it, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Sends tried per message before it is given up (failed, `gave_up`).
    pub max_attempts: u32,
    /// Accept `http://` Web Push endpoints at registration (local test services only).
    pub allow_plain_http: bool,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(250),
            claim_batch: 256,
            sends_in_flight: 64,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            max_attempts: 8,
            allow_plain_http: false,
        }
    }
}

impl PlatformConfig {
    /// The delay before retry number `attempts` (1 for the first retry): `backoff_base`
    /// doubled per earlier retry, at most `backoff_max`, plus up to a fifth more at random
    /// so that many devices' retries spread out; at least `after` when the service said.
    pub fn retry_delay(&self, attempts: u32, after: Option<Duration>) -> Duration {
        let doubling = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        let backoff = self
            .backoff_base
            .saturating_mul(doubling)
            .min(self.backoff_max);
        let jitter = backoff.mul_f64(rand::random::<f64>() / 5.0);
        (backoff + jitter).max(after.unwrap_or_default())
    }
}

/// An app's settings as read at a time (`None`: the app has none).
type CachedSettings = (Instant, Option<Arc<AppGateways>>);

/// The platform path of one controller: the gateways, the apps' settings as last read, and
/// the bell that wakes the worker when a job is due at once.
pub struct Platform {
    pub(crate) gateways: Gateways,
    pub(crate) config: PlatformConfig,
    /// Each app's settings and when they were read (`None`: the app has none). A std mutex
    /// held for one map lookup or insert, never across a store call.
    settings: Mutex<HashMap<AppId, CachedSettings>>,
    /// Rung when a job due now was planned, so a high-priority message does not wait for
    /// the next poll.
    pub(crate) due_now: Notify,
}

impl Platform {
    pub fn new(gateways: Gateways, config: PlatformConfig) -> Self {
        Self {
            gateways,
            config,
            settings: Mutex::default(),
            due_now: Notify::new(),
        }
    }

    /// The app's gateway settings, from the cache when read within [`SETTINGS_CACHE_TTL`].
    pub(crate) async fn settings(
        &self,
        state: &ControllerState,
        app: AppId,
    ) -> StoreResult<Option<Arc<AppGateways>>> {
        if let Some((read_at, settings)) = self.cached(app)
            && read_at.elapsed() < SETTINGS_CACHE_TTL
        {
            return Ok(settings);
        }
        let settings = read_settings(state.store.as_ref(), app)
            .await?
            .map(Arc::new);
        self.settings
            .lock()
            .expect("platform settings lock poisoned")
            .insert(app, (Instant::now(), settings.clone()));
        Ok(settings)
    }

    /// Forgets an app's settings (they were just changed through this controller).
    pub(crate) fn forget_settings(&self, app: AppId) {
        self.settings
            .lock()
            .expect("platform settings lock poisoned")
            .remove(&app);
    }

    fn cached(&self, app: AppId) -> Option<CachedSettings> {
        self.settings
            .lock()
            .expect("platform settings lock poisoned")
            .get(&app)
            .cloned()
    }
}

/// An app's gateway settings as stored (the store keeps their JSON), without the cache.
pub(crate) async fn read_settings(
    store: &dyn ringpush_store::Store,
    app: AppId,
) -> StoreResult<Option<AppGateways>> {
    let Some(json) = store.platform().app_gateways(app).await? else {
        return Ok(None);
    };
    serde_json::from_str(&json)
        .map(Some)
        .map_err(|error| ringpush_store::StoreError::Corrupt {
            key: format!("gateways of app {app}"),
            detail: error.to_string(),
        })
}

/// The time jobs are due by: the store's clock, so that every controller agrees whatever its
/// own clock says (the local clock if the store cannot answer: a job is then due a little
/// early or late, never lost).
pub(crate) async fn store_now_ms(state: &ControllerState) -> i64 {
    match state.store.clock_ms().await {
        Ok(now) => now,
        Err(error) => {
            tracing::warn!(%error, "store clock unavailable; using this process's clock");
            now_ms()
        }
    }
}

pub(crate) use plan::PlannedMessage;
pub use worker::{PLATFORM_STATS_SUBJECT, run};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap_and_respect_retry_after() {
        let config = PlatformConfig {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            ..PlatformConfig::default()
        };
        for (attempts, floor) in [(1, 1), (2, 2), (3, 4), (7, 60), (30, 60)] {
            let delay = config.retry_delay(attempts, None);
            let floor = Duration::from_secs(floor);
            assert!(
                delay >= floor && delay <= floor.mul_f64(1.2),
                "retry {attempts}: {delay:?}"
            );
        }
        let delay = config.retry_delay(1, Some(Duration::from_secs(7)));
        assert!(delay >= Duration::from_secs(7), "{delay:?}");
    }
}

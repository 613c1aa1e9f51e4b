//! The controller: the REST API that apps' backends call, and the path from an accepted
//! message to the device.
//!
//! - [`api`]: `/v1` endpoints (apps and keys, devices, messages, audiences, campaigns,
//!   operators and sessions), `/openapi.json`, health and metrics;
//! - [`auth`]: who is calling (admin token, server and client keys, operators' sessions)
//!   and what they may do; [`password`] and [`login_limit`]: operators' passwords and the
//!   bound on login attempts;
//! - [`portal`]: the marketing portal's pages under `/portal`, which act only through the
//!   API;
//! - [`scheduler`] and [`campaign_fire`]: campaigns' firings, each sent once across
//!   controllers; [`clock`]: the campaign time they and the campaign API read (the system
//!   clock, or a simulated one for tests and demos);
//! - [`delivery`]: one multiplexed HTTP/2 channel per connector, batched `Deliver` calls;
//!   `hand_off`: across regions, moves messages held for an unreachable home region home;
//! - [`platform`]: the platform path (APNs, FCM, Web Push) for devices that cannot hold a
//!   connection: planned at send time, sent by a worker from a durable queue;
//! - [`error`]: every error a caller can get, with its status code, in one place.
//!
//! A message is written to its device's inbox (durable, sequenced) before the API answers and
//! before any live delivery is tried (DESIGN.md invariant 1); the live delivery that follows
//! is best effort because the connector replays the inbox on every reconnect.
//!
//! Does not own: storage (`ringpush_store`), the ring (`ringpush_ring`), or device
//! connections (`ringpush_connector`).

pub mod api;
mod audience_scan;
pub mod auth;
pub mod campaign_fire;
pub mod clock;
pub mod delivery;
mod device_owners;
pub mod error;
mod hand_off;
pub mod login_limit;
pub mod message_options;
pub mod password;
pub mod platform;
mod portal;
pub mod scheduler;
mod sealing;
pub mod send;
pub mod target;

use std::sync::Arc;

use ringpush_ring::Ring;

use crate::clock::{Clock, SystemClock};
use ringpush_store::{InboxLimits, RegionalStore, Store, secret_hash};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use delivery::{DeliveryConfig, DeliveryRouter};
pub use error::ApiError;

/// Limits and defaults of the REST API.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// The bootstrap admin credential (creates apps).
    pub admin_token: String,
    /// Largest message payload, in bytes.
    pub max_payload_bytes: usize,
    /// Most devices in one send.
    pub max_devices_per_request: usize,
    /// TTL of a message sent without `ttl_seconds`.
    pub default_ttl_seconds: u64,
    /// Longest TTL accepted.
    pub max_ttl_seconds: u64,
    /// Per-device inbox limits.
    pub inbox: InboxLimits,
    pub delivery: DeliveryConfig,
    /// Mark the portal's session cookie `Secure` (the API is served over TLS).
    pub secure_cookies: bool,
    /// The region whose code devices registered here carry (their home); `None` in a
    /// single-region deployment (ids carry no meaningful region).
    pub region: Option<ringpush_protocol::RegionCode>,
    /// How long a device token is valid. A connector renews a device's token in its Welcome
    /// once half of this has passed, so a device that connects now and then never sees one
    /// expire; a device away longer registers again.
    pub device_token_lifetime_ms: i64,
    /// Messages each app may send through this controller's REST API (a send to N devices
    /// counts N, an audience message 1); `None`: no limit. Campaigns are not counted: they
    /// were accepted when created and pace themselves.
    pub app_send_rate: Option<ringpush_limits::Rate>,
}

/// The default send quota of an app, per controller: 10,000 messages a second, 100,000 at
/// once.
pub const DEFAULT_APP_SEND_RATE: ringpush_limits::Rate = ringpush_limits::Rate {
    per_second: 10_000.0,
    burst: 100_000.0,
};

/// Default lifetime of a device token: 90 days.
pub const DEFAULT_DEVICE_TOKEN_LIFETIME_MS: i64 = 90 * 24 * 3600 * 1000;

impl ControllerConfig {
    /// Defaults around the given admin token.
    pub fn new(admin_token: String) -> Self {
        Self {
            admin_token,
            max_payload_bytes: ringpush_protocol::frame::DEFAULT_MAX_PAYLOAD_BYTES,
            max_devices_per_request: 1000,
            default_ttl_seconds: 7 * 24 * 3600,
            max_ttl_seconds: 28 * 24 * 3600,
            inbox: InboxLimits::default(),
            delivery: DeliveryConfig::default(),
            secure_cookies: false,
            region: None,
            device_token_lifetime_ms: DEFAULT_DEVICE_TOKEN_LIFETIME_MS,
            app_send_rate: Some(DEFAULT_APP_SEND_RATE),
        }
    }
}

/// Renders this process's metrics in the Prometheus text format.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// What every request handler shares.
#[derive(Clone)]
pub struct ControllerState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) delivery: DeliveryRouter,
    pub(crate) config: Arc<ControllerConfig>,
    pub(crate) admin_token_hash: [u8; 32],
    pub(crate) metrics: Option<MetricsRender>,
    /// Campaign time: stamps campaigns' `created_at_ms` (firings due before it are not
    /// firings), so it must be the clock the scheduler reads.
    pub(crate) clock: Arc<dyn Clock>,
    /// Failed logins per operator name and address (this process's share of the bound).
    pub(crate) login_limiter: Arc<login_limit::LoginLimiter>,
    /// The app of each device this controller has checked.
    pub(crate) device_owners: Arc<device_owners::DeviceOwners>,
    /// Across regions: every region's store (writes for an unreachable home are held here).
    pub(crate) regional: Option<RegionalStore>,
    /// Each app's send quota in this process (a std mutex, held for one bucket update).
    pub(crate) send_quotas:
        Option<Arc<std::sync::Mutex<ringpush_limits::TokenBuckets<ringpush_protocol::AppId>>>>,
    /// The platform path (gateways to APNs, FCM, Web Push); `None`: socket only.
    pub(crate) platform: Option<Arc<platform::Platform>>,
}

impl ControllerState {
    /// Builds the state; the delivery senders stop when `shutdown` fires.
    pub fn new(
        config: ControllerConfig,
        store: Arc<dyn Store>,
        ring: watch::Receiver<Arc<Ring>>,
        metrics: Option<MetricsRender>,
        shutdown: CancellationToken,
    ) -> Self {
        let delivery = DeliveryRouter::new(config.delivery.clone(), ring, store.clone(), shutdown);
        let send_quotas = config.app_send_rate.map(|rate| {
            Arc::new(std::sync::Mutex::new(ringpush_limits::TokenBuckets::new(
                rate,
            )))
        });
        Self {
            send_quotas,
            admin_token_hash: secret_hash(&config.admin_token),
            store,
            delivery,
            config: Arc::new(config),
            metrics,
            clock: Arc::new(SystemClock),
            login_limiter: Arc::default(),
            device_owners: Arc::default(),
            regional: None,
            platform: None,
        }
    }

    /// Sends through the platform services too (see [`platform`]), from a worker that runs
    /// until `shutdown` fires.
    pub fn with_platform(
        mut self,
        platform: platform::Platform,
        shutdown: CancellationToken,
    ) -> Self {
        self.platform = Some(Arc::new(platform));
        tokio::spawn(platform::run(self.clone(), shutdown));
        self
    }

    /// Reads campaign time from `clock` instead of the system clock (give the scheduler the
    /// same one, see [`ControllerState::clock`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Serves one region of several (`regional` is the store given to [`Self::new`], seen as
    /// regions): delivers to devices connected in other regions (their rings are
    /// `remote_rings`, see [`DeliveryRouter::deliver_across_regions`]), holds messages for a
    /// home region that does not answer, and hands them home from a task that runs until
    /// `shutdown` fires.
    pub fn across_regions(
        mut self,
        regional: RegionalStore,
        remote_rings: Vec<watch::Receiver<Arc<Ring>>>,
        shutdown: CancellationToken,
    ) -> Self {
        self.delivery.deliver_across_regions(remote_rings);
        self.regional = Some(regional.clone());
        tokio::spawn(hand_off::run(self.clone(), regional, shutdown));
        self
    }

    /// The clock of campaign time, for the scheduler.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }
}

/// The controller's HTTP application (the API and the portal), for tests to drive without a
/// server.
pub fn app(state: ControllerState) -> axum::Router {
    let api = api::routes(state);
    portal::routes(api.clone()).merge(api)
}

/// Serves the API on `listener` until `shutdown` fires, then finishes the requests under way.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ControllerState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // With the peer address: logins are rate-limited by it.
    let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

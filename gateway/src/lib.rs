//! Gateways to the platform push services, for devices that cannot hold a ringpush
//! connection: Apple's APNs, Google's FCM (HTTP v1) and browsers' Web Push.
//!
//! Each provider takes one ringpush [`Push`] frame (already durable in the device's inbox)
//! and one device's platform address, sends it, and answers an [`Outcome`] that says what
//! the caller must do next: nothing (delivered), retire the token (the service no longer
//! knows it), try again later (rate limited or unavailable; with the service's own delay
//! when it gave one), or give up on this message (the service refused it for good).
//!
//! - [`apns`]: HTTP/2 over TLS with token-based authentication (ES256 JWTs from a `.p8`
//!   key, refreshed before they expire), one multiplexed connection per team and topic;
//! - [`fcm`]: OAuth 2 access tokens from a service account (JWT bearer grant), cached until
//!   they expire, and the v1 `messages:send` call;
//! - [`webpush`]: RFC 8030 delivery with VAPID (RFC 8292) and `aes128gcm` payload encryption
//!   (RFC 8291);
//! - [`credentials`]: what an app configures for each service (keys, topic, subject) and the
//!   routing policy between the socket and the platform services;
//! - `jwt`: ES256 and RS256 JSON Web Tokens on `ring`.
//!
//! Every endpoint is configuration ([`GatewayConfig`]); the defaults are the services' public
//! production addresses. The ringpush message rides inside each platform payload as the
//! envelope of [`ringpush_protocol::platform`], so the SDK de-duplicates it with the socket
//! path by message id.
//!
//! Does not own: when to use a gateway (the controller's routing policy and its durable queue
//! of platform sends), retries (the caller re-queues on [`Outcome::Retry`]), where tokens and
//! credentials are stored (`ringpush_store`), statistics.

pub mod apns;
pub mod credentials;
pub mod fcm;
mod jwt;
pub mod webpush;

use std::sync::Arc;
use std::time::Duration;

pub use credentials::{
    ApnsCredentials, AppGateways, FcmCredentials, Route, RoutePolicy, VapidCredentials,
};
use ringpush_protocol::device::Push;
use ringpush_protocol::platform::PlatformToken;

/// What became of one platform send, and what the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The service accepted the notification for delivery.
    Delivered,
    /// The service says the token is no longer valid (APNs 410 `Unregistered` or 400
    /// `BadDeviceToken`, FCM `UNREGISTERED`, Web Push 404/410): retire it from the device.
    TokenRetired { reason: String },
    /// Rate limited, unavailable or unreachable: send again later, after `after` when the
    /// service said how long (Retry-After), otherwise after the caller's own backoff.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Refused for good (payload too large, bad topic, credentials rejected, ...): do not
    /// retry this message; the reason says what to fix.
    Rejected { reason: String },
    /// The app has no credentials for the token's service.
    NotConfigured,
}

impl Outcome {
    /// A short label for metrics and statistics: `delivered`, `token_retired`, `retry`,
    /// `rejected` or `not_configured`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::TokenRetired { .. } => "token_retired",
            Self::Retry { .. } => "retry",
            Self::Rejected { .. } => "rejected",
            Self::NotConfigured => "not_configured",
        }
    }

    /// The service's reason, if it gave one (APNs `reason`, FCM error status, HTTP status).
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::TokenRetired { reason }
            | Self::Retry { reason, .. }
            | Self::Rejected { reason } => Some(reason),
            Self::Delivered | Self::NotConfigured => None,
        }
    }
}

/// Why credentials or settings could not be used; each names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{what}: {detail}")]
    Key { what: &'static str, detail: String },
    #[error("{what}: {detail}")]
    Credentials { what: &'static str, detail: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("HTTP client: {0}")]
    Client(String),
}

/// Where the services are and how they are reached. Nothing here is hard-coded elsewhere:
/// tests point every URL at local servers that speak the real protocols.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// APNs production endpoint (`https://api.push.apple.com`).
    pub apns_production_url: String,
    /// APNs sandbox endpoint, for development builds (`https://api.sandbox.push.apple.com`).
    pub apns_sandbox_url: String,
    /// How long an APNs provider token is used before a new one is signed. Apple refuses
    /// tokens older than an hour and too frequent new ones (more than one in 20 minutes).
    pub apns_token_refresh: Duration,
    /// The FCM v1 API (`https://fcm.googleapis.com`); the send URL is
    /// `{fcm_url}/v1/projects/{project_id}/messages:send`.
    pub fcm_url: String,
    /// Where OAuth 2 access tokens are fetched; `None`: the service account's `token_uri`.
    pub fcm_token_url: Option<String>,
    /// Certificates trusted besides the system's roots (PEM), for a private service or tests.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Admit `http://` Web Push endpoints and service URLs (local test services only).
    pub allow_plain_http: bool,
    /// How long one request may take before it counts as unreachable (and is retried).
    pub request_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            apns_production_url: "https://api.push.apple.com".to_owned(),
            apns_sandbox_url: "https://api.sandbox.push.apple.com".to_owned(),
            apns_token_refresh: Duration::from_secs(50 * 60),
            fcm_url: "https://fcm.googleapis.com".to_owned(),
            fcm_token_url: None,
            extra_ca_pem: None,
            allow_plain_http: false,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl GatewayConfig {
    /// The rustls client configuration every provider uses: the system's roots plus
    /// [`Self::extra_ca_pem`], on the `ring` provider. `alpn` is set by each provider.
    pub fn tls_client_config(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, GatewayError> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;

        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A system root rustls cannot parse is skipped, as browsers do.
            let _ = roots.add(cert);
        }
        if let Some(pem) = &self.extra_ca_pem {
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|error| GatewayError::Tls(format!("CA file: {error}")))?;
                roots
                    .add(cert)
                    .map_err(|error| GatewayError::Tls(format!("CA file: {error}")))?;
                added += 1;
            }
            if added == 0 {
                return Err(GatewayError::Tls("CA file: no certificate in it".into()));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| GatewayError::Tls(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(config)
    }
}

/// Every provider, behind one call: sends `push` to the device at `token` with the app's
/// credentials for that token's service.
pub struct Gateways {
    pub apns: apns::ApnsClient,
    pub fcm: fcm::FcmClient,
    pub webpush: webpush::WebPushClient,
}

impl Gateways {
    /// Builds every provider from one configuration.
    pub fn new(config: &GatewayConfig) -> Result<Self, GatewayError> {
        Ok(Self {
            apns: apns::ApnsClient::new(config)?,
            fcm: fcm::FcmClient::new(config)?,
            webpush: webpush::WebPushClient::new(config)?,
        })
    }

    /// Sends `push` through the service of `token`.
    pub async fn send(&self, app: &AppGateways, token: &PlatformToken, push: &Push) -> Outcome {
        match token {
            PlatformToken::Apns { token, sandbox } => match &app.apns {
                Some(credentials) => self.apns.send(credentials, token, *sandbox, push).await,
                None => Outcome::NotConfigured,
            },
            PlatformToken::Fcm { token } => match &app.fcm {
                Some(credentials) => self.fcm.send(credentials, token, push).await,
                None => Outcome::NotConfigured,
            },
            PlatformToken::WebPush {
                endpoint,
                p256dh,
                auth,
            } => match &app.webpush {
                Some(credentials) => {
                    let subscription = webpush::Subscription {
                        endpoint,
                        p256dh,
                        auth,
                    };
                    self.webpush.send(credentials, &subscription, push).await
                }
                None => Outcome::NotConfigured,
            },
        }
    }
}

/// Now, in milliseconds since the Unix epoch (0 before it), to turn a push's expiry into a
/// TTL.
fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

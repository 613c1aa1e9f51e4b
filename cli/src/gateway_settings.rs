//! The `[gateways]` settings: where the platform push services are and how the controller's
//! platform worker runs. Every endpoint is configuration; the defaults are the services'
//! public production addresses. Per-app credentials are not here: an admin sets them through
//! `PUT /v1/apps/{app}/gateways` (docs/gateways.md).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ringpush_controller::platform::{Platform, PlatformConfig};
use ringpush_gateway::{GatewayConfig, Gateways};
use serde::{Deserialize, Serialize};

/// The `[gateways]` table of the settings file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// APNs, for apps built for production.
    pub apns_production_url: String,
    /// APNs, for development builds (tokens registered with `sandbox: true`).
    pub apns_sandbox_url: String,
    /// How often a new APNs provider token is signed (Apple: at most hourly, at least every
    /// 20 minutes apart).
    pub apns_token_refresh_seconds: u64,
    /// The FCM HTTP v1 API.
    pub fcm_url: String,
    /// Where FCM access tokens are fetched; empty: each service account's `token_uri`.
    pub fcm_token_url: String,
    /// Certificates (PEM) trusted besides the system's roots, for a private service.
    pub ca_file: PathBuf,
    /// Accept `http://` service URLs and Web Push endpoints (local test services only).
    pub allow_plain_http: bool,
    /// How long one request to a service may take.
    pub request_timeout_ms: u64,
    /// How long a claimed platform send stays hidden from other controllers.
    pub lease_seconds: u64,
    /// How often the worker looks for due sends when nothing wakes it.
    pub poll_ms: u64,
    /// Sends in flight at once per controller.
    pub sends_in_flight: usize,
    /// First retry delay (doubled per retry up to `backoff_max_seconds`).
    pub backoff_base_ms: u64,
    pub backoff_max_seconds: u64,
    /// Sends tried per message before it is given up.
    pub max_attempts: u32,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        let gateway = GatewayConfig::default();
        let platform = PlatformConfig::default();
        Self {
            apns_production_url: gateway.apns_production_url,
            apns_sandbox_url: gateway.apns_sandbox_url,
            apns_token_refresh_seconds: gateway.apns_token_refresh.as_secs(),
            fcm_url: gateway.fcm_url,
            fcm_token_url: String::new(),
            ca_file: PathBuf::new(),
            allow_plain_http: gateway.allow_plain_http,
            request_timeout_ms: gateway.request_timeout.as_millis() as u64,
            lease_seconds: platform.lease.as_secs(),
            poll_ms: platform.poll_interval.as_millis() as u64,
            sends_in_flight: platform.sends_in_flight,
            backoff_base_ms: platform.backoff_base.as_millis() as u64,
            backoff_max_seconds: platform.backoff_max.as_secs(),
            max_attempts: platform.max_attempts,
        }
    }
}

impl GatewaySettings {
    /// The controller's platform path from these settings; an error names the setting.
    pub fn platform(&self) -> anyhow::Result<Platform> {
        for (name, url) in [
            ("apns_production_url", &self.apns_production_url),
            ("apns_sandbox_url", &self.apns_sandbox_url),
            ("fcm_url", &self.fcm_url),
            ("fcm_token_url", &self.fcm_token_url),
        ] {
            let plain_ok = self.allow_plain_http && url.starts_with("http://");
            if !url.is_empty() && !url.starts_with("https://") && !plain_ok {
                anyhow::bail!(
                    "gateways.{name} must be an https:// URL (http:// only with gateways.allow_plain_http), got {url:?}"
                );
            }
        }
        if self.apns_token_refresh_seconds == 0 || self.apns_token_refresh_seconds > 3600 {
            anyhow::bail!("gateways.apns_token_refresh_seconds must be between 1 and 3600");
        }
        if self.request_timeout_ms == 0 || self.sends_in_flight == 0 || self.max_attempts == 0 {
            anyhow::bail!(
                "gateways.request_timeout_ms, sends_in_flight and max_attempts must be at least 1"
            );
        }
        let extra_ca_pem = match self.ca_file.as_os_str().is_empty() {
            true => None,
            false => Some(std::fs::read(&self.ca_file).with_context(|| {
                format!("gateways.ca_file: cannot read {}", self.ca_file.display())
            })?),
        };
        let gateway = GatewayConfig {
            apns_production_url: self.apns_production_url.clone(),
            apns_sandbox_url: self.apns_sandbox_url.clone(),
            apns_token_refresh: Duration::from_secs(self.apns_token_refresh_seconds),
            fcm_url: self.fcm_url.clone(),
            fcm_token_url: Some(self.fcm_token_url.clone()).filter(|url| !url.is_empty()),
            extra_ca_pem,
            allow_plain_http: self.allow_plain_http,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
        };
        let gateways = Gateways::new(&gateway).context("gateways")?;
        let config = PlatformConfig {
            lease: Duration::from_secs(self.lease_seconds.max(1)),
            poll_interval: Duration::from_millis(self.poll_ms.max(10)),
            claim_batch: PlatformConfig::default().claim_batch,
            sends_in_flight: self.sends_in_flight,
            backoff_base: Duration::from_millis(self.backoff_base_ms.max(1)),
            backoff_max: Duration::from_secs(self.backoff_max_seconds.max(1)),
            max_attempts: self.max_attempts,
            allow_plain_http: self.allow_plain_http,
        };
        Ok(Platform::new(gateways, config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build_and_plain_http_needs_the_flag() {
        assert!(GatewaySettings::default().platform().is_ok());
        let local = GatewaySettings {
            fcm_url: "http://127.0.0.1:9".into(),
            ..GatewaySettings::default()
        };
        let error = local.platform().err().expect("refused").to_string();
        assert!(error.contains("gateways.fcm_url"), "{error}");
        let allowed = GatewaySettings {
            allow_plain_http: true,
            ..local
        };
        assert!(allowed.platform().is_ok());
        let missing_ca = GatewaySettings {
            ca_file: "/nonexistent/ca.pem".into(),
            ..GatewaySettings::default()
        };
        let error = format!("{:#}", missing_ca.platform().err().expect("refused"));
        assert!(error.contains("gateways.ca_file"), "{error}");
    }
}

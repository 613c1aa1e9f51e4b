//! Web Push provider (work in progress: being written).

use ringpush_protocol::device::Push;

use crate::{GatewayConfig, GatewayError, Outcome, VapidCredentials};

/// A browser's subscription, as registered.
pub struct Subscription<'a> {
    pub endpoint: &'a str,
    pub p256dh: &'a str,
    pub auth: &'a str,
}

/// Sends Web Push messages.
pub struct WebPushClient {}

impl WebPushClient {
    pub fn new(_config: &GatewayConfig) -> Result<Self, GatewayError> {
        Ok(Self {})
    }

    pub async fn send(
        &self,
        _credentials: &VapidCredentials,
        _subscription: &Subscription<'_>,
        _push: &Push,
    ) -> Outcome {
        Outcome::NotConfigured
    }
}

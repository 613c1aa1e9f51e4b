//! APNs provider (work in progress: being written).

use ringpush_protocol::device::Push;

use crate::{ApnsCredentials, GatewayConfig, GatewayError, Outcome};

/// Sends notifications to APNs.
pub struct ApnsClient {}

impl ApnsClient {
    pub fn new(_config: &GatewayConfig) -> Result<Self, GatewayError> {
        Ok(Self {})
    }

    pub async fn send(
        &self,
        _credentials: &ApnsCredentials,
        _device_token: &str,
        _sandbox: bool,
        _push: &Push,
    ) -> Outcome {
        Outcome::NotConfigured
    }
}

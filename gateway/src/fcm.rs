//! FCM provider (work in progress: being written).

use ringpush_protocol::device::Push;

use crate::{FcmCredentials, GatewayConfig, GatewayError, Outcome};

/// Sends messages through FCM HTTP v1.
pub struct FcmClient {}

impl FcmClient {
    pub fn new(_config: &GatewayConfig) -> Result<Self, GatewayError> {
        Ok(Self {})
    }

    pub async fn send(
        &self,
        _credentials: &FcmCredentials,
        _registration_token: &str,
        _push: &Push,
    ) -> Outcome {
        Outcome::NotConfigured
    }
}

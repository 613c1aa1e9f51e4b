//! The platform gateways' state across regions: a device's token in its home region (where
//! every region's controller reads it), an app's settings in every region (as the app is),
//! and the queue of platform sends and their outcomes in this region (the sender's).

use async_trait::async_trait;
use ringpush_protocol::platform::PlatformToken;
use ringpush_protocol::{AppId, DeviceId, MessageId};

use super::{RegionalStore, partial_write};
use crate::{PlatformJob, PlatformOutcome, PlatformRegistration, PlatformStore, StoreResult};

#[async_trait]
impl PlatformStore for RegionalStore {
    async fn set_platform_token(
        &self,
        device: DeviceId,
        registration: &PlatformRegistration,
    ) -> StoreResult<()> {
        self.home(device)
            .platform()
            .set_platform_token(device, registration)
            .await
    }

    async fn platform_token(&self, device: DeviceId) -> StoreResult<Option<PlatformRegistration>> {
        self.home(device).platform().platform_token(device).await
    }

    async fn retire_platform_token(
        &self,
        device: DeviceId,
        token: &PlatformToken,
    ) -> StoreResult<bool> {
        self.home(device)
            .platform()
            .retire_platform_token(device, token)
            .await
    }

    async fn set_app_gateways(&self, app: AppId, settings_json: &str) -> StoreResult<()> {
        write_everywhere!(self, "set app gateways", |store| store
            .platform()
            .set_app_gateways(app, settings_json));
        Ok(())
    }

    async fn app_gateways(&self, app: AppId) -> StoreResult<Option<String>> {
        self.local().platform().app_gateways(app).await
    }

    async fn schedule_platform_sends(&self, jobs: &[(PlatformJob, i64)]) -> StoreResult<()> {
        self.local().platform().schedule_platform_sends(jobs).await
    }

    async fn claim_platform_sends(
        &self,
        now_ms: i64,
        lease_ms: u64,
        limit: usize,
    ) -> StoreResult<Vec<PlatformJob>> {
        self.local()
            .platform()
            .claim_platform_sends(now_ms, lease_ms, limit)
            .await
    }

    async fn finish_platform_send(&self, message: MessageId) -> StoreResult<()> {
        self.local().platform().finish_platform_send(message).await
    }

    async fn pending_platform_sends(&self) -> StoreResult<u64> {
        self.local().platform().pending_platform_sends().await
    }

    async fn record_platform_outcome(
        &self,
        message: MessageId,
        outcome: &PlatformOutcome,
    ) -> StoreResult<()> {
        self.local()
            .platform()
            .record_platform_outcome(message, outcome)
            .await
    }

    async fn platform_outcome(&self, message: MessageId) -> StoreResult<Option<PlatformOutcome>> {
        self.local().platform().platform_outcome(message).await
    }
}

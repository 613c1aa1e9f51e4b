//! Platform tokens, gateway settings and the queue of platform sends on Redis (keys in
//! `keys.rs`): a token is a hash beside its device's keys; the queue is a sorted set of
//! message ids by due time and a hash of jobs, both under `{gateway}`, claimed by one script.

use async_trait::async_trait;
use redis::AsyncCommands;
use ringpush_protocol::platform::PlatformToken;
use ringpush_protocol::{AppId, DeviceId, MessageId};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::RedisStore;
use super::codec::corrupt;
use super::connection::redis_error;
use super::scripts;
use crate::{
    PLATFORM_OUTCOME_TTL_MS, PlatformJob, PlatformOutcome, PlatformRegistration, PlatformStore,
    StoreResult,
};

fn encode<T: Serialize>(key: &str, record: &T) -> StoreResult<String> {
    serde_json::to_string(record).map_err(|error| corrupt(key, &format!("json: {error}")))
}

fn decode<T: DeserializeOwned>(key: &str, json: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(json).map_err(|error| corrupt(key, &format!("json: {error}")))
}

#[async_trait]
impl PlatformStore for RedisStore {
    async fn set_platform_token(
        &self,
        device: DeviceId,
        registration: &PlatformRegistration,
    ) -> StoreResult<()> {
        let key = self.keys.platform_token(device);
        let token = encode(&key, &registration.token)?;
        redis::pipe()
            .atomic()
            .del(&key)
            .ignore()
            .hset_multiple(
                &key,
                &[
                    ("token", token),
                    ("at", registration.registered_at_ms.to_string()),
                ],
            )
            .ignore()
            .exec_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("set platform token", &key, error))
    }

    async fn platform_token(&self, device: DeviceId) -> StoreResult<Option<PlatformRegistration>> {
        let key = self.keys.platform_token(device);
        let (token, at): (Option<Vec<u8>>, Option<i64>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("token")
            .arg("at")
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("read platform token", &key, error))?;
        let Some(token) = token else {
            return Ok(None);
        };
        Ok(Some(PlatformRegistration {
            token: decode(&key, &token)?,
            registered_at_ms: at.unwrap_or(0),
        }))
    }

    async fn retire_platform_token(
        &self,
        device: DeviceId,
        token: &PlatformToken,
    ) -> StoreResult<bool> {
        let key = self.keys.platform_token(device);
        scripts::RETIRE_PLATFORM_TOKEN
            .key(&key)
            .arg(encode(&key, token)?)
            .invoke_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("retire platform token", &key, error))
    }

    async fn set_app_gateways(&self, app: AppId, settings_json: &str) -> StoreResult<()> {
        let key = self.keys.app_gateways(app);
        self.connection()
            .set(&key, settings_json)
            .await
            .map_err(|error| redis_error("set app gateways", &key, error))
    }

    async fn app_gateways(&self, app: AppId) -> StoreResult<Option<String>> {
        let key = self.keys.app_gateways(app);
        self.connection()
            .get(&key)
            .await
            .map_err(|error| redis_error("read app gateways", &key, error))
    }

    async fn schedule_platform_sends(&self, jobs: &[(PlatformJob, i64)]) -> StoreResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let (due, jobs_key) = (self.keys.platform_due(), self.keys.platform_jobs());
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (job, due_at_ms) in jobs {
            let id = job.message.to_string();
            pipe.hset(&jobs_key, &id, encode(&jobs_key, job)?).ignore();
            pipe.zadd(&due, &id, *due_at_ms).ignore();
        }
        pipe.exec_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("schedule platform sends", &due, error))
    }

    async fn claim_platform_sends(
        &self,
        now_ms: i64,
        lease_ms: u64,
        limit: usize,
    ) -> StoreResult<Vec<PlatformJob>> {
        let (due, jobs_key) = (self.keys.platform_due(), self.keys.platform_jobs());
        let claimed: Vec<Vec<u8>> = scripts::CLAIM_PLATFORM_SENDS
            .key(&due)
            .key(&jobs_key)
            .arg(now_ms)
            .arg(lease_ms)
            .arg(limit.max(1))
            .invoke_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("claim platform sends", &due, error))?;
        claimed.iter().map(|json| decode(&jobs_key, json)).collect()
    }

    async fn finish_platform_send(&self, message: MessageId) -> StoreResult<()> {
        let (due, jobs_key) = (self.keys.platform_due(), self.keys.platform_jobs());
        let id = message.to_string();
        redis::pipe()
            .atomic()
            .hdel(&jobs_key, &id)
            .ignore()
            .zrem(&due, &id)
            .ignore()
            .exec_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("finish platform send", &due, error))
    }

    async fn pending_platform_sends(&self) -> StoreResult<u64> {
        let jobs_key = self.keys.platform_jobs();
        self.connection()
            .hlen(&jobs_key)
            .await
            .map_err(|error| redis_error("count platform sends", &jobs_key, error))
    }

    async fn record_platform_outcome(
        &self,
        message: MessageId,
        outcome: &PlatformOutcome,
    ) -> StoreResult<()> {
        let key = self.keys.platform_outcome(&message.to_string());
        redis::cmd("SET")
            .arg(&key)
            .arg(encode(&key, outcome)?)
            .arg("PX")
            .arg(PLATFORM_OUTCOME_TTL_MS)
            .exec_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("record platform outcome", &key, error))
    }

    async fn platform_outcome(&self, message: MessageId) -> StoreResult<Option<PlatformOutcome>> {
        let key = self.keys.platform_outcome(&message.to_string());
        let json: Option<Vec<u8>> = self
            .connection()
            .get(&key)
            .await
            .map_err(|error| redis_error("read platform outcome", &key, error))?;
        json.map(|json| decode(&key, &json)).transpose()
    }
}

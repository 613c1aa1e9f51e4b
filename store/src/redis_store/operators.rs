//! The portal's operators and sessions on Redis, all under the hash tag `{portal}` (keys in
//! `keys.rs`): an operator is a JSON string created with `SET NX` together with its name in
//! the set of names (one script); a session is a JSON string that Redis expires when the
//! session ends, and that a read also checks against the caller's clock.

use async_trait::async_trait;
use redis::AsyncCommands;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::RedisStore;
use super::codec::corrupt;
use super::connection::redis_error;
use super::scripts;
use crate::{OperatorRecord, OperatorStore, SessionRecord, StoreError, StoreResult, now_ms};

fn encode<T: Serialize>(key: &str, record: &T) -> StoreResult<String> {
    serde_json::to_string(record).map_err(|error| corrupt(key, &format!("json: {error}")))
}

fn decode<T: DeserializeOwned>(key: &str, json: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(json).map_err(|error| corrupt(key, &format!("json: {error}")))
}

#[async_trait]
impl OperatorStore for RedisStore {
    async fn create_operator(&self, operator: &OperatorRecord) -> StoreResult<()> {
        let key = self.keys.operator(&operator.name);
        let created: bool = scripts::CREATE_OPERATOR
            .key(&key)
            .key(self.keys.operators())
            .arg(encode(&key, operator)?)
            .arg(&operator.name)
            .invoke_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("create operator", &key, error))?;
        if created {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists(format!(
                "operator {}",
                operator.name
            )))
        }
    }

    async fn operator(&self, name: &str) -> StoreResult<Option<OperatorRecord>> {
        let key = self.keys.operator(name);
        let json: Option<Vec<u8>> = self
            .connection()
            .get(&key)
            .await
            .map_err(|error| redis_error("read operator", &key, error))?;
        json.map(|json| decode(&key, &json)).transpose()
    }

    async fn operators(&self) -> StoreResult<Vec<OperatorRecord>> {
        let names_key = self.keys.operators();
        let mut names: Vec<String> = self
            .connection()
            .smembers(&names_key)
            .await
            .map_err(|error| redis_error("list operators", &names_key, error))?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        names.sort();
        let keys: Vec<String> = names.iter().map(|name| self.keys.operator(name)).collect();
        // One slot: a plain MGET works on a cluster too.
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("read operators", &names_key, error))?;
        keys.iter()
            .zip(values)
            .filter_map(|(key, json)| json.map(|json| decode(key, &json)))
            .collect()
    }

    async fn delete_operator(&self, name: &str) -> StoreResult<bool> {
        let key = self.keys.operator(name);
        let (deleted,): (u64,) = redis::pipe()
            .atomic()
            .del(&key)
            .srem(self.keys.operators(), name)
            .ignore()
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("delete operator", &key, error))?;
        Ok(deleted > 0)
    }

    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()> {
        let key = self.keys.session(&session.id_hash);
        let Ok(ttl_ms @ 1..) = u64::try_from(session.expires_at_ms.saturating_sub(now_ms())) else {
            // Already expired: nothing to keep.
            return Ok(());
        };
        redis::cmd("SET")
            .arg(&key)
            .arg(encode(&key, session)?)
            .arg("PX")
            .arg(ttl_ms)
            .exec_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("create session", &key, error))
    }

    async fn session(&self, id_hash: &[u8; 32], now_ms: i64) -> StoreResult<Option<SessionRecord>> {
        let key = self.keys.session(id_hash);
        let json: Option<Vec<u8>> = self
            .connection()
            .get(&key)
            .await
            .map_err(|error| redis_error("read session", &key, error))?;
        let Some(json) = json else {
            return Ok(None);
        };
        let session: SessionRecord = decode(&key, &json)?;
        Ok((session.expires_at_ms > now_ms).then_some(session))
    }

    async fn delete_session(&self, id_hash: &[u8; 32]) -> StoreResult<()> {
        let key = self.keys.session(id_hash);
        redis::cmd("DEL")
            .arg(&key)
            .exec_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("delete session", &key, error))
    }
}

//! Apps on Redis: the listing of apps, and the scripts that add and revoke an app's keys.
//!
//! An app is one hash (`app:<app>`, fields in `codec.rs`), so a key add or revocation is one
//! script on one key: atomic per app, on a cluster too. The `apps` index is another key (most
//! likely another slot): `create_app` lists the app after writing it, and a listing reads the
//! index, then the records (a record that is missing is skipped).

use std::collections::HashMap;

use redis::Value;
use ringpush_protocol::AppId;

use super::RedisStore;
use super::batch::SlotCommands;
use super::codec::{self, corrupt};
use super::connection::redis_error;
use super::scripts;
use crate::{AppKey, AppRecord, StoreError, StoreResult};

impl RedisStore {
    /// Lists an app in `apps`, scored by its creation time (called by `create_app`).
    pub(super) async fn list_app(&self, app: &AppRecord) -> StoreResult<()> {
        let apps = self.keys.apps();
        redis::cmd("ZADD")
            .arg(&apps)
            .arg(app.created_at_ms)
            .arg(app.id.to_string())
            .exec_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("list app", &apps, error))
    }

    /// Every listed app, oldest first (then by id).
    pub(super) async fn all_apps(&self) -> StoreResult<Vec<AppRecord>> {
        let index = self.keys.apps();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&index)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("list apps", &index, error))?;
        let ids = ids
            .iter()
            .map(|text| {
                text.parse::<AppId>()
                    .map_err(|error| corrupt(&index, &format!("app id {text:?}: {error}")))
            })
            .collect::<StoreResult<Vec<AppId>>>()?;
        let reads: Vec<SlotCommands> = ids
            .iter()
            .map(|&id| {
                let key = self.keys.app(id);
                let mut read = redis::cmd("HGETALL");
                read.arg(&key);
                SlotCommands {
                    key,
                    commands: vec![read],
                }
            })
            .collect();
        let replies = self
            .connection
            .run_command_batch(&reads)
            .await
            .map_err(|error| redis_error("read apps", &index, error))?;
        let mut apps = Vec::with_capacity(ids.len());
        for ((id, read), reply) in ids.into_iter().zip(&reads).zip(replies) {
            let fields = one_hash(&read.key, reply)?;
            if !fields.is_empty() {
                apps.push(codec::decode_app(&read.key, id, fields)?);
            }
        }
        apps.sort_by_key(|app| (app.created_at_ms, app.id));
        Ok(apps)
    }

    /// Adds a key to an app (see `Store::add_app_key`).
    pub(super) async fn add_key(&self, app: AppId, key: &AppKey) -> StoreResult<bool> {
        let record = self.keys.app(app);
        let added: i64 = scripts::ADD_APP_KEY
            .key(&record)
            .arg(codec::key_field(&key.id))
            .arg(codec::key_value_tail(key))
            .invoke_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("add app key", &record, error))?;
        match added {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(StoreError::AlreadyExists(format!(
                "key {} of app {app}",
                key.id
            ))),
        }
    }

    /// Revokes a live key of an app (see `Store::revoke_app_key`).
    pub(super) async fn revoke_key(
        &self,
        app: AppId,
        key_id: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let record = self.keys.app(app);
        scripts::REVOKE_APP_KEY
            .key(&record)
            .arg(codec::key_field(key_id))
            .arg(now_ms)
            .invoke_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("revoke app key", &record, error))
    }
}

/// The fields of the one HGETALL of a read group.
fn one_hash(key: &str, mut replies: Vec<Value>) -> StoreResult<HashMap<String, String>> {
    let reply = replies
        .pop()
        .ok_or_else(|| corrupt(key, "no reply to reading the app"))?;
    redis::from_redis_value(reply).map_err(|error| corrupt(key, &format!("app hash: {error}")))
}

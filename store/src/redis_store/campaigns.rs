//! Campaigns on Redis.
//!
//! Every campaign key shares the hash tag `{campaigns}`, so that a Redis Cluster keeps them
//! in one slot: moving a campaign and its entry in the index of scheduled campaigns (which
//! spans apps) is one script. Campaigns are few (they are made by hand or by an app's
//! backend, not per device), so one slot holds them easily. Firing claims are single keys and
//! spread over the cluster.
//!
//! A campaign is a hash: `json` (the record as JSON) and `state`. Only `state` changes after
//! a put, so the script that moves it never has to decode or re-encode JSON (Lua's cjson would
//! change numbers and empty arrays in the request); the `state` field wins over the state in
//! `json` when reading.

use std::collections::HashMap;

use async_trait::async_trait;
use redis::{AsyncCommands, Value};
use ringpush_protocol::AppId;

use super::RedisStore;
use super::codec::corrupt;
use super::connection::redis_error;
use super::scripts;
use crate::campaigns::FIRING_DONE_TTL_MS;
use crate::{CampaignRecord, CampaignState, CampaignStore, Claim, StoreResult};

/// The name of a state in the `state` field and in scripts.
fn state_name(state: CampaignState) -> &'static str {
    match state {
        CampaignState::Scheduled => "scheduled",
        CampaignState::Paused => "paused",
        CampaignState::Cancelled => "cancelled",
        CampaignState::Finished => "finished",
    }
}

fn state_from_name(key: &str, name: &str) -> StoreResult<CampaignState> {
    [
        CampaignState::Scheduled,
        CampaignState::Paused,
        CampaignState::Cancelled,
        CampaignState::Finished,
    ]
    .into_iter()
    .find(|state| state_name(*state) == name)
    .ok_or_else(|| corrupt(key, &format!("unknown campaign state {name:?}")))
}

/// The member of a campaign in the set of scheduled campaigns.
fn index_member(app: AppId, id: &str) -> String {
    format!("{app}:{id}")
}

/// A campaign's hash read back; `None` if the key does not exist.
fn decode_campaign(
    key: &str,
    fields: HashMap<String, Vec<u8>>,
) -> StoreResult<Option<CampaignRecord>> {
    if fields.is_empty() {
        return Ok(None);
    }
    let json = fields
        .get("json")
        .ok_or_else(|| corrupt(key, "campaign without its json"))?;
    let mut record: CampaignRecord = serde_json::from_slice(json)
        .map_err(|error| corrupt(key, &format!("campaign json: {error}")))?;
    let state = fields
        .get("state")
        .ok_or_else(|| corrupt(key, "campaign without its state"))?;
    record.state = state_from_name(key, &String::from_utf8_lossy(state))?;
    Ok(Some(record))
}

impl RedisStore {
    /// The campaigns stored under these keys, in the order of the keys, skipping keys that
    /// are gone (deleted between reading an index and reading the records). One pipeline:
    /// every campaign key is in one slot.
    async fn campaigns_at(&self, keys: &[String]) -> StoreResult<Vec<CampaignRecord>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipeline = redis::pipe();
        for key in keys {
            pipeline.hgetall(key);
        }
        let replies: Vec<HashMap<String, Vec<u8>>> = pipeline
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("read campaigns", &keys[0], error))?;
        let mut campaigns = Vec::with_capacity(keys.len());
        for (key, fields) in keys.iter().zip(replies) {
            campaigns.extend(decode_campaign(key, fields)?);
        }
        Ok(campaigns)
    }
}

#[async_trait]
impl CampaignStore for RedisStore {
    async fn put_campaign(&self, campaign: &CampaignRecord) -> StoreResult<()> {
        let key = self.keys.campaign(campaign.app, &campaign.id);
        let json = serde_json::to_vec(campaign)
            .map_err(|error| corrupt(&key, &format!("campaign json: {error}")))?;
        let scheduled = self.keys.scheduled_campaigns();
        let member = index_member(campaign.app, &campaign.id);
        let mut pipeline = redis::pipe();
        pipeline
            .atomic()
            .hset_multiple(
                &key,
                &[
                    ("json", json),
                    ("state", state_name(campaign.state).as_bytes().to_vec()),
                ],
            )
            .ignore()
            .zadd(
                self.keys.app_campaigns(campaign.app),
                &campaign.id,
                campaign.created_at_ms,
            )
            .ignore();
        if campaign.state == CampaignState::Scheduled {
            pipeline.sadd(&scheduled, &member).ignore();
        } else {
            pipeline.srem(&scheduled, &member).ignore();
        }
        pipeline
            .exec_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("put campaign", &key, error))
    }

    async fn campaign(&self, app: AppId, id: &str) -> StoreResult<Option<CampaignRecord>> {
        let key = self.keys.campaign(app, id);
        let fields: HashMap<String, Vec<u8>> = self
            .connection()
            .hgetall(&key)
            .await
            .map_err(|error| redis_error("read campaign", &key, error))?;
        decode_campaign(&key, fields)
    }

    async fn app_campaigns(&self, app: AppId) -> StoreResult<Vec<CampaignRecord>> {
        let index = self.keys.app_campaigns(app);
        let ids: Vec<String> = self
            .connection()
            .zrange(&index, 0, -1)
            .await
            .map_err(|error| redis_error("list campaigns", &index, error))?;
        let keys: Vec<String> = ids.iter().map(|id| self.keys.campaign(app, id)).collect();
        let mut campaigns = self.campaigns_at(&keys).await?;
        // Sorted here rather than by Redis, so that both backends share one rule for ties.
        campaigns.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
        Ok(campaigns)
    }

    async fn transition_campaign(
        &self,
        app: AppId,
        id: &str,
        from: &[CampaignState],
        to: CampaignState,
    ) -> StoreResult<bool> {
        let key = self.keys.campaign(app, id);
        let mut invocation = scripts::TRANSITION_CAMPAIGN.key(&key);
        invocation
            .key(self.keys.scheduled_campaigns())
            .arg(state_name(to))
            .arg(index_member(app, id));
        for state in from {
            invocation.arg(state_name(*state));
        }
        invocation
            .invoke_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("transition campaign", &key, error))
    }

    async fn scheduled_campaigns(&self) -> StoreResult<Vec<CampaignRecord>> {
        let index = self.keys.scheduled_campaigns();
        let members: Vec<String> = self
            .connection()
            .smembers(&index)
            .await
            .map_err(|error| redis_error("list scheduled campaigns", &index, error))?;
        let keys = members
            .iter()
            .map(|member| {
                let (app, id) = member
                    .split_once(':')
                    .ok_or_else(|| corrupt(&index, &format!("bad member {member:?}")))?;
                let app: AppId = app
                    .parse()
                    .map_err(|error| corrupt(&index, &format!("member {member:?}: {error}")))?;
                Ok(self.keys.campaign(app, id))
            })
            .collect::<StoreResult<Vec<String>>>()?;
        let mut campaigns = self.campaigns_at(&keys).await?;
        // A campaign moved out of `Scheduled` between the two reads is left out.
        campaigns.retain(|campaign| campaign.state == CampaignState::Scheduled);
        campaigns.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Ok(campaigns)
    }

    async fn claim_firing(
        &self,
        campaign_id: &str,
        firing: &str,
        owner: &str,
        lease_ms: u64,
        now_ms: i64,
    ) -> StoreResult<Claim> {
        let key = self.keys.firing(campaign_id, firing);
        let reply: Vec<String> = scripts::CLAIM_FIRING
            .key(&key)
            .arg(owner)
            .arg(now_ms)
            .arg(now_ms.saturating_add_unsigned(lease_ms))
            .arg(FIRING_DONE_TTL_MS)
            .invoke_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("claim firing", &key, error))?;
        match reply.as_slice() {
            [outcome] if outcome == "claimed" => Ok(Claim::Claimed),
            [outcome] if outcome == "done" => Ok(Claim::Done),
            [outcome, holder] if outcome == "held" => Ok(Claim::HeldBy(holder.clone())),
            other => Err(corrupt(&key, &format!("claim script answered {other:?}"))),
        }
    }

    async fn renew_firing(
        &self,
        campaign_id: &str,
        firing: &str,
        owner: &str,
        lease_ms: u64,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let key = self.keys.firing(campaign_id, firing);
        let renewed: i64 = scripts::RENEW_FIRING
            .key(&key)
            .arg(owner)
            .arg(now_ms.saturating_add_unsigned(lease_ms))
            .arg(FIRING_DONE_TTL_MS)
            .invoke_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("renew firing", &key, error))?;
        Ok(renewed == 1)
    }

    async fn finish_firing(&self, campaign_id: &str, firing: &str) -> StoreResult<()> {
        let key = self.keys.firing(campaign_id, firing);
        let _: Value = redis::pipe()
            .atomic()
            .hset(&key, "state", "done")
            .ignore()
            .pexpire(&key, FIRING_DONE_TTL_MS as i64)
            .ignore()
            .query_async(&mut self.connection())
            .await
            .map_err(|error| redis_error("finish firing", &key, error))?;
        Ok(())
    }
}

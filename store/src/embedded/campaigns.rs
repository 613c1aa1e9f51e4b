//! Campaigns in the embedded store. Every change is one write transaction, so a campaign and
//! the index of scheduled campaigns always agree, and a claim is decided and written at once.
//! All integers big-endian.
//!
//! | table | key | value |
//! |---|---|---|
//! | `campaigns` | app id (8) ++ campaign id | JSON of `CampaignRecord` |
//! | `scheduled_campaigns` | app id (8) ++ campaign id | () |
//! | `campaign_firings` | campaign id length (4) ++ campaign id ++ firing name | expires_at (8) ++ state (1: `c` claimed, `d` done) ++ lease end (8) ++ owner |
//! | `campaign_firing_expiry` | expires_at (8) ++ firing key | (), to sweep old firings in expiry order |
//!
//! Firing records expire [`FIRING_DONE_TTL_MS`] after their last change, by the wall clock
//! (as Redis keys do), through the same record-and-sweep code as idempotency records.

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use ringpush_protocol::AppId;

use super::EmbeddedStore;
use super::idempotency::{live_record, put_record, sweep_expired};
use super::records::{corrupt, word};
use crate::campaigns::FIRING_DONE_TTL_MS;
use crate::{CampaignRecord, CampaignState, CampaignStore, Claim, StoreResult, now_ms};

const CAMPAIGNS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("campaigns");
const SCHEDULED: TableDefinition<&[u8], ()> = TableDefinition::new("scheduled_campaigns");
const FIRINGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("campaign_firings");
const FIRING_EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("campaign_firing_expiry");

/// State bytes of a firing record.
const CLAIMED: u8 = b'c';
const DONE: u8 = b'd';

pub(super) fn create_tables(transaction: &WriteTransaction) -> StoreResult<()> {
    transaction.open_table(CAMPAIGNS)?;
    transaction.open_table(SCHEDULED)?;
    transaction.open_table(FIRINGS)?;
    transaction.open_table(FIRING_EXPIRY)?;
    Ok(())
}

fn campaign_key(app: AppId, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + id.len());
    key.extend_from_slice(&app.0.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

fn firing_key(campaign_id: &str, firing: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + campaign_id.len() + firing.len());
    // Campaign ids are short; a length prefix keeps ("a", "bc") apart from ("ab", "c").
    key.extend_from_slice(&(campaign_id.len() as u32).to_be_bytes());
    key.extend_from_slice(campaign_id.as_bytes());
    key.extend_from_slice(firing.as_bytes());
    key
}

fn decode_campaign(value: &[u8]) -> StoreResult<CampaignRecord> {
    serde_json::from_slice(value)
        .map_err(|error| corrupt("campaigns", &format!("campaign json: {error}")))
}

fn encode_campaign(campaign: &CampaignRecord) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(campaign)
        .map_err(|error| corrupt("campaigns", &format!("campaign json: {error}")))
}

/// Writes a campaign and its place in the index of scheduled campaigns.
fn write_campaign(transaction: &WriteTransaction, campaign: &CampaignRecord) -> StoreResult<()> {
    let key = campaign_key(campaign.app, &campaign.id);
    transaction
        .open_table(CAMPAIGNS)?
        .insert(key.as_slice(), encode_campaign(campaign)?.as_slice())?;
    let mut scheduled = transaction.open_table(SCHEDULED)?;
    if campaign.state == CampaignState::Scheduled {
        scheduled.insert(key.as_slice(), ())?;
    } else {
        scheduled.remove(key.as_slice())?;
    }
    Ok(())
}

/// A firing record's data: state, lease end, owner.
fn firing_data(state: u8, until_ms: i64, owner: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(9 + owner.len());
    data.push(state);
    data.extend_from_slice(&until_ms.to_be_bytes());
    data.extend_from_slice(owner.as_bytes());
    data
}

/// A claim on a firing as written: its owner and the end of its lease.
struct Lease<'a> {
    owner: &'a str,
    until_ms: i64,
}

impl Lease<'_> {
    /// Writes the claim, kept [`FIRING_DONE_TTL_MS`] by the wall clock.
    fn put(&self, transaction: &WriteTransaction, key: &[u8], wall_now_ms: i64) -> StoreResult<()> {
        let mut firings = transaction.open_table(FIRINGS)?;
        let mut expiry = transaction.open_table(FIRING_EXPIRY)?;
        let kept_until_ms = wall_now_ms.saturating_add_unsigned(FIRING_DONE_TTL_MS);
        let data = firing_data(CLAIMED, self.until_ms, self.owner);
        put_record(&mut firings, &mut expiry, key, kept_until_ms, &data)
    }
}

/// Decides a claim from the firing's current record (its data, if live).
fn claim_outcome(current: Option<&[u8]>, now_ms: i64) -> StoreResult<Option<Claim>> {
    let Some(data) = current else {
        return Ok(None);
    };
    if data.len() < 9 {
        return Err(corrupt(
            "campaign_firings",
            "record shorter than its header",
        ));
    }
    match data[0] {
        DONE => Ok(Some(Claim::Done)),
        CLAIMED if i64::from_be_bytes(word(&data[1..9])) > now_ms => {
            let owner = String::from_utf8_lossy(&data[9..]).into_owned();
            Ok(Some(Claim::HeldBy(owner)))
        }
        CLAIMED => Ok(None),
        other => Err(corrupt(
            "campaign_firings",
            &format!("unknown state byte {other}"),
        )),
    }
}

#[async_trait]
impl CampaignStore for EmbeddedStore {
    async fn put_campaign(&self, campaign: &CampaignRecord) -> StoreResult<()> {
        let campaign = campaign.clone();
        self.write(move |transaction| write_campaign(transaction, &campaign))
            .await
    }

    async fn campaign(&self, app: AppId, id: &str) -> StoreResult<Option<CampaignRecord>> {
        let key = campaign_key(app, id);
        self.read(move |transaction| {
            let campaigns = transaction.open_table(CAMPAIGNS)?;
            let value = campaigns.get(key.as_slice())?;
            value
                .map(|value| decode_campaign(value.value()))
                .transpose()
        })
        .await
    }

    async fn app_campaigns(&self, app: AppId) -> StoreResult<Vec<CampaignRecord>> {
        self.read(move |transaction| {
            let campaigns = transaction.open_table(CAMPAIGNS)?;
            let prefix = app.0.to_be_bytes();
            let mut found = Vec::new();
            for entry in campaigns.range::<&[u8]>(prefix.as_slice()..)? {
                let (key, value) = entry?;
                if !key.value().starts_with(&prefix) {
                    break;
                }
                found.push(decode_campaign(value.value())?);
            }
            found.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
            Ok(found)
        })
        .await
    }

    async fn transition_campaign(
        &self,
        app: AppId,
        id: &str,
        from: &[CampaignState],
        to: CampaignState,
    ) -> StoreResult<bool> {
        let key = campaign_key(app, id);
        let from = from.to_vec();
        self.write(move |transaction| {
            let current = {
                let campaigns = transaction.open_table(CAMPAIGNS)?;
                let value = campaigns.get(key.as_slice())?;
                value
                    .map(|value| decode_campaign(value.value()))
                    .transpose()?
            };
            let Some(mut campaign) = current else {
                return Ok(false);
            };
            if !from.contains(&campaign.state) {
                return Ok(false);
            }
            campaign.state = to;
            write_campaign(transaction, &campaign)?;
            Ok(true)
        })
        .await
    }

    async fn scheduled_campaigns(&self) -> StoreResult<Vec<CampaignRecord>> {
        self.read(move |transaction| {
            let scheduled = transaction.open_table(SCHEDULED)?;
            let campaigns = transaction.open_table(CAMPAIGNS)?;
            let mut found = Vec::new();
            for entry in scheduled.iter()? {
                let (key, _) = entry?;
                let value = campaigns.get(key.value())?.ok_or_else(|| {
                    corrupt("scheduled_campaigns", "an indexed campaign is missing")
                })?;
                found.push(decode_campaign(value.value())?);
            }
            found.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
            Ok(found)
        })
        .await
    }

    async fn claim_firing(
        &self,
        campaign_id: &str,
        firing: &str,
        owner: &str,
        lease_ms: u64,
        now_ms: i64,
    ) -> StoreResult<Claim> {
        let key = firing_key(campaign_id, firing);
        let owner = owner.to_owned();
        self.write(move |transaction| {
            // Records are kept by the wall clock; leases are judged by the caller's clock.
            let wall_now_ms = crate::now_ms();
            let current = {
                let firings = transaction.open_table(FIRINGS)?;
                live_record(&firings, &key, wall_now_ms)?
            };
            if let Some(outcome) = claim_outcome(current.as_deref(), now_ms)? {
                return Ok(outcome);
            }
            let claim = Lease {
                owner: &owner,
                until_ms: now_ms.saturating_add_unsigned(lease_ms),
            };
            claim.put(transaction, &key, wall_now_ms)?;
            let mut firings = transaction.open_table(FIRINGS)?;
            let mut expiry = transaction.open_table(FIRING_EXPIRY)?;
            sweep_expired(&mut firings, &mut expiry, wall_now_ms)?;
            Ok(Claim::Claimed)
        })
        .await
    }

    async fn renew_firing(
        &self,
        campaign_id: &str,
        firing: &str,
        owner: &str,
        lease_ms: u64,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let key = firing_key(campaign_id, firing);
        let owner = owner.to_owned();
        self.write(move |transaction| {
            let wall_now_ms = crate::now_ms();
            let ours = {
                let firings = transaction.open_table(FIRINGS)?;
                live_record(&firings, &key, wall_now_ms)?.is_some_and(|data| {
                    data.len() >= 9 && data[0] == CLAIMED && &data[9..] == owner.as_bytes()
                })
            };
            if !ours {
                return Ok(false);
            }
            let claim = Lease {
                owner: &owner,
                until_ms: now_ms.saturating_add_unsigned(lease_ms),
            };
            claim.put(transaction, &key, wall_now_ms)?;
            Ok(true)
        })
        .await
    }

    async fn finish_firing(&self, campaign_id: &str, firing: &str) -> StoreResult<()> {
        let key = firing_key(campaign_id, firing);
        self.write(move |transaction| {
            let mut firings = transaction.open_table(FIRINGS)?;
            let mut expiry = transaction.open_table(FIRING_EXPIRY)?;
            let wall_now_ms = now_ms();
            let kept_until_ms = wall_now_ms.saturating_add_unsigned(FIRING_DONE_TTL_MS);
            let data = firing_data(DONE, 0, "");
            put_record(&mut firings, &mut expiry, &key, kept_until_ms, &data)?;
            sweep_expired(&mut firings, &mut expiry, wall_now_ms)?;
            Ok(())
        })
        .await
    }
}

//! Platform tokens, gateway settings and the queue of platform sends in the embedded store.
//!
//! | table | key | value |
//! |---|---|---|
//! | `platform_tokens` | device id (16) | JSON of `PlatformRegistration` |
//! | `app_gateways` | app id (8) | the app's gateway settings (JSON text, opaque) |
//! | `platform_jobs` | message id (text) | due at (8) ++ JSON of `PlatformJob` |
//! | `platform_due` | due at (8) ++ message id (text) | (), to claim jobs in due order |
//! | `platform_outcomes` | message id (text) | expires at (8) ++ JSON of `PlatformOutcome` |
//! | `platform_outcome_expiry` | expires at (8) ++ message id (text) | (), to sweep in expiry order |
//!
//! Times are milliseconds, big-endian, so that byte order is time order (times before the
//! epoch are not used). Expired outcomes are swept by each `record_platform_outcome`.

use async_trait::async_trait;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use ringpush_protocol::platform::PlatformToken;
use ringpush_protocol::{AppId, DeviceId, MessageId};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::EmbeddedStore;
use super::records::corrupt;
use crate::{
    PLATFORM_OUTCOME_TTL_MS, PlatformJob, PlatformOutcome, PlatformRegistration, PlatformStore,
    StoreResult, now_ms,
};

const TOKENS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("platform_tokens");
const APP_GATEWAYS: TableDefinition<&[u8; 8], &str> = TableDefinition::new("app_gateways");
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("platform_jobs");
const DUE: TableDefinition<&[u8], ()> = TableDefinition::new("platform_due");
const OUTCOMES: TableDefinition<&str, &[u8]> = TableDefinition::new("platform_outcomes");
const OUTCOME_EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("platform_outcome_expiry");

/// Expired outcomes removed per record, so that one write never sweeps without bound.
const SWEEP_PER_WRITE: usize = 64;

pub(super) fn create_tables(transaction: &WriteTransaction) -> StoreResult<()> {
    transaction.open_table(TOKENS)?;
    transaction.open_table(APP_GATEWAYS)?;
    transaction.open_table(JOBS)?;
    transaction.open_table(DUE)?;
    transaction.open_table(OUTCOMES)?;
    transaction.open_table(OUTCOME_EXPIRY)?;
    Ok(())
}

fn encode<T: Serialize>(table: &str, record: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(record).map_err(|error| corrupt(table, &format!("json: {error}")))
}

fn decode<T: DeserializeOwned>(table: &str, value: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(value).map_err(|error| corrupt(table, &format!("json: {error}")))
}

/// `time (8, big-endian) ++ text`: a key in time order.
fn timed_key(at_ms: i64, text: &str) -> Vec<u8> {
    let mut key = (at_ms.max(0) as u64).to_be_bytes().to_vec();
    key.extend_from_slice(text.as_bytes());
    key
}

/// Splits a value written as `time (8) ++ JSON`.
fn split_timed<'v>(table: &str, value: &'v [u8]) -> StoreResult<(i64, &'v [u8])> {
    if value.len() < 8 {
        return Err(corrupt(table, "value shorter than its time"));
    }
    let (time, rest) = value.split_at(8);
    let time = u64::from_be_bytes(time.try_into().expect("8 bytes")) as i64;
    Ok((time, rest))
}

/// Plans one job (replacing any for its message) in an open transaction.
fn schedule_in(
    jobs: &mut redb::Table<&str, &[u8]>,
    due: &mut redb::Table<&[u8], ()>,
    job: &PlatformJob,
    due_at_ms: i64,
) -> StoreResult<()> {
    let id = job.message.to_string();
    if let Some(previous) = jobs.get(id.as_str())? {
        let (previous_due, _) = split_timed("platform_jobs", previous.value())?;
        drop(previous);
        due.remove(timed_key(previous_due, &id).as_slice())?;
    }
    let mut value = (due_at_ms.max(0) as u64).to_be_bytes().to_vec();
    value.extend_from_slice(&encode("platform_jobs", job)?);
    jobs.insert(id.as_str(), value.as_slice())?;
    due.insert(timed_key(due_at_ms, &id).as_slice(), ())?;
    Ok(())
}

#[async_trait]
impl PlatformStore for EmbeddedStore {
    async fn set_platform_token(
        &self,
        device: DeviceId,
        registration: &PlatformRegistration,
    ) -> StoreResult<()> {
        let value = encode("platform_tokens", registration)?;
        self.write(move |transaction| {
            let mut tokens = transaction.open_table(TOKENS)?;
            tokens.insert(&device.0.to_be_bytes(), value.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn platform_token(&self, device: DeviceId) -> StoreResult<Option<PlatformRegistration>> {
        self.read(move |transaction| {
            let tokens = transaction.open_table(TOKENS)?;
            let value = tokens.get(&device.0.to_be_bytes())?;
            value
                .map(|value| decode("platform_tokens", value.value()))
                .transpose()
        })
        .await
    }

    async fn retire_platform_token(
        &self,
        device: DeviceId,
        token: &PlatformToken,
    ) -> StoreResult<bool> {
        let token = token.clone();
        self.write(move |transaction| {
            let mut tokens = transaction.open_table(TOKENS)?;
            let key = device.0.to_be_bytes();
            let current = match tokens.get(&key)? {
                Some(value) => Some(decode::<PlatformRegistration>(
                    "platform_tokens",
                    value.value(),
                )?),
                None => None,
            };
            if current.is_some_and(|current| current.token == token) {
                tokens.remove(&key)?;
                return Ok(true);
            }
            Ok(false)
        })
        .await
    }

    async fn set_app_gateways(&self, app: AppId, settings_json: &str) -> StoreResult<()> {
        let settings = settings_json.to_owned();
        self.write(move |transaction| {
            let mut gateways = transaction.open_table(APP_GATEWAYS)?;
            gateways.insert(&app.0.to_be_bytes(), settings.as_str())?;
            Ok(())
        })
        .await
    }

    async fn app_gateways(&self, app: AppId) -> StoreResult<Option<String>> {
        self.read(move |transaction| {
            let gateways = transaction.open_table(APP_GATEWAYS)?;
            let value = gateways.get(&app.0.to_be_bytes())?;
            Ok(value.map(|value| value.value().to_owned()))
        })
        .await
    }

    async fn schedule_platform_sends(&self, jobs: &[(PlatformJob, i64)]) -> StoreResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let planned = jobs.to_vec();
        self.write(move |transaction| {
            let mut jobs = transaction.open_table(JOBS)?;
            let mut due = transaction.open_table(DUE)?;
            for (job, due_at_ms) in &planned {
                schedule_in(&mut jobs, &mut due, job, *due_at_ms)?;
            }
            Ok(())
        })
        .await
    }

    async fn claim_platform_sends(
        &self,
        now_ms: i64,
        lease_ms: u64,
        limit: usize,
    ) -> StoreResult<Vec<PlatformJob>> {
        // Most polls find nothing due: answer those from a read, without a write (and its
        // fsync) every poll.
        let upper = timed_key(now_ms.saturating_add(1), "");
        let anything_due = self
            .read(move |transaction| {
                let due = transaction.open_table(DUE)?;
                Ok(due.range(..upper.as_slice())?.next().is_some())
            })
            .await?;
        if !anything_due {
            return Ok(Vec::new());
        }
        self.write(move |transaction| {
            let mut jobs = transaction.open_table(JOBS)?;
            let mut due = transaction.open_table(DUE)?;
            let upper = timed_key(now_ms.saturating_add(1), "");
            let mut due_ids = Vec::new();
            for entry in due.range(..upper.as_slice())?.take(limit.max(1)) {
                let (key, _) = entry?;
                let id = String::from_utf8_lossy(&key.value()[8..]).into_owned();
                due_ids.push(id);
            }
            let hidden_until = now_ms.saturating_add(lease_ms as i64);
            let mut claimed = Vec::with_capacity(due_ids.len());
            for id in due_ids {
                let job = match jobs.get(id.as_str())? {
                    Some(value) => {
                        let (_, json) = split_timed("platform_jobs", value.value())?;
                        decode::<PlatformJob>("platform_jobs", json)?
                    }
                    None => continue,
                };
                schedule_in(&mut jobs, &mut due, &job, hidden_until)?;
                claimed.push(job);
            }
            Ok(claimed)
        })
        .await
    }

    async fn finish_platform_send(&self, message: MessageId) -> StoreResult<()> {
        let id = message.to_string();
        self.write(move |transaction| {
            let mut jobs = transaction.open_table(JOBS)?;
            let mut due = transaction.open_table(DUE)?;
            let removed = jobs.remove(id.as_str())?;
            if let Some(value) = removed {
                let (due_at_ms, _) = split_timed("platform_jobs", value.value())?;
                let key = timed_key(due_at_ms, &id);
                drop(value);
                due.remove(key.as_slice())?;
            }
            Ok(())
        })
        .await
    }

    async fn pending_platform_sends(&self) -> StoreResult<u64> {
        self.read(move |transaction| Ok(transaction.open_table(JOBS)?.len()?))
            .await
    }

    async fn record_platform_outcome(
        &self,
        message: MessageId,
        outcome: &PlatformOutcome,
    ) -> StoreResult<()> {
        let id = message.to_string();
        let json = encode("platform_outcomes", outcome)?;
        self.write(move |transaction| {
            let mut outcomes = transaction.open_table(OUTCOMES)?;
            let mut expiry = transaction.open_table(OUTCOME_EXPIRY)?;
            let now = now_ms();
            let upper = timed_key(now.saturating_add(1), "");
            let mut expired = Vec::new();
            for entry in expiry.range(..upper.as_slice())?.take(SWEEP_PER_WRITE) {
                let (key, _) = entry?;
                expired.push(key.value().to_vec());
            }
            for key in expired {
                expiry.remove(key.as_slice())?;
                let expired_id = String::from_utf8_lossy(&key[8..]).into_owned();
                // Only if it was not recorded again since (a newer record has a later time).
                let still_old = match outcomes.get(expired_id.as_str())? {
                    Some(value) => split_timed("platform_outcomes", value.value())?.0 <= now,
                    None => false,
                };
                if still_old {
                    outcomes.remove(expired_id.as_str())?;
                }
            }
            let expires_at_ms = now.saturating_add(PLATFORM_OUTCOME_TTL_MS as i64);
            if let Some(previous) = outcomes.get(id.as_str())? {
                let (previous_expiry, _) = split_timed("platform_outcomes", previous.value())?;
                drop(previous);
                expiry.remove(timed_key(previous_expiry, &id).as_slice())?;
            }
            let mut value = (expires_at_ms as u64).to_be_bytes().to_vec();
            value.extend_from_slice(&json);
            outcomes.insert(id.as_str(), value.as_slice())?;
            expiry.insert(timed_key(expires_at_ms, &id).as_slice(), ())?;
            Ok(())
        })
        .await
    }

    async fn platform_outcome(&self, message: MessageId) -> StoreResult<Option<PlatformOutcome>> {
        let id = message.to_string();
        self.read(move |transaction| {
            let outcomes = transaction.open_table(OUTCOMES)?;
            let Some(value) = outcomes.get(id.as_str())? else {
                return Ok(None);
            };
            let (expires_at_ms, json) = split_timed("platform_outcomes", value.value())?;
            if expires_at_ms <= now_ms() {
                return Ok(None);
            }
            decode("platform_outcomes", json).map(Some)
        })
        .await
    }
}

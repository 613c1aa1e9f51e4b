//! The portal's operators and sessions in the embedded store.
//!
//! | table | key | value |
//! |---|---|---|
//! | `operators` | name (UTF-8) | JSON of `OperatorRecord` |
//! | `sessions` | SHA-256 of the session id (32) | JSON of `SessionRecord` |
//!
//! Sessions are not swept by a timer: a read ignores an expired one, and `create_session`
//! removes every session expired by the wall clock in the same transaction (a scan: sessions
//! are few, one per signed-in person).

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::EmbeddedStore;
use super::records::corrupt;
use crate::{OperatorRecord, OperatorStore, SessionRecord, StoreError, StoreResult, now_ms};

const OPERATORS: TableDefinition<&str, &[u8]> = TableDefinition::new("operators");
const SESSIONS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("sessions");

pub(super) fn create_tables(transaction: &WriteTransaction) -> StoreResult<()> {
    transaction.open_table(OPERATORS)?;
    transaction.open_table(SESSIONS)?;
    Ok(())
}

fn encode<T: Serialize>(table: &str, record: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(record).map_err(|error| corrupt(table, &format!("json: {error}")))
}

fn decode<T: DeserializeOwned>(table: &str, value: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(value).map_err(|error| corrupt(table, &format!("json: {error}")))
}

/// Whether a stored session is still live at `now_ms`; an unreadable one is kept (reading it
/// reports it).
fn live_at(value: &[u8], now_ms: i64) -> bool {
    decode::<SessionRecord>("sessions", value)
        .map_or(true, |session| session.expires_at_ms > now_ms)
}

#[async_trait]
impl OperatorStore for EmbeddedStore {
    async fn create_operator(&self, operator: &OperatorRecord) -> StoreResult<()> {
        let value = encode("operators", operator)?;
        let name = operator.name.clone();
        self.write(move |transaction| {
            let mut operators = transaction.open_table(OPERATORS)?;
            if operators.get(name.as_str())?.is_some() {
                return Err(StoreError::AlreadyExists(format!("operator {name}")));
            }
            operators.insert(name.as_str(), value.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn operator(&self, name: &str) -> StoreResult<Option<OperatorRecord>> {
        let name = name.to_owned();
        self.read(move |transaction| {
            let operators = transaction.open_table(OPERATORS)?;
            let value = operators.get(name.as_str())?;
            value
                .map(|value| decode("operators", value.value()))
                .transpose()
        })
        .await
    }

    async fn operators(&self) -> StoreResult<Vec<OperatorRecord>> {
        self.read(move |transaction| {
            let operators = transaction.open_table(OPERATORS)?;
            // Keys are names: the table is in name order already (bytewise, as `str` sorts).
            let mut found = Vec::new();
            for entry in operators.iter()? {
                let (_, value) = entry?;
                found.push(decode("operators", value.value())?);
            }
            Ok(found)
        })
        .await
    }

    async fn delete_operator(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_owned();
        self.write(move |transaction| {
            let mut operators = transaction.open_table(OPERATORS)?;
            let removed = operators.remove(name.as_str())?.is_some();
            Ok(removed)
        })
        .await
    }

    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()> {
        let value = encode("sessions", session)?;
        let id_hash = session.id_hash;
        let expires_at_ms = session.expires_at_ms;
        self.write(move |transaction| {
            let mut sessions = transaction.open_table(SESSIONS)?;
            let wall_now_ms = now_ms();
            sessions.retain(|_, value| live_at(value, wall_now_ms))?;
            if expires_at_ms > wall_now_ms {
                sessions.insert(&id_hash, value.as_slice())?;
            }
            Ok(())
        })
        .await
    }

    async fn session(&self, id_hash: &[u8; 32], now_ms: i64) -> StoreResult<Option<SessionRecord>> {
        let id_hash = *id_hash;
        self.read(move |transaction| {
            let sessions = transaction.open_table(SESSIONS)?;
            let Some(value) = sessions.get(&id_hash)? else {
                return Ok(None);
            };
            let session: SessionRecord = decode("sessions", value.value())?;
            Ok((session.expires_at_ms > now_ms).then_some(session))
        })
        .await
    }

    async fn delete_session(&self, id_hash: &[u8; 32]) -> StoreResult<()> {
        let id_hash = *id_hash;
        self.write(move |transaction| {
            transaction.open_table(SESSIONS)?.remove(&id_hash)?;
            Ok(())
        })
        .await
    }
}

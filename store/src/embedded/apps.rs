//! Apps and their keys in the embedded store: one `apps` row per app (layout in `records`),
//! changed by read-modify-write inside one write transaction, which redb runs one at a time:
//! a key add or revocation is atomic per app.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use ringpush_protocol::AppId;

use super::records::{self, APPS};
use crate::{AppKey, AppRecord, StoreError, StoreResult};

/// Stores a new app; `AlreadyExists` if its id is taken.
pub(super) fn create(transaction: &WriteTransaction, app: &AppRecord) -> StoreResult<()> {
    let mut apps = transaction.open_table(APPS)?;
    let key = app.id.0.to_be_bytes();
    if apps.get(&key)?.is_some() {
        return Err(StoreError::AlreadyExists(format!("app {}", app.id)));
    }
    apps.insert(&key, records::encode_app(app)?.as_slice())?;
    Ok(())
}

/// The app with this id, in a read transaction.
pub(super) fn read(transaction: &ReadTransaction, id: AppId) -> StoreResult<Option<AppRecord>> {
    let apps = transaction.open_table(APPS)?;
    let value = apps.get(&id.0.to_be_bytes())?;
    value
        .map(|value| records::decode_app(id, value.value()))
        .transpose()
}

/// Every app, oldest first (then by id).
pub(super) fn all(transaction: &ReadTransaction) -> StoreResult<Vec<AppRecord>> {
    let apps = transaction.open_table(APPS)?;
    let mut found = Vec::new();
    for entry in apps.iter()? {
        let (key, value) = entry?;
        let id = AppId(u64::from_be_bytes(*key.value()));
        found.push(records::decode_app(id, value.value())?);
    }
    found.sort_by_key(|app| (app.created_at_ms, app.id));
    Ok(found)
}

/// Changes one app in place: `change` edits the record and answers whether to write it back.
/// Answers `false` for an unknown app, else what `change` answered.
pub(super) fn update(
    transaction: &WriteTransaction,
    id: AppId,
    change: impl FnOnce(&mut AppRecord) -> StoreResult<bool>,
) -> StoreResult<bool> {
    let mut apps = transaction.open_table(APPS)?;
    let key = id.0.to_be_bytes();
    let current = apps
        .get(&key)?
        .map(|value| records::decode_app(id, value.value()))
        .transpose()?;
    let Some(mut app) = current else {
        return Ok(false);
    };
    if !change(&mut app)? {
        return Ok(false);
    }
    apps.insert(&key, records::encode_app(&app)?.as_slice())?;
    Ok(true)
}

/// Appends `key` to the app's keys; `AlreadyExists` if its id is taken.
pub(super) fn add_key(app: &mut AppRecord, key: &AppKey) -> StoreResult<bool> {
    if app.keys.iter().any(|existing| existing.id == key.id) {
        return Err(StoreError::AlreadyExists(format!(
            "key {} of app {}",
            key.id, app.id
        )));
    }
    app.keys.push(key.clone());
    Ok(true)
}

/// Revokes the live key `key_id` at `now_ms`; `false` if there is none.
pub(super) fn revoke_key(app: &mut AppRecord, key_id: &str, now_ms: i64) -> bool {
    match app
        .keys
        .iter_mut()
        .find(|key| key.id == key_id && key.revoked_at_ms.is_none())
    {
        Some(key) => {
            key.revoked_at_ms = Some(now_ms);
            true
        }
        None => false,
    }
}

//! Sealing a unicast send for an app with `payload_sealing`: each message's payload, content
//! type and notification become one envelope sealed to its device's key
//! (`ringpush_protocol::seal`), before anything is written, so that the store and the
//! connectors only ever hold ciphertext. Routing fields (expiry, collapse key, priority,
//! campaign) stay in the clear.
//!
//! Does not own: the cryptography (the protocol crate), which apps seal (their record).

use std::collections::HashSet;

use ringpush_protocol::DeviceId;
use ringpush_protocol::device::SealedContent;
use ringpush_protocol::seal;
use ringpush_store::{AppRecord, ContentType, DeviceSealing, NewMessage};

use crate::ControllerState;
use crate::error::ApiError;

/// Messages sealed on the request's task; larger sends are sealed on a blocking thread (each
/// seal costs two X25519 operations, tens of microseconds).
const SEAL_INLINE_MAX: usize = 16;

impl ControllerState {
    /// Seals every message of `messages` to its device. Fails, sealing nothing, if a device
    /// registered without a key.
    pub(crate) async fn seal_messages(
        &self,
        app: &AppRecord,
        messages: &mut Vec<NewMessage>,
    ) -> Result<(), ApiError> {
        let devices: Vec<DeviceId> = messages.iter().map(|message| message.device).collect();
        let keys = self.sealing_keys(app, &devices).await?;
        if messages.len() <= SEAL_INLINE_MAX {
            return seal_all(messages, &keys);
        }
        let mut owned = std::mem::take(messages);
        let (sealed, outcome) = tokio::task::spawn_blocking(move || {
            let outcome = seal_all(&mut owned, &keys);
            (owned, outcome)
        })
        .await
        .map_err(|error| ApiError::Internal(format!("sealing task: {error}")))?;
        *messages = sealed;
        outcome
    }

    /// The sealing key of each device, in order, reading the records not seen before.
    async fn sealing_keys(
        &self,
        app: &AppRecord,
        devices: &[DeviceId],
    ) -> Result<Vec<DeviceSealing>, ApiError> {
        let unread: Vec<DeviceId> = self
            .device_owners
            .sealing(devices)
            .iter()
            .zip(devices)
            .filter(|(known, _)| known.is_none())
            .map(|(_, device)| *device)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let records =
            futures_util::future::try_join_all(unread.iter().map(|id| self.store.device(*id)))
                .await?;
        for record in records.into_iter().flatten() {
            if record.app == app.id {
                self.device_owners.remember(&record);
            }
        }
        let known = self.device_owners.sealing(devices);
        let mut keys = Vec::with_capacity(devices.len());
        let mut keyless = Vec::new();
        for (device, known) in devices.iter().zip(known) {
            match known.flatten() {
                Some(key) => keys.push(key),
                None => keyless.push(device.to_string()),
            }
        }
        if keyless.is_empty() {
            return Ok(keys);
        }
        keyless.sort_unstable();
        keyless.dedup();
        let count = keyless.len();
        keyless.truncate(10);
        Err(ApiError::Conflict(format!(
            "this app seals payloads, and {count} device(s) registered without a sealing key \
             cannot read them (nothing was sent): {}{}",
            keyless.join(", "),
            if count > 10 { ", …" } else { "" }
        )))
    }
}

/// Seals each message to the key at the same index.
fn seal_all(messages: &mut [NewMessage], keys: &[DeviceSealing]) -> Result<(), ApiError> {
    for (message, key) in messages.iter_mut().zip(keys) {
        let content = SealedContent {
            payload: std::mem::take(&mut message.payload),
            content_type: message.content_type.mime().to_owned(),
            notification: message
                .options
                .notification
                .take()
                .map(|notification| notification.to_frame()),
        };
        let recipient = seal::PublicKey(key.public_key);
        message.payload = seal::seal(&recipient, message.device, &content, key.lz4)
            .map_err(|error| ApiError::Internal(format!("device {}: {error}", message.device)))?;
        message.content_type = ContentType::Sealed;
    }
    Ok(())
}

//! The send path, shared by the REST API and the campaign scheduler: resolve the target,
//! write ahead (inboxes for devices, the app's timeline for audiences), count the targets,
//! then hand the message to the connectors.

use std::collections::HashSet;

use ringpush_audience::Audience;
use ringpush_protocol::device::Push;
use ringpush_protocol::{DeviceId, MessageId};
use ringpush_store::{AppRecord, Counter, NewMessage, NewTimelineEntry, StatIncrement, now_ms};
use sha2::Digest;

use crate::ControllerState;
use crate::audience_scan;
use crate::delivery::Outgoing;
use crate::error::ApiError;
use crate::target::{Send, Target};

/// Audience messages kept per app timeline; the oldest are dropped past it.
pub const MAX_TIMELINE_LEN: u32 = 10_000;

/// What a send is part of.
#[derive(Debug, Clone, Default)]
pub struct SendContext {
    /// The idempotency key, already scoped to the app: a retry with it adds nothing.
    pub idempotency_key: Option<String>,
    /// The campaign the send belongs to.
    pub campaign_id: Option<String>,
    /// Deliveries per second at most.
    pub throttle_per_second: Option<u32>,
}

/// What a send did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// One message per device, in target order.
    Unicast { message_ids: Vec<String> },
    /// One message for the whole audience.
    Audience {
        message_id: String,
        /// Devices registered in the app that match the audience now.
        targeted: u64,
    },
}

impl ControllerState {
    /// Sends `send` for `app`. Everything is durable before this returns; live delivery is
    /// under way.
    pub async fn execute_send(
        &self,
        app: &AppRecord,
        send: Send,
        context: SendContext,
    ) -> Result<Sent, ApiError> {
        match send.target.clone() {
            Target::Devices(devices) => {
                self.check_devices_belong(app, &devices).await?;
                self.send_unicast(app, devices, send, context).await
            }
            Target::Aliases(aliases) => {
                let devices = self.resolve_aliases(app, &aliases).await?;
                self.send_unicast(app, devices, send, context).await
            }
            Target::Audience(audience) => self.send_audience(app, audience, send, context).await,
        }
    }

    /// How many devices a target reaches now.
    pub async fn reach(&self, app: &AppRecord, target: &Target) -> Result<u64, ApiError> {
        match target {
            Target::Devices(devices) => Ok(devices.iter().collect::<HashSet<_>>().len() as u64),
            Target::Aliases(aliases) => Ok(self.resolve_aliases(app, aliases).await?.len() as u64),
            Target::Audience(audience) => self.audience_reach(app, audience).await,
        }
    }

    async fn send_unicast(
        &self,
        app: &AppRecord,
        devices: Vec<DeviceId>,
        send: Send,
        context: SendContext,
    ) -> Result<Sent, ApiError> {
        let created_at_ms = now_ms();
        let expires_at_ms = created_at_ms + (send.ttl_seconds * 1000) as i64;
        let messages: Vec<NewMessage> = devices
            .iter()
            .enumerate()
            .map(|(index, device)| NewMessage {
                device: *device,
                payload: send.payload.clone(),
                content_type: send.content_type,
                created_at_ms,
                expires_at_ms,
                // One key per message of the request, so two messages to the same device in
                // one request stay two messages on a retry.
                idempotency_key: context
                    .idempotency_key
                    .as_ref()
                    .map(|key| format!("{key}:{index}")),
                options: send.options.clone(),
                campaign_id: context.campaign_id.clone(),
            })
            .collect();
        // A paced send goes out over seconds: a presence read now would be stale by then.
        let hinted: &[DeviceId] = match context.throttle_per_second {
            None => &devices,
            Some(_) => &[],
        };
        let (appended, presences) = tokio::join!(
            self.store.append(&messages, self.config.inbox),
            self.delivery.presences(hinted)
        );
        let appended = appended?;
        let dropped: u64 = appended.iter().map(|a| u64::from(a.dropped)).sum();
        if dropped > 0 {
            metrics::counter!("ringpush_inbox_dropped_total").increment(dropped);
        }
        let new = appended.iter().filter(|a| !a.duplicate).count() as u64;
        metrics::counter!("ringpush_controller_messages_accepted_total").increment(new);
        if let Some(campaign) = &context.campaign_id {
            self.count(app, campaign, Counter::Targeted, new).await;
        }

        let mut message_ids = Vec::with_capacity(messages.len());
        let mut outgoing = Vec::with_capacity(messages.len());
        let presences = presences.into_iter().chain(std::iter::repeat(None));
        for ((message, appended), presence) in messages.into_iter().zip(&appended).zip(presences) {
            let id = MessageId {
                device: message.device,
                seq: appended.seq,
            }
            .to_string();
            message_ids.push(id.clone());
            let mut push = Push {
                message_id: id,
                seq: appended.seq,
                payload: message.payload,
                content_type: send.content_type.mime().to_owned(),
                created_at_ms,
                expires_at_ms,
                stream: 0,
                campaign_id: context.campaign_id.clone().unwrap_or_default(),
                ..Push::default()
            };
            message.options.apply_to(&mut push);
            outgoing.push(Outgoing::new(message.device, push).with_presence_hint(presence));
        }
        match context.throttle_per_second {
            Some(rate) => self.delivery.send_paced(outgoing, rate).await,
            None => self.delivery.send(outgoing).await,
        }
        Ok(Sent::Unicast { message_ids })
    }

    async fn send_audience(
        &self,
        app: &AppRecord,
        audience: Audience,
        send: Send,
        context: SendContext,
    ) -> Result<Sent, ApiError> {
        let message_id = audience_message_id(context.idempotency_key.as_deref());
        let created_at_ms = now_ms();
        let expires_at_ms = created_at_ms + (send.ttl_seconds * 1000) as i64;
        let entry = NewTimelineEntry {
            message_id: message_id.clone(),
            audience: audience.to_string(),
            payload: send.payload.clone(),
            content_type: send.content_type,
            created_at_ms,
            expires_at_ms,
            campaign_id: context.campaign_id.clone(),
            idempotency_key: context.idempotency_key.clone(),
            options: send.options.clone(),
        };
        let appended = self
            .store
            .timelines()
            .append_timeline(app.id, &entry, MAX_TIMELINE_LEN)
            .await?;
        // Read after the append (see `DeliveryRouter::current_members`); the one registry
        // scan counts the reach and, for a throttled send, each connector's part of it.
        let members = self.delivery.current_members().await;
        let ring_members = if context.throttle_per_second.is_some() {
            members.as_slice()
        } else {
            &[]
        };
        let scan = audience_scan::scan(
            self.store.as_ref(),
            app.id,
            &audience,
            ring_members,
            self.delivery.vnodes(),
        )
        .await?;
        let targeted = scan.reach;
        if !appended.duplicate {
            metrics::counter!("ringpush_controller_audience_messages_total").increment(1);
            self.count(app, &message_id, Counter::Targeted, targeted)
                .await;
            if let Some(campaign) = &context.campaign_id {
                self.count(app, campaign, Counter::Targeted, targeted).await;
            }
        }
        let mut push = Push {
            message_id: message_id.clone(),
            seq: appended.seq,
            payload: send.payload,
            content_type: send.content_type.mime().to_owned(),
            created_at_ms,
            expires_at_ms,
            stream: 1,
            campaign_id: context.campaign_id.clone().unwrap_or_default(),
            ..Push::default()
        };
        send.options.apply_to(&mut push);
        self.delivery
            .broadcast(
                &members,
                &scan.per_member,
                app.id,
                &entry.audience,
                push,
                context.throttle_per_second,
            )
            .await;
        Ok(Sent::Audience {
            message_id,
            targeted,
        })
    }

    /// Counts the app's registered devices whose attributes match `audience`.
    async fn audience_reach(&self, app: &AppRecord, audience: &Audience) -> Result<u64, ApiError> {
        let scan = audience_scan::scan(self.store.as_ref(), app.id, audience, &[], 0).await?;
        Ok(scan.reach)
    }

    /// The devices of the app's users with these aliases, in alias order, without repeats.
    pub(crate) async fn resolve_aliases(
        &self,
        app: &AppRecord,
        aliases: &[String],
    ) -> Result<Vec<DeviceId>, ApiError> {
        let registry = self.store.registry();
        let found = futures_util::future::try_join_all(
            aliases
                .iter()
                .map(|alias| registry.devices_with_alias(app.id, alias)),
        )
        .await?;
        let mut seen = HashSet::new();
        let devices: Vec<DeviceId> = found
            .into_iter()
            .flatten()
            .filter(|device| seen.insert(*device))
            .collect();
        if devices.is_empty() {
            return Err(ApiError::UnknownDevices(format!(
                "no device has the aliases {}",
                aliases.join(", ")
            )));
        }
        Ok(devices)
    }

    async fn check_devices_belong(
        &self,
        app: &AppRecord,
        devices: &[DeviceId],
    ) -> Result<(), ApiError> {
        let unique: Vec<DeviceId> = devices
            .iter()
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let unconfirmed = self.device_owners.unconfirmed(app.id, &unique);
        let records =
            futures_util::future::try_join_all(unconfirmed.iter().map(|id| self.store.device(*id)))
                .await?;
        let mut unknown = Vec::new();
        for (id, record) in unconfirmed.iter().zip(records) {
            match record {
                Some(record) if record.app == app.id => self.device_owners.remember(*id, app.id),
                _ => unknown.push(id.to_string()),
            }
        }
        if unknown.is_empty() {
            return Ok(());
        }
        let mut listed = unknown
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if unknown.len() > 10 {
            listed.push_str(&format!(" and {} more", unknown.len() - 10));
        }
        Err(ApiError::UnknownDevices(listed))
    }

    /// Adds to a statistic; a failure is logged, never fails the send (the message is durable).
    async fn count(&self, app: &AppRecord, subject: &str, counter: Counter, by: u64) {
        if by == 0 {
            return;
        }
        let increment = StatIncrement {
            app: app.id,
            subject: subject.to_owned(),
            counter,
            minute: now_ms() / 60_000,
            by,
        };
        if let Err(error) = self.store.stats().add_stats(&[increment]).await {
            tracing::warn!(app_id = %app.id, subject, %error, "could not count a statistic");
        }
    }
}

/// The id of an audience message: derived from the idempotency key when there is one, so a
/// retried request answers the same id; random otherwise.
fn audience_message_id(idempotency_key: Option<&str>) -> String {
    let bytes: [u8; 16] = match idempotency_key {
        Some(key) => sha2::Sha256::digest(key.as_bytes())[..16]
            .try_into()
            .expect("16 bytes"),
        None => rand::random(),
    };
    format!("aud_{}", hex::encode(bytes))
}

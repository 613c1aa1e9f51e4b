//! The send path, shared by the REST API and the campaign scheduler: resolve the target,
//! write ahead (inboxes for devices, the app's timeline for audiences), count the targets,
//! then hand the message to the connectors.

use std::collections::HashSet;

use ringpush_audience::Audience;
use ringpush_protocol::DeviceId;
use ringpush_protocol::device::Push;
use ringpush_store::{
    AppRecord, Appended, Counter, Holding, NewMessage, NewTimelineEntry, Priority, StatIncrement,
    StoredMessage, Written, now_ms,
};
use sha2::Digest;

use crate::ControllerState;
use crate::audience_scan;
use crate::delivery::Outgoing;
use crate::error::ApiError;
use crate::platform::PlannedMessage;
use crate::target::{Send, Target};

/// Audience messages kept per app timeline; the oldest are dropped past it.
pub const MAX_TIMELINE_LEN: u32 = 10_000;

/// Why an app that seals payloads cannot send to an audience.
pub const AUDIENCE_NOT_SEALABLE: &str = "this app seals payloads to each device's key, and an \
    audience message is stored once for all its devices, so it cannot be sealed: send to \
    device ids or aliases instead";

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
    Unicast {
        message_ids: Vec<String>,
        /// The ids among them of messages held in this region for an unreachable home.
        held: Vec<String>,
    },
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
            Target::Audience(_) if app.payload_sealing => {
                Err(ApiError::Conflict(AUDIENCE_NOT_SEALABLE.into()))
            }
            Target::Audience(audience) => self.send_audience(app, audience, send, context).await,
        }
    }

    /// Charges a REST send to its app's quota: one per device id or alias of a unicast
    /// target (an alias is charged once, however many devices it names, as aliases resolve
    /// after the charge), one for an audience message. Refused (429), nothing is charged.
    pub(crate) fn take_send_quota(&self, app: &AppRecord, target: &Target) -> Result<(), ApiError> {
        let Some(quotas) = &self.send_quotas else {
            return Ok(());
        };
        let cost = match target {
            Target::Devices(devices) => devices.len(),
            Target::Aliases(aliases) => aliases.len(),
            Target::Audience(_) => 1,
        };
        let mut quotas = quotas.lock().expect("send quota lock poisoned");
        let rate = quotas.rate();
        quotas
            .take(&app.id, cost as f64, std::time::Instant::now())
            .map_err(|wait| {
                metrics::counter!("ringpush_controller_sends_over_quota_total").increment(1);
                ApiError::QuotaExceeded {
                    per_second: rate.per_second,
                    burst: rate.burst,
                    retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
                }
            })
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
        let mut messages: Vec<NewMessage> = devices
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
        if app.payload_sealing {
            self.seal_messages(app, &mut messages).await?;
        }
        // Messages for a home region that holds messages here go behind them, unread: no
        // presence read there either (it would wait for the unreachable region). A paced
        // send goes out over seconds: a presence read now would be stale by then.
        let holding = self.holding(&messages).await?;
        let lookups: Vec<DeviceId> = match context.throttle_per_second {
            None => messages
                .iter()
                .map(|message| message.device)
                .filter(|device| !holding.holds(*device))
                .collect(),
            Some(_) => Vec::new(),
        };
        // Which devices may also be reached through a platform service: their tokens are
        // read while the messages are written.
        let platform_route = self.platform_route(app, send.route).await;
        let platform_devices: &[DeviceId] = match platform_route {
            Some(_) => &devices,
            None => &[],
        };
        let (written, presences, with_platform_token) = tokio::join!(
            self.write_ahead(&mut messages, &holding),
            self.delivery.presences(&lookups),
            self.devices_with_platform_tokens(platform_devices)
        );
        let written = written?;
        let dropped: u64 = written
            .iter()
            .filter_map(appended_of)
            .map(|a| u64::from(a.dropped))
            .sum();
        if dropped > 0 {
            metrics::counter!("ringpush_inbox_dropped_total").increment(dropped);
        }
        let new = written
            .iter()
            .filter(|w| appended_of(w).is_none_or(|a| !a.duplicate))
            .count() as u64;
        metrics::counter!("ringpush_controller_messages_accepted_total").increment(new);
        if let Some(campaign) = &context.campaign_id {
            self.count(app, campaign, Counter::Targeted, new).await;
        }

        let mut message_ids = Vec::with_capacity(messages.len());
        let mut held = Vec::new();
        let mut outgoing = Vec::with_capacity(messages.len());
        let mut platform_bound = Vec::new();
        let mut presences = presences.into_iter();
        for (message, written) in messages.into_iter().zip(written) {
            // In step with `lookups`.
            let presence =
                match context.throttle_per_second.is_none() && !holding.holds(message.device) {
                    true => presences.next().flatten(),
                    false => None,
                };
            let appended = match written {
                Written::Appended(appended) => appended,
                Written::Held(id) => {
                    let id = id.to_string();
                    message_ids.push(id.clone());
                    held.push(id);
                    continue;
                }
            };
            if !appended.duplicate && with_platform_token.contains(&message.device) {
                platform_bound.push(PlannedMessage {
                    device: message.device,
                    seq: appended.seq,
                    high_priority: message.options.priority == Priority::High,
                });
            }
            let message = outgoing_message(message, appended.seq).with_presence_hint(presence);
            message_ids.push(message.push.message_id.clone());
            outgoing.push(message);
        }
        let live = async {
            match context.throttle_per_second {
                Some(rate) => self.delivery.send_paced(outgoing, rate).await,
                None => self.delivery.send(outgoing).await,
            }
        };
        let planned = async {
            if let Some(route) = platform_route {
                self.plan_platform_sends(app, route, &platform_bound).await;
            }
        };
        tokio::join!(live, planned);
        Ok(Sent::Unicast { message_ids, held })
    }

    /// Across regions, which homes of `messages` hold messages in this region now.
    async fn holding(&self, messages: &[NewMessage]) -> Result<Holding, ApiError> {
        match &self.regional {
            Some(regional) => Ok(regional.holding(messages.iter().map(|m| m.device)).await?),
            None => Ok(Holding::default()),
        }
    }

    /// Writes `messages` ahead: to their home inboxes, or across regions held here for a
    /// home that does not answer (see `ringpush_store::HeldId`).
    async fn write_ahead(
        &self,
        messages: &mut [NewMessage],
        holding: &Holding,
    ) -> Result<Vec<Written>, ApiError> {
        let written = match &self.regional {
            Some(regional) => {
                regional
                    .write_ahead(messages, holding, self.config.inbox)
                    .await?
            }
            None => self
                .store
                .append(messages, self.config.inbox)
                .await?
                .into_iter()
                .map(Written::Appended)
                .collect(),
        };
        Ok(written)
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

    pub(crate) async fn check_devices_belong(
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
                Some(record) if record.app == app.id => self.device_owners.remember(&record),
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

/// The live copy of a message now in its device's inbox under `seq`.
pub(crate) fn outgoing_message(message: NewMessage, seq: u64) -> Outgoing {
    let device = message.device;
    let stored = StoredMessage {
        seq,
        payload: message.payload,
        content_type: message.content_type,
        created_at_ms: message.created_at_ms,
        expires_at_ms: message.expires_at_ms,
        options: message.options,
        campaign_id: message.campaign_id,
    };
    Outgoing::new(device, stored.into_push(device))
}

fn appended_of(written: &Written) -> Option<&Appended> {
    match written {
        Written::Appended(appended) => Some(appended),
        Written::Held(_) => None,
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

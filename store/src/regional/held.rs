//! Hinted hand-off: a message for a device whose home region cannot be reached is held in
//! this region's store, in one queue per home region, and handed home in order once the home
//! answers again. Nothing accepted is lost, and nothing is written twice:
//!
//! - every message bound for another region carries an idempotency key (one is made up when
//!   the caller gave none) before its first attempt, so a write that reached the home but
//!   whose answer was lost is recognised when the held copy is handed home;
//! - while a home has messages held here, later messages for it are held behind them (a
//!   sender's messages to one device keep their order); the queue is this region's store, so
//!   every controller of the region sees it;
//! - a queue is an inbox of a reserved id in this region's store ([`RegionalStore::queue_of`]):
//!   appends are durable and sequenced, a hand-off acks what it moved (cumulative), and a
//!   hand-off that dies between the home's write and the ack is repeated harmlessly (the
//!   home answers the repeats as duplicates).
//!
//! What this does not do: deliver a held message to a device connected here (its seq in the
//! home inbox is not known until the hand-off), or hold messages for a home that is this
//! region (its store down means the region is down: the send fails).

use std::fmt;
use std::str::FromStr;

use ringpush_protocol::{DeviceId, RegionCode};
use serde::{Deserialize, Serialize};

use super::RegionalStore;
use crate::{
    Appended, ContentType, InboxLimits, MessageOptions, NewMessage, StoreError, StoreResult, now_ms,
};

/// Messages held here for one home region at most; past it a send to that region fails
/// (nothing is dropped).
pub const MAX_HELD_PER_HOME: u64 = 1_000_000;

/// The queue's own inbox cap, above [`MAX_HELD_PER_HOME`] so that concurrent holds racing
/// past the check are kept, not dropped.
const QUEUE_INBOX_LEN: u32 = 2 * MAX_HELD_PER_HOME as u32;

/// The bytes between a queue id's region codes: no id made by `DeviceId::random_in` is
/// expected to have them all set.
const QUEUE_MARK: u128 = 0x00ff_ffff_ffff_ffff_ffff_ffff_ffff_ff00;

/// What the write ahead of one message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// In its home inbox, with this seq.
    Appended(Appended),
    /// Held here until its home answers.
    Held(HeldId),
}

/// A held message: `held_<device>_<held in>_<home>_<seq in the queue>` (codes in decimal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldId {
    pub device: DeviceId,
    /// The region whose store holds the message.
    pub held_in: RegionCode,
    /// The device's home.
    pub home: RegionCode,
    /// Its place in the queue.
    pub seq: u64,
}

impl fmt::Display for HeldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "held_{}_{}_{}_{}",
            self.device, self.held_in.0, self.home.0, self.seq
        )
    }
}

impl FromStr for HeldId {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let mut parts = text.strip_prefix("held_").ok_or(())?.split('_');
        let mut next = || parts.next().ok_or(());
        let device = next()?.parse().map_err(|_| ())?;
        let held_in = RegionCode(next()?.parse().map_err(|_| ())?);
        let home = RegionCode(next()?.parse().map_err(|_| ())?);
        let seq = next()?.parse().map_err(|_| ())?;
        if parts.next().is_some() {
            return Err(());
        }
        Ok(Self {
            device,
            held_in,
            home,
            seq,
        })
    }
}

/// Where a held message is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldStatus {
    /// Still waiting for its home region.
    Held,
    /// Written to its home inbox (its status there is the device's).
    HandedHome,
    /// Its TTL passed while it was held.
    Expired,
}

/// A message moved home by [`RegionalStore::hand_off`].
#[derive(Debug, Clone)]
pub struct HandedOff {
    pub held: HeldId,
    pub message: NewMessage,
    /// What the home's inbox answered (`duplicate` when an earlier attempt had landed).
    pub appended: Appended,
}

/// Which remote homes of a batch hold messages here now, and how many: see
/// [`RegionalStore::holding`].
#[derive(Debug, Clone, Default)]
pub struct Holding {
    homes: Vec<(RegionCode, u64)>,
}

impl Holding {
    /// Whether messages to `device` must be held (its home has messages held here).
    pub fn holds(&self, device: DeviceId) -> bool {
        let code = device.region_code();
        self.homes.iter().any(|(home, _)| *home == code)
    }

    fn count(&self, home: RegionCode) -> u64 {
        self.homes
            .iter()
            .find(|(code, _)| *code == home)
            .map_or(0, |(_, held)| *held)
    }
}

/// The held form of a message: everything of it but the payload, then the payload.
#[derive(Serialize, Deserialize)]
struct Envelope {
    device: String,
    content_type: ContentType,
    created_at_ms: i64,
    expires_at_ms: i64,
    idempotency_key: Option<String>,
    options: MessageOptions,
    campaign_id: Option<String>,
}

/// The queue in `held_in`'s store of messages held there for `home`: an id whose top byte is
/// `held_in`'s code (it lives in that region's store) and whose last is `home`'s.
fn queue_id(held_in: RegionCode, home: RegionCode) -> DeviceId {
    DeviceId((u128::from(held_in.0) << 120) | QUEUE_MARK | u128::from(home.0))
}

fn seal(message: &NewMessage) -> Vec<u8> {
    let header = serde_json::to_vec(&Envelope {
        device: message.device.to_string(),
        content_type: message.content_type,
        created_at_ms: message.created_at_ms,
        expires_at_ms: message.expires_at_ms,
        idempotency_key: message.idempotency_key.clone(),
        options: message.options.clone(),
        campaign_id: message.campaign_id.clone(),
    })
    .expect("an envelope serializes");
    let mut bytes = Vec::with_capacity(4 + header.len() + message.payload.len());
    bytes.extend_from_slice(&(header.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&message.payload);
    bytes
}

fn unseal(queue: DeviceId, seq: u64, bytes: &[u8]) -> StoreResult<NewMessage> {
    let corrupt = |detail: String| StoreError::Corrupt {
        key: format!("held queue {queue} seq {seq}"),
        detail,
    };
    let (len, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("shorter than its header length".into()))?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(corrupt("shorter than its header".into()));
    }
    let (header, payload) = rest.split_at(len);
    let envelope: Envelope =
        serde_json::from_slice(header).map_err(|error| corrupt(error.to_string()))?;
    Ok(NewMessage {
        device: envelope
            .device
            .parse()
            .map_err(|_| corrupt("bad device id".into()))?,
        payload: payload.to_vec(),
        content_type: envelope.content_type,
        created_at_ms: envelope.created_at_ms,
        expires_at_ms: envelope.expires_at_ms,
        idempotency_key: envelope.idempotency_key,
        options: envelope.options,
        campaign_id: envelope.campaign_id,
    })
}

impl RegionalStore {
    /// The queue (an inbox in this region's store) of messages held here for `home`.
    pub fn queue_of(&self, home: RegionCode) -> DeviceId {
        queue_id(self.local_region().code, home)
    }

    fn is_remote(&self, home: RegionCode) -> bool {
        home != self.local_region().code && self.regions().iter().any(|r| r.code == home)
    }

    /// Reads, for the remote homes of `devices`, how many messages are held here for them;
    /// the homes with none are left out.
    pub async fn holding(
        &self,
        devices: impl IntoIterator<Item = DeviceId>,
    ) -> StoreResult<Holding> {
        let mut homes: Vec<RegionCode> = Vec::new();
        for device in devices {
            let code = device.region_code();
            if self.is_remote(code) && !homes.contains(&code) {
                homes.push(code);
            }
        }
        let now = now_ms();
        let reads = homes
            .iter()
            .map(|home| self.local().inbox_state(self.queue_of(*home), now));
        let states = futures_util::future::try_join_all(reads).await?;
        Ok(Holding {
            homes: homes
                .into_iter()
                .zip(states)
                .filter(|(_, state)| state.pending > 0)
                .map(|(home, state)| (home, state.pending))
                .collect(),
        })
    }

    /// Writes `messages` ahead: each to its home's inbox, or held here when its home is
    /// another region that holds messages here already (`holding`) or does not answer now.
    /// Gives every message bound for another region an idempotency key first (see the
    /// module's doc). Answers in request order.
    pub async fn write_ahead(
        &self,
        messages: &mut [NewMessage],
        holding: &Holding,
        limits: InboxLimits,
    ) -> StoreResult<Vec<Written>> {
        for message in messages.iter_mut() {
            if self.is_remote(message.device.region_code()) && message.idempotency_key.is_none() {
                let key: u128 = rand::random();
                message.idempotency_key = Some(format!("xr:{key:032x}"));
            }
        }
        let messages: &[NewMessage] = messages;
        let parts = self.inner.split_by_home(messages, |m| m.device);
        let writes = parts
            .iter()
            .map(|part| self.write_home(part.region.code, &part.items, holding, limits));
        let answers = futures_util::future::try_join_all(writes).await?;
        super::gather(messages.len(), &parts, answers)
    }

    async fn write_home(
        &self,
        home: RegionCode,
        messages: &[NewMessage],
        holding: &Holding,
        limits: InboxLimits,
    ) -> StoreResult<Vec<Written>> {
        let store = self.home_region(messages[0].device).store.clone();
        if !self.is_remote(home) {
            let appended = store.append(messages, limits).await?;
            return Ok(appended.into_iter().map(Written::Appended).collect());
        }
        let already_held = holding.count(home);
        if already_held == 0 {
            match store.append(messages, limits).await {
                Ok(appended) => return Ok(appended.into_iter().map(Written::Appended).collect()),
                Err(StoreError::Unavailable(detail)) => {
                    tracing::warn!(home = home.0, %detail, held = messages.len(),
                        "home region unreachable: holding its messages here");
                }
                Err(error) => return Err(error),
            }
        }
        self.hold(home, messages, already_held).await
    }

    async fn hold(
        &self,
        home: RegionCode,
        messages: &[NewMessage],
        already_held: u64,
    ) -> StoreResult<Vec<Written>> {
        let name = &self.region_named(home);
        if already_held + messages.len() as u64 > MAX_HELD_PER_HOME {
            return Err(StoreError::Unavailable(format!(
                "region {name} is unreachable and {already_held} messages are held for it \
                 already (at most {MAX_HELD_PER_HOME})"
            )));
        }
        let queue = self.queue_of(home);
        let now = now_ms();
        let sealed: Vec<NewMessage> = messages
            .iter()
            .map(|message| NewMessage {
                device: queue,
                payload: seal(message),
                content_type: ContentType::Text,
                created_at_ms: now,
                expires_at_ms: message.expires_at_ms,
                idempotency_key: None,
                // No collapse key on the queue: it would collapse other devices' messages.
                options: MessageOptions::default(),
                campaign_id: None,
            })
            .collect();
        let limits = InboxLimits {
            max_inbox_len: QUEUE_INBOX_LEN,
        };
        let appended = self
            .local()
            .append(&sealed, limits)
            .await
            .map_err(|error| match error {
                StoreError::Unavailable(detail) => StoreError::Unavailable(format!(
                    "region {name} is unreachable and this region's store could not hold \
                     the messages either ({detail})"
                )),
                other => other,
            })?;
        let dropped: u32 = appended.iter().map(|a| a.dropped).sum();
        if dropped > 0 {
            tracing::error!(
                home = home.0,
                dropped,
                "held-message queue overflowed its cap"
            );
        }
        let held_in = self.local_region().code;
        Ok(messages
            .iter()
            .zip(appended)
            .map(|(message, appended)| {
                Written::Held(HeldId {
                    device: message.device,
                    held_in,
                    home,
                    seq: appended.seq,
                })
            })
            .collect())
    }

    /// Moves up to `max` of the messages held here for `home` into their home inboxes, oldest
    /// first, and removes them from the queue. Answers what it moved (empty when nothing is
    /// held); fails, moving nothing for good, while the home does not answer.
    pub async fn hand_off(
        &self,
        home: RegionCode,
        max: usize,
        limits: InboxLimits,
    ) -> StoreResult<Vec<HandedOff>> {
        if !self.is_remote(home) {
            return Ok(Vec::new());
        }
        let queue = self.queue_of(home);
        let held = self.local().read_inbox(queue, 0, max, now_ms()).await?;
        let Some(last) = held.last().map(|stored| stored.seq) else {
            return Ok(Vec::new());
        };
        let messages = held
            .iter()
            .map(|stored| unseal(queue, stored.seq, &stored.payload))
            .collect::<StoreResult<Vec<NewMessage>>>()?;
        let home_store = &self
            .regions()
            .iter()
            .find(|region| region.code == home)
            .expect("a remote home is a configured region")
            .store;
        let appended = home_store.append(&messages, limits).await?;
        self.local().ack(&[(queue, last)]).await?;
        let held_in = self.local_region().code;
        Ok(held
            .iter()
            .zip(messages)
            .zip(appended)
            .map(|((stored, message), appended)| HandedOff {
                held: HeldId {
                    device: message.device,
                    held_in,
                    home,
                    seq: stored.seq,
                },
                message,
                appended,
            })
            .collect())
    }

    /// The homes other than this region, for a hand-off loop to visit.
    pub fn remote_homes(&self) -> Vec<RegionCode> {
        let local = self.local_region().code;
        self.regions()
            .iter()
            .map(|region| region.code)
            .filter(|code| *code != local)
            .collect()
    }

    /// Where the held message `id` is now (`None` if no region held it).
    pub async fn held_status(&self, id: HeldId) -> StoreResult<Option<HeldStatus>> {
        let Some(region) = self.regions().iter().find(|r| r.code == id.held_in) else {
            return Ok(None);
        };
        let queue = queue_id(id.held_in, id.home);
        let now = now_ms();
        let state = region.store.inbox_state(queue, now).await?;
        if id.seq == 0 || id.seq > state.last_seq {
            return Ok(None);
        }
        if id.seq <= state.acked_up_to {
            return Ok(Some(HeldStatus::HandedHome));
        }
        Ok(Some(
            if region.store.inbox_contains(queue, id.seq, now).await? {
                HeldStatus::Held
            } else {
                HeldStatus::Expired
            },
        ))
    }

    fn region_named(&self, code: RegionCode) -> String {
        self.regions()
            .iter()
            .find(|region| region.code == code)
            .map_or_else(|| code.0.to_string(), |region| region.name.clone())
    }
}

//! One audience message to every matching device a shard holds, and the pacing of a
//! throttled one.
//!
//! The gRPC service parses the audience and encodes the Push frame once, then hands the same
//! job to every shard. A shard scans its connections of the app, matches the audience once
//! per distinct profile (equal attribute sets are one interned profile), applies the
//! timeline ordering rule (`timeline`) to each connection, and copies the encoded bytes to
//! every connection it writes to.
//!
//! Throttled (`max_per_second` > 0): a shard writes nothing during the scan; it answers the
//! connections to write, and a pacer task releases them to the shards at the rate, in small
//! bursts, interleaving the shards. Each one is checked again when its turn comes (a device
//! that left, or caught up from the timeline meanwhile, is skipped), so the RPC's `written`
//! counts writes scheduled, not done. Devices that do not match move their position at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use ringpush_audience::Audience;
use ringpush_protocol::AppId;
use ringpush_protocol::device::{Push, ServerFrame, server_frame};
use ringpush_protocol::ws;
use ringpush_store::Counter;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::conn::ConnState;
use crate::profile::Profile;
use crate::shard::{Command, Shard, Shared};
use crate::timeline::Offer;

/// A throttled broadcast is released in bursts of at most this share of a second.
const BURSTS_PER_SECOND: u32 = 20;

/// One audience message, ready to write.
pub(crate) struct BroadcastJob {
    pub app: AppId,
    pub audience: Audience,
    pub seq: u64,
    pub message_id: String,
    pub campaign_id: String,
    /// The Push as a WebSocket frame, encoded once for every connection.
    pub frame: Vec<u8>,
}

impl BroadcastJob {
    pub fn new(app: AppId, audience: Audience, push: Push) -> Self {
        let seq = push.seq;
        let message_id = push.message_id.clone();
        let campaign_id = push.campaign_id.clone();
        let mut frame = Vec::new();
        let push = ServerFrame {
            kind: Some(server_frame::Kind::Push(push)),
        };
        ws::write_message(&push, &mut frame);
        Self {
            app,
            audience,
            seq,
            message_id,
            campaign_id,
            frame,
        }
    }

    fn matches(&self, profile: &Profile) -> bool {
        profile.app == self.app && self.audience.matches(&profile.attributes)
    }
}

/// A broadcast for one shard to scan.
pub(crate) struct BroadcastScan {
    pub job: Arc<BroadcastJob>,
    /// Throttled: answer the connections to write instead of writing.
    pub paced: bool,
    pub reply: oneshot::Sender<ShardBroadcast>,
}

/// A shard's answer to a [`BroadcastScan`].
#[derive(Debug, Default)]
pub(crate) struct ShardBroadcast {
    /// Live devices of the app whose attributes match.
    pub matched: u64,
    /// Of those, written now.
    pub written: u64,
    /// Of those, to write when the pacer says (slab key, generation).
    pub scheduled: Vec<(u32, u32)>,
}

impl Shard {
    pub fn on_broadcast(&mut self, scan: BroadcastScan) {
        let BroadcastScan { job, paced, reply } = scan;
        // Matched once per distinct profile; profiles stay put during the scan.
        let mut matched_profiles: HashMap<*const Profile, bool> = HashMap::new();
        let candidates: Vec<(usize, bool)> = self
            .conns
            .iter()
            .filter(|(_, conn)| matches!(conn.state, ConnState::CatchingUp | ConnState::Live))
            .filter_map(|(key, conn)| {
                let profile = conn.profile.as_ref().filter(|p| p.app == job.app)?;
                let matched = *matched_profiles
                    .entry(Arc::as_ptr(profile))
                    .or_insert_with(|| job.matches(profile));
                Some((key, matched))
            })
            .collect();
        let mut answer = ShardBroadcast::default();
        for (key, matched) in candidates {
            answer.matched += u64::from(matched);
            if self.offer_timeline(key, job.seq, matched) != Offer::Write {
                continue;
            }
            if paced {
                let generation = self.conns[key].generation;
                answer.scheduled.push((key as u32, generation));
            } else {
                self.write_broadcast(key, &job);
                answer.written += 1;
            }
        }
        self.flush();
        self.count_broadcast_writes(&job, answer.written);
        // The caller may have given up (its request was cancelled); nothing to undo.
        let _ = reply.send(answer);
    }

    /// The pacer's turn for some connections of a throttled broadcast.
    pub fn on_broadcast_write(&mut self, job: Arc<BroadcastJob>, targets: Vec<(u32, u32)>) {
        let mut written = 0;
        for (key, generation) in targets {
            let Some(key) = self.live_key(key as usize, generation) else {
                continue;
            };
            let conn = &self.conns[key];
            let matched = conn
                .profile
                .as_ref()
                .is_some_and(|profile| job.matches(profile));
            if self.offer_timeline(key, job.seq, matched) == Offer::Write {
                self.write_broadcast(key, &job);
                written += 1;
            }
        }
        self.flush();
        self.count_broadcast_writes(&job, written);
    }

    fn write_broadcast(&mut self, key: usize, job: &BroadcastJob) {
        self.conns[key].timeline_seq = job.seq;
        self.queue_raw(key, |out| out.extend_from_slice(&job.frame));
    }

    fn count_broadcast_writes(&self, job: &BroadcastJob, written: u64) {
        counter!("ringpush_connector_pushes_written_total").increment(written);
        counter!("ringpush_connector_broadcast_written_total").increment(written);
        let (message, campaign) = (&job.message_id, &job.campaign_id);
        self.shared
            .count(job.app, message, campaign, Counter::Delivered, written);
    }
}

/// Releases the scheduled writes of a throttled broadcast to the shards at `per_second`,
/// in bursts of at most 1/`BURSTS_PER_SECOND` of a second's worth; stops early if the
/// shards stop.
pub(crate) async fn pace(
    shared: Arc<Shared>,
    job: Arc<BroadcastJob>,
    scheduled: Vec<Vec<(u32, u32)>>,
    per_second: u32,
) {
    // Interleave the shards, so that each one's devices are spread over the whole send.
    let total: usize = scheduled.iter().map(Vec::len).sum();
    let mut order = Vec::with_capacity(total);
    let mut queues: Vec<_> = scheduled.into_iter().map(Vec::into_iter).collect();
    while order.len() < total {
        for (shard, queue) in queues.iter_mut().enumerate() {
            if let Some(target) = queue.next() {
                order.push((shard, target));
            }
        }
    }
    let burst = (per_second / BURSTS_PER_SECOND).max(1) as usize;
    let mut next = Instant::now();
    for chunk in order.chunks(burst) {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = shared.shards[0].closed() => return,
        }
        let mut per_shard: Vec<Vec<(u32, u32)>> = vec![Vec::new(); shared.shards.len()];
        for &(shard, target) in chunk {
            per_shard[shard].push(target);
        }
        for (shard, targets) in per_shard.into_iter().enumerate() {
            if targets.is_empty() {
                continue;
            }
            let command = Command::BroadcastWrite(job.clone(), targets);
            if shared.shards[shard].send(command).await.is_err() {
                return;
            }
        }
        next += Duration::from_secs_f64(chunk.len() as f64 / f64::from(per_second));
    }
}

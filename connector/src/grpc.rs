//! The internal gRPC service controllers call: `ringpush.internal.v1.Connector`.
//!
//! Deliver: a batch is split by the shard of each device and handed to the shards over their
//! bounded channels (a full channel makes the call wait: that is the backpressure), and the
//! outcomes come back in request order.
//!
//! Broadcast: the audience is parsed and the frame encoded once, every shard scans its
//! devices of the app (`broadcast`), and the counts are summed. With `max_per_second` > 0 the
//! call answers once the writes are scheduled; a pacer task releases them at the rate.

use std::sync::Arc;

use metrics::counter;
use ringpush_audience::Audience;
use ringpush_protocol::device::Push;
use ringpush_protocol::internal::connector_server::Connector;
use ringpush_protocol::internal::{
    BroadcastRequest, BroadcastResponse, DeliverRequest, DeliverResponse, DeliveryOutcome,
};
use ringpush_protocol::{AppId, DeviceId};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::broadcast::{self, BroadcastJob, BroadcastScan};
use crate::shard::{Command, DeliverBatch, Shared};
use crate::timeline::TIMELINE_STREAM;

/// The largest Deliver request accepted.
pub(crate) const MAX_DELIVER_REQUEST_BYTES: usize = 16 * 1024 * 1024;

pub(crate) struct DeliverService {
    shared: Arc<Shared>,
}

impl DeliverService {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[tonic::async_trait]
impl Connector for DeliverService {
    async fn deliver(
        &self,
        request: Request<DeliverRequest>,
    ) -> Result<Response<DeliverResponse>, Status> {
        let deliveries = request.into_inner().deliveries;
        let total = deliveries.len();
        let mut per_shard: Vec<Vec<(usize, DeviceId, Push)>> =
            (0..self.shared.shards.len()).map(|_| Vec::new()).collect();
        for (index, delivery) in deliveries.into_iter().enumerate() {
            let device: DeviceId = delivery
                .device_id
                .parse()
                .map_err(|error| Status::invalid_argument(format!("delivery {index}: {error}")))?;
            let push = delivery.push.filter(|push| push.seq > 0).ok_or_else(|| {
                Status::invalid_argument(format!("delivery {index} has no push with a seq"))
            })?;
            if push.stream != 0 {
                return Err(Status::invalid_argument(format!(
                    "delivery {index}: a delivered push belongs to the device's inbox (stream 0); \
                     audience messages go through Broadcast"
                )));
            }
            per_shard[self.shared.shard_of(device)].push((index, device, push));
        }
        let mut answers = Vec::new();
        for (shard, items) in per_shard.into_iter().enumerate() {
            if items.is_empty() {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            let command = Command::Deliver(DeliverBatch { items, reply });
            // A closed channel means the shard stopped: its devices are not connected here.
            if self.shared.shards[shard].send(command).await.is_ok() {
                answers.push(answer);
            }
        }
        let mut outcomes = vec![DeliveryOutcome::NotConnected as i32; total];
        for answer in answers {
            if let Ok(answered) = answer.await {
                for (index, outcome) in answered {
                    outcomes[index] = outcome as i32;
                }
            }
        }
        Ok(Response::new(DeliverResponse { outcomes }))
    }

    async fn broadcast(
        &self,
        request: Request<BroadcastRequest>,
    ) -> Result<Response<BroadcastResponse>, Status> {
        let request = request.into_inner();
        let app: AppId = request
            .app_id
            .parse()
            .map_err(|error| Status::invalid_argument(format!("app_id: {error}")))?;
        let audience = Audience::parse(&request.audience)
            .map_err(|error| Status::invalid_argument(format!("audience: {error}")))?;
        let push = request.push.filter(|push| push.seq > 0).ok_or_else(|| {
            Status::invalid_argument("the broadcast has no push with a timeline seq")
        })?;
        if push.stream != TIMELINE_STREAM {
            return Err(Status::invalid_argument(format!(
                "a broadcast push belongs to the app's timeline (stream {TIMELINE_STREAM}), not stream {}",
                push.stream
            )));
        }
        let job = Arc::new(BroadcastJob::new(app, audience, push));
        let paced = request.max_per_second > 0;
        let mut answers = Vec::with_capacity(self.shared.shards.len());
        for (shard, sender) in self.shared.shards.iter().enumerate() {
            let (reply, answer) = oneshot::channel();
            let scan = BroadcastScan {
                job: job.clone(),
                paced,
                reply,
            };
            // A closed channel means the shard stopped: it holds no device any more.
            if sender.send(Command::Broadcast(scan)).await.is_ok() {
                answers.push((shard, answer));
            }
        }
        let (mut matched, mut written) = (0, 0);
        // Indexed by shard, for the pacer.
        let mut scheduled = vec![Vec::new(); self.shared.shards.len()];
        for (shard, answer) in answers {
            if let Ok(answer) = answer.await {
                matched += answer.matched;
                written += answer.written + answer.scheduled.len() as u64;
                scheduled[shard] = answer.scheduled;
            }
        }
        counter!("ringpush_connector_broadcasts_total").increment(1);
        counter!("ringpush_connector_broadcast_matched_total").increment(matched);
        if paced && scheduled.iter().any(|targets| !targets.is_empty()) {
            let per_second = request.max_per_second;
            let pacer = broadcast::pace(self.shared.clone(), job.clone(), scheduled, per_second);
            self.shared.tasks.spawn(pacer);
        }
        tracing::debug!(app_id = %app, seq = job.seq, matched, written, paced, "broadcast");
        Ok(Response::new(BroadcastResponse { matched, written }))
    }
}

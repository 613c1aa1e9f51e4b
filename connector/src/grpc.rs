//! The internal gRPC service controllers call: `ringpush.internal.v1.Connector/Deliver`.
//!
//! A batch is split by the shard of each device and handed to the shards over their
//! bounded channels (a full channel makes the call wait: that is the backpressure), and the
//! outcomes come back in request order.

use std::sync::Arc;

use ringpush_protocol::DeviceId;
use ringpush_protocol::device::Push;
use ringpush_protocol::internal::connector_server::Connector;
use ringpush_protocol::internal::{DeliverRequest, DeliverResponse, DeliveryOutcome};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::shard::{Command, DeliverBatch, Shared};

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
}

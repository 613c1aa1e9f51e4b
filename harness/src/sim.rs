//! Simulated devices that speak the wire protocol directly: cheap enough to hold thousands
//! in one test process (one task and one socket each, no SDK state file).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use ringpush_protocol::device::{Ack, ClientFrame, Hello, client_frame, server_frame};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// What a simulated device has received so far.
#[derive(Debug, Default)]
pub struct SimCounts {
    pub inbox: AtomicU64,
    pub timeline: AtomicU64,
    pub welcomed: AtomicU64,
}

/// One simulated device connection; dropping it closes the socket.
pub struct SimDevice {
    pub counts: Arc<SimCounts>,
    task: JoinHandle<()>,
}

impl Drop for SimDevice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn frame(kind: client_frame::Kind) -> Message {
    Message::Binary(ClientFrame { kind: Some(kind) }.encode_to_vec().into())
}

impl SimDevice {
    /// Connects to `url` (a connector's device URL), says Hello with `token`, and from then on
    /// counts and acks every push. `timeline_seq` is the position to resume the timeline from.
    pub async fn connect(url: &str, device_id: &str, token: &str, timeline_seq: u64) -> SimDevice {
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("simulated device connects");
        let hello = Hello {
            protocol_version: 1,
            device_id: device_id.to_owned(),
            device_token: token.to_owned(),
            timeline_seq,
            sdk: "ringpush-sim".into(),
            ..Default::default()
        };
        socket
            .send(frame(client_frame::Kind::Hello(hello)))
            .await
            .expect("hello sent");
        let counts = Arc::new(SimCounts::default());
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                let Message::Binary(bytes) = message else {
                    continue;
                };
                let Ok(frame_in) = ringpush_protocol::frame::decode_server(&bytes, 1 << 20) else {
                    return;
                };
                let ack = match frame_in.kind {
                    Some(server_frame::Kind::Welcome(_)) => {
                        shared.welcomed.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    Some(server_frame::Kind::Push(push)) if push.stream == 1 => {
                        shared.timeline.fetch_add(1, Ordering::Relaxed);
                        Some(Ack {
                            up_to_seq: 0,
                            timeline_up_to: push.seq,
                        })
                    }
                    Some(server_frame::Kind::Push(push)) => {
                        shared.inbox.fetch_add(1, Ordering::Relaxed);
                        Some(Ack {
                            up_to_seq: push.seq,
                            timeline_up_to: 0,
                        })
                    }
                    Some(server_frame::Kind::Error(_) | server_frame::Kind::Redirect(_)) => return,
                    _ => None,
                };
                if let Some(ack) = ack
                    && socket
                        .send(frame(client_frame::Kind::Ack(ack)))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        });
        SimDevice { counts, task }
    }

    /// Waits until this device has been welcomed.
    pub async fn welcomed(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.counts.welcomed.load(Ordering::Relaxed) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no Welcome");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

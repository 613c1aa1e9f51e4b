//! Simulated devices that speak the wire protocol directly: cheap enough to hold thousands
//! in one test process (one task and one socket each, no SDK state file).
//!
//! Benchmarks can give a device its attributes and an [`ArrivalLog`] that records when each
//! push arrived ([`SimDevice::connect_with`]); without them a device only counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use ringpush_protocol::device::{
    Ack, Attributes, ClientFrame, Hello, Ping, Push, Report, ReportEvent, ReportKind, client_frame,
    server_frame,
};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// What a simulated device has received so far.
#[derive(Debug, Default)]
pub struct SimCounts {
    pub inbox: AtomicU64,
    pub timeline: AtomicU64,
    pub welcomed: AtomicU64,
}

/// One push as a device saw it arrive.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// When the device read the frame (after decoding, before its ack).
    pub at: Instant,
    /// 0: the device's inbox, 1: its app's timeline.
    pub stream: u32,
    pub campaign_id: String,
    /// When the platform accepted the message.
    pub created_at_ms: i64,
}

/// Arrivals of pushes, shared by many devices (a benchmark's record of when each delivery
/// landed). Locked for one push per arrival only.
#[derive(Debug, Default)]
pub struct ArrivalLog {
    arrivals: Mutex<Vec<Arrival>>,
}

impl ArrivalLog {
    fn record(&self, push: &Push) {
        let arrival = Arrival {
            at: Instant::now(),
            stream: push.stream,
            campaign_id: push.campaign_id.clone(),
            created_at_ms: push.created_at_ms,
        };
        self.arrivals
            .lock()
            .expect("arrival log lock poisoned")
            .push(arrival);
    }

    /// How many arrivals are recorded now.
    pub fn len(&self) -> usize {
        self.arrivals
            .lock()
            .expect("arrival log lock poisoned")
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes every arrival recorded so far, leaving the log empty.
    pub fn take(&self) -> Vec<Arrival> {
        std::mem::take(&mut *self.arrivals.lock().expect("arrival log lock poisoned"))
    }
}

/// What a simulated device does beyond counting and acking.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Sent once, right after the Welcome, for audiences to match.
    pub attributes: Option<Attributes>,
    /// Where to record each push's arrival.
    pub arrivals: Option<Arc<ArrivalLog>>,
    /// Report each push handed to the app (`Received`, as the SDK does) and, with these,
    /// each of these too (`Opened`, `Clicked`), for delivery statistics.
    pub reports: Vec<ReportKind>,
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

/// The next keepalive tick; never before the Welcome.
async fn next_ping(keepalive: &mut Option<tokio::time::Interval>) {
    match keepalive {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl SimDevice {
    /// Connects to `url` (a connector's device URL), says Hello with `token`, and from then on
    /// counts and acks every push. `timeline_seq` is the position to resume the timeline from.
    pub async fn connect(url: &str, device_id: &str, token: &str, timeline_seq: u64) -> SimDevice {
        Self::connect_with(url, device_id, token, timeline_seq, SimOptions::default()).await
    }

    /// [`SimDevice::connect`], and sends the attributes and records arrivals as `options` say.
    pub async fn connect_with(
        url: &str,
        device_id: &str,
        token: &str,
        timeline_seq: u64,
        options: SimOptions,
    ) -> SimDevice {
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
        let SimOptions {
            reports,
            mut attributes,
            arrivals,
        } = options;
        let task = tokio::spawn(async move {
            // Pings keep the connection open: a connector closes one that stays silent for
            // three of the intervals its Welcome names. None until the Welcome.
            let mut keepalive: Option<tokio::time::Interval> = None;
            loop {
                let message = tokio::select! {
                    message = socket.next() => message,
                    () = next_ping(&mut keepalive) => {
                        let ping = client_frame::Kind::Ping(Ping { nonce: 0 });
                        if socket.send(frame(ping)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let Some(Ok(message)) = message else {
                    return;
                };
                let Message::Binary(bytes) = message else {
                    continue;
                };
                let Ok(frame_in) = ringpush_protocol::frame::decode_server(&bytes, 1 << 20) else {
                    return;
                };
                if let (Some(log), Some(server_frame::Kind::Push(push))) =
                    (&arrivals, &frame_in.kind)
                {
                    log.record(push);
                }
                // What a report names, taken before the push is consumed below.
                let reported = match &frame_in.kind {
                    Some(server_frame::Kind::Push(push)) if !reports.is_empty() => {
                        Some((push.message_id.clone(), push.campaign_id.clone()))
                    }
                    _ => None,
                };
                let ack = match frame_in.kind {
                    Some(server_frame::Kind::Welcome(welcome)) => {
                        let every =
                            Duration::from_secs(welcome.ping_interval_seconds.max(1).into());
                        let first = tokio::time::Instant::now() + every;
                        keepalive = Some(tokio::time::interval_at(first, every));
                        if let Some(attributes) = attributes.take()
                            && socket
                                .send(frame(client_frame::Kind::Attributes(attributes)))
                                .await
                                .is_err()
                        {
                            return;
                        }
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
                if let Some((message_id, campaign_id)) = reported {
                    let events = reports
                        .iter()
                        .map(|kind| ReportEvent {
                            message_id: message_id.clone(),
                            campaign_id: campaign_id.clone(),
                            kind: (*kind).into(),
                        })
                        .collect();
                    let report = client_frame::Kind::Report(Report { events });
                    if socket.send(frame(report)).await.is_err() {
                        return;
                    }
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

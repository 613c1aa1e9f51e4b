//! A connector on loopback ports over a fresh embedded store, and a device client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use ringpush_connector::{ConnectorConfig, ConnectorError, ConnectorStats};
use ringpush_protocol::device::{
    Ack, Attributes, ClientFrame, ErrorCode, Hello, Ping, Push, Report, ReportEvent, ReportKind,
    ServerFrame, client_frame, server_frame,
};
use ringpush_protocol::internal::connector_client::ConnectorClient;
use ringpush_protocol::internal::{
    BroadcastRequest, BroadcastResponse, DeliverRequest, Delivery, DeliveryOutcome,
};
use ringpush_protocol::{AppId, DeviceId, MessageId};
use ringpush_ring::{Member, Ring};
use ringpush_store::{
    AppKey, AppRecord, ContentType, DeviceRecord, EmbeddedStore, InboxLimits, KeyKind, NewMessage,
    NewTimelineEntry, Store, now_ms, secret_hash,
};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// The secret of the test app's token-signing key `tokens`.
pub const TOKEN_SECRET: [u8; 32] = [42; 32];

/// A device token for `device` signed by the test app's key, valid for an hour.
pub fn sign_token(device: ringpush_protocol::DeviceId) -> String {
    ringpush_protocol::token::DeviceToken::sign(
        device,
        "tokens",
        &TOKEN_SECRET,
        now_ms(),
        now_ms() + 3_600_000,
    )
}

/// How long any wait in a test may take before it fails (never a speed assertion).
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct Env {
    pub store: Arc<dyn Store>,
    pub app: AppId,
    _dir: tempfile::TempDir,
}

impl Env {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.redb");
        let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&path))
            .await
            .expect("open task")
            .expect("open store");
        let store: Arc<dyn Store> = Arc::new(store);
        let app = AppId::random();
        store
            .create_app(&AppRecord {
                id: app,
                name: "test".into(),
                keys: vec![
                    AppKey {
                        id: "server".to_owned(),
                        kind: KeyKind::Server,
                        hash: secret_hash("server"),
                        created_at_ms: now_ms(),
                        revoked_at_ms: None,
                        scopes: ringpush_store::KeyScope::all(),
                    },
                    AppKey {
                        id: "client".to_owned(),
                        kind: KeyKind::Client,
                        hash: secret_hash("client"),
                        created_at_ms: now_ms(),
                        revoked_at_ms: None,
                        scopes: ringpush_store::KeyScope::all(),
                    },
                    AppKey {
                        id: "tokens".to_owned(),
                        kind: KeyKind::TokenSigning,
                        hash: TOKEN_SECRET,
                        created_at_ms: now_ms(),
                        revoked_at_ms: None,
                        scopes: Vec::new(),
                    },
                ],
                created_at_ms: now_ms(),
                payload_sealing: false,
            })
            .await
            .expect("create app");
        Self {
            store,
            app,
            _dir: dir,
        }
    }

    /// Registers `device` with a fresh token.
    pub async fn register(&self, device: DeviceId) -> String {
        let token = sign_token(device);
        self.store
            .create_device(&DeviceRecord {
                id: device,
                app: self.app,
                created_at_ms: now_ms(),
                sealing: None,
            })
            .await
            .expect("create device");
        token
    }

    /// Registers a random device.
    pub async fn device(&self) -> (DeviceId, String) {
        let device = DeviceId::random();
        (device, self.register(device).await)
    }

    /// Appends `count` messages to the device's inbox; answers their pushes.
    pub async fn append(&self, device: DeviceId, count: usize) -> Vec<Push> {
        let now = now_ms();
        let messages: Vec<NewMessage> = (0..count)
            .map(|i| NewMessage {
                device,
                payload: format!("payload {i}").into_bytes(),
                content_type: ContentType::Text,
                created_at_ms: now,
                expires_at_ms: now + 3_600_000,
                idempotency_key: None,
                options: Default::default(),
                campaign_id: None,
            })
            .collect();
        let appended = self
            .store
            .append(&messages, InboxLimits::default())
            .await
            .expect("append");
        appended
            .iter()
            .zip(messages)
            .map(|(appended, message)| Push {
                message_id: MessageId {
                    device,
                    seq: appended.seq,
                }
                .to_string(),
                seq: appended.seq,
                payload: message.payload,
                content_type: ContentType::Text.mime().to_owned(),
                created_at_ms: message.created_at_ms,
                expires_at_ms: message.expires_at_ms,
                ..Default::default()
            })
            .collect()
    }

    /// Appends an audience message to the app's timeline, as a controller does before its
    /// Broadcast; answers its push (stream 1).
    pub async fn append_timeline(&self, audience: &str, campaign: Option<&str>) -> Push {
        let now = now_ms();
        let message_id = format!("audience-{}", DeviceId::random());
        let entry = NewTimelineEntry {
            message_id: message_id.clone(),
            audience: audience.to_owned(),
            payload: format!("to {audience}").into_bytes(),
            content_type: ContentType::Text,
            created_at_ms: now,
            expires_at_ms: now + 3_600_000,
            campaign_id: campaign.map(str::to_owned),
            idempotency_key: None,
            options: Default::default(),
        };
        let appended = self
            .store
            .timelines()
            .append_timeline(self.app, &entry, 1000)
            .await
            .expect("append to the timeline");
        Push {
            message_id,
            seq: appended.seq,
            payload: entry.payload,
            content_type: ContentType::Text.mime().to_owned(),
            created_at_ms: now,
            expires_at_ms: entry.expires_at_ms,
            stream: 1,
            campaign_id: campaign.unwrap_or_default().to_owned(),
            ..Default::default()
        }
    }

    /// Gives another connector a lease for an hour (so the ring has it as a member).
    pub async fn add_member(&self, id: &str) -> Member {
        let member = Member {
            id: id.to_owned(),
            device_url: format!("ws://{id}.invalid:8082/v1/connect"),
            grpc_url: format!("http://{id}.invalid:8083"),
        };
        self.store
            .renew_lease(&member, 3_600_000, now_ms())
            .await
            .expect("lease");
        member
    }

    /// Starts a connector with test timings; `adjust` changes the config further.
    pub async fn start(&self, adjust: impl FnOnce(&mut ConnectorConfig)) -> Connector {
        let devices = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let device_addr = devices.local_addr().expect("addr");
        let grpc_addr = grpc.local_addr().expect("addr");
        let mut config = ConnectorConfig {
            id: "connector-a".into(),
            device_url: format!("ws://{device_addr}/v1/connect"),
            grpc_url: format!("http://{grpc_addr}"),
            shards: 2,
            ..ConnectorConfig::default()
        };
        config.membership.refresh_every = Duration::from_millis(100);
        adjust(&mut config);
        let member = Member {
            id: config.id.clone(),
            device_url: config.device_url.clone(),
            grpc_url: config.grpc_url.clone(),
        };
        let vnodes = config.membership.vnodes;
        let stats = Arc::new(ConnectorStats::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(ringpush_connector::run_with_stats(
            config,
            devices,
            grpc,
            self.store.clone(),
            shutdown.clone(),
            stats.clone(),
        ));
        // The connector is serving once its lease is in the store.
        let connector = Connector {
            device_addr,
            grpc_addr,
            member,
            vnodes,
            stats,
            shutdown,
            task: Some(task),
        };
        eventually("the connector joins the ring", || async {
            let members = self.store.live_members(now_ms()).await.expect("members");
            members.iter().any(|m| m.id == connector.member.id)
        })
        .await;
        connector
    }
}

pub struct Connector {
    pub device_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub member: Member,
    pub vnodes: u32,
    pub stats: Arc<ConnectorStats>,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<Result<(), ConnectorError>>>,
}

impl Connector {
    pub fn url(&self) -> String {
        self.member.device_url.clone()
    }

    /// Hands pushes to the connector over gRPC, as a controller does.
    pub async fn deliver(&self, pushes: &[(DeviceId, Push)]) -> Vec<DeliveryOutcome> {
        let mut client = ConnectorClient::connect(format!("http://{}", self.grpc_addr))
            .await
            .expect("grpc connect");
        let deliveries = pushes
            .iter()
            .map(|(device, push)| Delivery {
                device_id: device.to_string(),
                push: Some(push.clone()),
            })
            .collect();
        let answer = client
            .deliver(DeliverRequest { deliveries })
            .await
            .expect("deliver")
            .into_inner();
        answer
            .outcomes
            .into_iter()
            .map(|o| DeliveryOutcome::try_from(o).expect("known outcome"))
            .collect()
    }

    /// Hands an audience message to the connector over gRPC, as a controller does.
    pub async fn broadcast(
        &self,
        app: AppId,
        audience: &str,
        push: &Push,
        max_per_second: u32,
    ) -> Result<BroadcastResponse, tonic::Status> {
        let mut client = ConnectorClient::connect(format!("http://{}", self.grpc_addr))
            .await
            .expect("grpc connect");
        let request = BroadcastRequest {
            app_id: app.to_string(),
            audience: audience.to_owned(),
            push: Some(push.clone()),
            max_per_second,
        };
        client
            .broadcast(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Fires the shutdown token and waits for `run` to return.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("run returns after the drain")
                .expect("run task")
                .expect("run succeeds");
        }
    }

    /// Waits until the connector holds no connection, device or busy record.
    pub async fn wait_idle(&self) {
        eventually("every connection is freed", || async {
            self.stats.connections() == 0 && self.stats.devices() == 0 && self.stats.busy() == 0
        })
        .await;
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `check` until it holds; fails the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A device whose owner on `ring` is (or is not) `member`.
pub fn device_owned(ring: &Ring, member: &str, owned: bool) -> DeviceId {
    loop {
        let device = DeviceId::random();
        let owner = ring.owner(device).map(|m| m.id.as_str());
        if (owner == Some(member)) == owned {
            return device;
        }
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A device speaking the protocol through tokio-tungstenite.
pub struct Device {
    pub ws: Ws,
}

/// What a device reads next. (A frame is much larger than a close, and tests match on
/// frames directly: boxing them would only add noise.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Event {
    Frame(ServerFrame),
    /// A WebSocket Close with its code.
    Closed(Option<u16>),
    /// The stream ended or failed without a Close.
    Ended,
}

impl Device {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("websocket connect");
        Self { ws }
    }

    /// Connects over `wss://`, trusting `tls` (e.g. the test CA's configuration).
    pub async fn connect_tls(url: &str, tls: Arc<rustls::ClientConfig>) -> Self {
        let connector = tokio_tungstenite::Connector::Rustls(tls);
        let connecting =
            tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector));
        let (ws, _) = tokio::time::timeout(PATIENCE, connecting)
            .await
            .expect("connect in time")
            .expect("websocket connect");
        Self { ws }
    }

    pub async fn send(&mut self, frame: client_frame::Kind) {
        let frame = ClientFrame { kind: Some(frame) };
        self.ws
            .send(Message::binary(frame.encode_to_vec()))
            .await
            .expect("send");
    }

    pub async fn hello(&mut self, device: DeviceId, token: &str, last_seq: u64) {
        self.send(client_frame::Kind::Hello(Hello {
            protocol_version: 1,
            device_id: device.to_string(),
            device_token: token.to_owned(),
            last_seq,
            ring_version: 0,
            sdk: "test".into(),
            ..Default::default()
        }))
        .await;
    }

    /// A Hello that also gives the device's timeline position.
    pub async fn hello_at(
        &mut self,
        device: DeviceId,
        token: &str,
        last_seq: u64,
        timeline_seq: u64,
    ) {
        self.send(client_frame::Kind::Hello(Hello {
            protocol_version: 1,
            device_id: device.to_string(),
            device_token: token.to_owned(),
            last_seq,
            timeline_seq,
            sdk: "test".into(),
            ..Default::default()
        }))
        .await;
    }

    /// Reports attributes, then waits until the connector has taken them (it answers a
    /// ping sent behind them).
    pub async fn attributes(&mut self, attributes: Attributes) {
        self.send(client_frame::Kind::Attributes(attributes)).await;
        self.expect_quiet(u64::MAX).await;
    }

    /// Reports events for one message.
    pub async fn report(&mut self, message_id: &str, campaign_id: &str, kinds: &[ReportKind]) {
        let events = kinds
            .iter()
            .map(|kind| ReportEvent {
                message_id: message_id.to_owned(),
                campaign_id: campaign_id.to_owned(),
                kind: *kind as i32,
            })
            .collect();
        self.send(client_frame::Kind::Report(Report { events }))
            .await;
    }

    pub async fn ack(&mut self, up_to_seq: u64) {
        self.send(client_frame::Kind::Ack(Ack {
            up_to_seq,
            ..Default::default()
        }))
        .await;
    }

    pub async fn ping(&mut self, nonce: u64) {
        self.send(client_frame::Kind::Ping(Ping { nonce })).await;
    }

    pub async fn next(&mut self) -> Event {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame in time");
            match message {
                Some(Ok(Message::Binary(bytes))) => {
                    let frame = ServerFrame::decode(bytes.as_ref()).expect("server frame");
                    return Event::Frame(frame);
                }
                Some(Ok(Message::Close(close))) => {
                    return Event::Closed(close.map(|c| u16::from(c.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Event::Ended,
            }
        }
    }

    pub async fn frame(&mut self) -> server_frame::Kind {
        match self.next().await {
            Event::Frame(frame) => frame.kind.expect("frame kind"),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    pub async fn welcome(&mut self) -> ringpush_protocol::device::Welcome {
        match self.frame().await {
            server_frame::Kind::Welcome(welcome) => welcome,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    pub async fn push(&mut self) -> Push {
        match self.frame().await {
            server_frame::Kind::Push(push) => push,
            other => panic!("expected Push, got {other:?}"),
        }
    }

    /// Reads an Error frame with `code`, then the close; answers the close code.
    pub async fn expect_error(&mut self, code: ErrorCode) -> Option<u16> {
        match self.frame().await {
            server_frame::Kind::Error(error) => {
                assert_eq!(error.code(), code, "error: {error:?}");
            }
            other => panic!("expected Error {code:?}, got {other:?}"),
        }
        self.expect_closed().await
    }

    /// Reads until the connection closes; answers the close code if a Close came.
    pub async fn expect_closed(&mut self) -> Option<u16> {
        match self.next().await {
            Event::Closed(code) => {
                // Finish the close handshake, then close the socket as an SDK does.
                while let Ok(Some(_)) = tokio::time::timeout(PATIENCE, self.ws.next()).await {}
                self.shut_socket().await;
                code
            }
            Event::Ended => {
                self.shut_socket().await;
                None
            }
            Event::Frame(frame) => panic!("expected the close, got {frame:?}"),
        }
    }

    async fn shut_socket(&mut self) {
        match self.ws.get_mut() {
            MaybeTlsStream::Plain(tcp) => {
                let _ = tokio::io::AsyncWriteExt::shutdown(tcp).await;
            }
            MaybeTlsStream::Rustls(tls) => {
                let _ = tokio::io::AsyncWriteExt::shutdown(tls).await;
            }
            _ => {}
        }
    }

    /// Reads a Redirect, then the close.
    pub async fn expect_redirect(&mut self) -> ringpush_protocol::device::Redirect {
        let redirect = match self.frame().await {
            server_frame::Kind::Redirect(redirect) => redirect,
            other => panic!("expected Redirect, got {other:?}"),
        };
        self.expect_closed().await;
        redirect
    }

    /// Pings and expects the Pong as the very next frame: nothing else was sent meanwhile.
    pub async fn expect_quiet(&mut self, nonce: u64) {
        self.ping(nonce).await;
        match self.frame().await {
            server_frame::Kind::Pong(pong) => assert_eq!(pong.nonce, nonce),
            other => panic!("expected Pong {nonce}, got {other:?}"),
        }
    }
}

//! A whole ringpush deployment in the test process: an embedded store in a temporary
//! directory, a controller, a dispatcher and connectors on loopback port 0.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::sync::Arc;
use std::time::Duration;

use ringpush_connector::{ConnectorConfig, ConnectorError};
use ringpush_protocol::device::Push;
use ringpush_protocol::internal::connector_client::ConnectorClient;
use ringpush_protocol::internal::{BroadcastRequest, DeliverRequest, Delivery};
use ringpush_protocol::{AppId, DeviceId, MessageId};
use ringpush_sdk::{Client, Config, DeviceAttributes, Identity, Message};
use ringpush_store::membership::{self, MembershipConfig};
use ringpush_store::{
    AppKey, AppRecord, ContentType, Counter, DeviceRecord, EmbeddedStore, InboxLimits, KeyKind,
    NewMessage, NewTimelineEntry, Store, now_ms, secret_hash,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
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

/// The longest any step may take before the test fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The client key of the test app.
pub const CLIENT_KEY: &str = "test-client-key";

/// One running connector.
pub struct RunningConnector {
    pub id: String,
    pub device_url: String,
    pub grpc_url: String,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ConnectorError>>,
}

/// The deployment.
pub struct Cluster {
    pub store: Arc<dyn Store>,
    pub app: AppId,
    pub controller_url: String,
    pub dispatcher_url: String,
    pub connectors: Vec<RunningConnector>,
    /// Stops the dispatcher, the controller and the ring watcher.
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

fn membership_config() -> MembershipConfig {
    MembershipConfig {
        lease_ttl: Duration::from_secs(3),
        refresh_every: Duration::from_millis(100),
        ..MembershipConfig::default()
    }
}

impl Cluster {
    /// A store with one app, a controller, a dispatcher and one connector `c1`.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).expect("embedded store"));
        let app = AppId::random();
        store
            .create_app(&AppRecord {
                id: app,
                name: "sdk-tests".into(),
                keys: vec![
                    AppKey {
                        id: "server".to_owned(),
                        kind: KeyKind::Server,
                        hash: secret_hash("test-server-key"),
                        created_at_ms: now_ms(),
                        revoked_at_ms: None,
                        scopes: ringpush_store::KeyScope::all(),
                    },
                    AppKey {
                        id: "client".to_owned(),
                        kind: KeyKind::Client,
                        hash: secret_hash(CLIENT_KEY),
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
        let shutdown = CancellationToken::new();
        let ring =
            membership::watch_ring(store.clone(), membership_config(), shutdown.clone()).await;

        let dispatcher_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let dispatcher_url = format!("http://{}", dispatcher_listener.local_addr().unwrap());
        tokio::spawn(ringpush_dispatcher::serve(
            dispatcher_listener,
            ring.clone(),
            shutdown.clone(),
        ));

        let controller_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let controller_url = format!("http://{}", controller_listener.local_addr().unwrap());
        let state = ringpush_controller::ControllerState::new(
            ringpush_controller::ControllerConfig::new("test-admin-token".into()),
            store.clone(),
            ring,
            None,
            shutdown.clone(),
        );
        tokio::spawn(ringpush_controller::serve(
            controller_listener,
            state,
            shutdown.clone(),
        ));

        let mut cluster = Self {
            store,
            app,
            controller_url,
            dispatcher_url,
            connectors: Vec::new(),
            shutdown,
            _dir: dir,
        };
        cluster.start_connector("c1", "127.0.0.1:0").await;
        cluster
    }

    /// Starts a connector with this id on `device_address` (port 0 for any) and waits until
    /// the dispatcher sees it.
    pub async fn start_connector(&mut self, id: &str, device_address: &str) -> usize {
        self.start_connector_with(id, device_address, None).await
    }

    /// [`Cluster::start_connector`], serving `wss://` when `tls` is set.
    pub async fn start_connector_with(
        &mut self,
        id: &str,
        device_address: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> usize {
        let device_listener = TcpListener::bind(device_address)
            .await
            .expect("bind devices");
        let grpc_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
        let device_url = format!(
            "{}://{}{}",
            if tls.is_some() { "wss" } else { "ws" },
            device_listener.local_addr().unwrap(),
            ringpush_protocol::CONNECT_PATH
        );
        let grpc_url = format!("http://{}", grpc_listener.local_addr().unwrap());
        let config = ConnectorConfig {
            id: id.to_owned(),
            device_url: device_url.clone(),
            grpc_url: grpc_url.clone(),
            shards: 1,
            ping_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(2),
            membership: membership_config(),
            device_tls: tls,
            ..ConnectorConfig::default()
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(ringpush_connector::run(
            config,
            device_listener,
            grpc_listener,
            self.store.clone(),
            shutdown.clone(),
        ));
        self.connectors.push(RunningConnector {
            id: id.to_owned(),
            device_url,
            grpc_url,
            shutdown,
            task,
        });
        self.wait_for_members().await;
        self.connectors.len() - 1
    }

    /// Drains and stops connector `index`, waits until the dispatcher no longer sees it, and
    /// answers the address its devices connected to (to start another one there).
    pub async fn stop_connector(&mut self, index: usize) -> String {
        let connector = self.connectors.remove(index);
        connector.shutdown.cancel();
        let ended = tokio::time::timeout(PATIENCE, connector.task)
            .await
            .expect("connector drains in time");
        ended
            .expect("connector task")
            .expect("connector ends cleanly");
        self.wait_for_members().await;
        connector
            .device_url
            .trim_start_matches("ws://")
            .trim_end_matches(ringpush_protocol::CONNECT_PATH)
            .to_owned()
    }

    /// Waits until the store's live members are exactly the running connectors, and then
    /// until the dispatcher answers with one of them.
    async fn wait_for_members(&self) {
        let mut wanted: Vec<String> = self.connectors.iter().map(|c| c.id.clone()).collect();
        wanted.sort();
        eventually("the ring to match the running connectors", || async {
            let live = self.store.live_members(now_ms()).await.ok()?;
            let ids: Vec<String> = live.into_iter().map(|member| member.id).collect();
            (ids == wanted).then_some(())
        })
        .await;
        // Give the dispatcher's ring watcher a few refreshes to see the same.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// A device registered straight in the store (no controller involved).
    pub async fn new_device(&self) -> Identity {
        let device_id = DeviceId::random();
        let identity = Identity {
            app_id: self.app,
            device_id,
            device_token: sign_token(device_id),
            seal_key: None,
        };
        self.store
            .create_device(&DeviceRecord {
                id: identity.device_id,
                app: self.app,
                created_at_ms: now_ms(),
                sealing: None,
            })
            .await
            .expect("create device");
        identity
    }

    /// A client configuration for this deployment, with fast backoff.
    pub fn config(&self) -> Config {
        Config::new(
            self.controller_url.clone(),
            self.dispatcher_url.clone(),
            self.app,
            CLIENT_KEY,
        )
        .with_backoff(Duration::from_millis(20), Duration::from_millis(500))
    }

    /// Appends text messages to the device's inbox, then hands them to every running
    /// connector (the one holding the device writes them; the others answer not connected),
    /// as a controller does. Answers their seqs.
    pub async fn send(&self, device: DeviceId, texts: &[String]) -> Vec<u64> {
        let created_at_ms = now_ms();
        let messages: Vec<NewMessage> = texts
            .iter()
            .map(|text| NewMessage {
                device,
                payload: text.as_bytes().to_vec(),
                content_type: ContentType::Text,
                created_at_ms,
                expires_at_ms: created_at_ms + 3_600_000,
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
        let deliveries: Vec<Delivery> = appended
            .iter()
            .zip(&messages)
            .map(|(appended, message)| Delivery {
                device_id: device.to_string(),
                push: Some(Push {
                    message_id: MessageId {
                        device,
                        seq: appended.seq,
                    }
                    .to_string(),
                    seq: appended.seq,
                    payload: message.payload.clone(),
                    content_type: message.content_type.mime().to_owned(),
                    created_at_ms: message.created_at_ms,
                    expires_at_ms: message.expires_at_ms,
                    stream: 0,
                    campaign_id: String::new(),
                    ..Default::default()
                }),
            })
            .collect();
        for connector in &self.connectors {
            // Live delivery is best effort, as in the controller: the inbox has the messages.
            if let Ok(mut client) = ConnectorClient::connect(connector.grpc_url.clone()).await {
                let _ = client
                    .deliver(DeliverRequest {
                        deliveries: deliveries.clone(),
                    })
                    .await;
            }
        }
        appended.iter().map(|appended| appended.seq).collect()
    }

    /// Appends an audience message to the app's timeline, then hands it to every running
    /// connector with one `Broadcast` call each (each writes it to the matching devices it
    /// holds), as a controller does. Answers its message id and timeline seq.
    pub async fn broadcast(
        &self,
        audience: &str,
        text: &str,
        campaign_id: Option<&str>,
    ) -> (String, u64) {
        let created_at_ms = now_ms();
        let message_id = DeviceId::random().to_string();
        let entry = NewTimelineEntry {
            message_id: message_id.clone(),
            audience: audience.to_owned(),
            payload: text.as_bytes().to_vec(),
            content_type: ContentType::Text,
            created_at_ms,
            expires_at_ms: created_at_ms + 3_600_000,
            campaign_id: campaign_id.map(str::to_owned),
            idempotency_key: None,
            options: Default::default(),
        };
        let appended = self
            .store
            .timelines()
            .append_timeline(self.app, &entry, 10_000)
            .await
            .expect("append to the timeline");
        let push = Push {
            message_id: message_id.clone(),
            seq: appended.seq,
            payload: entry.payload,
            content_type: ContentType::Text.mime().to_owned(),
            created_at_ms,
            expires_at_ms: entry.expires_at_ms,
            stream: 1,
            campaign_id: campaign_id.unwrap_or_default().to_owned(),
            ..Default::default()
        };
        for connector in &self.connectors {
            // Best effort, as in the controller: devices not reached read the timeline.
            if let Ok(mut client) = ConnectorClient::connect(connector.grpc_url.clone()).await {
                let _ = client
                    .broadcast(BroadcastRequest {
                        app_id: self.app.to_string(),
                        audience: audience.to_owned(),
                        push: Some(push.clone()),
                        max_per_second: 0,
                    })
                    .await;
            }
        }
        (message_id, appended.seq)
    }

    /// Waits until the registry holds `expected` as the device's attributes. The connector
    /// writes a set there after it applied it to the connection, so audience messages sent
    /// from then on are matched against it.
    pub async fn wait_for_attributes(&self, device: DeviceId, expected: &DeviceAttributes) {
        eventually("the connector to have the device's attributes", || async {
            let stored = self.store.registry().attributes(device).await.ok()??;
            (stored == *expected).then_some(())
        })
        .await;
    }

    /// The total of `counter` in the statistics of `subject` (a message or campaign id).
    pub async fn stat(&self, subject: &str, counter: Counter) -> u64 {
        let record = self
            .store
            .stats()
            .read_stats(self.app, subject)
            .await
            .expect("read stats");
        record.totals.get(&counter).copied().unwrap_or(0)
    }

    /// The device's acked position in the store.
    pub async fn acked_up_to(&self, device: DeviceId) -> u64 {
        self.store
            .inbox_state(device, now_ms())
            .await
            .expect("inbox state")
            .acked_up_to
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for connector in &self.connectors {
            connector.shutdown.cancel();
        }
    }
}

/// `count` distinct texts starting with `prefix`.
pub fn texts(prefix: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|index| format!("{prefix}-{index}"))
        .collect()
}

/// The next message, or a test failure after [`PATIENCE`].
pub async fn next(client: &mut Client) -> Message {
    tokio::time::timeout(PATIENCE, client.next_message())
        .await
        .expect("a message within the patience")
        .expect("no client error")
}

/// Takes `count` messages and answers their (seq, text) pairs.
pub async fn take(client: &mut Client, count: usize) -> Vec<(u64, String)> {
    let mut taken = Vec::with_capacity(count);
    for _ in 0..count {
        let message = next(client).await;
        taken.push((message.seq, message.data_str().expect("utf-8").to_owned()));
    }
    taken
}

/// Polls `check` until it answers `Some`, failing the test after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that no message is waiting now, by waiting a little for one.
pub async fn assert_quiet(client: &mut Client) {
    if let Ok(outcome) =
        tokio::time::timeout(Duration::from_millis(500), client.next_message()).await
    {
        panic!("expected no message, got {outcome:?}");
    }
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A loopback TCP relay to a target address that can be frozen: once frozen it keeps every
/// socket open but moves no more bytes, like a network path that silently died (no FIN, no
/// RST), which only a liveness check can notice.
pub struct FreezableRelay {
    /// `ws://` URL of the relay, with the connector path.
    pub url: String,
    frozen: Arc<std::sync::atomic::AtomicBool>,
    shutdown: CancellationToken,
}

impl FreezableRelay {
    /// Relays to the connector WebSocket at `target_url` (`ws://host:port/path`).
    pub async fn start(target_url: &str) -> Self {
        let target = target_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host:port")
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let url = format!(
            "ws://{}{}",
            listener.local_addr().unwrap(),
            ringpush_protocol::CONNECT_PATH
        );
        let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let shutdown = CancellationToken::new();
        let (accept_frozen, accept_shutdown) = (frozen.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = accept_shutdown.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((inbound, _)) = accepted else { continue };
                let (frozen, shutdown, target) = (
                    accept_frozen.clone(),
                    accept_shutdown.clone(),
                    target.clone(),
                );
                tokio::spawn(async move {
                    let relay = async {
                        if frozen.load(std::sync::atomic::Ordering::SeqCst) {
                            std::future::pending::<()>().await;
                        }
                        let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                            return;
                        };
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        tokio::join!(
                            pump(in_read, out_write, &frozen),
                            pump(out_read, in_write, &frozen)
                        );
                    };
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = relay => {}
                    }
                });
            }
        });
        Self {
            url,
            frozen,
            shutdown,
        }
    }

    /// From now on no byte passes, in either direction, on any connection.
    pub fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FreezableRelay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Copies bytes until the end of the stream; once `frozen`, holds both sockets and stops.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: &std::sync::atomic::AtomicBool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if frozen.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

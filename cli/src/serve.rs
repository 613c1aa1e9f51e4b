//! The server commands: `dev`, `connector`, `dispatcher`, `controller`.
//!
//! Each binds every listener first (so a port clash fails at once, with the address in the
//! message), logs every bound address, runs until SIGTERM or SIGINT, then drains.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ringpush_controller::{ControllerConfig, ControllerState, MetricsRender};
use ringpush_store::{EmbeddedStore, Store, membership};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::CommonArgs;
use crate::settings::Settings;

/// An invalid configuration: the process exits with code 64.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Controller REST address.
    #[arg(long, env = "RINGPUSH_CONTROLLER_LISTEN")]
    pub controller_listen: Option<SocketAddr>,
    /// Dispatcher address.
    #[arg(long, env = "RINGPUSH_DISPATCHER_LISTEN")]
    pub dispatcher_listen: Option<SocketAddr>,
    /// Connector device (WebSocket) address.
    #[arg(long, env = "RINGPUSH_DEVICE_LISTEN")]
    pub device_listen: Option<SocketAddr>,
    /// Connector internal gRPC address.
    #[arg(long, env = "RINGPUSH_GRPC_LISTEN")]
    pub grpc_listen: Option<SocketAddr>,
    /// Directory of the embedded store.
    #[arg(long, env = "RINGPUSH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Admin token; a random one is generated and printed when unset.
    #[arg(long, env = "RINGPUSH_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Testing and demo aid: run campaign time on a simulated clock,
    /// REAL_ANCHOR_MS:SIM_ANCHOR_MS:RATE (campaign time reads SIM_ANCHOR_MS when the real
    /// clock reads REAL_ANCHOR_MS and runs RATE times as fast; RATE above 0, at most 100000).
    /// Campaign times only; message TTLs and leases stay on the real clock. Controllers that
    /// share campaigns must be given the same value.
    #[arg(
        long,
        env = "RINGPUSH_SIMULATED_CLOCK",
        value_name = "REAL_ANCHOR_MS:SIM_ANCHOR_MS:RATE"
    )]
    pub simulated_clock: Option<String>,
    /// Mark the portal's session cookie Secure (the controller is served over TLS).
    #[arg(long, env = "RINGPUSH_SECURE_COOKIES")]
    pub secure_cookies: bool,
    #[command(flatten)]
    pub quota: SendQuotaArgs,
}

/// Each app's send quota on a controller (`ringpush dev` and `ringpush controller`).
#[derive(Debug, Args)]
pub struct SendQuotaArgs {
    /// Messages an app may send per second through this controller's REST API (0: no limit).
    #[arg(long, env = "RINGPUSH_APP_MESSAGES_PER_SECOND")]
    pub app_messages_per_second: Option<f64>,
    /// Messages an app may send at once through this controller's REST API.
    #[arg(long, env = "RINGPUSH_APP_MESSAGES_BURST")]
    pub app_messages_burst: Option<u32>,
}

impl SendQuotaArgs {
    fn apply(&self, controller: &mut crate::settings::ControllerSettings) {
        if let Some(rate) = self.app_messages_per_second {
            controller.app_messages_per_second = rate;
        }
        if let Some(burst) = self.app_messages_burst {
            controller.app_messages_burst = burst;
        }
    }
}

#[derive(Debug, Args)]
pub struct ConnectorArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Redis URL: redis://host:port or redis+cluster://host:port,host:port.
    #[arg(long, env = "RINGPUSH_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Name on the ring (default: the advertised device host:port).
    #[arg(long, env = "RINGPUSH_CONNECTOR_ID")]
    pub id: Option<String>,
    /// Device (WebSocket) listen address.
    #[arg(long, env = "RINGPUSH_DEVICE_LISTEN")]
    pub device_listen: Option<SocketAddr>,
    /// Device URL advertised to devices (default ws://<device-listen>/v1/connect, or wss://
    /// with --device-tls-cert).
    #[arg(long, env = "RINGPUSH_DEVICE_URL")]
    pub device_url: Option<String>,
    /// Internal gRPC listen address.
    #[arg(long, env = "RINGPUSH_GRPC_LISTEN")]
    pub grpc_listen: Option<SocketAddr>,
    /// gRPC URL advertised to controllers (default http://<grpc-listen>).
    #[arg(long, env = "RINGPUSH_GRPC_URL")]
    pub grpc_url: Option<String>,
    /// Address for /healthz and /metrics (default: off).
    #[arg(long, env = "RINGPUSH_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Seconds between device pings; silent for three of them means dead.
    #[arg(long, env = "RINGPUSH_PING_INTERVAL_SECONDS")]
    pub ping_interval_seconds: Option<u64>,
    /// Longest wait for devices to leave on SIGTERM.
    #[arg(long, env = "RINGPUSH_DRAIN_TIMEOUT_SECONDS")]
    pub drain_timeout_seconds: Option<u64>,
    /// New device connections allowed per client address and second (0: no limit).
    #[arg(long, env = "RINGPUSH_CONNECTIONS_PER_IP_PER_SECOND")]
    pub connections_per_ip_per_second: Option<f64>,
    /// New device connections allowed per client address at once.
    #[arg(long, env = "RINGPUSH_CONNECTIONS_PER_IP_BURST")]
    pub connections_per_ip_burst: Option<u32>,
    /// Unsent output a device connection may hold before it is cut as a slow consumer.
    #[arg(long, env = "RINGPUSH_MAX_PENDING_OUTPUT_BYTES")]
    pub max_pending_output_bytes: Option<usize>,
    /// Each device socket's kernel send buffer in bytes (0: the kernel's own, growing).
    #[arg(long, env = "RINGPUSH_SOCKET_SEND_BUFFER_BYTES")]
    pub socket_send_buffer_bytes: Option<usize>,
    /// Serve the internal gRPC over TLS with this certificate chain (PEM; with --grpc-tls-key).
    #[arg(long, env = "RINGPUSH_GRPC_TLS_CERT")]
    pub grpc_tls_cert: Option<PathBuf>,
    /// The private key of --grpc-tls-cert (PEM).
    #[arg(long, env = "RINGPUSH_GRPC_TLS_KEY")]
    pub grpc_tls_key: Option<PathBuf>,
    /// Require gRPC clients (controllers) to present a certificate issued by this CA (PEM):
    /// mutual TLS.
    #[arg(long, env = "RINGPUSH_GRPC_CLIENT_CA")]
    pub grpc_client_ca: Option<PathBuf>,
    /// Certificate chain (PEM) for devices over TLS (wss://); needs --device-tls-key.
    #[arg(long, env = "RINGPUSH_DEVICE_TLS_CERT")]
    pub device_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --device-tls-cert.
    #[arg(long, env = "RINGPUSH_DEVICE_TLS_KEY")]
    pub device_tls_key: Option<PathBuf>,
}

fn set_path(target: &mut PathBuf, value: &Option<PathBuf>) {
    if let Some(path) = value {
        target.clone_from(path);
    }
}

#[derive(Debug, Args)]
pub struct DispatcherArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Redis URL: redis://host:port or redis+cluster://host:port,host:port.
    #[arg(long, env = "RINGPUSH_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Listen address.
    #[arg(long, env = "RINGPUSH_DISPATCHER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Serve over TLS with this certificate chain (PEM; with --tls-key).
    #[arg(long, env = "RINGPUSH_DISPATCHER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "RINGPUSH_DISPATCHER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Redis URL: redis://host:port or redis+cluster://host:port,host:port.
    #[arg(long, env = "RINGPUSH_REDIS_URL")]
    pub redis_url: Option<String>,
    /// REST listen address.
    #[arg(long, env = "RINGPUSH_CONTROLLER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Admin token (required).
    #[arg(long, env = "RINGPUSH_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Largest message payload in bytes.
    #[arg(long, env = "RINGPUSH_MAX_PAYLOAD_BYTES")]
    pub max_payload_bytes: Option<usize>,
    /// How often the campaign scheduler looks for due firings, in milliseconds.
    #[arg(long, env = "RINGPUSH_SCHEDULER_TICK_MS")]
    pub scheduler_tick_ms: Option<u64>,
    /// How long a firing's claim keeps other controllers off it, in milliseconds.
    #[arg(long, env = "RINGPUSH_CAMPAIGN_LEASE_MS")]
    pub campaign_lease_ms: Option<u64>,
    /// Testing and demo aid: run campaign time on a simulated clock,
    /// REAL_ANCHOR_MS:SIM_ANCHOR_MS:RATE (campaign time reads SIM_ANCHOR_MS when the real
    /// clock reads REAL_ANCHOR_MS and runs RATE times as fast; RATE above 0, at most 100000).
    /// Campaign times only; message TTLs and leases stay on the real clock. Controllers that
    /// share campaigns must be given the same value.
    #[arg(
        long,
        env = "RINGPUSH_SIMULATED_CLOCK",
        value_name = "REAL_ANCHOR_MS:SIM_ANCHOR_MS:RATE"
    )]
    pub simulated_clock: Option<String>,
    /// Mark the portal's session cookie Secure (the controller is served over TLS).
    #[arg(long, env = "RINGPUSH_SECURE_COOKIES")]
    pub secure_cookies: bool,
    #[command(flatten)]
    pub quota: SendQuotaArgs,
    /// Serve the REST API and the portal over TLS with this certificate chain (PEM; with
    /// --tls-key).
    #[arg(long, env = "RINGPUSH_CONTROLLER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "RINGPUSH_CONTROLLER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Dial connectors' gRPC over TLS, trusting this CA (PEM); connectors must advertise
    /// https:// URLs.
    #[arg(long, env = "RINGPUSH_CONNECTOR_CA")]
    pub connector_ca: Option<PathBuf>,
    /// The certificate (PEM) presented to connectors that require one (mutual TLS; with
    /// --connector-client-key).
    #[arg(long, env = "RINGPUSH_CONNECTOR_CLIENT_CERT")]
    pub connector_client_cert: Option<PathBuf>,
    /// The private key of --connector-client-cert (PEM).
    #[arg(long, env = "RINGPUSH_CONNECTOR_CLIENT_KEY")]
    pub connector_client_key: Option<PathBuf>,
}

fn load_settings(
    common: &CommonArgs,
    apply: impl FnOnce(&mut Settings),
) -> anyhow::Result<Settings> {
    let mut settings =
        Settings::load(common.config.as_deref()).map_err(|e| ConfigError(format!("{e:#}")))?;
    if let Some(ttl) = common.lease_ttl_ms {
        settings.membership.lease_ttl_ms = ttl;
    }
    if let Some(refresh) = common.ring_refresh_ms {
        settings.membership.refresh_ms = refresh;
    }
    apply(&mut settings);
    let settings = settings
        .validate()
        .map_err(|e| ConfigError(format!("{e:#}")))?;
    crate::telemetry::init_logs(&common.log, common.log_json);
    Ok(settings)
}

async fn bind(what: &str, address: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} for the {what} (is it in use?)"))?;
    tracing::info!(%address, "{what} listening");
    Ok(listener)
}

fn connector_config(settings: &Settings) -> anyhow::Result<ringpush_connector::ConnectorConfig> {
    let c = &settings.connector;
    let defaults = ringpush_connector::ConnectorConfig::default();
    Ok(ringpush_connector::ConnectorConfig {
        id: c.id.clone(),
        device_url: c.device_url.clone(),
        grpc_url: c.grpc_url.clone(),
        shards: if c.shards == 0 {
            defaults.shards
        } else {
            c.shards
        },
        max_frame_bytes: c.max_frame_bytes,
        ping_interval: Duration::from_secs(c.ping_interval_seconds),
        drain_timeout: Duration::from_secs(c.drain_timeout_seconds),
        max_pending_output_bytes: c.max_pending_output_bytes,
        socket_send_buffer_bytes: (c.socket_send_buffer_bytes > 0)
            .then_some(c.socket_send_buffer_bytes),
        connections_per_ip: (c.connections_per_ip_per_second > 0.0).then_some(
            ringpush_limits::Rate {
                per_second: c.connections_per_ip_per_second,
                burst: f64::from(c.connections_per_ip_burst),
            },
        ),
        membership: settings.membership(),
        device_tls: c.device_tls()?,
        ..defaults
    })
}

/// A PEM file named by a setting that validation has already read once.
fn read_pem(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The connector's gRPC TLS for tonic, from the checked settings.
fn grpc_server_tls(
    settings: &Settings,
) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    let Some(tls) = settings
        .connector_grpc_tls()
        .map_err(|e| ConfigError(format!("{e:#}")))?
    else {
        return Ok(None);
    };
    let identity = tonic::transport::Identity::from_pem(read_pem(&tls.cert)?, read_pem(&tls.key)?);
    let mut config = tonic::transport::ServerTlsConfig::new()
        .identity(identity)
        .timeout(crate::https::HANDSHAKE_TIMEOUT);
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(tonic::transport::Certificate::from_pem(read_pem(ca)?));
    }
    Ok(Some(config))
}

/// The controller's TLS towards connectors for tonic, from the checked settings.
fn connector_client_tls(
    settings: &Settings,
) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
    let Some(tls) = settings
        .connector_client_tls()
        .map_err(|e| ConfigError(format!("{e:#}")))?
    else {
        return Ok(None);
    };
    let mut config = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read_pem(&tls.ca)?))
        .timeout(crate::https::HANDSHAKE_TIMEOUT);
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(tonic::transport::Identity::from_pem(
            read_pem(cert)?,
            read_pem(key)?,
        ));
    }
    Ok(Some(config))
}

fn controller_config(settings: &Settings) -> ControllerConfig {
    let c = &settings.controller;
    let mut config = ControllerConfig::new(c.admin_token.clone());
    config.max_payload_bytes = c.max_payload_bytes;
    config.max_devices_per_request = c.max_devices_per_request;
    config.device_token_lifetime_ms = (c.device_token_lifetime_seconds as i64).saturating_mul(1000);
    config.default_ttl_seconds = c.default_ttl_seconds;
    config.inbox.max_inbox_len = c.max_inbox_len;
    config.secure_cookies = c.secure_cookies;
    config.app_send_rate = (c.app_messages_per_second > 0.0).then_some(ringpush_limits::Rate {
        per_second: c.app_messages_per_second,
        burst: f64::from(c.app_messages_burst),
    });
    config
}

/// `ringpush dev`: everything in one process on the embedded store.
pub async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let mut settings = load_settings(&args.common, |s| {
        if let Some(a) = args.controller_listen {
            s.controller.listen = a;
        }
        if let Some(a) = args.dispatcher_listen {
            s.dispatcher.listen = a;
        }
        if let Some(a) = args.device_listen {
            s.connector.device_listen = a;
        }
        if let Some(a) = args.grpc_listen {
            s.connector.grpc_listen = a;
        }
        if let Some(dir) = args.data_dir.clone() {
            s.data_dir = dir;
        }
        if let Some(token) = args.admin_token.clone() {
            s.controller.admin_token = token;
        }
        if let Some(clock) = args.simulated_clock.clone() {
            s.controller.simulated_clock = clock;
        }
        args.quota.apply(&mut s.controller);
        if args.secure_cookies {
            s.controller.secure_cookies = true;
        }
    })?;
    refuse_tls_in_dev(&settings)?;
    let generated_token = settings.controller.admin_token.is_empty();
    if generated_token {
        settings.controller.admin_token = crate::client::random_token();
    }
    let metrics = crate::telemetry::init_metrics();
    let shutdown = crate::shutdown::on_signal()?;

    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            settings.data_dir.display()
        )
    })?;
    let path = settings.data_dir.join("ringpush.redb");
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(&path)
            .with_context(|| format!("cannot open the embedded store {}", path.display()))?,
    );

    let controller_listener = bind("controller", settings.controller.listen).await?;
    let dispatcher_listener = bind("dispatcher", settings.dispatcher.listen).await?;
    let device_listener = bind("connector devices", settings.connector.device_listen).await?;
    let grpc_listener = bind("connector gRPC", settings.connector.grpc_listen).await?;

    println!("ringpush dev is running (store: {})", path.display());
    println!("  controller  http://{}", controller_listener.local_addr()?);
    println!(
        "  portal      http://{}/portal/",
        controller_listener.local_addr()?
    );
    println!("  dispatcher  http://{}", dispatcher_listener.local_addr()?);
    println!("  connector   {}", settings.connector.device_url);
    if generated_token {
        println!(
            "  admin token {0}\n  export RINGPUSH_ADMIN_TOKEN={0}",
            settings.controller.admin_token
        );
    }

    let ring = membership::watch_ring(store.clone(), settings.membership(), shutdown.clone()).await;
    let connector = tokio::spawn(ringpush_connector::run(
        connector_config(&settings)?,
        device_listener,
        grpc_listener,
        store.clone(),
        shutdown.clone(),
    ));
    let dispatcher = tokio::spawn(ringpush_dispatcher::serve(
        dispatcher_listener,
        ring.clone(),
        shutdown.clone(),
    ));
    let state = ControllerState::new(
        controller_config(&settings),
        store.clone(),
        ring,
        Some(metrics),
        shutdown.clone(),
    )
    .with_clock(campaign_clock(&settings)?)
    .with_platform(gateways(&settings)?, shutdown.clone());
    let scheduler = spawn_scheduler(&settings, store.clone(), state.clone(), shutdown.clone());
    let controller = tokio::spawn(ringpush_controller::serve(
        controller_listener,
        state,
        shutdown.clone(),
    ));
    let (connector, dispatcher, controller, _) =
        tokio::join!(connector, dispatcher, controller, scheduler);
    connector?.context("connector failed")?;
    dispatcher?.context("dispatcher failed")?;
    controller?.context("controller failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// `ringpush dev` serves plain HTTP and gRPC: TLS settings in its config file would be
/// silently ignored (or, for gRPC, advertise an https URL nothing serves), so they stop it.
fn refuse_tls_in_dev(settings: &Settings) -> anyhow::Result<()> {
    let set = |path: &PathBuf| !path.as_os_str().is_empty();
    let (c, d, k) = (
        &settings.controller,
        &settings.dispatcher,
        &settings.connector,
    );
    let named = [
        ("controller.tls_cert", set(&c.tls_cert)),
        ("controller.connector_ca", set(&c.connector_ca)),
        ("dispatcher.tls_cert", set(&d.tls_cert)),
        ("connector.grpc_tls_cert", set(&k.grpc_tls_cert)),
    ];
    if let Some((name, _)) = named.iter().find(|(_, on)| *on) {
        return Err(ConfigError(format!(
            "{name} is set, but `ringpush dev` serves plain HTTP and gRPC: use the connector, dispatcher and controller commands for TLS"
        ))
        .into());
    }
    Ok(())
}

/// `ringpush connector`.
pub async fn connector(args: ConnectorArgs) -> anyhow::Result<()> {
    let settings = load_settings(&args.common, |s| {
        if let Some(url) = args.redis_url.clone() {
            s.redis_url = url;
        }
        if let Some(id) = args.id.clone() {
            s.connector.id = id;
        }
        if let Some(a) = args.device_listen {
            s.connector.device_listen = a;
        }
        if let Some(url) = args.device_url.clone() {
            s.connector.device_url = url;
        }
        if let Some(a) = args.grpc_listen {
            s.connector.grpc_listen = a;
        }
        if let Some(url) = args.grpc_url.clone() {
            s.connector.grpc_url = url;
        }
        if let Some(a) = args.admin_listen {
            s.connector.admin_listen = a.to_string();
        }
        if let Some(p) = args.ping_interval_seconds {
            s.connector.ping_interval_seconds = p;
        }
        if let Some(d) = args.drain_timeout_seconds {
            s.connector.drain_timeout_seconds = d;
        }
        if let Some(rate) = args.connections_per_ip_per_second {
            s.connector.connections_per_ip_per_second = rate;
        }
        if let Some(burst) = args.connections_per_ip_burst {
            s.connector.connections_per_ip_burst = burst;
        }
        if let Some(bytes) = args.max_pending_output_bytes {
            s.connector.max_pending_output_bytes = bytes;
        }
        if let Some(bytes) = args.socket_send_buffer_bytes {
            s.connector.socket_send_buffer_bytes = bytes;
        }
        set_path(&mut s.connector.grpc_tls_cert, &args.grpc_tls_cert);
        set_path(&mut s.connector.grpc_tls_key, &args.grpc_tls_key);
        set_path(&mut s.connector.grpc_client_ca, &args.grpc_client_ca);
        if let Some(path) = &args.device_tls_cert {
            s.connector.device_tls_cert = path.display().to_string();
        }
        if let Some(path) = &args.device_tls_key {
            s.connector.device_tls_key = path.display().to_string();
        }
    })?;
    let metrics = crate::telemetry::init_metrics();
    let shutdown = crate::shutdown::on_signal()?;
    let store = crate::regions::open(&settings).await?.store;
    let device_listener = bind("connector devices", settings.connector.device_listen).await?;
    let grpc_listener = bind("connector gRPC", settings.connector.grpc_listen).await?;
    if !settings.connector.admin_listen.is_empty() {
        let address: SocketAddr = settings
            .connector
            .admin_listen
            .parse()
            .map_err(|e| ConfigError(format!("connector.admin_listen: {e}")))?;
        let listener = bind("connector admin", address).await?;
        tokio::spawn(serve_admin(listener, metrics, shutdown.clone()));
    }
    let mut config = connector_config(&settings)?;
    config.grpc_tls = grpc_server_tls(&settings)?;
    tracing::info!(
        id = %settings.connector.id,
        device_url = %settings.connector.device_url,
        grpc_url = %settings.connector.grpc_url,
        device_tls = config.device_tls.is_some(),
        grpc_tls = config.grpc_tls.is_some(),
        grpc_client_certificates = !settings.connector.grpc_client_ca.as_os_str().is_empty(),
        "connector starting"
    );
    ringpush_connector::run(config, device_listener, grpc_listener, store, shutdown)
        .await
        .context("connector failed")?;
    tracing::info!("connector stopped");
    Ok(())
}

/// `ringpush dispatcher`.
pub async fn dispatcher(args: DispatcherArgs) -> anyhow::Result<()> {
    let settings = load_settings(&args.common, |s| {
        if let Some(url) = args.redis_url.clone() {
            s.redis_url = url;
        }
        if let Some(a) = args.listen {
            s.dispatcher.listen = a;
        }
        set_path(&mut s.dispatcher.tls_cert, &args.tls_cert);
        set_path(&mut s.dispatcher.tls_key, &args.tls_key);
    })?;
    let metrics = crate::telemetry::init_metrics();
    let shutdown = crate::shutdown::on_signal()?;
    // The dispatcher reads only its region's ring.
    let store = crate::regions::redis(&settings.redis_url).await?;
    let listener = bind("dispatcher", settings.dispatcher.listen).await?;
    let ring = membership::watch_ring(store, settings.membership(), shutdown.clone()).await;
    let app = ringpush_dispatcher::router(ring).merge(metrics_route(metrics));
    match server_config(settings.dispatcher_tls())? {
        Some(tls) => {
            tracing::info!("dispatcher serves HTTPS");
            crate::https::serve(listener, tls, app, shutdown).await;
        }
        None => axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .context("dispatcher failed")?,
    }
    Ok(())
}

/// `ringpush controller`.
pub async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    let settings = load_settings(&args.common, |s| {
        if let Some(url) = args.redis_url.clone() {
            s.redis_url = url;
        }
        if let Some(a) = args.listen {
            s.controller.listen = a;
        }
        if let Some(token) = args.admin_token.clone() {
            s.controller.admin_token = token;
        }
        if let Some(max) = args.max_payload_bytes {
            s.controller.max_payload_bytes = max;
        }
        if let Some(tick) = args.scheduler_tick_ms {
            s.controller.scheduler_tick_ms = tick;
        }
        if let Some(lease) = args.campaign_lease_ms {
            s.controller.campaign_lease_ms = lease;
        }
        if let Some(clock) = args.simulated_clock.clone() {
            s.controller.simulated_clock = clock;
        }
        args.quota.apply(&mut s.controller);
        if args.secure_cookies {
            s.controller.secure_cookies = true;
        }
        set_path(&mut s.controller.tls_cert, &args.tls_cert);
        set_path(&mut s.controller.tls_key, &args.tls_key);
        set_path(&mut s.controller.connector_ca, &args.connector_ca);
        set_path(
            &mut s.controller.connector_client_cert,
            &args.connector_client_cert,
        );
        set_path(
            &mut s.controller.connector_client_key,
            &args.connector_client_key,
        );
    })?;
    if settings.controller.admin_token.len() < 16 {
        return Err(ConfigError(
            "an admin token of at least 16 characters is required: set RINGPUSH_ADMIN_TOKEN or --admin-token".into(),
        )
        .into());
    }
    let metrics = crate::telemetry::init_metrics();
    let shutdown = crate::shutdown::on_signal()?;
    let stores = crate::regions::open(&settings).await?;
    let store = stores.store.clone();
    let listener = bind("controller", settings.controller.listen).await?;
    let ring = membership::watch_ring(store.clone(), settings.membership(), shutdown.clone()).await;
    let tls = server_config(settings.controller_tls())?;
    let mut config = controller_config(&settings);
    config.region = stores.region_code();
    config.delivery.connector_tls = connector_client_tls(&settings)?;
    if config.delivery.connector_tls.is_some() {
        tracing::info!(
            client_certificate = !settings
                .controller
                .connector_client_cert
                .as_os_str()
                .is_empty(),
            "connectors are dialed over TLS"
        );
    }
    let mut state =
        ControllerState::new(config, store.clone(), ring, Some(metrics), shutdown.clone())
            .with_clock(campaign_clock(&settings)?)
            .with_platform(gateways(&settings)?, shutdown.clone());
    if let Some(regional) = stores.regional.clone() {
        let remote = stores.remote_rings(&settings, &shutdown).await;
        state = state.across_regions(regional, remote, shutdown.clone());
    }
    let scheduler = spawn_scheduler(&settings, store, state.clone(), shutdown.clone());
    match tls {
        Some(tls) => {
            tracing::info!("controller serves HTTPS");
            crate::https::serve(listener, tls, ringpush_controller::app(state), shutdown).await;
        }
        None => ringpush_controller::serve(listener, state, shutdown)
            .await
            .context("controller failed")?,
    }
    let _ = scheduler.await;
    Ok(())
}

/// The controller's platform path (gateways to APNs, FCM and Web Push) from `[gateways]`.
fn gateways(settings: &Settings) -> anyhow::Result<ringpush_controller::platform::Platform> {
    settings
        .gateways
        .platform()
        .map_err(|e| ConfigError(format!("{e:#}")).into())
}

/// The rustls configuration of an HTTPS listener (HTTP/1.1), if its settings turn TLS on.
fn server_config(
    tls: anyhow::Result<Option<ringpush_tls::ServerTls>>,
) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    let Some(tls) = tls.map_err(|e| ConfigError(format!("{e:#}")))? else {
        return Ok(None);
    };
    let config = tls
        .config(&[b"http/1.1"])
        .map_err(|e| ConfigError(e.to_string()))?;
    Ok(Some(config))
}

/// The clock of campaign time: the system clock, or the simulated one the settings name
/// (announced loudly: a controller on it sends campaigns at times other than the real ones).
fn campaign_clock(
    settings: &Settings,
) -> anyhow::Result<Arc<dyn ringpush_controller::clock::Clock>> {
    let simulated = settings
        .simulated_clock()
        .map_err(|e| ConfigError(format!("{e:#}")))?;
    let Some(clock) = simulated else {
        return Ok(Arc::new(ringpush_controller::clock::SystemClock));
    };
    use ringpush_controller::clock::Clock as _;
    tracing::warn!(
        simulated_clock = %clock,
        rate = clock.rate(),
        campaign_now_ms = clock.now_ms(),
        "campaign time runs on a SIMULATED clock (a testing and demo aid): campaigns fire by it, not by the real time; message TTLs and leases stay real"
    );
    Ok(Arc::new(clock))
}

/// Starts this controller's campaign scheduler (every controller runs one; claims in the
/// store make each firing happen once).
fn spawn_scheduler(
    settings: &Settings,
    store: Arc<dyn Store>,
    state: ControllerState,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    use ringpush_controller::scheduler::{Scheduler, SchedulerConfig};
    let suffix: u32 = rand::random();
    let owner = format!("controller-{}-{suffix:08x}", std::process::id());
    let mut config = SchedulerConfig::new(owner);
    config.tick = Duration::from_millis(settings.controller.scheduler_tick_ms);
    config.lease_ms = settings.controller.campaign_lease_ms;
    // The clock that stamps campaigns' creation must be the one firings are read on.
    let clock = state.clock();
    let executor = Arc::new(ringpush_controller::campaign_fire::CampaignSender::new(
        state,
    ));
    let scheduler = Scheduler::new(store, executor, clock, config);
    tokio::spawn(scheduler.run(shutdown))
}

fn metrics_route(render: MetricsRender) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let render = render.clone();
            async move { render() }
        }),
    )
}

/// Health and metrics of a standalone connector: `/readyz` fails from the moment the drain
/// starts, so a load balancer stops sending new devices before they would be redirected.
async fn serve_admin(listener: TcpListener, metrics: MetricsRender, shutdown: CancellationToken) {
    let draining = shutdown.clone();
    let app = metrics_route(metrics)
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let draining = draining.is_cancelled();
                async move {
                    if draining {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                    } else {
                        (axum::http::StatusCode::OK, "ready\n")
                    }
                }
            }),
        );
    // Keep answering (not ready) while the connector drains; the process exit ends it.
    if let Err(error) = axum::serve(listener, app).await {
        tracing::warn!(%error, "admin listener failed");
    }
}

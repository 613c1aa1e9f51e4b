//! Settings of the server commands: built-in defaults, then a TOML file, then environment
//! variables and flags (clap reads both), each overriding the one before.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ringpush_tls::{ClientTls, ServerTls};
use serde::{Deserialize, Serialize};

/// Everything a server process can be told, as read from a TOML file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Redis for `connector`, `dispatcher` and `controller` (not used by `dev`):
    /// `redis://host:port` or `redis+cluster://host:port,host:port`.
    pub redis_url: String,
    /// Where `dev` keeps its embedded store.
    pub data_dir: PathBuf,
    /// This process's region, one of `regions`; empty: a single-region deployment.
    pub region: String,
    /// Every region of the deployment, this one included (empty in one region). Each
    /// region's `redis_url` is its store: a device's state is kept in its home region's.
    pub regions: Vec<RegionSettings>,
    pub controller: ControllerSettings,
    pub dispatcher: DispatcherSettings,
    pub connector: ConnectorSettings,
    pub membership: MembershipSettings,
    /// The platform push services (APNs, FCM, Web Push) and the controller's platform worker.
    pub gateways: crate::gateway_settings::GatewaySettings,
}

/// One region of a geo-distributed deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSettings {
    pub name: String,
    /// 1 to 255, never reused: the top byte of the id of every device whose home it is.
    pub code: u8,
    /// The region's store (`redis://` or `redis+cluster://`).
    pub redis_url: String,
    /// The region's public controller URL (for clients and documentation; optional).
    #[serde(default)]
    pub controller_url: String,
    /// The region's public dispatcher URL (for SDKs that fail over; optional).
    #[serde(default)]
    pub dispatcher_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerSettings {
    pub listen: SocketAddr,
    /// The admin token; `dev` makes one up and prints it when this is empty.
    pub admin_token: String,
    pub max_payload_bytes: usize,
    pub max_devices_per_request: usize,
    /// How long a device token is valid; connectors renew it once half has passed.
    pub device_token_lifetime_seconds: u64,
    pub default_ttl_seconds: u64,
    pub max_inbox_len: u32,
    /// How often the campaign scheduler looks for due firings.
    pub scheduler_tick_ms: u64,
    /// How long a controller keeps others off a campaign firing it is sending; another
    /// controller sends it (idempotently) if this one dies. Longer than the longest send.
    pub campaign_lease_ms: u64,
    /// A testing and demo aid: run campaign time on a simulated clock,
    /// `REAL_ANCHOR_MS:SIM_ANCHOR_MS:RATE` (campaign time reads SIM_ANCHOR_MS when the real
    /// clock reads REAL_ANCHOR_MS, and runs RATE times as fast). Campaign times only: message
    /// TTLs and leases stay on the real clock. Empty: the system clock.
    pub simulated_clock: String,
    /// Mark the portal's session cookie `Secure`: set it when the controller is served over
    /// TLS (a proxy's `X-Forwarded-Proto: https` does the same per request).
    pub secure_cookies: bool,
    /// Messages an app may send through this controller's REST API per second; 0: no limit.
    pub app_messages_per_second: f64,
    /// ... and at once.
    pub app_messages_burst: u32,
    /// Serve the REST API and the portal over TLS with this certificate chain (PEM; set
    /// with `tls_key`; empty: plain HTTP).
    pub tls_cert: PathBuf,
    /// The private key of `tls_cert` (PEM).
    pub tls_key: PathBuf,
    /// Dial connectors' gRPC over TLS, trusting these CAs (PEM): every connector must then
    /// advertise an `https://` gRPC URL. Empty: plain `http://`.
    pub connector_ca: PathBuf,
    /// The certificate (PEM) this controller presents to connectors that ask for one
    /// (mutual TLS, `connector.grpc_client_ca`); set with `connector_client_key`.
    pub connector_client_cert: PathBuf,
    /// The private key of `connector_client_cert` (PEM).
    pub connector_client_key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatcherSettings {
    pub listen: SocketAddr,
    /// Serve over TLS with this certificate chain (PEM; set with `tls_key`; empty: plain).
    pub tls_cert: PathBuf,
    /// The private key of `tls_cert` (PEM).
    pub tls_key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorSettings {
    /// The connector's name on the ring; defaults to its advertised device address.
    pub id: String,
    pub device_listen: SocketAddr,
    /// The device URL advertised on the ring; defaults to `ws://<device_listen>/v1/connect`,
    /// or `wss://` when device TLS is on.
    pub device_url: String,
    /// The device listener's certificate chain (PEM, leaf first); with `device_tls_key`,
    /// every device connects over TLS (`wss://`). Empty (both): plain `ws://`.
    pub device_tls_cert: String,
    /// The private key of `device_tls_cert` (PEM).
    pub device_tls_key: String,
    pub grpc_listen: SocketAddr,
    /// The gRPC URL advertised on the ring; defaults to `http://<grpc_listen>`, or
    /// `https://<grpc_listen>` when gRPC TLS is on.
    pub grpc_url: String,
    /// Serve the internal gRPC over TLS with this certificate chain (PEM; set with
    /// `grpc_tls_key`; empty: plain). Its names must cover the host of `grpc_url`.
    pub grpc_tls_cert: PathBuf,
    /// The private key of `grpc_tls_cert` (PEM).
    pub grpc_tls_key: PathBuf,
    /// Require a client certificate issued by these CAs (PEM) on the gRPC listener: mutual
    /// TLS, so only controllers holding one can deliver. Needs `grpc_tls_cert`.
    pub grpc_client_ca: PathBuf,
    /// Health and metrics (`/healthz`, `/readyz`, `/metrics`) of a standalone connector;
    /// empty: off.
    pub admin_listen: String,
    pub ping_interval_seconds: u64,
    pub drain_timeout_seconds: u64,
    pub max_frame_bytes: usize,
    /// Event-loop shards; 0: one per core.
    pub shards: usize,
    /// New device connections allowed per client address and second; 0: no limit.
    pub connections_per_ip_per_second: f64,
    /// ... and at once (a reconnect wave from behind one NAT).
    pub connections_per_ip_burst: u32,
    /// Unsent output a connection may hold before it is closed as a slow consumer.
    pub max_pending_output_bytes: usize,
    /// Each device socket's kernel send buffer; 0: the kernel's (it grows for slow readers).
    pub socket_send_buffer_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MembershipSettings {
    pub lease_ttl_ms: u64,
    pub refresh_ms: u64,
    pub vnodes: u32,
}

/// A rate setting: 0 (no limit), or a positive finite rate with a burst of at least one.
fn valid_rate(per_second: f64, burst: u32) -> bool {
    per_second == 0.0 || (per_second.is_finite() && per_second > 0.0 && burst >= 1)
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".into(),
            data_dir: PathBuf::from(".ringpush"),
            controller: ControllerSettings::default(),
            dispatcher: DispatcherSettings::default(),
            connector: ConnectorSettings::default(),
            membership: MembershipSettings::default(),
            gateways: Default::default(),
            region: String::new(),
            regions: Vec::new(),
        }
    }
}

impl Default for ControllerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            admin_token: String::new(),
            max_payload_bytes: ringpush_protocol::frame::DEFAULT_MAX_PAYLOAD_BYTES,
            max_devices_per_request: 1000,
            device_token_lifetime_seconds: (ringpush_controller::DEFAULT_DEVICE_TOKEN_LIFETIME_MS
                / 1000) as u64,
            default_ttl_seconds: 7 * 24 * 3600,
            max_inbox_len: 1000,
            scheduler_tick_ms: 1000,
            campaign_lease_ms: 600_000,
            simulated_clock: String::new(),
            secure_cookies: false,
            app_messages_per_second: ringpush_controller::DEFAULT_APP_SEND_RATE.per_second,
            app_messages_burst: ringpush_controller::DEFAULT_APP_SEND_RATE.burst as u32,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            connector_ca: PathBuf::new(),
            connector_client_cert: PathBuf::new(),
            connector_client_key: PathBuf::new(),
        }
    }
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".parse().expect("valid address"),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
        }
    }
}

impl Default for ConnectorSettings {
    fn default() -> Self {
        Self {
            id: String::new(),
            device_listen: "127.0.0.1:8082".parse().expect("valid address"),
            device_url: String::new(),
            device_tls_cert: String::new(),
            device_tls_key: String::new(),
            grpc_listen: "127.0.0.1:8083".parse().expect("valid address"),
            grpc_url: String::new(),
            grpc_tls_cert: PathBuf::new(),
            grpc_tls_key: PathBuf::new(),
            grpc_client_ca: PathBuf::new(),
            admin_listen: String::new(),
            ping_interval_seconds: 30,
            drain_timeout_seconds: 10,
            max_frame_bytes: ringpush_protocol::frame::DEFAULT_MAX_PAYLOAD_BYTES
                + ringpush_protocol::frame::FRAME_OVERHEAD_BYTES,
            shards: 0,
            connections_per_ip_per_second: ringpush_connector::DEFAULT_CONNECTIONS_PER_IP
                .per_second,
            connections_per_ip_burst: ringpush_connector::DEFAULT_CONNECTIONS_PER_IP.burst as u32,
            max_pending_output_bytes: ringpush_connector::ConnectorConfig::default()
                .max_pending_output_bytes,
            socket_send_buffer_bytes: 0,
        }
    }
}

impl ConnectorSettings {
    /// The device listener's TLS configuration (advertising `http/1.1`), when
    /// `device_tls_cert` and `device_tls_key` are set; an error names the setting and file.
    pub fn device_tls(&self) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
        match (
            self.device_tls_cert.is_empty(),
            self.device_tls_key.is_empty(),
        ) {
            (true, true) => return Ok(None),
            (false, false) => {}
            (cert_missing, _) => {
                let (set, unset) = if cert_missing {
                    ("device_tls_key", "device_tls_cert")
                } else {
                    ("device_tls_cert", "device_tls_key")
                };
                bail!(
                    "connector.{set} is set but connector.{unset} is not: set both for wss://, or neither"
                );
            }
        }
        let server = ringpush_tls::ServerTls {
            cert: PathBuf::from(&self.device_tls_cert),
            key: PathBuf::from(&self.device_tls_key),
            client_ca: None,
        };
        let config = server.config(&[b"http/1.1"]).with_context(|| {
            format!(
                "connector.device_tls_cert ({}) and connector.device_tls_key ({}) do not make a TLS configuration",
                self.device_tls_cert, self.device_tls_key
            )
        })?;
        Ok(Some(config))
    }
}

impl Default for MembershipSettings {
    fn default() -> Self {
        let defaults = ringpush_store::membership::MembershipConfig::default();
        Self {
            lease_ttl_ms: defaults.lease_ttl.as_millis() as u64,
            refresh_ms: defaults.refresh_every.as_millis() as u64,
            vnodes: defaults.vnodes,
        }
    }
}

impl Settings {
    /// The defaults, overlaid with the TOML file at `path` when given.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// The default settings as a commented TOML file.
    pub fn default_toml() -> String {
        let body = toml::to_string_pretty(&Self::default()).expect("settings serialise");
        format!(
            "# ringpush settings. Every value here can also be set by a flag or a RINGPUSH_*\n\
             # environment variable (see `ringpush <command> --help`); flags win over the\n\
             # environment, which wins over this file.\n\n{body}"
        )
    }

    /// Checks what the types cannot, and fills the values derived from others.
    pub fn validate(mut self) -> anyhow::Result<Self> {
        let grpc_tls = self.connector_grpc_tls()?.is_some();
        let connector = &mut self.connector;
        let device_tls = connector.device_tls()?.is_some();
        if connector.device_url.is_empty() {
            connector.device_url = format!(
                "{}://{}{}",
                if device_tls { "wss" } else { "ws" },
                connector.device_listen,
                ringpush_protocol::CONNECT_PATH
            );
        }
        let grpc_scheme = if grpc_tls { "https" } else { "http" };
        if connector.grpc_url.is_empty() {
            connector.grpc_url = format!("{grpc_scheme}://{}", connector.grpc_listen);
        }
        // Without TLS here an https URL may still be right (a proxy in front terminates it).
        if grpc_tls && !connector.grpc_url.starts_with("https://") {
            bail!(
                "connector.grpc_url must start with https:// when gRPC TLS is on (connector.grpc_tls_cert), got {:?}",
                connector.grpc_url
            );
        }
        if connector.id.is_empty() {
            connector.id = connector
                .device_url
                .trim_start_matches("ws://")
                .trim_start_matches("wss://")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
        }
        if !connector.device_url.starts_with("ws://") && !connector.device_url.starts_with("wss://")
        {
            bail!(
                "connector.device_url must start with ws:// or wss://, got {:?}",
                connector.device_url
            );
        }
        if !valid_rate(
            connector.connections_per_ip_per_second,
            connector.connections_per_ip_burst,
        ) {
            bail!(
                "connector.connections_per_ip_per_second must be 0 (no limit) or positive, with connections_per_ip_burst at least 1"
            );
        }
        if !valid_rate(
            self.controller.app_messages_per_second,
            self.controller.app_messages_burst,
        ) {
            bail!(
                "controller.app_messages_per_second must be 0 (no limit) or positive, with app_messages_burst at least 1"
            );
        }
        if connector.ping_interval_seconds == 0 {
            bail!("connector.ping_interval_seconds must be at least 1");
        }
        let lifetime = self.controller.device_token_lifetime_seconds;
        if !(60..=10 * 365 * 24 * 3600).contains(&lifetime) {
            bail!(
                "controller.device_token_lifetime_seconds must be between 60 (a minute) and 315360000 (ten years), got {lifetime}"
            );
        }
        if self.controller.scheduler_tick_ms < 10 || self.controller.campaign_lease_ms < 1000 {
            bail!(
                "controller.scheduler_tick_ms must be at least 10 and controller.campaign_lease_ms at least 1000"
            );
        }
        self.simulated_clock()?;
        if self.controller.max_payload_bytes == 0 || self.controller.max_inbox_len == 0 {
            bail!("controller.max_payload_bytes and controller.max_inbox_len must be positive");
        }
        if self.membership.lease_ttl_ms < 300 || self.membership.vnodes == 0 {
            bail!("membership.lease_ttl_ms must be at least 300 and membership.vnodes positive");
        }
        self.validate_regions()?;
        self.controller_tls()?;
        self.dispatcher_tls()?;
        self.connector_client_tls()?;
        Ok(self)
    }

    fn validate_regions(&mut self) -> anyhow::Result<()> {
        if self.region.is_empty() {
            if !self.regions.is_empty() {
                bail!("regions are listed but region (this process's region) is not set");
            }
            return Ok(());
        }
        let mut names = std::collections::BTreeSet::new();
        let mut codes = std::collections::BTreeSet::new();
        for region in &self.regions {
            if region.code == 0 {
                bail!("region {:?}: code must be 1 to 255", region.name);
            }
            if !names.insert(region.name.as_str()) || !codes.insert(region.code) {
                bail!(
                    "region {:?} (code {}): names and codes must be distinct",
                    region.name,
                    region.code
                );
            }
            if region.redis_url.is_empty() {
                bail!("region {:?}: redis_url is required", region.name);
            }
        }
        let Some(own) = self.regions.iter().find(|r| r.name == self.region) else {
            bail!(
                "region {:?} is not among regions [{}]",
                self.region,
                self.regions
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        // The own region's store is the process's store.
        self.redis_url = own.redis_url.clone();
        Ok(())
    }

    /// The simulated clock of campaign time, if one is set.
    pub fn simulated_clock(
        &self,
    ) -> anyhow::Result<Option<ringpush_controller::clock::SimulatedClock>> {
        let text = self.controller.simulated_clock.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let clock = text
            .parse()
            .with_context(|| "controller.simulated_clock (--simulated-clock)".to_owned())?;
        Ok(Some(clock))
    }

    /// The controller's TLS (REST API and portal), if on.
    pub fn controller_tls(&self) -> anyhow::Result<Option<ServerTls>> {
        let c = &self.controller;
        server_tls(
            ("controller.tls_cert (--tls-cert)", &c.tls_cert),
            ("controller.tls_key (--tls-key)", &c.tls_key),
            None,
        )
    }

    /// The dispatcher's TLS, if on.
    pub fn dispatcher_tls(&self) -> anyhow::Result<Option<ServerTls>> {
        let d = &self.dispatcher;
        server_tls(
            ("dispatcher.tls_cert (--tls-cert)", &d.tls_cert),
            ("dispatcher.tls_key (--tls-key)", &d.tls_key),
            None,
        )
    }

    /// The TLS of the connector's gRPC listener, if on, with the client CA when mutual.
    pub fn connector_grpc_tls(&self) -> anyhow::Result<Option<ServerTls>> {
        let c = &self.connector;
        server_tls(
            (
                "connector.grpc_tls_cert (--grpc-tls-cert)",
                &c.grpc_tls_cert,
            ),
            ("connector.grpc_tls_key (--grpc-tls-key)", &c.grpc_tls_key),
            Some((
                "connector.grpc_client_ca (--grpc-client-ca)",
                &c.grpc_client_ca,
            )),
        )
    }

    /// What the controller trusts and presents when it dials connectors, if TLS is on.
    pub fn connector_client_tls(&self) -> anyhow::Result<Option<ClientTls>> {
        let c = &self.controller;
        let ca_setting = "controller.connector_ca (--connector-ca)";
        let cert_setting = "controller.connector_client_cert (--connector-client-cert)";
        let key_setting = "controller.connector_client_key (--connector-client-key)";
        let identity = pair(
            (cert_setting, &c.connector_client_cert),
            (key_setting, &c.connector_client_key),
        )?;
        let Some(ca) = tls_file(ca_setting, &c.connector_ca)? else {
            if identity.is_some() {
                bail!(
                    "{cert_setting} is set but {ca_setting} is not: a client certificate is for connectors dialed over TLS"
                );
            }
            return Ok(None);
        };
        let tls = ClientTls { ca, identity };
        tls.config(&[])
            .with_context(|| format!("{ca_setting}, {cert_setting}, {key_setting}"))?;
        Ok(Some(tls))
    }

    pub fn membership(&self) -> ringpush_store::membership::MembershipConfig {
        ringpush_store::membership::MembershipConfig {
            lease_ttl: Duration::from_millis(self.membership.lease_ttl_ms),
            refresh_every: Duration::from_millis(self.membership.refresh_ms.max(50)),
            vnodes: self.membership.vnodes,
        }
    }
}

/// A TLS file setting: `None` when empty, else a file that exists.
fn tls_file(setting: &str, path: &Path) -> anyhow::Result<Option<PathBuf>> {
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_file() => Ok(Some(path.to_owned())),
        Ok(_) => bail!("{setting}: {} is not a file", path.display()),
        Err(error) => bail!("{setting}: cannot read {}: {error}", path.display()),
    }
}

/// A certificate and its key: both set, or neither.
fn pair(
    (cert_setting, cert): (&str, &Path),
    (key_setting, key): (&str, &Path),
) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    match (cert.as_os_str().is_empty(), key.as_os_str().is_empty()) {
        (true, true) => Ok(None),
        (false, true) => bail!("{cert_setting} is set but {key_setting} is not: TLS needs both"),
        (true, false) => bail!("{key_setting} is set but {cert_setting} is not: TLS needs both"),
        (false, false) => {
            let cert = tls_file(cert_setting, cert)?.expect("set");
            let key = tls_file(key_setting, key)?.expect("set");
            Ok(Some((cert, key)))
        }
    }
}

/// A listener's TLS from its settings: off when the certificate and key are empty; a
/// client CA (mutual TLS) needs them. The files are read and parsed here, so that a bad
/// one stops the process at start-up with the setting and the file named.
fn server_tls(
    cert: (&str, &Path),
    key: (&str, &Path),
    client_ca: Option<(&str, &Path)>,
) -> anyhow::Result<Option<ServerTls>> {
    let (cert_setting, key_setting) = (cert.0, key.0);
    let identity = pair(cert, key)?;
    let client_ca = match client_ca {
        Some((setting, path)) => tls_file(setting, path)?.map(|path| (setting, path)),
        None => None,
    };
    let Some((cert, key)) = identity else {
        if let Some((setting, _)) = client_ca {
            bail!("{setting} is set but {cert_setting} is not: client certificates need TLS on");
        }
        return Ok(None);
    };
    let tls = ServerTls {
        cert,
        key,
        client_ca: client_ca.map(|(_, path)| path),
    };
    tls.config(&[])
        .with_context(|| format!("{cert_setting}, {key_setting}"))?;
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_reads_back_and_unknown_keys_are_refused() {
        let text = Settings::default_toml();
        let parsed: Settings = toml::from_str(&text).unwrap();
        assert_eq!(
            parsed.controller.listen,
            Settings::default().controller.listen
        );
        let error = toml::from_str::<Settings>("[controller]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(error.to_string().contains("listen_addr"), "{error}");
    }

    #[test]
    fn simulated_clock_is_off_by_default_and_checked_when_set() {
        assert!(Settings::default().simulated_clock().unwrap().is_none());
        let mut settings = Settings::default();
        settings.controller.simulated_clock = "1000:2000:60".into();
        let clock = settings.validate().unwrap().simulated_clock().unwrap();
        assert_eq!(clock.map(|c| c.sim_at(2000)), Some(62_000));
        let mut settings = Settings::default();
        settings.controller.simulated_clock = "1000:2000:0".into();
        let error = format!("{:#}", settings.validate().unwrap_err());
        assert!(
            error.contains("simulated_clock") && error.contains("rate"),
            "{error}"
        );
    }

    #[test]
    fn regions_are_checked() {
        let region = |name: &str, code: u8| RegionSettings {
            name: name.into(),
            code,
            redis_url: format!("redis://{name}:6379"),
            controller_url: String::new(),
            dispatcher_url: String::new(),
        };
        let mut settings = Settings {
            region: "us".into(),
            regions: vec![region("cn", 1), region("us", 2)],
            ..Settings::default()
        };
        assert_eq!(
            settings.clone().validate().unwrap().redis_url,
            "redis://us:6379"
        );
        settings.region = "eu".into();
        let error = format!("{:#}", settings.clone().validate().unwrap_err());
        assert!(
            error.contains("\"eu\" is not among regions [cn, us]"),
            "{error}"
        );
        settings.region = "us".into();
        settings.regions[1].code = 1;
        let error = format!("{:#}", settings.clone().validate().unwrap_err());
        assert!(error.contains("distinct"), "{error}");
        settings.region.clear();
        let error = format!("{:#}", settings.validate().unwrap_err());
        assert!(
            error.contains("region (this process's region) is not set"),
            "{error}"
        );
    }

    #[test]
    fn derived_connector_values() {
        let settings = Settings::default().validate().unwrap();
        assert_eq!(
            settings.connector.device_url,
            "ws://127.0.0.1:8082/v1/connect"
        );
        assert_eq!(settings.connector.grpc_url, "http://127.0.0.1:8083");
        assert_eq!(settings.connector.id, "127.0.0.1:8082");
    }

    #[test]
    fn grpc_tls_makes_the_advertised_url_https_and_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ringpush_testkit::TestPki::write(dir.path());
        let mut settings = Settings::default();
        settings.connector.grpc_tls_cert = pki.server_cert.clone();
        settings.connector.grpc_tls_key = pki.server_key.clone();
        settings.connector.grpc_client_ca = pki.ca.clone();
        let checked = settings.clone().validate().unwrap();
        assert_eq!(checked.connector.grpc_url, "https://127.0.0.1:8083");
        let tls = checked.connector_grpc_tls().unwrap().unwrap();
        assert_eq!(tls.client_ca.as_deref(), Some(pki.ca.as_path()));

        settings.connector.grpc_tls_key = dir.path().join("gone.key");
        let error = format!("{:#}", settings.validate().unwrap_err());
        assert!(
            error.contains("connector.grpc_tls_key (--grpc-tls-key): cannot read")
                && error.contains("gone.key"),
            "{error}"
        );

        let mut settings = Settings::default();
        settings.controller.connector_ca = pki.ca.clone();
        settings.controller.connector_client_cert = pki.client_cert.clone();
        let error = format!("{:#}", settings.clone().validate().unwrap_err());
        assert!(
            error.contains("controller.connector_client_cert (--connector-client-cert) is set but controller.connector_client_key"),
            "{error}"
        );
        settings.controller.connector_client_key = pki.client_key.clone();
        let tls = settings.validate().unwrap().connector_client_tls().unwrap();
        assert!(tls.is_some_and(|tls| tls.identity.is_some()));
    }

    #[test]
    fn device_tls_needs_both_files_names_bad_ones_and_advertises_wss() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ringpush_testkit::TestPki::write(dir.path());
        let mut settings = Settings::default();
        settings.connector.device_tls_cert = pki.server_cert.display().to_string();
        let error = format!("{:#}", settings.clone().validate().unwrap_err());
        assert!(
            error.contains("connector.device_tls_cert is set but connector.device_tls_key is not"),
            "{error}"
        );

        settings.connector.device_tls_key = dir.path().join("missing.key").display().to_string();
        let error = format!("{:#}", settings.clone().validate().unwrap_err());
        assert!(
            error.contains("connector.device_tls_key") && error.contains("missing.key"),
            "{error}"
        );

        settings.connector.device_tls_key = pki.server_key.display().to_string();
        let settings = settings.validate().unwrap();
        assert_eq!(
            settings.connector.device_url,
            "wss://127.0.0.1:8082/v1/connect"
        );
        assert!(settings.connector.device_tls().unwrap().is_some());
    }
}

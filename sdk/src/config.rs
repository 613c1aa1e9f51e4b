//! How a [`Client`](crate::Client) is set up.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use ringpush_audience::DeviceAttributes;
use ringpush_protocol::AppId;

use crate::attributes;
use crate::backoff::BackoffConfig;
use crate::error::{Error, Result};
use crate::registration::Identity;
use crate::tls::TlsCa;

/// The settings of a [`Client`](crate::Client). Build one with [`Config::new`], then adjust
/// fields or chain the `with_*` methods; every field has a working default.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// The controller's base URL (for instance `http://127.0.0.1:8080`), for registration.
    pub controller_url: String,
    /// The dispatcher's base URL (for instance `http://127.0.0.1:8081`): the nearest region's.
    pub dispatcher_url: String,
    /// Other regions' dispatchers, in order of preference, asked in turn when the ones
    /// before them cannot answer (see [`Config::with_fallback_dispatchers`]).
    pub fallback_dispatcher_urls: Vec<String>,
    /// Whether the first connection of a start goes to the connector saved in the state file
    /// (the default) rather than to the dispatchers. Turn it off when the device has moved to
    /// another region, so that it connects near where it is now.
    pub reuse_saved_connector: bool,
    /// The app this device belongs to.
    pub app_id: AppId,
    /// The app's client key, used only to register a device that has no identity yet.
    pub client_key: String,
    /// Where to keep the device's state (identity, positions, attributes, last connector), or
    /// `None` to keep it in memory only: then every start registers a new device unless
    /// [`Config::identity`] is set, and a restart may see messages again. With a file, each
    /// message is saved as handed (one small write and `fsync`) before the app gets it.
    pub state_path: Option<PathBuf>,
    /// An identity to use when there is no state file yet, instead of registering.
    pub identity: Option<Identity>,
    /// The attributes to report for this device (see [`Config::with_attributes`]).
    pub attributes: Option<DeviceAttributes>,
    /// Bounds of the wait between failed connection attempts.
    pub backoff: BackoffConfig,
    /// A connection that reached Welcome and stayed up this long resets the backoff.
    pub backoff_reset_after: Duration,
    /// Longest wait for the dispatcher's answer, for a WebSocket connection to open, or for a
    /// frame to be written.
    pub connect_timeout: Duration,
    /// Longest wait for the Welcome after Hello.
    pub handshake_timeout: Duration,
    /// Largest frame accepted from a connector, in bytes.
    pub max_frame_bytes: usize,
    /// Messages received but not yet taken by the app; past it the client stops reading its
    /// socket (the connector keeps the rest in the device's inbox).
    pub queue_capacity: usize,
    /// A CA to trust for `wss://` connectors and `https://` controllers and dispatchers,
    /// besides the platform's roots (see [`Config::with_tls_ca`]).
    pub tls_ca: Option<TlsCa>,
}

/// Never prints the client key, so that configurations can be logged.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("controller_url", &self.controller_url)
            .field("dispatcher_url", &self.dispatcher_url)
            .field("fallback_dispatcher_urls", &self.fallback_dispatcher_urls)
            .field("reuse_saved_connector", &self.reuse_saved_connector)
            .field("app_id", &self.app_id)
            .field("client_key", &"<redacted>")
            .field("state_path", &self.state_path)
            .field("identity", &self.identity)
            .field("attributes", &self.attributes)
            .field("backoff", &self.backoff)
            .field("backoff_reset_after", &self.backoff_reset_after)
            .field("connect_timeout", &self.connect_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("queue_capacity", &self.queue_capacity)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

impl Config {
    /// A configuration with the default timeouts and limits.
    pub fn new(
        controller_url: impl Into<String>,
        dispatcher_url: impl Into<String>,
        app_id: AppId,
        client_key: impl Into<String>,
    ) -> Self {
        Self {
            controller_url: controller_url.into(),
            dispatcher_url: dispatcher_url.into(),
            fallback_dispatcher_urls: Vec::new(),
            reuse_saved_connector: true,
            app_id,
            client_key: client_key.into(),
            state_path: None,
            identity: None,
            attributes: None,
            backoff: BackoffConfig::default(),
            backoff_reset_after: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_frame_bytes: 1 << 20,
            queue_capacity: 256,
            tls_ca: None,
        }
    }

    /// Keeps the device's state in the file at `path` (created on first start).
    pub fn with_state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_path = Some(path.into());
        self
    }

    /// Trusts `ca` (a PEM file's path, or PEM bytes) besides the platform's root
    /// certificates, for a deployment whose `wss://` and `https://` certificates come from
    /// its own CA. A file that cannot be read or holds no certificate fails
    /// [`Client::start`](crate::Client::start) with [`Error::TlsCa`].
    pub fn with_tls_ca(mut self, ca: impl Into<TlsCa>) -> Self {
        self.tls_ca = Some(ca.into());
        self
    }

    /// Uses `identity` instead of registering when there is no state file yet.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Reports these attributes for the device, which audiences (tags, topics, segments) are
    /// matched against.
    ///
    /// On the first start they are the device's set. On later starts with a state file, the
    /// device facts given here (`platform`, `os_version`, `app_version`, `locale`,
    /// `timezone`, those that are set) replace the saved ones, since they describe the app
    /// running now; the labels (`alias`, `tags`, `topics`, `custom`) stay as saved, with the
    /// changes made at run time ([`Client::set_attributes`](crate::Client::set_attributes),
    /// [`Client::add_tag`](crate::Client::add_tag), ...).
    pub fn with_attributes(mut self, attributes: DeviceAttributes) -> Self {
        self.attributes = Some(attributes);
        self
    }

    /// Other regions' dispatchers, in order of preference. A device belongs to one home
    /// region but may connect through any: when the nearest dispatcher cannot be reached or
    /// has no connector, the next one is asked, and the device reads its messages from its
    /// home region through that region's connector.
    pub fn with_fallback_dispatchers(mut self, urls: Vec<String>) -> Self {
        self.fallback_dispatcher_urls = urls;
        self
    }

    /// The dispatchers in the order they are asked.
    pub(crate) fn dispatchers(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.dispatcher_url.as_str())
            .chain(self.fallback_dispatcher_urls.iter().map(String::as_str))
    }

    /// Sets the bounds of the reconnection backoff.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = BackoffConfig { initial, max };
        self
    }

    /// Refuses settings that cannot work.
    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |text: &str| Err(Error::InvalidConfig(text.to_owned()));
        if !self
            .dispatchers()
            .all(|url| url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid(
                "dispatcher_url and fallback_dispatcher_urls must start with http:// or https://",
            );
        }
        if self.backoff.initial.is_zero() || self.backoff.max < self.backoff.initial {
            return invalid("backoff.initial must be above zero and at most backoff.max");
        }
        if self.connect_timeout.is_zero() || self.handshake_timeout.is_zero() {
            return invalid("connect_timeout and handshake_timeout must be above zero");
        }
        if self.queue_capacity == 0 {
            return invalid("queue_capacity must be at least 1");
        }
        if self.max_frame_bytes < 1024 {
            return invalid("max_frame_bytes must be at least 1024");
        }
        if let Some(identity) = &self.identity
            && identity.app_id != self.app_id
        {
            return invalid("identity belongs to another app than app_id");
        }
        if let Some(configured) = &self.attributes
            && let Err(error) = attributes::check(configured)
        {
            return invalid(&format!("attributes: {error}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringpush_protocol::DeviceId;

    fn config() -> Config {
        Config::new("http://c", "http://d", AppId(1), "client-secret")
    }

    #[test]
    fn the_defaults_are_valid_and_bad_settings_are_named() {
        assert!(config().validate().is_ok());
        let mut bad = config();
        bad.dispatcher_url = "d:8081".into();
        assert!(
            matches!(bad.validate(), Err(Error::InvalidConfig(text)) if text.contains("dispatcher_url"))
        );
        let bad = config().with_backoff(Duration::from_secs(2), Duration::from_secs(1));
        assert!(
            matches!(bad.validate(), Err(Error::InvalidConfig(text)) if text.contains("backoff"))
        );
        let mut bad = config();
        bad.queue_capacity = 0;
        assert!(bad.validate().is_err());
        let other_app = Identity {
            app_id: AppId(2),
            device_id: DeviceId(3),
            device_token: "t".into(),
            seal_key: None,
        };
        assert!(config().with_identity(other_app).validate().is_err());
        let huge = DeviceAttributes {
            topics: (0..65).map(|index| format!("topic-{index}")).collect(),
            ..DeviceAttributes::default()
        };
        assert!(
            matches!(config().with_attributes(huge).validate(), Err(Error::InvalidConfig(text)) if text.contains("attributes"))
        );
        let fine = DeviceAttributes {
            tags: ["vip".to_owned()].into(),
            ..DeviceAttributes::default()
        };
        assert!(config().with_attributes(fine).validate().is_ok());
    }

    #[test]
    fn debug_output_hides_the_client_key() {
        let text = format!("{:?}", config());
        assert!(!text.contains("client-secret"), "{text}");
        assert!(text.contains("http://d"));
    }
}

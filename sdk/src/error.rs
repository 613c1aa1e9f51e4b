//! The errors the SDK surfaces to the app.
//!
//! Only what the app must act on comes out as an [`Error`]: a refused registration, a device
//! the connector rejects for good, a state file that cannot be used, a client that is closed,
//! and the answer to each call the app makes on the controller (a platform token) or hands
//! in (a platform notification's envelope).
//! Everything transient (network errors, a connector that is unavailable or shutting down, a
//! dead connection) is handled inside the client by reconnecting with backoff, and only shows
//! in [`Stats`](crate::Stats) and in `tracing` events.

use std::path::PathBuf;

/// Why an SDK call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The controller answered the registration with an error status.
    #[error("registration refused with status {status}: {code}: {message}")]
    Registration {
        /// The HTTP status (4xx or 5xx).
        status: u16,
        /// The machine-readable error code from the body (`snake_case`), or `"http_<status>"`
        /// when the body carried none.
        code: String,
        /// The human-readable explanation from the body.
        message: String,
    },
    /// The controller could not be reached (to register the device, or to set its platform
    /// token), or its answer could not be read.
    #[error("could not reach the controller: {0}")]
    ControllerUnreachable(#[source] reqwest::Error),
    /// The controller answered a request other than the registration with an error status
    /// that no more precise variant covers (a 5xx or 429 is transient: try again later).
    #[error("the controller answered with status {status}: {code}: {message}")]
    Controller {
        /// The HTTP status (4xx or 5xx).
        status: u16,
        /// The machine-readable error code from the body (`snake_case`), or `"http_<status>"`
        /// when the body carried none.
        code: String,
        /// The human-readable explanation from the body.
        message: String,
    },
    /// The controller answered 2xx with a body that is not a registration.
    #[error("the controller sent an unreadable registration: {0}")]
    BadRegistration(String),
    /// The connector (or the controller, answering 401) refused the device token: the
    /// identity is wrong, was revoked or expired.
    #[error("the device token was refused: {message}")]
    Unauthenticated {
        /// The connector's or controller's explanation.
        message: String,
    },
    /// The connector (or the controller, answering 404 `unknown_device`) knows no device
    /// with this id: it was never registered or was deleted.
    #[error("no such device: {message}")]
    UnknownDevice {
        /// The connector's or controller's explanation.
        message: String,
    },
    /// The connector does not speak this SDK's protocol version.
    #[error("the connector does not support protocol version {version}: {message}")]
    UnsupportedVersion {
        /// The protocol version this SDK speaks.
        version: u32,
        /// The connector's explanation.
        message: String,
    },
    /// The state file could not be read or written.
    #[error("state file {path}: {source}")]
    StateIo {
        /// The state file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The state file exists but does not hold a readable state.
    #[error("state file {path} is unreadable: {detail}")]
    StateCorrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The state file belongs to another app than the one configured.
    #[error("state file {path} belongs to app {found}, not to the configured app {expected}")]
    StateOfAnotherApp {
        /// The state file.
        path: PathBuf,
        /// The app configured in [`Config`](crate::Config).
        expected: String,
        /// The app named in the state file.
        found: String,
    },
    /// The attributes cannot be reported (too large for one frame); the text says why.
    #[error("invalid attributes: {0}")]
    InvalidAttributes(String),
    /// The CA configured with [`Config::with_tls_ca`](crate::Config::with_tls_ca) cannot be
    /// used: the file cannot be read, or holds no usable certificate.
    #[error("TLS CA {ca}: {detail}")]
    TlsCa {
        /// The file, or "the configured PEM text".
        ca: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A platform token ([`Client::set_platform_token`](crate::Client::set_platform_token))
    /// is not of its service's shape: refused by the SDK before sending, or by the
    /// controller (400). The text says what is wrong.
    #[error("invalid platform token: {0}")]
    InvalidPlatformToken(String),
    /// The text given to [`Client::handle_platform_push`](crate::Client::handle_platform_push)
    /// is not a ringpush envelope this SDK reads, or is one for another device (a platform
    /// token still registered for an earlier installation of the app, for instance).
    #[error("invalid platform envelope: {0}")]
    InvalidEnvelope(String),
    /// The configuration cannot work; the text says which setting.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The client was closed, or its connection task ended after a fatal error that was
    /// already returned.
    #[error("the client is closed")]
    Closed,
}

impl Error {
    /// Whether the connector refused this device's identity for good: retrying with it can
    /// never succeed. The app should delete its state file and register again.
    pub fn needs_new_identity(&self) -> bool {
        matches!(
            self,
            Self::Unauthenticated { .. } | Self::UnknownDevice { .. }
        )
    }
}

/// Result of an SDK call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

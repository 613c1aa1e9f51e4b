//! A local APNs: Apple's HTTP/2 provider API over TLS on 127.0.0.1, for tests of the APNs
//! gateway.
//!
//! It speaks HTTP/2 only (ALPN `h2`), advertises the configured
//! `SETTINGS_MAX_CONCURRENT_STREAMS`, checks each request as APNs does (provider token
//! signature, `kid`, `iss` and age; path, topic, push type, priority, expiration, collapse id,
//! payload; see `checks`) and answers as APNs does: a status, an `apns-id` header on every
//! answer, and a JSON `{"reason": ...}` on errors (with a `timestamp` on 410). Tests steer it
//! with [`ApnsDouble::unregister`] (the app was removed from the device) and
//! [`ApnsDouble::fail_next`] (any status and reason, e.g. 429 or 503), and read what it got
//! with [`ApnsDouble::received`] and [`ApnsDouble::connections`]; [`ApnsDouble::close_connections`]
//! sends GOAWAY, as APNs does when it moves a provider elsewhere.
//!
//! Does not own: delivery to devices (a request that passes is simply recorded), certificate
//! based authentication, or Apple's rate limits.

mod checks;
mod server;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p256::ecdsa::VerifyingKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use checks::Signer;
use server::{Reply, Server};

/// How to start an [`ApnsDouble`].
#[derive(Clone)]
pub struct ApnsDoubleConfig {
    /// The server's TLS configuration (see [`server_tls_config`]); its ALPN is set to `h2`.
    pub tls: Arc<rustls::ServerConfig>,
    /// The team whose provider tokens are accepted (the JWT's `iss`).
    pub team_id: String,
    /// The signing key's id (the JWT's `kid`).
    pub key_id: String,
    /// The signing key's public half: an uncompressed P-256 point (65 bytes).
    pub public_key: Vec<u8>,
    /// Advertised in the server's SETTINGS; streams past it are refused.
    pub max_concurrent_streams: u32,
}

impl ApnsDoubleConfig {
    /// A configuration that advertises 1000 concurrent streams, as APNs usually does.
    pub fn new(
        tls: Arc<rustls::ServerConfig>,
        team_id: &str,
        key_id: &str,
        public_key: &[u8],
    ) -> Self {
        Self {
            tls,
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            public_key: public_key.to_vec(),
            max_concurrent_streams: 1000,
        }
    }
}

/// A server TLS configuration from a PEM certificate chain and its PEM private key (e.g.
/// ringpush-testkit's `TestPki`), with ALPN `h2` only.
pub fn server_tls_config(cert_pem: &[u8], key_pem: &[u8]) -> io::Result<Arc<rustls::ServerConfig>> {
    let invalid = |what: &str, error: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {error}"))
    };
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid("certificate PEM", &error))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| invalid("key PEM", &error))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| invalid("TLS versions", &error))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| invalid("certificate and key", &error))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// [`server_tls_config`] from PEM files.
pub fn server_tls_config_from_files(
    cert: &Path,
    key: &Path,
) -> io::Result<Arc<rustls::ServerConfig>> {
    server_tls_config(&std::fs::read(cert)?, &std::fs::read(key)?)
}

/// One request the double received, and what it answered.
#[derive(Debug, Clone)]
pub struct ApnsRequest {
    /// The `{token}` of `/3/device/{token}` (empty if the path had another shape).
    pub device_token: String,
    /// Every request header, by lower-case name (repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// The payload as JSON (`Null` if it was not JSON).
    pub body: Value,
    /// The payload's size in bytes, as sent.
    pub body_len: usize,
    /// The provider token's header (`alg`, `kid`), decoded; `Null` without a token.
    pub jwt_header: Value,
    /// The provider token's claims (`iss`, `iat`), decoded; `Null` without a token. The
    /// token was verified when `status` is not 403.
    pub jwt_claims: Value,
    /// The status answered.
    pub status: u16,
    /// The reason answered, for errors.
    pub reason: Option<String>,
    /// Which connection it came on (1 for the first the double accepted, and so on).
    pub connection: usize,
    /// When the double had read the whole request.
    pub received_at: std::time::Instant,
}

/// An answer a test asked for, in place of the normal one.
#[derive(Debug, Clone)]
struct InjectedFailure {
    status: u16,
    reason: String,
    retry_after: Option<Duration>,
}

/// What the connections share.
struct State {
    signer: Signer,
    received: Mutex<Vec<ApnsRequest>>,
    /// Tokens answered 410 Unregistered, with the time (ms) APNs says they stopped being valid.
    unregistered: Mutex<HashMap<String, u64>>,
    /// Answers to give instead of the normal one, per device token, oldest first.
    injected: Mutex<HashMap<String, VecDeque<InjectedFailure>>>,
    /// Connections that completed the HTTP/2 handshake.
    connections: AtomicUsize,
    /// Connections open now (handshake done, not yet closed), watched by
    /// [`ApnsDouble::close_connections`] to wait until all are gone.
    open_connections: watch::Sender<usize>,
    /// For `apns-id`s of requests that carried none.
    next_apns_id: AtomicU64,
}

/// A running APNs double; stops (connections included) when dropped.
pub struct ApnsDouble {
    address: SocketAddr,
    state: Arc<State>,
    /// Bumped to make every open connection send GOAWAY and close.
    close_connections: watch::Sender<u64>,
    /// The accept loop; it owns the connections' tasks, so aborting it ends them all.
    accept_loop: JoinHandle<()>,
}

impl Drop for ApnsDouble {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl ApnsDouble {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn start(config: ApnsDoubleConfig) -> io::Result<Self> {
        let verifying_key = VerifyingKey::from_sec1_bytes(&config.public_key).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "public_key: not a P-256 point (65 bytes, uncompressed)",
            )
        })?;
        let mut tls = (*config.tls).clone();
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = Arc::new(State {
            signer: Signer {
                team_id: config.team_id,
                key_id: config.key_id,
                verifying_key,
            },
            received: Mutex::default(),
            unregistered: Mutex::default(),
            injected: Mutex::default(),
            connections: AtomicUsize::new(0),
            open_connections: watch::Sender::new(0),
            next_apns_id: AtomicU64::new(1),
        });
        let (close_connections, close_signal) = watch::channel(0);
        let server = Server {
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            max_concurrent_streams: config.max_concurrent_streams,
            state: Arc::clone(&state),
            close_signal,
        };
        let accept_loop = tokio::spawn(server.accept_loop(listener));
        Ok(Self {
            address,
            state,
            close_connections,
            accept_loop,
        })
    }

    /// `https://127.0.0.1:{port}`, for `GatewayConfig::apns_production_url` or
    /// `apns_sandbox_url`.
    pub fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    /// Every request so far, oldest first.
    pub fn received(&self) -> Vec<ApnsRequest> {
        lock(&self.state.received).clone()
    }

    /// From now on `device_token` is answered 410 `Unregistered`.
    pub fn unregister(&self, device_token: &str) {
        lock(&self.state.unregistered).insert(device_token.to_owned(), now_millis());
    }

    /// The next `times` well-formed requests to `device_token` are answered `status` with
    /// `reason` (e.g. 429 `TooManyRequests`, 503 `ServiceUnavailable`, 403
    /// `ExpiredProviderToken`).
    pub fn fail_next(&self, device_token: &str, status: u16, reason: &str, times: usize) {
        self.inject(device_token, status, reason, times, None);
    }

    /// [`Self::fail_next`], with a `Retry-After` header of `retry_after` (whole seconds).
    pub fn fail_next_with_retry_after(
        &self,
        device_token: &str,
        status: u16,
        reason: &str,
        times: usize,
        retry_after: Duration,
    ) {
        self.inject(device_token, status, reason, times, Some(retry_after));
    }

    fn inject(
        &self,
        device_token: &str,
        status: u16,
        reason: &str,
        times: usize,
        retry_after: Option<Duration>,
    ) {
        let failure = InjectedFailure {
            status,
            reason: reason.to_owned(),
            retry_after,
        };
        lock(&self.state.injected)
            .entry(device_token.to_owned())
            .or_default()
            .extend(std::iter::repeat_n(failure, times));
    }

    /// How many connections completed the HTTP/2 handshake so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Acquire)
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> usize {
        *self.state.open_connections.borrow()
    }

    /// Makes every open connection send GOAWAY and close once its streams are done, as APNs
    /// does when it moves a provider elsewhere, and waits until none is open.
    pub async fn close_connections(&self) {
        self.close_connections
            .send_modify(|generation| *generation += 1);
        let mut open = self.state.open_connections.subscribe();
        // The sender lives in `self.state`, so the wait cannot fail.
        let _ = open.wait_for(|open| *open == 0).await;
    }
}

impl State {
    /// What a test asked this token to be answered, if anything: an injected failure first,
    /// then 410 for an unregistered token.
    fn steered_reply(&self, device_token: &str) -> Option<Reply> {
        let injected = lock(&self.injected)
            .get_mut(device_token)
            .and_then(VecDeque::pop_front);
        if let Some(failure) = injected {
            let mut reply = Reply::error(failure.status, &failure.reason);
            reply.retry_after = failure.retry_after;
            return Some(reply);
        }
        let unregistered_at = lock(&self.unregistered).get(device_token).copied()?;
        let mut reply = Reply::error(410, "Unregistered");
        reply.timestamp = Some(unregistered_at);
        Some(reply)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

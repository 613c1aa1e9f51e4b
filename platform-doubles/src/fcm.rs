//! A local stand-in for Google's OAuth 2 token endpoint and FCM's HTTP v1 send endpoint, on
//! one plain-HTTP server at `127.0.0.1:0`.
//!
//! - `POST /token`: the JWT bearer grant, checked as Google checks it (grant type, RS256
//!   signature against the service account's public key, issuer, audience, scope, lifetime);
//!   answers an access token or Google's OAuth error shape ([`oauth`]);
//! - `POST /v1/projects/{project_id}/messages:send`: checks the bearer token is one it issued
//!   and has not expired, the project and the message's shape and data size, and answers
//!   `{"name": ...}` or FCM's error shape ([`send`], the message rules in [`message_shape`]);
//! - [`service_account`]: fixed test-only service accounts (RSA keys committed under
//!   `testdata/`, named `fcm-test-only-*`), since `ring` cannot generate RSA keys.
//!
//! Tests steer it: [`FcmDouble::unregister`] a token, [`FcmDouble::fail_next`] sends to a
//! token with an FCM error, [`FcmDouble::expire_access_tokens`], and read back what it
//! received. Verification uses RustCrypto's `rsa` where the product signs with `ring`.
//!
//! Does not own: TLS (plain HTTP; the product's TLS setup is exercised by the other doubles),
//! topics, conditions, batch sends, or delivering anything to a device.

pub mod message_shape;
pub mod oauth;
pub mod send;
pub mod service_account;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use rsa::pkcs1v15::VerifyingKey;
use rsa::sha2::Sha256;

pub use rsa::RsaPublicKey;
pub use service_account::{
    TEST_CLIENT_EMAIL, TEST_PROJECT_ID, test_public_key, test_service_account,
    untrusted_service_account,
};

/// One send request the double answered, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub struct FcmRequest {
    /// The message's `token` (empty when the request had none or was not JSON).
    pub token: String,
    /// The request's `message` object as sent (`Null` when the body was not JSON).
    pub message: serde_json::Value,
    /// The HTTP status the double answered.
    pub status: u16,
}

/// An error the double answers for the next sends to one token.
#[derive(Debug, Clone)]
struct InjectedFailure {
    status: u16,
    error_code: String,
    retry_after: Option<u64>,
    remaining: usize,
}

/// What the double has seen and been told; behind one std mutex, never held across an await.
#[derive(Debug)]
struct Records {
    token_requests: usize,
    /// Access tokens issued and when each stops being accepted.
    access_tokens: HashMap<String, Instant>,
    issued_count: u64,
    access_token_lifetime: Duration,
    /// How long the token endpoint waits before answering ([`FcmDouble::delay_token_answers`]).
    token_answer_delay: Duration,
    /// Token endpoint answers queued by [`FcmDouble::fail_token_requests`]: (status, remaining).
    token_failures: Option<(u16, usize)>,
    received: Vec<FcmRequest>,
    unregistered: HashSet<String>,
    failures: HashMap<String, VecDeque<InjectedFailure>>,
    messages_accepted: u64,
}

/// State shared by the handlers and the test's handle.
struct Shared {
    project_id: String,
    client_email: String,
    verifying_key: VerifyingKey<Sha256>,
    /// The token endpoint's own URL: the `aud` an assertion must name.
    token_url: String,
    records: Mutex<Records>,
}

impl Shared {
    /// The state of a double that has seen nothing yet: tokens granted for an hour less a
    /// second, no delays, no failures.
    fn new(
        project_id: &str,
        client_email: &str,
        public_key: RsaPublicKey,
        token_url: String,
    ) -> Self {
        Self {
            project_id: project_id.to_owned(),
            client_email: client_email.to_owned(),
            verifying_key: VerifyingKey::<Sha256>::new(public_key),
            token_url,
            records: Mutex::new(Records {
                token_requests: 0,
                access_tokens: HashMap::new(),
                issued_count: 0,
                access_token_lifetime: Duration::from_secs(3599),
                token_answer_delay: Duration::ZERO,
                token_failures: None,
                received: Vec::new(),
                unregistered: HashSet::new(),
                failures: HashMap::new(),
                messages_accepted: 0,
            }),
        }
    }

    fn records(&self) -> MutexGuard<'_, Records> {
        // A panicking handler leaves the records usable for the test's own assertions.
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running double; the server stops when this is dropped.
pub struct FcmDouble {
    address: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FcmDouble {
    /// Starts a double for one project whose service account `client_email` signs with the
    /// private half of `public_key`.
    pub async fn start(
        project_id: &str,
        client_email: &str,
        public_key: RsaPublicKey,
    ) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared::new(
            project_id,
            client_email,
            public_key,
            format!("http://{address}/token"),
        ));
        let app = Router::new()
            .route("/token", post(oauth::token_endpoint))
            .route(
                "/v1/projects/{project_id}/messages:send",
                post(send::send_endpoint),
            )
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            // Serving ends only with an accept error on a loopback listener; the test then
            // sees its requests fail, which is what it should see.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            address,
            shared,
            server,
        })
    }

    /// The FCM API's base URL (`GatewayConfig::fcm_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The token endpoint's URL (`GatewayConfig::fcm_token_url` or the account's `token_uri`).
    pub fn token_url(&self) -> String {
        self.shared.token_url.clone()
    }

    /// How many token requests arrived (granted or not).
    pub fn token_requests(&self) -> usize {
        self.shared.records().token_requests
    }

    /// Every send request answered so far, in arrival order.
    pub fn received(&self) -> Vec<FcmRequest> {
        self.shared.records().received.clone()
    }

    /// The messages accepted (answered 200), in arrival order.
    pub fn delivered(&self) -> Vec<FcmRequest> {
        let records = self.shared.records();
        let accepted = records
            .received
            .iter()
            .filter(|request| request.status == 200);
        accepted.cloned().collect()
    }

    /// From now on sends to `token` answer 404 `UNREGISTERED`, as for an uninstalled app.
    pub fn unregister(&self, token: &str) {
        self.shared.records().unregistered.insert(token.to_owned());
    }

    /// The next `times` sends to `token` that pass authentication and checks answer `status`
    /// with FCM's error body (e.g. 429 `QUOTA_EXCEEDED`), and a `Retry-After` header when
    /// `retry_after` is given. An `error_code` of FCM's `ErrorCode` enum
    /// ([`send::FCM_ERROR_CODES`]) rides in an `FcmError` detail; any other (e.g.
    /// `UNAUTHENTICATED`) is only the message, the status being Google's name for `status`.
    pub fn fail_next(
        &self,
        token: &str,
        status: u16,
        error_code: &str,
        retry_after: Option<u64>,
        times: usize,
    ) {
        self.shared
            .records()
            .failures
            .entry(token.to_owned())
            .or_default()
            .push_back(InjectedFailure {
                status,
                error_code: error_code.to_owned(),
                retry_after,
                remaining: times,
            });
    }

    /// The next `times` token requests answer `status` (`{"error": "internal_failure"}` for a
    /// 5xx, `invalid_grant` otherwise), whatever they carry.
    pub fn fail_token_requests(&self, status: u16, times: usize) {
        self.shared.records().token_failures = Some((status, times));
    }

    /// The token endpoint holds each answer for `delay`, so that a test can have many sends
    /// start while one token request is outstanding.
    pub fn delay_token_answers(&self, delay: Duration) {
        self.shared.records().token_answer_delay = delay;
    }

    /// Every access token issued so far stops being accepted: later sends answer 401
    /// `UNAUTHENTICATED` until the sender fetches a new token.
    pub fn expire_access_tokens(&self) {
        self.shared.records().access_tokens.clear();
    }

    /// The `expires_in` of access tokens issued from now on (Google's is 3599 seconds).
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.shared.records().access_token_lifetime = lifetime;
    }
}

impl Drop for FcmDouble {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Google's canonical status name for an HTTP status, as in FCM's error bodies.
fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

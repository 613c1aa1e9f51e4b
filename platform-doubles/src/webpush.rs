//! A browser push service (RFC 8030) on a loopback port, for tests of the Web Push gateway:
//! it hands out subscriptions as a browser would get them, checks each push as a real push
//! service does, decrypts it as the browser would, and records what arrived.
//!
//! - [`PushService`]: the server (plain HTTP on `127.0.0.1:0`), its subscriptions, and the
//!   faults a test injects ([`PushService::gone`], [`PushService::fail_next`]);
//! - `vapid`: the `Authorization: vapid` check, and [`vapid_key_pair`] for tests;
//! - `ece`: `aes128gcm` decryption ([`decrypt_aes128gcm`]), on RustCrypto.
//!
//! What a push is checked for, in order, and the answer when it fails: a known endpoint
//! (404), not unsubscribed (410), an injected failure, VAPID (401 without it; 403 with the
//! wrong key, a bad signature, or a wrong `aud`, `exp` or `sub`), a `TTL` header (400),
//! `Content-Encoding: aes128gcm` (415), at most 4096 bytes of body (413), a body that
//! decrypts (400). Then 201 with a `Location`.
//!
//! Does not own: delivery to browsers, receipts or message updates (RFC 8030 sections 6
//! and 7), TLS (the product's TLS is tested elsewhere; tests allow plain HTTP).

mod ece;
mod vapid;

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::RngCore;

pub use ece::{DecryptError, decrypt_aes128gcm};
pub use vapid::{VapidKeyPair, vapid_key_pair};

/// Where subscriptions live: `{origin}/push/{id}`.
const PUSH_PATH: &str = "/push/";
/// The largest body a push service must accept (RFC 8030 section 7.2); this one takes no more.
const MAX_BODY_LEN: usize = 4096;

/// A subscription as a browser hands it to the application server, base64url keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionKeys {
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

/// One request the push service answered.
#[derive(Debug, Clone)]
pub struct WebPushDelivery {
    /// The endpoint it was sent to.
    pub endpoint: String,
    /// The `TTL` header (0 when absent or not a number: such a request was refused).
    pub ttl: u64,
    pub urgency: Option<String>,
    pub topic: Option<String>,
    /// The decrypted message; empty unless the push was accepted.
    pub plaintext: Vec<u8>,
    /// The encrypted body as received (salt and sender key in its header).
    pub body: Vec<u8>,
    /// The status answered.
    pub status: u16,
}

/// A push service on a loopback port; stops when dropped.
pub struct PushService {
    origin: String,
    shared: Arc<Shared>,
    /// The server task, aborted on drop.
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    /// `http://127.0.0.1:port`: what a VAPID token's `aud` must be.
    origin: String,
    /// The application server key every subscription here is bound to.
    application_server_key: Vec<u8>,
    /// Held for lookups and records only, never across an `.await`.
    state: Mutex<ServiceState>,
}

#[derive(Default)]
struct ServiceState {
    subscriptions: HashMap<String, Subscriber>,
    unsubscribed: HashSet<String>,
    injected_failures: HashMap<String, InjectedFailure>,
    received: Vec<WebPushDelivery>,
    messages_accepted: u64,
}

/// What the browser keeps of a subscription to read its pushes.
#[derive(Clone)]
struct Subscriber {
    private_key: p256::SecretKey,
    auth_secret: [u8; 16],
}

struct InjectedFailure {
    status: u16,
    retry_after: Option<u64>,
    remaining: usize,
}

/// Why a push was refused: the status, an optional Retry-After, a message for the body.
struct Refusal {
    status: u16,
    retry_after: Option<u64>,
    message: String,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            retry_after: None,
            message: message.into(),
        }
    }
}

impl PushService {
    /// Starts a push service whose subscriptions are bound to the application server key
    /// `vapid_public_key_b64url` (an uncompressed P-256 point, base64url).
    pub async fn start(vapid_public_key_b64url: &str) -> io::Result<Self> {
        let application_server_key = URL_SAFE_NO_PAD
            .decode(vapid_public_key_b64url.trim_end_matches('='))
            .ok()
            .filter(|key| key.len() == 65 && key[0] == 4)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the VAPID public key is not an uncompressed P-256 point in base64url",
                )
            })?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let origin = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            origin: origin.clone(),
            application_server_key,
            state: Mutex::new(ServiceState::default()),
        });
        let router = Router::new()
            .route("/push/{id}", post(receive))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::warn!(%error, "web push double stopped");
            }
        });
        Ok(Self {
            origin,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:port`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A new subscription, as `PushManager.subscribe()` gives a browser: a fresh endpoint,
    /// P-256 key pair and auth secret (the service keeps the private half to decrypt).
    pub fn subscribe(&self) -> SubscriptionKeys {
        let mut random = rand_core::OsRng;
        let private_key = p256::SecretKey::random(&mut random);
        let mut auth_secret = [0u8; 16];
        random.fill_bytes(&mut auth_secret);
        let mut id = [0u8; 16];
        random.fill_bytes(&mut id);
        let id = URL_SAFE_NO_PAD.encode(id);
        let keys = SubscriptionKeys {
            endpoint: format!("{}{PUSH_PATH}{id}", self.origin),
            p256dh: URL_SAFE_NO_PAD
                .encode(private_key.public_key().to_encoded_point(false).as_bytes()),
            auth: URL_SAFE_NO_PAD.encode(auth_secret),
        };
        self.shared.lock().subscriptions.insert(
            id,
            Subscriber {
                private_key,
                auth_secret,
            },
        );
        keys
    }

    /// Every request answered so far, in order.
    pub fn received(&self) -> Vec<WebPushDelivery> {
        self.shared.lock().received.clone()
    }

    /// The browser unsubscribed: pushes to `endpoint` are answered 410 from now on.
    pub fn gone(&self, endpoint: &str) {
        let id = self.id_of(endpoint);
        self.shared.lock().unsubscribed.insert(id);
    }

    /// The next `times` pushes to `endpoint` are answered `status` (with `Retry-After:
    /// retry_after` seconds when given), before any other check but the endpoint's.
    pub fn fail_next(&self, endpoint: &str, status: u16, retry_after: Option<u64>, times: usize) {
        let id = self.id_of(endpoint);
        self.shared.lock().injected_failures.insert(
            id,
            InjectedFailure {
                status,
                retry_after,
                remaining: times,
            },
        );
    }

    fn id_of(&self, endpoint: &str) -> String {
        let prefix = format!("{}{PUSH_PATH}", self.origin);
        match endpoint.strip_prefix(&prefix) {
            Some(id) => id.to_owned(),
            None => panic!("{endpoint} is not an endpoint of this push service ({prefix}…)"),
        }
    }
}

impl Drop for PushService {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ServiceState> {
        // Each update is one insert or push: the state is whole after a panic elsewhere.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks and decrypts one push: its plaintext, or why it is refused.
    fn accept(&self, id: &str, headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let subscriber = {
            let mut state = self.lock();
            let Some(subscriber) = state.subscriptions.get(id).cloned() else {
                return Err(Refusal::new(404, "no such subscription"));
            };
            if state.unsubscribed.contains(id) {
                return Err(Refusal::new(410, "the subscription has expired"));
            }
            if let Some(failure) = state.injected_failures.get_mut(id)
                && failure.remaining > 0
            {
                failure.remaining -= 1;
                return Err(Refusal {
                    status: failure.status,
                    retry_after: failure.retry_after,
                    message: "injected failure".to_owned(),
                });
            }
            subscriber
        };
        let header_text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        vapid::check_authorization(
            header_text(header::AUTHORIZATION.as_str()),
            &self.application_server_key,
            &self.origin,
            unix_seconds(),
        )
        .map_err(|refusal| Refusal::new(refusal.status(), refusal.to_string()))?;
        if header_text("ttl")
            .and_then(|ttl| ttl.trim().parse::<u64>().ok())
            .is_none()
        {
            return Err(Refusal::new(400, "a TTL header is required"));
        }
        let encoding = header_text(header::CONTENT_ENCODING.as_str()).unwrap_or_default();
        if !encoding.eq_ignore_ascii_case("aes128gcm") {
            return Err(Refusal::new(415, "Content-Encoding must be aes128gcm"));
        }
        if body.len() > MAX_BODY_LEN {
            return Err(Refusal::new(413, "the body is over 4096 bytes"));
        }
        ece::decrypt(body, &subscriber.private_key, &subscriber.auth_secret)
            .map_err(|error| Refusal::new(400, format!("decryption failed: {error}")))
    }
}

/// `POST /push/{id}`.
async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = shared.accept(&id, &headers, &body);
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let mut delivery = WebPushDelivery {
        endpoint: format!("{}{PUSH_PATH}{id}", shared.origin),
        ttl: header_text("ttl")
            .and_then(|ttl| ttl.trim().parse().ok())
            .unwrap_or(0),
        urgency: header_text("urgency"),
        topic: header_text("topic"),
        plaintext: Vec::new(),
        body: body.to_vec(),
        status: 201,
    };
    let mut state = shared.lock();
    match result {
        Ok(plaintext) => {
            delivery.plaintext = plaintext;
            state.messages_accepted += 1;
            let location = format!("{}/message/{}", shared.origin, state.messages_accepted);
            state.received.push(delivery);
            (StatusCode::CREATED, [(header::LOCATION, location)]).into_response()
        }
        Err(refusal) => {
            delivery.status = refusal.status;
            state.received.push(delivery);
            drop(state);
            let status =
                StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = serde_json::json!({"code": refusal.status, "message": refusal.message});
            let mut response = (status, axum::Json(body)).into_response();
            if let Some(seconds) = refusal.retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, seconds.into());
            }
            response
        }
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

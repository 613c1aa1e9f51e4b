//! Fuzzes the controller's REST API with arbitrary request bodies, through the real axum
//! router (`ringpush_controller::app`) over a real embedded store in a temporary directory,
//! as `ringpush dev` runs it.
//!
//! Checks: no answer is a 5xx, no handler panics (a panic in a handler aborts the process,
//! which libFuzzer reports as a crash), and none hangs (libFuzzer's `-timeout`). Besides, an
//! audience a body names (`tags`, `segment`) that parses has a canonical text that parses
//! back to the same audience, as timelines and connectors rely on.
//!
//! The first input byte picks the route (its low 4 bits), the body's `Content-Type` (bits
//! 4-5: JSON, none, text, form) and whether an `Idempotency-Key` goes with it (bit 6); the
//! rest of the input is the body. Callers hold the right credentials, so that the body is
//! what gets checked: the admin token, or the server key of the app made at start.

#![no_main]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use ringpush_controller::{ControllerConfig, ControllerState, app};
use ringpush_ring::Ring;
use ringpush_store::{EmbeddedStore, Store};
use tower::ServiceExt;

const ADMIN: &str = "admin-token-for-the-fuzzer";

/// What every input shares, made once per process.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    app_id: String,
    server_key: String,
    client_key: String,
    /// Holds the store's file; removed when the process ends normally.
    _dir: tempfile::TempDir,
    /// Keeps the ring channel open so that delivery sees an empty ring, not a closed one.
    _ring: tokio::sync::watch::Sender<Arc<Ring>>,
}

/// The routes that take a body, with the credential each needs.
#[derive(Clone, Copy)]
enum Caller {
    Admin,
    Server,
    Client,
    Nobody,
}

const ROUTES: &[(&str, &str, Caller)] = &[
    ("POST", "/v1/apps", Caller::Admin),
    ("POST", "/v1/apps/{app}/keys", Caller::Admin),
    ("POST", "/v1/apps/{app}/messages", Caller::Server),
    ("POST", "/v1/apps/{app}/audience/estimate", Caller::Server),
    ("POST", "/v1/apps/{app}/campaigns", Caller::Server),
    ("POST", "/v1/operators", Caller::Admin),
    ("POST", "/v1/sessions", Caller::Nobody),
    ("POST", "/v1/apps/{app}/devices", Caller::Client),
    // The same bodies where none is expected, or with the wrong method.
    ("PUT", "/v1/apps/{app}/messages", Caller::Server),
    ("PATCH", "/v1/apps/{app}/campaigns", Caller::Server),
    ("POST", "/v1/apps/{app}/messages", Caller::Server),
    ("POST", "/v1/apps/{app}/campaigns", Caller::Server),
];

/// Devices registered by inputs at most. Estimates and audience sends scan every device of
/// the app, so unbounded registrations made each input slower than the last (300 inputs a
/// second fell to 80 in seven minutes); the register route takes no body anyway.
const MAX_REGISTERED_DEVICES: usize = 64;

const CONTENT_TYPES: [Option<&str>; 4] = [
    Some("application/json"),
    None,
    Some("text/plain"),
    Some("application/x-www-form-urlencoded"),
];

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (ring_sender, ring) = tokio::sync::watch::channel(Arc::new(Ring::empty()));
        let router = runtime.block_on(async {
            let store: Arc<dyn Store> = Arc::new(
                EmbeddedStore::open(&dir.path().join("store.redb")).expect("an embedded store"),
            );
            let state = ControllerState::new(
                ControllerConfig::new(ADMIN.into()),
                store,
                ring,
                None,
                tokio_util::sync::CancellationToken::new(),
            );
            app(state)
        });
        let mut fixture = Fixture {
            runtime,
            router,
            app_id: String::new(),
            server_key: String::new(),
            client_key: String::new(),
            _dir: dir,
            _ring: ring_sender,
        };
        let created = fixture.call("POST", "/v1/apps", Some(ADMIN), None, br#"{"name":"fuzz"}"#);
        let created: serde_json::Value = serde_json::from_slice(&created).expect("the app");
        fixture.app_id = created["app_id"].as_str().expect("app_id").to_owned();
        fixture.server_key = created["server_key"].as_str().expect("key").to_owned();
        fixture.client_key = created["client_key"].as_str().expect("key").to_owned();
        // A device that the seeds' sends name by id (ids are random, so the seeds cannot).
        let path = format!("/v1/apps/{}/devices", fixture.app_id);
        let client_key = fixture.client_key.clone();
        fixture.call("POST", &path, Some(&client_key), None, b"");
        fixture
    })
}

impl Fixture {
    /// Sends one request; panics on a 5xx. Answers the body.
    fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Vec<u8> {
        self.call_with(method, path, bearer, content_type, None, body)
    }

    fn call_with(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        content_type: Option<&str>,
        idempotency_key: Option<&str>,
        body: &[u8],
    ) -> Vec<u8> {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(bearer) = bearer {
            request = request.header("Authorization", format!("Bearer {bearer}"));
        }
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let request = request
            .body(Body::from(body.to_vec()))
            .expect("a valid request");
        self.runtime.block_on(async {
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("the router is infallible");
            let status = response.status();
            let answer = response
                .into_body()
                .collect()
                .await
                .expect("the answer's body")
                .to_bytes()
                .to_vec();
            assert!(
                !status.is_server_error(),
                "{method} {path} answered {status}: {}\nbody sent: {}",
                String::from_utf8_lossy(&answer),
                String::from_utf8_lossy(body)
            );
            answer
        })
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else {
        return;
    };
    let fixture = fixture();
    let (method, path, caller) = ROUTES[usize::from(selector & 0x0F) % ROUTES.len()];
    let content_type = CONTENT_TYPES[usize::from(selector >> 4) & 3];
    // Few keys, so that retries (same key, same or other body) happen too.
    let idempotency_key = (selector & 0x40 != 0).then(|| format!("fuzz-{}", body.len() % 4));
    if path.ends_with("/devices") {
        static REGISTERED: AtomicUsize = AtomicUsize::new(0);
        if REGISTERED.fetch_add(1, Ordering::Relaxed) >= MAX_REGISTERED_DEVICES {
            return;
        }
    }
    let path = path.replace("{app}", &fixture.app_id);
    let bearer = match caller {
        Caller::Admin => Some(ADMIN),
        Caller::Server => Some(fixture.server_key.as_str()),
        Caller::Client => Some(fixture.client_key.as_str()),
        Caller::Nobody => None,
    };
    fixture.call_with(
        method,
        &path,
        bearer,
        content_type,
        idempotency_key.as_deref(),
        body,
    );
    check_audiences(body);
});

/// The audience texts of a send body (or a campaign's message) parse to an audience whose
/// canonical text parses back to it.
fn check_audiences(body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    for request in [&value, &value["message"]] {
        if let Some(text) = request["segment"].as_str()
            && let Ok(audience) = ringpush_audience::Audience::parse(text)
        {
            round_trip(&audience);
        }
        if let Some(text) = request["tags"].as_str()
            && let Ok(audience) = ringpush_audience::Audience::parse_tags(text)
        {
            round_trip(&audience);
        }
    }
}

fn round_trip(audience: &ringpush_audience::Audience) {
    let text = audience.to_string();
    let again = ringpush_audience::Audience::parse(&text)
        .unwrap_or_else(|error| panic!("canonical text {text:?} does not parse: {error}"));
    assert!(
        &again == audience,
        "canonical text {text:?} parses to another audience"
    );
    assert_eq!(again.to_string(), text);
}

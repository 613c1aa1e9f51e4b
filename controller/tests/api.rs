//! The REST API driven in-process (no server) over a real embedded store.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ringpush_controller::{ControllerConfig, ControllerState, app};
use ringpush_ring::Ring;
use ringpush_store::{EmbeddedStore, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const ADMIN: &str = "admin-token-for-tests";

struct Api {
    router: axum::Router,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

impl Api {
    fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
        let (_ring_sender, ring) = tokio::sync::watch::channel(Arc::new(Ring::empty()));
        let state = ControllerState::new(
            ControllerConfig::new(ADMIN.into()),
            store.clone(),
            ring,
            None,
            CancellationToken::new(),
        );
        Api {
            router: app(state),
            store,
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(bearer) = bearer {
            request = request.header("Authorization", format!("Bearer {bearer}"));
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let body = body.map_or(Body::empty(), |b| Body::from(b.to_owned()));
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn create_app(&self) -> (String, String, String) {
        let (status, body) = self
            .call(
                "POST",
                "/v1/apps",
                Some(ADMIN),
                Some(r#"{"name":"demo"}"#),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let field = |name: &str| body[name].as_str().unwrap().to_owned();
        (field("app_id"), field("server_key"), field("client_key"))
    }

    async fn register(&self, app: &str, key: &str) -> String {
        let path = format!("/v1/apps/{app}/devices");
        let (status, body) = self.call("POST", &path, Some(key), None, None).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(body["device_token"].as_str().unwrap().len() > 20);
        body["device_id"].as_str().unwrap().to_owned()
    }

    async fn send(
        &self,
        app: &str,
        key: &str,
        body: Value,
        idempotency_key: Option<&str>,
    ) -> (StatusCode, Value) {
        let path = format!("/v1/apps/{app}/messages");
        self.call(
            "POST",
            &path,
            Some(key),
            Some(&body.to_string()),
            idempotency_key,
        )
        .await
    }
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn apps_need_the_admin_token() {
    let api = Api::new();
    let (status, body) = api
        .call("POST", "/v1/apps", None, Some(r#"{"name":"x"}"#), None)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "missing_credentials")
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/apps",
            Some("nope"),
            Some(r#"{"name":"x"}"#),
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/apps",
            Some(ADMIN),
            Some(r#"{"nom":"x"}"#),
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("nom"),
        "{body}"
    );
    let (app, server_key, client_key) = api.create_app().await;
    assert_eq!(app.len(), 16);
    assert!(server_key.starts_with("sk_") && client_key.starts_with("ck_"));
}

#[tokio::test]
async fn keys_are_checked_per_app_and_per_kind() {
    let api = Api::new();
    let (app, server_key, client_key) = api.create_app().await;
    let (other_app, other_server_key, _) = api.create_app().await;
    let device = api.register(&app, &client_key).await;
    api.register(&app, &server_key).await;

    let send = json!({ "device_ids": [device], "data": "hi" });
    let (status, body) = api.send(&app, &client_key, send.clone(), None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "wrong_key")
    );
    let (status, body) = api.send(&app, &other_server_key, send.clone(), None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    // A device of another app is unknown in this one.
    let (status, body) = api.send(&other_app, &other_server_key, send, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "unknown_device")
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/apps/0123456789abcdef/devices",
            Some(&client_key),
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "unknown_app")
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/apps/not-an-app/devices",
            Some(&client_key),
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "unknown_app")
    );
}

#[tokio::test]
async fn bad_sends_get_clear_errors_and_accept_nothing() {
    let api = Api::new();
    let (app, key, client_key) = api.create_app().await;
    let device = api.register(&app, &client_key).await;
    let unknown = "0123456789abcdef0123456789abcdef";
    let cases = [
        (
            json!({ "device_ids": [device], "data": "x".repeat(4097) }),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            json!({ "device_ids": [device, unknown], "data": "x" }),
            StatusCode::NOT_FOUND,
            "unknown_device",
        ),
        (
            json!({ "device_ids": ["nothex"], "data": "x" }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({ "device_ids": [], "data": "x" }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        // The cap on devices per request (1,000 by default).
        (
            json!({ "device_ids": vec![device.clone(); 1001], "data": "x" }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({ "device_ids": [device] }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({ "device_ids": [device], "data": "x", "ttl_seconds": 0 }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({ "device_ids": [device], "data": "x", "colour": 1 }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (body, want_status, want_code) in cases {
        let (status, answer) = api.send(&app, &key, body.clone(), None).await;
        assert_eq!(
            (status, error_code(&answer)),
            (want_status, want_code),
            "for {body}"
        );
    }
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/apps/{app}/messages"),
            Some(&key),
            Some("{not json"),
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    // Exactly 4096 bytes is fine; nothing above was accepted.
    let (status, _) = api
        .send(
            &app,
            &key,
            json!({ "device_ids": [device], "data": "x".repeat(4096) }),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let state = api
        .store
        .inbox_state(device.parse().unwrap(), ringpush_store::now_ms())
        .await
        .unwrap();
    assert_eq!((state.last_seq, state.pending), (1, 1));
}

#[tokio::test]
async fn sends_are_sequenced_and_statuses_readable() {
    let api = Api::new();
    let (app, key, client_key) = api.create_app().await;
    let a = api.register(&app, &client_key).await;
    let b = api.register(&app, &client_key).await;
    let (status, body) = api
        .send(
            &app,
            &key,
            json!({ "device_ids": [a, b, a], "data": {"n": 1} }),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["message_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ids, [format!("{a}-1"), format!("{b}-1"), format!("{a}-2")]);

    let (status, body) = api
        .call(
            "GET",
            &format!("/v1/apps/{app}/messages/{a}-2"),
            Some(&key),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["seq"], 2);
    let (status, body) = api
        .call(
            "GET",
            &format!("/v1/apps/{app}/messages/{a}-3"),
            Some(&key),
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "unknown_message")
    );

    let (status, body) = api
        .call(
            "GET",
            &format!("/v1/apps/{app}/devices/{a}"),
            Some(&key),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["pending"].as_u64(), body["online"].as_bool()),
        (Some(2), Some(false))
    );
}

#[tokio::test]
async fn idempotent_retries_answer_the_same_ids_and_add_nothing() {
    let api = Api::new();
    let (app, key, client_key) = api.create_app().await;
    let device = api.register(&app, &client_key).await;
    let body = json!({ "device_ids": [device, device], "data": "once" });
    let (_, first) = api.send(&app, &key, body.clone(), Some("order-1")).await;
    let (status, again) = api.send(&app, &key, body, Some("order-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["message_ids"], again["message_ids"]);
    let state = api
        .store
        .inbox_state(device.parse().unwrap(), ringpush_store::now_ms())
        .await
        .unwrap();
    assert_eq!(state.last_seq, 2, "two messages, not four");

    let other = json!({ "device_ids": [device], "data": "different" });
    let (status, answer) = api.send(&app, &key, other, Some("order-1")).await;
    assert_eq!(
        (status, error_code(&answer)),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
    );
}

#[tokio::test]
async fn openapi_document_describes_every_route() {
    let api = Api::new();
    let (status, doc) = api.call("GET", "/openapi.json", None, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/v1/apps",
        "/v1/apps/{app_id}/devices",
        "/v1/apps/{app_id}/devices/{device_id}",
        "/v1/apps/{app_id}/messages",
        "/v1/apps/{app_id}/messages/{message_id}",
        "/v1/apps/{app_id}/keys",
        "/v1/apps/{app_id}/keys/{key_id}/revoke",
        "/v1/operators",
        "/v1/sessions",
        "/v1/sessions/current",
        "/v1/apps/{app_id}/gateways",
        "/v1/apps/{app_id}/devices/{device_id}/platform-token",
        "/v1/apps/{app_id}/platform/stats",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    let (status, body) = api.call("GET", "/v2/nothing", None, None, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

//! Who may do what, driven in-process over a real embedded store: operators' sessions (login,
//! cookie attributes, CSRF, logout, removal), roles, key creation and revocation, the bound
//! on failed logins, and idempotent campaign creation.

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
const PASSWORD: &str = "a long enough password";

struct Api {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

/// One request's credentials and extra headers.
#[derive(Default, Clone)]
struct As<'a> {
    bearer: Option<&'a str>,
    session: Option<&'a Session>,
    /// Send the session's CSRF token (on by default with a session).
    no_csrf: bool,
    headers: Vec<(&'a str, &'a str)>,
}

#[derive(Debug, Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Api {
    fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
        let (_ring_sender, ring) = tokio::sync::watch::channel(Arc::new(Ring::empty()));
        let state = ControllerState::new(
            ControllerConfig::new(ADMIN.into()),
            store,
            ring,
            None,
            CancellationToken::new(),
        );
        Api {
            router: app(state),
            _dir: dir,
        }
    }

    async fn call(&self, method: &str, path: &str, who: As<'_>, body: Option<Value>) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(bearer) = who.bearer {
            request = request.header("Authorization", format!("Bearer {bearer}"));
        }
        if let Some(session) = who.session {
            request = request.header("Cookie", &session.cookie);
            if !who.no_csrf {
                request = request.header("X-CSRF-Token", &session.csrf);
            }
        }
        for (name, value) in who.headers {
            request = request.header(name, value);
        }
        let body = match body {
            Some(json) => {
                request = request.header("Content-Type", "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    fn admin() -> As<'static> {
        As {
            bearer: Some(ADMIN),
            ..As::default()
        }
    }

    async fn operator(&self, name: &str, role: &str) {
        let body = json!({ "name": name, "role": role, "password": PASSWORD });
        let answer = self
            .call("POST", "/v1/operators", Self::admin(), Some(body))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }

    async fn login(&self, name: &str, password: &str) -> Answer {
        let body = json!({ "name": name, "password": password });
        self.call("POST", "/v1/sessions", As::default(), Some(body))
            .await
    }

    async fn session(&self, name: &str) -> Session {
        let answer = self.login(name, PASSWORD).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        let set_cookie = answer.headers["set-cookie"].to_str().unwrap();
        Session {
            cookie: set_cookie.split(';').next().unwrap().to_owned(),
            csrf: answer.body["csrf_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn app(&self) -> Value {
        let answer = self
            .call(
                "POST",
                "/v1/apps",
                Self::admin(),
                Some(json!({ "name": "demo" })),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.body
    }
}

fn code(answer: &Answer) -> &str {
    answer.body["error"]["code"].as_str().unwrap_or_default()
}

fn campaign(name: &str) -> Value {
    json!({ "name": name, "message": { "tags": "vip", "data": "hi" },
            "schedule": { "kind": "once", "at_ms": 4_000_000_000_000_i64 } })
}

#[tokio::test]
async fn a_session_cookie_is_http_only_same_site_and_secure_behind_tls() {
    let api = Api::new();
    api.operator("ada", "admin").await;
    let answer = api.login("ada", PASSWORD).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let cookie = answer.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("ringpush_session=rs_"), "{cookie}");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let body = json!({ "name": "ada", "password": PASSWORD });
    let who = As {
        headers: vec![("X-Forwarded-Proto", "https")],
        ..As::default()
    };
    let behind_tls = api.call("POST", "/v1/sessions", who, Some(body)).await;
    let cookie = behind_tls.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    // The password hash is never shown.
    let listed = api.call("GET", "/v1/operators", Api::admin(), None).await;
    assert_eq!(listed.body["operators"][0]["role"], "admin");
    assert!(
        !listed.body.to_string().contains("argon2"),
        "{}",
        listed.body
    );
}

#[tokio::test]
async fn roles_decide_what_an_operator_may_do() {
    let api = Api::new();
    let app = api.app().await;
    let campaigns = format!("/v1/apps/{}/campaigns", app["app_id"].as_str().unwrap());
    for (name, role) in [("ada", "admin"), ("mark", "marketer"), ("vera", "viewer")] {
        api.operator(name, role).await;
    }
    let (ada, mark, vera) = (
        api.session("ada").await,
        api.session("mark").await,
        api.session("vera").await,
    );
    let with = |session| As {
        session: Some(session),
        ..As::default()
    };

    let current = api
        .call("GET", "/v1/sessions/current", with(&vera), None)
        .await;
    assert_eq!(current.body["operator"], "vera");
    assert_eq!(current.body["role"], "viewer");

    // Everyone reads; a viewer cannot send.
    for session in [&ada, &mark, &vera] {
        let answer = api.call("GET", &campaigns, with(session), None).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    let refused = api
        .call("POST", &campaigns, with(&vera), Some(campaign("v")))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(code(&refused), "forbidden");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("viewer role")
    );
    let created = api
        .call("POST", &campaigns, with(&mark), Some(campaign("m")))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    // Only admins manage apps and operators.
    let body = json!({ "name": "second" });
    let by_marketer = api
        .call("POST", "/v1/apps", with(&mark), Some(body.clone()))
        .await;
    assert_eq!(by_marketer.status, StatusCode::FORBIDDEN);
    let by_admin = api.call("POST", "/v1/apps", with(&ada), Some(body)).await;
    assert_eq!(by_admin.status, StatusCode::CREATED, "{}", by_admin.body);
    let operators = api.call("GET", "/v1/operators", with(&mark), None).await;
    assert_eq!(operators.status, StatusCode::FORBIDDEN);
    let apps = api.call("GET", "/v1/apps", with(&vera), None).await;
    assert_eq!(apps.body["apps"].as_array().unwrap().len(), 2);

    // Operators do not register devices (that is for client keys).
    let devices = format!("/v1/apps/{}/devices", app["app_id"].as_str().unwrap());
    let register = api.call("POST", &devices, with(&ada), None).await;
    assert_eq!(register.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_change_with_a_session_needs_its_csrf_token() {
    let api = Api::new();
    let app = api.app().await;
    let campaigns = format!("/v1/apps/{}/campaigns", app["app_id"].as_str().unwrap());
    api.operator("mark", "marketer").await;
    let mark = api.session("mark").await;
    let without = As {
        session: Some(&mark),
        no_csrf: true,
        ..As::default()
    };
    let refused = api
        .call("POST", &campaigns, without.clone(), Some(campaign("x")))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(code(&refused), "csrf_failed");
    let wrong = Session {
        csrf: "csrf_not_this_one".into(),
        ..mark.clone()
    };
    let with_wrong = As {
        session: Some(&wrong),
        ..As::default()
    };
    let refused = api
        .call("POST", &campaigns, with_wrong, Some(campaign("x")))
        .await;
    assert_eq!(code(&refused), "csrf_failed");
    // Reads need no token.
    assert_eq!(
        api.call("GET", &campaigns, without, None).await.status,
        StatusCode::OK
    );
    // A login must be JSON: a cross-site HTML form cannot log a browser in.
    let form = api
        .call(
            "POST",
            "/v1/sessions",
            As {
                headers: vec![("Content-Type", "application/x-www-form-urlencoded")],
                ..As::default()
            },
            None,
        )
        .await;
    assert_eq!(form.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn logging_out_or_removing_the_operator_ends_the_session() {
    let api = Api::new();
    api.operator("mark", "marketer").await;
    api.operator("max", "marketer").await;
    let (mark, max) = (api.session("mark").await, api.session("max").await);
    let with = |session| As {
        session: Some(session),
        ..As::default()
    };
    let out = api
        .call("DELETE", "/v1/sessions/current", with(&mark), None)
        .await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = api
        .call("GET", "/v1/sessions/current", with(&mark), None)
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);

    assert_eq!(
        api.call("GET", "/v1/apps", with(&max), None).await.status,
        StatusCode::OK
    );
    let removed = api
        .call("DELETE", "/v1/operators/max", Api::admin(), None)
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    let after = api.call("GET", "/v1/apps", with(&max), None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    let again = api
        .call("DELETE", "/v1/operators/max", Api::admin(), None)
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn failed_logins_are_bounded_even_for_the_right_password() {
    let api = Api::new();
    api.operator("ada", "admin").await;
    for _ in 0..ringpush_controller::login_limit::FAILURES_PER_NAME {
        let answer = api.login("ada", "wrong password!!").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(code(&answer), "invalid_login");
    }
    let limited = api.login("ada", PASSWORD).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    // An unknown name is refused the same way as a wrong password.
    let unknown = api.login("nobody", PASSWORD).await;
    assert_eq!(code(&unknown), "invalid_login");
}

#[tokio::test]
async fn keys_are_shown_once_and_stop_working_when_revoked() {
    let api = Api::new();
    let app = api.app().await;
    let app_id = app["app_id"].as_str().unwrap();
    let keys = format!("/v1/apps/{app_id}/keys");
    let campaigns = format!("/v1/apps/{app_id}/campaigns");
    let created = api
        .call(
            "POST",
            &keys,
            Api::admin(),
            Some(json!({ "kind": "server" })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let secret = created.body["key"].as_str().unwrap();
    let key_id = created.body["key_id"].as_str().unwrap();
    let with_key = |key| As {
        bearer: Some(key),
        ..As::default()
    };
    assert_eq!(
        api.call("GET", &campaigns, with_key(secret), None)
            .await
            .status,
        StatusCode::OK
    );

    let listed = api.call("GET", &keys, Api::admin(), None).await;
    let listed_text = listed.body.to_string();
    // The server and client keys, the token-signing key, and the new one.
    assert_eq!(listed.body["keys"].as_array().unwrap().len(), 4);
    assert!(
        !listed_text.contains(secret),
        "a listing never shows secrets"
    );

    // A client key may register devices but not read or send.
    let client_key = app["client_key"].as_str().unwrap();
    let as_client = api
        .call("GET", &campaigns, with_key(client_key), None)
        .await;
    assert_eq!(code(&as_client), "wrong_key");
    let devices = format!("/v1/apps/{app_id}/devices");
    let registered = api.call("POST", &devices, with_key(client_key), None).await;
    assert_eq!(registered.status, StatusCode::CREATED);

    // A server key cannot manage keys.
    let by_key = api.call("GET", &keys, with_key(secret), None).await;
    assert_eq!(by_key.status, StatusCode::UNAUTHORIZED);

    let revoke = format!("{keys}/{key_id}/revoke");
    let revoked = api.call("POST", &revoke, Api::admin(), None).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert!(revoked.body["revoked_at_ms"].as_i64().is_some());
    let refused = api.call("GET", &campaigns, with_key(secret), None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let again = api.call("POST", &revoke, Api::admin(), None).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let unknown = api
        .call(
            "POST",
            &format!("{keys}/key_nope/revoke"),
            Api::admin(),
            None,
        )
        .await;
    assert_eq!(code(&unknown), "unknown_key");
    // The app's first server key still works.
    let first = app["server_key"].as_str().unwrap();
    assert_eq!(
        api.call("GET", &campaigns, with_key(first), None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_campaign_under_an_idempotency_key_is_created_once() {
    let api = Api::new();
    let app = api.app().await;
    let campaigns = format!("/v1/apps/{}/campaigns", app["app_id"].as_str().unwrap());
    let who = As {
        bearer: app["server_key"].as_str(),
        headers: vec![("Idempotency-Key", "confirm-7")],
        ..As::default()
    };
    let first = api
        .call("POST", &campaigns, who.clone(), Some(campaign("once")))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let second = api
        .call("POST", &campaigns, who.clone(), Some(campaign("once")))
        .await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body["id"], first.body["id"]);
    let other = api
        .call("POST", &campaigns, who, Some(campaign("other")))
        .await;
    assert_eq!(code(&other), "idempotency_key_reused");
    let listed = api
        .call(
            "GET",
            &campaigns,
            As {
                bearer: app["server_key"].as_str(),
                ..As::default()
            },
            None,
        )
        .await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn portal_pages_forbid_framing_and_foreign_scripts_and_need_a_session() {
    let api = Api::new();
    let login = api.call("GET", "/portal/login", As::default(), None).await;
    assert_eq!(login.status, StatusCode::OK);
    let policy = login.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("frame-ancestors 'none'") && policy.contains("default-src 'self'"));
    assert_eq!(login.headers["x-frame-options"], "DENY");
    let cookie = login.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("ringpush_login=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // Without a session, a page sends the browser to the login page and back.
    let page = api.call("GET", "/portal/apps", As::default(), None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.headers["location"], "/portal/login?next=/portal/apps");
    // The assets are compiled in.
    let script = api
        .call(
            "GET",
            "/portal/assets/vendor/uPlot.iife.min.js",
            As::default(),
            None,
        )
        .await;
    assert_eq!(script.status, StatusCode::OK);
    let missing = api
        .call("GET", "/portal/assets/nothing.js", As::default(), None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_server_key_does_only_what_its_scopes_allow() {
    let api = Api::new();
    let app = api.app().await;
    let app_id = app["app_id"].as_str().unwrap();
    let keys = format!("/v1/apps/{app_id}/keys");
    let create = |scopes: Value| json!({ "kind": "server", "scopes": scopes });
    let reader = api
        .call(
            "POST",
            &keys,
            Api::admin(),
            Some(create(json!(["read_stats"]))),
        )
        .await;
    assert_eq!(reader.status, StatusCode::CREATED, "{}", reader.body);
    assert_eq!(reader.body["scopes"], json!(["read_stats"]));
    let secret = reader.body["key"].as_str().unwrap();
    let with_key = As {
        bearer: Some(secret),
        ..As::default()
    };
    let campaigns = format!("/v1/apps/{app_id}/campaigns");
    let read = api.call("GET", &campaigns, with_key.clone(), None).await;
    assert_eq!(read.status, StatusCode::OK);
    let send = api
        .call("POST", &campaigns, with_key.clone(), Some(campaign("c")))
        .await;
    assert_eq!(send.status, StatusCode::FORBIDDEN);
    assert_eq!(code(&send), "missing_scope");
    assert!(
        send.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("send scope")
    );
    let messages = format!("/v1/apps/{app_id}/messages");
    let body = json!({ "broadcast": true, "data": "x" });
    let message = api
        .call("POST", &messages, with_key.clone(), Some(body))
        .await;
    assert_eq!(code(&message), "missing_scope");
    let devices = format!("/v1/apps/{app_id}/devices");
    let register = api.call("POST", &devices, with_key, None).await;
    assert_eq!(code(&register), "missing_scope");

    // A key needs a scope; client keys have none to choose.
    let none = api
        .call("POST", &keys, Api::admin(), Some(create(json!([]))))
        .await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    let unknown = api
        .call(
            "POST",
            &keys,
            Api::admin(),
            Some(create(json!(["everything"]))),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let client = json!({ "kind": "client", "scopes": ["send"] });
    let refused = api.call("POST", &keys, Api::admin(), Some(client)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let listed = api.call("GET", &keys, Api::admin(), None).await;
    let scopes: Vec<&Value> = listed.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| &key["scopes"])
        .collect();
    assert_eq!(
        scopes,
        [
            &json!(["send", "read_stats", "manage_devices"]),
            &json!([]),
            &json!([]),
            &json!(["read_stats"])
        ]
    );
}

#[tokio::test]
async fn device_tokens_are_signed_by_the_newest_live_token_signing_key() {
    let api = Api::new();
    let app = api.app().await;
    let app_id = app["app_id"].as_str().unwrap();
    let keys = format!("/v1/apps/{app_id}/keys");
    let devices = format!("/v1/apps/{app_id}/devices");
    let client = As {
        bearer: app["client_key"].as_str(),
        ..As::default()
    };
    let key_of = |token: &str| token.split('.').nth(1).unwrap().to_owned();
    let listed = api.call("GET", &keys, Api::admin(), None).await;
    let first = listed.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kind"] == "token_signing")
        .expect("an app is created with a token-signing key")["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let registered = api.call("POST", &devices, client.clone(), None).await;
    let token = registered.body["device_token"].as_str().unwrap();
    assert!(token.starts_with("dt1."), "{token}");
    assert_eq!(key_of(token), first);

    let with_scopes = json!({ "kind": "token_signing", "scopes": ["send"] });
    let refused = api
        .call("POST", &keys, Api::admin(), Some(with_scopes))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let rotated = api
        .call(
            "POST",
            &keys,
            Api::admin(),
            Some(json!({ "kind": "token_signing" })),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.body);
    assert!(
        rotated.body.get("key").is_none(),
        "its secret is never shown: {}",
        rotated.body
    );
    let second = rotated.body["key_id"].as_str().unwrap();
    let registered = api.call("POST", &devices, client.clone(), None).await;
    assert_eq!(
        key_of(registered.body["device_token"].as_str().unwrap()),
        second
    );

    // Revoking the newest key: the one before signs again; revoking every key: a new one.
    let revoke = |id: &str| format!("{keys}/{id}/revoke");
    assert_eq!(
        api.call("POST", &revoke(second), Api::admin(), None)
            .await
            .status,
        StatusCode::OK
    );
    let registered = api.call("POST", &devices, client.clone(), None).await;
    assert_eq!(
        key_of(registered.body["device_token"].as_str().unwrap()),
        first
    );
    assert_eq!(
        api.call("POST", &revoke(&first), Api::admin(), None)
            .await
            .status,
        StatusCode::OK
    );
    let registered = api.call("POST", &devices, client.clone(), None).await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    let third = key_of(registered.body["device_token"].as_str().unwrap());
    assert!(third != first && third != second, "{third}");
    // A token-signing key is no credential.
    let listed = api.call("GET", &keys, Api::admin(), None).await;
    assert_eq!(listed.body["keys"].as_array().unwrap().len(), 5);
}

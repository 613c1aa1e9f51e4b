//! Pages for admins (and the app list every operator sees): apps, their keys, operators.
//! Each action is one API call; the API refuses it unless the session's role is admin.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::forward::{Api, Caller};
use super::view::{Nav, PortalError, context, form_session, path_part, render, time_text};

#[derive(Debug, Deserialize)]
struct AppView {
    app_id: String,
    name: String,
    created_at_ms: i64,
}

#[derive(Debug, Deserialize)]
struct AppList {
    apps: Vec<AppView>,
}

struct AppRow {
    id: String,
    name: String,
    created: String,
}

#[derive(Template)]
#[template(path = "apps.html")]
struct AppsPage {
    nav: Nav,
    apps: Vec<AppRow>,
}

pub(crate) async fn apps(State(api): State<Api>, caller: Caller) -> Result<Response, PortalError> {
    let (_, nav) = context(&api, &caller, None, "/portal/apps").await?;
    let list: AppList = api.get(&caller, "/v1/apps").await?;
    let apps = list
        .apps
        .into_iter()
        .map(|app| AppRow {
            id: app.app_id,
            name: app.name,
            created: time_text(app.created_at_ms),
        })
        .collect();
    Ok(render(&AppsPage { nav, apps }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct CreateAppForm {
    csrf: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct CreatedApp {
    app_id: String,
    server_key_id: String,
    server_key: String,
    client_key_id: String,
    client_key: String,
}

pub(crate) async fn create_app(
    State(api): State<Api>,
    caller: Caller,
    Form(form): Form<CreateAppForm>,
) -> Result<Response, PortalError> {
    let session = form_session(&api, &caller, "/portal/apps", &form.csrf).await?;
    let body = serde_json::json!({ "name": form.name });
    let created: CreatedApp = api
        .post(&caller, &session.csrf_token, "/v1/apps", &body)
        .await?;
    let revealed = vec![
        Revealed {
            label: "Server key".into(),
            id: created.server_key_id,
            secret: created.server_key,
        },
        Revealed {
            label: "Client key".into(),
            id: created.client_key_id,
            secret: created.client_key,
        },
    ];
    keys_page(&api, &caller, &created.app_id, revealed, "app created").await
}

#[derive(Debug, Deserialize)]
struct KeyView {
    key_id: String,
    kind: String,
    created_at_ms: i64,
    revoked_at_ms: Option<i64>,
    scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct KeyList {
    keys: Vec<KeyView>,
}

struct KeyRow {
    id: String,
    kind: String,
    scopes: String,
    created: String,
    revoked: Option<String>,
}

/// A secret shown once, right after it was made.
struct Revealed {
    label: String,
    id: String,
    secret: String,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    nav: Nav,
    app_id: String,
    keys: Vec<KeyRow>,
    revealed: Vec<Revealed>,
}

async fn keys_page(
    api: &Api,
    caller: &Caller,
    app_id: &str,
    revealed: Vec<Revealed>,
    notice: &str,
) -> Result<Response, PortalError> {
    let app_id = path_part(app_id);
    let here = format!("/portal/apps/{app_id}/keys");
    let (_, mut nav) = context(api, caller, Some(&app_id), &here).await?;
    if !notice.is_empty() {
        nav = nav.notice(notice);
    }
    let list: KeyList = api.get(caller, &format!("/v1/apps/{app_id}/keys")).await?;
    let keys = list
        .keys
        .into_iter()
        .map(|key| KeyRow {
            scopes: if key.kind == "client" {
                "registers devices".to_owned()
            } else {
                key.scopes.join(", ")
            },
            id: key.key_id,
            kind: key.kind,
            created: time_text(key.created_at_ms),
            revoked: key.revoked_at_ms.map(time_text),
        })
        .collect();
    Ok(render(&KeysPage {
        nav,
        app_id,
        keys,
        revealed,
    }))
}

pub(crate) async fn keys(
    State(api): State<Api>,
    caller: Caller,
    Path(app_id): Path<String>,
) -> Result<Response, PortalError> {
    keys_page(&api, &caller, &app_id, Vec::new(), "").await
}

#[derive(Debug, Deserialize)]
pub(crate) struct CreateKeyForm {
    csrf: String,
    kind: String,
    /// The scope boxes of a server key (`yes` when ticked).
    scope_send: Option<String>,
    scope_read_stats: Option<String>,
    scope_manage_devices: Option<String>,
}

impl CreateKeyForm {
    /// The API request: a server key with the ticked scopes, a client key with none.
    fn request(&self) -> serde_json::Value {
        if self.kind != "server" {
            return serde_json::json!({ "kind": self.kind });
        }
        let scopes: Vec<&str> = [
            ("send", &self.scope_send),
            ("read_stats", &self.scope_read_stats),
            ("manage_devices", &self.scope_manage_devices),
        ]
        .into_iter()
        .filter(|(_, ticked)| ticked.as_deref() == Some("yes"))
        .map(|(scope, _)| scope)
        .collect();
        serde_json::json!({ "kind": self.kind, "scopes": scopes })
    }
}

#[derive(Debug, Deserialize)]
struct CreatedKey {
    key_id: String,
    kind: String,
    key: String,
}

pub(crate) async fn create_key(
    State(api): State<Api>,
    caller: Caller,
    Path(app_id): Path<String>,
    Form(form): Form<CreateKeyForm>,
) -> Result<Response, PortalError> {
    let app_id = path_part(&app_id);
    let session = form_session(&api, &caller, "/portal/apps", &form.csrf).await?;
    let body = form.request();
    let path = format!("/v1/apps/{app_id}/keys");
    let created: CreatedKey = api.post(&caller, &session.csrf_token, &path, &body).await?;
    let revealed = vec![Revealed {
        label: format!("New {} key", created.kind),
        id: created.key_id,
        secret: created.key,
    }];
    keys_page(&api, &caller, &app_id, revealed, "key created").await
}

/// A dangerous action's form: the CSRF token and the "I mean it" box.
#[derive(Debug, Deserialize)]
pub(crate) struct ConfirmedForm {
    csrf: String,
    sure: Option<String>,
}

impl ConfirmedForm {
    fn check(&self, what: &str) -> Result<(), PortalError> {
        match self.sure.as_deref() {
            Some("yes") => Ok(()),
            _ => Err(PortalError::BadForm(format!(
                "tick the box to confirm that you want to {what}"
            ))),
        }
    }
}

pub(crate) async fn revoke_key(
    State(api): State<Api>,
    caller: Caller,
    Path((app_id, key_id)): Path<(String, String)>,
    Form(form): Form<ConfirmedForm>,
) -> Result<Response, PortalError> {
    let (app_id, key_id) = (path_part(&app_id), path_part(&key_id));
    let session = form_session(&api, &caller, "/portal/apps", &form.csrf).await?;
    form.check("revoke this key")?;
    let path = format!("/v1/apps/{app_id}/keys/{key_id}/revoke");
    let _: serde_json::Value = api
        .post(&caller, &session.csrf_token, &path, &serde_json::json!({}))
        .await?;
    keys_page(
        &api,
        &caller,
        &app_id,
        Vec::new(),
        &format!("key {key_id} revoked"),
    )
    .await
}

#[derive(Debug, Deserialize)]
struct OperatorView {
    name: String,
    role: String,
    created_at_ms: i64,
}

#[derive(Debug, Deserialize)]
struct OperatorList {
    operators: Vec<OperatorView>,
}

struct OperatorRow {
    name: String,
    role: String,
    created: String,
}

#[derive(Template)]
#[template(path = "operators.html")]
struct OperatorsPage {
    nav: Nav,
    operators: Vec<OperatorRow>,
}

async fn operators_page(
    api: &Api,
    caller: &Caller,
    notice: Option<String>,
) -> Result<Response, PortalError> {
    let (_, mut nav) = context(api, caller, None, "/portal/operators").await?;
    if let Some(notice) = notice {
        nav = nav.notice(notice);
    }
    let list: OperatorList = api.get(caller, "/v1/operators").await?;
    let operators = list
        .operators
        .into_iter()
        .map(|operator| OperatorRow {
            name: operator.name,
            role: operator.role,
            created: time_text(operator.created_at_ms),
        })
        .collect();
    Ok(render(&OperatorsPage { nav, operators }))
}

pub(crate) async fn operators(
    State(api): State<Api>,
    caller: Caller,
) -> Result<Response, PortalError> {
    operators_page(&api, &caller, None).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct CreateOperatorForm {
    csrf: String,
    name: String,
    role: String,
    password: String,
}

pub(crate) async fn create_operator(
    State(api): State<Api>,
    caller: Caller,
    Form(form): Form<CreateOperatorForm>,
) -> Result<Response, PortalError> {
    let session = form_session(&api, &caller, "/portal/operators", &form.csrf).await?;
    let body =
        serde_json::json!({ "name": form.name, "role": form.role, "password": form.password });
    let created: OperatorView = api
        .post(&caller, &session.csrf_token, "/v1/operators", &body)
        .await?;
    let notice = format!("operator {} added as {}", created.name, created.role);
    operators_page(&api, &caller, Some(notice)).await
}

pub(crate) async fn delete_operator(
    State(api): State<Api>,
    caller: Caller,
    Path(name): Path<String>,
    Form(form): Form<ConfirmedForm>,
) -> Result<Response, PortalError> {
    let name = path_part(&name);
    let session = form_session(&api, &caller, "/portal/operators", &form.csrf).await?;
    form.check("remove this operator")?;
    api.call(
        &caller,
        Some(&session.csrf_token),
        axum::http::Method::DELETE,
        &format!("/v1/operators/{name}"),
        None,
    )
    .await?
    .into_result::<serde_json::Value>()?;
    Ok(Redirect::to("/portal/operators").into_response())
}

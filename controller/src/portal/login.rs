//! Logging in and out: the login form (with its own CSRF cookie, since there is no session
//! yet) posts to the API's `POST /v1/sessions`, whose session cookie is handed to the browser.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::forward::{Api, Caller};
use super::view::{Nav, PortalError, form_session, render};
use crate::auth::{self, same_secret};

/// The cookie that ties the login form to the browser that loaded it.
const LOGIN_COOKIE: &str = "ringpush_login";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Nav,
    login_csrf: String,
    next: String,
    name: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

/// Where to go after logging in: a portal page, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with("/portal/") && !next.starts_with("//") => next.to_owned(),
        _ => "/portal/apps".to_owned(),
    }
}

fn login_page(status: StatusCode, next: String, name: String, error: Option<String>) -> Response {
    let login_csrf = crate::api::random_secret("lc_");
    let page = LoginPage {
        nav: Nav::default(),
        login_csrf: login_csrf.clone(),
        next,
        name,
        error,
    };
    let mut response = render(&page);
    *response.status_mut() = status;
    let cookie = format!(
        "{LOGIN_COOKIE}={login_csrf}; Path=/portal/login; HttpOnly; SameSite=Strict; Max-Age=3600"
    );
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub(crate) async fn page(Query(query): Query<NextQuery>) -> Response {
    login_page(
        StatusCode::OK,
        safe_next(query.next.as_deref()),
        String::new(),
        None,
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    csrf: String,
    next: Option<String>,
    name: String,
    password: String,
}

pub(crate) async fn submit(
    State(api): State<Api>,
    caller: Caller,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let cookie_matches = auth::cookie(&headers, LOGIN_COOKIE)
        .is_some_and(|expected| same_secret(&form.csrf, expected));
    if !cookie_matches {
        let error = "the login form expired or came from another site; try again".to_owned();
        return login_page(StatusCode::FORBIDDEN, next, form.name, Some(error));
    }
    let body = serde_json::json!({ "name": form.name, "password": form.password });
    let answer = match api
        .call(&caller, None, Method::POST, "/v1/sessions", Some(&body))
        .await
    {
        Ok(answer) => answer,
        Err(error) => return error.into_response(),
    };
    if !answer.status.is_success() {
        let error = PortalError::from_api(answer.status, &answer.body).message();
        return login_page(answer.status, next, form.name, Some(error));
    }
    let mut response = Redirect::to(&next).into_response();
    for cookie in answer.headers.get_all(header::SET_COOKIE) {
        response
            .headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    response
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

pub(crate) async fn logout(
    State(api): State<Api>,
    caller: Caller,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PortalError> {
    let session = form_session(&api, &caller, "/portal/apps", &form.csrf).await?;
    let answer = api
        .call(
            &caller,
            Some(&session.csrf_token),
            Method::DELETE,
            "/v1/sessions/current",
            None,
        )
        .await?;
    let mut response = Redirect::to("/portal/login").into_response();
    for cookie in answer.headers.get_all(header::SET_COOKIE) {
        response
            .headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    Ok(response)
}

//! The marketing portal: server-rendered pages under `/portal` for campaign operators.
//!
//! - [`forward`]: every action goes through the public REST API (the same router, the same
//!   checks), called in-process with the operator's session cookie and CSRF token;
//! - [`login`]: log in and out (the API's `/v1/sessions`);
//! - [`admin`]: apps, their keys (created, revealed once, revoked) and operators, for admins;
//! - [`compose`]: compose, review with the reach stated, confirm, send;
//! - [`campaigns`]: the list, one campaign's live statistics, pause, resume, cancel;
//! - [`devices`]: device lookup by id or alias;
//! - [`view`]: what every page shows (navigation, times) and the error page.
//!
//! Assets (CSS, the one script, vendored uPlot) are compiled into the binary: no CDN, no
//! internet. Roles are enforced by the API, not here: the pages only hide what a role cannot
//! do, so a crafted form post meets the same 403 as a hidden button would.
//!
//! Does not own: authentication or authorisation (`crate::auth`), sessions and operators
//! (`crate::api::sessions`, `crate::api::operators`), or any data.

mod admin;
mod campaigns;
mod compose;
mod compose_form;
mod devices;
pub(crate) mod forward;
mod login;
mod view;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use forward::Api;

/// The portal's routes; `api` is the REST API router the pages call.
pub(crate) fn routes(api: Router) -> Router {
    Router::new()
        .route("/portal", get(|| async { Redirect::to("/portal/apps") }))
        .route("/portal/", get(|| async { Redirect::to("/portal/apps") }))
        .route("/portal/login", get(login::page).post(login::submit))
        .route("/portal/logout", post(login::logout))
        .route("/portal/apps", get(admin::apps).post(admin::create_app))
        .route("/portal/apps/{app_id}", get(campaigns::app_home))
        .route(
            "/portal/apps/{app_id}/keys",
            get(admin::keys).post(admin::create_key),
        )
        .route(
            "/portal/apps/{app_id}/keys/{key_id}/revoke",
            post(admin::revoke_key),
        )
        .route(
            "/portal/operators",
            get(admin::operators).post(admin::create_operator),
        )
        .route(
            "/portal/operators/{name}/delete",
            post(admin::delete_operator),
        )
        .route("/portal/apps/{app_id}/compose", get(compose::page))
        .route("/portal/apps/{app_id}/review", post(compose::review))
        .route("/portal/apps/{app_id}/edit", post(compose::edit))
        .route("/portal/apps/{app_id}/send", post(compose::send))
        .route("/portal/apps/{app_id}/campaigns", get(campaigns::list))
        .route(
            "/portal/apps/{app_id}/campaigns/{campaign_id}",
            get(campaigns::show),
        )
        .route(
            "/portal/apps/{app_id}/campaigns/{campaign_id}/{action}",
            post(campaigns::change),
        )
        .route("/portal/apps/{app_id}/devices", get(devices::lookup))
        .route("/portal/assets/{*file}", get(asset))
        .with_state(Api::new(api))
}

/// The files under `portal/assets`, compiled in.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "portal.css",
        "text/css; charset=utf-8",
        include_str!("../../portal/assets/portal.css"),
    ),
    (
        "portal.js",
        "text/javascript; charset=utf-8",
        include_str!("../../portal/assets/portal.js"),
    ),
    (
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../../portal/assets/vendor/uPlot.iife.min.js"),
    ),
    (
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../../portal/assets/vendor/uPlot.min.css"),
    ),
];

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=300"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}

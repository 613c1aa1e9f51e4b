//! What every page shares: the operator's session and navigation, times as text, rendering,
//! and the error page.

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::forward::{Api, Caller};

/// The operator's session, as `GET /v1/sessions/current` answers it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Session {
    pub operator: String,
    pub role: String,
    pub csrf_token: String,
}

impl Session {
    /// The role may send and change campaigns (the API decides; this only hides buttons).
    pub(crate) fn can_send(&self) -> bool {
        matches!(self.role.as_str(), "admin" | "marketer")
    }

    pub(crate) fn is_admin(&self) -> bool {
        self.role == "admin"
    }

    /// Refuses a form whose CSRF field is not this session's token.
    pub(crate) fn check_csrf(&self, presented: &str) -> Result<(), PortalError> {
        if crate::auth::same_secret(presented, &self.csrf_token) {
            Ok(())
        } else {
            Err(PortalError::Csrf)
        }
    }
}

/// The app a page is about.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AppRef {
    #[serde(rename = "app_id")]
    pub id: String,
    pub name: String,
}

/// The header of every page.
#[derive(Debug, Clone, Default)]
pub(crate) struct Nav {
    pub operator: String,
    pub role: String,
    pub csrf_token: String,
    pub app: Option<AppRef>,
    pub can_send: bool,
    pub is_admin: bool,
    pub notices: Vec<String>,
}

impl Nav {
    /// A notice shown at the top of the page (the result of the last action).
    pub(crate) fn notice(mut self, text: impl Into<String>) -> Self {
        self.notices.push(text.into());
        self
    }
}

/// The session and, for an app's pages, the app: what every page starts with. Without a
/// session the page answers a redirect to the login page.
pub(crate) async fn context(
    api: &Api,
    caller: &Caller,
    app_id: Option<&str>,
    here: &str,
) -> Result<(Session, Nav), PortalError> {
    let session: Session = match api.get(caller, "/v1/sessions/current").await {
        Err(PortalError::Api { status, .. }) if status == StatusCode::UNAUTHORIZED => {
            return Err(PortalError::LoginNeeded {
                next: here.to_owned(),
            });
        }
        other => other?,
    };
    let app = match app_id {
        Some(id) => Some(
            api.get::<AppRef>(caller, &format!("/v1/apps/{}", path_part(id)))
                .await?,
        ),
        None => None,
    };
    let nav = Nav {
        operator: session.operator.clone(),
        role: session.role.clone(),
        csrf_token: session.csrf_token.clone(),
        app,
        can_send: session.can_send(),
        is_admin: session.is_admin(),
        notices: Vec::new(),
    };
    Ok((session, nav))
}

/// The session of a form post, refused unless `csrf` (the form's field) is the session's
/// token; `back` is where a login returns to if the session has ended.
pub(crate) async fn form_session(
    api: &Api,
    caller: &Caller,
    back: &str,
    csrf: &str,
) -> Result<Session, PortalError> {
    let (session, _) = context(api, caller, None, back).await?;
    session.check_csrf(csrf)?;
    Ok(session)
}

/// A path segment as typed by a user, made safe to put in an API path.
pub(crate) fn path_part(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(100)
        .collect()
}

/// A time in milliseconds as `2026-12-02 09:00 UTC`.
pub(crate) fn time_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|time| time.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// What every page may load and who may frame it: only this origin's own assets (no inline
/// script), never in a frame (a click on a framed page is not the operator's click).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'";

/// Renders a page, or the error page if the template fails.
pub(crate) fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (
            [
                (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
                (header::X_FRAME_OPTIONS, "DENY"),
                (header::REFERRER_POLICY, "same-origin"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            Html(html),
        )
            .into_response(),
        Err(error) => PortalError::internal(format!("rendering a page: {error}")).into_response(),
    }
}

/// Why a page could not be shown.
#[derive(Debug)]
pub(crate) enum PortalError {
    /// No session (or it expired): the login page, then back to `next`.
    LoginNeeded { next: String },
    /// The API refused or failed; its status, code and message are shown as they are.
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// A form field is missing or wrong.
    BadForm(String),
    /// A form without this session's CSRF token.
    Csrf,
}

impl PortalError {
    pub(crate) fn internal(message: String) -> Self {
        Self::Api {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal".into(),
            message,
        }
    }

    /// The API's JSON error `{"error": {"code", "message"}}`.
    pub(crate) fn from_api(status: StatusCode, body: &serde_json::Value) -> Self {
        let text = |field: &str| body["error"][field].as_str().unwrap_or_default().to_owned();
        Self::Api {
            status,
            code: text("code"),
            message: text("message"),
        }
    }

    /// The message to show inline on a form.
    pub(crate) fn message(&self) -> String {
        match self {
            Self::LoginNeeded { .. } => "your session ended: log in again".into(),
            Self::Api { message, .. } | Self::BadForm(message) => message.clone(),
            Self::Csrf => CSRF_MESSAGE.into(),
        }
    }
}

const CSRF_MESSAGE: &str =
    "this form is out of date or came from another site; reload the page and try again";

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: Nav,
    heading: String,
    message: String,
    code: Option<String>,
    status: u16,
    back: String,
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let (status, heading, code) = match &self {
            Self::LoginNeeded { next } => {
                let next: String = url_encode(next);
                return Redirect::to(&format!("/portal/login?next={next}")).into_response();
            }
            Self::Api { status, code, .. } => {
                let heading = match *status {
                    StatusCode::FORBIDDEN => "Not allowed",
                    StatusCode::NOT_FOUND => "Not found",
                    StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
                    status if status.is_server_error() => "Something failed",
                    _ => "Cannot do that",
                };
                (*status, heading, Some(code.clone()))
            }
            Self::BadForm(_) => (StatusCode::BAD_REQUEST, "Cannot do that", None),
            Self::Csrf => (StatusCode::FORBIDDEN, "Not allowed", None),
        };
        let page = ErrorPage {
            nav: Nav::default(),
            heading: heading.into(),
            message: self.message(),
            code,
            status: status.as_u16(),
            back: "/portal/apps".into(),
        };
        let mut response = render(&page);
        *response.status_mut() = status;
        response
    }
}

/// Percent-encodes a query value.
pub(crate) fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

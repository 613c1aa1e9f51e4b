//! Compose, review, confirm: a push is described on one page, the next page states its reach
//! (from the API's estimate) and a preview, and only the confirmation on that page creates
//! the campaign. A large or everyone audience needs its reach typed in, so no stray click
//! sends to millions; the confirmation carries an idempotency key, so a double click sends
//! once.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Multipart, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::compose_form::ComposeForm;
use super::forward::{Api, Caller};
use super::view::{Nav, PortalError, Session, context, form_session, path_part, render};

/// From this reach on (and for everyone), the reach must be typed to confirm.
const TYPED_CONFIRMATION_FROM: u64 = 100;
/// Largest uploaded list file.
const MAX_LIST_FILE_BYTES: usize = 1 << 20;

#[derive(Template)]
#[template(path = "compose.html")]
struct ComposePage {
    nav: Nav,
    app_id: String,
    form: ComposeForm,
    error: Option<String>,
    audiences: &'static [(&'static str, &'static str)],
    timings: &'static [(&'static str, &'static str)],
}

const AUDIENCES: &[(&str, &str)] = &[
    ("tags", "Devices with tags"),
    ("segment", "A segment"),
    ("topic", "A topic's subscribers"),
    ("list", "A list of devices or users"),
    ("everyone", "Everyone"),
];

const TIMINGS: &[(&str, &str)] = &[
    ("now", "Now"),
    ("at", "At a time"),
    ("local", "At a local time in each device's zone"),
    ("cron", "Recurring"),
];

async fn compose_page(
    api: &Api,
    caller: &Caller,
    app_id: &str,
    form: ComposeForm,
    error: Option<String>,
) -> Result<Response, PortalError> {
    let (_, nav) = sender_context(api, caller, app_id).await?;
    Ok(render(&ComposePage {
        nav,
        app_id: app_id.to_owned(),
        form,
        error,
        audiences: AUDIENCES,
        timings: TIMINGS,
    }))
}

/// The context of a page for sending: a role that cannot send gets the refusal instead.
async fn sender_context(
    api: &Api,
    caller: &Caller,
    app_id: &str,
) -> Result<(Session, Nav), PortalError> {
    let here = format!("/portal/apps/{app_id}/compose");
    let (session, nav) = context(api, caller, Some(app_id), &here).await?;
    refuse_viewer(&session)?;
    Ok((session, nav))
}

/// A page for sending, shown to a role that cannot send: say so rather than offer a form the
/// API would refuse (the API still decides).
fn refuse_viewer(session: &Session) -> Result<(), PortalError> {
    if session.can_send() {
        return Ok(());
    }
    Err(PortalError::Api {
        status: axum::http::StatusCode::FORBIDDEN,
        code: "forbidden".into(),
        message: format!(
            "the {} role cannot send pushes; an admin can give you the marketer role",
            session.role
        ),
    })
}

pub(crate) async fn page(
    State(api): State<Api>,
    caller: Caller,
    Path(app_id): Path<String>,
) -> Result<Response, PortalError> {
    compose_page(&api, &caller, &path_part(&app_id), ComposeForm::new(), None).await
}

#[derive(Template)]
#[template(path = "review.html")]
struct ReviewPage {
    nav: Nav,
    app_id: String,
    form: ComposeForm,
    hidden: Vec<(&'static str, String)>,
    audience: String,
    timing: String,
    throttle: String,
    ttl: String,
    reach: u64,
    reach_text: String,
    typed_confirmation: bool,
    confirm_label: String,
    /// Names this confirmation: the campaign's idempotency key.
    submission: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Estimate {
    reach: u64,
}

/// Renders the review of a valid form, or the compose page with what is wrong.
async fn review_page(
    api: &Api,
    caller: &Caller,
    app_id: &str,
    form: ComposeForm,
    error: Option<String>,
) -> Result<Response, PortalError> {
    let (session, nav) = sender_context(api, caller, app_id).await?;
    let target = match form.target() {
        Ok(target) => target,
        Err(problem) => return compose_page(api, caller, app_id, form, Some(problem)).await,
    };
    if let Err(problem) = form.campaign(ringpush_store::now_ms()) {
        return compose_page(api, caller, app_id, form, Some(problem)).await;
    }
    let path = format!("/v1/apps/{app_id}/audience/estimate");
    let reach = match api
        .post::<Estimate>(caller, &session.csrf_token, &path, &target)
        .await
    {
        Ok(estimate) => estimate.reach,
        Err(error @ PortalError::Api { .. }) => {
            return compose_page(api, caller, app_id, form, Some(error.message())).await;
        }
        Err(other) => return Err(other),
    };
    let typed_confirmation = needs_typed_confirmation(reach, &form);
    let reach_text = thousands(reach);
    let confirm_label = if form.timing == "now" {
        format!("Send to {reach_text} devices")
    } else {
        format!("Schedule for {reach_text} devices (reach now)")
    };
    Ok(render(&ReviewPage {
        nav,
        app_id: app_id.to_owned(),
        hidden: form.fields(),
        audience: form.describe_audience(),
        timing: form.describe_timing(),
        throttle: form.describe_throttle(),
        ttl: form.describe_ttl(),
        form,
        reach,
        reach_text,
        typed_confirmation,
        confirm_label,
        submission: crate::api::random_secret(""),
        error,
    }))
}

/// `POST .../review`: the compose form (multipart, for the uploaded list).
pub(crate) async fn review(
    State(api): State<Api>,
    caller: Caller,
    Path(app_id): Path<String>,
    mut multipart: Multipart,
) -> Result<Response, PortalError> {
    let app_id = path_part(&app_id);
    let mut fields = HashMap::new();
    let mut uploaded = String::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|error| PortalError::BadForm(format!("reading the form: {error}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|error| PortalError::BadForm(format!("reading the form: {error}")))?;
        if name == "list_file" {
            if bytes.len() > MAX_LIST_FILE_BYTES {
                return Err(PortalError::BadForm(format!(
                    "the uploaded list is over {} KiB",
                    MAX_LIST_FILE_BYTES / 1024
                )));
            }
            uploaded = String::from_utf8(bytes.to_vec())
                .map_err(|_| PortalError::BadForm("the uploaded list is not UTF-8 text".into()))?;
        } else {
            fields.insert(name, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    let csrf = fields.get("csrf").map_or("", String::as_str);
    form_session(&api, &caller, "/portal/apps", csrf).await?;
    let mut form = ComposeForm::from_fields(&fields);
    form.add_uploaded_list(&uploaded);
    review_page(&api, &caller, &app_id, form, None).await
}

/// `POST .../edit`: back from the review to the compose page, with every value kept.
pub(crate) async fn edit(
    State(api): State<Api>,
    caller: Caller,
    Path(app_id): Path<String>,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Response, PortalError> {
    let app_id = path_part(&app_id);
    let csrf = fields.get("csrf").map_or("", String::as_str);
    form_session(&api, &caller, "/portal/apps", csrf).await?;
    compose_page(
        &api,
        &caller,
        &app_id,
        ComposeForm::from_fields(&fields),
        None,
    )
    .await
}

#[derive(Debug, Deserialize)]
struct CreatedCampaign {
    id: String,
}

/// `POST .../send`: the confirmation. Creates the campaign through the API.
pub(crate) async fn send(
    State(api): State<Api>,
    caller: Caller,
    Path(app_id): Path<String>,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Response, PortalError> {
    let app_id = path_part(&app_id);
    let field = |name: &str| fields.get(name).map_or("", String::as_str);
    let session = form_session(&api, &caller, "/portal/apps", field("csrf")).await?;
    let form = ComposeForm::from_fields(&fields);
    let reviewed: u64 = field("reviewed_reach").parse().map_err(|_| {
        PortalError::BadForm("the confirmation lost its reach; review again".into())
    })?;
    let typed_needed = needs_typed_confirmation(reviewed, &form);
    let typed: String = field("confirm_reach")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    if typed_needed && typed != reviewed.to_string() {
        let error = format!(
            "nothing was sent: type {reviewed} (the reach) to confirm, or go back to editing"
        );
        return review_page(&api, &caller, &app_id, form, Some(error)).await;
    }
    let campaign = form
        .campaign(ringpush_store::now_ms())
        .map_err(PortalError::BadForm)?;
    // The review's submission id makes the confirmation idempotent: a second click (or a
    // resubmitted form) answers the campaign the first one created.
    let submission = path_part(field("submission"));
    if submission.is_empty() {
        return Err(PortalError::BadForm(
            "the confirmation lost its submission id; review again".into(),
        ));
    }
    let answer = api
        .call_idempotent(
            &caller,
            &session.csrf_token,
            &format!("/v1/apps/{app_id}/campaigns"),
            &campaign,
            &format!("portal-{submission}"),
        )
        .await?;
    let created: CreatedCampaign = answer.into_result()?;
    Ok(Redirect::to(&format!("/portal/apps/{app_id}/campaigns/{}", created.id)).into_response())
}

/// Whether confirming a send of this reach needs the reach typed in: for everyone, and from
/// [`TYPED_CONFIRMATION_FROM`] devices on.
fn needs_typed_confirmation(reach: u64, form: &ComposeForm) -> bool {
    reach >= TYPED_CONFIRMATION_FROM || form.audience == "everyone"
}

/// `12345` as `12,345`.
pub(crate) fn thousands(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}

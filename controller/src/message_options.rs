//! The message options of a send request — collapse key, priority, notification shape —
//! as callers write them, and their validation into the store's `MessageOptions`.

use ringpush_store::{MessageOptions, Notification, Priority};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Longest collapse key, in bytes.
pub const MAX_COLLAPSE_KEY_BYTES: usize = 64;
/// Longest notification title, in bytes.
pub const MAX_TITLE_BYTES: usize = 256;
/// Longest notification body, in bytes.
pub const MAX_BODY_BYTES: usize = 2048;
/// Longest deep link, in bytes.
pub const MAX_DEEP_LINK_BYTES: usize = 2048;
/// Largest badge number.
pub const MAX_BADGE: u32 = 999_999;

/// A notification shape as callers write it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// A URL the app opens on a tap, e.g. `myapp://orders/42` or `https://...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deep_link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub badge: Option<u32>,
}

/// Checks the options of a request; answers them as stored.
pub fn validate_options(
    collapse_key: Option<&str>,
    priority: Option<&str>,
    notification: Option<&NotificationRequest>,
) -> Result<MessageOptions, ApiError> {
    let invalid = |text: String| Err(ApiError::InvalidRequest(text));
    if let Some(key) = collapse_key {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_.:-".contains(c);
        if key.is_empty() || key.len() > MAX_COLLAPSE_KEY_BYTES || !key.chars().all(allowed) {
            return invalid(format!(
                "collapse_key must be 1 to {MAX_COLLAPSE_KEY_BYTES} characters of A-Z a-z 0-9 _ . : -"
            ));
        }
    }
    let notification = notification.map(validate_notification).transpose()?;
    Ok(MessageOptions {
        collapse_key: collapse_key.map(str::to_owned),
        priority: match priority {
            None | Some("normal") => Priority::Normal,
            Some("high") => Priority::High,
            Some(other) => {
                return invalid(format!(
                    "priority must be \"normal\" or \"high\", got {other:?}"
                ));
            }
        },
        notification,
    })
}

fn validate_notification(request: &NotificationRequest) -> Result<Notification, ApiError> {
    let invalid = |text: String| Err(ApiError::InvalidRequest(text));
    if request == &NotificationRequest::default() {
        return invalid(
            "notification must give at least one of title, body, deep_link, badge".into(),
        );
    }
    let limits = [
        ("title", &request.title, MAX_TITLE_BYTES),
        ("body", &request.body, MAX_BODY_BYTES),
        ("deep_link", &request.deep_link, MAX_DEEP_LINK_BYTES),
    ];
    for (name, value, max) in limits {
        if let Some(value) = value
            && (value.is_empty() || value.len() > max)
        {
            return invalid(format!("notification.{name} must be 1 to {max} bytes"));
        }
    }
    if let Some(link) = &request.deep_link
        && !has_scheme(link)
    {
        return invalid(format!(
            "notification.deep_link {link:?} must be a URL with a scheme, e.g. myapp://orders/42"
        ));
    }
    if let Some(badge) = request.badge
        && badge > MAX_BADGE
    {
        return invalid(format!("notification.badge must be 0 to {MAX_BADGE}"));
    }
    Ok(Notification {
        title: request.title.clone(),
        body: request.body.clone(),
        deep_link: request.deep_link.clone(),
        badge: request.badge,
    })
}

/// `scheme:rest`, the scheme as RFC 3986 has it, the rest non-empty and without spaces.
fn has_scheme(link: &str) -> bool {
    let Some((scheme, rest)) = link.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        && !rest.is_empty()
        && !rest.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(result: Result<MessageOptions, ApiError>) -> String {
        match result {
            Err(ApiError::InvalidRequest(text)) => text,
            other => panic!("expected an invalid request, got {other:?}"),
        }
    }

    #[test]
    fn no_options_are_the_default() {
        assert_eq!(
            validate_options(None, None, None).unwrap(),
            MessageOptions::default()
        );
    }

    #[test]
    fn good_options_are_kept() {
        let notification = NotificationRequest {
            title: Some("Order shipped".into()),
            body: Some("It arrives Tuesday".into()),
            deep_link: Some("shop://orders/42".into()),
            badge: Some(0),
        };
        let options =
            validate_options(Some("order-42"), Some("high"), Some(&notification)).unwrap();
        assert_eq!(options.collapse_key.as_deref(), Some("order-42"));
        assert_eq!(options.priority, Priority::High);
        assert_eq!(
            options.notification.unwrap().deep_link.as_deref(),
            Some("shop://orders/42")
        );
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        assert!(error_of(validate_options(Some(""), None, None)).contains("collapse_key"));
        assert!(error_of(validate_options(None, Some("urgent"), None)).contains("priority"));
        assert!(error_of(validate_options(Some("a b"), None, None)).contains("collapse_key"));
        let long = "k".repeat(MAX_COLLAPSE_KEY_BYTES + 1);
        assert!(error_of(validate_options(Some(&long), None, None)).contains("collapse_key"));
        let empty = NotificationRequest::default();
        assert!(error_of(validate_options(None, None, Some(&empty))).contains("at least one"));
        for link in ["orders/42", "://x", "1app://x", "app:", "app://a b"] {
            let bad = NotificationRequest {
                deep_link: Some(link.into()),
                ..Default::default()
            };
            assert!(
                error_of(validate_options(None, None, Some(&bad))).contains("deep_link"),
                "{link}"
            );
        }
        let title = NotificationRequest {
            title: Some("t".repeat(MAX_TITLE_BYTES + 1)),
            ..Default::default()
        };
        assert!(error_of(validate_options(None, None, Some(&title))).contains("title"));
        let badge = NotificationRequest {
            badge: Some(MAX_BADGE + 1),
            ..Default::default()
        };
        assert!(error_of(validate_options(None, None, Some(&badge))).contains("badge"));
    }
}

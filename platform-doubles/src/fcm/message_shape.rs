//! The shape FCM's v1 API accepts for a `Message` sent to a registration token, checked as
//! FCM checks it: unknown fields, non-string map values, reserved data keys, `data` over
//! 4096 bytes, malformed `ttl` and `priority`, and the APNs and Web Push headers the product
//! sets.
//!
//! Does not own: answering (see [`super::send`]), topics and conditions, Android, APNs and
//! Web Push payload rules beyond those headers.

use serde_json::{Map, Value};

/// FCM's limit on a message's `data` (keys and values, in bytes).
pub const MAX_DATA_BYTES: usize = 4096;

/// FCM's longest Android TTL: four weeks.
const MAX_TTL_SECONDS: u64 = 28 * 24 * 3600;

const REQUEST_FIELDS: &[&str] = &["message", "validate_only", "validateOnly"];
const MESSAGE_FIELDS: &[&str] = &[
    "name",
    "token",
    "topic",
    "condition",
    "data",
    "notification",
    "android",
    "apns",
    "webpush",
    "fcm_options",
    "fcmOptions",
];
const NOTIFICATION_FIELDS: &[&str] = &["title", "body", "image"];
const ANDROID_FIELDS: &[&str] = &[
    "collapse_key",
    "collapseKey",
    "priority",
    "ttl",
    "restricted_package_name",
    "restrictedPackageName",
    "data",
    "notification",
    "fcm_options",
    "fcmOptions",
    "direct_boot_ok",
    "directBootOk",
];
const APNS_FIELDS: &[&str] = &[
    "headers",
    "payload",
    "fcm_options",
    "fcmOptions",
    "live_activity_token",
    "liveActivityToken",
];
const WEBPUSH_FIELDS: &[&str] = &[
    "headers",
    "data",
    "notification",
    "fcm_options",
    "fcmOptions",
];

/// A malformed field: answered as a `google.rpc.BadRequest` naming it.
#[derive(Debug)]
pub(super) struct FieldViolation {
    pub(super) field: String,
    pub(super) description: String,
}

impl FieldViolation {
    fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Why a message was refused: a malformed field, or an FCM `INVALID_ARGUMENT`.
#[derive(Debug)]
pub(super) enum Rejection {
    Field(FieldViolation),
    Fcm(String),
}

impl From<FieldViolation> for Rejection {
    fn from(violation: FieldViolation) -> Self {
        Self::Field(violation)
    }
}

/// Checks a send request's body; answers the message's registration token.
pub(super) fn check_request(request: &Value) -> Result<String, Rejection> {
    check_fields(request, "", REQUEST_FIELDS)?;
    let message = check_fields(&request["message"], "message", MESSAGE_FIELDS)?;
    if message.contains_key("topic") || message.contains_key("condition") {
        return Err(Rejection::Fcm(
            "the double sends to registration tokens only".into(),
        ));
    }
    let token = match message.get("token") {
        Some(Value::String(token)) if !token.is_empty() => token.clone(),
        _ => {
            return Err(Rejection::Fcm(
                "The registration token is not a valid FCM registration token".into(),
            ));
        }
    };
    if let Some(data) = message.get("data") {
        let data = check_string_map(data, "message.data")?;
        let reserved = data.keys().find(|key| {
            matches!(key.as_str(), "from" | "message_type")
                || key.starts_with("google")
                || key.starts_with("gcm")
        });
        if let Some(key) = reserved {
            return Err(Rejection::Fcm(format!("Invalid data payload key: {key}")));
        }
        let data_bytes: usize = data
            .iter()
            .map(|(key, value)| key.len() + value.as_str().map_or(0, str::len))
            .sum();
        if data_bytes > MAX_DATA_BYTES {
            return Err(Rejection::Fcm("Android message is too big".into()));
        }
    }
    if let Some(notification) = message.get("notification") {
        check_fields(notification, "message.notification", NOTIFICATION_FIELDS)?;
        check_string_map(notification, "message.notification")?;
    }
    if let Some(android) = message.get("android") {
        check_android(android)?;
    }
    if let Some(apns) = message.get("apns") {
        check_apns(apns)?;
    }
    if let Some(webpush) = message.get("webpush") {
        let webpush = check_fields(webpush, "message.webpush", WEBPUSH_FIELDS)?;
        if let Some(headers) = webpush.get("headers") {
            let headers = check_string_map(headers, "message.webpush.headers")?;
            let urgency = headers.get("Urgency").and_then(Value::as_str);
            if urgency
                .is_some_and(|urgency| !matches!(urgency, "very-low" | "low" | "normal" | "high"))
            {
                return Err(Rejection::Fcm("Invalid Urgency header".into()));
            }
        }
    }
    Ok(token)
}

fn check_android(android: &Value) -> Result<(), Rejection> {
    let android = check_fields(android, "message.android", ANDROID_FIELDS)?;
    if let Some(priority) = android.get("priority")
        && !matches!(priority.as_str(), Some("NORMAL" | "HIGH"))
    {
        return Err(FieldViolation::new(
            "message.android.priority",
            format!(
                "Invalid value at 'message.android.priority' \
                 (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {priority}"
            ),
        )
        .into());
    }
    if let Some(ttl) = android.get("ttl") {
        let seconds = ttl.as_str().and_then(duration_seconds);
        match seconds {
            Some(seconds) if seconds <= MAX_TTL_SECONDS => {}
            Some(_) => return Err(Rejection::Fcm("TTL is longer than four weeks".into())),
            None => {
                return Err(FieldViolation::new(
                    "message.android.ttl",
                    format!(
                        "Invalid value at 'message.android.ttl' \
                         (type.googleapis.com/google.protobuf.Duration), {ttl}"
                    ),
                )
                .into());
            }
        }
    }
    for key in ["collapse_key", "collapseKey", "restricted_package_name"] {
        if android.get(key).is_some_and(|value| !value.is_string()) {
            return Err(FieldViolation::new(
                format!("message.android.{key}"),
                format!("Invalid value at 'message.android.{key}' (TYPE_STRING)"),
            )
            .into());
        }
    }
    if let Some(data) = android.get("data") {
        check_string_map(data, "message.android.data")?;
    }
    Ok(())
}

fn check_apns(apns: &Value) -> Result<(), Rejection> {
    let apns = check_fields(apns, "message.apns", APNS_FIELDS)?;
    if let Some(headers) = apns.get("headers") {
        let headers = check_string_map(headers, "message.apns.headers")?;
        let priority = headers.get("apns-priority").and_then(Value::as_str);
        if priority.is_some_and(|priority| !matches!(priority, "1" | "5" | "10")) {
            return Err(Rejection::Fcm("Invalid apns-priority header".into()));
        }
        let collapse_id = headers.get("apns-collapse-id").and_then(Value::as_str);
        if collapse_id.is_some_and(|collapse_id| collapse_id.len() > 64) {
            return Err(Rejection::Fcm(
                "apns-collapse-id is longer than 64 bytes".into(),
            ));
        }
    }
    if let Some(payload) = apns.get("payload") {
        let payload = payload.as_object().ok_or_else(|| {
            FieldViolation::new("message.apns.payload", "the APNs payload is an object")
        })?;
        if payload.get("aps").is_some_and(|aps| !aps.is_object()) {
            return Err(Rejection::Fcm("aps is not a dictionary".into()));
        }
    }
    Ok(())
}

/// The object at `path`, whose keys must all be `allowed`.
fn check_fields<'a>(
    value: &'a Value,
    path: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, FieldViolation> {
    let object = value.as_object().ok_or_else(|| {
        FieldViolation::new(
            path,
            format!("Invalid value at '{path}': an object expected, got {value}"),
        )
    })?;
    if let Some(unknown) = object.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(FieldViolation::new(
            path,
            format!(
                "Invalid JSON payload received. Unknown name \"{unknown}\" at '{path}': Cannot find field."
            ),
        ));
    }
    Ok(object)
}

/// The object at `path`, whose values must all be strings (a proto `map<string, string>`).
fn check_string_map<'a>(
    value: &'a Value,
    path: &str,
) -> Result<&'a Map<String, Value>, FieldViolation> {
    let object = value.as_object().ok_or_else(|| {
        FieldViolation::new(
            path,
            format!("Invalid value at '{path}': an object expected"),
        )
    })?;
    for (index, entry) in object.values().enumerate() {
        if !entry.is_string() {
            let field = format!("{path}[{index}].value");
            return Err(FieldViolation::new(
                field.clone(),
                format!("Invalid value at '{field}' (TYPE_STRING), {entry}"),
            ));
        }
    }
    Ok(object)
}

/// Whole seconds of a protobuf JSON duration (`"3600s"`, `"1.5s"`), if well formed.
fn duration_seconds(text: &str) -> Option<u64> {
    let number = text.strip_suffix('s')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 {
        return None;
    }
    whole.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(message: Value) -> Value {
        serde_json::json!({ "message": message })
    }

    #[test]
    fn a_well_formed_message_passes() {
        let message = serde_json::json!({
            "token": "device-1",
            "data": {"ringpush": "{}"},
            "notification": {"title": "t", "body": "b"},
            "android": {"ttl": "60s", "collapse_key": "k", "priority": "HIGH"},
            "apns": {"headers": {"apns-priority": "10"}, "payload": {"aps": {"badge": 1}}},
            "webpush": {"headers": {"Urgency": "high", "TTL": "60"}},
        });
        assert_eq!(check_request(&request(message)).expect("valid"), "device-1");
    }

    #[test]
    fn shape_errors_are_refused_with_the_field_named() {
        let refused = |message: Value| match check_request(&request(message)) {
            Err(Rejection::Field(violation)) => violation.field,
            other => panic!("expected a field violation, got {other:?}"),
        };
        assert_eq!(
            refused(serde_json::json!({"token": "t", "data": {"n": 12}})),
            "message.data[0].value"
        );
        assert_eq!(
            refused(serde_json::json!({"token": "t", "android": {"ttl": "60"}})),
            "message.android.ttl"
        );
        assert_eq!(
            refused(serde_json::json!({"token": "t", "android": {"priority": "high"}})),
            "message.android.priority"
        );
        assert_eq!(
            refused(serde_json::json!({"token": "t", "extra": 1})),
            "message"
        );
    }

    #[test]
    fn data_over_4096_bytes_is_refused() {
        let fits = "x".repeat(MAX_DATA_BYTES - "ringpush".len());
        let message = serde_json::json!({"token": "t", "data": {"ringpush": fits}});
        assert!(check_request(&request(message)).is_ok());
        let too_big = "x".repeat(MAX_DATA_BYTES - "ringpush".len() + 1);
        let message = serde_json::json!({"token": "t", "data": {"ringpush": too_big}});
        assert!(matches!(
            check_request(&request(message)),
            Err(Rejection::Fcm(_))
        ));
    }

    #[test]
    fn durations_follow_protobuf_json() {
        assert_eq!(duration_seconds("3600s"), Some(3600));
        assert_eq!(duration_seconds("1.5s"), Some(1));
        assert_eq!(duration_seconds("3600"), None);
        assert_eq!(duration_seconds("-1s"), None);
        assert_eq!(duration_seconds("s"), None);
    }
}

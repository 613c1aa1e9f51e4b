//! What APNs checks in a notification request before it accepts it, and the status and
//! reason it answers when a check fails (Apple's "Handling notification responses from
//! APNs"): the path and device token, the provider token (ES256, verified with RustCrypto's
//! p256), the delivery headers and the payload.
//!
//! Pure functions over a request's head and body; the server in the parent module answers.
//! Does not own the double's state (unregistered tokens, injected failures).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde_json::Value;

/// The largest payload APNs accepts for a regular (non-VoIP) notification.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 4096;

/// Provider tokens older than this are expired.
const TOKEN_LIFETIME_SECONDS: u64 = 3600;

/// How far in the future a token's `iat` may be (clock skew) before the token is invalid.
const ALLOWED_SKEW_SECONDS: u64 = 60;

/// The push types APNs knows.
const PUSH_TYPES: [&str; 11] = [
    "alert",
    "background",
    "location",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
    "pushtotalk",
    "widgets",
    "controls",
];

/// Whose provider tokens are accepted: one team's signing key.
pub(crate) struct Signer {
    pub(crate) team_id: String,
    pub(crate) key_id: String,
    pub(crate) verifying_key: VerifyingKey,
}

/// A failed check: the status and Apple's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) reason: &'static str,
}

const fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// The device token of a `/3/device/{token}` path, if the path has that shape.
pub(crate) fn device_token_of(path: &str) -> Option<&str> {
    path.strip_prefix("/3/device/")
}

/// The decoded header and claims of the request's bearer token, unverified (`Null` when
/// there is none or it does not decode), for the record of what was received.
pub(crate) fn token_parts(headers: &http::HeaderMap) -> (Value, Value) {
    let Some(jwt) = bearer_of(headers) else {
        return (Value::Null, Value::Null);
    };
    let mut parts = jwt.split('.');
    let mut next_json = || parts.next().and_then(decode_json).unwrap_or(Value::Null);
    let header = next_json();
    let claims = next_json();
    (header, claims)
}

fn bearer_of(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn decode_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// Checks one request as APNs does, in the order it answers them.
pub(crate) fn check_request(
    head: &http::request::Parts,
    body: &[u8],
    signer: &Signer,
    now_seconds: u64,
) -> Result<(), Refusal> {
    if head.method != http::Method::POST {
        return Err(refuse(405, "MethodNotAllowed"));
    }
    let device_token = device_token_of(head.uri.path()).ok_or(refuse(404, "BadPath"))?;
    if device_token.is_empty() {
        return Err(refuse(400, "MissingDeviceToken"));
    }
    let headers = &head.headers;
    let apns_headers = [
        "authorization",
        "apns-topic",
        "apns-push-type",
        "apns-priority",
        "apns-expiration",
        "apns-collapse-id",
        "apns-id",
    ];
    if apns_headers
        .iter()
        .any(|name| headers.get_all(*name).iter().count() > 1)
    {
        return Err(refuse(400, "DuplicateHeaders"));
    }
    check_provider_token(headers, signer, now_seconds)?;
    // Bytes as text: a collapse id may be UTF-8 beyond ASCII.
    let header = |name: &str| {
        headers
            .get(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    };
    if header("apns-topic").is_none_or(|topic| topic.is_empty()) {
        return Err(refuse(400, "MissingTopic"));
    }
    let push_type = header("apns-push-type");
    let push_type = push_type.as_deref();
    if push_type.is_some_and(|push_type| !PUSH_TYPES.contains(&push_type)) {
        return Err(refuse(400, "InvalidPushType"));
    }
    let priority = header("apns-priority");
    let priority = priority.as_deref();
    if priority.is_some_and(|priority| !matches!(priority, "10" | "5" | "1")) {
        return Err(refuse(400, "BadPriority"));
    }
    // A background push may not ask to be delivered at once.
    if push_type == Some("background") && priority == Some("10") {
        return Err(refuse(400, "BadPriority"));
    }
    if header("apns-expiration").is_some_and(|value| value.parse::<u64>().is_err()) {
        return Err(refuse(400, "BadExpirationDate"));
    }
    if header("apns-collapse-id").is_some_and(|value| value.is_empty() || value.len() > 64) {
        return Err(refuse(400, "BadCollapseId"));
    }
    if header("apns-id").is_some_and(|value| !is_uuid(&value)) {
        return Err(refuse(400, "BadMessageId"));
    }
    check_payload(body)?;
    if !device_token.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(refuse(400, "BadDeviceToken"));
    }
    Ok(())
}

/// The bearer token: `{alg: ES256, kid}` / `{iss, iat}` signed by the team's key, not older
/// than an hour.
fn check_provider_token(
    headers: &http::HeaderMap,
    signer: &Signer,
    now_seconds: u64,
) -> Result<(), Refusal> {
    const INVALID: Refusal = refuse(403, "InvalidProviderToken");
    if headers.get(http::header::AUTHORIZATION).is_none() {
        return Err(refuse(403, "MissingProviderToken"));
    }
    let jwt = bearer_of(headers).ok_or(INVALID)?;
    let (signed, signature) = jwt.rsplit_once('.').ok_or(INVALID)?;
    let (header, claims) = signed.split_once('.').ok_or(INVALID)?;
    let header = decode_json(header).ok_or(INVALID)?;
    let claims = decode_json(claims).ok_or(INVALID)?;
    if header["alg"] != "ES256" || header["kid"] != signer.key_id.as_str() {
        return Err(INVALID);
    }
    if claims["iss"] != signer.team_id.as_str() {
        return Err(INVALID);
    }
    let issued_at = claims["iat"].as_u64().ok_or(INVALID)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| INVALID)?;
    let signature = Signature::from_slice(&signature).map_err(|_| INVALID)?;
    signer
        .verifying_key
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| INVALID)?;
    if issued_at > now_seconds + ALLOWED_SKEW_SECONDS {
        return Err(INVALID);
    }
    if now_seconds.saturating_sub(issued_at) > TOKEN_LIFETIME_SECONDS {
        return Err(refuse(403, "ExpiredProviderToken"));
    }
    Ok(())
}

/// A JSON object with an `aps` dictionary, at most 4096 bytes.
fn check_payload(body: &[u8]) -> Result<(), Refusal> {
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err(refuse(413, "PayloadTooLarge"));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(refuse(400, "PayloadEmpty"));
    }
    let payload: Value = serde_json::from_slice(body).map_err(|_| refuse(400, "BadPayload"))?;
    if !payload["aps"].is_object() {
        return Err(refuse(400, "BadPayload"));
    }
    Ok(())
}

/// `8-4-4-4-12` hexadecimal digits, as APNs wants an `apns-id`.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(group, len)| {
            group.len() == len && group.bytes().all(|byte| byte.is_ascii_hexdigit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;

    const NOW: u64 = 1_700_000_000;

    fn signing_key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).expect("a valid scalar")
    }

    fn signer() -> Signer {
        Signer {
            team_id: "TEAM123456".into(),
            key_id: "KEY1234567".into(),
            verifying_key: *signing_key().verifying_key(),
        }
    }

    fn jwt(key: &SigningKey, kid: &str, iss: &str, iat: u64) -> String {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#));
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"iss":"{iss}","iat":{iat}}}"#));
        let signed = format!("{header}.{claims}");
        let signature: Signature = key.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    fn request(jwt: &str, extra: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::post("https://127.0.0.1/3/device/abcdef01")
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-topic", "com.example.app");
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("a request").into_parts().0
    }

    fn check(head: &http::request::Parts, body: &str) -> Result<(), &'static str> {
        check_request(head, body.as_bytes(), &signer(), NOW).map_err(|refusal| refusal.reason)
    }

    const BODY: &str = r#"{"aps":{"alert":{"body":"hi"}}}"#;

    #[test]
    fn a_well_formed_request_passes() {
        let token = jwt(&signing_key(), "KEY1234567", "TEAM123456", NOW - 10);
        let head = request(
            &token,
            &[("apns-push-type", "alert"), ("apns-priority", "10")],
        );
        assert_eq!(check(&head, BODY), Ok(()));
        let (header, claims) = token_parts(&head.headers);
        assert_eq!(header["kid"], "KEY1234567");
        assert_eq!(claims["iss"], "TEAM123456");
    }

    #[test]
    fn provider_tokens_are_verified() {
        let key = signing_key();
        let other_key = SigningKey::from_slice(&[9u8; 32]).expect("a valid scalar");
        let cases = [
            (
                jwt(&other_key, "KEY1234567", "TEAM123456", NOW),
                "InvalidProviderToken",
            ),
            (
                jwt(&key, "OTHERKEY00", "TEAM123456", NOW),
                "InvalidProviderToken",
            ),
            (
                jwt(&key, "KEY1234567", "OTHERTEAM0", NOW),
                "InvalidProviderToken",
            ),
            (
                jwt(&key, "KEY1234567", "TEAM123456", NOW + 3600),
                "InvalidProviderToken",
            ),
            (
                jwt(&key, "KEY1234567", "TEAM123456", NOW - 3601),
                "ExpiredProviderToken",
            ),
            ("not.a.jwt".to_owned(), "InvalidProviderToken"),
        ];
        for (token, reason) in cases {
            assert_eq!(check(&request(&token, &[]), BODY), Err(reason), "{token}");
        }
        let mut head = request("x", &[]);
        head.headers.remove("authorization");
        assert_eq!(check(&head, BODY), Err("MissingProviderToken"));
    }

    #[test]
    fn headers_and_payloads_are_checked() {
        let token = jwt(&signing_key(), "KEY1234567", "TEAM123456", NOW);
        let refused = |extra: &[(&str, &str)], body: &str| check(&request(&token, extra), body);
        assert_eq!(refused(&[("apns-priority", "7")], BODY), Err("BadPriority"));
        assert_eq!(
            refused(
                &[("apns-push-type", "background"), ("apns-priority", "10")],
                BODY
            ),
            Err("BadPriority")
        );
        assert_eq!(
            refused(&[("apns-push-type", "nope")], BODY),
            Err("InvalidPushType")
        );
        assert_eq!(
            refused(&[("apns-expiration", "soon")], BODY),
            Err("BadExpirationDate")
        );
        let long = "c".repeat(65);
        assert_eq!(
            refused(&[("apns-collapse-id", &long)], BODY),
            Err("BadCollapseId")
        );
        assert_eq!(refused(&[("apns-id", "123")], BODY), Err("BadMessageId"));
        assert_eq!(refused(&[], ""), Err("PayloadEmpty"));
        assert_eq!(refused(&[], "{\"alert\":1}"), Err("BadPayload"));
        assert_eq!(refused(&[], "not json"), Err("BadPayload"));
        let large = format!(r#"{{"aps":{{}},"x":"{}"}}"#, "x".repeat(4096));
        assert_eq!(refused(&[], &large), Err("PayloadTooLarge"));

        let mut head = request(&token, &[]);
        head.headers.remove("apns-topic");
        assert_eq!(check(&head, BODY), Err("MissingTopic"));
        let mut head = request(&token, &[]);
        head.uri = "https://127.0.0.1/3/device/xyz".parse().expect("a URI");
        assert_eq!(check(&head, BODY), Err("BadDeviceToken"));
        head.uri = "https://127.0.0.1/2/device/ab".parse().expect("a URI");
        assert_eq!(check(&head, BODY), Err("BadPath"));
    }

    #[test]
    fn message_ids_are_uuids() {
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
    }
}

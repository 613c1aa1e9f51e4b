//! Google's OAuth 2 token endpoint for service accounts: the JWT bearer grant (RFC 7523) as
//! Google's "Using OAuth 2.0 for Server to Server Applications" describes it.
//!
//! A request is `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`;
//! the JWT is RS256-signed by the service account's key with claims `iss` (the account's
//! e-mail), `scope`, `aud` (this endpoint's URL), `iat` and `exp` (at most an hour later).
//! A good grant answers `{"access_token", "expires_in", "token_type": "Bearer"}`; a bad one
//! answers 400 with `{"error", "error_description"}`, as Google does.
//!
//! Does not own: key ids (`kid` is not looked up: the double knows one key), `sub`
//! (domain-wide delegation), refresh tokens, or any grant other than the JWT bearer grant.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1v15::Signature;
use rsa::signature::Verifier;

use super::Shared;

/// The grant type of a service account's token request.
pub const JWT_BEARER_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The scope an FCM sender asks for.
pub const FIREBASE_MESSAGING_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// Google grants assertions valid for at most an hour.
const MAX_ASSERTION_LIFETIME_SECONDS: u64 = 3600;

/// How far ahead of the double's clock an assertion's `iat` may be.
const ALLOWED_CLOCK_SKEW_SECONDS: u64 = 300;

/// Why a grant was refused: Google's `error` and `error_description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRefusal {
    pub error: &'static str,
    pub description: String,
}

impl GrantRefusal {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }
}

/// `POST /token`.
pub(super) async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let (injected_status, delay) = {
        let mut records = shared.records();
        records.token_requests += 1;
        let injected_status = match &mut records.token_failures {
            Some((status, remaining)) if *remaining > 0 => {
                *remaining -= 1;
                Some(*status)
            }
            _ => None,
        };
        (injected_status, records.token_answer_delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = injected_status {
        let error = if status >= 500 {
            "internal_failure"
        } else {
            "invalid_grant"
        };
        return refusal_response(status, &GrantRefusal::new(error, "injected by the test"));
    }
    let Ok(Form(form)) = form else {
        return refusal_response(
            400,
            &GrantRefusal::new("invalid_request", "the body is not a form"),
        );
    };
    match check_grant(&shared, &form, unix_seconds()) {
        Ok(()) => issue_access_token(&shared),
        Err(refusal) => refusal_response(400, &refusal),
    }
}

fn issue_access_token(shared: &Shared) -> Response {
    let mut records = shared.records();
    records.issued_count += 1;
    let lifetime = records.access_token_lifetime;
    // Google's access tokens start with `ya29.`; only this double has to recognise them.
    let access_token = format!("ya29.double-{}", records.issued_count);
    records
        .access_tokens
        .insert(access_token.clone(), Instant::now() + lifetime);
    Json(serde_json::json!({
        "access_token": access_token,
        "expires_in": lifetime.as_secs(),
        "token_type": "Bearer",
    }))
    .into_response()
}

fn refusal_response(status: u16, refusal: &GrantRefusal) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = serde_json::json!({
        "error": refusal.error,
        "error_description": refusal.description,
    });
    (status, Json(body)).into_response()
}

/// Checks a token request's form and its assertion, at `now` (Unix seconds).
fn check_grant(
    shared: &Shared,
    form: &HashMap<String, String>,
    now: u64,
) -> Result<(), GrantRefusal> {
    let grant_type = form.get("grant_type").map(String::as_str);
    if grant_type != Some(JWT_BEARER_GRANT_TYPE) {
        return Err(GrantRefusal::new(
            "unsupported_grant_type",
            format!("Invalid grant_type: {}", grant_type.unwrap_or("")),
        ));
    }
    let Some(assertion) = form.get("assertion") else {
        return Err(GrantRefusal::new(
            "invalid_request",
            "Missing required parameter: assertion",
        ));
    };
    check_assertion(shared, assertion, now)
}

fn check_assertion(shared: &Shared, assertion: &str, now: u64) -> Result<(), GrantRefusal> {
    let invalid_jwt = || GrantRefusal::new("invalid_grant", "Invalid JWT: not a signed JWT");
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(invalid_jwt());
    };
    let header = decode_json_part(header).ok_or_else(invalid_jwt)?;
    let claims = decode_json_part(claims).ok_or_else(invalid_jwt)?;
    if header["alg"] != "RS256" {
        return Err(GrantRefusal::new(
            "invalid_grant",
            "Invalid JWT: the algorithm must be RS256",
        ));
    }
    // Google finds the account by the issuer first, then checks the signature with its keys.
    if claims["iss"] != shared.client_email.as_str() {
        return Err(GrantRefusal::new(
            "invalid_grant",
            "Invalid grant: account not found",
        ));
    }
    let signing_input_length = assertion.len() - signature.len() - 1;
    let signing_input = &assertion.as_bytes()[..signing_input_length];
    let signature_valid = URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok())
        .is_some_and(|signature| {
            shared
                .verifying_key
                .verify(signing_input, &signature)
                .is_ok()
        });
    if !signature_valid {
        return Err(GrantRefusal::new("invalid_grant", "Invalid JWT Signature."));
    }
    if claims["aud"] != shared.token_url.as_str() {
        return Err(GrantRefusal::new(
            "invalid_grant",
            format!(
                "Invalid JWT: Failed audience check. The expected audience is {}.",
                shared.token_url
            ),
        ));
    }
    let (Some(issued_at), Some(expires_at)) = (claims["iat"].as_u64(), claims["exp"].as_u64())
    else {
        return Err(GrantRefusal::new(
            "invalid_grant",
            "Invalid JWT: iat and exp must be numbers of seconds",
        ));
    };
    let lifetime_ok = expires_at > issued_at
        && expires_at - issued_at <= MAX_ASSERTION_LIFETIME_SECONDS
        && issued_at <= now + ALLOWED_CLOCK_SKEW_SECONDS
        && expires_at > now;
    if !lifetime_ok {
        return Err(GrantRefusal::new(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim.",
        ));
    }
    let scopes = claims["scope"].as_str().unwrap_or("");
    if !scopes
        .split_whitespace()
        .any(|scope| scope == FIREBASE_MESSAGING_SCOPE)
    {
        return Err(GrantRefusal::new(
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        ));
    }
    Ok(())
}

fn decode_json_part(part: &str) -> Option<serde_json::Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use rsa::RsaPrivateKey;
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::sha2::Sha256;
    use rsa::signature::{SignatureEncoding, Signer};

    use super::*;
    use crate::fcm::Shared;
    use crate::fcm::service_account::{TEST_KEY_PEM, UNTRUSTED_KEY_PEM};

    const TOKEN_URL: &str = "http://127.0.0.1:1/token";
    const NOW: u64 = 1_800_000_000;

    fn shared() -> Shared {
        Shared::new(
            "p",
            "sender@p.iam.gserviceaccount.com",
            crate::fcm::test_public_key(),
            TOKEN_URL.into(),
        )
    }

    fn assertion(key_pem: &str, claims: serde_json::Value) -> String {
        let key = RsaPrivateKey::from_pkcs8_pem(key_pem).expect("fixture key");
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{claims}");
        let signature = SigningKey::<Sha256>::new(key).sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    fn good_claims() -> serde_json::Value {
        serde_json::json!({
            "iss": "sender@p.iam.gserviceaccount.com",
            "scope": FIREBASE_MESSAGING_SCOPE,
            "aud": TOKEN_URL,
            "iat": NOW,
            "exp": NOW + 3600,
        })
    }

    #[test]
    fn a_good_assertion_passes_and_each_bad_claim_is_named() {
        let shared = shared();
        assert_eq!(
            check_assertion(&shared, &assertion(TEST_KEY_PEM, good_claims()), NOW),
            Ok(())
        );
        let refused = |claims: serde_json::Value, key: &str| {
            check_assertion(&shared, &assertion(key, claims), NOW)
                .expect_err("refused")
                .description
        };
        assert_eq!(
            refused(good_claims(), UNTRUSTED_KEY_PEM),
            "Invalid JWT Signature."
        );
        let mut claims = good_claims();
        claims["aud"] = "https://oauth2.googleapis.com/token".into();
        assert!(refused(claims, TEST_KEY_PEM).contains("audience"));
        let mut claims = good_claims();
        claims["exp"] = (NOW + 3601).into();
        assert!(refused(claims, TEST_KEY_PEM).contains("short-lived"));
        let mut claims = good_claims();
        claims["scope"] = "https://www.googleapis.com/auth/userinfo.email".into();
        assert!(refused(claims, TEST_KEY_PEM).contains("scope"));
        let mut claims = good_claims();
        claims["iss"] = "someone@else.iam.gserviceaccount.com".into();
        assert!(refused(claims, TEST_KEY_PEM).contains("account not found"));
    }

    #[test]
    fn a_tampered_assertion_is_refused() {
        let shared = shared();
        let good = assertion(TEST_KEY_PEM, good_claims());
        let mut claims = good_claims();
        claims["exp"] = (NOW + 60).into();
        let other_claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let parts: Vec<&str> = good.split('.').collect();
        let tampered = format!("{}.{other_claims}.{}", parts[0], parts[2]);
        let refusal = check_assertion(&shared, &tampered, NOW).expect_err("refused");
        assert_eq!(refusal.description, "Invalid JWT Signature.");
    }
}

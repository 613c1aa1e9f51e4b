//! The push service's side of VAPID (RFC 8292): checking `Authorization: vapid t=…, k=…`
//! against the application server key a subscription is bound to, on RustCrypto (p256);
//! and making VAPID key pairs for tests.
//!
//! Does not own: signing tokens (the product does, on ring).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;

/// RFC 8292 section 2: a token must not expire more than 24 hours after the request.
const MAX_TOKEN_LIFETIME_SECONDS: u64 = 24 * 60 * 60;

/// A VAPID key pair as an app configures it (`VapidCredentials`): base64url without padding.
#[derive(Debug, Clone)]
pub struct VapidKeyPair {
    /// The private scalar (32 bytes).
    pub private_key: String,
    /// The uncompressed public point (65 bytes): the `applicationServerKey` browsers get.
    pub public_key: String,
}

/// A new random VAPID key pair.
pub fn vapid_key_pair() -> VapidKeyPair {
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    VapidKeyPair {
        private_key: URL_SAFE_NO_PAD.encode(secret.to_bytes()),
        public_key: URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes()),
    }
}

/// Why a request's VAPID authorization was refused, with the status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VapidRefusal {
    /// No `vapid` authorization at all (401).
    #[error("missing vapid authorization")]
    Missing,
    /// Present but not acceptable (403): RFC 8292 section 4.2.
    #[error("{0}")]
    Invalid(&'static str),
}

impl VapidRefusal {
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::Missing => 401,
            Self::Invalid(_) => 403,
        }
    }
}

/// Checks an `Authorization` header value: the `vapid` scheme with `t` and `k`, `k` equal
/// to `application_server_key`, the token an ES256 JWT signed with `k` whose `aud` is
/// `origin`, whose `exp` is in the future and at most 24 hours away and which has a `sub`.
pub(crate) fn check_authorization(
    authorization: Option<&str>,
    application_server_key: &[u8],
    origin: &str,
    now_seconds: u64,
) -> Result<(), VapidRefusal> {
    let authorization = authorization.ok_or(VapidRefusal::Missing)?.trim();
    let (scheme, parameters) = authorization.split_once(' ').ok_or(VapidRefusal::Missing)?;
    if !scheme.eq_ignore_ascii_case("vapid") {
        return Err(VapidRefusal::Missing);
    }
    let mut token = None;
    let mut key = None;
    for parameter in parameters.split(',') {
        match parameter.trim().split_once('=') {
            Some(("t", value)) => token = Some(value.trim()),
            Some(("k", value)) => key = Some(value.trim()),
            _ => {}
        }
    }
    let (Some(token), Some(key)) = (token, key) else {
        return Err(VapidRefusal::Invalid("vapid needs both t and k"));
    };
    let key = URL_SAFE_NO_PAD
        .decode(key.trim_end_matches('='))
        .map_err(|_| VapidRefusal::Invalid("k is not base64url"))?;
    if key != application_server_key {
        return Err(VapidRefusal::Invalid(
            "k is not the key the subscription was made with",
        ));
    }
    let claims = verify_es256(token, &key)?;
    if claims["aud"].as_str() != Some(origin) {
        return Err(VapidRefusal::Invalid(
            "aud is not this push service's origin",
        ));
    }
    let expiry = claims["exp"]
        .as_u64()
        .ok_or(VapidRefusal::Invalid("exp is missing"))?;
    if expiry <= now_seconds {
        return Err(VapidRefusal::Invalid("the token has expired"));
    }
    if expiry > now_seconds + MAX_TOKEN_LIFETIME_SECONDS {
        return Err(VapidRefusal::Invalid("exp is more than 24 hours away"));
    }
    let subject = claims["sub"].as_str().unwrap_or_default();
    if !subject.starts_with("mailto:") && !subject.starts_with("https:") {
        return Err(VapidRefusal::Invalid(
            "sub is not a mailto: or https: contact",
        ));
    }
    Ok(())
}

/// The claims of `token` when it is an ES256 JWT signed by `public_key`.
fn verify_es256(token: &str, public_key: &[u8]) -> Result<serde_json::Value, VapidRefusal> {
    let invalid = VapidRefusal::Invalid;
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("t is not a JWT"));
    };
    let decode_json = |part: &str| -> Result<serde_json::Value, VapidRefusal> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| invalid("a JWT part is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| invalid("a JWT part is not JSON"))
    };
    if decode_json(header)?["alg"] != "ES256" {
        return Err(invalid("the JWT is not ES256"));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .ok_or(invalid("the JWT's signature is not 64 bytes of r and s"))?;
    let verifying_key =
        VerifyingKey::from_sec1_bytes(public_key).map_err(|_| invalid("k is not a P-256 key"))?;
    verifying_key
        .verify(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| invalid("the JWT's signature does not verify with k"))?;
    decode_json(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;

    const ORIGIN: &str = "http://127.0.0.1:9";
    const NOW: u64 = 1_700_000_000;

    fn signed(key: &SigningKey, claims: serde_json::Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{claims}");
        let signature: Signature = key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    fn key_pair() -> (SigningKey, Vec<u8>, String) {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let public = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let encoded = URL_SAFE_NO_PAD.encode(&public);
        (key, public, encoded)
    }

    fn claims(exp: u64) -> serde_json::Value {
        serde_json::json!({"aud": ORIGIN, "exp": exp, "sub": "mailto:ops@example.com"})
    }

    #[test]
    fn a_good_token_passes_and_each_fault_is_refused() {
        let (key, public, k) = key_pair();
        let check = |header: &str| check_authorization(Some(header), &public, ORIGIN, NOW);
        let good = format!("vapid t={}, k={k}", signed(&key, claims(NOW + 3600)));
        assert_eq!(check(&good), Ok(()));

        assert_eq!(
            check_authorization(None, &public, ORIGIN, NOW),
            Err(VapidRefusal::Missing)
        );
        assert_eq!(check("Bearer abc").map_err(|e| e.status()), Err(401));
        let expired = format!("vapid t={}, k={k}", signed(&key, claims(NOW - 1)));
        assert_eq!(check(&expired).map_err(|e| e.status()), Err(403));
        let too_long = format!("vapid t={}, k={k}", signed(&key, claims(NOW + 90_000)));
        assert_eq!(check(&too_long).map_err(|e| e.status()), Err(403));
        let wrong_audience =
            serde_json::json!({"aud": "https://x", "exp": NOW + 60, "sub": "mailto:a@b"});
        let wrong_audience = format!("vapid t={}, k={k}", signed(&key, wrong_audience));
        assert_eq!(check(&wrong_audience).map_err(|e| e.status()), Err(403));
        let (other_key, _, other_k) = key_pair();
        let signed_by_other = format!("vapid t={}, k={k}", signed(&other_key, claims(NOW + 60)));
        assert_eq!(check(&signed_by_other).map_err(|e| e.status()), Err(403));
        let other_server = format!(
            "vapid t={}, k={other_k}",
            signed(&other_key, claims(NOW + 60))
        );
        assert_eq!(check(&other_server).map_err(|e| e.status()), Err(403));
    }

    #[test]
    fn made_key_pairs_are_p256_key_pairs() {
        let pair = vapid_key_pair();
        let private = URL_SAFE_NO_PAD
            .decode(&pair.private_key)
            .expect("base64url");
        let public = URL_SAFE_NO_PAD.decode(&pair.public_key).expect("base64url");
        let secret = p256::SecretKey::from_slice(&private).expect("a scalar");
        assert_eq!(
            secret.public_key().to_encoded_point(false).as_bytes(),
            &public[..]
        );
    }
}

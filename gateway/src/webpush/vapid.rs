//! VAPID (RFC 8292): the `Authorization: vapid t=<JWT>, k=<public key>` header that
//! identifies the application server to a push service, and the cache of its tokens.
//!
//! A token is an ES256 JWT with `aud` the push service's origin, `exp` 12 hours ahead and
//! `sub` the app's contact; it is signed once per (origin, key, subject) and reused for
//! [`TOKEN_REUSE`], half its lifetime, so a token in use always has hours left.
//!
//! Does not own: the key pair's validation (`credentials`), the JWT encoding (`jwt`).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::KeyPair;

use crate::{GatewayError, VapidCredentials, jwt};

/// How long a signed token is valid (its `exp`); RFC 8292 allows at most 24 hours.
const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// How long a signed token is reused before a new one is signed.
pub(crate) const TOKEN_REUSE: Duration = Duration::from_secs(6 * 60 * 60);
/// Tokens kept at most: push services are few, but endpoints are the browsers' word, so a
/// flood of made-up origins must not grow the cache without bound.
const MAX_CACHED_TOKENS: usize = 1024;

/// Which cached header a request may use. The private key's digest is part of it: the
/// public key is public, so credentials that name another app's public key without its private
/// key must not borrow the header that key signed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    origin: String,
    public_key: String,
    private_key_sha256: [u8; 32],
    subject: String,
}

struct CachedHeader {
    authorization: String,
    signed_at: Instant,
}

/// `Authorization` header values, signed on demand and reused while fresh.
#[derive(Default)]
pub(crate) struct VapidAuthorizations {
    /// Held only for a lookup or an insert, never across signing or an `.await`.
    cache: Mutex<HashMap<TokenKey, CachedHeader>>,
}

impl VapidAuthorizations {
    /// The header value for a request to a push service at `origin`
    /// (`scheme://host[:port]`) with `credentials`.
    pub(crate) fn authorization(
        &self,
        credentials: &VapidCredentials,
        origin: &str,
    ) -> Result<String, GatewayError> {
        let digest =
            ring::digest::digest(&ring::digest::SHA256, credentials.private_key.as_bytes());
        let mut private_key_sha256 = [0; 32];
        private_key_sha256.copy_from_slice(digest.as_ref());
        let key = TokenKey {
            origin: origin.to_owned(),
            public_key: credentials.public_key.clone(),
            private_key_sha256,
            subject: credentials.subject.clone(),
        };
        if let Some(cached) = self.lock().get(&key)
            && cached.signed_at.elapsed() < TOKEN_REUSE
        {
            return Ok(cached.authorization.clone());
        }
        let authorization = sign(credentials, origin)?;
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED_TOKENS {
            cache.retain(|_, cached| cached.signed_at.elapsed() < TOKEN_REUSE);
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.clear();
            }
        }
        cache.insert(
            key,
            CachedHeader {
                authorization: authorization.clone(),
                signed_at: Instant::now(),
            },
        );
        Ok(authorization)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, CachedHeader>> {
        // The map is consistent after any panic (one insert at a time).
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new header value: `vapid t=<JWT>, k=<the public key, base64url without padding>`.
fn sign(credentials: &VapidCredentials, origin: &str) -> Result<String, GatewayError> {
    let key_pair = credentials.key_pair()?;
    let claims = serde_json::json!({
        "aud": origin,
        "exp": jwt::unix_seconds() + TOKEN_LIFETIME.as_secs(),
        "sub": credentials.subject,
    });
    let token = jwt::sign_es256(&key_pair, serde_json::json!({}), &claims);
    let public_key = URL_SAFE_NO_PAD.encode(key_pair.public_key().as_ref());
    Ok(format!("vapid t={token}, k={public_key}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    /// A P-256 key pair published in RFC 8291 section 5 (the sender's), reused as a VAPID
    /// key: ring cannot export a scalar it generated.
    fn credentials() -> VapidCredentials {
        VapidCredentials {
            subject: "mailto:ops@example.com".into(),
            private_key: "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw".into(),
            public_key: "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8".into(),
        }
    }

    fn claims_of(authorization: &str, public_key: &str) -> serde_json::Value {
        let rest = authorization
            .strip_prefix("vapid t=")
            .expect("vapid scheme");
        let (token, k) = rest.split_once(", k=").expect("t and k");
        assert_eq!(k, public_key);
        let (input, signature) = token.rsplit_once('.').expect("three parts");
        let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
        let k = URL_SAFE_NO_PAD.decode(k).expect("base64url");
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, k)
            .verify(input.as_bytes(), &signature)
            .expect("signed with the VAPID key");
        let claims = input.split('.').nth(1).expect("claims");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).expect("base64url")).expect("JSON")
    }

    #[test]
    fn the_header_carries_a_signed_token_for_the_origin_and_is_reused() {
        let credentials = credentials();
        let authorizations = VapidAuthorizations::default();
        let first = authorizations
            .authorization(&credentials, "https://push.example:8443")
            .expect("signs");
        let claims = claims_of(&first, &credentials.public_key);
        assert_eq!(claims["aud"], "https://push.example:8443");
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        let exp = claims["exp"].as_u64().expect("a number");
        let now = jwt::unix_seconds();
        assert!(
            exp > now + 11 * 3600 && exp <= now + 12 * 3600,
            "{exp} vs {now}"
        );

        let again = authorizations
            .authorization(&credentials, "https://push.example:8443")
            .expect("signs");
        assert_eq!(again, first, "reused while fresh");
        let other = authorizations
            .authorization(&credentials, "https://other.example")
            .expect("signs");
        assert_eq!(
            claims_of(&other, &credentials.public_key)["aud"],
            "https://other.example"
        );
    }

    #[test]
    fn another_private_key_does_not_borrow_a_cached_header() {
        let credentials = credentials();
        let authorizations = VapidAuthorizations::default();
        authorizations
            .authorization(&credentials, "https://push.example")
            .expect("signs");
        let borrower = VapidCredentials {
            private_key: "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94".into(),
            ..credentials
        };
        let error = authorizations
            .authorization(&borrower, "https://push.example")
            .expect_err("not the key pair the cached header was signed with");
        assert!(error.to_string().starts_with("webpush keys"), "{error}");
    }

    #[test]
    fn a_bad_key_pair_is_an_error_not_a_header() {
        let mut credentials = credentials();
        credentials.private_key = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94".into();
        let error = VapidAuthorizations::default()
            .authorization(&credentials, "https://push.example")
            .expect_err("not one key pair");
        assert!(error.to_string().starts_with("webpush keys"), "{error}");
    }
}

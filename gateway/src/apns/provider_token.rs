//! APNs provider tokens: the ES256 JWTs (`{alg, kid}` / `{iss, iat}`) that authenticate every
//! request, signed from the app's `.p8` key and reused until they are due for renewal.
//!
//! Apple refuses a token older than an hour and answers `TooManyProviderTokenUpdates` when a
//! team renews more often than every 20 minutes, so one token per team and key is shared by
//! every send and re-signed once older than `GatewayConfig::apns_token_refresh`, or at once
//! when APNs calls it expired. Does not own the key's storage or the credentials' checks
//! (`credentials`), nor the requests that carry the token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ring::digest::{SHA256, digest};

use crate::{ApnsCredentials, GatewayError, jwt};

/// Signed provider tokens, one per (team id, key id).
pub(crate) struct ProviderTokens {
    /// How long a token is used before a new one is signed.
    refresh_after: Duration,
    /// The current token of each team and key. Signing happens under this lock (a few
    /// microseconds of CPU, no await) so that concurrent sends at renewal time sign one token,
    /// not one each, which Apple would count as too many updates.
    current: Mutex<HashMap<TokenKey, SignedToken>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    team_id: String,
    key_id: String,
}

struct SignedToken {
    /// The JWT, as it goes after `bearer `.
    jwt: Arc<str>,
    signed_at: Instant,
    /// A digest of the private key it was signed with: credentials updated in place with a
    /// new key (same ids) get a new token at once.
    key_digest: Vec<u8>,
}

impl ProviderTokens {
    pub(crate) fn new(refresh_after: Duration) -> Self {
        Self {
            refresh_after,
            current: Mutex::new(HashMap::new()),
        }
    }

    /// The token to send with `credentials`, signing a new one when there is none yet, the
    /// current one is due for renewal, or it was signed with another key.
    pub(crate) fn current(&self, credentials: &ApnsCredentials) -> Result<Arc<str>, GatewayError> {
        let key = TokenKey {
            team_id: credentials.team_id.clone(),
            key_id: credentials.key_id.clone(),
        };
        let key_digest = digest(&SHA256, credentials.private_key.as_bytes())
            .as_ref()
            .to_vec();
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(token) = current.get(&key)
            && token.key_digest == key_digest
            && token.signed_at.elapsed() < self.refresh_after
        {
            return Ok(Arc::clone(&token.jwt));
        }
        let jwt: Arc<str> = sign(credentials)?.into();
        tracing::debug!(
            team_id = %credentials.team_id,
            key_id = %credentials.key_id,
            "signed a new APNs provider token"
        );
        current.insert(
            key,
            SignedToken {
                jwt: Arc::clone(&jwt),
                signed_at: Instant::now(),
                key_digest,
            },
        );
        Ok(jwt)
    }

    /// Forgets `stale` (APNs answered `ExpiredProviderToken`), so the next [`Self::current`]
    /// signs a new one. A token another send already replaced is left alone.
    pub(crate) fn discard(&self, credentials: &ApnsCredentials, stale: &str) {
        let key = TokenKey {
            team_id: credentials.team_id.clone(),
            key_id: credentials.key_id.clone(),
        };
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.get(&key).is_some_and(|token| &*token.jwt == stale) {
            current.remove(&key);
        }
    }
}

/// A provider token issued now: header `{alg: ES256, kid}`, claims `{iss: team id, iat}`.
fn sign(credentials: &ApnsCredentials) -> Result<String, GatewayError> {
    let key = jwt::ec_key_from_pem("apns.private_key", &credentials.private_key)?;
    Ok(jwt::sign_es256(
        &key,
        serde_json::json!({"kid": credentials.key_id}),
        &serde_json::json!({"iss": credentials.team_id, "iat": jwt::unix_seconds()}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> ApnsCredentials {
        ApnsCredentials {
            team_id: "TEAM123456".into(),
            key_id: "KEY1234567".into(),
            private_key: rcgen::KeyPair::generate().expect("key").serialize_pem(),
            topic: "com.example.app".into(),
        }
    }

    #[test]
    fn a_token_is_reused_until_due_then_re_signed() {
        let credentials = credentials();
        let tokens = ProviderTokens::new(Duration::from_secs(3600));
        let first = tokens.current(&credentials).expect("signed");
        assert_eq!(tokens.current(&credentials).expect("cached"), first);

        let always_due = ProviderTokens::new(Duration::ZERO);
        let one = always_due.current(&credentials).expect("signed");
        let two = always_due.current(&credentials).expect("signed");
        assert_ne!(
            one, two,
            "ECDSA signatures are randomized, so tokens differ"
        );
    }

    #[test]
    fn a_discarded_token_is_re_signed_but_a_newer_one_is_kept() {
        let credentials = credentials();
        let tokens = ProviderTokens::new(Duration::from_secs(3600));
        let first = tokens.current(&credentials).expect("signed");
        tokens.discard(&credentials, &first);
        let second = tokens.current(&credentials).expect("signed");
        assert_ne!(first, second);
        tokens.discard(&credentials, &first);
        assert_eq!(tokens.current(&credentials).expect("cached"), second);
    }

    #[test]
    fn a_new_key_under_the_same_ids_gets_a_new_token() {
        let mut credentials = credentials();
        let tokens = ProviderTokens::new(Duration::from_secs(3600));
        let first = tokens.current(&credentials).expect("signed");
        credentials.private_key = rcgen::KeyPair::generate().expect("key").serialize_pem();
        assert_ne!(tokens.current(&credentials).expect("signed"), first);
    }

    #[test]
    fn the_token_carries_kid_iss_and_iat() {
        use base64::Engine;
        let credentials = credentials();
        let token = sign(&credentials).expect("signed");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |part: &str| -> serde_json::Value {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .expect("base64url");
            serde_json::from_slice(&bytes).expect("JSON")
        };
        assert_eq!(decode(parts[0])["kid"], "KEY1234567");
        assert_eq!(decode(parts[0])["alg"], "ES256");
        assert_eq!(decode(parts[1])["iss"], "TEAM123456");
        assert!(decode(parts[1])["iat"].as_u64().expect("a number") > 1_600_000_000);
    }
}

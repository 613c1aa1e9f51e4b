//! OAuth 2 access tokens for FCM, granted for a service account's key by Google's JWT
//! bearer grant ("Using OAuth 2.0 for Server to Server Applications"), and cached until a
//! minute before they expire.
//!
//! A grant request is a form `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&
//! assertion=<JWT>` posted to the token URL; the JWT is RS256-signed with the account's key,
//! header `{alg, typ, kid: private_key_id}`, claims `{iss: client_email, scope, aud: the token
//! URL, iat, exp: iat + 3600}`; the answer is `{"access_token", "expires_in", "token_type"}`.
//!
//! Concurrent sends for an account without a usable token share one fetch: each account has
//! a `tokio::sync::OnceCell` (behind a std mutex held only to find or replace it), replaced
//! when its token is due for refresh, its fetch failed, or FCM refused its token. A failed
//! fetch is answered to every send that waited on it, not fetched again by each.
//!
//! Does not own: retrying a failed fetch (the caller re-queues on `Outcome::Retry`), the send.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::{FcmCredentials, Outcome, jwt};

/// The scope FCM's send requires.
const FIREBASE_MESSAGING_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

const JWT_BEARER_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Google grants assertions valid for at most an hour.
const ASSERTION_LIFETIME_SECONDS: u64 = 3600;

/// A token is replaced this long before it expires, so no send carries one that expires in
/// flight.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// A token endpoint claiming a longer life than this is believed only this far (Google's
/// tokens live an hour).
const MAX_TRUSTED_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Accounts kept before those without a usable token are dropped: every app's credentials
/// add one, and a replaced key or a changed `token_uri` leaves its old entry behind.
const MAX_ACCOUNTS: usize = 1024;

/// A granted access token and when it is replaced.
#[derive(Clone)]
pub(super) struct AccessToken {
    bearer: Arc<str>,
    refresh_at: Instant,
}

impl AccessToken {
    /// The value of `Authorization: Bearer ...`.
    pub(super) fn bearer(&self) -> &str {
        &self.bearer
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("bearer", &"<redacted>")
            .field("refresh_at", &self.refresh_at)
            .finish()
    }
}

/// Why no access token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum TokenError {
    /// The service account's key cannot sign (the credentials need fixing).
    #[error("{0}")]
    Key(String),
    /// The token endpoint refused the grant (bad key, unknown account, wrong audience...).
    #[error(
        "fcm credentials: the token endpoint refused service account {client_email} (http {status}: {error}{description})"
    )]
    Refused {
        client_email: String,
        status: u16,
        error: String,
        description: String,
    },
    /// The token endpoint failed, was unreachable or answered nonsense: try again later.
    #[error("fcm token endpoint: {reason}")]
    Unavailable {
        reason: String,
        after: Option<Duration>,
    },
}

impl TokenError {
    /// What the send answers when it could not get a token.
    pub(super) fn outcome(&self) -> Outcome {
        match self {
            Self::Key(_) | Self::Refused { .. } => Outcome::Rejected {
                reason: self.to_string(),
            },
            Self::Unavailable { after, .. } => Outcome::Retry {
                reason: self.to_string(),
                after: *after,
            },
        }
    }
}

/// Which cached token a send may use: the account, where it was granted, and a digest of the
/// key, so an app that names another app's account without its key never borrows its token.
#[derive(Clone, PartialEq, Eq, Hash)]
struct AccountKey {
    client_email: String,
    token_url: String,
    private_key_sha256: [u8; 32],
}

impl AccountKey {
    fn new(credentials: &FcmCredentials, token_url: &str) -> Self {
        let digest =
            ring::digest::digest(&ring::digest::SHA256, credentials.private_key.as_bytes());
        let mut private_key_sha256 = [0; 32];
        private_key_sha256.copy_from_slice(digest.as_ref());
        Self {
            client_email: credentials.client_email.clone(),
            token_url: token_url.to_owned(),
            private_key_sha256,
        }
    }
}

/// One account's token: empty until its first fetch finishes.
type TokenCell = Arc<OnceCell<Result<AccessToken, TokenError>>>;

/// Access tokens per service account.
#[derive(Default)]
pub(super) struct AccessTokenCache {
    /// Held only to find or replace an account's cell, never across the fetch.
    accounts: Mutex<HashMap<AccountKey, TokenCell>>,
}

impl AccessTokenCache {
    /// A usable token for the account, fetched from `token_url` unless one is cached.
    pub(super) async fn get(
        &self,
        http: &reqwest::Client,
        credentials: &FcmCredentials,
        token_url: &str,
    ) -> Result<AccessToken, TokenError> {
        let cell = self.current_cell(AccountKey::new(credentials, token_url));
        cell.get_or_init(|| fetch(http, credentials, token_url))
            .await
            .clone()
    }

    /// Forgets `refused` (FCM answered 401 to it), unless a newer token already replaced it.
    pub(super) fn forget(
        &self,
        credentials: &FcmCredentials,
        token_url: &str,
        refused: &AccessToken,
    ) {
        let key = AccountKey::new(credentials, token_url);
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let holds_refused = accounts.get(&key).is_some_and(
            |cell| matches!(cell.get(), Some(Ok(token)) if token.bearer == refused.bearer),
        );
        if holds_refused {
            accounts.remove(&key);
        }
    }

    /// The account's cell, replaced by an empty one when what it holds is no longer usable.
    fn current_cell(&self, key: AccountKey) -> TokenCell {
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        if accounts.len() >= MAX_ACCOUNTS && !accounts.contains_key(&key) {
            accounts.retain(|_, cell| is_usable(cell));
        }
        let cell = accounts.entry(key).or_default();
        if !is_usable(cell) {
            *cell = TokenCell::default();
        }
        cell.clone()
    }
}

/// Whether a send may use what `cell` holds, or wait for it.
fn is_usable(cell: &TokenCell) -> bool {
    match cell.get() {
        None => true, // being fetched: wait for it
        Some(Ok(token)) => token.refresh_at > Instant::now(),
        Some(Err(_)) => false,
    }
}

/// The token endpoint's answer to a granted request.
#[derive(Deserialize)]
struct GrantedToken {
    access_token: String,
    expires_in: u64,
    #[serde(default)]
    token_type: Option<String>,
}

/// The token endpoint's answer to a refused request (RFC 6749, section 5.2).
#[derive(Deserialize, Default)]
struct RefusedGrant {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The signed assertion of a grant request, issued at `now` (Unix seconds).
fn sign_assertion(
    credentials: &FcmCredentials,
    token_url: &str,
    now: u64,
) -> Result<String, TokenError> {
    let key = jwt::rsa_key_from_pem("fcm.private_key", &credentials.private_key)
        .map_err(|error| TokenError::Key(format!("fcm credentials: {error}")))?;
    let mut header = serde_json::json!({});
    if let Some(key_id) = &credentials.private_key_id {
        header["kid"] = key_id.as_str().into();
    }
    let claims = serde_json::json!({
        "iss": credentials.client_email,
        "scope": FIREBASE_MESSAGING_SCOPE,
        "aud": token_url,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECONDS,
    });
    Ok(jwt::sign_rs256(&key, header, &claims))
}

async fn fetch(
    http: &reqwest::Client,
    credentials: &FcmCredentials,
    token_url: &str,
) -> Result<AccessToken, TokenError> {
    let assertion = sign_assertion(credentials, token_url, jwt::unix_seconds())?;
    let requested_at = Instant::now();
    let form = [
        ("grant_type", JWT_BEARER_GRANT_TYPE),
        ("assertion", assertion.as_str()),
    ];
    let unavailable = |reason: String, after: Option<Duration>| {
        tracing::warn!(client_email = %credentials.client_email, %reason, "fcm access token not granted");
        TokenError::Unavailable { reason, after }
    };
    let response = match http.post(token_url).form(&form).send().await {
        Ok(response) => response,
        Err(error) => return Err(unavailable(super::describe_request_error(&error), None)),
    };
    let status = response.status();
    let after = super::retry_after(response.headers());
    let body = match super::read_body(response).await {
        Ok(Some(body)) => body,
        Ok(None) => {
            let reason = format!(
                "http {}: an answer longer than {} bytes",
                status.as_u16(),
                super::MAX_ANSWER_BYTES
            );
            return Err(unavailable(reason, after));
        }
        Err(error) => return Err(unavailable(super::describe_request_error(&error), after)),
    };
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(unavailable(format!("http {}", status.as_u16()), after));
    }
    if !status.is_success() {
        let refused: RefusedGrant = serde_json::from_slice(&body).unwrap_or_default();
        let error = TokenError::Refused {
            client_email: credentials.client_email.clone(),
            status: status.as_u16(),
            error: refused.error,
            description: refused
                .error_description
                .map(|description| format!(": {description}"))
                .unwrap_or_default(),
        };
        tracing::warn!(client_email = %credentials.client_email, status = status.as_u16(), %error, "fcm access token refused");
        return Err(error);
    }
    let granted: GrantedToken = serde_json::from_slice(&body).map_err(|error| {
        unavailable(format!("the answer is not a granted token ({error})"), None)
    })?;
    let bearer_type = granted
        .token_type
        .as_deref()
        .is_none_or(|token_type| token_type.eq_ignore_ascii_case("bearer"));
    if granted.access_token.is_empty() || !bearer_type {
        return Err(unavailable("the answer is not a bearer token".into(), None));
    }
    let lifetime = Duration::from_secs(granted.expires_in).min(MAX_TRUSTED_LIFETIME);
    tracing::info!(
        client_email = %credentials.client_email,
        expires_in = granted.expires_in,
        "fcm access token granted"
    );
    Ok(AccessToken {
        bearer: granted.access_token.into(),
        refresh_at: requested_at + lifetime.saturating_sub(REFRESH_MARGIN),
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn credentials(private_key: &str) -> FcmCredentials {
        FcmCredentials {
            project_id: "p".into(),
            client_email: "sender@p.iam.gserviceaccount.com".into(),
            private_key: private_key.into(),
            private_key_id: Some("key-1".into()),
            token_uri: "https://oauth2.googleapis.com/token".into(),
        }
    }

    #[test]
    fn a_key_that_is_not_rsa_is_refused_naming_the_credentials() {
        let ec_key = rcgen::KeyPair::generate()
            .expect("a P-256 key")
            .serialize_pem();
        let error = sign_assertion(&credentials(&ec_key), "https://t", 1).expect_err("refused");
        let Outcome::Rejected { reason } = error.outcome() else {
            panic!("expected Rejected, got {:?}", error.outcome());
        };
        assert!(
            reason.starts_with("fcm credentials: fcm.private_key: "),
            "{reason}"
        );
    }

    #[test]
    fn a_full_cache_drops_the_accounts_without_a_usable_token() {
        let cache = AccessTokenCache::default();
        let token = |refresh_at| -> TokenCell {
            Arc::new(OnceCell::new_with(Some(Ok(AccessToken {
                bearer: "t".into(),
                refresh_at,
            }))))
        };
        let later = Instant::now() + Duration::from_secs(600);
        {
            let mut accounts = cache.accounts.lock().expect("not poisoned");
            for number in 0..MAX_ACCOUNTS {
                let key = AccountKey::new(&credentials(&format!("key {number}")), "https://t");
                let refresh_at = if number == 0 { later } else { Instant::now() };
                accounts.insert(key, token(refresh_at));
            }
        }
        cache.current_cell(AccountKey::new(&credentials("a new key"), "https://t"));
        let accounts = cache.accounts.lock().expect("not poisoned");
        assert_eq!(
            accounts.len(),
            2,
            "the one usable token and the new account"
        );
        assert!(accounts.contains_key(&AccountKey::new(&credentials("key 0"), "https://t")));
    }

    #[test]
    fn the_cache_key_differs_by_private_key() {
        let one = AccountKey::new(&credentials("key one"), "https://t");
        let other = AccountKey::new(&credentials("key two"), "https://t");
        assert!(one != other);
        assert!(one == AccountKey::new(&credentials("key one"), "https://t"));
    }

    #[test]
    fn the_assertion_carries_the_documented_header_and_claims() {
        let (json, _) = ringpush_platform_doubles::fcm::test_service_account("https://t/token");
        let credentials: FcmCredentials = serde_json::from_str(&json).expect("a service account");
        let assertion = sign_assertion(&credentials, "https://t/token", 1_000).expect("signs");
        let parts: Vec<&str> = assertion.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |part: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
        };
        assert_eq!(
            decode(parts[0]),
            serde_json::json!({
                "alg": "RS256",
                "typ": "JWT",
                "kid": credentials.private_key_id.clone().expect("a key id"),
            })
        );
        assert_eq!(
            decode(parts[1]),
            serde_json::json!({
                "iss": credentials.client_email,
                "scope": FIREBASE_MESSAGING_SCOPE,
                "aud": "https://t/token",
                "iat": 1_000,
                "exp": 4_600,
            })
        );
    }

    #[test]
    fn a_refusal_names_the_account_and_googles_reason() {
        let error = TokenError::Refused {
            client_email: "sender@p.iam.gserviceaccount.com".into(),
            status: 400,
            error: "invalid_grant".into(),
            description: ": Invalid JWT Signature.".into(),
        };
        assert_eq!(
            error.to_string(),
            "fcm credentials: the token endpoint refused service account \
             sender@p.iam.gserviceaccount.com (http 400: invalid_grant: Invalid JWT Signature.)"
        );
    }
}

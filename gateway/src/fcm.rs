//! The FCM HTTP v1 provider: sends one ringpush [`Push`] to one registration token through
//! `POST {fcm_url}/v1/projects/{project_id}/messages:send`, authenticated with an OAuth 2
//! access token granted for the app's service account.
//!
//! - [`access_token`]: the JWT bearer grant and the per-account token cache (one fetch for
//!   many concurrent sends, refreshed a minute before expiry);
//! - [`message`]: the v1 `Message` for a push (envelope under `data.ringpush`, notification,
//!   Android/APNs/Web Push options);
//! - [`response`]: what FCM's answer means, after Google's `ErrorCode` reference.
//!
//! A send makes at most two requests to FCM: when FCM answers 401 `UNAUTHENTICATED`, the
//! cached access token is dropped and the send is made once more with a new one. Every other
//! failure is answered to the caller at once ([`Outcome::Retry`] for what may pass, with the
//! service's Retry-After), since the caller's durable queue does the backing off.
//!
//! Does not own: retries and backoff, token storage, deciding when to use FCM (the
//! controller), the JWT signing itself (`crate::jwt`).

mod access_token;
mod message;
mod response;

use std::time::Duration;

use ringpush_protocol::device::Push;
use tracing::Instrument;

use self::access_token::{AccessToken, AccessTokenCache};
use self::response::SendVerdict;
use crate::{FcmCredentials, GatewayConfig, GatewayError, Outcome, unix_millis};

/// The longest answer body read, from FCM or a token endpoint. Google's answers are well
/// under a kilobyte; the token endpoint is each service account's `token_uri`, the app's word.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Sends messages through FCM HTTP v1.
pub struct FcmClient {
    /// One client, so its connection pool serves the token endpoint and FCM; every request
    /// times out after `GatewayConfig::request_timeout`.
    http: reqwest::Client,
    /// `GatewayConfig::fcm_url` without a trailing slash.
    api_url: String,
    /// `GatewayConfig::fcm_token_url`: when set, used instead of each account's `token_uri`.
    token_url_override: Option<String>,
    /// Whether `http://` URLs are admitted (local test services only).
    allow_plain_http: bool,
    access_tokens: AccessTokenCache,
}

impl FcmClient {
    /// A client for the FCM endpoints of `config`; refuses URLs that are not HTTPS unless
    /// `config.allow_plain_http`.
    pub fn new(config: &GatewayConfig) -> Result<Self, GatewayError> {
        check_url("fcm_url", &config.fcm_url, config.allow_plain_http)
            .map_err(GatewayError::Client)?;
        if let Some(token_url) = &config.fcm_token_url {
            check_url("fcm_token_url", token_url, config.allow_plain_http)
                .map_err(GatewayError::Client)?;
        }
        let tls = config.tls_client_config(&[b"h2", b"http/1.1"])?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(config.request_timeout)
            .build()
            .map_err(|error| GatewayError::Client(format!("fcm: {error}")))?;
        Ok(Self {
            http,
            api_url: config.fcm_url.trim_end_matches('/').to_owned(),
            token_url_override: config.fcm_token_url.clone(),
            allow_plain_http: config.allow_plain_http,
            access_tokens: AccessTokenCache::default(),
        })
    }

    /// Sends `push` to the app instance holding `registration_token`, as the service account
    /// of `credentials`.
    pub async fn send(
        &self,
        credentials: &FcmCredentials,
        registration_token: &str,
        push: &Push,
    ) -> Outcome {
        let span = tracing::info_span!(
            "fcm_send",
            project_id = %credentials.project_id,
            message_id = %push.message_id,
        );
        async move {
            let outcome = self
                .send_in_span(credentials, registration_token, push)
                .await;
            log_outcome(&outcome);
            outcome
        }
        .instrument(span)
        .await
    }

    async fn send_in_span(
        &self,
        credentials: &FcmCredentials,
        registration_token: &str,
        push: &Push,
    ) -> Outcome {
        if !is_project_id(&credentials.project_id) {
            return Outcome::Rejected {
                reason: "fcm credentials: fcm.project_id is letters, digits and dashes".into(),
            };
        }
        let token_url = self
            .token_url_override
            .as_deref()
            .unwrap_or(&credentials.token_uri);
        if let Err(problem) = check_url("fcm.token_uri", token_url, self.allow_plain_http) {
            return Outcome::Rejected {
                reason: format!("fcm credentials: {problem}"),
            };
        }
        let body = message::send_request_body(registration_token, push, unix_millis());
        let send_url = format!(
            "{}/v1/projects/{}/messages:send",
            self.api_url, credentials.project_id
        );

        // At most two sends: a refused access token is forgotten and the send made once more
        // with a newly fetched one; a new token refused as well is the credentials' fault.
        let mut refused_once = false;
        loop {
            let access_token = match self
                .access_tokens
                .get(&self.http, credentials, token_url)
                .await
            {
                Ok(token) => token,
                Err(error) => return error.outcome(),
            };
            match self.post_message(&send_url, &access_token, &body).await {
                SendVerdict::Done(outcome) => return outcome,
                SendVerdict::AccessTokenRefused if !refused_once => {
                    tracing::info!("fcm refused the access token; fetching a new one");
                    self.access_tokens
                        .forget(credentials, token_url, &access_token);
                    refused_once = true;
                }
                SendVerdict::AccessTokenRefused => {
                    self.access_tokens
                        .forget(credentials, token_url, &access_token);
                    return Outcome::Rejected {
                        reason: format!(
                            "UNAUTHENTICATED: fcm refused a newly granted access token of \
                             service account {} (does it have the Firebase Cloud Messaging API \
                             role in project {}?)",
                            credentials.client_email, credentials.project_id
                        ),
                    };
                }
            }
        }
    }

    async fn post_message(
        &self,
        send_url: &str,
        access_token: &AccessToken,
        body: &serde_json::Value,
    ) -> SendVerdict {
        let request = self
            .http
            .post(send_url)
            .bearer_auth(access_token.bearer())
            .json(body);
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                return SendVerdict::Done(Outcome::Retry {
                    reason: describe_request_error(&error),
                    after: None,
                });
            }
        };
        let status = response.status();
        let after = retry_after(response.headers());
        if status.is_success() {
            // The answer names the message; accepted whether or not its body arrives whole.
            if let Ok(Some(answer)) = read_body(response).await
                && let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&answer)
            {
                tracing::debug!(name = %answer["name"], "fcm message name");
            }
            return SendVerdict::Done(Outcome::Delivered);
        }
        match read_body(response).await {
            Ok(Some(answer)) => response::error_verdict(status.as_u16(), after, &answer),
            // Not FCM's error shape: the HTTP status decides.
            Ok(None) => response::error_verdict(status.as_u16(), after, b""),
            Err(error) => SendVerdict::Done(Outcome::Retry {
                reason: format!(
                    "http {}: {}",
                    status.as_u16(),
                    describe_request_error(&error)
                ),
                after,
            }),
        }
    }
}

fn log_outcome(outcome: &Outcome) {
    match outcome {
        Outcome::Delivered => tracing::debug!("fcm accepted the message"),
        Outcome::TokenRetired { reason } => {
            tracing::info!(%reason, "fcm no longer knows the registration token");
        }
        Outcome::Retry { reason, after } => {
            let after_seconds = after.map(|after| after.as_secs());
            tracing::warn!(%reason, ?after_seconds, "fcm send to be retried");
        }
        Outcome::Rejected { reason } => tracing::warn!(%reason, "fcm refused the message"),
        Outcome::NotConfigured => {}
    }
}

/// Checks that `url` is an HTTPS URL (or HTTP when allowed); the error names `setting`.
fn check_url(setting: &str, url: &str, allow_plain_http: bool) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|error| format!("{setting}: not a URL ({error})"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_plain_http => Ok(()),
        "http" => Err(format!(
            "{setting}: plain http:// is refused (allow_plain_http is for local test services)"
        )),
        scheme => Err(format!("{setting}: unsupported scheme {scheme}")),
    }
}

/// A project id as Google makes them (it becomes part of the send URL's path).
fn is_project_id(project_id: &str) -> bool {
    !project_id.is_empty()
        && project_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
}

/// A `Retry-After` given in seconds (the form Google uses).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse().ok().map(Duration::from_secs)
}

/// The body of an answer, or `None` when it is longer than [`MAX_ANSWER_BYTES`] (read no
/// further, so a misbehaving endpoint cannot fill memory).
async fn read_body(mut response: reqwest::Response) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// Why a request got no answer: `timeout`, or `unreachable: ` and the error's causes.
fn describe_request_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timeout".to_owned();
    }
    let mut reason = format!("unreachable: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_refused_unless_allowed() {
        let config = GatewayConfig {
            fcm_url: "http://127.0.0.1:1".into(),
            ..GatewayConfig::default()
        };
        let error = FcmClient::new(&config).err().expect("refused");
        assert!(
            error.to_string().contains("fcm_url: plain http://"),
            "{error}"
        );
        let config = GatewayConfig {
            allow_plain_http: true,
            ..config
        };
        assert!(FcmClient::new(&config).is_ok());
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().expect("a header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("a header"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn project_ids_cannot_change_the_path() {
        assert!(is_project_id("my-project-123"));
        assert!(!is_project_id("p/../other"));
        assert!(!is_project_id(""));
    }
}

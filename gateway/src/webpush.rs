//! Web Push provider: delivers one ringpush message to a browser's push subscription through
//! its push service (RFC 8030), identified with VAPID (RFC 8292), the payload encrypted for
//! the browser in `aes128gcm` (RFC 8291).
//!
//! - [`WebPushClient::send`]: builds the message, POSTs it to the subscription's endpoint
//!   and maps the push service's answer to an [`Outcome`];
//! - `message`: the plaintext JSON (the ringpush envelope, the notification) within the
//!   4096-byte limit, and the `TTL`, `Urgency` and `Topic` headers;
//! - `encrypt`: RFC 8291 encryption on `ring`;
//! - `vapid`: the `Authorization` header and its token cache.
//!
//! An endpoint URL is a capability (whoever knows it can push to the browser): it is never
//! logged, only its origin. Does not own: retries and backoff (the caller re-queues on
//! [`Outcome::Retry`]), where subscriptions and credentials are stored, the browser side.

mod encrypt;
mod message;
mod vapid;

pub(crate) use message::is_topic;

use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use ringpush_protocol::device::Push;
use ringpush_protocol::platform::decode_base64url;

use crate::{GatewayConfig, GatewayError, Outcome, VapidCredentials, unix_millis};

/// How much of a push service's error answer is kept in an outcome's reason.
const MAX_REASON_DETAIL: usize = 200;

/// A browser's subscription, as registered (`PushSubscription.toJSON()`).
pub struct Subscription<'a> {
    /// The push service URL for this browser (a capability: never logged).
    pub endpoint: &'a str,
    /// The browser's P-256 public key, base64url (65 bytes uncompressed).
    pub p256dh: &'a str,
    /// The browser's authentication secret, base64url (16 bytes).
    pub auth: &'a str,
}

/// Sends Web Push messages; one per process, shared by every app (credentials come with
/// each send).
pub struct WebPushClient {
    /// HTTP/2 or HTTP/1.1 over TLS, with the configured roots and request timeout; pools a
    /// connection per push service.
    http: reqwest::Client,
    allow_plain_http: bool,
    authorizations: vapid::VapidAuthorizations,
}

impl WebPushClient {
    /// A client on `config`'s trusted roots and request timeout; `http://` endpoints only
    /// with [`GatewayConfig::allow_plain_http`].
    pub fn new(config: &GatewayConfig) -> Result<Self, GatewayError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(config.tls_client_config(&[b"h2", b"http/1.1"])?)
            .timeout(config.request_timeout)
            // A push service answers; it does not redirect a capability URL elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| GatewayError::Client(error.to_string()))?;
        Ok(Self {
            http,
            allow_plain_http: config.allow_plain_http,
            authorizations: vapid::VapidAuthorizations::default(),
        })
    }

    /// Encrypts `push` for `subscription`, sends it with `credentials`' VAPID identity and
    /// says what became of it. Never retries by itself.
    pub async fn send(
        &self,
        credentials: &VapidCredentials,
        subscription: &Subscription<'_>,
        push: &Push,
    ) -> Outcome {
        let endpoint = match self.endpoint_url(subscription.endpoint) {
            Ok(endpoint) => endpoint,
            Err(reason) => return rejected(reason),
        };
        let origin = endpoint.origin().ascii_serialization();
        let (Some(p256dh), Some(auth)) = (
            decode_base64url(subscription.p256dh),
            decode_base64url(subscription.auth),
        ) else {
            return rejected("the subscription's keys are not base64url".to_owned());
        };
        let plaintext = message::plaintext(push);
        // One ECDH and one AES-GCM record of at most 4 KB: tens of microseconds, left on the
        // async worker.
        let body = match encrypt::encrypt(&plaintext, &p256dh, &auth) {
            Ok(body) => body,
            Err(encrypt::EncryptError::Randomness) => {
                return Outcome::Retry {
                    reason: "the system's random number generator failed".to_owned(),
                    after: None,
                };
            }
            Err(error) => return rejected(error.to_string()),
        };
        let authorization = match self.authorizations.authorization(credentials, &origin) {
            Ok(authorization) => authorization,
            Err(error) => return rejected(format!("the app's VAPID credentials: {error}")),
        };
        let ttl = message::ttl_seconds(push.expires_at_ms, unix_millis());
        let mut request = self
            .http
            .post(endpoint)
            .header(AUTHORIZATION, authorization)
            .header("TTL", ttl)
            .header("Urgency", message::urgency(push))
            .header(CONTENT_ENCODING, "aes128gcm")
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(topic) = message::topic(&push.collapse_key) {
            request = request.header("Topic", topic);
        }
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status();
                let retry_after = retry_after(response.headers(), SystemTime::now());
                let detail = read_detail(response).await;
                outcome_of(status, retry_after, &detail)
            }
            Err(error) => Outcome::Retry {
                reason: format!("push service unreachable: {}", describe(error)),
                after: None,
            },
        };
        log_outcome(&origin, &push.message_id, &outcome);
        outcome
    }

    /// The endpoint as a URL, refused when it is not HTTPS (or plain HTTP where allowed).
    fn endpoint_url(&self, endpoint: &str) -> Result<Url, String> {
        let url = Url::parse(endpoint)
            .map_err(|_| "the subscription's endpoint is not a URL".to_owned())?;
        match url.scheme() {
            "https" => Ok(url),
            "http" if self.allow_plain_http => Ok(url),
            "http" => Err("the subscription's endpoint is plain http:// (not allowed)".to_owned()),
            _ => Err("the subscription's endpoint is not an https:// URL".to_owned()),
        }
    }
}

fn rejected(reason: String) -> Outcome {
    Outcome::Rejected { reason }
}

/// What the push service's status means for this message (RFC 8030 section 5, RFC 8292
/// section 4.2, and what the major services answer).
fn outcome_of(status: StatusCode, retry_after: Option<Duration>, detail: &str) -> Outcome {
    let code = status.as_u16();
    let with_detail = |summary: &str| {
        if detail.is_empty() {
            format!("HTTP {code}: {summary}")
        } else {
            format!("HTTP {code}: {summary} ({detail})")
        }
    };
    match code {
        200..=202 => Outcome::Delivered,
        404 | 410 => Outcome::TokenRetired {
            reason: with_detail("the push subscription no longer exists"),
        },
        429 => Outcome::Retry {
            reason: with_detail("rate limited by the push service"),
            after: retry_after,
        },
        408 | 500..=599 => Outcome::Retry {
            reason: with_detail("the push service is unavailable"),
            after: retry_after,
        },
        413 => rejected(with_detail(
            "the encrypted payload is larger than the push service takes",
        )),
        401 | 403 => rejected(with_detail(
            "the push service refused the VAPID credentials (the browser subscribed with \
             another applicationServerKey, or the key or subject is not accepted)",
        )),
        _ => rejected(with_detail("the push service refused the message")),
    }
}

/// Retry-After as seconds or as an HTTP date (RFC 9110 section 10.2.3).
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The first line of an error answer, shortened: push services explain refusals in their
/// body (Mozilla's JSON `message`, FCM's text). Empty for a success or an unreadable body.
async fn read_detail(mut response: reqwest::Response) -> String {
    if response.status().is_success() {
        return String::new();
    }
    let mut bytes = Vec::new();
    while bytes.len() < MAX_REASON_DETAIL {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let first_line = text.lines().next().unwrap_or_default().trim();
    first_line.chars().take(MAX_REASON_DETAIL).collect()
}

/// A transport error without its URL (reqwest's text names it, and it is a capability),
/// with its causes.
fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let error = error.without_url();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn log_outcome(origin: &str, message_id: &str, outcome: &Outcome) {
    let label = outcome.label();
    match outcome {
        Outcome::Delivered => tracing::debug!(origin, message_id, outcome = label, "web push sent"),
        Outcome::Retry { reason, after } => tracing::info!(
            origin,
            message_id,
            outcome = label,
            reason = reason.as_str(),
            after_seconds = after.map(|after| after.as_secs()),
            "web push to retry"
        ),
        Outcome::TokenRetired { reason } => tracing::info!(
            origin,
            message_id,
            outcome = label,
            reason = reason.as_str(),
            "web push subscription gone"
        ),
        Outcome::Rejected { reason } => tracing::warn!(
            origin,
            message_id,
            outcome = label,
            reason = reason.as_str(),
            "web push refused"
        ),
        Outcome::NotConfigured => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn statuses_map_to_outcomes() {
        let status = |code| StatusCode::from_u16(code).expect("a status");
        assert_eq!(outcome_of(status(201), None, ""), Outcome::Delivered);
        assert_eq!(outcome_of(status(202), None, ""), Outcome::Delivered);
        assert_eq!(outcome_of(status(410), None, "").label(), "token_retired");
        assert_eq!(outcome_of(status(404), None, "").label(), "token_retired");
        let after = Some(Duration::from_secs(7));
        assert!(matches!(
            outcome_of(status(429), after, ""),
            Outcome::Retry { after: Some(seconds), .. } if seconds == Duration::from_secs(7)
        ));
        assert_eq!(outcome_of(status(502), None, "").label(), "retry");
        assert_eq!(outcome_of(status(413), None, "").label(), "rejected");
        let refused = outcome_of(status(403), None, "BadJwtToken");
        let reason = refused.reason().expect("a reason");
        assert!(
            reason.contains("VAPID") && reason.contains("BadJwtToken"),
            "{reason}"
        );
        assert_eq!(outcome_of(status(400), None, "").label(), "rejected");
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, now), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&later).expect("a header"),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(90)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn plain_http_endpoints_need_the_setting() {
        let mut config = GatewayConfig::default();
        let strict = WebPushClient::new(&config).expect("a client");
        assert!(strict.endpoint_url("http://127.0.0.1:1/push/a").is_err());
        assert!(strict.endpoint_url("https://push.example/a").is_ok());
        assert!(strict.endpoint_url("ftp://push.example/a").is_err());
        config.allow_plain_http = true;
        let local = WebPushClient::new(&config).expect("a client");
        assert!(local.endpoint_url("http://127.0.0.1:1/push/a").is_ok());
    }
}

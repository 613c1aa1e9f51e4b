//! The APNs provider: sends one ringpush [`Push`] to one Apple device through Apple's push
//! service, with token-based authentication, and says what became of it as an [`Outcome`].
//!
//! - [`ApnsClient`]: the entry point; one per process, shared by every app's sends;
//! - `answer`: the exchange on one HTTP/2 stream and what Apple's answer means;
//! - `connection`: HTTP/2 over TLS, one multiplexed connection per endpoint, team and topic;
//! - `provider_token`: the ES256 provider tokens, cached and renewed;
//! - `payload`: the request headers and the JSON body (`aps` and the ringpush envelope).
//!
//! A send is one request (`POST /3/device/{token}`), plus one more when APNs calls the
//! provider token expired (the token is re-signed first). Nothing else is retried here: the
//! caller re-queues on [`Outcome::Retry`] with its own backoff.
//!
//! Does not own: which devices get a platform push (the controller), the credentials'
//! storage, metrics (the caller counts outcomes by [`Outcome::label`]).

mod answer;
mod connection;
mod payload;
mod provider_token;

use std::time::Duration;

use bytes::Bytes;
use ringpush_protocol::device::Push;
use tokio::time::{Instant, timeout_at};

use crate::{ApnsCredentials, GatewayConfig, GatewayError, Outcome};
use answer::{Answer, exchange, outcome_of};
use connection::{ConnectionKey, Connections, Endpoint};
use payload::DeliveryHeaders;
use provider_token::ProviderTokens;

/// Sends notifications to APNs (production or sandbox, per device token).
pub struct ApnsClient {
    production: Endpoint,
    sandbox: Endpoint,
    /// How long one request may take, connecting included.
    request_timeout: Duration,
    provider_tokens: ProviderTokens,
    connections: Connections,
}

/// How one request ended.
enum Attempt {
    Answered {
        answer: Answer,
        jwt: std::sync::Arc<str>,
    },
    /// No answer: unreachable, connection lost, timed out.
    Unanswered { reason: String },
    /// The request could not be made from these credentials or this push.
    Unsendable { reason: String },
}

impl ApnsClient {
    /// Reads the endpoints and builds the TLS configuration (ALPN `h2`); connects nothing.
    pub fn new(config: &GatewayConfig) -> Result<Self, GatewayError> {
        let tls = config.tls_client_config(&[b"h2"])?;
        Ok(Self {
            production: Endpoint::parse("apns_production_url", &config.apns_production_url)?,
            sandbox: Endpoint::parse("apns_sandbox_url", &config.apns_sandbox_url)?,
            request_timeout: config.request_timeout,
            provider_tokens: ProviderTokens::new(config.apns_token_refresh),
            connections: Connections::new(std::sync::Arc::new(tls)),
        })
    }

    /// Sends `push` to the device with `device_token` (hex), at the sandbox endpoint when the
    /// app was built against it.
    pub async fn send(
        &self,
        credentials: &ApnsCredentials,
        device_token: &str,
        sandbox: bool,
        push: &Push,
    ) -> Outcome {
        let endpoint = if sandbox {
            &self.sandbox
        } else {
            &self.production
        };
        let outcome = self
            .send_to(endpoint, credentials, device_token, push)
            .await;
        let device = loggable(device_token);
        if let Outcome::Rejected { reason } = &outcome {
            tracing::warn!(
                endpoint = %endpoint.url, team_id = %credentials.team_id,
                topic = %credentials.topic, device, message_id = %push.message_id, reason,
                "APNs rejected a notification"
            );
        }
        outcome
    }

    async fn send_to(
        &self,
        endpoint: &Endpoint,
        credentials: &ApnsCredentials,
        device_token: &str,
        push: &Push,
    ) -> Outcome {
        if device_token.is_empty() || !device_token.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Outcome::TokenRetired {
                reason: "BadDeviceToken".into(),
            };
        }
        let headers = payload::delivery_headers(push);
        let body = match payload::body(push, headers.push_type) {
            Ok(body) => Bytes::from(body),
            Err(error) => {
                return Outcome::Rejected {
                    reason: format!("PayloadTooLarge: {error}"),
                };
            }
        };
        let key = ConnectionKey {
            endpoint_url: endpoint.url.clone(),
            team_id: credentials.team_id.clone(),
            topic: credentials.topic.clone(),
        };
        let request = Request {
            endpoint,
            key: &key,
            credentials,
            device_token,
            headers: &headers,
            body,
        };
        let mut attempt = self.attempt(&request).await;
        if let Attempt::Answered { answer, jwt } = &attempt
            && answer.status == 403
            && answer.reason.as_deref() == Some("ExpiredProviderToken")
        {
            tracing::debug!(team_id = %credentials.team_id, key_id = %credentials.key_id,
                "APNs called the provider token expired: re-signing");
            self.provider_tokens.discard(credentials, jwt);
            attempt = self.attempt(&request).await;
        }
        let device = loggable(device_token);
        match attempt {
            Attempt::Answered { answer, .. } => {
                let outcome = outcome_of(&answer, credentials);
                tracing::debug!(
                    endpoint = %endpoint.url, device, message_id = %push.message_id,
                    status = answer.status, apns_id = answer.apns_id.as_deref(),
                    outcome = outcome.label(), "APNs answered"
                );
                outcome
            }
            Attempt::Unanswered { reason } => {
                tracing::debug!(endpoint = %endpoint.url, device, message_id = %push.message_id,
                    reason, "no answer from APNs");
                Outcome::Retry {
                    reason,
                    after: None,
                }
            }
            Attempt::Unsendable { reason } => Outcome::Rejected { reason },
        }
    }

    /// One request, within the request timeout (connecting included).
    async fn attempt(&self, request: &Request<'_>) -> Attempt {
        let jwt = match self.provider_tokens.current(request.credentials) {
            Ok(jwt) => jwt,
            Err(error) => {
                return Attempt::Unsendable {
                    reason: format!("the APNs credentials cannot sign: {error}"),
                };
            }
        };
        let http_request = match request.build(&jwt) {
            Ok(http_request) => http_request,
            Err(error) => {
                return Attempt::Unsendable {
                    reason: format!("no valid APNs request from these settings: {error}"),
                };
            }
        };
        let deadline = Instant::now() + self.request_timeout;
        let lease = match timeout_at(
            deadline,
            self.connections.get(request.endpoint, request.key),
        )
        .await
        {
            Ok(Ok(lease)) => lease,
            Ok(Err(error)) => {
                return Attempt::Unanswered {
                    reason: error.to_string(),
                };
            }
            Err(_) => {
                return Attempt::Unanswered {
                    reason: format!(
                        "no connection to {} within {:?}",
                        request.endpoint.url, self.request_timeout
                    ),
                };
            }
        };
        let exchange = exchange(
            lease.send_request.clone(),
            http_request,
            request.body.clone(),
        );
        match timeout_at(deadline, exchange).await {
            Ok(Ok(answer)) => Attempt::Answered { answer, jwt },
            Ok(Err(error)) => {
                if error.connection_broken {
                    self.connections.discard(request.key, &lease);
                }
                Attempt::Unanswered {
                    reason: format!("APNs request failed: {}", error.source),
                }
            }
            Err(_) => {
                // A connection that cannot answer in time may be silently dead (a lost peer
                // sends no FIN): the next send opens a fresh one.
                self.connections.discard(request.key, &lease);
                Attempt::Unanswered {
                    reason: format!(
                        "no answer from {} within {:?}",
                        request.endpoint.url, self.request_timeout
                    ),
                }
            }
        }
    }
}

/// The start of a device token, enough to find it in logs without writing it whole.
fn loggable(device_token: &str) -> &str {
    device_token.get(..8).unwrap_or("")
}

/// Everything one send puts on the wire, but the provider token.
struct Request<'a> {
    endpoint: &'a Endpoint,
    key: &'a ConnectionKey,
    credentials: &'a ApnsCredentials,
    device_token: &'a str,
    headers: &'a DeliveryHeaders,
    body: Bytes,
}

impl Request<'_> {
    fn build(&self, jwt: &str) -> Result<http::Request<()>, http::Error> {
        let mut builder = http::Request::post(
            self.endpoint
                .uri(&format!("/3/device/{}", self.device_token)),
        )
        .header(http::header::AUTHORIZATION, format!("bearer {jwt}"))
        .header("apns-topic", self.credentials.topic.as_str())
        .header("apns-push-type", self.headers.push_type.as_str())
        .header("apns-priority", self.headers.priority.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, self.body.len().to_string());
        if let Some(expiration) = self.headers.expiration {
            builder = builder.header("apns-expiration", expiration.to_string());
        }
        if let Some(collapse_id) = &self.headers.collapse_id {
            // Bytes, not `&str`: a collapse key may be UTF-8 beyond ASCII.
            let value = http::HeaderValue::from_bytes(collapse_id.as_bytes())?;
            builder = builder.header("apns-collapse-id", value);
        }
        builder.body(())
    }
}

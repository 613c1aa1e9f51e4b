//! The double's HTTP/2 server: accepts TLS connections (ALPN `h2` only), runs one task per
//! connection with the configured `SETTINGS_MAX_CONCURRENT_STREAMS`, and answers each
//! request as APNs does after `checks` and the test's steering (`State::steered_reply`).
//!
//! Does not own the double's public API or its state (the parent module).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::{ApnsRequest, State, checks, lock, now_millis};

/// The most of a request body that is kept (larger ones are answered 413 all the same).
const MAX_KEPT_BODY_BYTES: usize = 64 * 1024;

/// The accept loop and what each connection needs.
pub(super) struct Server {
    pub(super) acceptor: TlsAcceptor,
    pub(super) max_concurrent_streams: u32,
    pub(super) state: Arc<State>,
    /// Changes when the test asks every connection to close.
    pub(super) close_signal: watch::Receiver<u64>,
}

impl Server {
    pub(super) async fn accept_loop(self, listener: TcpListener) {
        let server = Arc::new(self);
        let mut connections = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let Ok((tcp, _peer)) = accepted else {
                // Out of descriptors or similar: the client sees its connect fail; pause
                // rather than spin until some are freed.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            connections.spawn(Arc::clone(&server).serve(tcp));
        }
    }

    async fn serve(self: Arc<Self>, tcp: TcpStream) {
        let Ok(tls) = self.acceptor.accept(tcp).await else {
            return;
        };
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            // APNs speaks HTTP/2 only.
            return;
        }
        let handshake = h2::server::Builder::new()
            .max_concurrent_streams(self.max_concurrent_streams)
            .handshake::<_, Bytes>(tls)
            .await;
        let Ok(mut connection) = handshake else {
            return;
        };
        let connection_number = self.state.connections.fetch_add(1, Ordering::AcqRel) + 1;
        let _open = OpenConnection::count(&self.state);
        let mut close_signal = self.close_signal.clone();
        let mut requests = JoinSet::new();
        loop {
            tokio::select! {
                next = connection.accept() => match next {
                    Some(Ok((request, respond))) => {
                        let state = Arc::clone(&self.state);
                        requests.spawn(answer(state, connection_number, request, respond));
                    }
                    Some(Err(_)) | None => break,
                },
                changed = close_signal.changed() => match changed {
                    Ok(()) => connection.graceful_shutdown(),
                    Err(_) => break,
                },
                Some(_) = requests.join_next(), if !requests.is_empty() => {}
            }
        }
    }
}

/// Counts a connection as open for as long as it lives (its task may also be aborted).
struct OpenConnection {
    state: Arc<State>,
}

impl OpenConnection {
    fn count(state: &Arc<State>) -> Self {
        state.open_connections.send_modify(|open| *open += 1);
        Self {
            state: Arc::clone(state),
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.state
            .open_connections
            .send_modify(|open| *open = open.saturating_sub(1));
    }
}

/// Reads one request, checks it, records it and answers it.
async fn answer(
    state: Arc<State>,
    connection: usize,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let (head, mut body_stream) = request.into_parts();
    let mut body = Vec::new();
    let mut body_len = 0;
    while let Some(chunk) = body_stream.data().await {
        let Ok(chunk) = chunk else {
            return;
        };
        let _ = body_stream.flow_control().release_capacity(chunk.len());
        body_len += chunk.len();
        if body.len() + chunk.len() <= MAX_KEPT_BODY_BYTES {
            body.extend_from_slice(&chunk);
        }
    }
    let mut reply = Reply::ok();
    if let Err(refusal) = checks::check_request(&head, &body, &state.signer, now_seconds()) {
        reply = Reply::error(refusal.status, refusal.reason);
    } else if body_len > checks::MAX_PAYLOAD_BYTES {
        reply = Reply::error(413, "PayloadTooLarge");
    }
    let device_token = checks::device_token_of(head.uri.path())
        .unwrap_or_default()
        .to_owned();
    if reply.status == 200 {
        reply = state.steered_reply(&device_token).unwrap_or(reply);
    }
    let (jwt_header, jwt_claims) = checks::token_parts(&head.headers);
    let request_apns_id = head
        .headers
        .get("apns-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    lock(&state.received).push(ApnsRequest {
        device_token,
        headers: headers_of(&head.headers),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        body_len,
        jwt_header,
        jwt_claims,
        status: reply.status,
        reason: reply.reason.clone(),
        connection,
        received_at: std::time::Instant::now(),
    });
    let apns_id = request_apns_id.unwrap_or_else(|| {
        let number = state.next_apns_id.fetch_add(1, Ordering::Relaxed);
        format!("00000000-0000-4000-8000-{number:012X}")
    });
    let _ = reply.send(apns_id, &mut respond);
}

/// An answer, before it is written.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) reason: Option<String>,
    /// For 410: when the token stopped being valid (ms since the epoch).
    pub(super) timestamp: Option<u64>,
    pub(super) retry_after: Option<Duration>,
}

impl Reply {
    pub(super) fn ok() -> Self {
        Self {
            status: 200,
            reason: None,
            timestamp: None,
            retry_after: None,
        }
    }

    pub(super) fn error(status: u16, reason: &str) -> Self {
        Self {
            status,
            reason: Some(reason.to_owned()),
            timestamp: None,
            retry_after: None,
        }
    }

    fn send(self, apns_id: String, respond: &mut SendResponse<Bytes>) -> Result<(), h2::Error> {
        let mut response = http::Response::builder()
            .status(self.status)
            .header("apns-id", apns_id);
        if let Some(retry_after) = self.retry_after {
            response = response.header("retry-after", retry_after.as_secs().to_string());
        }
        let Some(reason) = self.reason else {
            let response = response.body(()).map_err(|_| h2::Reason::INTERNAL_ERROR)?;
            respond.send_response(response, true)?;
            return Ok(());
        };
        let mut error = serde_json::json!({"reason": reason});
        if let Some(timestamp) = self.timestamp {
            error["timestamp"] = timestamp.into();
        }
        let response = response
            .header("content-type", "application/json")
            .body(())
            .map_err(|_| h2::Reason::INTERNAL_ERROR)?;
        let mut stream = respond.send_response(response, false)?;
        stream.send_data(Bytes::from(error.to_string()), true)
    }
}

fn headers_of(headers: &http::HeaderMap) -> BTreeMap<String, String> {
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        by_name
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    by_name
}

fn now_seconds() -> u64 {
    now_millis() / 1000
}

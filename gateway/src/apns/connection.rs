//! Connections to APNs: HTTP/2 over TLS (ALPN `h2`), one multiplexed connection per
//! (endpoint, team, topic), opened on first use and shared by every concurrent send.
//!
//! Each connection's I/O runs in its own spawned task; sends hold clones of its
//! [`SendRequest`] handle, and h2 keeps them within the server's advertised
//! `SETTINGS_MAX_CONCURRENT_STREAMS` (a send waits for a free stream). A connection that died
//! (GOAWAY, I/O error, a request that timed out on it) is dropped from the pool and the next
//! send opens a new one. Does not own what goes over the connection (the parent module).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use h2::client::SendRequest;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio_rustls::TlsConnector;

use crate::GatewayError;

/// One APNs server (production or sandbox), parsed from its configured URL.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The URL as configured, for logs and errors.
    pub(crate) url: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    /// `host` or `host:port`, as the request's `:authority`.
    authority: String,
}

impl Endpoint {
    /// Reads an `https://host[:port]` URL; `setting` names it in the error.
    pub(crate) fn parse(setting: &'static str, url: &str) -> Result<Self, GatewayError> {
        let invalid = |detail: &str| GatewayError::Client(format!("{setting} {url:?}: {detail}"));
        let uri: http::Uri = url
            .parse()
            .map_err(|_| invalid("not a URL (https://host[:port] expected)"))?;
        if uri.scheme_str() != Some("https") {
            return Err(invalid("APNs is reached over https only"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid("an APNs URL has no path"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("the host is missing"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name = ServerName::try_from(host.clone())
            .map_err(|_| invalid("the host is not a DNS name or an IP address"))?;
        Ok(Self {
            url: url.to_owned(),
            port: authority.port_u16().unwrap_or(443),
            host,
            server_name,
            authority: authority.as_str().to_owned(),
        })
    }

    /// The URI of a request to `path` (which starts with `/`) on this server.
    pub(crate) fn uri(&self, path: &str) -> String {
        format!("https://{}{path}", self.authority)
    }
}

/// Which connection a send uses: APNs authenticates per request, but a connection carries
/// one team's and topic's traffic, as Apple recommends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ConnectionKey {
    pub(crate) endpoint_url: String,
    pub(crate) team_id: String,
    pub(crate) topic: String,
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect to {url}: {source}")]
    Tcp { url: String, source: std::io::Error },
    #[error("TLS handshake with {url}: {source}")]
    Tls { url: String, source: std::io::Error },
    #[error("{url} did not agree to HTTP/2 (ALPN h2)")]
    NotHttp2 { url: String },
    #[error("HTTP/2 handshake with {url}: {source}")]
    Http2 { url: String, source: h2::Error },
}

/// An open connection: the handle sends clone, and whether its I/O task still runs.
#[derive(Clone)]
struct OpenConnection {
    send_request: SendRequest<Bytes>,
    /// Cleared by the connection's task when the connection ends, so the next send replaces
    /// it instead of failing on it.
    alive: Arc<AtomicBool>,
}

/// One pool entry. The cell makes concurrent first sends wait for a single connect (rather
/// than each opening its own); a dead connection's entry is swapped for a fresh cell.
type Slot = Arc<OnceCell<OpenConnection>>;

/// A connection lent to one send; hand it back to [`Connections::discard`] if it failed.
pub(crate) struct Lease {
    pub(crate) send_request: SendRequest<Bytes>,
    slot: Slot,
}

/// The pool of connections.
pub(crate) struct Connections {
    tls: TlsConnector,
    /// The current entry of each key. Only looked up and swapped under the lock; connecting
    /// happens outside it, in the entry's cell.
    slots: Mutex<HashMap<ConnectionKey, Slot>>,
}

impl Connections {
    pub(crate) fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            tls: TlsConnector::from(tls),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The live connection for `key`, opened to `endpoint` if there is none.
    pub(crate) async fn get(
        &self,
        endpoint: &Endpoint,
        key: &ConnectionKey,
    ) -> Result<Lease, ConnectError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            let slot = slots.entry(key.clone()).or_default();
            let dead = slot
                .get()
                .is_some_and(|open| !open.alive.load(Ordering::Acquire));
            if dead {
                *slot = Slot::default();
            }
            Arc::clone(slot)
        };
        let open = slot.get_or_try_init(|| self.connect(endpoint)).await?;
        Ok(Lease {
            send_request: open.send_request.clone(),
            slot: Arc::clone(&slot),
        })
    }

    /// Drops the connection `lease` came from, if it is still the pool's, so the next send
    /// opens a new one. Sends still running on it finish or fail on their own.
    pub(crate) fn discard(&self, key: &ConnectionKey, lease: &Lease) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, &lease.slot))
        {
            slots.remove(key);
        }
    }

    async fn connect(&self, endpoint: &Endpoint) -> Result<OpenConnection, ConnectError> {
        let url = || endpoint.url.clone();
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|source| ConnectError::Tcp { url: url(), source })?;
        // Requests are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(endpoint.server_name.clone(), tcp)
            .await
            .map_err(|source| ConnectError::Tls { url: url(), source })?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(ConnectError::NotHttp2 { url: url() });
        }
        // One stream until the server's SETTINGS say how many: APNs itself allows a single
        // stream until a request with a valid provider token, and a server that sends no
        // limit is unlimited (h2 applies both when the SETTINGS arrive).
        let (send_request, connection) = h2::client::Builder::new()
            .initial_max_send_streams(1)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(|source| ConnectError::Http2 { url: url(), source })?;
        let alive = Arc::new(AtomicBool::new(true));
        let connection_alive = Arc::clone(&alive);
        let endpoint_url = endpoint.url.clone();
        tokio::spawn(async move {
            match connection.await {
                Ok(()) => tracing::debug!(endpoint = %endpoint_url, "APNs connection closed"),
                Err(error) => {
                    tracing::debug!(endpoint = %endpoint_url, %error, "APNs connection ended");
                }
            }
            connection_alive.store(false, Ordering::Release);
        });
        tracing::debug!(endpoint = %endpoint.url, "APNs connection opened");
        Ok(OpenConnection {
            send_request,
            alive,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_urls_without_a_path() {
        let endpoint = Endpoint::parse("apns", "https://api.push.apple.com").expect("valid");
        assert_eq!(endpoint.port, 443);
        assert_eq!(
            endpoint.uri("/3/device/ab"),
            "https://api.push.apple.com/3/device/ab"
        );
        let local = Endpoint::parse("apns", "https://127.0.0.1:4443/").expect("valid");
        assert_eq!((local.host.as_str(), local.port), ("127.0.0.1", 4443));
        assert_eq!(local.uri("/x"), "https://127.0.0.1:4443/x");
        for bad in [
            "http://127.0.0.1:80",
            "https://host/path",
            "not a url",
            "https://",
        ] {
            let error = Endpoint::parse("apns_production_url", bad).expect_err(bad);
            assert!(
                error
                    .to_string()
                    .starts_with("HTTP client: apns_production_url"),
                "{error}"
            );
        }
    }
}

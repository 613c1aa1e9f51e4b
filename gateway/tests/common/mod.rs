//! Steps the provider tests share: a server that accepts connections and never answers, and
//! the clock in the milliseconds a `Push` carries.

// Each test crate includes this module and uses its own part of it.
#![allow(dead_code)]

use std::net::SocketAddr;

/// A listener on 127.0.0.1 that accepts TCP connections and holds them without a word (no
/// TLS, no HTTP): requests to it can only time out. Stops when dropped.
pub struct SilentServer {
    pub address: SocketAddr,
    holder: tokio::task::JoinHandle<()>,
}

impl SilentServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a listener");
        let address = listener.local_addr().expect("an address");
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                held.push(connection);
            }
        });
        Self { address, holder }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.holder.abort();
    }
}

/// Now, in milliseconds since the Unix epoch.
pub fn unix_millis() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(elapsed.as_millis()).expect("fits")
}

//! A TCP proxy that a test can cut: it forwards every connection made to it to one target
//! (say, the Redis a connector uses), until told to cut, when it drops every connection
//! through it and refuses new ones (nothing listens on its port) until told to restore.
//! For tests of a process cut off from a server it depends on.
//!
//! What it does not do: delay or corrupt bytes, or cut one direction only.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long after a restore the proxy keeps trying to listen on its port again.
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);

/// A proxy on a free loopback port; stops (dropping every connection) when dropped.
pub struct TcpProxy {
    address: SocketAddr,
    /// True while cut; every forwarding task and the accept loop watch it.
    cut: watch::Sender<bool>,
    /// The accept loop, aborted on drop.
    accept_loop: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding connections made to a free loopback port to `target`.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy on a free loopback port");
        let address = listener.local_addr().expect("the proxy's address");
        let (cut, cut_watch) = watch::channel(false);
        let accept_loop = tokio::spawn(serve(listener, address, target, cut_watch));
        TcpProxy {
            address,
            cut,
            accept_loop,
        }
    }

    /// Where to connect instead of the target.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `redis://` URL of the proxy, for a Redis target.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.address)
    }

    /// Drops every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Accepts and forwards connections again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
        // Ends the forwarding tasks too.
        self.cut.send_replace(true);
    }
}

/// Accepts and forwards while not cut; while cut, nothing listens.
async fn serve(
    mut listener: TcpListener,
    address: SocketAddr,
    target: SocketAddr,
    mut cut: watch::Receiver<bool>,
) {
    let for_connections = cut.clone();
    loop {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((client, _)) = accepted {
                        tokio::spawn(forward(client, target, for_connections.clone()));
                    }
                }
                _ = cut.wait_for(|cut| *cut) => break,
            }
        }
        drop(listener);
        if cut.wait_for(|cut| !*cut).await.is_err() {
            return;
        }
        listener = rebind(address).await;
    }
}

/// Listens on `address` again (the old sockets may hold it for a moment).
async fn rebind(address: SocketAddr) -> TcpListener {
    let deadline = tokio::time::Instant::now() + REBIND_TIMEOUT;
    loop {
        match TcpListener::bind(address).await {
            Ok(listener) => return listener,
            Err(error) if tokio::time::Instant::now() > deadline => {
                panic!("the proxy could not listen on {address} again: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Copies bytes both ways between `client` and a new connection to `target` until either
/// side closes or the proxy is cut.
async fn forward(mut client: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An echo server: answers each connection with what it reads.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut reader, mut writer) = socket.split();
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                });
            }
        });
        address
    }

    async fn echoes(stream: &mut TcpStream) -> bool {
        if stream.write_all(b"ping").await.is_err() {
            return false;
        }
        let mut answer = [0u8; 4];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut answer)).await,
            Ok(Ok(_))
        ) && &answer == b"ping"
    }

    #[tokio::test]
    async fn forwards_drops_and_refuses_while_cut_then_forwards_again() {
        let proxy = TcpProxy::start(echo_server().await).await;
        let mut before = TcpStream::connect(proxy.address()).await.unwrap();
        assert!(echoes(&mut before).await);

        proxy.cut();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !echoes(&mut before).await,
            "a connection through the cut proxy is dropped"
        );
        assert!(
            TcpStream::connect(proxy.address()).await.is_err(),
            "a new connection is refused while cut"
        );

        proxy.restore();
        let mut after = None;
        for _ in 0..100 {
            if let Ok(stream) = TcpStream::connect(proxy.address()).await {
                after = Some(stream);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut after = after.expect("the proxy listens again after a restore");
        assert!(echoes(&mut after).await);
    }
}

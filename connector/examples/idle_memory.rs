//! What an idle device connection costs the connector, plain and over TLS: starts a
//! connector in a child process (embedded store, no per-address limit), opens connections
//! to it from this process, each upgraded to a WebSocket and then left idle, and reads the
//! child's resident memory (`VmRSS` in `/proc/<pid>/status`) after a warm-up batch and after
//! the measured batch. Prints bytes per connection for each mode and round.
//!
//! ```sh
//! cargo run --release -p ringpush-connector --example idle_memory -- 2000 2
//! ```
//!
//! Arguments: connections per measured batch (default 2000), rounds per mode (default 2).
//! Connections stop after the upgrade (before a Hello), so both modes hold the same
//! connection state; the difference between them is what TLS adds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Connections opened (and kept) before the first reading, so one-time allocations (the
/// first handshake, slab and epoll growth, rustls's session cache) are not counted.
const WARM_UP: usize = 300;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        serve(
            args.get(2).map(String::as_str) == Some("tls"),
            Path::new(&args[3]),
        );
        return;
    }
    let count: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(2000);
    let rounds: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(2);
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = ringpush_testkit::TestPki::write(dir.path());
    let client_tls = ringpush_tls::ClientTls {
        ca: pki.ca.clone(),
        identity: None,
    }
    .config(&[b"http/1.1"])
    .expect("client TLS");
    for round in 1..=rounds {
        for tls in [false, true] {
            let per_connection = measure(dir.path(), tls, count, &client_tls);
            let mode = if tls { "tls  " } else { "plain" };
            println!("round {round} {mode}: {per_connection:.0} bytes per idle connection");
        }
    }
}

/// Opens `WARM_UP`, then `count` more connections; answers the child's RSS growth per
/// connection over the second batch.
fn measure(dir: &Path, tls: bool, count: usize, client_tls: &Arc<rustls::ClientConfig>) -> f64 {
    let store_dir = tempfile::tempdir_in(dir).expect("store dir");
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args(["serve", if tls { "tls" } else { "plain" }])
        .arg(store_dir.path())
        .env("RINGPUSH_PKI_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the connector");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port line");
    let port: u16 = line.trim().parse().expect("port");
    let mut held = Vec::with_capacity(WARM_UP + count);
    for _ in 0..WARM_UP {
        held.push(open(port, tls, client_tls));
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = rss(&child);
    for _ in 0..count {
        held.push(open(port, tls, client_tls));
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss(&child);
    drop(held);
    stop(child);
    (after - before) as f64 / count as f64
}

/// A connection upgraded to a WebSocket, left idle.
fn open(port: u16, tls: bool, client_tls: &Arc<rustls::ClientConfig>) -> Box<dyn Read> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let request = format!(
        "GET /v1/connect HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut stream: Box<dyn ReadWrite> = if tls {
        let name = "127.0.0.1".try_into().expect("server name");
        let session =
            rustls::ClientConnection::new(client_tls.clone(), name).expect("client session");
        Box::new(rustls::StreamOwned::new(session, tcp))
    } else {
        Box::new(tcp)
    };
    stream
        .write_all(request.as_bytes())
        .expect("upgrade request");
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("upgrade answer");
        answer.push(byte[0]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 101"), "{answer:?}");
    Box::new(stream)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The child's resident memory in bytes.
fn rss(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).expect("status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kib * 1024
}

fn stop(mut child: Child) {
    drop(child.stdin.take());
    let _ = child.wait();
}

/// The child: a connector on an embedded store until its stdin closes.
fn serve(tls: bool, store_dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = ringpush_store::EmbeddedStore::open(&store_dir.join("store.redb"))
            .expect("embedded store");
        let devices = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = devices.local_addr().expect("addr").port();
        let device_tls = tls.then(|| {
            let pki = Path::new(&std::env::var_os("RINGPUSH_PKI_DIR").expect("pki dir")).to_owned();
            ringpush_tls::ServerTls {
                cert: pki.join("server.pem"),
                key: pki.join("server.key"),
                client_ca: None,
            }
            .config(&[b"http/1.1"])
            .expect("server TLS")
        });
        let config = ringpush_connector::ConnectorConfig {
            device_url: format!("ws://127.0.0.1:{port}/v1/connect"),
            grpc_url: format!("http://{}", grpc.local_addr().expect("addr")),
            shards: 2,
            ping_interval: Duration::from_secs(600),
            connections_per_ip: None,
            device_tls,
            ..ringpush_connector::ConnectorConfig::default()
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            stop.cancel();
        });
        println!("{port}");
        let store: Arc<dyn ringpush_store::Store> = Arc::new(store);
        ringpush_connector::run(config, devices, grpc, store, shutdown)
            .await
            .expect("connector");
    });
}

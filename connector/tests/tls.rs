//! Device connections over TLS (`wss://`): the same protocol on top, handshakes that fail or
//! stall closing only their own socket, and every close freeing its connection.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Connector, Device, Env, PATIENCE, eventually};
use ringpush_protocol::internal::DeliveryOutcome;
use ringpush_testkit::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A connector serving `wss://` with the test PKI's server certificate, and a client
/// configuration that trusts the test CA.
struct TlsSetup {
    pki: TestPki,
    _dir: tempfile::TempDir,
}

impl TlsSetup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::write(dir.path());
        Self { pki, _dir: dir }
    }

    async fn start(&self, env: &Env, ping_interval: Duration) -> Connector {
        let server = ringpush_tls::ServerTls {
            cert: self.pki.server_cert.clone(),
            key: self.pki.server_key.clone(),
            client_ca: None,
        }
        .config(&[b"http/1.1"])
        .expect("server TLS config");
        env.start(|config| {
            config.device_url = config.device_url.replacen("ws://", "wss://", 1);
            config.device_tls = Some(server);
            config.ping_interval = ping_interval;
        })
        .await
    }

    fn client(&self) -> Arc<rustls::ClientConfig> {
        ringpush_tls::ClientTls {
            ca: self.pki.ca.clone(),
            identity: None,
        }
        .config(&[b"http/1.1"])
        .expect("client TLS config")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_over_tls_gets_welcome_replay_and_live_pushes_and_closing_frees_it() {
    let env = Env::new().await;
    let tls = TlsSetup::new();
    let connector = tls.start(&env, Duration::from_secs(30)).await;
    assert!(connector.url().starts_with("wss://127.0.0.1:"));
    let (device, token) = env.device().await;
    // Enough replay for one flush to span several TLS records (16 KiB each).
    let pending = env.append(device, 400).await;

    let mut client = Device::connect_tls(&connector.url(), tls.client()).await;
    match client.ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Rustls(stream) => {
            assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        }
        _ => panic!("expected a TLS stream"),
    }
    client.hello(device, &token, 0).await;
    let welcome = client.welcome().await;
    assert_eq!(welcome.connector_id, "connector-a");
    for expected in &pending {
        assert_eq!(&client.push().await, expected);
    }
    let live = env.append(device, 2).await;
    let outcomes = connector
        .deliver(&[(device, live[0].clone()), (device, live[1].clone())])
        .await;
    assert_eq!(
        outcomes,
        [DeliveryOutcome::Written, DeliveryOutcome::Written]
    );
    assert_eq!(client.push().await, live[0]);
    assert_eq!(client.push().await, live[1]);
    client.ack(402).await;
    client.expect_quiet(9).await;
    eventually("the TLS connection is idle", || async {
        let stats = &connector.stats;
        stats.connections() == 1 && stats.devices() == 1 && stats.busy() == 0
    })
    .await;
    assert_eq!(connector.stats.tls_handshake_failures(), 0);

    drop(client);
    connector.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_and_garbage_on_the_tls_port_close_only_their_own_socket() {
    let env = Env::new().await;
    let tls = TlsSetup::new();
    let connector = tls.start(&env, Duration::from_secs(30)).await;
    let (device, token) = env.device().await;
    let mut client = Device::connect_tls(&connector.url(), tls.client()).await;
    client.hello(device, &token, 0).await;
    client.welcome().await;

    // A plain WebSocket client: its upgrade request is not TLS.
    let plain_url = connector.url().replacen("wss://", "ws://", 1);
    let plain = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(plain_url))
        .await
        .expect("answered in time");
    assert!(plain.is_err(), "a plain client must not get a WebSocket");

    // Garbage that starts like a TLS record, then is not one.
    let mut garbage = tokio::net::TcpStream::connect(connector.device_addr)
        .await
        .unwrap();
    garbage
        .write_all(b"\x16\x03\x01\x00\x10not a client hello at all")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // The connector closes the socket (a reset is as good as an end).
    let _ = tokio::time::timeout(PATIENCE, garbage.read_to_end(&mut answer))
        .await
        .expect("closed in time");
    // Whatever came back is at most a TLS alert, never an HTTP answer in the clear.
    assert!(!answer.starts_with(b"HTTP"), "{answer:?}");

    eventually(
        "both failures are counted and their sockets freed",
        || async {
            connector.stats.tls_handshake_failures() >= 2 && connector.stats.connections() == 1
        },
    )
    .await;

    // The TLS device alongside never noticed.
    let live = env.append(device, 1).await;
    let outcomes = connector.deliver(&[(device, live[0].clone())]).await;
    assert_eq!(outcomes, [DeliveryOutcome::Written]);
    assert_eq!(client.push().await, live[0]);
    client.expect_quiet(3).await;

    drop(client);
    connector.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_stalls_is_closed_after_the_silence_timeout() {
    let env = Env::new().await;
    let tls = TlsSetup::new();
    // Three ping intervals of one second: the handshake has three seconds.
    let connector = tls.start(&env, Duration::from_secs(1)).await;
    let mut stalled = tokio::net::TcpStream::connect(connector.device_addr)
        .await
        .unwrap();
    // The first bytes of a ClientHello record, and then nothing.
    stalled.write_all(b"\x16\x03\x01\x02").await.unwrap();
    eventually("the connector holds the socket", || async {
        connector.stats.connections() == 1
    })
    .await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stalled.read_to_end(&mut rest))
        .await
        .expect("closed within the timeout");
    eventually("the timeout is counted and the socket freed", || async {
        connector.stats.tls_handshake_failures() == 1
    })
    .await;
    connector.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_device_that_never_reads_is_cut_off_as_a_slow_consumer() {
    let env = Env::new().await;
    let tls = TlsSetup::new();
    let server = ringpush_tls::ServerTls {
        cert: tls.pki.server_cert.clone(),
        key: tls.pki.server_key.clone(),
        client_ca: None,
    }
    .config(&[b"http/1.1"])
    .unwrap();
    let connector = env
        .start(|config| {
            config.device_url = config.device_url.replacen("ws://", "wss://", 1);
            config.device_tls = Some(server);
            config.max_pending_output_bytes = 16 * 1024;
            config.socket_send_buffer_bytes = Some(4096);
        })
        .await;
    let (device, token) = env.device().await;
    // A small receive window, so what the device does not read waits in the connector.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(connector.device_addr).await.unwrap();
    let connecting = tokio_tungstenite::client_async_tls_with_config(
        connector.url(),
        stream,
        None,
        Some(tokio_tungstenite::Connector::Rustls(tls.client())),
    );
    let (ws, _) = tokio::time::timeout(PATIENCE, connecting)
        .await
        .unwrap()
        .unwrap();
    let mut client = Device { ws };
    client.hello(device, &token, 0).await;
    client.welcome().await;

    // Pushes of 4,000 bytes, one delivery at a time, never read.
    let pushes = env.append(device, 400).await;
    let mut written = 0;
    for mut push in pushes {
        push.payload = vec![b'x'; 4000];
        match connector.deliver(&[(device, push)]).await[..] {
            [DeliveryOutcome::Written] => written += 1,
            _ => break,
        }
    }
    assert!(
        written < 400,
        "a device that never reads must be cut off (wrote {written} pushes)"
    );
    println!("pushes written before the cut: {written}");
    // The kernel buffers take some; the connector's bound (16 KiB of records) the rest.
    assert!(written >= 4, "cut off too early: {written}");
    eventually("the slow consumer is freed", || async {
        connector.stats.connections() == 0 && connector.stats.busy() == 0
    })
    .await;
    drop(client);
    connector.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_arrive_a_byte_at_a_time_are_put_together() {
    let env = Env::new().await;
    let tls = TlsSetup::new();
    let connector = tls.start(&env, Duration::from_secs(30)).await;
    let (address, client_tls) = (connector.device_addr, tls.client());
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(address).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        let name = "127.0.0.1".try_into().unwrap();
        let mut session = rustls::ClientConnection::new(client_tls, name).unwrap();
        // Every record this client sends (the ClientHello, its Finished, the upgrade
        // request) goes out one byte per write.
        let trickle = |session: &mut rustls::ClientConnection, tcp: &mut std::net::TcpStream| {
            let mut records = Vec::new();
            while session.wants_write() {
                session.write_tls(&mut records).unwrap();
            }
            for byte in records {
                tcp.write_all(&[byte]).unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
        };
        while session.is_handshaking() {
            trickle(&mut session, &mut tcp);
            if session.is_handshaking() {
                session.read_tls(&mut tcp).unwrap();
                session.process_new_packets().unwrap();
            }
        }
        let request = format!(
            "GET /v1/connect HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        session.writer().write_all(request.as_bytes()).unwrap();
        trickle(&mut session, &mut tcp);
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            match session.reader().read(&mut byte) {
                Ok(1) => answer.push(byte[0]),
                Ok(_) => break,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    session.read_tls(&mut tcp).unwrap();
                    session.process_new_packets().unwrap();
                }
                Err(error) => panic!("{error}"),
            }
        }
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 101"), "{answer:?}");
    assert_eq!(connector.stats.tls_handshake_failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_1_2_device_is_served_too() {
    let env = Env::new().await;
    let tls = TlsSetup::new();
    let connector = tls.start(&env, Duration::from_secs(30)).await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in ringpush_tls::read_certs(&tls.pki.ca).unwrap() {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (device, token) = env.device().await;
    let pending = env.append(device, 50).await;
    let mut client = Device::connect_tls(&connector.url(), Arc::new(config)).await;
    client.hello(device, &token, 0).await;
    client.welcome().await;
    for expected in &pending {
        assert_eq!(&client.push().await, expected);
    }
    client.expect_quiet(1).await;
    drop(client);
    connector.wait_idle().await;
}

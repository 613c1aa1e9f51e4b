//! End-to-end tests of TLS on the REST API, the dispatcher and the internal gRPC channel
//! (issue 6): real `ringpush` processes over a real redis-server, certificates from
//! `TestPki`, and raw tokio-rustls clients, so that the test sees the handshake itself.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ringpush_harness::sim::SimDevice;
use ringpush_testkit::{RedisServer, TestPki, free_port};
use ringpush_tls::ClientTls;
use serde_json::{Value, json};
use support::{ADMIN_TOKEN, Platform, PlatformOptions, Proc, eventually, wait_for_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

/// Longest any one exchange of these tests may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

fn path(path: &Path) -> String {
    path.display().to_string()
}

/// A client trusting the test CA, with the test client certificate when `identity`.
fn client(pki: &TestPki, identity: bool, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    ClientTls {
        ca: pki.ca.clone(),
        identity: identity.then(|| (pki.client_cert.clone(), pki.client_key.clone())),
    }
    .config(alpn)
    .unwrap()
}

/// Connects over TLS to `address` as `name` (`localhost` or `127.0.0.1`: both are on the
/// test certificate).
async fn tls_connect(
    address: SocketAddr,
    name: &str,
    client: Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(address).await?;
    let name = ServerName::try_from(name.to_owned()).expect("a valid server name");
    tokio::time::timeout(
        EXCHANGE_TIMEOUT,
        TlsConnector::from(client).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
}

/// One HTTP/1.1 request over TLS (the connection closed after it); answers the status and
/// the body.
async fn https(
    address: SocketAddr,
    client: Arc<ClientConfig>,
    method: &str,
    path: &str,
    bearer: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, String)> {
    let mut stream = tls_connect(address, "localhost", client).await?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {bearer}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(EXCHANGE_TIMEOUT, stream.read_to_end(&mut answer)).await;
    match read {
        Ok(Ok(_)) => {}
        // A peer that closes without close_notify after a whole answer is fine here.
        Ok(Err(error))
            if error.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Ok(Err(error)) => return Err(error),
        Err(_) => return Err(std::io::Error::other("no answer in time")),
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Sends plain-text HTTP to `address`; answers what came back before the server closed.
async fn plain_http(address: SocketAddr) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(EXCHANGE_TIMEOUT, stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the TLS listener kept a plain connection open"
    );
    answer
}

/// Asserts that plain HTTP gets no HTTP answer from a TLS listener.
async fn assert_plain_http_refused(address: SocketAddr) {
    let answer = plain_http(address).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered on the TLS port: {:?}",
        String::from_utf8_lossy(&answer)
    );
}

/// Starts a process and waits for its port.
fn start(name: &str, dir: &Path, args: &[String], address: SocketAddr) -> Proc {
    let proc = Proc::spawn(name, dir, args);
    wait_for_port(address, Duration::from_secs(20));
    proc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_answers_over_https_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::write(dir.path());
    let redis = RedisServer::start();
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let args: Vec<String> = vec![
        "controller".into(),
        "--redis-url".into(),
        redis.url(),
        "--listen".into(),
        address.to_string(),
        "--admin-token".into(),
        ADMIN_TOKEN.into(),
        "--tls-cert".into(),
        path(&pki.server_cert),
        "--tls-key".into(),
        path(&pki.server_key),
    ];
    let mut controller = start("controller", dir.path(), &args, address);
    let trusted = client(&pki, false, &[b"http/1.1"]);

    let (status, body) = https(
        address,
        trusted.clone(),
        "POST",
        "/v1/apps",
        ADMIN_TOKEN,
        Some(&json!({ "name": "over-tls" })),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let app: Value = serde_json::from_str(&body).unwrap();
    assert!(app["app_id"].is_string(), "{body}");

    // Plain HTTP on the port gets no answer, and the listener goes on serving.
    assert_plain_http_refused(address).await;
    // A client whose CA did not issue the server's certificate fails the handshake.
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestPki::write(other_dir.path());
    let error = https(
        address,
        client(&other, false, &[]),
        "GET",
        "/openapi.json",
        "",
        None,
    )
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains("certificate"),
        "unexpected error: {error}"
    );
    let (status, body) = https(address, trusted.clone(), "GET", "/openapi.json", "", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("openapi"), "{body}");

    // The client commands reach it with --ca-cert, and without it fail on the certificate.
    let controller_url = format!("https://localhost:{}", address.port());
    let create = |extra: &[&str]| {
        let mut args = vec![
            "app",
            "create",
            "from-the-cli",
            "--controller",
            &controller_url,
            "--admin-token",
            ADMIN_TOKEN,
        ];
        args.extend_from_slice(extra);
        std::process::Command::new(support::ringpush_bin())
            .args(&args)
            .env_remove("RINGPUSH_CA_CERT")
            .output()
            .expect("ringpush runs")
    };
    let ca = path(&pki.ca);
    let created = create(&["--ca-cert", &ca]);
    let printed = String::from_utf8_lossy(&created.stdout);
    assert!(
        created.status.success() && printed.contains("app_id"),
        "{printed}{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let untrusted = create(&[]);
    let complaint = format!("{:?}", String::from_utf8_lossy(&untrusted.stderr));
    assert!(
        !untrusted.status.success() && complaint.contains("cannot reach"),
        "{complaint}"
    );

    // SIGTERM stops it promptly, an idle kept-alive HTTPS connection notwithstanding.
    let mut idle = tls_connect(address, "localhost", trusted).await.unwrap();
    idle.write_all(b"GET /openapi.json HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    controller.sigterm();
    assert_eq!(controller.wait_exit(Duration::from_secs(10)), Some(0));
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_answers_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::write(dir.path());
    let redis = RedisServer::start();
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let args: Vec<String> = vec![
        "dispatcher".into(),
        "--redis-url".into(),
        redis.url(),
        "--listen".into(),
        address.to_string(),
        "--tls-cert".into(),
        path(&pki.server_cert),
        "--tls-key".into(),
        path(&pki.server_key),
    ];
    let _dispatcher = start("dispatcher", dir.path(), &args, address);
    let trusted = client(&pki, false, &[]);
    let (status, body) = https(address, trusted.clone(), "GET", "/healthz", "", None)
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = https(
        address,
        trusted,
        "GET",
        "/v1/connector?device_id=nonsense",
        "",
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert_plain_http_refused(address).await;
}

/// What a gRPC client sees of a connector's listener after its handshake: the server's
/// first HTTP/2 frame header (a SETTINGS frame) if it serves this client, else the error.
async fn grpc_first_frame(
    address: SocketAddr,
    client: Arc<ClientConfig>,
) -> std::io::Result<[u8; 9]> {
    let mut stream = tls_connect(address, "127.0.0.1", client).await?;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await?;
    let mut header = [0u8; 9];
    tokio::time::timeout(EXCHANGE_TIMEOUT, stream.read_exact(&mut header))
        .await
        .map_err(|_| std::io::Error::other("no answer in time"))??;
    Ok(header)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_grpc_mutual_tls_a_controller_with_a_client_certificate_delivers_live() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = TestPki::write(pki_dir.path());
    let platform = Platform::start_with(PlatformOptions {
        connector_args: vec![
            "--grpc-tls-cert".into(),
            path(&pki.server_cert),
            "--grpc-tls-key".into(),
            path(&pki.server_key),
            "--grpc-client-ca".into(),
            path(&pki.ca),
        ],
        controller_args: vec![
            "--connector-ca".into(),
            path(&pki.ca),
            "--connector-client-cert".into(),
            path(&pki.client_cert),
            "--connector-client-key".into(),
            path(&pki.client_key),
        ],
        ..PlatformOptions::default()
    })
    .await;
    let connector = &platform.connectors[0];

    // The connector advertises its https URL on the ring.
    let (app, server_key, client_key) = platform.create_app().await;
    let (status, device) = platform
        .post(
            &format!("/v1/apps/{app}/devices"),
            &client_key,
            &json!({}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{device}");
    let device_id = device["device_id"].as_str().unwrap().to_owned();
    let token = device["device_token"].as_str().unwrap();
    // It advertises an https gRPC URL by default.
    let advertised = format!("https://{}", connector.grpc_addr);
    assert!(
        connector.proc.log_text().contains(&advertised),
        "{}",
        connector.proc.log_text()
    );

    // A device connected before the send gets it live: over the controller's mutual-TLS
    // gRPC call (the inbox replay happens only at connect time).
    let url = format!("ws://{}/v1/connect", connector.device_addr);
    let sim = SimDevice::connect(&url, &device_id, token, 0).await;
    sim.welcomed().await;
    let ids = platform
        .send(
            &app,
            &server_key,
            std::slice::from_ref(&device_id),
            "over mTLS",
        )
        .await;
    assert_eq!(ids.len(), 1);
    eventually(
        "the push delivered live over mutual TLS",
        Duration::from_secs(10),
        async || sim.counts.inbox.load(Ordering::Relaxed) == 1,
    )
    .await;
    // A controller that trusts the connectors but has no client certificate cannot deliver:
    // its message stays in the inbox (the device, still connected, does not get it).
    let (bare, bare_url) = support::campaigns::start_controller(
        &platform,
        "controller-without-certificate",
        &["--connector-ca".into(), path(&pki.ca)],
    );
    // It may not have read the ring yet: send until it has tried the connector.
    let http = platform.http.clone();
    let send_url = format!("{bare_url}/v1/apps/{app}/messages");
    eventually(
        "the controller without a certificate tries the connector",
        Duration::from_secs(10),
        async || {
            let answer = http
                .post(&send_url)
                .bearer_auth(&server_key)
                .json(&json!({ "device_ids": [device_id], "data": "no certificate" }))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
            tokio::time::sleep(Duration::from_millis(300)).await;
            bare.log_text().contains("deliver call failed")
        },
    )
    .await;
    // (The cause logged is the connector's CertificateRequired alert, or "connection
    // closed" when the close wins the race with the alert.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sim.counts.inbox.load(Ordering::Relaxed),
        1,
        "a controller without a client certificate delivered live"
    );

    // A gRPC client with the right CA but no client certificate is refused; the same
    // client with the certificate is served (the connector's SETTINGS frame, type 4).
    let without = grpc_first_frame(connector.grpc_addr, client(&pki, false, &[b"h2"])).await;
    assert!(
        without.is_err(),
        "a client without a certificate was served: {without:?}"
    );
    let with = grpc_first_frame(connector.grpc_addr, client(&pki, true, &[b"h2"]))
        .await
        .expect("a client with the certificate is served");
    assert_eq!(with[3], 4, "not a SETTINGS frame: {with:?}");
    // Nor does plain HTTP/2 get through.
    let mut plain = TcpStream::connect(connector.grpc_addr).await.unwrap();
    plain
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut header = [0u8; 9];
    let read = tokio::time::timeout(EXCHANGE_TIMEOUT, plain.read_exact(&mut header)).await;
    assert!(
        !matches!(read, Ok(Ok(_)) if header[3] == 4),
        "plain HTTP/2 was served on the TLS gRPC port"
    );
}

/// Runs `ringpush <args>`, expects exit code 64; answers what it printed.
fn refused(args: &[&str]) -> String {
    let output = std::process::Command::new(support::ringpush_bin())
        .args(args)
        .output()
        .expect("ringpush runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(64), "{args:?}: {printed}");
    printed
}

#[test]
fn bad_tls_settings_stop_the_process_with_the_setting_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::write(dir.path());
    let (cert, key, ca) = (path(&pki.server_cert), path(&pki.server_key), path(&pki.ca));
    let missing = dir.path().join("missing.pem").display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let controller = |extra: &[&str]| {
        let mut args = vec![
            "controller",
            "--listen",
            &listen,
            "--admin-token",
            ADMIN_TOKEN,
            "--redis-url",
            "redis://127.0.0.1:1",
        ];
        args.extend_from_slice(extra);
        refused(&args)
    };

    let printed = controller(&["--tls-cert", &cert]);
    assert!(
        printed.contains(
            "controller.tls_cert (--tls-cert) is set but controller.tls_key (--tls-key) is not"
        ),
        "{printed}"
    );
    let printed = controller(&["--tls-cert", &missing, "--tls-key", &key]);
    assert!(
        printed.contains("controller.tls_cert (--tls-cert): cannot read")
            && printed.contains("missing.pem"),
        "{printed}"
    );
    // The key where the certificate belongs: the file is read and named.
    let printed = controller(&["--tls-cert", &key, "--tls-key", &key]);
    assert!(
        printed.contains("server.key") && printed.contains("no CERTIFICATE"),
        "{printed}"
    );
    let printed = controller(&[
        "--connector-client-cert",
        &cert,
        "--connector-client-key",
        &key,
    ]);
    assert!(
        printed.contains("controller.connector_ca (--connector-ca) is not"),
        "{printed}"
    );

    let printed = refused(&[
        "dispatcher",
        "--redis-url",
        "redis://127.0.0.1:1",
        "--tls-key",
        &key,
    ]);
    assert!(
        printed.contains("dispatcher.tls_key (--tls-key) is set but dispatcher.tls_cert"),
        "{printed}"
    );

    let connector = |extra: &[&str]| {
        let mut args = vec!["connector", "--redis-url", "redis://127.0.0.1:1"];
        args.extend_from_slice(extra);
        refused(&args)
    };
    let printed = connector(&["--grpc-tls-cert", &cert, "--grpc-tls-key", &missing]);
    assert!(
        printed.contains("connector.grpc_tls_key (--grpc-tls-key): cannot read")
            && printed.contains("missing.pem"),
        "{printed}"
    );
    let printed = connector(&["--grpc-client-ca", &ca]);
    assert!(
        printed.contains(
            "connector.grpc_client_ca (--grpc-client-ca) is set but connector.grpc_tls_cert"
        ),
        "{printed}"
    );
    let printed = connector(&[
        "--grpc-tls-cert",
        &cert,
        "--grpc-tls-key",
        &key,
        "--grpc-url",
        "http://127.0.0.1:8083",
    ]);
    assert!(
        printed.contains("connector.grpc_url must start with https://"),
        "{printed}"
    );
}

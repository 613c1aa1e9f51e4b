//! The SDK against a connector that serves `wss://` with a certificate from the
//! deployment's own CA: trusted through `Config::with_tls_ca`, refused (with a clear reason)
//! without it.

mod common;

use common::{Cluster, eventually, init_logs, take, texts};
use ringpush_sdk::{Client, Error, TlsCa};
use ringpush_testkit::TestPki;

/// The cluster with its plain connector replaced by one serving `wss://`.
async fn cluster_with_tls(pki: &TestPki) -> Cluster {
    let mut cluster = Cluster::start().await;
    cluster.stop_connector(0).await;
    let server = ringpush_tls::ServerTls {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: None,
    }
    .config(&[b"http/1.1"])
    .expect("server TLS config");
    cluster
        .start_connector_with("t1", "127.0.0.1:0", Some(server))
        .await;
    assert!(cluster.connectors[0].device_url.starts_with("wss://"));
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_trusting_the_deployment_ca_receives_pushes_over_wss() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::write(dir.path());
    let cluster = cluster_with_tls(&pki).await;
    let identity = cluster.new_device().await;
    let device = identity.device_id;
    let config = cluster
        .config()
        .with_identity(identity)
        .with_tls_ca(pki.ca.as_path());
    let mut client = Client::start(config).await.expect("start");

    cluster.send(device, &texts("secure", 5)).await;
    let got = take(&mut client, 5).await;
    let expected: Vec<(u64, String)> = (1..=5).map(|s| (s, format!("secure-{}", s - 1))).collect();
    assert_eq!(got, expected);
    assert!(client.stats().connected);
    assert_eq!(client.last_connect_error(), None);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_without_the_ca_is_refused_with_a_clear_reason() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::write(dir.path());
    let cluster = cluster_with_tls(&pki).await;
    let identity = cluster.new_device().await;
    let client = Client::start(cluster.config().with_identity(identity))
        .await
        .expect("start");
    let reason = eventually("the connection to fail on the certificate", || async {
        client.last_connect_error()
    })
    .await;
    assert!(
        reason.contains("not trusted") && reason.contains("with_tls_ca"),
        "{reason}"
    );
    assert_eq!(client.stats().connections_established, 0);
    client.close().await;

    // A CA that is not a certificate fails the start and names the file.
    let bad = dir.path().join("bad-ca.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let identity = cluster.new_device().await;
    let config = cluster
        .config()
        .with_identity(identity)
        .with_tls_ca(TlsCa::File(bad));
    match Client::start(config).await {
        Err(error @ Error::TlsCa { .. }) => {
            let text = error.to_string();
            assert!(text.contains("bad-ca.pem"), "{text}");
        }
        Err(other) => panic!("expected a TLS CA error, got {other}"),
        Ok(_) => panic!("a bad CA file must fail the start"),
    }
}

/// A controller stand-in over https: answers every request with one registration.
async fn https_controller(pki: &TestPki, device: ringpush_sdk::DeviceId) -> String {
    let server = ringpush_tls::ServerTls {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: None,
    }
    .config(&[b"http/1.1"])
    .expect("server TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // The request is small: headers and body arrive in the first reads.
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = format!(r#"{{"device_id":"{device}","device_token":"token"}}"#);
                let answer = format!(
                    "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_over_https_trusts_the_same_ca() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::write(dir.path());
    let device = ringpush_sdk::DeviceId::random();
    let controller = https_controller(&pki, device).await;
    let app = ringpush_sdk::AppId::random();
    let config = |ca: bool| {
        let config = ringpush_sdk::Config::new(controller.clone(), "http://127.0.0.1:9", app, "ck");
        if ca {
            config.with_tls_ca(std::fs::read(&pki.ca).unwrap())
        } else {
            config
        }
    };
    let client = Client::start(config(true))
        .await
        .expect("registered over https");
    assert_eq!(client.device_id(), device);
    client.close().await;
    match Client::start(config(false)).await {
        Err(Error::ControllerUnreachable(error)) => {
            let text = format!("{error:?}");
            assert!(text.contains("UnknownIssuer"), "{text}");
        }
        Err(other) => panic!("expected an unreachable controller, got {other}"),
        Ok(_) => panic!("an untrusted controller must not register the device"),
    }
}

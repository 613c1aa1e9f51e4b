//! Must-show 6: bad input (malformed frames, a wrong token, an unknown device or app, a payload
//! over 4 KiB) gets a clear error and never crashes a process.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use ringpush_protocol::device::{Ack, ClientFrame, ErrorCode, Hello, client_frame, server_frame};
use serde_json::json;
use support::Platform;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

fn hello(device_id: &str, token: &str, version: u32) -> Message {
    let frame = ClientFrame {
        kind: Some(client_frame::Kind::Hello(Hello {
            protocol_version: version,
            device_id: device_id.into(),
            device_token: token.into(),
            ..Default::default()
        })),
    };
    Message::Binary(frame.encode_to_vec().into())
}

/// Connects, sends `frames`, and answers the Error code the connector sent (if any) and the
/// close code it closed with (if any).
async fn refusal(url: &str, frames: Vec<Message>) -> (Option<ErrorCode>, Option<u16>) {
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("handshake");
    for frame in frames {
        if socket.send(frame).await.is_err() {
            break;
        }
    }
    let mut error = None;
    let mut close = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.next()).await {
        match message {
            Message::Binary(bytes) => {
                let frame = ringpush_protocol::frame::decode_server(&bytes, 1 << 20).unwrap();
                if let Some(server_frame::Kind::Error(e)) = frame.kind {
                    assert!(!e.message.is_empty(), "an error says what is wrong");
                    error = ErrorCode::try_from(e.code).ok();
                }
            }
            Message::Close(frame) => {
                close = frame.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    (error, close)
}

async fn raw_exchange(address: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_never_crashes_a_process() {
    let mut platform = Platform::start(1).await;
    let (app, server_key, client_key) = platform.create_app().await;
    let identity =
        ringpush_sdk::register(&platform.controller_url, app.parse().unwrap(), &client_key)
            .await
            .unwrap();
    let device = identity.device_id.to_string();
    let address = platform.connectors[0].device_addr;
    let url = format!("ws://{address}/v1/connect");

    // Not WebSocket at all.
    let answer = raw_exchange(address, b"GET /v1/connect HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = raw_exchange(
        address,
        &[
            0x16, 0x03, 0x01, 0x00, 0xff, 0, 0, 0, b'\r', b'\n', b'\r', b'\n',
        ],
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = raw_exchange(address, b"GET /elsewhere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

    // Malformed and refused frames.
    let ack = ClientFrame {
        kind: Some(client_frame::Kind::Ack(Ack {
            up_to_seq: 1,
            timeline_up_to: 0,
        })),
    };
    let cases: Vec<(&str, Vec<Message>, ErrorCode)> = vec![
        (
            "wrong token",
            vec![hello(&device, "dt_wrong", 1)],
            ErrorCode::Unauthenticated,
        ),
        (
            "unknown device",
            vec![hello("0123456789abcdef0123456789abcdef", "x", 1)],
            ErrorCode::UnknownDevice,
        ),
        (
            "bad device id",
            vec![hello("not-an-id", "x", 1)],
            ErrorCode::BadFrame,
        ),
        (
            "future version",
            vec![hello(&device, &identity.device_token, 99)],
            ErrorCode::UnsupportedVersion,
        ),
        (
            "ack before hello",
            vec![Message::Binary(ack.encode_to_vec().into())],
            ErrorCode::HelloRequired,
        ),
        (
            "not protobuf",
            vec![Message::Binary(vec![0xff, 0xff, 0xff, 0xff].into())],
            ErrorCode::BadFrame,
        ),
        (
            "text message",
            vec![Message::Text("hello".into())],
            ErrorCode::BadFrame,
        ),
        (
            "frame over the limit",
            vec![Message::Binary(vec![0u8; 10_000].into())],
            ErrorCode::FrameTooLarge,
        ),
    ];
    for (what, frames, want) in cases {
        let (error, close) = refusal(&url, frames).await;
        assert_eq!(error, Some(want), "{what}: error frame");
        assert!(
            close.is_some(),
            "{what}: the connector closes the connection"
        );
    }

    // REST errors.
    let send = |devices: serde_json::Value, data: serde_json::Value| json!({ "device_ids": devices, "data": data });
    let (status, body) = platform
        .post(
            "/v1/apps/0123456789abcdef/messages",
            &server_key,
            &send(json!([device]), json!("x")),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_app"))
    );
    let (status, body) = platform
        .post(
            &format!("/v1/apps/{app}/messages"),
            &server_key,
            &send(json!([device]), json!("x".repeat(4097))),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (status, body) = platform
        .post(
            &format!("/v1/apps/{app}/messages"),
            &server_key,
            &send(json!(["0123456789abcdef0123456789abcdef"]), json!("x")),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_device"))
    );
    let (status, body) = platform
        .post(
            &format!("/v1/apps/{app}/messages"),
            "sk_wrong",
            &send(json!([device]), json!("x")),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let lookup = platform
        .http
        .get(format!(
            "{}/v1/connector?device_id=zz",
            platform.dispatcher_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(lookup.status().as_u16(), 400);

    // Everything still runs, and a good device still gets its push.
    assert!(platform.controller.is_running() && platform.dispatcher.is_running());
    assert!(platform.connectors[0].proc.is_running());
    let config = ringpush_sdk::Config::new(
        &platform.controller_url,
        &platform.dispatcher_url,
        app.parse().unwrap(),
        &client_key,
    )
    .with_identity(identity);
    let mut client = ringpush_sdk::Client::start(config).await.unwrap();
    let ids = platform
        .send(
            &app,
            &server_key,
            std::slice::from_ref(&device),
            "still here",
        )
        .await;
    let message = tokio::time::timeout(Duration::from_secs(20), client.next_message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.message_id, ids[0]);
    client.close().await;
}

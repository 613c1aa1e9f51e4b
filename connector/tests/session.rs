//! A device's life on one connector: hello, replay, live pushes, acks, errors, timeouts.

mod common;

use std::time::Duration;

use common::{Device, Env, eventually};
use futures_util::SinkExt;
use ringpush_protocol::DeviceId;
use ringpush_protocol::device::{ErrorCode, Hello, client_frame};
use ringpush_protocol::internal::DeliveryOutcome;
use ringpush_protocol::ws::{self, Opcode, close_code};
use ringpush_store::now_ms;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_replays_then_pushes_live_and_acks_reach_the_store() {
    let env = Env::new().await;
    let connector = env.start(|_| {}).await;
    let (device, token) = env.device().await;
    let pending = env.append(device, 3).await;

    let mut client = Device::connect(&connector.url()).await;
    client.hello(device, &token, 0).await;
    let welcome = client.welcome().await;
    assert_eq!(welcome.protocol_version, 1);
    assert_eq!(welcome.connector_id, "connector-a");
    assert_eq!(welcome.ping_interval_seconds, 30);
    assert_eq!(welcome.max_frame_bytes, 4096 + 256);
    for expected in &pending {
        assert_eq!(&client.push().await, expected);
    }
    let presence = env.store.presence(device).await.unwrap().expect("presence");
    assert_eq!(presence.connector_id, "connector-a");

    let live = env.append(device, 1).await;
    let outcomes = connector.deliver(&[(device, live[0].clone())]).await;
    assert_eq!(outcomes, [DeliveryOutcome::Written]);
    assert_eq!(client.push().await, live[0]);
    eventually("the delivered position reaches the store", || async {
        let state = env.store.inbox_state(device, now_ms()).await.unwrap();
        state.delivered_up_to == 4
    })
    .await;

    client.ack(4).await;
    eventually("the ack trims the inbox", || async {
        let state = env.store.inbox_state(device, now_ms()).await.unwrap();
        state.acked_up_to == 4 && state.pending == 0
    })
    .await;
    client.expect_quiet(7).await;

    // An idle authenticated connection is just its record: no Busy part.
    eventually("the connection is idle", || async {
        let stats = &connector.stats;
        stats.connections() == 1 && stats.devices() == 1 && stats.busy() == 0
    })
    .await;

    // A device that is not connected, and a request that is not valid.
    let (absent, _) = env.device().await;
    let absent_push = env.append(absent, 1).await.remove(0);
    let outcomes = connector.deliver(&[(absent, absent_push)]).await;
    assert_eq!(outcomes, [DeliveryOutcome::NotConnected]);
    let mut grpc = ringpush_protocol::internal::connector_client::ConnectorClient::connect(
        format!("http://{}", connector.grpc_addr),
    )
    .await
    .unwrap();
    let refused = grpc
        .deliver(ringpush_protocol::internal::DeliverRequest {
            deliveries: vec![ringpush_protocol::internal::Delivery {
                device_id: "not-a-device".into(),
                push: Some(live[0].clone()),
            }],
        })
        .await
        .expect_err("invalid device id");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // Closing frees everything, presence included.
    client.ws.close(None).await.unwrap();
    client.expect_closed().await;
    connector.wait_idle().await;
    eventually("presence is cleared", || async {
        env.store.presence(device).await.unwrap().is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_resumes_after_last_seq_and_replaces_the_old_connection() {
    let env = Env::new().await;
    let connector = env.start(|_| {}).await;
    let (device, token) = env.device().await;
    env.append(device, 5).await;

    let mut first = Device::connect(&connector.url()).await;
    first.hello(device, &token, 0).await;
    first.welcome().await;
    for seq in 1..=5 {
        assert_eq!(first.push().await.seq, seq);
    }
    first.ack(3).await;
    eventually("the ack reaches the store", || async {
        env.store
            .inbox_state(device, now_ms())
            .await
            .unwrap()
            .acked_up_to
            == 3
    })
    .await;

    // The same device again, while the first connection is still open: the new one wins
    // and gets what is above its last_seq; the old one is closed.
    let mut second = Device::connect(&connector.url()).await;
    second.hello(device, &token, 4).await;
    second.welcome().await;
    assert_eq!(second.push().await.seq, 5);
    assert_eq!(first.expect_closed().await, Some(close_code::NORMAL));
    let live = env.append(device, 1).await;
    let outcomes = connector.deliver(&[(device, live[0].clone())]).await;
    assert_eq!(outcomes, [DeliveryOutcome::Written]);
    assert_eq!(second.push().await.seq, 6);
    second.expect_quiet(1).await;
    eventually("one connection is left", || async {
        connector.stats.connections() == 1 && connector.stats.devices() == 1
    })
    .await;
    let presence = env
        .store
        .presence(device)
        .await
        .unwrap()
        .expect("presence of the new connection");
    assert_eq!(presence.connector_id, "connector-a");

    // A wrong token for a connected device does not push it off.
    let mut intruder = Device::connect(&connector.url()).await;
    intruder.hello(device, "wrong", 0).await;
    intruder.expect_error(ErrorCode::Unauthenticated).await;
    let live = env.append(device, 1).await;
    let outcomes = connector.deliver(&[(device, live[0].clone())]).await;
    assert_eq!(outcomes, [DeliveryOutcome::Written]);
    assert_eq!(second.push().await.seq, 7);
    drop(second);
    connector.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_live_never_race_and_gaps_are_filled_from_the_inbox() {
    let env = Env::new().await;
    // Small pages, so the replay takes several reads while live pushes arrive.
    let connector = env.start(|config| config.replay_batch = 3).await;
    let (device, token) = env.device().await;
    let stored = env.append(device, 10).await;

    let mut client = Device::connect(&connector.url()).await;
    client.hello(device, &token, 0).await;
    // Live deliveries race the replay, out of order, with a duplicate of a replayed one.
    let live = env.append(device, 5).await;
    for index in [2, 0, 4, 1, 3] {
        connector.deliver(&[(device, live[index].clone())]).await;
    }
    connector.deliver(&[(device, stored[4].clone())]).await;
    client.welcome().await;
    let mut seqs = Vec::new();
    while seqs.len() < 15 {
        seqs.push(client.push().await.seq);
    }
    assert_eq!(seqs, (1..=15).collect::<Vec<_>>());
    client.expect_quiet(1).await;

    // A gap while live (16 is appended but its delivery comes late): 17 waits for 16,
    // which comes from the inbox; the late 16 is not sent twice.
    let more = env.append(device, 2).await;
    let outcomes = connector.deliver(&[(device, more[1].clone())]).await;
    assert_eq!(outcomes, [DeliveryOutcome::CatchingUp]);
    assert_eq!(client.push().await.seq, 16);
    assert_eq!(client.push().await.seq, 17);
    let outcomes = connector.deliver(&[(device, more[0].clone())]).await;
    assert_eq!(outcomes, [DeliveryOutcome::Written]);
    client.expect_quiet(2).await;

    // One batch holding several pushes for the device, in order.
    let batch = env.append(device, 3).await;
    let pushes: Vec<_> = batch.iter().map(|push| (device, push.clone())).collect();
    let outcomes = connector.deliver(&pushes).await;
    assert_eq!(outcomes, [DeliveryOutcome::Written; 3]);
    for seq in 18..=20 {
        assert_eq!(client.push().await.seq, seq);
    }
    client.expect_quiet(3).await;
    eventually("the connection is idle again", || async {
        connector.stats.busy() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_get_a_clear_answer_and_the_connector_keeps_serving() {
    let env = Env::new().await;
    let connector = env.start(|_| {}).await;
    let url = connector.url();
    let (device, token) = env.device().await;
    let hello = |device: String, version: u32| {
        client_frame::Kind::Hello(Hello {
            protocol_version: version,
            device_id: device,
            device_token: token.clone(),
            ..Hello::default()
        })
    };

    let mut client = Device::connect(&url).await;
    client.hello(device, "wrong token", 0).await;
    let code = client.expect_error(ErrorCode::Unauthenticated).await;
    assert_eq!(code, Some(close_code::POLICY_VIOLATION));

    // Another device's valid token does not open this device's stream.
    let (_, other_token) = env.device().await;
    let mut client = Device::connect(&url).await;
    client.hello(device, &other_token, 0).await;
    let code = client.expect_error(ErrorCode::Unauthenticated).await;
    assert_eq!(code, Some(close_code::POLICY_VIOLATION));

    let mut client = Device::connect(&url).await;
    client.hello(DeviceId::random(), "whatever", 0).await;
    client.expect_error(ErrorCode::UnknownDevice).await;

    let mut client = Device::connect(&url).await;
    client.ping(1).await;
    client.expect_error(ErrorCode::HelloRequired).await;

    let mut client = Device::connect(&url).await;
    client.send(hello(device.to_string(), 2)).await;
    client.expect_error(ErrorCode::UnsupportedVersion).await;

    let mut client = Device::connect(&url).await;
    client.send(hello("not-hex".into(), 1)).await;
    client.expect_error(ErrorCode::BadFrame).await;

    let mut client = Device::connect(&url).await;
    client
        .ws
        .send(Message::binary(vec![0xff, 0xff, 0xff]))
        .await
        .unwrap();
    client.expect_error(ErrorCode::BadFrame).await;

    let mut client = Device::connect(&url).await;
    client.ws.send(Message::text("hello")).await.unwrap();
    client.expect_error(ErrorCode::BadFrame).await;

    let mut client = Device::connect(&url).await;
    client
        .ws
        .send(Message::binary(vec![0u8; 10_000]))
        .await
        .unwrap();
    let code = client.expect_error(ErrorCode::FrameTooLarge).await;
    assert_eq!(code, Some(close_code::TOO_BIG));

    let mut client = Device::connect(&url).await;
    client.hello(device, &token, 0).await;
    client.welcome().await;
    client.hello(device, &token, 0).await;
    client.expect_error(ErrorCode::BadFrame).await;

    // Raw sockets for what a WebSocket client library will not send.
    let answer = raw_exchange(
        connector.device_addr,
        b"\x16\x03\x01 not http at all\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with(b"HTTP/1.1 400 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let wrong_path = upgrade_request("/elsewhere");
    let answer = raw_exchange(connector.device_addr, &wrong_path).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 404 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let not_upgrade = b"GET /v1/connect HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = raw_exchange(connector.device_addr, not_upgrade).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 400 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    let mut unmasked = upgrade_request("/v1/connect");
    ws::write_frame(Opcode::Binary, b"\x1a\x02\x08\x01", &mut unmasked);
    let mut answer = raw_exchange(connector.device_addr, &unmasked).await;
    let frames = server_frames(&mut answer);
    assert_eq!(frames.len(), 2, "an Error frame and a Close: {frames:?}");
    let error = ringpush_protocol::frame::decode_server(&frames[0].1, 1 << 20).unwrap();
    let Some(ringpush_protocol::device::server_frame::Kind::Error(error)) = error.kind else {
        panic!("expected an Error frame, got {error:?}");
    };
    assert_eq!(error.code(), ErrorCode::BadFrame);
    assert_eq!(frames[1].0, Opcode::Close);
    assert_eq!(frames[1].1[..2], close_code::PROTOCOL_ERROR.to_be_bytes());

    // None of that hurt anyone else.
    let mut client = Device::connect(&url).await;
    client.hello(device, &token, 0).await;
    client.welcome().await;
    client.expect_quiet(9).await;
    drop(client);
    connector.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_time_out_and_pinging_ones_stay() {
    let env = Env::new().await;
    let connector = env
        .start(|config| config.ping_interval = Duration::from_secs(1))
        .await;
    let (silent, silent_token) = env.device().await;
    let (chatty, chatty_token) = env.device().await;

    let mut quiet = Device::connect(&connector.url()).await;
    quiet.hello(silent, &silent_token, 0).await;
    assert_eq!(quiet.welcome().await.ping_interval_seconds, 1);
    let mut talker = Device::connect(&connector.url()).await;
    talker.hello(chatty, &chatty_token, 0).await;
    talker.welcome().await;
    let mut mute = tokio::net::TcpStream::connect(connector.device_addr)
        .await
        .unwrap();

    let pinging = async {
        for nonce in 0..10 {
            talker.expect_quiet(nonce).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        talker
    };
    let timing_out = async {
        let code = quiet.expect_error(ErrorCode::Timeout).await;
        assert_eq!(code, Some(close_code::GOING_AWAY));
        let mut rest = Vec::new();
        tokio::time::timeout(common::PATIENCE, mute.read_to_end(&mut rest))
            .await
            .expect("a connection that never upgrades is closed too")
            .ok();
    };
    let (mut talker, ()) = tokio::join!(pinging, timing_out);
    talker.expect_quiet(99).await;
    drop(talker);
    connector.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_does_not_read_is_closed_as_a_slow_consumer() {
    let env = Env::new().await;
    let connector = env
        .start(|config| config.max_pending_output_bytes = 64 * 1024)
        .await;
    let (device, token) = env.device().await;
    // A client with a tiny receive window that stops reading after the Welcome.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(connector.device_addr).await.unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (ws, _) = tokio_tungstenite::client_async(connector.url(), stream)
        .await
        .unwrap();
    let mut client = common::Device { ws };
    client.hello(device, &token, 0).await;
    client.welcome().await;

    let payload = vec![b'x'; 4000];
    let mut seq = 0;
    let mut outcomes = Vec::new();
    while !outcomes.contains(&DeliveryOutcome::NotConnected) {
        assert!(seq < 20_000, "the device was never cut off");
        let pushes: Vec<_> = (0..200)
            .map(|_| {
                seq += 1;
                let push = ringpush_protocol::device::Push {
                    message_id: format!("{device}-{seq}"),
                    seq,
                    payload: payload.clone(),
                    content_type: "text/plain; charset=utf-8".into(),
                    created_at_ms: now_ms(),
                    expires_at_ms: now_ms() + 60_000,
                    ..Default::default()
                };
                (device, push)
            })
            .collect();
        outcomes = connector.deliver(&pushes).await;
    }
    drop(client);
    connector.wait_idle().await;
}

/// Sends `request` on a raw socket and reads until the connector closes it.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(common::PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the connector closes the connection")
        .ok();
    answer
}

fn upgrade_request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// The WebSocket frames behind a `101` answer.
fn server_frames(answer: &mut [u8]) -> Vec<(Opcode, Vec<u8>)> {
    assert!(
        answer.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(answer)
    );
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut rest = &mut answer[end..];
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = ws::decode_frame(rest, 1 << 20, ws::Sender::Server) {
        frames.push((frame.opcode, rest[frame.payload.clone()].to_vec()));
        rest = &mut rest[frame.len..];
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_right_behind_the_hello_are_answered_after_the_welcome() {
    use prost::Message as _;
    use ringpush_protocol::device::{ClientFrame, Ping, server_frame};
    let env = Env::new().await;
    let connector = env.start(|_| {}).await;
    // Several devices, so that some move to another shard with their pipelined bytes.
    for _ in 0..4 {
        let (device, token) = env.device().await;
        env.append(device, 2).await;
        let mut wire = upgrade_request("/v1/connect");
        let frames = [
            client_frame::Kind::Hello(Hello {
                protocol_version: 1,
                device_id: device.to_string(),
                device_token: token.clone(),
                ..Hello::default()
            }),
            client_frame::Kind::Ping(Ping { nonce: 42 }),
        ];
        for kind in frames {
            let payload = ClientFrame { kind: Some(kind) }.encode_to_vec();
            ws::write_masked_frame(Opcode::Binary, &payload, [7, 1, 2, 3], &mut wire);
        }
        let mut stream = tokio::net::TcpStream::connect(connector.device_addr)
            .await
            .unwrap();
        stream.write_all(&wire).await.unwrap();

        let mut answer = Vec::new();
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(common::PATIENCE, stream.read(&mut chunk))
                .await
                .expect("answers in time")
                .unwrap();
            assert!(read > 0, "closed early after {seen:?}");
            answer.extend_from_slice(&chunk[..read]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                seen = server_frames(&mut answer.clone())
                    .into_iter()
                    .map(|(_, payload)| {
                        let frame = ringpush_protocol::frame::decode_server(&payload, 1 << 20);
                        match frame.unwrap().kind.unwrap() {
                            server_frame::Kind::Welcome(_) => "welcome".to_owned(),
                            server_frame::Kind::Push(push) => format!("push {}", push.seq),
                            server_frame::Kind::Pong(pong) => format!("pong {}", pong.nonce),
                            other => format!("{other:?}"),
                        }
                    })
                    .collect();
            }
        }
        assert_eq!(seen, ["welcome", "push 1", "push 2", "pong 42"]);
    }
    connector.wait_idle().await;
}

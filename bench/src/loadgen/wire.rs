//! The bytes a load generator writes and the answers it reads: the WebSocket upgrade, the
//! device protocol's Hello and Ping (masked client frames), the dispatcher's
//! `GET /v1/connector` and its JSON answer.
//!
//! Does not own: sockets or state (see `conn`), the codecs (`ringpush_protocol`).

use prost::Message as _;
use ringpush_protocol::device::{ClientFrame, Hello, Ping, ServerFrame, client_frame};
use ringpush_protocol::ws::{self, Opcode};

/// Any mask will do for a benchmark client; RFC 6455 wants a fresh one per frame from a
/// browser, where the page could otherwise choose the bytes on the wire.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The opening handshake to `host` (the connector's `ip:port`).
pub fn upgrade_request(host: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(
        format!(
            "GET /v1/connect HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    );
}

/// Where the upgrade answer ends: `Some(Ok(len))` for a 101, `Some(Err(()))` for anything
/// else, `None` while the head is incomplete.
pub fn upgrade_answer(buf: &[u8]) -> Option<Result<usize, ()>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if buf.starts_with(b"HTTP/1.1 101") {
        Some(Ok(end))
    } else {
        Some(Err(()))
    }
}

fn client_frame(kind: client_frame::Kind, out: &mut Vec<u8>) {
    let payload = ClientFrame { kind: Some(kind) }.encode_to_vec();
    ws::write_masked_frame(Opcode::Binary, &payload, MASK, out);
}

/// A Hello as the SDK sends it, with no positions (a fresh device).
pub fn hello(device_id: &str, token: &str, out: &mut Vec<u8>) {
    let hello = Hello {
        protocol_version: ringpush_protocol::PROTOCOL_VERSION,
        device_id: device_id.to_owned(),
        device_token: token.to_owned(),
        sdk: "ringpush-bench".into(),
        ..Default::default()
    };
    client_frame(client_frame::Kind::Hello(hello), out);
}

/// The device protocol's keepalive.
pub fn ping(out: &mut Vec<u8>) {
    client_frame(client_frame::Kind::Ping(Ping { nonce: 0 }), out);
}

/// A WebSocket Pong answering a Ping's payload.
pub fn pong(payload: &[u8], out: &mut Vec<u8>) {
    ws::write_masked_frame(Opcode::Pong, payload, MASK, out);
}

/// Decodes a binary message from a connector.
pub fn server_frame(payload: &[u8]) -> Option<ServerFrame> {
    ringpush_protocol::frame::decode_server(payload, 1 << 20).ok()
}

/// `GET /v1/connector?device_id=…` to the dispatcher at `host`, closing after the answer.
pub fn lookup_request(host: &str, device_id: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(
        format!(
            "GET /v1/connector?device_id={device_id} HTTP/1.1\r\nHost: {host}\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    );
}

/// The connector URL in a complete dispatcher answer (read until the server closed), or
/// `None` for an error status or an unreadable body.
pub fn lookup_answer(buf: &[u8]) -> Option<String> {
    if !buf.starts_with(b"HTTP/1.1 200") {
        return None;
    }
    let start = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let body: serde_json::Value = serde_json::from_slice(&buf[start..]).ok()?;
    body["url"].as_str().map(str::to_owned)
}

/// `host:port` of a `ws://host:port/path` URL.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("ws://")?;
    Some(rest.split('/').next().unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read() {
        assert_eq!(
            upgrade_answer(b"HTTP/1.1 101 Switching\r\nA: b\r\n\r\nxx"),
            Some(Ok(32))
        );
        assert_eq!(upgrade_answer(b"HTTP/1.1 429 No\r\n\r\n"), Some(Err(())));
        assert_eq!(upgrade_answer(b"HTTP/1.1 101 Swi"), None);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n\
                       {\"url\":\"ws://127.0.0.1:9/v1/connect\",\"connector_id\":\"c0\"}";
        assert_eq!(
            lookup_answer(answer).as_deref(),
            Some("ws://127.0.0.1:9/v1/connect")
        );
        assert_eq!(url_host("ws://127.0.0.1:9/v1/connect"), Some("127.0.0.1:9"));
    }
}

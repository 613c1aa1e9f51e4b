//! Fuzzes what a connector does with the bytes a device sends: the WebSocket opening
//! handshake, then client frames (masked, at most the connector's default frame size), then
//! the protobuf `ClientFrame` in each binary message, and what a Hello or Attributes frame
//! carries (the device id, the device token, the attribute set matched against audiences).
//!
//! Checks: nothing panics; a decoded frame lies inside the buffer and every strict prefix
//! of it asks for more bytes; a decoded frame re-encoded (masked as a client sends, and
//! unmasked as a server sends) decodes to the same opcode and payload; a decoded
//! `ClientFrame` re-encodes to bytes that decode to the same frame.
//!
//! The first input byte chooses the mode: even starts at the handshake as a new connection
//! does, odd starts straight at the frames (so the fuzzer need not rebuild a handshake).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringpush_protocol::device::{Attributes, ClientFrame, client_frame};
use ringpush_protocol::frame::{self, DEFAULT_MAX_PAYLOAD_BYTES, FRAME_OVERHEAD_BYTES};
use ringpush_protocol::token::DeviceToken;
use ringpush_protocol::ws::{self, Opcode, Sender};
use ringpush_protocol::{CONNECT_PATH, DeviceId};

/// The connector's default `max_frame_bytes` (connector/src/lib.rs), used both for the
/// WebSocket payload and for the protobuf frame.
const MAX_FRAME_BYTES: usize = DEFAULT_MAX_PAYLOAD_BYTES + FRAME_OVERHEAD_BYTES;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let mut data = rest.to_vec();
    let mut used = 0;
    if mode % 2 == 0 {
        match ws::parse_handshake(&data) {
            Ok(None) | Err(_) => return,
            Ok(Some((handshake, taken))) => {
                assert!(
                    taken <= data.len(),
                    "the handshake took more than it was given"
                );
                let mut answer = Vec::new();
                ws::write_accept(&handshake, &mut answer);
                // The connector routes on the path without its query.
                if handshake.path.split('?').next().unwrap_or_default() != CONNECT_PATH {
                    return;
                }
                used = taken;
            }
        }
    }
    // As `Shard::process_input` does: frames one after another until one is incomplete or
    // refused (a refusal ends the connection).
    while used < data.len() {
        let original = data[used..].to_vec();
        let frame = match ws::decode_frame(&mut data[used..], MAX_FRAME_BYTES, Sender::Client) {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => break,
        };
        assert!(frame.len <= original.len(), "frame longer than its buffer");
        assert!(frame.payload.start <= frame.payload.end && frame.payload.end == frame.len);
        assert!(frame.payload.len() <= MAX_FRAME_BYTES);
        check_prefixes(&original[..frame.len], frame.payload.start);
        let payload = data[used + frame.payload.start..used + frame.len].to_vec();
        let mask: [u8; 4] = original[frame.payload.start - 4..frame.payload.start]
            .try_into()
            .expect("a client frame's mask is the 4 bytes before its payload");
        check_round_trip(frame.opcode, &payload, mask);
        used += frame.len;
        match frame.opcode {
            Opcode::Binary => {
                if !client_frame_ok(&payload) {
                    break;
                }
            }
            Opcode::Ping | Opcode::Pong => {
                let mut pong = Vec::new();
                ws::write_frame(Opcode::Pong, &payload, &mut pong);
            }
            Opcode::Close | Opcode::Text | Opcode::Continuation => break,
        }
    }
});

/// A strict prefix of a whole frame is an incomplete frame, never an error or a frame.
fn check_prefixes(whole: &[u8], header_len: usize) {
    let mut cuts: Vec<usize> = (0..=header_len).collect();
    cuts.push(whole.len() - 1);
    for cut in cuts.into_iter().filter(|&cut| cut < whole.len()) {
        let mut prefix = whole[..cut].to_vec();
        assert_eq!(
            ws::decode_frame(&mut prefix, MAX_FRAME_BYTES, Sender::Client),
            Ok(None),
            "a {cut}-byte prefix of a {}-byte frame",
            whole.len()
        );
    }
}

/// Re-encodes a decoded frame both ways and decodes it again.
fn check_round_trip(opcode: Opcode, payload: &[u8], mask: [u8; 4]) {
    let mut masked = Vec::new();
    ws::write_masked_frame(opcode, payload, mask, &mut masked);
    let again = ws::decode_frame(&mut masked, MAX_FRAME_BYTES, Sender::Client)
        .expect("a re-encoded client frame decodes")
        .expect("a re-encoded client frame is whole");
    assert_eq!(again.opcode, opcode);
    assert_eq!(again.len, masked.len());
    assert_eq!(&masked[again.payload], payload);

    let mut unmasked = Vec::new();
    ws::write_frame(opcode, payload, &mut unmasked);
    let again = ws::decode_frame(&mut unmasked, MAX_FRAME_BYTES, Sender::Server)
        .expect("a re-encoded server frame decodes")
        .expect("a re-encoded server frame is whole");
    assert_eq!(again.opcode, opcode);
    assert_eq!(&unmasked[again.payload], payload);
}

/// Decodes a binary message's `ClientFrame` and what the connector reads from it; answers
/// whether the connector would go on reading the connection.
fn client_frame_ok(payload: &[u8]) -> bool {
    let Ok(decoded) = frame::decode_client(payload, MAX_FRAME_BYTES) else {
        return false;
    };
    // (It may be longer than `payload`: an i32 enum sent as a 5-byte varint comes back as
    // 10. The connector never re-encodes a device's frame, so that is no limit to check.)
    let mut encoded = Vec::new();
    frame::encode_into(&decoded, &mut encoded);
    let again: ClientFrame =
        frame::decode_client(&encoded, MAX_FRAME_BYTES).expect("a re-encoded ClientFrame decodes");
    assert_eq!(again, decoded);
    // (The bytes need not repeat: prost encodes a proto `map` (Attributes.custom) in its
    // HashMap's order, which differs between two maps of the same entries. Found by this
    // target; nothing in ringpush compares encoded frames, so the check is on values only.)

    match decoded.kind {
        Some(client_frame::Kind::Hello(hello)) => {
            let Ok(device) = hello.device_id.parse::<DeviceId>() else {
                return false;
            };
            assert_eq!(device.to_string().parse::<DeviceId>(), Ok(device));
            if let Ok(token) = DeviceToken::parse(&hello.device_token) {
                let _ = token.verify(device, &[0; 32]);
            }
            true
        }
        Some(client_frame::Kind::Attributes(attributes)) => attributes_ok(attributes),
        _ => true,
    }
}

/// What the connector makes of a device's Attributes (`ringpush_connector::attributes_of`),
/// then matched against audiences that read every field.
fn attributes_ok(wire: Attributes) -> bool {
    let Ok(attributes) = ringpush_connector::attributes_of(wire) else {
        return false;
    };
    for text in AUDIENCES {
        let audience = ringpush_audience::Audience::parse(text).expect("a valid audience");
        let _ = audience.matches(&attributes);
    }
    true
}

const AUDIENCES: &[&str] = &[
    "platform = ios and app_version >= 2.3 and locale starts with zh",
    "os_version < 17.0.1 or app_version != 1 or timezone = \"Asia/Tokyo\"",
    "vip and not (churned or tag = x) and topic = news and attr.plan > 2.10",
];

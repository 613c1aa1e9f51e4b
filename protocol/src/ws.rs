//! The subset of WebSocket (RFC 6455) that ringpush speaks: the opening handshake and the
//! frame codec, working on buffers the caller lends so that an idle connection owns none.
//!
//! Limits of this subset, documented in docs/protocol.md: messages must not be fragmented
//! (every client library sends a binary message as one frame), extensions and subprotocols
//! are not negotiated, and a message may not exceed the configured maximum.

use std::ops::Range;

use base64::Engine;
use sha1::{Digest, Sha1};

/// The largest opening handshake request accepted.
pub const MAX_HANDSHAKE_BYTES: usize = 4096;

const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Close codes used by ringpush (RFC 6455 section 7.4).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// A frame's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Result<Self, WsError> {
        Ok(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            other => return Err(WsError::UnknownOpcode(other)),
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// Why a handshake or frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("not a WebSocket upgrade request: {0}")]
    BadHandshake(&'static str),
    #[error("handshake request is over {MAX_HANDSHAKE_BYTES} bytes")]
    HandshakeTooLarge,
    #[error("frame sets reserved bits (no extension was negotiated)")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("frames from a client must be masked")]
    Unmasked,
    #[error("frames from a server must not be masked")]
    Masked,
    #[error("control frame is fragmented or over 125 bytes")]
    BadControlFrame,
    #[error("fragmented messages are not supported: send each message as one frame")]
    Fragmented,
    #[error("message of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
}

impl WsError {
    /// The close code to send when this error ends a connection.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => close_code::TOO_BIG,
            Self::Fragmented => close_code::UNSUPPORTED_DATA,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

/// An accepted opening handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The request target, e.g. `/v1/connect`.
    pub path: String,
    /// The `Sec-WebSocket-Accept` value to answer with.
    pub accept: String,
}

/// Parses an opening handshake at the start of `buf`.
///
/// `Ok(None)` means the request is not complete yet; `Ok(Some((handshake, used)))` gives the
/// number of bytes it took (a client may send its first frame right behind it).
pub fn parse_handshake(buf: &[u8]) -> Result<Option<(Handshake, usize)>, WsError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let used = match request.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HANDSHAKE_BYTES => {
            return Err(WsError::HandshakeTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(WsError::BadHandshake("more than 32 headers"));
        }
        Err(_) => return Err(WsError::BadHandshake("malformed HTTP request")),
    };
    if used > MAX_HANDSHAKE_BYTES {
        return Err(WsError::HandshakeTooLarge);
    }
    if request.method != Some("GET") {
        return Err(WsError::BadHandshake("method must be GET"));
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|value| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    };
    if !has_token("upgrade", "websocket") {
        return Err(WsError::BadHandshake("missing Upgrade: websocket"));
    }
    if !has_token("connection", "upgrade") {
        return Err(WsError::BadHandshake("missing Connection: Upgrade"));
    }
    if header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(WsError::BadHandshake("Sec-WebSocket-Version must be 13"));
    }
    let key = header("sec-websocket-key")
        .map(str::trim)
        .filter(|key| key.len() == 24)
        .ok_or(WsError::BadHandshake(
            "missing or malformed Sec-WebSocket-Key",
        ))?;
    let handshake = Handshake {
        path: request.path.unwrap_or("/").to_owned(),
        accept: accept_key(key),
    };
    Ok(Some((handshake, used)))
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Appends the `101 Switching Protocols` answer to `out`.
pub fn write_accept(handshake: &Handshake, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(handshake.accept.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends a plain HTTP error answer to `out`, for a request that is not a valid upgrade.
pub fn write_http_error(status: u16, reason: &str, body: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

/// One decoded frame; its payload lies at `payload` in the decoded buffer, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub opcode: Opcode,
    pub payload: Range<usize>,
    /// Bytes of the buffer this frame took, header included.
    pub len: usize,
}

/// Which side's frames are being decoded: clients must mask, servers must not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
}

/// Decodes the frame at the start of `buf`, unmasking its payload in place.
///
/// `Ok(None)` means more bytes are needed. A payload over `max_payload` is refused as soon
/// as its header arrives, before any of it is buffered.
pub fn decode_frame(
    buf: &mut [u8],
    max_payload: usize,
    sender: Sender,
) -> Result<Option<Frame>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(WsError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = Opcode::from_bits(b0 & 0x0F)?;
    let masked = b1 & 0x80 != 0;
    match (sender, masked) {
        (Sender::Client, false) => return Err(WsError::Unmasked),
        (Sender::Server, true) => return Err(WsError::Masked),
        _ => {}
    }
    let (declared, mut header_len) = match b1 & 0x7F {
        126 if buf.len() < 4 => return Ok(None),
        126 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() < 10 => return Ok(None),
        127 => (
            u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")),
            10,
        ),
        short => (u64::from(short), 2),
    };
    if opcode.is_control() && (!fin || declared > 125) {
        return Err(WsError::BadControlFrame);
    }
    if !fin || opcode == Opcode::Continuation {
        return Err(WsError::Fragmented);
    }
    if declared > max_payload as u64 {
        return Err(WsError::TooLarge {
            len: declared,
            max: max_payload,
        });
    }
    let payload_len = declared as usize;
    let mask = if masked {
        if buf.len() < header_len + 4 {
            return Ok(None);
        }
        let mask: [u8; 4] = buf[header_len..header_len + 4].try_into().expect("4 bytes");
        header_len += 4;
        Some(mask)
    } else {
        None
    };
    let len = header_len + payload_len;
    if buf.len() < len {
        return Ok(None);
    }
    if let Some(mask) = mask {
        apply_mask(&mut buf[header_len..len], mask);
    }
    Ok(Some(Frame {
        opcode,
        payload: header_len..len,
        len,
    }))
}

/// XORs `data` with the 4-byte `mask`, as both sides of RFC 6455 section 5.3 do.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Appends the header of an unfragmented frame whose payload is `payload_len` bytes.
pub fn write_header(opcode: Opcode, payload_len: usize, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(0x80 | opcode.bits());
    match payload_len {
        0..=125 => out.push(mask_bit | payload_len as u8),
        126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
}

/// Appends a whole unmasked frame (as a server sends).
pub fn write_frame(opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
    write_header(opcode, payload.len(), None, out);
    out.extend_from_slice(payload);
}

/// Appends a whole masked frame (as a client sends).
pub fn write_masked_frame(opcode: Opcode, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    write_header(opcode, payload.len(), Some(mask), out);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// Appends a binary frame holding the protobuf encoding of `message`, encoded in place.
pub fn write_message<M: prost::Message>(message: &M, out: &mut Vec<u8>) {
    write_header(Opcode::Binary, message.encoded_len(), None, out);
    crate::frame::encode_into(message, out);
}

/// Appends an unmasked Close frame with a status code and a reason (cut to fit 125 bytes).
pub fn write_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    write_header(Opcode::Close, 2 + cut, None, out);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..cut]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REQUEST: &[u8] = b"GET /v1/connect HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn handshake_matches_rfc_example() {
        let (handshake, used) = parse_handshake(REQUEST).unwrap().unwrap();
        assert_eq!(used, REQUEST.len());
        assert_eq!(handshake.path, "/v1/connect");
        // The example of RFC 6455 section 1.3.
        assert_eq!(handshake.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(parse_handshake(&REQUEST[..40]).unwrap(), None);
    }

    #[test]
    fn handshake_refuses_plain_http_and_huge_requests() {
        let plain = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(matches!(
            parse_handshake(plain),
            Err(WsError::BadHandshake(_))
        ));
        let huge = vec![b'a'; MAX_HANDSHAKE_BYTES + 1];
        assert!(parse_handshake(&huge).is_err());
        let mut long_header = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long_header.extend(std::iter::repeat_n(b'a', MAX_HANDSHAKE_BYTES));
        assert_eq!(
            parse_handshake(&long_header),
            Err(WsError::HandshakeTooLarge)
        );
    }

    #[test]
    fn refuses_bad_frames() {
        let mut unmasked = Vec::new();
        write_frame(Opcode::Binary, b"hi", &mut unmasked);
        assert_eq!(
            decode_frame(&mut unmasked, 100, Sender::Client),
            Err(WsError::Unmasked)
        );
        let mut big = Vec::new();
        write_header(Opcode::Binary, 1 << 20, Some([1, 2, 3, 4]), &mut big);
        assert!(matches!(
            decode_frame(&mut big, 4096, Sender::Client),
            Err(WsError::TooLarge { .. })
        ));
        let mut fragment = vec![0x02, 0x80, 1, 2, 3, 4];
        assert_eq!(
            decode_frame(&mut fragment, 100, Sender::Client),
            Err(WsError::Fragmented)
        );
        let mut reserved = vec![0xC2, 0x80, 1, 2, 3, 4];
        assert_eq!(
            decode_frame(&mut reserved, 100, Sender::Client),
            Err(WsError::ReservedBits)
        );
    }

    proptest! {
        #[test]
        fn masked_frames_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..70_000), mask: [u8; 4], split in 0usize..70_010) {
            let mut wire = Vec::new();
            write_masked_frame(Opcode::Binary, &payload, mask, &mut wire);
            let cut = split.min(wire.len());
            if cut < wire.len() {
                let mut partial = wire[..cut].to_vec();
                prop_assert_eq!(decode_frame(&mut partial, 70_000, Sender::Client).unwrap(), None);
            }
            let frame = decode_frame(&mut wire, 70_000, Sender::Client).unwrap().unwrap();
            prop_assert_eq!(frame.len, wire.len());
            prop_assert_eq!(&wire[frame.payload], &payload[..]);
        }

        #[test]
        fn decoder_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_frame(&mut bytes.clone(), 128, Sender::Client);
            let _ = decode_frame(&mut bytes, 128, Sender::Server);
        }
    }
}

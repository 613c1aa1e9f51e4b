//! Encoding and decoding of device frames under a size limit.

use prost::Message;

use crate::device::{ClientFrame, ServerFrame};

/// The default largest frame a device may send, and the default largest payload a
/// controller accepts (4 KiB), configurable per deployment.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 4096;

/// Room a frame needs beside its payload (ids, times, content type, protobuf tags).
pub const FRAME_OVERHEAD_BYTES: usize = 256;

/// Why a frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame does not decode: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("frame carries no message")]
    Empty,
}

/// Decodes a frame sent by a device.
pub fn decode_client(bytes: &[u8], max_len: usize) -> Result<ClientFrame, FrameError> {
    decode(bytes, max_len)
}

/// Decodes a frame sent by a connector.
pub fn decode_server(bytes: &[u8], max_len: usize) -> Result<ServerFrame, FrameError> {
    decode(bytes, max_len)
}

fn decode<M: Message + Default + HasKind>(bytes: &[u8], max_len: usize) -> Result<M, FrameError> {
    if bytes.len() > max_len {
        return Err(FrameError::TooLarge {
            len: bytes.len(),
            max: max_len,
        });
    }
    let frame = M::decode(bytes)?;
    if !frame.has_kind() {
        return Err(FrameError::Empty);
    }
    Ok(frame)
}

trait HasKind {
    fn has_kind(&self) -> bool;
}

impl HasKind for ClientFrame {
    fn has_kind(&self) -> bool {
        self.kind.is_some()
    }
}

impl HasKind for ServerFrame {
    fn has_kind(&self) -> bool {
        self.kind.is_some()
    }
}

/// Appends the protobuf encoding of `frame` to `out`.
pub fn encode_into<M: Message>(frame: &M, out: &mut Vec<u8>) {
    out.reserve(frame.encoded_len());
    frame
        .encode(out)
        .expect("a Vec grows to fit any frame, so encoding cannot run out of room");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Ack, Hello, client_frame};

    #[test]
    fn refuses_oversized_and_empty_frames() {
        let frame = ClientFrame {
            kind: Some(client_frame::Kind::Ack(Ack {
                up_to_seq: 5,
                ..Default::default()
            })),
        };
        let mut bytes = Vec::new();
        encode_into(&frame, &mut bytes);
        assert_eq!(decode_client(&bytes, 100).unwrap(), frame);
        assert!(matches!(
            decode_client(&bytes, 1),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(decode_client(&[], 100), Err(FrameError::Empty)));
        assert!(matches!(
            decode_client(&[0xff, 0xff, 0xff], 100),
            Err(FrameError::Malformed(_))
        ));
        let hello = ClientFrame {
            kind: Some(client_frame::Kind::Hello(Hello {
                device_id: "x".into(),
                ..Default::default()
            })),
        };
        let mut bytes = Vec::new();
        encode_into(&hello, &mut bytes);
        assert_eq!(decode_client(&bytes, 100).unwrap(), hello);
    }
}

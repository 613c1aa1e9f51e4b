//! Sealed payloads: what a device's app reads, encrypted to that one device, so that
//! connectors and the store hold only ciphertext.
//!
//! Each device makes an X25519 key pair when it registers and gives the controller the
//! public half; the controller seals every message to it with HPKE (RFC 9180, base mode:
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305), a fresh ephemeral key per
//! message, and the device opens it with its secret half. The ciphertext is bound to the
//! device id (the AEAD's associated data). What is sealed is a [`SealedContent`]: the payload,
//! its content type and the notification; routing fields (ids, seqs, expiry, collapse key,
//! priority, campaign) stay in the clear because connectors need them.
//!
//! Envelope (a Push's `payload` when its content type is [`SEALED_CONTENT_TYPE`]):
//!
//! ```text
//! 0x01 | encapsulated key (32 bytes) | HPKE ciphertext and tag of:
//!        compression (1 byte: 0 none, 1 LZ4 block) | [LZ4: opened length, u32 LE] | body
//! ```
//!
//! where the body is the encoded `SealedContent`. Bodies of [`COMPRESS_FROM_BYTES`] and more
//! are compressed when the device said it can decompress LZ4, and only if that is smaller.
//!
//! Does not own: which apps seal or where device keys are kept (the controller and store).

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use prost::Message;

use crate::DeviceId;
use crate::device::SealedContent;

/// The content type of a sealed Push.
pub const SEALED_CONTENT_TYPE: &str = "application/vnd.ringpush.sealed";
/// Bytes of a public or secret key.
pub const KEY_LEN: usize = 32;
/// Bytes a sealed envelope adds to its (compressed) body: version, key, compression, tag.
pub const SEAL_OVERHEAD_BYTES: usize = 1 + KEY_LEN + 1 + 16;
/// Bodies this long or longer are compressed, when the device can decompress.
pub const COMPRESS_FROM_BYTES: usize = 128;
/// The largest body a device opens: a compressed body claiming more is refused unread.
pub const MAX_OPENED_BYTES: usize = 1 << 20;

const ENVELOPE_VERSION: u8 = 1;
const INFO: &[u8] = b"ringpush seal v1";
const UNCOMPRESSED: u8 = 0;
const LZ4: u8 = 1;

/// Why a payload could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The recipient key is a low-order point (registration refuses those; a store can
    /// still hold one if it was altered).
    #[error("the device's sealing key is not a usable X25519 public key")]
    WeakKey,
}

/// Why a sealed payload could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the sealed payload is malformed: {0}")]
    Malformed(&'static str),
    /// Not sealed to this device's key (or altered on the way).
    #[error("the sealed payload does not open with this device's key")]
    NotForThisKey,
}

/// A device's public key, as registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; KEY_LEN]);

/// A device's secret key; never leaves the device.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub [u8; KEY_LEN]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl PublicKey {
    /// The key from its 32 bytes; `None` if X25519 refuses them (a low-order point, such as
    /// all zeros, would make every seal to it readable).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Option<PublicKey> {
        let key = <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(&bytes).ok()?;
        // The KEM checks the shared secret, not the point: seal once to find out.
        hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeS::Base,
            &key,
            INFO,
            b"",
            b"",
        )
        .ok()?;
        Some(PublicKey(bytes))
    }
}

/// A new key pair for a device.
pub fn generate_keypair() -> (SecretKey, PublicKey) {
    let (secret, public) = X25519HkdfSha256::gen_keypair();
    (
        SecretKey(secret.to_bytes().into()),
        PublicKey(public.to_bytes().into()),
    )
}

impl SecretKey {
    /// The public half of this key.
    pub fn public_key(&self) -> PublicKey {
        let secret = <X25519HkdfSha256 as Kem>::PrivateKey::from_bytes(&self.0)
            .expect("any 32 bytes are an X25519 secret");
        PublicKey(X25519HkdfSha256::sk_to_pk(&secret).to_bytes().into())
    }
}

/// Seals `content` to `device`, whose public key is `recipient`; compresses its body first
/// when `device_decompresses` and it is long enough for that to pay.
pub fn seal(
    recipient: &PublicKey,
    device: DeviceId,
    content: &SealedContent,
    device_decompresses: bool,
) -> Result<Vec<u8>, SealError> {
    let body = content.encode_to_vec();
    let mut plaintext = Vec::with_capacity(body.len() + 5);
    let compressed = (device_decompresses && body.len() >= COMPRESS_FROM_BYTES)
        .then(|| lz4_flex::block::compress(&body))
        .filter(|compressed| compressed.len() + 4 < body.len());
    match compressed {
        Some(compressed) => {
            plaintext.push(LZ4);
            plaintext.extend_from_slice(&(body.len() as u32).to_le_bytes());
            plaintext.extend_from_slice(&compressed);
        }
        None => {
            plaintext.push(UNCOMPRESSED);
            plaintext.extend_from_slice(&body);
        }
    }
    let key = <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(&recipient.0)
        .map_err(|_| SealError::WeakKey)?;
    let (encapped, ciphertext) =
        hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeS::Base,
            &key,
            INFO,
            &plaintext,
            &device.0.to_be_bytes(),
        )
        .map_err(|_| SealError::WeakKey)?;
    let mut envelope = Vec::with_capacity(1 + KEY_LEN + ciphertext.len());
    envelope.push(ENVELOPE_VERSION);
    envelope.extend_from_slice(&encapped.to_bytes());
    envelope.extend_from_slice(&ciphertext);
    Ok(envelope)
}

/// Opens an envelope sealed to `device` under `secret`'s public half.
pub fn open(
    secret: &SecretKey,
    device: DeviceId,
    envelope: &[u8],
) -> Result<SealedContent, OpenError> {
    let (&version, rest) = envelope
        .split_first()
        .ok_or(OpenError::Malformed("empty"))?;
    if version != ENVELOPE_VERSION {
        return Err(OpenError::Malformed("unknown envelope version"));
    }
    if rest.len() < KEY_LEN {
        return Err(OpenError::Malformed("shorter than its key"));
    }
    let (encapped, ciphertext) = rest.split_at(KEY_LEN);
    let encapped = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(encapped)
        .map_err(|_| OpenError::Malformed("bad encapsulated key"))?;
    let secret = <X25519HkdfSha256 as Kem>::PrivateKey::from_bytes(&secret.0)
        .map_err(|_| OpenError::NotForThisKey)?;
    let plaintext = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &secret,
        &encapped,
        INFO,
        ciphertext,
        &device.0.to_be_bytes(),
    )
    .map_err(|_| OpenError::NotForThisKey)?;
    let (&compression, rest) = plaintext
        .split_first()
        .ok_or(OpenError::Malformed("no compression byte"))?;
    let body = match compression {
        UNCOMPRESSED => rest.to_vec(),
        LZ4 => {
            let (length, compressed) = rest
                .split_first_chunk::<4>()
                .ok_or(OpenError::Malformed("no opened length"))?;
            let length = u32::from_le_bytes(*length) as usize;
            if length > MAX_OPENED_BYTES {
                return Err(OpenError::Malformed("opens to more than 1 MiB"));
            }
            lz4_flex::block::decompress(compressed, length)
                .map_err(|_| OpenError::Malformed("bad LZ4 block"))?
        }
        _ => return Err(OpenError::Malformed("unknown compression")),
    };
    SealedContent::decode(body.as_slice()).map_err(|_| OpenError::Malformed("bad content"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Notification;

    fn content(payload: &[u8]) -> SealedContent {
        SealedContent {
            payload: payload.to_vec(),
            content_type: "text/plain; charset=utf-8".into(),
            notification: Some(Notification {
                title: "Hello".into(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_sealed_payload_opens_with_its_device_key_only() {
        let (secret, public) = generate_keypair();
        assert_eq!(secret.public_key(), public);
        let device = DeviceId(7);
        let sealed = seal(&public, device, &content(b"secret words"), false).unwrap();
        assert!(!sealed.windows(12).any(|w| w == b"secret words"));
        assert_eq!(
            open(&secret, device, &sealed).unwrap(),
            content(b"secret words")
        );
        // Another device's key, or the same key under another device id, opens nothing.
        let (other, _) = generate_keypair();
        assert_eq!(open(&other, device, &sealed), Err(OpenError::NotForThisKey));
        assert_eq!(
            open(&secret, DeviceId(8), &sealed),
            Err(OpenError::NotForThisKey)
        );
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(
            open(&secret, device, &altered),
            Err(OpenError::NotForThisKey)
        );
        // Each seal draws a fresh key: the same content never seals the same way twice.
        assert_ne!(
            seal(&public, device, &content(b"secret words"), false).unwrap(),
            sealed
        );
    }

    #[test]
    fn long_bodies_are_compressed_only_for_devices_that_decompress() {
        let (secret, public) = generate_keypair();
        let device = DeviceId(1);
        let long = content("la ".repeat(400).as_bytes());
        let plain = seal(&public, device, &long, false).unwrap();
        let compressed = seal(&public, device, &long, true).unwrap();
        assert!(
            compressed.len() * 4 < plain.len(),
            "{} vs {}",
            compressed.len(),
            plain.len()
        );
        assert_eq!(open(&secret, device, &compressed).unwrap(), long);
        assert_eq!(open(&secret, device, &plain).unwrap(), long);
        // Short bodies are sent as they are: compressing them would cost more than it saves.
        let short = content(b"hi");
        let sealed = seal(&public, device, &short, true).unwrap();
        assert_eq!(
            sealed.len(),
            short.encoded_len() + SEAL_OVERHEAD_BYTES,
            "uncompressed"
        );
    }

    #[test]
    fn malformed_envelopes_are_refused_without_panicking() {
        let (secret, _) = generate_keypair();
        let device = DeviceId(1);
        for bad in [&b""[..], &[2u8; 60], &[1u8; 20], &[1u8; 33]] {
            assert!(open(&secret, device, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn weak_public_keys_are_refused() {
        assert_eq!(PublicKey::from_bytes([0; KEY_LEN]), None);
        let (_, public) = generate_keypair();
        assert_eq!(PublicKey::from_bytes(public.0), Some(public));
    }
}

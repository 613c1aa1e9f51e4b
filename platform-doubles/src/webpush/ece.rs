//! The browser's side of Web Push encryption: decrypting an `aes128gcm` body (RFC 8188)
//! with the receiver's P-256 key and auth secret (RFC 8291), on RustCrypto (p256, hkdf,
//! aes-gcm), independently of the product's `ring` implementation.
//!
//! Does not own: encryption (only the product encrypts), messages of several records (a
//! Web Push message is one record of at most 4096 bytes).

use aes_gcm::aead::Aead;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

const SALT_LEN: usize = 16;
/// salt (16) || rs (4) || idlen (1), before the key id.
const FIXED_HEADER_LEN: usize = SALT_LEN + 4 + 1;
/// RFC 8291: the key id is the sender's uncompressed P-256 point.
const SENDER_KEY_LEN: usize = 65;
const TAG_LEN: usize = 16;

/// Why a body could not be decrypted; a push service answers 400 for any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("the receiver's private key is not a P-256 scalar")]
    ReceiverKey,
    #[error("the aes128gcm header is truncated or its record size is below 18")]
    Header,
    #[error("the key id is not an uncompressed P-256 point")]
    SenderKey,
    #[error("the body holds more than one record")]
    SeveralRecords,
    #[error("the record does not authenticate (wrong keys or tampered)")]
    Authentication,
    #[error("the record does not end with the last-record delimiter 0x02")]
    Padding,
}

/// Decrypts `body` for the receiver whose private scalar is `ua_private_key` (32 bytes) and
/// whose auth secret is `auth_secret`: the plaintext, padding removed.
pub fn decrypt_aes128gcm(
    body: &[u8],
    ua_private_key: &[u8],
    auth_secret: &[u8],
) -> Result<Vec<u8>, DecryptError> {
    let receiver = SecretKey::from_slice(ua_private_key).map_err(|_| DecryptError::ReceiverKey)?;
    decrypt(body, &receiver, auth_secret)
}

pub(crate) fn decrypt(
    body: &[u8],
    receiver: &SecretKey,
    auth_secret: &[u8],
) -> Result<Vec<u8>, DecryptError> {
    let header = body.get(..FIXED_HEADER_LEN).ok_or(DecryptError::Header)?;
    let (salt, rest) = header.split_at(SALT_LEN);
    let record_size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let key_id_len = usize::from(rest[4]);
    if record_size < 1 + TAG_LEN + 1 {
        return Err(DecryptError::Header);
    }
    let key_id = body
        .get(FIXED_HEADER_LEN..FIXED_HEADER_LEN + key_id_len)
        .ok_or(DecryptError::Header)?;
    let record = &body[FIXED_HEADER_LEN + key_id_len..];
    if key_id_len != SENDER_KEY_LEN {
        return Err(DecryptError::SenderKey);
    }
    if record.len() > record_size {
        return Err(DecryptError::SeveralRecords);
    }
    let sender = PublicKey::from_sec1_bytes(key_id).map_err(|_| DecryptError::SenderKey)?;

    let shared = p256::ecdh::diffie_hellman(receiver.to_nonzero_scalar(), sender.as_affine());
    let receiver_public = receiver.public_key().to_encoded_point(false);
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(receiver_public.as_bytes());
    key_info.extend_from_slice(key_id);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth_secret), shared.raw_secret_bytes())
        .expand(&key_info, &mut ikm)
        .map_err(|_| DecryptError::Header)?;
    let content = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    content
        .expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .and_then(|()| content.expand(b"Content-Encoding: nonce\0", &mut nonce))
        .map_err(|_| DecryptError::Header)?;

    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| DecryptError::Header)?;
    let mut plaintext = cipher
        .decrypt(Nonce::from_slice(&nonce), record)
        .map_err(|_| DecryptError::Authentication)?;
    // RFC 8188 section 2: the plaintext, a delimiter (2 in the last record), zero padding.
    while plaintext.last() == Some(&0) {
        plaintext.pop();
    }
    match plaintext.pop() {
        Some(0x02) => Ok(plaintext),
        _ => Err(DecryptError::Padding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn bytes(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).expect("base64url")
    }

    /// RFC 8291 section 5: the message, the receiver's private key and auth secret.
    const RFC_BODY: &str = concat!(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml",
        "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT",
        "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
    );
    const RFC_UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
    const RFC_AUTH_SECRET: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    #[test]
    fn the_rfc_8291_example_decrypts() {
        let plaintext = decrypt_aes128gcm(
            &bytes(RFC_BODY),
            &bytes(RFC_UA_PRIVATE),
            &bytes(RFC_AUTH_SECRET),
        );
        assert_eq!(
            plaintext.as_deref(),
            Ok(&b"When I grow up, I want to be a watermelon"[..])
        );
    }

    #[test]
    fn a_tampered_body_or_another_secret_fails() {
        let mut body = bytes(RFC_BODY);
        let last = body.len() - 1;
        body[last] ^= 1;
        let tampered = decrypt_aes128gcm(&body, &bytes(RFC_UA_PRIVATE), &bytes(RFC_AUTH_SECRET));
        assert_eq!(tampered, Err(DecryptError::Authentication));
        let other_secret = decrypt_aes128gcm(&bytes(RFC_BODY), &bytes(RFC_UA_PRIVATE), &[7; 16]);
        assert_eq!(other_secret, Err(DecryptError::Authentication));
        let truncated = decrypt_aes128gcm(&body[..30], &bytes(RFC_UA_PRIVATE), &[7; 16]);
        assert_eq!(truncated, Err(DecryptError::Header));
    }
}

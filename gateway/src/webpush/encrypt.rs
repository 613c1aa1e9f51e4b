//! Web Push message encryption (RFC 8291) in the `aes128gcm` content coding (RFC 8188), on
//! `ring`: an ephemeral P-256 key and a random salt per message, the keys derived from the
//! ECDH secret and the subscription's auth secret, one record sealed with AES-128-GCM.
//!
//! Split so that the derivation can be checked against RFC 8291's example: [`encrypt`] makes
//! the random parts (the ephemeral key, the salt) and hands the ECDH secret to
//! [`derive_content_keys`] and [`seal_single_record`], which take everything as arguments.
//!
//! Does not own: what the plaintext is (`message`), multi-record messages (a Web Push
//! message is at most one 4096-byte record), decryption (browsers do it; the test double
//! has its own, independent implementation).

use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::agreement::{ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey, agree_ephemeral};
use ring::hkdf::{HKDF_SHA256, KeyType, Salt};
use ring::rand::{SecureRandom, SystemRandom};

/// The record size written in the header; one record carries the whole message.
const RECORD_SIZE: u32 = 4096;
/// salt (16) || rs (4) || idlen (1) || keyid (the sender's 65-byte public point).
pub(crate) const HEADER_LEN: usize = SALT_LEN + 4 + 1 + PUBLIC_KEY_LEN;
/// The AES-GCM authentication tag at the end of the record.
const TAG_LEN: usize = 16;
/// What encryption adds to a plaintext: the header, the last-record delimiter (0x02) and
/// the tag; 86 + 1 + 16 = 103 bytes.
pub(crate) const OVERHEAD: usize = HEADER_LEN + 1 + TAG_LEN;
/// The largest body every push service must accept (RFC 8030 section 7.2, RFC 8291
/// section 4): header and record together.
pub(crate) const MAX_BODY_LEN: usize = 4096;
/// The largest plaintext that keeps the body within [`MAX_BODY_LEN`]: 4096 - 103 = 3993.
pub(crate) const MAX_PLAINTEXT_LEN: usize = MAX_BODY_LEN - OVERHEAD;

const SALT_LEN: usize = 16;
const AUTH_SECRET_LEN: usize = 16;
const PUBLIC_KEY_LEN: usize = 65;
const CEK_LEN: usize = 16;
const NONCE_LEN: usize = 12;
/// The delimiter that ends the plaintext of the last (here: only) record, before padding.
const LAST_RECORD_DELIMITER: u8 = 0x02;

/// Why a message could not be encrypted for a subscription.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EncryptError {
    #[error("the subscription's p256dh key is not an uncompressed P-256 point")]
    BadP256dh,
    #[error("the subscription's auth secret is not 16 bytes")]
    BadAuthSecret,
    #[error(
        "the plaintext ({0} bytes) is over the {MAX_PLAINTEXT_LEN} bytes a push service must accept"
    )]
    TooLarge(usize),
    #[error("the system's random number generator failed")]
    Randomness,
}

/// The content-encryption key and nonce of one message (RFC 8188 section 2.2 and 2.3).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ContentKeys {
    pub(crate) cek: [u8; CEK_LEN],
    pub(crate) nonce: [u8; NONCE_LEN],
}

/// Encrypts `plaintext` for the browser whose public key is `ua_public` (the subscription's
/// `p256dh`, 65 bytes) and whose auth secret is `auth_secret` (16 bytes): the whole
/// `aes128gcm` body, header included.
pub(crate) fn encrypt(
    plaintext: &[u8],
    ua_public: &[u8],
    auth_secret: &[u8],
) -> Result<Vec<u8>, EncryptError> {
    if ua_public.len() != PUBLIC_KEY_LEN || ua_public[0] != 0x04 {
        return Err(EncryptError::BadP256dh);
    }
    if auth_secret.len() != AUTH_SECRET_LEN {
        return Err(EncryptError::BadAuthSecret);
    }
    let random = SystemRandom::new();
    let mut salt = [0u8; SALT_LEN];
    random
        .fill(&mut salt)
        .map_err(|_| EncryptError::Randomness)?;
    let ephemeral =
        EphemeralPrivateKey::generate(&ECDH_P256, &random).map_err(|_| EncryptError::Randomness)?;
    let as_public = ephemeral
        .compute_public_key()
        .map_err(|_| EncryptError::Randomness)?;
    let as_public = as_public.as_ref();
    // ring refuses a peer point that is not on the curve: a subscription's key is the
    // browser's word, never trusted as valid.
    let keys = agree_ephemeral(
        ephemeral,
        &UnparsedPublicKey::new(&ECDH_P256, ua_public),
        |ecdh_secret| derive_content_keys(ecdh_secret, ua_public, as_public, auth_secret, &salt),
    )
    .map_err(|_| EncryptError::BadP256dh)?;
    seal_single_record(&keys, &salt, as_public, plaintext)
}

/// RFC 8291 section 3.3 and 3.4, then RFC 8188 section 2.2 and 2.3:
///
/// ```text
/// IKM   = HKDF(salt = auth_secret, IKM = ecdh_secret,
///              info = "WebPush: info" || 0x00 || ua_public || as_public, L = 32)
/// CEK   = HKDF(salt = salt, IKM, info = "Content-Encoding: aes128gcm" || 0x00, L = 16)
/// NONCE = HKDF(salt = salt, IKM, info = "Content-Encoding: nonce" || 0x00, L = 12)
/// ```
pub(crate) fn derive_content_keys(
    ecdh_secret: &[u8],
    ua_public: &[u8],
    as_public: &[u8],
    auth_secret: &[u8],
    salt: &[u8; SALT_LEN],
) -> ContentKeys {
    let mut ikm = [0u8; 32];
    hkdf_sha256(
        auth_secret,
        ecdh_secret,
        &[b"WebPush: info\0", ua_public, as_public],
        &mut ikm,
    );
    let mut keys = ContentKeys {
        cek: [0; CEK_LEN],
        nonce: [0; NONCE_LEN],
    };
    hkdf_sha256(
        salt,
        &ikm,
        &[b"Content-Encoding: aes128gcm\0"],
        &mut keys.cek,
    );
    hkdf_sha256(salt, &ikm, &[b"Content-Encoding: nonce\0"], &mut keys.nonce);
    keys
}

/// The `aes128gcm` body (RFC 8188 section 2): `salt || rs || idlen || keyid` with the
/// sender's public key as key id, then one record, `plaintext || 0x02`, sealed (no padding).
pub(crate) fn seal_single_record(
    keys: &ContentKeys,
    salt: &[u8; SALT_LEN],
    as_public: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, EncryptError> {
    debug_assert_eq!(as_public.len(), PUBLIC_KEY_LEN);
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(EncryptError::TooLarge(plaintext.len()));
    }
    let mut body = Vec::with_capacity(OVERHEAD + plaintext.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(PUBLIC_KEY_LEN as u8);
    body.extend_from_slice(as_public);
    let mut record = Vec::with_capacity(plaintext.len() + 1 + TAG_LEN);
    record.extend_from_slice(plaintext);
    record.push(LAST_RECORD_DELIMITER);
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_128_GCM, &keys.cek).expect("a 16-byte key is an AES-128 key"),
    );
    // One key and nonce per message: the CEK comes from a fresh salt and ephemeral key.
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(keys.nonce),
        Aad::empty(),
        &mut record,
    )
    .expect("a record of at most 4096 bytes is within AES-GCM's limit");
    body.extend_from_slice(&record);
    Ok(body)
}

/// An HKDF output length (ring names lengths by the type of key they make).
struct OutputLength(usize);

impl KeyType for OutputLength {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA-256 (RFC 5869): extract with `salt` from `secret`, expand `info` into `out`.
fn hkdf_sha256(salt: &[u8], secret: &[u8], info: &[&[u8]], out: &mut [u8]) {
    Salt::new(HKDF_SHA256, salt)
        .extract(secret)
        .expand(info, OutputLength(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF-SHA-256 expands to at most 32 bytes here, far under its limit");
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringpush_protocol::platform::decode_base64url;

    fn bytes(base64url: &str) -> Vec<u8> {
        decode_base64url(base64url).expect("test vector in base64url")
    }

    /// RFC 8291 section 5 (and appendix A's intermediate values).
    const RFC_PLAINTEXT: &[u8] = b"When I grow up, I want to be a watermelon";
    const RFC_UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const RFC_AS_PUBLIC: &str =
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
    const RFC_AUTH_SECRET: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const RFC_SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const RFC_ECDH_SECRET: &str = "kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs";
    const RFC_CEK: &str = "oIhVW04MRdy2XN9CiKLxTg";
    const RFC_NONCE: &str = "4h_95klXJ5E_qnoN";
    const RFC_BODY: &str = concat!(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml",
        "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT",
        "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
    );

    fn rfc_salt() -> [u8; SALT_LEN] {
        bytes(RFC_SALT).try_into().expect("16 bytes")
    }

    /// The keys derived from the RFC's example inputs.
    fn rfc_content_keys() -> ContentKeys {
        derive_content_keys(
            &bytes(RFC_ECDH_SECRET),
            &bytes(RFC_UA_PUBLIC),
            &bytes(RFC_AS_PUBLIC),
            &bytes(RFC_AUTH_SECRET),
            &rfc_salt(),
        )
    }

    #[test]
    fn the_key_derivation_matches_rfc_8291_section_5() {
        let keys = rfc_content_keys();
        assert_eq!(keys.cek.to_vec(), bytes(RFC_CEK));
        assert_eq!(keys.nonce.to_vec(), bytes(RFC_NONCE));
    }

    #[test]
    fn the_sealed_message_matches_rfc_8291_section_5_byte_for_byte() {
        let keys = rfc_content_keys();
        let body = seal_single_record(&keys, &rfc_salt(), &bytes(RFC_AS_PUBLIC), RFC_PLAINTEXT)
            .expect("fits");
        assert_eq!(body, bytes(RFC_BODY));
        assert_eq!(body.len(), RFC_PLAINTEXT.len() + OVERHEAD);
    }

    #[test]
    fn each_message_has_its_own_salt_and_ephemeral_key() {
        let ua_public = bytes(RFC_UA_PUBLIC);
        let auth = bytes(RFC_AUTH_SECRET);
        let first = encrypt(b"same text", &ua_public, &auth).expect("encrypts");
        let second = encrypt(b"same text", &ua_public, &auth).expect("encrypts");
        assert_eq!(first.len(), b"same text".len() + OVERHEAD);
        assert_ne!(first[..SALT_LEN], second[..SALT_LEN], "salts");
        assert_ne!(
            first[21..HEADER_LEN],
            second[21..HEADER_LEN],
            "ephemeral keys"
        );
        assert_eq!(&first[16..21], &[0, 0, 0x10, 0, 65], "rs 4096, idlen 65");
    }

    #[test]
    fn bad_subscription_keys_and_oversized_plaintexts_are_refused() {
        let auth = bytes(RFC_AUTH_SECRET);
        let not_on_the_curve = [4u8; 65];
        assert_eq!(
            encrypt(b"x", &not_on_the_curve, &auth),
            Err(EncryptError::BadP256dh)
        );
        assert_eq!(
            encrypt(b"x", &bytes(RFC_UA_PUBLIC), &auth[..15]),
            Err(EncryptError::BadAuthSecret)
        );
        let largest = vec![b'a'; 3993];
        let body = encrypt(&largest, &bytes(RFC_UA_PUBLIC), &auth).expect("fits");
        assert_eq!(body.len(), 4096);
        let one_more = vec![b'a'; largest.len() + 1];
        assert_eq!(
            encrypt(&one_more, &bytes(RFC_UA_PUBLIC), &auth),
            Err(EncryptError::TooLarge(one_more.len()))
        );
    }
}

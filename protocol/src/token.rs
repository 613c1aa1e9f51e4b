//! Device tokens: what a device presents in its Hello to prove it is the device it names.
//!
//! A token is signed by one of its app's token-signing keys (HMAC-SHA256 over the device id,
//! the key id and the token's lifetime) and so is bound to one device and one key, and
//! expires. Text form, all ASCII:
//!
//! ```text
//! dt1.<key id>.<issued at, ms>.<expires at, ms>.<signature: 43 characters of base64url>
//! ```
//!
//! This module parses, signs and checks the signature; which keys are live, and what to do
//! with a token near its expiry, is the caller's policy (see `ringpush_store::AppRecord`).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::DeviceId;

/// The version prefix of every token this build signs.
const PREFIX: &str = "dt1";
/// The longest key id a token may name.
pub const MAX_KEY_ID_LEN: usize = 40;
/// The longest token text accepted (a little above the longest a valid one can be).
pub const MAX_TOKEN_LEN: usize = 160;
/// The latest time a token may name (ms since the epoch): times are at most 15 digits, so
/// a token stays under [`MAX_TOKEN_LEN`] (this is the year 33658).
pub const MAX_TIME_MS: i64 = 999_999_999_999_999;
/// Bytes of a token-signing key.
pub const SECRET_LEN: usize = 32;

/// Why a token text is not a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the device token is malformed: {0}")]
    Malformed(&'static str),
}

/// A parsed device token; its signature is not checked until [`DeviceToken::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceToken<'a> {
    /// The token-signing key that signed it.
    pub key_id: &'a str,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    signature: [u8; 32],
}

impl<'a> DeviceToken<'a> {
    /// Parses a token's text form; answers what is wrong with it, never panics.
    pub fn parse(text: &'a str) -> Result<Self, TokenError> {
        if text.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("too long"));
        }
        let mut parts = text.split('.');
        let (Some(prefix), Some(key_id), Some(issued), Some(expires), Some(signature), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed("expected five dot-separated parts"));
        };
        if prefix != PREFIX {
            return Err(TokenError::Malformed("unknown version (expected dt1)"));
        }
        if !valid_key_id(key_id) {
            return Err(TokenError::Malformed("bad key id"));
        }
        let issued_at_ms = millis(issued).ok_or(TokenError::Malformed("bad issue time"))?;
        let expires_at_ms = millis(expires).ok_or(TokenError::Malformed("bad expiry time"))?;
        if expires_at_ms <= issued_at_ms {
            return Err(TokenError::Malformed("expires before it was issued"));
        }
        let mut decoded = [0u8; 33];
        let signature = match URL_SAFE_NO_PAD.decode_slice(signature, &mut decoded) {
            Ok(32) => decoded[..32].try_into().expect("32 bytes"),
            _ => return Err(TokenError::Malformed("bad signature encoding")),
        };
        Ok(Self {
            key_id,
            issued_at_ms,
            expires_at_ms,
            signature,
        })
    }

    /// Signs a token for `device` with the key `key_id` whose secret is `secret`.
    ///
    /// The caller keeps to what [`DeviceToken::parse`] accepts: a valid key id
    /// ([`valid_key_id`]) and `0 <= issued_at_ms < expires_at_ms <= MAX_TIME_MS`.
    pub fn sign(
        device: DeviceId,
        key_id: &str,
        secret: &[u8; SECRET_LEN],
        issued_at_ms: i64,
        expires_at_ms: i64,
    ) -> String {
        debug_assert!(
            valid_key_id(key_id),
            "key ids are checked where they are made"
        );
        debug_assert!(
            0 <= issued_at_ms && issued_at_ms < expires_at_ms && expires_at_ms <= MAX_TIME_MS,
            "token times out of range: {issued_at_ms}..{expires_at_ms}"
        );
        let signature = mac(device, key_id, secret, issued_at_ms, expires_at_ms).finalize();
        DeviceToken {
            key_id,
            issued_at_ms,
            expires_at_ms,
            signature: signature.into_bytes().into(),
        }
        .to_string()
    }

    /// Whether `secret` signed this token for `device` (in constant time).
    pub fn verify(&self, device: DeviceId, secret: &[u8; SECRET_LEN]) -> bool {
        mac(
            device,
            self.key_id,
            secret,
            self.issued_at_ms,
            self.expires_at_ms,
        )
        .verify_slice(&self.signature)
        .is_ok()
    }

    /// How long the token was issued for.
    pub fn lifetime_ms(&self) -> i64 {
        self.expires_at_ms - self.issued_at_ms
    }
}

/// The text form, which [`DeviceToken::parse`] reads back: a token has exactly one (the
/// numbers are canonical and the signature's base64 has no padding or stray bits).
impl fmt::Display for DeviceToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}.{}",
            self.key_id,
            self.issued_at_ms,
            self.expires_at_ms,
            URL_SAFE_NO_PAD.encode(self.signature)
        )
    }
}

/// Whether `id` may name a token-signing key: 1 to 40 of `[A-Za-z0-9_-]`.
pub fn valid_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

fn mac(
    device: DeviceId,
    key_id: &str,
    secret: &[u8; SECRET_LEN],
    issued_at_ms: i64,
    expires_at_ms: i64,
) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    let signed =
        format!("ringpush device token v1\n{device}\n{key_id}\n{issued_at_ms}\n{expires_at_ms}");
    mac.update(signed.as_bytes());
    mac
}

/// A non-negative number of milliseconds of at most 15 digits (so at most
/// [`MAX_TIME_MS`]), written one way only (no sign, no leading zero), so that a token has
/// one text form.
fn millis(text: &str) -> Option<i64> {
    let canonical = text == "0" || !text.starts_with('0');
    if text.is_empty()
        || text.len() > 15
        || !canonical
        || !text.bytes().all(|byte| byte.is_ascii_digit())
    {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];

    fn device(n: u128) -> DeviceId {
        DeviceId(n)
    }

    #[test]
    fn a_signed_token_parses_and_verifies_for_its_device_only() {
        let text = DeviceToken::sign(device(1), "tk_1", &SECRET, 1_000, 5_000);
        let token = DeviceToken::parse(&text).expect("parses");
        assert_eq!(token.key_id, "tk_1");
        assert_eq!((token.issued_at_ms, token.expires_at_ms), (1_000, 5_000));
        assert_eq!(token.lifetime_ms(), 4_000);
        assert_eq!(token.to_string(), text, "one text form");
        assert!(token.verify(device(1), &SECRET));
        assert!(!token.verify(device(2), &SECRET), "bound to one device");
        assert!(!token.verify(device(1), &[8; 32]), "bound to one key");
    }

    #[test]
    fn changing_any_part_breaks_the_signature() {
        let text = DeviceToken::sign(device(1), "tk_1", &SECRET, 1_000, 5_000);
        for (from, to) in [(".5000.", ".9000."), (".1000.", ".1001."), ("tk_1", "tk_2")] {
            let forged = text.replacen(from, to, 1);
            let token = DeviceToken::parse(&forged).expect("still well formed");
            assert!(!token.verify(device(1), &SECRET), "{forged}");
        }
    }

    #[test]
    fn malformed_tokens_say_why() {
        let good = DeviceToken::sign(device(1), "tk_1", &SECRET, 1_000, 5_000);
        let cases = [
            String::new(),
            "dt_0123456789abcdef".to_owned(),
            good.replacen("dt1", "dt2", 1),
            good.replacen("tk_1", "tk 1", 1),
            good.replacen(".1000.", ".-1000.", 1),
            good.replacen(".5000.", ".500.", 1),
            good.replacen(".1000.", ".01000.", 1),
            format!("{good}.extra"),
            good[..good.len() - 2].to_owned(),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ];
        for case in cases {
            assert!(DeviceToken::parse(&case).is_err(), "{case:?}");
        }
    }
}

//! Fuzzes device tokens (`ringpush_protocol::token`), which a connector parses from every
//! Hello before it knows who is calling.
//!
//! Checks, on the input as token text: parsing never panics; a text that parses is the one
//! text form of its token (`to_string` gives it back byte for byte, since numbers are
//! canonical and the signature's base64 has no padding or stray bits); its lifetime is
//! positive; verifying it against a fixed secret never panics, and a fuzzer-made text never
//! verifies (that would be a forged signature).
//!
//! On the input as signing parameters: a token `DeviceToken::sign` makes within its
//! documented domain (a valid key id, times of at most 15 digits, expiry after issue)
//! parses back to the same fields and verifies for its device and secret only.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringpush_protocol::DeviceId;
use ringpush_protocol::token::{DeviceToken, MAX_KEY_ID_LEN, MAX_TIME_MS, SECRET_LEN};

const SECRET: [u8; SECRET_LEN] = [0x5a; SECRET_LEN];
const DEVICE: DeviceId = DeviceId(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    if let Ok(token) = DeviceToken::parse(&text) {
        assert_eq!(token.to_string(), text, "a token has one text form");
        assert!(token.lifetime_ms() > 0);
        assert!(
            !token.verify(DEVICE, &SECRET),
            "the fuzzer forged a signature: {text}"
        );
    }
    sign_and_parse(input);
});

/// Reads signing parameters from the input and checks what `sign` makes of them.
fn sign_and_parse(input: &[u8]) {
    const KEY_ID_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    if input.len() < 16 + 8 + 8 + 32 + 1 {
        return;
    }
    let (device, rest) = input.split_at(16);
    let (issued, rest) = rest.split_at(8);
    let (lifetime, rest) = rest.split_at(8);
    let (secret, key_id) = rest.split_at(32);
    let device = DeviceId(u128::from_be_bytes(device.try_into().expect("16 bytes")));
    let secret: [u8; SECRET_LEN] = secret.try_into().expect("32 bytes");
    let key_id: String = key_id
        .iter()
        .take(MAX_KEY_ID_LEN)
        .map(|byte| char::from(KEY_ID_CHARS[usize::from(*byte) % KEY_ID_CHARS.len()]))
        .collect();
    let issued_at_ms =
        (u64::from_be_bytes(issued.try_into().expect("8 bytes")) % MAX_TIME_MS as u64) as i64;
    let room = (MAX_TIME_MS - issued_at_ms) as u64;
    let lifetime_ms = 1 + (u64::from_be_bytes(lifetime.try_into().expect("8 bytes")) % room) as i64;
    let expires_at_ms = issued_at_ms + lifetime_ms;

    let text = DeviceToken::sign(device, &key_id, &secret, issued_at_ms, expires_at_ms);
    let token = DeviceToken::parse(&text).expect("a signed token parses");
    assert_eq!(token.key_id, key_id);
    assert_eq!(
        (token.issued_at_ms, token.expires_at_ms),
        (issued_at_ms, expires_at_ms)
    );
    assert_eq!(token.to_string(), text);
    assert!(token.verify(device, &secret), "a signed token verifies");
    assert!(
        !token.verify(DeviceId(device.0 ^ 1), &secret),
        "bound to its device"
    );
    let mut other = secret;
    other[0] ^= 1;
    assert!(!token.verify(device, &other), "bound to its key");
}

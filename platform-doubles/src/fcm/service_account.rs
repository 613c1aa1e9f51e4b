//! Test-only Google service accounts: the JSON key file as Google issues it, signed by RSA
//! keys committed under `testdata/` (`fcm-test-only-*.pem`, made once with
//! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`; `ring` cannot generate
//! RSA keys and generating them in a debug build is slow).
//!
//! These keys protect nothing: they exist so tests can sign and verify.
//!
//! Does not own: checking anything (see [`super::oauth`]).

use rsa::pkcs8::DecodePrivateKey;
use rsa::{RsaPrivateKey, RsaPublicKey};

/// The project of the test service accounts.
pub const TEST_PROJECT_ID: &str = "ringpush-test";

/// The test service account's e-mail address (the JWT's `iss`).
pub const TEST_CLIENT_EMAIL: &str = "ringpush-gateway@ringpush-test.iam.gserviceaccount.com";

/// The private key of the test service account (test-only; committed on purpose).
pub(crate) const TEST_KEY_PEM: &str =
    include_str!("../../testdata/fcm-test-only-service-account-key.pem");

/// Another key, which no double is given: assertions signed with it are refused.
pub(crate) const UNTRUSTED_KEY_PEM: &str =
    include_str!("../../testdata/fcm-test-only-unknown-key.pem");

/// The test service account's JSON key file, whose `token_uri` is `token_uri`, and the
/// public key a double verifies its assertions with.
pub fn test_service_account(token_uri: &str) -> (String, RsaPublicKey) {
    let json = service_account_json(
        TEST_KEY_PEM,
        "6f1d1b9c0d3e4a5b8c7d6e5f4a3b2c1d0e9f8a7b",
        token_uri,
    );
    (json, test_public_key())
}

/// The public half of the test service account's key (what [`super::FcmDouble::start`] takes).
pub fn test_public_key() -> RsaPublicKey {
    RsaPrivateKey::from_pkcs8_pem(TEST_KEY_PEM)
        .expect("the committed test key is a PKCS#8 RSA key")
        .to_public_key()
}

/// The test service account as if its key had been replaced by one Google never saw: same
/// project and e-mail, another private key (and key id). A double refuses its assertions.
pub fn untrusted_service_account(token_uri: &str) -> String {
    service_account_json(
        UNTRUSTED_KEY_PEM,
        "0a0b0c0d0e0f1a1b1c1d1e1f2a2b2c2d2e2f3a3b",
        token_uri,
    )
}

fn service_account_json(private_key_pem: &str, private_key_id: &str, token_uri: &str) -> String {
    let client_x509_cert_url = format!(
        "https://www.googleapis.com/robot/v1/metadata/x509/{}",
        TEST_CLIENT_EMAIL.replace('@', "%40")
    );
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": TEST_PROJECT_ID,
        "private_key_id": private_key_id,
        "private_key": private_key_pem,
        "client_email": TEST_CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": client_x509_cert_url,
        "universe_domain": "googleapis.com",
    });
    serde_json::to_string_pretty(&json).expect("a JSON value serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_keys_parse_and_differ() {
        let trusted = test_public_key();
        let untrusted = RsaPrivateKey::from_pkcs8_pem(UNTRUSTED_KEY_PEM)
            .expect("the committed untrusted key parses")
            .to_public_key();
        assert_ne!(trusted, untrusted);
        let (json, _) = test_service_account("http://127.0.0.1:9/token");
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(parsed["token_uri"], "http://127.0.0.1:9/token");
        assert!(
            parsed["private_key"]
                .as_str()
                .is_some_and(|key| key.starts_with("-----BEGIN PRIVATE KEY-----"))
        );
    }
}

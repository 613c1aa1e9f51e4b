//! JSON Web Tokens signed with ES256 (APNs provider tokens, VAPID) and RS256 (Google's JWT
//! bearer grant), on `ring`, and the keys they are signed with.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;

use crate::GatewayError;

/// A P-256 key from a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, as in an APNs `.p8` file).
pub(crate) fn ec_key_from_pem(what: &'static str, pem: &str) -> Result<EcdsaKeyPair, GatewayError> {
    let der =
        PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|error| GatewayError::Key {
            what,
            detail: format!("not a PKCS#8 PEM private key ({error})"),
        })?;
    EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        der.secret_pkcs8_der(),
        &SystemRandom::new(),
    )
    .map_err(|error| GatewayError::Key {
        what,
        detail: format!("not a P-256 (ES256) key ({error})"),
    })
}

/// A P-256 key from its raw scalar (32 bytes) and uncompressed public point (65 bytes).
pub(crate) fn ec_key_from_raw(
    what: &'static str,
    private_key: &[u8],
    public_key: &[u8],
) -> Result<EcdsaKeyPair, GatewayError> {
    EcdsaKeyPair::from_private_key_and_public_key(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        private_key,
        public_key,
        &SystemRandom::new(),
    )
    .map_err(|error| GatewayError::Key {
        what,
        detail: format!("the private and public keys are not one P-256 key pair ({error})"),
    })
}

/// An RSA key from a PKCS#8 PEM (a Google service account's `private_key`).
pub(crate) fn rsa_key_from_pem(what: &'static str, pem: &str) -> Result<RsaKeyPair, GatewayError> {
    let der =
        PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|error| GatewayError::Key {
            what,
            detail: format!("not a PKCS#8 PEM private key ({error})"),
        })?;
    RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|error| GatewayError::Key {
        what,
        detail: format!("not an RSA key ({error})"),
    })
}

/// `header.claims.signature`, each base64url without padding.
fn signing_input(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A JWT signed with ES256 (`alg` is set here; the header gives the rest, e.g. `kid`).
pub(crate) fn sign_es256(
    key: &EcdsaKeyPair,
    mut header: serde_json::Value,
    claims: &serde_json::Value,
) -> String {
    header["alg"] = "ES256".into();
    header["typ"] = "JWT".into();
    let input = signing_input(&header, claims);
    let signature = key
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("ECDSA signing with the system's randomness");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// A JWT signed with RS256 (`alg` is set here).
pub(crate) fn sign_rs256(
    key: &RsaKeyPair,
    mut header: serde_json::Value,
    claims: &serde_json::Value,
) -> String {
    header["alg"] = "RS256".into();
    header["typ"] = "JWT".into();
    let input = signing_input(&header, claims);
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .expect("RSA signing into a buffer of the modulus's length");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Seconds since the Unix epoch, as JWTs count time.
pub(crate) fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, KeyPair, UnparsedPublicKey};

    #[test]
    fn an_es256_token_verifies_with_the_keys_public_half() {
        let pem = rcgen::KeyPair::generate()
            .expect("a P-256 key")
            .serialize_pem();
        let key = ec_key_from_pem("test key", &pem).expect("parses");
        let token = sign_es256(
            &key,
            serde_json::json!({"kid": "ABC123DEFG"}),
            &serde_json::json!({"iss": "TEAM", "iat": 1}),
        );
        let (input, signature) = token.rsplit_once('.').expect("three parts");
        let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key().as_ref())
            .verify(input.as_bytes(), &signature)
            .expect("valid signature");
        let header = input.split('.').next().expect("a header");
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url"))
                .expect("JSON");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], "ABC123DEFG");
    }

    #[test]
    fn a_key_that_is_not_pem_is_named_in_the_error() {
        let error = ec_key_from_pem("apns.private_key", "nope").expect_err("refused");
        assert!(
            error.to_string().starts_with("apns.private_key: "),
            "{error}"
        );
    }
}

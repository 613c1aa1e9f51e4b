//! Local servers that speak the platform push services' real protocols, for tests: Apple's
//! and Google's services and browsers' push services cannot be reached from a test machine,
//! so these stand in for them on loopback ports, checking what a real service checks
//! (headers, tokens, signatures, encryption) and answering what it answers (status codes,
//! JSON reasons, Retry-After).
//!
//! - [`apns`]: APNs's HTTP/2 API over TLS, verifying ES256 provider tokens;
//! - [`fcm`]: Google's OAuth 2 token endpoint (JWT bearer grant) and FCM's v1 send endpoint;
//! - [`webpush`]: an RFC 8030 push service that verifies VAPID and decrypts `aes128gcm`.
//!
//! Each records what it received and can be told to answer a given device with an error,
//! so tests can check retirement, backoff and retries. Uses RustCrypto (p256, aes-gcm) where
//! the product uses ring, so that one implementation checks the other.
//!
//! Does not own: anything the product runs. Never used outside tests and benchmarks.

pub mod apns;
pub mod fcm;
pub mod webpush;

//! Platform push services (APNs, FCM, Web Push): the token a device registers for each, and
//! the envelope in which a ringpush message rides inside a platform notification.
//!
//! A device that cannot hold its connection (an iOS app in the background, an Android phone
//! in Doze, a closed browser tab) registers its platform token beside its ringpush identity;
//! the controller's gateways then reach it through that service. The platform notification
//! carries an envelope: the very [`Push`] frame the connector would have written (base64 of
//! its protobuf encoding), so an SDK hands it to the app through the same de-duplication as
//! a socket push, whichever path came first. When the whole frame does not fit the service's
//! payload limit, the envelope names the message only, and the SDK fetches it by connecting.
//!
//! Envelope, as JSON text under the key [`ENVELOPE_KEY`] of the platform payload:
//! - `{"v":1,"push":"<base64 of the Push protobuf>"}`: the whole message;
//! - `{"v":1,"id":"<message id>","seq":7,"stream":0}`: too large to ride along.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message as _;
use serde::{Deserialize, Serialize};

use crate::device::Push;

/// The key of the platform payload that holds the ringpush envelope (APNs: a top-level key
/// beside `aps`; FCM: a `data` entry; Web Push: a key of the decrypted JSON).
pub const ENVELOPE_KEY: &str = "ringpush";

/// The envelope version this build writes and reads.
const ENVELOPE_VERSION: u32 = 1;

/// A device's address at one platform push service, as it registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "service", rename_all = "snake_case")]
pub enum PlatformToken {
    /// An APNs device token (hex, as the app gets it from `didRegisterForRemoteNotifications`).
    Apns {
        token: String,
        /// The app was built against APNs's sandbox (development builds): its token is only
        /// valid at the sandbox endpoint.
        #[serde(default)]
        sandbox: bool,
    },
    /// An FCM registration token.
    Fcm { token: String },
    /// A browser's Web Push subscription (`PushSubscription.toJSON()`).
    #[serde(rename = "webpush")]
    WebPush {
        endpoint: String,
        /// The browser's P-256 public key, base64url (65 bytes uncompressed).
        p256dh: String,
        /// The authentication secret, base64url (16 bytes).
        auth: String,
    },
}

/// The services ringpush reaches devices through, besides its own connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformService {
    Apns,
    Fcm,
    #[serde(rename = "webpush")]
    WebPush,
}

impl PlatformService {
    /// Every service, in a fixed order.
    pub const ALL: [PlatformService; 3] = [Self::Apns, Self::Fcm, Self::WebPush];

    /// `"apns"`, `"fcm"` or `"webpush"`: in the API, metrics and statistics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apns => "apns",
            Self::Fcm => "fcm",
            Self::WebPush => "webpush",
        }
    }
}

/// Why a platform token was refused at registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformTokenError {
    #[error("an APNs device token is 8 to 200 hexadecimal digits")]
    BadApnsToken,
    #[error("an FCM registration token is 1 to 4096 printable ASCII characters")]
    BadFcmToken,
    #[error("a Web Push endpoint is an https:// URL of at most 2048 characters")]
    BadEndpoint,
    #[error("a Web Push p256dh key is an uncompressed P-256 point (65 bytes) in base64url")]
    BadP256dh,
    #[error("a Web Push auth secret is 16 bytes in base64url")]
    BadAuth,
}

impl PlatformToken {
    /// The service this token belongs to.
    pub fn service(&self) -> PlatformService {
        match self {
            Self::Apns { .. } => PlatformService::Apns,
            Self::Fcm { .. } => PlatformService::Fcm,
            Self::WebPush { .. } => PlatformService::WebPush,
        }
    }

    /// Checks the token's shape (not that the service knows it: only a send tells that).
    /// `allow_http_endpoints` admits `http://` Web Push endpoints (local test services).
    pub fn validate(&self, allow_http_endpoints: bool) -> Result<(), PlatformTokenError> {
        match self {
            Self::Apns { token, .. } => {
                let ok = (8..=200).contains(&token.len())
                    && token.bytes().all(|byte| byte.is_ascii_hexdigit());
                ok.then_some(()).ok_or(PlatformTokenError::BadApnsToken)
            }
            Self::Fcm { token } => {
                let ok = (1..=4096).contains(&token.len())
                    && token.bytes().all(|byte| byte.is_ascii_graphic());
                ok.then_some(()).ok_or(PlatformTokenError::BadFcmToken)
            }
            Self::WebPush {
                endpoint,
                p256dh,
                auth,
            } => {
                let scheme_ok = endpoint.starts_with("https://")
                    || (allow_http_endpoints && endpoint.starts_with("http://"));
                if !scheme_ok || endpoint.len() > 2048 || endpoint.contains(char::is_whitespace) {
                    return Err(PlatformTokenError::BadEndpoint);
                }
                let p256dh = decode_base64url(p256dh).ok_or(PlatformTokenError::BadP256dh)?;
                if p256dh.len() != 65 || p256dh[0] != 4 {
                    return Err(PlatformTokenError::BadP256dh);
                }
                let auth = decode_base64url(auth).ok_or(PlatformTokenError::BadAuth)?;
                if auth.len() != 16 {
                    return Err(PlatformTokenError::BadAuth);
                }
                Ok(())
            }
        }
    }
}

/// Decodes base64url with or without padding (browsers give it without).
pub fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

/// What a platform notification carries of a ringpush message.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// The whole frame, as the connector would have written it.
    Whole(Push),
    /// Only which message it is: the SDK connects to fetch it.
    IdOnly {
        message_id: String,
        seq: u64,
        stream: u32,
    },
}

#[derive(Serialize, Deserialize)]
struct EnvelopeJson {
    v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    push: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stream: Option<u32>,
}

/// Why an envelope could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the envelope is not JSON of the expected shape: {0}")]
    Shape(String),
    #[error("envelope version {0} is newer than this SDK reads")]
    Version(u32),
    #[error("the envelope's push is not base64 of a Push frame")]
    Push,
}

impl Envelope {
    /// The envelope's JSON text: the whole frame when its text fits in `max_bytes`,
    /// otherwise only the message's id.
    pub fn encode(push: &Push, max_bytes: usize) -> String {
        let whole = EnvelopeJson {
            v: ENVELOPE_VERSION,
            push: Some(STANDARD.encode(push.encode_to_vec())),
            id: None,
            seq: None,
            stream: None,
        };
        let text = serde_json::to_string(&whole).expect("an envelope serializes");
        if text.len() <= max_bytes {
            return text;
        }
        let id_only = EnvelopeJson {
            v: ENVELOPE_VERSION,
            push: None,
            id: Some(push.message_id.clone()),
            seq: Some(push.seq),
            stream: Some(push.stream),
        };
        serde_json::to_string(&id_only).expect("an envelope serializes")
    }

    /// Reads an envelope's JSON text.
    pub fn decode(text: &str) -> Result<Envelope, EnvelopeError> {
        let json: EnvelopeJson =
            serde_json::from_str(text).map_err(|error| EnvelopeError::Shape(error.to_string()))?;
        if json.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(json.v));
        }
        if let Some(push) = json.push {
            let bytes = STANDARD.decode(push).map_err(|_| EnvelopeError::Push)?;
            let push = Push::decode(bytes.as_slice()).map_err(|_| EnvelopeError::Push)?;
            return Ok(Envelope::Whole(push));
        }
        match (json.id, json.seq) {
            (Some(message_id), Some(seq)) => Ok(Envelope::IdOnly {
                message_id,
                seq,
                stream: json.stream.unwrap_or(0),
            }),
            _ => Err(EnvelopeError::Shape(
                "neither push nor id and seq".to_owned(),
            )),
        }
    }

    /// The stream and sequence number of the message.
    pub fn position(&self) -> (u32, u64) {
        match self {
            Envelope::Whole(push) => (push.stream, push.seq),
            Envelope::IdOnly { seq, stream, .. } => (*stream, *seq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(payload_len: usize) -> Push {
        Push {
            message_id: "00000000000000ab-7".into(),
            seq: 7,
            payload: vec![b'x'; payload_len],
            content_type: "text/plain; charset=utf-8".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_small_push_rides_whole_and_a_large_one_by_id() {
        let small = push(100);
        let text = Envelope::encode(&small, 3000);
        assert_eq!(Envelope::decode(&text), Ok(Envelope::Whole(small)));
        let large = push(4000);
        let text = Envelope::encode(&large, 3000);
        assert!(text.len() < 100, "{text}");
        assert_eq!(
            Envelope::decode(&text),
            Ok(Envelope::IdOnly {
                message_id: "00000000000000ab-7".into(),
                seq: 7,
                stream: 0
            })
        );
    }

    #[test]
    fn envelopes_of_other_versions_or_shapes_are_refused() {
        assert_eq!(
            Envelope::decode(r#"{"v":2,"id":"a-1","seq":1}"#),
            Err(EnvelopeError::Version(2))
        );
        assert!(matches!(
            Envelope::decode(r#"{"v":1}"#),
            Err(EnvelopeError::Shape(_))
        ));
        assert_eq!(
            Envelope::decode(r#"{"v":1,"push":"!!"}"#),
            Err(EnvelopeError::Push)
        );
    }

    #[test]
    fn tokens_are_checked_for_shape() {
        let apns = |token: &str| PlatformToken::Apns {
            token: token.into(),
            sandbox: false,
        };
        assert!(apns(&"ab".repeat(32)).validate(false).is_ok());
        assert_eq!(
            apns("not hex!").validate(false),
            Err(PlatformTokenError::BadApnsToken)
        );
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([4u8; 65]);
        let auth = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([1u8; 16]);
        let web = |endpoint: &str| PlatformToken::WebPush {
            endpoint: endpoint.into(),
            p256dh: key.clone(),
            auth: auth.clone(),
        };
        assert!(web("https://push.example/abc").validate(false).is_ok());
        assert_eq!(
            web("http://127.0.0.1/abc").validate(false),
            Err(PlatformTokenError::BadEndpoint)
        );
        assert!(web("http://127.0.0.1/abc").validate(true).is_ok());
        let json = serde_json::to_string(&apns("abcdef0123")).unwrap();
        assert_eq!(
            json,
            r#"{"service":"apns","token":"abcdef0123","sandbox":false}"#
        );
    }
}

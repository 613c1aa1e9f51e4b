//! What an app configures for each platform service, and how its messages choose between
//! the ringpush connection and those services.
//!
//! Stored per app (as JSON) and set through the admin API; the secrets in it are never
//! answered back ([`AppGateways::public_view`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{GatewayError, jwt};

/// Token-based APNs authentication: a `.p8` signing key from the Apple developer account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsCredentials {
    /// The developer team's 10-character id (the JWT's `iss`).
    pub team_id: String,
    /// The key's 10-character id (the JWT's `kid`).
    pub key_id: String,
    /// The `.p8` file's text: a PKCS#8 PEM P-256 key.
    pub private_key: String,
    /// The app's bundle id (`apns-topic`); VoIP, complication and similar pushes append
    /// their suffix themselves.
    pub topic: String,
}

impl fmt::Debug for ApnsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApnsCredentials")
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .field("private_key", &"<redacted>")
            .field("topic", &self.topic)
            .finish()
    }
}

impl ApnsCredentials {
    /// Checks that the ids have Apple's shape and the key parses as a P-256 key.
    pub fn validate(&self) -> Result<(), GatewayError> {
        let ten_alphanumerics =
            |id: &str| id.len() == 10 && id.bytes().all(|byte| byte.is_ascii_alphanumeric());
        if !ten_alphanumerics(&self.team_id) {
            return Err(credentials_error(
                "apns.team_id",
                "a team id is 10 letters and digits",
            ));
        }
        if !ten_alphanumerics(&self.key_id) {
            return Err(credentials_error(
                "apns.key_id",
                "a key id is 10 letters and digits",
            ));
        }
        if self.topic.is_empty()
            || self.topic.len() > 255
            || self.topic.contains(char::is_whitespace)
        {
            return Err(credentials_error(
                "apns.topic",
                "the topic is the app's bundle id, e.g. com.example.app",
            ));
        }
        jwt::ec_key_from_pem("apns.private_key", &self.private_key).map(|_| ())
    }
}

/// A Google service account's JSON key file, as downloaded from the Firebase console
/// (fields ringpush does not use are ignored).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcmCredentials {
    pub project_id: String,
    pub client_email: String,
    /// PKCS#8 PEM RSA key.
    pub private_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_id: Option<String>,
    /// Where access tokens are granted (`https://oauth2.googleapis.com/token`).
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".to_owned()
}

impl fmt::Debug for FcmCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FcmCredentials")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("private_key", &"<redacted>")
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl FcmCredentials {
    /// Checks the fields ringpush needs and that the key parses as an RSA key.
    pub fn validate(&self) -> Result<(), GatewayError> {
        let project_ok = !self.project_id.is_empty()
            && self
                .project_id
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
        if !project_ok {
            return Err(credentials_error(
                "fcm.project_id",
                "the project id is letters, digits and dashes",
            ));
        }
        if !self.client_email.contains('@') {
            return Err(credentials_error(
                "fcm.client_email",
                "the service account's e-mail address is missing",
            ));
        }
        if !self.token_uri.starts_with("https://") && !self.token_uri.starts_with("http://") {
            return Err(credentials_error("fcm.token_uri", "not an HTTP(S) URL"));
        }
        jwt::rsa_key_from_pem("fcm.private_key", &self.private_key).map(|_| ())
    }
}

/// The application server's VAPID identity (RFC 8292): a P-256 key pair whose public half
/// browsers were given as `applicationServerKey` when they subscribed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VapidCredentials {
    /// A contact for the push service's operators: `mailto:` or `https:` URL (the JWT's `sub`).
    pub subject: String,
    /// The private scalar, base64url (32 bytes).
    pub private_key: String,
    /// The uncompressed public point, base64url (65 bytes).
    pub public_key: String,
}

impl fmt::Debug for VapidCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VapidCredentials")
            .field("subject", &self.subject)
            .field("private_key", &"<redacted>")
            .field("public_key", &self.public_key)
            .finish()
    }
}

impl VapidCredentials {
    /// Checks the subject and that the two keys form one P-256 key pair.
    pub fn validate(&self) -> Result<(), GatewayError> {
        if !self.subject.starts_with("mailto:") && !self.subject.starts_with("https://") {
            return Err(credentials_error(
                "webpush.subject",
                "the subject is a mailto: or https: contact",
            ));
        }
        self.key_pair().map(|_| ())
    }

    /// The signing key.
    pub(crate) fn key_pair(&self) -> Result<ring::signature::EcdsaKeyPair, GatewayError> {
        use ringpush_protocol::platform::decode_base64url;
        let private_key = decode_base64url(&self.private_key)
            .filter(|key| key.len() == 32)
            .ok_or_else(|| {
                credentials_error("webpush.private_key", "32 bytes in base64url expected")
            })?;
        let public_key = decode_base64url(&self.public_key)
            .filter(|key| key.len() == 65 && key[0] == 4)
            .ok_or_else(|| {
                credentials_error(
                    "webpush.public_key",
                    "an uncompressed P-256 point (65 bytes) in base64url expected",
                )
            })?;
        jwt::ec_key_from_raw("webpush keys", &private_key, &public_key)
    }
}

fn credentials_error(what: &'static str, detail: &str) -> GatewayError {
    GatewayError::Credentials {
        what,
        detail: detail.to_owned(),
    }
}

/// How a message reaches a device that registered a platform token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// The ringpush connection; the platform service when the device is not connected
    /// (at once for a high-priority message, otherwise after the policy's delay).
    #[default]
    SocketFirst,
    /// Only the ringpush connection (the message waits in the inbox).
    SocketOnly,
    /// The platform service at once, whether or not the device is connected; the inbox
    /// still holds the message for the connection, and the SDK shows it once.
    PlatformOnly,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SocketFirst => "socket_first",
            Self::SocketOnly => "socket_only",
            Self::PlatformOnly => "platform_only",
        }
    }
}

/// An app's default route; a message may choose its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePolicy {
    #[serde(default)]
    pub route: Route,
    /// With [`Route::SocketFirst`], how long a normal-priority message waits for the device
    /// to take it over its connection before the platform service is used.
    #[serde(default = "default_delay_seconds")]
    pub delay_seconds: u64,
}

fn default_delay_seconds() -> u64 {
    30
}

impl Default for RoutePolicy {
    fn default() -> Self {
        Self {
            route: Route::default(),
            delay_seconds: default_delay_seconds(),
        }
    }
}

/// Everything an app configured for the platform services.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppGateways {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apns: Option<ApnsCredentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fcm: Option<FcmCredentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webpush: Option<VapidCredentials>,
    #[serde(default)]
    pub policy: RoutePolicy,
}

impl AppGateways {
    /// Checks every configured service's credentials.
    pub fn validate(&self) -> Result<(), GatewayError> {
        if let Some(apns) = &self.apns {
            apns.validate()?;
        }
        if let Some(fcm) = &self.fcm {
            fcm.validate()?;
        }
        if let Some(webpush) = &self.webpush {
            webpush.validate()?;
        }
        Ok(())
    }

    /// The configuration without its secrets, as the API answers it.
    pub fn public_view(&self) -> serde_json::Value {
        serde_json::json!({
            "apns": self.apns.as_ref().map(|apns| serde_json::json!({
                "team_id": apns.team_id, "key_id": apns.key_id, "topic": apns.topic,
            })),
            "fcm": self.fcm.as_ref().map(|fcm| serde_json::json!({
                "project_id": fcm.project_id, "client_email": fcm.client_email,
                "token_uri": fcm.token_uri,
            })),
            "webpush": self.webpush.as_ref().map(|webpush| serde_json::json!({
                "subject": webpush.subject, "public_key": webpush.public_key,
            })),
            "policy": self.policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_socket_first_after_30_seconds() {
        let gateways: AppGateways = serde_json::from_str("{}").expect("empty is valid");
        assert_eq!(gateways.policy.route, Route::SocketFirst);
        assert_eq!(gateways.policy.delay_seconds, 30);
        assert!(gateways.validate().is_ok());
    }

    #[test]
    fn bad_apns_credentials_name_the_field() {
        let mut apns = ApnsCredentials {
            team_id: "TEAM123456".into(),
            key_id: "KEY1234567".into(),
            private_key: rcgen::KeyPair::generate().expect("key").serialize_pem(),
            topic: "com.example.app".into(),
        };
        assert!(apns.validate().is_ok());
        apns.team_id = "x".into();
        let error = apns.validate().expect_err("refused").to_string();
        assert!(error.starts_with("apns.team_id"), "{error}");
        let text = format!("{apns:?}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
    }
}

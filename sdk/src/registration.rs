//! Registering a device with the controller, and the identity it yields.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ringpush_protocol::seal::{self, SecretKey};
use ringpush_protocol::{AppId, DeviceId};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Who this device is: the app it belongs to, its id, and the secret token that proves it.
///
/// Obtained once from [`register`] (or from the state file a [`Client`](crate::Client)
/// keeps); the token cannot be recovered if lost, so keep the identity with the app's data.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The app (tenant) the device is registered with.
    pub app_id: AppId,
    /// The device's id, as given by the controller.
    pub device_id: DeviceId,
    /// The device's secret token.
    pub device_token: String,
    /// The secret half of the key the device registered for sealed payloads (`None` for a
    /// device registered without one, which cannot read an app's sealed payloads).
    pub seal_key: Option<SecretKey>,
}

/// Never prints the token, so that identities can be logged.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("app_id", &self.app_id)
            .field("device_id", &self.device_id)
            .field("device_token", &"<redacted>")
            .field("seal_key", &self.seal_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The body of `201 Created` from `POST /v1/apps/{app_id}/devices`.
#[derive(Debug, Deserialize)]
struct RegistrationBody {
    device_id: String,
    device_token: String,
}

/// The error body every ringpush service answers with: `{"error": {"code", "message"}}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorDetail {
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) message: String,
}

/// Reads an error answer: the code and message of the standard body, or a code made from the
/// status when the body is something else (a proxy's HTML page, for instance).
pub(crate) fn error_from_body(status: u16, body: &[u8]) -> ErrorDetail {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => parsed.error,
        Err(_) => ErrorDetail {
            code: format!("http_{status}"),
            message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        },
    }
}

/// Registers a new device of `app_id` with the controller at `controller_url` (for instance
/// `http://127.0.0.1:8080`), authenticating with the app's client key.
///
/// Each call creates a new device: call it once per installation and keep the identity (a
/// [`Client`](crate::Client) with a state file does this for you).
pub async fn register(controller_url: &str, app_id: AppId, client_key: &str) -> Result<Identity> {
    register_with(&reqwest::Client::new(), controller_url, app_id, client_key).await
}

/// [`register`] over a given HTTP client.
pub(crate) async fn register_with(
    http: &reqwest::Client,
    controller_url: &str,
    app_id: AppId,
    client_key: &str,
) -> Result<Identity> {
    let url = format!(
        "{}/v1/apps/{app_id}/devices",
        controller_url.trim_end_matches('/')
    );
    // Every device can read sealed payloads: the app decides whether they are sealed.
    let (seal_key, public_key) = seal::generate_keypair();
    let response = http
        .post(url)
        .bearer_auth(client_key)
        .json(&serde_json::json!({
            "seal_public_key": URL_SAFE_NO_PAD.encode(public_key.0),
            "compression": ["lz4"],
        }))
        .send()
        .await
        .map_err(Error::ControllerUnreachable)?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(Error::ControllerUnreachable)?;
    if !status.is_success() {
        let detail = error_from_body(status.as_u16(), &body);
        return Err(Error::Registration {
            status: status.as_u16(),
            code: detail.code,
            message: detail.message,
        });
    }
    let mut identity = identity_from_body(app_id, &body)?;
    identity.seal_key = Some(seal_key);
    Ok(identity)
}

fn identity_from_body(app_id: AppId, body: &[u8]) -> Result<Identity> {
    let parsed: RegistrationBody =
        serde_json::from_slice(body).map_err(|error| Error::BadRegistration(error.to_string()))?;
    let device_id = parsed
        .device_id
        .parse()
        .map_err(|error: ringpush_protocol::IdError| Error::BadRegistration(error.to_string()))?;
    if parsed.device_token.is_empty() {
        return Err(Error::BadRegistration("the device token is empty".into()));
    }
    Ok(Identity {
        app_id,
        device_id,
        device_token: parsed.device_token,
        seal_key: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_registration_and_refuses_bad_ids() {
        let app = AppId(7);
        let identity = identity_from_body(
            app,
            br#"{"device_id":"00112233445566778899aabbccddeeff","device_token":"secret"}"#,
        )
        .unwrap();
        assert_eq!(
            identity.device_id,
            DeviceId(0x00112233445566778899aabbccddeeff)
        );
        assert_eq!(identity.device_token, "secret");
        assert!(!format!("{identity:?}").contains("secret"));
        for bad in [
            &br#"{"device_id":"nothex","device_token":"t"}"#[..],
            br#"{"device_id":"00112233445566778899aabbccddeeff","device_token":""}"#,
            br#"{"device_token":"t"}"#,
            b"<html>",
        ] {
            assert!(matches!(
                identity_from_body(app, bad),
                Err(Error::BadRegistration(_))
            ));
        }
    }

    #[test]
    fn reads_error_bodies_and_survives_foreign_ones() {
        let detail = error_from_body(
            401,
            br#"{"error":{"code":"unauthorized","message":"bad client key"}}"#,
        );
        assert_eq!(detail.code, "unauthorized");
        assert_eq!(detail.message, "bad client key");
        let detail = error_from_body(502, b"<html>bad gateway</html>");
        assert_eq!(detail.code, "http_502");
        assert!(detail.message.contains("bad gateway"));
    }

    #[tokio::test]
    async fn an_unreachable_controller_is_a_typed_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let outcome = register(&format!("http://{address}"), AppId(1), "key").await;
        assert!(matches!(outcome, Err(Error::ControllerUnreachable(_))));
    }
}

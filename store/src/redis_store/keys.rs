//! Where each record lives in Redis.
//!
//! Keys of one device share the hash tag `{d:<device>}`, so that a Redis Cluster keeps them
//! in one slot and one script can touch them all; ring keys share `{ring}` for the same
//! reason. App and request keys stand alone (one key per command).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{d:<device>}:meta` | hash | `seq`, `delivered`, `acked`, `presence_connector`, `presence_epoch`, `presence_since` |
//! | `{d:<device>}:device` | hash | `app` (hex id), `token_hash` (hex), `created_at` |
//! | `{d:<device>}:inbox` | sorted set | pending messages scored by seq (member layout in `codec.rs`), expires with its last message |
//! | `{d:<device>}:idem:<key>` | string | seq given to an idempotent append, TTL `IDEMPOTENCY_TTL_MS` |
//! | `app:<app>` | hash | `name`, `server_key_hash`, `client_key_hash` (hex), `created_at` |
//! | `idem:<app>:<key>` | string | fingerprint (hex) of an idempotent request, TTL `IDEMPOTENCY_TTL_MS` |
//! | `{ring}:leases` | sorted set | connector id scored by lease expiry (ms) |
//! | `{ring}:members` | hash | connector id → JSON `{"device_url", "grpc_url"}` |
//!
//! Every key may carry a namespace prefix `<namespace>:` (see `RedisStore::with_namespace`).

use ringpush_protocol::{AppId, DeviceId};

/// Builds key names, with the namespace prefix if any.
#[derive(Debug, Clone, Default)]
pub(super) struct Keys {
    /// `""` or `"<namespace>:"`; never holds a brace (it would change the hash slot).
    prefix: String,
}

impl Keys {
    /// Keys under `namespace`; braces in it are replaced by `_`, since a brace before the
    /// hash tag would move keys of one device to different slots.
    pub(super) fn with_namespace(namespace: &str) -> Self {
        if namespace.is_empty() {
            return Self::default();
        }
        Self {
            prefix: format!("{}:", namespace.replace(['{', '}'], "_")),
        }
    }

    /// Sequence, positions and presence of a device.
    pub(super) fn meta(&self, device: DeviceId) -> String {
        format!("{}{{d:{device}}}:meta", self.prefix)
    }

    /// The device's registration record.
    pub(super) fn device(&self, device: DeviceId) -> String {
        format!("{}{{d:{device}}}:device", self.prefix)
    }

    /// The device's pending messages.
    pub(super) fn inbox(&self, device: DeviceId) -> String {
        format!("{}{{d:{device}}}:inbox", self.prefix)
    }

    /// The marker of an idempotent append to this device.
    pub(super) fn append_marker(&self, device: DeviceId, idempotency_key: &str) -> String {
        format!("{}{{d:{device}}}:idem:{idempotency_key}", self.prefix)
    }

    /// The app's record.
    pub(super) fn app(&self, app: AppId) -> String {
        format!("{}app:{app}", self.prefix)
    }

    /// The fingerprint of an idempotent request of this app.
    pub(super) fn request(&self, app: AppId, idempotency_key: &str) -> String {
        format!("{}idem:{app}:{idempotency_key}", self.prefix)
    }

    /// Connector leases.
    pub(super) fn leases(&self) -> String {
        format!("{}{{ring}}:leases", self.prefix)
    }

    /// Connector descriptions.
    pub(super) fn members(&self) -> String {
        format!("{}{{ring}}:members", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

    #[test]
    fn keys_of_one_device_share_a_slot() {
        let keys = Keys::with_namespace("test-1");
        let device = DeviceId(0x1234);
        let slot = Slot::for_key(keys.meta(device));
        assert_eq!(Slot::for_key(keys.inbox(device)), slot);
        assert_eq!(Slot::for_key(keys.device(device)), slot);
        assert_eq!(Slot::for_key(keys.append_marker(device, "a{b}c")), slot);
        assert_eq!(Slot::for_key(keys.leases()), Slot::for_key(keys.members()));
    }

    #[test]
    fn namespace_braces_cannot_move_the_hash_tag() {
        let keys = Keys::with_namespace("x{y}");
        let device = DeviceId(7);
        assert!(keys.meta(device).starts_with("x_y_:{d:"));
        assert_eq!(
            Slot::for_key(keys.meta(device)),
            Slot::for_key(Keys::default().meta(device))
        );
    }
}

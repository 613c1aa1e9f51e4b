//! Where each record lives in Redis.
//!
//! Keys of one device share the hash tag `{d:<device>}`, so that a Redis Cluster keeps them
//! in one slot and one script can touch them all; ring keys share `{ring}` for the same
//! reason; the registry indexes and the timeline of one app share `{a:<app>}`, the statistics
//! of one subject share `{s:<app>:<subject>}`, the portal's operators and sessions share
//! `{portal}`. App and request keys stand alone (one key per command): `create_app` writes the
//! app's record, then lists it in `apps` (a second step, as `create_device` lists its device:
//! if the second fails the call fails; an app whose listing failed is readable by id but not
//! listed, and the caller never handed out its keys).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{d:<device>}:meta` | hash | `seq`, `delivered`, `acked`, `presence_connector`, `presence_epoch`, `presence_since` |
//! | `{d:<device>}:device` | hash | `app` (hex id), `created_at` |
//! | `{d:<device>}:inbox` | sorted set | pending messages scored by seq (member layout in `codec.rs`), expires with its last message |
//! | `{d:<device>}:collapse` | hash | collapse key → seq of the device's latest message with it; expires with the inbox |
//! | `{d:<device>}:idem:<key>` | string | seq given to an idempotent append, TTL `IDEMPOTENCY_TTL_MS` |
//! | `app:<app>` | hash | `name`, `created_at`, and `key:<key id>` per key → `<ordinal> <kind> <hash hex> <created_at> <scopes> <revoked_at or ->` (layout in `codec.rs`) |
//! | `apps` | sorted set | app id (16 hex) scored by `created_at` (ms) |
//! | `idem:<app>:<key>` | string | fingerprint (hex) of an idempotent request, TTL `IDEMPOTENCY_TTL_MS` |
//! | `{ring}:leases` | sorted set | connector id scored by lease expiry (ms) |
//! | `{ring}:members` | hash | connector id → JSON `{"device_url", "grpc_url"}` |
//! | `{d:<device>}:attrs` | string | the device's attributes (JSON of `DeviceAttributes`) |
//! | `{a:<app>}:devices` | sorted set | device id (16 bytes) scored by registration number |
//! | `{a:<app>}:registered` | string | the last registration number given (never goes back) |
//! | `{a:<app>}:indexed` | hash | device id (16 bytes) → alias and zone it is indexed under (layout in `lua/index_attributes.lua`) |
//! | `{a:<app>}:aliases` | sorted set | alias length (4 bytes) ++ alias ++ device id, all scored 0: one alias is one lex range |
//! | `{a:<app>}:zones` | hash | time zone → devices in it (a zone at 0 is removed) |
//! | `{a:<app>}:timeline` | sorted set | audience messages scored by timeline seq (member layout in `timeline/record.rs`), expires with its last entry |
//! | `{a:<app>}:tseq` | string | the last timeline seq given; never expires (devices keep positions in it) |
//! | `{a:<app>}:texp` | sorted set | timeline seq (8 bytes) ++ message id, scored by expiry (ms): what to trim; expires with the timeline |
//! | `{a:<app>}:tids` | hash | message id → timeline seq; expires with the timeline |
//! | `{a:<app>}:tidem:<key>` | string | timeline seq given to an idempotent append, TTL `IDEMPOTENCY_TTL_MS` |
//! | `{s:<app>:<subject>}:totals` | hash | counter name → total; TTL 90 days from the last increment |
//! | `{s:<app>:<subject>}:minutes` | hash | `<minute>:<counter name>` → count in that minute; TTL as totals |
//! | `{campaigns}:c:<app>:<id>` | hash | `json` (the campaign record), `state` (wins over the state in `json`) |
//! | `{campaigns}:app:<app>` | sorted set | the app's campaign ids scored by creation time (ms) |
//! | `{campaigns}:scheduled` | set | `<app>:<id>` of every campaign in `Scheduled` state |
//! | `firing:<campaign id length>:<campaign>:<firing>` | hash | `state` (`claimed` or `done`), `owner`, `until` (lease end, ms); TTL `FIRING_DONE_TTL_MS` |
//! | `{portal}:operator:<name>` | string | JSON of `OperatorRecord`; created by `SET NX` (in a script with the set below) |
//! | `{portal}:operators` | set | every operator's name |
//! | `{portal}:session:<id hash hex>` | string | JSON of `SessionRecord`, TTL until its `expires_at_ms` (a session already expired is not stored) |
//! | `{d:<device>}:platform` | hash | `token` (JSON of `PlatformToken`), `at` (registered, ms) |
//! | `gateways:<app>` | string | the app's gateway settings (JSON, opaque to the store) |
//! | `{gateway}:due` | sorted set | message id of each planned platform send, scored by when it is due (ms) |
//! | `{gateway}:jobs` | hash | message id → JSON of `PlatformJob` |
//! | `{gateway}:outcome:<message id>` | string | JSON of `PlatformOutcome`, TTL `PLATFORM_OUTCOME_TTL_MS` |
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
    /// The device's collapse keys and their latest seqs.
    pub(super) fn collapse(&self, device: DeviceId) -> String {
        format!("{}{{d:{device}}}:collapse", self.prefix)
    }

    /// The marker of an idempotent append to this device.
    pub(super) fn append_marker(&self, device: DeviceId, idempotency_key: &str) -> String {
        format!("{}{{d:{device}}}:idem:{idempotency_key}", self.prefix)
    }

    /// The app's record.
    pub(super) fn app(&self, app: AppId) -> String {
        format!("{}app:{app}", self.prefix)
    }

    /// Every app, by creation time.
    pub(super) fn apps(&self) -> String {
        format!("{}apps", self.prefix)
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

/// Registry, timeline and statistics keys.
impl Keys {
    /// A device's attributes.
    pub(super) fn attributes(&self, device: DeviceId) -> String {
        format!("{}{{d:{device}}}:attrs", self.prefix)
    }

    /// The app's devices in registration order.
    pub(super) fn app_devices(&self, app: AppId) -> String {
        format!("{}{{a:{app}}}:devices", self.prefix)
    }

    /// The app's registration counter.
    pub(super) fn app_registered(&self, app: AppId) -> String {
        format!("{}{{a:{app}}}:registered", self.prefix)
    }

    /// What each of the app's devices is indexed under.
    pub(super) fn app_indexed(&self, app: AppId) -> String {
        format!("{}{{a:{app}}}:indexed", self.prefix)
    }

    /// Alias → devices of the app.
    pub(super) fn app_aliases(&self, app: AppId) -> String {
        format!("{}{{a:{app}}}:aliases", self.prefix)
    }

    /// Time zone → device count of the app.
    pub(super) fn app_zones(&self, app: AppId) -> String {
        format!("{}{{a:{app}}}:zones", self.prefix)
    }

    /// The app's timeline entries.
    pub(super) fn timeline(&self, app: AppId) -> String {
        format!("{}{{a:{app}}}:timeline", self.prefix)
    }

    /// The app's timeline seq counter.
    pub(super) fn timeline_seq(&self, app: AppId) -> String {
        format!("{}{{a:{app}}}:tseq", self.prefix)
    }

    /// The expiries of the app's timeline entries.
    pub(super) fn timeline_expiry(&self, app: AppId) -> String {
        format!("{}{{a:{app}}}:texp", self.prefix)
    }

    /// Message id → timeline seq of the app.
    pub(super) fn timeline_ids(&self, app: AppId) -> String {
        format!("{}{{a:{app}}}:tids", self.prefix)
    }

    /// The marker of an idempotent timeline append.
    pub(super) fn timeline_marker(&self, app: AppId, idempotency_key: &str) -> String {
        format!("{}{{a:{app}}}:tidem:{idempotency_key}", self.prefix)
    }

    /// Totals of a statistics subject.
    pub(super) fn stats_totals(&self, app: AppId, subject: &str) -> String {
        format!("{}{{s:{app}:{subject}}}:totals", self.prefix)
    }

    /// Per-minute counts of a statistics subject.
    pub(super) fn stats_minutes(&self, app: AppId, subject: &str) -> String {
        format!("{}{{s:{app}:{subject}}}:minutes", self.prefix)
    }
}

/// Campaign keys: all under `{campaigns}`, so that one script moves a campaign and its
/// entry in the index of scheduled campaigns (which spans apps); firing claims stand alone.
impl Keys {
    /// A campaign's record.
    pub(super) fn campaign(&self, app: AppId, id: &str) -> String {
        format!("{}{{campaigns}}:c:{app}:{id}", self.prefix)
    }

    /// The app's campaigns by creation time.
    pub(super) fn app_campaigns(&self, app: AppId) -> String {
        format!("{}{{campaigns}}:app:{app}", self.prefix)
    }

    /// Every scheduled campaign, across apps.
    pub(super) fn scheduled_campaigns(&self) -> String {
        format!("{}{{campaigns}}:scheduled", self.prefix)
    }

    /// The claim of one firing of a campaign. The id's length keeps ids and firing names
    /// apart whatever they contain (`a:b` + `c` is not `a` + `b:c`).
    pub(super) fn firing(&self, campaign_id: &str, firing: &str) -> String {
        let length = campaign_id.len();
        format!("{}firing:{length}:{campaign_id}:{firing}", self.prefix)
    }
}

/// Portal keys: all under `{portal}`, so that an operator and the set of names change in one
/// script. Operators and sessions are few (people, not devices): one slot holds them easily.
impl Keys {
    /// An operator's record. Whatever the name holds, the hash tag is `{portal}`: it is the
    /// first brace pair of the key.
    pub(super) fn operator(&self, name: &str) -> String {
        format!("{}{{portal}}:operator:{name}", self.prefix)
    }

    /// The names of every operator.
    pub(super) fn operators(&self) -> String {
        format!("{}{{portal}}:operators", self.prefix)
    }

    /// A session, by the hash of its id.
    pub(super) fn session(&self, id_hash: &[u8; 32]) -> String {
        format!("{}{{portal}}:session:{}", self.prefix, hex::encode(id_hash))
    }
}

/// Platform gateway keys: a device's token with its device, an app's settings alone, and the
/// queue of platform sends under `{gateway}`, so that a claim moves due jobs in one script.
impl Keys {
    /// The device's platform token.
    pub(super) fn platform_token(&self, device: DeviceId) -> String {
        format!("{}{{d:{device}}}:platform", self.prefix)
    }

    /// The app's gateway settings.
    pub(super) fn app_gateways(&self, app: AppId) -> String {
        format!("{}gateways:{app}", self.prefix)
    }

    /// Planned platform sends by due time.
    pub(super) fn platform_due(&self) -> String {
        format!("{}{{gateway}}:due", self.prefix)
    }

    /// Planned platform sends by message id.
    pub(super) fn platform_jobs(&self) -> String {
        format!("{}{{gateway}}:jobs", self.prefix)
    }

    /// A message's platform outcome.
    pub(super) fn platform_outcome(&self, message: &str) -> String {
        format!("{}{{gateway}}:outcome:{message}", self.prefix)
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
    fn keys_of_one_app_or_subject_share_a_slot() {
        let keys = Keys::with_namespace("test-2");
        let app = AppId(0xabc);
        let slot = Slot::for_key(keys.timeline(app));
        for key in [
            keys.app_devices(app),
            keys.app_registered(app),
            keys.app_indexed(app),
            keys.app_aliases(app),
            keys.app_zones(app),
            keys.timeline_seq(app),
            keys.timeline_expiry(app),
            keys.timeline_ids(app),
            keys.timeline_marker(app, "k{x}"),
        ] {
            assert_eq!(Slot::for_key(&key), slot, "{key}");
        }
        // Braces in a subject may shorten the hash tag, but equally for both keys.
        for subject in ["msg-1", "a}b", "{c", "x{y}z"] {
            assert_eq!(
                Slot::for_key(keys.stats_totals(app, subject)),
                Slot::for_key(keys.stats_minutes(app, subject)),
                "{subject}"
            );
        }
        let device = DeviceId(0x55);
        assert_eq!(
            Slot::for_key(keys.attributes(device)),
            Slot::for_key(keys.meta(device))
        );
    }

    #[test]
    fn campaign_keys_share_a_slot_whatever_the_id() {
        let keys = Keys::with_namespace("test-3");
        let slot = Slot::for_key(keys.scheduled_campaigns());
        for (app, id) in [
            (AppId(1), "cmp_1"),
            (AppId(u64::MAX), "a{b}c"),
            (AppId(2), "}{"),
        ] {
            assert_eq!(Slot::for_key(keys.campaign(app, id)), slot, "{id}");
            assert_eq!(Slot::for_key(keys.app_campaigns(app)), slot);
        }
    }

    #[test]
    fn portal_keys_share_a_slot() {
        let keys = Keys::with_namespace("test-4");
        let slot = Slot::for_key(keys.operators());
        assert_eq!(Slot::for_key(keys.operator("ada.l-1")), slot);
        assert_eq!(Slot::for_key(keys.operator("}{x}")), slot);
        assert_eq!(Slot::for_key(keys.session(&[0xab; 32])), slot);
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

//! The Lua scripts that change one device's (or the ring's, an app's, an operator's) state
//! atomically. Each runs by EVALSHA and is loaded on first use (the text is in `lua/`,
//! documented at its top).

use std::sync::LazyLock;

use redis::Script;

/// Idempotency check, next seq, append, cap, expiry, marker.
pub(super) static APPEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/append.lua")));
/// Trim up to a seq, raise acked and delivered.
pub(super) static ACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/ack.lua")));
/// Raise delivered.
pub(super) static MARK_DELIVERED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/mark_delivered.lua")));
/// Positions and unexpired count.
pub(super) static INBOX_STATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/inbox_state.lua")));
/// Clear presence if still (connector, epoch).
pub(super) static CLEAR_PRESENCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/clear_presence.lua")));
/// Create a hash only if absent.
pub(super) static CREATE_RECORD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/create_record.lua")));
/// Live leases with their members, pruning long-dead ones.
pub(super) static LIVE_MEMBERS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/live_members.lua")));
/// Add a device to its app's device list, in registration order.
pub(super) static REGISTER_DEVICE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/register_device.lua")));
/// Move a device's alias and time zone in its app's indexes.
pub(super) static INDEX_ATTRIBUTES: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/index_attributes.lua")));
/// Idempotency check, next timeline seq, trim expired, append, cap, expiry, marker.
pub(super) static TIMELINE_APPEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/timeline_append.lua")));
/// A timeline entry by message id.
pub(super) static TIMELINE_ENTRY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/timeline_entry.lua")));
/// Move a campaign between states and keep the index of scheduled campaigns in step.
pub(super) static TRANSITION_CAMPAIGN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/transition_campaign.lua")));
/// Claim a firing: take it if free or its lease passed.
pub(super) static CLAIM_FIRING: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/claim_firing.lua")));
pub(super) static RENEW_FIRING: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/renew_firing.lua")));
/// Add a key to an app if the app exists and the key id is new.
pub(super) static ADD_APP_KEY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/add_app_key.lua")));
/// Revoke an app's key if it is live.
pub(super) static REVOKE_APP_KEY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/revoke_app_key.lua")));
/// Create an operator if its name is free, and list its name.
pub(super) static CREATE_OPERATOR: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/create_operator.lua")));
/// Remove a device's platform token if it is still the one given.
pub(super) static RETIRE_PLATFORM_TOKEN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/retire_platform_token.lua")));
/// Take due platform sends, hiding each for a lease.
pub(super) static CLAIM_PLATFORM_SENDS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/claim_platform_sends.lua")));

//! Platform notifications (APNs, FCM, Web Push) on the device's side: registering the
//! device's platform token with the controller, and the rule that hands a message to the app
//! once although it may come both in a platform notification and over the connection.
//!
//! The rule, for the inbox (the only stream the gateways send): the connection hands messages
//! in seq order and moves the handed position (`last_seq`) up to each; a platform
//! notification may come out of order (seq 7 while the connection has handed up to 4), so the
//! seqs above the position that were handed from notifications are kept apart
//! ([`HandedInbox::from_platform`], saved in the state file). A seq is handed if it is at or
//! below the position or in that set. When the connection brings a seq of the set, it is not
//! handed again, but the position still moves up to it (so that it is acked and leaves the
//! inbox), and the set forgets what is at or below the position.
//!
//! The position moves only with the connection, never with a notification: the connector
//! takes an Ack only up to what it has itself sent on the connection, so a position moved by
//! a notification could not be acked, and the connector would replay it on every connect.
//!
//! Bounded: at most [`MAX_PLATFORM_HANDED`] seqs; past it the smallest is forgotten (logged
//! and counted in `Stats::platform_seqs_forgotten`). The bound is above the connector's
//! default inbox cap (1,000 pending messages, oldest dropped first), so by the time a seq is
//! the smallest of 1,025 seqs, all above the position and none acked, the inbox has already
//! dropped it and the connection can never bring it again. With a larger inbox cap, a
//! forgotten message that the connection later brings is handed a second time.

use std::collections::BTreeSet;

use ringpush_protocol::platform::PlatformToken;
use ringpush_protocol::{AppId, DeviceId};

use crate::error::{Error, Result};
use crate::message::Message;
use crate::registration::error_from_body;

/// The most inbox seqs remembered as handed from platform notifications ahead of the
/// connection; past it the smallest is forgotten (see [`Client::handle_platform_push`]).
///
/// [`Client::handle_platform_push`]: crate::Client::handle_platform_push
pub const MAX_PLATFORM_HANDED: usize = 1024;

/// What [`Client::handle_platform_push`](crate::Client::handle_platform_push) made of a
/// platform notification.
#[derive(Debug, Clone, PartialEq, Eq)]
// Returned once per notification and matched at once, never stored in bulk: a box would only
// make the app's `match` clumsier.
#[allow(clippy::large_enum_variant)]
pub enum PlatformPush {
    /// A message the app has not had: show its notification, hand it to the app. It is saved
    /// as handed, so neither the connection nor a later notification hands it again.
    Message(Message),
    /// The app already had this message (from the connection, or from an earlier
    /// notification): show nothing.
    Duplicate,
    /// The notification names a message too large to ride along (or of a stream only the
    /// connection hands, in order): the client, which connects anyway, brings it through
    /// [`Client::next_message`](crate::Client::next_message).
    Pending {
        /// The message's id.
        message_id: String,
    },
}

/// The inbox seqs handed to the app: every seq up to `up_to`, and those in `from_platform`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HandedInbox {
    /// The highest seq handed over the connection (and by it, in order, everything below).
    pub(crate) up_to: u64,
    /// Seqs above `up_to` handed from platform notifications; at most [`MAX_PLATFORM_HANDED`].
    pub(crate) from_platform: BTreeSet<u64>,
}

/// What a seq the connection brought means for the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FromConnection {
    /// At or below the position: a replay, nothing changes.
    AlreadyReceived,
    /// New to the app: hand it. `missed_before` seqs between the position and it never
    /// reached the app by either path.
    New { missed_before: u64 },
    /// Handed from a platform notification already: not again, but the position moved to it.
    HandedFromPlatform,
}

impl HandedInbox {
    /// The handed inbox as saved, keeping only what the rules allow (seqs above the position,
    /// at most the bound).
    pub(crate) fn new(up_to: u64, from_platform: BTreeSet<u64>) -> Self {
        let mut handed = Self {
            up_to,
            from_platform,
        };
        handed.forget_at_or_below_position();
        while handed.from_platform.len() > MAX_PLATFORM_HANDED {
            handed.from_platform.pop_first();
        }
        handed
    }

    /// Whether the app already had inbox seq `seq`, by either path.
    pub(crate) fn was_handed(&self, seq: u64) -> bool {
        seq <= self.up_to || self.from_platform.contains(&seq)
    }

    /// Records `seq` (not handed yet) as handed from a platform notification; answers the seq
    /// forgotten to stay within the bound, if one was.
    pub(crate) fn hand_from_platform(&mut self, seq: u64) -> Option<u64> {
        debug_assert!(!self.was_handed(seq), "seq {seq} was already handed");
        self.from_platform.insert(seq);
        if self.from_platform.len() > MAX_PLATFORM_HANDED {
            return self.from_platform.pop_first();
        }
        None
    }

    /// Judges `seq`, brought by the connection (in order), and moves the position up to it
    /// unless it is a replay.
    pub(crate) fn hand_from_connection(&mut self, seq: u64) -> FromConnection {
        if seq <= self.up_to {
            return FromConnection::AlreadyReceived;
        }
        let between = seq - self.up_to - 1;
        let handed_between = self.from_platform.range(self.up_to + 1..seq).count() as u64;
        let handed_before = self.from_platform.contains(&seq);
        self.up_to = seq;
        self.forget_at_or_below_position();
        if handed_before {
            FromConnection::HandedFromPlatform
        } else {
            FromConnection::New {
                missed_before: between - handed_between,
            }
        }
    }

    /// Moves the position back to `limit` if it is past it, and forgets the seqs above
    /// `limit`: the store lost them and will number new messages with them again.
    pub(crate) fn lower_to(&mut self, limit: u64) {
        self.up_to = self.up_to.min(limit);
        self.from_platform.retain(|&seq| seq <= limit);
    }

    fn forget_at_or_below_position(&mut self) {
        self.from_platform = self
            .from_platform
            .split_off(&(self.up_to.saturating_add(1)));
    }
}

/// The controller's address of `device`'s platform token.
fn token_url(controller_url: &str, app_id: AppId, device_id: DeviceId) -> String {
    format!(
        "{}/v1/apps/{app_id}/devices/{device_id}/platform-token",
        controller_url.trim_end_matches('/')
    )
}

/// Who calls the controller about a platform token: the device itself, with its token.
pub(crate) struct TokenCaller<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) controller_url: &'a str,
    pub(crate) app_id: AppId,
    pub(crate) device_id: DeviceId,
    pub(crate) device_token: &'a str,
}

impl TokenCaller<'_> {
    /// `PUT …/platform-token` with `token` as its body.
    pub(crate) async fn put(&self, token: &PlatformToken) -> Result<()> {
        let request = self
            .http
            .put(token_url(self.controller_url, self.app_id, self.device_id))
            .bearer_auth(self.device_token)
            .json(token);
        self.send(request).await
    }

    /// `DELETE …/platform-token`.
    pub(crate) async fn delete(&self) -> Result<()> {
        let request = self
            .http
            .delete(token_url(self.controller_url, self.app_id, self.device_id))
            .bearer_auth(self.device_token);
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<()> {
        let response = request.send().await.map_err(Error::ControllerUnreachable)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response
            .bytes()
            .await
            .map_err(Error::ControllerUnreachable)?;
        Err(refusal(status.as_u16(), &body))
    }
}

/// The error for an error answer to a platform token request.
fn refusal(status: u16, body: &[u8]) -> Error {
    let detail = error_from_body(status, body);
    match (status, detail.code.as_str()) {
        (400, _) => Error::InvalidPlatformToken(detail.message),
        (401, _) => Error::Unauthenticated {
            message: detail.message,
        },
        (404, "unknown_device") => Error::UnknownDevice {
            message: detail.message,
        },
        _ => Error::Controller {
            status,
            code: detail.code,
            message: detail.message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handed(up_to: u64, from_platform: &[u64]) -> HandedInbox {
        HandedInbox::new(up_to, from_platform.iter().copied().collect())
    }

    #[test]
    fn a_seq_from_a_notification_is_handed_once_whatever_comes_first() {
        // Notification first, then the connection.
        let mut inbox = handed(4, &[]);
        assert!(!inbox.was_handed(5));
        assert_eq!(inbox.hand_from_platform(5), None);
        assert!(inbox.was_handed(5));
        assert_eq!(inbox.up_to, 4, "a notification never moves the position");
        assert_eq!(
            inbox.hand_from_connection(5),
            FromConnection::HandedFromPlatform
        );
        assert_eq!(inbox, handed(5, &[]));
        // The connection first, then the notification.
        assert_eq!(
            inbox.hand_from_connection(6),
            FromConnection::New { missed_before: 0 }
        );
        assert!(inbox.was_handed(6));
        assert_eq!(
            inbox.hand_from_connection(6),
            FromConnection::AlreadyReceived
        );
    }

    #[test]
    fn an_out_of_order_notification_waits_in_the_set_until_the_connection_reaches_it() {
        let mut inbox = handed(4, &[]);
        inbox.hand_from_platform(7);
        for seq in [5, 6] {
            assert!(!inbox.was_handed(seq));
            assert_eq!(
                inbox.hand_from_connection(seq),
                FromConnection::New { missed_before: 0 }
            );
            assert_eq!(inbox.from_platform, BTreeSet::from([7]));
        }
        assert_eq!(
            inbox.hand_from_connection(7),
            FromConnection::HandedFromPlatform
        );
        assert_eq!(inbox, handed(7, &[]));
    }

    #[test]
    fn gaps_count_only_what_neither_path_handed() {
        // 6 came by notification, then expired before the connection brought it; 5 and 7
        // never came at all.
        let mut inbox = handed(4, &[6]);
        assert_eq!(
            inbox.hand_from_connection(8),
            FromConnection::New { missed_before: 2 }
        );
        assert!(inbox.from_platform.is_empty());
    }

    #[test]
    fn the_set_is_bounded_and_forgets_its_smallest_first() {
        let mut inbox = handed(0, &[]);
        for seq in 2..2 + MAX_PLATFORM_HANDED as u64 {
            assert_eq!(inbox.hand_from_platform(seq), None);
        }
        assert_eq!(inbox.from_platform.len(), MAX_PLATFORM_HANDED);
        let newest = 2 + MAX_PLATFORM_HANDED as u64;
        assert_eq!(inbox.hand_from_platform(newest), Some(2));
        assert_eq!(inbox.from_platform.len(), MAX_PLATFORM_HANDED);
        assert!(!inbox.was_handed(2), "forgotten");
        assert!(inbox.was_handed(3) && inbox.was_handed(newest));
        // A file holding more (or seqs at or below its position) reads as the bound allows.
        let mut too_many: BTreeSet<u64> = (1..=MAX_PLATFORM_HANDED as u64 + 10).collect();
        too_many.insert(0);
        let loaded = HandedInbox::new(5, too_many);
        assert_eq!(loaded.from_platform.len(), MAX_PLATFORM_HANDED);
        assert_eq!(loaded.from_platform.first(), Some(&11));
    }

    #[test]
    fn lowering_forgets_what_the_store_lost() {
        let mut inbox = handed(9, &[11, 12, 15]);
        inbox.lower_to(12);
        assert_eq!(inbox, handed(9, &[11, 12]));
        inbox.lower_to(3);
        assert_eq!(inbox, handed(3, &[]));
    }

    #[test]
    fn error_answers_are_told_apart() {
        let body = |code: &str| format!(r#"{{"error":{{"code":"{code}","message":"why"}}}}"#);
        assert!(matches!(
            refusal(400, body("invalid_request").as_bytes()),
            Error::InvalidPlatformToken(message) if message == "why"
        ));
        let refused = refusal(401, body("invalid_credentials").as_bytes());
        assert!(refused.needs_new_identity(), "{refused}");
        assert!(refusal(404, body("unknown_device").as_bytes()).needs_new_identity());
        assert!(matches!(
            refusal(503, b"<html>"),
            Error::Controller { status: 503, code, .. } if code == "http_503"
        ));
    }
}

//! The app's side of platform push services (APNs, FCM, Web Push): registering the device's
//! platform token with the controller, and handing the messages that platform notifications
//! carry, once across both paths (the rules are in [`crate::platform`]).

use std::str::FromStr;

use ringpush_protocol::MessageId;
use ringpush_protocol::device::ReportKind;
use ringpush_protocol::platform::{Envelope, PlatformToken};

use super::Client;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::platform::{PlatformPush, TokenCaller};
use crate::reports;
use crate::stats::Counters;
use crate::stream::Stream;

impl Client {
    /// Registers `token` as this device's address at its platform push service, so that the
    /// controller's gateways reach the device through it while it is not connected.
    ///
    /// Call it at every launch and whenever the platform gives the app a new token (iOS
    /// `didRegisterForRemoteNotificationsWithDeviceToken`, FCM `onNewToken`, a new Web Push
    /// `PushSubscription`): it replaces the device's previous token, whichever its service.
    /// The request is authenticated with the device's own token (the current one: the
    /// connector renews it now and then).
    ///
    /// The token's shape is checked first ([`PlatformToken::validate`]); `http://` Web Push
    /// endpoints pass that check only when the configured controller is `http://` (a test or
    /// development deployment), and the controller has the last word either way.
    ///
    /// Errors: [`Error::InvalidPlatformToken`] for a token of the wrong shape (refused here,
    /// or by the controller with 400); [`Error::Unauthenticated`] or
    /// [`Error::UnknownDevice`] when the controller refuses the device
    /// ([`Error::needs_new_identity`]); [`Error::ControllerUnreachable`] on a network error;
    /// [`Error::Controller`] for any other error status (a 5xx: try again later).
    pub async fn set_platform_token(&self, token: PlatformToken) -> Result<()> {
        token
            .validate(self.allow_http_endpoints)
            .map_err(|error| Error::InvalidPlatformToken(error.to_string()))?;
        let device_token = self.state.snapshot().identity.device_token;
        self.token_caller(&device_token).put(&token).await?;
        tracing::info!(device_id = %self.identity.device_id, service = token.service().as_str(), "platform token registered");
        Ok(())
    }

    /// Removes the device's platform token (the user turned notifications off, say): the
    /// gateways stop reaching the device outside its connection. Errors as
    /// [`Client::set_platform_token`]; removing a token that is not there succeeds.
    pub async fn clear_platform_token(&self) -> Result<()> {
        let device_token = self.state.snapshot().identity.device_token;
        self.token_caller(&device_token).delete().await?;
        tracing::info!(device_id = %self.identity.device_id, "platform token removed");
        Ok(())
    }

    fn token_caller<'a>(&'a self, device_token: &'a str) -> TokenCaller<'a> {
        TokenCaller {
            http: &self.http,
            controller_url: &self.controller_url,
            app_id: self.identity.app_id,
            device_id: self.identity.device_id,
            device_token,
        }
    }

    /// Hands the message a platform notification carries, exactly once across platform
    /// notifications and the connection, whichever comes first.
    ///
    /// `envelope` is the value of the key `"ringpush"` of the notification's payload (APNs:
    /// a top-level key beside `aps`; FCM: a `data` entry; Web Push: a key of the decrypted
    /// JSON). The answer:
    /// - [`PlatformPush::Message`]: new to the app; show its notification and use it. It is
    ///   saved as handed (in the state file, if there is one) before this returns, and a
    ///   RECEIVED report is queued for it, as [`Client::next_message`] does; when the
    ///   connection brings the same message later (it replays the inbox until acked), it is
    ///   not handed again, even after a restart. Its `skipped_before` is 0 (it may come
    ///   ahead of messages the connection has yet to bring).
    /// - [`PlatformPush::Duplicate`]: the app already had it; show nothing.
    /// - [`PlatformPush::Pending`]: the message was too large to ride along; the client,
    ///   which connects anyway, brings it through [`Client::next_message`].
    ///
    /// The gateways send inbox messages only. An envelope of the timeline (audience
    /// messages, which the connection hands in order) is a `Duplicate` at or below the
    /// timeline position, and otherwise `Pending`.
    ///
    /// At most [`MAX_PLATFORM_HANDED`](crate::MAX_PLATFORM_HANDED) messages handed here are
    /// remembered ahead of the connection's position; past it the oldest is forgotten
    /// ([`Stats::platform_seqs_forgotten`](crate::Stats::platform_seqs_forgotten)). With the
    /// connector's default inbox cap (1,000 pending messages, the oldest dropped first) this
    /// cannot matter: by then the inbox has dropped that message, so the connection can never
    /// bring it again. With a larger cap, a forgotten message the connection brings later is
    /// handed a second time.
    ///
    /// Errors: [`Error::InvalidEnvelope`] for text that is not an envelope, or one for
    /// another device; [`Error::StateIo`] when the state file cannot be saved (nothing was
    /// handed: the same envelope may be passed again).
    ///
    /// Not cancellation safe: await it to the end. Dropped while saving, the message may be
    /// saved as handed without having been returned.
    pub async fn handle_platform_push(&mut self, envelope: &str) -> Result<PlatformPush> {
        let device_id = self.identity.device_id;
        let envelope = Envelope::decode(envelope)
            .map_err(|error| Error::InvalidEnvelope(error.to_string()))?;
        let (wire_stream, seq) = envelope.position();
        let stream = Stream::from_wire(wire_stream).ok_or_else(|| {
            Error::InvalidEnvelope(format!("stream {wire_stream} is unknown to this SDK"))
        })?;
        let message_id = match &envelope {
            Envelope::Whole(push) => push.message_id.clone(),
            Envelope::IdOnly { message_id, .. } => message_id.clone(),
        };
        if stream == Stream::Inbox {
            self.check_addressed_here(&message_id, seq)?;
        }
        let already_handed = match stream {
            Stream::Inbox => seq <= self.handed_up_to.inbox || self.platform_handed.contains(&seq),
            Stream::Timeline => seq <= self.handed_up_to.timeline,
        };
        if already_handed {
            tracing::debug!(%device_id, ?stream, seq, "platform notification of a message already handed");
            Counters::bump(&self.counters.platform_duplicates);
            return Ok(PlatformPush::Duplicate);
        }
        let push = match envelope {
            Envelope::Whole(push) if stream == Stream::Inbox => push,
            _ => {
                tracing::debug!(%device_id, ?stream, seq, "platform notification of a message the connection brings");
                Counters::bump(&self.counters.platform_pending);
                return Ok(PlatformPush::Pending { message_id });
            }
        };
        let mut inbox = self.handed_inbox();
        let forgotten = inbox.hand_from_platform(seq);
        self.save_inbox(inbox).await?;
        if let Some(forgotten) = forgotten {
            tracing::warn!(%device_id, forgotten, "too many messages handed from platform notifications ahead of the connection: the oldest is forgotten");
            Counters::bump(&self.counters.platform_seqs_forgotten);
        }
        Counters::bump(&self.counters.platform_messages_handed);
        let message = Message::open_push(
            push,
            Stream::Inbox,
            0,
            device_id,
            self.identity.seal_key.as_ref(),
        );
        self.reports
            .push(reports::event(&message, ReportKind::Received));
        tracing::debug!(%device_id, seq, "message handed from a platform notification");
        Ok(PlatformPush::Message(message))
    }

    /// Checks that an inbox envelope names a message of this device (`<device_id>-<seq>`), so
    /// that a notification meant for another installation never marks a seq of this one.
    fn check_addressed_here(&self, message_id: &str, seq: u64) -> Result<()> {
        let id = MessageId::from_str(message_id).map_err(|_| {
            Error::InvalidEnvelope(format!("{message_id:?} is not the id of an inbox message"))
        })?;
        if id.device != self.identity.device_id {
            return Err(Error::InvalidEnvelope(format!(
                "the message is for device {}, not this device {} (a platform token still registered for an earlier installation?)",
                id.device, self.identity.device_id
            )));
        }
        if id.seq != seq {
            return Err(Error::InvalidEnvelope(format!(
                "message {message_id} carries seq {seq}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use ringpush_protocol::device::{Push, SealedContent};
    use ringpush_protocol::seal::{self, SecretKey};
    use ringpush_protocol::{AppId, DeviceId};
    use tokio::sync::{mpsc, watch};

    use super::*;
    use crate::ack::Handed;
    use crate::registration::Identity;
    use crate::state::{self, DeviceState, StateKeeper};
    use crate::task::Event;

    const DEVICE: DeviceId = DeviceId(0x1234);

    fn identity() -> Identity {
        Identity {
            app_id: AppId(0xabc),
            device_id: DEVICE,
            device_token: "dt1.token".into(),
            seal_key: Some(SecretKey([9; 32])),
        }
    }

    fn push(seq: u64) -> Push {
        Push {
            message_id: MessageId {
                device: DEVICE,
                seq,
            }
            .to_string(),
            seq,
            payload: format!("m{seq}").into_bytes(),
            content_type: "text/plain; charset=utf-8".into(),
            stream: 0,
            ..Push::default()
        }
    }

    fn envelope(seq: u64) -> String {
        Envelope::encode(&push(seq), 4000)
    }

    /// The app side of a client whose connection the test plays: it queues what the
    /// connection task would, and watches what the task would ack.
    struct Harness {
        client: Client,
        connection: mpsc::Sender<Event>,
        handed: watch::Receiver<Handed>,
    }

    impl Harness {
        fn new(state: StateKeeper) -> Self {
            let (client, connection, handed) = Client::detached(state);
            Self {
                client,
                connection,
                handed,
            }
        }

        fn in_memory() -> Self {
            Self::new(StateKeeper::new(None, DeviceState::new(identity())))
        }

        /// A client on the state file at `path` (created if missing), as after a start.
        fn on_file(path: &std::path::Path) -> Self {
            let loaded = state::load(path)
                .unwrap()
                .unwrap_or_else(|| DeviceState::new(identity()));
            Self::new(StateKeeper::new(Some(path.to_owned()), loaded))
        }

        /// The connection brings inbox seq `seq`, with the gap the task would have counted.
        async fn socket(&self, seq: u64, skipped_before: u64) {
            let message = Message::from_push(push(seq), Stream::Inbox, skipped_before);
            self.connection.send(Event::Message(message)).await.unwrap();
        }

        async fn platform(&mut self, seq: u64) -> PlatformPush {
            self.client
                .handle_platform_push(&envelope(seq))
                .await
                .unwrap()
        }

        async fn next(&mut self) -> Message {
            tokio::time::timeout(Duration::from_secs(5), self.client.next_message())
                .await
                .expect("a message")
                .unwrap()
        }

        /// Asserts that `next_message` has nothing to hand now.
        async fn nothing_next(&mut self) {
            let outcome =
                tokio::time::timeout(Duration::from_millis(100), self.client.next_message()).await;
            assert!(outcome.is_err(), "expected nothing, got {outcome:?}");
        }

        fn acked_up_to(&self) -> u64 {
            self.handed.borrow().up_to.inbox
        }
    }

    fn handed_seq(answer: PlatformPush) -> u64 {
        match answer {
            PlatformPush::Message(message) => message.seq,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn platform_first_then_the_connection_hands_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        let mut device = Harness::on_file(&path);
        let PlatformPush::Message(message) = device.platform(1).await else {
            panic!("not handed");
        };
        assert_eq!((message.seq, message.data_str().unwrap()), (1, "m1"));
        assert_eq!(message.skipped_before, 0);
        let saved = state::load(&path).unwrap().unwrap();
        assert_eq!(
            saved.platform_handed,
            BTreeSet::from([1]),
            "saved before returning"
        );
        assert_eq!(saved.last_seq, 0);
        assert!(!device.client.reports.is_empty(), "RECEIVED queued");

        // The connection replays it: not handed, but the position moves, is saved and is
        // published for the Ack.
        device.socket(1, 0).await;
        device.nothing_next().await;
        assert_eq!(device.acked_up_to(), 1);
        let saved = state::load(&path).unwrap().unwrap();
        assert_eq!((saved.last_seq, saved.platform_handed.len()), (1, 0));
        device.socket(2, 0).await;
        assert_eq!(device.next().await.seq, 2);
        assert_eq!(device.platform(1).await, PlatformPush::Duplicate);
        let stats = device.client.stats();
        assert_eq!(
            (
                stats.platform_messages_handed,
                stats.messages_handed,
                stats.duplicates_dropped,
                stats.platform_duplicates
            ),
            (1, 1, 1, 1)
        );
    }

    #[tokio::test]
    async fn the_connection_first_then_the_platform_is_a_duplicate() {
        let mut device = Harness::in_memory();
        device.socket(1, 0).await;
        assert_eq!(device.next().await.seq, 1);
        assert_eq!(device.platform(1).await, PlatformPush::Duplicate);
        let id_only = r#"{"v":1,"id":"00000000000000000000000000001234-1","seq":1}"#;
        assert_eq!(
            device.client.handle_platform_push(id_only).await.unwrap(),
            PlatformPush::Duplicate
        );
        // Queued by the connection but not handed yet: the notification hands it, and the
        // queued copy is then dropped.
        device.socket(2, 0).await;
        assert_eq!(handed_seq(device.platform(2).await), 2);
        device.nothing_next().await;
        assert_eq!(device.acked_up_to(), 2);
        assert_eq!(device.client.stats().platform_duplicates, 2);
    }

    #[tokio::test]
    async fn out_of_order_7_waits_until_the_connection_brings_5_6_7() {
        let mut device = Harness::in_memory();
        for seq in 1..=4 {
            device.socket(seq, 0).await;
            assert_eq!(device.next().await.seq, seq);
        }
        assert_eq!(handed_seq(device.platform(7).await), 7);
        assert_eq!(device.acked_up_to(), 4, "7 is not acked ahead of 5 and 6");
        for seq in [5, 6] {
            device.socket(seq, 0).await;
            let message = device.next().await;
            assert_eq!((message.seq, message.skipped_before), (seq, 0));
            assert_eq!(device.client.state.snapshot().platform_handed.len(), 1);
        }
        device.socket(7, 0).await;
        device.socket(8, 0).await;
        assert_eq!(device.next().await.seq, 8, "7 is not handed again");
        assert_eq!(device.acked_up_to(), 8);
        let saved = device.client.state.snapshot();
        assert_eq!((saved.last_seq, saved.platform_handed.len()), (8, 0));
        assert_eq!(device.client.stats().messages_skipped, 0);
    }

    #[tokio::test]
    async fn a_gap_the_platform_filled_is_not_counted_as_skipped() {
        let mut device = Harness::in_memory();
        assert_eq!(handed_seq(device.platform(2).await), 2);
        // 2 expired before the connection came: it brings 3, counting 1 and 2 as skipped.
        device.socket(3, 2).await;
        let message = device.next().await;
        assert_eq!((message.seq, message.skipped_before), (3, 1));
        assert_eq!(device.client.stats().messages_skipped, 1);
        assert!(device.client.state.snapshot().platform_handed.is_empty());
    }

    #[tokio::test]
    async fn a_restart_keeps_what_either_path_handed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        let mut device = Harness::on_file(&path);
        device.socket(1, 0).await;
        assert_eq!(device.next().await.seq, 1);
        assert_eq!(handed_seq(device.platform(3).await), 3);
        drop(device);

        let mut restarted = Harness::on_file(&path);
        assert_eq!(restarted.client.last_seq(), 1);
        assert_eq!(restarted.platform(1).await, PlatformPush::Duplicate);
        assert_eq!(restarted.platform(3).await, PlatformPush::Duplicate);
        // The connection replays the inbox above 1.
        restarted.socket(2, 0).await;
        restarted.socket(3, 0).await;
        restarted.socket(4, 0).await;
        assert_eq!(restarted.next().await.seq, 2);
        assert_eq!(restarted.next().await.seq, 4);
        drop(restarted);
        let saved = state::load(&path).unwrap().unwrap();
        assert_eq!((saved.last_seq, saved.platform_handed.len()), (4, 0));
    }

    #[tokio::test]
    async fn past_the_bound_the_smallest_is_forgotten() {
        let mut device = Harness::in_memory();
        let bound = crate::MAX_PLATFORM_HANDED as u64;
        // Seq 1 never comes: everything from 2 on waits in the set.
        for seq in 2..2 + bound {
            assert_eq!(handed_seq(device.platform(seq).await), seq);
        }
        assert_eq!(device.client.stats().platform_seqs_forgotten, 0);
        assert_eq!(handed_seq(device.platform(2 + bound).await), 2 + bound);
        let saved = device.client.state.snapshot();
        assert_eq!(saved.platform_handed.len(), crate::MAX_PLATFORM_HANDED);
        assert_eq!(saved.platform_handed.first(), Some(&3));
        assert_eq!(device.client.stats().platform_seqs_forgotten, 1);
        assert_eq!(device.platform(3).await, PlatformPush::Duplicate);
    }

    #[tokio::test]
    async fn a_large_message_is_pending_until_the_connection_brings_it() {
        let mut device = Harness::in_memory();
        let mut large = push(1);
        large.payload = vec![b'x'; 5000];
        let text = Envelope::encode(&large, 4000);
        assert_eq!(
            device.client.handle_platform_push(&text).await.unwrap(),
            PlatformPush::Pending {
                message_id: large.message_id.clone()
            }
        );
        assert!(device.client.state.snapshot().platform_handed.is_empty());
        device.socket(1, 0).await;
        assert_eq!(device.next().await.seq, 1);
        assert_eq!(
            device.client.handle_platform_push(&text).await.unwrap(),
            PlatformPush::Duplicate
        );
        assert_eq!(device.client.stats().platform_pending, 1);
    }

    #[tokio::test]
    async fn timeline_envelopes_follow_the_timeline_position() {
        let mut device = Harness::in_memory();
        let audience = |seq: u64| {
            Envelope::encode(
                &Push {
                    message_id: "0123456789abcdef0123456789abcdef".into(),
                    seq,
                    stream: 1,
                    ..Push::default()
                },
                4000,
            )
        };
        let message = Message::from_push(
            Push {
                seq: 5,
                stream: 1,
                message_id: "t".into(),
                ..Push::default()
            },
            Stream::Timeline,
            0,
        );
        device
            .connection
            .send(Event::Message(message))
            .await
            .unwrap();
        assert_eq!(device.next().await.seq, 5);
        let answer = device.client.handle_platform_push(&audience(5)).await;
        assert_eq!(answer.unwrap(), PlatformPush::Duplicate);
        let answer = device.client.handle_platform_push(&audience(6)).await;
        assert!(matches!(answer.unwrap(), PlatformPush::Pending { .. }));
    }

    #[tokio::test]
    async fn foreign_or_unreadable_envelopes_are_refused_and_mark_nothing() {
        let mut device = Harness::in_memory();
        let mut foreign = push(1);
        foreign.message_id = MessageId {
            device: DeviceId(0x9999),
            seq: 1,
        }
        .to_string();
        let mut lying = push(1);
        lying.seq = 2;
        let mut unknown_stream = push(1);
        unknown_stream.stream = 7;
        for text in [
            Envelope::encode(&foreign, 4000),
            Envelope::encode(&lying, 4000),
            Envelope::encode(&unknown_stream, 4000),
            "{\"aps\":{}}".to_owned(),
            "not json".to_owned(),
        ] {
            let answer = device.client.handle_platform_push(&text).await;
            assert!(
                matches!(answer, Err(Error::InvalidEnvelope(_))),
                "{text}: {answer:?}"
            );
        }
        assert!(device.client.state.snapshot().platform_handed.is_empty());
        assert_eq!(handed_seq(device.platform(1).await), 1);
    }

    #[tokio::test]
    async fn a_sealed_push_is_opened_as_the_connection_would() {
        let mut device = Harness::in_memory();
        let public = identity().seal_key.unwrap().public_key();
        let content = SealedContent {
            payload: b"secret".to_vec(),
            content_type: "text/plain; charset=utf-8".into(),
            notification: None,
        };
        let mut sealed = push(1);
        sealed.payload = seal::seal(&public, DEVICE, &content, true).unwrap();
        sealed.content_type = seal::SEALED_CONTENT_TYPE.into();
        let answer = device
            .client
            .handle_platform_push(&Envelope::encode(&sealed, 4000))
            .await
            .unwrap();
        let PlatformPush::Message(message) = answer else {
            panic!("not handed: {answer:?}");
        };
        assert_eq!(message.data_str().unwrap(), "secret");
        assert_eq!(message.content_type, "text/plain; charset=utf-8");
    }

    #[tokio::test]
    async fn a_failed_save_hands_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("missing-dir").join("device.json");
        let mut device = Harness::new(StateKeeper::new(Some(gone), DeviceState::new(identity())));
        let answer = device.client.handle_platform_push(&envelope(1)).await;
        assert!(matches!(answer, Err(Error::StateIo { .. })), "{answer:?}");
        assert!(device.client.platform_handed.is_empty());
        assert_eq!(device.client.stats().platform_messages_handed, 0);
    }

    #[tokio::test]
    async fn bad_tokens_are_refused_before_any_request() {
        let device = Harness::in_memory();
        let refused = device
            .client
            .set_platform_token(PlatformToken::Fcm { token: "".into() })
            .await;
        assert!(
            matches!(refused, Err(Error::InvalidPlatformToken(_))),
            "{refused:?}"
        );
    }
}

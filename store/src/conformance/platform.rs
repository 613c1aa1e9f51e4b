//! Conformance cases of the platform gateways' state: tokens, settings, the queue of
//! platform sends and their outcomes.

use ringpush_protocol::platform::{PlatformService, PlatformToken};
use ringpush_protocol::{AppId, DeviceId, MessageId};

use crate::{PlatformJob, PlatformOutcome, PlatformRegistration, PlatformState, Store};

fn apns(token: &str) -> PlatformToken {
    PlatformToken::Apns {
        token: token.to_owned(),
        sandbox: false,
    }
}

fn job(device: u128, seq: u64) -> PlatformJob {
    PlatformJob {
        message: MessageId {
            device: DeviceId(device),
            seq,
        },
        app: AppId(7),
        unless_delivered: true,
        attempts: 0,
    }
}

pub async fn a_platform_token_is_replaced_and_retired_only_if_still_current(store: &dyn Store) {
    let platform = store.platform();
    let device = DeviceId(0x51);
    assert_eq!(platform.platform_token(device).await.expect("read"), None);
    let first = PlatformRegistration {
        token: apns("aa01"),
        registered_at_ms: 10,
    };
    platform
        .set_platform_token(device, &first)
        .await
        .expect("set");
    assert_eq!(
        platform.platform_token(device).await.expect("read"),
        Some(first.clone())
    );
    // The platform rotated the token; a send to the old one then learns it is gone.
    let rotated = PlatformRegistration {
        token: PlatformToken::Fcm {
            token: "fcm-token-2".into(),
        },
        registered_at_ms: 20,
    };
    platform
        .set_platform_token(device, &rotated)
        .await
        .expect("replace");
    let retired = platform
        .retire_platform_token(device, &first.token)
        .await
        .expect("retire");
    assert!(!retired, "the rotated token must stay");
    assert_eq!(
        platform.platform_token(device).await.expect("read"),
        Some(rotated.clone())
    );
    let retired = platform
        .retire_platform_token(device, &rotated.token)
        .await
        .expect("retire");
    assert!(retired);
    assert_eq!(platform.platform_token(device).await.expect("read"), None);
}

pub async fn app_gateway_settings_are_kept_whole(store: &dyn Store) {
    let platform = store.platform();
    assert_eq!(platform.app_gateways(AppId(3)).await.expect("read"), None);
    let settings = r#"{"policy":{"route":"socket_first","delay_seconds":30}}"#;
    platform
        .set_app_gateways(AppId(3), settings)
        .await
        .expect("set");
    platform
        .set_app_gateways(AppId(3), "{}")
        .await
        .expect("replace");
    assert_eq!(
        platform.app_gateways(AppId(3)).await.expect("read"),
        Some("{}".to_owned())
    );
    assert_eq!(platform.app_gateways(AppId(4)).await.expect("read"), None);
}

pub async fn platform_sends_are_claimed_when_due_and_again_after_their_lease(store: &dyn Store) {
    let platform = store.platform();
    let (first, second, later) = (job(1, 1), job(2, 1), job(1, 2));
    let first_id = first.message;
    platform
        .schedule_platform_sends(&[(later.clone(), 5_000), (second.clone(), 1_500)])
        .await
        .expect("schedule");
    platform
        .schedule_platform_sends(&[(first.clone(), 1_000)])
        .await
        .expect("schedule");
    assert_eq!(platform.pending_platform_sends().await.expect("count"), 3);
    assert!(
        platform
            .claim_platform_sends(999, 10_000, 10)
            .await
            .expect("claim")
            .is_empty(),
        "nothing is due yet"
    );
    let claimed = platform
        .claim_platform_sends(2_000, 10_000, 1)
        .await
        .expect("claim");
    assert_eq!(claimed, [first], "oldest due first, at most the limit");
    let claimed = platform
        .claim_platform_sends(2_000, 10_000, 10)
        .await
        .expect("claim");
    assert_eq!(claimed[..], [second.clone()][..], "a claimed job is hidden");
    // The claimer of `first` died: its lease ends and the job is due again.
    let claimed = platform
        .claim_platform_sends(12_000, 10_000, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3, "{claimed:?}");
    // Finished jobs are gone; a rescheduled one comes back at its new time, attempts kept.
    platform
        .finish_platform_send(first_id)
        .await
        .expect("finish");
    platform
        .finish_platform_send(later.message)
        .await
        .expect("finish");
    let retried = PlatformJob {
        attempts: 1,
        ..second.clone()
    };
    platform
        .schedule_platform_sends(&[(retried.clone(), 30_000)])
        .await
        .expect("reschedule");
    assert_eq!(platform.pending_platform_sends().await.expect("count"), 1);
    assert!(
        platform
            .claim_platform_sends(29_999, 10_000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let claimed = platform
        .claim_platform_sends(30_000, 10_000, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0], retried);
    // Scheduling a message again replaces its job rather than adding one.
    platform
        .schedule_platform_sends(&[(retried.clone(), 1)])
        .await
        .expect("schedule");
    assert_eq!(platform.pending_platform_sends().await.expect("count"), 1);
    platform
        .finish_platform_send(retried.message)
        .await
        .expect("finish");
    assert_eq!(platform.pending_platform_sends().await.expect("count"), 0);
}

pub async fn platform_outcomes_are_recorded_per_message(store: &dyn Store) {
    let platform = store.platform();
    let message = MessageId {
        device: DeviceId(9),
        seq: 4,
    };
    assert_eq!(
        platform.platform_outcome(message).await.expect("read"),
        None
    );
    let scheduled = PlatformOutcome {
        state: PlatformState::Scheduled,
        service: Some(PlatformService::Apns),
        reason: Some("TooManyRequests".into()),
        attempts: 1,
        at_ms: 100,
    };
    platform
        .record_platform_outcome(message, &scheduled)
        .await
        .expect("record");
    let sent = PlatformOutcome {
        state: PlatformState::Sent,
        reason: None,
        attempts: 2,
        ..scheduled
    };
    platform
        .record_platform_outcome(message, &sent)
        .await
        .expect("record");
    assert_eq!(
        platform.platform_outcome(message).await.expect("read"),
        Some(sent)
    );
}

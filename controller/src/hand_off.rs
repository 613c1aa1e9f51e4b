//! The hand-off loop: moves the messages this region holds for unreachable home regions
//! (hinted hand-off, see `ringpush_store::HeldId`) into their home inboxes as soon as each
//! home answers, oldest first, then delivers them live like any other send.
//!
//! Every controller of a region runs the loop. Two of them moving the same messages at once
//! is harmless: each held message carries an idempotency key, so the home keeps one copy,
//! and the SDK drops the second live copy by message id.

use std::time::Duration;

use ringpush_store::{HandedOff, RegionalStore};
use tokio_util::sync::CancellationToken;

use crate::ControllerState;
use crate::send::outgoing_message;

/// How often each home's queue is looked at (a local read when nothing is held).
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Held messages moved in one write to their home.
const BATCH: usize = 256;
/// How often an unreachable home's failure is logged, at most.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Runs until `shutdown` fires.
pub(crate) async fn run(
    state: ControllerState,
    regional: RegionalStore,
    shutdown: CancellationToken,
) {
    let homes = regional.remote_homes();
    let mut last_warned: Vec<Option<tokio::time::Instant>> = vec![None; homes.len()];
    loop {
        for (home, warned) in homes.iter().zip(last_warned.iter_mut()) {
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                match regional.hand_off(*home, BATCH, state.config.inbox).await {
                    Ok(moved) if moved.is_empty() => break,
                    Ok(moved) => {
                        *warned = None;
                        deliver(&state, moved).await;
                    }
                    Err(error) => {
                        if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                            tracing::warn!(home = home.0, %error,
                                "held messages wait: their home region does not answer");
                            *warned = Some(tokio::time::Instant::now());
                        }
                        break;
                    }
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL_EVERY) => {}
        }
    }
}

async fn deliver(state: &ControllerState, moved: Vec<HandedOff>) {
    metrics::counter!("ringpush_controller_messages_handed_home_total")
        .increment(moved.len() as u64);
    tracing::info!(count = moved.len(), "held messages handed home");
    let outgoing = moved
        .into_iter()
        .map(|handed| outgoing_message(handed.message, handed.appended.seq))
        .collect();
    state.delivery.send(outgoing).await;
}

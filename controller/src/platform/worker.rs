//! The platform worker: every controller runs one. It claims due platform sends from the
//! store's queue (each for a lease, so a controller that dies mid-send loses nothing), skips
//! those the device already took over its connection, sends the rest through the gateways,
//! and settles each: sent, token retired, retried later with backoff, or failed.

use std::sync::Arc;

use futures_util::StreamExt;
use ringpush_gateway::Outcome;
use ringpush_protocol::platform::PlatformService;
use ringpush_store::{
    Counter, PlatformJob, PlatformOutcome, PlatformState, StatIncrement, StoreError,
};
use tokio_util::sync::CancellationToken;

use super::{Platform, store_now_ms};
use crate::ControllerState;

/// The subject under which an app's platform deliveries are counted
/// (`GET /v1/apps/{app}/platform/stats`).
pub const PLATFORM_STATS_SUBJECT: &str = "platform";

/// What one attempt at a job came to.
enum Step {
    /// Not sent, and not needed (`reason`: acked, delivered, connected, expired, no_token).
    Skipped(&'static str),
    Sent {
        service: PlatformService,
        campaign_id: Option<String>,
    },
    TokenRetired {
        service: PlatformService,
        token: ringpush_protocol::platform::PlatformToken,
        reason: String,
    },
    Retry {
        service: PlatformService,
        reason: String,
        after: Option<std::time::Duration>,
    },
    Failed {
        service: Option<PlatformService>,
        reason: String,
    },
}

/// Runs the worker until `shutdown` fires. Does nothing on a controller without a platform
/// path.
pub async fn run(state: ControllerState, shutdown: CancellationToken) {
    let Some(platform) = state.platform.clone() else {
        return;
    };
    loop {
        let now = store_now_ms(&state).await;
        let lease_ms = platform.config.lease.as_millis() as u64;
        let batch = platform.config.claim_batch;
        let claimed = state
            .store
            .platform()
            .claim_platform_sends(now, lease_ms, batch)
            .await;
        let mut more = false;
        match claimed {
            Ok(jobs) => {
                more = jobs.len() == batch;
                let sends = futures_util::stream::iter(jobs)
                    .for_each_concurrent(platform.config.sends_in_flight, |job| {
                        settle_one(&state, &platform, job)
                    });
                tokio::select! {
                    // Jobs cut short come back when their lease ends.
                    () = shutdown.cancelled() => return,
                    () = sends => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not claim platform sends; trying again");
                metrics::counter!("ringpush_platform_store_errors_total").increment(1);
            }
        }
        if more {
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(platform.config.poll_interval) => {}
            () = platform.due_now.notified() => {}
        }
    }
}

async fn settle_one(state: &ControllerState, platform: &Arc<Platform>, job: PlatformJob) {
    match attempt(state, platform, &job).await {
        Ok(step) => settle(state, platform, job, step).await,
        Err(error) => {
            // Left claimed: due again when its lease ends.
            tracing::warn!(message_id = %job.message, %error, "platform send deferred");
            metrics::counter!("ringpush_platform_store_errors_total").increment(1);
        }
    }
}

/// Decides whether the job's message still needs the platform path, and sends it if so.
async fn attempt(
    state: &ControllerState,
    platform: &Platform,
    job: &PlatformJob,
) -> Result<Step, StoreError> {
    let (device, seq) = (job.message.device, job.message.seq);
    let Some(registration) = state.store.platform().platform_token(device).await? else {
        return Ok(Step::Skipped("no_token"));
    };
    let now = ringpush_store::now_ms();
    let inbox = state.store.inbox_state(device, now).await?;
    if seq <= inbox.acked_up_to {
        return Ok(Step::Skipped("acked"));
    }
    if job.unless_delivered {
        if seq <= inbox.delivered_up_to {
            return Ok(Step::Skipped("delivered"));
        }
        if state.store.presence(device).await?.is_some() {
            return Ok(Step::Skipped("connected"));
        }
    }
    let pending = state.store.read_inbox(device, seq - 1, 1, now).await?;
    let Some(message) = pending.into_iter().find(|message| message.seq == seq) else {
        return Ok(Step::Skipped("expired"));
    };
    let service = registration.token.service();
    let Some(settings) = platform.settings(state, job.app).await? else {
        return Ok(Step::Failed {
            service: Some(service),
            reason: "not_configured".into(),
        });
    };
    let campaign_id = message.campaign_id.clone();
    let push = message.into_push(device);
    let outcome = platform
        .gateways
        .send(&settings, &registration.token, &push)
        .await;
    metrics::counter!("ringpush_platform_sends_total",
        "service" => service.as_str(), "outcome" => outcome.label())
    .increment(1);
    Ok(match outcome {
        Outcome::Delivered => Step::Sent {
            service,
            campaign_id,
        },
        Outcome::TokenRetired { reason } => Step::TokenRetired {
            service,
            token: registration.token,
            reason,
        },
        Outcome::Retry { reason, after } => Step::Retry {
            service,
            reason,
            after,
        },
        Outcome::Rejected { reason } => Step::Failed {
            service: Some(service),
            reason,
        },
        Outcome::NotConfigured => Step::Failed {
            service: Some(service),
            reason: "not_configured".into(),
        },
    })
}

/// Records what an attempt came to and finishes, retires or reschedules the job.
async fn settle(state: &ControllerState, platform: &Platform, job: PlatformJob, step: Step) {
    let store = state.store.platform();
    let attempts = job.attempts + 1;
    let mut outcome = PlatformOutcome {
        state: PlatformState::Failed,
        service: None,
        reason: None,
        attempts,
        at_ms: ringpush_store::now_ms(),
    };
    let mut counters: Vec<(String, Counter)> = Vec::new();
    match step {
        Step::Skipped(reason) => {
            metrics::counter!("ringpush_platform_skipped_total", "reason" => reason).increment(1);
            outcome.state = PlatformState::Skipped;
            outcome.reason = Some(reason.to_owned());
            outcome.attempts = job.attempts;
        }
        Step::Sent {
            service,
            campaign_id,
        } => {
            outcome.state = PlatformState::Sent;
            outcome.service = Some(service);
            let counter = delivered_via(service);
            counters.push((PLATFORM_STATS_SUBJECT.to_owned(), counter));
            if let Some(campaign) = campaign_id {
                counters.push((campaign, counter));
            }
        }
        Step::TokenRetired {
            service,
            token,
            reason,
        } => {
            match store
                .retire_platform_token(job.message.device, &token)
                .await
            {
                Ok(_) => tracing::info!(device_id = %job.message.device,
                    service = service.as_str(), reason, "platform token retired"),
                Err(error) => tracing::warn!(device_id = %job.message.device, %error,
                    "could not retire a platform token"),
            }
            metrics::counter!("ringpush_platform_tokens_retired_total",
                "service" => service.as_str())
            .increment(1);
            outcome.service = Some(service);
            outcome.reason = Some(reason);
            counters.push((PLATFORM_STATS_SUBJECT.to_owned(), Counter::Failed));
        }
        Step::Retry {
            service,
            reason,
            after,
        } if attempts < platform.config.max_attempts => {
            let delay = platform.config.retry_delay(attempts, after);
            let due_at_ms = store_now_ms(state)
                .await
                .saturating_add(delay.as_millis() as i64);
            let retried = PlatformJob { attempts, ..job };
            outcome.state = PlatformState::Scheduled;
            outcome.service = Some(service);
            outcome.reason = Some(reason);
            tracing::debug!(message_id = %retried.message, attempts, ?delay, "platform send retried later");
            record(state, &retried, &outcome).await;
            if let Err(error) = store
                .schedule_platform_sends(&[(retried.clone(), due_at_ms)])
                .await
            {
                // Still claimed: due again when its lease ends.
                tracing::warn!(message_id = %retried.message, %error, "could not reschedule");
            }
            return;
        }
        Step::Retry {
            service, reason, ..
        } => {
            metrics::counter!("ringpush_platform_gave_up_total", "service" => service.as_str())
                .increment(1);
            outcome.service = Some(service);
            outcome.reason = Some(format!("gave up after {attempts} attempts: {reason}"));
            counters.push((PLATFORM_STATS_SUBJECT.to_owned(), Counter::Failed));
        }
        Step::Failed { service, reason } => {
            tracing::warn!(message_id = %job.message, reason, "platform send failed");
            outcome.service = service;
            outcome.reason = Some(reason);
            counters.push((PLATFORM_STATS_SUBJECT.to_owned(), Counter::Failed));
        }
    }
    if let Some(service) = outcome.service
        && outcome.state == PlatformState::Failed
    {
        let reason = outcome.reason.clone().unwrap_or_default();
        metrics::counter!("ringpush_platform_failures_total",
            "service" => service.as_str(), "reason" => failure_label(&reason))
        .increment(1);
    }
    record(state, &job, &outcome).await;
    count(state, &job, &counters).await;
    if let Err(error) = store.finish_platform_send(job.message).await {
        tracing::warn!(message_id = %job.message, %error, "could not finish a platform send");
    }
}

/// The statistics counter of a delivery through `service`.
fn delivered_via(service: PlatformService) -> Counter {
    match service {
        PlatformService::Apns => Counter::DeliveredApns,
        PlatformService::Fcm => Counter::DeliveredFcm,
        PlatformService::WebPush => Counter::DeliveredWebPush,
    }
}

/// A failure reason as a metric label: the service's reason word, without any detail.
fn failure_label(reason: &str) -> String {
    if reason.starts_with("gave up") {
        return "gave_up".to_owned();
    }
    let word: String = reason
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect();
    if word.is_empty() {
        "other".to_owned()
    } else {
        word
    }
}

async fn record(state: &ControllerState, job: &PlatformJob, outcome: &PlatformOutcome) {
    if let Err(error) = state
        .store
        .platform()
        .record_platform_outcome(job.message, outcome)
        .await
    {
        tracing::warn!(message_id = %job.message, %error, "could not record a platform outcome");
    }
}

async fn count(state: &ControllerState, job: &PlatformJob, counters: &[(String, Counter)]) {
    if counters.is_empty() {
        return;
    }
    let minute = ringpush_store::now_ms() / 60_000;
    let increments: Vec<StatIncrement> = counters
        .iter()
        .map(|(subject, counter)| StatIncrement {
            app: job.app,
            subject: subject.clone(),
            counter: *counter,
            minute,
            by: 1,
        })
        .collect();
    if let Err(error) = state.store.stats().add_stats(&increments).await {
        tracing::warn!(app_id = %job.app, %error, "could not count platform statistics");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_labels_keep_the_reason_word_only() {
        assert_eq!(failure_label("Unregistered"), "Unregistered");
        assert_eq!(
            failure_label("gave up after 8 attempts: TooManyRequests"),
            "gave_up"
        );
        assert_eq!(failure_label("QUOTA_EXCEEDED"), "QUOTA_EXCEEDED");
        assert_eq!(failure_label(""), "other");
    }
}

//! At send time: which of a send's messages also go through a platform service, and when.
//!
//! Only devices that registered a platform token, of an app with gateway settings, on a route
//! other than socket only. Socket first: due after the app's delay, at once for a
//! high-priority message (the worker still skips a device that is connected or already has
//! it). Platform only: due at once, whatever the connection does.

use std::collections::HashSet;
use std::time::Duration;

use ringpush_gateway::Route;
use ringpush_protocol::{DeviceId, MessageId};
use ringpush_store::{AppRecord, PlatformJob};

use super::store_now_ms;
use crate::ControllerState;

/// How a send's messages use the platform path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlatformRoute {
    pub(crate) route: Route,
    /// Socket first: how long a normal-priority message waits for the connection.
    pub(crate) delay: Duration,
}

/// A message now durable in its device's inbox, as planning needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlannedMessage {
    pub(crate) device: DeviceId,
    pub(crate) seq: u64,
    pub(crate) high_priority: bool,
}

impl ControllerState {
    /// The route a send to `app` takes on the platform path: the message's own, else the
    /// app's; `None` when this controller has no platform path, the app configured no
    /// gateway, or the route is socket only. A settings read that fails leaves the platform
    /// path out of this send (logged): the messages are in their inboxes all the same.
    pub(crate) async fn platform_route(
        &self,
        app: &AppRecord,
        message_route: Option<Route>,
    ) -> Option<PlatformRoute> {
        let platform = self.platform.as_ref()?;
        let settings = match platform.settings(self, app.id).await {
            Ok(settings) => settings?,
            Err(error) => {
                tracing::warn!(app_id = %app.id, %error, "gateway settings unreadable; socket only");
                metrics::counter!("ringpush_platform_plan_failures_total").increment(1);
                return None;
            }
        };
        let route = message_route.unwrap_or(settings.policy.route);
        (route != Route::SocketOnly).then(|| PlatformRoute {
            route,
            delay: Duration::from_secs(settings.policy.delay_seconds),
        })
    }

    /// Of `devices`, those with a platform token (read from their home stores at once).
    pub(crate) async fn devices_with_platform_tokens(
        &self,
        devices: &[DeviceId],
    ) -> HashSet<DeviceId> {
        let unique: HashSet<DeviceId> = devices.iter().copied().collect();
        let platform = self.store.platform();
        let reads = unique
            .iter()
            .map(|device| async move { (*device, platform.platform_token(*device).await) });
        let mut with_token = HashSet::new();
        for (device, read) in futures_util::future::join_all(reads).await {
            match read {
                Ok(Some(_)) => {
                    with_token.insert(device);
                }
                Ok(None) => {}
                Err(error) => {
                    // Planned anyway: the worker reads the token again before sending.
                    tracing::warn!(device_id = %device, %error, "platform token unreadable");
                    with_token.insert(device);
                }
            }
        }
        with_token
    }

    /// Plans a platform send for each of `messages` (durable when this returns, unless the
    /// store fails: then logged and counted, and the messages wait in their inboxes).
    pub(crate) async fn plan_platform_sends(
        &self,
        app: &AppRecord,
        route: PlatformRoute,
        messages: &[PlannedMessage],
    ) {
        let Some(platform) = self.platform.as_ref() else {
            return;
        };
        if messages.is_empty() {
            return;
        }
        let now = store_now_ms(self).await;
        let mut due_now = false;
        let jobs: Vec<(PlatformJob, i64)> = messages
            .iter()
            .map(|message| {
                let at_once = route.route == Route::PlatformOnly || message.high_priority;
                due_now |= at_once;
                let due_at_ms = match at_once {
                    true => now,
                    false => now.saturating_add(route.delay.as_millis() as i64),
                };
                let job = PlatformJob {
                    message: MessageId {
                        device: message.device,
                        seq: message.seq,
                    },
                    app: app.id,
                    unless_delivered: route.route == Route::SocketFirst,
                    attempts: 0,
                };
                (job, due_at_ms)
            })
            .collect();
        match self.store.platform().schedule_platform_sends(&jobs).await {
            Ok(()) => {
                metrics::counter!("ringpush_platform_planned_total").increment(jobs.len() as u64);
                if due_now {
                    platform.due_now.notify_one();
                }
            }
            Err(error) => {
                tracing::warn!(app_id = %app.id, %error, jobs = jobs.len(),
                    "platform sends not planned; the messages wait in their inboxes");
                metrics::counter!("ringpush_platform_plan_failures_total").increment(1);
            }
        }
    }
}

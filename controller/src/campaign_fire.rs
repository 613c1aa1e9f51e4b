//! How the scheduler's firings become sends: the campaign's stored request, narrowed to one
//! time zone for local-time campaigns, sent through the same path as the REST API under the
//! firing's idempotency key.

use async_trait::async_trait;
use ringpush_audience::{Audience, DeviceAttributes};
use ringpush_schedule::{Firing, Schedule};
use ringpush_store::{AppRecord, CampaignRecord};

use crate::ControllerState;
use crate::error::ApiError;
use crate::scheduler::FireCampaign;
use crate::send::SendContext;
use crate::target::{SendRequest, Target};

/// Fires campaigns by sending them.
pub struct CampaignSender {
    state: ControllerState,
}

impl CampaignSender {
    pub fn new(state: ControllerState) -> Self {
        Self { state }
    }

    /// The campaign's target, narrowed to the devices a local-time firing is for: those in
    /// `zone`; for the default zone's firing, also those with no zone or a zone that gets no
    /// firing of its own (an unknown name).
    async fn narrow(
        &self,
        app: &AppRecord,
        target: Target,
        zone: &str,
        default_zone: &str,
    ) -> Result<Target, ApiError> {
        let other_zones: Vec<String> = if zone == default_zone {
            self.state
                .store
                .registry()
                .app_time_zones(app.id)
                .await?
                .into_iter()
                .filter(|z| z != default_zone && ringpush_schedule::zone::is_known(z))
                .collect()
        } else {
            Vec::new()
        };
        let in_firing = |attributes: &DeviceAttributes| match attributes.timezone.as_deref() {
            Some(tz) if tz == zone => true,
            Some(tz) if zone == default_zone => !other_zones.iter().any(|z| z == tz),
            None => zone == default_zone,
            Some(_) => false,
        };
        match target {
            Target::Audience(audience) => {
                let narrowed = if zone == default_zone {
                    default_zone_audience(audience, default_zone, &other_zones)?
                } else {
                    let this_zone = Audience::timezone_is(zone)
                        .map_err(|e| ApiError::InvalidRequest(format!("zone: {e}")))?;
                    audience
                        .and(this_zone)
                        .map_err(|e| ApiError::InvalidRequest(format!("audience: {e}")))?
                };
                Ok(Target::Audience(narrowed))
            }
            Target::Devices(devices) => {
                let attributes = self
                    .state
                    .store
                    .registry()
                    .attributes_many(&devices)
                    .await?;
                let nobody = DeviceAttributes::default();
                Ok(Target::Devices(
                    devices
                        .into_iter()
                        .zip(attributes)
                        .filter(|(_, a)| in_firing(a.as_ref().unwrap_or(&nobody)))
                        .map(|(device, _)| device)
                        .collect(),
                ))
            }
            // Aliases resolve at send time; narrowing them needs the devices, so resolve now.
            Target::Aliases(aliases) => {
                let devices = self.state.resolve_aliases(app, &aliases).await?;
                Box::pin(self.narrow(app, Target::Devices(devices), zone, default_zone)).await
            }
        }
    }
}

/// `audience and not (timezone = z1 or …)` over the zones that fire on their own; when that
/// is too long for an audience, `audience and (timezone = default or no timezone)`, which
/// leaves out devices with an unknown zone name.
fn default_zone_audience(
    audience: Audience,
    default_zone: &str,
    other_zones: &[String],
) -> Result<Audience, ApiError> {
    let invalid = |e: String| ApiError::InvalidRequest(format!("audience: {e}"));
    let mut elsewhere: Option<Audience> = None;
    for zone in other_zones {
        let this = Audience::timezone_is(zone).map_err(|e| invalid(e.to_string()))?;
        elsewhere = Some(match elsewhere {
            None => this,
            Some(so_far) => match so_far.or(this) {
                Ok(both) => both,
                Err(_) => return simple_default(audience, default_zone),
            },
        });
    }
    let Some(elsewhere) = elsewhere else {
        return Ok(audience);
    };
    let here = Audience::parse(&format!("not ({elsewhere})")).map_err(|e| invalid(e.to_string()));
    match here.and_then(|here| {
        audience
            .clone()
            .and(here)
            .map_err(|e| invalid(e.to_string()))
    }) {
        Ok(narrowed) => Ok(narrowed),
        Err(_) => simple_default(audience, default_zone),
    }
}

fn simple_default(audience: Audience, default_zone: &str) -> Result<Audience, ApiError> {
    let invalid = |e: String| ApiError::InvalidRequest(format!("audience: {e}"));
    let here = Audience::timezone_is(default_zone)
        .map_err(|e| invalid(e.to_string()))?
        .or(Audience::without_timezone())
        .map_err(|e| invalid(e.to_string()))?;
    audience.and(here).map_err(|e| invalid(e.to_string()))
}

#[async_trait]
impl FireCampaign for CampaignSender {
    async fn fire(
        &self,
        campaign: &CampaignRecord,
        firing: &Firing,
        idempotency_key: &str,
    ) -> Result<(), String> {
        let result = async {
            let app = self
                .state
                .store
                .app(campaign.app)
                .await?
                .ok_or_else(|| ApiError::UnknownApp(campaign.app.to_string()))?;
            let request: SendRequest = serde_json::from_value(campaign.request.clone())
                .map_err(|e| ApiError::InvalidRequest(format!("stored request: {e}")))?;
            let mut send = request.validate(&self.state.config)?;
            if let (Some(zone), Schedule::LocalTime { default_zone, .. }) =
                (&firing.zone, &campaign.schedule)
            {
                send.target = self.narrow(&app, send.target, zone, default_zone).await?;
                if matches!(&send.target, Target::Devices(devices) if devices.is_empty()) {
                    return Ok(());
                }
            }
            let context = SendContext {
                idempotency_key: Some(format!("{}:{idempotency_key}", app.id)),
                campaign_id: Some(campaign.id.clone()),
                throttle_per_second: campaign.throttle_per_second,
            };
            self.state.execute_send(&app, send, context).await.map(drop)
        }
        .await;
        result.map_err(|error: ApiError| error.to_string())
    }
}

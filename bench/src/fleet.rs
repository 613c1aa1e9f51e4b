//! A fleet of simulated devices held online for a benchmark: registered through the REST
//! API, each connected straight to the connector that owns it on the ring. Attributes let an
//! audience pick devices: `slot` (its index: `attr.slot < k` is the first k), `connector`
//! (the index of the connector holding it) and `rank` (its index among that connector's).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use ringpush_harness::Platform;
use ringpush_harness::sim::{ArrivalLog, SimDevice, SimOptions};
use ringpush_protocol::DeviceId;
use ringpush_protocol::device::Attributes;
use ringpush_ring::{Member, Ring};
use serde_json::json;

/// Registrations and connections in flight at once.
const CONCURRENCY: usize = 64;

/// The attribute that numbers the devices: `attr.slot < k` is the first k.
pub const SLOT_ATTRIBUTE: &str = "slot";

/// The devices of one app, online.
pub struct Fleet {
    pub app: String,
    pub server_key: String,
    /// Device ids in slot order.
    pub ids: Vec<String>,
    /// Devices held by each connector, in the platform's connector order.
    pub per_connector: Vec<usize>,
    /// Every push any device of the fleet receives.
    pub arrivals: Arc<ArrivalLog>,
    /// Dropping them closes the sockets.
    _devices: Vec<SimDevice>,
}

impl Fleet {
    /// Registers `count` devices in a new app and connects each to its owner.
    pub async fn start(platform: &Platform, count: usize) -> anyhow::Result<Fleet> {
        let (app, server_key, client_key) = platform.create_app().await;
        let started = Instant::now();
        let registered: Vec<(String, String)> = futures_util::stream::iter(0..count)
            .map(|_| register(platform, &app, &client_key))
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        eprintln!(
            "registered {count} devices in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let members = members(platform);
        let ring = Ring::new(members.clone(), ringpush_ring::DEFAULT_VNODES);
        let arrivals = Arc::new(ArrivalLog::default());
        let mut per_connector = vec![0; members.len()];
        let mut plan = Vec::with_capacity(count);
        for (slot, (id, token)) in registered.iter().enumerate() {
            let device: DeviceId = id.parse().context("the controller answered a bad id")?;
            let owner = ring.owner(device).context("the ring has no members")?;
            let index = members
                .iter()
                .position(|member| member.id == owner.id)
                .context("the owner is one of the members")?;
            let attributes = device_attributes(slot, index, per_connector[index]);
            per_connector[index] += 1;
            plan.push((
                attributes,
                owner.device_url.clone(),
                id.clone(),
                token.clone(),
            ));
        }
        let started = Instant::now();
        let devices: Vec<SimDevice> = futures_util::stream::iter(plan)
            .map(|(attributes, url, id, token)| {
                let options = SimOptions {
                    attributes: Some(attributes),
                    arrivals: Some(arrivals.clone()),
                    ..SimOptions::default()
                };
                async move {
                    let device = SimDevice::connect_with(&url, &id, &token, 0, options).await;
                    device.welcomed().await;
                    device
                }
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        eprintln!(
            "connected {count} devices in {:.1} s ({} per connector)",
            started.elapsed().as_secs_f64(),
            per_connector
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" + ")
        );
        let fleet = Fleet {
            app,
            server_key,
            ids: registered.into_iter().map(|(id, _)| id).collect(),
            per_connector,
            arrivals,
            _devices: devices,
        };
        fleet.wait_for_attributes(platform).await?;
        Ok(fleet)
    }

    /// Waits until the registry has every device's slot (the connectors write attributes in
    /// batches), so that an audience on `slot` reaches the whole fleet.
    async fn wait_for_attributes(&self, platform: &Platform) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let path = format!("/v1/apps/{}/audience/estimate", self.app);
        let everyone = json!({ "segment": format!("attr.{SLOT_ATTRIBUTE} >= 0") });
        loop {
            let (status, body) = platform
                .post(&path, &self.server_key, &everyone, None)
                .await;
            let reach = body["reach"].as_u64().unwrap_or(0);
            if status == 200 && reach == self.ids.len() as u64 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the registry has the slot of {reach} devices of {} (status {status})",
                    self.ids.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub(crate) async fn register(
    platform: &Platform,
    app: &str,
    client_key: &str,
) -> anyhow::Result<(String, String)> {
    let (status, body) = platform
        .post(
            &format!("/v1/apps/{app}/devices"),
            client_key,
            &json!({}),
            None,
        )
        .await;
    if status != 201 {
        bail!("registration answered {status}: {body}");
    }
    let field = |name: &str| {
        body[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("registration answered no {name}: {body}"))
    };
    Ok((field("device_id")?, field("device_token")?))
}

/// The platform's connectors as the ring sees them (the harness starts them as `c0`, `c1`…).
pub(crate) fn members(platform: &Platform) -> Vec<Member> {
    platform
        .connectors
        .iter()
        .map(|connector| Member {
            id: connector.id.clone(),
            device_url: format!("ws://{}/v1/connect", connector.device_addr),
            grpc_url: format!("http://{}", connector.grpc_addr),
        })
        .collect()
}

fn device_attributes(slot: usize, connector: usize, rank: usize) -> Attributes {
    let custom = [
        (SLOT_ATTRIBUTE, slot),
        ("connector", connector),
        ("rank", rank),
    ];
    Attributes {
        custom: custom
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.to_string()))
            .collect(),
        ..Default::default()
    }
}

//! `ringpush send`: a push to devices, aliases or an audience, now or on a schedule, with an
//! optional live progress bar.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args};
use serde_json::{Value, json};

use crate::client::post_json;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["devices", "aliases", "tags", "topic", "segment", "broadcast"])))]
#[command(group(ArgGroup::new("when").args(["at", "local_time", "cron"])))]
pub struct SendArgs {
    /// Controller URL.
    #[arg(long, env = "RINGPUSH_CONTROLLER", default_value = crate::client::DEFAULT_CONTROLLER)]
    pub controller: String,
    /// App id.
    #[arg(long, env = "RINGPUSH_APP_ID")]
    pub app_id: String,
    /// The app's server key.
    #[arg(long, env = "RINGPUSH_SERVER_KEY", hide_env_values = true)]
    pub server_key: String,
    /// Trust this CA (PEM) for an https controller URL.
    #[arg(long, env = "RINGPUSH_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,

    /// A target device id; repeat the flag or separate ids with commas.
    #[arg(long = "device", value_delimiter = ',')]
    pub devices: Vec<String>,
    /// A target alias (the app's user id); repeat or separate with commas.
    #[arg(long = "alias", value_delimiter = ',')]
    pub aliases: Vec<String>,
    /// A tag expression, e.g. "vip and (cn or us) and not churned".
    #[arg(long)]
    pub tags: Option<String>,
    /// A topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// A segment filter, e.g. "platform = ios and app_version >= 2.3".
    #[arg(long)]
    pub segment: Option<String>,
    /// Every device of the app.
    #[arg(long)]
    pub broadcast: bool,

    /// The payload as text.
    #[arg(long, conflicts_with = "json")]
    pub data: Option<String>,
    /// The payload as JSON.
    #[arg(long)]
    pub json: Option<String>,
    /// Seconds the message stays deliverable (default: the controller's, 7 days).
    #[arg(long)]
    pub ttl_seconds: Option<u64>,
    /// Makes a retried send safe: the same key answers the same message ids.
    #[arg(long)]
    pub idempotency_key: Option<String>,

    /// A notification title (a notification may stand without --data or --json).
    #[arg(long)]
    pub title: Option<String>,
    /// A notification body.
    #[arg(long)]
    pub body: Option<String>,
    /// A URL the app opens when the notification is tapped, e.g. myapp://orders/42.
    #[arg(long)]
    pub deep_link: Option<String>,
    /// The number to show on the app's icon.
    #[arg(long)]
    pub badge: Option<u32>,
    /// A newer pending message with the same key replaces an older one.
    #[arg(long)]
    pub collapse_key: Option<String>,
    /// How urgent the message is.
    #[arg(long, value_parser = ["normal", "high"])]
    pub priority: Option<String>,
    /// For devices with an APNs, FCM or Web Push token: whether the platform service is used
    /// too (default: the app's gateway policy; see docs/gateways.md).
    #[arg(long, value_parser = ["socket_first", "socket_only", "platform_only"])]
    pub route: Option<String>,

    /// Send at this time (RFC 3339, e.g. 2026-11-23T09:00:00Z), as a campaign.
    #[arg(long)]
    pub at: Option<String>,
    /// Send at this wall-clock time in each device's own zone ("YYYY-MM-DD HH:MM"), as a campaign.
    #[arg(long)]
    pub local_time: Option<String>,
    /// The zone of devices that reported none, with --local-time.
    #[arg(long, default_value = "UTC")]
    pub default_zone: String,
    /// Send on this cron schedule ("minute hour day month weekday"), as a campaign.
    #[arg(long)]
    pub cron: Option<String>,
    /// The zone the cron schedule is read in.
    #[arg(long, default_value = "UTC")]
    pub zone: String,
    /// Stop a cron campaign at this time (RFC 3339).
    #[arg(long, requires = "cron")]
    pub until: Option<String>,
    /// Deliver at most this many messages per second (makes the send a campaign).
    #[arg(long)]
    pub throttle: Option<u32>,
    /// The campaign's name, when the send is a campaign.
    #[arg(long, default_value = "sent from the command line")]
    pub name: String,
    /// Show a live progress bar of delivered and acked (audiences and campaigns) until every
    /// targeted device has it, or --wait-seconds pass.
    #[arg(long)]
    pub progress: bool,
    /// How long --progress waits at most.
    #[arg(long, default_value_t = 600)]
    pub wait_seconds: u64,
}

fn rfc3339_ms(text: &str, flag: &str) -> anyhow::Result<i64> {
    let time = chrono::DateTime::parse_from_rfc3339(text).with_context(|| {
        format!("--{flag} must be an RFC 3339 time such as 2026-11-23T09:00:00Z")
    })?;
    Ok(time.timestamp_millis())
}

impl SendArgs {
    /// The send request body.
    fn message(&self) -> anyhow::Result<Value> {
        let notification = self.notification();
        let mut body = json!({});
        match (&self.data, &self.json) {
            (Some(text), _) => body["data"] = Value::String(text.clone()),
            (None, Some(text)) => {
                body["data"] = serde_json::from_str(text).context("--json is not valid JSON")?;
            }
            (None, None) if notification.is_some() => {}
            (None, None) => bail!(
                "give the payload with --data or --json, or a notification with --title or --body"
            ),
        }
        if let Some(notification) = notification {
            body["notification"] = notification;
        }
        if let Some(key) = &self.collapse_key {
            body["collapse_key"] = json!(key);
        }
        if let Some(priority) = &self.priority {
            body["priority"] = json!(priority);
        }
        if let Some(route) = &self.route {
            body["route"] = json!(route);
        }
        if !self.devices.is_empty() {
            body["device_ids"] = json!(self.devices);
        } else if !self.aliases.is_empty() {
            body["aliases"] = json!(self.aliases);
        } else if let Some(tags) = &self.tags {
            body["tags"] = json!(tags);
        } else if let Some(topic) = &self.topic {
            body["topic"] = json!(topic);
        } else if let Some(segment) = &self.segment {
            body["segment"] = json!(segment);
        } else {
            body["broadcast"] = json!(true);
        }
        if let Some(ttl) = self.ttl_seconds {
            body["ttl_seconds"] = json!(ttl);
        }
        Ok(body)
    }

    /// The notification shape of the flags, if any was given.
    fn notification(&self) -> Option<Value> {
        let notification = ringpush_sdk::Notification {
            title: self.title.clone(),
            body: self.body.clone(),
            deep_link: self.deep_link.clone(),
            badge: self.badge,
        };
        (notification != ringpush_sdk::Notification::default())
            .then(|| crate::client::notification_json(&notification))
    }

    /// The campaign schedule, if the send is a campaign.
    fn schedule(&self) -> anyhow::Result<Option<Value>> {
        if let Some(at) = &self.at {
            return Ok(Some(
                json!({ "kind": "once", "at_ms": rfc3339_ms(at, "at")? }),
            ));
        }
        if let Some(local) = &self.local_time {
            let (date, time) = local
                .split_once(' ')
                .context("--local-time must look like \"2026-11-23 09:00\"")?;
            return Ok(Some(json!({
                "kind": "local_time", "date": date, "time": time, "default_zone": self.default_zone
            })));
        }
        if let Some(expression) = &self.cron {
            let until_ms = self
                .until
                .as_deref()
                .map(|u| rfc3339_ms(u, "until"))
                .transpose()?;
            return Ok(Some(json!({
                "kind": "cron", "expression": expression, "zone": self.zone, "until_ms": until_ms
            })));
        }
        Ok(None)
    }
}

/// `ringpush send`.
pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let http = crate::client::http_client(args.ca_cert.as_deref())?;
    let base = format!(
        "{}/v1/apps/{}",
        args.controller.trim_end_matches('/'),
        args.app_id
    );
    let message = args.message()?;
    let schedule = args.schedule()?;
    let stats_path = if schedule.is_some() || args.throttle.is_some() {
        let mut body = json!({ "name": args.name, "message": message });
        if let Some(schedule) = schedule {
            body["schedule"] = schedule;
        }
        if let Some(rate) = args.throttle {
            body["throttle_per_second"] = json!(rate);
        }
        let url = format!("{base}/campaigns");
        let answer = post_json(
            &http,
            &url,
            &args.server_key,
            args.idempotency_key.as_deref(),
            &body,
        )
        .await?;
        println!("{}", serde_json::to_string(&answer)?);
        answer["id"]
            .as_str()
            .map(|id| format!("{base}/campaigns/{id}/stats"))
    } else {
        let url = format!("{base}/messages");
        let answer = post_json(
            &http,
            &url,
            &args.server_key,
            args.idempotency_key.as_deref(),
            &message,
        )
        .await?;
        println!("{}", serde_json::to_string(&answer)?);
        answer["message_id"]
            .as_str()
            .map(|id| format!("{base}/messages/{id}/stats"))
    };
    if args.progress
        && let Some(url) = stats_path
    {
        show_progress(
            &http,
            &url,
            &args.server_key,
            Duration::from_secs(args.wait_seconds),
        )
        .await?;
    }
    Ok(())
}

/// Polls statistics and draws delivered and acked against targeted on stderr.
async fn show_progress(
    http: &reqwest::Client,
    url: &str,
    server_key: &str,
    wait: Duration,
) -> anyhow::Result<()> {
    let style = indicatif::ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} {msg}")
        .expect("valid template")
        .progress_chars("=> ");
    let bars = indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr());
    let delivered = bars.add(
        indicatif::ProgressBar::new(0)
            .with_style(style.clone())
            .with_prefix("delivered"),
    );
    let acked = bars.add(
        indicatif::ProgressBar::new(0)
            .with_style(style)
            .with_prefix("acked"),
    );
    let deadline = tokio::time::Instant::now() + wait;
    let mut last = None;
    loop {
        let response = http.get(url).bearer_auth(server_key).send().await?;
        if response.status().is_success() {
            let stats: Value = response.json().await?;
            let total = |name: &str| stats["totals"][name].as_u64().unwrap_or(0);
            let targeted = total("targeted");
            last = Some((
                targeted,
                total("delivered"),
                total("acked"),
                total("pending"),
            ));
            for bar in [&delivered, &acked] {
                bar.set_length(targeted);
            }
            delivered.set_position(total("delivered"));
            acked.set_position(total("acked"));
            delivered.set_message(format!("pending {}", total("pending")));
            let done =
                total("pending") == 0 && targeted > 0 && total("acked") >= total("delivered");
            if done {
                break;
            }
        }
        if tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    delivered.finish();
    acked.finish();
    // Without a terminal the bars are not drawn: say where things ended, once.
    if !std::io::IsTerminal::is_terminal(&std::io::stderr())
        && let Some((targeted, delivered, acked, pending)) = last
    {
        eprintln!("delivered {delivered}/{targeted}, acked {acked}/{targeted}, pending {pending}");
    }
    Ok(())
}

//! The client commands: `app create`, `send`, `listen`.
//!
//! They talk to the REST API like any caller would and print the JSON answers on stdout;
//! errors go to stderr with a non-zero exit code.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

pub(crate) const DEFAULT_CONTROLLER: &str = "http://127.0.0.1:8080";
const DEFAULT_DISPATCHER: &str = "http://127.0.0.1:8081";

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an app; prints its JSON (app_id, server_key, client_key).
    Create {
        /// The app's name.
        name: String,
        /// Controller URL.
        #[arg(long, env = "RINGPUSH_CONTROLLER", default_value = DEFAULT_CONTROLLER)]
        controller: String,
        /// Admin token (printed by `ringpush dev`).
        #[arg(long, env = "RINGPUSH_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
        /// Trust this CA (PEM) for an https controller URL.
        #[arg(long, env = "RINGPUSH_CA_CERT")]
        ca_cert: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Controller URL (for registration).
    #[arg(long, env = "RINGPUSH_CONTROLLER", default_value = DEFAULT_CONTROLLER)]
    pub controller: String,
    /// Dispatcher URL.
    #[arg(long, env = "RINGPUSH_DISPATCHER", default_value = DEFAULT_DISPATCHER)]
    pub dispatcher: String,
    /// App id.
    #[arg(long, env = "RINGPUSH_APP_ID")]
    pub app_id: String,
    /// The app's client key.
    #[arg(long, env = "RINGPUSH_CLIENT_KEY", hide_env_values = true)]
    pub client_key: String,
    /// Keep the device's identity and position in this file, and reuse it on the next run.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Log filter for the SDK (to stderr).
    #[arg(long, env = "RINGPUSH_LOG", default_value = "warn")]
    pub log: String,
    /// A tag of this device (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// A topic this device follows (repeatable).
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// The app's user id for this device.
    #[arg(long)]
    pub alias: Option<String>,
    /// The device's IANA time zone, e.g. Asia/Tokyo.
    #[arg(long)]
    pub timezone: Option<String>,
    /// The device's platform, e.g. ios.
    #[arg(long)]
    pub platform: Option<String>,
    /// The app's version on the device, e.g. 2.3.1.
    #[arg(long)]
    pub app_version: Option<String>,
    /// The device's locale, e.g. zh-CN.
    #[arg(long)]
    pub locale: Option<String>,
    /// A custom attribute `key=value` (repeatable).
    #[arg(long = "attr", value_parser = parse_key_value)]
    pub attrs: Vec<(String, String)>,
    /// Report every message as opened, and print `{"opened": "<message_id>"}` for each.
    #[arg(long)]
    pub open: bool,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {text:?}"))
}

impl ListenArgs {
    /// The attributes given on the command line, if any.
    fn attributes(&self) -> Option<ringpush_sdk::DeviceAttributes> {
        let attributes = ringpush_sdk::DeviceAttributes {
            platform: self.platform.clone(),
            app_version: self.app_version.clone(),
            locale: self.locale.clone(),
            timezone: self.timezone.clone(),
            alias: self.alias.clone(),
            tags: self.tags.iter().cloned().collect(),
            topics: self.topics.iter().cloned().collect(),
            custom: self.attrs.iter().cloned().collect(),
            ..Default::default()
        };
        (attributes != ringpush_sdk::DeviceAttributes::default()).then_some(attributes)
    }
}

/// A random secret for the dev admin token.
pub fn random_token() -> String {
    let bytes: [u8; 24] = rand::random();
    format!(
        "adm_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// `ringpush app ...`.
pub async fn app(command: AppCommand) -> anyhow::Result<()> {
    match command {
        AppCommand::Create {
            name,
            controller,
            admin_token,
            ca_cert,
        } => {
            let http = http_client(ca_cert.as_deref())?;
            let url = format!("{}/v1/apps", controller.trim_end_matches('/'));
            let body = json!({ "name": name });
            let answer = post_json(&http, &url, &admin_token, None, &body).await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
    }
}

/// The HTTP client of the client commands: https URLs need `ca` (the controller's CA),
/// since no public roots are built in.
pub(crate) fn http_client(ca: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let builder = reqwest::Client::builder();
    let Some(ca) = ca else {
        return Ok(builder.build()?);
    };
    let tls = ringpush_tls::ClientTls {
        ca: ca.to_owned(),
        identity: None,
    }
    .config(&[b"http/1.1"])
    .map_err(|error| crate::serve::ConfigError(format!("--ca-cert: {error}")))?;
    let config = std::sync::Arc::unwrap_or_clone(tls);
    Ok(builder.use_preconfigured_tls(config).build()?)
}

pub(crate) async fn post_json(
    http: &reqwest::Client,
    url: &str,
    bearer: &str,
    idempotency_key: Option<&str>,
    body: &Value,
) -> anyhow::Result<Value> {
    let mut request = http.post(url).bearer_auth(bearer).json(body);
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let text = response.text().await.context("reading the answer")?;
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let message = answer["error"]["message"].as_str().unwrap_or("no details");
        let code = answer["error"]["code"].as_str().unwrap_or("unknown");
        bail!("{status}: {code}: {message}");
    }
    Ok(answer)
}

/// `ringpush listen`: a device on the SDK. Prints `{"device_id": ...}`, then one JSON line
/// per message (the SDK has already acked it and saved its position).
pub async fn listen(args: ListenArgs) -> anyhow::Result<()> {
    crate::telemetry::init_logs(&args.log, false);
    let app_id: ringpush_sdk::AppId = args
        .app_id
        .parse()
        .map_err(|e| anyhow::anyhow!("--app-id: {e}"))?;
    let mut config =
        ringpush_sdk::Config::new(&args.controller, &args.dispatcher, app_id, &args.client_key);
    if let Some(path) = &args.identity {
        config = config.with_state_file(path);
    }
    if let Some(attributes) = args.attributes() {
        config = config.with_attributes(attributes);
    }
    let mut client = ringpush_sdk::Client::start(config)
        .await
        .context("cannot start the device")?;
    print_line(&json!({ "device_id": client.device_id().to_string() }))?;
    let mut received = 0u64;
    while args.count.is_none_or(|count| received < count) {
        let message = tokio::select! {
            message = client.next_message() => message.context("the device stopped")?,
            _ = tokio::signal::ctrl_c() => break,
        };
        received += 1;
        print_line(&message_line(&message))?;
        if args.open {
            client.report_opened(&message);
            print_line(&json!({ "opened": message.message_id }))?;
        }
    }
    client.close().await;
    Ok(())
}

/// A message as `listen` prints it: JSON payloads inline, text as a string.
fn message_line(message: &ringpush_sdk::Message) -> Value {
    let data = if message.is_json() {
        message.json::<Value>().unwrap_or(Value::Null)
    } else {
        Value::String(String::from_utf8_lossy(&message.data).into_owned())
    };
    let mut line = json!({
        "message_id": message.message_id,
        "seq": message.seq,
        "data": data,
        "content_type": message.content_type,
        "created_at_ms": message.created_at_ms,
    });
    if message.stream == ringpush_sdk::Stream::Timeline {
        line["stream"] = json!("timeline");
    }
    if let Some(campaign) = &message.campaign_id {
        line["campaign_id"] = json!(campaign);
    }
    if message.skipped_before > 0 {
        line["skipped_before"] = json!(message.skipped_before);
    }
    if let Some(key) = &message.collapse_key {
        line["collapse_key"] = json!(key);
    }
    if message.priority == ringpush_sdk::Priority::High {
        line["priority"] = json!("high");
    }
    if let Some(notification) = &message.notification {
        line["notification"] = notification_json(notification);
    }
    line
}

fn print_line(value: &Value) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{value}")?;
    stdout.flush()?;
    Ok(())
}

/// A notification as JSON, with the fields it gives (as the REST API takes it and `listen`
/// prints it).
pub(crate) fn notification_json(notification: &ringpush_sdk::Notification) -> Value {
    let fields = [
        ("title", notification.title.as_ref().map(|t| json!(t))),
        ("body", notification.body.as_ref().map(|b| json!(b))),
        (
            "deep_link",
            notification.deep_link.as_ref().map(|l| json!(l)),
        ),
        ("badge", notification.badge.map(|b| json!(b))),
    ];
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_owned(), value?)))
            .collect(),
    )
}

//! The client commands: `app create`, `send`, `listen`.
//!
//! They talk to the REST API like any caller would and print the JSON answers on stdout;
//! errors go to stderr with a non-zero exit code.

use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

const DEFAULT_CONTROLLER: &str = "http://127.0.0.1:8080";
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
    },
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Controller URL.
    #[arg(long, env = "RINGPUSH_CONTROLLER", default_value = DEFAULT_CONTROLLER)]
    pub controller: String,
    /// App id.
    #[arg(long, env = "RINGPUSH_APP_ID")]
    pub app_id: String,
    /// The app's server key.
    #[arg(long, env = "RINGPUSH_SERVER_KEY", hide_env_values = true)]
    pub server_key: String,
    /// A target device id; repeat the flag or separate ids with commas.
    #[arg(long = "device", required = true, value_delimiter = ',')]
    pub devices: Vec<String>,
    /// The payload as text.
    #[arg(long, conflicts_with = "json", required_unless_present = "json")]
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
        } => {
            let url = format!("{}/v1/apps", controller.trim_end_matches('/'));
            let answer = post_json(&url, &admin_token, None, &json!({ "name": name })).await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
    }
}

/// `ringpush send`.
pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let data: Value = match (&args.data, &args.json) {
        (Some(text), _) => Value::String(text.clone()),
        (None, Some(text)) => serde_json::from_str(text).context("--json is not valid JSON")?,
        (None, None) => bail!("give the payload with --data or --json"),
    };
    let mut body = json!({ "device_ids": args.devices, "data": data });
    if let Some(ttl) = args.ttl_seconds {
        body["ttl_seconds"] = json!(ttl);
    }
    let url = format!(
        "{}/v1/apps/{}/messages",
        args.controller.trim_end_matches('/'),
        args.app_id
    );
    let answer = post_json(
        &url,
        &args.server_key,
        args.idempotency_key.as_deref(),
        &body,
    )
    .await?;
    println!("{}", serde_json::to_string(&answer)?);
    Ok(())
}

async fn post_json(
    url: &str,
    bearer: &str,
    idempotency_key: Option<&str>,
    body: &Value,
) -> anyhow::Result<Value> {
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(bearer)
        .json(body);
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
    if message.skipped_before > 0 {
        line["skipped_before"] = json!(message.skipped_before);
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

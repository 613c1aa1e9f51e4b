//! A device that prints every message it receives.
//!
//! ```text
//! cargo run -p ringpush-sdk --example listen -- \
//!     --controller http://127.0.0.1:8080 --dispatcher http://127.0.0.1:8081 \
//!     --app <app_id> --client-key <client_key> --state device.json
//! ```
//! Run it twice with the same `--state` file: the second run is the same device and prints
//! only what arrived since. `--tag vip --topic news` make it part of those audiences (a
//! broadcast to `vip` or to the topic `news` reaches it). Ctrl-C stops it cleanly (the last
//! messages are acked).

use anyhow::Context;
use clap::Parser;
use ringpush_sdk::{AppId, Client, Config, DeviceAttributes, Stream};

#[derive(Debug, Parser)]
struct Args {
    /// The controller's base URL (registration).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    controller: String,
    /// The dispatcher's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    dispatcher: String,
    /// The app id (16 hex characters).
    #[arg(long)]
    app: AppId,
    /// The app's client key.
    #[arg(long, env = "RINGPUSH_CLIENT_KEY")]
    client_key: String,
    /// Where to keep the device's identity and position.
    #[arg(long, default_value = "ringpush-device.json")]
    state: std::path::PathBuf,
    /// A tag to add to the device (repeat for more); kept in the state file.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// A topic to subscribe the device to (repeat for more); kept in the state file.
    #[arg(long = "topic")]
    topics: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let facts = DeviceAttributes {
        platform: Some(std::env::consts::OS.to_owned()),
        app_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        ..DeviceAttributes::default()
    };
    let config = Config::new(args.controller, args.dispatcher, args.app, args.client_key)
        .with_state_file(&args.state)
        .with_attributes(facts);
    let mut client = Client::start(config)
        .await
        .context("could not start the device")?;
    for tag in args.tags {
        client.add_tag(tag).await.context("could not add a tag")?;
    }
    for topic in args.topics {
        client
            .subscribe(topic)
            .await
            .context("could not subscribe")?;
    }
    println!(
        "device {} listening (state in {})",
        client.device_id(),
        args.state.display()
    );
    loop {
        let message = tokio::select! {
            message = client.next_message() => message?,
            _ = tokio::signal::ctrl_c() => break,
        };
        let text = message.data_str().unwrap_or("<binary payload>");
        let stream = match message.stream {
            Stream::Inbox => "inbox",
            Stream::Timeline => "timeline",
        };
        println!("{stream} #{} {} {}", message.seq, message.message_id, text);
        // A real app reports this when the user opens the notification.
        client.report_opened(&message);
        if message.skipped_before > 0 {
            println!(
                "  ({} earlier messages expired before delivery)",
                message.skipped_before
            );
        }
    }
    let stats = client.stats();
    client.close().await;
    println!("stopped: {stats:?}");
    Ok(())
}

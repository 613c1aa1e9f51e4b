//! The ringpush device SDK: registers a device, holds its connection to a connector, and hands
//! each message to the app exactly once, in order, across reconnects and restarts.
//!
//! ```no_run
//! use ringpush_sdk::{AppId, Client, Config, DeviceAttributes};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let app_id: AppId = "0123456789abcdef".parse()?;
//! let attributes = DeviceAttributes {
//!     platform: Some("linux".into()),
//!     app_version: Some("2.3.0".into()),
//!     ..DeviceAttributes::default()
//! };
//! let config = Config::new("http://127.0.0.1:8080", "http://127.0.0.1:8081", app_id, "client-key")
//!     .with_state_file("ringpush-device.json")
//!     .with_attributes(attributes);
//! // Registers the device on first start; later starts reuse the identity in the state file.
//! let mut client = Client::start(config).await?;
//! client.subscribe("news").await?; // audience messages for the topic `news` now reach it
//! println!("device {}", client.device_id());
//! loop {
//!     let message = client.next_message().await?;
//!     println!("{:?} #{} {}", message.stream, message.seq, message.data_str()?);
//!     client.report_opened(&message); // when the user opens it, for the statistics
//! }
//! # }
//! ```
//! `sdk/examples/listen.rs` is a complete program.
//!
//! # Platform notifications (APNs, FCM, Web Push)
//! A device that cannot always hold its connection (an iOS app in the background, an Android
//! phone in Doze, a closed browser tab) also registers its platform token, and the
//! controller's gateways reach it through that service while it is not connected:
//! ```no_run
//! # use ringpush_sdk::{Client, PlatformPush, PlatformToken};
//! # async fn run(client: &mut Client, apns_token_hex: String, envelope: &str)
//! #     -> Result<(), ringpush_sdk::Error> {
//! // At every launch, and whenever the platform gives the app a new token.
//! client
//!     .set_platform_token(PlatformToken::Apns { token: apns_token_hex, sandbox: false })
//!     .await?;
//! // For each platform notification: the value of its "ringpush" key (`ENVELOPE_KEY`).
//! match client.handle_platform_push(envelope).await? {
//!     PlatformPush::Message(message) => println!("show {}", message.data_str().unwrap_or("")),
//!     PlatformPush::Duplicate => {}            // the app already had it: show nothing
//!     PlatformPush::Pending { .. } => {}       // too large to ride along: next_message brings it
//! }
//! # Ok(())
//! # }
//! ```
//! A message comes to the app once across both paths and across restarts, whichever comes
//! first: [`Client::handle_platform_push`] saves what it hands, and [`Client::next_message`]
//! does not hand it again when the connection replays it (see the method's documentation).
//! [`Client::clear_platform_token`] stops the platform notifications.
//!
//! # How it works
//! - [`register`] creates a device with the controller (`POST /v1/apps/{app}/devices`) and
//!   returns its [`Identity`]. A [`Client`] does this on its first start and keeps the identity
//!   in its state file ([`state`]) with the highest seq handed to the app in each stream, the
//!   device's attributes and the last connector.
//! - Two streams ([`Stream`]): the device's inbox (messages to this device) and its app's
//!   timeline (audience messages: broadcasts, tags, topics, segments, stored once per app).
//!   Each has its own seqs, position, de-duplication and acks; a timeline gap is normal (the
//!   messages between were for other audiences).
//! - The client's background task asks the dispatcher for a connector only when it knows none
//!   (or the one it knows failed, or redirected it without a URL), opens a WebSocket, says Hello
//!   with the highest seq it has received in each stream, pings at the interval the Welcome
//!   gives, and reconnects with exponential backoff and full jitter ([`BackoffConfig`]).
//! - Exactly once, per stream: a push at or below the highest seq received in its stream is
//!   dropped; a message is saved as handed before [`Client::next_message`] returns it; only
//!   then is it acked (one cumulative Ack per burst, covering both streams), so the connector
//!   re-sends anything the app has not had.
//! - Attributes ([`DeviceAttributes`]: platform, versions, locale, time zone, alias, tags,
//!   topics, custom values) are saved in the state file and sent whole after each Welcome and
//!   after each change, at most once per 2 s per connection.
//! - Reports: RECEIVED for each handed message, OPENED and CLICKED when the app says so, sent
//!   in batches on the live connection and kept (bounded) while disconnected.
//! - Platform notifications: [`Client::set_platform_token`] registers the device's APNs, FCM
//!   or Web Push token with the controller; [`Client::handle_platform_push`] hands the
//!   message a notification carries, and the state file keeps the inbox seqs so handed
//!   ahead of the connection (at most [`MAX_PLATFORM_HANDED`]) so that the connection does
//!   not hand them again.
//! - Only what the app must act on comes out as an [`Error`]; transient trouble shows in
//!   [`Client::stats`] and in `tracing` events (with a `device_id` field).
//!
//! # Layout
//! - `client`: [`Client`], the app's side (attributes in `client::attributes`);
//! - `task`, `session` and `outbound`: the background connection and what it sends;
//! - `stream`, `inbound`, `ack`, `attributes` and `reports`: the per-stream de-duplication,
//!   ack coalescing, attribute debounce and report batching rules, free of socket I/O;
//! - `platform`: the de-duplication across platform notifications and the connection, and
//!   the platform token requests (the app's side of both in `client::platform`);
//! - `backoff`, `dispatcher`, `registration`, [`state`], `message`, `stats`, `error`.
//!
//! Does not own: the wire formats (`ringpush_protocol`), certificates (`tls` only builds
//! the client configuration from the system's roots or [`Config::with_tls_ca`]), or any UI; nor talking to APNs, FCM or a browser's push service: the
//! app gets the platform token and the notifications from its platform and passes them in.

#![warn(missing_docs)]

mod ack;
mod attributes;
mod backoff;
mod client;
mod config;
mod dispatcher;
mod error;
mod inbound;
mod message;
mod outbound;
mod platform;
mod registration;
mod reports;
mod session;
pub mod state;
mod stats;
mod stream;
mod task;
mod tls;

pub use backoff::BackoffConfig;
pub use client::Client;
pub use config::Config;
pub use error::{Error, Result};
pub use message::{CONTENT_TYPE_JSON, Message, Notification, Priority};
pub use platform::{MAX_PLATFORM_HANDED, PlatformPush};
pub use registration::{Identity, register};
pub use ringpush_audience::DeviceAttributes;
pub use ringpush_protocol::platform::{ENVELOPE_KEY, PlatformToken};
pub use ringpush_protocol::{AppId, DeviceId};
pub use stats::Stats;
pub use stream::Stream;
pub use tls::TlsCa;

/// The name and version this SDK announces to connectors in Hello (`ringpush-rust/<version>`).
pub const SDK_NAME: &str = session::SDK_NAME;

//! ringpush wire formats, shared by every component and by SDKs.
//!
//! Owns:
//! - [`device`]: the frames a device and a connector exchange (prost messages generated from
//!   `proto/device.proto`), with [`frame`] to encode and decode them under a size limit;
//! - [`internal`]: the gRPC service controllers call on connectors (`proto/connector.proto`);
//! - [`ws`]: the subset of WebSocket (RFC 6455) the connector speaks, as a codec over caller
//!   buffers so that an idle connection owns no buffer at all;
//! - [`ids`]: the identifiers that cross process boundaries (device, app, message);
//! - [`token`]: device tokens, signed and bound to one device;
//! - [`seal`]: payloads sealed to one device's key (HPKE), optionally compressed;
//! - [`platform`]: platform push tokens (APNs, FCM, Web Push) and the envelope a message
//!   rides in through those services.
//!
//! Does not own: sockets, tasks or any I/O; the connector and the SDK drive these codecs.
//! docs/protocol.md describes the protocol for implementers of other SDKs.

pub mod frame;
pub mod ids;
pub mod platform;
pub mod seal;
pub mod token;
pub mod ws;

/// The device protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The path of the device WebSocket endpoint on every connector.
pub const CONNECT_PATH: &str = "/v1/connect";

/// Generated code, nested as the .proto packages are so that cross-file references resolve.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    pub mod ringpush {
        pub mod device {
            pub mod v1 {
                tonic::include_proto!("ringpush.device.v1");
            }
        }
        pub mod internal {
            pub mod v1 {
                tonic::include_proto!("ringpush.internal.v1");
            }
        }
    }
}

/// Device ↔ connector frames (generated from `proto/device.proto`).
pub use generated::ringpush::device::v1 as device;
/// Controller → connector gRPC service (generated from `proto/connector.proto`).
pub use generated::ringpush::internal::v1 as internal;

pub use ids::{AppId, DeviceId, IdError, MessageId, RegionCode};

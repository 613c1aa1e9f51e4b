//! Identifiers that cross process boundaries.
//!
//! Each id is a fixed-size number inside the processes (cheap to store and hash) and a
//! fixed-width lowercase hex string outside them, so that parsing is strict and a typo is a
//! clear error rather than a lookup miss.

use std::fmt;
use std::str::FromStr;

/// Why an id string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must be {len} hex characters, got {got:?}")]
    BadHex {
        kind: &'static str,
        len: usize,
        got: String,
    },
    #[error("message id must look like <device_id>-<seq>, got {0:?}")]
    BadMessageId(String),
}

fn parse_hex<const N: usize>(kind: &'static str, text: &str) -> Result<[u8; N], IdError> {
    let mut out = [0u8; N];
    let ok = text.len() == N * 2
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && hex::decode_to_slice(text, &mut out).is_ok();
    if ok {
        Ok(out)
    } else {
        Err(IdError::BadHex {
            kind,
            len: N * 2,
            got: text.chars().take(80).collect(),
        })
    }
}

/// A device, as registered with the controller: 128 random bits, shown as 32 hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u128);

impl DeviceId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// A fresh random id whose home is the region with this code: the code is the id's top
    /// byte, so any process can tell a device's home region from its id alone.
    pub fn random_in(region: RegionCode) -> Self {
        let low: u128 = rand::random::<u128>() & (u128::MAX >> 8);
        Self((u128::from(region.0) << 120) | low)
    }

    /// The region code this id carries (its top byte). Only ids made by [`Self::random_in`]
    /// carry a meaningful one; a deployment decides which codes name regions.
    pub fn region_code(self) -> RegionCode {
        RegionCode((self.0 >> 120) as u8)
    }
}

/// The number of a region, 1 to 255, stored in the top byte of the ids of the devices whose
/// home it is. A code is never reused for another region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionCode(pub u8);

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl FromStr for DeviceId {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        parse_hex::<16>("device id", text).map(|b| Self(u128::from_be_bytes(b)))
    }
}

/// An application (a tenant): 64 random bits, shown as 16 hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(pub u64);

impl AppId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(rand::random())
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for AppId {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        parse_hex::<8>("app id", text).map(|b| Self(u64::from_be_bytes(b)))
    }
}

/// A message to one device: the device and the message's number in that device's sequence.
///
/// Shown as `<device_id>-<seq>` (seq in decimal), so that its status can be found from the
/// device's inbox positions without a record per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId {
    pub device: DeviceId,
    pub seq: u64,
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.device, self.seq)
    }
}

impl FromStr for MessageId {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        let bad = || IdError::BadMessageId(text.chars().take(80).collect());
        let (device, seq) = text.split_once('-').ok_or_else(bad)?;
        let device = device.parse().map_err(|_| bad())?;
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        if seq == 0 || !seq.to_string().eq(seq_text(text)) {
            return Err(bad());
        }
        Ok(Self { device, seq })
    }
}

fn seq_text(message_id: &str) -> &str {
    message_id.split_once('-').map_or("", |(_, seq)| seq)
}

/// Ids travel in JSON as their text form.
macro_rules! serde_as_text {
    ($($id:ty),*) => {$(
        impl serde::Serialize for $id {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $id {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

serde_as_text!(DeviceId, AppId, MessageId);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn device_id_is_strict_hex() {
        assert!(
            "00112233445566778899aabbccddeeff"
                .parse::<DeviceId>()
                .is_ok()
        );
        for bad in [
            "",
            "00112233445566778899AABBCCDDEEFF",
            "00112233445566778899aabbccddeef",
            "00112233445566778899aabbccddeeffa",
            "0011223344556677889zaabbccddeeff",
        ] {
            assert!(bad.parse::<DeviceId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn message_id_refuses_leading_zeros_and_zero() {
        let device = DeviceId(7);
        assert!(format!("{device}-0").parse::<MessageId>().is_err());
        assert!(format!("{device}-01").parse::<MessageId>().is_err());
        assert!(format!("{device}-+1").parse::<MessageId>().is_err());
        assert!(format!("{device}").parse::<MessageId>().is_err());
    }

    #[test]
    fn a_device_id_carries_its_home_region() {
        for code in [1u8, 2, 200, 255] {
            let id = DeviceId::random_in(RegionCode(code));
            assert_eq!(id.region_code(), RegionCode(code));
            assert!(id.to_string().starts_with(&format!("{code:02x}")));
        }
    }

    proptest! {
        #[test]
        fn ids_round_trip(device: u128, app: u64, seq in 1u64..) {
            let id = DeviceId(device);
            prop_assert_eq!(id.to_string().parse::<DeviceId>().unwrap(), id);
            prop_assert_eq!(AppId(app).to_string().parse::<AppId>().unwrap(), AppId(app));
            let message = MessageId { device: id, seq };
            prop_assert_eq!(message.to_string().parse::<MessageId>().unwrap(), message);
        }
    }
}

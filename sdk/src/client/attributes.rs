//! The app's side of the device's attributes: read them, change them, persist the change,
//! and wake the connection task, which sends the new set (debounced, see
//! [`crate::attributes`]).

use ringpush_audience::DeviceAttributes;

use super::Client;
use crate::attributes;
use crate::error::Result;

impl Client {
    /// The attributes the device reports now (empty if the app never set any).
    pub fn attributes(&self) -> DeviceAttributes {
        self.state.snapshot().attributes.unwrap_or_default()
    }

    /// Replaces the device's attributes with `attributes`.
    ///
    /// The new set is saved (in the state file, if there is one) before this returns, so a
    /// restart keeps it, and sent to the connector on the live connection (or after the next
    /// Welcome): at once if nothing was sent in the last 2 s, else when 2 s have passed, the
    /// newest set winning. Audience messages sent after the connector has it are matched
    /// against it.
    ///
    /// Errors: [`Error::InvalidAttributes`](crate::Error::InvalidAttributes) for a set too
    /// large for one frame (about 4 KB encoded), [`Error::StateIo`](crate::Error::StateIo)
    /// if it could not be saved; either way nothing changes.
    pub async fn set_attributes(&self, attributes: DeviceAttributes) -> Result<()> {
        self.update_attributes(move |current| *current = attributes)
            .await
    }

    /// Changes the device's attributes in place (`change` gets the current set); saved and
    /// sent as [`Client::set_attributes`] describes. Concurrent changes never overwrite each
    /// other.
    pub async fn update_attributes(
        &self,
        change: impl FnOnce(&mut DeviceAttributes) + Send + 'static,
    ) -> Result<()> {
        self.state
            .try_update(move |state| {
                let before = state.attributes.clone().unwrap_or_default();
                let mut next = before.clone();
                change(&mut next);
                if next == before {
                    // Nothing to tell (and a device that never set any keeps sending none).
                    return Ok(());
                }
                attributes::check(&next)?;
                state.attributes = Some(next);
                Ok(())
            })
            .await?;
        self.attributes_changed.notify_one();
        Ok(())
    }

    /// Adds a tag (audiences name it as a bare word, e.g. `vip and not churned`).
    pub async fn add_tag(&self, tag: impl Into<String>) -> Result<()> {
        let tag = tag.into();
        self.update_attributes(move |attributes| {
            attributes.tags.insert(tag);
        })
        .await
    }

    /// Removes a tag; nothing happens if the device does not have it.
    pub async fn remove_tag(&self, tag: &str) -> Result<()> {
        let tag = tag.to_owned();
        self.update_attributes(move |attributes| {
            attributes.tags.remove(&tag);
        })
        .await
    }

    /// Subscribes the device to a topic (messages sent to the topic reach it).
    pub async fn subscribe(&self, topic: impl Into<String>) -> Result<()> {
        let topic = topic.into();
        self.update_attributes(move |attributes| {
            attributes.topics.insert(topic);
        })
        .await
    }

    /// Unsubscribes the device from a topic; nothing happens if it was not subscribed.
    pub async fn unsubscribe(&self, topic: &str) -> Result<()> {
        let topic = topic.to_owned();
        self.update_attributes(move |attributes| {
            attributes.topics.remove(&topic);
        })
        .await
    }

    /// Sets the app's id for the device's user (several devices may share one), or clears
    /// it with `None`. Messages sent to the alias reach every device that has it.
    pub async fn set_alias(&self, alias: Option<&str>) -> Result<()> {
        let alias = alias.map(str::to_owned);
        self.update_attributes(move |attributes| attributes.alias = alias)
            .await
    }

    /// Sets the device's IANA time zone (e.g. `Asia/Tokyo`), used by campaigns scheduled
    /// at a local time, or clears it with `None`.
    pub async fn set_timezone(&self, timezone: Option<&str>) -> Result<()> {
        let timezone = timezone.map(str::to_owned);
        self.update_attributes(move |attributes| attributes.timezone = timezone)
            .await
    }
}

//! The app's timeline (stream 1): catch-up from the store, and the rule that keeps live
//! broadcasts and the catch-up from racing (DESIGN.md invariant 6, per stream).
//!
//! Each connection keeps `Conn::timeline_seq`, the highest timeline seq it processed
//! (written, or passed over because the audience does not match the device). After the
//! inbox replay of a Hello, the connection reads the timeline after that position, page by
//! page like the inbox, writes the entries whose audience matches the device and that were
//! created after the device was registered, and moves its position to the last entry read,
//! or, after a short page, to the timeline's head as read *before* that page (every entry up
//! to it that is not in the page has expired, so nothing is skipped). A device whose Hello
//! says 0 reads the whole timeline (bounded by its cap and TTL), and the registration time
//! filters out what was sent before it existed: `DeviceRecord` keeps no timeline head.
//!
//! A live broadcast of entry `seq` for a connection ([`Shard::offer_timeline`]):
//! - catching up: skipped (the catch-up reads it); remembered in `TimelineCatchUp::seen` so
//!   that a read issued before it arrived is followed by one more;
//! - `seq <= timeline_seq`: the device had it (or does not match it): skipped;
//! - `seq == timeline_seq + 1`: written if the device matches; the position moves either way;
//! - `seq > timeline_seq + 1`: an earlier entry has not arrived yet (two controllers can
//!   deliver out of order): the connection catches up from the timeline, which has both.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrics::counter;
use ringpush_audience::Audience;
use ringpush_protocol::device::{ErrorCode, Push};
use ringpush_protocol::ws::close_code;
use ringpush_store::{StoreError, TimelineEntry, now_ms};

use crate::conn::{ConnState, TimelineCatchUp, TimelinePhase};
use crate::output::{busy_mut, trim_busy};
use crate::shard::{Command, Shard};

/// `Push::stream` of the app's timeline.
pub(crate) const TIMELINE_STREAM: u32 = 1;
/// Distinct audiences kept parsed; past it the cache starts over.
const MAX_CACHED_AUDIENCES: usize = 1024;

/// Parsed audiences by their canonical text, shared by the catch-up reads of every shard, so
/// that a reconnect storm parses each timeline entry's audience once rather than once per
/// device. Bounded: when full it is emptied (the next reads parse again).
#[derive(Debug, Default)]
pub(crate) struct AudienceCache {
    parsed: Mutex<HashMap<String, Arc<Audience>>>,
}

impl AudienceCache {
    /// The audience of `text`; `None` if it does not parse (then it matches no device).
    pub fn get(&self, text: &str) -> Option<Arc<Audience>> {
        if let Some(audience) = self.lock().get(text) {
            return Some(audience.clone());
        }
        let audience = match Audience::parse(text) {
            Ok(audience) => Arc::new(audience),
            Err(error) => {
                counter!("ringpush_connector_bad_timeline_audiences_total").increment(1);
                tracing::warn!(audience = text, %error, "timeline entry with an audience that does not parse");
                return None;
            }
        };
        let mut parsed = self.lock();
        if parsed.len() >= MAX_CACHED_AUDIENCES {
            parsed.clear();
        }
        parsed.insert(text.to_owned(), audience.clone());
        Some(audience)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Audience>>> {
        // A panic while holding the lock cannot leave the map half-changed in a way that
        // matters: every value in it is a complete parse.
        self.parsed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One page of the timeline, with each entry's parsed audience.
pub(crate) struct TimelinePage {
    /// The timeline's head, read before the entries.
    pub head: u64,
    pub entries: Vec<(TimelineEntry, Option<Arc<Audience>>)>,
}

/// The store's answer to a timeline read.
pub(crate) struct TimelineDone {
    pub key: usize,
    pub generation: u32,
    pub result: Result<TimelinePage, StoreError>,
}

/// What a live broadcast means for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Write it now (the caller writes and sets `timeline_seq`).
    Write,
    /// Not written: the device had it, or does not match it.
    Skip,
    /// Not written now: the connection reads it from the timeline.
    CatchingUp,
}

/// The frame a device gets for a timeline entry.
pub(crate) fn timeline_push(entry: TimelineEntry) -> Push {
    let mut push = Push {
        message_id: entry.message_id,
        seq: entry.seq,
        payload: entry.payload,
        content_type: entry.content_type.mime().to_owned(),
        created_at_ms: entry.created_at_ms,
        expires_at_ms: entry.expires_at_ms,
        stream: TIMELINE_STREAM,
        campaign_id: entry.campaign_id.unwrap_or_default(),
        ..Push::default()
    };
    entry.options.apply_to(&mut push);
    push
}

/// Of entries a device catches up on, in timeline order, drops each one that a later entry
/// with the same collapse key replaces: a device coming back gets the latest score, not every
/// score since it left. (Within one read; entries sent live were sent as they came.)
pub(crate) fn newest_per_collapse_key(entries: Vec<TimelineEntry>) -> Vec<TimelineEntry> {
    if entries
        .iter()
        .all(|entry| entry.options.collapse_key.is_none())
    {
        return entries;
    }
    let mut later_keys = std::collections::HashSet::new();
    let mut kept: Vec<TimelineEntry> = entries
        .into_iter()
        .rev()
        .filter(|entry| match &entry.options.collapse_key {
            Some(key) => later_keys.insert(key.clone()),
            None => true,
        })
        .collect();
    kept.reverse();
    kept
}

impl Shard {
    fn timeline_phase(&self, key: usize) -> TimelinePhase {
        self.conns
            .get(key)
            .and_then(|conn| conn.busy.as_ref())
            .map_or(TimelinePhase::UpToDate, |busy| busy.timeline.phase)
    }

    /// Decides what live broadcast entry `seq` means for connection `key` (a connection of
    /// the entry's app); `matches` tells whether the device is in the audience.
    pub fn offer_timeline(&mut self, key: usize, seq: u64, matches: bool) -> Offer {
        let stats = &self.shared.stats;
        let Some(conn) = self.conns.get_mut(key) else {
            return Offer::Skip;
        };
        if !matches!(conn.state, ConnState::CatchingUp | ConnState::Live) {
            return Offer::Skip;
        }
        if let Some(busy) = conn.busy.as_mut()
            && busy.timeline.phase != TimelinePhase::UpToDate
        {
            busy.timeline.seen = busy.timeline.seen.max(seq);
            return Offer::CatchingUp;
        }
        if seq <= conn.timeline_seq {
            return Offer::Skip;
        }
        if seq > conn.timeline_seq + 1 {
            counter!("ringpush_connector_timeline_gaps_total").increment(1);
            busy_mut(conn, stats).timeline.seen = seq;
            self.start_timeline_read(key);
            return Offer::CatchingUp;
        }
        if matches {
            Offer::Write
        } else {
            conn.timeline_seq = seq;
            Offer::Skip
        }
    }

    /// The inbox replay of a Hello is done: the timeline's turn.
    pub fn timeline_after_inbox(&mut self, key: usize) {
        if self.timeline_phase(key) == TimelinePhase::AfterInbox {
            self.start_timeline_read(key);
        }
    }

    /// Reads the timeline after `timeline_seq`, once the connection's unsent output is gone
    /// (so a catch-up never outruns a slow device's socket).
    pub fn start_timeline_read(&mut self, key: usize) {
        let stats = &self.shared.stats;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let waiting = conn.has_output();
        let after = conn.timeline_seq;
        let generation = conn.generation;
        let Some(app) = conn.profile.as_ref().map(|profile| profile.app) else {
            return;
        };
        let busy = busy_mut(conn, stats);
        if waiting {
            busy.timeline.phase = TimelinePhase::ReadWhenFlushed;
            return;
        }
        busy.timeline.phase = TimelinePhase::Reading;
        busy.timeline.covered = busy.timeline.seen;
        let reply = self.sender();
        let shared = self.shared.clone();
        self.shared.tasks.spawn(async move {
            let result = {
                let _permit = shared.store_permits.acquire().await;
                let timelines = shared.store.timelines();
                let batch = shared.config.replay_batch;
                match timelines.timeline_head(app).await {
                    Ok(head) => timelines
                        .read_timeline(app, after, batch, now_ms())
                        .await
                        .map(|entries| (head, entries)),
                    Err(error) => Err(error),
                }
            };
            let result = result.map(|(head, entries)| TimelinePage {
                head,
                entries: entries
                    .into_iter()
                    .map(|entry| {
                        let audience = shared.audiences.get(&entry.audience);
                        (entry, audience)
                    })
                    .collect(),
            });
            let done = TimelineDone {
                key,
                generation,
                result,
            };
            // A closed channel means the shard stopped; nothing is left to do.
            let _ = reply.send(Command::TimelineDone(Box::new(done))).await;
        });
    }

    /// Starts a timeline read that waited for the output to drain.
    pub fn timeline_read_if_flushed(&mut self, key: usize) {
        let waiting = self.conns.get(key).is_some_and(|conn| !conn.has_output())
            && self.timeline_phase(key) == TimelinePhase::ReadWhenFlushed;
        if waiting {
            self.start_timeline_read(key);
        }
    }

    /// Writes the entries of a page meant for the device, moves its position, and reads on
    /// or ends the catch-up.
    pub fn on_timeline_done(&mut self, done: TimelineDone) {
        let key = self
            .live_key(done.key, done.generation)
            .filter(|&key| self.timeline_phase(key) == TimelinePhase::Reading);
        let Some(key) = key else {
            return;
        };
        let page = match done.result {
            Ok(page) => page,
            Err(error) => {
                let device = self.conns[key].device();
                tracing::warn!(device_id = %device, %error, "timeline read failed");
                let message = "the connector cannot reach its store; retry later";
                let code = close_code::TRY_AGAIN_LATER;
                self.close_with_error(key, ErrorCode::Unavailable, message, code);
                return;
            }
        };
        let full = page.entries.len() >= self.shared.config.replay_batch;
        let conn = &mut self.conns[key];
        let Some(profile) = conn.profile.as_ref() else {
            return;
        };
        let (registered_at_ms, covered) = conn.busy.as_ref().map_or((0, 0), |busy| {
            (busy.timeline.registered_at_ms, busy.timeline.covered)
        });
        let mut position = conn.timeline_seq;
        let mut for_device = Vec::new();
        for (entry, audience) in page.entries {
            if entry.seq <= position {
                continue;
            }
            position = entry.seq;
            let wanted = entry.created_at_ms >= registered_at_ms
                && audience.is_some_and(|audience| audience.matches(&profile.attributes));
            if wanted {
                for_device.push(entry);
            }
        }
        if !full {
            position = position.max(page.head).max(covered);
        }
        conn.timeline_seq = position;
        for entry in newest_per_collapse_key(for_device) {
            self.queue_push(key, timeline_push(entry));
        }
        self.flush();
        self.after_timeline_page(key, full);
    }

    fn after_timeline_page(&mut self, key: usize, full: bool) {
        if self.timeline_phase(key) != TimelinePhase::Reading {
            // Closed (or closing) meanwhile.
            return;
        }
        let stats = &self.shared.stats;
        let conn = &mut self.conns[key];
        let seen = conn.busy.as_ref().map_or(0, |busy| busy.timeline.seen);
        if full || seen > conn.timeline_seq {
            self.start_timeline_read(key);
            return;
        }
        if let Some(busy) = conn.busy.as_mut() {
            busy.timeline = TimelineCatchUp::default();
        }
        trim_busy(conn, stats);
    }
}

#[cfg(test)]
mod tests {
    use ringpush_store::{ContentType, MessageOptions};

    use super::*;

    fn entry(seq: u64, collapse_key: Option<&str>) -> TimelineEntry {
        TimelineEntry {
            seq,
            message_id: format!("m{seq}"),
            audience: "everyone".into(),
            payload: Vec::new(),
            content_type: ContentType::Text,
            created_at_ms: 0,
            expires_at_ms: 1,
            campaign_id: None,
            options: MessageOptions {
                collapse_key: collapse_key.map(str::to_owned),
                ..MessageOptions::default()
            },
        }
    }

    #[test]
    fn only_the_newest_entry_of_a_collapse_key_is_kept() {
        let entries = vec![
            entry(1, Some("score")),
            entry(2, None),
            entry(3, Some("weather")),
            entry(4, Some("score")),
            entry(5, None),
        ];
        let kept: Vec<u64> = newest_per_collapse_key(entries)
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(kept, [2, 3, 4, 5]);
        let plain: Vec<u64> = newest_per_collapse_key(vec![entry(1, None), entry(2, None)])
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(plain, [1, 2]);
    }
}

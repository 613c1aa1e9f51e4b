//! Replay and live never race (DESIGN.md invariant 6).
//!
//! While an inbox read is in flight for a device (state `Authenticating` or `CatchingUp`),
//! live pushes for it are held, at most `MAX_HELD_PUSHES` (past that they are dropped, as
//! the inbox has them, and the inbox is read once more). When a page comes back, what lies
//! above `last_sent_seq` is written. A full page means read on. A short page means every
//! message pending when the read was issued has been written, so the held pushes follow in
//! seq order and the connection goes live, with one exception: a held push above a gap that
//! arrived *after* the read was issued may sit behind a message appended after the read
//! began whose delivery is still on its way (two controllers can deliver out of order), so
//! the inbox is read again instead. A gap left after that is a message the inbox no longer
//! holds (expired or capped), the only kind of gap a device may see.
//!
//! A live connection that receives a push above `last_sent_seq + 1` goes back to catching up
//! the same way. Pushes at or below `last_sent_seq` were sent already and are dropped.

use metrics::counter;
use ringpush_protocol::device::{ErrorCode, Push};
use ringpush_protocol::internal::DeliveryOutcome;
use ringpush_protocol::ws::close_code;
use ringpush_store::StoredMessage;

use crate::conn::{ConnState, MAX_HELD_PUSHES};
use crate::hello::ReadDone;
use crate::output::{busy_mut, trim_busy};
use crate::shard::{DeliverBatch, Shard};

/// The frame a device gets for a stored message.
impl Shard {
    /// Writes a page read from the inbox, then reads on, or settles the held pushes.
    pub fn apply_page(&mut self, key: usize, page: Vec<StoredMessage>) {
        let full = page.len() >= self.shared.config.replay_batch;
        let device = self.conns[key].device();
        for message in page {
            let conn = &mut self.conns[key];
            if message.seq <= conn.last_sent_seq {
                continue;
            }
            conn.last_sent_seq = message.seq;
            self.queue_push(key, message.into_push(device));
        }
        self.flush();
        let Some(conn) = self
            .conns
            .get_mut(key)
            .filter(|conn| conn.state == ConnState::CatchingUp)
        else {
            return;
        };
        let reread = conn
            .busy
            .as_mut()
            .is_some_and(|busy| std::mem::take(&mut busy.reread));
        if full || reread {
            self.start_read(key);
        } else {
            self.settle_held(key);
        }
    }

    /// After a short page: writes the held pushes in order and goes live, unless a gap in
    /// front of a push held during the read needs another read.
    fn settle_held(&mut self, key: usize) {
        let stats = &self.shared.stats;
        let conn = &mut self.conns[key];
        let last = conn.last_sent_seq;
        let (mut held, held_during_read) = match conn.busy.as_mut() {
            Some(busy) => (
                std::mem::take(&mut busy.held),
                std::mem::take(&mut busy.held_during_read),
            ),
            None => (Vec::new(), false),
        };
        held.sort_by_key(|push| push.seq);
        held.dedup_by_key(|push| push.seq);
        held.retain(|push| push.seq > last);
        let contiguous = held
            .iter()
            .zip(last + 1..)
            .all(|(push, seq)| push.seq == seq);
        if !contiguous && held_during_read {
            busy_mut(conn, stats).held = held;
            self.start_read(key);
            return;
        }
        conn.state = ConnState::Live;
        trim_busy(conn, stats);
        for push in held {
            self.conns[key].last_sent_seq = push.seq;
            self.queue_push(key, push);
        }
        self.flush();
        self.timeline_after_inbox(key);
    }

    /// Reads the inbox after `last_sent_seq`, once the connection's unsent output is gone
    /// (so a replay never outruns a slow device's socket).
    pub fn start_read(&mut self, key: usize) {
        let stats = &self.shared.stats;
        let conn = &mut self.conns[key];
        conn.state = ConnState::CatchingUp;
        if conn.has_output() {
            busy_mut(conn, stats).read_when_flushed = true;
            return;
        }
        if let Some(busy) = conn.busy.as_mut() {
            busy.held_during_read = false;
            busy.read_when_flushed = false;
        }
        trim_busy(conn, stats);
        self.spawn_inbox_read(key);
    }

    /// Starts a read that waited for the output to drain.
    pub fn read_if_flushed(&mut self, key: usize) {
        let waiting = self.conns.get(key).is_some_and(|conn| {
            conn.state == ConnState::CatchingUp
                && !conn.has_output()
                && conn
                    .busy
                    .as_ref()
                    .is_some_and(|busy| busy.read_when_flushed)
        });
        if waiting {
            self.start_read(key);
        }
    }

    pub fn on_read_done(&mut self, done: ReadDone) {
        let key = self
            .live_key(done.key, done.generation)
            .filter(|&key| self.conns[key].state == ConnState::CatchingUp);
        let Some(key) = key else {
            return;
        };
        match done.result {
            Ok(page) => self.apply_page(key, page),
            Err(error) => {
                let device = self.conns[key].device();
                tracing::warn!(device_id = %device, %error, "inbox read failed");
                let message = "the connector cannot reach its store; retry later";
                self.close_with_error(
                    key,
                    ErrorCode::Unavailable,
                    message,
                    close_code::TRY_AGAIN_LATER,
                );
            }
        }
    }

    /// A connection got its device's index entry back (the newer connection that took it
    /// failed): pushes may have gone to the other one meanwhile, so it reads the inbox again.
    pub fn catch_up_again(&mut self, key: usize) {
        let stats = &self.shared.stats;
        let conn = &mut self.conns[key];
        match conn.state {
            ConnState::Live => self.start_read(key),
            ConnState::Authenticating | ConnState::CatchingUp => {
                busy_mut(conn, stats).reread = true;
            }
            _ => {}
        }
    }

    /// Holds a live push until the read in flight is done.
    fn hold(&mut self, key: usize, push: Push) {
        let busy = busy_mut(&mut self.conns[key], &self.shared.stats);
        busy.held_during_read = true;
        if busy.held.len() < MAX_HELD_PUSHES {
            busy.held.push(push);
        } else {
            busy.reread = true;
            counter!("ringpush_connector_held_pushes_dropped_total").increment(1);
        }
    }

    /// One live push for the device on connection `key`.
    fn deliver(&mut self, key: usize, push: Push) -> DeliveryOutcome {
        let conn = &mut self.conns[key];
        let last = conn.last_sent_seq;
        match conn.state {
            _ if push.seq <= last && conn.state != ConnState::Closing => DeliveryOutcome::Written,
            ConnState::Authenticating | ConnState::CatchingUp => {
                self.hold(key, push);
                DeliveryOutcome::CatchingUp
            }
            ConnState::Live if push.seq == last + 1 => {
                conn.last_sent_seq = push.seq;
                self.queue_push(key, push);
                DeliveryOutcome::Written
            }
            ConnState::Live => {
                self.hold(key, push);
                self.start_read(key);
                DeliveryOutcome::CatchingUp
            }
            _ => DeliveryOutcome::NotConnected,
        }
    }

    /// Deliveries from the gRPC service: each device's pushes in request order, the output
    /// of one connection written at once.
    pub fn on_deliver(&mut self, batch: DeliverBatch) {
        let DeliverBatch { items, reply } = batch;
        let mut outcomes = Vec::with_capacity(items.len());
        let mut routed = Vec::with_capacity(items.len());
        for (index, device, push) in items {
            match self.devices.get(&device.0.to_be_bytes()) {
                Some(&key) => routed.push((key as usize, index, push)),
                None => outcomes.push((index, DeliveryOutcome::NotConnected)),
            }
        }
        // Stable: a device's pushes keep their request order.
        routed.sort_by_key(|(key, _, _)| *key);
        let mut group: Option<(usize, usize)> = None;
        for (key, index, push) in routed {
            if group.is_some_and(|(current, _)| current != key) {
                self.finish_group(group, &mut outcomes);
                group = None;
            }
            let start = group.map_or(outcomes.len(), |(_, start)| start);
            group = Some((key, start));
            let outcome = self.deliver(key, push);
            outcomes.push((index, outcome));
        }
        self.finish_group(group, &mut outcomes);
        // The caller may have given up (its request was cancelled); nothing to undo.
        let _ = reply.send(outcomes);
    }

    /// Writes one connection's pushes; if that closed it, they were not written after all.
    fn finish_group(
        &mut self,
        group: Option<(usize, usize)>,
        outcomes: &mut [(usize, DeliveryOutcome)],
    ) {
        let Some((key, start)) = group else {
            return;
        };
        self.flush();
        let open = self
            .conns
            .get(key)
            .is_some_and(|conn| conn.state != ConnState::Closing);
        if !open {
            for (_, outcome) in &mut outcomes[start..] {
                if *outcome == DeliveryOutcome::Written {
                    *outcome = DeliveryOutcome::NotConnected;
                }
            }
        }
    }
}

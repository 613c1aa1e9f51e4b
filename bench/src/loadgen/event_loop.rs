//! The load generator's one thread: a `mio::Poll` over every socket, a slab of [`Conn`]
//! records indexed by device, one shared read buffer, a heap of backoff timers, a queue of
//! attempts to start (at most `concurrency` under way), keepalive pings sent from a 100 ms
//! tick to one slice of the devices at a time (no timer per connection), and status lines on
//! stdout.
//!
//! Does not own: the protocol bytes (`wire`), the plan and options (`mod`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::{Events, Interest, Poll, Token};
use ringpush_protocol::device::server_frame::Kind;
use ringpush_protocol::ws::{self, Opcode, Sender};

use super::conn::{self, Conn, Jitter, Phase};
use super::{Device, LoadgenOptions, wire};

/// How often pings, timeouts and status lines are looked at.
const TICK: Duration = Duration::from_millis(100);
/// An attempt that has not reached Welcome by then has failed.
const ATTEMPT_TIMEOUT_MS: u32 = 10_000;
/// Redirects followed in a row before asking the dispatcher (the SDK's rule).
const MAX_REDIRECTS_IN_A_ROW: u8 = 3;

/// Everything the loop owns.
struct State<'a> {
    options: &'a LoadgenOptions,
    devices: &'a [Device],
    conns: Vec<Conn>,
    poll: Poll,
    /// Backoff timers: (due, ms since start; device index). Stale entries are skipped.
    timers: BinaryHeap<Reverse<(u32, u32)>>,
    /// Devices whose next attempt may start now, in order.
    ready: VecDeque<u32>,
    in_flight: usize,
    up: usize,
    /// Failed attempts so far, by the phase they failed in (index: `Phase as usize`).
    failures: [u64; 7],
    /// One read buffer for every socket.
    scratch: Vec<u8>,
    /// One write buffer for every socket.
    out: Vec<u8>,
    jitter: Jitter,
    started: Instant,
    /// From the first Welcome; until then, none are sent.
    ping_interval: Option<Duration>,
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

/// Runs until `stop` is set or the options' time limit; prints status lines.
pub fn run(
    options: &LoadgenOptions,
    devices: &[Device],
    stop: &Arc<AtomicBool>,
) -> std::io::Result<()> {
    let mut state = State {
        options,
        devices,
        conns: devices.iter().map(|d| Conn::new(d.connector)).collect(),
        poll: Poll::new()?,
        timers: BinaryHeap::new(),
        ready: (0..devices.len() as u32).collect(),
        in_flight: 0,
        up: 0,
        failures: [0; 7],
        scratch: vec![0; 16 * 1024],
        out: Vec::with_capacity(1024),
        jitter: Jitter::new(u64::from(std::process::id()) ^ unix_ms() as u64),
        started: Instant::now(),
        ping_interval: None,
    };
    let mut events = Events::with_capacity(1024);
    let mut next_tick = Instant::now() + TICK;
    let mut tick: u64 = 0;
    let mut last_status = usize::MAX;
    let mut was_all = false;
    let limit = Instant::now() + Duration::from_secs(options.max_seconds);
    let mut stdout = std::io::stdout();
    while !stop.load(Ordering::Relaxed) && Instant::now() < limit {
        state.start_ready();
        let wait = next_tick.saturating_duration_since(Instant::now());
        state.poll.poll(&mut events, Some(wait))?;
        for event in &events {
            state.on_event(event.token().0 as u32);
        }
        if Instant::now() < next_tick {
            continue;
        }
        // Every tick due, not one per pass: under load a pass can take longer than a tick,
        // and pings sent one tick per pass would fall behind the connector's timeout.
        let mut caught_up = 0;
        while Instant::now() >= next_tick && caught_up < 600 {
            next_tick += TICK;
            tick += 1;
            caught_up += 1;
            state.send_pings(tick);
            if tick.is_multiple_of(10) {
                state.expire_attempts();
            }
        }
        if caught_up == 600 {
            next_tick = Instant::now() + TICK;
        }
        state.fire_timers();
        let all = state.up == devices.len();
        if all && !was_all {
            let _ = writeln!(
                stdout,
                "all {} {:.3} failed {:?}",
                unix_ms(),
                state.started.elapsed().as_secs_f64(),
                state.failures
            );
        }
        was_all = all;
        if tick.is_multiple_of(3) && state.up != last_status {
            last_status = state.up;
            let mut phases = [0usize; 7];
            for conn in &state.conns {
                phases[conn.phase as usize] += 1;
            }
            let _ = writeln!(
                stdout,
                "up {} {} {} phases {phases:?} failed {:?}",
                state.up,
                devices.len(),
                unix_ms(),
                state.failures
            );
        }
    }
    Ok(())
}

impl State<'_> {
    fn now_ms(&self) -> u32 {
        self.started.elapsed().as_millis() as u32
    }

    fn set_phase(&mut self, index: u32, phase: Phase) {
        let conn = &mut self.conns[index as usize];
        let old = conn.phase;
        conn.phase = phase;
        self.in_flight =
            self.in_flight + usize::from(phase.in_flight()) - usize::from(old.in_flight());
        self.up = self.up + usize::from(phase == Phase::Up) - usize::from(old == Phase::Up);
    }

    /// Starts queued attempts while fewer than `concurrency` are under way.
    fn start_ready(&mut self) {
        while self.in_flight < self.options.concurrency {
            let Some(index) = self.ready.pop_front() else {
                return;
            };
            if self.conns[index as usize].phase == Phase::Waiting {
                self.start(index);
            }
        }
    }

    /// Opens the socket of an attempt: to the dispatcher when it must ask, else to the
    /// remembered connector.
    fn start(&mut self, index: u32) {
        let now = self.now_ms();
        let conn = &mut self.conns[index as usize];
        conn.partial = Vec::new();
        conn.started_ms = now;
        let (to, phase) = if conn.ask_dispatcher {
            (self.options.dispatcher, Phase::LookupConnecting)
        } else {
            (
                self.options.connectors[usize::from(conn.target)],
                Phase::Connecting,
            )
        };
        let sources = &self.options.sources;
        let source = sources[index as usize % sources.len()];
        let opened = conn::open(source, to).and_then(|mut stream| {
            self.poll.registry().register(
                &mut stream,
                Token(index as usize),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match opened {
            Ok(stream) => {
                self.conns[index as usize].stream = Some(stream);
                self.set_phase(index, phase);
            }
            Err(_) => self.fail(index),
        }
    }

    /// The attempt failed: close, back off, and ask the dispatcher next time.
    fn fail(&mut self, index: u32) {
        self.failures[self.conns[index as usize].phase as usize] += 1;
        let delay = self.jitter.backoff(self.conns[index as usize].failures);
        let conn = &mut self.conns[index as usize];
        conn.stream = None;
        conn.partial = Vec::new();
        conn.failures = conn.failures.saturating_add(1);
        conn.ask_dispatcher = true;
        conn.redirects = 0;
        self.set_phase(index, Phase::Waiting);
        let due = self.now_ms() + delay.as_millis() as u32;
        self.timers.push(Reverse((due, index)));
    }

    /// A welcomed connection dropped: back off, then try the same connector first.
    fn dropped(&mut self, index: u32) {
        let delay = self.jitter.backoff(self.conns[index as usize].failures);
        let conn = &mut self.conns[index as usize];
        conn.stream = None;
        conn.partial = Vec::new();
        conn.failures = conn.failures.saturating_add(1);
        self.set_phase(index, Phase::Waiting);
        let due = self.now_ms() + delay.as_millis() as u32;
        self.timers.push(Reverse((due, index)));
    }

    /// Goes to connector `target` now, on a new socket.
    fn go_to(&mut self, index: u32, target: u8) {
        let conn = &mut self.conns[index as usize];
        conn.stream = None;
        conn.target = target;
        conn.ask_dispatcher = false;
        self.set_phase(index, Phase::Waiting);
        self.ready.push_front(index);
    }

    fn connector_of_url(&self, url: &str) -> Option<u8> {
        let host = wire::url_host(url)?;
        self.options
            .connectors
            .iter()
            .position(|addr| addr.to_string() == host)
            .map(|position| position as u8)
    }

    fn on_event(&mut self, index: u32) {
        let Some(conn) = self.conns.get_mut(index as usize) else {
            return;
        };
        let Some(stream) = conn.stream.as_mut() else {
            return;
        };
        match conn.phase {
            Phase::LookupConnecting | Phase::Connecting => {
                if stream.peer_addr().is_err() {
                    // Not connected yet (a spurious wake-up) or refused.
                    if matches!(stream.take_error(), Ok(Some(_)) | Err(_)) {
                        self.fail(index);
                    }
                    return;
                }
                self.out.clear();
                let lookup = conn.phase == Phase::LookupConnecting;
                let device = &self.devices[index as usize];
                if lookup {
                    let host = self.options.dispatcher.to_string();
                    wire::lookup_request(&host, &device.id, &mut self.out);
                } else {
                    let host = self.options.connectors[usize::from(conn.target)].to_string();
                    wire::upgrade_request(&host, &mut self.out);
                }
                if conn::write_now(stream, &self.out).is_err() {
                    self.fail(index);
                    return;
                }
                let next = if lookup {
                    Phase::LookupReading
                } else {
                    Phase::Upgrading
                };
                self.set_phase(index, next);
                // The answer may already be there.
                self.on_event(index);
            }
            Phase::LookupReading => {
                let closed = conn::read_available(stream, &mut conn.partial, &mut self.scratch);
                if !closed {
                    return;
                }
                let target =
                    wire::lookup_answer(&conn.partial).and_then(|url| self.connector_of_url(&url));
                match target {
                    Some(target) => self.go_to(index, target),
                    None => self.fail(index),
                }
            }
            Phase::Upgrading | Phase::Hello | Phase::Up => self.on_readable(index),
            Phase::Waiting => {}
        }
    }

    /// Reads a connector's bytes: the 101, then frames.
    fn on_readable(&mut self, index: u32) {
        let conn = &mut self.conns[index as usize];
        let Some(stream) = conn.stream.as_mut() else {
            return;
        };
        let closed = conn::read_available(stream, &mut conn.partial, &mut self.scratch);
        if conn.phase == Phase::Upgrading {
            match wire::upgrade_answer(&conn.partial) {
                None if closed => return self.fail(index),
                None => return,
                Some(Err(())) => return self.fail(index),
                Some(Ok(head)) => {
                    conn.partial.drain(..head);
                    let device = &self.devices[index as usize];
                    self.out.clear();
                    wire::hello(&device.id, &device.token, &mut self.out);
                    if conn::write_now(stream, &self.out).is_err() {
                        return self.fail(index);
                    }
                    self.set_phase(index, Phase::Hello);
                }
            }
        }
        // Every whole frame; a part stays in `partial` for the next wake-up.
        let mut consumed = 0;
        loop {
            let conn = &mut self.conns[index as usize];
            let decoded = ws::decode_frame(&mut conn.partial[consumed..], 1 << 20, Sender::Server);
            let frame = match decoded {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return self.lost(index),
            };
            let payload = consumed + frame.payload.start..consumed + frame.payload.end;
            consumed += frame.len;
            match frame.opcode {
                Opcode::Ping => {
                    self.out.clear();
                    wire::pong(&conn.partial[payload], &mut self.out);
                    let stream = conn.stream.as_mut().expect("open");
                    if conn::write_now(stream, &self.out).is_err() {
                        return self.lost(index);
                    }
                }
                Opcode::Close => return self.lost(index),
                Opcode::Binary => {
                    let kind = wire::server_frame(&conn.partial[payload]).and_then(|f| f.kind);
                    match kind {
                        Some(Kind::Welcome(welcome)) => {
                            conn.failures = 0;
                            conn.redirects = 0;
                            self.ping_interval
                                .get_or_insert(Duration::from_secs(u64::from(
                                    welcome.ping_interval_seconds.max(1),
                                )));
                            self.set_phase(index, Phase::Up);
                        }
                        Some(Kind::Redirect(redirect)) => {
                            let target = self.connector_of_url(&redirect.url);
                            let conn = &mut self.conns[index as usize];
                            match target {
                                Some(target) if conn.redirects < MAX_REDIRECTS_IN_A_ROW => {
                                    conn.redirects += 1;
                                    return self.go_to(index, target);
                                }
                                _ => return self.fail(index),
                            }
                        }
                        Some(Kind::Error(error)) => {
                            if self.failures.iter().sum::<u64>() < 3 {
                                eprintln!("loadgen: connector refused a device: {error:?}");
                            }
                            return self.fail(index);
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        let conn = &mut self.conns[index as usize];
        conn.partial.drain(..consumed);
        if conn.partial.is_empty() {
            // Give the memory back: an idle connection owns no buffer.
            conn.partial = Vec::new();
        }
        if closed {
            self.lost(index);
        }
    }

    /// The connection ended: a drop if it was up, else a failed attempt.
    fn lost(&mut self, index: u32) {
        if self.conns[index as usize].phase == Phase::Up {
            self.dropped(index);
        } else {
            self.fail(index);
        }
    }

    fn fire_timers(&mut self) {
        let now = self.now_ms();
        while let Some(Reverse((due, index))) = self.timers.peek().copied() {
            if due > now {
                break;
            }
            self.timers.pop();
            if self.conns[index as usize].phase == Phase::Waiting {
                self.ready.push_back(index);
            }
        }
    }

    /// Pings the slice of devices whose turn this tick is: device i in tick i mod k, where
    /// k ticks make one interval (a little under it, as the SDK pings before it is due).
    fn send_pings(&mut self, tick: u64) {
        let Some(interval) = self.ping_interval else {
            return;
        };
        let ticks = ((interval.as_millis() * 8 / 10) / TICK.as_millis()).max(1) as usize;
        self.out.clear();
        wire::ping(&mut self.out);
        let start = (tick % ticks as u64) as usize;
        for index in (start..self.conns.len()).step_by(ticks) {
            let conn = &mut self.conns[index];
            if conn.phase != Phase::Up {
                continue;
            }
            let stream = conn.stream.as_mut().expect("open");
            if conn::write_now(stream, &self.out).is_err() {
                self.dropped(index as u32);
            }
        }
    }

    /// Fails attempts that have been under way too long.
    fn expire_attempts(&mut self) {
        let now = self.now_ms();
        for index in 0..self.conns.len() {
            let conn = &self.conns[index];
            if conn.phase.in_flight() && now.saturating_sub(conn.started_ms) > ATTEMPT_TIMEOUT_MS {
                self.fail(index as u32);
            }
        }
    }
}

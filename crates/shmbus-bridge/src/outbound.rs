//! Board to broker: one reader thread per sent topic.
//!
//! A reader is an ordinary subscriber (`RawSubscriber`, read-only
//! attachment): it never blocks or slows the topic's publisher. It sleeps
//! in the kernel between frames (the topic's futex), turns each frame it
//! sends into messages (JSON through the shared codec, and/or the postcard
//! bytes) and pushes them into the [`Outbox`], which never blocks either.
//!
//! ## Which frames
//! - `Pace::Every(1)`: every frame, in publish order. A reader that falls a
//!   whole ring behind counts the frames it lost (`missed`).
//! - `Pace::Every(n)`: frames whose generation is a multiple of `n`.
//! - `Pace::Rate(p)`: the latest frame, at most once per `p`, as soon as
//!   one is newer than the last sent.
//!
//! Where a reader starts depends on whether the segment is new to it:
//! - A topic that is already there when the bridge starts: its newest frame
//!   is sent at once (so the retained value on the broker is there even for
//!   a topic that publishes rarely), then every frame after it.
//! - A topic that **appears while the bridge watches** (first published
//!   after the bridge looked and found nothing, created again after a
//!   removal, or found after a segment it could not attach): with `Pace::Every` it is read from its oldest frame still in
//!   the ring, so a sensor's first frames go out too. A publisher that
//!   lapped its ring before the reader attached (the reader looks every
//!   500 ms) lost the frames before the oldest for the bridge: they are
//!   counted as `missed`, never dropped silently. The moment the reader
//!   attaches is not the moment it fixes where it reads from (attaching,
//!   checking the header and the schema come between), so a start "from
//!   now" would silently lose the frames published in that gap.
//!
//! ## Status
//! Each topic has a retained `$status` message, sent when something
//! changes: `absent` (no segment at the key), `alive` (with the publisher's
//! pid), `stopped` (the publisher is gone; its last frames stay), `removed`,
//! `error` (e.g. permission denied; or a JSON-only topic whose schema the
//! codec cannot use: its frames are `bad`, and its `$jsonschema` and
//! `$schematext` are cleared), plus `stale` (the newest frame is older
//! than the topic's `max_age_ms`, or three periods of its `rate_hz`). A
//! removed topic is looked for again every 500 ms and followed again when
//! it is recreated, schema included.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use shmbus_codec::Codec;
use shmbus_core::{OpenError, ReadError, SlotMeta, WaitError};
use shmbus_sub::{RawNext, RawSubscriber};
use shmbus_toolbox::liveness::{LOOK_GAP, Liveness, Watch};

use crate::names::Names;
use crate::outbox::{Message, Outbox, Qos};
use crate::settings::{OutTopic, Pace};
use crate::stats::{Stats, TopicStats};

/// Longest sleep between checks of the stop flag and of staleness.
const SLICE: Duration = Duration::from_millis(200);
/// How often an absent topic is looked for.
const ABSENT_POLL: Duration = Duration::from_millis(500);
/// How often a topic that could not be attached is tried again.
const ERROR_POLL: Duration = Duration::from_secs(2);
/// A topic read every frame rests this long after a batch, unless the
/// batch filled a quarter of its ring: faster than 100 frames/s it is read
/// in batches (latency up to this much more, far fewer wake-ups).
const BATCH_WINDOW: Duration = Duration::from_millis(10);

/// What a reader says about its topic on `$status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub state: &'static str,
    pub pid: Option<i32>,
    pub stale: bool,
    pub error: Option<String>,
    /// The publisher lock, when the segment is attached: `held`, `free`,
    /// `missing` (removed: `ipcrm -s`, logind's `RemoveIPC`) or
    /// `unreadable`.
    pub lock: Option<&'static str>,
}

impl Status {
    fn new(state: &'static str) -> Status {
        Status {
            state,
            pid: None,
            stale: false,
            error: None,
            lock: None,
        }
    }
}

/// How a followed segment ended.
enum Ended {
    Stop,
    Removed,
}

/// One frame (or a notice) read from the ring.
enum Got {
    Frame(SlotMeta),
    Missed(u64),
}

/// The reader of one sent topic: [`Reader::run`] on a thread of its own.
pub struct Reader {
    t: OutTopic,
    names: Names,
    outbox: Arc<Outbox>,
    stats: Arc<Stats>,
    ts: Arc<TopicStats>,
    stop: Arc<AtomicBool>,
    status: Option<Status>,
    codec: Option<Codec>,
    /// Why the attached segment's schema cannot be turned into JSON (the
    /// codec refused it): a JSON-only topic then sends nothing, and says
    /// so on `$status` (`error`) instead of counting its frames as sent.
    no_json: Option<String>,
    /// Where the last read error counted in `bad` was (the in-order
    /// cursor and the topic's generation): a read that fails again there
    /// (a publisher stopped mid-write) is one bad frame, not one per retry.
    bad_at: Option<(u64, u64)>,
    /// The start of every JSON message: `{"topic":"imu",`.
    json_head: Vec<u8>,
    frame: Vec<u8>,
    /// Generation of the newest frame sent (or skipped) on this segment.
    last_gen: u64,
    last_emit: Option<Instant>,
    warned_bad: bool,
    /// Whether a topic without a lock still moves (`shmbus_toolbox::liveness`).
    watch: Watch,
    /// When `watch` last looked (monotonic ns).
    looked_ns: u64,
}

impl Reader {
    /// A reader of `t` that pushes into `outbox` until `stop` is set.
    pub fn new(
        t: OutTopic,
        names: Names,
        outbox: Arc<Outbox>,
        stats: Arc<Stats>,
        stop: Arc<AtomicBool>,
    ) -> Reader {
        let ts = stats.topic(&t.cfg.name);
        let mut json_head = b"{\"topic\":".to_vec();
        json_head.extend(serde_json::to_vec(&t.cfg.name).unwrap_or_default());
        json_head.push(b',');
        Reader {
            t,
            names,
            outbox,
            stats,
            ts,
            stop,
            status: None,
            codec: None,
            no_json: None,
            bad_at: None,
            json_head,
            frame: Vec::new(),
            last_gen: 0,
            last_emit: None,
            warned_bad: false,
            watch: Watch::new(),
            looked_ns: 0,
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleep `d` in short steps; false if asked to stop meanwhile.
    fn nap(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(SLICE));
        }
    }

    /// Follow the topic (attach, read, report, attach again after a
    /// removal) until the stop flag is set; then send what the ring holds.
    pub fn run(mut self) {
        // True once the key was seen empty (or its segment removed): a
        // segment found after that is new, and read from its first frame.
        let mut watched = false;
        while !self.stopped() {
            let mut sub = match RawSubscriber::attach(&self.t.topic) {
                Ok(s) => s,
                // Not there, or being created by a live publisher. One
                // whose creator died before the header is an error with its
                // fix (tried again: a publisher started again finishes it).
                Err(e) if matches!(e, OpenError::NotFound { .. }) || e.is_being_created() => {
                    watched = true;
                    self.set_status(Status::new("absent"), None);
                    self.nap(ABSENT_POLL);
                    continue;
                }
                Err(e) => {
                    // A segment found after this one is new to the reader
                    // (it never read this one): read from its first frame.
                    watched = true;
                    let mut s = Status::new("error");
                    s.error = Some(e.to_string());
                    self.set_status(s, None);
                    self.nap(ERROR_POLL);
                    continue;
                }
            };
            self.attached(&mut sub, watched);
            match self.follow(&mut sub) {
                Ended::Stop => return,
                Ended::Removed => {
                    watched = true;
                    let mut s = Status::new("removed");
                    s.stale = true;
                    self.set_status(s, Some(&sub));
                }
            }
        }
    }

    /// A segment was attached: its schema messages, then where to read
    /// from (`new`: it appeared while this reader watched; module docs).
    fn attached(&mut self, sub: &mut RawSubscriber, new: bool) {
        let info = sub.info();
        let schema = info.schema.clone();
        self.last_gen = 0;
        self.last_emit = None;
        self.watch.forget();
        self.bad_at = None;
        self.no_json = None;
        self.codec = match Codec::from_schema_bytes(&schema) {
            Ok(c) => Some(c),
            Err(e) => {
                let why = format!(
                    "its schema cannot be turned into JSON ({e}); only format = \"postcard\" can send it"
                );
                if self.t.format.json() {
                    shmbus_toolbox::say!("shmbus-bridge: topic '{}': {why}", self.t.cfg.name);
                    self.no_json = Some(why);
                }
                None
            }
        };
        let name = self.t.cfg.name.clone();
        let retained = |topic: String, payload: Vec<u8>| Message {
            topic,
            payload,
            qos: Qos::AtLeastOnce,
            retain: true,
        };
        self.outbox
            .set_state(retained(self.names.meta(&name, "schema"), schema));
        // Without a codec, empty retained messages: they clear what a
        // segment before this one left on the broker (a `$jsonschema` of
        // another type beside this segment's `$schema`).
        let (js, text) = match &self.codec {
            Some(c) => (
                serde_json::to_vec(&c.json_schema()).unwrap_or_default(),
                c.text().into_bytes(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        self.outbox
            .set_state(retained(self.names.meta(&name, "jsonschema"), js));
        self.outbox
            .set_state(retained(self.names.meta(&name, "schematext"), text));
        self.refresh_status(sub);
        if let (true, Pace::Every(n)) = (new, self.t.pace) {
            // Every frame of a new segment, from the oldest the ring holds;
            // the ones before it were overwritten before we could attach.
            sub.seek_oldest();
            let lost = sub.cursor().saturating_sub(1) / u64::from(n.max(1));
            self.ts.missed.fetch_add(lost, Ordering::Relaxed);
            return;
        }
        // The newest frame at once (the broker's retained value). Read in
        // order, a frame published since the attach comes with the others:
        // sending it now would skip the ones before it.
        let start = sub.cursor();
        let mut frame = std::mem::take(&mut self.frame);
        let latest = sub.latest_bytes(&mut frame);
        self.frame = frame;
        if let Ok(Some(meta)) = latest {
            if !(matches!(self.t.pace, Pace::Every(_)) && meta.generation >= start) {
                self.emit(meta, true);
            }
        }
    }

    /// Follow an attached segment until it is removed or the bridge stops.
    /// Every way out on a stop goes through the top of the loop, which
    /// sends what the ring holds first.
    fn follow(&mut self, sub: &mut RawSubscriber) -> Ended {
        loop {
            if self.stopped() {
                self.drain(sub);
                return Ended::Stop;
            }
            if let (Pace::Rate(p), Some(last)) = (self.t.pace, self.last_emit) {
                let due = last + p;
                let now = Instant::now();
                if due > now && !self.nap(due - now) {
                    continue; // stopped: the top of the loop drains
                }
            }
            let pace = self.t.pace;
            let mut frame = std::mem::take(&mut self.frame);
            let r = sub.wait_until(SLICE, |raw| match pace {
                Pace::Every(_) => Ok(match raw.next_bytes(&mut frame)? {
                    RawNext::Frame(m, ()) => Some(Got::Frame(m)),
                    RawNext::Missed(n) => Some(Got::Missed(n)),
                    RawNext::Empty => None,
                }),
                Pace::Rate(_) => {
                    if !raw.has_new() {
                        return Ok(None);
                    }
                    Ok(raw.latest_bytes(&mut frame)?.map(Got::Frame))
                }
            });
            self.frame = frame;
            match r {
                Ok(Got::Frame(meta)) => {
                    self.emit(meta, false);
                    if let Pace::Every(_) = pace {
                        // Read what else is there, then rest: a fast topic
                        // is read in batches (one wake-up of this thread,
                        // the pump and the engine per batch, not per frame).
                        let batch = self.read_available(sub);
                        let slots = sub.info().geometry.slot_count as usize;
                        if batch * 4 <= slots && !self.nap(BATCH_WINDOW) {
                            continue;
                        }
                    }
                    self.refresh_stale(sub);
                }
                Ok(Got::Missed(n)) => {
                    self.ts.missed.fetch_add(n, Ordering::Relaxed);
                }
                Err(WaitError::Timeout) => self.refresh_status(sub),
                Err(WaitError::PublisherGone) => {
                    self.refresh_status(sub);
                    if self.wait_revival(sub) {
                        return Ended::Removed;
                    }
                    self.refresh_status(sub);
                }
                Err(WaitError::Removed) => return Ended::Removed,
                Err(WaitError::Read(e)) => {
                    // A slot left mid-write by a dead publisher, or a frame
                    // that is not what the header says: count it once (a
                    // read that fails again at the same place, a publisher
                    // stopped mid-write, is the same frame), go on.
                    let at = (sub.cursor(), sub.generation());
                    if self.bad_at != Some(at) {
                        self.bad_at = Some(at);
                        self.ts.bad.fetch_add(1, Ordering::Relaxed);
                    }
                    if let (ReadError::PublisherDied, Pace::Every(_)) = (&e, pace) {
                        // That frame is lost (the next publisher repairs the
                        // slot): read on past it. Reads of it failed every
                        // 100 ms for good, and the frames after it were
                        // never sent.
                        sub.skip();
                    }
                    // A failed read returns before the wait's liveness
                    // check: `$status` would keep saying `alive`.
                    self.refresh_status(sub);
                    if !self.warned_bad {
                        self.warned_bad = true;
                        shmbus_toolbox::say!(
                            "shmbus-bridge: topic '{}': {e} (counted as bad in $stats; further ones are not printed)",
                            self.t.cfg.name
                        );
                    }
                    self.nap(Duration::from_millis(100)); // stopped: the top of the loop drains
                }
                Err(e @ WaitError::Sys(_)) => {
                    let mut s = Status::new("error");
                    s.error = Some(e.to_string());
                    self.set_status(s, Some(sub));
                    self.nap(ERROR_POLL); // stopped: the top of the loop drains
                }
                Err(e) => {
                    let mut s = Status::new("error");
                    s.error = Some(e.to_string());
                    self.set_status(s, Some(sub));
                    self.nap(ERROR_POLL); // stopped: the top of the loop drains
                }
            }
        }
    }

    /// Every frame published and not read yet (at most one ring), in order.
    /// Returns how many frames were read, counting the one before.
    fn read_available(&mut self, sub: &mut RawSubscriber) -> usize {
        let slots = sub.info().geometry.slot_count as usize;
        let mut frame = std::mem::take(&mut self.frame);
        let mut n = 1;
        while n <= slots {
            match sub.next_bytes(&mut frame) {
                Ok(RawNext::Frame(m, ())) => {
                    self.frame = std::mem::take(&mut frame);
                    self.emit(m, false);
                    frame = std::mem::take(&mut self.frame);
                    n += 1;
                }
                Ok(RawNext::Missed(k)) => {
                    self.ts.missed.fetch_add(k, Ordering::Relaxed);
                }
                Ok(RawNext::Empty) | Err(_) => break,
            }
        }
        self.frame = frame;
        n
    }

    /// The bridge is stopping: send what the ring holds now (every frame
    /// not read yet, at most one ring; or the latest value), so that a stop
    /// right after a publisher's last frame loses nothing.
    fn drain(&mut self, sub: &mut RawSubscriber) {
        match self.t.pace {
            Pace::Every(_) => {
                self.read_available(sub);
            }
            Pace::Rate(_) => {
                let mut frame = std::mem::take(&mut self.frame);
                if sub.has_new() {
                    if let Ok(Some(m)) = sub.latest_bytes(&mut frame) {
                        self.frame = std::mem::take(&mut frame);
                        self.emit(m, false);
                        frame = std::mem::take(&mut self.frame);
                    }
                }
                self.frame = frame;
            }
        }
    }

    /// The publisher is gone: wait for a successor (the same segment
    /// reopened) or for frames without one (a lock removed under a live
    /// publisher), for the topic's removal, or for the stop flag. True when
    /// the topic was removed; false when frames may come again or the
    /// bridge stops (the caller drains).
    fn wait_revival(&mut self, sub: &mut RawSubscriber) -> bool {
        loop {
            match sub.wait_for_publisher(SLICE) {
                // Frames published just before a removal are still in the
                // mapping: the wait reports them first, the caller drains.
                Ok(_) => return false,
                Err(WaitError::Removed) => return true,
                Err(WaitError::Timeout) => {}
                // A lock that cannot be read, or a failed wait: the caller's
                // next wait ends the same way and reports it.
                Err(_) => return false,
            }
            if self.stopped() {
                return false;
            }
            self.refresh_stale(sub);
        }
    }

    /// Turn one frame (in `self.frame`) into messages. `at_attach`: the
    /// newest frame when the reader attached, sent whatever the pacing.
    fn emit(&mut self, meta: SlotMeta, at_attach: bool) {
        self.stats.read.fetch_add(1, Ordering::Relaxed);
        self.ts.read.fetch_add(1, Ordering::Relaxed);
        if meta.generation <= self.last_gen {
            return; // sent already (the newest frame, sent at attach)
        }
        let gap = meta.generation - self.last_gen - 1;
        let first = self.last_gen == 0;
        self.last_gen = meta.generation;
        match self.t.pace {
            Pace::Rate(_) if !first => {
                self.ts.skipped.fetch_add(gap, Ordering::Relaxed);
            }
            Pace::Every(n) if n > 1 && !at_attach && meta.generation % u64::from(n) != 0 => {
                self.ts.skipped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            _ => {}
        }
        self.last_emit = Some(Instant::now());
        let name = &self.t.cfg.name;
        if self.t.format.json() && self.codec.is_none() && !self.t.format.postcard() {
            // Nothing can go out (the schema gives no JSON; `$status` says
            // so): not sent, but counted.
            self.ts.bad.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.t.format.json() {
            if let Some(c) = &self.codec {
                let mut out = Vec::with_capacity(self.json_head.len() + 96 + 4 * self.frame.len());
                out.extend_from_slice(&self.json_head);
                out.extend_from_slice(
                    format!(
                        "\"generation\":{},\"real_ns\":{},\"mono_ns\":{},\"value\":",
                        meta.generation, meta.real_ns, meta.mono_ns
                    )
                    .as_bytes(),
                );
                match c.write_json(&self.frame, &mut out) {
                    Ok(()) => {
                        out.push(b'}');
                        self.outbox.push(Message {
                            topic: self.names.data(name),
                            payload: out,
                            qos: self.t.qos,
                            retain: self.t.retain,
                        });
                    }
                    Err(e) => {
                        self.ts.bad.fetch_add(1, Ordering::Relaxed);
                        if !self.warned_bad {
                            self.warned_bad = true;
                            shmbus_toolbox::say!(
                                "shmbus-bridge: topic '{name}': frame {} does not decode with the topic's schema ({e}); not sent (counted as bad in $stats; further ones are not printed)",
                                meta.generation
                            );
                        }
                        return;
                    }
                }
            }
        }
        if self.t.format.postcard() {
            self.outbox.push(Message {
                topic: self.names.meta(name, "raw"),
                payload: self.frame.clone(),
                qos: self.t.qos,
                retain: self.t.retain,
            });
        }
        self.ts.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Publisher liveness and staleness, as they are now. A topic whose
    /// lock was removed under a publisher that still publishes (its
    /// generation moved since the previous look) is `alive` with `lock`
    /// `missing`; it used to be `stopped` while its frames went out.
    fn refresh_status(&mut self, sub: &RawSubscriber) {
        let now = shmbus_core::sys::monotonic_ns();
        self.looked_ns = now;
        let (state, pid, lock) =
            match self
                .watch
                .look(sub.publisher(), sub.generation(), sub.age(), now)
            {
                Liveness::Alive { pid } => ("alive", Some(pid), "held"),
                Liveness::NoLockPublishing => ("alive", None, "missing"),
                Liveness::Unknown => ("alive", None, "unreadable"),
                Liveness::NotRunning => ("stopped", None, "free"),
                Liveness::NoLock => ("stopped", None, "missing"),
            };
        // A schema that gives no JSON: a JSON-only topic sends nothing
        // (`error`); with format = "both" only `$raw` goes out (said in
        // `error`, the state as it is).
        let state = if self.no_json.is_some() && !self.t.format.postcard() {
            "error"
        } else {
            state
        };
        let s = Status {
            pid,
            stale: self.is_stale(sub),
            lock: Some(lock),
            error: self.no_json.clone(),
            ..Status::new(state)
        };
        self.set_status(s, Some(sub));
    }

    /// Staleness as it is now, after frames; the publisher too, at most
    /// every `LOOK_GAP`: a lock removed while frames come is seen.
    fn refresh_stale(&mut self, sub: &RawSubscriber) {
        let now = shmbus_core::sys::monotonic_ns();
        if now.saturating_sub(self.looked_ns) >= LOOK_GAP.as_nanos() as u64 {
            self.refresh_status(sub);
            return;
        }
        if let Some(cur) = &self.status {
            let stale = self.is_stale(sub);
            if stale != cur.stale {
                let mut s = cur.clone();
                s.stale = stale;
                self.set_status(s, Some(sub));
            }
        }
    }

    fn is_stale(&self, sub: &RawSubscriber) -> bool {
        match sub.age() {
            Some(age) => self.t.cfg.is_stale(age),
            None => false,
        }
    }

    /// Send `$status` if it changed.
    fn set_status(&mut self, s: Status, sub: Option<&RawSubscriber>) {
        if self.status.as_ref() == Some(&s) {
            return;
        }
        let mut v = json!({
            "state": s.state,
            "stale": s.stale,
            "changed_ns": shmbus_core::sys::realtime_ns(),
        });
        if let Some(pid) = s.pid {
            v["pid"] = json!(pid);
        }
        if let Some(sub) = sub {
            v["generation"] = json!(sub.generation());
            if let Some(age) = sub.age() {
                v["age_ms"] = json!(age.as_millis() as u64);
            }
        }
        if let Some(e) = &s.error {
            v["error"] = json!(e);
        }
        if let Some(lock) = s.lock {
            v["lock"] = json!(lock);
        }
        self.outbox.set_state(Message {
            topic: self.names.meta(&self.t.cfg.name, "status"),
            payload: serde_json::to_vec(&v).unwrap_or_default(),
            qos: Qos::AtLeastOnce,
            retain: true,
        });
        self.status = Some(s);
    }
}

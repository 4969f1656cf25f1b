//! The bus side: which topics exist, their frames as JSON, and their
//! health (publisher liveness and staleness).
//!
//! Topics are found by listing `/proc/sysvipc/shm` and attaching each new
//! segment read-only once ([`Topics::scan`]); a segment that is not a
//! shmbus topic, or that this user may not read, is remembered and not
//! attached again. A topic goes when its segment is removed (`shmbus rm`,
//! the demo's cleanup) or disappears from the list.
//!
//! ## Names
//! Any user can create a segment that carries any topic name, so a name is
//! given to the segment `shmbus_config::names` resolves it to, as every
//! shmbus tool does: the one at the key the name derives from, else a
//! trusted one (the caller's own or root's). Another segment that carries
//! the name (another user's, a stale copy) is served as `NAME@0xKEY`, never
//! under the name; a TOPIC argument given as a name serves only the
//! resolved segment (ask for the others by key). Names are resolved again
//! whenever segments come or go; a channel whose name changes is
//! unadvertised and advertised again under the new one.
//!
//! Each channel's schema is the codec's viewer schema (`docs/JSON.md` §2),
//! the one the recorder's JSON channels carry: the exact JSON Schema uses
//! `anyOf` (a float is a number or `"NaN"`), which Lichtblick's reader
//! refuses.
//!
//! Frames are read only for topics some client subscribed to
//! ([`Topics::poll`]): in publish order, each decoded once by the shared
//! codec into the same JSON as `shmbus echo --json`'s `value` (wrapped as
//! `{"value": ...}` when the type is not a struct), however many clients
//! receive it. A topic with a rate limit is read latest-value instead: at
//! most one frame per interval, the newest.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use shmbus_codec::Codec;
use shmbus_config::names::{Directory, Found, NameError, Rules};
use shmbus_core::sys;
use shmbus_core::sysvipc;
use shmbus_sub::{OpenError, PublisherStatus, RawNext, RawSubscriber, ReadError, Segment};
use shmbus_toolbox::liveness::{Liveness, Watch};
use shmbus_toolbox::printable::printable;
use shmbus_toolbox::topic;

use crate::protocol::Channel;

/// Which topics to serve: a name, a key (`0x5312abcd`, `key:N`), a shmid
/// (`shmid:N`) or a plain decimal (a key or a shmid), parsed as every
/// `shmbus` command parses a TOPIC (`shmbus_toolbox::topic`).
pub use shmbus_toolbox::topic::Selector;

/// Why a topic named on the command line is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unserved {
    /// Index of its selector in [`crate::Config::topics`].
    pub index: usize,
    /// How messages call it: `topic 'imu'`, `key 0x5312abcd`, `shmid 7`.
    pub label: String,
    /// Nothing is there (yet). Else it is there and unusable (not a
    /// shmbus topic, corrupt, permission, schema).
    pub not_found: bool,
    /// Not there yet, and named so that it can still appear (a name or a
    /// key, whose publisher may start later): served once it does. A shmid
    /// that is not there never will be.
    pub may_appear: bool,
    /// Why, for people.
    pub why: String,
}

/// The shmids a selector picks now, or (not found?, why) none is usable.
type Picked = Result<Vec<i32>, (bool, String)>;

/// Settle each plain decimal of `selectors` to a key or a shmid, as the
/// other commands read it (a live segment's key first, else a shmid); one
/// that is neither yet stays as it is (served when either appears).
/// Errors when a decimal is both the key of one segment and another's
/// shmid.
pub fn settle(selectors: &[Selector]) -> Result<Vec<Selector>, String> {
    let list = sysvipc::segments().unwrap_or_default();
    selectors
        .iter()
        .map(|s| match s {
            Selector::Number(n) => {
                let segs = list
                    .iter()
                    .map(|e| (e.key(), e.id(), e.mode() & sys::SHM_DEST != 0));
                Ok(topic::number(*n, segs)?.unwrap_or_else(|| s.clone()))
            }
            _ => Ok(s.clone()),
        })
        .collect()
}

/// How a topic is doing, as clients are told in status messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Publisher alive and frames recent (or the liveness cannot be read).
    Ok,
    /// Publisher alive, but no frame for longer than the stale limit.
    Stale,
    /// No publisher holds the topic.
    NoPublisher,
    /// The topic's lock was removed (`ipcrm -s`, systemd-logind's
    /// `RemoveIPC`) under a publisher that still publishes.
    NoLock,
}

/// A change of health to tell clients: a status to set (level, text) or
/// to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    /// The status id (`shmbus/<topic>`).
    pub id: String,
    /// `Some((level, message))` to set, `None` to remove.
    pub status: Option<(u8, String)>,
}

/// One frame of one topic, as JSON in [`Topics::poll`]'s buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The channel.
    pub channel: u32,
    /// `CLOCK_REALTIME` at publish, ns: the message's log time.
    pub real_ns: u64,
    /// Byte range of the JSON in the buffer.
    pub start: usize,
    /// End of the range.
    pub end: usize,
}

/// A topic being served.
pub struct Topic {
    /// Its channel as advertised.
    pub channel: Channel,
    /// System V key.
    pub key: i32,
    /// shmid.
    pub shmid: i32,
    sub: RawSubscriber,
    codec: Codec,
    /// Client subscriptions to it (over all clients).
    pub subscribers: usize,
    /// Minimum interval between frames sent, if rate-limited.
    interval_ns: Option<u64>,
    next_allowed_ns: u64,
    /// The health clients were last told.
    pub health: Health,
    /// The status text of `health` (for clients that connect later).
    pub status: Option<(u8, String)>,
    /// Whether the topic moves while it has no lock.
    watch: Watch,
    /// Frames sent on (decoded for) this channel.
    pub frames: u64,
    /// Frames the server fell behind on (overwritten in the ring before
    /// it read them).
    pub missed: u64,
    /// Frames the codec refused (did not match the topic's schema).
    pub undecodable: u64,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("channel", &self.channel.id)
            .field("name", &self.channel.topic)
            .field("key", &self.key)
            .field("shmid", &self.shmid)
            .finish_non_exhaustive()
    }
}

/// The longest a read retries a slot that is mid-write before leaving it
/// for the next tick: the server's one thread must not wait on a publisher.
const READ_PATIENCE: Duration = Duration::from_millis(2);

impl Topic {
    fn new(id: u32, seg: Segment, codec: Codec, interval_ns: Option<u64>) -> Topic {
        let info = seg.info();
        let channel = Channel {
            id,
            topic: info.name.clone(),
            encoding: "json",
            schema_name: codec.schema().name.to_string(),
            // The form Foxglove's and Lichtblick's readers accept (the
            // recorder's JSON channels carry the same).
            schema: codec.viewer_schema().to_string(),
            schema_encoding: "jsonschema",
        };
        let (key, shmid) = (seg.key(), seg.shmid());
        let mut sub = RawSubscriber::from_segment(seg);
        sub.set_stuck_after(READ_PATIENCE);
        Topic {
            channel,
            key,
            shmid,
            sub,
            codec,
            subscribers: 0,
            interval_ns,
            next_allowed_ns: 0,
            health: Health::Ok,
            status: None,
            watch: Watch::new(),
            frames: 0,
            missed: 0,
            undecodable: 0,
        }
    }

    /// The topic name.
    pub fn name(&self) -> &str {
        &self.channel.topic
    }

    /// The attached segment.
    pub fn segment(&self) -> &Segment {
        self.sub.segment()
    }

    /// The codec of the topic's schema.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// The frame capacity of the topic, bytes.
    pub fn frame_capacity(&self) -> usize {
        self.sub.info().geometry.frame_capacity
    }

    /// The ring's slot count.
    pub fn slots(&self) -> u32 {
        self.sub.info().geometry.slot_count
    }

    /// Whether the publisher is alive (two system calls).
    pub fn publisher(&self) -> PublisherStatus {
        self.sub.publisher()
    }

    /// Start reading from the next frame published (a first subscriber
    /// gets live data, not the ring's backlog).
    fn start_reading(&mut self) {
        self.sub.seek_latest();
        self.next_allowed_ns = 0;
    }

    /// The last read of a topic that goes (removed, or moved to a new
    /// channel): the frames published since the last tick, which no later
    /// tick would read under this channel; a rate-limited topic's newest.
    fn last_read(&mut self, json: &mut Vec<u8>, out: &mut Vec<Frame>, frame: &mut Vec<u8>) {
        if self.subscribers == 0 {
            return;
        }
        self.next_allowed_ns = 0;
        self.poll(sys::monotonic_ns(), json, out, frame);
    }

    /// Append new frames to `out`/`json`.
    fn poll(&mut self, now_ns: u64, json: &mut Vec<u8>, out: &mut Vec<Frame>, frame: &mut Vec<u8>) {
        if !self.sub.has_new() {
            return;
        }
        if let Some(interval) = self.interval_ns {
            if now_ns < self.next_allowed_ns {
                return;
            }
            match self.sub.latest_bytes(frame) {
                Ok(Some(meta)) => {
                    // Frames between two sends are skipped on purpose.
                    self.sub.seek_latest();
                    self.emit(meta.real_ns, frame, json, out);
                    // The next slot starts one interval after this one
                    // (or now, after a pause): at most one frame per
                    // interval, on average exactly the limit.
                    self.next_allowed_ns = (self.next_allowed_ns + interval).max(now_ns);
                }
                Ok(None) => {}
                Err(e) => self.read_failed(&e),
            }
            return;
        }
        // Every frame in publish order, at most one ring's worth per tick.
        for _ in 0..self.slots() {
            match self.sub.next_bytes(frame) {
                Ok(RawNext::Frame(meta, ())) => self.emit(meta.real_ns, frame, json, out),
                Ok(RawNext::Missed(n)) => self.missed += n,
                Ok(RawNext::Empty) => break,
                Err(e) => {
                    self.read_failed(&e);
                    break;
                }
            }
        }
    }

    fn emit(&mut self, real_ns: u64, frame: &[u8], json: &mut Vec<u8>, out: &mut Vec<Frame>) {
        let start = json.len();
        match self.codec.write_message_json(frame, json) {
            Ok(()) => {
                self.frames += 1;
                out.push(Frame {
                    channel: self.channel.id,
                    real_ns,
                    start,
                    end: json.len(),
                });
            }
            Err(_) => self.undecodable += 1,
        }
    }

    fn read_failed(&mut self, e: &ReadError) {
        match e {
            // Mid-write right now: the next tick reads it.
            ReadError::WriterStuck { .. } => {}
            // A slot the dead publisher left mid-write stays unreadable
            // until a new publisher repairs it: skip to the newest frame.
            ReadError::PublisherDied => {
                self.missed += 1;
                self.sub.seek_latest();
            }
            ReadError::Corrupt { .. } => {
                self.undecodable += 1;
                self.sub.seek_latest();
            }
            // Anything new: skip to the newest frame rather than retry a
            // read that fails.
            _ => {
                self.missed += 1;
                self.sub.seek_latest();
            }
        }
    }

    /// Recompute the health; `Some` if clients must be told.
    fn check_health(&mut self, stale_after: Duration) -> Option<HealthChange> {
        let age = self.sub.age();
        let status = self.watch.look(
            self.sub.publisher(),
            self.sub.generation(),
            age,
            sys::monotonic_ns(),
        );
        let name = &self.channel.topic;
        let (health, text) = match status {
            // Frames still come: a publisher runs. It used to be "no
            // publisher is running" while the frames were shown.
            Liveness::NoLockPublishing => (
                Health::NoLock,
                Some((
                    crate::protocol::level::WARNING,
                    format!(
                        "{name}: the publisher runs without its lock (removed by `ipcrm -s` or systemd-logind's RemoveIPC): frames still come, but another publisher could start on the topic; restart the publisher to take a new lock"
                    ),
                )),
            ),
            Liveness::NotRunning | Liveness::NoLock => {
                let last = match age {
                    Some(a) => format!("last frame {} ago", human(a)),
                    None => "no frame published yet".to_string(),
                };
                (
                    Health::NoPublisher,
                    Some((
                        crate::protocol::level::ERROR,
                        format!("{name}: no publisher is running ({last})"),
                    )),
                )
            }
            Liveness::Alive { pid } => match age {
                Some(a) if a > stale_after => (
                    Health::Stale,
                    Some((
                        crate::protocol::level::WARNING,
                        // Why, when its process says: suspended, or
                        // blocked in the kernel (a hung device read).
                        format!(
                            "{name}: no frame for {} (publisher pid {pid} is alive but {})",
                            human(a),
                            shmbus_toolbox::process::held_up(pid)
                                .unwrap_or_else(|| "silent".into())
                        ),
                    )),
                ),
                None => (
                    Health::Stale,
                    Some((
                        crate::protocol::level::WARNING,
                        format!("{name}: publisher pid {pid} has not published a frame yet"),
                    )),
                ),
                Some(_) => (Health::Ok, None),
            },
            // The lock cannot be read (another user's): judge by age alone.
            Liveness::Unknown => match age {
                Some(a) if a > stale_after => (
                    Health::Stale,
                    Some((
                        crate::protocol::level::WARNING,
                        format!("{name}: no frame for {}", human(a)),
                    )),
                ),
                _ => (Health::Ok, None),
            },
        };
        if health == self.health {
            return None;
        }
        self.health = health;
        self.status = text.clone();
        Some(HealthChange {
            id: status_id(name),
            status: text,
        })
    }
}

/// The status id of a topic's health.
pub fn status_id(topic: &str) -> String {
    format!("shmbus/{topic}")
}

/// A duration for people: `850 ms`, `3.2 s`, `12 min`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{} ms", d.as_millis())
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// What changed in a scan.
#[derive(Debug, Default)]
pub struct ScanResult {
    /// New channels (already in [`Topics`]).
    pub added: Vec<u32>,
    /// Channels gone (removed from [`Topics`]).
    pub removed: Vec<u32>,
    /// Topics that cannot be served, with why (reported once each).
    pub refused: Vec<String>,
    /// Health status ids that no longer hold: their topic went, or its
    /// channel name changed (the new name's status follows at the next
    /// health check). Clients are told to remove them.
    pub statuses_gone: Vec<String>,
}

/// The name lookups of one pass: the config found once, the machine's
/// segments listed once (each attached at most once).
struct Pass {
    rules: Rules,
    dir: Directory,
}

/// Every topic being served, by channel id.
pub struct Topics {
    selectors: Vec<Selector>,
    bus_keys: Option<String>,
    max_rate: Option<f64>,
    topic_rates: Vec<(String, f64)>,
    /// shmids looked at that are not served (foreign, denied, refused, filtered).
    skipped: HashSet<i32>,
    /// Why a skipped shmid cannot be served (not for filtered ones).
    reasons: HashMap<i32, String>,
    /// Topics by channel id.
    pub by_id: HashMap<u32, Topic>,
    /// Topic name to the shmid it resolves to, until segments change.
    names: HashMap<String, Option<i32>>,
    /// The name lookups of this pass (a scan and the unserved list after
    /// it), made with one listing of the machine's segments.
    pass: Option<Pass>,
    /// Effective uid (whose segments are trusted under a name).
    me: u32,
    next_id: u32,
    /// The counters of channels that went (removed, or their segment
    /// replaced by a restarted publisher), added up by channel name: frames
    /// read, missed, undecodable. The run's summary adds them to the
    /// topics still served, so a topic whose publisher crashed and came
    /// back keeps what it counted before (what was missed at the crash
    /// above all). One entry per name.
    pub gone: BTreeMap<String, (u64, u64, u64)>,
    /// JSON of the frames of the last poll.
    pub json: Vec<u8>,
    /// The frames of the last poll.
    pub frames: Vec<Frame>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics")
            .field("topics", &self.by_id.len())
            .finish_non_exhaustive()
    }
}

impl Topics {
    /// Serve the topics `selectors` picks (all if empty); names only on
    /// the keys derived from `bus`, if given.
    pub fn new(
        selectors: Vec<Selector>,
        bus: Option<String>,
        max_rate: Option<f64>,
        topic_rates: Vec<(String, f64)>,
    ) -> Topics {
        Topics {
            selectors,
            bus_keys: bus,
            max_rate,
            topic_rates,
            skipped: HashSet::new(),
            reasons: HashMap::new(),
            by_id: HashMap::new(),
            names: HashMap::new(),
            pass: None,
            me: nix::unistd::geteuid().as_raw(),
            next_id: 1,
            gone: BTreeMap::new(),
            json: Vec::new(),
            frames: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The shmid a topic name resolves to (`shmbus_config::names`), cached
    /// until segments come or go.
    fn resolved(&mut self, name: &str) -> Option<i32> {
        if let Some(r) = self.names.get(name) {
            return *r;
        }
        let r = self.lookup(name).ok().map(|f| f.shmid);
        self.names.insert(name.to_string(), r);
        r
    }

    /// Resolve `name` as `shmbus_config::names::resolve` does, with the
    /// config found and the segments listed once per pass: each segment
    /// is attached at most once however many names are looked up. (Each
    /// name attached every segment on the machine before: a server of 600
    /// topics among 3000 segments took 20 s to start, and one waiting for
    /// 10 names used 40% of a core scanning for them.)
    fn lookup(&mut self, name: &str) -> Result<Found, NameError> {
        let me = self.me;
        let pass = self.pass();
        let (rule, _) = pass.rules.rule(name);
        pass.dir.resolve(&rule, me)
    }

    /// This scan's config rules and segment directory, read on first need.
    fn pass(&mut self) -> &mut Pass {
        let bus = self.bus_keys.as_deref();
        self.pass.get_or_insert_with(|| Pass {
            rules: Rules::find(bus),
            dir: Directory::read(),
        })
    }

    /// The channel name of segment `shmid` (key `key`) carrying `name`.
    fn display_name(&mut self, name: &str, key: i32, shmid: i32) -> String {
        if self.resolved(name) == Some(shmid) {
            name.to_string()
        } else {
            format!("{name}@{key:#010x}")
        }
    }

    fn wanted(&mut self, key: i32, shmid: i32, name: &str) -> bool {
        if self.selectors.is_empty() {
            return true;
        }
        let by_key = self.selectors.iter().any(|s| match s {
            Selector::Key(k) => *k == key,
            Selector::Shmid(id) => *id == shmid,
            Selector::Number(n) => topic::number_as_key(*n) == Some(key) || i64::from(shmid) == *n,
            Selector::Name(_) => false,
        });
        let by_name = self
            .selectors
            .iter()
            .any(|s| matches!(s, Selector::Name(n) if n == name));
        by_key || (by_name && self.resolved(name) == Some(shmid))
    }

    fn interval_ns(&self, name: &str) -> Option<u64> {
        let rate = self
            .topic_rates
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, r)| *r)
            .or(self.max_rate)?;
        (rate > 0.0 && rate.is_finite()).then(|| (1e9 / rate) as u64)
    }

    /// Look for topics that appeared or went. The last frames of a
    /// subscribed topic that went (published after the last tick) are in
    /// [`Self::frames`] under its old channel id, to send before the
    /// unadvertise.
    pub fn scan(&mut self) -> ScanResult {
        let mut r = ScanResult::default();
        // A new pass: names are looked up among the segments there now.
        self.pass = None;
        self.json.clear();
        self.frames.clear();
        let Ok(list) = sysvipc::segments() else {
            return r;
        };
        let live: HashSet<i32> = list
            .iter()
            .filter(|e| e.key() != 0 && e.get("perms").unwrap_or(0) & i64::from(sys::SHM_DEST) == 0)
            .map(|e| e.id())
            .collect();
        // Gone: removed (or its key reused by a new segment).
        let gone: Vec<u32> = self
            .by_id
            .values()
            .filter(|t| !live.contains(&t.shmid) || t.sub.is_removed())
            .map(|t| t.channel.id)
            .collect();
        for id in gone {
            if let Some(mut t) = self.by_id.remove(&id) {
                // Still attached, so still readable after its removal.
                t.last_read(&mut self.json, &mut self.frames, &mut self.scratch);
                let c = self.gone.entry(t.name().to_string()).or_default();
                c.0 += t.frames;
                c.1 += t.missed;
                c.2 += t.undecodable;
                if t.status.is_some() {
                    r.statuses_gone.push(status_id(t.name()));
                }
            }
            r.removed.push(id);
        }
        self.skipped.retain(|s| live.contains(s));
        self.reasons.retain(|s, _| live.contains(s));
        let served: HashSet<i32> = self.by_id.values().map(|t| t.shmid).collect();
        for e in &list {
            let (key, shmid) = (e.key(), e.id());
            if !live.contains(&shmid) || served.contains(&shmid) || self.skipped.contains(&shmid) {
                continue;
            }
            let seg = match Segment::attach_shmid(shmid, key) {
                Ok(s) => s,
                // Being created: look again at the next scan.
                Err(e) if e.is_being_created() => continue,
                // Its creator died before the header: say so and how to fix
                // it, and look again (a publisher started again finishes it
                // in place, under the same shmid).
                Err(e @ OpenError::NotReady { .. }) => {
                    self.reasons
                        .insert(shmid, printable(&e.to_string()).into_owned());
                    continue;
                }
                Err(e) => {
                    let why = match e {
                        OpenError::PermissionDenied { .. } => {
                            "permission denied: run as the topic's user or group".to_string()
                        }
                        OpenError::NotShmbus { .. }
                        | OpenError::Corrupt {
                            what: "segment smaller than the 256-byte header",
                            ..
                        } => "not a shmbus topic (another program's segment)".to_string(),
                        e => printable(&format!("corrupt or unusable: {e}")).into_owned(),
                    };
                    self.skipped.insert(shmid);
                    self.reasons.insert(shmid, why);
                    continue;
                }
            };
            let name = seg.info().name.clone();
            if !self.wanted(key, shmid, &name) {
                // A name's resolution can change: look again after changes.
                if !self
                    .selectors
                    .iter()
                    .any(|s| matches!(s, Selector::Name(n) if *n == name))
                {
                    self.skipped.insert(shmid);
                }
                continue;
            }
            let codec = match Codec::from_schema_bytes(&seg.info().schema) {
                Ok(c) => c,
                Err(e) => {
                    // The codec quotes a name from the schema, but not the
                    // path of field names to it: any local user's segment
                    // can put control characters there, and this text is
                    // printed on the server's terminal.
                    let e = printable(&e.to_string()).into_owned();
                    self.skipped.insert(shmid);
                    self.reasons
                        .insert(shmid, format!("its schema is not usable ({e})"));
                    r.refused.push(format!(
                        "topic '{name}' (key {key:#010x}) cannot be shown: its schema is not usable ({e})"
                    ));
                    continue;
                }
            };
            let id = self.next_id;
            self.next_id += 1;
            let interval = self.interval_ns(&name);
            let mut t = Topic::new(id, seg, codec, interval);
            t.channel.topic = self.display_name(&name, key, shmid);
            self.by_id.insert(id, t);
            r.added.push(id);
        }
        if !r.added.is_empty() || !r.removed.is_empty() {
            self.rename(&mut r);
        }
        r.added.sort_unstable();
        r
    }

    /// The topics named on the command line (the selectors) that are not
    /// served now, each with why. Empty when serving every topic. Ends the
    /// pass of name lookups that [`Self::scan`] began.
    pub fn unserved(&mut self) -> Vec<Unserved> {
        let mut out = Vec::new();
        if self.selectors.is_empty() {
            self.pass = None;
            return out;
        }
        let list = sysvipc::segments().unwrap_or_default();
        let live: Vec<(i32, i32)> = list
            .iter()
            .filter(|e| e.key() != 0 && e.mode() & sys::SHM_DEST == 0)
            .map(|e| (e.key(), e.id()))
            .collect();
        let selectors = self.selectors.clone();
        for (index, sel) in selectors.iter().enumerate() {
            let served = self.by_id.values().any(|t| match sel {
                Selector::Key(k) => t.key == *k,
                Selector::Shmid(id) => t.shmid == *id,
                Selector::Number(n) => {
                    topic::number_as_key(*n) == Some(t.key) || i64::from(t.shmid) == *n
                }
                Selector::Name(n) => t.channel.topic == *n,
            });
            if served {
                continue;
            }
            // The segments the selector picks, or why there are none.
            let (label, none, there): (String, &str, Picked) = match sel {
                Selector::Key(k) => (
                    format!("key {k:#010x}"),
                    "no segment at that key",
                    Ok(live.iter().filter(|e| e.0 == *k).map(|e| e.1).collect()),
                ),
                Selector::Shmid(id) => (
                    format!("shmid {id}"),
                    "no segment with that shmid",
                    Ok(live.iter().filter(|e| e.1 == *id).map(|e| e.1).collect()),
                ),
                Selector::Number(n) => (
                    format!("key or shmid {n}"),
                    "no segment with that key or shmid",
                    Ok(live
                        .iter()
                        .filter(|e| topic::number_as_key(*n) == Some(e.0) || i64::from(e.1) == *n)
                        .map(|e| e.1)
                        .collect()),
                ),
                Selector::Name(n) => {
                    let r = match self.lookup(n) {
                        Ok(f) => Ok(vec![f.shmid]),
                        // Its key holds another program's segment (a
                        // squat?): there but unusable, not "not found",
                        // in the words of `shmbus info`.
                        Err(NameError::NotFound {
                            foreign: Some(f),
                            others,
                        }) => Err((
                            false,
                            match others.first() {
                                None => shmbus_config::names::foreign_text(&f),
                                Some(o) => format!(
                                    "{}; another user's segment carries the name (key {:#010x}): serve it by key if you trust it",
                                    shmbus_config::names::foreign_text(&f),
                                    o.key
                                ),
                            },
                        )),
                        Err(NameError::NotFound { others, .. }) if others.is_empty() => {
                            Ok(Vec::new())
                        }
                        // No trusted segment of that name (yet).
                        Err(NameError::NotFound { others, .. }) => Err((
                            true,
                            format!(
                                "only another user's segment carries the name (key {:#010x}), away from the name's key; serve it by key if you trust it",
                                others[0].key
                            ),
                        )),
                        // Every tool's one text for it, naming the live
                        // squatter if there is one.
                        Err(NameError::Squatted {
                            key,
                            uid,
                            cuid,
                            expected,
                        }) => {
                            let (rule, _) = self.pass().rules.rule(n);
                            Err((
                                false,
                                shmbus_config::names::squatted_text(
                                    &rule, key, uid, cuid, expected,
                                ),
                            ))
                        }
                        // Being created by a live publisher: served once it is.
                        Err(NameError::Unusable { error, .. }) if error.is_being_created() => {
                            Err((true, "it is still being created".to_string()))
                        }
                        // A shmbus segment at its key that cannot be read:
                        // its own reason and fix, not "not found".
                        Err(NameError::Unusable { error, .. }) => Err((false, error.to_string())),
                        Err(NameError::Ambiguous { keys }) => Err((
                            false,
                            format!(
                                "{} topics carry the name; serve the one you mean by key",
                                keys.len()
                            ),
                        )),
                    };
                    (
                        format!("topic '{n}'"),
                        "no segment carries the name at its key",
                        r,
                    )
                }
            };
            let (not_found, why) = match there {
                Ok(ids) if ids.is_empty() => (true, none.to_string()),
                Ok(ids) => match ids.iter().find_map(|id| self.reasons.get(id)) {
                    Some(why) => (false, why.clone()),
                    // There but not attached yet (being created).
                    None => (true, "it is still being created".to_string()),
                },
                Err(e) => e,
            };
            out.push(Unserved {
                index,
                label,
                not_found,
                may_appear: not_found && !matches!(sel, Selector::Shmid(_)),
                why,
            });
        }
        // The pass ends: what its lookups saw is not kept.
        self.pass = None;
        out
    }

    /// Segments came or went: resolve every served name again, and move a
    /// topic whose channel name changed to a new channel.
    fn rename(&mut self, r: &mut ScanResult) {
        self.names.clear();
        let ids: Vec<u32> = self.by_id.keys().copied().collect();
        for id in ids {
            let (name, key, shmid) = {
                let t = &self.by_id[&id];
                (t.sub.info().name.clone(), t.key, t.shmid)
            };
            let shown = self.display_name(&name, key, shmid);
            if shown == self.by_id[&id].channel.topic {
                continue;
            }
            let Some(mut t) = self.by_id.remove(&id) else {
                continue;
            };
            if r.added.contains(&id) {
                r.added.retain(|a| *a != id);
            } else {
                r.removed.push(id);
            }
            let new = self.next_id;
            self.next_id += 1;
            if t.status.take().is_some() {
                r.statuses_gone.push(status_id(t.name()));
            }
            // Its subscriptions end with the old channel (one just added
            // has none): their last frames go under it.
            t.last_read(&mut self.json, &mut self.frames, &mut self.scratch);
            // Judged again under the new name at the next health check.
            t.health = Health::Ok;
            t.channel.id = new;
            t.channel.topic = shown;
            t.subscribers = 0;
            self.by_id.insert(new, t);
            r.added.push(new);
        }
    }

    /// The id the next new channel gets: every id below it was
    /// advertised once (ids are never reused).
    pub fn next_channel_id(&self) -> u32 {
        self.next_id
    }

    /// A client subscribed to channel `id`.
    pub fn subscribe(&mut self, id: u32) {
        if let Some(t) = self.by_id.get_mut(&id) {
            if t.subscribers == 0 {
                t.start_reading();
            }
            t.subscribers += 1;
        }
    }

    /// A client's subscription to channel `id` ended.
    pub fn unsubscribe(&mut self, id: u32) {
        if let Some(t) = self.by_id.get_mut(&id) {
            t.subscribers = t.subscribers.saturating_sub(1);
        }
    }

    /// True if any topic has a subscriber.
    pub fn any_subscribed(&self) -> bool {
        self.by_id.values().any(|t| t.subscribers > 0)
    }

    /// Read new frames of every subscribed topic into [`Self::frames`] and
    /// [`Self::json`] (cleared first).
    pub fn poll(&mut self) {
        let used = (self.json.len(), self.frames.len());
        self.json.clear();
        self.frames.clear();
        // One tick may read a whole ring per topic (a subscriber arriving
        // on a busy topic, a stall): memory for that burst is given back
        // once ticks are small again, not kept at its peak for good.
        give_back(&mut self.json, used.0, KEEP_JSON_BYTES);
        give_back(&mut self.frames, used.1, KEEP_JSON_BYTES / 64);
        let now = sys::monotonic_ns();
        for t in self.by_id.values_mut() {
            if t.subscribers > 0 {
                t.poll(now, &mut self.json, &mut self.frames, &mut self.scratch);
            }
        }
    }

    /// Recheck every topic's health; the changes to tell clients.
    pub fn check_health(&mut self, stale_after: Duration) -> Vec<HealthChange> {
        let mut v: Vec<HealthChange> = self
            .by_id
            .values_mut()
            .filter_map(|t| t.check_health(stale_after))
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The topic served under channel name `name` (names are unique: see
    /// the module doc).
    pub fn by_name(&self, name: &str) -> Option<&Topic> {
        self.by_id.values().find(|t| t.name() == name)
    }

    /// The channels, in id order.
    pub fn channels(&self) -> Vec<Channel> {
        let mut v: Vec<Channel> = self.by_id.values().map(|t| t.channel.clone()).collect();
        v.sort_by_key(|c| c.id);
        v
    }
}

/// The JSON buffer of one tick keeps at least this much capacity between
/// ticks (frames' entries: a 64th of it in count).
const KEEP_JSON_BYTES: usize = 256 * 1024;

/// A cleared buffer whose capacity is more than twice what it should keep
/// (twice the last tick's use, at least `keep`) shrinks to that: a burst's
/// memory goes back, while a steady load keeps its buffer and never
/// reallocates.
fn give_back<T>(v: &mut Vec<T>, used: usize, keep: usize) {
    let want = used.saturating_mul(2).max(keep);
    if v.capacity() > want.saturating_mul(2) {
        v.shrink_to(want);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16 MiB burst is given back after the next, small tick; a steady
    /// load near the peak keeps its buffer.
    #[test]
    fn a_bursts_buffer_is_given_back_and_a_steady_ones_kept() {
        let mut v: Vec<u8> = Vec::new();
        v.resize(16 << 20, 1);
        let used = v.len();
        v.clear();
        give_back(&mut v, used, KEEP_JSON_BYTES);
        assert!(v.capacity() >= 16 << 20, "kept right after the burst tick");
        v.resize(1000, 1);
        let used = v.len();
        v.clear();
        give_back(&mut v, used, KEEP_JSON_BYTES);
        assert!(
            v.capacity() <= 2 * KEEP_JSON_BYTES,
            "capacity {} after a 1000-byte tick",
            v.capacity()
        );
        assert!(v.capacity() >= KEEP_JSON_BYTES);
        // Steady 3 MiB ticks: the buffer stays, no reallocation.
        v.resize(3 << 20, 1);
        let cap = v.capacity();
        for _ in 0..3 {
            let used = v.len();
            v.clear();
            give_back(&mut v, used, KEEP_JSON_BYTES);
            assert_eq!(v.capacity(), cap);
            v.resize(3 << 20, 1);
        }
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human(Duration::from_millis(850)), "850 ms");
        assert_eq!(human(Duration::from_millis(3240)), "3.2 s");
        assert_eq!(human(Duration::from_secs(720)), "12 min");
        assert_eq!(human(Duration::from_secs(9000)), "2.5 h");
    }

    #[test]
    fn filters_names_and_rates() {
        let mut t = Topics::new(
            vec![Selector::Name("imu".into()), Selector::Key(5)],
            None,
            Some(50.0),
            vec![("imu".into(), 10.0), ("net".into(), 0.0)],
        );
        // "imu" resolves to shmid 42 (names::resolve, cached).
        t.names.insert("imu".into(), Some(42));
        t.names.insert("other".into(), None);
        assert!(t.wanted(1, 42, "imu"));
        assert!(
            !t.wanted(2, 43, "imu"),
            "another segment with the name is not it"
        );
        assert!(t.wanted(5, 7, "other"), "asked for by key");
        assert!(!t.wanted(6, 8, "other"));
        assert_eq!(t.display_name("imu", 1, 42), "imu");
        assert_eq!(t.display_name("imu", 0x7a00_0002, 43), "imu@0x7a000002");
        assert_eq!(t.display_name("other", 5, 7), "other@0x00000005");
        assert_eq!(t.interval_ns("imu"), Some(100_000_000));
        assert_eq!(t.interval_ns("thermal"), Some(20_000_000));
        // 0: no limit for that topic.
        assert_eq!(t.interval_ns("net"), None);
    }
}

//! One module per command.

pub mod doctor;
pub mod echo;
pub mod hz;
pub mod info;
pub mod list;
pub mod publish;
pub mod rm;
pub mod top;

use serde_json::{Value, json};
use shmbus_core::{PublisherStatus, Segment};

use crate::discover::Entry;
use crate::out::{key_hex, user, user_name};

/// What the tools show about one topic, read once from its header.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The segment's `/proc` entry.
    pub entry: Entry,
    /// Topic name.
    pub name: String,
    /// Name of the frame type in the schema.
    pub schema_name: String,
    /// Slots in the ring.
    pub slots: u32,
    /// The header's notify flag (publishes wake sleeping subscribers).
    pub notify: bool,
    /// Frame capacity in bytes.
    pub capacity: usize,
    /// Generation of the newest frame.
    pub generation: u64,
    /// Monotonic time of the newest publish, ns.
    pub last_mono_ns: u64,
    /// Pid in the header (the publisher that last opened the topic).
    pub header_pid: u32,
    /// Publisher lock state.
    pub publisher: PublisherStatus,
    /// The creator of the publisher lock at its key when another user
    /// than the segment's creator made it ([`lock_squatter`]).
    pub lock_squatter: Option<u32>,
}

impl Summary {
    /// Read the summary of an attached topic; `locks` is the semaphore
    /// table, read once for every topic of a listing
    /// ([`crate::discover::Locks`]).
    pub fn read(entry: &Entry, seg: &Segment, locks: &crate::discover::Locks) -> Summary {
        let h = seg.header();
        let schema_name = shmbus_core::schema::decode_schema(&seg.info().schema)
            .map(|t| short_type_name(&t))
            .unwrap_or_else(|_| "<undecodable>".into());
        Summary {
            entry: entry.clone(),
            name: seg.info().name.clone(),
            schema_name,
            slots: seg.info().geometry.slot_count,
            notify: seg.info().notify(),
            capacity: seg.info().geometry.frame_capacity,
            generation: seg.generation(),
            last_mono_ns: h.last_publish_mono_ns().load(),
            header_pid: h.publisher_pid().load(),
            publisher: publisher_of(entry, seg),
            lock_squatter: squatter_in(entry, locks),
        }
    }

    /// Age of the newest frame, ns (`None` before the first).
    pub fn age_ns(&self, now: u64) -> Option<u64> {
        (self.generation > 0).then(|| now.saturating_sub(self.last_mono_ns))
    }

    /// [`Self::age_ns`] as a `Duration`.
    pub fn age(&self, now: u64) -> Option<std::time::Duration> {
        self.age_ns(now).map(std::time::Duration::from_nanos)
    }
}

/// A type's name for tables: its own name, or for generic names such as
/// `[T; N]` the one-line rendering (`[u8; 256]`).
pub fn short_type_name(t: &postcard_schema::schema::owned::OwnedNamedType) -> String {
    let text = shmbus_codec::text::render(t);
    let generic = t.name.contains(['<', '[', '(']);
    if generic && !text.contains('\n') && text.len() <= 32 {
        return text;
    }
    t.name.clone()
}

/// The fix for a broken topic (a corrupt header, another layout) at
/// entry `e`. Core's text says to remove it and restart the publisher;
/// while that publisher still holds the lock, `shmbus rm` refuses the
/// topic without --force, so the publisher is stopped first.
pub fn broken_fix(e: &Entry) -> String {
    broken_live_publisher(e).unwrap_or_else(|| {
        format!(
            "`shmbus rm {}`, then start its publisher again",
            key_hex(e.key)
        )
    })
}

/// The order of the fix of a broken topic whose publisher still holds the
/// lock (see [`broken_fix`]); `None` when no publisher holds it.
pub fn broken_live_publisher(e: &Entry) -> Option<String> {
    match shmbus_core::lock::publisher_status(e.key) {
        PublisherStatus::Alive { pid } if !e.removed() => Some(format!(
            "its publisher, pid {pid}, still runs and holds the topic's lock: stop it first (`kill {pid}`; `shmbus rm` refuses a topic with a live publisher), then `shmbus rm {}`, then start the publisher again",
            key_hex(e.key)
        )),
        _ => None,
    }
}

/// The publisher lock state of an attached topic. A removed segment shows
/// key 0 (`IPC_PRIVATE`) in `/proc`: its lock is never looked up there
/// (`semget(0)` would create a new private set), and is `Unknown`.
pub fn publisher_of(entry: &Entry, seg: &Segment) -> PublisherStatus {
    if entry.removed() || entry.key == 0 {
        PublisherStatus::Unknown
    } else {
        seg.publisher_status()
    }
}

/// The creator uid of the publisher lock at the topic's key when another
/// user than the segment's creator made it: a squat (of the lock or of the
/// segment) that keeps the topic's publisher from starting, since a
/// publisher refuses a lock or segment it did not create. `None` for a
/// removed segment (key 0 has no lock) or a lock of the same creator.
pub fn lock_squatter(entry: &Entry) -> Option<u32> {
    squatter_in(entry, &crate::discover::Locks::read())
}

/// [`lock_squatter`] against a semaphore table read already: a listing
/// reads it once, not once per topic (1,000 topics took `list` 15 s, each
/// row parsing the whole table again).
fn squatter_in(entry: &Entry, locks: &crate::discover::Locks) -> Option<u32> {
    if entry.removed() || entry.key == 0 {
        return None;
    }
    let lock_cuid = locks.creator_at(entry.key)?;
    (lock_cuid != entry.cuid).then_some(lock_cuid)
}

/// The sentence and the fixes for a [`lock_squatter`] finding.
pub fn lock_squat_text(entry: &Entry, lock_uid: u32) -> (String, String) {
    let k = key_hex(entry.key);
    (
        format!(
            "the publisher lock at {k} was created by {}, the segment by {}: one of them is not the topic's, and its publisher cannot start (it refuses a lock or segment it did not create)",
            user(lock_uid),
            user(entry.cuid),
        ),
        format!(
            "find out which one is the topic's; as root, remove the lock with `ipcrm -S {k}` or the segment and lock with `shmbus rm --force {k}`"
        ),
    )
}

/// The publisher lock state as a short word and an optional pid. "not
/// running", as every other tool and the JSON say it: "stopped" read as a
/// SIGSTOP'd process (`ps` state T), which is the opposite case (alive,
/// holding its lock, not publishing).
pub fn publisher_text(p: &PublisherStatus) -> String {
    match p {
        PublisherStatus::Alive { pid } => format!("alive {pid}"),
        PublisherStatus::NotRunning => "not running".into(),
        PublisherStatus::NoLock => "none".into(),
        PublisherStatus::Unknown => "unknown".into(),
    }
}

/// [`publisher_text`] of a topic whose newest frame is `age_ns` old (None:
/// no frame yet). A topic without a lock gets the age: `no lock (newest
/// frame 3.0 ms ago)`. A lock removed under a publisher that still
/// publishes (`ipcrm -s`, systemd-logind's `RemoveIPC`) looks like no
/// publisher to one look; the age shows the frames still coming.
pub fn publisher_text_aged(p: &PublisherStatus, age_ns: Option<u64>) -> String {
    match p {
        PublisherStatus::NoLock => {
            shmbus_toolbox::liveness::no_lock_text(age_ns.map(std::time::Duration::from_nanos))
        }
        other => publisher_text(other),
    }
}

/// Why a live publisher whose newest frame is `age_ns` old (None: none
/// yet) sends nothing, when its process says so: suspended (`kill -STOP`,
/// a debugger) or blocked in the kernel
/// ([`shmbus_toolbox::process::held_up`]). Asked only after a second
/// without a frame: a sensor is in the kernel for a moment during every
/// read. `list` and `info` said "alive" for a SIGSTOPped publisher and
/// nothing more (`hz` and `top` said why).
pub fn held_up(p: &PublisherStatus, age_ns: Option<u64>) -> Option<String> {
    match p {
        PublisherStatus::Alive { pid } if age_ns.is_none_or(|a| a > 1_000_000_000) => {
            shmbus_toolbox::process::held_up(*pid)
        }
        _ => None,
    }
}

/// [`publisher_json`] of a topic whose newest frame is `age_ns` old: a
/// topic without a lock gets `newest_frame_age_ns` (null: no frame yet), a
/// live one `held_up` ([`held_up`]; null: nothing holds it up).
pub fn publisher_json_aged(p: &PublisherStatus, age_ns: Option<u64>) -> Value {
    let mut v = publisher_json(p);
    match p {
        PublisherStatus::NoLock => v["newest_frame_age_ns"] = json!(age_ns),
        PublisherStatus::Alive { .. } => v["held_up"] = json!(held_up(p, age_ns)),
        _ => {}
    }
    v
}

/// The publisher lock state as JSON fields.
pub fn publisher_json(p: &PublisherStatus) -> Value {
    match p {
        PublisherStatus::Alive { pid } => json!({"state": "alive", "pid": pid}),
        PublisherStatus::NotRunning => json!({"state": "not running"}),
        PublisherStatus::NoLock => json!({"state": "no lock"}),
        PublisherStatus::Unknown => json!({"state": "unknown"}),
    }
}

/// `0644`-style mode plus the owner's name.
pub fn mode_owner(e: &Entry) -> (String, String) {
    (format!("{:04o}", e.mode & 0o777), user_name(e.uid))
}

/// A key as JSON: both forms.
pub fn key_json(key: i32) -> Value {
    json!({"hex": key_hex(key), "dec": key})
}

/// Sleep until the next publish on `sub`'s topic, for at most `step`:
/// after a frame that could not be read, before reading again. A publish
/// wakes it at once (the wait registers as a waiter; a bare futex sleep on
/// `notify` is not woken by a publisher that wakes registered waiters
/// only). Whatever ends the wait, the caller's next read says what is
/// there.
pub fn sleep_until_publish(sub: &mut shmbus_sub::RawSubscriber, step: std::time::Duration) {
    let word = sub.segment().notify_word().load_acquire();
    let _ = sub.wait_until(step, |s| {
        Ok((s.segment().notify_word().load() != word).then_some(()))
    });
}

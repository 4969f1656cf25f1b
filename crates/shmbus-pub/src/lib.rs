//! # shmbus-pub: the publisher side of shmbus
//!
//! A [`Publisher<T>`] owns one topic: it creates the topic's System V
//! segment (or reopens the one it created before, if the layout, schema and
//! sizes match), locks it in RAM according to the topic's [`LockPolicy`],
//! and publishes values of `T` as postcard frames into a ring of slots, each
//! guarded by a seqlock. Readers never block the publisher.
//!
//! ```no_run
//! use serde::Serialize;
//! use shmbus_pub::{Publisher, Topic};
//!
//! #[derive(Serialize, serde::Deserialize, postcard::experimental::max_size::MaxSize, postcard_schema::Schema)]
//! struct Imu { t_us: u64, acc: [f32; 3] }
//!
//! let mut publisher = Publisher::<Imu>::open(&Topic::new("imu"))?;
//! let generation = publisher.publish(&Imu { t_us: 1, acc: [0.0, 0.0, 9.81] })?;
//! assert_eq!(generation, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## One publisher per topic
//! Opening takes the topic's publisher lock, a System V semaphore that the
//! kernel releases when the process dies, however it dies. A second
//! publisher gets [`OpenError::PublisherActive`] with the live one's pid;
//! a publisher of another topic whose key collides with a live topic's
//! gets [`OpenError::NameMismatch`] instead (give one of them another
//! key: stopping the live one would not help).
//!
//! ## `fork()`
//! A child of `fork()` gets a copy of the handle, not the topic: the topic
//! has one writer, the process that opened it. In the child,
//! [`Publisher::publish`] returns [`PublishError::ForkedChild`] naming the
//! opener (one load per publish tells), [`Publisher::remove`] returns
//! `EPERM` and removes nothing, and dropping the copy leaves the lock
//! held by the parent (the child's release would have freed the topic for
//! a second publisher while the parent published). A process that
//! daemonizes opens its topics after the fork.
//!
//! ## Crashes
//! A publisher killed in the middle of a publish leaves that slot's sequence
//! odd: readers never accept it, and report [`shmbus_core::ReadError::PublisherDied`]
//! if they insist on that slot. The next publisher to open the topic empties
//! such slots and carries on from the newest complete frame's generation.
//!
//! ## Foreign segments at the key
//! A publisher never adopts or writes to a segment it did not create as
//! this topic. Another user's segment is refused with
//! [`OpenError::NotOwner`]; one that is not a shmbus topic with
//! [`OpenError::NotShmbus`] or [`OpenError::Corrupt`], also when it is
//! smaller than the topic ([`OpenError::SizeMismatch`] is only said of a
//! half-created shmbus segment of another size, which `shmbus rm`
//! removes); another layout version with
//! [`OpenError::UnsupportedLayout`]; another topic, type or shape with
//! [`OpenError::NameMismatch`], [`OpenError::SchemaMismatch`] or
//! [`OpenError::GeometryMismatch`], whether the segment there is smaller
//! or larger than this topic needs (more slots, a wider type). Each refusal happens before the first
//! store. The one exception: a segment of exactly the right size, created by
//! the same user, whose magic is still zero, behind a publisher lock that
//! existed before this open, is a creation of this topic interrupted before
//! it finished (a killed creator leaves its lock), and is initialised
//! (`docs/LAYOUT.md`, section 6.2). Zeros at a key that had no lock are
//! another program's memory: [`OpenError::NotShmbus`], untouched.
//!
//! ## Cost
//! [`Publisher::publish`] encodes the value with postcard into the
//! publisher's own buffer (allocated once, at open), then copies it into the
//! slot a 32-bit word at a time under the slot's seqlock, so the slot is
//! mid-write only for the copy. It makes no allocation and no system call,
//! except `FUTEX_WAKE` when the topic has `notify` on (the default) **and**
//! a subscriber registered to sleep since two publishes ago
//! (`shmbus_core::waiter`); with nobody asleep, only a session's first two
//! publishes wake.
//!
//! Frames encoded elsewhere (a C struct's bytes, a bridge, a replay) go
//! through [`RawPublisher::publish_bytes`]. When every frame of a topic has
//! one length, known when the program is compiled,
//! [`RawPublisher::publish_array`] (`&[u8; N]`) publishes the same slot
//! without the variable-length copy: 99 instructions against 129 for a
//! 64-byte frame, about what the layout's own stores cost
//! (`docs/BENCHMARKS.md`, issue 14's tenth pass). Its readers take such
//! frames into an array with `RawSubscriber::latest_into`.
//!
//! ## Clocks
//! A frame carries two stamps: `CLOCK_MONOTONIC` (ages, staleness) and
//! `CLOCK_REALTIME` (recordings). [`Publisher::publish`] reads **one**
//! clock, `CLOCK_MONOTONIC` (a vDSO call on the board's kernel, about 37 µs
//! under full-system emulation); the wall-clock stamp is that reading plus
//! the offset between the two clocks, which the publisher reads again at
//! most once a second (a `CLOCK_REALTIME` read between two
//! `CLOCK_MONOTONIC` reads, up to three times if a preemption or a slow
//! clock widens the bracket; the error is at most half the tightest
//! bracket). So a step of the
//! wall clock (`date -s`, NTP's first sync) shows in the real stamps within
//! a second; slewing moves both clocks alike. [`Publisher::publish_at`]
//! takes the caller's stamps and reads no clock at all.
#![warn(missing_docs)]
// Not `eprintln!`: it panics when stderr cannot be written (`shmbus_toolbox::say!`).
#![warn(clippy::print_stderr)]

use core::marker::PhantomData;

use postcard::experimental::max_size::MaxSize;
use postcard_schema::Schema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shmbus_core::segment::WriteSegment;
use shmbus_core::sys;

pub use shmbus_core::segment::{LockOutcome, PublishError};
pub use shmbus_core::{Bytes, LockPolicy, OpenError, Topic};

/// The publisher of one topic, for frames of type `T`.
///
/// `T`'s postcard maximum size (`MaxSize`) is the topic's frame capacity;
/// its `postcard_schema::Schema` is stored in the segment so that tools and
/// subscribers can check and decode frames, with the capacities of its
/// `heapless` strings and vectors, which `T`'s `Deserialize` reveals
/// (`shmbus_core::schema::named_type_of`).
#[derive(Debug)]
pub struct Publisher<T> {
    raw: RawPublisher,
    /// The encoded frame, before its copy into the slot: frame capacity
    /// bytes, so a value that does not fit is an encode error.
    buf: Vec<u8>,
    _type: PhantomData<fn(&T)>,
}

impl<T: Serialize + DeserializeOwned + MaxSize + Schema> Publisher<T> {
    /// Create or reopen `topic` for frames of type `T`.
    ///
    /// Errors: [`OpenError::PublisherActive`] (another publisher is alive),
    /// [`OpenError::SchemaMismatch`] / [`OpenError::GeometryMismatch`] (the
    /// existing segment was made for another type, slot count or notify
    /// flag: remove it), [`OpenError::NameMismatch`] (another topic's name
    /// leads to the same key: give one of them another key),
    /// [`OpenError::NotOwner`] (someone else created a segment at the key),
    /// [`OpenError::LockDenied`] (lock policy "required"), the system limits
    /// ([`OpenError::TooLarge`], [`OpenError::SystemLimit`]) and
    /// [`OpenError::PermissionDenied`].
    pub fn open(topic: &Topic) -> Result<Self, OpenError> {
        let schema =
            shmbus_core::schema::schema_bytes::<T>().map_err(|e| OpenError::InvalidTopic {
                reason: format!("cannot encode the schema of the message type: {e}"),
            })?;
        let raw = RawPublisher::open(topic, &schema, T::POSTCARD_MAX_SIZE.max(1))?;
        let buf = vec![0; raw.seg.info().geometry.frame_capacity];
        Ok(Publisher {
            raw,
            buf,
            _type: PhantomData,
        })
    }

    /// Publish `value` now (one clock read, see the crate docs). Returns its
    /// generation (1 for the first frame ever published on the topic, then
    /// +1 per frame).
    #[inline]
    pub fn publish(&mut self, value: &T) -> Result<u64, PublishError> {
        let (mono_ns, real_ns) = self.raw.clock.now();
        self.publish_at(value, mono_ns, real_ns)
    }

    /// Publish `value` with explicit timestamps (`CLOCK_MONOTONIC` and
    /// `CLOCK_REALTIME`, ns), e.g. the time a sensor sample was taken. Reads
    /// no clock.
    ///
    /// If `value` does not encode (or its `Serialize` panics), nothing is
    /// written: the encoding happens before the slot's write begins. The
    /// bytes are postcard's, written by `shmbus_core::encode` (the same
    /// bytes as `postcard::to_slice`, with the element writes inlined).
    #[inline]
    pub fn publish_at(
        &mut self,
        value: &T,
        mono_ns: u64,
        real_ns: u64,
    ) -> Result<u64, PublishError> {
        let len = shmbus_core::encode::to_slice(value, &mut self.buf)
            .map_err(PublishError::Encode)?
            .len();
        self.raw
            .publish_bytes_at(&self.buf[..len], mono_ns, real_ns)
    }

    /// The untyped publisher underneath (key, shmid, lock outcome, remove).
    pub fn raw(&self) -> &RawPublisher {
        &self.raw
    }

    /// Remove the topic's segment and lock. Attached subscribers see the
    /// topic as removed; their mappings stay valid until they detach.
    pub fn remove(self) -> Result<(), sys::SysError> {
        self.raw.remove()
    }
}

/// A publisher of pre-encoded frames, for tools that know the schema only
/// as bytes (`shmbus pub`, replay). Same rules as [`Publisher`].
#[derive(Debug)]
pub struct RawPublisher {
    seg: WriteSegment,
    clock: Clock,
}

/// How often the offset from `CLOCK_MONOTONIC` to `CLOCK_REALTIME` is read
/// again (see the crate docs, "Clocks").
pub const WALL_CLOCK_REFRESH: core::time::Duration = core::time::Duration::from_secs(1);

/// Both stamps of a publish from one clock read: `CLOCK_MONOTONIC`, plus
/// the offset to `CLOCK_REALTIME` read again once a [`WALL_CLOCK_REFRESH`].
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// `CLOCK_REALTIME - CLOCK_MONOTONIC` (wrapping), ns.
    offset: u64,
    /// `CLOCK_MONOTONIC` time of the next offset read.
    refresh_at: u64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            offset: 0,
            refresh_at: 0,
        }
    }

    /// `(mono_ns, real_ns)` now.
    #[inline]
    fn now(&mut self) -> (u64, u64) {
        let mono = sys::monotonic_ns();
        if mono >= self.refresh_at {
            self.refresh(mono);
        }
        (mono, mono.wrapping_add(self.offset))
    }

    /// Read the offset again; `mono` is the reading that found it due.
    #[cold]
    #[inline(never)]
    fn refresh(&mut self, mono: u64) {
        self.offset = wall_offset(sys::monotonic_ns, sys::realtime_ns);
        self.refresh_at = mono.saturating_add(WALL_CLOCK_REFRESH.as_nanos() as u64);
    }
}

/// A pair of `CLOCK_MONOTONIC` reads around a `CLOCK_REALTIME` read this
/// close (ns) is taken at once; a wider one (the thread was preempted in
/// between, or the clock is slow to read, as under emulation) is tried
/// again, [`OFFSET_TRIES`] times in all.
const OFFSET_TIGHT_NS: u64 = 10_000;
/// How many bracketed reads [`wall_offset`] makes at most.
const OFFSET_TRIES: usize = 3;

/// `CLOCK_REALTIME - CLOCK_MONOTONIC` (wrapping), from `real()` read
/// between two `mono()` reads, against their midpoint: the error is at
/// most half the time between the two, and of up to [`OFFSET_TRIES`]
/// tries the tightest is kept. One realtime read after one monotonic read
/// took the whole of a preemption between them into the offset, and every
/// wall-clock stamp of the next second was that much late (milliseconds
/// on a loaded machine).
fn wall_offset(mut mono: impl FnMut() -> u64, mut real: impl FnMut() -> u64) -> u64 {
    let mut best: Option<(u64, u64)> = None; // (gap, offset)
    for _ in 0..OFFSET_TRIES {
        let m0 = mono();
        let r = real();
        let m1 = mono();
        let gap = m1.saturating_sub(m0);
        let mid = m0.wrapping_add(gap / 2);
        let offset = r.wrapping_sub(mid);
        if best.is_none_or(|(g, _)| gap < g) {
            best = Some((gap, offset));
        }
        if gap <= OFFSET_TIGHT_NS {
            break;
        }
    }
    best.map_or(0, |(_, offset)| offset)
}

impl RawPublisher {
    /// Create or reopen `topic` with these schema bytes (a postcard-encoded
    /// `OwnedNamedType`) and frame capacity.
    pub fn open(topic: &Topic, schema: &[u8], frame_capacity: usize) -> Result<Self, OpenError> {
        Ok(RawPublisher {
            seg: WriteSegment::open(topic, schema, frame_capacity)?,
            clock: Clock::new(),
        })
    }

    /// [`Self::open`] of a topic that exists: never creates its segment
    /// (`OpenError::NotFound` when none is at the key, e.g. it was
    /// removed). For writing to an existing topic without ever bringing a
    /// removed one back.
    pub fn open_existing(
        topic: &Topic,
        schema: &[u8],
        frame_capacity: usize,
    ) -> Result<Self, OpenError> {
        Ok(RawPublisher {
            seg: WriteSegment::open_existing(topic, schema, frame_capacity)?,
            clock: Clock::new(),
        })
    }

    /// Publish one encoded frame now (one clock read, see the crate docs).
    /// Returns its generation.
    #[inline]
    pub fn publish_bytes(&mut self, frame: &[u8]) -> Result<u64, PublishError> {
        let (mono_ns, real_ns) = self.clock.now();
        self.publish_bytes_at(frame, mono_ns, real_ns)
    }

    /// Publish one encoded frame with explicit timestamps. Reads no clock.
    #[inline]
    pub fn publish_bytes_at(
        &mut self,
        frame: &[u8],
        mono_ns: u64,
        real_ns: u64,
    ) -> Result<u64, PublishError> {
        // A frame that does not fit is refused before the slot's write
        // begins: it touches nothing.
        self.seg.publish_bytes(frame, mono_ns, real_ns)
    }

    /// Publish one encoded frame of a length fixed when the program is
    /// compiled (`[u8; N]`) now, with one clock read. The same frame as
    /// [`Self::publish_bytes`] of those bytes, at a lower cost: the copy
    /// into the slot is `N / 4` word stores with no loop and no length
    /// test (see `docs/BENCHMARKS.md`). For a sensor that sends records of
    /// one size, or a C struct's bytes.
    #[inline]
    pub fn publish_array<const N: usize>(&mut self, frame: &[u8; N]) -> Result<u64, PublishError> {
        let (mono_ns, real_ns) = self.clock.now();
        self.publish_array_at(frame, mono_ns, real_ns)
    }

    /// [`Self::publish_array`] with explicit timestamps. Reads no clock.
    #[inline]
    pub fn publish_array_at<const N: usize>(
        &mut self,
        frame: &[u8; N],
        mono_ns: u64,
        real_ns: u64,
    ) -> Result<u64, PublishError> {
        // Refused before the slot's write begins when N is over the
        // capacity: it touches nothing.
        self.seg.publish_array(frame, mono_ns, real_ns)
    }

    /// The System V key.
    pub fn key(&self) -> i32 {
        self.seg.key()
    }
    /// The shmid.
    pub fn shmid(&self) -> i32 {
        self.seg.shmid()
    }
    /// True if the topic's segment was removed (`shmbus rm --force`,
    /// `ipcrm`) under this publisher: its frames reach no new subscriber.
    /// One system call: a long-running publisher looks now and then (the
    /// sensors every 0.5 s), not at every publish.
    pub fn is_removed(&self) -> bool {
        self.seg.is_removed()
    }
    /// True if the topic's publisher lock was removed (`ipcrm -s`) under
    /// this publisher: a second publisher can then start on the topic, and
    /// readers see none. Reopen the topic to take a lock again (the sensors
    /// look every 0.5 s, with [`RawPublisher::is_removed`]).
    pub fn lock_removed(&self) -> bool {
        self.seg.lock_removed()
    }
    /// The topic name.
    pub fn name(&self) -> &str {
        &self.seg.info().name
    }
    /// The frame capacity in bytes.
    pub fn frame_capacity(&self) -> usize {
        self.seg.info().geometry.frame_capacity
    }
    /// The schema bytes stored in the segment.
    pub fn schema(&self) -> &[u8] {
        &self.seg.info().schema
    }
    /// What became of `SHM_LOCK` (locked, refused with the reason, or not
    /// requested).
    pub fn lock_outcome(&self) -> &LockOutcome {
        self.seg.lock_outcome()
    }
    /// True if this publisher created the segment, false if it reopened one.
    pub fn created(&self) -> bool {
        self.seg.created()
    }
    /// Slots a dead publisher left mid-write, emptied when this one opened.
    pub fn repaired_slots(&self) -> u32 {
        self.seg.repaired_slots()
    }
    /// The generation the next publish will get.
    pub fn next_generation(&self) -> u64 {
        self.seg.next_generation()
    }
    /// This session's waiter segment (its shmid), where subscribers
    /// register before they sleep; `None` if the topic has notify off, was
    /// created before waiter registration, or the segment could not be
    /// created ([`Self::waiter_error`]): then every publish wakes.
    pub fn waiter_shmid(&self) -> Option<i32> {
        self.seg.waiter_shmid()
    }
    /// How many times subscribers registered to sleep on this topic since
    /// this session opened (wrapping): a subscriber registers each time it
    /// blocks in a wait, after it attached and fixed where it reads from.
    /// Any process that may read the topic can write the word, so use it as
    /// a hint ("a subscriber is waiting"), never as a count to trust.
    /// `None` without a waiter segment ([`Self::waiter_shmid`]).
    pub fn sleep_registrations(&self) -> Option<u32> {
        self.seg.sleep_registrations()
    }
    /// Why this session has no waiter segment although the topic wants one
    /// (e.g. `kernel.shmmni` reached): every publish then calls
    /// `FUTEX_WAKE`, as before waiter registration.
    pub fn waiter_error(&self) -> Option<&sys::SysError> {
        self.seg.waiter_error()
    }
    /// How many `FUTEX_WAKE` calls this publisher has made: with nobody
    /// sleeping, only the first two publishes of a session.
    pub fn wakes(&self) -> u64 {
        self.seg.wakes()
    }
    /// Remove the topic's segment and lock.
    pub fn remove(self) -> Result<(), sys::SysError> {
        self.seg.remove()
    }

    /// Undo a run that failed: remove the topic if this publisher created
    /// it and published nothing on it (true then), else leave it (false).
    /// A tool that opens several topics before it publishes (replay, the
    /// bridge's inbound topics) calls this for each when it gives up, so a
    /// refused run leaves no empty topic and lock behind.
    pub fn remove_if_unused(self) -> Result<bool, sys::SysError> {
        if self.created() && self.next_generation() == 1 {
            self.remove().map(|()| true)
        } else {
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_clock_read_gives_a_wall_clock_stamp_near_clock_realtime() {
        let mut c = Clock::new();
        for _ in 0..3 {
            let before = sys::realtime_ns();
            let (mono, real) = c.now();
            let after = sys::realtime_ns();
            assert!(mono <= sys::monotonic_ns());
            // Within a second of the wall clock read around it: the offset
            // is exact up to one clock read and drifts only by slewing.
            let second = 1_000_000_000;
            assert!(
                real + second >= before && real <= after + second,
                "{before} <= {real} <= {after}"
            );
        }
        assert!(c.refresh_at > 0);
    }

    /// Clock reads from a script: each call returns the next value.
    fn script(v: &[u64]) -> impl FnMut() -> u64 + '_ {
        let mut it = v.iter();
        move || *it.next().expect("more clock reads than scripted")
    }

    /// A preemption between the reads does not go into the offset: the
    /// tightest bracket is kept, against its midpoint. The wall clock here
    /// is the monotonic one plus 1,000,000,000,000. Before, the offset was
    /// `real - mono` of one monotonic read and the realtime read after it:
    /// 5 ms too large after the first try's preemption.
    #[test]
    fn the_wall_clock_offset_leaves_out_a_preemption_between_the_reads() {
        let t = 1_000_000_000_000u64;
        // Try 1: preempted 5 ms after the first monotonic read. Try 2:
        // 60 us wide (emulation). Try 3: 40 us wide, the tightest.
        let mono = [1_000, 5_002_000, 5_003_000, 5_063_000, 5_064_000, 5_104_000];
        let real = [t + 5_001_000, t + 5_033_000, t + 5_084_000];
        let offset = wall_offset(script(&mono), script(&real));
        assert_eq!(offset, t, "the midpoint of the tightest bracket");
        // A tight first bracket ends it: one try, three reads.
        let mono = [2_000, 2_100];
        let real = [t + 2_060];
        let offset = wall_offset(script(&mono), script(&real));
        assert!(offset.abs_diff(t) <= 50, "{offset}");
        // Every try preempted: the least wrong one, never worse than half
        // its gap.
        let mono = [0, 9_000_000, 9_000_000, 12_000_000, 12_000_000, 20_000_000];
        let real = [t + 1_000_000, t + 11_000_000, t + 13_000_000];
        let offset = wall_offset(script(&mono), script(&real));
        assert!(offset.abs_diff(t) <= 1_500_000, "{offset}");
    }
}

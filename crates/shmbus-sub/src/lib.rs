//! # shmbus-sub: the subscriber side of shmbus
//!
//! A [`Subscriber<T>`] attaches a topic's segment read-only (`SHM_RDONLY`:
//! the kernel faults any store), checks that it holds frames of type `T`
//! (schema fingerprint), and reads frames straight out of the shared slot:
//! the frame's words are copied with relaxed atomic loads into the
//! subscriber's own buffer (one word at a time, no system call), the copy is
//! accepted only if the slot's sequence word did not change (seqlock), and
//! only then decoded (postcard's wire format, by `shmbus_core::decode`: the
//! same answers as `postcard::from_bytes`, in fewer instructions). The
//! seqlock window holds nothing but the copy; a torn read is never decoded.
//!
//! ```no_run
//! use serde::Deserialize;
//! use shmbus_sub::{Next, ReadError, Subscriber, Topic, WaitError};
//! use std::time::Duration;
//!
//! #[derive(Deserialize, postcard_schema::Schema, Debug)]
//! struct Imu { t_us: u64, acc: [f32; 3] }
//!
//! let mut sub = Subscriber::<Imu>::wait_for_topic(&Topic::new("imu"), Duration::from_secs(5))?;
//! if let Some(s) = sub.latest()? {
//!     println!("newest: {:?}, {:?} old", s.value, s.age());
//! }
//! loop {
//!     match sub.wait_next(Duration::from_secs(1)) {
//!         Ok(Next::Frame(s)) => println!("#{} {:?}", s.generation, s.value),
//!         Ok(Next::Missed(n)) => eprintln!("fell behind: missed {n} frames"),
//!         // A second without a frame: keep waiting.
//!         Ok(Next::Empty) | Err(WaitError::Timeout) => {}
//!         // Its publisher stopped; its frames stay: wait up to a minute
//!         // for it to start again (an error, Timeout too, ends the loop).
//!         Err(e @ WaitError::PublisherGone) => {
//!             eprintln!("{e}");
//!             sub.wait_for_publisher(Duration::from_secs(60))?;
//!         }
//!         // Only that frame is lost: the next wait reads the one after.
//!         Err(WaitError::Read(e @ ReadError::Undecodable { .. })) => eprintln!("{e}"),
//!         // Removed, or a read that failed: say why and stop.
//!         Err(e) => { eprintln!("{e}"); break; }
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A loop that ends at its first error ends at the first second without
//! a frame ([`WaitError::Timeout`]) and when the publisher restarts
//! ([`WaitError::PublisherGone`]): both leave the handle usable.
//!
//! ## Latest value or every frame
//! [`Subscriber::latest`] returns the newest complete frame: what a control
//! loop wants. It never goes back in time: each call returns the frame it
//! returned before or a newer one. [`Subscriber::next`] returns frames in publish order from a
//! cursor; a reader that falls more than one ring (the topic's slot count)
//! behind gets [`Next::Missed`] with the exact number of frames it lost, and
//! its cursor jumps to the oldest frame still in the ring. Frames delivered
//! plus frames reported missed always add up to frames published.
//!
//! ## Polling
//! [`Subscriber::has_new`] is one relaxed atomic load when nothing is new:
//! the generation word of the slot the next frame goes to
//! (`docs/LAYOUT.md` §7.2). A poll that finds nothing costs no system call,
//! and it watches the cache line the next frame arrives in, so a handoff
//! moves no header line.
//!
//! ## Byte arrays
//! serde decodes a `[u8; N]` one byte at a time (its visitor asks for N
//! separate elements). A field declared as [`Bytes<N>`](Bytes) instead is
//! the same N bytes on the wire, with the same schema, and is decoded in
//! one copy: a frame of two `[u8; 32]` decodes in 50 ns on x86_64, as two
//! `Bytes<32>` in 8 (`docs/BENCHMARKS.md`). Changing a field from
//! `[u8; N]` to `Bytes<N>` leaves the topic's schema fingerprint and frames
//! as they were: programs built before and after the change read each
//! other's topics.
//!
//! ## Blocking
//! [`Subscriber::wait_next`] and [`Subscriber::wait_latest`] sleep in the
//! kernel on a futex on the `notify` word (when the topic has `notify` on;
//! otherwise they sleep in short steps) until a frame is published, the
//! timeout passes, or the topic turns out to be dead: every 80 to 100 ms of
//! sleep they check whether the publisher is alive ([`WaitError::PublisherGone`])
//! and whether the segment was removed ([`WaitError::Removed`]). Signals
//! (EINTR) and spurious wake-ups neither end a wait early nor extend it: the
//! remaining time is recomputed from `CLOCK_MONOTONIC` on every return, and
//! a frame published between the check and the sleep changes the futex word,
//! so the sleep returns at once (no lost wake-up). The segment layout and
//! protocols are specified in `docs/LAYOUT.md`.
//!
//! After [`WaitError::PublisherGone`] the handle stays usable: a restarted
//! publisher reopens the same segment. [`Subscriber::wait_for_publisher`]
//! sleeps until a publisher holds the topic's lock again, or frames come
//! without one (a lock removed under a live publisher), then the reads go
//! on. It is the loop `shmbus echo`, `hz`, the bridge and the examples use.
//!
//! ## Lag
//! [`Sample::age`] is how long ago a frame was published (its lag when you
//! process it); `raw().generation() - sample.generation` is how many newer
//! frames were published meanwhile. An in-order reader that lets this reach
//! the slot count loses frames ([`Next::Missed`]).
//!
//! ## Staleness and liveness
//! [`Subscriber::age`] is the time since the newest publish on
//! `CLOCK_MONOTONIC` (immune to wall-clock jumps). [`Subscriber::publisher`]
//! reads the publisher lock, which the kernel releases when the publisher
//! dies. A dead publisher's last frames stay readable.
//!
//! ## A frame that does not decode
//! A complete frame that does not decode as `T` (a typeless tool published
//! a string over its capacity, say) is [`ReadError::Undecodable`] with its
//! generation. Only that frame is lost: the in-order cursor has moved past
//! it and [`Subscriber::latest`] counts it as returned, so the next call
//! reads on. `wait_next` returns it as `WaitError::Read(ReadError::Undecodable)`;
//! call it again for the frame after. `crates/shmbus-examples`'
//! `imu-subscriber` shows the loop.
//!
//! ## Impossible generations
//! A generation above [`shmbus_core::segment::MAX_SANE_GENERATION`] (2^62)
//! is garbage: attach refuses such a header ([`OpenError::Corrupt`]), and
//! a header or slot that turns impossible later makes each read
//! [`ReadError::Corrupt`] without moving the cursor, never a stream of
//! "missed" frames.
//!
//! ## Liveness that cannot be read
//! If the publisher lock at the key cannot be read
//! ([`PublisherStatus::Unknown`]: another user's mode 0600 semaphore), no
//! publisher can be running (a publisher never takes a lock it did not
//! create), so blocking waits end with [`WaitError::LockUnreadable`], which
//! names the semaphore's creator. If it is the topic's own lock (its
//! creator created the segment) and only this process may no longer read
//! it, because the topic's mode or group changed since it attached, waits
//! end with [`WaitError::AccessLost`] instead. A subscriber whose topic names its
//! publisher's uid refuses such a topic at attach with
//! [`OpenError::NotOwner`].
//!
//! ## A publisher that dies mid-write
//! The slot it was writing stays odd: no reader accepts it. Reads of that
//! one slot fail with [`ReadError::PublisherDied`] (never a hang) until a
//! new publisher repairs it; all other frames remain readable.
#![warn(missing_docs)]
// Not `eprintln!`: it panics when stderr cannot be written (`shmbus_toolbox::say!`).
#![warn(clippy::print_stderr)]

use core::marker::PhantomData;
use core::time::Duration;

use postcard_schema::Schema;
use serde::de::DeserializeOwned;
use shmbus_core::codec::{load_array, load_bytes};
use shmbus_core::layout::{HeaderInfo, copy_from_words};
use shmbus_core::segment::{DEFAULT_STUCK_AFTER, MAX_SANE_GENERATION};
use shmbus_core::seqlock::{Peek, is_older};
use shmbus_core::sys::{self, FutexWait};
use shmbus_core::waiter::WaiterWord;

pub use shmbus_core::waiter::WaiterError;
pub use shmbus_core::{
    Bytes, OpenError, PublisherStatus, ReadError, ReadWords, Segment, SlotMeta, Topic, WaitError,
};

/// How often a blocked wait checks that the publisher is alive and the
/// segment not removed: the longest one sleep lasts.
pub const LIVENESS_INTERVAL: Duration = Duration::from_millis(100);

/// The longest sleep after a lost wake-up was detected (see
/// [`RawSubscriber::lost_wakeups`]), for [`SUSPECT_FOR`].
pub const SUSPECT_SLICE: Duration = Duration::from_millis(2);

/// How long a subscriber keeps its sleeps short after it detected a lost
/// wake-up.
pub const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// How a wait sleeps until the next frame.
enum Sleep {
    /// On the futex. `ticket`: the ticket taken in the waiter segment
    /// (`None`: the publisher wakes on every publish).
    Futex { ticket: Option<u32> },
    /// In short steps: the topic registers waiters but this subscriber
    /// cannot (see [`RawSubscriber::waiter_error`]), so no wake-up is due.
    Poll,
}

/// A frame and when it was published.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<T> {
    /// The decoded value.
    pub value: T,
    /// Its generation (publish counter, from 1).
    pub generation: u64,
    /// `CLOCK_MONOTONIC` at publish, ns.
    pub mono_ns: u64,
    /// `CLOCK_REALTIME` at publish, ns since the epoch.
    pub real_ns: u64,
}

impl<T> Sample<T> {
    /// Time since this frame was published (monotonic clock).
    pub fn age(&self) -> Duration {
        Duration::from_nanos(sys::monotonic_ns().saturating_sub(self.mono_ns))
    }
}

/// The result of an in-order read.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum Next<T> {
    /// The next frame in publish order.
    Frame(Sample<T>),
    /// The reader fell behind the ring: this many frames were overwritten
    /// before it read them. The cursor now points at the oldest frame still
    /// available; call again to read it.
    Missed(u64),
    /// Nothing new (only from the non-blocking [`Subscriber::next`]).
    Empty,
}

/// A frame an in-order reader moved past because its slot was left
/// mid-write ([`RawSubscriber::skip_lost`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostFrame {
    /// The lost frame's generation.
    pub generation: u64,
    /// Why it is lost, for a message: "its publisher died in the middle of
    /// a publish over it", or stopped there (with its pid).
    pub why: String,
}

/// An untyped subscriber: frames as bytes plus the schema that describes
/// them. Used by tools; applications use [`Subscriber`].
///
/// Frames of any length come into a `Vec` ([`Self::latest_bytes`],
/// [`Self::next_bytes`]). A reader whose frames all have one size, known
/// when the program is compiled (a C struct, the frames of
/// `RawPublisher::publish_array`), reads them into an array instead
/// ([`Self::latest_into`], [`Self::next_into`]): no heap buffer, and a copy
/// with no length to loop over (`docs/BENCHMARKS.md`, issue 14's
/// thirteenth pass).
#[derive(Debug)]
pub struct RawSubscriber {
    seg: Segment,
    next: u64,
    /// Generation of the newest frame returned so far (by any read).
    newest: u64,
    /// `newest as u32`: compared with the `notify` word by `has_new`.
    seen: u32,
    /// `newest + 1`, and `seg.peek_index(newest + 1)`: what `has_new`
    /// looks for, and where.
    want: u64,
    peek_idx: usize,
    stuck_after: Duration,
    last_liveness_check: u64,
    /// The header's generation at the last liveness check (at the attach
    /// before the first): a topic without a lock whose generation moved
    /// since is still being published.
    generation_at_check: u64,
    /// The waiter segment this subscriber registers in (attached at its
    /// first sleep, again when a new publisher session names another).
    waiter: Option<WaiterWord>,
    /// The `waiter_ref` that could not be attached, and why.
    waiter_failed: Option<(u32, WaiterError)>,
    lost_wakeups: u64,
    /// Until this `CLOCK_MONOTONIC` time, sleeps last at most
    /// [`SUSPECT_SLICE`].
    suspect_until: u64,
    /// What this subscriber's earlier sleeps say about wake-ups.
    misses: MissRecord,
}

impl RawSubscriber {
    /// Attach `topic` read-only.
    pub fn attach(topic: &Topic) -> Result<Self, OpenError> {
        Ok(Self::from_segment(Segment::attach(topic)?))
    }

    /// Attach `topic`, waiting up to `timeout` for a publisher to create it
    /// (polling, 5 ms growing to 100 ms). Returns the last error (e.g.
    /// [`OpenError::NotFound`]) on timeout; errors other than "not there
    /// yet" return at once.
    ///
    /// Where [`Self::next_with`] starts:
    /// - the topic was there at the first look: after its newest frame, as
    ///   [`Self::attach`] (only frames published from now on);
    /// - the topic **appeared while this call waited**: at its oldest frame
    ///   still in the ring. Every frame of such a topic came after the
    ///   caller started waiting; its publisher may have published several
    ///   before the next poll found it, and starting "from now" would lose
    ///   them without a [`RawNext::Missed`]. Frames a publisher overwrote
    ///   before the attach (a lap of its ring within one poll) are not
    ///   counted: the subscriber never had a cursor before them.
    pub fn wait_for_topic(topic: &Topic, timeout: Duration) -> Result<Self, OpenError> {
        // `None`: a timeout past what an `Instant` can hold (`Duration::MAX`
        // panicked here): wait for as long as it takes.
        let deadline = std::time::Instant::now().checked_add(timeout);
        let mut step = Duration::from_millis(5);
        let mut waited = false;
        loop {
            match Self::attach(topic) {
                Ok(mut s) => {
                    if waited {
                        s.seek_oldest();
                    }
                    return Ok(s);
                }
                Err(e @ (OpenError::NotFound { .. } | OpenError::NotReady { .. })) => {
                    let now = std::time::Instant::now();
                    let left = deadline.map_or(step, |d| d.saturating_duration_since(now));
                    if left.is_zero() {
                        return Err(e);
                    }
                    waited = true;
                    std::thread::sleep(step.min(left));
                    step = (step * 2).min(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Wrap an attached segment. The in-order cursor starts after the newest
    /// frame (only frames published from now on); see [`Self::seek_oldest`].
    pub fn from_segment(mut seg: Segment) -> Self {
        let g = seg.generation();
        let want = g.saturating_add(1);
        let peek_idx = seg.peek_index(want);
        seg.set_poll_index(peek_idx);
        RawSubscriber {
            seg,
            next: g.saturating_add(1),
            newest: g,
            seen: g as u32,
            want,
            peek_idx,
            stuck_after: DEFAULT_STUCK_AFTER,
            last_liveness_check: 0,
            generation_at_check: g,
            waiter: None,
            waiter_failed: None,
            lost_wakeups: 0,
            suspect_until: 0,
            misses: MissRecord::default(),
        }
    }

    /// The segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The validated header (name, schema, sizes).
    pub fn info(&self) -> &HeaderInfo {
        self.seg.info()
    }

    /// How long a read retries a slot that stays mid-write while the
    /// publisher is alive before reporting [`ReadError::WriterStuck`].
    pub fn set_stuck_after(&mut self, d: Duration) {
        self.stuck_after = d;
    }

    /// Move the in-order cursor to the oldest frame still in the ring.
    pub fn seek_oldest(&mut self) {
        let g = self.seg.generation().min(MAX_SANE_GENERATION);
        let n = u64::from(self.seg.info().geometry.slot_count);
        self.next = g.saturating_sub(n - 1).max(1);
    }

    /// Move the in-order cursor to the first frame after generation `g`
    /// that is still in the ring: the oldest frame if `g` was overwritten,
    /// past the newest if `g` is the newest or newer (a generation seen
    /// earlier, e.g. when a recording started).
    pub fn seek_after(&mut self, g: u64) {
        self.seek_oldest();
        let past_newest = self.seg.generation().min(MAX_SANE_GENERATION) + 1;
        self.next = self.next.max(g.saturating_add(1)).min(past_newest);
    }

    /// Move the in-order cursor past the newest frame.
    pub fn seek_latest(&mut self) {
        self.next = self.seg.generation().min(MAX_SANE_GENERATION) + 1;
    }

    /// Count the frame at the in-order cursor as missed and move past it;
    /// returns its generation. For a frame whose slot a dead publisher left
    /// mid-write: reads of it fail with [`ReadError::PublisherDied`] and
    /// leave the cursor there until a new publisher repairs the slot, but
    /// the frame is lost either way (`docs/LAYOUT.md`, section 5).
    pub fn skip(&mut self) -> u64 {
        let c = self.next;
        self.next = c.saturating_add(1);
        c
    }

    /// After an in-order read failed with `e`: if the slot at the cursor
    /// was left mid-write ([`ReadError::PublisherDied`], or
    /// [`ReadError::WriterStuck`]: a publisher stopped while it overwrote
    /// that frame with one a lap newer), that frame is lost whatever the
    /// publisher does next and the frames after it are whole: move past it
    /// ([`RawSubscriber::skip`]) and say which frame and why. `None` (the
    /// cursor unmoved) for any other error. The C library, Python and
    /// `shmbus record` read on this way and word it alike.
    pub fn skip_lost(&mut self, e: &ReadError) -> Option<LostFrame> {
        let why = match e {
            ReadError::PublisherDied => {
                "its publisher died in the middle of a publish over it".to_string()
            }
            ReadError::WriterStuck { pid, waited } => format!(
                "its publisher (pid {pid}) has been stopped in the middle of a publish over it for {waited:?} (stopped or starved: `ps -o stat {pid}`)"
            ),
            _ => return None,
        };
        Some(LostFrame {
            generation: self.skip(),
            why,
        })
    }

    /// The generation the next in-order read expects.
    pub fn cursor(&self) -> u64 {
        self.next
    }

    /// True if a frame newer than the newest one this subscriber returned
    /// has been published. No system call; when nothing is new, one atomic
    /// load.
    ///
    /// It looks first at the slot the next frame goes to
    /// ([`Segment::peek`]): still an older frame there means nothing new;
    /// the next frame complete there means something new. The header is
    /// not read in either case, so on a handoff its cache line stays with
    /// the publisher (`docs/LAYOUT.md`, section 7.2). Only when the slot
    /// cannot tell (mid-write, or this subscriber fell a lap behind) does
    /// it compare the header's `notify` word, wrap-safely: a read can return
    /// a frame whose slot is complete before the publisher's `notify` store
    /// for it lands, so `notify` may trail the newest frame returned by one
    /// or more; that is "nothing new", not "something new".
    ///
    /// A `true` means the next [`Self::latest_with`] returns a newer frame
    /// (unless the topic was removed or damaged meanwhile).
    #[inline(always)]
    pub fn has_new(&self) -> bool {
        // The poll loop's whole cost when nothing is new, inlined: the
        // segment keeps the word `peek_idx` names marked
        // (`Segment::set_poll_index`), so this is two loads, the mark and
        // the word, and no bounds check. The rest (something new, or the
        // slot cannot tell) out of line, given the word already loaded.
        let lo = self.seg.poll_lo();
        if is_older(lo, self.want) {
            false
        } else {
            self.has_new_slow(lo)
        }
    }

    #[cold]
    #[inline(never)]
    fn has_new_slow(&self, lo: u32) -> bool {
        match self.seg.peek_rest_at(self.peek_idx, lo, self.want) {
            Peek::Older => false,
            Peek::Complete => true,
            Peek::Unsure => {
                // Acquire (load and fence) pairs with the publisher's
                // Release store of `notify`.
                let n = self.seg.notify_word().load_acquire();
                (n.wrapping_sub(self.seen) as i32) > 0
            }
        }
    }

    /// Record that a frame of generation `g` was returned.
    #[inline]
    fn mark_returned(&mut self, g: u64) {
        if g > self.newest {
            // The frame after the newest (every in-order read that keeps
            // up): the next slot's index follows from this one's.
            self.peek_idx = if g == self.want {
                self.seg.next_peek_index(self.peek_idx)
            } else {
                self.seg.peek_index(g.saturating_add(1))
            };
            self.seg.set_poll_index(self.peek_idx);
            self.newest = g;
            self.seen = g as u32;
            self.want = g.saturating_add(1);
            debug_assert_eq!(self.peek_idx, self.seg.peek_index(self.want));
        }
    }

    /// Generation of the newest complete frame (0: none yet).
    pub fn generation(&self) -> u64 {
        self.seg.generation()
    }

    /// Time since the newest publish, on the monotonic clock; `None` before
    /// the first frame.
    pub fn age(&self) -> Option<Duration> {
        if self.seg.generation() == 0 {
            return None;
        }
        let t = self.seg.header().last_publish_mono_ns().load();
        Some(Duration::from_nanos(sys::monotonic_ns().saturating_sub(t)))
    }

    /// Whether the publisher is alive (two system calls).
    pub fn publisher(&self) -> PublisherStatus {
        self.seg.publisher_status()
    }

    /// True if the segment was removed since attach (one system call).
    pub fn is_removed(&self) -> bool {
        self.seg.is_removed()
    }

    /// How many of this subscriber's sleeps on a topic that registers
    /// waiters ended at their time slice although a frame had been
    /// published meanwhile, and its wake-up was lost: the waiter word had
    /// been rewound behind this sleep's ticket, or the frame's time was at
    /// least 10 ms before the slice ended and so was the previous such
    /// frame's, with no wake-up between the two. A frame published as the
    /// slice ended may have its wake-up still on its way, and a frame's
    /// time may be its caller's (`publish_at`), as old as it likes: one
    /// such frame is not counted. Honest publishers
    /// and subscribers never cause one (`docs/LAYOUT.md` section 7.4); a
    /// process that may read the topic can, by writing the waiter word
    /// (`SECURITY.md`). After each, sleeps last at most [`SUSPECT_SLICE`]
    /// for [`SUSPECT_FOR`].
    pub fn lost_wakeups(&self) -> u64 {
        self.lost_wakeups
    }

    /// The waiter segment this subscriber registers in before it sleeps
    /// (its shmid), once a wait has attached it.
    pub fn waiter_shmid(&self) -> Option<i32> {
        self.waiter.as_ref().map(WaiterWord::shmid)
    }

    /// Why this subscriber cannot register in the publisher's waiter
    /// segment, if it tried and failed: its waits then sleep in steps of at
    /// most 10 ms instead of waiting for a wake-up. A segment that is gone
    /// ([`WaiterError::is_gone`]) is not such a failure: its session is
    /// over, and the next one wakes every sleeper.
    pub fn waiter_error(&self) -> Option<&WaiterError> {
        self.waiter_failed
            .as_ref()
            .map(|(_, e)| e)
            .filter(|e| !e.is_gone())
    }

    /// Before a futex sleep: register in the current publisher session's
    /// waiter segment, attaching it if the header names a new one. Called
    /// after the Acquire load of `notify` whose value the sleep waits on
    /// (the order `docs/LAYOUT.md` section 7.4 requires).
    fn prepare_sleep(&mut self) -> Sleep {
        if !self.seg.info().waiters() {
            return Sleep::Futex { ticket: None };
        }
        let r = self.seg.header().waiter_ref().load();
        if r == 0 {
            // This publisher session has no waiter segment: it wakes on
            // every publish.
            self.waiter = None;
            return Sleep::Futex { ticket: None };
        }
        if let Some(w) = &self.waiter {
            if w.reference() == r {
                return Sleep::Futex {
                    ticket: Some(w.register()),
                };
            }
        }
        if let Some((f, e)) = &self.waiter_failed {
            if *f == r {
                return Self::sleep_without(e);
            }
        }
        match WaiterWord::attach(r, &self.seg) {
            Ok(w) => {
                let ticket = w.register();
                self.waiter = Some(w);
                self.waiter_failed = None;
                Sleep::Futex {
                    ticket: Some(ticket),
                }
            }
            Err(e) => {
                let sleep = Self::sleep_without(&e);
                self.waiter = None;
                self.waiter_failed = Some((r, e));
                sleep
            }
        }
    }

    /// How to sleep when the waiter segment could not be attached. Gone:
    /// the session that named it is over (a publisher that exited, with or
    /// without its lock), and the next publish is a new session's, whose
    /// first two publishes wake every sleeper on `notify`, registered or
    /// not (`WakeHistory::new`), and which names its own waiter segment (or
    /// none) before its first publish: sleep on the futex, unregistered.
    /// Polling every 10 ms there cost a hundred wake-ups and four hundred
    /// system calls a second for as long as a topic stayed stopped.
    /// Otherwise its session may publish without waking this subscriber:
    /// short steps.
    fn sleep_without(e: &WaiterError) -> Sleep {
        if e.is_gone() {
            Sleep::Futex { ticket: None }
        } else {
            Sleep::Poll
        }
    }

    /// Read the newest frame with `f` (given the metadata and the frame's
    /// words). `None` before the first publish.
    ///
    /// Successive calls never go back in time: the generation returned is
    /// at least the newest one this subscriber returned before (the same
    /// frame again if nothing newer was published). Without this rule a
    /// read could return frame `g` from its complete slot and the next read,
    /// seeing the header's generation still at `g - 1` (the publisher stores
    /// it just after completing the slot), return the older frame.
    ///
    /// A header or slot generation above
    /// [`shmbus_core::segment::MAX_SANE_GENERATION`] is
    /// [`ReadError::Corrupt`] (a garbage or planted segment).
    pub fn latest_with<R>(
        &mut self,
        mut f: impl FnMut(&SlotMeta, ReadWords<'_>) -> R,
    ) -> Result<Option<(SlotMeta, R)>, ReadError> {
        // Slot-first, as `has_new`, when the frame after the newest returned
        // is complete in its slot: one seqlock attempt on that slot, then
        // one load of the slot after it; still an older frame there means
        // nothing newer was complete, so this frame is the newest. The
        // header is not read (on a handoff its line stays with the
        // publisher). Any other outcome, and "nothing new", take the header
        // path.
        //
        // Each word is looked at once: the slot's low generation word as a
        // filter (older: skip the attempt), then the seqlock read, which
        // itself accepts only a complete frame `want`, then the next slot's
        // low generation word, found from this slot's index by an add.
        let want = self.want;
        let idx = self.peek_idx;
        // The word at `idx`, through the poll word `has_new` loads (kept
        // on `idx` by `mark_returned`): no second bounds check.
        let older = is_older(self.seg.poll_lo(), want);
        if !older {
            if let Some((meta, Some(v))) = self
                .seg
                .try_read_slot_at(idx, |m, w| (m.generation == want).then(|| f(m, w)))
            {
                let next = self.seg.next_peek_index(idx);
                if self.seg.is_older_at(next, want.saturating_add(1)) {
                    self.mark_returned(want);
                    return Ok(Some((meta, v)));
                }
            }
        }
        let h = self.seg.checked_generation()?;
        if h <= self.newest && !older {
            // The header says nothing new, but the next frame's slot did not
            // look older: the publisher is between completing that slot and
            // storing the header's generation (or this read is a lap behind
            // and saw the header late). `has_new` may have answered from
            // that slot, so read it: a frame there is newer. Retried while
            // mid-write; this state lasts a few stores. An error here (a
            // publisher that died in those stores) falls back to the header.
            if let Ok((meta, Some(v))) = self.seg.read_slot(want, self.stuck_after, |m, w| {
                (m.generation >= want).then(|| f(m, w))
            }) {
                self.mark_returned(meta.generation);
                return Ok(Some((meta, v)));
            }
        }
        let g = h.max(self.newest);
        if g == 0 {
            return Ok(None);
        }
        let (meta, v) = self.seg.read_slot(g, self.stuck_after, |m, w| {
            (m.generation >= g).then(|| f(m, w))
        })?;
        match v {
            Some(v) => {
                self.mark_returned(meta.generation);
                Ok(Some((meta, v)))
            }
            // The newest frame was destroyed by a publisher that died while
            // overwriting it (a one-slot ring).
            None => Ok(None),
        }
    }

    /// Read the next frame in publish order with `f`.
    ///
    /// A header or slot generation above
    /// [`shmbus_core::segment::MAX_SANE_GENERATION`] is
    /// [`ReadError::Corrupt`] and leaves the cursor where it was.
    pub fn next_with<R>(
        &mut self,
        mut f: impl FnMut(&SlotMeta, ReadWords<'_>) -> R,
    ) -> Result<RawNext<R>, ReadError> {
        let want = self.next;
        // The common case first: the cursor's slot already holds the frame
        // it wants, complete. No header read (one acquire less, and on a
        // handoff no wait for the header's cache line); a frame found this
        // way may be ahead of the header's generation by one, as in
        // `latest_with`.
        if let Some((meta, Some(v))) = self
            .seg
            .try_read_slot(want, |m, w| (m.generation == want).then(|| f(m, w)))
        {
            self.next = want.saturating_add(1);
            self.mark_returned(want);
            return Ok(RawNext::Frame(meta, v));
        }
        let g = self.seg.checked_generation()?;
        if g < want {
            return Ok(RawNext::Empty);
        }
        let n = u64::from(self.seg.info().geometry.slot_count);
        if g - want >= n {
            let oldest = g - n + 1;
            self.next = oldest;
            return Ok(RawNext::Missed(oldest - want));
        }
        let (meta, v) = self.seg.read_slot(want, self.stuck_after, |m, w| {
            (m.generation == want).then(|| f(m, w))
        })?;
        match v {
            Some(v) => {
                self.next = want.saturating_add(1);
                self.mark_returned(want);
                Ok(RawNext::Frame(meta, v))
            }
            None if meta.generation > want => {
                // A publisher completes a slot just before it stores the
                // header's generation: a slot may be one ahead, never more.
                let now = self.seg.checked_generation()?;
                if meta.generation > now.saturating_add(1) {
                    return Err(ReadError::Corrupt {
                        generation: meta.generation,
                        what: "slot generation is ahead of the header's",
                    });
                }
                // Overwritten while we looked: the ring moved on by at least
                // one lap; the oldest frame still there is x - n + 1.
                // Saturating: a hostile segment can hold any generation.
                let oldest = meta
                    .generation
                    .saturating_sub(n - 1)
                    .max(want.saturating_add(1));
                self.next = oldest;
                Ok(RawNext::Missed(oldest - want))
            }
            None => {
                // Emptied: a publisher died writing over it (repaired), or
                // an encode failed. That frame is gone.
                self.next = want.saturating_add(1);
                Ok(RawNext::Missed(1))
            }
        }
    }

    /// The newest frame's bytes into `out`.
    pub fn latest_bytes(&mut self, out: &mut Vec<u8>) -> Result<Option<SlotMeta>, ReadError> {
        match self.latest_with(|m, w| fill(w, m.len as usize, out))? {
            Some((m, Ok(()))) => Ok(Some(m)),
            Some((m, Err(size))) => Err(ReadError::BufferMemory {
                generation: m.generation,
                size,
            }),
            None => Ok(None),
        }
    }

    /// The next frame's bytes, in publish order, into `out`.
    pub fn next_bytes(&mut self, out: &mut Vec<u8>) -> Result<RawNext<()>, ReadError> {
        match self.next_with(|m, w| fill(w, m.len as usize, out))? {
            RawNext::Frame(m, Ok(())) => Ok(RawNext::Frame(m, ())),
            RawNext::Frame(m, Err(size)) => Err(ReadError::BufferMemory {
                generation: m.generation,
                size,
            }),
            RawNext::Missed(n) => Ok(RawNext::Missed(n)),
            RawNext::Empty => Ok(RawNext::Empty),
        }
    }

    /// The newest frame's bytes into `out`, a buffer of a size known when
    /// the program is compiled: the read side of
    /// `RawPublisher::publish_array`, with no heap buffer and, for a frame
    /// of at least `N` bytes, a copy with no loop bounds to test
    /// ([`shmbus_core::codec::load_array`]).
    ///
    /// `Ok(Some(meta))`: `out[..meta.len]` holds the frame and the rest of
    /// `out` is zeroed. A frame longer than `N` bytes is cut to its first
    /// `N`, and `meta.len` (its whole length) says so; a topic whose
    /// `info().geometry.frame_capacity` is at most `N` has no such frame.
    /// After `Ok(None)` or an error, `out` holds nothing meaningful.
    pub fn latest_into<const N: usize>(
        &mut self,
        out: &mut [u8; N],
    ) -> Result<Option<SlotMeta>, ReadError> {
        Ok(self
            .latest_with(|m, w| {
                load_array(w, m.len as usize, out);
            })?
            .map(|(m, ())| m))
    }

    /// The next frame's bytes, in publish order, into `out`, as
    /// [`Self::latest_into`] reads the newest.
    pub fn next_into<const N: usize>(
        &mut self,
        out: &mut [u8; N],
    ) -> Result<RawNext<()>, ReadError> {
        self.next_with(|m, w| {
            load_array(w, m.len as usize, out);
        })
    }

    /// Sleep until `ready()` (re-evaluated after every wake-up) returns
    /// `Some`, or the timeout passes, or the topic is dead.
    pub fn wait_until<R>(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut(&mut Self) -> Result<Option<R>, ReadError>,
    ) -> Result<R, WaitError> {
        // The deadline is taken from the first clock read, after the first
        // check: a wait whose frame is already there reads no clock, and one
        // that sleeps once reads it once (a clock read is a vDSO call on the
        // board, about 37 us under emulation).
        let timeout_ns = timeout.as_nanos().min(u64::MAX as u128) as u64;
        let mut deadline: Option<u64> = None;
        let mut poll_step = Duration::from_micros(500);
        loop {
            // Read the word before checking (S0): a publish after this load
            // changes it, so the futex wait below returns at once instead of
            // sleeping through the new frame; and the waiter registration
            // below, which comes after this load, makes that publish wake us
            // (`shmbus_core::waiter`; no lost wake-up).
            let word = self.seg.notify_word().load_acquire();
            if let Some(r) = ready(self)? {
                return Ok(r);
            }
            let now = sys::monotonic_ns();
            let deadline = *deadline.get_or_insert(now.saturating_add(timeout_ns));
            if now >= deadline {
                return Err(WaitError::Timeout);
            }
            // A full slice ends at most SLICE_JITTER early, and the check
            // is due by then.
            let check_due = LIVENESS_INTERVAL.saturating_sub(SLICE_JITTER);
            if now.saturating_sub(self.last_liveness_check) >= check_due.as_nanos() as u64 {
                self.last_liveness_check = now;
                let g = self.seg.generation();
                let published_since = g != self.generation_at_check;
                self.generation_at_check = g;
                if self.seg.is_removed() {
                    // Frames published just before the removal are still
                    // in the mapping: give them to `ready` before saying
                    // so (a publish and a removal between the check above
                    // and this one lost them).
                    if let Some(r) = ready(self)? {
                        return Ok(r);
                    }
                    return Err(WaitError::Removed);
                }
                match self.seg.publisher_status() {
                    // The lock was removed (`ipcrm -s`, logind's
                    // `RemoveIPC`) under a publisher that still publishes:
                    // frames came since the last check. It is not gone:
                    // the examples, the sensors and the bridge take a new
                    // lock at their next look (`shmbus pub --rate` and
                    // `replay` stop). Saying `PublisherGone` here made
                    // readers stop reading a live topic until then.
                    PublisherStatus::NoLock if published_since => {}
                    PublisherStatus::NotRunning | PublisherStatus::NoLock => {
                        // Re-check for a frame the publisher left just before it exited.
                        if let Some(r) = ready(self)? {
                            return Ok(r);
                        }
                        return Err(WaitError::PublisherGone);
                    }
                    PublisherStatus::Unknown => {
                        if let Some(r) = ready(self)? {
                            return Ok(r);
                        }
                        return Err(self.unreadable_lock());
                    }
                    PublisherStatus::Alive { .. } => {}
                }
            }
            self.sleep_once(
                word,
                now,
                Duration::from_nanos(deadline - now),
                &mut poll_step,
            )?;
        }
    }

    /// After a wait ended with [`WaitError::PublisherGone`]: sleep until
    /// the topic is published again, then read on (its frames come to the
    /// same segment). Returns the publisher's status at that moment:
    ///
    /// - [`PublisherStatus::Alive`]: a publisher holds the topic's lock (the
    ///   same one restarted, or another that took the topic over);
    /// - any other status: a frame this subscriber has not read yet was
    ///   published since its last liveness check, although no publisher
    ///   holds the lock. This is
    ///   a publisher whose lock alone was removed (`ipcrm -s`, logind's
    ///   `RemoveIPC`), usually [`PublisherStatus::NoLock`]. It publishes,
    ///   so its frames are read.
    ///
    /// A frame wakes this wait at once: it registers as a waiter, as
    /// [`Self::wait_until`] does. A publisher that comes back without
    /// publishing is seen within [`LIVENESS_INTERVAL`]. While the publisher
    /// is gone (exited, with or without its lock) it sleeps a whole
    /// [`LIVENESS_INTERVAL`] at a time: about ten wake-ups a second,
    /// however long the topic stays stopped. Ends with
    /// [`WaitError::Timeout`] after `timeout`, with [`WaitError::Removed`]
    /// when the segment was removed and nothing new was published before,
    /// and with [`WaitError::LockUnreadable`] or [`WaitError::AccessLost`]
    /// as the reads' waits do. Each of them leaves the handle usable.
    ///
    /// One call for the loop every long-running reader needs: the tools,
    /// the bridge and the examples (Rust, C and Python) use it.
    pub fn wait_for_publisher(&mut self, timeout: Duration) -> Result<PublisherStatus, WaitError> {
        let timeout_ns = timeout.as_nanos().min(u64::MAX as u128) as u64;
        let start = sys::monotonic_ns();
        let deadline = start.saturating_add(timeout_ns);
        let mut poll_step = Duration::from_micros(500);
        loop {
            // The word first, as in `wait_until`: a publish after this load
            // ends the sleep below at once.
            let word = self.seg.notify_word().load_acquire();
            // New frames first: ones published just before a removal are
            // still in the mapping, for the caller to read.
            let g = self.seg.generation();
            // Published since the last check, and not read yet: frames this
            // subscriber read between two checks (from a publisher alive
            // then) say nothing about whether anyone publishes now.
            let published = g != self.generation_at_check && g > self.newest;
            let status = self.seg.publisher_status();
            let now = sys::monotonic_ns();
            if published || status.is_alive() {
                // The next wait compares with this moment.
                self.generation_at_check = g;
                self.last_liveness_check = now;
                return Ok(status);
            }
            if self.seg.is_removed() {
                return Err(WaitError::Removed);
            }
            if status == PublisherStatus::Unknown {
                return Err(self.unreadable_lock());
            }
            if now >= deadline {
                return Err(WaitError::Timeout);
            }
            self.sleep_once(
                word,
                now,
                Duration::from_nanos(deadline - now),
                &mut poll_step,
            )?;
        }
    }

    /// The error a wait ends with when the lock at the key cannot be read
    /// ([`PublisherStatus::Unknown`]).
    fn unreadable_lock(&self) -> WaitError {
        let p = shmbus_core::sysvipc::semaphore_by_key(self.seg.key());
        // The lock of the user who created this segment is the topic's
        // own: this process lost read access (a narrower mode or another
        // group since it attached), not a squatter's lock to remove.
        let own = p
            .as_ref()
            .is_some_and(|p| segment_creator(self.seg.shmid()) == Some(p.creator_uid()));
        if own {
            return WaitError::AccessLost {
                key: self.seg.key(),
                owner: p.as_ref().map(|p| p.owner()),
            };
        }
        WaitError::LockUnreadable {
            key: self.seg.key(),
            creator_uid: p.as_ref().map(|p| p.creator_uid()),
            mode: p.as_ref().map(|p| p.owner().2),
        }
    }

    /// One sleep of a wait: until a publish changes `notify` from `word`
    /// (loaded before the caller's last check), or `remaining` or a
    /// liveness interval passes, whichever is first. Registers in the
    /// publisher's waiter segment first, so a publish wakes it; without a
    /// wake-up due (no notify, or no registration), a short step of
    /// `poll_step`, which grows to 10 ms.
    fn sleep_once(
        &mut self,
        word: u32,
        now: u64,
        remaining: Duration,
        poll_step: &mut Duration,
    ) -> Result<(), WaitError> {
        let mut slice = remaining.min(LIVENESS_INTERVAL);
        let sleep = if self.seg.info().notify() {
            self.prepare_sleep()
        } else {
            Sleep::Poll
        };
        match sleep {
            Sleep::Futex { ticket } => {
                if now < self.suspect_until {
                    slice = slice.min(SUSPECT_SLICE);
                }
                // The caller's deadline is an end no jitter moves (and
                // its sleep is not judged by time); every other end is.
                if let Some(t) = ticket.filter(|_| slice < remaining) {
                    slice = jittered(slice, t);
                }
                let ended = match sys::futex_wait(self.seg.notify_word(), word, slice) {
                    Ok(w) => w,
                    Err(e) => return Err(WaitError::Sys(e)),
                };
                if ended == FutexWait::Woken {
                    self.misses.woken();
                }
                let timed_out = ended == FutexWait::TimedOut;
                if let Some(ticket) = ticket.filter(|_| timed_out) {
                    if self.seg.notify_word().load() != word {
                        // A frame came and its wake-up did not, or not
                        // yet: a frame published as the slice ended is
                        // seen here while its wake-up is still on its
                        // way. Count only a wake-up that was lost.
                        let verdict = judge_missing_wake(WakeEvidence {
                            ticket,
                            waiter_word: self.waiter.as_ref().map(WaiterWord::load),
                            newest_publish_ns: self.seg.header().last_publish_mono_ns().load(),
                            slice_end_ns: now.saturating_add(slice.as_nanos() as u64),
                            at_deadline: slice == remaining,
                        });
                        if self.misses.unwoken(verdict) {
                            // Sleep briefly for a while, so it cannot
                            // happen for long.
                            self.lost_wakeups += 1;
                            self.suspect_until =
                                sys::monotonic_ns().saturating_add(SUSPECT_FOR.as_nanos() as u64);
                        }
                    }
                }
            }
            Sleep::Poll => {
                // No wake-up is due to this subscriber: sleep in
                // growing steps.
                std::thread::sleep(slice.min(*poll_step));
                *poll_step = (*poll_step * 2).min(Duration::from_millis(10));
            }
        }
        Ok(())
    }
}

/// What a subscriber knows when a registered sleep ended at its time slice
/// although `notify` changed during it.
#[derive(Debug, Clone, Copy)]
struct WakeEvidence {
    /// The ticket the sleep took (the waiter word's value before it).
    ticket: u32,
    /// The waiter word now (`None`: no longer attached).
    waiter_word: Option<u32>,
    /// The header's `last_publish_mono_ns`: when the newest frame was
    /// published (the publisher's clock, or its caller's timestamp).
    newest_publish_ns: u64,
    /// When the slice was due to end (`CLOCK_MONOTONIC`, ns).
    slice_end_ns: u64,
    /// The slice ended at the caller's deadline, the one end [`jittered`]
    /// cannot move.
    at_deadline: bool,
}

/// How long before the end of a slice a frame must have been published for
/// the missing wake-up to count as lost: an honest publisher wakes a few
/// microseconds after its clock read, so a frame this old had its wake-up
/// due long before the slice ended. A frame newer than that may have been
/// published as the slice ended, its wake-up still on its way (the
/// publisher stores `notify`, then wakes): that is not a lost wake-up.
const LOST_WAKEUP_MARGIN_NS: u64 = 10_000_000;

/// What a registered sleep that ended at its slice with `notify` changed
/// says about the frame's wake-up (`docs/LAYOUT.md` section 7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MissingWake {
    /// The waiter word is behind the sleep's ticket: it was rewound, which
    /// no honest writer does (they only add 1), so the publisher may have
    /// skipped the wake: lost, whenever the frame came.
    Rewound,
    /// The newest frame's `mono_ns` is at least [`LOST_WAKEUP_MARGIN_NS`]
    /// before the slice ended: its wake-up was due long before, unless the
    /// time is not the publish's own. A caller's timestamp
    /// (`publish_at`) may be as old as it likes (a sensor stamps its
    /// sample before a slow read), so this alone proves nothing: see
    /// [`MissRecord`].
    Overdue,
    /// A newer frame: it may have raced the end of the slice, its wake-up
    /// still on its way (a publisher at a rate that divides the slice,
    /// 10 Hz or 1 Hz, does that about once in a few hundred frames). Also
    /// any frame at the end of a slice that ended at the caller's deadline:
    /// that end is not jittered, so a caller whose timeouts keep step with
    /// a publisher could race it every time.
    Raced,
}

/// Judge one sleep that ended at its slice although `notify` changed.
fn judge_missing_wake(e: WakeEvidence) -> MissingWake {
    let after_ticket = e.ticket.wrapping_add(1);
    let rewound = e
        .waiter_word
        .is_some_and(|w| (w.wrapping_sub(after_ticket) as i32) < 0);
    if rewound {
        MissingWake::Rewound
    } else if !e.at_deadline
        && e.newest_publish_ns.saturating_add(LOST_WAKEUP_MARGIN_NS) <= e.slice_end_ns
    {
        MissingWake::Overdue
    } else {
        MissingWake::Raced
    }
}

/// Which missing wake-ups a subscriber counts as lost. A rewound waiter
/// word is lost at once. An overdue frame is lost only when the previous
/// frame that ended a sleep without its wake-up was overdue too, with no
/// wake-up in between: an honest publisher whose frames carry old
/// timestamps misses a slice's end only by racing it (a few microseconds
/// in a slice of up to 100 ms), and twice in a row with nothing woken
/// between is a coincidence a rewind undone every time is not.
#[derive(Debug, Clone, Copy, Default)]
struct MissRecord {
    /// The last sleep that ended at its slice with a frame and without its
    /// wake-up was overdue, and no sleep was woken since.
    overdue: bool,
}

impl MissRecord {
    /// A sleep was woken by `FUTEX_WAKE`: the publisher's wake-ups arrive.
    fn woken(&mut self) {
        self.overdue = false;
    }

    /// A sleep ended at its slice with `notify` changed; true if its
    /// wake-up counts as lost.
    fn unwoken(&mut self, verdict: MissingWake) -> bool {
        let lost = match verdict {
            MissingWake::Rewound => true,
            // Lost if the one before was overdue too; else wait for it.
            MissingWake::Overdue => core::mem::replace(&mut self.overdue, true),
            MissingWake::Raced => false,
        };
        if lost {
            // Counted: the next loss needs its own evidence.
            self.overdue = false;
        }
        lost
    }
}

/// The most a registered sleep may end early: a fifth of its slice, at
/// most this (so a full 100 ms slice ends 80 to 100 ms after it began).
const SLICE_JITTER: Duration = Duration::from_millis(20);

/// A registered sleep's slice, shortened by a pseudo-random part of a fifth
/// of it (at most [`SLICE_JITTER`]), drawn from the sleep's ticket (a new
/// value for every sleep of any reader). Without it a publisher whose
/// period is the slice plus this reader's time from wake-up to its next
/// sleep (100.1 ms against a 100 ms slice, to within microseconds: a sensor
/// with its own clock) lands every frame at the end of a slice: each one
/// raced it, and two such races in a row look like a rewind undone
/// ([`MissRecord`]). With the end moved at random, a race is a chance of
/// microseconds in each slice, independent of the last one. A slice that
/// ends at the caller's deadline is not moved (the wait must end there);
/// its races are never judged by time ([`WakeEvidence::at_deadline`]).
fn jittered(slice: Duration, ticket: u32) -> Duration {
    let most = (slice / 5).min(SLICE_JITTER).as_nanos() as u64;
    // Fibonacci hashing spreads consecutive tickets over the u32 range.
    let r = u64::from(ticket.wrapping_mul(0x9E37_79B9));
    slice.saturating_sub(Duration::from_nanos((r * most) >> 32))
}

/// The creator uid of segment `shmid`, from `/proc/sysvipc/shm` (readable
/// by anyone, also when `IPC_STAT` is refused).
fn segment_creator(shmid: i32) -> Option<u32> {
    shmbus_core::sysvipc::segments()
        .ok()?
        .into_iter()
        .find(|e| e.id() == shmid)
        .map(|e| e.creator_uid())
}

/// The result of an untyped in-order read ([`RawSubscriber::next_with`]).
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum RawNext<R> {
    /// The next frame: its metadata and what the read function returned.
    Frame(SlotMeta, R),
    /// This many frames were overwritten before they were read; see
    /// [`Next::Missed`].
    Missed(u64),
    /// Nothing new.
    Empty,
}

/// A subscriber of one topic, for frames of type `T`.
#[derive(Debug)]
pub struct Subscriber<T> {
    raw: RawSubscriber,
    scratch: Vec<u8>,
    _type: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + Schema> Subscriber<T> {
    /// Attach `topic` read-only and check that it carries frames of type
    /// `T`.
    ///
    /// Errors: [`OpenError::NotFound`] (no publisher yet: see
    /// [`Self::wait_for_topic`]), [`OpenError::InvalidTopic`] (key 0, or a
    /// name no topic can have: said at once, also by `wait_for_topic`),
    /// [`OpenError::SchemaMismatch`] (another type), [`OpenError::PermissionDenied`], [`OpenError::NotOwner`] /
    /// [`OpenError::WritableByOthers`] (when the topic names its publisher
    /// uid), and the garbage-segment errors ([`OpenError::NotShmbus`],
    /// [`OpenError::Corrupt`], [`OpenError::UnsupportedLayout`]).
    pub fn attach(topic: &Topic) -> Result<Self, OpenError> {
        Self::of_type(RawSubscriber::attach(topic)?, topic)
    }

    /// Check that an attached topic carries frames of type `T`.
    fn of_type(raw: RawSubscriber, topic: &Topic) -> Result<Self, OpenError> {
        let expected =
            shmbus_core::schema::fingerprint_of::<T>().map_err(|e| OpenError::InvalidTopic {
                reason: format!("cannot encode the schema of the message type: {e}"),
            })?;
        let info = raw.info();
        if info.schema_fingerprint != expected {
            return Err(OpenError::SchemaMismatch {
                key: topic.key,
                topic: info.name.clone(),
                expected,
                found: info.schema_fingerprint,
            });
        }
        // Whole words: the copy is word by word. Up to 16 MiB: an error,
        // not an abort, when this process has no room for it.
        let size = info.geometry.frame_words() * 4;
        let mut scratch = Vec::new();
        scratch
            .try_reserve_exact(size)
            .map_err(|_| OpenError::BufferMemory {
                key: topic.key,
                size: size as u64,
            })?;
        scratch.resize(size, 0);
        Ok(Subscriber {
            raw,
            scratch,
            _type: PhantomData,
        })
    }

    /// Attach `topic`, waiting up to `timeout` for a publisher to create it,
    /// and check its type. Where the in-order cursor starts is
    /// [`RawSubscriber::wait_for_topic`]'s rule: a topic that appeared while
    /// this call waited is read from its first frame still in the ring.
    pub fn wait_for_topic(topic: &Topic, timeout: Duration) -> Result<Self, OpenError> {
        Self::of_type(RawSubscriber::wait_for_topic(topic, timeout)?, topic)
    }

    /// Inside the seqlock window: copy the frame, a word at a time.
    #[inline]
    fn copy(scratch: &mut [u8], m: &SlotMeta, w: ReadWords<'_>) -> usize {
        load_bytes(w, m.len as usize, scratch)
    }

    /// After the read validated: decode the private copy with
    /// `shmbus_core::decode` (postcard's wire format, element reads inlined;
    /// strings and byte buffers are plain copies out of it).
    fn finish(m: SlotMeta, bytes: &[u8]) -> Result<Sample<T>, ReadError> {
        match shmbus_core::decode::from_bytes::<T>(bytes) {
            Ok(value) => Ok(Sample {
                value,
                generation: m.generation,
                mono_ns: m.mono_ns,
                real_ns: m.real_ns,
            }),
            Err(error) => Err(ReadError::Undecodable {
                generation: m.generation,
                error,
            }),
        }
    }

    /// The newest frame; `None` before the first publish.
    pub fn latest(&mut self) -> Result<Option<Sample<T>>, ReadError> {
        let scratch = &mut self.scratch;
        match self.raw.latest_with(|m, w| Self::copy(scratch, m, w))? {
            Some((m, n)) => Self::finish(m, &self.scratch[..n]).map(Some),
            None => Ok(None),
        }
    }

    /// The next frame in publish order (non-blocking).
    #[allow(
        clippy::should_implement_trait,
        reason = "not an Iterator: a read can fail and 'nothing new' (Empty) is not the end; `next` is the word users look for"
    )]
    pub fn next(&mut self) -> Result<Next<T>, ReadError> {
        let scratch = &mut self.scratch;
        match self.raw.next_with(|m, w| Self::copy(scratch, m, w))? {
            RawNext::Frame(m, n) => Self::finish(m, &self.scratch[..n]).map(Next::Frame),
            RawNext::Missed(n) => Ok(Next::Missed(n)),
            RawNext::Empty => Ok(Next::Empty),
        }
    }

    /// Block until the next frame in publish order (or a missed-frames
    /// notice), up to `timeout`. Never returns [`Next::Empty`].
    pub fn wait_next(&mut self, timeout: Duration) -> Result<Next<T>, WaitError> {
        let scratch = &mut self.scratch;
        self.raw.wait_until(timeout, |raw| {
            Ok(match raw.next_with(|m, w| Self::copy(scratch, m, w))? {
                RawNext::Frame(m, n) => Some(Next::Frame(Self::finish(m, &scratch[..n])?)),
                RawNext::Missed(n) => Some(Next::Missed(n)),
                RawNext::Empty => None,
            })
        })
    }

    /// Block until a frame newer than the last one returned is published,
    /// then return the newest frame.
    pub fn wait_latest(&mut self, timeout: Duration) -> Result<Sample<T>, WaitError> {
        let scratch = &mut self.scratch;
        self.raw.wait_until(timeout, |raw| {
            if !raw.has_new() {
                return Ok(None);
            }
            match raw.latest_with(|m, w| Self::copy(scratch, m, w))? {
                Some((m, n)) => Self::finish(m, &scratch[..n]).map(Some),
                None => Ok(None),
            }
        })
    }

    /// True if a frame newer than the last one returned was published. One
    /// atomic load.
    #[inline]
    pub fn has_new(&self) -> bool {
        self.raw.has_new()
    }

    /// After [`WaitError::PublisherGone`]: sleep until the topic is
    /// published again (its publisher holds the lock again, or frames come
    /// without it), up to `timeout`. See
    /// [`RawSubscriber::wait_for_publisher`].
    pub fn wait_for_publisher(&mut self, timeout: Duration) -> Result<PublisherStatus, WaitError> {
        self.raw.wait_for_publisher(timeout)
    }

    /// Time since the newest publish (monotonic); `None` before the first.
    pub fn age(&self) -> Option<Duration> {
        self.raw.age()
    }

    /// Whether the publisher is alive.
    pub fn publisher(&self) -> PublisherStatus {
        self.raw.publisher()
    }

    /// True if the segment was removed since attach.
    pub fn is_removed(&self) -> bool {
        self.raw.is_removed()
    }

    /// The untyped subscriber underneath (cursor control, header, segment).
    pub fn raw(&mut self) -> &mut RawSubscriber {
        &mut self.raw
    }
}

/// [`copy_from_words`] into `out`, after growing `out` to the frame's
/// length without aborting when memory is short (frames can be up to
/// 16 MiB): `Err(len)` then, and `out` is unchanged. One compare when `out`
/// already has the room.
#[inline]
fn fill(words: ReadWords<'_>, len: usize, out: &mut Vec<u8>) -> Result<(), u64> {
    if len > out.capacity() {
        out.try_reserve_exact(len - out.len())
            .map_err(|_| len as u64)?;
    }
    copy_from_words(words, len, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn evidence(ticket: u32, waiter_word: Option<u32>, published: u64) -> WakeEvidence {
        WakeEvidence {
            ticket,
            waiter_word,
            newest_publish_ns: published,
            slice_end_ns: 1_000 * MS,
            at_deadline: false,
        }
    }

    use MissingWake::{Overdue, Raced, Rewound};

    #[test]
    fn a_frame_that_raced_the_end_of_the_slice_is_not_overdue() {
        // Published 1 ms before the slice ended, or after it (seen on the
        // way out), the waiter word honest: its wake-up was on its way.
        for published in [999 * MS, 1_000 * MS, 1_001 * MS, 991 * MS] {
            assert_eq!(judge_missing_wake(evidence(7, Some(8), published)), Raced);
            assert_eq!(judge_missing_wake(evidence(7, Some(9), published)), Raced);
        }
        // No longer attached: no word to check, the time alone decides.
        assert_eq!(judge_missing_wake(evidence(7, None, 995 * MS)), Raced);
    }

    #[test]
    fn an_old_frame_without_its_wake_up_is_overdue() {
        assert_eq!(judge_missing_wake(evidence(7, Some(8), 990 * MS)), Overdue);
        assert_eq!(judge_missing_wake(evidence(7, Some(8), 900 * MS)), Overdue);
        assert_eq!(judge_missing_wake(evidence(7, None, 0)), Overdue);
    }

    #[test]
    fn a_sleep_that_ended_at_the_callers_deadline_is_not_judged_by_time() {
        // Its end is not jittered: a caller whose timeouts keep step with a
        // publisher could race it every time.
        let at_deadline = |e: WakeEvidence| WakeEvidence {
            at_deadline: true,
            ..e
        };
        for published in [0, 900 * MS, 990 * MS, 999 * MS] {
            let e = at_deadline(evidence(7, Some(8), published));
            assert_eq!(judge_missing_wake(e), Raced);
        }
        // A rewound word is evidence wherever the sleep ended.
        let e = at_deadline(evidence(7, Some(7), 900 * MS));
        assert_eq!(judge_missing_wake(e), Rewound);
    }

    #[test]
    fn a_rewound_waiter_word_is_rewound_whenever_the_frame_came() {
        // Behind the ticket: only a writer that is not honest does that.
        for published in [0, 999 * MS, 2_000 * MS] {
            assert_eq!(judge_missing_wake(evidence(7, Some(7), published)), Rewound);
            assert_eq!(judge_missing_wake(evidence(7, Some(3), published)), Rewound);
        }
        // Across the wrap of the 32-bit word: ahead is ahead.
        assert_eq!(
            judge_missing_wake(evidence(u32::MAX, Some(0), 999 * MS)),
            Raced
        );
        assert_eq!(
            judge_missing_wake(evidence(u32::MAX - 1, Some(2), 999 * MS)),
            Raced
        );
        assert_eq!(
            judge_missing_wake(evidence(1, Some(u32::MAX), 999 * MS)),
            Rewound
        );
    }

    /// The verdicts of a run of sleeps, `None` for a sleep that was woken;
    /// returns which ones counted a lost wake-up.
    fn counted(sleeps: &[Option<MissingWake>]) -> Vec<bool> {
        let mut r = MissRecord::default();
        sleeps
            .iter()
            .map(|s| match *s {
                Some(v) => r.unwoken(v),
                None => {
                    r.woken();
                    false
                }
            })
            .collect()
    }

    #[test]
    fn one_overdue_frame_is_not_a_lost_wake_up_and_two_in_a_row_are() {
        // A frame stamped by its caller long before it was published
        // (`publish_at` after a slow sensor read) that races the end of a
        // slice: one alone is not counted.
        assert_eq!(counted(&[Some(Overdue)]), [false]);
        // Two without a wake-up between them: a rewind undone each time.
        assert_eq!(counted(&[Some(Overdue), Some(Overdue)]), [false, true]);
        // And then it starts again.
        assert_eq!(
            counted(&[Some(Overdue), Some(Overdue), Some(Overdue), Some(Overdue)]),
            [false, true, false, true]
        );
        // A race between two changes nothing; a rewind counts at once and
        // starts the record again.
        assert_eq!(
            counted(&[Some(Overdue), Some(Raced), Some(Overdue)]),
            [false, false, true]
        );
        assert_eq!(
            counted(&[Some(Overdue), Some(Rewound), Some(Overdue)]),
            [false, true, false]
        );
    }

    #[test]
    fn a_full_slice_ends_up_to_20_ms_early_spread_over_consecutive_tickets() {
        let mut buckets = std::collections::BTreeSet::new();
        for t in (0..200u32).chain(u32::MAX - 100..=u32::MAX) {
            let s = jittered(LIVENESS_INTERVAL, t);
            assert!(
                s <= LIVENESS_INTERVAL && s > LIVENESS_INTERVAL - SLICE_JITTER,
                "{s:?}"
            );
            buckets.insert(s.as_millis());
            // A shorter slice (the 2 ms ones after a lost wake-up) ends
            // at most a fifth early.
            let short = jittered(SUSPECT_SLICE, t);
            assert!(
                short <= SUSPECT_SLICE && short > SUSPECT_SLICE * 4 / 5,
                "{short:?}"
            );
        }
        // Consecutive tickets (one reader sleeping again and again) land
        // all over the 20 ms, not on one end.
        assert!(buckets.len() >= 18, "{buckets:?}");
        // Two consecutive tickets never end within a millisecond of each
        // other, so a frame cannot race both.
        for t in 0..1000u32 {
            let (a, b) = (
                jittered(LIVENESS_INTERVAL, t),
                jittered(LIVENESS_INTERVAL, t + 1),
            );
            assert!(
                a.abs_diff(b) >= Duration::from_millis(1),
                "{t}: {a:?} {b:?}"
            );
        }
    }

    #[test]
    fn a_wake_up_between_two_overdue_frames_clears_the_first() {
        // The publisher's wake-ups arrive: each overdue frame was a race.
        assert_eq!(
            counted(&[Some(Overdue), None, Some(Overdue), None, Some(Overdue)]),
            [false, false, false, false, false]
        );
        assert_eq!(counted(&[None, Some(Rewound), None]), [false, true, false]);
    }
}

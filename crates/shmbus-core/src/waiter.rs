//! Waiter registration: a publish on a topic with notify on makes no system
//! call when nobody sleeps on it.
//!
//! Subscribers attach the topic read-only, so they cannot announce
//! themselves in the topic segment. Each publisher session has a second,
//! tiny segment, the **waiter segment** ([`RawWaiter`](crate::layout::RawWaiter), 128 bytes, no key:
//! `docs/LAYOUT.md` section 7.4), that every process allowed to read the
//! topic may write. Its one live word is a ticket counter, the **waiter
//! word** `W`:
//!
//! ```text
//! subscriber, before every sleep              publisher, every publish g
//! n0 = notify.load(); fence(Acquire)  (S0)    ... slot, generation, notify = g (Release)
//! nothing new since n0?                       fence(SeqCst)                 (P1)
//! W.fetch_add(1, Relaxed)             (S1)    w_g = W.load(Relaxed)         (P2)
//! fence(SeqCst)                       (S2)    wake iff w_g != w_{g-2}       (P3)
//! futex(&notify, FUTEX_WAIT, n0)      (S3)    (w_{g-2}: loaded two publishes ago;
//!                                              the session's first two publishes wake)
//! ```
//!
//! ## Why nobody sleeps through a frame
//! Take a sleeper whose (S0) read `n0`, the value publish `P_n0` stored,
//! and whose futex compare (S3, in the kernel, after S2) still found `n0`.
//! The publish that matters is `P_{n0+1}`: its store is the first one the
//! sleep does not see.
//!
//! - (S2) and (P1) are the two fences of Dekker's pattern: the kernel's
//!   compare read a value of `notify` older than `P_{n0+1}`'s store, so (S2)
//!   precedes (P1) in the single order of `SeqCst` fences, and `P_{n0+1}`'s
//!   load of `W` sees the ticket (S1) or a later one.
//! - `w_{n0-1}` was loaded by `P_{n0-1}`, which is sequenced before
//!   `P_n0`'s Release store of `n0`; (S0) read that store and acquired it,
//!   and (S1) comes after (S0). So `w_{n0-1}` happens before (S1) and is an
//!   older value of `W`.
//! - Honest writers only add 1, so every value of `W` from (S1) on differs
//!   from every value before it (until 2^32 registrations wrap it between
//!   two publishes): `w_{n0+1} != w_{n0-1}`, and `P_{n0+1}` wakes, after
//!   its store of `notify`. The futex's own guarantee does the rest: either
//!   the sleeper was queued before that `FUTEX_WAKE` and is woken, or its
//!   compare sees the new value and it does not sleep.
//!
//! Comparing with the **previous** publish's value (`w_{g-1}`) is not
//! enough, and the model below shows it: `P_n0` may be preempted between
//! its store of `n0` and its load of `W`; meanwhile the subscriber reads
//! `n0`, registers and heads for the kernel; `P_n0` then loads the new
//! ticket and wakes before anyone sleeps, and `P_{n0+1}`, seeing the same
//! ticket again, would skip the wake the sleeper needs.
//!
//! ## Dead and hostile writers
//! A subscriber killed after registering leaves `W` changed: the next two
//! publishes wake (two extra system calls), then `W` is stable again.
//! Nothing ever decrements `W`, so nobody has to clean up after the dead.
//! Any other value written into `W` is "a change" and costs at most the
//! same. The one write that costs more is a rewind: storing back exactly the
//! value the publisher loaded two publishes ago after an honest sleeper's
//! (S1) hides that sleeper, which then sleeps until its slice ends (100 ms
//! in `shmbus-sub`). Only a process that may read the topic can write `W`
//! ([`crate::layout::waiter_mode`]); the sleeper notices a lost wake-up when
//! its slice ends with `notify` changed and the word rewound behind its
//! ticket, or twice in a row (no wake-up between) with the frame's time
//! well before the slice ended, and then sleeps in short slices
//! (`shmbus-sub`, `docs/LAYOUT.md` section 7.4, `SECURITY.md`).
//!
//! The two halves are model-checked with `loom` (`loom.sh`): the tests at
//! the bottom run the protocol above against a model of the kernel's futex
//! and show that the `w_{g-1}` variant, or either fence removed, loses a
//! wake-up.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, Ordering, fence};

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU32, Ordering, fence};

/// "No value loaded yet": the session's first two publishes wake.
const UNKNOWN: u64 = u64::MAX;

/// What the publisher remembers of the waiter word: the values it loaded
/// at its last two publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeHistory {
    /// `W` as loaded by the previous publish (or [`UNKNOWN`]).
    prev1: u64,
    /// `W` as loaded two publishes ago (or [`UNKNOWN`]).
    prev2: u64,
}

impl Default for WakeHistory {
    fn default() -> Self {
        WakeHistory::new()
    }
}

impl WakeHistory {
    /// A new publisher session: its first two publishes wake.
    pub const fn new() -> WakeHistory {
        WakeHistory {
            prev1: UNKNOWN,
            prev2: UNKNOWN,
        }
    }

    /// The publisher's step after its Release store of `notify`: (P1) a
    /// `SeqCst` fence, (P2) one load of the waiter word, (P3) the decision.
    /// True: call `FUTEX_WAKE`.
    #[inline]
    pub fn after_publish(&mut self, waiters: &AtomicU32) -> bool {
        // (P1): pairs with the subscriber's fence (S2) in `register`
        // (Dekker): if the subscriber's futex compare missed this publish's
        // `notify`, the load below sees its ticket.
        fence(Ordering::SeqCst);
        // (P2): Relaxed; the fence above orders it after the notify store.
        let now = u64::from(waiters.load(Ordering::Relaxed));
        // (P3): any change since two publishes ago. See the module docs for
        // why the previous publish's value is not enough.
        let wake = now != self.prev2;
        self.prev2 = self.prev1;
        self.prev1 = now;
        wake
    }
}

/// The subscriber's step before it sleeps: (S1) take a ticket, (S2) a
/// `SeqCst` fence. The caller loaded `notify` with Acquire (S0) before this
/// and sleeps on that value (S3) after it. Returns the ticket (the value
/// `W` had).
#[inline]
pub fn register(waiters: &AtomicU32) -> u32 {
    // (S1): Relaxed: the fence below orders it before the futex compare.
    let t = waiters.fetch_add(1, Ordering::Relaxed);
    // (S2): pairs with the publisher's (P1).
    fence(Ordering::SeqCst);
    t
}

#[cfg(not(loom))]
pub use imp::{WaiterError, WaiterWord};

#[cfg(all(not(loom), feature = "writer"))]
pub use imp::WaiterSegment;

#[cfg(not(loom))]
mod imp {
    use super::*;
    use crate::layout::{LAYOUT_VERSION, WAITER_MAGIC_U64, WAITER_SEGMENT_SIZE};
    use crate::segment::Segment;
    use crate::sys::{self, SysError, WaiterAttachment};

    /// Why a subscriber cannot register in a topic's waiter segment. It then
    /// sleeps in short steps instead of relying on a wake-up (never longer
    /// than the step, never a hang).
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum WaiterError {
        /// A system call failed: `EACCES` if this process may read the topic
        /// but not write its waiter segment, `EINVAL`/`EIDRM` if the segment
        /// is gone, `ENOMEM` at a per-process attach limit (qemu-user).
        Sys(SysError),
        /// The segment the header names is not this topic's waiter segment.
        Foreign(&'static str),
    }

    impl core::fmt::Display for WaiterError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                WaiterError::Sys(e) => write!(f, "cannot attach the waiter segment: {e}"),
                WaiterError::Foreign(what) => write!(f, "not this topic's waiter segment: {what}"),
            }
        }
    }

    impl std::error::Error for WaiterError {}

    impl WaiterError {
        /// The waiter segment no longer exists (`EINVAL`, or `EIDRM` in a
        /// race with its end). It is marked removed from its creation, so
        /// it lives only while some process has it attached, and its
        /// publisher keeps it attached for the whole session: gone, it
        /// says that the session which named it is over. The next publish
        /// is then a new session's, which wakes every sleeper
        /// ([`WakeHistory::new`]).
        pub fn is_gone(&self) -> bool {
            matches!(
                self,
                WaiterError::Sys(SysError {
                    call: sys::Call::ShmStat | sys::Call::Shmat,
                    errno: sys::Errno::EINVAL | sys::Errno::EIDRM,
                })
            )
        }
    }

    /// A subscriber's read-write mapping of a topic's waiter segment: the
    /// one thing it can store to is the waiter word, with
    /// [`WaiterWord::register`].
    #[derive(Debug)]
    pub struct WaiterWord {
        att: WaiterAttachment,
        reference: u32,
    }

    impl WaiterWord {
        /// Attach the waiter segment that the header's `waiter_ref`
        /// (`reference`, the shmid + 1) names, after checking that it is the
        /// waiter segment of `topic`: exactly 128 bytes, no key, marked
        /// removed, created by the creator of the topic segment, with the
        /// waiter magic, layout version 1 and `topic`'s shmid inside.
        /// Nothing is stored before all of that holds.
        pub fn attach(reference: u32, topic: &Segment) -> Result<WaiterWord, WaiterError> {
            let foreign = |what| Err(WaiterError::Foreign(what));
            let shmid = match reference.checked_sub(1).map(i32::try_from) {
                Some(Ok(id)) => id,
                _ => return foreign("waiter_ref is not a shmid + 1"),
            };
            let st = sys::shm_stat(shmid).map_err(WaiterError::Sys)?;
            if st.size != WAITER_SEGMENT_SIZE as u64 {
                return foreign("its size is not 128 bytes");
            }
            if st.key != 0 || !st.removed() {
                return foreign("it has a key or is not marked removed");
            }
            let topic_st = topic.stat().map_err(WaiterError::Sys)?;
            if st.cuid != topic_st.cuid {
                return foreign("another user created it");
            }
            let att = WaiterAttachment::attach(shmid).map_err(WaiterError::Sys)?;
            let Some(raw) = att.raw() else {
                return foreign("its size is not 128 bytes");
            };
            // Acquire pairs with the creator's Release store of the magic,
            // made after the fields checked below.
            if raw.magic.load(Ordering::Acquire) != WAITER_MAGIC_U64 {
                return foreign("no waiter magic");
            }
            if raw.layout_version.load(Ordering::Relaxed) != LAYOUT_VERSION
                || raw.topic_shmid.load(Ordering::Relaxed) != topic.shmid() as u32
            {
                return foreign("it names another topic segment or layout");
            }
            Ok(WaiterWord { att, reference })
        }

        /// The `waiter_ref` this mapping was attached for.
        pub fn reference(&self) -> u32 {
            self.reference
        }

        /// The waiter segment's shmid.
        pub fn shmid(&self) -> i32 {
            self.att.shmid()
        }

        /// (S1) and (S2): take a ticket and fence. Call it after loading
        /// `notify` (S0) and before `FUTEX_WAIT` on that value (S3).
        #[inline]
        pub fn register(&self) -> u32 {
            match self.att.raw() {
                Some(raw) => register(&raw.waiters),
                None => unreachable!("checked at attach"),
            }
        }

        /// The waiter word, for tests and tools (a load).
        pub fn load(&self) -> u32 {
            match self.att.raw() {
                Some(raw) => raw.waiters.load(Ordering::Relaxed),
                None => unreachable!("checked at attach"),
            }
        }

        /// Store `v` into the waiter word: what a hostile reader of the
        /// topic can do. For the tests of `SECURITY.md`'s claims only.
        #[doc(hidden)]
        pub fn store_for_tests(&self, v: u32) {
            if let Some(raw) = self.att.raw() {
                raw.waiters.store(v, Ordering::Relaxed);
            }
        }
    }

    /// A publisher's waiter segment (feature `writer`).
    #[cfg(feature = "writer")]
    #[derive(Debug)]
    pub struct WaiterSegment {
        att: WaiterAttachment,
    }

    #[cfg(feature = "writer")]
    impl WaiterSegment {
        /// Create the waiter segment of the topic segment `topic_shmid`:
        /// `shmget(IPC_PRIVATE, 128, 0600)`, attach it, mark it removed
        /// (`IPC_RMID`: the kernel frees it when the last process detaches,
        /// so nothing is left behind and no key can collide; the calling
        /// thread holds every signal back until then), then give
        /// it the topic's group and [`crate::layout::waiter_mode`], fill in
        /// its identity and store the magic last. `SHM_LOCK` is tried if
        /// `lock` (a refusal is ignored: it is one page).
        pub fn create(
            topic_key: i32,
            topic_shmid: i32,
            topic_mode: u32,
            group: Option<u32>,
            lock: bool,
        ) -> Result<WaiterSegment, SysError> {
            // Until the removal mark, a process that dies leaves the
            // segment for good: 128 bytes of zeros at key 0 that nothing can
            // tell from another program's memory, so nothing may remove it.
            // Signals are held back across the three calls (SIGTERM from
            // `systemctl stop` landed there as readily as anywhere); only
            // SIGKILL, a fault, or a fatal signal another thread takes can
            // still end the process in between.
            let (shmid, att) = sys::with_signals_held(|| {
                let shmid = sys::shm_create_private(WAITER_SEGMENT_SIZE, 0o600)?;
                let att = match WaiterAttachment::attach(shmid) {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = sys::shm_remove(shmid);
                        return Err(e);
                    }
                };
                // From here the segment lives only as long as some process
                // has it attached.
                sys::shm_remove(shmid)?;
                Ok((shmid, att))
            })?;
            sys::shm_set_owner(shmid, group, crate::layout::waiter_mode(topic_mode))?;
            if lock {
                let _ = sys::shm_lock(shmid);
            }
            let Some(raw) = att.raw() else {
                return Err(SysError {
                    call: sys::Call::Shmat,
                    errno: sys::Errno::EFAULT,
                });
            };
            let r = Ordering::Relaxed;
            raw.layout_version.store(LAYOUT_VERSION, r);
            raw.topic_key.store(topic_key as u32, r);
            raw.topic_shmid.store(topic_shmid as u32, r);
            raw.waiters.store(0, r);
            // Release: a subscriber that sees the magic (Acquire) sees the
            // identity fields above.
            raw.magic.store(WAITER_MAGIC_U64, Ordering::Release);
            Ok(WaiterSegment { att })
        }

        /// Its shmid.
        pub fn shmid(&self) -> i32 {
            self.att.shmid()
        }

        /// What the header's `waiter_ref` holds for it: shmid + 1.
        pub fn reference(&self) -> u32 {
            self.att.shmid() as u32 + 1
        }

        /// The waiter word (the publisher only loads it).
        #[inline]
        pub fn word(&self) -> &AtomicU32 {
            match self.att.raw() {
                Some(raw) => &raw.waiters,
                None => unreachable!("checked at create"),
            }
        }
    }
}

/// Model checks. Run with `crates/shmbus-core/loom.sh`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    /// The kernel's futex on `notify`, as far as this protocol needs it:
    /// `FUTEX_WAIT` compares the word and queues the caller under the hash
    /// bucket's lock; `FUTEX_WAKE` takes the same lock and wakes whoever is
    /// queued. A sleeper that is queued and never woken is still asleep
    /// when the model ends.
    #[derive(Default)]
    struct Futex {
        /// (queued, woken)
        bucket: Mutex<(bool, bool)>,
    }

    impl Futex {
        /// True if the caller is now asleep (the word still held `expected`).
        fn wait(&self, word: &AtomicU32, expected: u32) -> bool {
            let mut b = self.bucket.lock().unwrap();
            if word.load(Ordering::Relaxed) != expected {
                return false;
            }
            *b = (true, false);
            true
        }

        fn wake(&self) {
            let mut b = self.bucket.lock().unwrap();
            if b.0 {
                b.1 = true;
            }
        }

        fn asleep(&self) -> bool {
            let b = self.bucket.lock().unwrap();
            b.0 && !b.1
        }
    }

    /// Which publisher rule to run: the bus's, or a broken variant the
    /// model must catch.
    #[derive(Clone, Copy, PartialEq)]
    enum Variant {
        /// The protocol as the bus runs it.
        Bus,
        /// Compare with the previous publish's value instead of the one
        /// from two publishes ago.
        ComparePrevious,
        /// Drop the subscriber's fence (S2).
        NoSubscriberFence,
        /// Drop the publisher's fence (P1).
        NoPublisherFence,
    }

    /// One publisher (publishes 3 and 4; 1 and 2 happened before, with the
    /// waiter word at 0) and one subscriber that has returned frame 2 and
    /// waits for newer frames: it polls, takes any new frame it sees, and
    /// otherwise registers and sleeps. At the end, a subscriber still
    /// asleep must be asleep on the newest value: anything else is a lost
    /// wake-up.
    fn run(variant: Variant) {
        loom::model(move || {
            let notify = Arc::new(AtomicU32::new(2));
            let waiters = Arc::new(AtomicU32::new(0));
            let futex = Arc::new(Futex::default());
            let (pn, pw, pf) = (notify.clone(), waiters.clone(), futex.clone());
            let publisher = thread::spawn(move || {
                // Publishes 1 and 2 loaded W = 0.
                let mut h = WakeHistory { prev1: 0, prev2: 0 };
                for g in 3..=4u32 {
                    pn.store(g, Ordering::Release);
                    let wake = match variant {
                        Variant::ComparePrevious => {
                            fence(Ordering::SeqCst);
                            let now = u64::from(pw.load(Ordering::Relaxed));
                            let w = now != h.prev1;
                            h.prev1 = now;
                            w
                        }
                        Variant::NoPublisherFence => {
                            let now = u64::from(pw.load(Ordering::Relaxed));
                            let w = now != h.prev2;
                            h.prev2 = h.prev1;
                            h.prev1 = now;
                            w
                        }
                        _ => h.after_publish(&pw),
                    };
                    if wake {
                        pf.wake();
                    }
                }
            });
            let mut seen = 2u32;
            let mut slept_on = None;
            for _ in 0..3 {
                // (S0)
                let n0 = notify.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if n0 != seen {
                    seen = n0; // a new frame: take it and look again
                    continue;
                }
                if variant == Variant::NoSubscriberFence {
                    waiters.fetch_add(1, Ordering::Relaxed);
                } else {
                    register(&waiters);
                }
                if futex.wait(&notify, n0) {
                    slept_on = Some(n0);
                    break;
                }
            }
            publisher.join().unwrap();
            if let Some(n0) = slept_on {
                if futex.asleep() {
                    assert_eq!(
                        notify.load(Ordering::Relaxed),
                        n0,
                        "lost wake-up: asleep on {n0} after a newer publish"
                    );
                }
            }
        });
    }

    #[test]
    fn no_lost_wake_up_in_any_interleaving() {
        run(Variant::Bus);
    }

    /// True if the model finds the lost wake-up in `variant` (and fails
    /// for that reason, not another).
    fn caught(variant: Variant) -> bool {
        match std::panic::catch_unwind(move || run(variant)) {
            Ok(()) => false,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                assert!(msg.contains("lost wake-up"), "failed otherwise: {msg}");
                true
            }
        }
    }

    /// The mutations the model must catch: each loses a wake-up in some
    /// interleaving.
    #[test]
    fn comparing_with_the_previous_publish_loses_a_wake_up() {
        assert!(caught(Variant::ComparePrevious));
    }

    #[test]
    fn without_the_subscriber_fence_a_wake_up_is_lost() {
        assert!(caught(Variant::NoSubscriberFence));
    }

    #[test]
    fn without_the_publisher_fence_a_wake_up_is_lost() {
        assert!(caught(Variant::NoPublisherFence));
    }

    /// A sleeper killed after registering costs the next two publishes a
    /// wake each, then none: the publisher's rule on its own.
    #[test]
    fn a_dead_registration_costs_two_wakes() {
        loom::model(|| {
            let w = AtomicU32::new(7);
            let mut h = WakeHistory::new();
            assert!(h.after_publish(&w), "first publish of a session wakes");
            assert!(h.after_publish(&w), "second publish of a session wakes");
            assert!(!h.after_publish(&w), "nobody registered: no wake");
            register(&w); // and dies
            assert!(h.after_publish(&w));
            assert!(h.after_publish(&w));
            assert!(!h.after_publish(&w));
            assert!(!h.after_publish(&w));
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn history_wakes_on_any_change_since_two_publishes_ago() {
        let w = AtomicU32::new(0);
        let mut h = WakeHistory::new();
        assert!(h.after_publish(&w));
        assert!(h.after_publish(&w));
        assert!(!h.after_publish(&w));
        w.store(u32::MAX, Ordering::Relaxed); // garbage: a change, one extra wake or two
        assert!(h.after_publish(&w));
        assert!(h.after_publish(&w));
        assert!(!h.after_publish(&w));
        assert_eq!(register(&w), u32::MAX);
        assert_eq!(w.load(Ordering::Relaxed), 0, "the ticket wraps");
        assert!(h.after_publish(&w));
    }
}

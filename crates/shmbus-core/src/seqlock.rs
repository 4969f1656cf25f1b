//! The seqlock protocol on one slot's sequence word (single writer).
//!
//! This is Boehm's recipe ("Can seqlocks get along with programming language
//! memory models?", MSPC 2012), in which the protected data are themselves
//! atomics accessed with `Relaxed` ordering, so a reader racing with the
//! writer reads stale or mixed words but never has a data race:
//!
//! ```text
//! writer                                  reader
//! s = seq.load(Relaxed)                   s1 = seq.load(Acquire)      (odd: retry)
//! seq.store(s + 1, Relaxed)   // odd      data.load(Relaxed)...
//! fence(Release)              // (W1)     fence(Acquire)              // (R1)
//! data.store(Relaxed)...                  s2 = seq.load(Relaxed)
//! seq.store(s + 2, Release)   // (W2)     accept only if s1 == s2
//! ```
//!
//! Why it is enough: if the reader's `s1` load reads the value of (W2), the
//! Acquire pairs with that Release and the reader sees every data word of
//! that write or a later one. If any data load reads a value stored after
//! (W1) by a newer write, the fence pair (W1)-(R1) makes the newer write's
//! odd `seq` store visible to the `s2` load, so `s2 != s1` and the read is
//! discarded. On ARMv7 this costs one `dmb ish` per fence or Release/Acquire
//! access and nothing else; relaxed 32-bit accesses are plain `ldr`/`str`.
//!
//! The sequence word is 32 bits and wraps; only equality is compared.
//!
//! The reader's side takes a load-only [`ReadWord32`]: a subscriber's
//! mapping is read-only, and Rust promises only `Relaxed` loads there. The
//! Acquire of `read_begin` is therefore a `Relaxed` load followed by
//! `fence(Acquire)`: the same synchronisation with (W2), the same single
//! `dmb ish` on ARMv7.
//!
//! The writer's side is a guard, as crossbeam's `SeqLockWriteGuard`:
//! [`WriteGuard::begin`] makes the sequence odd, and dropping the guard makes
//! it even again, also when the code between panics. What the slot holds
//! after an interrupted write is the caller's business (the segment empties
//! it, see `segment.rs`); a repair of a slot left odd by a dead writer is
//! the same `begin`, stores and drop.
//!
//! The same functions are model-checked with `loom` (`--cfg loom`), see the
//! tests at the bottom: the orderings checked are the ones the bus runs.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, Ordering, fence};

#[cfg(all(not(loom), any(feature = "writer", test)))]
use core::sync::atomic::AtomicU32;
#[cfg(not(loom))]
use core::sync::atomic::{Ordering, fence};

use crate::view::ReadWord32;

/// Start a write: make the sequence odd. Returns the even value it had.
///
/// Only one writer may use a sequence word at a time (the publisher lock
/// guarantees it). If the word is odd on entry, a previous writer died
/// mid-write; the caller must have repaired the slot (see
/// `Publisher` in `shmbus-pub`), but to stay safe the odd value is rounded up
/// so the result is always even.
#[cfg(any(feature = "writer", loom, test))]
#[inline]
pub fn write_begin(seq: &AtomicU32) -> u32 {
    // Relaxed: this thread is the only one that stores to `seq`.
    let s = seq.load(Ordering::Relaxed);
    let s = s.wrapping_add(s & 1);
    seq.store(s.wrapping_add(1), Ordering::Relaxed);
    // (W1): orders the odd store before every data store that follows; pairs
    // with the reader's fence (R1) in `read_end`.
    fence(Ordering::Release);
    s
}

/// Finish a write started with [`write_begin`] (which returned `s`): make the
/// sequence even again. (W2): the Release pairs with the reader's Acquire
/// (load and fence) in [`read_begin`], publishing every data store of this
/// write.
#[cfg(any(feature = "writer", loom, test))]
#[inline]
pub fn write_end(seq: &AtomicU32, s: u32) {
    seq.store(s.wrapping_add(2), Ordering::Release);
}

/// A write in progress on one sequence word: odd while the guard lives.
/// Dropping it ends the write ([`write_end`]), whether the code between
/// returned or panicked, so no slot stays odd for the life of its writer.
#[cfg(any(feature = "writer", loom, test))]
#[derive(Debug)]
#[must_use = "dropping the guard ends the write at once"]
pub struct WriteGuard<'a> {
    seq: &'a AtomicU32,
    s: u32,
}

#[cfg(any(feature = "writer", loom, test))]
impl<'a> WriteGuard<'a> {
    /// Start a write ([`write_begin`]): the sequence is odd until the guard
    /// is dropped. An odd word (a dead writer's) is rounded up first.
    #[inline]
    pub fn begin(seq: &'a AtomicU32) -> WriteGuard<'a> {
        let s = write_begin(seq);
        WriteGuard { seq, s }
    }

    /// The even sequence value the write started from.
    pub fn start(&self) -> u32 {
        self.s
    }
}

#[cfg(any(feature = "writer", loom, test))]
impl Drop for WriteGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        write_end(self.seq, self.s);
    }
}

/// Start a read: the sequence value if it is even, `None` if a write is in
/// progress (the caller backs off and retries).
#[inline]
pub fn read_begin(seq: ReadWord32<'_>) -> Option<u32> {
    // Relaxed load + fence(Acquire): pairs with the writer's Release in
    // `write_end` (W2) when the load reads that store.
    let s = seq.load_acquire();
    if s & 1 == 0 { Some(s) } else { None }
}

/// Finish a read begun with [`read_begin`] (which returned `s1`): true if no
/// write overlapped it, so every data word loaded in between belongs to one
/// complete write.
#[inline]
pub fn read_end(seq: ReadWord32<'_>, s1: u32) -> bool {
    // (R1): pairs with the writer's fence (W1): if a data load saw a newer
    // write's store, the load below sees that write's odd sequence (or later).
    fence(Ordering::Acquire);
    seq.load() == s1
}

/// What one look at a slot's generation words says about frame `want`
/// ([`peek`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// The slot holds an older frame (or was emptied): frame `want` is not
    /// complete yet, and, since frames are written in order, nor is any
    /// later one.
    Older,
    /// Frame `want` is complete in the slot.
    Complete,
    /// Neither could be told from one look (mid-write, a later lap, a
    /// wrapped generation): ask the header.
    Unsure,
}

/// Look at the slot that frame `want` goes to, without the full seqlock
/// read: the reader's "anything new?" that does not touch the header.
///
/// ```text
/// lo = gen_lo.load(Relaxed)      older than want: Older (one load, the
///                                                 common "nothing new")
/// hi = gen_hi.load(Relaxed)
/// fence(Acquire)                 (R1): pairs with (W1) of the write whose
///                                gen store lo or hi read
/// s = seq.load(Relaxed)          even and (hi:lo) == want: Complete
/// ```
///
/// Older is sound from the low word alone: the writer stores a slot's
/// generation only inside the write of that frame, and writes frames in
/// order, so a low word that is not yet `want`'s (wrap-safe compare, as the
/// `notify` word) means frame `want` was not complete when it was loaded.
/// Complete: a generation word that equals `want` was stored by `want`'s
/// write (every older frame in the slot is smaller, an emptied slot 0), so
/// by the fence pair (W1)/(R1) the `seq` load sees that write's odd store or
/// later; even means it completed. Anything else is Unsure.
#[inline]
pub fn peek(
    seq: ReadWord32<'_>,
    gen_lo: ReadWord32<'_>,
    gen_hi: ReadWord32<'_>,
    want: u64,
) -> Peek {
    let lo = gen_lo.load();
    if is_older(lo, want) {
        return Peek::Older;
    }
    peek_rest(seq, gen_hi, lo, want)
}

/// [`peek`]'s first step: the low generation word `lo` (a Relaxed load)
/// belongs to a frame older than `want` (wrap-safe, as the `notify` word).
#[inline]
pub fn is_older(lo: u32, want: u64) -> bool {
    (lo.wrapping_sub(want as u32) as i32) < 0
}

/// The rest of [`peek`] once `lo`, loaded first, was not older.
#[inline]
pub fn peek_rest(seq: ReadWord32<'_>, gen_hi: ReadWord32<'_>, lo: u32, want: u64) -> Peek {
    let hi = gen_hi.load();
    fence(Ordering::Acquire);
    let s = seq.load();
    if s & 1 == 0 && (u64::from(hi) << 32 | u64::from(lo)) == want {
        Peek::Complete
    } else {
        Peek::Unsure
    }
}

/// Model checks. Run with `crates/shmbus-core/loom.sh`.
///
/// Mutation check (loom 0.7.3): deleting the reader's fence (R1) makes
/// `reader_never_accepts_a_torn_pair` fail. Weakening (W2) to `Relaxed` is
/// NOT caught: loom's model of relaxed loads misses the stale data read once
/// the writer has loaded `seq` before storing it (a probe without that load
/// is caught). So (W2)'s Release rests on the argument in the module docs,
/// not on this model.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    fn rd(seq: &AtomicU32) -> ReadWord32<'_> {
        ReadWord32::from(seq)
    }

    /// One writer, one reader, a two-word payload whose words must always
    /// agree. The reader may fail (odd or changed sequence) but must never
    /// accept a mixed pair. `write_begin`/`write_end`/`read_begin`/`read_end`
    /// are the bus's own functions with the bus's own orderings.
    #[test]
    fn reader_never_accepts_a_torn_pair() {
        loom::model(|| {
            let seq = Arc::new(AtomicU32::new(0));
            let data = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
            let (ws, wd) = (seq.clone(), data.clone());
            let writer = thread::spawn(move || {
                for v in 1..=2u32 {
                    let s = write_begin(&ws);
                    wd[0].store(v, Ordering::Relaxed);
                    wd[1].store(v, Ordering::Relaxed);
                    write_end(&ws, s);
                }
            });
            if let Some(s1) = read_begin(rd(&seq)) {
                let a = data[0].load(Ordering::Relaxed);
                let b = data[1].load(Ordering::Relaxed);
                if read_end(rd(&seq), s1) {
                    assert_eq!(a, b, "accepted a torn frame");
                    // An even sequence s1 means s1/2 writes completed.
                    assert_eq!(a, s1 / 2, "data does not match the sequence");
                }
            }
            writer.join().unwrap();
        });
    }

    /// The segment's publish order (`segment.rs`): the slot's `write_end`
    /// (Release), then the header's generation (Release). A reader that
    /// loads the generation (Acquire) and sees frame 1 must find that slot
    /// complete and holding frame 1: never odd, never stale.
    #[test]
    fn generation_points_at_a_complete_slot() {
        loom::model(|| {
            let seq = Arc::new(AtomicU32::new(0));
            let slot_gen = Arc::new(AtomicU32::new(0));
            let generation = Arc::new(AtomicU32::new(0));
            let (ws, wd, wg) = (seq.clone(), slot_gen.clone(), generation.clone());
            let writer = thread::spawn(move || {
                let s = write_begin(&ws);
                wd.store(1, Ordering::Relaxed);
                write_end(&ws, s);
                wg.store(1, Ordering::Release);
            });
            if generation.load(Ordering::Acquire) == 1 {
                let s1 = read_begin(rd(&seq))
                    .expect("slot is mid-write although the generation says complete");
                let g = slot_gen.load(Ordering::Relaxed);
                assert!(read_end(rd(&seq), s1));
                assert_eq!(g, 1, "stale slot behind a published generation");
            }
            writer.join().unwrap();
        });
    }

    /// A writer dies mid-write (guard forgotten: the sequence stays odd,
    /// one data word changed), then the next publisher repairs the slot with
    /// the same guard: it empties the slot and ends the write. A concurrent
    /// reader accepts only the complete frame from before the crash (1, 1)
    /// or the emptied slot (0, 0), never the half-written or a mixed pair.
    #[test]
    fn repair_through_the_guard_never_exposes_a_half_write() {
        loom::model(|| {
            let seq = Arc::new(AtomicU32::new(2));
            let data = Arc::new([AtomicU32::new(1), AtomicU32::new(1)]);
            let (ws, wd) = (seq.clone(), data.clone());
            let writer = thread::spawn(move || {
                let dead = WriteGuard::begin(&ws);
                wd[0].store(2, Ordering::Relaxed);
                core::mem::forget(dead);
                // The next publisher, after the kernel released the lock.
                let repair = WriteGuard::begin(&ws);
                wd[0].store(0, Ordering::Relaxed);
                wd[1].store(0, Ordering::Relaxed);
                drop(repair);
            });
            if let Some(s1) = read_begin(rd(&seq)) {
                let a = data[0].load(Ordering::Relaxed);
                let b = data[1].load(Ordering::Relaxed);
                if read_end(rd(&seq), s1) {
                    assert!(
                        (a, b) == (1, 1) || (a, b) == (0, 0),
                        "accepted ({a}, {b}) around a crash and repair"
                    );
                }
            }
            writer.join().unwrap();
            // After the repair the sequence is even and the slot empty.
            let s = read_begin(rd(&seq)).expect("even after repair");
            assert_eq!(s, 6);
            assert_eq!(data[0].load(Ordering::Relaxed), 0);
        });
    }

    /// A ring of `N` slots (sequence, generation words, one data word that
    /// must equal the generation) and the header's `generation`/`notify`
    /// (one 32-bit word each in the model), written in the segment's order.
    struct Ring<const N: usize> {
        seq: [AtomicU32; N],
        lo: [AtomicU32; N],
        hi: [AtomicU32; N],
        data: [AtomicU32; N],
        generation: AtomicU32,
        notify: AtomicU32,
    }

    impl<const N: usize> Ring<N> {
        fn new() -> Self {
            let z = || core::array::from_fn(|_| AtomicU32::new(0));
            Ring {
                seq: z(),
                lo: z(),
                hi: z(),
                data: z(),
                generation: AtomicU32::new(0),
                notify: AtomicU32::new(0),
            }
        }

        /// `WriteSegment::publish_bytes`: slot write, then (W3), (W4).
        fn publish(&self, g: u32) {
            let i = g as usize % N;
            let guard = WriteGuard::begin(&self.seq[i]);
            self.data[i].store(g, Ordering::Relaxed);
            self.lo[i].store(g, Ordering::Relaxed);
            self.hi[i].store(0, Ordering::Relaxed);
            drop(guard);
            self.generation.store(g, Ordering::Release);
            self.notify.store(g, Ordering::Release);
        }

        /// A writer thread that publishes frames 1 and 2.
        fn publish_1_and_2(ring: &Arc<Self>) -> thread::JoinHandle<()> {
            let w = ring.clone();
            thread::spawn(move || {
                w.publish(1);
                w.publish(2);
            })
        }

        /// A reader that has returned nothing yet: `has_new`, then `between`
        /// (more checks), then `latest`, which must give a whole frame, and
        /// one if `has_new` said so. Returns what `latest` gave.
        fn first_look(&self, between: impl FnOnce(&Self)) -> Option<(u64, u32)> {
            let said_new = self.has_new(0);
            between(self);
            let got = self.latest(0);
            if let Some((sg, d)) = got {
                assert_eq!(u64::from(d), sg, "torn frame");
            } else {
                assert!(!said_new, "has_new said new, latest gave nothing");
            }
            got
        }

        fn peek(&self, want: u64) -> Peek {
            let i = want as usize % N;
            peek(rd(&self.seq[i]), rd(&self.lo[i]), rd(&self.hi[i]), want)
        }

        /// One seqlock attempt on the slot of `g`: its (generation, data).
        fn try_read(&self, g: u64) -> Option<(u64, u32)> {
            let i = g as usize % N;
            let s1 = read_begin(rd(&self.seq[i]))?;
            let sg = u64::from(self.lo[i].load(Ordering::Relaxed))
                | u64::from(self.hi[i].load(Ordering::Relaxed)) << 32;
            let d = self.data[i].load(Ordering::Relaxed);
            read_end(rd(&self.seq[i]), s1).then_some((sg, d))
        }

        /// `RawSubscriber::has_new` after returning frame `newest`.
        fn has_new(&self, newest: u64) -> bool {
            match self.peek(newest + 1) {
                Peek::Older => false,
                Peek::Complete => true,
                Peek::Unsure => {
                    let n = rd(&self.notify).load_acquire();
                    (n.wrapping_sub(newest as u32) as i32) > 0
                }
            }
        }

        /// `RawSubscriber::latest_with` after returning frame `newest`:
        /// the slot-first attempt, the slot-ahead-of-header read, else the
        /// header path (retried while mid-write, as `read_slot` does). The
        /// frame returned: (generation, data).
        fn latest(&self, newest: u64) -> Option<(u64, u32)> {
            let want = newest + 1;
            // The low generation word as a filter, the seqlock read (which
            // alone decides that the frame is `want` and whole), then the
            // next slot's low word.
            let older = is_older(self.lo[want as usize % N].load(Ordering::Relaxed), want);
            if !older {
                if let Some((sg, d)) = self.try_read(want) {
                    let next = (want + 1) as usize % N;
                    if sg == want && is_older(self.lo[next].load(Ordering::Relaxed), want + 1) {
                        return Some((sg, d));
                    }
                }
            }
            let h = u64::from(rd(&self.generation).load_acquire());
            if h <= newest && !older {
                if let Some((sg, d)) = self.read(want) {
                    if sg >= want {
                        return Some((sg, d));
                    }
                }
            }
            let g = h.max(newest);
            if g == 0 {
                return None;
            }
            self.read(g).filter(|&(sg, _)| sg >= g)
        }

        /// The slot of `g` read with retries while it is mid-write.
        fn read(&self, g: u64) -> Option<(u64, u32)> {
            loop {
                if let Some(r) = self.try_read(g) {
                    return Some(r);
                }
                thread::yield_now();
            }
        }
    }

    /// The slot-first models explore every interleaving with at most
    /// `PREEMPTIONS` preemptions (loom's bound, as tokio's CI uses): the
    /// unbounded search over two publishes and a reader's retry loops ran
    /// for over ten minutes. Every bug known in seqlocks shows within two
    /// or three preemptions; `LOOM_MAX_PREEMPTIONS` overrides it.
    fn bounded() -> loom::model::Builder {
        let mut b = loom::model::Builder::new();
        if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
            b.preemption_bound = Some(PREEMPTIONS);
        }
        b
    }

    const PREEMPTIONS: usize = 4;

    /// The slot-first reads (`has_new`, `latest_with` in `shmbus-sub`)
    /// against a writer publishing frames 1 and 2 into a two-slot ring:
    /// `has_new` true means `latest` returns a newer frame, never a torn
    /// one, and reads never go back in time; after the writer is done,
    /// `has_new` sees it and `latest` returns the last frame.
    ///
    /// Mutation checks (loom 0.7.3, bound 4): `peek` without its fence, or
    /// answering Complete without the even-`seq` test, or `latest`
    /// accepting the candidate without the next slot's check, each fail
    /// this model; `latest` without the slot-ahead read fails the one-slot
    /// model below.
    #[test]
    fn slot_first_reads_agree_with_the_header() {
        bounded().check(|| {
            let ring = Arc::new(Ring::<2>::new());
            let writer = Ring::publish_1_and_2(&ring);
            let got = ring.first_look(|ring| {
                if ring.peek(1) == Peek::Complete {
                    // Slot 1 is written once: complete means readable, whole.
                    assert_eq!(ring.try_read(1), Some((1, 1)), "peek said complete");
                }
            });
            let newest = got.map_or(0, |(sg, _)| sg);
            writer.join().unwrap();
            if newest < 2 {
                assert!(
                    ring.has_new(newest),
                    "missed a completed frame after {newest}"
                );
            }
            assert_eq!(ring.latest(newest), Some((2, 2)));
            assert_eq!(ring.latest(0), Some((2, 2)), "not the newest frame");
            assert!(!ring.has_new(2));
        });
    }

    /// The same reads on a one-slot ring, where the candidate's slot and
    /// the next frame's are the same slot and every frame overwrites the
    /// last: a reader never accepts a frame that a newer one had already
    /// replaced, nor the newest one torn.
    #[test]
    fn slot_first_reads_on_a_one_slot_ring() {
        bounded().check(|| {
            let ring = Arc::new(Ring::<1>::new());
            let writer = Ring::publish_1_and_2(&ring);
            let got = ring.first_look(|_| {});
            writer.join().unwrap();
            let newest = got.map_or(0, |(g, _)| g);
            assert_eq!(ring.latest(newest), Some((2, 2)));
        });
    }

    /// A reader that starts after the writer finished sees the last write.
    #[test]
    fn completed_write_is_visible() {
        loom::model(|| {
            let seq = Arc::new(AtomicU32::new(0));
            let data = Arc::new(AtomicU32::new(0));
            let (ws, wd) = (seq.clone(), data.clone());
            let writer = thread::spawn(move || {
                let s = write_begin(&ws);
                wd.store(7, Ordering::Relaxed);
                write_end(&ws, s);
            });
            writer.join().unwrap();
            let s1 = read_begin(rd(&seq)).expect("even after the write");
            let v = data.load(Ordering::Relaxed);
            assert!(read_end(rd(&seq), s1));
            assert_eq!(v, 7);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn rd(seq: &AtomicU32) -> ReadWord32<'_> {
        ReadWord32::from(seq)
    }

    #[test]
    fn sequence_goes_odd_then_even() {
        let seq = AtomicU32::new(0);
        let s = write_begin(&seq);
        assert_eq!(s, 0);
        assert_eq!(read_begin(rd(&seq)), None);
        write_end(&seq, s);
        assert_eq!(read_begin(rd(&seq)), Some(2));
        assert!(read_end(rd(&seq), 2));
    }

    #[test]
    fn odd_word_left_by_a_dead_writer_is_rounded_up() {
        let seq = AtomicU32::new(5);
        let s = write_begin(&seq);
        assert_eq!(s, 6);
        write_end(&seq, s);
        assert_eq!(read_begin(rd(&seq)), Some(8));
    }

    #[test]
    fn guard_ends_the_write_on_drop_and_on_panic() {
        let seq = AtomicU32::new(0);
        {
            let g = WriteGuard::begin(&seq);
            assert_eq!(g.start(), 0);
            assert_eq!(read_begin(rd(&seq)), None);
        }
        assert_eq!(read_begin(rd(&seq)), Some(2));
        let r = std::panic::catch_unwind(|| {
            let _g = WriteGuard::begin(&seq);
            panic!("encode failed");
        });
        assert!(r.is_err());
        assert_eq!(read_begin(rd(&seq)), Some(4), "panic left the word odd");
    }

    #[test]
    fn peek_tells_older_complete_and_unsure_apart() {
        let w = |v: u32| AtomicU32::new(v);
        let ask = |seq: u32, lo: u32, hi: u32, want: u64| {
            let (s, l, h) = (w(seq), w(lo), w(hi));
            peek(rd(&s), rd(&l), rd(&h), want)
        };
        // The slot still holds the frame a ring ago, or nothing yet.
        assert_eq!(ask(2, 5, 0, 9), Peek::Older);
        assert_eq!(ask(0, 0, 0, 1), Peek::Older);
        // Frame 9 complete; mid-write (committing, or a later lap).
        assert_eq!(ask(4, 9, 0, 9), Peek::Complete);
        assert_eq!(ask(5, 9, 0, 9), Peek::Unsure);
        // A lap ahead: a newer frame, but not `want` itself.
        assert_eq!(ask(6, 13, 0, 9), Peek::Unsure);
        // Across the 32-bit wrap of the low word.
        let want = (1u64 << 32) + 1;
        assert_eq!(ask(2, u32::MAX - 2, 0, want), Peek::Older);
        assert_eq!(ask(2, 1, 1, want), Peek::Complete);
        // An emptied slot (generation 0) is never frame 2^32: the high
        // word differs.
        assert_ne!(ask(2, 0, 0, 1 << 32), Peek::Complete);
    }

    #[test]
    fn overlapping_write_fails_validation() {
        let seq = AtomicU32::new(u32::MAX - 1);
        let s1 = read_begin(rd(&seq)).unwrap();
        let s = write_begin(&seq);
        write_end(&seq, s);
        assert!(
            !read_end(rd(&seq), s1),
            "wrapped sequence must still differ"
        );
    }
}

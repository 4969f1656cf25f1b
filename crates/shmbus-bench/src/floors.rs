//! The floors, hand-written: what moving a value between two processes
//! costs with nothing but the hardware (one atomic word), with a bare
//! seqlock around a 64-byte payload (what shmbus's busy-poll handoff does,
//! minus everything else), and with a raw futex (what shmbus's blocking
//! wait does, minus everything else).
//!
//! All three run in a private scratch segment ([`crate::os::Scratch`]); the
//! parent times round trips and the peer echoes.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::Duration;

use shmbus_core::sys::{self, FutexWait};

use crate::os::{ANSWER_TIMEOUT_NS, Scratch, no_answer, spin_until};

/// Byte offsets in the scratch segment: two seqlock slots on their own
/// cache lines, the atomic word and the futex word.
pub const PING_SLOT: usize = 0;
/// The pong slot.
pub const PONG_SLOT: usize = 256;
/// The atomic ping-pong word.
pub const ATOMIC_WORD: usize = 512;
/// The futex ping-pong word.
pub const FUTEX_WORD: usize = 640;
/// The layout floor's two rings ([`layout_rt`]), each one page.
pub const LAYOUT_PING: usize = 4096;
/// The layout floor's pong ring.
pub const LAYOUT_PONG: usize = 8192;
/// Size of the scratch segment.
pub const SCRATCH_SIZE: usize = 12288;

/// A layout-floor ring, as a topic of 64-byte frames lays itself out
/// (`docs/LAYOUT.md` sections 3-4): the header's live line at 192 (here
/// `generation` and both stamps as 32-bit halves, then `notify`), slot 0 at
/// 256, 16 slots of 128 bytes (8 head words, 16 data words, padding).
const RING_LIVE: usize = 192;
const RING_SLOT0: usize = 256;
const RING_STRIDE: usize = 128;
const RING_SLOTS: u64 = 16;

/// Words in a seqlock slot: the sequence word and 16 payload words (64 B).
const SLOT_WORDS: usize = 17;
/// The value that tells a peer to exit (odd, so it looks like a request).
pub const STOP: u32 = u32::MAX;

/// Reset every floor word before a new peer starts.
pub fn reset(s: &Scratch) {
    for w in s.words(0, SCRATCH_SIZE / 4) {
        w.store(0, Ordering::Relaxed);
    }
}

/// The atomic request number for round trip `seq` (odd; the reply is +1).
fn request(seq: u64) -> u32 {
    (seq as u32).wrapping_mul(2).wrapping_sub(1) & 0x7fff_ffff
}

/// Parent side of the atomic ping-pong: one round trip.
pub fn atomic_rt(s: &Scratch, seq: u64) -> Result<(), String> {
    let w = &s.words(ATOMIC_WORD, 1)[0];
    let v = request(seq);
    // Release/Acquire: the minimum for a handoff that carries data.
    w.store(v, Ordering::Release);
    spin_until(|| w.load(Ordering::Acquire) == v + 1)
}

/// Peer side of the atomic ping-pong.
pub fn atomic_peer(s: &Scratch) -> Result<(), String> {
    let w = &s.words(ATOMIC_WORD, 1)[0];
    let mut last = 0;
    loop {
        let mut v = 0;
        spin_until(|| {
            v = w.load(Ordering::Acquire);
            v & 1 == 1 && v != last
        })?;
        if v == STOP {
            return Ok(());
        }
        last = v;
        w.store(v + 1, Ordering::Release);
    }
}

/// Tell the atomic peer to exit.
pub fn atomic_stop(s: &Scratch) {
    s.words(ATOMIC_WORD, 1)[0].store(STOP, Ordering::Release);
}

/// Bare seqlock write of a 64-byte payload whose first two words are `seq`.
/// Boehm's recipe, the same orderings as shmbus's seqlock.
#[inline]
pub fn seqlock_write(slot: &[AtomicU32], seq: u64) {
    let s = slot[0].load(Ordering::Relaxed);
    slot[0].store(s.wrapping_add(1), Ordering::Relaxed);
    fence(Ordering::Release);
    slot[1].store(seq as u32, Ordering::Relaxed);
    slot[2].store((seq >> 32) as u32, Ordering::Relaxed);
    for (i, w) in slot[3..SLOT_WORDS].iter().enumerate() {
        w.store(0x5a5a_0000 | i as u32, Ordering::Relaxed);
    }
    slot[0].store(s.wrapping_add(2), Ordering::Release);
}

/// [`seqlock_write`] of a real frame: the 16 payload words copied from
/// `frame` instead of made up. The floor of any 64-byte publish, whatever
/// its layout: the copy, the sequence word twice, nothing else.
#[inline]
pub fn seqlock_copy_write(slot: &[AtomicU32], frame: &[u8; 64]) {
    let s = slot[0].load(Ordering::Relaxed);
    slot[0].store(s.wrapping_add(1), Ordering::Relaxed);
    fence(Ordering::Release);
    copy_words(&slot[1..SLOT_WORDS], frame);
    slot[0].store(s.wrapping_add(2), Ordering::Release);
}

/// Store `frame` into `words`, 4 bytes (little-endian) per word.
#[inline]
fn copy_words(words: &[AtomicU32], frame: &[u8; 64]) {
    for (w, c) in words.iter().zip(frame.chunks_exact(4)) {
        w.store(
            u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            Ordering::Relaxed,
        );
    }
}

/// Bare seqlock read: the 64-bit number in the payload if the slot holds a
/// complete write with a sequence other than `*last` (which is updated).
#[inline]
pub fn seqlock_read_new(slot: &[AtomicU32], last: &mut u32) -> Option<u64> {
    let s1 = slot[0].load(Ordering::Acquire);
    if s1 & 1 == 1 || s1 == *last {
        return None;
    }
    let mut words = [0u32; SLOT_WORDS - 1];
    for (d, w) in words.iter_mut().zip(&slot[1..SLOT_WORDS]) {
        *d = w.load(Ordering::Relaxed);
    }
    fence(Ordering::Acquire);
    if slot[0].load(Ordering::Relaxed) != s1 {
        return None;
    }
    *last = s1;
    Some(u64::from(words[0]) | (u64::from(words[1]) << 32))
}

/// Parent side of the seqlock ping-pong: write `seq` to the ping slot and
/// wait for the pong slot to carry it back.
pub fn seqlock_rt(s: &Scratch, seq: u64, last_pong: &mut u32) -> Result<(), String> {
    seqlock_write(s.words(PING_SLOT, SLOT_WORDS), seq);
    let pong = s.words(PONG_SLOT, SLOT_WORDS);
    spin_until(|| seqlock_read_new(pong, last_pong) == Some(seq))
}

/// Peer side of the seqlock ping-pong.
pub fn seqlock_peer(s: &Scratch) -> Result<(), String> {
    let ping = s.words(PING_SLOT, SLOT_WORDS);
    let pong = s.words(PONG_SLOT, SLOT_WORDS);
    let mut last = 0;
    loop {
        let mut v = None;
        spin_until(|| {
            v = seqlock_read_new(ping, &mut last);
            v.is_some()
        })?;
        match v {
            Some(u64::MAX) | None => return Ok(()),
            Some(seq) => seqlock_write(pong, seq),
        }
    }
}

/// Tell the seqlock peer to exit.
pub fn seqlock_stop(s: &Scratch) {
    seqlock_write(s.words(PING_SLOT, SLOT_WORDS), u64::MAX);
}

fn futex_wait_for(w: &AtomicU32, mut done: impl FnMut(u32) -> bool) -> Result<u32, String> {
    let start = sys::monotonic_ns();
    loop {
        let x = w.load(Ordering::Acquire);
        if done(x) {
            return Ok(x);
        }
        match sys::futex_wait(w.into(), x, Duration::from_secs(1)) {
            Ok(FutexWait::TimedOut) if sys::monotonic_ns() - start > ANSWER_TIMEOUT_NS => {
                return Err(no_answer());
            }
            Ok(_) => {}
            Err(e) => return Err(format!("futex wait failed: {e}")),
        }
    }
}

/// Parent side of the raw futex ping-pong: store, `FUTEX_WAKE`, sleep in
/// `FUTEX_WAIT` until the reply (no spinning: this is the blocking floor).
pub fn futex_rt(s: &Scratch, seq: u64) -> Result<(), String> {
    let w = &s.words(FUTEX_WORD, 1)[0];
    let v = request(seq);
    w.store(v, Ordering::Release);
    let _ = sys::futex_wake_all(w);
    futex_wait_for(w, |x| x == v + 1).map(drop)
}

/// Peer side of the raw futex ping-pong.
pub fn futex_peer(s: &Scratch) -> Result<(), String> {
    let w = &s.words(FUTEX_WORD, 1)[0];
    let mut last = 0;
    loop {
        let v = futex_wait_for(w, |x| x & 1 == 1 && x != last)?;
        if v == STOP {
            return Ok(());
        }
        last = v;
        w.store(v + 1, Ordering::Release);
        let _ = sys::futex_wake_all(w);
    }
}

/// Tell the futex peer to exit.
pub fn futex_stop(s: &Scratch) {
    let w = &s.words(FUTEX_WORD, 1)[0];
    w.store(STOP, Ordering::Release);
    let _ = sys::futex_wake_all(w);
}

/// The stores a 64-byte publish makes in shmbus's layout (version 1,
/// `docs/LAYOUT.md` sections 3-4) and nothing else: the slot's sequence
/// odd, 16 data words copied from `frame`, the 7 metadata words (length,
/// generation, both stamps), the sequence even, then the header's live
/// block (both stamps, the generation, `notify`). No bounds checks, no
/// slot arithmetic, no wake-up decision: what any publisher of this layout
/// must do, so the pre-encoded publish is compared with it as well as with
/// the bare seqlock (which stores 16 constants and no metadata).
#[inline]
pub fn layout_publish(
    slot: &[AtomicU32; 24],
    live: &[AtomicU64; 3],
    notify: &AtomicU32,
    frame: &[u8; 64],
    g: u64,
) {
    let (mono, real) = layout_slot_write(slot, frame, g);
    live[0].store(mono, Ordering::Relaxed);
    live[1].store(real, Ordering::Relaxed);
    live[2].store(g, Ordering::Release);
    notify.store(g as u32, Ordering::Release);
}

/// The stores of the same publish in a layout v2 candidate: the slot as in
/// [`layout_publish`], and a live block of one word. The header's two
/// stamps go (a reader takes them from the newest slot, which it reads
/// anyway), and the futex word is the low half of the generation, so one
/// 64-bit store replaces the generation store and the `notify` store. Not a
/// layout anyone writes: a floor to decide whether such a version would
/// bring a publish within reach of 2x the bare seqlock.
#[inline]
pub fn layout_v2_publish(slot: &[AtomicU32; 24], generation: &AtomicU64, frame: &[u8; 64], g: u64) {
    layout_slot_write(slot, frame, g);
    generation.store(g, Ordering::Release);
}

/// [`layout_publish`]'s slot part; returns the stamps it stored.
#[inline]
fn layout_slot_write(slot: &[AtomicU32; 24], frame: &[u8; 64], g: u64) -> (u64, u64) {
    let s = slot[0].load(Ordering::Relaxed);
    slot[0].store(s.wrapping_add(1), Ordering::Relaxed);
    fence(Ordering::Release);
    copy_words(&slot[8..], frame);
    let (mono, real) = (g, 7u64);
    for (w, v) in slot[1..8].iter().zip([
        64,
        g as u32,
        (g >> 32) as u32,
        mono as u32,
        (mono >> 32) as u32,
        real as u32,
        (real >> 32) as u32,
    ]) {
        w.store(v, Ordering::Relaxed);
    }
    slot[0].store(s.wrapping_add(2), Ordering::Release);
    (mono, real)
}

/// One ring of the layout floor, at `base` in the scratch segment.
struct Ring<'a> {
    s: &'a Scratch,
    base: usize,
}

impl<'a> Ring<'a> {
    fn slot(&self, g: u64) -> &'a [AtomicU32; 24] {
        let off = self.base + RING_SLOT0 + (g % RING_SLOTS) as usize * RING_STRIDE;
        match self.s.words(off, 24).try_into() {
            Ok(w) => w,
            Err(_) => unreachable!("24 words were asked for"),
        }
    }

    /// Publish frame `g` (its first 8 bytes are `seq`), as
    /// [`layout_publish`] with the live block's u64 fields as 32-bit halves.
    fn publish(&self, g: u64, seq: u64) {
        let mut frame = [0x5a_u8; 64];
        frame[..8].copy_from_slice(&seq.to_le_bytes());
        let (mono, real) = layout_slot_write(self.slot(g), &frame, g);
        let live = self.s.words(self.base + RING_LIVE, 7);
        for (w, v) in live[..4].iter().zip([
            mono as u32,
            (mono >> 32) as u32,
            real as u32,
            (real >> 32) as u32,
        ]) {
            w.store(v, Ordering::Relaxed);
        }
        live[4].store(g as u32, Ordering::Relaxed);
        live[5].store((g >> 32) as u32, Ordering::Release);
        live[6].store(g as u32, Ordering::Release);
    }

    /// Frame `want` if it is complete and the newest, as shmbus's reader
    /// takes it on its fast path: its slot's generation word (the poll),
    /// the seqlock read of the head and the 16 data words, then one load of
    /// the next slot's generation word (nothing newer). Returns the frame's
    /// first 8 bytes.
    fn read(&self, want: u64) -> Option<u64> {
        let slot = self.slot(want);
        if slot[2].load(Ordering::Relaxed) != want as u32 {
            return None;
        }
        let s1 = slot[0].load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let mut words = [0u32; 23];
        for (d, w) in words.iter_mut().zip(&slot[1..]) {
            *d = w.load(Ordering::Relaxed);
        }
        fence(Ordering::Acquire);
        if slot[0].load(Ordering::Relaxed) != s1
            || u64::from(words[1]) | (u64::from(words[2]) << 32) != want
        {
            return None;
        }
        let next = self.slot(want + 1)[2].load(Ordering::Relaxed);
        if (next.wrapping_sub(want as u32 + 1) as i32) >= 0 {
            return None;
        }
        Some(u64::from(words[7]) | (u64::from(words[8]) << 32))
    }
}

/// One hop of the layout floor inside one process: publish frame `g` into
/// the ring at [`LAYOUT_PING`] and read it back the way the reader's fast
/// path does (`Ring::read`). With no second process there is no cache
/// line to move between CPUs, so what this costs is instructions alone:
/// the baseline for shmbus's own hop in one process (the micro row "raw hop
/// in one process"), whose ratio to this is the code's share of a hop
/// without the machine's noise. Returns the frame's first 8 bytes.
pub fn layout_hop(s: &Scratch, g: u64) -> Option<u64> {
    let ring = Ring {
        s,
        base: LAYOUT_PING,
    };
    ring.publish(g, g);
    ring.read(g)
}

/// Parent side of the layout floor: the bare seqlock ping-pong again, but
/// in shmbus's layout (rings of 16 slots with their metadata, the header's
/// live line, the reader's look at the next slot), hand-written, with no
/// clock read and no checks beyond the seqlock's. What is left between
/// this and the raw-bytes handoff is shmbus's code; what is between this
/// and the bare seqlock is the layout's.
pub fn layout_rt(s: &Scratch, seq: u64) -> Result<(), String> {
    Ring {
        s,
        base: LAYOUT_PING,
    }
    .publish(seq, seq);
    let pong = Ring {
        s,
        base: LAYOUT_PONG,
    };
    spin_until(|| pong.read(seq) == Some(seq))
}

/// Peer side of the layout floor: echo frame `g` of the ping ring as frame
/// `g` of the pong ring.
pub fn layout_peer(s: &Scratch) -> Result<(), String> {
    let (ping, pong) = (
        Ring {
            s,
            base: LAYOUT_PING,
        },
        Ring {
            s,
            base: LAYOUT_PONG,
        },
    );
    for g in 1.. {
        let mut v = None;
        spin_until(|| {
            v = ping.read(g);
            v.is_some()
        })?;
        match v {
            Some(u64::MAX) | None => return Ok(()),
            Some(seq) => pong.publish(g, seq),
        }
    }
    Ok(())
}

/// Tell the layout peer (waiting for frame `g`) to exit.
pub fn layout_stop(s: &Scratch, g: u64) {
    Ring {
        s,
        base: LAYOUT_PING,
    }
    .publish(g, u64::MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqlock_floor_reads_what_was_written_once() {
        let slot: Vec<AtomicU32> = (0..SLOT_WORDS).map(|_| AtomicU32::new(0)).collect();
        let mut last = 0;
        assert_eq!(seqlock_read_new(&slot, &mut last), None);
        seqlock_write(&slot, 0x1_0000_0002);
        assert_eq!(seqlock_read_new(&slot, &mut last), Some(0x1_0000_0002));
        assert_eq!(seqlock_read_new(&slot, &mut last), None, "same write twice");
    }

    #[test]
    fn the_one_process_layout_hop_reads_back_every_frame_over_laps() {
        let s = Scratch::create(SCRATCH_SIZE).expect("scratch segment");
        reset(&s);
        // Three laps of the 16-slot ring: each frame is read back whole.
        for g in 1..=48 {
            assert_eq!(layout_hop(&s, g), Some(g), "frame {g}");
        }
        // A frame already overtaken is not the newest: the reader refuses it.
        let ring = Ring {
            s: &s,
            base: LAYOUT_PING,
        };
        assert_eq!(ring.read(47), None);
    }

    #[test]
    fn layout_floor_reads_only_the_newest_complete_frame() {
        let s = Scratch::create(SCRATCH_SIZE).expect("scratch segment");
        reset(&s);
        let ring = Ring {
            s: &s,
            base: LAYOUT_PING,
        };
        assert_eq!(ring.read(1), None, "empty ring");
        ring.publish(1, 41);
        assert_eq!(ring.read(1), Some(41));
        assert_eq!(ring.read(2), None, "not published yet");
        ring.publish(2, 42);
        assert_eq!(ring.read(1), None, "frame 2 is newer");
        assert_eq!(ring.read(2), Some(42));
        // A write in progress (odd sequence) is not accepted.
        let slot = ring.slot(2);
        slot[0].fetch_add(1, Ordering::Relaxed);
        assert_eq!(ring.read(2), None, "mid-write");
        slot[0].fetch_add(1, Ordering::Relaxed);
        // A lap later the slot holds frame 18, and frame 2 is gone.
        for g in 3..=18 {
            ring.publish(g, g);
        }
        assert_eq!(ring.read(2), None);
        assert_eq!(ring.read(18), Some(18));
    }

    #[test]
    fn the_v2_candidate_and_the_copy_floor_store_the_same_data() {
        let words = || -> [AtomicU32; 24] { std::array::from_fn(|_| AtomicU32::new(0)) };
        let (v1, v2) = (words(), words());
        let (live, notify, generation) = (
            [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            AtomicU32::new(0),
            AtomicU64::new(0),
        );
        let mut frame = [0u8; 64];
        frame.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        let g = (5 << 32) + 9;
        layout_publish(&v1, &live, &notify, &frame, g);
        layout_v2_publish(&v2, &generation, &frame, g);
        let load = |w: &[AtomicU32; 24]| {
            w.iter()
                .map(|w| w.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        };
        assert_eq!(load(&v1), load(&v2));
        assert_eq!(load(&v2)[0], 2, "sequence even after one write");
        assert_eq!(generation.load(Ordering::Relaxed), g);
        assert_eq!(live[2].load(Ordering::Relaxed), g);
        // The futex word the candidate drops is the generation's low half.
        assert_eq!(notify.load(Ordering::Relaxed), g as u32);
        // The copy floor stores the same data words behind its sequence.
        let bare = words();
        seqlock_copy_write(&bare[..SLOT_WORDS], &frame);
        assert_eq!(load(&bare)[0], 2);
        assert_eq!(load(&bare)[1..SLOT_WORDS], load(&v1)[8..]);
    }

    #[test]
    fn requests_are_odd_and_never_stop() {
        for seq in [1u64, 2, 1 << 31, (1 << 32) + 5] {
            let v = request(seq);
            assert_eq!(v & 1, 1);
            assert_ne!(v, STOP);
        }
    }
}

//! Frame bytes in and out of a slot's 32-bit atomic words: [`load_bytes`]
//! copies a frame out with relaxed loads (the seqlock's data loads) and
//! [`store_bytes`] copies one in with relaxed stores (its data stores).
//! These copies are the only code that touches a frame in shared memory;
//! values are encoded and decoded on private bytes, by [`crate::encode`]
//! (publishers) and [`crate::decode`] (subscribers). A `&[u8]` into live
//! shared memory would be unsound (see `docs/LAYOUT.md`, "Soundness").
//!
//! A copy of a torn frame is harmless: it never reads past `len` bytes,
//! the slot's words or the buffer, and the seqlock check afterwards
//! discards it before anything decodes it.

#[cfg(feature = "writer")]
use core::sync::atomic::{AtomicU32, Ordering};

use crate::view::ReadWords;

/// Copy the first `len` bytes of `words` (little-endian 32-bit words,
/// relaxed loads: the seqlock's data loads) into `out`, a word at a time.
/// Copies at most `words.len() * 4` and `out.len()` bytes; returns how many
/// it copied. This is the whole of a read inside the seqlock window: the
/// copy is private memory afterwards, decoded only once the read validated.
#[inline]
pub fn load_bytes(words: ReadWords<'_>, len: usize, out: &mut [u8]) -> usize {
    let n = len.min(words.len() * 4).min(out.len());
    let (head, tail) = out[..n].split_at_mut(n & !3);
    // Source and destination cut to the same number of whole words first,
    // so the loop tests one bound, not two (n <= 4 * words.len(), so the
    // range is inside).
    let whole = n / 4;
    if let Some(src) = words.range(0, whole) {
        for (c, w) in head.chunks_exact_mut(4).zip(src.iter()) {
            c.copy_from_slice(&w.load().to_le_bytes());
        }
    }
    if !tail.is_empty() {
        if let Some(w) = words.get(whole) {
            tail.copy_from_slice(&w.load().to_le_bytes()[..tail.len()]);
        }
    }
    n
}

/// Copy a frame of `len` bytes out of `words` into a buffer of exactly `N`
/// bytes: [`load_bytes`] for a reader whose frames have a size known when
/// the program is compiled (the read side of [`store_array`]).
///
/// A frame of at least `N` bytes fills `out` through a slice of exactly
/// `N.div_ceil(4)` words, so the copy has no loop bounds to test and
/// unrolls into `N / 4` loads (64 bytes: 16); a longer frame is cut to its
/// first `N` bytes (the caller has its length). A shorter frame, or
/// `words` too short for `N` bytes, goes through [`load_bytes`], and the
/// bytes of `out` after what it copied are zeroed, so `out` never holds
/// bytes of an earlier frame. Returns how many bytes came from `words`.
#[inline(always)]
pub fn load_array<const N: usize>(words: ReadWords<'_>, len: usize, out: &mut [u8; N]) -> usize {
    if len >= N {
        if let Some(src) = words.range(0, N.div_ceil(4)) {
            let (head, tail) = out.split_at_mut(N / 4 * 4);
            for (i, c) in head.chunks_exact_mut(4).enumerate() {
                c.copy_from_slice(&src.load(i).to_le_bytes());
            }
            if let Some(w) = src.get(N / 4).filter(|_| !tail.is_empty()) {
                tail.copy_from_slice(&w.load().to_le_bytes()[..N % 4]);
            }
            return N;
        }
    }
    let n = load_bytes(words, len, out);
    out[n..].fill(0);
    n
}

/// Copy `bytes` into `words` (little-endian), with relaxed atomic stores.
/// `bytes.len()` must be at most `words.len() * 4`.
#[cfg(feature = "writer")]
#[inline]
pub fn store_bytes(words: &[AtomicU32], bytes: &[u8]) {
    // Whole words first: a fixed-size conversion the compiler turns into one
    // load per word (a variable-length copy per word costs a memcpy call).
    let whole = bytes.chunks_exact(4);
    let tail = whole.remainder();
    let mut n = 0;
    for (w, chunk) in words.iter().zip(whole) {
        let b = [chunk[0], chunk[1], chunk[2], chunk[3]];
        w.store(u32::from_le_bytes(b), Ordering::Relaxed);
        n += 1;
    }
    if !tail.is_empty() {
        if let Some(w) = words.get(n) {
            let mut b = [0u8; 4];
            b[..tail.len()].copy_from_slice(tail);
            w.store(u32::from_le_bytes(b), Ordering::Relaxed);
        }
    }
}

/// Copy a frame of exactly `N` bytes into `words` (little-endian), with
/// relaxed atomic stores: [`store_bytes`] for a length known when the
/// program is compiled. The whole words go through a slice of exactly
/// `N / 4` words, so the copy has no loop bounds to test and unrolls into
/// `N / 4` stores (64 bytes: 16); a last partial word (`N % 4` bytes) is
/// zero-padded as `store_bytes` pads it. The slot's bytes afterwards are
/// the same as `store_bytes(words, bytes)` leaves. `words` must hold
/// `N.div_ceil(4)` words; with fewer it stores nothing.
#[cfg(feature = "writer")]
#[inline(always)]
pub fn store_array<const N: usize>(words: &[AtomicU32], bytes: &[u8; N]) {
    let whole = N / 4;
    let Some(dst) = words.get(..N.div_ceil(4)) else {
        return;
    };
    let (head, last) = dst.split_at(whole);
    for (i, w) in head.iter().enumerate() {
        let b = [
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ];
        w.store(u32::from_le_bytes(b), Ordering::Relaxed);
    }
    if let Some(w) = last.first() {
        let mut b = [0u8; 4];
        b[..N % 4].copy_from_slice(&bytes[whole * 4..]);
        w.store(u32::from_le_bytes(b), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicU32;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Msg {
        t: u64,
        x: f32,
        name: heapless::String<8>,
        v: heapless::Vec<u16, 4>,
    }

    /// `$check::<N>()` for every size from 0 to 13 bytes (whole words and
    /// each tail) and 64, the sizes the array copies are tested at.
    macro_rules! every_size {
        ($check:ident) => {
            $check::<0>();
            $check::<1>();
            $check::<2>();
            $check::<3>();
            $check::<4>();
            $check::<5>();
            $check::<6>();
            $check::<7>();
            $check::<8>();
            $check::<9>();
            $check::<10>();
            $check::<11>();
            $check::<12>();
            $check::<13>();
            $check::<64>();
        };
    }

    fn words_of(bytes: &[u8]) -> Vec<AtomicU32> {
        bytes
            .chunks(4)
            .map(|c| {
                let mut b = [0u8; 4];
                b[..c.len()].copy_from_slice(c);
                AtomicU32::new(u32::from_le_bytes(b))
            })
            .collect()
    }

    fn sample() -> Msg {
        Msg {
            t: 123_456_789,
            x: -1.5,
            name: heapless::String::from("imu0"),
            v: heapless::Vec::from_slice(&[1, 300, 65535]).unwrap(),
        }
    }

    /// What a subscriber does with a slot: copy it, then decode the copy.
    fn copy_and_decode(words: ReadWords<'_>, len: usize, buf: &mut [u8]) -> postcard::Result<Msg> {
        let n = load_bytes(words, len, buf);
        crate::decode::from_bytes(&buf[..n])
    }

    #[test]
    fn a_slot_copied_then_decoded_gives_the_value() {
        let bytes = postcard::to_allocvec(&sample()).unwrap();
        let words = words_of(&bytes);
        let mut buf = vec![0u8; 64];
        assert_eq!(
            load_bytes((&words).into(), bytes.len(), &mut buf),
            bytes.len()
        );
        let m = copy_and_decode((&words).into(), bytes.len(), &mut buf).unwrap();
        assert_eq!(m, sample());
    }

    #[test]
    fn truncated_and_garbage_input_is_an_error_not_a_panic() {
        let bytes = postcard::to_allocvec(&sample()).unwrap();
        let words = words_of(&bytes);
        let mut buf = vec![0u8; 64];
        for len in 0..bytes.len() {
            let r = copy_and_decode((&words).into(), len, &mut buf);
            assert!(r.is_err(), "len {len} decoded");
        }
        // All 0xff: varints never end, string length huge.
        let junk = words_of(&[0xff; 40]);
        assert!(copy_and_decode((&junk).into(), 40, &mut buf).is_err());
        // A length larger than the words given is clamped, not trusted.
        assert!(copy_and_decode(words[..1].into(), 1 << 20, &mut buf).is_err());
    }

    #[test]
    fn a_copy_buffer_too_small_is_an_error() {
        let bytes = postcard::to_allocvec(&sample()).unwrap();
        let words = words_of(&bytes);
        let mut buf = vec![0u8; 2];
        assert!(copy_and_decode((&words).into(), bytes.len(), &mut buf).is_err());
    }

    #[test]
    fn load_bytes_copies_whole_words_and_the_tail_and_stays_in_bounds() {
        let bytes: Vec<u8> = (1..=13u8).collect();
        let words = words_of(&bytes);
        for len in 0..=16usize {
            let mut out = [0u8; 16];
            let n = load_bytes((&words).into(), len, &mut out);
            assert_eq!(n, len.min(16), "len {len}");
            let expect: Vec<u8> = (1..=16u8).map(|b| if b <= 13 { b } else { 0 }).collect();
            assert_eq!(&out[..n], &expect[..n], "len {len}");
            assert!(out[n..].iter().all(|&b| b == 0), "wrote past {n}");
        }
        let mut small = [0u8; 5];
        assert_eq!(load_bytes((&words).into(), 13, &mut small), 5);
        assert_eq!(small, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn copy_from_words_overwrites_a_reused_buffer_of_any_old_length() {
        // A poller reuses one Vec: whatever it held before (longer,
        // shorter, the same length), it ends up holding exactly the frame.
        let bytes: Vec<u8> = (1..=13u8).collect();
        let words = words_of(&bytes);
        for old_len in [0usize, 3, 8, 13, 16, 40] {
            for len in 0..=16usize {
                let mut out = vec![0xee_u8; old_len];
                crate::layout::copy_from_words((&words).into(), len, &mut out);
                let mut expect: Vec<u8> = bytes.clone();
                expect.resize(16, 0);
                expect.truncate(len.min(16));
                assert_eq!(out, expect, "old length {old_len}, len {len}");
            }
        }
    }

    /// `load_array` gives what `copy_from_words` gives, cut or zero-filled
    /// to `N`: every buffer size from 0 to 13 bytes (whole words and each
    /// tail) and 64, every frame length from 0 to 20 bytes and 64 and 70,
    /// from words that hold the frame and from too few words; a buffer
    /// that held an earlier frame keeps none of it.
    #[test]
    fn load_array_reads_what_copy_from_words_reads_cut_or_zeroed_to_n() {
        fn check<const N: usize>() {
            let bytes: Vec<u8> = (0..80u8)
                .map(|b| b.wrapping_mul(37).wrapping_add(1))
                .collect();
            for nwords in [0usize, 2, N.div_ceil(4), 20] {
                let words = words_of(&bytes[..4 * nwords]);
                for len in (0..=20).chain([64, 70]) {
                    let mut out = [0xee_u8; N];
                    let n = load_array((&words).into(), len, &mut out);
                    let mut reference = Vec::new();
                    crate::layout::copy_from_words((&words).into(), len, &mut reference);
                    reference.truncate(N);
                    assert_eq!(n, reference.len(), "N {N}, {nwords} words, len {len}");
                    reference.resize(N, 0);
                    assert_eq!(out[..], reference[..], "N {N}, {nwords} words, len {len}");
                }
            }
        }
        every_size!(check);
    }

    #[cfg(feature = "writer")]
    #[test]
    fn store_bytes_matches_little_endian_words_for_every_length() {
        for len in 0..=13usize {
            let bytes: Vec<u8> = (0..len as u8)
                .map(|b| b.wrapping_mul(37).wrapping_add(1))
                .collect();
            let words: Vec<AtomicU32> = (0..4).map(|_| AtomicU32::new(0xffff_ffff)).collect();
            store_bytes(&words, &bytes);
            let mut out = Vec::new();
            crate::layout::copy_from_words((&words).into(), len, &mut out);
            assert_eq!(out, bytes, "len {len}");
        }
    }

    /// Every length from 0 to 13 bytes (whole words and each tail), and
    /// 64: the words hold what `store_bytes` leaves, the padding included,
    /// and the words past the frame are untouched.
    #[cfg(feature = "writer")]
    #[test]
    fn store_array_leaves_the_words_store_bytes_leaves() {
        fn check<const N: usize>() {
            let mut bytes = [0u8; N];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(37).wrapping_add(1);
            }
            let fresh =
                || -> Vec<AtomicU32> { (0..20).map(|_| AtomicU32::new(0xa5a5_a5a5)).collect() };
            let (a, b) = (fresh(), fresh());
            store_array(&a, &bytes);
            store_bytes(&b, &bytes);
            let load = |w: &[AtomicU32]| -> Vec<u32> {
                w.iter().map(|w| w.load(Ordering::Relaxed)).collect()
            };
            assert_eq!(load(&a), load(&b), "N = {N}");
            assert!(
                load(&a)[N.div_ceil(4)..].iter().all(|&w| w == 0xa5a5_a5a5),
                "N = {N}"
            );
            let mut out = Vec::new();
            crate::layout::copy_from_words((&a).into(), N, &mut out);
            assert_eq!(out, bytes, "N = {N}");
        }
        every_size!(check);
    }

    /// Too few words for the frame: nothing is stored, nothing panics.
    #[cfg(feature = "writer")]
    #[test]
    fn store_array_into_too_few_words_stores_nothing() {
        let words: Vec<AtomicU32> = (0..3).map(|_| AtomicU32::new(7)).collect();
        store_array(&words, &[0xff_u8; 13]);
        assert!(words.iter().all(|w| w.load(Ordering::Relaxed) == 7));
    }

    #[cfg(feature = "writer")]
    #[test]
    fn encoded_stored_copied_and_decoded_round_trips_and_respects_capacity() {
        let words: Vec<AtomicU32> = (0..16).map(|_| AtomicU32::new(0xdead_beef)).collect();
        let mut frame = [0u8; 64];
        let n = crate::encode::to_slice(&sample(), &mut frame)
            .unwrap()
            .len();
        assert_eq!(n, postcard::to_allocvec(&sample()).unwrap().len());
        store_bytes(&words, &frame[..n]);
        let mut buf = vec![0u8; 64];
        let m = copy_and_decode((&words).into(), n, &mut buf).unwrap();
        assert_eq!(m, sample());
        let e = crate::encode::to_slice(&sample(), &mut frame[..5]).map(|s| s.len());
        assert_eq!(e, Err(postcard::Error::SerializeBufferFull));
    }
}

//! postcard flavors that read and write frame bytes in place, through the
//! slot's 32-bit atomic words.
//!
//! [`AtomicReader`] decodes a frame straight out of the shared slot: each
//! data word is loaded once with a relaxed atomic load (the seqlock's data
//! loads), and bytes are handed to postcard's deserializer one at a time.
//! There is no intermediate copy of the frame. The only bytes copied are
//! those postcard must hand out as a slice (the contents of strings and byte
//! arrays), which go into a caller-owned scratch buffer: a `&[u8]` into live
//! shared memory would be unsound (see `docs/LAYOUT.md`, "Soundness").
//!
//! Torn input is harmless: the reader never reads past `len` bytes or the
//! slot's words, every failure is an `Err`, and the seqlock check afterwards
//! discards whatever was decoded from a torn frame.

#[cfg(feature = "writer")]
use core::sync::atomic::{AtomicU32, Ordering};

use postcard::de_flavors::Flavor as DeFlavor;

use crate::view::ReadWords;

/// A postcard deserializer flavor over a slot's data words.
#[derive(Debug)]
pub struct AtomicReader<'de> {
    words: ReadWords<'de>,
    len: usize,
    pos: usize,
    word: u32,
    scratch: &'de mut [u8],
    temp: [u8; 16],
}

impl<'de> AtomicReader<'de> {
    /// Read at most `len` bytes (clamped to the words given) from `words`,
    /// using `scratch` for string and byte-array contents.
    pub fn new(words: ReadWords<'de>, len: usize, scratch: &'de mut [u8]) -> Self {
        AtomicReader {
            words,
            len: len.min(words.len() * 4),
            pos: 0,
            word: 0,
            scratch,
            temp: [0; 16],
        }
    }

    #[inline]
    fn next_byte(&mut self) -> postcard::Result<u8> {
        if self.pos >= self.len {
            return Err(postcard::Error::DeserializeUnexpectedEnd);
        }
        let shift = self.pos % 4;
        if shift == 0 {
            let w = self
                .words
                .get(self.pos / 4)
                .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
            // Relaxed: a seqlock data load; validated by `seqlock::read_end`.
            self.word = w.load();
        }
        self.pos += 1;
        Ok((self.word >> (8 * shift)) as u8)
    }
}

impl<'de> DeFlavor<'de> for AtomicReader<'de> {
    type Remainder = usize;
    type Source = ();

    #[inline]
    fn pop(&mut self) -> postcard::Result<u8> {
        self.next_byte()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len - self.pos)
    }

    fn try_take_n(&mut self, ct: usize) -> postcard::Result<&'de [u8]> {
        if ct > self.len - self.pos || ct > self.scratch.len() {
            return Err(postcard::Error::DeserializeUnexpectedEnd);
        }
        let (head, tail) = core::mem::take(&mut self.scratch).split_at_mut(ct);
        for b in head.iter_mut() {
            *b = self.next_byte()?;
        }
        self.scratch = tail;
        Ok(head)
    }

    fn try_take_n_temp<'a>(&'a mut self, ct: usize) -> postcard::Result<&'a [u8]>
    where
        'de: 'a,
    {
        if ct <= self.temp.len() {
            if ct > self.len - self.pos {
                return Err(postcard::Error::DeserializeUnexpectedEnd);
            }
            for i in 0..ct {
                self.temp[i] = self.next_byte()?;
            }
            Ok(&self.temp[..ct])
        } else {
            self.try_take_n(ct)
        }
    }

    /// The number of bytes consumed.
    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.pos)
    }
}

/// Copy the first `len` bytes of `words` (little-endian 32-bit words,
/// relaxed loads: the seqlock's data loads) into `out`, a word at a time.
/// Copies at most `words.len() * 4` and `out.len()` bytes; returns how many
/// it copied. This is the whole of a read inside the seqlock window: the
/// copy is private memory afterwards, decoded only once the read validated.
#[inline]
pub fn load_bytes(words: ReadWords<'_>, len: usize, out: &mut [u8]) -> usize {
    let n = len.min(words.len() * 4).min(out.len());
    let (head, tail) = out[..n].split_at_mut(n & !3);
    let mut it = words.iter();
    for (c, w) in head.chunks_exact_mut(4).zip(&mut it) {
        c.copy_from_slice(&w.load().to_le_bytes());
    }
    if !tail.is_empty() {
        if let Some(w) = it.next() {
            tail.copy_from_slice(&w.load().to_le_bytes()[..tail.len()]);
        }
    }
    n
}

/// Decode a `T` from `len` bytes of `words`, byte by byte in place.
/// Returns the value and the number of bytes it used. Readers copy the
/// frame with [`load_bytes`] and decode the copy instead (faster: postcard
/// on a slice, and the seqlock window holds only the copy); this stays for
/// tools that decode a live slot without a buffer.
pub fn decode_in_place<T: serde::de::DeserializeOwned>(
    words: ReadWords<'_>,
    len: usize,
    scratch: &mut [u8],
) -> postcard::Result<(T, usize)> {
    let mut de = postcard::Deserializer::from_flavor(AtomicReader::new(words, len, scratch));
    let v = T::deserialize(&mut de)?;
    let used = de.finalize()?;
    Ok((v, used))
}

/// A postcard serializer flavor that writes straight into a slot's data
/// words with relaxed atomic stores (the seqlock's data stores).
#[cfg(feature = "writer")]
#[derive(Debug)]
pub struct AtomicWriter<'a> {
    words: &'a [AtomicU32],
    cap: usize,
    pos: usize,
    word: u32,
}

#[cfg(feature = "writer")]
impl<'a> AtomicWriter<'a> {
    /// Write at most `cap` bytes (clamped to the words given) into `words`.
    pub fn new(words: &'a [AtomicU32], cap: usize) -> Self {
        AtomicWriter {
            words,
            cap: cap.min(words.len() * 4),
            pos: 0,
            word: 0,
        }
    }
}

#[cfg(feature = "writer")]
impl postcard::ser_flavors::Flavor for AtomicWriter<'_> {
    /// The number of bytes written.
    type Output = usize;

    #[inline]
    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        if self.pos >= self.cap {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.word |= u32::from(b) << (8 * (self.pos % 4));
        self.pos += 1;
        if self.pos % 4 == 0 {
            // Relaxed: a seqlock data store, published by `write_end`.
            self.words[self.pos / 4 - 1].store(self.word, Ordering::Relaxed);
            self.word = 0;
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        if self.pos % 4 != 0 {
            self.words[self.pos / 4].store(self.word, Ordering::Relaxed);
        }
        Ok(self.pos)
    }
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

    #[test]
    fn decodes_in_place_like_postcard() {
        let bytes = postcard::to_allocvec(&sample()).unwrap();
        let words = words_of(&bytes);
        let mut scratch = vec![0u8; 64];
        let (m, used): (Msg, usize) =
            decode_in_place((&words).into(), bytes.len(), &mut scratch).unwrap();
        assert_eq!(m, sample());
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn truncated_and_garbage_input_is_an_error_not_a_panic() {
        let bytes = postcard::to_allocvec(&sample()).unwrap();
        let words = words_of(&bytes);
        let mut scratch = vec![0u8; 64];
        for len in 0..bytes.len() {
            let r: postcard::Result<(Msg, usize)> =
                decode_in_place((&words).into(), len, &mut scratch);
            assert!(r.is_err(), "len {len} decoded");
        }
        // All 0xff: varints never end, string length huge.
        let junk = words_of(&[0xff; 40]);
        let r: postcard::Result<(Msg, usize)> = decode_in_place((&junk).into(), 40, &mut scratch);
        assert!(r.is_err());
        // A length larger than the words given is clamped, not trusted.
        let r: postcard::Result<(Msg, usize)> =
            decode_in_place(words[..1].into(), 1 << 20, &mut scratch);
        assert!(r.is_err());
    }

    #[test]
    fn scratch_too_small_is_an_error() {
        let bytes = postcard::to_allocvec(&sample()).unwrap();
        let words = words_of(&bytes);
        let mut scratch = vec![0u8; 2];
        let r: postcard::Result<(Msg, usize)> =
            decode_in_place((&words).into(), bytes.len(), &mut scratch);
        assert!(r.is_err());
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

    #[cfg(feature = "writer")]
    #[test]
    fn writer_round_trips_and_respects_capacity() {
        let words: Vec<AtomicU32> = (0..16).map(|_| AtomicU32::new(0xdead_beef)).collect();
        let n = postcard::serialize_with_flavor(&sample(), AtomicWriter::new(&words, 64)).unwrap();
        assert_eq!(n, postcard::to_allocvec(&sample()).unwrap().len());
        let mut scratch = vec![0u8; 64];
        let (m, _): (Msg, usize) = decode_in_place((&words).into(), n, &mut scratch).unwrap();
        assert_eq!(m, sample());
        let e = postcard::serialize_with_flavor(&sample(), AtomicWriter::new(&words, 5));
        assert_eq!(e, Err(postcard::Error::SerializeBufferFull));
    }
}

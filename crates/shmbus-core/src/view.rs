//! Load-only views of shared memory: what readers get.
//!
//! A subscriber maps a segment with `SHM_RDONLY`; any store through that
//! mapping faults (SIGSEGV). These types make such a store impossible to
//! write: they wrap the atomics of the mapping privately and expose only
//! loads, so a store through a subscriber's view does not compile:
//!
//! ```compile_fail
//! # fn f(seg: &shmbus_core::Segment) {
//! seg.notify_word().store(1, core::sync::atomic::Ordering::Relaxed);
//! # }
//! ```
//!
//! ```compile_fail
//! # fn f(seg: &shmbus_core::Segment) {
//! seg.header().generation().store(1);
//! # }
//! ```
//!
//! Only the `writer` feature (which `shmbus-pub` enables) compiles a
//! writable view (`sys::WriteAttachment`, `layout::RawHeader`).
//!
//! ## Orderings
//! Rust promises that atomic loads work on read-only memory only for
//! `Relaxed` loads no wider than the native word (`core::sync::atomic`,
//! "Atomic accesses to read-only memory"). So every load here is `Relaxed`;
//! [`ReadWord32::load_acquire`] is a `Relaxed` load followed by
//! `fence(Acquire)`, which gives the same synchronisation as an `Acquire`
//! load (the fence pairs with the writer's Release store that the load
//! reads from) and compiles to the same single `dmb ish` on ARMv7 and to
//! nothing extra on x86_64.
//!
//! [`ReadWord64`] loads a 64-bit header field (generation, timestamps). On
//! 64-bit targets that is the native word. On ARMv7 it is `ldrexd`, a load
//! that needs only read permission: `docs/LAYOUT.md` §9 says why that is
//! sound on a read-only mapping.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// A load-only 32-bit word of shared memory.
#[derive(Debug, Clone, Copy)]
pub struct ReadWord32<'a> {
    w: &'a AtomicU32,
}

impl<'a> ReadWord32<'a> {
    /// A `Relaxed` load.
    #[inline]
    pub fn load(&self) -> u32 {
        self.w.load(Ordering::Relaxed)
    }

    /// A `Relaxed` load then `fence(Acquire)`: synchronises with the Release
    /// store (or Release fence before a store) whose value it reads.
    #[inline]
    pub fn load_acquire(&self) -> u32 {
        let v = self.w.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        v
    }

    /// The word's address, for `FUTEX_WAIT` (which only reads it).
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn as_ptr(&self) -> *const u32 {
        self.w.as_ptr()
    }
}

impl<'a> From<&'a AtomicU32> for ReadWord32<'a> {
    /// A load-only view of a word the caller may also write: narrowing
    /// access is always allowed.
    #[inline]
    fn from(w: &'a AtomicU32) -> Self {
        ReadWord32 { w }
    }
}

/// A load-only 64-bit field of shared memory (8-byte aligned).
#[derive(Debug, Clone, Copy)]
pub struct ReadWord64<'a> {
    w: &'a AtomicU64,
}

impl<'a> ReadWord64<'a> {
    /// A `Relaxed` load.
    #[inline]
    pub fn load(&self) -> u64 {
        self.w.load(Ordering::Relaxed)
    }

    /// A `Relaxed` load then `fence(Acquire)`; see [`ReadWord32::load_acquire`].
    #[inline]
    pub fn load_acquire(&self) -> u64 {
        let v = self.w.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        v
    }
}

impl<'a> From<&'a AtomicU64> for ReadWord64<'a> {
    #[inline]
    fn from(w: &'a AtomicU64) -> Self {
        ReadWord64 { w }
    }
}

/// Load-only consecutive 32-bit words: a slot, a frame's data, the schema.
#[derive(Debug, Clone, Copy)]
pub struct ReadWords<'a> {
    w: &'a [AtomicU32],
}

impl<'a> ReadWords<'a> {
    /// Number of words.
    #[inline]
    pub fn len(&self) -> usize {
        self.w.len()
    }

    /// True if there are no words.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.w.is_empty()
    }

    /// Word `i`, or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<ReadWord32<'a>> {
        self.w.get(i).map(|w| ReadWord32 { w })
    }

    /// A `Relaxed` load of word `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`, as slice indexing does.
    #[inline]
    pub fn load(&self, i: usize) -> u32 {
        self.w[i].load(Ordering::Relaxed)
    }

    /// Words `start..end`, or `None` if the range is not inside.
    #[inline]
    pub fn range(&self, start: usize, end: usize) -> Option<ReadWords<'a>> {
        self.w.get(start..end).map(|w| ReadWords { w })
    }

    /// Every word, in order.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = ReadWord32<'a>> + 'a {
        self.w.iter().map(|w| ReadWord32 { w })
    }
}

impl<'a> From<&'a [AtomicU32]> for ReadWords<'a> {
    #[inline]
    fn from(w: &'a [AtomicU32]) -> Self {
        ReadWords { w }
    }
}

impl<'a, const N: usize> From<&'a [AtomicU32; N]> for ReadWords<'a> {
    #[inline]
    fn from(w: &'a [AtomicU32; N]) -> Self {
        ReadWords { w: &w[..] }
    }
}

impl<'a> From<&'a Vec<AtomicU32>> for ReadWords<'a> {
    #[inline]
    fn from(w: &'a Vec<AtomicU32>) -> Self {
        ReadWords { w: &w[..] }
    }
}

#[cfg(not(loom))]
pub use header::ReadHeader;

#[cfg(not(loom))]
mod header {
    use super::{ReadWord32, ReadWord64, ReadWords};
    use crate::layout::RawHeader;

    /// A load-only view of a segment's 256-byte header
    /// ([`RawHeader`], `docs/LAYOUT.md` §3). Each method names one field.
    #[derive(Debug, Clone, Copy)]
    pub struct ReadHeader<'a> {
        h: &'a RawHeader,
    }

    impl<'a> From<&'a RawHeader> for ReadHeader<'a> {
        #[inline]
        fn from(h: &'a RawHeader) -> Self {
            ReadHeader { h }
        }
    }

    macro_rules! fields {
        ($($(#[$doc:meta])* $name:ident: $view:ident;)*) => {
            impl<'a> ReadHeader<'a> {
                $(
                    $(#[$doc])*
                    #[inline]
                    pub fn $name(&self) -> $view<'a> {
                        $view::from(&self.h.$name)
                    }
                )*
            }
        };
    }

    fields! {
        /// Offset 0: `MAGIC_U64`, zero while the creator initialises.
        magic: ReadWord64;
        /// Offset 8: the layout version.
        layout_version: ReadWord32;
        /// Offset 12: offset of slot 0.
        header_size: ReadWord32;
        /// Offset 16: number of slots.
        slot_count: ReadWord32;
        /// Offset 20: bytes from one slot to the next.
        slot_stride: ReadWord32;
        /// Offset 24: maximum frame length.
        frame_capacity: ReadWord32;
        /// Offset 28: flag bits.
        flags: ReadWord32;
        /// Offset 32: total size the header claims.
        segment_size: ReadWord64;
        /// Offset 40: FNV-1a 64 of the schema bytes.
        schema_fingerprint: ReadWord64;
        /// Offset 48: offset of the schema bytes.
        schema_offset: ReadWord32;
        /// Offset 52: length of the schema bytes.
        schema_len: ReadWord32;
        /// Offset 56: length of the topic name.
        name_len: ReadWord32;
        /// Offset 64: the topic name, 16 words.
        name: ReadWords;
        /// Offset 128: `CLOCK_REALTIME` at creation.
        created_real_ns: ReadWord64;
        /// Offset 192: generation of the newest complete frame.
        generation: ReadWord64;
        /// Offset 200: low 32 bits of the generation (futex word).
        notify: ReadWord32;
        /// Offset 204: pid of the publisher that last opened the topic.
        publisher_pid: ReadWord32;
        /// Offset 208: number of publisher sessions.
        publisher_epoch: ReadWord32;
        /// Offset 212: the publisher's waiter segment, shmid + 1 (0: none).
        waiter_ref: ReadWord32;
        /// Offset 216: `CLOCK_MONOTONIC` of the newest publish.
        last_publish_mono_ns: ReadWord64;
        /// Offset 224: `CLOCK_REALTIME` of the newest publish.
        last_publish_real_ns: ReadWord64;
        /// Offset 232: `CLOCK_REALTIME` when the current publisher opened.
        publisher_start_real_ns: ReadWord64;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn views_load_what_was_stored() {
        let words: Vec<AtomicU32> = (0..4).map(AtomicU32::new).collect();
        let v = ReadWords::from(&words);
        assert_eq!(v.len(), 4);
        assert_eq!(v.load(3), 3);
        assert_eq!(v.get(4).map(|w| w.load()), None);
        assert_eq!(v.range(1, 3).map(|r| r.len()), Some(2));
        assert!(v.range(3, 5).is_none());
        assert_eq!(v.iter().map(|w| w.load()).sum::<u32>(), 6);
        words[2].store(9, Ordering::Relaxed);
        assert_eq!(v.get(2).unwrap().load_acquire(), 9);
        let big = AtomicU64::new(u64::MAX - 1);
        assert_eq!(ReadWord64::from(&big).load_acquire(), u64::MAX - 1);
    }
}

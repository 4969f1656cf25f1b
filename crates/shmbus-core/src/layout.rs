//! The segment layout, version 1. `docs/LAYOUT.md` is the normative text;
//! this module mirrors it with `#[repr(C)]` structs of atomics and
//! compile-time offset checks.
//!
//! A segment is a [`RawHeader`] (256 bytes), the schema bytes, padding up to
//! `header_size` (a multiple of 64), then `slot_count` slots of `slot_stride`
//! bytes. Each slot is a [`RawSlot`] (32 bytes) followed by the frame bytes.
//! All integers are little-endian. Every field is accessed atomically, because
//! other processes read and write the segment concurrently.
//!
//! Nothing here is trusted when read back: [`HeaderInfo::read`] copies the
//! immutable header fields into a local value and validates every size and
//! offset against the kernel's segment size before anything uses them.

use core::mem::{align_of, offset_of, size_of};
use core::sync::atomic::{AtomicU32, AtomicU64};

use crate::error::OpenError;
use crate::sys::Attachment;
use crate::view::ReadWords;

/// The first 8 bytes of every shmbus segment: `\x89SHMBUS\n`.
///
/// The high-bit first byte and the newline catch 7-bit and text-mode
/// mangling, as PNG's signature does; read as a little-endian u64 on a
/// big-endian machine it does not match, so a wrong byte order is refused.
pub const MAGIC: [u8; 8] = *b"\x89SHMBUS\n";
/// [`MAGIC`] as the little-endian u64 stored at offset 0.
pub const MAGIC_U64: u64 = u64::from_le_bytes(MAGIC);
/// The layout version this code reads and writes.
pub const LAYOUT_VERSION: u32 = 1;
/// Size of [`RawHeader`]; the schema starts here.
pub const HEADER_FIXED_SIZE: usize = 256;
/// Size of [`RawSlot`]; the frame bytes start here within a slot.
pub const SLOT_HEADER_SIZE: usize = 32;
/// Maximum topic name length in bytes (UTF-8).
pub const MAX_NAME_LEN: usize = 63;
/// Maximum schema length in bytes.
pub const MAX_SCHEMA_LEN: usize = 32 * 1024;
/// Maximum frame capacity in bytes.
pub const MAX_FRAME_CAPACITY: usize = 16 * 1024 * 1024;
/// Maximum number of slots in a ring.
pub const MAX_SLOTS: u32 = 1 << 16;
/// `flags` bit 0: the publisher calls `FUTEX_WAKE` on `notify` after every
/// publish, so subscribers may sleep on it.
pub const FLAG_NOTIFY: u32 = 1;
/// `flags` bit 1 (only with [`FLAG_NOTIFY`]): waiter registration. The
/// publisher wakes sleepers only when the waiter word of its waiter segment
/// ([`RawWaiter`], named by the header's `waiter_ref`) shows that someone
/// registered; a subscriber registers before every sleep. With `waiter_ref`
/// 0 the publisher wakes on every publish, as with [`FLAG_NOTIFY`] alone.
/// `docs/LAYOUT.md` section 7.4.
pub const FLAG_WAITERS: u32 = 2;
/// Every flag bit this version knows.
pub const KNOWN_FLAGS: u32 = FLAG_NOTIFY | FLAG_WAITERS;

/// The fixed part of the header: 256 bytes at offset 0.
///
/// Fields up to `_reserved1` are written once by the creating publisher
/// before it stores `magic` (Release); they never change afterwards. The live
/// block from `generation` on is updated by the publisher on every publish.
#[repr(C)]
#[derive(Debug)]
pub struct RawHeader {
    /// [`MAGIC_U64`]; zero while the creator is still initialising.
    pub magic: AtomicU64,
    /// [`LAYOUT_VERSION`].
    pub layout_version: AtomicU32,
    /// Offset of slot 0; a multiple of 64.
    pub header_size: AtomicU32,
    /// Number of slots; a power of two, 1..=65536.
    pub slot_count: AtomicU32,
    /// Bytes from one slot to the next; a multiple of 64.
    pub slot_stride: AtomicU32,
    /// Maximum frame length in bytes.
    pub frame_capacity: AtomicU32,
    /// Bit flags, see [`FLAG_NOTIFY`]; unknown bits must be zero.
    pub flags: AtomicU32,
    /// `header_size + slot_count * slot_stride`.
    pub segment_size: AtomicU64,
    /// FNV-1a 64 of the schema bytes.
    pub schema_fingerprint: AtomicU64,
    /// Offset of the schema bytes: always 256 in version 1.
    pub schema_offset: AtomicU32,
    /// Length of the schema bytes.
    pub schema_len: AtomicU32,
    /// Length of the topic name in bytes.
    pub name_len: AtomicU32,
    /// Zero.
    pub _reserved0: AtomicU32,
    /// The topic name, UTF-8, zero-padded to 64 bytes.
    pub name: [AtomicU32; 16],
    /// `CLOCK_REALTIME` at creation, ns since the epoch.
    pub created_real_ns: AtomicU64,
    /// Zero.
    pub _reserved1: [AtomicU64; 7],
    /// Generation (publish counter) of the newest complete frame; 0 = none.
    /// Stored with Release after the slot's sequence is even again.
    pub generation: AtomicU64,
    /// The low 32 bits of `generation`, stored with Release after it: the
    /// word subscribers poll (one load) and sleep on (futex).
    pub notify: AtomicU32,
    /// Pid of the publisher that last opened the topic (informational: pids
    /// are reused; liveness comes from the publisher lock).
    pub publisher_pid: AtomicU32,
    /// Number of publisher sessions that have opened this segment.
    pub publisher_epoch: AtomicU32,
    /// The current publisher's waiter segment: its shmid + 1, or 0 if it has
    /// none (then it wakes on every publish). Written at publisher open,
    /// before the session's first publish. Only meaningful with
    /// [`FLAG_WAITERS`].
    pub waiter_ref: AtomicU32,
    /// `CLOCK_MONOTONIC` of the newest publish, ns.
    pub last_publish_mono_ns: AtomicU64,
    /// `CLOCK_REALTIME` of the newest publish, ns since the epoch.
    pub last_publish_real_ns: AtomicU64,
    /// `CLOCK_REALTIME` when the current publisher opened the topic.
    pub publisher_start_real_ns: AtomicU64,
    /// Zero.
    pub _reserved3: [AtomicU64; 2],
}

/// The 32-byte head of every slot; the frame bytes follow it.
///
/// `seq` is the slot's seqlock word: odd while the publisher writes the slot.
/// Every other field and the frame bytes are data words of the seqlock:
/// valid only if `seq` was even and unchanged around the read.
#[repr(C)]
#[derive(Debug)]
pub struct RawSlot {
    /// Sequence word: even = stable, odd = write in progress.
    pub seq: AtomicU32,
    /// Frame length in bytes, <= `frame_capacity`.
    pub len: AtomicU32,
    /// Generation of the frame held, low 32 bits; 0 (with `gen_hi` 0) = empty.
    pub gen_lo: AtomicU32,
    /// Generation, high 32 bits.
    pub gen_hi: AtomicU32,
    /// `CLOCK_MONOTONIC` at publish, ns, low 32 bits.
    pub mono_lo: AtomicU32,
    /// High 32 bits.
    pub mono_hi: AtomicU32,
    /// `CLOCK_REALTIME` at publish, ns since the epoch, low 32 bits.
    pub real_lo: AtomicU32,
    /// High 32 bits.
    pub real_hi: AtomicU32,
}

// The layout is a spec: any change to these numbers is a new LAYOUT_VERSION.
const _: () = {
    assert!(size_of::<RawHeader>() == HEADER_FIXED_SIZE);
    assert!(align_of::<RawHeader>() == 8);
    assert!(offset_of!(RawHeader, magic) == 0);
    assert!(offset_of!(RawHeader, layout_version) == 8);
    assert!(offset_of!(RawHeader, header_size) == 12);
    assert!(offset_of!(RawHeader, slot_count) == 16);
    assert!(offset_of!(RawHeader, slot_stride) == 20);
    assert!(offset_of!(RawHeader, frame_capacity) == 24);
    assert!(offset_of!(RawHeader, flags) == 28);
    assert!(offset_of!(RawHeader, segment_size) == 32);
    assert!(offset_of!(RawHeader, schema_fingerprint) == 40);
    assert!(offset_of!(RawHeader, schema_offset) == 48);
    assert!(offset_of!(RawHeader, schema_len) == 52);
    assert!(offset_of!(RawHeader, name_len) == 56);
    assert!(offset_of!(RawHeader, name) == 64);
    assert!(offset_of!(RawHeader, created_real_ns) == 128);
    assert!(offset_of!(RawHeader, generation) == 192);
    assert!(offset_of!(RawHeader, notify) == 200);
    assert!(offset_of!(RawHeader, publisher_pid) == 204);
    assert!(offset_of!(RawHeader, publisher_epoch) == 208);
    assert!(offset_of!(RawHeader, waiter_ref) == 212);
    assert!(offset_of!(RawHeader, last_publish_mono_ns) == 216);
    assert!(offset_of!(RawHeader, last_publish_real_ns) == 224);
    assert!(offset_of!(RawHeader, publisher_start_real_ns) == 232);
    assert!(size_of::<RawSlot>() == SLOT_HEADER_SIZE);
    assert!(align_of::<RawSlot>() == 4);
    assert!(offset_of!(RawSlot, seq) == 0);
    assert!(offset_of!(RawSlot, len) == 4);
    assert!(offset_of!(RawSlot, gen_lo) == 8);
    assert!(offset_of!(RawSlot, mono_lo) == 16);
    assert!(offset_of!(RawSlot, real_lo) == 24);
};

/// The first 8 bytes of a waiter segment: `\x89SHMWTR\n`.
pub const WAITER_MAGIC: [u8; 8] = *b"\x89SHMWTR\n";
/// [`WAITER_MAGIC`] as the little-endian u64 stored at offset 0.
pub const WAITER_MAGIC_U64: u64 = u64::from_le_bytes(WAITER_MAGIC);
/// Size of a waiter segment ([`RawWaiter`]).
pub const WAITER_SEGMENT_SIZE: usize = 128;

/// A topic's waiter segment (`docs/LAYOUT.md` section 7.4): 128 bytes,
/// created by the publisher with `IPC_PRIVATE` (no key) and marked removed at
/// once, so the kernel frees it when the last process detaches. Every
/// process that may read the topic may write it; the only store a
/// subscriber makes is `fetch_add(1)` on `waiters` before it sleeps.
#[repr(C)]
#[derive(Debug)]
pub struct RawWaiter {
    /// [`WAITER_MAGIC_U64`], stored (Release) after the other fields.
    pub magic: AtomicU64,
    /// [`LAYOUT_VERSION`].
    pub layout_version: AtomicU32,
    /// The topic's key (as `u32`), informational.
    pub topic_key: AtomicU32,
    /// The shmid of the topic segment this waiter segment serves.
    pub topic_shmid: AtomicU32,
    /// Zero.
    pub _reserved0: [AtomicU32; 11],
    /// The waiter word: a ticket counter. Subscribers `fetch_add(1)` before
    /// every sleep; the publisher only loads it. Alone on its cache line.
    pub waiters: AtomicU32,
    /// Zero.
    pub _reserved1: [AtomicU32; 15],
}

const _: () = {
    assert!(size_of::<RawWaiter>() == WAITER_SEGMENT_SIZE);
    assert!(align_of::<RawWaiter>() == 8);
    assert!(offset_of!(RawWaiter, magic) == 0);
    assert!(offset_of!(RawWaiter, layout_version) == 8);
    assert!(offset_of!(RawWaiter, topic_key) == 12);
    assert!(offset_of!(RawWaiter, topic_shmid) == 16);
    assert!(offset_of!(RawWaiter, waiters) == 64);
};

/// The mode of a topic's waiter segment: read and write for every class
/// (owner, group, others) that may read the topic (0644 -> 0666, 0640 ->
/// 0660, 0600 -> 0600). Whoever may read the topic may register as a
/// waiter; nobody else may touch the waiter word.
pub const fn waiter_mode(topic_mode: u32) -> u32 {
    let r = topic_mode & 0o444;
    r | (r >> 1)
}

/// Round `n` up to a multiple of `to` (a power of two).
pub const fn align_up(n: usize, to: usize) -> usize {
    (n + to - 1) & !(to - 1)
}

/// The sizes of a segment, computed by its creator or checked by a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Offset of slot 0.
    pub header_size: usize,
    /// Number of slots (power of two).
    pub slot_count: u32,
    /// Bytes per slot.
    pub slot_stride: usize,
    /// Maximum frame length.
    pub frame_capacity: usize,
    /// Total bytes.
    pub segment_size: usize,
}

impl Geometry {
    /// The geometry for a topic with this schema length, slot count and
    /// frame capacity, or `None` if a limit of the layout is exceeded.
    pub fn new(schema_len: usize, slot_count: u32, frame_capacity: usize) -> Option<Geometry> {
        if schema_len > MAX_SCHEMA_LEN
            || !slot_count.is_power_of_two()
            || slot_count > MAX_SLOTS
            || frame_capacity == 0
            || frame_capacity > MAX_FRAME_CAPACITY
        {
            return None;
        }
        let header_size = align_up(HEADER_FIXED_SIZE + schema_len, 64);
        let slot_stride = align_up(SLOT_HEADER_SIZE + frame_capacity, 64);
        let segment_size = (slot_count as usize)
            .checked_mul(slot_stride)?
            .checked_add(header_size)?;
        Some(Geometry {
            header_size,
            slot_count,
            slot_stride,
            frame_capacity,
            segment_size,
        })
    }

    /// Why [`Geometry::new`] refuses these sizes, as a reason that names the
    /// limit and what to change; `None` when it does not. A topic
    /// description's slot count is checked before (`Topic::validate`).
    pub fn refusal(schema_len: usize, slot_count: u32, frame_capacity: usize) -> Option<String> {
        if Geometry::new(schema_len, slot_count, frame_capacity).is_some() {
            return None;
        }
        Some(if frame_capacity == 0 {
            "frame capacity 0: a topic's frames hold at least 1 byte; give the length of the longest frame".to_string()
        } else if frame_capacity > MAX_FRAME_CAPACITY {
            format!(
                "frames of up to {frame_capacity} bytes exceed the layout's {MAX_FRAME_CAPACITY} bytes (16 MiB) per frame: declare smaller capacities in the message type (heapless::String<N>, heapless::Vec<T, N>, shorter arrays)"
            )
        } else if schema_len > MAX_SCHEMA_LEN {
            format!(
                "the message type's schema is {schema_len} bytes, over the layout's {MAX_SCHEMA_LEN}: use a type with fewer fields, variants and array elements (the schema lists each element of a [T; N])"
            )
        } else if !slot_count.is_power_of_two() || slot_count > MAX_SLOTS {
            format!("slots = {slot_count} must be a power of two between 1 and {MAX_SLOTS}")
        } else {
            format!(
                "{slot_count} slots of {frame_capacity}-byte frames do not fit in this process's address space: use fewer slots or smaller frames"
            )
        })
    }

    /// Byte offset of slot `index` (taken modulo the slot count).
    pub fn slot_offset(&self, index: u64) -> usize {
        let i = (index & u64::from(self.slot_count - 1)) as usize;
        self.header_size + i * self.slot_stride
    }

    /// The number of 32-bit data words that hold a full frame.
    pub fn frame_words(&self) -> usize {
        self.frame_capacity.div_ceil(4)
    }
}

/// The immutable header fields of a segment, copied out and validated.
///
/// Everything a reader uses to index the segment comes from here, never from
/// a second read of shared memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Sizes and offsets.
    pub geometry: Geometry,
    /// Header flags ([`FLAG_NOTIFY`]).
    pub flags: u32,
    /// FNV-1a 64 of `schema`.
    pub schema_fingerprint: u64,
    /// The postcard-encoded `postcard_schema` `OwnedNamedType`.
    pub schema: Vec<u8>,
    /// The topic name.
    pub name: String,
    /// `CLOCK_REALTIME` at creation.
    pub created_real_ns: u64,
}

/// FNV-1a, 64 bit: the schema fingerprint. Simple enough to recompute in C or
/// Python from `docs/LAYOUT.md`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Copy `len` bytes out of 32-bit words (little-endian), with relaxed loads
/// ([`crate::codec::load_bytes`]); `out` ends up `min(len, 4 * words)`
/// bytes long.
///
/// `out`'s old bytes are overwritten, not cleared first: a poller reuses
/// one buffer for frames of one size, and zero-filling it on every read
/// cost about as much as the copy. Only bytes beyond its old length are
/// zeroed (by `resize`) before the copy overwrites them too; a buffer that
/// already has the frame's length is not resized at all. Inlined into the
/// read's closure, which then calls the word copy directly (a 64 B hop:
/// 446 to 435 instructions, callgrind, counted as in docs/BENCHMARKS.md).
#[inline(always)]
pub fn copy_from_words(words: ReadWords<'_>, len: usize, out: &mut Vec<u8>) {
    let n = len.min(words.len() * 4);
    if out.len() != n {
        out.resize(n, 0);
    }
    let copied = crate::codec::load_bytes(words, n, out);
    debug_assert_eq!(copied, n, "every byte of out is overwritten");
}

/// What a segment whose magic is still 0 is. A shmbus publisher takes the
/// topic's lock (a semaphore at the topic's key) *before* it creates the
/// segment, and a crash leaves that semaphore behind, so a topic being
/// created, or left half-created, always has one, made by the user who
/// made the segment (a publisher creates both, and never takes a lock
/// another user made). Zeros without such a lock are another program's
/// memory (fresh System V memory is all zeros), never to be waited for,
/// adopted or removed as a topic: zeros with no lock, zeros beside another
/// program's semaphore set ([`crate::lock::foreign_set`]), and zeros
/// beside a lock another user made (an `ftok` pair of two users, or a
/// squatter's semaphore). Key 0 (a removed segment, or `IPC_PRIVATE`) has
/// no lock. Only called on this rare path: a few system calls.
fn zero_magic(seg: &Attachment, key: i32) -> OpenError {
    use crate::lock::PublisherStatus;
    let foreign = OpenError::NotShmbus { key, magic: 0 };
    if key == 0 {
        return foreign;
    }
    match crate::lock::publisher_status(key) {
        PublisherStatus::NoLock => foreign,
        // Unknown creators keep the verdict "being created": a lock or a
        // segment gone meanwhile is found out by the caller's next look.
        _ if crate::lock::creator(key)
            .zip(crate::sys::shm_stat(seg.shmid()).ok())
            .is_some_and(|(lock, st)| lock != st.cuid) =>
        {
            foreign
        }
        status => OpenError::NotReady {
            key,
            publisher_alive: status.is_alive(),
        },
    }
}

/// [`OpenError::Corrupt`]'s `what` for a segment smaller than the 256-byte
/// header. No shmbus publisher creates one (section 2 of LAYOUT.md), so
/// tools treat it as another program's memory (`shmbus rm` refuses it) and
/// its message suggests `ipcrm`, never `shmbus rm`.
pub const SMALLER_THAN_HEADER: &str = "segment smaller than the 256-byte header";

impl HeaderInfo {
    /// Read and validate the header of an attached segment.
    ///
    /// `key` names the segment in errors, and tells a topic being created
    /// from another program's zeros. Errors: [`OpenError::NotReady`] while
    /// the magic is still zero and the topic's publisher lock exists at
    /// `key` (a publisher is initialising, or died doing so: it takes the
    /// lock before it creates the segment); [`OpenError::NotShmbus`] for a
    /// zero magic without that lock (another program's memory that starts
    /// with zeros) and for a foreign magic,
    /// [`OpenError::UnsupportedLayout`], and [`OpenError::Corrupt`] naming the
    /// first field that does not fit the real segment size.
    pub fn read(seg: &Attachment, key: i32) -> Result<HeaderInfo, OpenError> {
        let corrupt = |what: &'static str| OpenError::Corrupt { key, what };
        let real = seg.len();
        if real < HEADER_FIXED_SIZE {
            return Err(OpenError::Corrupt {
                key,
                what: SMALLER_THAN_HEADER,
            });
        }
        let h = seg.header().ok_or(corrupt("header"))?;
        // Acquire pairs with the creator's Release store of `magic`, which it
        // makes after writing every immutable field below.
        let magic = h.magic().load_acquire();
        if magic == 0 {
            return Err(zero_magic(seg, key));
        }
        if magic != MAGIC_U64 {
            return Err(OpenError::NotShmbus { key, magic });
        }
        let version = h.layout_version().load();
        if version == 0 {
            // Versions start at 1: no shmbus build ever wrote 0 under a
            // valid magic, so this is damage, not a version to upgrade to.
            return Err(corrupt("layout_version 0 (versions start at 1)"));
        }
        if version != LAYOUT_VERSION {
            return Err(OpenError::UnsupportedLayout {
                key,
                found: version,
                supported: LAYOUT_VERSION,
            });
        }
        let header_size = h.header_size().load() as usize;
        let slot_count = h.slot_count().load();
        let slot_stride = h.slot_stride().load() as usize;
        let frame_capacity = h.frame_capacity().load() as usize;
        let flags = h.flags().load();
        let segment_size = h.segment_size().load();
        let schema_fingerprint = h.schema_fingerprint().load();
        let schema_offset = h.schema_offset().load() as usize;
        let schema_len = h.schema_len().load() as usize;
        let name_len = h.name_len().load() as usize;
        let created_real_ns = h.created_real_ns().load();

        if flags & !KNOWN_FLAGS != 0 {
            return Err(corrupt("flags has unknown bits"));
        }
        if flags & FLAG_WAITERS != 0 && flags & FLAG_NOTIFY == 0 {
            return Err(corrupt("flags has waiter registration without notify"));
        }
        if schema_offset != HEADER_FIXED_SIZE {
            return Err(corrupt("schema_offset is not 256"));
        }
        if schema_len > MAX_SCHEMA_LEN {
            return Err(corrupt("schema_len is larger than 32 KiB"));
        }
        let geometry = Geometry::new(schema_len, slot_count, frame_capacity)
            .ok_or(corrupt("slot_count or frame_capacity out of range"))?;
        if geometry.header_size != header_size {
            return Err(corrupt("header_size does not match the schema length"));
        }
        if geometry.slot_stride != slot_stride {
            return Err(corrupt("slot_stride does not match the frame capacity"));
        }
        if geometry.segment_size as u64 != segment_size {
            return Err(corrupt("segment_size does not match the slots"));
        }
        if geometry.segment_size > real {
            return Err(OpenError::SizeMismatch {
                key,
                expected: geometry.segment_size as u64,
                found: real as u64,
            });
        }
        if name_len == 0 || name_len > MAX_NAME_LEN {
            return Err(corrupt("name_len out of range"));
        }
        let mut name = Vec::with_capacity(64);
        copy_from_words(h.name(), name_len, &mut name);
        let name = String::from_utf8(name).map_err(|_| corrupt("name is not UTF-8"))?;
        // Only names a publisher can create (`Topic::validate`): a planted
        // name with terminal escapes or look-alike characters is refused
        // before any tool prints it.
        if crate::topic::validate_name(&name).is_err() {
            return Err(corrupt("name has characters a topic name cannot have"));
        }
        let words = seg
            .words(schema_offset, schema_len.div_ceil(4))
            .ok_or(corrupt("schema outside the segment"))?;
        let mut schema = Vec::with_capacity(schema_len);
        copy_from_words(words, schema_len, &mut schema);
        if fnv1a64(&schema) != schema_fingerprint {
            return Err(corrupt("schema bytes do not match the fingerprint"));
        }
        Ok(HeaderInfo {
            geometry,
            flags,
            schema_fingerprint,
            schema,
            name,
            created_real_ns,
        })
    }

    /// True if the publisher wakes futex waiters ([`FLAG_NOTIFY`]).
    pub fn notify(&self) -> bool {
        self.flags & FLAG_NOTIFY != 0
    }

    /// True if sleepers register in the waiter segment before they sleep
    /// ([`FLAG_WAITERS`]).
    pub fn waiters(&self) -> bool {
        self.flags & FLAG_WAITERS != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_rounds_and_limits() {
        let g = Geometry::new(76, 8, 27).unwrap();
        assert_eq!(g.header_size, 384);
        assert_eq!(g.slot_stride, 64);
        assert_eq!(g.segment_size, 384 + 8 * 64);
        assert_eq!(g.slot_offset(9), 384 + 64);
        assert!(Geometry::new(0, 3, 8).is_none(), "not a power of two");
        assert!(Geometry::new(0, 0, 8).is_none());
        assert!(Geometry::new(0, 8, 0).is_none());
        assert!(Geometry::new(MAX_SCHEMA_LEN + 1, 8, 8).is_none());
        assert!(Geometry::new(0, MAX_SLOTS * 2, 8).is_none());
    }

    #[test]
    fn magic_is_the_documented_bytes() {
        assert_eq!(&MAGIC_U64.to_le_bytes(), b"\x89SHMBUS\n");
        assert_eq!(&WAITER_MAGIC_U64.to_le_bytes(), b"\x89SHMWTR\n");
    }

    #[test]
    fn waiter_mode_gives_write_to_exactly_the_readers() {
        assert_eq!(waiter_mode(0o644), 0o666);
        assert_eq!(waiter_mode(0o640), 0o660);
        assert_eq!(waiter_mode(0o600), 0o600);
        assert_eq!(waiter_mode(0o604), 0o606);
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        // Reference values of FNV-1a 64 (draft-eastlake-fnv).
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }
}

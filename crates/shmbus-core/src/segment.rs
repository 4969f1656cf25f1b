//! An attached topic segment: validated header, slot access, seqlock reads,
//! and (with feature `writer`) creation, repair and publishing.

use core::time::Duration;

use crate::error::{ObjectKind, OpenError, ReadError};
use crate::layout::HeaderInfo;
use crate::lock::{self, PublisherStatus};
use crate::seqlock;
use crate::sys::{self, Attachment, Call, Errno, ShmStat, SysError};
use crate::topic::Topic;
use crate::view::{ReadHeader, ReadWord32, ReadWords};

/// Word indices inside a slot (see [`crate::layout::RawSlot`]).
const SEQ: usize = 0;
const LEN: usize = 1;
const GEN_LO: usize = 2;
const GEN_HI: usize = 3;
const MONO_LO: usize = 4;
const MONO_HI: usize = 5;
const REAL_LO: usize = 6;
const REAL_HI: usize = 7;
const DATA: usize = 8;

/// How long a reader retries a slot whose sequence stays odd while its
/// publisher is alive before it reports [`ReadError::WriterStuck`].
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_millis(200);

/// The largest generation a real topic can reach: at a million frames a
/// second, 2^62 frames take 146,000 years. A header or slot that claims more
/// is garbage (or planted): attach refuses it ([`OpenError::Corrupt`]) and
/// reads report it ([`ReadError::Corrupt`]), so no reader's cursor
/// arithmetic (`generation + 1`, `generation - slots`) meets such a value.
pub const MAX_SANE_GENERATION: u64 = 1 << 62;

/// A frame's metadata from its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotMeta {
    /// Frame length in bytes (clamped to the capacity while reading).
    pub len: u32,
    /// Generation of the frame; 0 = the slot is empty.
    pub generation: u64,
    /// `CLOCK_MONOTONIC` at publish, ns.
    pub mono_ns: u64,
    /// `CLOCK_REALTIME` at publish, ns since the epoch.
    pub real_ns: u64,
}

/// A read-only view of a topic's segment.
#[derive(Debug)]
pub struct Segment {
    att: Attachment,
    info: HeaderInfo,
    key: i32,
}

/// The header's `notify` word, as an index of 32-bit words.
const NOTIFY_INDEX: usize = core::mem::offset_of!(crate::layout::RawHeader, notify) / 4;

fn map_attach_err(key: i32, e: SysError) -> OpenError {
    match e.errno {
        Errno::EACCES | Errno::EPERM => OpenError::PermissionDenied {
            key,
            call: e.call,
            owner: crate::sysvipc::segment_by_key(key).map(|p| p.owner()),
        },
        Errno::EINVAL | Errno::EIDRM if e.call != Call::Shmget => OpenError::Removed { key },
        _ => OpenError::from_sys(key, 0, e),
    }
}

/// How many times [`Segment::attach_key`] looks a key up when the segment
/// it found is removed before it can attach it.
pub const ATTACH_LOOKUPS: u32 = 8;

/// [`Segment::attach_key`] with the lookup given (`shmget` of the key; a
/// test gives a stale shmid first).
fn attach_key_via(
    key: i32,
    mut lookup: impl FnMut() -> Result<i32, SysError>,
) -> Result<Segment, OpenError> {
    let mut lookups = 1;
    loop {
        let shmid = lookup().map_err(|e| map_attach_err(key, e))?;
        match Segment::attach_shmid(shmid, key) {
            Err(OpenError::Removed { .. }) if lookups < ATTACH_LOOKUPS => lookups += 1,
            r => return r,
        }
    }
}

impl Segment {
    /// Attach the topic's segment read-only (`SHM_RDONLY`) and validate its
    /// header. If `topic.publisher_uid` is set, also require that the
    /// segment was created by and belongs to that uid and is not writable by
    /// group or others.
    ///
    /// A description no publisher can create ([`Topic::validate_for_reader`]:
    /// key 0, a name with characters no topic name has) is
    /// [`OpenError::InvalidTopic`] before any system call.
    pub fn attach(topic: &Topic) -> Result<Segment, OpenError> {
        topic.validate_for_reader()?;
        let seg = Segment::attach_key(topic.key)?;
        if let Some(uid) = topic.publisher_uid {
            let st = seg.stat().map_err(|e| map_attach_err(topic.key, e))?;
            check_owner(topic.key, &st, uid)?;
            // The publisher lock too: liveness must not be spoofable by a
            // semaphore someone else created at the key, readable or not.
            lock::check_owner(topic.key, uid)?;
        }
        if seg.info.name != topic.name {
            return Err(OpenError::NameMismatch {
                key: topic.key,
                expected: topic.name.clone(),
                found: seg.info.name.clone(),
            });
        }
        Ok(seg)
    }

    /// Attach whatever shmbus segment is at `key`, read-only.
    ///
    /// A segment removed between the key's lookup and the attach (a
    /// publisher replacing it, `shmbus rm`) is not reported as
    /// [`OpenError::Removed`]: nothing was attached, so the key is looked up
    /// again and now names the new segment, or nothing
    /// ([`OpenError::NotFound`]). `Removed` only after
    /// [`ATTACH_LOOKUPS`] such races in a row.
    pub fn attach_key(key: i32) -> Result<Segment, OpenError> {
        attach_key_via(key, || sys::shmget(key, 0, 0))
    }

    /// Attach segment `shmid` read-only; `key` is used in messages.
    ///
    /// Besides the header checks of [`HeaderInfo::read`], a generation
    /// above [`MAX_SANE_GENERATION`] is refused as [`OpenError::Corrupt`].
    pub fn attach_shmid(shmid: i32, key: i32) -> Result<Segment, OpenError> {
        let att = Attachment::read_only(shmid).map_err(|e| {
            if e.errno == Errno::ENOMEM && e.call == Call::Shmat {
                // Not "out of memory creating a segment": the mapping of
                // an existing one (of any size another user chose) failed.
                let size = sys::shm_stat(shmid).map_or(0, |s| s.size);
                return OpenError::CannotMap { key, size };
            }
            map_attach_err(key, e)
        })?;
        let info = HeaderInfo::read(&att, key)?;
        let mut seg = Segment { att, info, key };
        seg.set_poll_index(NOTIFY_INDEX);
        if seg.generation() > MAX_SANE_GENERATION {
            return Err(OpenError::Corrupt {
                key,
                what: "its generation is impossible: above 2^62",
            });
        }
        Ok(seg)
    }

    /// The validated header fields.
    pub fn info(&self) -> &HeaderInfo {
        &self.info
    }

    /// The System V key.
    pub fn key(&self) -> i32 {
        self.key
    }

    /// The shmid.
    pub fn shmid(&self) -> i32 {
        self.att.shmid()
    }

    /// The kernel's size of the segment.
    pub fn size(&self) -> usize {
        self.att.len()
    }

    /// The header, load-only (live fields: generation, notify, pids,
    /// times):
    ///
    /// ```no_run
    /// # fn f(seg: &shmbus_core::Segment) {
    /// let pid: u32 = seg.header().publisher_pid().load();
    /// # }
    /// ```
    ///
    /// A store through it does not compile:
    ///
    /// ```compile_fail
    /// # fn f(seg: &shmbus_core::Segment) {
    /// seg.header().publisher_pid().store(0);
    /// # }
    /// ```
    #[inline]
    pub fn header(&self) -> ReadHeader<'_> {
        header_of(&self.att)
    }

    /// Generation of the newest complete frame (0: none yet), as stored.
    /// Acquire (load and fence): pairs with the publisher's Release store
    /// after the frame's slot is complete. Readers use
    /// [`Self::checked_generation`].
    #[inline]
    pub fn generation(&self) -> u64 {
        self.header().generation().load_acquire()
    }

    /// [`Self::generation`], or [`ReadError::Corrupt`] if it is above
    /// [`MAX_SANE_GENERATION`] (the segment was overwritten since attach).
    #[inline]
    pub fn checked_generation(&self) -> Result<u64, ReadError> {
        let g = self.generation();
        if g > MAX_SANE_GENERATION {
            return Err(ReadError::Corrupt {
                generation: g,
                what: "its header generation is impossible: above 2^62",
            });
        }
        Ok(g)
    }

    /// The futex word: low 32 bits of the generation, load-only.
    #[inline]
    pub fn notify_word(&self) -> ReadWord32<'_> {
        self.header().notify()
    }

    /// Read the slot that holds generation `generation` (index modulo the
    /// slot count) under its seqlock. `f` sees the metadata and the frame's
    /// data words; its result is returned only if the read was consistent.
    ///
    /// Retries on an odd sequence back off to the scheduler. If the
    /// sequence stays odd: [`ReadError::PublisherDied`] once the publisher
    /// lock shows no publisher, [`ReadError::WriterStuck`] after
    /// `stuck_after` while it is held. A lock this process cannot read
    /// ([`PublisherStatus::Unknown`]) gives the slot `stuck_after` too,
    /// then [`ReadError::WriterStuck`] if the header's publisher pid is a
    /// process that exists, [`ReadError::PublisherDied`] if not.
    ///
    /// A slot whose generation is above [`MAX_SANE_GENERATION`] is
    /// [`ReadError::Corrupt`].
    pub fn read_slot<R>(
        &self,
        generation: u64,
        stuck_after: Duration,
        f: impl FnMut(&SlotMeta, ReadWords<'_>) -> R,
    ) -> Result<(SlotMeta, R), ReadError> {
        read_slot(&self.att, &self.info, self.key, generation, stuck_after, f)
    }

    /// One attempt at [`Self::read_slot`]: `None` if the slot is mid-write
    /// or was written during the read, or holds a length above the frame
    /// capacity or an impossible generation (the caller then takes the
    /// path that reports those). No retry, no back-off, no system call:
    /// for a reader that can fall back to another path, such as
    /// `RawSubscriber::next_with` trying the cursor's slot before it reads
    /// the header.
    #[inline]
    pub fn try_read_slot<R>(
        &self,
        generation: u64,
        f: impl FnOnce(&SlotMeta, ReadWords<'_>) -> R,
    ) -> Option<(SlotMeta, R)> {
        self.try_read_in(slot_words(&self.att, &self.info, generation), f)
    }

    /// [`Self::try_read_slot`] of frame `generation`'s slot, given `index`
    /// = [`Self::peek_index`]`(generation)`: a poller that keeps that index
    /// finds the slot with a subtraction instead of a multiplication. Any
    /// other index reads another slot, or gives `None` outside the ring; the
    /// caller's check of the generation in the metadata tells.
    #[inline]
    pub fn try_read_slot_at<R>(
        &self,
        index: usize,
        f: impl FnOnce(&SlotMeta, ReadWords<'_>) -> R,
    ) -> Option<(SlotMeta, R)> {
        self.try_read_in(self.slot_at(index)?, f)
    }

    /// The words of the slot whose low generation word is at `index`
    /// ([`Self::peek_index`]), `None` if they are not all in the segment.
    /// The index-based reads' one way from a poller's index to its slot.
    #[inline]
    fn slot_at(&self, index: usize) -> Option<ReadWords<'_>> {
        let first = index.checked_sub(GEN_LO)?;
        let end = first.checked_add(self.info.geometry.slot_stride / 4)?;
        self.att.all_words().range(first, end)
    }

    #[inline]
    fn try_read_in<R>(
        &self,
        w: ReadWords<'_>,
        f: impl FnOnce(&SlotMeta, ReadWords<'_>) -> R,
    ) -> Option<(SlotMeta, R)> {
        let seq = w.get(SEQ)?;
        let cap = self.info.geometry.frame_capacity;
        let data = w.range(DATA, DATA + self.info.geometry.frame_words())?;
        let s1 = seqlock::read_begin(seq)?;
        let (meta, raw_len) = meta_of(w, cap);
        let value = f(&meta, data);
        (seqlock::read_end(seq, s1)
            && raw_len as usize <= cap
            && meta.generation <= MAX_SANE_GENERATION)
            .then_some((meta, value))
    }

    /// Whether frame `generation` is complete in its slot, from the slot's
    /// generation words and sequence ([`seqlock::peek`]): one load when the
    /// slot still holds an older frame, no header read, no retry. A reader
    /// that keeps up polls the slot the next frame goes to, which is the
    /// line the publisher writes anyway, instead of the header's line
    /// (`docs/LAYOUT.md`, section 7.2).
    #[inline]
    pub fn peek(&self, generation: u64) -> seqlock::Peek {
        self.peek_at(self.peek_index(generation), generation)
    }

    /// Where [`Self::peek`] looks first for frame `generation`: the index
    /// of its slot's low generation word among the segment's 32-bit words.
    /// A poller that asks about the same frame many times computes it once
    /// ([`Self::peek_at`]).
    #[inline]
    pub fn peek_index(&self, generation: u64) -> usize {
        self.info.geometry.slot_offset(generation) / 4 + GEN_LO
    }

    /// [`Self::peek_index`]`(generation + 1)` given `index` =
    /// [`Self::peek_index`]`(generation)`: one slot further, wrapping at the
    /// end of the ring. An add and a compare, where [`Self::peek_index`]
    /// multiplies: an in-order reader moves its index this way after every
    /// frame.
    #[inline]
    pub fn next_peek_index(&self, index: usize) -> usize {
        let g = &self.info.geometry;
        let stride = g.slot_stride / 4;
        // An index past any mapping (not one `peek_index` gave) stays past
        // it, as the other index methods treat it: no overflow.
        let Some(next) = index.checked_add(stride) else {
            return usize::MAX;
        };
        if next >= g.segment_size / 4 {
            next - stride * g.slot_count as usize
        } else {
            next
        }
    }

    /// [`Self::peek`]'s first step alone: true if the word at `index`
    /// (which must be [`Self::peek_index`]`(generation)`) still holds a
    /// frame older than `generation`, so nothing is new. One load and one
    /// compare, inlined into a caller's poll loop even where the compiler
    /// optimises for size (the board profile); the caller takes its slow
    /// path, [`Self::peek_at`], otherwise.
    #[inline(always)]
    pub fn is_older_at(&self, index: usize, generation: u64) -> bool {
        self.word_at(index)
            .is_some_and(|lo| seqlock::is_older(lo, generation))
    }

    /// The segment's 32-bit word at `index` (one Relaxed load behind one
    /// bounds check), `None` past the end.
    #[inline(always)]
    fn word_at(&self, index: usize) -> Option<u32> {
        self.att.all_words().get(index).map(|w| w.load())
    }

    /// [`Self::peek`] given `index`, which must be
    /// [`Self::peek_index`]`(generation)`; any other index gives an
    /// answer about the wrong word, [`seqlock::Peek::Unsure`] if it is not
    /// in the segment.
    #[inline]
    pub fn peek_at(&self, index: usize, generation: u64) -> seqlock::Peek {
        // The common answer ("older": nothing new) from one word.
        let Some(lo) = self.word_at(index) else {
            return seqlock::Peek::Unsure;
        };
        if seqlock::is_older(lo, generation) {
            return seqlock::Peek::Older;
        }
        self.peek_rest_at(index, lo, generation)
    }

    /// Choose the word [`Self::poll_lo`] loads: `index`, a poller's
    /// [`Self::peek_index`]. Until a poller chooses one, and if `index` is
    /// not in the segment (no peek index can be: the attach checked that
    /// every slot is inside the mapping), it is the header's `notify` word,
    /// the low 32 bits of the newest generation: tested with
    /// [`seqlock::is_older`] against the generation a poller waits for, it
    /// answers "nothing new" only when that frame is not published yet, the
    /// answer a slot's word gives.
    #[inline]
    pub fn set_poll_index(&mut self, index: usize) {
        if !self.att.set_mark(index) {
            let header_has_it = self.att.set_mark(NOTIFY_INDEX);
            debug_assert!(header_has_it);
        }
    }

    /// The word [`Self::set_poll_index`] chose, one Relaxed load with no
    /// bounds check: a poll loop's whole cost when nothing is new, with
    /// [`seqlock::is_older`]; [`Self::peek_rest_at`] finishes the test.
    #[inline(always)]
    pub fn poll_lo(&self) -> u32 {
        self.att.marked()
    }

    /// The low generation word at `index` (one Relaxed load), `None` past
    /// the end: a poller that tests it with [`seqlock::is_older`] inline
    /// and finishes with [`Self::peek_rest_at`] out of line loads it once.
    #[inline(always)]
    pub fn gen_lo_at(&self, index: usize) -> Option<u32> {
        self.word_at(index)
    }

    /// [`Self::peek_at`] after its first load: `lo` was loaded from
    /// `index` (= [`Self::peek_index`]`(generation)`) and was not older.
    #[inline]
    pub fn peek_rest_at(&self, index: usize, lo: u32, generation: u64) -> seqlock::Peek {
        let slot = self.slot_at(index);
        match slot.and_then(|w| Some((w.get(SEQ)?, w.get(GEN_HI)?))) {
            Some((seq, hi)) => seqlock::peek_rest(seq, hi, lo, generation),
            None => seqlock::Peek::Unsure,
        }
    }

    /// The sequence word of slot `index` (taken modulo the slot count), one
    /// Acquire load. Odd while the publisher writes that slot, or forever if
    /// a publisher died mid-write and no new one has repaired it yet. For
    /// tools and tests; readers use [`Self::read_slot`].
    pub fn slot_sequence(&self, index: u64) -> u32 {
        seq_word(slot_words(&self.att, &self.info, index)).load_acquire()
    }

    /// `IPC_STAT` of the segment.
    pub fn stat(&self) -> Result<ShmStat, SysError> {
        sys::shm_stat(self.att.shmid())
    }

    /// The [`Topic`] that opens this segment again as its publisher made it:
    /// its key, name, slot count, permissions, notify flag and RAM lock
    /// (`LockPolicy::Try` if it is locked now, else `Off`). For a tool that
    /// publishes on an existing topic (`shmbus pub`, a Foxglove client, a
    /// bridge) without changing the topic's shape. One system call
    /// (`IPC_STAT`).
    pub fn reopen_topic(&self) -> Result<Topic, SysError> {
        use crate::topic::{DEFAULT_BUS, LockPolicy};
        let st = self.stat()?;
        Ok(Topic::on_bus(DEFAULT_BUS, &self.info.name)
            .key(self.key)
            .slots(self.info.geometry.slot_count)
            .mode(st.perms())
            .notify(self.info.notify())
            .lock(if st.locked() {
                LockPolicy::Try
            } else {
                LockPolicy::Off
            }))
    }

    /// True if the segment was removed (`IPC_RMID`) since we attached: no
    /// publisher will ever write to it again. One system call; when this
    /// process may no longer stat the segment (`EACCES`: a publisher
    /// restarted it with a narrower mode or another group), the answer
    /// comes from `/proc/sysvipc/shm`, which anyone may read.
    pub fn is_removed(&self) -> bool {
        shm_removed(self.shmid())
    }

    /// Whether the topic's publisher is alive (its lock is held). Two system
    /// calls, three while the lock is held. A segment removed since attach
    /// is credited only with the publisher that opened it: after `shmbus
    /// rm`, the lock at the key belongs to the next topic there
    /// ([`PublisherStatus::NoLock`] then).
    pub fn publisher_status(&self) -> PublisherStatus {
        status_for(&self.att, self.key)
    }
}

/// Whether segment `shmid` was removed (`IPC_RMID`: marked `SHM_DEST`, or
/// gone): `IPC_STAT`, or `/proc/sysvipc/shm` when the stat is refused.
/// The one answer for readers ([`Segment::is_removed`]) and the publisher
/// (`WriteSegment::is_removed`).
fn shm_removed(shmid: i32) -> bool {
    match sys::shm_stat(shmid) {
        Ok(st) => st.removed(),
        Err(e) if matches!(e.errno, Errno::EACCES | Errno::EPERM) => removed_per_proc(shmid),
        Err(e) => matches!(e.errno, Errno::EIDRM | Errno::EINVAL),
    }
}

/// Whether `/proc/sysvipc/shm` shows segment `shmid` removed: marked
/// `SHM_DEST` (still attached somewhere), or gone. `false` if the file
/// cannot be read (the question stays open; not "removed").
fn removed_per_proc(shmid: i32) -> bool {
    match crate::sysvipc::segments() {
        Ok(all) => all
            .iter()
            .find(|e| e.id() == shmid)
            .is_none_or(|e| e.mode() & 0o1000 != 0),
        Err(_) => false,
    }
}

/// Refuse a segment that `uid` did not create and own, or that others can
/// write.
pub fn check_owner(key: i32, st: &ShmStat, uid: u32) -> Result<(), OpenError> {
    require_owner(ObjectKind::Segment, key, st.cuid, st.uid, uid)?;
    if st.perms() & 0o022 != 0 {
        return Err(OpenError::WritableByOthers {
            key,
            mode: st.perms(),
        });
    }
    Ok(())
}

/// The one owner rule, for segments and locks alike: `uid` must have
/// created the object and still own it.
pub(crate) fn require_owner(
    object: ObjectKind,
    key: i32,
    creator_uid: u32,
    owner_uid: u32,
    uid: u32,
) -> Result<(), OpenError> {
    if creator_uid != uid || owner_uid != uid {
        return Err(OpenError::NotOwner {
            key,
            object,
            creator_uid,
            owner_uid,
            expected_uid: uid,
        });
    }
    Ok(())
}

/// What the publisher lock at `key` says about the segment attached as
/// `att`. The lock belongs to the key, not to a segment: once the segment
/// is removed (`SHM_DEST`, or gone), `shmbus rm` and a new publisher at the
/// key give the key a new lock whose holder never writes this segment. So
/// a removed segment is credited with the holder only if that is the
/// process that opened it (the header's `publisher_pid`: a segment removed
/// under its live publisher is still `Alive`), else
/// [`PublisherStatus::NoLock`]. One more system call, only while the lock
/// is held.
fn status_for(att: &Attachment, key: i32) -> PublisherStatus {
    let status = lock::publisher_status(key);
    if let PublisherStatus::Alive { pid } = status {
        let removed = match sys::shm_stat(att.shmid()) {
            Ok(st) => st.removed(),
            Err(e) => matches!(e.errno, Errno::EIDRM | Errno::EINVAL),
        };
        if removed && header_of(att).publisher_pid().load() != pid as u32 {
            return PublisherStatus::NoLock;
        }
    }
    status
}

/// The header's publisher pid, if that process exists.
fn header_publisher(att: &Attachment) -> Option<i32> {
    match i32::try_from(header_of(att).publisher_pid().load()) {
        Ok(pid) if pid > 0 && process_exists(pid) => Some(pid),
        _ => None,
    }
}

/// Whether a process with this pid exists (in this pid namespace):
/// `kill(pid, 0)` succeeds or is refused (`EPERM`: it exists, another
/// user's).
fn process_exists(pid: i32) -> bool {
    use nix::errno::Errno as E;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e == E::EPERM,
    }
}

#[inline]
fn header_of(att: &Attachment) -> ReadHeader<'_> {
    // `HeaderInfo::read` checked at attach that the segment is at least 256
    // bytes, so this cannot fail for any segment we hold.
    match att.header() {
        Some(h) => h,
        None => unreachable!("attachments are validated to hold a header"),
    }
}

#[inline]
fn slot_words<'a>(att: &'a Attachment, info: &HeaderInfo, generation: u64) -> ReadWords<'a> {
    let g = &info.geometry;
    match att.words(g.slot_offset(generation), g.slot_stride / 4) {
        Some(w) => w,
        None => unreachable!("segment_size <= real size was validated at attach"),
    }
}

#[inline]
fn seq_word(w: ReadWords<'_>) -> ReadWord32<'_> {
    match w.get(SEQ) {
        Some(s) => s,
        None => unreachable!("a slot has at least 8 words"),
    }
}

/// Retries of a slot that spin before they yield ([`backoff`]).
const SPIN_TRIES: u32 = 4;
/// Retries (spins included) before they sleep, and between two looks at
/// the publisher lock in [`read_slot`].
const YIELD_TRIES: u32 = 8;

/// Wait before retry `tries` of a slot found mid-write: spin a few times,
/// then yield, then sleep (50 us, doubling to 800 us).
///
/// One core: the writer can only finish if we give the CPU away, and a
/// `sched_yield` gives it only to tasks of the reader's own priority. A
/// real-time reader (`SCHED_FIFO`, as control loops run) with a
/// normal-priority publisher yielded to nobody: it spun for the whole
/// stuck bound, starving the write it waited for, and then reported the
/// healthy publisher as stuck. A sleep lets any task run.
fn backoff(tries: u32) {
    if tries < SPIN_TRIES {
        core::hint::spin_loop();
    } else if tries < YIELD_TRIES {
        sys::yield_now();
    } else {
        let shift = (tries - YIELD_TRIES).min(4);
        std::thread::sleep(Duration::from_micros(50 << shift));
    }
}

#[inline]
fn meta_of(w: ReadWords<'_>, cap: usize) -> (SlotMeta, u32) {
    let raw_len = w.load(LEN);
    let word64 = |lo: usize, hi: usize| u64::from(w.load(lo)) | (u64::from(w.load(hi)) << 32);
    let meta = SlotMeta {
        len: raw_len.min(cap as u32),
        generation: word64(GEN_LO, GEN_HI),
        mono_ns: word64(MONO_LO, MONO_HI),
        real_ns: word64(REAL_LO, REAL_HI),
    };
    (meta, raw_len)
}

fn read_slot<R>(
    att: &Attachment,
    info: &HeaderInfo,
    key: i32,
    generation: u64,
    stuck_after: Duration,
    mut f: impl FnMut(&SlotMeta, ReadWords<'_>) -> R,
) -> Result<(SlotMeta, R), ReadError> {
    let w = slot_words(att, info, generation);
    let seq = seq_word(w);
    let cap = info.geometry.frame_capacity;
    let data = match w.range(DATA, DATA + info.geometry.frame_words()) {
        Some(d) => d,
        None => unreachable!("slot_stride holds the frame capacity"),
    };
    let mut tries: u32 = 0;
    // Made at the first look only: a read that succeeds (nearly all) pays
    // nothing for it.
    let mut watch: Option<SlotWatch> = None;
    loop {
        if let Some(s1) = seqlock::read_begin(seq) {
            let (meta, raw_len) = meta_of(w, cap);
            let value = f(&meta, data);
            if seqlock::read_end(seq, s1) {
                if raw_len as usize > cap {
                    return Err(ReadError::Corrupt {
                        generation: meta.generation,
                        what: "frame length exceeds the frame capacity",
                    });
                }
                if meta.generation > MAX_SANE_GENERATION {
                    return Err(ReadError::Corrupt {
                        generation: meta.generation,
                        what: "its slot generation is impossible: above 2^62",
                    });
                }
                return Ok((meta, value));
            }
        }
        tries = tries.wrapping_add(1);
        if tries % YIELD_TRIES == 0 {
            let verdict = watch.get_or_insert_with(SlotWatch::default).look(
                sys::monotonic_ns(),
                seq.load(),
                stuck_after,
                || status_for(att, key),
                || header_publisher(att),
            );
            if let Some(e) = verdict {
                return Err(e);
            }
        }
        backoff(tries);
    }
}

/// What [`read_slot`]'s periodic looks have seen of a slot it cannot read.
#[derive(Debug, Default)]
struct SlotWatch {
    /// When the first look was (monotonic ns).
    since: Option<u64>,
    /// The sequence word at the previous look.
    seq: Option<u32>,
    /// When the sequence word was last seen to change (or first seen).
    moved_at: u64,
    /// The first of the latest run of looks that each saw the sequence
    /// word changed since the look before.
    moving_since: Option<u64>,
}

/// How many times the stuck bound a read may fail in all before it is
/// given up as [`ReadError::Overwritten`], however its looks went (a word
/// that changed between looks but read the same at each, or a writer that
/// keeps stalling mid-write just under the stuck bound).
const OVERWRITTEN_CAP: u32 = 4;

impl SlotWatch {
    /// One periodic look, at `now` (monotonic ns), at a slot whose reads
    /// keep failing and whose sequence word reads `seq`: the error to
    /// return, or `None` to try again. `status` is the publisher lock's
    /// word; `header_publisher` the header's publisher pid if that process
    /// exists. Every way out is bounded:
    ///
    /// - the sequence stays **odd and unchanged** (a write that does not
    ///   end): [`ReadError::PublisherDied`] at once if the lock is free, or
    ///   if it was removed and the header's publisher no longer exists;
    ///   else [`ReadError::WriterStuck`] once it has not changed for
    ///   `stuck_after` (or [`ReadError::PublisherDied`] if the lock cannot
    ///   be read and the header's publisher is gone);
    /// - the sequence **keeps changing** (changed at every look for
    ///   `stuck_after`: every read was overwritten, by a publisher that
    ///   rewrites the slot faster than this process copies it, or by
    ///   another process writing the segment): [`ReadError::Overwritten`],
    ///   whatever the lock says. Before, that case was "stuck" or "died"
    ///   for a healthy publisher, and with no publisher holding the lock it
    ///   retried for as long as the writes went on;
    /// - in all, a read that has failed for [`OVERWRITTEN_CAP`] times
    ///   `stuck_after` is [`ReadError::Overwritten`] too.
    #[cold]
    #[inline(never)]
    fn look(
        &mut self,
        now: u64,
        seq: u32,
        stuck_after: Duration,
        status: impl FnOnce() -> PublisherStatus,
        header_publisher: impl FnOnce() -> Option<i32>,
    ) -> Option<ReadError> {
        let start = *self.since.get_or_insert(now);
        let waited = Duration::from_nanos(now.saturating_sub(start));
        if self.seq.replace(seq) != Some(seq) {
            self.moved_at = now;
        }
        let unchanged = Duration::from_nanos(now.saturating_sub(self.moved_at));
        let moved = unchanged.is_zero();
        let moving = if moved {
            let run_start = *self.moving_since.get_or_insert(now);
            Some(Duration::from_nanos(now.saturating_sub(run_start)))
        } else {
            self.moving_since = None;
            None
        };
        if seq & 1 == 1 {
            let ended = !moved && unchanged >= stuck_after;
            match status() {
                // Mid-write and nobody holds the lock: the writer died
                // mid-write (the kernel released its lock). A torn slot
                // stays odd until a new publisher.
                PublisherStatus::NotRunning => return Some(ReadError::PublisherDied),
                PublisherStatus::Alive { pid } if ended => {
                    return Some(ReadError::WriterStuck {
                        pid,
                        waited: unchanged,
                    });
                }
                PublisherStatus::Alive { .. } => {}
                // The lock was removed (a publisher may still publish
                // without it), or this process cannot read it (it lost read
                // access after a mode change, or another user's semaphore
                // sits at the key): the header's publisher pid decides.
                // Gone: died. There: the slot gets as long as a live
                // publisher's.
                lock @ (PublisherStatus::NoLock | PublisherStatus::Unknown) => {
                    if ended || matches!(lock, PublisherStatus::NoLock) {
                        match header_publisher() {
                            None => return Some(ReadError::PublisherDied),
                            Some(pid) if ended => {
                                return Some(ReadError::WriterStuck {
                                    pid,
                                    waited: unchanged,
                                });
                            }
                            Some(_) => {}
                        }
                    }
                }
            }
        }
        // Changed at every look for the bound: rewritten during every read.
        // A writer that was stalled and has just moved on gets a fresh run
        // (its next write is likely read whole).
        if let Some(run) = moving.filter(|run| *run >= stuck_after) {
            return Some(ReadError::Overwritten { waited: run });
        }
        (waited >= stuck_after.saturating_mul(OVERWRITTEN_CAP))
            .then_some(ReadError::Overwritten { waited })
    }
}

#[cfg(feature = "writer")]
pub use writer::{LockOutcome, PublishError, WriteSegment};

#[cfg(feature = "writer")]
mod writer {
    use super::*;
    use crate::layout::{
        FLAG_NOTIFY, FLAG_WAITERS, Geometry, LAYOUT_VERSION, MAGIC_U64, RawHeader, fnv1a64,
    };
    use crate::lock::PublisherLock;
    use crate::sys::WriteAttachment;
    use crate::topic::LockPolicy;
    use crate::waiter::{WaiterSegment, WakeHistory};
    use core::sync::atomic::{AtomicU32, Ordering};

    /// What a segment at the topic's key that is smaller than the topic
    /// needs is: a whole shmbus topic that is not this one, named by the
    /// reopen's own checks ([`check_identity`]: another topic at the key,
    /// another type, or this topic with fewer slots or smaller frames,
    /// each with its own fix; a grown topic was a bare "N bytes, needs M"
    /// before, and a key collision with a smaller topic was told to `shmbus
    /// rm` that other topic), a half-created one of another size
    /// (`SizeMismatch`, whose fix `shmbus rm` removes it), or another
    /// program's memory, named as such (`NotShmbus`, or `Corrupt` below the
    /// 256-byte header): `shmbus rm` refuses to remove that, so the error
    /// must not suggest it. Nothing is written; `lock_created` says this
    /// open made the topic's lock, so zeros there are no shmbus creator's.
    fn short_segment(
        shmid: i32,
        expected: u64,
        found: u64,
        lock_created: bool,
        wanted: &Wanted<'_>,
    ) -> OpenError {
        let key = wanted.topic.key;
        let mismatch = OpenError::SizeMismatch {
            key,
            expected,
            found,
        };
        let Ok(att) = Attachment::read_only(shmid) else {
            return mismatch;
        };
        match HeaderInfo::read(&att, key) {
            Err(
                e @ (OpenError::NotShmbus { .. }
                | OpenError::Corrupt {
                    what: crate::layout::SMALLER_THAN_HEADER,
                    ..
                }),
            ) => e,
            Err(OpenError::NotReady { .. }) if lock_created => {
                OpenError::NotShmbus { key, magic: 0 }
            }
            Ok(info) => check_identity(&info, wanted).err().unwrap_or(mismatch),
            _ => mismatch,
        }
    }

    /// The topic at `key` when it is another topic than `topic` (another
    /// name in its header): `NameMismatch`, read through a read-only
    /// attachment, nothing written. For a publisher shut out by a live
    /// lock: "already has a live publisher (pid N); stop it first" sent
    /// the user to stop another topic's publisher when two topics' keys
    /// collide, and only then said the keys collide. `None` when the
    /// segment is this topic's, or cannot be read.
    fn other_topic_at(key: i32, topic: &Topic) -> Option<OpenError> {
        let shmid = sys::shmget(key, 0, 0).ok()?;
        let att = Attachment::read_only(shmid).ok()?;
        let info = HeaderInfo::read(&att, key).ok()?;
        (info.name != topic.name).then(|| OpenError::NameMismatch {
            key,
            expected: topic.name.clone(),
            found: info.name,
        })
    }

    /// What a publisher opening a topic wants the segment at its key to be.
    struct Wanted<'a> {
        topic: &'a Topic,
        fingerprint: u64,
        geometry: Geometry,
    }

    /// Whether a whole shmbus segment at the topic's key is this topic, as
    /// this publisher makes it: its name (else `NameMismatch`: another
    /// topic shares the key), its schema (else `SchemaMismatch`: another
    /// type) and its geometry and notify flag (else `GeometryMismatch`,
    /// with both shapes). One check for a segment of any size, so a topic
    /// that grew and one that shrank get the same answer.
    fn check_identity(info: &HeaderInfo, wanted: &Wanted<'_>) -> Result<(), OpenError> {
        let Wanted {
            topic,
            fingerprint,
            geometry,
        } = wanted;
        let key = topic.key;
        if info.name != topic.name {
            return Err(OpenError::NameMismatch {
                key,
                expected: topic.name.clone(),
                found: info.name.clone(),
            });
        }
        if info.schema_fingerprint != *fingerprint {
            return Err(OpenError::SchemaMismatch {
                key,
                topic: topic.name.clone(),
                expected: *fingerprint,
                found: info.schema_fingerprint,
            });
        }
        // A segment made before waiter registration existed (notify
        // without FLAG_WAITERS) is still this topic: its publisher wakes
        // on every publish.
        if info.geometry != *geometry || info.notify() != topic.notify {
            return Err(OpenError::GeometryMismatch {
                key,
                what: format!(
                    "segment has {} slots of {} bytes, notify={}; topic wants {} slots of {} bytes, notify={}",
                    info.geometry.slot_count,
                    info.geometry.frame_capacity,
                    info.notify(),
                    geometry.slot_count,
                    geometry.frame_capacity,
                    topic.notify
                ),
            });
        }
        Ok(())
    }

    #[inline]
    fn raw_header_of(att: &WriteAttachment) -> &RawHeader {
        // `HeaderInfo::read` or `init_header`'s caller checked the size.
        match att.raw_header() {
            Some(h) => h,
            None => unreachable!("attachments are validated to hold a header"),
        }
    }

    #[inline]
    fn slot_atomics<'a>(att: &'a WriteAttachment, info: &HeaderInfo, g: u64) -> &'a [AtomicU32] {
        let geo = &info.geometry;
        match att.atomic_words(geo.slot_offset(g), geo.slot_stride / 4) {
            Some(w) => w,
            None => unreachable!("segment_size <= real size was validated at open"),
        }
    }

    /// One slot being written: its sequence word is odd while this lives
    /// (a [`seqlock::WriteGuard`]). [`SlotWrite::commit`] stores the frame's
    /// metadata; dropped without it (an encode error, a `Serialize` that
    /// panics, a repair) the write is abandoned: the slot is emptied
    /// (length 0, generation 0), then the guard makes the sequence even. The
    /// header's generation is not advanced either way here: the caller does
    /// that after a commit.
    struct SlotWrite<'a> {
        /// The slot head: sequence word and metadata (fixed indices, so the
        /// stores below need no bounds checks).
        head: &'a [AtomicU32; DATA],
        /// The frame's data words.
        data: &'a [AtomicU32],
        committed: bool,
        // Dropped after `Drop::drop` below has emptied an abandoned slot.
        _seq: seqlock::WriteGuard<'a>,
    }

    impl<'a> SlotWrite<'a> {
        /// `w`: the whole slot; `data_words`: the frame's words after the
        /// head (clamped to the slot).
        #[inline]
        fn begin(w: &'a [AtomicU32], data_words: usize) -> SlotWrite<'a> {
            let Some((head, rest)) = w.split_first_chunk::<DATA>() else {
                unreachable!("a slot has at least 8 words")
            };
            SlotWrite {
                head,
                data: &rest[..data_words.min(rest.len())],
                committed: false,
                _seq: seqlock::WriteGuard::begin(&head[SEQ]),
            }
        }

        /// Data stores: Relaxed, published by the guard's Release on drop.
        #[inline]
        fn store_meta(&self, len: u32, g: u64, mono_ns: u64, real_ns: u64) {
            let w = self.head;
            w[LEN].store(len, Ordering::Relaxed);
            w[GEN_LO].store(g as u32, Ordering::Relaxed);
            w[GEN_HI].store((g >> 32) as u32, Ordering::Relaxed);
            w[MONO_LO].store(mono_ns as u32, Ordering::Relaxed);
            w[MONO_HI].store((mono_ns >> 32) as u32, Ordering::Relaxed);
            w[REAL_LO].store(real_ns as u32, Ordering::Relaxed);
            w[REAL_HI].store((real_ns >> 32) as u32, Ordering::Relaxed);
        }

        #[inline]
        fn commit(mut self, len: u32, g: u64, mono_ns: u64, real_ns: u64) {
            self.store_meta(len, g, mono_ns, real_ns);
            self.committed = true;
        }
    }

    impl Drop for SlotWrite<'_> {
        #[inline]
        fn drop(&mut self) {
            if !self.committed {
                self.store_meta(0, 0, 0, 0);
            }
        }
    }

    /// What became of `SHM_LOCK` when the topic was opened.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum LockOutcome {
        /// The segment is locked in RAM.
        Locked,
        /// Lock policy "try": the kernel refused; the error says why and how
        /// to fix it.
        Refused(OpenError),
        /// Lock policy "off".
        NotRequested,
    }

    /// Why a publish failed. Nothing was published; the handle stays usable.
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum PublishError {
        /// The frame is larger than the topic's frame capacity.
        TooLarge {
            /// Frame length.
            len: usize,
            /// Capacity.
            capacity: usize,
        },
        /// The value could not be encoded.
        Encode(postcard::Error),
        /// This process is a `fork()` child of the one that opened the
        /// publisher: its copy of the handle must not write (the topic has
        /// one writer, the parent). Open the topic in this process once
        /// the parent has closed it, or publish from the parent.
        ForkedChild {
            /// The pid that opened the publisher.
            opener_pid: u32,
        },
    }

    impl core::fmt::Display for PublishError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                PublishError::TooLarge { len, capacity } => write!(
                    f,
                    "frame of {} exceeds the topic's frame capacity of {}",
                    crate::plural::count(*len, "byte"),
                    crate::plural::count(*capacity, "byte")
                ),
                PublishError::Encode(e) => write!(f, "cannot encode the frame: {e}"),
                PublishError::ForkedChild { opener_pid } => write!(
                    f,
                    "this publisher was opened by process {opener_pid} and this process is a fork() child of it: a topic has one writer, so the child may not publish on the parent's handle (publish from the parent, or open the topic here after the parent closed it)"
                ),
            }
        }
    }

    impl std::error::Error for PublishError {}

    /// A read-write attachment of a topic's segment, held by its one
    /// publisher (who holds the publisher lock).
    #[derive(Debug)]
    pub struct WriteSegment {
        att: WriteAttachment,
        info: HeaderInfo,
        key: i32,
        next: u64,
        /// The topic has notify on: wake sleepers after a publish.
        notify: bool,
        /// This session's waiter segment, when the topic registers waiters
        /// and it could be created.
        waiters: Option<WaiterSegment>,
        /// Why the topic registers waiters but this session has no waiter
        /// segment (then every publish wakes).
        waiter_error: Option<SysError>,
        history: WakeHistory,
        /// `FUTEX_WAKE` calls made by this session.
        wakes: u64,
        lock_outcome: LockOutcome,
        created: bool,
        repaired: u32,
        /// [`sys::fork_count`] when opened: a different count at a publish
        /// means this is a `fork()` child's copy of the handle.
        forks: u32,
        lock: PublisherLock,
    }

    fn memlock_limit() -> u64 {
        match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK) {
            Ok((soft, _)) if soft == libc::RLIM_INFINITY => u64::MAX,
            // rlim_t is 32 bits on armv7-linux-gnueabihf, 64 on x86_64.
            #[allow(clippy::useless_conversion, reason = "rlim_t is u32 on 32-bit ARM")]
            Ok((soft, _)) => u64::from(soft),
            Err(_) => 0,
        }
    }

    impl WriteSegment {
        /// Take the topic's publisher lock, then create its segment, or
        /// reopen the one this user created earlier if its name, schema and
        /// sizes match. Slots left mid-write by a dead publisher are
        /// repaired (emptied). The segment is locked in RAM per
        /// `topic.lock`.
        pub fn open(
            topic: &Topic,
            schema: &[u8],
            frame_capacity: usize,
        ) -> Result<WriteSegment, OpenError> {
            Self::open_as(topic, schema, frame_capacity, true)
        }

        /// [`Self::open`] of a topic that exists: its segment is never
        /// created. [`OpenError::NotFound`] when no segment is at the key
        /// (the topic was removed); a publisher lock this call had to
        /// create is removed again then. For a tool that writes to an
        /// existing topic (the Foxglove server's client publishing), which
        /// must never bring a removed topic back.
        pub fn open_existing(
            topic: &Topic,
            schema: &[u8],
            frame_capacity: usize,
        ) -> Result<WriteSegment, OpenError> {
            Self::open_as(topic, schema, frame_capacity, false)
        }

        fn open_as(
            topic: &Topic,
            schema: &[u8],
            frame_capacity: usize,
            create: bool,
        ) -> Result<WriteSegment, OpenError> {
            topic.validate()?;
            let forks = sys::fork_count();
            let key = topic.key;
            let geometry =
                Geometry::new(schema.len(), topic.slots, frame_capacity).ok_or_else(|| {
                    OpenError::InvalidTopic {
                        reason: Geometry::refusal(schema.len(), topic.slots, frame_capacity)
                            .unwrap_or_default(),
                    }
                })?;
            let size = geometry.segment_size;
            let fingerprint = fnv1a64(schema);
            let wanted = Wanted {
                topic,
                fingerprint,
                geometry,
            };
            let mut lock = match PublisherLock::acquire(key, topic.mode, topic.group) {
                Err(e @ OpenError::PublisherActive { .. }) => {
                    return Err(other_topic_at(key, topic).unwrap_or(e));
                }
                r => r?,
            };
            let euid = nix::unistd::geteuid().as_raw();
            let flags = libc::IPC_CREAT | libc::IPC_EXCL | (topic.mode & 0o777) as i32;
            let (shmid, created) = if !create {
                // Without IPC_CREAT: NotFound when nothing is at the key.
                let id = sys::shmget(key, 0, 0).map_err(|e| map_attach_err(key, e))?;
                (id, false)
            } else {
                match sys::shmget(key, size, flags) {
                    Ok(id) => (id, true),
                    Err(e) if e.errno == Errno::EEXIST => {
                        let id = sys::shmget(key, 0, 0).map_err(|e| map_attach_err(key, e))?;
                        (id, false)
                    }
                    Err(e) => return Err(OpenError::from_sys(key, size as u64, e)),
                }
            };
            // From here on, a segment we created is removed again on failure.
            let cleanup = |e: OpenError| {
                if created {
                    let _ = sys::shm_remove(shmid);
                }
                e
            };
            if created && topic.group.is_some() {
                sys::shm_set_owner(shmid, topic.group, topic.mode)
                    .map_err(|e| cleanup(OpenError::from_sys(key, size as u64, e)))?;
            }
            let st = sys::shm_stat(shmid).map_err(|e| cleanup(map_attach_err(key, e)))?;
            if !created {
                // Never adopt a segment someone else created at our key.
                require_owner(ObjectKind::Segment, key, st.cuid, st.uid, euid)?;
                if st.size < size as u64 {
                    return Err(short_segment(
                        shmid,
                        size as u64,
                        st.size,
                        lock.created(),
                        &wanted,
                    ));
                }
            }
            let att =
                WriteAttachment::read_write(shmid).map_err(|e| cleanup(map_attach_err(key, e)))?;
            let flags = if topic.notify {
                FLAG_NOTIFY | FLAG_WAITERS
            } else {
                0
            };
            // A segment reopened as this topic gets the topic's mode and
            // group if they drifted, before anything is stored: an old
            // session's, and a half-created one's, whose creator was killed
            // between `shmget` and setting the group (its adopter kept the
            // creator's group, and readers of the topic's group were
            // refused for the life of the segment).
            let restore_owner = || {
                if st.perms() != topic.mode || topic.group.is_some_and(|g| g != st.gid) {
                    sys::shm_set_owner(shmid, topic.group, topic.mode)
                        .map_err(|e| OpenError::from_sys(key, size as u64, e))?;
                }
                Ok::<(), OpenError>(())
            };
            let mut repaired = 0;
            let info = if created {
                init_header(&att, &topic.name, schema, &geometry, flags)
            } else {
                match HeaderInfo::read(&att, key) {
                    // A zero magic, and the lock did not exist before this
                    // open: no shmbus publisher ever began creating a topic
                    // here (one takes the lock first, and a crash leaves
                    // it). Another program's zeros: refused, untouched.
                    Err(OpenError::NotReady { .. }) if lock.created() => {
                        return Err(OpenError::NotShmbus { key, magic: 0 });
                    }
                    // Our own segment, left half-initialised by a creator
                    // that died before storing the magic (behind the lock
                    // it left): initialise it.
                    Err(OpenError::NotReady { .. }) if st.size == size as u64 => {
                        restore_owner()?;
                        init_header(&att, &topic.name, schema, &geometry, flags)
                    }
                    // Half-created for another geometry (or another
                    // program's zeros behind a leftover lock): never
                    // resized or adopted; `shmbus rm` removes it.
                    Err(OpenError::NotReady { .. }) => {
                        return Err(OpenError::SizeMismatch {
                            key,
                            expected: size as u64,
                            found: st.size,
                        });
                    }
                    Err(e) => return Err(e),
                    Ok(info) => {
                        check_identity(&info, &wanted)?;
                        restore_owner()?;
                        repaired = repair(&att, &info);
                        info
                    }
                }
            };
            let lock_outcome = match topic.lock {
                LockPolicy::Off => LockOutcome::NotRequested,
                policy => match sys::shm_lock(shmid) {
                    Ok(()) => LockOutcome::Locked,
                    Err(e) => {
                        let err = match e.errno {
                            Errno::EPERM | Errno::ENOMEM => OpenError::LockDenied {
                                key,
                                size: size as u64,
                                memlock_limit: memlock_limit(),
                                errno: e.errno,
                            },
                            _ => OpenError::from_sys(key, size as u64, e),
                        };
                        if policy == LockPolicy::Required {
                            drop(att);
                            return Err(cleanup(err));
                        }
                        LockOutcome::Refused(err)
                    }
                },
            };
            let h = raw_header_of(&att);
            // This session's waiter segment, named in the header before the
            // session's first publish (subscribers read `waiter_ref` after
            // loading `notify`, so one that sees this session's first frame
            // registers here). Without one, every publish wakes.
            let (waiters, waiter_error) = if info.waiters() {
                match WaiterSegment::create(
                    key,
                    shmid,
                    topic.mode,
                    topic.group,
                    topic.lock != LockPolicy::Off,
                ) {
                    Ok(w) => (Some(w), None),
                    Err(e) => (None, Some(e)),
                }
            } else {
                (None, None)
            };
            h.waiter_ref.store(
                waiters.as_ref().map_or(0, WaiterSegment::reference),
                Ordering::Relaxed,
            );
            let newest = h.generation.load(Ordering::Relaxed);
            h.publisher_pid.store(std::process::id(), Ordering::Relaxed);
            h.publisher_epoch.fetch_add(1, Ordering::Relaxed);
            h.publisher_start_real_ns
                .store(sys::realtime_ns(), Ordering::Relaxed);
            if created || h.magic.load(Ordering::Relaxed) != MAGIC_U64 {
                // Release: every field above happens-before a reader that
                // sees the magic (its Acquire load in `HeaderInfo::read`).
                h.magic.store(MAGIC_U64, Ordering::Release);
            }
            if !created && topic.notify {
                // A repair may have raised `notify` (a frame completed by the
                // dead publisher): wake whoever sleeps on the older value.
                let _ = sys::futex_wake_all(&h.notify);
            }
            lock.keep();
            Ok(WriteSegment {
                att,
                info,
                key,
                next: newest.saturating_add(1),
                notify: topic.notify,
                waiters,
                waiter_error,
                history: WakeHistory::new(),
                wakes: 0,
                lock_outcome,
                created,
                repaired,
                forks,
                lock,
            })
        }

        /// The validated header fields.
        pub fn info(&self) -> &HeaderInfo {
            &self.info
        }
        /// The key.
        pub fn key(&self) -> i32 {
            self.key
        }
        /// The shmid.
        pub fn shmid(&self) -> i32 {
            self.att.shmid()
        }
        /// True if the segment was removed (`IPC_RMID`, e.g. `shmbus rm
        /// --force` or `ipcrm`) while this publisher writes it: no new
        /// subscriber can find it, so its frames reach no one new. One
        /// system call; not for every publish.
        pub fn is_removed(&self) -> bool {
            super::shm_removed(self.att.shmid())
        }
        /// True if the topic's publisher lock, held by this publisher, was
        /// removed (`ipcrm -s`) while it writes: nothing keeps a second
        /// publisher out any more, and readers call this one gone. Reopen
        /// the topic (a new lock), as for [`WriteSegment::is_removed`]. One
        /// system call; not for every publish.
        pub fn lock_removed(&self) -> bool {
            self.lock.is_removed()
        }
        /// What became of `SHM_LOCK`.
        pub fn lock_outcome(&self) -> &LockOutcome {
            &self.lock_outcome
        }
        /// True if this open created the segment (false: reopened).
        pub fn created(&self) -> bool {
            self.created
        }
        /// Number of slots found mid-write and emptied when reopening.
        pub fn repaired_slots(&self) -> u32 {
            self.repaired
        }
        /// Generation the next publish will get.
        pub fn next_generation(&self) -> u64 {
            self.next
        }
        /// This session's waiter segment (its shmid), if the topic
        /// registers waiters and it could be created.
        pub fn waiter_shmid(&self) -> Option<i32> {
            self.waiters.as_ref().map(WaiterSegment::shmid)
        }
        /// The waiter word now: how many times subscribers registered to
        /// sleep since this session opened (wrapping). Anyone who may read
        /// the topic may write it, so it is a hint (e.g. "a subscriber has
        /// attached and is waiting"), never a count to trust. `None`
        /// without a waiter segment.
        pub fn sleep_registrations(&self) -> Option<u32> {
            self.waiters
                .as_ref()
                .map(|w| w.word().load(core::sync::atomic::Ordering::Relaxed))
        }
        /// Why this session has no waiter segment although the topic
        /// registers waiters (it then wakes on every publish).
        pub fn waiter_error(&self) -> Option<&SysError> {
            self.waiter_error.as_ref()
        }
        /// `FUTEX_WAKE` calls this session has made.
        pub fn wakes(&self) -> u64 {
            self.wakes
        }

        /// Publish one frame: `encode` writes it into the slot's data words
        /// and returns its length. No system call and no allocation, except
        /// `FUTEX_WAKE` when the topic has notify on and a subscriber
        /// registered to sleep since two publishes ago (every publish if
        /// the session has no waiter segment). Returns the frame's
        /// generation.
        ///
        /// If `encode` fails or panics, the write is abandoned: the slot is
        /// left empty (generation 0, sequence even) and the generation is not
        /// advanced; the next publish reuses it.
        #[inline]
        pub fn publish_with(
            &mut self,
            mono_ns: u64,
            real_ns: u64,
            encode: impl FnOnce(&[AtomicU32], usize) -> Result<usize, PublishError>,
        ) -> Result<u64, PublishError> {
            self.check_not_forked()?;
            let g = self.next;
            let cap = self.info.geometry.frame_capacity;
            let slot = SlotWrite::begin(
                slot_atomics(&self.att, &self.info, g),
                self.info.geometry.frame_words(),
            );
            // If `encode` panics, unwinding drops `slot`: the write is
            // abandoned (slot emptied, sequence even, generation unchanged).
            let result = encode(slot.data, cap).and_then(|len| {
                if len > cap {
                    Err(PublishError::TooLarge { len, capacity: cap })
                } else {
                    Ok(len)
                }
            });
            match result {
                Ok(len) => slot.commit(len as u32, g, mono_ns, real_ns),
                Err(e) => {
                    drop(slot);
                    return Err(e);
                }
            }
            self.finish_publish(g, mono_ns, real_ns);
            Ok(g)
        }

        /// Publish one encoded frame: its length is checked first (a frame
        /// over the capacity touches nothing), then the slot's write copies
        /// it a word at a time ([`crate::codec::store_bytes`]). The fast
        /// path of both publishers; otherwise as [`Self::publish_with`].
        #[inline(always)]
        pub fn publish_bytes(
            &mut self,
            frame: &[u8],
            mono_ns: u64,
            real_ns: u64,
        ) -> Result<u64, PublishError> {
            self.publish_copied(frame.len(), mono_ns, real_ns, |words| {
                crate::codec::store_bytes(words, frame)
            })
        }

        /// Publish one encoded frame of exactly `N` bytes, `N` known when
        /// the program is compiled: [`Self::publish_bytes`] without its
        /// variable-length copy. The capacity check compares a constant,
        /// and the copy is `N / 4` word stores with no loop
        /// ([`crate::codec::store_array`]). The slot ends up byte for byte
        /// as `publish_bytes` leaves it. A frame over the capacity touches
        /// nothing.
        #[inline(always)]
        pub fn publish_array<const N: usize>(
            &mut self,
            frame: &[u8; N],
            mono_ns: u64,
            real_ns: u64,
        ) -> Result<u64, PublishError> {
            self.publish_copied(N, mono_ns, real_ns, |words| {
                crate::codec::store_array(words, frame)
            })
        }

        /// The two publishes of encoded bytes: a frame of `len` bytes over
        /// the capacity is refused before the slot's write begins (it
        /// touches nothing); otherwise `copy` stores it into the slot's
        /// first `len.div_ceil(4)` data words, then the slot is committed
        /// and the header updated. Inlined, so a constant `len` folds.
        #[inline(always)]
        fn publish_copied(
            &mut self,
            len: usize,
            mono_ns: u64,
            real_ns: u64,
            copy: impl FnOnce(&[AtomicU32]),
        ) -> Result<u64, PublishError> {
            let cap = self.info.geometry.frame_capacity;
            if len > cap {
                return Err(PublishError::TooLarge { len, capacity: cap });
            }
            self.check_not_forked()?;
            let g = self.next;
            let slot = SlotWrite::begin(slot_atomics(&self.att, &self.info, g), len.div_ceil(4));
            copy(slot.data);
            slot.commit(len as u32, g, mono_ns, real_ns);
            self.finish_publish(g, mono_ns, real_ns);
            Ok(g)
        }

        /// Refuse to write from a `fork()` child's copy of this handle: one
        /// load and a compare.
        #[inline(always)]
        fn check_not_forked(&self) -> Result<(), PublishError> {
            if sys::forks_now() == self.forks {
                Ok(())
            } else {
                Err(PublishError::ForkedChild {
                    opener_pid: self.lock.holder_pid(),
                })
            }
        }

        /// After frame `g`'s slot is complete: the header's live fields,
        /// then the wake-up decision.
        #[inline(always)]
        fn finish_publish(&mut self, g: u64, mono_ns: u64, real_ns: u64) {
            let h = raw_header_of(&self.att);
            h.last_publish_mono_ns.store(mono_ns, Ordering::Relaxed);
            h.last_publish_real_ns.store(real_ns, Ordering::Relaxed);
            // Release: a reader whose Acquire load sees `g` finds slot `g`
            // complete (its `write_end` came first in this thread).
            h.generation.store(g, Ordering::Release);
            h.notify.store(g as u32, Ordering::Release);
            if self.notify {
                // One load of the waiter word after a SeqCst fence
                // (`waiter::WakeHistory`): no system call unless someone
                // registered to sleep since two publishes ago.
                let wake = match &self.waiters {
                    Some(w) => self.history.after_publish(w.word()),
                    None => true,
                };
                if wake {
                    // A failure here (cannot happen for a valid mapped word)
                    // only delays waiters until their timeout slice.
                    let _ = sys::futex_wake_all(&h.notify);
                    self.wakes += 1;
                }
            }
            self.next = g.saturating_add(1);
        }

        /// A read-only view of the same mapping, for reading back.
        pub fn read_slot<R>(
            &self,
            generation: u64,
            f: impl FnMut(&SlotMeta, ReadWords<'_>) -> R,
        ) -> Result<(SlotMeta, R), ReadError> {
            read_slot(
                &self.att,
                &self.info,
                self.key,
                generation,
                DEFAULT_STUCK_AFTER,
                f,
            )
        }

        /// Remove the segment and the publisher lock (`IPC_RMID`). Attached
        /// subscribers keep their mapping until they detach; they see the
        /// topic as removed.
        ///
        /// From a `fork()` child's copy of the handle: `EPERM`, and nothing
        /// is removed (the topic is the parent's, which still publishes).
        pub fn remove(self) -> Result<(), SysError> {
            if std::process::id() != self.lock.holder_pid() {
                return Err(SysError {
                    call: Call::ShmRemove,
                    errno: Errno::EPERM,
                });
            }
            sys::shm_remove(self.att.shmid())?;
            let _ = lock::remove_lock(self.key);
            Ok(())
        }
    }

    fn init_header(
        att: &WriteAttachment,
        name: &str,
        schema: &[u8],
        g: &Geometry,
        flags: u32,
    ) -> HeaderInfo {
        let h = raw_header_of(att);
        let r = Ordering::Relaxed;
        h.magic.store(0, r);
        h.layout_version.store(LAYOUT_VERSION, r);
        h.header_size.store(g.header_size as u32, r);
        h.slot_count.store(g.slot_count, r);
        h.slot_stride.store(g.slot_stride as u32, r);
        h.frame_capacity.store(g.frame_capacity as u32, r);
        h.flags.store(flags, r);
        h.segment_size.store(g.segment_size as u64, r);
        h.schema_fingerprint.store(fnv1a64(schema), r);
        h.schema_offset
            .store(crate::layout::HEADER_FIXED_SIZE as u32, r);
        h.schema_len.store(schema.len() as u32, r);
        h.name_len.store(name.len() as u32, r);
        let mut name_bytes = [0u8; 64];
        name_bytes[..name.len()].copy_from_slice(name.as_bytes());
        crate::codec::store_bytes(&h.name, &name_bytes);
        let created = sys::realtime_ns();
        h.created_real_ns.store(created, r);
        if let Some(words) =
            att.atomic_words(crate::layout::HEADER_FIXED_SIZE, schema.len().div_ceil(4))
        {
            crate::codec::store_bytes(words, schema);
        }
        h.generation.store(0, r);
        h.notify.store(0, r);
        HeaderInfo {
            geometry: *g,
            flags,
            schema_fingerprint: fnv1a64(schema),
            schema: schema.to_vec(),
            name: name.to_string(),
            created_real_ns: created,
        }
    }

    /// Empty every slot left mid-write (odd sequence) by a dead publisher and
    /// bring the header's generation up to the newest complete slot.
    /// Returns the number of slots repaired.
    ///
    /// A repair is a write like any other, through the same functions: a
    /// [`SlotWrite`] begun on the odd word (which rounds it up and stores the
    /// next odd value, then fences) and abandoned, which empties the slot
    /// and ends the write with a Release store.
    fn repair(att: &WriteAttachment, info: &HeaderInfo) -> u32 {
        let mut repaired = 0;
        let mut newest = 0u64;
        for i in 0..u64::from(info.geometry.slot_count) {
            let w = slot_atomics(att, info, i);
            // Relaxed: the publisher lock makes us the only writer, and the
            // dead one's stores are visible (the kernel released its lock).
            let g = u64::from(w[GEN_LO].load(Ordering::Relaxed))
                | (u64::from(w[GEN_HI].load(Ordering::Relaxed)) << 32);
            // Mid-write (a publisher died in it), or a generation no
            // publisher writes (the segment was overwritten): emptied. Taken
            // as the newest, an impossible generation made every later
            // frame one that readers refuse as corrupt, and the topic
            // unreadable for good.
            if w[SEQ].load(Ordering::Relaxed) & 1 == 1 || g > MAX_SANE_GENERATION {
                drop(SlotWrite::begin(w, 0));
                repaired += 1;
            } else {
                newest = newest.max(g);
            }
        }
        let h = raw_header_of(att);
        // The header's generation, unless it is impossible too: then the
        // newest frame still in the ring is where the count goes on.
        let hg = h.generation.load(Ordering::Relaxed);
        let g = if hg > MAX_SANE_GENERATION {
            newest
        } else {
            hg.max(newest)
        };
        h.generation.store(g, Ordering::Release);
        h.notify.store(g as u32, Ordering::Release);
        repaired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shmid that named a segment and no longer does.
    fn stale_shmid() -> i32 {
        let id = sys::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600)
            .expect("create a private segment");
        sys::shm_remove(id).expect("remove it");
        id
    }

    /// The key's lookups answer `ids` in turn, then "no segment".
    fn lookups(ids: Vec<i32>) -> impl FnMut() -> Result<i32, SysError> {
        let mut ids = ids.into_iter();
        move || {
            ids.next().ok_or(SysError {
                call: Call::Shmget,
                errno: Errno::ENOENT,
            })
        }
    }

    const KEY: i32 = 0x7e5b_0001;

    const MS: u64 = 1_000_000;
    const STUCK: Duration = Duration::from_millis(200);

    /// Looks every 5 ms at a slot whose sequence reads `seqs` in turn, with
    /// the lock saying `status` and the header's publisher `header`: the
    /// first verdict, and at which look (from 0).
    fn verdict(
        seqs: impl Fn(u64) -> u32,
        status: PublisherStatus,
        header: Option<i32>,
    ) -> Option<(u64, ReadError)> {
        let mut w = SlotWatch::default();
        (0..1000).find_map(|i| {
            w.look(
                1_000 * MS + i * 5 * MS,
                seqs(i),
                STUCK,
                || status,
                || header,
            )
            .map(|e| (i, e))
        })
    }

    #[test]
    fn a_write_that_does_not_end_is_stuck_only_after_the_bound() {
        let alive = PublisherStatus::Alive { pid: 42 };
        let (at, e) = verdict(|_| 7, alive, Some(42)).unwrap();
        assert_eq!(at, 40, "200 ms of 5 ms looks");
        assert_eq!(
            e,
            ReadError::WriterStuck {
                pid: 42,
                waited: STUCK
            }
        );
        // The lock free: died at the first look. The lock removed and the
        // header's publisher gone: died at once; still there: stuck.
        assert_eq!(
            verdict(|_| 7, PublisherStatus::NotRunning, None),
            Some((0, ReadError::PublisherDied))
        );
        assert_eq!(
            verdict(|_| 7, PublisherStatus::NoLock, None),
            Some((0, ReadError::PublisherDied))
        );
        assert!(matches!(
            verdict(|_| 7, PublisherStatus::NoLock, Some(9)),
            Some((40, ReadError::WriterStuck { pid: 9, .. }))
        ));
        assert_eq!(
            verdict(|_| 7, PublisherStatus::Unknown, None),
            Some((40, ReadError::PublisherDied))
        );
    }

    /// A sequence that keeps moving is a publisher (or another process)
    /// rewriting the slot during every read: `Overwritten` after the bound,
    /// whatever the lock says. It was "stuck" for a live publisher, "died"
    /// without a lock, and with the lock free and the word even a read
    /// retried for as long as the writes went on.
    #[test]
    fn a_slot_rewritten_during_every_read_is_overwritten_after_the_bound() {
        let overwritten = ReadError::Overwritten { waited: STUCK };
        for status in [
            PublisherStatus::Alive { pid: 42 },
            PublisherStatus::NoLock,
            PublisherStatus::Unknown,
            PublisherStatus::NotRunning,
        ] {
            // Even at every look (a hostile writer adding 2).
            let got = verdict(|i| 2 * i as u32, status, Some(42));
            assert_eq!(got, Some((40, overwritten.clone())), "{status:?}");
        }
        // Odd at every look, a new write each time (a publisher writing
        // large frames back to back), with a live publisher either way.
        for status in [
            PublisherStatus::Alive { pid: 42 },
            PublisherStatus::NoLock,
            PublisherStatus::Unknown,
        ] {
            let got = verdict(|i| 2 * i as u32 + 1, status, Some(42));
            assert_eq!(got, Some((40, overwritten.clone())), "{status:?}");
        }
        // A writer stalled mid-write for 150 ms that then writes on: a new
        // run of looks, "overwritten" only 200 ms after it moved (it was
        // at 200 ms from the first look, just after the stall ended, and
        // failed the stress test's readers under load).
        let got = verdict(
            |i| if i < 30 { 7 } else { 2 * i as u32 },
            PublisherStatus::Alive { pid: 42 },
            Some(42),
        );
        assert_eq!(
            got,
            Some((70, overwritten.clone())),
            "a fresh run after the stall"
        );
        // The same word at every look, though reads keep failing (changed
        // and changed back between looks): given up at the cap.
        let got = verdict(|_| 8, PublisherStatus::NotRunning, None);
        assert_eq!(
            got,
            Some((
                160,
                ReadError::Overwritten {
                    waited: STUCK * OVERWRITTEN_CAP
                }
            ))
        );
        // A write that moved, then stopped mid-way: stuck 200 ms after it
        // stopped, not "overwritten" at 200 ms from the start.
        let got = verdict(
            |i| if i < 30 { 2 * i as u32 + 1 } else { 99 },
            PublisherStatus::Alive { pid: 42 },
            Some(42),
        );
        assert!(
            matches!(got, Some((70, ReadError::WriterStuck { .. }))),
            "{got:?}"
        );
    }

    #[test]
    fn a_segment_removed_between_lookup_and_attach_is_looked_up_again() {
        // Gone, and nothing at the key now: "not found", not "removed;
        // restart its publisher".
        let r = attach_key_via(KEY, lookups(vec![stale_shmid()]));
        assert!(matches!(r, Err(OpenError::NotFound { key: KEY })), "{r:?}");
        // Gone twice (a publisher replacing it as we look), then nothing.
        let r = attach_key_via(KEY, lookups(vec![stale_shmid(), stale_shmid()]));
        assert!(matches!(r, Err(OpenError::NotFound { key: KEY })), "{r:?}");
    }

    #[test]
    fn removed_only_after_every_lookup_raced_a_removal() {
        let ids = (0..ATTACH_LOOKUPS).map(|_| stale_shmid()).collect();
        let r = attach_key_via(KEY, lookups(ids));
        assert!(matches!(r, Err(OpenError::Removed { key: KEY })), "{r:?}");
    }

    /// The new segment a replacing publisher created is attached.
    #[cfg(feature = "writer")]
    #[test]
    fn the_segment_that_replaced_a_removed_one_is_attached() {
        let key = 0x7e5b_0000 | (std::process::id() as i32 & 0xffff);
        let topic = Topic::new("test/core-lookup-race")
            .key(key)
            .lock(crate::LockPolicy::Off);
        let w = WriteSegment::open(&topic, b"schema", 64).expect("create the topic");
        struct Remove(Option<WriteSegment>);
        impl Drop for Remove {
            fn drop(&mut self) {
                if let Some(w) = self.0.take() {
                    let _ = w.remove();
                }
            }
        }
        let live = w.shmid();
        let _cleanup = Remove(Some(w));
        let r = attach_key_via(key, lookups(vec![stale_shmid(), live]));
        let seg = r.expect("the new segment is attached");
        assert_eq!(seg.shmid(), live);
        assert_eq!(seg.info().name, "test/core-lookup-race");
    }
}

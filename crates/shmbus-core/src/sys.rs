//! Thin wrappers over the System V and futex system calls the bus uses.
//!
//! This module and [`crate::seqlock`]/[`crate::segment`] are the only places
//! with `unsafe` code. Each wrapper documents the C call it makes. Failures come
//! back as [`SysError`]: the call's name and its `errno`. The caller, which knows
//! the key and the sizes involved, turns that into a named error
//! ([`crate::OpenError`]) with a message that says what to do.

use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::AtomicU32;
use core::time::Duration;

pub use nix::errno::Errno;

use crate::layout::{RawHeader, RawWaiter};
use crate::view::{ReadHeader, ReadWord32, ReadWords};

/// `SHM_DEST` in `shm_perm.mode`: the segment has been removed (`IPC_RMID`)
/// and disappears when the last process detaches.
pub const SHM_DEST: u32 = 0o1000;
/// `SHM_LOCKED` in `shm_perm.mode`: the segment is locked in RAM (`SHM_LOCK`).
pub const SHM_LOCKED: u32 = 0o2000;

/// Which system call failed. Code branches on this, never on text; its
/// `Display` is the C call as the man pages write it (`shmctl(IPC_STAT)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Call {
    /// `shmget`.
    Shmget,
    /// `shmat`.
    Shmat,
    /// `shmctl(IPC_STAT)`.
    ShmStat,
    /// `shmctl(IPC_SET)`.
    ShmSet,
    /// `shmctl(SHM_LOCK)`.
    ShmLock,
    /// `shmctl(IPC_RMID)`.
    ShmRemove,
    /// `semget`.
    Semget,
    /// `semop`.
    Semop,
    /// `semctl(GETVAL)`.
    SemGetval,
    /// `semctl(GETPID)`.
    SemGetpid,
    /// `semctl(IPC_STAT)`.
    SemStat,
    /// `semctl(IPC_SET)`.
    SemSet,
    /// `semctl(IPC_RMID)`.
    SemRemove,
    /// `futex(FUTEX_WAIT)`.
    FutexWait,
    /// `futex(FUTEX_WAKE)`.
    FutexWake,
}

impl Call {
    /// The C call, e.g. `"shmctl(IPC_STAT)"`.
    pub fn name(self) -> &'static str {
        match self {
            Call::Shmget => "shmget",
            Call::Shmat => "shmat",
            Call::ShmStat => "shmctl(IPC_STAT)",
            Call::ShmSet => "shmctl(IPC_SET)",
            Call::ShmLock => "shmctl(SHM_LOCK)",
            Call::ShmRemove => "shmctl(IPC_RMID)",
            Call::Semget => "semget",
            Call::Semop => "semop",
            Call::SemGetval => "semctl(GETVAL)",
            Call::SemGetpid => "semctl(GETPID)",
            Call::SemStat => "semctl(IPC_STAT)",
            Call::SemSet => "semctl(IPC_SET)",
            Call::SemRemove => "semctl(IPC_RMID)",
            Call::FutexWait => "futex(FUTEX_WAIT)",
            Call::FutexWake => "futex(FUTEX_WAKE)",
        }
    }

    /// True for the semaphore calls (the publisher lock).
    pub fn is_semaphore(self) -> bool {
        matches!(
            self,
            Call::Semget
                | Call::Semop
                | Call::SemGetval
                | Call::SemGetpid
                | Call::SemStat
                | Call::SemSet
                | Call::SemRemove
        )
    }
}

impl core::fmt::Display for Call {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed system call: which call, and the `errno` it set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysError {
    /// The call that failed.
    pub call: Call,
    /// The error number.
    pub errno: Errno,
}

impl core::fmt::Display for SysError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.call, self.errno.desc())
    }
}

impl std::error::Error for SysError {}

fn last(call: Call) -> SysError {
    SysError {
        call,
        errno: Errno::last(),
    }
}

/// `IPC_PRIVATE` (0) as a key: a lookup there would create a new object on
/// every call, and it is the key `/proc` shows for a removed segment.
fn private_key(call: Call) -> SysError {
    SysError {
        call,
        errno: Errno::ENOENT,
    }
}

/// What `shmctl(IPC_STAT)` reports about a segment, as fixed-width values that
/// are the same on 32-bit and 64-bit targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmStat {
    /// The key the segment was created with (0 once it has been removed).
    pub key: i32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Creator user id.
    pub cuid: u32,
    /// Creator group id.
    pub cgid: u32,
    /// Permission bits plus [`SHM_DEST`] and [`SHM_LOCKED`].
    pub mode: u32,
    /// Size in bytes as the kernel sees it.
    pub size: u64,
    /// Time of the last `shmat`, seconds since the epoch.
    pub atime: i64,
    /// Time of the last `shmdt`, seconds since the epoch.
    pub dtime: i64,
    /// Time of the last change, seconds since the epoch.
    pub ctime: i64,
    /// Pid of the creator.
    pub cpid: i32,
    /// Pid of the last `shmat`/`shmdt`.
    pub lpid: i32,
    /// Number of current attachments.
    pub nattch: u64,
}

impl ShmStat {
    /// True once `IPC_RMID` was called on the segment.
    pub fn removed(&self) -> bool {
        self.mode & SHM_DEST != 0
    }
    /// True while the segment is locked in RAM.
    pub fn locked(&self) -> bool {
        self.mode & SHM_LOCKED != 0
    }
    /// The rwx permission bits (`mode & 0o777`).
    pub fn perms(&self) -> u32 {
        self.mode & 0o777
    }
}

/// `shmget(key, size, flags)`: find or create a segment. Returns the shmid.
///
/// Key 0 (`IPC_PRIVATE`) without `IPC_CREAT` is refused with `ENOENT`
/// before any call: no topic lives there (`/proc` shows key 0 for removed
/// segments), and `shmget(IPC_PRIVATE, ...)` would create a new segment.
/// See shmget(2).
pub fn shmget(key: i32, size: usize, flags: i32) -> Result<i32, SysError> {
    if key == libc::IPC_PRIVATE && flags & libc::IPC_CREAT == 0 {
        return Err(private_key(Call::Shmget));
    }
    // SAFETY: shmget takes plain integers and touches no memory of ours.
    let id = unsafe { libc::shmget(key, size, flags) };
    if id < 0 {
        Err(last(Call::Shmget))
    } else {
        Ok(id)
    }
}

/// `shmget(IPC_PRIVATE, size, IPC_CREAT | mode)`: a new segment with no
/// key, for a publisher's waiter segment. See shmget(2).
#[cfg(feature = "writer")]
pub(crate) fn shm_create_private(size: usize, mode: u32) -> Result<i32, SysError> {
    let flags = libc::IPC_CREAT | (mode & 0o777) as i32;
    // SAFETY: plain integer arguments; touches no memory of ours.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, size, flags) };
    if id < 0 {
        Err(last(Call::Shmget))
    } else {
        Ok(id)
    }
}

/// Run `f` with every signal that can be blocked held back in the calling
/// thread (`pthread_sigmask(SIG_BLOCK, all)`, then the mask it had): one
/// that arrives meanwhile is delivered when `f` returns. For the few system
/// calls between creating an object and marking it removed, where a signal
/// whose default action ends the process (SIGTERM from `systemctl stop`,
/// SIGINT, SIGHUP, SIGALRM, ...) would leave the object behind for good.
///
/// SIGKILL and SIGSTOP cannot be held back, and neither can a signal that
/// another thread of the process takes: a signal sent to the process goes
/// to any thread that does not block it, and a fatal one ends them all. If
/// the mask cannot be changed, `f` runs anyway.
#[cfg(feature = "writer")]
pub(crate) fn with_signals_held<R>(f: impl FnOnce() -> R) -> R {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    /// Puts the mask back, also if `f` panics.
    struct Restore(SigSet);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
        }
    }
    let mut before = SigSet::empty();
    let _restore = pthread_sigmask(
        SigmaskHow::SIG_BLOCK,
        Some(&SigSet::all()),
        Some(&mut before),
    )
    .ok()
    .map(|()| Restore(before));
    f()
}

/// `shmctl(shmid, IPC_STAT, &buf)`: the segment's kernel-side description.
///
/// See shmctl(2).
pub fn shm_stat(shmid: i32) -> Result<ShmStat, SysError> {
    // SAFETY: shmid_ds is plain old data; all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { core::mem::zeroed() };
    // SAFETY: `ds` is a valid, writable shmid_ds for the kernel to fill.
    let rc = unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) };
    if rc < 0 {
        return Err(last(Call::ShmStat));
    }
    #[allow(clippy::useless_conversion, reason = "field widths differ per target")]
    Ok(ShmStat {
        key: ds.shm_perm.__key,
        uid: ds.shm_perm.uid,
        gid: ds.shm_perm.gid,
        cuid: ds.shm_perm.cuid,
        cgid: ds.shm_perm.cgid,
        mode: u32::from(ds.shm_perm.mode),
        size: ds.shm_segsz as u64,
        atime: i64::from(ds.shm_atime),
        dtime: i64::from(ds.shm_dtime),
        ctime: i64::from(ds.shm_ctime),
        cpid: ds.shm_cpid,
        lpid: ds.shm_lpid,
        nattch: ds.shm_nattch as u64,
    })
}

/// `shmctl(shmid, IPC_SET, ...)` changing only the group and mode.
///
/// See shmctl(2).
pub fn shm_set_owner(shmid: i32, gid: Option<u32>, mode: u32) -> Result<(), SysError> {
    // SAFETY: shmid_ds is plain old data; all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { core::mem::zeroed() };
    // SAFETY: `ds` is a valid, writable shmid_ds for the kernel to fill.
    if unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) } < 0 {
        return Err(last(Call::ShmStat));
    }
    if let Some(g) = gid {
        ds.shm_perm.gid = g;
    }
    #[allow(clippy::unnecessary_cast, reason = "mode is u16 on some targets")]
    {
        ds.shm_perm.mode = (mode & 0o777) as _;
    }
    // SAFETY: `ds` is a fully initialised shmid_ds read from the kernel.
    if unsafe { libc::shmctl(shmid, libc::IPC_SET, &mut ds) } < 0 {
        return Err(last(Call::ShmSet));
    }
    Ok(())
}

/// `shmctl(shmid, SHM_LOCK, NULL)`: lock the segment's pages in RAM.
///
/// See shmctl(2): needs `CAP_IPC_LOCK` or a large enough `RLIMIT_MEMLOCK`.
pub fn shm_lock(shmid: i32) -> Result<(), SysError> {
    // SAFETY: SHM_LOCK ignores the buffer argument.
    let rc = unsafe { libc::shmctl(shmid, libc::SHM_LOCK, core::ptr::null_mut()) };
    if rc < 0 {
        Err(last(Call::ShmLock))
    } else {
        Ok(())
    }
}

/// `shmctl(shmid, IPC_RMID, NULL)`: mark the segment for removal. It goes
/// away when the last process detaches; its key is free at once.
///
/// See shmctl(2).
pub fn shm_remove(shmid: i32) -> Result<(), SysError> {
    // SAFETY: IPC_RMID ignores the buffer argument.
    let rc = unsafe { libc::shmctl(shmid, libc::IPC_RMID, core::ptr::null_mut()) };
    if rc < 0 {
        Err(last(Call::ShmRemove))
    } else {
        Ok(())
    }
}

/// A read-only attachment of a System V segment (`shmat` with
/// `SHM_RDONLY`), detached on drop (`shmdt`).
///
/// It hands out only load-only views ([`ReadWords`], [`ReadWord32`],
/// [`ReadHeader`]): other processes write the mapping concurrently, and the
/// kernel faults any store through it. With the `writer` feature,
/// [`WriteAttachment`] is the read-write attachment of a publisher; it
/// dereferences to this type for loads.
#[derive(Debug)]
pub struct Attachment {
    ptr: NonNull<u8>,
    len: usize,
    shmid: i32,
    /// The word [`Self::marked`] loads: [`NO_WORD`] until [`Self::set_mark`]
    /// chooses one of the mapping's whole words (with a bounds check).
    mark: NonNull<AtomicU32>,
}

/// What [`Attachment::marked`] loads before a word of the mapping is chosen.
static NO_WORD: AtomicU32 = AtomicU32::new(0);

// SAFETY: the attachment is a pointer to process-wide shared memory that is
// only accessed through atomics (`mark` points into that memory or at a
// static atomic); moving it or sharing it between threads is as safe as
// sharing `&[AtomicU32]`.
unsafe impl Send for Attachment {}
// SAFETY: as above; all access goes through atomic operations.
unsafe impl Sync for Attachment {}

impl Attachment {
    /// `shmat(shmid, NULL, SHM_RDONLY)`: attach read-only. A store through
    /// this mapping faults (SIGSEGV): the kernel enforces it, and this type
    /// offers no store.
    pub fn read_only(shmid: i32) -> Result<Self, SysError> {
        Self::attach(shmid, true)
    }

    fn attach(shmid: i32, read_only: bool) -> Result<Self, SysError> {
        // Size first: the kernel's figure, not the header's, bounds every access.
        let len = usize::try_from(shm_stat(shmid)?.size).map_err(|_| SysError {
            call: Call::ShmStat,
            errno: Errno::EFBIG,
        })?;
        let flags = if read_only { libc::SHM_RDONLY } else { 0 };
        // SAFETY: a null address lets the kernel choose where to map; we only
        // use the returned pointer within `len` bytes, through atomics.
        let p = unsafe { libc::shmat(shmid, core::ptr::null(), flags) };
        if p as isize == -1 {
            return Err(last(Call::Shmat));
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(SysError {
            call: Call::Shmat,
            errno: Errno::EFAULT,
        })?;
        // From here the mapping is owned: every return below that is not
        // `Ok` drops it, and the drop detaches (a `?` that returned with the
        // raw pointer leaked a mapping, and a count in `nattch` that kept a
        // removed topic's memory, for the life of the process).
        let att = Attachment {
            ptr,
            len,
            shmid,
            mark: NonNull::from(&NO_WORD),
        };
        // The size may have been read before a concurrent remove-and-recreate
        // gave the shmid... shmids are not reused that fast, but re-check that
        // the segment we attached is the size we will trust.
        let again = shm_stat(shmid)?.size;
        if again as usize != len {
            return Err(SysError {
                call: Call::Shmat,
                errno: Errno::EAGAIN,
            });
        }
        Ok(att)
    }

    /// The segment's size in bytes, from the kernel (`shm_segsz`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: segments are never empty. Present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The shmid this attachment maps.
    pub fn shmid(&self) -> i32 {
        self.shmid
    }

    /// The atomics of `count` words from byte `offset`, if inside and
    /// 4-aligned. Crate-private: readers get [`Self::words`].
    #[inline]
    fn atomics(&self, offset: usize, count: usize) -> Option<&[AtomicU32]> {
        if offset % 4 != 0 {
            return None;
        }
        let first = offset / 4;
        // [offset, offset + 4 * count) is inside `len` bytes exactly when
        // these words are among the mapping's whole words.
        self.all_atomics().get(first..first.checked_add(count)?)
    }

    /// Choose the word [`Self::marked`] loads: word `index` of the mapping
    /// (byte offset `4 * index`). False, and the mark unchanged, if the
    /// mapping has no such word.
    pub fn set_mark(&mut self, index: usize) -> bool {
        match self.all_atomics().get(index) {
            Some(w) => {
                self.mark = NonNull::from(w);
                true
            }
            None => false,
        }
    }

    /// A Relaxed load of the word [`Self::set_mark`] chose (0 before it
    /// chose one), with no bounds check: that was made once, when the word
    /// was chosen. A poll loop that asks the same word many times loads the
    /// mark and the word, where an index would also load the mapping's
    /// address and length and compare.
    #[inline(always)]
    pub fn marked(&self) -> u32 {
        // SAFETY: `mark` points at the static `NO_WORD` or, set by
        // `set_mark` only, at one of `all_atomics()`'s words: inside the
        // mapping, which stays attached for as long as `self` lives (only
        // `Drop` detaches it) and does not move when `self` moves. The
        // reference lives only for this load, a Relaxed load as
        // `all_atomics` allows on read-only memory.
        unsafe { self.mark.as_ref() }.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Every whole 32-bit word of the mapping. Built on each call from the
    /// pointer and the length, with no check to make: a poller's every
    /// access starts here.
    #[inline(always)]
    fn all_atomics(&self) -> &[AtomicU32] {
        // SAFETY: `len / 4` words from the start are inside the mapping of
        // `len` bytes and 4-aligned (the mapping is page-aligned). AtomicU32
        // may alias memory that other processes access atomically, and a
        // reference to it into read-only memory is allowed as long as only
        // Relaxed loads are made through it, which is all the views do. The
        // slice lives no longer than `self`, which keeps the mapping attached.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU32>(), self.len / 4) }
    }

    /// The 32-bit word at byte `offset`, load-only, or `None` if it is not
    /// inside the segment or not 4-byte aligned.
    #[inline]
    pub fn word(&self, offset: usize) -> Option<ReadWord32<'_>> {
        self.atomics(offset, 1).map(|w| ReadWord32::from(&w[0]))
    }

    /// Every whole 32-bit word of the segment, load-only: index it with
    /// [`ReadWords::get`] (one bounds check).
    #[inline(always)]
    pub fn all_words(&self) -> ReadWords<'_> {
        ReadWords::from(self.all_atomics())
    }

    /// `count` consecutive 32-bit words from byte `offset`, load-only, or
    /// `None` if any of them is outside the segment or `offset` is not
    /// 4-byte aligned.
    #[inline]
    pub fn words(&self, offset: usize, count: usize) -> Option<ReadWords<'_>> {
        self.atomics(offset, count).map(ReadWords::from)
    }

    /// The 256-byte header, load-only, or `None` if the segment is smaller.
    #[inline]
    pub fn header(&self) -> Option<ReadHeader<'_>> {
        self.raw_header().map(ReadHeader::from)
    }

    #[inline]
    fn raw_header(&self) -> Option<&RawHeader> {
        if core::mem::size_of::<RawHeader>() > self.len {
            return None;
        }
        // SAFETY: in bounds (checked), page-aligned base (RawHeader needs 8),
        // and RawHeader is a repr(C) struct of atomic integers only, so any
        // bit pattern another process writes is a valid value and concurrent
        // atomic access is not a race. Read-only callers wrap it in
        // `ReadHeader`, which only loads.
        Some(unsafe { &*self.ptr.as_ptr().cast::<RawHeader>() })
    }
}

/// A read-write attachment of a topic's **waiter segment** (`shmat(shmid,
/// NULL, 0)`): 128 bytes that every reader of the topic may write
/// (`docs/LAYOUT.md` section 7.4). It is not behind the `writer` feature
/// because a subscriber registers there before it sleeps; it hands out the
/// waiter segment's [`RawWaiter`] only, and [`crate::waiter`] checks the
/// segment's identity before anything is stored.
#[derive(Debug)]
pub struct WaiterAttachment {
    att: Attachment,
}

impl WaiterAttachment {
    /// `shmat(shmid, NULL, 0)`: attach read-write. Fails with `EACCES` for a
    /// process that may not write the segment.
    pub(crate) fn attach(shmid: i32) -> Result<Self, SysError> {
        Ok(WaiterAttachment {
            att: Attachment::attach(shmid, false)?,
        })
    }

    /// The shmid.
    pub fn shmid(&self) -> i32 {
        self.att.shmid
    }

    /// The segment as a [`RawWaiter`], or `None` if it is smaller.
    #[inline]
    pub(crate) fn raw(&self) -> Option<&RawWaiter> {
        if core::mem::size_of::<RawWaiter>() > self.att.len {
            return None;
        }
        // SAFETY: in bounds (checked), page-aligned base (RawWaiter needs
        // 8), and RawWaiter is a repr(C) struct of atomic integers only, so
        // any bit pattern is a valid value and concurrent atomic access from
        // other processes is not a race. The mapping is read-write, so the
        // stores `crate::waiter` makes through it are allowed. The reference
        // lives no longer than `self`, which keeps the mapping attached.
        Some(unsafe { &*self.att.ptr.as_ptr().cast::<RawWaiter>() })
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from a successful shmat and is detached once.
        // No reference into the mapping outlives `self` (they borrow it).
        unsafe { libc::shmdt(self.ptr.as_ptr().cast::<c_void>()) };
    }
}

/// A read-write attachment (`shmat` without `SHM_RDONLY`): the publisher's.
/// Dereferences to [`Attachment`] for load-only views.
#[cfg(feature = "writer")]
#[derive(Debug)]
pub struct WriteAttachment {
    att: Attachment,
}

#[cfg(feature = "writer")]
impl WriteAttachment {
    /// `shmat(shmid, NULL, 0)`: attach read-write.
    pub fn read_write(shmid: i32) -> Result<Self, SysError> {
        Ok(WriteAttachment {
            att: Attachment::attach(shmid, false)?,
        })
    }

    /// The writable 32-bit word at byte `offset`, if inside and aligned.
    #[inline]
    pub fn atomic_word(&self, offset: usize) -> Option<&AtomicU32> {
        self.att.atomics(offset, 1).map(|w| &w[0])
    }

    /// `count` writable 32-bit words from byte `offset`, if inside and
    /// aligned.
    #[inline]
    pub fn atomic_words(&self, offset: usize, count: usize) -> Option<&[AtomicU32]> {
        self.att.atomics(offset, count)
    }

    /// The writable header, or `None` if the segment is smaller.
    #[inline]
    pub fn raw_header(&self) -> Option<&RawHeader> {
        self.att.raw_header()
    }
}

#[cfg(feature = "writer")]
impl core::ops::Deref for WriteAttachment {
    type Target = Attachment;
    fn deref(&self) -> &Attachment {
        &self.att
    }
}

/// `semget(key, 0, 0)`: find the publisher lock's semaphore set at `key`.
/// Never creates one.
///
/// Key 0 is refused with `ENOENT` before any call: `semget(IPC_PRIVATE, ...)`
/// creates a new set on every call, and key 0 is what `/proc` shows for a
/// removed segment, whose lock cannot be found any more. See semget(2).
pub fn sem_lookup(key: i32) -> Result<i32, SysError> {
    if key == libc::IPC_PRIVATE {
        return Err(private_key(Call::Semget));
    }
    // SAFETY: plain integer arguments; without IPC_CREAT nothing is created.
    let id = unsafe { libc::semget(key, 0, 0) };
    if id < 0 {
        Err(last(Call::Semget))
    } else {
        Ok(id)
    }
}

/// `semget(key, 1, IPC_CREAT | IPC_EXCL | mode)`: create the publisher
/// lock's semaphore set. The only place that creates a semaphore; only
/// `PublisherLock::acquire` calls it. Key 0 is refused (`EINVAL`).
#[cfg(feature = "writer")]
pub(crate) fn sem_create(key: i32, mode: u32) -> Result<i32, SysError> {
    if key == libc::IPC_PRIVATE {
        return Err(SysError {
            call: Call::Semget,
            errno: Errno::EINVAL,
        });
    }
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32;
    // SAFETY: plain integer arguments.
    let id = unsafe { libc::semget(key, 1, flags) };
    if id < 0 {
        Err(last(Call::Semget))
    } else {
        Ok(id)
    }
}

/// One `semop(semid, ops, n)` call, retried on EINTR.
///
/// See semop(2).
pub fn semop(semid: i32, ops: &mut [libc::sembuf]) -> Result<(), SysError> {
    loop {
        // SAFETY: `ops` is a valid array of `ops.len()` sembufs.
        let rc = unsafe { libc::semop(semid, ops.as_mut_ptr(), ops.len()) };
        if rc == 0 {
            return Ok(());
        }
        let e = last(Call::Semop);
        if e.errno != Errno::EINTR {
            return Err(e);
        }
    }
}

/// `semctl(semid, 0, GETVAL)`: the semaphore's value.
pub fn sem_getval(semid: i32) -> Result<i32, SysError> {
    // SAFETY: GETVAL takes no fourth argument.
    let v = unsafe { libc::semctl(semid, 0, libc::GETVAL) };
    if v < 0 {
        Err(last(Call::SemGetval))
    } else {
        Ok(v)
    }
}

/// `semctl(semid, 0, GETPID)`: pid of the last process that changed it.
pub fn sem_getpid(semid: i32) -> Result<i32, SysError> {
    // SAFETY: GETPID takes no fourth argument.
    let v = unsafe { libc::semctl(semid, 0, libc::GETPID) };
    if v < 0 {
        Err(last(Call::SemGetpid))
    } else {
        Ok(v)
    }
}

/// Owner, creator and mode of a semaphore set, from `semctl(IPC_STAT)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemStat {
    /// Owner user id.
    pub uid: u32,
    /// Creator user id.
    pub cuid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Semaphores in the set (a publisher lock has one).
    pub nsems: u64,
}

/// `semctl(semid, 0, IPC_STAT, &buf)`.
pub fn sem_stat(semid: i32) -> Result<SemStat, SysError> {
    // SAFETY: semid_ds is plain old data; all-zero is valid.
    let mut ds: libc::semid_ds = unsafe { core::mem::zeroed() };
    // SAFETY: IPC_STAT takes a pointer to a semid_ds (passed as the union's
    // `buf` member, which is pointer-sized like the variadic argument).
    let rc = unsafe { libc::semctl(semid, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) };
    if rc < 0 {
        return Err(last(Call::SemStat));
    }
    Ok(SemStat {
        uid: ds.sem_perm.uid,
        cuid: ds.sem_perm.cuid,
        gid: ds.sem_perm.gid,
        mode: u32::from(ds.sem_perm.mode),
        // `__syscall_ulong_t`: 32 bits on ARMv7, 64 on x86_64.
        #[allow(clippy::useless_conversion)]
        nsems: u64::from(ds.sem_nsems),
    })
}

/// `semctl(semid, 0, IPC_SET, &buf)` setting group and mode.
pub fn sem_set_owner(semid: i32, gid: Option<u32>, mode: u32) -> Result<(), SysError> {
    // SAFETY: semid_ds is plain old data; all-zero is valid.
    let mut ds: libc::semid_ds = unsafe { core::mem::zeroed() };
    // SAFETY: as in `sem_stat`.
    if unsafe { libc::semctl(semid, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) } < 0 {
        return Err(last(Call::SemStat));
    }
    if let Some(g) = gid {
        ds.sem_perm.gid = g;
    }
    #[allow(clippy::unnecessary_cast, reason = "mode is u16 on some targets")]
    {
        ds.sem_perm.mode = (mode & 0o777) as _;
    }
    // SAFETY: `ds` was filled by the kernel above.
    if unsafe { libc::semctl(semid, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds) } < 0 {
        return Err(last(Call::SemSet));
    }
    Ok(())
}

/// `semctl(semid, 0, IPC_RMID)`: remove the semaphore set.
pub fn sem_remove(semid: i32) -> Result<(), SysError> {
    // SAFETY: IPC_RMID takes no fourth argument.
    let rc = unsafe { libc::semctl(semid, 0, libc::IPC_RMID) };
    if rc < 0 {
        Err(last(Call::SemRemove))
    } else {
        Ok(())
    }
}

/// What a futex wait ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FutexWait {
    /// Woken by `FUTEX_WAKE` (or spuriously): re-check the condition.
    Woken,
    /// The word no longer held the expected value when the wait started.
    Changed,
    /// The timeout elapsed.
    TimedOut,
    /// A signal interrupted the wait (EINTR).
    Interrupted,
}

/// `syscall(SYS_futex, word, FUTEX_WAIT, expected, &timeout)`.
///
/// Shared (not `FUTEX_PRIVATE_FLAG`): the word lives in a System V segment
/// and waiters and wakers are different processes. Works on a read-only
/// attachment: FUTEX_WAIT only reads the word. See futex(2).
pub fn futex_wait(
    word: ReadWord32<'_>,
    expected: u32,
    timeout: Duration,
) -> Result<FutexWait, SysError> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: `word` is a valid 4-aligned u32 in a mapping that outlives the
    // call (the view borrows it); FUTEX_WAIT only reads it; `ts` is a valid
    // timespec; the other arguments are ignored.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            core::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc == 0 {
        return Ok(FutexWait::Woken);
    }
    match Errno::last() {
        Errno::EAGAIN => Ok(FutexWait::Changed),
        Errno::ETIMEDOUT => Ok(FutexWait::TimedOut),
        Errno::EINTR => Ok(FutexWait::Interrupted),
        errno => Err(SysError {
            call: Call::FutexWait,
            errno,
        }),
    }
}

/// A one-time installation (a `pthread_atfork` handler) that never makes a
/// caller wait: the first caller runs it; a caller that finds it running
/// goes on without it at once.
///
/// `std::sync::Once` and `OnceLock` block a caller while another thread
/// runs the initialisation. In the child of a `fork()` made while a thread
/// of the parent was inside it, no thread will ever finish it, so the
/// child's first use blocked for ever (a C or Python process that forks
/// from one thread while another opens a topic). Here such a child sees
/// "running" and takes the slow path its caller supplies instead.
#[derive(Debug)]
pub struct InstallOnce(core::sync::atomic::AtomicU8);

const INSTALL_NEW: u8 = 0;
const INSTALL_RUNNING: u8 = 1;
const INSTALL_DONE: u8 = 2;

impl InstallOnce {
    /// Not yet installed.
    pub const fn new() -> Self {
        Self(core::sync::atomic::AtomicU8::new(INSTALL_NEW))
    }

    /// Run `install` if nobody has: true once an installation has
    /// completed (in this call or an earlier one). False, at once, while
    /// another thread (or a thread of the parent of this `fork()` child)
    /// is running it, or when `install` returned false (it is tried again
    /// by a later call).
    pub fn run(&self, install: impl FnOnce() -> bool) -> bool {
        use core::sync::atomic::Ordering::{Acquire, Release};
        if self.0.load(Acquire) == INSTALL_DONE {
            return true;
        }
        if self
            .0
            .compare_exchange(INSTALL_NEW, INSTALL_RUNNING, Acquire, Acquire)
            .is_err()
        {
            return self.0.load(Acquire) == INSTALL_DONE;
        }
        let done = install();
        self.0
            .store(if done { INSTALL_DONE } else { INSTALL_NEW }, Release);
        done
    }
}

impl Default for InstallOnce {
    fn default() -> Self {
        Self::new()
    }
}

/// `fork()`s counted in this process: each child of a `fork()` adds 1 to
/// its own copy (a `pthread_atfork` child handler, installed by the first
/// [`fork_count`]).
#[cfg(feature = "writer")]
static FORKS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

#[cfg(feature = "writer")]
extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

/// The number of `fork()`s between the process that first called this and
/// the calling process (0 in that process): a publisher keeps the value it
/// was opened with and compares it at each publish with [`forks_now`], one
/// load, to refuse to publish from a `fork()` child (a second writer on
/// the topic). The first call installs the counting handler.
#[cfg(feature = "writer")]
pub fn fork_count() -> u32 {
    // Not `Once`: a fork child of a parent thread mid-install would block
    // here for ever (see [`InstallOnce`]).
    static INSTALL: InstallOnce = InstallOnce::new();
    INSTALL.run(|| {
        // SAFETY: registers a child handler that makes one atomic add to a
        // static (async-signal-safe, as a handler run after fork() must
        // be). A failure (ENOMEM), or a child forked mid-install, leaves
        // forks uncounted: a publisher then still never releases or removes
        // its parent's objects from a child (that check compares pids), it
        // only cannot refuse a publish there.
        unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) == 0 }
    });
    forks_now()
}

/// [`fork_count`] without installing the handler: one relaxed load.
#[cfg(feature = "writer")]
#[inline(always)]
pub fn forks_now() -> u32 {
    FORKS.load(core::sync::atomic::Ordering::Relaxed)
}

/// `syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX)`: wake every waiter.
/// Returns how many were woken.
#[cfg(feature = "writer")]
pub fn futex_wake_all(word: &AtomicU32) -> Result<u32, SysError> {
    // SAFETY: `word` is a valid 4-aligned u32 in a live mapping.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            core::ptr::null::<libc::timespec>(),
            core::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc < 0 {
        Err(last(Call::FutexWake))
    } else {
        Ok(rc as u32)
    }
}

/// `sysconf(_SC_PAGESIZE)`, or 4096 if it fails.
pub fn page_size() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(p)) if p > 0 => p as u64,
        _ => 4096,
    }
}

/// `sched_yield()`: give the CPU away. On a one-core board this is what lets
/// a preempted publisher finish its write.
pub fn yield_now() {
    // It cannot fail on Linux.
    let _ = nix::sched::sched_yield();
}

/// `clock_gettime(clock)` in nanoseconds: through the vDSO where the
/// kernel's clock source allows it (x86_64, most arm64), a system call where
/// it does not. The product's board is of the second kind: Debian's i.MX6ULL
/// device tree disables the Cortex-A7's generic timer, so its clock source is
/// the i.MX GPT, which the 32-bit ARM vDSO cannot read (docs/BENCHMARKS.md,
/// issue 14's sixteenth pass). Loops that run per frame read it as rarely
/// as they can.
///
/// The one raw call left where nix has a safe one: this is on the publish
/// hot path (every publish reads a clock), and `nix::time::clock_gettime` is not
/// inlined across crates and returns its `Result<TimeSpec>` through memory.
/// Measured with `shmbus bench --quick` (release, x86_64, same machine,
/// runs interleaved): "publish_bytes 64 B incl. 2 clock reads" 53 ns with
/// this call, 67 ns with nix's.
#[inline]
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec that lives across the call;
    // the clocks passed (CLOCK_MONOTONIC, CLOCK_REALTIME) always exist, and
    // on the impossible failure `ts` stays zero (time 0), never uninitialised.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// `CLOCK_MONOTONIC` now, in nanoseconds. The same clock for every process
/// on the machine; it never jumps. Used for ages and staleness.
#[inline]
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_REALTIME` now, in nanoseconds since the Unix epoch. Used for
/// wall-clock stamps (recordings); never for ages.
#[inline]
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Sleep until `CLOCK_MONOTONIC` reads `deadline_ns`: `clock_nanosleep`
/// with `TIMER_ABSTIME`, so a loop paced by an absolute schedule needs no
/// clock read to compute how long to sleep, and a preemption between that
/// read and the sleep cannot stretch the period. Returns at the deadline, at
/// once when it has passed, or early when a signal handler ran (`EINTR`):
/// the caller reads the clock after it and decides again.
pub fn sleep_until_monotonic(deadline_ns: u64) {
    let ts = nix::sys::time::TimeSpec::new(
        (deadline_ns / 1_000_000_000) as libc::time_t,
        (deadline_ns % 1_000_000_000) as libc::c_long,
    );
    // EINTR is the only error possible with a valid clock and time; the
    // caller's loop handles an early return.
    let _ = nix::time::clock_nanosleep(
        nix::time::ClockId::CLOCK_MONOTONIC,
        nix::time::ClockNanosleepFlags::TIMER_ABSTIME,
        &ts,
    );
}

#[cfg(test)]
mod tests {
    use super::InstallOnce;
    use std::time::Duration;

    #[test]
    fn an_installation_runs_once_and_a_failed_one_is_tried_again() {
        let once = InstallOnce::new();
        let mut runs = 0;
        assert!(!once.run(|| {
            runs += 1;
            false
        }));
        assert!(once.run(|| {
            runs += 1;
            true
        }));
        assert!(once.run(|| {
            runs += 1;
            true
        }));
        assert_eq!(runs, 2);
    }

    /// The child of a `fork()` made while a thread of the parent was
    /// installing goes on at once without it: with `std::sync::Once` (as
    /// `fork_count` and the C library's pid had) its first call blocked
    /// for ever, since the installing thread does not exist in the child.
    #[test]
    fn a_fork_child_of_an_installation_in_progress_does_not_wait_for_it() {
        static ONCE: InstallOnce = InstallOnce::new();
        let (inside_tx, inside_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let installer = std::thread::spawn(move || {
            ONCE.run(|| {
                inside_tx.send(()).unwrap();
                let _ = release_rx.recv_timeout(Duration::from_secs(120));
                true
            })
        });
        inside_rx.recv().unwrap();
        // The child only makes atomic loads and a compare-and-swap.
        let child = shmbus_testkit::ForkChild::start(|| {
            let mut ran = false;
            match ONCE.run(|| {
                ran = true;
                true
            }) {
                false if !ran => 0,
                _ => 1,
            }
        })
        .unwrap();
        // Another thread of this process is not made to wait either.
        let mut ran = false;
        assert!(!ONCE.run(|| {
            ran = true;
            true
        }));
        assert!(!ran);
        release_tx.send(()).unwrap();
        assert!(installer.join().unwrap());
        assert!(ONCE.run(|| unreachable!("installed once")));
        assert_eq!(
            child.wait(Duration::from_secs(30)),
            Ok(0),
            "the child waited for, or ran, the parent's installation"
        );
    }
}

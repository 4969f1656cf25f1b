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

/// `SHM_DEST` in `shm_perm.mode`: the segment has been removed (`IPC_RMID`)
/// and disappears when the last process detaches.
pub const SHM_DEST: u32 = 0o1000;
/// `SHM_LOCKED` in `shm_perm.mode`: the segment is locked in RAM (`SHM_LOCK`).
pub const SHM_LOCKED: u32 = 0o2000;

/// A failed system call: which call, and the `errno` it set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysError {
    /// The C function, e.g. `"shmget"`.
    pub call: &'static str,
    /// The error number.
    pub errno: Errno,
}

impl core::fmt::Display for SysError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.call, self.errno.desc())
    }
}

impl std::error::Error for SysError {}

fn last(call: &'static str) -> SysError {
    SysError {
        call,
        errno: Errno::last(),
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
/// See shmget(2).
pub fn shmget(key: i32, size: usize, flags: i32) -> Result<i32, SysError> {
    // SAFETY: shmget takes plain integers and touches no memory of ours.
    let id = unsafe { libc::shmget(key, size, flags) };
    if id < 0 { Err(last("shmget")) } else { Ok(id) }
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
        return Err(last("shmctl(IPC_STAT)"));
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
        return Err(last("shmctl(IPC_STAT)"));
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
        return Err(last("shmctl(IPC_SET)"));
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
        Err(last("shmctl(SHM_LOCK)"))
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
        Err(last("shmctl(IPC_RMID)"))
    } else {
        Ok(())
    }
}

/// An attachment of a System V segment (`shmat`), detached on drop (`shmdt`).
///
/// The mapping is only ever accessed through atomics (see `docs/LAYOUT.md`):
/// other processes write it concurrently.
#[derive(Debug)]
pub struct Attachment {
    ptr: NonNull<u8>,
    len: usize,
    shmid: i32,
    read_only: bool,
}

// SAFETY: the attachment is a pointer to process-wide shared memory that is
// only accessed through atomics; moving it or sharing it between threads is as
// safe as sharing `&[AtomicU32]`.
unsafe impl Send for Attachment {}
// SAFETY: as above; all access goes through atomic operations.
unsafe impl Sync for Attachment {}

impl Attachment {
    /// `shmat(shmid, NULL, SHM_RDONLY)`: attach read-only. A store through
    /// this mapping faults (SIGSEGV): the kernel enforces it.
    pub fn read_only(shmid: i32) -> Result<Self, SysError> {
        Self::attach(shmid, true)
    }

    /// `shmat(shmid, NULL, 0)`: attach read-write.
    #[cfg(feature = "writer")]
    pub fn read_write(shmid: i32) -> Result<Self, SysError> {
        Self::attach(shmid, false)
    }

    fn attach(shmid: i32, read_only: bool) -> Result<Self, SysError> {
        // Size first: the kernel's figure, not the header's, bounds every access.
        let len = usize::try_from(shm_stat(shmid)?.size).map_err(|_| SysError {
            call: "shmctl(IPC_STAT)",
            errno: Errno::EFBIG,
        })?;
        let flags = if read_only { libc::SHM_RDONLY } else { 0 };
        // SAFETY: a null address lets the kernel choose where to map; we only
        // use the returned pointer within `len` bytes, through atomics.
        let p = unsafe { libc::shmat(shmid, core::ptr::null(), flags) };
        if p as isize == -1 {
            return Err(last("shmat"));
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(SysError {
            call: "shmat",
            errno: Errno::EFAULT,
        })?;
        // The size may have been read before a concurrent remove-and-recreate
        // gave the shmid... shmids are not reused that fast, but re-check that
        // the segment we attached is the size we will trust.
        let again = shm_stat(shmid)?.size;
        if again as usize != len {
            // SAFETY: `p` came from a successful shmat above.
            unsafe { libc::shmdt(p) };
            return Err(SysError {
                call: "shmat",
                errno: Errno::EAGAIN,
            });
        }
        Ok(Attachment {
            ptr,
            len,
            shmid,
            read_only,
        })
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

    /// True for an `SHM_RDONLY` attachment.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The 32-bit word at byte `offset`, or `None` if it is not inside the
    /// segment or not 4-byte aligned.
    #[inline]
    pub fn u32_at(&self, offset: usize) -> Option<&AtomicU32> {
        if offset % 4 != 0 || offset.checked_add(4)? > self.len {
            return None;
        }
        // SAFETY: the range [offset, offset+4) is inside the mapping (checked
        // above), 4-aligned (the mapping is page-aligned), and AtomicU32 may
        // alias memory that other processes access atomically. The reference
        // lives no longer than `self`, which keeps the mapping attached.
        Some(unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() })
    }

    /// `count` consecutive 32-bit words from byte `offset`, or `None` if any
    /// of them is outside the segment or `offset` is not 4-byte aligned.
    #[inline]
    pub fn words_at(&self, offset: usize, count: usize) -> Option<&[AtomicU32]> {
        let end = count.checked_mul(4)?.checked_add(offset)?;
        if offset % 4 != 0 || end > self.len {
            return None;
        }
        // SAFETY: as in `u32_at`, for the whole checked range.
        Some(unsafe {
            core::slice::from_raw_parts(self.ptr.as_ptr().add(offset).cast::<AtomicU32>(), count)
        })
    }

    /// A typed view of the first `size_of::<T>()` bytes, for `#[repr(C)]`
    /// structs made only of atomics (the header).
    ///
    /// # Safety
    /// `T` must consist only of atomic integers (or arrays of them) with no
    /// invariants beyond their bit patterns, and have alignment <= 8.
    #[inline]
    pub unsafe fn view<T>(&self) -> Option<&T> {
        if core::mem::size_of::<T>() > self.len || core::mem::align_of::<T>() > 4096 {
            return None;
        }
        // SAFETY: in bounds (checked), page-aligned base, and the caller
        // promises T is all atomics, so any bit pattern another process
        // writes is a valid T and concurrent atomic access is not a race.
        Some(unsafe { &*self.ptr.as_ptr().cast::<T>() })
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from a successful shmat and is detached once.
        // No reference into the mapping outlives `self` (they borrow it).
        unsafe { libc::shmdt(self.ptr.as_ptr().cast::<c_void>()) };
    }
}

/// `semget(key, 1, flags)`: the publisher lock's semaphore set.
///
/// See semget(2).
pub fn semget(key: i32, flags: i32) -> Result<i32, SysError> {
    // SAFETY: plain integer arguments.
    let id = unsafe { libc::semget(key, 1, flags) };
    if id < 0 { Err(last("semget")) } else { Ok(id) }
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
        let e = last("semop");
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
        Err(last("semctl(GETVAL)"))
    } else {
        Ok(v)
    }
}

/// `semctl(semid, 0, GETPID)`: pid of the last process that changed it.
pub fn sem_getpid(semid: i32) -> Result<i32, SysError> {
    // SAFETY: GETPID takes no fourth argument.
    let v = unsafe { libc::semctl(semid, 0, libc::GETPID) };
    if v < 0 {
        Err(last("semctl(GETPID)"))
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
}

/// `semctl(semid, 0, IPC_STAT, &buf)`.
pub fn sem_stat(semid: i32) -> Result<SemStat, SysError> {
    // SAFETY: semid_ds is plain old data; all-zero is valid.
    let mut ds: libc::semid_ds = unsafe { core::mem::zeroed() };
    // SAFETY: IPC_STAT takes a pointer to a semid_ds (passed as the union's
    // `buf` member, which is pointer-sized like the variadic argument).
    let rc = unsafe { libc::semctl(semid, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) };
    if rc < 0 {
        return Err(last("semctl(IPC_STAT)"));
    }
    Ok(SemStat {
        uid: ds.sem_perm.uid,
        cuid: ds.sem_perm.cuid,
        gid: ds.sem_perm.gid,
        mode: u32::from(ds.sem_perm.mode),
    })
}

/// `semctl(semid, 0, IPC_SET, &buf)` setting group and mode.
pub fn sem_set_owner(semid: i32, gid: Option<u32>, mode: u32) -> Result<(), SysError> {
    // SAFETY: semid_ds is plain old data; all-zero is valid.
    let mut ds: libc::semid_ds = unsafe { core::mem::zeroed() };
    // SAFETY: as in `sem_stat`.
    if unsafe { libc::semctl(semid, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) } < 0 {
        return Err(last("semctl(IPC_STAT)"));
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
        return Err(last("semctl(IPC_SET)"));
    }
    Ok(())
}

/// `semctl(semid, 0, IPC_RMID)`: remove the semaphore set.
pub fn sem_remove(semid: i32) -> Result<(), SysError> {
    // SAFETY: IPC_RMID takes no fourth argument.
    let rc = unsafe { libc::semctl(semid, 0, libc::IPC_RMID) };
    if rc < 0 {
        Err(last("semctl(IPC_RMID)"))
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
    word: &AtomicU32,
    expected: u32,
    timeout: Duration,
) -> Result<FutexWait, SysError> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: `word` is a valid 4-aligned u32 in a mapping that outlives the
    // call; `ts` is a valid timespec; the other arguments are ignored.
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
            call: "futex(FUTEX_WAIT)",
            errno,
        }),
    }
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
        Err(last("futex(FUTEX_WAKE)"))
    } else {
        Ok(rc as u32)
    }
}

/// `sysconf(_SC_PAGESIZE)`, or 4096 if it fails.
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes an integer and touches no memory of ours.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as u64,
        _ => 4096,
    }
}

/// `sched_yield()`: give the CPU away. On a one-core board this is what lets
/// a preempted publisher finish its write.
pub fn yield_now() {
    // SAFETY: no arguments, no memory.
    unsafe { libc::sched_yield() };
}

/// `clock_gettime(clock)` in nanoseconds.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to fill; the clocks used always exist.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// `CLOCK_MONOTONIC` now, in nanoseconds. The same clock for every process
/// on the machine; it never jumps. Used for ages and staleness.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_REALTIME` now, in nanoseconds since the Unix epoch. Used for
/// wall-clock stamps (recordings); never for ages.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// True if a process with this pid exists (`kill(pid, 0)`), including one we
/// may not signal (EPERM). Informational only: pids are reused, so liveness
/// decisions use the publisher lock, never this.
pub fn pid_exists(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e == Errno::EPERM,
    }
}

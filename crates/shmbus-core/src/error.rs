//! Errors, one enum per operation: opening a topic ([`OpenError`]), reading a
//! frame ([`ReadError`]) and waiting for one ([`WaitError`]).
//!
//! Each variant carries the numbers needed to act on it (key, sizes, pid,
//! uid), and its message says what to do.

use core::fmt;
use core::time::Duration;

use crate::sys::{Call, Errno, SysError};

/// Which System V object of a topic an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// The shared memory segment (frames and header).
    Segment,
    /// The publisher lock: a semaphore set at the same key.
    Lock,
    /// The whole topic: its segment and its publisher lock, both created
    /// by the same other user (that user's topic, or a complete squat).
    Topic,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Segment => "segment",
            ObjectKind::Lock => "publisher lock (semaphore set)",
            ObjectKind::Topic => "topic (segment and publisher lock)",
        })
    }
}

/// Formats a key the way `ipcs` shows it.
pub(crate) struct Key(pub i32);

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}", self.0 as u32)
    }
}

/// Why a topic could not be created, reopened or attached.
///
/// After any of these the handle was not created; nothing in the segment
/// was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// No segment exists at the key (`ENOENT`): no publisher has created the
    /// topic yet, or it was removed.
    NotFound {
        /// The System V key.
        key: i32,
    },
    /// The segment exists but its creator has not finished writing the
    /// header: the magic is still zero, and the topic's publisher lock
    /// exists at the key (a publisher takes it before creating the
    /// segment). Retry shortly if its publisher is alive; if not, it died
    /// creating the topic, and only starting it again finishes the topic.
    NotReady {
        /// The System V key.
        key: i32,
        /// The publisher lock is held: its creator is still at work. False:
        /// the lock is free (or unreadable), so the creator died before it
        /// finished; starting the topic's publisher again finishes it.
        publisher_alive: bool,
    },
    /// The segment at the key is not a shmbus topic: a foreign magic
    /// number, or a zero one with no publisher lock at the key (see
    /// [`OpenError::NotReady`]).
    NotShmbus {
        /// The System V key.
        key: i32,
        /// The first 8 bytes, little-endian.
        magic: u64,
    },
    /// The semaphore set at the key is not a shmbus publisher lock: it
    /// holds `nsems` semaphores, and every publisher lock is a set of one.
    /// Another program keeps semaphores at this key (an `ftok` key made
    /// with `'S'`, shmbus's key prefix, falls among the keys shmbus derives
    /// from names). A publisher refuses it untouched; readers and `shmbus
    /// rm` take it for no lock at all.
    ForeignSemaphores {
        /// The System V key.
        key: i32,
        /// Semaphores in the set.
        nsems: u64,
    },
    /// A shmbus segment of a layout version this build does not read.
    UnsupportedLayout {
        /// The System V key.
        key: i32,
        /// Version in the segment.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// A header field is inconsistent with itself or with the real segment
    /// size. The segment is garbage or was written by something else.
    Corrupt {
        /// The System V key.
        key: i32,
        /// Which check failed.
        what: &'static str,
    },
    /// The segment is smaller than its header says, or not the size this
    /// topic needs.
    SizeMismatch {
        /// The System V key.
        key: i32,
        /// Bytes needed.
        expected: u64,
        /// Bytes the kernel reports.
        found: u64,
    },
    /// The frames in the segment are of another type (schema fingerprints
    /// differ).
    SchemaMismatch {
        /// The System V key.
        key: i32,
        /// Topic name in the segment.
        topic: String,
        /// Fingerprint of the caller's type.
        expected: u64,
        /// Fingerprint in the segment.
        found: u64,
    },
    /// The segment at the key belongs to another topic (key collision).
    NameMismatch {
        /// The System V key.
        key: i32,
        /// Name asked for.
        expected: String,
        /// Name in the segment.
        found: String,
    },
    /// The slot count or frame capacity in the segment differs from the
    /// topic's description.
    GeometryMismatch {
        /// The System V key.
        key: i32,
        /// Human-readable difference.
        what: String,
    },
    /// Permission denied (`EACCES`/`EPERM`) by the segment's (or lock's)
    /// mode.
    PermissionDenied {
        /// The System V key.
        key: i32,
        /// Which call refused.
        call: Call,
        /// Owner uid, gid and mode when they could be read.
        owner: Option<(u32, u32, u32)>,
    },
    /// Another publisher holds the topic's publisher lock and is alive.
    PublisherActive {
        /// The System V key.
        key: i32,
        /// Pid of the live publisher (from the lock's `sempid`).
        pid: i32,
    },
    /// The segment or its lock was not created by the expected user: it may
    /// be a squatter or a spoof. Nothing was read or written. For a lock the
    /// uids come from `/proc/sysvipc/sem` when the lock itself cannot be
    /// read (a squatter's mode 0600 semaphore).
    NotOwner {
        /// The System V key.
        key: i32,
        /// Which object: the segment or the publisher lock.
        object: ObjectKind,
        /// Creator uid of the object.
        creator_uid: u32,
        /// Owner uid of the object.
        owner_uid: u32,
        /// The uid that should have created it.
        expected_uid: u32,
    },
    /// The segment is writable by users other than its owner, so anyone could
    /// forge frames; refused by a subscriber that requires a trusted topic.
    WritableByOthers {
        /// The System V key.
        key: i32,
        /// The permission bits.
        mode: u32,
    },
    /// The segment was removed (`IPC_RMID`, `EIDRM`).
    Removed {
        /// The System V key.
        key: i32,
    },
    /// The segment would exceed `kernel.shmmax` or is below `shmmin`
    /// (`EINVAL` from shmget on creation).
    TooLarge {
        /// The System V key.
        key: i32,
        /// Bytes requested.
        size: u64,
    },
    /// The system-wide limit on segments (`kernel.shmmni`) or on shared
    /// memory pages (`kernel.shmall`) is reached (`ENOSPC`).
    SystemLimit {
        /// The System V key.
        key: i32,
        /// Bytes requested.
        size: u64,
        /// Which limit, as far as `/proc` tells (the kernel returns the same
        /// `ENOSPC` for both): `"kernel.shmmni (number of segments)"`,
        /// `"kernel.shmall (total pages)"`, or both names if unclear.
        limit: &'static str,
    },
    /// The system-wide limit on semaphore sets or semaphores (`kernel.sem`)
    /// is reached (`ENOSPC` from `semget`): the publisher lock cannot be
    /// created.
    SemaphoreLimit {
        /// The System V key.
        key: i32,
        /// Which field of `kernel.sem` (`"SEMMSL SEMMNS SEMOPM SEMMNI"`), as
        /// far as `/proc` tells: `"SEMMNI (4th field: number of semaphore
        /// sets)"`, `"SEMMNS (2nd field: total semaphores)"`, or both; or
        /// [`crate::sysvipc::SEMOPM_FIELD`] when the lock's `semop` was
        /// refused with `E2BIG` (SEMOPM below the lock's 2 operations).
        field: &'static str,
        /// The four values of `/proc/sys/kernel/sem`, if readable.
        current: Option<[u64; 4]>,
    },
    /// The kernel could not allocate memory (`ENOMEM`).
    OutOfMemory {
        /// The System V key.
        key: i32,
        /// Bytes requested.
        size: u64,
    },
    /// This process has no memory for the reader's frame buffer of `size`
    /// bytes (the topic's frame capacity, up to 16 MiB): a process memory
    /// limit such as `ulimit -v`, or a machine out of memory. Nothing was
    /// attached.
    BufferMemory {
        /// The System V key.
        key: i32,
        /// Bytes requested.
        size: u64,
    },
    /// The segment could not be mapped (`ENOMEM` from `shmat`): this
    /// process has no room for a segment of `size` bytes (an address-space
    /// limit, or a 32-bit process and a segment of gigabytes, which any
    /// local user can create). Only this segment is affected.
    CannotMap {
        /// The System V key.
        key: i32,
        /// The segment's size in bytes (from `IPC_STAT`; 0 if unknown).
        size: u64,
    },
    /// `SHM_LOCK` was refused under the lock policy "required".
    LockDenied {
        /// The System V key.
        key: i32,
        /// Bytes to lock.
        size: u64,
        /// The soft `RLIMIT_MEMLOCK`, bytes (`u64::MAX` = unlimited).
        memlock_limit: u64,
        /// The errno (`EPERM` or `ENOMEM`).
        errno: Errno,
    },
    /// The topic description is invalid (name, sizes).
    InvalidTopic {
        /// What is wrong.
        reason: String,
    },
    /// Another system call failure, with its errno.
    Sys {
        /// The System V key.
        key: i32,
        /// The failed call.
        error: SysError,
    },
}

impl OpenError {
    /// True for a segment whose creator is still writing its header (its
    /// publisher lock is held): retry in a moment. A half-created segment
    /// whose creator died is not (nothing will finish it but a publisher
    /// started again): its text says so and how to fix it.
    pub fn is_being_created(&self) -> bool {
        matches!(
            self,
            OpenError::NotReady {
                publisher_alive: true,
                ..
            }
        )
    }

    /// Map a System V failure on `call` for `key` to a named error.
    pub fn from_sys(key: i32, size: u64, e: SysError) -> OpenError {
        match e.errno {
            Errno::ENOENT => OpenError::NotFound { key },
            Errno::EACCES | Errno::EPERM => OpenError::PermissionDenied {
                key,
                call: e.call,
                owner: None,
            },
            Errno::EIDRM => OpenError::Removed { key },
            Errno::EINVAL if e.call == Call::Shmget => OpenError::TooLarge { key, size },
            // A publisher lock takes two operations in one `semop`.
            Errno::E2BIG if e.call == Call::Semop => OpenError::SemaphoreLimit {
                key,
                field: crate::sysvipc::SEMOPM_FIELD,
                current: crate::sysvipc::sem_limits(),
            },
            // A lock is a set of one semaphore: `semget` refuses to create
            // it with `EINVAL` when SEMMSL is below 1 (a lookup asks for 0
            // semaphores and cannot get `EINVAL`; key 0 is refused before
            // any call, with the same errno, but a topic never has key 0).
            Errno::EINVAL if e.call == Call::Semget && key != 0 => OpenError::SemaphoreLimit {
                key,
                field: crate::sysvipc::SEMMSL_FIELD,
                current: crate::sysvipc::sem_limits(),
            },
            Errno::ENOSPC if e.call == Call::Semget => OpenError::SemaphoreLimit {
                key,
                field: crate::sysvipc::which_sem_limit(),
                current: crate::sysvipc::sem_limits(),
            },
            Errno::ENOSPC if e.call == Call::Shmget => OpenError::SystemLimit {
                key,
                size,
                limit: crate::sysvipc::which_limit(size),
            },
            Errno::ENOMEM => OpenError::OutOfMemory { key, size },
            _ => OpenError::Sys { key, error: e },
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NotFound { key } => write!(
                f,
                "no topic at key {}: start its publisher first (or wait for it)",
                Key(*key)
            ),
            OpenError::NotReady {
                key,
                publisher_alive: true,
            } => write!(
                f,
                "topic at key {} is still being created by its publisher; retry in a moment",
                Key(*key)
            ),
            OpenError::NotReady {
                key,
                publisher_alive: false,
            } => write!(
                f,
                "topic at key {} was left half-created: its publisher died creating it (its lock is free); start its publisher again, which finishes it (or remove it with `shmbus rm {}`)",
                Key(*key),
                Key(*key)
            ),
            OpenError::NotShmbus { key, magic: 0 } => write!(
                f,
                "segment at key {} is not a shmbus topic: its first 8 bytes are zero and there is no shmbus publisher lock at the key (a shmbus publisher creates that lock before its segment), so another program's memory sits there: choose another key for the topic",
                Key(*key)
            ),
            OpenError::ForeignSemaphores { key, nsems } => write!(
                f,
                "key {} holds a set of {nsems} semaphores, not a shmbus publisher lock (a set of one): another program uses this key (`ipcs -s` shows the set): choose another key for the topic",
                Key(*key)
            ),
            OpenError::NotShmbus { key, magic } => write!(
                f,
                "segment at key {} is not a shmbus topic (magic {:016x}); another program uses this key: choose another key for the topic",
                Key(*key),
                magic
            ),
            OpenError::UnsupportedLayout {
                key,
                found,
                supported,
            } if found > supported => write!(
                f,
                "topic at key {} has layout version {found}, made by a newer shmbus; this build reads version {supported}: upgrade this program (or, if no newer shmbus runs here, the segment is damaged: remove it with `shmbus rm {}`)",
                Key(*key),
                Key(*key)
            ),
            OpenError::UnsupportedLayout {
                key,
                found,
                supported,
            } => write!(
                f,
                "topic at key {} has layout version {found}, made by an older shmbus; this build reads version {supported}: upgrade the publisher, or remove the old topic with `shmbus rm {}`",
                Key(*key),
                Key(*key)
            ),
            // No shmbus publisher makes a segment this small: `shmbus rm`
            // refuses it as another program's, so the fix is `ipcrm`.
            OpenError::Corrupt {
                key,
                what: crate::layout::SMALLER_THAN_HEADER,
            } => write!(
                f,
                "segment at key {} is not a shmbus topic: it is smaller than the 256-byte header, which no shmbus publisher makes (another program's memory); choose another key for the topic, or if nothing needs that segment (`ipcs -m -p` shows its creator), its owner or root removes it with `ipcrm -M {}`",
                Key(*key),
                Key(*key)
            ),
            OpenError::Corrupt { key, what } => write!(
                f,
                "segment at key {} is corrupt ({what}); remove it with `shmbus rm {}` and restart the publisher",
                Key(*key),
                Key(*key)
            ),
            OpenError::SizeMismatch {
                key,
                expected,
                found,
            } => write!(
                f,
                "segment at key {} is {}, the topic needs {expected}; remove it with `shmbus rm {}` (an old version of the topic?)",
                Key(*key),
                crate::plural::count(*found, "byte"),
                Key(*key)
            ),
            OpenError::SchemaMismatch {
                key,
                topic,
                expected,
                found,
            } => write!(
                f,
                "topic '{topic}' at key {} carries frames of another type (schema {found:016x}, expected {expected:016x}); check the message type, or `shmbus info {topic}`; if a publisher's new type is meant to replace the old one, remove the old topic first (`shmbus rm {}`; its subscribers see it removed) and open it again",
                Key(*key),
                Key(*key)
            ),
            OpenError::NameMismatch {
                key,
                expected,
                found,
            } => write!(
                f,
                "key {} holds topic '{found}', not '{expected}': two topics share a key; give one of them another key",
                Key(*key)
            ),
            OpenError::GeometryMismatch { key, what } => write!(
                f,
                "topic at key {} has a different shape ({what}); remove it with `shmbus rm {}` so the publisher recreates it",
                Key(*key),
                Key(*key)
            ),
            OpenError::PermissionDenied { key, call, owner } => {
                write!(f, "permission denied by {call} for key {}", Key(*key))?;
                if let Some((uid, gid, mode)) = owner {
                    write!(f, " (owner uid {uid}, gid {gid}, mode {mode:03o})")?;
                }
                write!(
                    f,
                    "; run as the topic's user or a member of its group, or change the topic's mode/group in its config"
                )
            }
            OpenError::PublisherActive { key, pid } => write!(
                f,
                "topic at key {} already has a live publisher (pid {pid}); only one publisher per topic: stop it first",
                Key(*key)
            ),
            OpenError::NotOwner {
                key,
                object,
                creator_uid,
                owner_uid,
                expected_uid,
            } if *object == ObjectKind::Topic => write!(
                f,
                "topic at key {} belongs to uid {creator_uid} (its segment and publisher lock were created by uid {creator_uid}, owner uid {owner_uid}), not to uid {expected_uid}: publish it as uid {creator_uid}; if that user should not have this key, remove the topic as root (`shmbus rm --force {}`)",
                Key(*key),
                Key(*key),
            ),
            OpenError::NotOwner {
                key,
                object,
                creator_uid,
                owner_uid,
                expected_uid,
            } => {
                write!(
                    f,
                    "{object} at key {} was created by uid {creator_uid} (owner uid {owner_uid}), expected uid {expected_uid}: refusing a possibly spoofed topic; find out who created it, then remove it as root (",
                    Key(*key),
                )?;
                match object {
                    ObjectKind::Lock => write!(f, "`ipcrm -S {}`)", Key(*key)),
                    _ => write!(f, "`shmbus rm {}`)", Key(*key)),
                }
            }
            OpenError::WritableByOthers { key, mode } => write!(
                f,
                "segment at key {} has mode {mode:03o}: writable by group or others, so frames could be forged; set mode 0640 or 0644 in the topic's config",
                Key(*key)
            ),
            OpenError::Removed { key } => write!(
                f,
                "topic at key {} was removed; restart its publisher",
                Key(*key)
            ),
            OpenError::TooLarge { key, size } => write!(
                f,
                "a {size}-byte segment for key {} exceeds kernel.shmmax: raise it (sysctl -w kernel.shmmax=...) or use fewer slots or a smaller message",
                Key(*key)
            ),
            OpenError::SystemLimit { key, size, limit } => write!(
                f,
                "cannot create a {size}-byte segment for key {}: the system limit {limit} is reached; see `shmbus doctor`, remove stale topics (`shmbus list`, `shmbus rm`) or raise the limit with sysctl",
                Key(*key)
            ),
            OpenError::SemaphoreLimit {
                key,
                field,
                current,
            } => {
                let opm_low = *field == crate::sysvipc::SEMOPM_FIELD;
                let msl_low = *field == crate::sysvipc::SEMMSL_FIELD;
                if msl_low {
                    write!(
                        f,
                        "cannot create the publisher lock (a semaphore set) for key {}: the system limit kernel.sem {field} is below the 1 semaphore a lock holds; see `shmbus doctor` and raise it",
                        Key(*key)
                    )?;
                } else if opm_low {
                    write!(
                        f,
                        "cannot take the publisher lock (a semaphore set) for key {}: the system limit kernel.sem {field} is below the 2 operations the lock takes in one call; see `shmbus doctor` and raise it",
                        Key(*key)
                    )?;
                } else {
                    write!(
                        f,
                        "cannot create the publisher lock (a semaphore set) for key {}: the system limit kernel.sem {field} is reached; see `shmbus doctor`, remove stale topics (`shmbus list`, `shmbus rm`) or raise it",
                        Key(*key)
                    )?;
                }
                match current {
                    Some([msl, mns, opm, mni]) => {
                        let msl = if msl_low { (*msl).max(1) } else { *msl };
                        let (mns2, opm2, mni2) = if msl_low {
                            (*mns, *opm, *mni)
                        } else if opm_low {
                            (*mns, (*opm).max(2), *mni)
                        } else if field.starts_with("SEMMNS") {
                            (mns.saturating_mul(2).max(mns + 1), *opm, *mni)
                        } else {
                            (*mns, *opm, mni.saturating_mul(2).max(mni + 1))
                        };
                        write!(f, ": sysctl -w kernel.sem=\"{msl} {mns2} {opm2} {mni2}\"")
                    }
                    None => write!(f, " with sysctl -w kernel.sem=..."),
                }
            }
            OpenError::OutOfMemory { key, size } => write!(
                f,
                "out of memory creating a {size}-byte segment for key {}: the kernel has no memory for it; free memory (`shmbus list` shows stale topics to `shmbus rm`), or give the topic fewer slots or a smaller message type",
                Key(*key)
            ),
            OpenError::BufferMemory { key, size } => write!(
                f,
                "out of memory for this reader's {size}-byte frame buffer (the topic at key {} has frames of up to {size} bytes): free memory, or raise this process's memory limit (`ulimit -v`)",
                Key(*key)
            ),
            OpenError::CannotMap { key, size } => write!(
                f,
                "cannot map the segment at key {} ({size} bytes): this process has no address space for it (an address-space limit such as `ulimit -v`, or a 32-bit process); raise the limit, or if you do not need that segment (`shmbus list` shows its owner), remove it as its owner or root (`ipcrm -M {}`)",
                Key(*key),
                Key(*key)
            ),
            OpenError::LockDenied {
                key,
                size,
                memlock_limit,
                errno,
            } => {
                write!(
                    f,
                    "{}, or set lock = \"try\" in the topic's config",
                    lock_denied(*key, *size, *memlock_limit, *errno)
                )
            }
            OpenError::InvalidTopic { reason } => write!(f, "invalid topic: {reason}"),
            OpenError::Sys { key, error } => {
                write!(f, "{error} (key {})", Key(*key))
            }
        }
    }
}

impl std::error::Error for OpenError {}

/// Why `SHM_LOCK` was refused and how to allow it, without what to do
/// instead: under lock "require" [`OpenError::LockDenied`] adds `lock =
/// "try"`; under "try" it is already set (`LockOutcome::Refused`).
fn lock_denied(key: i32, size: u64, memlock_limit: u64, errno: Errno) -> String {
    let limit = if memlock_limit == u64::MAX {
        "unlimited".to_string()
    } else {
        format!("{memlock_limit} bytes")
    };
    format!(
        "SHM_LOCK of {size} bytes for key {} refused ({}): RLIMIT_MEMLOCK is {limit}; raise it (`ulimit -l`, LimitMEMLOCK= in the systemd unit, /etc/security/limits.conf) or grant CAP_IPC_LOCK",
        Key(key),
        errno.desc()
    )
}

impl OpenError {
    /// The text for a lock refusal under lock policy "try"
    /// (`LockOutcome::Refused`): the topic is open and runs unlocked, so
    /// the advice is how to allow the lock, and what running unlocked
    /// costs, not to set "try", which is set. Any other error: its
    /// [`Display`](core::fmt::Display) text.
    pub fn unlocked_note(&self) -> String {
        match self {
            OpenError::LockDenied {
                key,
                size,
                memlock_limit,
                errno,
            } => format!(
                "{}; until then it runs unlocked (lock = \"try\"), and its pages may be swapped out or faulted in under memory pressure",
                lock_denied(*key, *size, *memlock_limit, *errno)
            ),
            other => other.to_string(),
        }
    }
}

/// Why a read failed. The handle stays usable after every variant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// The slot stayed mid-write (odd sequence) for `waited` while the
    /// publisher is alive: it is stopped (SIGSTOP, debugger) or starved.
    WriterStuck {
        /// Pid of the publisher holding the lock.
        pid: i32,
        /// How long the reader retried.
        waited: Duration,
    },
    /// The slot is mid-write and the publisher is dead: it was killed during
    /// a publish. The next publisher repairs the slot.
    PublisherDied,
    /// Every read of the slot for `waited` was overwritten while it read:
    /// the slot's sequence kept changing. The publisher writes it faster
    /// than this process copies its frames (large frames in a ring of few
    /// slots), or another process writes the segment. This read is given
    /// up; the next one tries again.
    Overwritten {
        /// How long the reader retried.
        waited: Duration,
    },
    /// A complete (sequence-validated) frame did not decode as the
    /// subscriber's type. Only that frame is lost: the in-order cursor has
    /// moved past it and `latest` counts it as returned, so the next read
    /// returns the frame after it. Typically a typeless tool published a
    /// value the type cannot hold (a string over its capacity).
    Undecodable {
        /// Generation of the frame.
        generation: u64,
        /// postcard's error.
        error: postcard::Error,
    },
    /// A complete (sequence-validated) slot holds what no publisher writes:
    /// a length over the frame capacity, or an impossible generation.
    Corrupt {
        /// Generation of the frame.
        generation: u64,
        /// What failed.
        what: &'static str,
    },
    /// The caller's buffer could not grow to the frame's `size` bytes: this
    /// process is out of memory or at its memory limit. Only that frame is
    /// lost, as for [`ReadError::Undecodable`]: the cursor has moved past
    /// it.
    BufferMemory {
        /// Generation of the frame.
        generation: u64,
        /// Bytes the buffer needed.
        size: u64,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::WriterStuck { pid, waited } => write!(
                f,
                "publisher (pid {pid}) has been mid-write for {waited:?}: it is stopped or starved (check `ps -o stat {pid}`)"
            ),
            ReadError::PublisherDied => write!(
                f,
                "the publisher died in the middle of a publish; the frame is lost and the next publisher repairs the slot"
            ),
            ReadError::Overwritten { waited } => write!(
                f,
                "the slot was rewritten during every read for {waited:?}: frames are published faster than this reader copies them (give the topic more slots), or another process writes the segment"
            ),
            ReadError::Undecodable { generation, error } => write!(
                f,
                "frame {generation} does not decode as the subscriber's type ({error}); skipped it, the next read returns the frame after it"
            ),
            ReadError::Corrupt { generation, what } => write!(
                f,
                "frame {generation} is corrupt ({what}): the publisher and subscriber disagree on the type, or the segment was overwritten"
            ),
            ReadError::BufferMemory { generation, size } => write!(
                f,
                "out of memory for a buffer of frame {generation}'s {size} bytes; skipped it, the next read returns the frame after it: free memory, or raise this process's memory limit (`ulimit -v`)"
            ),
        }
    }
}

impl std::error::Error for ReadError {}

/// Why a blocking wait ended without a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitError {
    /// No new frame before the timeout. The handle stays usable.
    Timeout,
    /// The publisher is not running: its lock is free, or the lock is gone
    /// and no frame was published since the previous liveness check (a
    /// lock removed under a publisher that still publishes is not this).
    /// The handle stays usable: a new publisher reopens the same segment.
    PublisherGone,
    /// The segment was removed (`IPC_RMID`). The handle will never see a new
    /// frame: attach again once a publisher recreates the topic.
    Removed,
    /// The publisher lock at the key cannot be read (liveness `Unknown`):
    /// another user's semaphore, mode 0600 or so, sits at the key. A
    /// publisher never takes a lock it did not create, so no publisher can
    /// be running while it is there; the wait ends instead of waiting for
    /// frames that cannot come. The handle stays usable.
    LockUnreadable {
        /// The System V key.
        key: i32,
        /// Creator uid of the semaphore set, from `/proc/sysvipc/sem`.
        creator_uid: Option<u32>,
        /// Its permission bits, from `/proc/sysvipc/sem`.
        mode: Option<u32>,
    },
    /// The topic's own publisher lock (created by the creator of the
    /// segment this subscriber reads) can no longer be read by this
    /// process: the topic's mode or group changed since it attached (a
    /// publisher reopened it with other permissions). Frames already in
    /// the mapping stay readable, but whether a publisher runs cannot be
    /// told, so the wait ends. Attach again as a user the new mode and
    /// group admit. Never a squatter's lock: that is
    /// [`WaitError::LockUnreadable`].
    AccessLost {
        /// The System V key.
        key: i32,
        /// The lock's owner uid, group and permission bits now, from
        /// `/proc/sysvipc/sem`.
        owner: Option<(u32, u32, u32)>,
    },
    /// Reading the frame failed.
    Read(ReadError),
    /// The wait itself failed.
    Sys(SysError),
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Timeout => write!(f, "timed out waiting for a frame"),
            WaitError::PublisherGone => write!(
                f,
                "the topic's publisher is not running (it exited or was killed; its last frames stay readable): start it again; a reader waits for it with wait_for_publisher"
            ),
            WaitError::Removed => write!(
                f,
                "the topic was removed while waiting; attach again once its publisher recreates it"
            ),
            WaitError::LockUnreadable {
                key,
                creator_uid,
                mode,
            } => {
                write!(f, "the publisher lock at key {} cannot be read", Key(*key))?;
                if let (Some(uid), Some(mode)) = (creator_uid, mode) {
                    write!(f, " (created by uid {uid}, mode {mode:03o})")?;
                }
                write!(
                    f,
                    ": no publisher can run while it is there; find out who created it, then remove it as root (`ipcrm -S {}`)",
                    Key(*key)
                )
            }
            WaitError::AccessLost { key, owner } => {
                write!(
                    f,
                    "this process may no longer read the topic at key {}",
                    Key(*key)
                )?;
                if let Some((uid, gid, mode)) = owner {
                    write!(f, " (now owner uid {uid}, group {gid}, mode {mode:03o})")?;
                }
                write!(
                    f,
                    ": its permissions changed since this subscriber attached, so whether its publisher runs cannot be read; run the subscriber as a user that mode and group admit (or give the topic a mode or group that admits this one), then attach again"
                )
            }
            WaitError::Read(e) => e.fmt(f),
            WaitError::Sys(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for WaitError {}

impl From<ReadError> for WaitError {
    fn from(e: ReadError) -> Self {
        WaitError::Read(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under lock "require" a refused `SHM_LOCK` is an error whose fixes
    /// include `lock = "try"`; under "try" (`LockOutcome::Refused`) the same
    /// refusal is a note on a topic that runs unlocked, and telling that
    /// user to set "try", which is set, was the sensors' note.
    #[test]
    fn a_lock_refused_under_try_is_not_told_to_set_try() {
        let e = OpenError::LockDenied {
            key: 0x1234,
            size: 4096,
            memlock_limit: 0,
            errno: Errno::EPERM,
        };
        let error = e.to_string();
        let note = e.unlocked_note();
        for text in [&error, &note] {
            for needle in [
                "RLIMIT_MEMLOCK is 0 bytes",
                "ulimit -l",
                "LimitMEMLOCK=",
                "CAP_IPC_LOCK",
            ] {
                assert!(text.contains(needle), "lacks {needle:?}: {text}");
            }
        }
        assert!(error.contains("set lock = \"try\""), "{error}");
        assert!(!note.contains("set lock"), "{note}");
        assert!(note.contains("runs unlocked"), "{note}");
        // Any other error is its own text.
        let other = OpenError::NotFound { key: 1 };
        assert_eq!(other.unlocked_note(), other.to_string());
    }
}

//! The publisher lock: one System V semaphore per topic, at the topic's key.
//!
//! Value 0 = free, 1 = held. A publisher takes it with one atomic
//! `semop`: "wait until 0 (don't block), then add 1 with `SEM_UNDO`". The
//! kernel undoes the `+1` when the process dies however it dies (SIGKILL
//! included), so the lock is never left held by a dead process, and no pid
//! check is involved (pids are reused). `semctl(GETPID)` names the holder.
//!
//! A fresh semaphore is 0 on Linux, so there is no initialisation race.
//! Subscribers read the value (`GETVAL`, read permission) to tell whether
//! the publisher is alive; they never change it.

use crate::error::{ObjectKind, OpenError};
use crate::segment::require_owner;
use crate::sys::{self, Errno};

/// Whether a topic's publisher is running, as far as the lock tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublisherStatus {
    /// The lock is held: a publisher process is alive.
    Alive {
        /// The holder's pid.
        pid: i32,
    },
    /// The lock is free: no publisher is running.
    NotRunning,
    /// The topic has no lock (it was removed, or never had a publisher).
    NoLock,
    /// The lock could not be read (permission): another user's semaphore
    /// sits at the key, or this process lost read access to the topic's
    /// own lock (a publisher restarted with a narrower mode or another
    /// group). A publisher never takes a lock it did not create, so in the
    /// first case none can be running while it is there; in the second one
    /// may be. Blocking waits end with `WaitError::LockUnreadable` or
    /// `WaitError::AccessLost`; a read of a slot that stays mid-write waits
    /// as long as for a live publisher before it says anything; a
    /// subscriber that names its publisher's uid refuses such a topic at
    /// attach.
    Unknown,
}

impl PublisherStatus {
    /// True for [`PublisherStatus::Alive`].
    pub fn is_alive(&self) -> bool {
        matches!(self, PublisherStatus::Alive { .. })
    }
}

/// Read the publisher lock of the topic at `key`. Three system calls. Key
/// 0 (a removed segment's) has no lock: [`PublisherStatus::NoLock`], with
/// no system call. So is a set of several semaphores at the key, another
/// program's ([`foreign_set`]).
pub fn publisher_status(key: i32) -> PublisherStatus {
    let id = match sys::sem_lookup(key) {
        Ok(id) => id,
        Err(e) if e.errno == Errno::ENOENT => return PublisherStatus::NoLock,
        Err(_) => return PublisherStatus::Unknown,
    };
    if foreign_set(id, key).is_some() {
        return PublisherStatus::NoLock;
    }
    status_of(id)
}

/// The number of semaphores in set `semid` (at `key`) when it cannot be a
/// publisher lock: every publisher makes a set of exactly one. A set of
/// several is another program's, such as the semaphores of an `ftok` pair
/// (`ftok(path, 'S')` makes keys among the ones shmbus derives from names,
/// whose top byte is `'S'`); it is never taken, read as a publisher's
/// liveness, or removed as a topic's lock. Read with `semctl(IPC_STAT)`,
/// or from `/proc/sysvipc/sem` (readable by anyone) when that is refused.
/// `None`: a set of one, or one neither shows (gone meanwhile), which the
/// caller's next call on it finds out.
pub fn foreign_set(semid: i32, key: i32) -> Option<u64> {
    let nsems = match sys::sem_stat(semid) {
        Ok(st) => st.nsems,
        Err(e) if matches!(e.errno, Errno::EACCES | Errno::EPERM) => {
            let n = crate::sysvipc::semaphore_by_key(key)?.get("nsems")?;
            u64::try_from(n).ok()?
        }
        Err(_) => return None,
    };
    (nsems != 1).then_some(nsems)
}

/// The uid that created the semaphore set at `key` (`sem_perm.cuid`,
/// which nobody can change), read with `semctl(IPC_STAT)`, or from
/// `/proc/sysvipc/sem` (readable by anyone) when that is refused. `None`:
/// no set at the key, or one gone meanwhile.
pub fn creator(key: i32) -> Option<u32> {
    match sys::sem_lookup(key).and_then(sys::sem_stat) {
        Ok(st) => Some(st.cuid),
        Err(e) if matches!(e.errno, Errno::EACCES | Errno::EPERM) => {
            let n = crate::sysvipc::semaphore_by_key(key)?.get("cuid")?;
            u32::try_from(n).ok()
        }
        _ => None,
    }
}

/// As [`publisher_status`], for a known semaphore id.
pub fn status_of(semid: i32) -> PublisherStatus {
    match sys::sem_getval(semid) {
        Ok(0) => PublisherStatus::NotRunning,
        Ok(_) => PublisherStatus::Alive {
            pid: sys::sem_getpid(semid).unwrap_or(0),
        },
        Err(e) if e.errno == Errno::EIDRM || e.errno == Errno::EINVAL => PublisherStatus::NoLock,
        Err(_) => PublisherStatus::Unknown,
    }
}

/// Require that the publisher lock at `key`, if there is one, was created
/// by and belongs to `uid`. A lock this process cannot read is judged from
/// `/proc/sysvipc/sem` (readable by anyone): another user's is
/// [`OpenError::NotOwner`] naming its creator, never silently accepted.
pub fn check_owner(key: i32, uid: u32) -> Result<(), OpenError> {
    let unreadable = |e: sys::SysError| match crate::sysvipc::semaphore_by_key(key) {
        // Not a publisher lock: nothing to spoof liveness with.
        Some(p) if p.get("nsems") != Some(1) => Ok(()),
        Some(p) => {
            require_owner(ObjectKind::Lock, key, p.creator_uid(), p.owner().0, uid)?;
            // Ours, yet unreadable to this process: say so.
            Err(OpenError::PermissionDenied {
                key,
                call: e.call,
                owner: Some(p.owner()),
            })
        }
        None => Err(OpenError::from_sys(key, 0, e)),
    };
    let id = match sys::sem_lookup(key) {
        Ok(id) => id,
        // No lock: no publisher is running; nothing to spoof liveness with.
        Err(e) if e.errno == Errno::ENOENT => return Ok(()),
        Err(e) => return unreadable(e),
    };
    match sys::sem_stat(id) {
        Ok(st) if st.nsems != 1 => Ok(()),
        Ok(st) => require_owner(ObjectKind::Lock, key, st.cuid, st.uid, uid),
        Err(e) if matches!(e.errno, Errno::EIDRM | Errno::EINVAL) => Ok(()),
        Err(e) => unreadable(e),
    }
}

#[cfg(feature = "writer")]
/// What [`hold_for_removal`] found at a topic's key.
#[derive(Debug)]
pub enum RemovalHold {
    /// The lock is held by this process: no publisher can open the topic
    /// until [`HeldLock::remove`] removes the lock or the hold is dropped.
    Held(HeldLock),
    /// A publisher holds the lock (`pid`, 0 if unknown).
    Alive {
        /// The holder's pid.
        pid: i32,
    },
    /// No lock at the key.
    NoLock,
    /// The lock could not be taken (`EACCES` for a user the lock's mode
    /// shuts out, or another error): removing the topic cannot be made
    /// safe from a publisher starting meanwhile.
    Unavailable(sys::SysError),
}

#[cfg(feature = "writer")]
/// A topic's publisher lock taken by a tool that removes the topic (see
/// [`hold_for_removal`]). Dropped without [`Self::remove`], it is released.
#[derive(Debug)]
pub struct HeldLock {
    semid: i32,
    removed: bool,
}

#[cfg(feature = "writer")]
impl HeldLock {
    /// The lock's semid.
    pub fn semid(&self) -> i32 {
        self.semid
    }

    /// Remove the held lock: this set, by its semid, never whatever set the
    /// key names by then.
    pub fn remove(mut self) -> Result<(), sys::SysError> {
        self.removed = true;
        sys::sem_remove(self.semid)
    }
}

#[cfg(feature = "writer")]
impl Drop for HeldLock {
    fn drop(&mut self) {
        if !self.removed {
            let mut ops = [libc::sembuf {
                sem_num: 0,
                sem_op: -1,
                sem_flg: (libc::SEM_UNDO | libc::IPC_NOWAIT) as i16,
            }];
            let _ = sys::semop(self.semid, &mut ops);
        }
    }
}

/// Take the publisher lock of the topic at `key` as a publisher takes it,
/// for a tool about to remove the topic: while it is held no publisher can
/// open the topic, so none can start between the tool's check that no
/// publisher runs and the removal, adopt the segment about to go, or
/// create a new segment whose lock the tool then removes from under it
/// (leaving a live publisher without a lock, and the topic open to a
/// second writer). Root takes any lock; it needs no ownership check, as
/// only a removal follows.
#[cfg(feature = "writer")]
pub fn hold_for_removal(key: i32) -> RemovalHold {
    let semid = match sys::sem_lookup(key) {
        Ok(id) => id,
        Err(e) if e.errno == Errno::ENOENT => return RemovalHold::NoLock,
        Err(e) => return RemovalHold::Unavailable(e),
    };
    if foreign_set(semid, key).is_some() {
        return RemovalHold::NoLock;
    }
    match take(semid) {
        Ok(()) => RemovalHold::Held(HeldLock {
            semid,
            removed: false,
        }),
        Err(e) if e.errno == Errno::EAGAIN => RemovalHold::Alive {
            pid: sys::sem_getpid(semid).unwrap_or(0),
        },
        // Removed between the lookup and the semop: as if never there.
        Err(e) if matches!(e.errno, Errno::EIDRM | Errno::EINVAL) => RemovalHold::NoLock,
        Err(e) => RemovalHold::Unavailable(e),
    }
}

/// Take the lock of set `semid` as its holder: if its value is 0, make it
/// 1, undone by the kernel when this process exits (`SEM_UNDO`); never
/// waits (`EAGAIN` if it is held). One `semop` of two operations, so two
/// takers cannot both see 0.
#[cfg(feature = "writer")]
fn take(semid: i32) -> Result<(), sys::SysError> {
    let mut ops = [
        libc::sembuf {
            sem_num: 0,
            sem_op: 0,
            sem_flg: libc::IPC_NOWAIT as i16,
        },
        libc::sembuf {
            sem_num: 0,
            sem_op: 1,
            sem_flg: (libc::SEM_UNDO | libc::IPC_NOWAIT) as i16,
        },
    ];
    sys::semop(semid, &mut ops)
}

/// Remove the publisher lock of the topic at `key`, if it exists. Another
/// program's set of several semaphores there is no lock ([`foreign_set`]):
/// `Ok(false)`, untouched.
pub fn remove_lock(key: i32) -> Result<bool, sys::SysError> {
    match sys::sem_lookup(key) {
        Ok(id) if foreign_set(id, key).is_some() => Ok(false),
        Ok(id) => sys::sem_remove(id).map(|()| true),
        Err(e) if e.errno == Errno::ENOENT => Ok(false),
        Err(e) => Err(e),
    }
}

/// Another user's lock next to a segment that the same user created is
/// that user's topic (or a squat of both objects): [`ObjectKind::Topic`],
/// whose message says to publish as that user, or to remove the whole
/// topic. Removing only its lock (`ipcrm -S`) would leave a live publisher
/// without one, and let a second publisher write the same segment.
#[cfg(feature = "writer")]
fn whole_topic(e: OpenError) -> OpenError {
    match e {
        OpenError::NotOwner {
            key,
            object: ObjectKind::Lock,
            creator_uid,
            owner_uid,
            expected_uid,
        } if crate::sysvipc::segment_by_key(key)
            .is_some_and(|s| s.creator_uid() == creator_uid) =>
        {
            OpenError::NotOwner {
                key,
                object: ObjectKind::Topic,
                creator_uid,
                owner_uid,
                expected_uid,
            }
        }
        e => e,
    }
}

/// A held publisher lock. Dropping it releases the lock; so does the death
/// of the process.
#[cfg(feature = "writer")]
#[derive(Debug)]
pub struct PublisherLock {
    semid: i32,
    key: i32,
    /// This open created the semaphore and the topic is not open yet: if
    /// the open fails, remove the semaphore instead of leaving it behind.
    discard_on_drop: bool,
    /// This open created the semaphore: no shmbus publisher had opened
    /// the topic at this key before (or its topic was removed since).
    created: bool,
    /// The pid that took the lock. A `fork()` child's copy of the handle
    /// neither releases nor removes the lock: it is the parent's.
    holder_pid: u32,
}

#[cfg(feature = "writer")]
impl PublisherLock {
    /// Create (with `mode` and `group`) or open the lock at `key` and take
    /// it without blocking.
    ///
    /// Errors: [`OpenError::PublisherActive`] naming the holder's pid,
    /// [`OpenError::NotOwner`] if another user created the semaphore (a
    /// squatter on the topic's key), [`OpenError::PermissionDenied`].
    pub fn acquire(key: i32, mode: u32, group: Option<u32>) -> Result<PublisherLock, OpenError> {
        let euid = nix::unistd::geteuid().as_raw();
        let mut created = false;
        let semid = match sys::sem_create(key, mode) {
            Ok(id) => {
                created = true;
                if group.is_some() {
                    if let Err(e) = sys::sem_set_owner(id, group, mode) {
                        let _ = sys::sem_remove(id);
                        return Err(OpenError::from_sys(key, 0, e));
                    }
                }
                id
            }
            Err(e) if e.errno == Errno::EEXIST => {
                let squatter = |e: sys::SysError| match crate::sysvipc::semaphore_by_key(key) {
                    Some(p) if p.get("nsems") != Some(1) => OpenError::ForeignSemaphores {
                        key,
                        nsems: p.get("nsems").unwrap_or(0).max(0) as u64,
                    },
                    // Unreadable to us: name its creator from /proc, which
                    // anyone can read.
                    Some(p) if p.creator_uid() != euid => OpenError::NotOwner {
                        key,
                        object: ObjectKind::Lock,
                        creator_uid: p.creator_uid(),
                        owner_uid: p.owner().0,
                        expected_uid: euid,
                    },
                    _ => OpenError::from_sys(key, 0, e),
                };
                let id = sys::sem_lookup(key).map_err(|e| whole_topic(squatter(e)))?;
                let st = sys::sem_stat(id).map_err(|e| whole_topic(squatter(e)))?;
                // Not a publisher lock (a set of one): another program's
                // semaphores, never taken (a `semop` on them would change
                // that program's state).
                if st.nsems != 1 {
                    return Err(OpenError::ForeignSemaphores {
                        key,
                        nsems: st.nsems,
                    });
                }
                // Also for root: a lock someone else created at our key is
                // a squatter's, whatever our privileges.
                if st.cuid != euid {
                    return Err(whole_topic(OpenError::NotOwner {
                        key,
                        object: ObjectKind::Lock,
                        creator_uid: st.cuid,
                        owner_uid: st.uid,
                        expected_uid: euid,
                    }));
                }
                // Our lock from an earlier run: give it the topic's current
                // mode and group, as the segment gets them, so whoever may
                // read the segment may read the publisher's liveness.
                if st.mode & 0o777 != mode & 0o777 || group.is_some_and(|g| g != st.gid) {
                    sys::sem_set_owner(id, group, mode)
                        .map_err(|e| OpenError::from_sys(key, 0, e))?;
                }
                id
            }
            Err(e) => return Err(OpenError::from_sys(key, 0, e)),
        };
        match take(semid) {
            Ok(()) => Ok(PublisherLock {
                semid,
                key,
                discard_on_drop: created,
                created,
                holder_pid: std::process::id(),
            }),
            Err(e) if e.errno == Errno::EAGAIN => Err(OpenError::PublisherActive {
                key,
                pid: sys::sem_getpid(semid).unwrap_or(0),
            }),
            Err(e) => {
                // Nobody holds a lock this call could not take (`EAGAIN`,
                // another publisher that took a set we had just created,
                // is the arm above): a set this call created goes with
                // the failure, as a failed segment creation removes its
                // segment, instead of staying behind in `ipcs -s`.
                if created {
                    let _ = sys::sem_remove(semid);
                }
                Err(OpenError::from_sys(key, 0, e))
            }
        }
    }

    /// The topic opened: from now on dropping the lock releases it and
    /// keeps the semaphore (a new semaphore is otherwise removed on drop, so
    /// a failed open leaves nothing behind).
    pub fn keep(&mut self) {
        self.discard_on_drop = false;
    }

    /// True if this open created the semaphore, so no publisher had
    /// opened the topic at this key before (or it was removed since): a
    /// segment already at the key cannot be a half-created topic, whose
    /// creator would have left its lock behind.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The semaphore id.
    pub fn semid(&self) -> i32 {
        self.semid
    }

    /// True if this lock's semaphore set was removed (`ipcrm -s`, `shmbus
    /// rm` of a lock it took for one left behind) while held: the topic
    /// then has no lock, so a second publisher can take a new one and
    /// write the same segment. One system call; for a periodic check.
    pub fn is_removed(&self) -> bool {
        matches!(sys::sem_stat(self.semid), Err(e) if matches!(e.errno, Errno::EIDRM | Errno::EINVAL))
    }

    /// The key.
    pub fn key(&self) -> i32 {
        self.key
    }

    /// The pid of the process that took the lock.
    pub fn holder_pid(&self) -> u32 {
        self.holder_pid
    }
}

#[cfg(feature = "writer")]
impl Drop for PublisherLock {
    fn drop(&mut self) {
        if std::process::id() != self.holder_pid {
            // A fork() child's copy: the lock is the parent's (its
            // SEM_UNDO stays with the parent, so a release here would free
            // the topic for a second publisher while the parent publishes).
            return;
        }
        if self.discard_on_drop {
            let _ = sys::sem_remove(self.semid);
            return;
        }
        let mut ops = [libc::sembuf {
            sem_num: 0,
            sem_op: -1,
            sem_flg: (libc::SEM_UNDO | libc::IPC_NOWAIT) as i16,
        }];
        // Failure (the lock was removed under us) leaves nothing to release.
        let _ = sys::semop(self.semid, &mut ops);
    }
}

//! The handle table: C holds small integers, never pointers into Rust.
//!
//! A handle is `kind << 48 | generation << 16 | (index + 1)`. The table has
//! [`SHMBUS_MAX_HANDLES`] slots, each behind its own mutex; closing a slot bumps
//! its generation, so a closed handle, a second close and a handle of
//! another kind are all recognised and refused with a code instead of
//! touching freed memory. Zero is never a valid handle, so a
//! zero-initialised handle variable is refused too.
//!
//! Each call locks only the slots it uses (uncontended: one atomic swap in
//! and one out). A handle may be used from several threads; calls on the
//! same handle are serialised, and a blocking wait holds its subscriber's
//! slot a slice of at most 100 ms at a time (so a close from another
//! thread gets in, and the wait then returns `SHMBUS_ERR_CLOSED`).
//!
//! `fork()`: a child gets a copy of the table. A slot another thread of the
//! parent had locked at the fork stays locked in the child for ever (that
//! thread does not exist there), so a `pthread_atfork` handler marks such
//! slots in the child, and a call on one is refused with
//! `SHMBUS_ERR_BAD_HANDLE` instead of blocking the child for ever. The
//! handler also keeps `process_id` right in the child, which publishers
//! use to refuse publishing from a process that did not open them.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use shmbus_core::sys::InstallOnce;

use crate::frame::Frame;
use crate::publisher::Pub;
use crate::schema::SchemaHandle;
use crate::status::*;
use crate::subscriber::Sub;

/// How many handles (of all kinds) a process can hold open at once.
pub const SHMBUS_MAX_HANDLES: usize = 1024;

/// What a slot holds.
pub(crate) enum Object {
    Schema(SchemaHandle),
    Frame(Box<Frame>),
    Publisher(Box<Pub>),
    Subscriber(Box<Sub>),
}

/// The kind of a handle, as encoded in its top bits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Schema = 1,
    Frame = 2,
    Publisher = 3,
    Subscriber = 4,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Schema => "schema",
            Kind::Frame => "frame",
            Kind::Publisher => "publisher",
            Kind::Subscriber => "subscriber",
        }
    }
    fn of(o: &Object) -> Kind {
        match o {
            Object::Schema(_) => Kind::Schema,
            Object::Frame(_) => Kind::Frame,
            Object::Publisher(_) => Kind::Publisher,
            Object::Subscriber(_) => Kind::Subscriber,
        }
    }
}

struct Slot {
    generation: u32,
    object: Option<Object>,
}

static TABLE: [Mutex<Slot>; SHMBUS_MAX_HANDLES] = [const {
    Mutex::new(Slot {
        generation: 0,
        object: None,
    })
}; SHMBUS_MAX_HANDLES];

/// Slots locked by a thread of the parent when this process was forked
/// (set in the child by [`after_fork_in_child`]): nobody here will unlock
/// them.
static ORPHANED: [AtomicBool; SHMBUS_MAX_HANDLES] =
    [const { AtomicBool::new(false) }; SHMBUS_MAX_HANDLES];

/// This process's pid, kept right across `fork()` by the handler.
static PID: AtomicU32 = AtomicU32::new(0);

/// Not `Once`: in the child of a `fork()` made while a parent thread was
/// installing the handler, `Once` blocked every call for ever.
static AT_FORK: InstallOnce = InstallOnce::new();

/// In the child of a `fork()`, before it returns: note the pid, and every
/// slot a thread of the parent held (only the forking thread exists here,
/// and it holds none: no export forks). Atomics and `getpid` only, as a
/// handler in the child of a multi-threaded process must.
extern "C" fn after_fork_in_child() {
    PID.store(std::process::id(), Ordering::Relaxed);
    // The parent's threads blocked on a slot do not exist here: nobody waits
    // for one, and a count left over would hold this process's waits back.
    for c in &CONTENDERS {
        c.store(0, Ordering::Relaxed);
    }
    for (index, entry) in TABLE.iter().enumerate() {
        if let Err(TryLockError::WouldBlock) = entry.try_lock() {
            ORPHANED[index].store(true, Ordering::Relaxed);
        }
    }
}

/// The calling process's pid: one atomic load (after the first call, which
/// installs the fork handler). Right in a child of `fork()` too. Until the
/// handler is installed (it failed, or this is the child of a `fork()` made
/// mid-install) it asks the kernel each time, never a stale copy.
pub(crate) fn process_id() -> u32 {
    let installed = AT_FORK.run(|| {
        PID.store(std::process::id(), Ordering::Relaxed);
        // SAFETY: registers a plain function with no captured state; it
        // only touches statics that live as long as the library. ENOMEM:
        // without the handler a child could block on a slot, as before it
        // existed; the pid is then asked of the kernel.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) == 0 }
    });
    if installed {
        PID.load(Ordering::Relaxed)
    } else {
        std::process::id()
    }
}

/// Threads blocked in [`lock`] for each slot. A blocking wait holds its
/// subscriber's slot a slice at a time and takes it again at once; the
/// slot's `Mutex` is not fair, so another thread's call on that handle (a
/// `shmbus_subscriber_close`) could lose every one of those races and block
/// until the wait's timeout. The wait looks here between its slices and
/// lets such a thread in first ([`let_others_in`]).
static CONTENDERS: [AtomicU32; SHMBUS_MAX_HANDLES] =
    [const { AtomicU32::new(0) }; SHMBUS_MAX_HANDLES];

fn lock(index: usize) -> MutexGuard<'static, Slot> {
    // A panic while a slot was locked is caught at the boundary; the slot's
    // object may be half-updated, but it is still a whole Rust value, and
    // closing it must stay possible.
    let unpoison = |p: std::sync::PoisonError<MutexGuard<'static, Slot>>| {
        TABLE[index].clear_poison();
        p.into_inner()
    };
    // Free: taken at once, not counted (the common case, one CAS as before).
    match TABLE[index].try_lock() {
        Ok(g) => return g,
        Err(TryLockError::Poisoned(p)) => return unpoison(p),
        Err(TryLockError::WouldBlock) => {}
    }
    CONTENDERS[index].fetch_add(1, Ordering::SeqCst);
    let g = TABLE[index].lock().unwrap_or_else(unpoison);
    CONTENDERS[index].fetch_sub(1, Ordering::SeqCst);
    g
}

/// Called by a sliced wait between two slices, holding nothing: until the
/// threads that were blocked on the slot of handle `id` have taken it, or
/// `deadline_ns` (`CLOCK_MONOTONIC`) has passed, sleep a millisecond at a
/// time; then the wait takes the slot again behind them. A close among
/// them empties the slot and the wait's next slice returns
/// `SHMBUS_ERR_CLOSED`. A thread that is itself between slices is not
/// counted, so two waits on one handle take turns instead of waiting for
/// each other.
pub(crate) fn let_others_in(id: u64, kind: Kind, deadline_ns: u64) {
    let Ok((index, _)) = decode(id, kind) else {
        return;
    };
    while CONTENDERS[index].load(Ordering::SeqCst) > 0
        && shmbus_core::sys::monotonic_ns() < deadline_ns
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn encode(kind: Kind, generation: u32, index: usize) -> u64 {
    (kind as u64) << 48 | u64::from(generation) << 16 | (index as u64 + 1)
}

fn decode(id: u64, kind: Kind) -> Result<(usize, u32)> {
    let index = (id & 0xffff) as usize;
    let k = id >> 48;
    if id == 0 || index == 0 || index > SHMBUS_MAX_HANDLES || k != kind as u64 {
        return fail(
            SHMBUS_ERR_BAD_HANDLE,
            format!(
                "{:#x} is not a {} handle (a zero or uninitialised handle, or a handle of another kind)",
                id,
                kind.name()
            ),
        );
    }
    Ok((index - 1, (id >> 16) as u32))
}

/// Store `object` in a free slot and return its handle.
pub(crate) fn insert(object: Object) -> Result<u64> {
    // Before the first handle exists: a fork after it runs the handler.
    process_id();
    let kind = Kind::of(&object);
    let mut object = Some(object);
    for (index, entry) in TABLE.iter().enumerate() {
        // try_lock: a slot in use by another thread is not free anyway.
        let Ok(mut slot) = entry.try_lock() else {
            continue;
        };
        if slot.object.is_none() {
            slot.generation = slot.generation.wrapping_add(1);
            slot.object = object.take();
            return Ok(encode(kind, slot.generation, index));
        }
    }
    fail(
        SHMBUS_ERR_TOO_MANY_HANDLES,
        format!(
            "more than {SHMBUS_MAX_HANDLES} handles are open in this process: close the ones you no longer use"
        ),
    )
}

/// A locked, checked slot: the object of one live handle.
pub(crate) struct Held {
    slot: MutexGuard<'static, Slot>,
    index: usize,
}

impl Held {
    pub(crate) fn object(&mut self) -> &mut Object {
        self.slot
            .object
            .as_mut()
            .expect("Held is only made for a slot with an object")
    }
    pub(crate) fn index(&self) -> usize {
        self.index
    }
}

/// Lock the slot of handle `id` of `kind`, after checking it is live.
pub(crate) fn get(id: u64, kind: Kind) -> Result<Held> {
    let (index, generation) = decode(id, kind)?;
    if ORPHANED[index].load(Ordering::Relaxed) {
        return fail(
            SHMBUS_ERR_BAD_HANDLE,
            format!(
                "the {} handle {id:#x} was in use by another thread of the parent process when this process was forked from it: its state is the parent's, mid-call, and it cannot be used or closed here (open what you need again in this process)",
                kind.name()
            ),
        );
    }
    let slot = lock(index);
    match &slot.object {
        Some(o) if slot.generation == generation && Kind::of(o) == kind => Ok(Held { slot, index }),
        _ if generation_is_past(slot.generation, generation) => fail(
            SHMBUS_ERR_CLOSED,
            format!("the {} handle {id:#x} is closed", kind.name()),
        ),
        _ => fail(
            SHMBUS_ERR_BAD_HANDLE,
            format!("{id:#x} was never a {} handle of this process", kind.name()),
        ),
    }
}

/// Like [`get`], for a second handle used in the same call: refuses a
/// handle that names the same slot as `first` (it cannot be valid, and
/// locking the slot twice would deadlock).
pub(crate) fn get_second(id: u64, kind: Kind, first: &Held) -> Result<Held> {
    let (index, _) = decode(id, kind)?;
    if index == first.index() {
        return fail(
            SHMBUS_ERR_BAD_HANDLE,
            format!("{id:#x} is not a live {} handle", kind.name()),
        );
    }
    get(id, kind)
}

/// A handle's generation was issued and closed if it is behind the slot's
/// (wrap-safe), or equal while the slot is empty.
fn generation_is_past(current: u32, handle: u32) -> bool {
    handle != 0 && (current.wrapping_sub(handle) as i32) >= 0
}

/// Close handle `id` of `kind`: take its object out (the caller drops it,
/// outside the lock when it likes).
pub(crate) fn remove(id: u64, kind: Kind) -> Result<Object> {
    let mut held = get(id, kind)?;
    Ok(held
        .slot
        .object
        .take()
        .expect("get returned a slot with an object"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ForTests, SchemaHandle};

    fn schema() -> Object {
        Object::Schema(SchemaHandle::for_tests())
    }

    #[test]
    fn closed_double_closed_foreign_and_zero_handles_are_refused() {
        let id = insert(schema()).unwrap();
        assert!(get(id, Kind::Schema).is_ok());
        assert_eq!(
            get(id, Kind::Frame).err().unwrap().code,
            SHMBUS_ERR_BAD_HANDLE
        );
        assert!(remove(id, Kind::Schema).is_ok());
        assert_eq!(get(id, Kind::Schema).err().unwrap().code, SHMBUS_ERR_CLOSED);
        assert_eq!(
            remove(id, Kind::Schema).err().unwrap().code,
            SHMBUS_ERR_CLOSED
        );
        assert_eq!(
            get(0, Kind::Schema).err().unwrap().code,
            SHMBUS_ERR_BAD_HANDLE
        );
        assert_eq!(
            get(u64::MAX, Kind::Schema).err().unwrap().code,
            SHMBUS_ERR_BAD_HANDLE
        );
        // A handle whose slot was never issued at that generation.
        let forged = encode(Kind::Schema, 0x7fff_0000, 1000);
        assert_eq!(
            get(forged, Kind::Schema).err().unwrap().code,
            SHMBUS_ERR_BAD_HANDLE
        );
    }

    /// A slot another thread holds when the process forks (a blocking wait
    /// holds its subscriber's slot 100 ms at a time) is refused in the child
    /// with a code: before, the child's first call on it (a close at exit,
    /// Python's `__del__`) blocked for ever on a lock whose holder does not
    /// exist in the child.
    #[test]
    fn a_slot_held_by_another_thread_at_fork_is_refused_in_the_child() {
        let id = insert(schema()).unwrap();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let held = get(id, Kind::Schema).unwrap();
            held_tx.send(()).unwrap();
            // Held until the parent has seen the child end.
            let _ = done_rx.recv_timeout(std::time::Duration::from_secs(120));
            drop(held);
        });
        held_rx.recv().unwrap();
        // The child only calls `get`/`remove` (atomics, a mutex, and malloc
        // for the message: glibc's malloc is usable in a fork child).
        let child = shmbus_testkit::ForkChild::start(|| {
            match (get(id, Kind::Schema), remove(id, Kind::Schema)) {
                (Err(a), Err(b))
                    if a.code == SHMBUS_ERR_BAD_HANDLE
                        && b.code == SHMBUS_ERR_BAD_HANDLE
                        && a.message.contains("forked") =>
                {
                    0
                }
                _ => 1,
            }
        })
        .unwrap();
        let got = child.wait(std::time::Duration::from_secs(60));
        done_tx.send(()).unwrap();
        holder.join().unwrap();
        match got {
            Ok(0) => {}
            Ok(_) => panic!("the child's calls were not refused with SHMBUS_ERR_BAD_HANDLE"),
            Err(e) => panic!("the child blocked on the slot its parent's thread held: {e}"),
        }
        // The parent's slot is untouched.
        assert!(remove(id, Kind::Schema).is_ok());
    }

    #[test]
    fn a_reused_slot_does_not_revive_an_old_handle() {
        let a = insert(schema()).unwrap();
        remove(a, Kind::Schema).unwrap();
        let mut others = Vec::new();
        // Fill slots until a is reused (it is the first free slot, unless
        // another test holds it).
        for _ in 0..4 {
            others.push(insert(schema()).unwrap());
        }
        assert_eq!(get(a, Kind::Schema).err().unwrap().code, SHMBUS_ERR_CLOSED);
        for o in others {
            remove(o, Kind::Schema).unwrap();
        }
    }
}

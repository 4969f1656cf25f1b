//! `pthread_cancel` of a thread inside a libshmbus call: the C reader
//! thread a daemon cancels at shutdown. Its own binary: it cancels a thread.

use core::ffi::c_void;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use shmbus::publisher::*;
use shmbus::schema::{shmbus_schema, shmbus_schema_close};
use shmbus::subscriber::*;
use shmbus::*;
use shmbus_testkit::{Guard, unique_key, wait_thread_asleep, watchdog};

mod common;
use common::{last_error, topic};

static KEY: AtomicI32 = AtomicI32::new(0);
static TID: AtomicI32 = AtomicI32::new(0);
static RC: AtomicI32 = AtomicI32::new(i32::MIN);
static SUB: AtomicU64 = AtomicU64::new(0);

/// The cancelled thread: one call that waits for the topic to appear, and
/// nothing after it that is a cancellation point (no destructors either:
/// a cancellation acting here would unwind through this frame).
extern "C" fn reader(_: *mut c_void) -> *mut c_void {
    TID.store(shmbus_testkit::thread_id(), Ordering::SeqCst);
    let t = topic(c"test/cancel", KEY.load(Ordering::SeqCst));
    let mut sub = shmbus_subscriber { id: 0 };
    // SAFETY: a valid topic and a writable handle; no schema expected.
    let rc = unsafe { shmbus_subscriber_open(&t, shmbus_schema { id: 0 }, 600_000, &mut sub) };
    SUB.store(sub.id, Ordering::SeqCst);
    RC.store(rc, Ordering::SeqCst);
    core::ptr::null_mut()
}

/// Before: `pthread_cancel` of a thread waiting in `shmbus_subscriber_open`
/// (or in a wait on a topic without notification: both sleep in
/// `nanosleep`, a cancellation point) unwound into the Rust library, which
/// cannot unwind a foreign exception through `extern "C"`: the whole
/// process aborted ("FATAL: exception not rethrown", exit 134). Now
/// cancellation is disabled inside every call: the call completes (here:
/// the topic appears and the open returns it), and the cancel acts at the
/// thread's next cancellation point outside libshmbus.
#[test]
fn a_thread_cancelled_inside_a_call_finishes_the_call_instead_of_aborting_the_process() {
    watchdog(
        "pthread_cancel during a libshmbus wait",
        Duration::from_secs(120),
    );
    let g = Guard(unique_key("ffi-cancel"));
    KEY.store(g.key(), Ordering::SeqCst);
    // SAFETY: a zeroed pthread_t filled by pthread_create, a start routine
    // of the right type.
    let mut th: libc::pthread_t = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    let rc =
        unsafe { libc::pthread_create(&mut th, core::ptr::null(), reader, core::ptr::null_mut()) };
    assert_eq!(rc, 0);
    while TID.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_thread_asleep(TID.load(Ordering::SeqCst)).unwrap();
    // SAFETY: a live thread of this process.
    assert_eq!(unsafe { libc::pthread_cancel(th) }, 0);
    // The topic appears: the open ends with it.
    let mut s = shmbus_schema { id: 0 };
    // SAFETY: a NUL-terminated declaration and a writable handle.
    let rc = unsafe { shmbus::json::shmbus_schema_parse(c"struct V { v: u32 }".as_ptr(), &mut s) };
    assert_eq!(rc, SHMBUS_OK);
    let t = topic(c"test/cancel", g.key());
    let mut p = shmbus_publisher { id: 0 };
    // SAFETY: a valid topic and a writable handle.
    let rc = unsafe { shmbus_publisher_open(&t, s, &mut p) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    let mut ret: *mut c_void = core::ptr::null_mut();
    // SAFETY: joins the thread created above, once.
    assert_eq!(unsafe { libc::pthread_join(th, &mut ret) }, 0);
    assert_eq!(
        RC.load(Ordering::SeqCst),
        SHMBUS_OK,
        "the cancelled thread's open"
    );
    let sub = shmbus_subscriber {
        id: SUB.load(Ordering::SeqCst),
    };
    assert_eq!(shmbus_subscriber_close(sub), SHMBUS_OK);
    assert_eq!(shmbus_publisher_remove(p), SHMBUS_OK);
    shmbus_schema_close(s);
}

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

static PUB: AtomicU64 = AtomicU64::new(0);
static PUBLISHING: AtomicI32 = AtomicI32::new(0);
static STOP: AtomicI32 = AtomicI32::new(0);
static PUBLISHED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicI32 = AtomicI32::new(0);

/// The publishing thread: `shmbus_publish_bytes` and `shmbus_publish_json`
/// in a loop until told to stop, with no cancellation point of its own
/// (atomics only). A cancel that is pending can act only inside a
/// libshmbus call, which would unwind into Rust and abort the process.
extern "C" fn publisher(_: *mut c_void) -> *mut c_void {
    let p = shmbus_publisher {
        id: PUB.load(Ordering::SeqCst),
    };
    let frame = [7u8];
    let mut n = 0u64;
    while STOP.load(Ordering::SeqCst) == 0 {
        // SAFETY: one readable byte; no generation wanted.
        let rc = unsafe { shmbus_publish_bytes(p, frame.as_ptr(), 1, core::ptr::null_mut()) };
        // SAFETY: a NUL-terminated JSON text; no generation wanted.
        let rj = unsafe {
            shmbus::json::shmbus_publish_json(p, c"{\"v\": 9}".as_ptr(), core::ptr::null_mut())
        };
        if rc != SHMBUS_OK || rj != SHMBUS_OK {
            FAILED.store(if rc != SHMBUS_OK { rc } else { rj }, Ordering::SeqCst);
            break;
        }
        n += 2;
        PUBLISHING.store(1, Ordering::SeqCst);
    }
    PUBLISHED.store(n, Ordering::SeqCst);
    core::ptr::null_mut()
}

/// The publish calls skip the two calls that disable and restore thread
/// cancellation (`guard_local`: about 6 ns of a 50 ns publish), which is
/// sound only while a publish reaches no cancellation point. A thread that
/// publishes in a loop with nothing else that is one is cancelled for
/// 200 ms: it must neither abort the process (a cancellation acting in a
/// publish) nor end cancelled; it publishes on, and returns when told.
/// Checked to fail: a `usleep(0)` put into `shmbus_publish_bytes` aborted
/// this binary.
#[test]
fn a_thread_cancelled_while_publishing_is_never_cancelled_inside_a_publish() {
    watchdog("pthread_cancel during publishes", Duration::from_secs(120));
    let g = Guard(unique_key("ffi-cancel-pub"));
    let mut s = shmbus_schema { id: 0 };
    // SAFETY: a NUL-terminated declaration and a writable handle.
    let rc = unsafe { shmbus::json::shmbus_schema_parse(c"struct V { v: u8 }".as_ptr(), &mut s) };
    assert_eq!(rc, SHMBUS_OK);
    let t = topic(c"test/cancel-pub", g.key());
    let mut p = shmbus_publisher { id: 0 };
    // SAFETY: a valid topic and a writable handle.
    let rc = unsafe { shmbus_publisher_open(&t, s, &mut p) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    PUB.store(p.id, Ordering::SeqCst);
    // SAFETY: a zeroed pthread_t filled by pthread_create, a start routine
    // of the right type.
    let mut th: libc::pthread_t = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe {
        libc::pthread_create(&mut th, core::ptr::null(), publisher, core::ptr::null_mut())
    };
    assert_eq!(rc, 0);
    while PUBLISHING.load(Ordering::SeqCst) == 0 && FAILED.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: a live thread of this process (it loops until STOP).
    assert_eq!(unsafe { libc::pthread_cancel(th) }, 0);
    std::thread::sleep(Duration::from_millis(200));
    STOP.store(1, Ordering::SeqCst);
    let mut ret: *mut c_void = core::ptr::null_mut();
    // SAFETY: joins the thread created above, once.
    assert_eq!(unsafe { libc::pthread_join(th, &mut ret) }, 0);
    assert_eq!(
        FAILED.load(Ordering::SeqCst),
        0,
        "a publish failed: {}",
        last_error()
    );
    // PTHREAD_CANCELED is `(void *) -1`.
    assert_ne!(
        ret as usize,
        usize::MAX,
        "the cancel acted inside a publish"
    );
    assert!(
        PUBLISHED.load(Ordering::SeqCst) >= 2,
        "the thread published"
    );
    assert_eq!(shmbus_publisher_remove(p), SHMBUS_OK);
    shmbus_schema_close(s);
}

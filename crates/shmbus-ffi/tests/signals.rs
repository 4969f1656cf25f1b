//! A libshmbus call from a signal handler: the C daemon's classic "close
//! the subscriber (or remove the topic) on SIGTERM". Its own binary: it
//! installs a process-wide signal handler.

use core::ffi::c_int;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use shmbus::json::*;
use shmbus::publisher::*;
use shmbus::schema::shmbus_schema_close;
use shmbus::subscriber::*;
use shmbus::*;
use shmbus_testkit::{Guard, thread_id, unique_key, wait_thread_asleep, watchdog};

mod common;
use common::{last_error, topic};

/// The subscriber the handler closes, and what its close returned
/// (`i32::MIN`: the handler has not run yet).
static SUB: AtomicU64 = AtomicU64::new(0);
static HANDLER_RC: AtomicI32 = AtomicI32::new(i32::MIN);

extern "C" fn on_signal(_: c_int) {
    let rc = shmbus_subscriber_close(shmbus_subscriber {
        id: SUB.load(Ordering::SeqCst),
    });
    HANDLER_RC.store(rc, Ordering::SeqCst);
}

fn install(handler: libc::sighandler_t) {
    // SAFETY: a zeroed sigaction with a handler that only makes a
    // libshmbus call and stores an atomic.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = handler;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &sa, core::ptr::null_mut()),
            0
        );
    }
}

/// Before: the handler's close blocked for ever on the subscriber's slot,
/// which the wait it interrupted holds (a wait holds it 100 ms at a time,
/// nearly all the time), so the process never got past its SIGTERM
/// handler. Now the call from the handler is refused with
/// `SHMBUS_ERR_REENTRANT`, the interrupted wait goes on and returns its
/// frame, and a handler that runs outside any libshmbus call still works.
#[test]
fn a_call_from_a_signal_handler_that_interrupted_a_wait_is_refused_not_deadlocked() {
    watchdog(
        "a libshmbus call from a signal handler during a wait",
        Duration::from_secs(120),
    );
    let g = Guard(unique_key("ffi-signal"));
    let mut s = shmbus_schema { id: 0 };
    // SAFETY: a NUL-terminated declaration and a writable handle.
    let rc = unsafe { shmbus_schema_parse(c"struct V { v: u32 }".as_ptr(), &mut s) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    let t = topic(c"test/signal", g.key());
    let mut p = shmbus_publisher { id: 0 };
    // SAFETY: a valid topic and a writable handle.
    let rc = unsafe { shmbus_publisher_open(&t, s, &mut p) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    let mut sub = shmbus_subscriber { id: 0 };
    // SAFETY: a valid topic and a writable handle.
    let rc = unsafe { shmbus_subscriber_open(&t, s, 1000, &mut sub) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    SUB.store(sub.id, Ordering::SeqCst);
    install(on_signal as *const () as libc::sighandler_t);

    // SAFETY: the calling thread's own id.
    let me = unsafe { libc::pthread_self() };
    let tid = thread_id();
    let pub_id = p.id;
    let helper = std::thread::spawn(move || {
        wait_thread_asleep(tid).unwrap();
        // SAFETY: signals a thread of this process that is alive (it
        // waits for the frame this thread publishes below).
        assert_eq!(unsafe { libc::pthread_kill(me, libc::SIGUSR1) }, 0);
        // The handler has returned (bounded by the watchdog).
        while HANDLER_RC.load(Ordering::SeqCst) == i32::MIN {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut generation = 0u64;
        // SAFETY: a NUL-terminated JSON text and a writable u64.
        let rc = unsafe {
            shmbus_publish_json(
                shmbus_publisher { id: pub_id },
                c"{\"v\":7}".as_ptr(),
                &mut generation,
            )
        };
        assert_eq!(rc, SHMBUS_OK);
    });
    let mut smp = shmbus_sample::default();
    // SAFETY: a writable sample; no frame (metadata only).
    let rc = unsafe {
        shmbus_subscriber_wait_next(
            sub,
            shmbus::frame::shmbus_frame { id: 0 },
            600_000,
            &mut smp,
        )
    };
    helper.join().unwrap();
    assert_eq!(
        HANDLER_RC.load(Ordering::SeqCst),
        SHMBUS_ERR_REENTRANT,
        "the handler's close during the wait"
    );
    assert_eq!(rc, SHMBUS_OK, "the interrupted wait: {}", last_error());
    assert_eq!(smp.generation, 1);

    // Outside any call, the same handler closes the subscriber.
    HANDLER_RC.store(i32::MIN, Ordering::SeqCst);
    // SAFETY: raises the signal on this thread; the handler runs before
    // raise returns.
    assert_eq!(unsafe { libc::raise(libc::SIGUSR1) }, 0);
    assert_eq!(HANDLER_RC.load(Ordering::SeqCst), SHMBUS_OK);
    assert_eq!(shmbus_subscriber_close(sub), SHMBUS_ERR_CLOSED);
    install(libc::SIG_DFL);
    assert_eq!(shmbus_publisher_remove(p), SHMBUS_OK);
    shmbus_schema_close(s);
}

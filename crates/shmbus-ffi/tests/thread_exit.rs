//! A call that fails while its thread is ending: from a thread-local
//! destructor, which runs as the thread exits, as an `atexit` handler runs
//! as the process exits (after the main thread's thread-locals are gone).
//! It returns its code and `shmbus_last_error()` its message; before, the
//! message lived in a thread-local with a destructor, and a failing call
//! at that point aborted the process ("cannot access a Thread Local
//! Storage value during or after destruction").

use core::ffi::CStr;
use std::sync::Mutex;

use shmbus::json::shmbus_schema_parse;
use shmbus::schema::shmbus_schema;
use shmbus::*;
use shmbus_testkit::watchdog;

/// What the late call saw: its code and the message.
static SEEN: Mutex<Option<(i32, String)>> = Mutex::new(None);

/// Makes a failing call when dropped, at the thread's exit.
struct Late;

impl Drop for Late {
    fn drop(&mut self) {
        let mut s = shmbus_schema { id: 0 };
        // SAFETY: a NUL-terminated declaration and a writable out-parameter.
        let rc = unsafe { shmbus_schema_parse(c"struct {".as_ptr(), &mut s) };
        // SAFETY: the message of this thread's last failure, NUL-terminated
        // and alive until its next failing call.
        let msg = unsafe { CStr::from_ptr(shmbus_last_error()) }
            .to_string_lossy()
            .into_owned();
        *SEEN.lock().unwrap_or_else(|e| e.into_inner()) = Some((rc, msg));
    }
}

thread_local! {
    static LATE: Late = const { Late };
}

#[test]
fn a_call_failing_in_a_thread_local_destructor_returns_its_code_and_message() {
    watchdog("thread-exit test", std::time::Duration::from_secs(60));
    std::thread::spawn(|| {
        // `LATE` is registered first, so it is destroyed last: after any
        // thread-local the library registered during the failing call
        // below (destructors run in the reverse order).
        LATE.with(|_| ());
        let mut s = shmbus_schema { id: 0 };
        // SAFETY: as in `Late::drop`.
        let rc = unsafe { shmbus_schema_parse(c"not a schema".as_ptr(), &mut s) };
        assert!(rc < 0);
    })
    .join()
    .expect("the thread ended normally");
    let seen = SEEN.lock().unwrap().take();
    let (rc, msg) = seen.expect("the destructor ran");
    assert_eq!(rc, SHMBUS_ERR_SCHEMA, "{msg}");
    assert!(
        msg.contains("expected a struct name"),
        "the message is kept too: {msg}"
    );
}

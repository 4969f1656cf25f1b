//! Status codes, the per-thread error message, and the guard that keeps
//! every panic on the Rust side of the boundary.
//!
//! Every exported function returns an `int32_t`: `SHMBUS_OK` (0) or another
//! non-negative outcome on success, a negative `SHMBUS_ERR_*` code on
//! failure. `shmbus_strerror(code)` names a code; `shmbus_last_error()` is
//! the full message of the most recent failure on the calling thread (the
//! same text the Rust API's error prints, with the key, sizes and the fix).

use core::ffi::c_char;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Success.
pub const SHMBUS_OK: i32 = 0;
/// Not an error: there is no frame (nothing published yet, or nothing new).
pub const SHMBUS_NO_FRAME: i32 = 1;
/// Not an error: the in-order reader fell behind the ring; `missed` in the
/// sample says how many frames were lost. Call again for the oldest frame
/// still in the ring.
pub const SHMBUS_MISSED: i32 = 2;

/// A pointer argument was NULL.
pub const SHMBUS_ERR_NULL: i32 = -1;
/// The handle was never issued, is zero, or is a handle of another kind.
pub const SHMBUS_ERR_BAD_HANDLE: i32 = -2;
/// The handle was closed (this is also what a second close returns).
pub const SHMBUS_ERR_CLOSED: i32 = -3;
/// An argument is invalid (topic name, option value, not UTF-8).
pub const SHMBUS_ERR_INVALID: i32 = -4;
/// The output buffer is too small; the length out-parameter holds the size
/// needed. Nothing was consumed: call again with a larger buffer.
pub const SHMBUS_ERR_BUFFER_TOO_SMALL: i32 = -5;
/// The field is of another type than the accessor (e.g. `set_str` on a
/// `u32`), or the frame belongs to another schema than the topic.
pub const SHMBUS_ERR_WRONG_TYPE: i32 = -6;
/// The schema has no field at this path (also: an index past the end of a
/// list's capacity; the message says which).
pub const SHMBUS_ERR_NO_FIELD: i32 = -7;
/// The value does not fit the field (integer range, string or list
/// capacity, float overflow) or an index is past the end.
pub const SHMBUS_ERR_RANGE: i32 = -8;
/// No topic at the key (its publisher has not created it yet).
pub const SHMBUS_ERR_NOT_FOUND: i32 = -9;
/// The topic carries frames of another type (schema fingerprints differ).
pub const SHMBUS_ERR_SCHEMA_MISMATCH: i32 = -10;
/// The topic already has a live publisher.
pub const SHMBUS_ERR_PUBLISHER_ACTIVE: i32 = -11;
/// Permission denied by the segment's or the lock's mode. Also what a
/// blocking wait returns when this process may no longer read the topic's
/// publisher lock (its mode or group changed since the subscriber
/// attached), or another user's lock sits at the key.
pub const SHMBUS_ERR_PERMISSION: i32 = -12;
/// The topic could not be opened for another reason (garbage or foreign
/// segment, other layout version, other shape, spoofing checks); see
/// `shmbus_last_error()`.
pub const SHMBUS_ERR_OPEN: i32 = -13;
/// A wait timed out without a frame.
pub const SHMBUS_ERR_TIMEOUT: i32 = -14;
/// The topic's publisher is not running.
pub const SHMBUS_ERR_PUBLISHER_GONE: i32 = -15;
/// The topic was removed; open it again once its publisher recreates it.
pub const SHMBUS_ERR_REMOVED: i32 = -16;
/// A frame could not be read (publisher stuck or died mid-write, the slot
/// rewritten during every read, or the frame does not decode as the
/// topic's schema). An in-order read then moved past a frame that is lost
/// (one left mid-write, one that does not decode): the next call returns
/// the frame after it.
pub const SHMBUS_ERR_READ: i32 = -17;
/// The frame is larger than the topic's frame capacity.
pub const SHMBUS_ERR_TOO_LARGE: i32 = -18;
/// A schema could not be parsed or decoded, or has no maximum size.
pub const SHMBUS_ERR_SCHEMA: i32 = -19;
/// A JSON text could not be turned into a frame.
pub const SHMBUS_ERR_JSON: i32 = -20;
/// The schema has a shape the typed field accessors do not cover (enum,
/// option, map, list without capacity): use the JSON or bytes functions.
pub const SHMBUS_ERR_UNSUPPORTED: i32 = -21;
/// Too many open handles in this process.
pub const SHMBUS_ERR_TOO_MANY_HANDLES: i32 = -22;
/// A system limit (kernel.shmmax, shmmni, shmall, memory) was reached.
pub const SHMBUS_ERR_SYSTEM_LIMIT: i32 = -23;
/// Another system call failed; see `shmbus_last_error()`.
pub const SHMBUS_ERR_SYS: i32 = -24;
/// An internal error (a bug in libshmbus) was caught at the boundary. The
/// handle involved may be unusable; close it.
pub const SHMBUS_ERR_INTERNAL: i32 = -25;
/// The config named to open a topic by name cannot be read, has errors
/// (`path:line:col: message`), or declares no topic of that name (the
/// message lists those it has and suggests the closest).
pub const SHMBUS_ERR_CONFIG: i32 = -26;
/// Called from a signal handler that interrupted another libshmbus call on
/// the same thread: the call would wait for ever for the handle the
/// interrupted call holds, so it is refused (nothing done, no message set).
/// Set a flag in the handler and act on it outside.
pub const SHMBUS_ERR_REENTRANT: i32 = -27;

/// Short name and meaning of a status code (static string).
pub(crate) fn describe(code: i32) -> &'static core::ffi::CStr {
    match code {
        SHMBUS_OK => c"ok",
        SHMBUS_NO_FRAME => c"no frame (nothing published yet, or nothing new)",
        SHMBUS_MISSED => c"frames were missed (the reader fell behind the ring)",
        SHMBUS_ERR_NULL => c"a pointer argument is NULL",
        SHMBUS_ERR_BAD_HANDLE => c"not a valid handle of this kind",
        SHMBUS_ERR_CLOSED => c"the handle is closed",
        SHMBUS_ERR_INVALID => c"invalid argument",
        SHMBUS_ERR_BUFFER_TOO_SMALL => c"buffer too small",
        SHMBUS_ERR_WRONG_TYPE => c"wrong type",
        SHMBUS_ERR_NO_FIELD => c"no such field",
        SHMBUS_ERR_RANGE => c"value out of range",
        SHMBUS_ERR_NOT_FOUND => c"topic not found",
        SHMBUS_ERR_SCHEMA_MISMATCH => c"the topic carries frames of another type",
        SHMBUS_ERR_PUBLISHER_ACTIVE => c"the topic already has a live publisher",
        SHMBUS_ERR_PERMISSION => c"permission denied",
        SHMBUS_ERR_OPEN => c"cannot open the topic",
        SHMBUS_ERR_TIMEOUT => c"timed out",
        SHMBUS_ERR_PUBLISHER_GONE => c"the publisher is not running",
        SHMBUS_ERR_REMOVED => c"the topic was removed",
        SHMBUS_ERR_READ => c"cannot read the frame",
        SHMBUS_ERR_TOO_LARGE => c"frame larger than the topic's capacity",
        SHMBUS_ERR_SCHEMA => c"bad schema",
        SHMBUS_ERR_JSON => c"bad JSON for this schema",
        SHMBUS_ERR_UNSUPPORTED => c"not supported for this schema",
        SHMBUS_ERR_TOO_MANY_HANDLES => c"too many open handles",
        SHMBUS_ERR_SYSTEM_LIMIT => c"system limit reached",
        SHMBUS_ERR_SYS => c"system call failed",
        SHMBUS_ERR_INTERNAL => c"internal error in libshmbus",
        SHMBUS_ERR_CONFIG => c"bad config, or no such topic in it",
        SHMBUS_ERR_REENTRANT => c"called from a signal handler during another libshmbus call on this thread; set a flag in the handler instead",
        _ => c"unknown status code",
    }
}

/// A failure on its way out of an exported function: a code and the full
/// message for `shmbus_last_error()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The `SHMBUS_ERR_*` code.
    pub code: i32,
    /// The message.
    pub message: String,
}

impl Error {
    /// An error with this code and message.
    pub fn new(code: i32, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }
}

/// The result type of the functions behind the exports.
pub type Result<T> = core::result::Result<T, Error>;

/// Room for the last error message, with its NUL. Longer messages are cut
/// at a character boundary and end in `...`.
pub(crate) const LAST_ERROR_CAP: usize = 1024;

thread_local! {
    /// The last error message of this thread, NUL-terminated. A byte array,
    /// const-initialised: a thread-local without a destructor, so it can be
    /// read and written at any time, also from an `atexit` handler or a
    /// `pthread_key` destructor that runs after the thread's destructible
    /// thread-locals are gone (a `CString` here made a failing call at that
    /// point abort the process).
    static LAST_ERROR: RefCell<[u8; LAST_ERROR_CAP]> = const { RefCell::new([0; LAST_ERROR_CAP]) };
    /// Whether this thread is inside an exported function now. Set at the
    /// entry of [`guard`]: a second entry on the same thread can only be a
    /// signal handler that interrupted the first (no export calls another
    /// through `guard`), and it would block for ever on the handle slot the
    /// interrupted call holds (a wait holds its subscriber's slot nearly all
    /// the time). Const-initialised and without a destructor: reading it
    /// in a signal handler is a plain thread-local load.
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
}

fn set_last_error(message: &str) {
    // A message with an interior NUL is cut there rather than lost.
    let message = message.split('\0').next().unwrap_or_default();
    LAST_ERROR.with(|l| {
        let mut buf = l.borrow_mut();
        let n = fit(message, LAST_ERROR_CAP - 1);
        buf[..n].copy_from_slice(&message.as_bytes()[..n]);
        if n < message.len() {
            // Cut: the last three bytes say so (n >= 3: the cap is far
            // above a character's 4 bytes).
            buf[n - 3..n].copy_from_slice(b"...");
        }
        buf[n] = 0;
    });
}

/// How many bytes of `s` fit in `cap`, cut at a character boundary, with
/// room for a closing `...` if cut.
fn fit(s: &str, cap: usize) -> usize {
    if s.len() <= cap {
        return s.len();
    }
    let mut n = cap;
    while !s.is_char_boundary(n - 3) {
        n -= 1;
    }
    n
}

unsafe extern "C" {
    // POSIX; not in the libc crate. glibc and musl both number the states
    // ENABLE 0, DISABLE 1.
    fn pthread_setcancelstate(
        state: core::ffi::c_int,
        old: *mut core::ffi::c_int,
    ) -> core::ffi::c_int;
}
const PTHREAD_CANCEL_DISABLE: core::ffi::c_int = 1;

/// Inside an exported function: [`IN_CALL`] set, and thread cancellation
/// disabled. A `pthread_cancel` that acted inside (a wait sleeps in
/// `nanosleep`, a cancellation point) would unwind glibc's forced-unwind
/// exception through Rust frames, which abort the process on it; disabled,
/// it acts at the thread's next cancellation point after the call
/// returns. Dropping restores the caller's state and clears the flag, also
/// when the body panicked.
struct InCall {
    /// The caller's cancel state, if this call disabled cancellation.
    cancel: Option<core::ffi::c_int>,
}

impl InCall {
    fn enter(may_block: bool) -> InCall {
        if !may_block {
            return InCall { cancel: None };
        }
        let mut cancel = 0;
        // SAFETY: sets the calling thread's own cancel state; `cancel` is
        // a writable int.
        unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut cancel) };
        InCall {
            cancel: Some(cancel),
        }
    }
}

impl Drop for InCall {
    fn drop(&mut self) {
        if let Some(cancel) = self.cancel {
            let mut ignored = 0;
            // SAFETY: restores the state `enter` saved, on the same thread.
            unsafe { pthread_setcancelstate(cancel, &mut ignored) };
        }
        IN_CALL.with(|c| c.set(false));
    }
}

/// The calling thread's last error message; valid until the next failing
/// call on this thread, and while the thread lives.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|l| l.as_ptr().cast::<c_char>().cast_const())
}

/// Run the body of an exported function: its `Ok` value is the status, an
/// `Err` sets the thread's message and returns the code, and a panic is
/// caught here and becomes [`SHMBUS_ERR_INTERNAL`].
///
/// With `panic = "unwind"` (the `release` profile the install step uses) no
/// panic can cross into C. A build with `panic = "abort"` (the `board`
/// profile of the executables) cannot catch: a panic would end the process
/// with Rust's message instead of returning this code. The library is
/// therefore never built with `panic = "abort"` by this project's scripts.
///
/// A call from a signal handler that interrupted another call on this
/// thread returns [`SHMBUS_ERR_REENTRANT`] at once, touching nothing (not
/// even the last error, which the interrupted call may be writing).
pub(crate) fn guard(body: impl FnOnce() -> Result<i32>) -> i32 {
    run(body, true)
}

/// [`guard`] for a call that reaches no cancellation point and cannot
/// sleep: a frame's field set or get (memory only), and a publish (memory,
/// clock reads through the vDSO, a `FUTEX_WAKE` made with `syscall()`,
/// which glibc does not make a cancellation point, and the handle table's
/// `std::sync::Mutex`, which waits with a raw futex call too). The same
/// re-entrancy check and panic catching, without the two calls that
/// disable and restore thread cancellation (about 3 ns of the 55 a publish
/// costs, 10 of the 100 of a field access). Test:
/// `a_thread_cancelled_while_publishing_is_never_cancelled_inside_a_publish`.
pub(crate) fn guard_local(body: impl FnOnce() -> Result<i32>) -> i32 {
    run(body, false)
}

fn run(body: impl FnOnce() -> Result<i32>, may_block: bool) -> i32 {
    if IN_CALL.with(|c| c.replace(true)) {
        return SHMBUS_ERR_REENTRANT;
    }
    let _in_call = InCall::enter(may_block);
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.code
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!(
                "internal error in libshmbus ({what}); the handle may be unusable: close it, and please report this"
            ));
            SHMBUS_ERR_INTERNAL
        }
    }
}

/// Shorthand for an `Err` with a code and message.
pub(crate) fn fail<T>(code: i32, message: impl Into<String>) -> Result<T> {
    Err(Error::new(code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> String {
        // SAFETY: the pointer comes from this thread's CString, alive until
        // the next set_last_error on this thread.
        unsafe { std::ffi::CStr::from_ptr(last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    /// A message longer than the buffer is cut at a character boundary and
    /// ends in `...`; a shorter one after it is whole, with no rest of the
    /// longer one.
    #[test]
    fn a_long_message_is_cut_at_a_character_and_marked() {
        for pad in 0..4 {
            let long = format!("{}{}", "x".repeat(LAST_ERROR_CAP - 6 + pad), "é".repeat(8));
            set_last_error(&long);
            let got = last();
            assert!(got.len() < LAST_ERROR_CAP, "{}", got.len());
            assert!(got.ends_with("..."), "{got}");
            let kept = &got[..got.len() - 3];
            assert!(long.starts_with(kept) && kept.len() >= LAST_ERROR_CAP - 7);
        }
        let exact = "y".repeat(LAST_ERROR_CAP - 1);
        set_last_error(&exact);
        assert_eq!(last(), exact);
        set_last_error("short\0 after a NUL");
        assert_eq!(last(), "short");
    }

    #[test]
    fn a_panic_becomes_a_code_and_a_message() {
        let code = guard(|| panic!("boom {}", 42));
        assert_eq!(code, SHMBUS_ERR_INTERNAL);
        assert!(last().contains("boom 42"), "{}", last());
        let code = guard(|| -> Result<i32> { panic!("static boom") });
        assert_eq!(code, SHMBUS_ERR_INTERNAL);
        assert!(last().contains("static boom"));
    }

    #[test]
    fn errors_set_the_message_and_successes_keep_it() {
        assert_eq!(
            guard(|| fail(SHMBUS_ERR_RANGE, "too big")),
            SHMBUS_ERR_RANGE
        );
        assert_eq!(last(), "too big");
        assert_eq!(guard(|| Ok(SHMBUS_OK)), SHMBUS_OK);
        assert_eq!(last(), "too big");
        assert_eq!(guard(|| fail(SHMBUS_ERR_NULL, "a\0b")), SHMBUS_ERR_NULL);
        assert_eq!(last(), "a");
    }

    #[test]
    fn every_code_has_a_description() {
        for code in -27..=2 {
            assert_ne!(describe(code).to_bytes(), b"unknown status code", "{code}");
        }
        assert_eq!(describe(-99).to_bytes(), b"unknown status code");
    }
}

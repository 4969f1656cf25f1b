//! Helpers shared by the C API's Rust tests.

use core::ffi::CStr;

use shmbus::{shmbus_last_error, shmbus_topic};

/// The calling thread's last error message.
pub fn last_error() -> String {
    // SAFETY: shmbus_last_error returns a NUL-terminated string that stays
    // valid until the next call on this thread.
    unsafe { CStr::from_ptr(shmbus_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// A topic description for `name` at `key` on the default bus: 8 slots,
/// mode 0600, no lock, no flags.
pub fn topic(name: &CStr, key: i32) -> shmbus_topic {
    shmbus_topic {
        name: name.as_ptr(),
        bus: core::ptr::null(),
        key: key as u32,
        slots: 8,
        mode: 0o600,
        lock: 0,
        flags: 0,
        publisher_uid: 0,
        group: 0,
    }
}

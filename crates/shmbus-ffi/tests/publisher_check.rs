//! `shmbus_publisher_check`: a C publisher learns that its topic was
//! removed under it. Before it, a C (or Python) publisher whose segment was
//! removed (`shmbus rm --force`, `ipcrm`, logind's RemoveIPC at logout)
//! published into a segment no reader could reach, and one whose lock was
//! removed (`ipcrm -s`) published while readers said "not running" and a
//! second publisher could start, with no call that told it so.

use shmbus::json::shmbus_schema_parse;
use shmbus::publisher::*;
use shmbus::schema::{shmbus_schema, shmbus_schema_close};
use shmbus::*;
use shmbus_testkit::{Guard, unique_key, watchdog};
use std::time::Duration;

mod common;
use common::{last_error, topic};

fn open(key: i32) -> shmbus_publisher {
    let mut s = shmbus_schema { id: 0 };
    // SAFETY: a NUL-terminated declaration and a writable out-parameter.
    let rc = unsafe { shmbus_schema_parse(c"u32".as_ptr(), &mut s) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    let t = topic(c"ffi/check", key);
    let mut p = shmbus_publisher { id: 0 };
    // SAFETY: a valid topic description and out-parameter.
    let rc = unsafe { shmbus_publisher_open(&t, s, &mut p) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    assert_eq!(shmbus_schema_close(s), SHMBUS_OK);
    p
}

#[test]
fn a_publisher_learns_that_its_segment_or_its_lock_was_removed() {
    watchdog("ffi-check", Duration::from_secs(120));
    let key = unique_key("ffi-check");
    let _g = Guard(key);
    let k = format!("0x{:08x}", key as u32);

    // Nothing removed: OK.
    let p = open(key);
    assert_eq!(shmbus_publisher_check(p), SHMBUS_OK, "{}", last_error());

    // Its lock removed (`ipcrm -s`).
    shmbus_core::lock::remove_lock(key).unwrap();
    assert_eq!(shmbus_publisher_check(p), SHMBUS_ERR_REMOVED);
    let e = last_error();
    assert!(
        e.contains("publisher lock") && e.contains(&k) && e.contains("open the topic again"),
        "{e}"
    );
    // The fix it gives: close, open again (a new lock), and all is well.
    assert_eq!(shmbus_publisher_close(p), SHMBUS_OK);
    let p = open(key);
    assert_eq!(shmbus_publisher_check(p), SHMBUS_OK, "{}", last_error());

    // Its segment removed (`shmbus rm --force`, `ipcrm -m`, RemoveIPC).
    let id = shmbus_core::sys::shmget(key, 0, 0).unwrap();
    shmbus_core::sys::shm_remove(id).unwrap();
    assert_eq!(shmbus_publisher_check(p), SHMBUS_ERR_REMOVED);
    let e = last_error();
    assert!(
        e.contains("was removed under this publisher") && e.contains(&k),
        "{e}"
    );
    assert_eq!(shmbus_publisher_close(p), SHMBUS_OK);
    let p = open(key);
    assert_ne!(
        shmbus_core::sys::shmget(key, 0, 0).unwrap(),
        id,
        "a new segment"
    );
    assert_eq!(shmbus_publisher_check(p), SHMBUS_OK, "{}", last_error());

    // A closed or made-up handle is an error, not an answer.
    assert_eq!(shmbus_publisher_close(p), SHMBUS_OK);
    assert_eq!(shmbus_publisher_check(p), SHMBUS_ERR_CLOSED);
    assert_eq!(
        shmbus_publisher_check(shmbus_publisher { id: 0 }),
        SHMBUS_ERR_BAD_HANDLE
    );
}

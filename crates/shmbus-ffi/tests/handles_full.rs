//! A publisher open that fails because the handle table is full leaves no
//! topic behind. Its own test binary: it fills the process-wide table, which
//! would fail any test running beside it.

use shmbus::handles::SHMBUS_MAX_HANDLES;
use shmbus::json::shmbus_schema_parse;
use shmbus::publisher::shmbus_publisher_open;
use shmbus::schema::shmbus_schema_close;
use shmbus::*;
use shmbus_core::sys;
use shmbus_testkit::{Guard, unique_key};

mod common;
use common::{last_error, topic};

#[test]
fn a_failed_open_leaves_no_segment_and_no_lock() {
    let key = unique_key("ffi-handles-full");
    let _g = Guard(key);
    let mut schemas = Vec::new();
    loop {
        let mut s = shmbus_schema { id: 0 };
        // SAFETY: a NUL-terminated declaration and a writable out-parameter.
        let rc = unsafe { shmbus_schema_parse(c"struct M { seq: u32 }".as_ptr(), &mut s) };
        if rc == SHMBUS_ERR_TOO_MANY_HANDLES {
            break;
        }
        assert_eq!(rc, SHMBUS_OK, "{}", last_error());
        schemas.push(s);
        assert!(schemas.len() <= SHMBUS_MAX_HANDLES, "the table never fills");
    }
    let t = topic(c"test/ffi-handles-full", key);
    let mut p = shmbus_publisher { id: 0 };
    // SAFETY: a valid topic description and out-parameter.
    let rc = unsafe { shmbus_publisher_open(&t, schemas[0], &mut p) };
    assert_eq!(rc, SHMBUS_ERR_TOO_MANY_HANDLES, "{}", last_error());
    assert_eq!(
        sys::shmget(key, 0, 0).map_err(|e| e.errno),
        Err(sys::Errno::ENOENT),
        "the segment the failed open created is removed"
    );
    assert_eq!(
        sys::sem_lookup(key).map_err(|e| e.errno),
        Err(sys::Errno::ENOENT),
        "and its publisher lock"
    );
    for s in schemas {
        shmbus_schema_close(s);
    }
}

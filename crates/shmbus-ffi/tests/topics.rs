//! Topic descriptions from C: a bus name is checked as the config and
//! `--bus` check it, so no call derives a key from a bus no tool can name.

use core::ffi::CStr;

use shmbus::schema::shmbus_schema;
use shmbus::status::*;
use shmbus::subscriber::{shmbus_subscriber, shmbus_subscriber_open};
use shmbus::topic::{shmbus_key, shmbus_topic};

mod common;
use common::{last_error, topic};

#[test]
fn a_bus_no_tool_could_name_is_refused() {
    let long = format!("\u{1b}[2J{}\0", "b".repeat(10_000));
    // `a/b`: keys hash BUS/NAME, so bus `a/b` with topic `imu` would have
    // the key of bus `a` with topic `b/imu`.
    let bad: [&[u8]; 5] = [
        b"\0",
        b"lab bench\0",
        b"a/../b\x07\0",
        long.as_bytes(),
        b"a/b\0",
    ];
    let name = c"imu";
    for bus in bad {
        let bus = CStr::from_bytes_with_nul(bus).unwrap();
        let mut key = 0u32;
        // SAFETY: NUL-terminated strings and a writable u32.
        let rc = unsafe { shmbus_key(bus.as_ptr(), name.as_ptr(), &mut key) };
        assert_eq!(rc, SHMBUS_ERR_INVALID, "shmbus_key accepted bus {bus:?}");
        let msg = last_error();
        assert!(msg.starts_with("invalid bus: bus name"), "{msg}");
        assert!(
            msg.len() < 200 && !msg.chars().any(char::is_control),
            "{msg:?}"
        );

        let t = shmbus_topic {
            bus: bus.as_ptr(),
            ..topic(name, 0)
        };
        let mut sub = shmbus_subscriber { id: 0 };
        // SAFETY: a valid topic description and out-pointer; no wait.
        let rc = unsafe { shmbus_subscriber_open(&t, shmbus_schema { id: 0 }, 0, &mut sub) };
        assert_eq!(
            rc, SHMBUS_ERR_INVALID,
            "subscriber_open accepted bus {bus:?}"
        );
    }
    // NULL is the default bus, and a valid bus derives the key the Rust API does.
    let mut key = 0u32;
    // SAFETY: NULL bus (allowed), a NUL-terminated name, a writable u32.
    let rc = unsafe { shmbus_key(core::ptr::null(), name.as_ptr(), &mut key) };
    assert_eq!(rc, SHMBUS_OK);
    assert_eq!(key as i32, shmbus_core::topic::derive_key("shmbus", "imu"));
    // SAFETY: NUL-terminated strings and a writable u32.
    let rc = unsafe { shmbus_key(c"lab".as_ptr(), name.as_ptr(), &mut key) };
    assert_eq!(rc, SHMBUS_OK);
    assert_eq!(key as i32, shmbus_core::topic::derive_key("lab", "imu"));
}

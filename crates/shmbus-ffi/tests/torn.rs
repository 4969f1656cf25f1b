//! A slot its publisher left mid-write (SIGKILLed, or stopped, while it
//! overwrote the oldest frame of the ring): the frame at an in-order reader's
//! cursor is lost whatever the publisher does next. Every in-order read from
//! C (typed, bytes, JSON; polling or blocking) reports it once as
//! `SHMBUS_ERR_READ`, saying that frame is lost, and the next read returns
//! the frame after it.
//!
//! Was: the cursor stayed on the lost frame, so every read returned
//! `SHMBUS_ERR_READ` again, for ever while no new publisher started (C has no
//! `skip`): the frames still in the ring after it were never read, a C loop
//! that retried spun at full CPU, and Python's `wait()` raised `ReadError`
//! on every call.

use core::ffi::c_char;
use std::time::Duration;

use shmbus::frame::*;
use shmbus::json::*;
use shmbus::publisher::*;
use shmbus::schema::shmbus_schema_close;
use shmbus::subscriber::*;
use shmbus::*;
use shmbus_testkit::{Guard, unique_key, watchdog};

mod common;
use common::{last_error, topic};

const SLOTS: u64 = 8;

fn schema(decl: &core::ffi::CStr) -> shmbus_schema {
    let mut s = shmbus_schema { id: 0 };
    // SAFETY: a NUL-terminated declaration and a writable out-parameter.
    let rc = unsafe { shmbus_schema_parse(decl.as_ptr(), &mut s) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    s
}

/// The four ways C reads in order, each returning (status, generation).
#[derive(Clone, Copy, Debug)]
enum How {
    Next,
    WaitNext,
    BytesNext,
    JsonWaitNext,
}

fn read(sub: shmbus_subscriber, f: shmbus_frame, how: How) -> (i32, u64) {
    let mut smp = shmbus_sample::default();
    let mut buf = [0u8; 256];
    let mut len = 0usize;
    // SAFETY: a writable sample, a buffer of 256 bytes, a writable length.
    let rc = unsafe {
        match how {
            How::Next => shmbus_subscriber_next(sub, f, &mut smp),
            How::WaitNext => shmbus_subscriber_wait_next(sub, f, 10_000, &mut smp),
            How::BytesNext => shmbus_subscriber_read_bytes(
                sub,
                SHMBUS_READ_NEXT,
                0,
                buf.as_mut_ptr(),
                256,
                &mut smp,
            ),
            How::JsonWaitNext => shmbus_subscriber_read_json(
                sub,
                SHMBUS_READ_WAIT_NEXT,
                10_000,
                buf.as_mut_ptr().cast::<c_char>(),
                256,
                &mut len,
                &mut smp,
            ),
        }
    };
    (rc, smp.generation)
}

/// Publish frames 1..=SLOTS, tear frame 1's slot, and read in order from
/// the oldest frame with each kind of read.
fn check(name: &core::ffi::CStr, key: i32, publisher_alive: bool) {
    let s = schema(c"struct M { seq: u32 }");
    let t = topic(name, key);
    let mut p = shmbus_publisher { id: 0 };
    // SAFETY: a valid topic description and out-parameter.
    let rc = unsafe { shmbus_publisher_open(&t, s, &mut p) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    for seq in 1..=SLOTS {
        let j = std::ffi::CString::new(format!(r#"{{"seq": {seq}}}"#)).unwrap();
        // SAFETY: a NUL-terminated text; no generation wanted.
        let rc = unsafe { shmbus_publish_json(p, j.as_ptr(), core::ptr::null_mut()) };
        assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    }
    if !publisher_alive {
        assert_eq!(shmbus_publisher_close(p), SHMBUS_OK);
    }
    shmbus_testkit::leave_mid_write(key, 1);
    for how in [How::Next, How::WaitNext, How::BytesNext, How::JsonWaitNext] {
        let mut sub = shmbus_subscriber { id: 0 };
        // SAFETY: a valid topic description and out-parameter.
        let rc = unsafe { shmbus_subscriber_open(&t, s, 0, &mut sub) };
        assert_eq!(rc, SHMBUS_OK, "{}", last_error());
        let mut f = shmbus_frame { id: 0 };
        // SAFETY: a writable out-parameter.
        assert_eq!(unsafe { shmbus_frame_new(s, &mut f) }, SHMBUS_OK);
        assert_eq!(shmbus_subscriber_seek_oldest(sub), SHMBUS_OK);
        let (rc, _) = read(sub, f, how);
        assert_eq!(rc, SHMBUS_ERR_READ, "{how:?}: {}", last_error());
        let msg = last_error();
        assert!(
            msg.contains("frame 1 of 'test/ffi-torn")
                && msg.contains("the next read returns the frame after it"),
            "{how:?}: the message says which frame is lost and what comes next: {msg}"
        );
        // The frames after it, all of them, in order.
        for g in 2..=SLOTS {
            assert_eq!(
                read(sub, f, how),
                (SHMBUS_OK, g),
                "{how:?} ({})",
                last_error()
            );
        }
        assert_eq!(shmbus_frame_close(f), SHMBUS_OK);
        assert_eq!(shmbus_subscriber_close(sub), SHMBUS_OK);
    }
    if publisher_alive {
        assert_eq!(shmbus_publisher_remove(p), SHMBUS_OK);
    }
    shmbus_schema_close(s);
}

#[test]
fn a_frame_a_dead_publisher_left_mid_write_is_lost_once_and_reads_go_on() {
    watchdog("torn slot, dead publisher", Duration::from_secs(120));
    let key = unique_key("ffi-torn-dead");
    let _g = Guard(key);
    check(c"test/ffi-torn-dead", key, false);
}

#[test]
fn a_frame_a_stopped_publisher_left_mid_write_is_lost_once_and_reads_go_on() {
    watchdog("torn slot, stuck publisher", Duration::from_secs(120));
    let key = unique_key("ffi-torn-stuck");
    let _g = Guard(key);
    check(c"test/ffi-torn-stuck", key, true);
}

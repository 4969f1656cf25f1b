//! Reads and opens from C that fail lose nothing and leave nothing: a frame
//! of the wrong schema, a frame that does not decode, a buffer too small for
//! a wait's frame, a wait while another thread publishes with the frame, a
//! schema the typed functions do not cover, a schema that would flatten to
//! millions of elements, a JSON publish on a closed handle.

use core::ffi::{CStr, c_char};
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

fn cstring(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).unwrap()
}

fn schema(decl: &str) -> shmbus_schema {
    let mut s = shmbus_schema { id: 0 };
    let d = cstring(decl);
    // SAFETY: a NUL-terminated declaration and a writable out-parameter.
    let rc = unsafe { shmbus_schema_parse(d.as_ptr(), &mut s) };
    assert_eq!(rc, SHMBUS_OK, "{decl}: {}", last_error());
    s
}

fn open_pub(t: &shmbus_topic, s: shmbus_schema) -> shmbus_publisher {
    let mut p = shmbus_publisher { id: 0 };
    // SAFETY: a valid topic description and out-parameter.
    let rc = unsafe { shmbus_publisher_open(t, s, &mut p) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    p
}

fn open_sub(t: &shmbus_topic) -> shmbus_subscriber {
    let mut s = shmbus_subscriber { id: 0 };
    // SAFETY: a valid topic description and out-parameter.
    let rc = unsafe { shmbus_subscriber_open(t, shmbus_schema { id: 0 }, 0, &mut s) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    s
}

fn new_frame(s: shmbus_schema) -> shmbus_frame {
    let mut f = shmbus_frame { id: 0 };
    // SAFETY: a writable out-parameter.
    let rc = unsafe { shmbus_frame_new(s, &mut f) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    f
}

fn publish_json(p: shmbus_publisher, json: &str) -> i32 {
    let j = cstring(json);
    let mut g = 0u64;
    // SAFETY: a NUL-terminated text and a writable generation.
    unsafe { shmbus_publish_json(p, j.as_ptr(), &mut g) }
}

fn get_u64(f: shmbus_frame, path: &CStr) -> u64 {
    let mut v = 0u64;
    // SAFETY: a NUL-terminated path and a writable out-parameter.
    let rc = unsafe { shmbus_frame_get_u64(f, path.as_ptr(), &mut v) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    v
}

fn get_str(f: shmbus_frame, path: &CStr) -> String {
    let mut buf = [0 as c_char; 64];
    let mut len = 0usize;
    // SAFETY: a NUL-terminated path, a buffer of 64 bytes, a writable length.
    let rc = unsafe { shmbus_frame_get_str(f, path.as_ptr(), buf.as_mut_ptr(), 64, &mut len) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    // SAFETY: on success the text ends with a NUL inside the buffer.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn read_json(sub: shmbus_subscriber, how: i32, timeout_ms: u32, cap: usize) -> (i32, String, u64) {
    let mut buf = vec![0 as c_char; cap.max(1)];
    let mut len = 0usize;
    let mut smp = shmbus_sample::default();
    // SAFETY: a buffer of `cap` bytes, a writable length and sample.
    let rc = unsafe {
        shmbus_subscriber_read_json(
            sub,
            how,
            timeout_ms,
            buf.as_mut_ptr(),
            cap,
            &mut len,
            &mut smp,
        )
    };
    let text = if rc == SHMBUS_OK {
        // SAFETY: on success the text ends with a NUL inside the buffer.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    } else {
        String::new()
    };
    (rc, text, smp.generation)
}

#[test]
fn a_frame_of_the_wrong_schema_is_refused_before_the_read() {
    let key = unique_key("ffi-wrong-frame");
    let _g = Guard(key);
    let s = schema("struct M { seq: u32 }");
    let other = schema("struct Other { x: u8, y: u8 }");
    let t = topic(c"test/ffi-wrong-frame", key);
    let p = open_pub(&t, s);
    let sub = open_sub(&t);
    assert_eq!(publish_json(p, r#"{"seq": 41}"#), SHMBUS_OK);
    let wrong = new_frame(other);
    let right = new_frame(s);
    let mut smp = shmbus_sample::default();
    for read in [shmbus_subscriber_next, shmbus_subscriber_latest] {
        // SAFETY: a writable sample.
        let rc = unsafe { read(sub, wrong, &mut smp) };
        assert_eq!(rc, SHMBUS_ERR_WRONG_TYPE, "{}", last_error());
        assert!(last_error().contains("make the frame from shmbus_subscriber_schema()"));
    }
    // The in-order frame was not consumed by the refused read.
    // SAFETY: a writable sample.
    let rc = unsafe { shmbus_subscriber_next(sub, right, &mut smp) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    assert_eq!(smp.generation, 1);
    assert_eq!(get_u64(right, c"seq"), 41);
    shmbus_frame_close(wrong);
    shmbus_frame_close(right);
    shmbus_subscriber_close(sub);
    shmbus_publisher_remove(p);
    shmbus_schema_close(s);
    shmbus_schema_close(other);
}

#[test]
fn a_frame_that_does_not_decode_leaves_the_values_as_they_were() {
    let key = unique_key("ffi-undecodable");
    let _g = Guard(key);
    let s = schema("struct M { seq: u32, name: heapless::String<8> }");
    let t = topic(c"test/ffi-undecodable", key);
    let p = open_pub(&t, s);
    let sub = open_sub(&t);
    let f = new_frame(s);
    assert_eq!(publish_json(p, r#"{"seq": 7, "name": "good"}"#), SHMBUS_OK);
    let mut smp = shmbus_sample::default();
    // SAFETY: a writable sample.
    let rc = unsafe { shmbus_subscriber_latest(sub, f, &mut smp) };
    assert_eq!(rc, SHMBUS_OK);
    assert_eq!(
        (get_u64(f, c"seq"), get_str(f, c"name")),
        (7, "good".into())
    );
    // seq 42, then a string of 9 bytes: over the capacity of 8.
    let mut bad = vec![42u8, 9];
    bad.extend_from_slice(b"xxxxxxxxx");
    let mut g = 0u64;
    // SAFETY: `bad.len()` readable bytes and a writable generation.
    let rc = unsafe { shmbus_publish_bytes(p, bad.as_ptr(), bad.len(), &mut g) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    // SAFETY: a writable sample.
    let rc = unsafe { shmbus_subscriber_latest(sub, f, &mut smp) };
    assert_eq!(rc, SHMBUS_ERR_READ, "{}", last_error());
    assert!(last_error().contains("does not decode"), "{}", last_error());
    assert_eq!(
        (get_u64(f, c"seq"), get_str(f, c"name")),
        (7, "good".into()),
        "a refused frame changes nothing (was: seq 42 with the old name)"
    );
    shmbus_frame_close(f);
    shmbus_subscriber_close(sub);
    shmbus_publisher_remove(p);
    shmbus_schema_close(s);
}

#[test]
fn a_wait_for_the_latest_frame_retried_with_a_larger_buffer_returns_it() {
    watchdog("wait_latest retry", Duration::from_secs(120));
    let key = unique_key("ffi-wait-latest-big");
    let _g = Guard(key);
    let s = schema("struct Big { s: heapless::String<6000> }");
    let t = topic(c"test/ffi-wait-latest-big", key);
    let p = open_pub(&t, s);
    let sub = open_sub(&t);
    let value = format!(r#"{{"s": "{}"}}"#, "x".repeat(5000));
    assert_eq!(publish_json(p, &value), SHMBUS_OK);
    let (rc, _, generation) = read_json(sub, SHMBUS_READ_WAIT_LATEST, 30_000, 4096);
    assert_eq!(rc, SHMBUS_ERR_BUFFER_TOO_SMALL, "{}", last_error());
    assert_eq!(generation, 1, "the sample says which frame did not fit");
    // The retry does not wait for another publish (there is none: it would
    // time out after 30 s and fail here).
    let (rc, text, generation) = read_json(sub, SHMBUS_READ_WAIT_LATEST, 30_000, 8192);
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    assert_eq!((generation, text.len()), (1, 5008), "{}", &text[..40]);
    // Delivered: the next wait waits for a new frame.
    let (rc, _, _) = read_json(sub, SHMBUS_READ_WAIT_LATEST, 0, 8192);
    assert_eq!(rc, SHMBUS_ERR_TIMEOUT, "{}", last_error());
    shmbus_subscriber_close(sub);
    shmbus_publisher_remove(p);
    shmbus_schema_close(s);
}

#[test]
fn a_wait_does_not_hold_the_frame_it_delivers_into() {
    watchdog("wait and publish with one frame", Duration::from_secs(120));
    let key = unique_key("ffi-wait-frame");
    let _g = Guard(key);
    let s = schema("struct M { seq: u32 }");
    let t = topic(c"test/ffi-wait-frame", key);
    let p = open_pub(&t, s);
    let sub = open_sub(&t);
    let f = new_frame(s);
    // Another thread publishes with the same frame while this one waits
    // into it. Before, the wait held the frame: the publish blocked until
    // the wait timed out (30 s), and the wait saw nothing.
    // The publish comes once this thread sleeps in its wait (after a fixed
    // 200 ms, a loaded machine could publish first, and the test then
    // passed without testing a wait).
    let me = shmbus_testkit::thread_id();
    let publisher = std::thread::spawn(move || {
        shmbus_testkit::wait_thread_asleep(me).unwrap();
        // SAFETY: a NUL-terminated path.
        let rc = unsafe { shmbus_frame_set_u64(f, c"seq".as_ptr(), 99) };
        assert_eq!(rc, SHMBUS_OK);
        let mut g = 0u64;
        // SAFETY: a writable generation.
        unsafe { shmbus_publish(p, f, &mut g) }
    });
    let mut smp = shmbus_sample::default();
    // SAFETY: a writable sample.
    let rc = unsafe { shmbus_subscriber_wait_next(sub, f, 30_000, &mut smp) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    assert_eq!(publisher.join().unwrap(), SHMBUS_OK);
    assert_eq!((smp.generation, get_u64(f, c"seq")), (1, 99));
    shmbus_frame_close(f);
    shmbus_subscriber_close(sub);
    shmbus_publisher_remove(p);
    shmbus_schema_close(s);
}

#[test]
fn schemas_without_typed_access_are_published_and_read_as_json() {
    for (i, (decl, value)) in [
        ("struct A { v: Option<u8> }", r#"{"v":7}"#),
        ("enum Mode { Idle, Run(u8) }", r#"{"Run":3}"#),
        ("struct C { c: char }", r#"{"c":"é"}"#),
        (
            "struct W { v: u128 }",
            r#"{"v":"340282366920938463463374607431768211455"}"#,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let key = unique_key("ffi-json-only");
        let _g = Guard(key);
        let s = schema(decl);
        let mut f = shmbus_frame { id: 0 };
        // SAFETY: a writable out-parameter.
        let rc = unsafe { shmbus_frame_new(s, &mut f) };
        assert_eq!(
            rc, SHMBUS_ERR_UNSUPPORTED,
            "{decl}: typed frames stay unsupported"
        );
        let name = cstring(&format!("test/ffi-json-only-{i}"));
        let t = topic(&name, key);
        let p = open_pub(&t, s);
        let sub = open_sub(&t);
        assert_eq!(
            publish_json(p, value),
            SHMBUS_OK,
            "{decl}: {}",
            last_error()
        );
        let (rc, text, generation) = read_json(sub, SHMBUS_READ_LATEST, 0, 4096);
        assert_eq!(rc, SHMBUS_OK, "{decl}: {}", last_error());
        assert_eq!(generation, 1);
        let got: serde_json::Value = serde_json::from_str(&text).unwrap();
        let want: serde_json::Value = serde_json::from_str(value).unwrap();
        assert_eq!(got, want, "{decl}");
        shmbus_subscriber_close(sub);
        shmbus_publisher_remove(p);
        shmbus_schema_close(s);
    }
}

#[test]
fn a_schema_of_millions_of_elements_stops_flattening_with_a_code() {
    // 65535 x 65535 empty elements: flattened element by element this was
    // 4 billion nodes, an abort when memory ran out (at every subscriber
    // open of such a topic). Now the layout stops at its node limit; the
    // schema stays usable through JSON and bytes.
    let s = schema("struct A { v: heapless::Vec<heapless::Vec<(), 65535>, 65535> }");
    let mut f = shmbus_frame { id: 0 };
    // SAFETY: a writable out-parameter.
    let rc = unsafe { shmbus_frame_new(s, &mut f) };
    assert_eq!(rc, SHMBUS_ERR_UNSUPPORTED);
    assert!(
        last_error().contains("more than 262144 fields and list elements"),
        "{}",
        last_error()
    );
    shmbus_schema_close(s);
}

#[test]
fn a_closed_publisher_is_closed_whatever_the_json() {
    let key = unique_key("ffi-closed-json");
    let _g = Guard(key);
    let s = schema("struct M { seq: u32 }");
    let t = topic(c"test/ffi-closed-json", key);
    let p = open_pub(&t, s);
    assert_eq!(shmbus_publisher_remove(p), SHMBUS_OK);
    assert_eq!(
        publish_json(p, "{nope"),
        SHMBUS_ERR_CLOSED,
        "{}",
        last_error()
    );
    assert_eq!(
        publish_json(shmbus_publisher { id: 0 }, "{nope"),
        SHMBUS_ERR_BAD_HANDLE
    );
    shmbus_schema_close(s);
}

/// A close from another thread ends a long wait on the same subscriber, on
/// each of the three wait paths (sample only, into a typed frame, as JSON):
/// the close returns and the wait returns `SHMBUS_ERR_CLOSED`. Before, the
/// wait held the subscriber for its whole timeout, so the close blocked
/// until then (ten minutes here; 49 days with `UINT32_MAX`).
#[test]
fn a_close_from_another_thread_ends_a_long_wait() {
    watchdog("close during a wait", Duration::from_secs(300));
    let key = unique_key("ffi-close-wait");
    let _g = Guard(key);
    let s = schema("struct M { seq: u32 }");
    let t = topic(c"test/ffi-close-wait", key);
    let p = open_pub(&t, s);
    let f = new_frame(s);
    const TEN_MINUTES: u32 = 600_000;
    for path in ["sample", "frame", "json"] {
        let sub = open_sub(&t);
        let (tx, rx) = std::sync::mpsc::channel();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            tid_tx.send(shmbus_testkit::thread_id()).unwrap();
            let rc = match path {
                // SAFETY: no frame, no sample.
                "sample" => unsafe {
                    shmbus_subscriber_wait_next(
                        sub,
                        shmbus_frame { id: 0 },
                        TEN_MINUTES,
                        core::ptr::null_mut(),
                    )
                },
                // SAFETY: no sample.
                "frame" => unsafe {
                    shmbus_subscriber_wait_latest(sub, f, TEN_MINUTES, core::ptr::null_mut())
                },
                _ => read_json(sub, SHMBUS_READ_WAIT_NEXT, TEN_MINUTES, 64).0,
            };
            let _ = tx.send(rc);
        });
        // Closed once the wait sleeps (had it not started, the close came
        // first and the wait was refused as closed: the test passed either
        // way after the fix, and before it failed only when the wait had
        // started, which a fixed 300 ms did not promise).
        let tid = tid_rx.recv_timeout(Duration::from_secs(60)).unwrap();
        shmbus_testkit::wait_thread_asleep(tid).unwrap();
        let (ctx, crx) = std::sync::mpsc::channel();
        let closer = std::thread::spawn(move || {
            let _ = ctx.send(shmbus_subscriber_close(sub));
        });
        let closed = crx.recv_timeout(Duration::from_secs(60));
        assert_eq!(
            closed,
            Ok(SHMBUS_OK),
            "{path}: the close blocked behind the wait"
        );
        let waited = rx.recv_timeout(Duration::from_secs(60));
        assert_eq!(
            waited,
            Ok(SHMBUS_ERR_CLOSED),
            "{path}: the wait did not end as closed"
        );
        closer.join().unwrap();
        waiter.join().unwrap();
    }
    shmbus_frame_close(f);
    shmbus_publisher_remove(p);
    shmbus_schema_close(s);
}

//! Topics opened by their name in a config file: the key, slots and mode
//! come from the config as the tools read it, and every way a config can be
//! wrong is a `SHMBUS_ERR_CONFIG` with the tools' own message.

use core::ffi::{CStr, c_char};
use std::ffi::CString;

use shmbus::publisher::{
    shmbus_publisher, shmbus_publisher_close, shmbus_publisher_info, shmbus_publisher_open,
    shmbus_publisher_open_config, shmbus_publisher_remove,
};
use shmbus::schema::{shmbus_schema, shmbus_schema_close};
use shmbus::status::*;
use shmbus::subscriber::{
    shmbus_subscriber, shmbus_subscriber_close, shmbus_subscriber_info,
    shmbus_subscriber_open_config,
};
use shmbus::topic::shmbus_topic_info;
use shmbus_testkit::{Guard, TempDir, unique_key};

mod common;
use common::{last_error, topic};

const IMU: &CStr =
    c"struct Imu { seq: u32, t_us: u64, acc: [f32; 3], frame_id: heapless::String<16> }";

fn parse(decl: &CStr) -> shmbus_schema {
    let mut s = shmbus_schema { id: 0 };
    // SAFETY: a NUL-terminated declaration and a writable handle.
    let rc = unsafe { shmbus::json::shmbus_schema_parse(decl.as_ptr(), &mut s) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    s
}

fn info_of_pub(p: shmbus_publisher) -> shmbus_topic_info {
    let mut i = shmbus_topic_info {
        name: [0; 64],
        key: 0,
        shmid: 0,
        slots: 0,
        frame_capacity: 0,
        fingerprint: 0,
        created: 0,
        locked: 0,
    };
    // SAFETY: a writable info.
    assert_eq!(unsafe { shmbus_publisher_info(p, &mut i) }, SHMBUS_OK);
    i
}

fn open_pub(
    config: *const c_char,
    bus: *const c_char,
    name: &CStr,
    s: shmbus_schema,
) -> (i32, shmbus_publisher) {
    let mut p = shmbus_publisher { id: 0 };
    // SAFETY: NULL or NUL-terminated strings and a writable handle.
    let rc = unsafe { shmbus_publisher_open_config(config, bus, name.as_ptr(), s, &mut p) };
    (rc, p)
}

fn open_sub(config: *const c_char, name: &CStr, s: shmbus_schema) -> (i32, shmbus_subscriber) {
    let mut h = shmbus_subscriber { id: 0 };
    // SAFETY: NULL or NUL-terminated strings and a writable handle.
    let rc = unsafe {
        shmbus_subscriber_open_config(config, core::ptr::null(), name.as_ptr(), s, 0, &mut h)
    };
    (rc, h)
}

/// A config with topic `imu` at `key` (8 slots, mode 0600) and `gnss` at
/// `key2`, on bus `cfgtest`.
fn write_config(dir: &TempDir, key: i32, key2: i32) -> CString {
    let path = dir.join("board.toml");
    std::fs::write(
        &path,
        format!(
            "bus = \"cfgtest\"\n\n[[topic]]\nname = \"imu\"\nkey = {:#x}\nslots = 8\nmode = \"0600\"\nlock = \"off\"\n\n[[topic]]\nname = \"gnss\"\nkey = {:#x}\nlock = \"off\"\n",
            key as u32, key2 as u32
        ),
    )
    .unwrap();
    CString::new(path.to_str().unwrap()).unwrap()
}

#[test]
fn a_topic_opened_by_its_config_name_has_the_configs_key_slots_and_mode() {
    let dir = TempDir::new("ffi-config");
    let (g, g2) = (Guard(unique_key("cfg-imu")), Guard(unique_key("cfg-gnss")));
    let path = write_config(&dir, g.key(), g2.key());
    let s = parse(IMU);

    let (rc, p) = open_pub(path.as_ptr(), core::ptr::null(), c"imu", s);
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    let i = info_of_pub(p);
    assert_eq!(i.key as i32, g.key());
    assert_eq!(i.slots, 8);
    assert_eq!(i.locked, -1, "lock = \"off\" is the config's");
    let id = shmbus_core::sys::shmget(g.key(), 0, 0).unwrap();
    let mode = shmbus_core::sys::shm_stat(id).unwrap().mode & 0o777;
    assert_eq!(mode, 0o600);

    // A subscriber by the same name finds it, and a second publisher by
    // that name is the live publisher's rival.
    let (rc, sub) = open_sub(path.as_ptr(), c"imu", s);
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    let mut si = info_of_pub(p);
    // SAFETY: a writable info.
    assert_eq!(unsafe { shmbus_subscriber_info(sub, &mut si) }, SHMBUS_OK);
    assert_eq!(si.key as i32, g.key());
    let (rc, _) = open_pub(path.as_ptr(), core::ptr::null(), c"imu", s);
    assert_eq!(rc, SHMBUS_ERR_PUBLISHER_ACTIVE, "{}", last_error());

    // The schema the caller expects is checked against the running publisher's.
    let other = parse(c"struct Other { v: u32 }");
    let (rc, _) = open_sub(path.as_ptr(), c"imu", other);
    assert_eq!(rc, SHMBUS_ERR_SCHEMA_MISMATCH, "{}", last_error());
    assert_eq!(shmbus_subscriber_close(sub), SHMBUS_OK);
    assert_eq!(shmbus_publisher_close(p), SHMBUS_OK);
    // A publisher of another type on the topic the config names.
    let (rc, _) = open_pub(path.as_ptr(), core::ptr::null(), c"imu", other);
    assert_eq!(rc, SHMBUS_ERR_SCHEMA_MISMATCH, "{}", last_error());
    assert!(
        last_error().contains("carries frames of another type"),
        "{}",
        last_error()
    );
    // The fix for a publisher whose type changed: remove the old topic.
    assert!(
        last_error().contains(&format!("`shmbus rm {:#010x}`", g.key() as u32)),
        "{}",
        last_error()
    );
    let (rc, p) = open_pub(path.as_ptr(), core::ptr::null(), c"imu", s);
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    assert_eq!(shmbus_publisher_remove(p), SHMBUS_OK);
    shmbus_schema_close(other);
    shmbus_schema_close(s);
}

#[test]
fn every_way_a_config_is_wrong_is_a_config_error_with_the_tools_message() {
    let dir = TempDir::new("ffi-config-bad");
    let (g, g2) = (Guard(unique_key("cfg-bad")), Guard(unique_key("cfg-bad2")));
    let path = write_config(&dir, g.key(), g2.key());
    let s = parse(IMU);

    // Missing file.
    let missing = CString::new(dir.join("nope.toml").to_str().unwrap()).unwrap();
    let (rc, p) = open_pub(missing.as_ptr(), core::ptr::null(), c"imu", s);
    assert_eq!(rc, SHMBUS_ERR_CONFIG, "{}", last_error());
    assert_eq!(p.id, 0);
    let msg = last_error();
    assert!(msg.contains("nope.toml: cannot read the config"), "{msg}");
    let (rc, _) = open_sub(missing.as_ptr(), c"imu", s);
    assert_eq!(rc, SHMBUS_ERR_CONFIG, "{}", last_error());

    // A config that does not parse: path:line:col, as the tools print it.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[topic]]\nname = \"imu\"\nslots = 3\n").unwrap();
    let bad = CString::new(bad.to_str().unwrap()).unwrap();
    let (rc, _) = open_sub(bad.as_ptr(), c"imu", s);
    assert_eq!(rc, SHMBUS_ERR_CONFIG);
    let msg = last_error();
    assert!(
        msg.ends_with(
            "bad.toml:3:9: slots = 3 must be a power of two from 1 to 65536: use slots = 4"
        ),
        "{msg}"
    );

    // A topic the config does not declare: the topics it has, and the closest.
    let (rc, _) = open_sub(path.as_ptr(), c"imu0", s);
    assert_eq!(rc, SHMBUS_ERR_CONFIG);
    let msg = last_error();
    assert!(
        msg.ends_with(
            "board.toml: no topic `imu0`; the topics are: imu, gnss; did you mean `imu`?"
        ),
        "{msg}"
    );
    let (rc, _) = open_pub(path.as_ptr(), core::ptr::null(), c"lidar", s);
    assert_eq!(rc, SHMBUS_ERR_CONFIG);
    let msg = last_error();
    assert!(!msg.contains("did you mean"), "{msg}");
    // A name from outside is escaped in the message.
    let (rc, _) = open_sub(path.as_ptr(), c"\x1b[2Jimu", s);
    assert_eq!(rc, SHMBUS_ERR_CONFIG);
    assert!(!last_error().contains('\u{1b}'), "{:?}", last_error());

    // An empty path, NULL name, NULL out, a bus no tool could name.
    let (rc, _) = open_pub(c"".as_ptr(), core::ptr::null(), c"imu", s);
    assert_eq!(rc, SHMBUS_ERR_CONFIG);
    assert!(
        last_error().contains("the config path is empty"),
        "{}",
        last_error()
    );
    let mut h = shmbus_publisher { id: 0 };
    // SAFETY: a NULL name is refused before anything is read.
    let rc = unsafe {
        shmbus_publisher_open_config(
            path.as_ptr(),
            core::ptr::null(),
            core::ptr::null(),
            s,
            &mut h,
        )
    };
    assert_eq!(rc, SHMBUS_ERR_NULL);
    // SAFETY: a NULL out is refused before anything is read.
    let rc = unsafe {
        shmbus_publisher_open_config(
            path.as_ptr(),
            core::ptr::null(),
            c"imu".as_ptr(),
            s,
            core::ptr::null_mut(),
        )
    };
    assert_eq!(rc, SHMBUS_ERR_NULL);
    let (rc, _) = open_pub(path.as_ptr(), c"lab bench".as_ptr(), c"imu", s);
    assert_eq!(rc, SHMBUS_ERR_CONFIG);
    assert!(last_error().contains("bus"), "{}", last_error());

    // Nothing was created by any of these.
    assert!(shmbus_core::sys::shmget(g.key(), 0, 0).is_err());
    shmbus_schema_close(s);
}

#[test]
fn a_config_topic_opened_by_name_is_the_one_a_hand_written_topic_reaches() {
    let dir = TempDir::new("ffi-config-same");
    let (g, g2) = (
        Guard(unique_key("cfg-same")),
        Guard(unique_key("cfg-same2")),
    );
    let path = write_config(&dir, g.key(), g2.key());
    let s = parse(IMU);
    // A publisher by hand (the key, slots and mode written out) ...
    let mut p = shmbus_publisher { id: 0 };
    let t = topic(c"gnss", g2.key());
    // SAFETY: a valid topic and a writable handle.
    assert_eq!(unsafe { shmbus_publisher_open(&t, s, &mut p) }, SHMBUS_OK);
    // ... and a subscriber by the config's name reach the same segment.
    let (rc, sub) = open_sub(path.as_ptr(), c"gnss", s);
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    assert_eq!(shmbus_subscriber_close(sub), SHMBUS_OK);
    assert_eq!(shmbus_publisher_remove(p), SHMBUS_OK);
    shmbus_schema_close(s);
}

//! A `fork()` after a publisher is open: the child has a copy of the
//! handle but not the topic's lock (`SEM_UNDO` is not inherited). Its own
//! binary: the test forks, and the fewer threads the process has then, the
//! fewer locks the child inherits held.

use std::time::{Duration, Instant};

use shmbus::frame::*;
use shmbus::json::*;
use shmbus::publisher::*;
use shmbus::schema::shmbus_schema_close;
use shmbus::subscriber::*;
use shmbus::*;
use shmbus_testkit::{Guard, unique_key, watchdog};

mod common;
use common::{last_error, topic};

/// Wait (bounded) for child `pid` and return its exit status; a child that
/// has not ended after a minute is killed and reported as -1.
fn reap(pid: libc::pid_t) -> i32 {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is writable.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -2
            };
        }
        assert!(r == 0, "waitpid: {}", std::io::Error::last_os_error());
        if start.elapsed() > Duration::from_secs(60) {
            // SAFETY: our own child, still running.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = reap_blocking(pid);
            return -1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reap_blocking(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is writable.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    status
}

/// A publisher handle copied into a `fork()` child neither publishes nor
/// gives up the topic: before, the child's publish wrote generation 2
/// (and the parent's next publish wrote another generation 2: two writers
/// on one seqlock), and the child's close released the parent's lock, so a
/// second publisher opened the topic while the parent still published.
/// Now the child's publishes and remove are `SHMBUS_ERR_PUBLISHER_ACTIVE`
/// naming the opener, and its close leaves the lock alone.
#[test]
fn a_publisher_copied_by_fork_neither_publishes_nor_unlocks_in_the_child() {
    watchdog("fork publisher test", Duration::from_secs(120));
    let key = unique_key("ffi-fork-pub");
    let _g = Guard(key);
    let mut s = shmbus_schema { id: 0 };
    // SAFETY: a NUL-terminated declaration and a writable out-parameter.
    let rc = unsafe { shmbus_schema_parse(c"struct F { v: u32 }".as_ptr(), &mut s) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    let t = topic(c"test/ffi-fork-pub", key);
    let mut p = shmbus_publisher { id: 0 };
    // SAFETY: a valid topic description and out-parameter.
    let rc = unsafe { shmbus_publisher_open(&t, s, &mut p) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    let mut f = shmbus_frame { id: 0 };
    // SAFETY: a writable out-parameter.
    assert_eq!(unsafe { shmbus_frame_new(s, &mut f) }, SHMBUS_OK);
    let mut g = 0u64;
    // SAFETY: a NUL-terminated text and a writable generation.
    let rc = unsafe { shmbus_publish_json(p, c"{\"v\": 1}".as_ptr(), &mut g) };
    assert_eq!((rc, g), (SHMBUS_OK, 1), "{}", last_error());

    // SAFETY: the child calls only libshmbus (which allocates: glibc's
    // malloc is usable in a fork child) and _exit; it never returns into
    // the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let refused = |rc: i32| rc == SHMBUS_ERR_PUBLISHER_ACTIVE && last_error().contains("fork");
        let mut g = 0u64;
        let code = 'child: {
            // SAFETY: as above.
            if !refused(unsafe { shmbus_publish_json(p, c"{\"v\": 2}".as_ptr(), &mut g) }) {
                break 'child 10;
            }
            // SAFETY: four readable bytes.
            if !refused(unsafe { shmbus_publish_bytes(p, [2u8, 0, 0, 0].as_ptr(), 1, &mut g) }) {
                break 'child 11;
            }
            // SAFETY: a writable generation.
            if !refused(unsafe { shmbus_publish(p, f, &mut g) }) {
                break 'child 12;
            }
            if !refused(shmbus_publisher_remove(p)) {
                break 'child 13;
            }
            if shmbus_publisher_close(p) != SHMBUS_OK {
                break 'child 14;
            }
            // The parent still holds the lock: a second publisher is refused.
            let mut p2 = shmbus_publisher { id: 0 };
            // SAFETY: a valid topic description and out-parameter.
            if unsafe { shmbus_publisher_open(&t, s, &mut p2) } != SHMBUS_ERR_PUBLISHER_ACTIVE {
                break 'child 15;
            }
            0
        };
        // SAFETY: ends the child without running the parent's destructors
        // (its Guard would remove the topic).
        unsafe { libc::_exit(code) };
    }
    let code = reap(pid);
    assert_eq!(
        code, 0,
        "the child's check that failed (10 publish_json, 11 publish_bytes, 12 publish, 13 remove, 14 close, 15 second open; -1 hung)"
    );

    // The parent publishes on, generation 2 (the child's went nowhere), and
    // still holds the lock.
    // SAFETY: a NUL-terminated text and a writable generation.
    let rc = unsafe { shmbus_publish_json(p, c"{\"v\": 3}".as_ptr(), &mut g) };
    assert_eq!((rc, g), (SHMBUS_OK, 2), "{}", last_error());
    let mut sub = shmbus_subscriber { id: 0 };
    // SAFETY: a valid topic description and out-parameter.
    let rc = unsafe { shmbus_subscriber_open(&t, shmbus_schema { id: 0 }, 0, &mut sub) };
    assert_eq!(rc, SHMBUS_OK, "{}", last_error());
    let mut st = shmbus_status::default();
    // SAFETY: a writable status.
    assert_eq!(unsafe { shmbus_subscriber_status(sub, &mut st) }, SHMBUS_OK);
    assert_eq!(st.publisher, SHMBUS_PUBLISHER_ALIVE);
    assert_eq!(st.publisher_pid as u32, std::process::id());
    assert_eq!(st.generation, 2);
    let mut p2 = shmbus_publisher { id: 0 };
    // SAFETY: a valid topic description and out-parameter.
    let rc = unsafe { shmbus_publisher_open(&t, s, &mut p2) };
    assert_eq!(rc, SHMBUS_ERR_PUBLISHER_ACTIVE, "{}", last_error());
    assert_eq!(shmbus_subscriber_close(sub), SHMBUS_OK);
    assert_eq!(shmbus_frame_close(f), SHMBUS_OK);
    assert_eq!(shmbus_publisher_remove(p), SHMBUS_OK);
    assert_eq!(shmbus_schema_close(s), SHMBUS_OK);
}

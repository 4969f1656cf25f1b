//! Bus names on the command line and `shmbus doctor` on the config (the
//! eleventh pass): each test failed before its fix. No test here creates
//! a System V object.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use shmbus_testkit::{TempDir, watchdog};

mod common;
use common::{Run, run_cmd};

/// `shmbus` with the config a test gives, never the caller's.
fn shmbus(args: &[&str]) -> Command {
    let mut cmd = common::shmbus(args);
    cmd.env_remove("SHMBUS_CONFIG");
    cmd
}

fn run(args: &[&str]) -> Run {
    run_cmd(shmbus(args))
}

/// `--bus a/b` looked for topic `c` at the key of topic `b/c` on bus `a`
/// (keys hash `BUS/NAME`) and said "no topic named 'c' on bus 'a/b'" (exit
/// 1), as if the bus could be right; `--bus ""` took a bus no config can
/// have. A bus name is checked as a config's is: a usage error (exit 2)
/// that says why, with the name escaped.
#[test]
fn a_bus_a_config_cannot_have_is_a_usage_error() {
    watchdog(
        "a_bus_a_config_cannot_have_is_a_usage_error",
        Duration::from_secs(120),
    );
    for cmd in ["info", "echo", "hz", "rm", "pub", "foxglove", "bridge"] {
        let r = run(&[cmd, "c", "--bus", "a/b"]);
        assert_eq!(r.code, 2, "{cmd}: {}", r.stderr);
        assert!(
            r.stderr.contains("bus name 'a/b' contains '/'")
                && r.stderr
                    .contains("would have the key of bus 'a' with topic 'b/c'"),
            "{cmd}: {}",
            r.stderr
        );
    }
    let r = run(&["info", "c", "--bus", ""]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("bus name '' must be 1 to 63 bytes long"),
        "{}",
        r.stderr
    );
    let r = run(&["info", "c", "--bus", "x\u{1b}[2J"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!r.stderr.contains('\u{1b}'), "raw escape: {:?}", r.stderr);
    assert!(r.stderr.contains("contains '\\u{1b}'"), "{}", r.stderr);
    // A bus a config can have is looked up as before: nothing is there.
    let r = run(&["info", "c", "--bus", "no-such-bus.a_b"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("no topic named 'c' on bus 'no-such-bus.a_b'"),
        "{}",
        r.stderr
    );
}

/// A `max_age_ms` of at most one period of `rate_hz` (stale between every
/// two frames) passed `shmbus doctor --config` without a word. It is a
/// WARN now, at its `path:line:col`, with the numbers; the config is still
/// OK (loading it never fails for this).
#[test]
fn doctor_warns_of_a_max_age_within_one_period() {
    watchdog(
        "doctor_warns_of_a_max_age_within_one_period",
        Duration::from_secs(120),
    );
    let dir = TempDir::new("names-doctor");
    let path = dir.join("board.toml");
    std::fs::write(
        &path,
        "bus = \"cfg3-doctor\"\n[[topic]]\nname = \"imu\"\nrate_hz = 100\nmax_age_ms = 5\nlock = \"off\"\n\
         [[topic]]\nname = \"gnss\"\nrate_hz = 10\nmax_age_ms = 300\nlock = \"off\"\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let r = run(&["doctor", "--config", p]);
    let warns: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("WARN  config"))
        .collect();
    assert_eq!(warns.len(), 1, "{}", r.stdout);
    assert!(
        warns[0].contains(&format!(
            "{p}:5:14: topic `imu`: max_age_ms = 5 is not more than one period of its rate_hz = 100 (10 ms)"
        )) && warns[0].contains("use max_age_ms = 30 "),
        "{}",
        warns[0]
    );
    assert!(
        r.stdout
            .contains("OK    config       2 topics on bus 'cfg3-doctor'"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("FAIL  config"), "{}", r.stdout);
}

/// Counts the opens of one file with inotify: `IN_OPEN` and
/// `IN_CLOSE_NOWRITE` are both watched, so that two opens in a row are
/// two events (the kernel merges identical events that follow each other).
struct Opens(std::fs::File);

impl Opens {
    fn watch(path: &Path) -> Opens {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: inotify_init1 takes flags only and returns a new fd or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` is a new descriptor nothing else owns; the File closes it.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        let wd = unsafe {
            libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN | libc::IN_CLOSE_NOWRITE)
        };
        assert!(
            wd >= 0,
            "inotify_add_watch: {}",
            std::io::Error::last_os_error()
        );
        Opens(file)
    }

    /// The opens since [`Opens::watch`] (of a process that has exited: its
    /// events are all queued).
    fn count(&mut self) -> usize {
        let mut n = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let len = match self.0.read(&mut buf) {
                Ok(len) => len,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return n,
                Err(e) => panic!("read inotify: {e}"),
            };
            // struct inotify_event: wd, mask, cookie, len (u32 each), name.
            let mut i = 0;
            while i + 16 <= len {
                let word = |at: usize| u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap());
                if word(i + 4) & libc::IN_OPEN != 0 {
                    n += 1;
                }
                i += 16 + word(i + 12) as usize;
            }
        }
    }
}

/// `shmbus doctor --sysctl --config F` read F twice: once to check it,
/// once more for the limits, so a file saved between the two reads was
/// judged by one text and sized by another; plain `doctor` with
/// `$SHMBUS_CONFIG` read it twice as well. It is read once now.
#[test]
fn doctor_sysctl_reads_the_config_once() {
    watchdog(
        "doctor_sysctl_reads_the_config_once",
        Duration::from_secs(120),
    );
    let dir = TempDir::new("names-sysctl");
    let path = dir.join("board.toml");
    std::fs::write(
        &path,
        "bus = \"cfg3-sysctl\"\n[[topic]]\nname = \"imu\"\nlock = \"off\"\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    // With $SHMBUS_CONFIG, plain `doctor` read it twice too: once to
    // check it, once more for the keys a squat may sit at (`list`'s).
    for (args, env, what) in [
        (
            vec!["doctor", "--sysctl", "--config", p],
            false,
            "doctor --sysctl",
        ),
        (vec!["doctor", "--config", p], false, "doctor"),
        (vec!["doctor"], true, "doctor with $SHMBUS_CONFIG"),
        (
            vec!["doctor", "--sysctl"],
            true,
            "doctor --sysctl with $SHMBUS_CONFIG",
        ),
        (vec!["list"], true, "list with $SHMBUS_CONFIG"),
        // `top` read it on every refresh.
        (
            vec!["top", "--count", "3", "--interval", "0.05"],
            true,
            "top with $SHMBUS_CONFIG",
        ),
    ] {
        let mut opens = Opens::watch(&path);
        let mut cmd = shmbus(&args);
        if env {
            cmd.env("SHMBUS_CONFIG", p);
        }
        let r = run_cmd(cmd);
        assert!(
            r.code == 0 || r.code == 1,
            "{what}: {}{}",
            r.stdout,
            r.stderr
        );
        assert_eq!(opens.count(), 1, "{what} opens the config once");
    }
}

//! Hardening tests: real uids, spoofing and squatting, faults (SIGSTOP of a
//! publisher mid-write, removal under attached processes, SIGKILL of a
//! subscriber, RLIMIT_MEMLOCK) and clock jumps. `docs/RELIABILITY.md` lists
//! each test with its figure; `SECURITY.md` has the threat model.
//!
//! ## Root
//! The tests marked "root" start child processes with other real uids
//! (`setgid`/`setuid` in the forked child, before it re-executes this test
//! binary). CI runs as root. A developer running as an ordinary user gets a
//! failure that says so, unless they set `SHMBUS_SKIP_ROOT_TESTS=1`, which
//! skips those tests with a `SKIPPED` line on stderr; under `CI` the
//! variable is refused, so a CI run can never skip them.
//!
//! ## Children
//! Children re-execute this binary (`child_role_entry`) with a role. They
//! print protocol lines prefixed with `@@ ` on stdout. Children that must
//! stay alive wait for their stdin to close; the parent holds them in a
//! [`Kid`], which kills them on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{ChildStdout, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shmbus_core::layout::HeaderInfo;
use shmbus_core::sys::{self, Attachment, Errno, WriteAttachment};
use shmbus_core::{LockPolicy, OpenError, ReadError, Segment, Topic, WaitError};
use shmbus_pub::Publisher;
use shmbus_sub::{Next, Subscriber};
use shmbus_testkit::{Check, Guard, KillOnDrop, role, unique_key, unique_topic, watchdog};

/// The uid that publishes (a sensor daemon's dedicated user).
const SENSOR_UID: u32 = 64101;
/// The sensor's primary group.
const SENSOR_GID: u32 = 64101;
/// Another local user, with no business on the bus.
const INTRUDER_UID: u32 = 64102;
/// The intruder's group.
const INTRUDER_GID: u32 = 64102;
/// A reader: its own uid, primary group = the telemetry group.
const READER_UID: u32 = 64103;
/// The group that topics grant read access to.
const TELEMETRY_GID: u32 = 64100;

// ---------------------------------------------------------------- helpers

fn scaled(n: u32) -> u32 {
    ((f64::from(n) * shmbus_testkit::stress_scale()).round() as u32).max(1)
}

/// True if this test may run its root-only part; false if the developer
/// chose to skip it (never under CI). Panics otherwise: a test that cannot
/// check what it claims must not pass silently.
fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let skip = std::env::var("SHMBUS_SKIP_ROOT_TESTS").is_ok_and(|v| v == "1");
    let ci = std::env::var_os("CI").is_some();
    if skip && !ci {
        // Straight to fd 2, not `eprintln!`: the test harness captures that.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: needs root to run children as other uids (SHMBUS_SKIP_ROOT_TESTS=1)"
        );
        return false;
    }
    panic!(
        "{test} needs root: it runs children as uids {SENSOR_UID}/{INTRUDER_UID}/{READER_UID} with setuid. \
         Run the tests as root (CI does), or set SHMBUS_SKIP_ROOT_TESTS=1 to skip the root-only tests knowingly \
         (refused when CI is set)"
    );
}

/// A copy of this test binary that other uids can execute, removed on drop
/// or by the testkit's watchdog before it aborts (the build directory may
/// sit under a 0700 home directory).
struct ExeCopy {
    _dir: shmbus_testkit::TempDir,
    exe: PathBuf,
}

impl ExeCopy {
    fn new() -> ExeCopy {
        let me = std::env::current_exe().expect("current_exe");
        let dir = shmbus_testkit::TempDir::new("hardening");
        // The other uids must reach the copy whatever this process's umask
        // made of the directory's mode.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod dir");
        let exe = dir.join("hardening");
        std::fs::copy(&me, &exe).expect("copy test binary");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod exe");
        ExeCopy { _dir: dir, exe }
    }
}

/// A running child role: stdout read line by line, killed on drop.
struct Kid {
    out: BufReader<ChildStdout>,
    child: KillOnDrop,
    _exe: Option<ExeCopy>,
}

/// Who a child runs as: `None` = this process's uid; `Some((uid, gid))`.
type Ids = Option<(u32, u32)>;

fn spawn_kid(role: &str, args: &[String], ids: Ids) -> Kid {
    let copy = ids.map(|_| ExeCopy::new());
    let exe = match &copy {
        Some(c) => c.exe.clone(),
        None => std::env::current_exe().expect("current_exe"),
    };
    // SHMBUS_TEST_RUNNER (qemu-arm) goes in front of the binary.
    let mut cmd = shmbus_testkit::command(&exe);
    cmd.args([
        "--exact",
        "child_role_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("SHMBUS_ROLE", role)
    .env("SHMBUS_ROLE_ARGS", args.join("\u{1f}"))
    .current_dir("/")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped());
    shmbus_testkit::dies_with_parent(&mut cmd);
    if let Some((uid, gid)) = ids {
        // std's child calls setgroups(0), setgid, then setuid after fork and
        // before exec: a real process of another user.
        cmd.uid(uid).gid(gid);
    }
    // A fresh copy can be "busy" (ETXTBSY) for a moment: a child forked by
    // another test thread while we were writing it holds the write fd until
    // it execs. Retry briefly.
    let mut tries = 0;
    let mut child = loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other.expect("spawn child role"),
        }
    };
    let out = BufReader::new(child.stdout.take().expect("piped stdout"));
    Kid {
        out,
        child: KillOnDrop(child),
        _exe: copy,
    }
}

impl Kid {
    fn pid(&self) -> i32 {
        self.child.0.id() as i32
    }

    /// The next protocol line (without `@@ `); panics if the child ends first.
    fn line(&mut self) -> String {
        let mut l = String::new();
        loop {
            l.clear();
            let n = self.out.read_line(&mut l).expect("read child stdout");
            assert!(n > 0, "child ended before its next protocol line");
            if let Some(rest) = l.strip_prefix("@@ ") {
                return rest.trim_end().to_string();
            }
        }
    }

    /// Close the child's stdin (tell it to finish) and wait for it; returns
    /// its exit status and the remaining protocol lines.
    fn finish(mut self) -> (ExitStatus, Vec<String>) {
        drop(self.child.0.stdin.take());
        let mut rest = String::new();
        let _ = self.out.read_to_string(&mut rest);
        let status = self.child.0.wait().expect("wait child");
        let lines = rest
            .lines()
            .filter_map(|l| l.strip_prefix("@@ "))
            .map(str::to_string)
            .collect();
        (status, lines)
    }
}

/// Run a child role to completion and return its protocol lines.
fn run_kid(role: &str, args: &[String], ids: Ids) -> (ExitStatus, Vec<String>) {
    spawn_kid(role, args, ids).finish()
}

fn say(s: &str) {
    let mut o = std::io::stdout().lock();
    // Start on a fresh line: with --nocapture the harness has printed
    // "test child_role_entry ... " without a newline.
    let _ = writeln!(o, "\n@@ {s}");
    let _ = o.flush();
}

fn wait_for_stdin_eof() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

fn topic_args(t: &Topic) -> Vec<String> {
    vec![
        t.name.clone(),
        t.key.to_string(),
        format!("{:o}", t.mode),
        t.group.map_or("-".into(), |g| g.to_string()),
        match t.lock {
            LockPolicy::Required => "required".into(),
            LockPolicy::Try => "try".into(),
            LockPolicy::Off => "off".into(),
        },
        t.publisher_uid.map_or("-".into(), |u| u.to_string()),
        t.slots.to_string(),
    ]
}

fn topic_from(a: &[String]) -> Topic {
    let mut t = Topic::new(&a[0])
        .key(a[1].parse().expect("key"))
        .mode(u32::from_str_radix(&a[2], 8).expect("mode"))
        .slots(a[6].parse().expect("slots"))
        .lock(match a[4].as_str() {
            "required" => LockPolicy::Required,
            "try" => LockPolicy::Try,
            _ => LockPolicy::Off,
        });
    if a[3] != "-" {
        t = t.group(a[3].parse().expect("group"));
    }
    if a[5] != "-" {
        t = t.publisher_uid(a[5].parse().expect("uid"));
    }
    t
}

fn report_err(e: &dyn std::fmt::Display, dbg: &dyn std::fmt::Debug) {
    say(&format!("ERR {dbg:?}"));
    say(&format!("MSG {e}"));
}

/// `ERR <Debug>` and `MSG <Display>` lines of a child that failed.
fn expect_err(lines: &[String]) -> (String, String) {
    let err = lines
        .iter()
        .find_map(|l| l.strip_prefix("ERR "))
        .map(str::to_string);
    let msg = lines
        .iter()
        .find_map(|l| l.strip_prefix("MSG "))
        .map(str::to_string);
    match (err, msg) {
        (Some(e), Some(m)) => (e, m),
        _ => panic!("expected an error from the child, got {lines:?}"),
    }
}

/// The message names the owner, group and permission bits (`mode 640`,
/// without the kernel's `SHM_LOCKED`/`SHM_DEST` flag bits).
fn assert_owner_in_message(msg: &str, uid: u32, gid: u32, perms: u32) {
    let want = format!("owner uid {uid}, gid {gid}, mode {perms:03o})");
    assert!(msg.contains(&want), "message lacks '{want}': {msg}");
}

/// The attach count of `shmid` once it equals `want`, or whatever it is
/// after 30 s (see [`shmbus_testkit::settled`]: a sibling thread's fork
/// raises it for a moment).
fn settled_nattch(shmid: i32, want: u64) -> Result<u64, Errno> {
    shmbus_testkit::settled(
        || sys::shm_stat(shmid).map(|s| s.nattch).map_err(|e| e.errno),
        |n| *n == Ok(want),
    )
}

/// Every byte of the segment at `key` (root reads anything).
fn segment_bytes(key: i32) -> Vec<u8> {
    let id = sys::shmget(key, 0, 0).expect("segment exists");
    let att = Attachment::read_only(id).expect("attach");
    let words = att.words(0, att.len() / 4).expect("words");
    let mut out = Vec::new();
    shmbus_core::layout::copy_from_words(words, att.len(), &mut out);
    out
}

fn stat_key(key: i32) -> sys::ShmStat {
    sys::shm_stat(sys::shmget(key, 0, 0).expect("segment exists")).expect("IPC_STAT")
}

fn no_segment_at(key: i32) -> bool {
    matches!(sys::shmget(key, 0, 0), Err(e) if e.errno == Errno::ENOENT)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The slot-0 sequence word of a segment, through our own read-only
/// attachment (test-only peek).
struct SeqPeek {
    att: Attachment,
    offset: usize,
}

impl SeqPeek {
    fn new(shmid: i32, key: i32) -> SeqPeek {
        let att = Attachment::read_only(shmid).expect("attach");
        let info = HeaderInfo::read(&att, key).expect("header");
        SeqPeek {
            att,
            offset: info.geometry.slot_offset(0),
        }
    }
    fn seq(&self) -> u32 {
        self.att
            .word(self.offset)
            .expect("slot word")
            .load_acquire()
    }
}

// ------------------------------------------------------------ child roles

/// Entry point for child processes. Does nothing in a normal test run.
#[test]
fn child_role_entry() {
    let Some((role, a)) = role() else { return };
    match role.as_str() {
        // Open a publisher; publish one frame; report; stay until stdin closes.
        "publish" => {
            if a.get(7).is_some_and(|m| m == "memlock0") {
                let zero = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: `zero` is a valid rlimit; lowering a limit is always allowed.
                let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &zero) };
                assert_eq!(rc, 0, "setrlimit(RLIMIT_MEMLOCK, 0)");
            }
            match Publisher::<Check>::open(&topic_from(&a)) {
                Ok(mut p) => {
                    p.publish(&Check::new(1)).expect("publish");
                    say(&format!("OK lock={:?}", p.raw().lock_outcome()));
                    wait_for_stdin_eof();
                }
                Err(e) => report_err(&e, &e),
            }
        }
        // Attach a subscriber, read the newest frame, report.
        "attach" => match Subscriber::<Check>::attach(&topic_from(&a)) {
            Ok(mut s) => match s.latest() {
                Ok(v) => say(&format!("OK latest={:?}", v.map(|s| s.value.seq))),
                Err(e) => report_err(&e, &e),
            },
            Err(e) => report_err(&e, &e),
        },
        // Create a segment at the key as this user and fill it (a squatter).
        "squat-shm" => {
            let key: i32 = a[0].parse().expect("key");
            let mode = u32::from_str_radix(&a[1], 8).expect("mode");
            let bytes = unhex(&a[2]);
            let flags = libc::IPC_CREAT | libc::IPC_EXCL | mode as i32;
            let id = sys::shmget(key, bytes.len(), flags).expect("squat shmget");
            let att = WriteAttachment::read_write(id).expect("squat attach");
            let words = att.atomic_words(0, bytes.len().div_ceil(4)).expect("words");
            shmbus_core::codec::store_bytes(words, &bytes);
            say("SQUATTED");
        }
        // Create the publisher lock's semaphore at the key and take it,
        // without SEM_UNDO: it stays held after this process exits.
        "squat-sem" => {
            let key: i32 = a[0].parse().expect("key");
            let mode = u32::from_str_radix(&a[1], 8).expect("mode");
            // Raw libc: core creates a semaphore only in the publisher's
            // lock acquisition.
            // SAFETY: plain integer arguments.
            let id =
                unsafe { libc::semget(key, 1, libc::IPC_CREAT | libc::IPC_EXCL | mode as i32) };
            assert!(id >= 0, "semget: {}", Errno::last());
            let mut op = [libc::sembuf {
                sem_num: 0,
                sem_op: 1,
                sem_flg: 0,
            }];
            sys::semop(id, &mut op).expect("semop");
            say(&format!("SQUATTED pid={}", std::process::id()));
        }
        // Attach read-only as a subscriber does, then store through the
        // raw mapping (no safe API offers a store: that takes `unsafe`).
        "write-readonly" => {
            let seg = Segment::attach(&topic_from(&a)).expect("attach");
            say(&format!("ATTACHED gen={}", seg.generation()));
            // SAFETY: a plain shmat of the attached segment; checked below.
            let p = unsafe { libc::shmat(seg.shmid(), std::ptr::null(), libc::SHM_RDONLY) };
            assert_ne!(p as isize, -1, "shmat: {}", Errno::last());
            // SAFETY: deliberately not safe: the mapping is read-only and this
            // store must fault. Offset 192 (generation) is inside the header.
            unsafe { std::ptr::write_volatile(p.cast::<u8>().add(192).cast::<u64>(), 0xdead_beef) };
            say("STORED");
        }
        // Try to attach read-write with only read permission.
        "attach-rw" => {
            let key: i32 = a[0].parse().expect("key");
            let id = sys::shmget(key, 0, 0).expect("shmget");
            match WriteAttachment::read_write(id) {
                Ok(_) => say("OK attached read-write"),
                Err(e) => say(&format!("ERR {:?} {}", e.errno, e.call)),
            }
        }
        // Publish as fast as possible into a one-slot ring, forever.
        "spin-publisher" => {
            let topic = topic_from(&a).notify(false);
            let mut p = Publisher::<Check>::open(&topic).expect("open");
            p.publish(&Check::new(1)).expect("publish");
            // The thread that publishes (libtest runs a test on a thread
            // of its own): the one a test holds mid-write.
            say(&format!("READY {}", shmbus_testkit::thread_id()));
            let mut g = 2;
            loop {
                p.publish(&Check::new(g)).expect("publish");
                g += 1;
            }
        }
        // Attach the key `a[1]` times, dropping each result; report how
        // many attaches succeeded and failed, and how many mappings of the
        // key are left in this process.
        "attach-loop" => {
            let key: i32 = a[0].parse().expect("key");
            let count: u32 = a[1].parse().expect("count");
            let (mut ok, mut failed) = (0u32, 0u32);
            say("STARTED");
            for _ in 0..count {
                match Segment::attach_key(key) {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
            let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
            let name = format!("SYSV{:08x}", key as u32);
            let left = maps.lines().filter(|l| l.contains(&name)).count();
            say(&format!("LEFT {left} ok={ok} failed={failed}"));
        }
        // Attach and keep reading until killed.
        "subscriber-loop" => {
            let mut s = Subscriber::<Check>::attach(&topic_from(&a)).expect("attach");
            say("READY");
            loop {
                if let Ok(Some(v)) = s.latest() {
                    assert!(v.value.is_whole());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // In a private IPC namespace (its sysctls are its own), lower each
        // System V limit in turn and report what opening a topic says.
        "limits" => {
            // SAFETY: unshare takes a flag word and touches no memory of ours.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWIPC) };
            assert_eq!(rc, 0, "unshare(CLONE_NEWIPC): {}", Errno::last());
            let topic = Topic::new("test/limits")
                .key(0x7e00_0001)
                .lock(LockPolicy::Off);
            for (name, value) in [("shmmax", 100u64), ("shmmni", 0), ("shmall", 0)] {
                let path = format!("/proc/sys/kernel/{name}");
                let old = std::fs::read_to_string(&path).expect("read sysctl");
                std::fs::write(&path, value.to_string()).expect("write sysctl");
                match Publisher::<Check>::open(&topic) {
                    Ok(_) => say(&format!("{name} OPENED")),
                    Err(e) => say(&format!("{name} {e:?} | {e}")),
                }
                std::fs::write(&path, old.trim()).expect("restore sysctl");
                let ok = Publisher::<Check>::open(&topic).is_ok();
                say(&format!("{name} restored open_ok={ok}"));
                shmbus_testkit::remove_key(topic.key);
            }
        }
        // Attach a subscriber, say so, wait for a line on stdin, then read
        // frames with blocking waits until one fails; report that error.
        "attach-then-wait" => match Subscriber::<Check>::attach(&topic_from(&a)) {
            Ok(mut s) => {
                say("ATTACHED");
                let mut go = String::new();
                let _ = std::io::stdin().read_line(&mut go);
                loop {
                    match s.wait_next(Duration::from_secs(20)) {
                        Ok(n) => say(&format!("FRAME {n:?}")),
                        Err(e) => {
                            report_err(&e, &e);
                            break;
                        }
                    }
                }
            }
            Err(e) => report_err(&e, &e),
        },
        // Attach a subscriber (reads give a slot mid-write 300 ms), say so,
        // then at each line on stdin: `removed?` reports `is_removed()`,
        // `wait` the outcome of a 20 s wait for the next frame, anything
        // else the newest frame.
        "attach-then-read" => match Subscriber::<Check>::attach(&topic_from(&a)) {
            Ok(mut s) => {
                s.raw().set_stuck_after(Duration::from_millis(300));
                say("ATTACHED");
                let mut go = String::new();
                while std::io::stdin().read_line(&mut go).is_ok_and(|n| n > 0) {
                    match go.trim() {
                        "removed?" => say(&format!("REMOVED {}", s.raw().is_removed())),
                        "wait" => match s.wait_next(Duration::from_secs(20)) {
                            Ok(n) => say(&format!("OK {n:?}")),
                            Err(e) => report_err(&e, &e),
                        },
                        _ => match s.latest() {
                            Ok(v) => say(&format!("OK latest={:?}", v.map(|s| s.value.seq))),
                            Err(e) => report_err(&e, &e),
                        },
                    }
                    go.clear();
                }
            }
            Err(e) => report_err(&e, &e),
        },
        // Attach a subscriber (publisher_uid as given), then block for the
        // next frame; report the attach or wait error, or the frame.
        "attach-wait" => match Subscriber::<Check>::attach(&topic_from(&a)) {
            Ok(mut s) => {
                say(&format!("ATTACHED status={:?}", s.publisher()));
                match s.wait_next(Duration::from_secs(20)) {
                    Ok(n) => say(&format!("OK {n:?}")),
                    Err(e) => report_err(&e, &e),
                }
            }
            Err(e) => report_err(&e, &e),
        },
        // In a private IPC namespace: a topic whose segment is removed while
        // attached shows key 0; every lookup a reader makes of its lock
        // must leave the number of semaphore sets unchanged.
        "sem-key0" => {
            // SAFETY: unshare takes a flag word and touches no memory of ours.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWIPC) };
            assert_eq!(rc, 0, "unshare(CLONE_NEWIPC): {}", Errno::last());
            let topic = Topic::new("test/key0").key(0x7e00_0002);
            let mut p = Publisher::<Check>::open(&topic).expect("open");
            p.publish(&Check::new(1)).expect("publish");
            let shmid = p.raw().shmid();
            let sets = || {
                shmbus_core::sysvipc::semaphores()
                    .expect("/proc/sysvipc/sem")
                    .len()
            };
            let before = sets();
            sys::shm_remove(shmid).expect("IPC_RMID");
            let key = shmbus_core::sysvipc::segments()
                .expect("/proc/sysvipc/shm")
                .into_iter()
                .find(|e| e.id() == shmid)
                .map(|e| e.key())
                .expect("removed segment still listed while attached");
            say(&format!("KEY {key}"));
            for _ in 0..10 {
                let seg = Segment::attach_shmid(shmid, key).expect("attach by shmid");
                let _ = seg.publisher_status();
                let _ = shmbus_core::lock::publisher_status(key);
                let _ = shmbus_core::lock::check_owner(key, 0);
                let _ = shmbus_core::lock::remove_lock(key);
                let mut sub = shmbus_sub::RawSubscriber::from_segment(seg);
                let _ = sub.wait_until(Duration::from_millis(150), |_| Ok(None::<()>));
                let _ = sys::sem_lookup(key);
                let _ = sys::shmget(key, 0, 0);
            }
            say(&format!("SETS before={before} after={}", sets()));
        }
        // In a private IPC namespace, exhaust each kernel.sem field in turn:
        // what opening a topic says, and whether the sysctl the message
        // suggests makes the open work.
        "sem-limits" => {
            // SAFETY: unshare takes a flag word and touches no memory of ours.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWIPC) };
            assert_eq!(rc, 0, "unshare(CLONE_NEWIPC): {}", Errno::last());
            let topic = Topic::new("test/sem-limits")
                .key(0x7e00_0003)
                .lock(LockPolicy::Off);
            let path = "/proc/sys/kernel/sem";
            let old = std::fs::read_to_string(path).expect("read kernel.sem");
            let v: Vec<u64> = old.split_whitespace().map(|t| t.parse().unwrap()).collect();
            for (name, limits) in [
                ("SEMMNI", [v[0], v[1], v[2], 0]),
                ("SEMMNS", [v[0], 0, v[2], v[3]]),
                ("SEMOPM", [v[0], v[1], 1, v[3]]),
            ] {
                let text = limits.map(|x| x.to_string()).join(" ");
                std::fs::write(path, &text).expect("write kernel.sem");
                match Publisher::<Check>::open(&topic) {
                    Ok(_) => say(&format!("{name} OPENED")),
                    Err(e) => {
                        say(&format!("{name} {e:?} | {e}"));
                        // What the failed open left at the topic's key.
                        let lock = shmbus_core::sysvipc::semaphore_by_key(topic.key).is_some();
                        let seg = shmbus_core::sysvipc::segments()
                            .expect("read /proc/sysvipc/shm")
                            .iter()
                            .any(|s| s.key() == topic.key);
                        say(&format!("{name} left lock={lock} segment={seg}"));
                        // Apply the suggested `sysctl -w kernel.sem="..."`.
                        let msg = e.to_string();
                        let suggested = msg
                            .split("kernel.sem=\"")
                            .nth(1)
                            .and_then(|t| t.split('"').next())
                            .expect("a kernel.sem value in the message");
                        std::fs::write(path, suggested).expect("write suggested kernel.sem");
                        let ok = Publisher::<Check>::open(&topic).is_ok();
                        say(&format!("{name} suggested open_ok={ok}"));
                    }
                }
                std::fs::write(path, old.trim()).expect("restore kernel.sem");
                shmbus_testkit::remove_key(topic.key);
            }
        }
        other => panic!("unknown role {other}"),
    }
}

// --------------------------------------------------------------- security

/// Root. A topic with mode 0640 and a group: a member of the group reads it,
/// another uid gets `PermissionDenied` naming owner, group and mode.
#[test]
fn mode_and_group_decide_who_reads() {
    if !root_or_skip("mode_and_group_decide_who_reads") {
        return;
    }
    watchdog("mode_and_group_decide_who_reads", Duration::from_secs(120));
    let (topic, _g) = unique_topic("mode-group");
    let topic = topic.mode(0o640).group(TELEMETRY_GID);
    let mut publisher = spawn_kid(
        "publish",
        &topic_args(&topic),
        Some((SENSOR_UID, SENSOR_GID)),
    );
    assert!(publisher.line().starts_with("OK"), "publisher did not open");
    let st = stat_key(topic.key);
    assert_eq!(
        (st.cuid, st.uid, st.gid, st.perms()),
        (SENSOR_UID, SENSOR_UID, TELEMETRY_GID, 0o640)
    );

    // A member of the telemetry group, also requiring the publisher's uid.
    let reader = topic.clone().publisher_uid(SENSOR_UID);
    let (_, lines) = run_kid(
        "attach",
        &topic_args(&reader),
        Some((READER_UID, TELEMETRY_GID)),
    );
    assert_eq!(
        lines,
        vec!["OK latest=Some(1)".to_string()],
        "group member must read"
    );

    // Another user: refused, and told who owns it.
    let (_, lines) = run_kid(
        "attach",
        &topic_args(&topic),
        Some((INTRUDER_UID, INTRUDER_GID)),
    );
    let (err, msg) = expect_err(&lines);
    assert!(err.starts_with("PermissionDenied"), "{err}");
    assert!(
        err.contains(&format!("owner: Some(({SENSOR_UID}, {TELEMETRY_GID}, ")),
        "{err}"
    );
    assert_owner_in_message(&msg, SENSOR_UID, TELEMETRY_GID, 0o640);
    assert!(msg.contains("member of its group"), "{msg}");
    drop(publisher.finish());
}

/// Root. An attach refused after its `shmat` succeeded (the mode changed
/// between the mapping and the size check) detaches what it mapped: the
/// mapping and the count in `nattch` stayed for the life of the process,
/// and kept a removed topic's memory. A reader attaches thousands of times
/// while the topic's mode flips between 0644 and 0000, then counts the
/// mappings left in its own process.
#[test]
fn an_attach_refused_after_mapping_leaves_no_mapping() {
    if !root_or_skip("an_attach_refused_after_mapping_leaves_no_mapping") {
        return;
    }
    watchdog(
        "an_attach_refused_after_mapping_leaves_no_mapping",
        Duration::from_secs(300),
    );
    let (topic, _g) = unique_topic("attach-leak");
    let topic = topic.mode(0o644);
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    publisher.publish(&Check::new(1)).unwrap();
    let shmid = publisher.raw().shmid();
    let mut reader = spawn_kid(
        "attach-loop",
        &[topic.key.to_string(), scaled(200_000).to_string()],
        Some((READER_UID, TELEMETRY_GID)),
    );
    assert_eq!(reader.line(), "STARTED");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut open = false;
            while !done.load(std::sync::atomic::Ordering::Relaxed)
                && start.elapsed() < Duration::from_secs(240)
            {
                sys::shm_set_owner(shmid, None, if open { 0o000 } else { 0o644 }).unwrap();
                open = !open;
            }
            sys::shm_set_owner(shmid, None, 0o644).unwrap();
        })
    };
    let report = reader.line();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    assert!(report.starts_with("LEFT 0 "), "{report}");
    drop(reader.finish());
}

/// Root. Mode 0600: only the owner; the same uid reads, anyone else is
/// refused with the owner and mode in the error.
#[test]
fn mode_0600_is_owner_only() {
    if !root_or_skip("mode_0600_is_owner_only") {
        return;
    }
    watchdog("mode_0600_is_owner_only", Duration::from_secs(120));
    let (topic, _g) = unique_topic("mode-0600");
    let topic = topic.mode(0o600);
    let mut publisher = spawn_kid(
        "publish",
        &topic_args(&topic),
        Some((SENSOR_UID, SENSOR_GID)),
    );
    assert!(publisher.line().starts_with("OK"));
    let (_, lines) = run_kid(
        "attach",
        &topic_args(&topic),
        Some((SENSOR_UID, SENSOR_GID)),
    );
    assert_eq!(lines, vec!["OK latest=Some(1)".to_string()]);
    // Same group as the owner does not help with 0600.
    let (_, lines) = run_kid(
        "attach",
        &topic_args(&topic),
        Some((READER_UID, SENSOR_GID)),
    );
    let (err, msg) = expect_err(&lines);
    assert!(err.starts_with("PermissionDenied"), "{err}");
    assert_owner_in_message(&msg, SENSOR_UID, SENSOR_GID, 0o600);
    drop(publisher.finish());
}

/// A valid-looking segment image for `topic` with a forged frame: a real
/// segment made at a scratch key with the same name, copied, then removed.
fn forged_image(topic: &Topic) -> Vec<u8> {
    let (scratch, _g) = unique_topic("forge-scratch");
    let scratch = Topic::new(&topic.name)
        .key(scratch.key)
        .slots(topic.slots)
        .lock(LockPolicy::Off);
    let mut p = Publisher::<Check>::open(&scratch).expect("scratch publisher");
    p.publish(&Check::new(666)).expect("publish");
    let bytes = segment_bytes(scratch.key);
    drop(p);
    bytes
}

/// Root. Someone else pre-creates a segment at the topic's key (a perfect
/// forgery of the topic). The publisher refuses it with `NotOwner` and does
/// not change a byte; a subscriber that names its publisher's uid refuses
/// it too; one that does not is fooled, which is why `publisher_uid` exists.
#[test]
fn squatted_segment_is_never_adopted() {
    if !root_or_skip("squatted_segment_is_never_adopted") {
        return;
    }
    watchdog(
        "squatted_segment_is_never_adopted",
        Duration::from_secs(120),
    );
    let (topic, _g) = unique_topic("squat-shm");
    let image = forged_image(&topic);
    let (_, lines) = run_kid(
        "squat-shm",
        &[topic.key.to_string(), "644".into(), hex(&image)],
        Some((INTRUDER_UID, INTRUDER_GID)),
    );
    assert_eq!(lines, vec!["SQUATTED".to_string()]);
    let before = segment_bytes(topic.key);
    let st_before = stat_key(topic.key);
    assert_eq!(before, image);

    // The real publisher, as its own uid.
    let (_, lines) = run_kid(
        "publish",
        &topic_args(&topic),
        Some((SENSOR_UID, SENSOR_GID)),
    );
    let (err, msg) = expect_err(&lines);
    assert_eq!(
        err,
        format!(
            "NotOwner {{ key: {}, object: Segment, creator_uid: {INTRUDER_UID}, owner_uid: {INTRUDER_UID}, expected_uid: {SENSOR_UID} }}",
            topic.key
        )
    );
    assert!(
        msg.contains(&format!("created by uid {INTRUDER_UID}")),
        "{msg}"
    );
    assert!(msg.contains("shmbus rm"), "{msg}");
    // Even root does not adopt it.
    match Publisher::<Check>::open(&topic) {
        Err(OpenError::NotOwner {
            creator_uid,
            expected_uid,
            ..
        }) => assert_eq!((creator_uid, expected_uid), (INTRUDER_UID, 0)),
        other => panic!("root publisher must refuse the squatted segment, got {other:?}"),
    }
    assert_eq!(
        segment_bytes(topic.key),
        before,
        "the squatted segment was written"
    );
    let st_after = stat_key(topic.key);
    assert_eq!(
        (st_after.mode, st_after.uid, st_after.gid),
        (st_before.mode, st_before.uid, st_before.gid)
    );

    // A subscriber that requires the sensor's uid refuses the forgery...
    let strict = topic.clone().publisher_uid(SENSOR_UID);
    match Subscriber::<Check>::attach(&strict) {
        Err(OpenError::NotOwner {
            creator_uid,
            owner_uid,
            ..
        }) => assert_eq!((creator_uid, owner_uid), (INTRUDER_UID, INTRUDER_UID)),
        other => panic!("expected NotOwner, got {other:?}"),
    }
    // ...and one that does not is fooled by it: the reason to set it.
    let mut naive = Subscriber::<Check>::attach(&topic).expect("naive subscriber attaches");
    assert_eq!(naive.latest().unwrap().map(|s| s.value.seq), Some(666));
}

/// Root. A subscriber with `publisher_uid` refuses a segment its publisher
/// made writable by others (mode 0666 or 0660), and accepts 0644.
#[test]
fn subscriber_refuses_segments_writable_by_others() {
    if !root_or_skip("subscriber_refuses_segments_writable_by_others") {
        return;
    }
    watchdog(
        "subscriber_refuses_segments_writable_by_others",
        Duration::from_secs(120),
    );
    for (mode, ok) in [(0o666, false), (0o660, false), (0o644, true), (0o640, true)] {
        let (topic, _g) = unique_topic("writable-by-others");
        let topic = topic.mode(mode);
        let mut publisher = spawn_kid(
            "publish",
            &topic_args(&topic),
            Some((SENSOR_UID, SENSOR_GID)),
        );
        assert!(publisher.line().starts_with("OK"));
        let strict = topic.clone().publisher_uid(SENSOR_UID);
        match (Subscriber::<Check>::attach(&strict), ok) {
            (Ok(_), true) => {}
            (Err(e @ OpenError::WritableByOthers { mode: m, .. }), false) => {
                assert_eq!(m, mode);
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("mode {mode:03o}")) && msg.contains("0640 or 0644"),
                    "{msg}"
                );
            }
            (other, _) => panic!("mode {mode:03o}: unexpected {other:?}"),
        }
        drop(publisher.finish());
    }
}

/// Root. A squatter creates and holds the topic's publisher-lock semaphore.
/// The publisher refuses with an error naming the squatter's uid (root
/// too: a lock someone else created is never taken), and creates no
/// segment.
#[test]
fn squatted_publisher_lock_is_a_clear_error() {
    if !root_or_skip("squatted_publisher_lock_is_a_clear_error") {
        return;
    }
    watchdog(
        "squatted_publisher_lock_is_a_clear_error",
        Duration::from_secs(120),
    );
    let (topic, _g) = unique_topic("squat-sem");
    let (_, lines) = run_kid(
        "squat-sem",
        &[topic.key.to_string(), "666".into()],
        Some((INTRUDER_UID, INTRUDER_GID)),
    );
    let squatter_pid: i32 = lines[0]
        .strip_prefix("SQUATTED pid=")
        .expect("squatted")
        .parse()
        .unwrap();
    let (_, lines) = run_kid(
        "publish",
        &topic_args(&topic),
        Some((SENSOR_UID, SENSOR_GID)),
    );
    let (err, msg) = expect_err(&lines);
    assert!(err.starts_with("NotOwner"), "{err}");
    assert!(
        err.contains(&format!("creator_uid: {INTRUDER_UID}")),
        "{err}"
    );
    assert!(
        msg.contains(&format!("created by uid {INTRUDER_UID}")),
        "{msg}"
    );
    assert!(
        no_segment_at(topic.key),
        "a segment was created despite the squatted lock"
    );
    // Root does not take a lock someone else created either, and the
    // squatter still holds it.
    match Publisher::<Check>::open(&topic) {
        Err(OpenError::NotOwner {
            creator_uid,
            expected_uid,
            ..
        }) => assert_eq!((creator_uid, expected_uid), (INTRUDER_UID, 0)),
        other => panic!("expected NotOwner, got {other:?}"),
    }
    assert_eq!(
        shmbus_core::lock::publisher_status(topic.key),
        shmbus_core::PublisherStatus::Alive { pid: squatter_pid }
    );
    assert!(no_segment_at(topic.key));

    // A squatted lock the publisher cannot even read (mode 0600).
    let (topic, _g) = unique_topic("squat-sem-0600");
    run_kid(
        "squat-sem",
        &[topic.key.to_string(), "600".into()],
        Some((INTRUDER_UID, INTRUDER_GID)),
    );
    let (_, lines) = run_kid(
        "publish",
        &topic_args(&topic),
        Some((SENSOR_UID, SENSOR_GID)),
    );
    let (err, msg) = expect_err(&lines);
    // The squatter is named from /proc/sysvipc/sem even though the
    // semaphore itself cannot be read.
    assert!(err.starts_with("NotOwner"), "{err}");
    assert!(
        err.contains(&format!("creator_uid: {INTRUDER_UID}")),
        "{err}"
    );
    eprintln!("squatted 0600 lock -> {msg}");
    assert!(no_segment_at(topic.key));
}

/// Root. Liveness spoofing: the topic's lock semaphore was removed (e.g.
/// `ipcrm -s`) and another user created and holds one at the key. A
/// subscriber without `publisher_uid` is told the publisher is alive (the
/// squatter's pid); one with `publisher_uid` refuses the topic with
/// `NotOwner` naming the squatter.
#[test]
fn squatted_lock_cannot_fake_a_live_publisher() {
    if !root_or_skip("squatted_lock_cannot_fake_a_live_publisher") {
        return;
    }
    watchdog(
        "squatted_lock_cannot_fake_a_live_publisher",
        Duration::from_secs(120),
    );
    let (topic, _g) = unique_topic("fake-liveness");
    // The real publisher creates the topic, publishes and exits.
    let (status, lines) = run_kid(
        "publish",
        &topic_args(&topic),
        Some((SENSOR_UID, SENSOR_GID)),
    );
    assert!(status.success() && lines[0].starts_with("OK"), "{lines:?}");
    shmbus_core::lock::remove_lock(topic.key).unwrap();
    let (_, lines) = run_kid(
        "squat-sem",
        &[topic.key.to_string(), "644".into()],
        Some((INTRUDER_UID, INTRUDER_GID)),
    );
    let squatter_pid: i32 = lines[0]
        .strip_prefix("SQUATTED pid=")
        .expect("squatted")
        .parse()
        .unwrap();
    let naive = Subscriber::<Check>::attach(&topic).unwrap();
    assert_eq!(
        naive.publisher(),
        shmbus_core::PublisherStatus::Alive { pid: squatter_pid },
        "without publisher_uid the squatter's lock looks like a live publisher"
    );
    match Subscriber::<Check>::attach(&topic.clone().publisher_uid(SENSOR_UID)) {
        Err(OpenError::NotOwner {
            creator_uid,
            expected_uid,
            ..
        }) => assert_eq!((creator_uid, expected_uid), (INTRUDER_UID, SENSOR_UID)),
        other => panic!("expected NotOwner for the squatted lock, got {other:?}"),
    }
}

/// Root. The 0600 variant of the liveness spoof: the lock semaphore was
/// removed and another user created one at the key that the subscriber
/// cannot read. A subscriber (not root) with `publisher_uid` refuses the
/// topic with `NotOwner` naming the squatter (from /proc/sysvipc/sem); one
/// without it attaches, but its blocking wait ends with `LockUnreadable`
/// naming the squatter instead of waiting as if a publisher were alive.
#[test]
fn unreadable_squatted_lock_is_refused_and_ends_waits() {
    if !root_or_skip("unreadable_squatted_lock_is_refused_and_ends_waits") {
        return;
    }
    watchdog(
        "unreadable_squatted_lock_is_refused_and_ends_waits",
        Duration::from_secs(120),
    );
    let (topic, _g) = unique_topic("fake-liveness-0600");
    let topic = topic.mode(0o644);
    let (status, lines) = run_kid(
        "publish",
        &topic_args(&topic),
        Some((SENSOR_UID, SENSOR_GID)),
    );
    assert!(status.success() && lines[0].starts_with("OK"), "{lines:?}");
    shmbus_core::lock::remove_lock(topic.key).unwrap();
    run_kid(
        "squat-sem",
        &[topic.key.to_string(), "600".into()],
        Some((INTRUDER_UID, INTRUDER_GID)),
    );
    let trusted = topic.clone().publisher_uid(SENSOR_UID);
    let (_, lines) = run_kid(
        "attach",
        &topic_args(&trusted),
        Some((READER_UID, READER_UID)),
    );
    let (err, msg) = expect_err(&lines);
    assert!(err.starts_with("NotOwner"), "{err}");
    assert!(err.contains("object: Lock"), "{err}");
    assert!(
        err.contains(&format!("creator_uid: {INTRUDER_UID}")),
        "{err}"
    );
    assert!(msg.contains("ipcrm -S"), "{msg}");

    let (_, lines) = run_kid(
        "attach-wait",
        &topic_args(&topic),
        Some((READER_UID, READER_UID)),
    );
    assert_eq!(lines[0], "ATTACHED status=Unknown", "{lines:?}");
    let (err, msg) = expect_err(&lines);
    assert!(err.starts_with("LockUnreadable"), "{err}");
    assert!(
        msg.contains(&format!("created by uid {INTRUDER_UID}, mode 600")),
        "{msg}"
    );
    eprintln!("unreadable squatted lock, wait -> {msg}");
}

/// Root (a private IPC namespace). A segment removed while attached shows
/// key 0 in /proc; looking its lock up there with `semget(0, ...)` would be
/// `IPC_PRIVATE` and create a new semaphore set on every call. Ten rounds of
/// every lookup a reader makes (attach by shmid, liveness, owner check,
/// lock removal, a blocking wait) leave the number of sets unchanged.
#[test]
fn lookups_at_key_zero_create_no_semaphores() {
    if !root_or_skip("lookups_at_key_zero_create_no_semaphores") {
        return;
    }
    watchdog(
        "lookups_at_key_zero_create_no_semaphores",
        Duration::from_secs(120),
    );
    let (status, lines) = run_kid("sem-key0", &[], None);
    assert!(status.success(), "{status:?}: {lines:?}");
    assert!(lines.contains(&"KEY 0".to_string()), "{lines:?}");
    let sets = lines
        .iter()
        .find(|l| l.starts_with("SETS "))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(sets, "SETS before=1 after=1", "semaphore sets leaked");
}

/// Root (a private IPC namespace). With kernel.sem's SEMMNI or SEMMNS
/// exhausted, or SEMOPM below the lock's 2 operations per `semop`, opening
/// a topic names `kernel.sem` and the field, not a shared-memory limit (for
/// SEMOPM it was "semop: Argument list too long"), the `sysctl -w
/// kernel.sem="..."` it suggests makes the open work, and the failed open
/// leaves no lock or segment behind.
#[test]
fn semaphore_limits_name_kernel_sem() {
    if !root_or_skip("semaphore_limits_name_kernel_sem") {
        return;
    }
    watchdog("semaphore_limits_name_kernel_sem", Duration::from_secs(120));
    let (status, lines) = run_kid("sem-limits", &[], None);
    assert!(status.success(), "{status:?}: {lines:?}");
    for field in ["SEMMNI", "SEMMNS", "SEMOPM"] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{field} SemaphoreLimit")))
            .unwrap_or_else(|| panic!("no SemaphoreLimit for {field}: {lines:?}"));
        assert!(line.contains(&format!("kernel.sem {field}")), "{line}");
        assert!(
            !line.contains("shmmni") && !line.contains("shmall"),
            "{line}"
        );
        assert!(
            lines.contains(&format!("{field} suggested open_ok=true")),
            "{lines:?}"
        );
        // A failed open leaves nothing behind: with SEMOPM 1 the lock's
        // set was created, its `semop` refused (`E2BIG`), and the set
        // stayed in `ipcs -s`.
        assert!(
            lines.contains(&format!("{field} left lock=false segment=false")),
            "{lines:?}"
        );
    }
}

/// Subscribers cannot write: a store through a subscriber's mapping kills it
/// with SIGSEGV and changes nothing; a user with read permission cannot
/// attach read-write (root part); the subscriber crate does not enable the
/// core's `writer` feature.
#[test]
fn subscribers_cannot_write() {
    watchdog("subscribers_cannot_write", Duration::from_secs(120));
    let (topic, _g) = unique_topic("read-only");
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    publisher.publish(&Check::new(7)).unwrap();
    let (status, lines) = run_kid("write-readonly", &topic_args(&topic), None);
    assert_eq!(
        lines,
        vec!["ATTACHED gen=1".to_string()],
        "the store must not complete"
    );
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    assert_eq!(sub.latest().unwrap().unwrap().value, Check::new(7));
    assert_eq!(sub.raw().generation(), 1);

    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shmbus-sub/Cargo.toml"
    ))
    .expect("read shmbus-sub's manifest");
    let core_dep = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("shmbus-core"))
        .expect("shmbus-sub depends on shmbus-core");
    assert!(
        !core_dep.contains("writer"),
        "shmbus-sub enables the writer feature: {core_dep}"
    );

    if root_or_skip("subscribers_cannot_write (read-write attach as another uid)") {
        let (_, lines) = run_kid(
            "attach-rw",
            &[topic.key.to_string()],
            Some((READER_UID, READER_UID)),
        );
        assert_eq!(lines, vec!["ERR EACCES shmat".to_string()]);
    }
}

// ----------------------------------------------------------------- faults

/// Hold a publisher that publishes continuously into a one-slot ring with
/// the slot mid-write (odd sequence), and between two writes, in turn.
/// Each time it is held mid-write, a reader reports `WriterStuck` with the
/// publisher's pid after its bounded wait (200 ms), never a torn frame and
/// never a hang; held between writes, a read yields a whole frame.
///
/// Was: SIGSTOP at random moments until 50 stops had landed mid-write,
/// within 20,000. A stop is taken at the process's next return to user
/// space; where that is seldom inside the write (a machine whose timer
/// interrupts rarely fall there), the test failed for want of luck. Now
/// each moment is caught deterministically with
/// [`shmbus_testkit::Caught::when`] (single steps under ptrace; SIGSTOP
/// samples under qemu-arm, where they land anywhere in the emulation).
#[test]
fn sigstop_mid_write_reports_a_stuck_writer() {
    watchdog(
        "sigstop_mid_write_reports_a_stuck_writer",
        Duration::from_secs(300),
    );
    let (topic, _g) = unique_topic("sigstop");
    let topic = topic.slots(1).notify(false);
    let mut kid = spawn_kid("spin-publisher", &topic_args(&topic), None);
    let ready = kid.line();
    // The publishing thread is held (traced), not the process's main
    // thread: that one waits for the test thread and would never finish
    // a single step.
    let tid: u32 = ready
        .strip_prefix("READY ")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("expected READY and a thread id, got {ready:?}"));
    let pid = Pid::from_raw(kid.pid());
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    let peek = SeqPeek::new(sub.raw().segment().shmid(), topic.key);

    let wanted = scaled(50);
    let (mut caught, mut whole) = (0u32, 0u32);
    let mut worst = Duration::ZERO;
    let mut how = (String::new(), String::new());
    while caught < wanted {
        // Between writes (the publisher published frame 1 before READY).
        let held = shmbus_testkit::Caught::when(tid, || peek.seq() & 1 == 0)
            .unwrap_or_else(|e| panic!("never held between writes: {e}"));
        let s = sub.latest().unwrap().expect("a frame");
        assert!(
            s.value.is_whole(),
            "torn frame accepted ({}): {:?}",
            held.how(),
            s.value
        );
        whole += 1;
        how.0 = held.how();
        drop(held);
        // Mid-write.
        let held = shmbus_testkit::Caught::when(tid, || peek.seq() & 1 == 1)
            .unwrap_or_else(|e| panic!("never held mid-write: {e}"));
        let t = Instant::now();
        match sub.latest() {
            Err(ReadError::WriterStuck { pid: p, waited }) => {
                assert_eq!(p, pid.as_raw());
                assert!(waited >= shmbus_core::segment::DEFAULT_STUCK_AFTER);
            }
            other => panic!(
                "held mid-write ({}): expected WriterStuck, got {other:?}",
                held.how()
            ),
        }
        worst = worst.max(t.elapsed());
        caught += 1;
        how.1 = held.how();
        drop(held);
    }
    // Running again: reads succeed. The last hold caught a write half
    // done, and letting it go only makes the publisher runnable: on a loaded
    // machine it may not run for longer than the reader's stuck bound, and
    // a reader then rightly says `WriterStuck`. So: the write finishes (the
    // slot's sequence moves), then a read gives a whole frame, with only
    // `WriterStuck` (a publisher still waiting for the CPU) or `Overwritten`
    // in between. `Overwritten` is the other documented "try again": the
    // publisher, running again, rewrites this one slot without a pause, and
    // a reader held off the CPU during every copy for the whole bound gives
    // that read up (seen on a loaded CI machine: waited 206 ms).
    let stuck_at = peek.seq();
    let end = Instant::now() + Duration::from_secs(120);
    while peek.seq() == stuck_at {
        assert!(
            Instant::now() < end,
            "the publisher never finished its write after it was let go"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let (mut stuck_again, mut overwritten) = (0u32, 0u32);
    let s = loop {
        match sub.latest() {
            Ok(Some(s)) => break s,
            Err(ReadError::WriterStuck { pid: p, .. }) if Instant::now() < end => {
                assert_eq!(p, pid.as_raw());
                stuck_again += 1;
            }
            Err(ReadError::Overwritten { .. }) if Instant::now() < end => overwritten += 1,
            other => panic!("running again: expected a whole frame, got {other:?}"),
        }
    };
    assert!(s.value.is_whole(), "torn frame accepted: {:?}", s.value);
    println!(
        "FIGURE sigstop: {caught} held mid-write -> WriterStuck (slowest report {worst:?}; last held {}), {whole} between writes -> whole frame (last held {}), 0 torn, 0 hangs; resumed: {stuck_again} stuck and {overwritten} overwritten report(s) before the first whole frame",
        how.1, how.0
    );
}

/// `ipcrm` while a publisher and subscribers (one in-process, one another
/// process) are attached: everyone keeps working on their mapping, the
/// subscribers report the removal, the key is free at once, the attach count
/// drops as they detach, and the segment is gone after the last one.
#[test]
fn removed_segment_lives_until_the_last_detach() {
    watchdog(
        "removed_segment_lives_until_the_last_detach",
        Duration::from_secs(120),
    );
    // Exact attach counts: nothing outside this test may attach.
    shmbus_testkit::private_ipc();
    let (topic, _g) = unique_topic("removed");
    let topic = topic.slots(8);
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    publisher.publish(&Check::new(1)).unwrap();
    let mut sub1 = Subscriber::<Check>::attach(&topic).unwrap();
    let mut sub2 = Subscriber::<Check>::attach(&topic).unwrap();
    let mut kid = spawn_kid("subscriber-loop", &topic_args(&topic), None);
    assert_eq!(kid.line(), "READY");
    let shmid = publisher.raw().shmid();
    let nattch = |want: u64| settled_nattch(shmid, want);
    assert_eq!(nattch(4), Ok(4));

    sys::shm_remove(shmid).unwrap(); // what `ipcrm -m` does
    assert!(
        no_segment_at(topic.key),
        "the key must be free after removal"
    );
    assert!(sub1.is_removed() && sub2.is_removed());
    for g in 2..=4 {
        assert_eq!(publisher.publish(&Check::new(g)).unwrap(), g);
    }
    assert_eq!(sub1.latest().unwrap().unwrap().value, Check::new(4));
    for g in 2..=4 {
        match sub2.next().unwrap() {
            Next::Frame(s) => assert_eq!(s.value, Check::new(g)),
            other => panic!("{other:?}"),
        }
    }
    publisher.publish(&Check::new(5)).unwrap();
    assert_eq!(
        sub2.wait_latest(Duration::from_secs(10)).unwrap().value,
        Check::new(5)
    );
    assert_eq!(
        sub1.wait_latest(Duration::from_secs(10)).unwrap().value,
        Check::new(5)
    );
    // Nothing new and the segment removed: the wait ends with Removed.
    let t = Instant::now();
    assert_eq!(
        sub1.wait_latest(Duration::from_secs(10)),
        Err(WaitError::Removed)
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "Removed must come before the timeout"
    );

    drop(kid);
    assert_eq!(nattch(3), Ok(3));
    drop(sub2);
    assert_eq!(nattch(2), Ok(2));
    drop(publisher);
    // Through the subscriber's own handle, polled like `nattch` above: read
    // once, a sibling thread's fork could show 2 (as it did in CI).
    let stat = shmbus_testkit::settled(
        || sub1.raw().segment().stat(),
        |s| matches!(s, Ok(s) if s.nattch == 1),
    );
    assert!(
        matches!(stat, Ok(s) if s.removed() && s.nattch == 1),
        "{stat:?}"
    );
    drop(sub1);
    assert!(
        sys::shm_stat(shmid).is_err(),
        "segment must disappear with the last detach"
    );
    let listed = shmbus_core::sysvipc::segments()
        .unwrap()
        .iter()
        .any(|e| e.id() == shmid);
    assert!(!listed, "shmid {shmid} still in /proc/sysvipc/shm");
}

/// SIGKILL a subscriber process while attached, many times: the publisher
/// and another subscriber see nothing (no error, no missed frame) and the
/// attach count goes back down every time.
#[test]
fn killed_subscribers_affect_no_one() {
    watchdog("killed_subscribers_affect_no_one", Duration::from_secs(600));
    // Exact attach counts: nothing outside this test may attach.
    shmbus_testkit::private_ipc();
    let (topic, _g) = unique_topic("kill-subscriber");
    let topic = topic.slots(64);
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    let shmid = publisher.raw().shmid();
    let nattch = |want: u64| settled_nattch(shmid, want);
    let kills = scaled(100);
    let mut g = 0;
    for _ in 0..kills {
        let mut kid = spawn_kid("subscriber-loop", &topic_args(&topic), None);
        for _ in 0..3 {
            g += 1;
            publisher.publish(&Check::new(g)).unwrap();
        }
        assert_eq!(kid.line(), "READY");
        assert_eq!(nattch(3), Ok(3));
        kill(Pid::from_raw(kid.pid()), Signal::SIGKILL).unwrap();
        let status = kid.child.0.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(nattch(2), Ok(2));
        g += 1;
        publisher.publish(&Check::new(g)).unwrap();
        for want in g - 3..=g {
            match sub.next().unwrap() {
                Next::Frame(s) => assert_eq!(s.value, Check::new(want)),
                other => panic!("frame {want}: {other:?}"),
            }
        }
        assert!(sub.publisher().is_alive());
    }
    println!(
        "FIGURE kill-subscriber: {kills} subscriber SIGKILLs: {g} frames all delivered in order, 0 missed, nattch back to 2 every time"
    );
}

/// Root. An ordinary user with `RLIMIT_MEMLOCK` 0: lock policy "required"
/// fails with `LockDenied` naming the limit and the fixes, and leaves no
/// segment behind; "try" opens and reports the refusal.
#[test]
fn memlock_limit_is_named_with_its_fix() {
    if !root_or_skip("memlock_limit_is_named_with_its_fix") {
        return;
    }
    watchdog(
        "memlock_limit_is_named_with_its_fix",
        Duration::from_secs(120),
    );
    let (topic, _g) = unique_topic("memlock");
    let mut args = topic_args(&topic.clone().lock(LockPolicy::Required));
    args.push("memlock0".into());
    let (_, lines) = run_kid("publish", &args, Some((SENSOR_UID, SENSOR_GID)));
    let (err, msg) = expect_err(&lines);
    assert!(
        err.starts_with("LockDenied") && err.contains("memlock_limit: 0"),
        "{err}"
    );
    for needle in [
        "RLIMIT_MEMLOCK is 0 bytes",
        "ulimit -l",
        "LimitMEMLOCK=",
        "CAP_IPC_LOCK",
        "lock = \"try\"",
    ] {
        assert!(msg.contains(needle), "message lacks {needle:?}: {msg}");
    }
    assert!(
        no_segment_at(topic.key),
        "a refused open must not leave a segment"
    );

    let mut args = topic_args(&topic.clone().lock(LockPolicy::Try));
    args.push("memlock0".into());
    let mut kid = spawn_kid("publish", &args, Some((SENSOR_UID, SENSOR_GID)));
    let line = kid.line();
    assert!(
        line.starts_with("OK lock=Refused(LockDenied {") && line.contains("memlock_limit: 0"),
        "{line}"
    );
    let st = stat_key(topic.key);
    assert!(!st.locked(), "the segment must not be locked");
    drop(kid.finish());
}

/// Root. `kernel.shmmax`, `shmmni` and `shmall` lowered for real, in a
/// private IPC namespace (so the machine's own limits are untouched): each
/// gives its named error whose message names the limit and the fix, and the
/// topic opens again once the limit is restored. The board repeats this on
/// the real ARM kernel (`crates/shmbus-board/src/hardening.rs`).
#[test]
fn system_limits_are_named_with_their_fix() {
    if !root_or_skip("system_limits_are_named_with_their_fix") {
        return;
    }
    watchdog(
        "system_limits_are_named_with_their_fix",
        Duration::from_secs(120),
    );
    let (status, lines) = run_kid("limits", &[], None);
    assert!(status.success(), "{status:?}: {lines:?}");
    let expect = [
        (
            "shmmax",
            "TooLarge",
            "exceeds kernel.shmmax: raise it (sysctl -w kernel.shmmax=...)",
        ),
        (
            "shmmni",
            "SystemLimit",
            "kernel.shmmni (number of segments)",
        ),
        ("shmall", "SystemLimit", "kernel.shmall (total pages)"),
    ];
    for (name, variant, needle) in expect {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")) && !l.contains("restored"))
            .unwrap_or_else(|| panic!("no result for {name}: {lines:?}"));
        assert!(line.starts_with(&format!("{name} {variant} {{")), "{line}");
        assert!(line.contains(needle) && line.contains("sysctl"), "{line}");
        // Only the limit that was hit is named.
        let other = match name {
            "shmmni" => Some("kernel.shmall"),
            "shmall" => Some("kernel.shmmni"),
            _ => None,
        };
        if let Some(other) = other {
            assert!(!line.contains(other), "names {other} too: {line}");
        }
        assert!(
            lines.contains(&format!("{name} restored open_ok=true")),
            "{lines:?}"
        );
    }
}

/// Ages come from `CLOCK_MONOTONIC`: a frame stamped with a wall-clock time
/// ten years off (a clock step between publisher and reader) still has its
/// true age, and the wall-clock stamp is passed through untouched.
#[test]
fn ages_ignore_the_wall_clock() {
    watchdog("ages_ignore_the_wall_clock", Duration::from_secs(60));
    let (topic, _g) = unique_topic("clock");
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    let ten_years = 10 * 365 * 86_400 * 1_000_000_000u64;
    let now_real = sys::realtime_ns();
    // An age is at most the monotonic time since the stamp, read after it:
    // exact, where "under 5 s" was a bound on how soon this thread runs.
    let since = |stamp: u64| Duration::from_nanos(sys::monotonic_ns() - stamp);
    for real in [now_real - ten_years, now_real + ten_years, 0] {
        let stamp = sys::monotonic_ns();
        publisher.publish_at(&Check::new(1), stamp, real).unwrap();
        let s = sub.latest().unwrap().unwrap();
        assert_eq!(s.real_ns, real);
        let age = s.age();
        assert!(age <= since(stamp), "age {age:?} follows the wall clock");
        let age = sub.age().unwrap();
        assert!(age <= since(stamp), "age {age:?} follows the wall clock");
    }
    // A frame stamped 5 s ago on the monotonic clock is 5 s old, whatever
    // the wall clock says.
    let five = 5_000_000_000;
    let stamp = sys::monotonic_ns() - five;
    publisher
        .publish_at(&Check::new(2), stamp, now_real + ten_years)
        .unwrap();
    let age = sub.latest().unwrap().unwrap().age();
    assert!(
        age >= Duration::from_secs(5) && age <= since(stamp),
        "{age:?}"
    );
    // A stamp in the future (another clock) gives age 0, not a panic.
    publisher
        .publish_at(&Check::new(3), sys::monotonic_ns() + ten_years, now_real)
        .unwrap();
    assert_eq!(sub.latest().unwrap().unwrap().age(), Duration::ZERO);
}

/// `Guard` is used by every test above; this checks it removes a segment
/// and a lock created at its key, so the tests above leave nothing behind.
#[test]
fn guard_removes_what_a_test_left() {
    let key = unique_key("guard");
    {
        let _g = Guard(key);
        let _p = Publisher::<Check>::open(&Topic::new("test/guard").key(key)).unwrap();
    }
    assert!(no_segment_at(key));
    assert_eq!(
        shmbus_core::lock::publisher_status(key),
        shmbus_core::PublisherStatus::NoLock
    );
}

/// A topic whose publisher restarted with a narrower mode under an
/// attached reader of another uid: see [`shut_out`].
struct ShutOut {
    topic: Topic,
    _guard: Guard,
    /// The reader (uid `READER_UID`), attached while the mode was 0644.
    reader: Kid,
    /// The second publisher (mode 0640, the sensor's group), alive; it
    /// published `Check::new(1)` as generation 2.
    second: Kid,
}

/// Root. A publisher (uid `SENSOR_UID`, mode 0644) publishes one frame; a
/// reader child in `reader_role` attaches as `READER_UID`; the publisher
/// exits and a second one opens the topic with mode 0640 and the sensor's
/// group, which shuts the reader out of the publisher lock and of
/// `IPC_STAT` (its mapping stays).
fn shut_out(test: &str, reader_role: &str) -> ShutOut {
    let (topic, guard) = unique_topic(test);
    let topic = topic.mode(0o644);
    let mut first = spawn_kid(
        "publish",
        &topic_args(&topic),
        Some((SENSOR_UID, SENSOR_GID)),
    );
    assert!(first.line().starts_with("OK"));
    let mut reader = spawn_kid(
        reader_role,
        &topic_args(&topic),
        Some((READER_UID, READER_UID)),
    );
    assert_eq!(reader.line(), "ATTACHED");
    let (st, _) = first.finish();
    assert!(st.success(), "{st:?}");
    let narrowed = topic.clone().mode(0o640).group(SENSOR_GID);
    let mut second = spawn_kid(
        "publish",
        &topic_args(&narrowed),
        Some((SENSOR_UID, SENSOR_GID)),
    );
    assert!(second.line().starts_with("OK"));
    ShutOut {
        topic,
        _guard: guard,
        reader,
        second,
    }
}

/// Root. A publisher restarted with a narrower mode (0644 -> 0640, group
/// the sensor's) while a subscriber of another uid is attached: the
/// subscriber keeps its mapping and reads the frame already published, but
/// can no longer read the publisher lock. Its wait said `LockUnreadable`,
/// "no publisher can run while it is there; ... remove it as root
/// (`ipcrm -S`)": the topic's own lock of a live publisher, whose removal
/// would let a second publisher write the topic. Now `AccessLost`, naming
/// the new owner, group and mode, and no removal.
#[test]
fn a_subscriber_shut_out_by_a_mode_change_is_told_so() {
    if !root_or_skip("a_subscriber_shut_out_by_a_mode_change_is_told_so") {
        return;
    }
    watchdog(
        "a_subscriber_shut_out_by_a_mode_change_is_told_so",
        Duration::from_secs(120),
    );
    let ShutOut {
        topic: _topic,
        _guard,
        mut reader,
        second,
    } = shut_out("mode-narrowed", "attach-then-wait");
    writeln!(reader.child.0.stdin.as_mut().unwrap(), "go").unwrap();
    // The frame the second publisher published is still delivered.
    assert!(reader.line().starts_with("FRAME Frame"), "no frame first");
    let (_, lines) = reader.finish();
    let (err, msg) = expect_err(&lines);
    eprintln!("mode narrowed under a subscriber, wait -> {msg}");
    assert!(err.starts_with("AccessLost"), "{err}");
    assert!(!msg.contains("ipcrm"), "{msg}");
    assert!(
        msg.contains(&format!(
            "owner uid {SENSOR_UID}, group {SENSOR_GID}, mode 640"
        )),
        "{msg}"
    );
    drop(second);
}

/// Root. A subscriber shut out of the publisher lock by a mode change (as
/// above) finds the newest slot mid-write: it said `PublisherDied` at its
/// first few odd looks (microseconds), of a publisher that was alive and,
/// as far as it could know, in the middle of a publish. Now it gives the
/// slot as long as it gives a live publisher (`set_stuck_after`), then says
/// `WriterStuck` naming the header's publisher pid while that process
/// exists, and `PublisherDied` once it is gone.
#[test]
fn a_slot_mid_write_under_an_unreadable_lock_is_not_a_dead_publisher() {
    let name = "a_slot_mid_write_under_an_unreadable_lock_is_not_a_dead_publisher";
    if !root_or_skip(name) {
        return;
    }
    watchdog(name, Duration::from_secs(120));
    let ShutOut {
        topic,
        _guard,
        mut reader,
        second,
    } = shut_out("mode-narrowed-odd", "attach-then-read");
    let pid = i32::try_from(second.child.0.id()).expect("pid");
    // The newest slot mid-write, as in the middle of a publish over it.
    let seg = Segment::attach(&topic).expect("root attaches");
    let g = seg.generation();
    assert_eq!(g, 2, "each publisher published one frame");
    let att = WriteAttachment::read_write(seg.shmid()).expect("attach read-write");
    let off = seg.info().geometry.slot_offset(g);
    let seq = &att.atomic_words(off, 1).expect("the slot's sequence word")[0];
    seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    // The reader's answer: `OK ...`, or `ERR <Debug>` (its `MSG` line
    // read too).
    let ask = |reader: &mut Kid| ask_kid(reader, "go");
    let alive = ask(&mut reader);
    eprintln!("mid-write, publisher alive, lock unreadable -> {alive}");
    assert!(
        alive.starts_with(&format!("ERR WriterStuck {{ pid: {pid},")),
        "{alive}"
    );
    drop(second); // SIGKILL, reaped
    let gone = ask(&mut reader);
    eprintln!("mid-write, publisher killed, lock unreadable -> {gone}");
    assert_eq!(gone, "ERR PublisherDied");
    // The slot complete again: the frame is read.
    seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    // (Each publisher published `Check::new(1)`.)
    assert_eq!(ask(&mut reader), "OK latest=Some(1)");
}

/// Send `line` to a child; its answer: `OK ...`, `REMOVED ...`, or
/// `ERR <Debug>` (its `MSG` line read too and shown).
fn ask_kid(kid: &mut Kid, line: &str) -> String {
    writeln!(kid.child.0.stdin.as_mut().unwrap(), "{line}").unwrap();
    let l = kid.line();
    if l.starts_with("ERR") {
        let msg = kid.line();
        eprintln!("  {msg}");
    }
    l
}

/// Root. A subscriber shut out by a mode change (as above) cannot stat the
/// segment any more: `is_removed()` answered false for a segment removed
/// under it (its `IPC_STAT` fails with `EACCES`), and its wait ended with
/// `AccessLost` instead of `Removed`. It now reads `/proc/sysvipc/shm`.
#[test]
fn a_subscriber_shut_out_by_a_mode_change_still_sees_a_removal() {
    let name = "a_subscriber_shut_out_by_a_mode_change_still_sees_a_removal";
    if !root_or_skip(name) {
        return;
    }
    watchdog(name, Duration::from_secs(120));
    let ShutOut {
        topic,
        _guard,
        mut reader,
        second,
    } = shut_out("mode-narrowed-rm", "attach-then-read");
    assert_eq!(ask_kid(&mut reader, "removed?"), "REMOVED false");
    let shmid = Segment::attach(&topic).expect("root attaches").shmid();
    sys::shm_remove(shmid).expect("IPC_RMID");
    assert_eq!(ask_kid(&mut reader, "removed?"), "REMOVED true");
    // The frame the second publisher published first, then the removal.
    assert!(ask_kid(&mut reader, "wait").starts_with("OK Frame"));
    assert_eq!(ask_kid(&mut reader, "wait"), "ERR Removed");
    drop(second);
}

/// Another program's semaphore set at a topic's key (a set of three, as an
/// `ftok(path, 'S')` pair keeps beside its memory; 'S' is the top byte of
/// the keys shmbus derives from names) is no publisher lock. Before, a
/// publisher of the same uid took its semaphore 0 as its lock and created
/// the topic; readers took that semaphore's value for the publisher's
/// liveness, called the program's zeroed memory a topic being created
/// (`NotReady`, waited for), and `remove_lock` (the cleanup of `shmbus rm`
/// and of a failed open) removed the set.
#[test]
fn another_programs_semaphores_at_a_topics_key_are_no_publisher_lock() {
    watchdog("foreign-semaphores", Duration::from_secs(120));
    let (topic, _g) = unique_topic("foreign-semaphores");
    let key = topic.key;
    // SAFETY: semget takes plain integers and touches no memory.
    let semid = unsafe { libc::semget(key, 3, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
    assert!(semid >= 0, "semget: {}", std::io::Error::last_os_error());
    let untouched = |when: &str| {
        assert_eq!(
            sys::sem_lookup(key).ok(),
            Some(semid),
            "{when}: the set stays"
        );
        // Nobody changed semaphore 0: its value is 0, its last pid none.
        assert_eq!(sys::sem_getval(semid).ok(), Some(0), "{when}");
        assert_eq!(sys::sem_getpid(semid).ok(), Some(0), "{when}");
    };

    match Publisher::<Check>::open(&topic) {
        Err(OpenError::ForeignSemaphores { key: k, nsems: 3 }) => assert_eq!(k, key),
        other => panic!("a publisher must refuse the set, got {other:?}"),
    }
    assert_eq!(
        sys::shmget(key, 0, 0).map_err(|e| e.errno),
        Err(Errno::ENOENT),
        "no segment was created"
    );
    let text = Publisher::<Check>::open(&topic).err().unwrap().to_string();
    assert!(
        text.contains("a set of 3 semaphores, not a shmbus publisher lock"),
        "{text}"
    );
    untouched("after the publisher's open");

    assert_eq!(
        shmbus_core::lock::publisher_status(key),
        shmbus_core::lock::PublisherStatus::NoLock
    );
    assert_eq!(shmbus_core::lock::remove_lock(key), Ok(false));
    assert!(matches!(
        shmbus_core::lock::hold_for_removal(key),
        shmbus_core::lock::RemovalHold::NoLock
    ));
    untouched("after the status, remove_lock and hold_for_removal");

    // The program's memory beside it, still zeros: not a topic being
    // created, whatever semaphores sit at its key.
    let shmid = sys::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).unwrap();
    match Segment::attach(&topic) {
        Err(OpenError::NotShmbus { key: k, magic: 0 }) => assert_eq!(k, key),
        other => panic!("zeros beside foreign semaphores are not a topic: {other:?}"),
    }
    match Publisher::<Check>::open(&topic) {
        Err(OpenError::ForeignSemaphores { nsems: 3, .. }) => {}
        other => panic!("a publisher must refuse the set, got {other:?}"),
    }
    assert!(
        segment_bytes(key).iter().all(|&b| b == 0),
        "the program's memory was written"
    );
    assert_eq!(sys::shmget(key, 0, 0).ok(), Some(shmid));
    untouched("at the end");
}

/// Root: zeros beside a publisher lock that another user made are not a
/// topic being created. A publisher creates its lock and then its segment,
/// both as its own user, and never takes a lock another user made; so a
/// zero segment whose lock another user created is another program's
/// memory (an `ftok` pair of two users, or a squatter's semaphore beside a
/// program's memory). Readers used to call it `NotReady` and wait for it
/// (a blocking attach until its deadline), and the CLI had to correct
/// core's verdict itself. The same user's lock and zeros stay a topic
/// being created (the control at the end).
#[test]
fn zeros_beside_another_users_lock_are_not_a_topic_being_created() {
    if !root_or_skip("zeros_beside_another_users_lock_are_not_a_topic_being_created") {
        return;
    }
    watchdog("zeros-other-lock", Duration::from_secs(120));
    let is_foreign = |topic: &Topic, case: &str| {
        match Segment::attach(topic) {
            Err(OpenError::NotShmbus { key, magic: 0 }) => assert_eq!(key, topic.key),
            other => panic!("{case}: not a topic being created: {other:?}"),
        }
        match Subscriber::<Check>::wait_for_topic(topic, Duration::from_secs(2)) {
            Err(OpenError::NotShmbus { magic: 0, .. }) => {}
            other => panic!("{case}: a wait must not wait for it: {other:?}"),
        }
        assert!(
            segment_bytes(topic.key).iter().all(|&b| b == 0),
            "{case}: the memory was written"
        );
    };

    // The lock is another user's (held, as a squatter's), the zeros ours.
    let (topic, _g) = unique_topic("zeros-other-lock");
    let (_, lines) = run_kid(
        "squat-sem",
        &[topic.key.to_string(), "600".into()],
        Some((INTRUDER_UID, INTRUDER_GID)),
    );
    assert!(lines[0].starts_with("SQUATTED"), "{lines:?}");
    sys::shmget(topic.key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o644).unwrap();
    is_foreign(&topic, "another user's lock");

    // The zeros are another user's, the lock ours (free, left behind).
    let (topic, _g2) = unique_topic("zeros-other-seg");
    let mut lock = shmbus_core::lock::PublisherLock::acquire(topic.key, 0o600, None).unwrap();
    lock.keep();
    drop(lock);
    let (_, lines) = run_kid(
        "squat-shm",
        &[topic.key.to_string(), "644".into(), hex(&[0; 4096])],
        Some((INTRUDER_UID, INTRUDER_GID)),
    );
    assert_eq!(lines, vec!["SQUATTED".to_string()]);
    is_foreign(&topic, "another user's zeros");

    // Control: our lock and our zeros are what a publisher killed between
    // `shmget` and storing the magic leaves.
    let shmid = sys::shmget(topic.key, 0, 0).unwrap();
    sys::shm_remove(shmid).unwrap();
    sys::shmget(topic.key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o644).unwrap();
    match Segment::attach(&topic) {
        Err(OpenError::NotReady {
            publisher_alive: false,
            ..
        }) => {}
        other => panic!("the same user's lock and zeros are a topic being created: {other:?}"),
    }
}

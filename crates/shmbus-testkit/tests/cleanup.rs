//! The test kit's own cleanup, where no guard can run: a test process that
//! dies by SIGKILL takes its child roles with it, and one the watchdog
//! aborts removes the objects at its keys first. And its ways to tell that
//! a process attached, which a sibling thread's fork must not fool.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use shmbus_core::sys;
use shmbus_testkit::{
    Guard, KillOnDrop, child, remove_key, role, settled, unique_key, wait_mapped, watchdog,
};

/// Generous: a loaded machine, or every process under qemu-arm.
const LONG: Duration = Duration::from_secs(60);

/// What follows `prefix` on the first line of the child's output that holds
/// it (libtest prints its own text first, on the same line too); empty if
/// the child printed none.
fn line_with(c: &mut std::process::Child, prefix: &str) -> String {
    let out = c.stdout.take().expect("piped stdout");
    BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest.to_string()))
        .unwrap_or_default()
}

/// Start child role `role` and read the number it prints after `prefix`.
fn spawn_reporting(role: &str, prefix: &str) -> (KillOnDrop, i32) {
    let mut c = KillOnDrop(
        child(role, &[])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {role}: {e}")),
    );
    let line = line_with(&mut c.0, prefix);
    let n = line
        .parse()
        .unwrap_or_else(|_| panic!("{role} printed {line:?} after {prefix:?}"));
    (c, n)
}

/// True once `pid` is gone or a zombie ([`shmbus_testkit::process_gone`]).
fn dead(pid: i32) -> bool {
    shmbus_testkit::process_gone(pid as u32)
}

/// Kills a process that is not our child (a grandchild) on drop, so a
/// failing test leaves nothing running.
struct KillPid(i32);

impl Drop for KillPid {
    fn drop(&mut self) {
        if !dead(self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn a_child_role_dies_when_its_test_process_is_killed() {
    if role().is_some() {
        return;
    }
    watchdog("pdeathsig test", Duration::from_secs(300));
    // The "middle" process plays a test process: it starts a child role
    // and reports the child's pid, then we SIGKILL it (no guard runs).
    let (mut middle, pid) = spawn_reporting("middle", "sleeper ");
    let _sleeper = KillPid(pid);
    assert!(!dead(pid), "the sleeper runs before its parent is killed");
    middle.0.kill().expect("SIGKILL the middle process");
    middle.0.wait().expect("reap the middle process");
    let t0 = Instant::now();
    while !dead(pid) {
        assert!(
            t0.elapsed() < LONG,
            "the child role {pid} still runs {LONG:?} after its parent died"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes a directory when dropped (the one the aborted child left, if
/// the watchdog did not).
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_watchdogs_abort_removes_the_segments_at_its_keys_and_its_temp_dirs() {
    if role().is_some() {
        return;
    }
    watchdog("watchdog cleanup test", Duration::from_secs(300));
    // Run as libtest runs a test by default, with its output captured
    // (`child` passes --nocapture): the watchdog's word must get out all
    // the same.
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = shmbus_testkit::command(exe);
    cmd.args(["--exact", "child_role_entry", "--test-threads=1"])
        .env("SHMBUS_ROLE", "abort-holding")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    shmbus_testkit::dies_with_parent(&mut cmd);
    let mut c = KillOnDrop(cmd.spawn().expect("spawn abort-holding"));
    let mut stderr = c.0.stderr.take().expect("piped stderr");
    let said = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let line = line_with(&mut c.0, "dir ");
    let (dir, keys) = line
        .split_once(" key ")
        .unwrap_or_else(|| panic!("abort-holding printed {line:?}"));
    let (key, family_key) = keys
        .split_once(" family ")
        .unwrap_or_else(|| panic!("abort-holding printed {line:?}"));
    let key: i32 = key.parse().expect("a key");
    let family_key: i32 = family_key.parse().expect("a key");
    // Remove the segments and the directory if the watchdog did not.
    let _guard = Guard(key);
    let _family_guard = Guard(family_key);
    let dir = RemoveDir(dir.into());
    assert!(dir.0.join("data").exists(), "the child made {:?}", dir.0);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = c.0.try_wait().expect("wait for the child") {
            break s;
        }
        assert!(t0.elapsed() < LONG, "the child was not aborted");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "the watchdog aborts: {status:?}");
    let said = said.join().expect("stderr reader");
    assert!(
        said.contains("WATCHDOG: 'abort-holding' still running after"),
        "the watchdog says why it aborts, also under libtest's capture: {said:?}"
    );
    for k in [key, family_key] {
        assert_eq!(
            sys::shmget(k, 0, 0).err().map(|e| e.errno),
            Some(sys::Errno::ENOENT),
            "the aborted child's segment at {k:#x} is gone"
        );
    }
    assert!(!dir.0.exists(), "the aborted child's {:?} is gone", dir.0);
}

/// A fork adds an attachment to every segment the process has mapped, until
/// the child execs or exits: why exact counts are polled with `settled` and
/// "a child attached" is read from the child's own maps with `wait_mapped`.
#[test]
fn forks_count_as_attachments_and_wait_mapped_sees_real_ones() {
    if role().is_some() {
        return;
    }
    watchdog("attachment counts test", Duration::from_secs(300));
    let key = unique_key("fork-counts");
    let _guard = Guard(key);
    let id = sys::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).expect("create");
    let _ours = sys::Attachment::read_only(id).expect("attach");
    let nattch = || sys::shm_stat(id).map(|s| s.nattch).map_err(|e| e.errno);
    assert_eq!(settled(nattch, |n| *n == Ok(1)), Ok(1));

    // SAFETY: the child only calls pause and _exit, both async-signal-safe,
    // as a child of a multi-threaded process must; the parent kills it.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        loop {
            // SAFETY: async-signal-safe; the parent's SIGKILL ends it.
            unsafe { libc::pause() };
        }
    }
    assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
    let forked = KillPid(pid);
    assert_eq!(
        settled(nattch, |n| *n == Ok(2)),
        Ok(2),
        "the fork copied our mapping"
    );
    drop(forked);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    assert_eq!(
        settled(nattch, |n| *n == Ok(1)),
        Ok(1),
        "back to ours alone"
    );
    let gone = wait_mapped(pid as u32, key).expect_err("a reaped process maps nothing");
    assert!(gone.contains(&pid.to_string()), "{gone}");

    // A child that exits without attaching and is not reaped yet (a
    // zombie, whose maps read empty): said at once, not after the
    // watchdog, and not as "did not attach within 30s".
    // SAFETY: the child calls only _exit, async-signal-safe.
    let zombie = unsafe { libc::fork() };
    if zombie == 0 {
        // SAFETY: async-signal-safe; ends the child at once.
        unsafe { libc::_exit(0) };
    }
    assert!(zombie > 0, "fork: {}", std::io::Error::last_os_error());
    // Another key than ours: the fork copied our mapping of `key`.
    let never = unique_key("fork-counts-zombie");
    let why = wait_mapped(zombie as u32, never).expect_err("a zombie maps nothing");
    assert!(why.contains("exited before it attached"), "{why}");
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(zombie), None);

    // A child that attaches by itself, after its exec: seen in its maps.
    let mut c = KillOnDrop(
        child("attach-key", &[key.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn attach-key"),
    );
    wait_mapped(c.0.id(), key).expect("the child attached");
    assert_eq!(line_with(&mut c.0, "attached "), id.to_string());
    assert_eq!(settled(nattch, |n| *n == Ok(2)), Ok(2));
}

/// Entry point of the children (see `shmbus_testkit::child`).
#[test]
fn child_role_entry() {
    let Some((role, args)) = role() else { return };
    match role.as_str() {
        "middle" => {
            watchdog("middle", LONG * 2);
            let mut sleeper = child("sleeper", &[])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn the sleeper");
            println!("sleeper {}", line_with(&mut sleeper, "pid "));
            std::thread::sleep(LONG * 2);
        }
        "sleeper" => {
            watchdog("sleeper", LONG * 2);
            println!("pid {}", std::process::id());
            std::thread::sleep(LONG * 2);
        }
        "abort-holding" => {
            let key = unique_key("abort-holding");
            // A key of another family, as the Foxglove tests use.
            let family_key = shmbus_testkit::unique_key_family(0x7a, "abort-holding");
            let dir = shmbus_testkit::TempDir::new("abort-holding");
            std::fs::write(dir.join("data"), b"left by a test").expect("write in the temp dir");
            for k in [key, family_key] {
                if let Err(e) = sys::shmget(k, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) {
                    remove_key(key);
                    remove_key(family_key);
                    panic!("create a segment at {k:#x}: {e}");
                }
            }
            // Past libtest's capture (this role runs without --nocapture).
            std::io::Write::write_all(
                &mut std::io::stdout(),
                format!(
                    "dir {} key {key} family {family_key}\n",
                    dir.path().display()
                )
                .as_bytes(),
            )
            .expect("write to stdout");
            // Nothing removes it but the watchdog.
            watchdog("abort-holding", Duration::from_millis(200));
            std::thread::sleep(LONG);
        }
        "attach-key" => {
            watchdog("attach-key", LONG * 2);
            let key: i32 = args[0].parse().expect("a key");
            let id = sys::shmget(key, 0, 0).expect("the segment exists");
            let _att = sys::Attachment::read_only(id).expect("attach");
            println!("attached {id}");
            std::thread::sleep(LONG * 2);
        }
        _ => panic!("unknown role {role}"),
    }
}

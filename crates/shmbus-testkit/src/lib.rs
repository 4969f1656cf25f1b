//! Test support for shmbus: keys that cannot collide with another test or
//! test process, guards that remove System V objects even when a test
//! fails, child processes that work natively and under `qemu-arm`, and a
//! watchdog so no test can hang.
#![warn(missing_docs)]

mod caught;
pub mod docs;
pub mod steady;
pub mod ws;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use caught::Caught;
use serde::{Deserialize, Serialize};
use shmbus_core::Topic;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Every key [`unique_key`] handed out in this process: what the
/// [`watchdog`] removes before it aborts, when no guard can run.
static HANDED_OUT: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// The [`TempDir`]s of this process not dropped yet: the watchdog removes
/// them before it aborts (an abort runs no destructor).
static LIVE_TEMP_DIRS: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());

/// The values in `m`, also after a thread panicked while holding it.
fn locked<T: Clone>(m: &Mutex<Vec<T>>) -> Vec<T> {
    m.lock()
        .map(|v| v.clone())
        .unwrap_or_else(|e| e.into_inner().clone())
}

/// `SHMBUS_STRESS_SCALE`: how much of a stress or random-case test to run.
/// 1 unless set; the armv7 suite under qemu-arm sets 0.05, a stress run
/// more than 1. A value that is not a positive number counts as 1.
pub fn stress_scale() -> f64 {
    std::env::var("SHMBUS_STRESS_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(1.0)
}

/// A key for a test: `0x7e` in the top byte, then 24 bits hashed from the
/// test name, this process's pid and a per-process counter. Two tests (or
/// two concurrent test runs) get different keys; [`Guard`] removes
/// whatever was created at it.
pub fn unique_key(test: &str) -> i32 {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h: u32 = 0x811c_9dc5;
    for b in test
        .bytes()
        .chain(std::process::id().to_le_bytes())
        .chain(n.to_le_bytes())
    {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    unique_key_in(0x7e, h)
}

/// The key with top byte `top` and the low 24 bits of `h`, recorded for
/// the [`watchdog`] to remove.
fn unique_key_in(top: u8, h: u32) -> i32 {
    let key = ((u32::from(top) << 24) | (h & 0x00ff_ffff)) as i32;
    HANDED_OUT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(key);
    key
}

/// A key as [`unique_key`] gives, with `top` as its top byte instead of
/// `0x7e`: for tests whose program is told to serve one family of keys
/// only (the Foxglove server's tests use `0x7a`). The [`watchdog`] removes
/// what was created at it before it aborts, as for [`unique_key`]'s keys:
/// a key derived from one by hand is unknown to it, and an aborted run
/// left every topic made at such keys behind.
pub fn unique_key_family(top: u8, test: &str) -> i32 {
    let low = unique_key(test) as u32 & 0x00ff_ffff;
    unique_key_in(top, low)
}

/// Move the calling thread, and every process it starts from now on, into a
/// private System V IPC namespace (`unshare(CLONE_NEWIPC)`), when allowed
/// (root, as in CI). Returns false, changing nothing, when not allowed.
///
/// For tests that count attachments or list every object: a tool another
/// user or another test run has open at the same time (`shmbus top`, a
/// recorder or a Foxglove server attach every readable topic) would change
/// the count. Unique keys keep tests apart; only a namespace keeps them apart
/// from everything else. Objects left in it vanish with the namespace.
/// Forks of this process still add attachments for a moment: see [`settled`].
pub fn private_ipc() -> bool {
    // SAFETY: unshare takes a flag word and touches no memory of ours; the
    // IPC namespace is per thread, so other test threads are unaffected.
    unsafe { libc::unshare(libc::CLONE_NEWIPC) == 0 }
}

/// How long [`settled`] and [`wait_mapped`] wait.
const SETTLE: Duration = Duration::from_secs(30);

/// Read a value until `done` holds for it, or for 30 s; return the last read.
///
/// For exact attachment counts (`shm_nattch`). A private namespace
/// ([`private_ipc`]) keeps other processes out, but not this process: a fork
/// by any thread copies every mapping of the process and adds one attachment
/// to each mapped segment until the child execs, and test threads fork all
/// the time (a child with a `pre_exec` hook, as [`dies_with_parent`] sets up,
/// is started by fork, not by `posix_spawn`). Read once, a count can be one
/// too high; polled, the real count shows between forks. Assert on what this
/// returns, so a count that never settles still fails with its value.
pub fn settled<T>(mut read: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let v = read();
        if done(&v) || std::time::Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Wait (at most 30 s) until process `pid` has the segment at `key` mapped,
/// as `/proc/PID/maps` shows it (`/SYSV<key>`). Fails at once, not after
/// the watchdog, if the process exits first (a zombie's maps read empty).
///
/// Use this, not "`shm_nattch` went up", to know that a child has attached:
/// a fork by a sibling test thread raises the count too (see [`settled`]).
/// A child returned by `spawn` has exec'd already, so nothing in its maps was
/// copied from this process.
pub fn wait_mapped(pid: u32, key: i32) -> Result<(), String> {
    let name = format!("/SYSV{:08x}", key as u32);
    let maps = format!("/proc/{pid}/maps");
    let look = || -> Result<bool, String> {
        let mapped = std::fs::read_to_string(&maps)
            .map(|m| m.lines().any(|l| l.contains(&name)))
            .map_err(|e| format!("{maps}: {e} (did process {pid} exit?)"))?;
        if !mapped && process_gone(pid) {
            return Err(format!("process {pid} exited before it attached {name}"));
        }
        Ok(mapped)
    };
    match settled(look, |r| !matches!(r, Ok(false)))? {
        true => Ok(()),
        false => Err(format!(
            "process {pid} did not attach {name} within {SETTLE:?}"
        )),
    }
}

/// True once process `pid` is gone or a zombie (exited, not reaped yet:
/// its parent has not waited, or it was reparented to an init that has not
/// reaped it).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name's closing parenthesis.
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|st| st == 'Z' || st == 'X'),
    }
}

/// The scheduler state in a `/proc/.../stat` file: `R` running, `S`
/// asleep in the kernel, `T` stopped, `Z` zombie, ...; `None` if it
/// cannot be read (the process is gone).
fn stat_state(path: &str) -> Option<char> {
    let s = std::fs::read_to_string(path).ok()?;
    // The state follows the command name's closing parenthesis.
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Wait (at most 30 s) until process `pid` is stopped (`T`), as it is some
/// time after a `SIGSTOP`: `kill` returns once the signal is sent, and a
/// process running on another CPU goes on for a moment before it stops.
/// Fails at once if the process exits first.
pub fn wait_stopped(pid: u32) -> Result<(), String> {
    let path = format!("/proc/{pid}/stat");
    let look = || match stat_state(&path) {
        Some('T') => Ok(true),
        Some('Z' | 'X') | None => Err(format!("process {pid} exited before it stopped")),
        Some(_) => Ok(false),
    };
    match settled(look, |r| !matches!(r, Ok(false)))? {
        true => Ok(()),
        false => Err(format!("process {pid} did not stop within {SETTLE:?}")),
    }
}

/// True if every thread of process `pid` is stopped (`T`, or `t` under a
/// tracer); false if one still runs or the process is gone.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for t in tasks.flatten() {
        any = true;
        let stat = t.path().join("stat");
        match stat_state(stat.to_str().unwrap_or_default()) {
            Some('T' | 't') => {}
            // A thread that exited between the listing and the read.
            None => {}
            Some(_) => return false,
        }
    }
    any
}

/// A process stopped by `SIGSTOP`, continued (`SIGCONT`) when this is
/// dropped: also when the test fails, so nothing else (a guard that kills
/// it, the next test) depends on it being continued. [`Suspended::stop`]
/// returns only once every thread of the process is stopped: `kill`
/// returns once the signal is sent, and a process running on another CPU
/// (or a thread of it) goes on for a moment, publishing or reading what a
/// test means it to miss.
#[derive(Debug)]
pub struct Suspended(u32);

impl Suspended {
    /// Send `SIGSTOP` to process `pid` and wait (at most 30 s) until every
    /// thread of it is stopped. Fails, continuing it, if it exits first or
    /// does not stop in time.
    pub fn stop(pid: u32) -> Result<Suspended, String> {
        use nix::sys::signal::{Signal, kill};
        let raw = i32::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
        kill(nix::unistd::Pid::from_raw(raw), Signal::SIGSTOP)
            .map_err(|e| format!("SIGSTOP to {pid}: {e}"))?;
        // From here on, a failure continues it (drop).
        let s = Suspended(pid);
        let look = || {
            if process_gone(pid) {
                Err(format!("process {pid} exited before it stopped"))
            } else {
                Ok(all_threads_stopped(pid))
            }
        };
        match settled(look, |r| !matches!(r, Ok(false)))? {
            true => Ok(s),
            false => Err(format!("process {pid} did not stop within {SETTLE:?}")),
        }
    }

    /// The stopped process.
    pub fn pid(&self) -> u32 {
        self.0
    }
}

impl Drop for Suspended {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        if let Ok(raw) = i32::try_from(self.0) {
            let _ = kill(nix::unistd::Pid::from_raw(raw), Signal::SIGCONT);
        }
    }
}

/// The check behind every "a stop signal never ends PROGRAM in the middle
/// of a frame" test: for SIGTERM (`systemctl stop`), SIGINT (Ctrl-C) and
/// SIGHUP in turn, `command()` is started with the default action for all
/// three, left to publish on the topic at `key` (as fast as it goes), held
/// ([`Caught::when`]) at the first moment a slot of it is mid-write, and
/// sent the signal right there. It must die of that signal, and leave no
/// slot mid-write: one left odd is read by every in-order reader as a
/// publisher that died mid-publish, until the next start repairs it.
/// `what` names the program in the failures.
pub fn assert_stop_signals_end_it_between_frames(
    what: &str,
    key: i32,
    mut command: impl FnMut() -> Command,
) {
    use nix::sys::signal::Signal;
    use std::os::unix::process::ExitStatusExt;
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // Dying of the signal is its default action, whatever this test
        // run inherited (`nohup`, a shell's `&`).
        let mut child = KillOnDrop(
            with_default_stop_signals(&mut command())
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{sig}: start {what}: {e}")),
        );
        let pid = child.0.id();
        let seg = settled(
            || shmbus_core::Segment::attach_key(key),
            |r| r.is_ok() || process_gone(pid),
        )
        .unwrap_or_else(|e| panic!("{sig}: {what} made no topic at 0x{key:08x}: {e}"));
        // Publishing already: the segment outlives the last round's
        // process, and this one may still be starting (millions of
        // instructions before its first frame).
        let g0 = seg.generation();
        let g = settled(|| seg.generation(), |&g| g > g0 || process_gone(pid));
        assert!(g > g0, "{sig}: {what} (pid {pid}) did not publish");
        let slots = u64::from(seg.info().geometry.slot_count);
        let odd = || {
            (0..slots)
                .filter(|&i| seg.slot_sequence(i) & 1 == 1)
                .count()
        };
        let caught = Caught::when(pid, || odd() == 1)
            .unwrap_or_else(|e| panic!("{sig}: {what} never caught mid-write: {e}"));
        let how = caught.how();
        eprintln!("{what}, {sig}: caught {how}");
        caught.signal_and_go(sig).unwrap();
        let st = exit_within(&mut child.0, Duration::from_secs(60), what);
        assert_eq!(st.signal(), Some(sig as i32), "{sig}: {what}: {st}");
        assert_eq!(
            odd(),
            0,
            "{sig} ended {what} in the middle of a frame (caught {how})"
        );
    }
}

/// The id of the calling thread (what [`wait_thread_asleep`] takes).
pub fn thread_id() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Wait (at most 30 s) until thread `tid` of this process sleeps in the
/// kernel (`S`): for a test thread whose only blocking call from some
/// point on is the wait under test (a futex wait), the sign that it is
/// waiting, where a fixed sleep only hoped that it would be by then.
pub fn wait_thread_asleep(tid: i32) -> Result<(), String> {
    let path = format!("/proc/self/task/{tid}/stat");
    let look = || match stat_state(&path) {
        Some('S') => Ok(true),
        None => Err(format!("thread {tid} ended before it slept")),
        Some(_) => Ok(false),
    };
    match settled(look, |r| !matches!(r, Ok(false)))? {
        true => Ok(()),
        false => Err(format!("thread {tid} did not sleep within {SETTLE:?}")),
    }
}

/// Wait (at most 30 s) until the one subscriber that sleeps on `topic`
/// (in `wait_until`, as `wait_next`, `shmbus record` and the tools wait)
/// has looked for frames after everything published before this call,
/// and so has read them.
///
/// Before each sleep a subscriber checks for frames, then takes a ticket
/// from the topic's waiter word (`shmbus_core::waiter`); it sleeps in
/// slices, so it takes one at least every 100 ms while it waits. A first
/// ticket after this call may come from a check made just before it; the
/// check before a second one was made after the first ticket, so after
/// this call. Needs a topic with notify on, and only one subscriber
/// sleeping on it (another's tickets would count too).
pub fn wait_subscriber_caught_up(topic: &Topic) -> Result<(), String> {
    let seg = shmbus_core::Segment::attach(topic).map_err(|e| format!("attach: {e}"))?;
    let r = seg.header().waiter_ref().load();
    let w = shmbus_core::waiter::WaiterWord::attach(r, &seg)
        .map_err(|e| format!("the waiter word of '{}': {e:?}", topic.name))?;
    let before = w.load();
    match settled(|| w.load().wrapping_sub(before), |n| *n >= 2) {
        n if n >= 2 => Ok(()),
        n => Err(format!(
            "no subscriber of '{}' went back to sleep twice within {SETTLE:?} ({n} tickets)",
            topic.name
        )),
    }
}

/// A topic with a unique key and a Guard that removes it.
pub fn unique_topic(test: &str) -> (Topic, Guard) {
    let key = unique_key(test);
    // The key in the name too: tools resolve names, and two runs of one test
    // at the same time (two checkouts, CI beside a developer) must not see
    // each other's topic under one name.
    let name = format!(
        "test/{}-{:08x}",
        test.chars().take(40).collect::<String>(),
        key as u32
    );
    (Topic::new(&name).key(key), Guard(key))
}

/// Removes the segment and the publisher lock at a key when dropped, also
/// when the test panics.
#[derive(Debug)]
pub struct Guard(pub i32);

impl Guard {
    /// The key.
    pub fn key(&self) -> i32 {
        self.0
    }
}

/// Remove the segment and the semaphore set at `key`, if any: any set,
/// also one that is no publisher lock (`lock::remove_lock` leaves those).
pub fn remove_key(key: i32) {
    if let Ok(id) = shmbus_core::sys::shmget(key, 0, 0) {
        let _ = shmbus_core::sys::shm_remove(id);
    }
    if let Ok(id) = shmbus_core::sys::sem_lookup(key) {
        let _ = shmbus_core::sys::sem_remove(id);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        remove_key(self.0);
    }
}

/// The topic at `key` mapped read-write (as another process could), and
/// the byte offset of the slot that holds frame `generation`.
pub fn slot_of(key: i32, generation: u64) -> (shmbus_core::sys::WriteAttachment, usize) {
    let id = shmbus_core::sys::shmget(key, 0, 0).expect("a segment at the key");
    let att = shmbus_core::sys::WriteAttachment::read_write(id).expect("attach read-write");
    let offset = shmbus_core::layout::HeaderInfo::read(&att, key)
        .expect("a shmbus topic")
        .geometry
        .slot_offset(generation);
    (att, offset)
}

/// Leave the slot of frame `generation` of the topic at `key` mid-write
/// (its sequence word odd), as a publisher killed or stopped while it
/// overwrote that frame with one a lap newer leaves it.
pub fn leave_mid_write(key: i32, generation: u64) {
    let (att, offset) = slot_of(key, generation);
    let seq = att.atomic_word(offset).expect("the slot's sequence word");
    seq.store(seq.load(Ordering::Relaxed) | 1, Ordering::Relaxed);
}

/// A command that runs program `exe`, behind `SHMBUS_TEST_RUNNER` (e.g.
/// `qemu-arm -L /usr/arm-linux-gnueabihf`) when that is set: a qemu-user
/// process cannot exec a foreign binary directly. The shipped programs'
/// own function, so the tests start children exactly as the demo and
/// `shmbus bench` do.
pub use shmbus_toolbox::process::{command, command_behind};

/// A command that runs this test binary again as a child playing `role`
/// (see [`role`]). Under emulation, `SHMBUS_TEST_RUNNER` (e.g.
/// `qemu-arm -L /usr/arm-linux-gnueabihf`) is put in front, because a
/// qemu-user process cannot exec a foreign binary directly.
pub fn child(role: &str, args: &[String]) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = command(exe);
    cmd.args([
        "--exact",
        "child_role_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("SHMBUS_ROLE", role)
    .env("SHMBUS_ROLE_ARGS", args.join("\u{1f}"))
    .stdin(Stdio::null());
    dies_with_parent(&mut cmd);
    cmd
}

/// Make the process `cmd` starts die (SIGKILL) when the thread that
/// spawns it exits, and so when this process dies: also by SIGKILL or by
/// the [`watchdog`]'s abort, where no guard runs. A child role left behind
/// would keep its topics attached (and a stopped one would keep them
/// forever). [`child`] and [`spawn`] do this already; a test that builds
/// its own role command calls it.
///
/// The signal is tied to the spawning *thread* (Linux's rule), so spawn a
/// child from the thread that outlives it: the test's own thread.
pub fn dies_with_parent(cmd: &mut Command) -> &mut Command {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child between fork and exec,
    // where only async-signal-safe calls are allowed: it calls prctl,
    // getppid and _exit, allocates nothing and takes no lock. std runs it
    // after any uid/gid change, which would otherwise clear the setting.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died between fork and prctl: no signal will come.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        })
    }
}

/// The stop signals: SIGTERM (`systemctl stop`), SIGINT (Ctrl-C), SIGHUP.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Put SIGTERM, SIGINT and SIGHUP back to their default action in this
/// process (for a `fork` child that is to die of them). An ignored signal
/// stays ignored across `fork` and `exec`, and a test run can inherit
/// them ignored: `nohup` ignores SIGHUP, and a non-interactive shell's `&`
/// ignores SIGINT for the job it starts, so a test that expects a child to
/// die of one found it running on.
pub fn default_stop_signals() {
    for sig in STOP_SIGNALS {
        // SAFETY: SIG_DFL installs no handler; `signal` is async-signal-safe.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// [`default_stop_signals`] in the child `cmd` starts, before its exec.
pub fn with_default_stop_signals(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs between fork and exec and only calls
    // `signal`, which is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            default_stop_signals();
            Ok(())
        })
    }
}

/// Spawn a child role with piped stdout.
pub fn spawn(role: &str, args: &[String]) -> Child {
    child(role, args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

/// In a child: the role and its arguments, if this process is one.
pub fn role() -> Option<(String, Vec<String>)> {
    let r = std::env::var("SHMBUS_ROLE").ok()?;
    let a = std::env::var("SHMBUS_ROLE_ARGS").unwrap_or_default();
    let args = if a.is_empty() {
        Vec::new()
    } else {
        a.split('\u{1f}').map(str::to_string).collect()
    };
    Some((r, args))
}

thread_local! {
    /// The watchdogs armed by this thread: dropping a sender (when the
    /// thread exits, e.g. its test finished or panicked) disarms one.
    static ARMED: std::cell::RefCell<Vec<std::sync::mpsc::Sender<()>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Abort the whole process (and so fail the test) if the calling thread is
/// still running after `limit`. The watchdog is disarmed when the calling
/// thread exits (libtest runs every test on a thread of its own), so a test
/// that finished cannot abort the tests that run after it.
///
/// An abort runs no destructor, so no guard: before it, the watchdog
/// removes the objects at every key [`unique_key`] handed out in this
/// process, and children started by [`child`] (or after
/// [`dies_with_parent`]) get SIGKILL from the kernel when the process dies.
pub fn watchdog(what: &'static str, limit: Duration) {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    ARMED.with(|a| a.borrow_mut().push(tx));
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            // Written to the stderr descriptor itself: `eprintln!` in a
            // thread spawned by a test goes to libtest's capture of that
            // test's output, which the abort throws away (a run then
            // ended in SIGABRT without a word of why).
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("WATCHDOG: '{what}' still running after {limit:?}: aborting\n").as_bytes(),
            );
            for key in locked(&HANDED_OUT) {
                remove_key(key);
            }
            for dir in locked(&LIVE_TEMP_DIRS) {
                let _ = std::fs::remove_dir_all(dir);
            }
            std::process::abort();
        }
    });
}

/// Wait for `child` to exit, at most `limit`: a child still running then
/// is killed and reaped, and the test fails naming `what` (a hang).
pub fn exit_within(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let end = std::time::Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {limit:?} (hung?)");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Run case `case` of test `name` (in module `module`: pass
/// `module_path!()`) in a fresh process, and wait for it: its exit code,
/// or an error if it was killed by a signal (worded as [`ForkChild::wait`]
/// words it). Still running after `limit`, it is killed and the test
/// fails ([`exit_within`]).
///
/// The process is this test binary again, behind `SHMBUS_TEST_RUNNER`,
/// running only that test; the test finds `case` in [`fresh_case`] and
/// ends the process with what the case returns. For a child that starts
/// threads, where a [`ForkChild`] cannot: under `qemu-arm` (7.2) a thread
/// started in a fork child of a multi-threaded process crashes the
/// emulator (`qemu_plugin_vcpu_init_hook: assertion failed`, then
/// `cpu_exec: assertion failed: (cpu == current_cpu)`), which ended 3 of
/// 13 runs of the stop-signal tests with exit code 127 or a hang.
pub fn in_fresh_process(
    module: &str,
    name: &str,
    case: &str,
    limit: Duration,
) -> Result<i32, String> {
    use std::os::unix::process::ExitStatusExt;
    // libtest's name: the module path without the crate (a unit test's
    // `stop::tests::NAME`, an integration test's `NAME`).
    let test = match module.split_once("::") {
        Some((_, inner)) => format!("{inner}::{name}"),
        None => name.to_string(),
    };
    let mut cmd = command(std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?);
    cmd.args(["--exact", &test, "--nocapture", "--test-threads=1"])
        .env(FRESH_CASE, case)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    dies_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| format!("spawn {test}: {e}"))?;
    let status = exit_within(&mut child, limit, &test);
    match (status.code(), status.signal()) {
        (Some(code), _) => Ok(code),
        (None, Some(sig)) => Err(format!("the child ended by signal {sig}")),
        (None, None) => Err(format!("the child ended as {status}")),
    }
}

const FRESH_CASE: &str = "SHMBUS_FRESH_CASE";

/// In a process started by [`in_fresh_process`]: the case it is to run
/// (the test then ends the process with the case's exit code).
pub fn fresh_case() -> Option<String> {
    std::env::var(FRESH_CASE).ok()
}

/// A `fork()` child running a closure ([`ForkChild::start`]); reap it with
/// [`ForkChild::wait`].
#[derive(Debug)]
pub struct ForkChild(libc::pid_t);

impl ForkChild {
    /// Run `child` in a `fork()` child of this process, which `_exit`s with
    /// what it returns.
    ///
    /// This process is multi-threaded (libtest), so `child` must use only
    /// what is usable in such a child: atomics, locks no other thread of
    /// the parent held, glibc's malloc. Nothing of the child returns into
    /// the harness: a panic in `child` is exit code 101. It must start no
    /// thread: under `qemu-arm` that crashes the emulator now and then (use
    /// [`in_fresh_process`]).
    pub fn start(child: impl FnOnce() -> i32) -> Result<ForkChild, String> {
        // SAFETY: the child runs `child` (the caller's contract above) and
        // `_exit`s: it never returns into the harness or runs destructors.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            // A panic is exit 101, as a program's: it must not unwind into
            // the harness's copy in the child.
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(code) };
        }
        Ok(ForkChild(pid))
    }

    /// The child's pid.
    pub fn pid(&self) -> libc::pid_t {
        self.0
    }

    /// Wait (bounded) for the child: its exit code, or an error if it was
    /// killed by a signal or was still running after `limit` (a hang: it
    /// is killed then).
    pub fn wait(self, limit: Duration) -> Result<i32, String> {
        let start = std::time::Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: our own child; `status` is writable.
            let r = unsafe { libc::waitpid(self.0, &mut status, libc::WNOHANG) };
            if r == self.0 {
                break;
            }
            if r < 0 {
                return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
            }
            if start.elapsed() > limit {
                // SAFETY: our own child, still running.
                unsafe { libc::kill(self.0, libc::SIGKILL) };
                // SAFETY: as above.
                unsafe { libc::waitpid(self.0, &mut status, 0) };
                return Err(format!(
                    "the child was still running after {limit:?} (hung)"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if libc::WIFEXITED(status) {
            Ok(libc::WEXITSTATUS(status))
        } else {
            Err(format!(
                "the child ended by signal {}",
                libc::WTERMSIG(status)
            ))
        }
    }
}

/// The calling thread's voluntary context switches so far, from
/// `/proc/thread-self/status`: each sleep is one. A wait that sleeps in
/// whole slices makes few; one that polls makes many, whatever the load.
pub fn voluntary_switches() -> Result<u64, String> {
    let s = std::fs::read_to_string("/proc/thread-self/status")
        .map_err(|e| format!("/proc/thread-self/status: {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no voluntary_ctxt_switches in /proc/thread-self/status".to_string())
}

/// Kill a child on drop (SIGKILL), so a failing test leaves no process.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A self-checking frame: every word is derived from the generation and a
/// salt, so a reader can tell a torn frame from a whole one.
#[derive(
    Serialize,
    Deserialize,
    Debug,
    Clone,
    PartialEq,
    postcard::experimental::max_size::MaxSize,
    postcard_schema::Schema,
)]
pub struct Check {
    /// The generation the publisher meant to write.
    pub seq: u64,
    /// `mix(seq, i)` for every i.
    pub words: [u64; 7],
    /// A label that also depends on `seq`.
    pub tag: heapless::String<8>,
}

fn mix(seq: u64, i: u64) -> u64 {
    (seq ^ 0x9e37_79b9_7f4a_7c15)
        .wrapping_mul(i * 2 + 1)
        .rotate_left(i as u32 * 7)
}

impl Check {
    /// The frame for `seq`.
    pub fn new(seq: u64) -> Check {
        let mut words = [0; 7];
        for (i, w) in words.iter_mut().enumerate() {
            *w = mix(seq, i as u64);
        }
        let mut tag = heapless::String::new();
        let _ = core::fmt::Write::write_fmt(&mut tag, format_args!("{:08x}", seq as u32));
        Check { seq, words, tag }
    }

    /// True if every word matches `seq`.
    pub fn is_whole(&self) -> bool {
        *self == Check::new(self.seq)
    }
}

/// A global allocator for a test binary that measures heap: `System`,
/// counting the bytes live and their peak. Declare it in the binary
/// (`#[global_allocator] static ALLOC: CountingAlloc = CountingAlloc;`)
/// and measure with [`CountingAlloc::peak_during`]. Every thread's
/// allocations count: keep one measuring test per binary, or serialise
/// them.
pub struct CountingAlloc;

static ALLOC_LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static ALLOC_PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counters are
// atomics that do not allocate.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: `layout` comes from our caller, who upholds
        // `GlobalAlloc::alloc`'s contract (non-zero size); it is passed to
        // System unchanged.
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            let now = ALLOC_LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            ALLOC_PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` was returned by `alloc` above with this `layout`,
        // that is by System, which is given both back unchanged.
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        ALLOC_LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

impl CountingAlloc {
    /// `f`'s result, and the heap it took at its peak beyond what was live
    /// when it started (0 unless the binary's global allocator is a
    /// `CountingAlloc`).
    pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
        let before = ALLOC_LIVE.load(Ordering::Relaxed);
        ALLOC_PEAK.store(before, Ordering::Relaxed);
        let r = f();
        let peak = ALLOC_PEAK.load(Ordering::Relaxed).saturating_sub(before);
        (r, peak)
    }
}

/// A directory of the test's own under the temporary directory
/// (`$TMPDIR`, else `/tmp`), removed with everything in it when dropped: a
/// failing test's too, since drop runs while its panic unwinds, and by the
/// [`watchdog`] before it aborts a test that ran too long. The name
/// holds the process id and a counter, so tests running at the same time in
/// one process or in several never share one.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// Create `shmbus-WHAT-PID-N`, empty.
    pub fn new(what: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("shmbus-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a test directory under the temp dir");
        LIVE_TEMP_DIRS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(dir.clone());
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// `name` in the directory.
    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        LIVE_TEMP_DIRS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|d| d != &self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::command_behind;
    use std::ffi::OsStr;

    #[test]
    fn a_child_behind_qemu_gets_fork_safe_glib_slices() {
        let c = command_behind("qemu-arm -L /usr/arm-linux-gnueabihf", "/bin/prog");
        assert_eq!(c.get_program(), "qemu-arm");
        let args: Vec<&OsStr> = c.get_args().collect();
        assert_eq!(args, ["-L", "/usr/arm-linux-gnueabihf", "/bin/prog"]);
        let envs: Vec<_> = c.get_envs().collect();
        assert_eq!(
            envs,
            [(OsStr::new("G_SLICE"), Some(OsStr::new("always-malloc")))]
        );
    }

    #[test]
    fn a_native_child_runs_as_it_is() {
        let c = command_behind("", "/bin/prog");
        assert_eq!(c.get_program(), "/bin/prog");
        assert_eq!(c.get_args().count(), 0);
        assert_eq!(c.get_envs().count(), 0);
    }
}

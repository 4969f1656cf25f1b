//! `shmbus bench` makes its topics at keys `0x62HHHHNN` (HHHH from its
//! pid). Those keys are anyone's: `ftok(path, 'b')` makes keys with the
//! same top byte. The bench used to remove whatever segment and semaphore
//! set it found at a key before using it, and on Ctrl-C every one in its
//! whole range of 255 keys: run as root on a board, it destroyed other
//! programs' shared memory. Now it skips keys that hold anything but a
//! topic an earlier bench of this user left, and removes only its own.

use std::process::Stdio;
use std::time::{Duration, Instant};

use shmbus_bench::Keys;
use shmbus_bench::frames::Frame64;
use shmbus_core::sys;
use shmbus_pub::Publisher;

/// Another program's objects at a key: a segment of this user's with no
/// shmbus header, or a set of one semaphore with no segment beside it.
#[derive(Debug, Clone, Copy)]
enum Foreign {
    Memory(i32),
    Semaphore(i32),
}

impl Foreign {
    fn memory(key: i32) -> Foreign {
        let id = sys::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600)
            .unwrap_or_else(|e| panic!("a segment at {key:#x}: {e}"));
        Foreign::Memory(id)
    }

    fn semaphore(key: i32) -> Foreign {
        // SAFETY: semget takes plain integers and touches no memory of ours.
        let id = unsafe { libc::semget(key, 1, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        assert!(
            id >= 0,
            "a semaphore at {key:#x}: {}",
            std::io::Error::last_os_error()
        );
        Foreign::Semaphore(id)
    }

    /// Still there, the very object made.
    fn intact(self, key: i32) -> bool {
        match self {
            Foreign::Memory(id) => sys::shmget(key, 0, 0).ok() == Some(id),
            Foreign::Semaphore(id) => sys::sem_lookup(key).ok() == Some(id),
        }
    }
}

fn nothing_at(key: i32) -> bool {
    sys::shmget(key, 0, 0).is_err() && sys::sem_lookup(key).is_err()
}

/// A pid no process has (above Linux's largest, 2^22) whose bench keys
/// are all free now; in a private IPC namespace (root) the first one is.
fn unused_pid() -> u32 {
    (0..4096)
        .map(|i| 0x0100_0000 + (std::process::id() & 0xffff) * 4096 + i)
        .find(|&pid| Keys::for_pid(pid).range().all(nothing_at))
        .expect("a free range of bench keys")
}

#[test]
fn the_bench_skips_and_keeps_other_programs_objects_at_its_keys() {
    shmbus_testkit::watchdog("bench_keys", Duration::from_secs(120));
    shmbus_testkit::private_ipc();
    let pid = unused_pid();
    let mut keys = Keys::for_pid(pid);
    let k: Vec<i32> = keys.range().collect();
    let _guards: Vec<shmbus_testkit::Guard> =
        k.iter().copied().map(shmbus_testkit::Guard).collect();

    let memory = Foreign::memory(k[0]);
    let semaphore = Foreign::semaphore(k[1]);
    // A topic an earlier bench left (its publisher gone): removed, reused.
    drop(Publisher::<Frame64>::open(&shmbus_core::Topic::new("bench/left").key(k[2])).unwrap());
    // A bench topic whose publisher still runs (here: this process).
    let live =
        Publisher::<Frame64>::open(&shmbus_core::Topic::new("bench/live").key(k[3])).unwrap();
    // A stopped topic of another name: a user's, never the bench's.
    drop(Publisher::<Frame64>::open(&shmbus_core::Topic::new("imu").key(k[4])).unwrap());
    let imu = sys::shmget(k[4], 0, 0).unwrap();

    let first = keys.take().unwrap();
    let second = keys.take().unwrap();
    assert_eq!((first, second), (k[2], k[5]), "keys handed out");
    assert!(memory.intact(k[0]) && semaphore.intact(k[1]));
    assert!(nothing_at(k[2]), "the left topic and its lock were removed");
    assert_eq!(sys::shmget(k[4], 0, 0).ok(), Some(imu));

    // The run's topics at the keys handed out go when the keys are
    // dropped; nothing else does.
    let a = Publisher::<Frame64>::open(&shmbus_core::Topic::new("bench/a").key(first)).unwrap();
    let b = Publisher::<Frame64>::open(&shmbus_core::Topic::new("bench/b").key(second)).unwrap();
    drop((a, b));
    drop(keys);
    assert!(nothing_at(first) && nothing_at(second));
    assert!(memory.intact(k[0]) && semaphore.intact(k[1]));
    assert!(sys::shmget(k[3], 0, 0).is_ok(), "the live topic stays");
    assert_eq!(sys::shmget(k[4], 0, 0).ok(), Some(imu));
    drop(live);

    // A range where every key is another program's: a clear error.
    let mut full = Keys::for_pid(unused_pid());
    let fk: Vec<i32> = full.range().collect();
    let _full_guards: Vec<shmbus_testkit::Guard> =
        fk.iter().copied().map(shmbus_testkit::Guard).collect();
    let objects: Vec<Foreign> = fk.iter().map(|&key| Foreign::semaphore(key)).collect();
    let err = full.take().unwrap_err();
    assert!(
        err.contains("no free System V key") && err.contains("ipcs"),
        "{err}"
    );
    drop(full);
    assert!(objects.iter().zip(&fk).all(|(o, &key)| o.intact(key)));
}

/// Ctrl-C in the middle of a run: the bench removes its topics and
/// leaves another program's memory and semaphore in its key range.
#[test]
fn an_interrupted_bench_leaves_other_programs_objects_in_its_range() {
    shmbus_testkit::watchdog("bench_keys_interrupted", Duration::from_secs(300));
    let bench = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus-bench"));
    // A shell that stops itself, then becomes the bench (same pid), so the
    // objects are in place before the bench runs. (Stopping in `pre_exec`
    // would block `spawn`, which waits for the exec.)
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "kill -STOP $$ && exec \"$@\"", "sh"])
        .arg(bench.get_program())
        .args(bench.get_args())
        .args(["--rounds", "50", "--iters", "200000"]);
    for (k, v) in bench.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    shmbus_testkit::dies_with_parent(&mut cmd);
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shmbus-bench");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let stopped = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WUNTRACED));
    assert!(
        matches!(stopped, Ok(nix::sys::wait::WaitStatus::Stopped(..))),
        "{stopped:?}"
    );
    let k: Vec<i32> = Keys::for_pid(child.id()).range().collect();
    let _guards: Vec<shmbus_testkit::Guard> =
        k.iter().copied().map(shmbus_testkit::Guard).collect();
    // The first key it would take, and one in the middle of the range.
    let memory = Foreign::memory(k[0]);
    let semaphore = Foreign::semaphore(k[100]);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();

    // Wait until the run has a topic of its own.
    let start = Instant::now();
    while !k[1..].iter().any(|&key| sys::shmget(key, 0, 0).is_ok()) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the bench made no topic"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        memory.intact(k[0]),
        "another program's memory was removed: {err}"
    );
    assert!(
        semaphore.intact(k[100]),
        "another program's semaphore was removed: {err}"
    );
    // Its own topics went (the peers' last detach may take a moment).
    let start = Instant::now();
    loop {
        let left: Vec<String> = k
            .iter()
            .enumerate()
            .filter(|&(i, &key)| i != 0 && i != 100 && !nothing_at(key))
            .map(|(_, key)| format!("{key:#x}"))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "left: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

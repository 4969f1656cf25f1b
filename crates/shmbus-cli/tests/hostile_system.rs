//! The `shmbus` readers against bad system states (a hostile-system audit,
//! 2026-12-04): segments at a topic's key that are shmbus but cannot be
//! read. Each test failed before its fix. Every object has a unique key and
//! a Guard; every test has a watchdog.

use std::process::Command;
use std::time::Duration;

use shmbus_core::sys;
use shmbus_pub::Publisher;
use shmbus_testkit::{Guard, KillOnDrop, TempDir, unique_key, watchdog};

mod common;
use common::{Run, run_cmd};

fn hex(key: i32) -> String {
    format!("0x{:08x}", key as u32)
}

/// `shmbus` with `config` as its only config.
fn shmbus(config: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = common::shmbus(args);
    cmd.env("SHMBUS_CONFIG", config);
    cmd
}

/// A config that puts topic `name` at `key` (a unique test key, so the name
/// lookup goes to it and to nothing another test made).
fn config_for(dir: &TempDir, name: &str, key: i32) -> std::path::PathBuf {
    let p = dir.join(&format!("{name}.toml"));
    std::fs::write(
        &p,
        format!("bus = \"hostile\"\n[[topic]]\nname = \"{name}\"\nkey = {key}\n"),
    )
    .unwrap();
    p
}

/// Every byte of the segment at `key`.
fn segment_bytes(key: i32) -> Vec<u8> {
    let id = sys::shmget(key, 0, 0).expect("segment exists");
    let att = sys::Attachment::read_only(id).expect("attach");
    let words = att.words(0, att.len() / 4).expect("words");
    let mut out = Vec::new();
    shmbus_core::layout::copy_from_words(words, att.len(), &mut out);
    out
}

/// A new segment of `size` bytes at `key`, holding `bytes` (as many whole
/// 4-byte words of them as fit; a 1-byte segment stays zero).
fn segment_with(key: i32, size: usize, bytes: &[u8]) {
    let id = sys::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).unwrap();
    let att = sys::WriteAttachment::read_write(id).unwrap();
    let n = bytes.len().min(size) & !3;
    shmbus_core::codec::store_bytes(att.atomic_words(0, n.div_ceil(4)).unwrap(), &bytes[..n]);
}

/// A real topic `name` at `key` with one frame, its publisher gone.
fn real_topic(name: &str, key: i32) {
    let topic = shmbus_core::Topic::new(name)
        .key(key)
        .slots(4)
        .lock(shmbus_core::LockPolicy::Off);
    let mut p = Publisher::<u32>::open(&topic).unwrap();
    p.publish(&7).unwrap();
}

/// A shmbus segment at a name's own key that the lookup cannot read (its
/// header asks for more bytes than the segment has; a newer layout; a
/// header never written, its creator dead) was "no topic named 'X' (its
/// key: K): is its publisher running?" (exit 1) from `info`, `echo`, `hz`,
/// `pub` and `rm` by name, while `list` and the same commands by key said
/// what it is and how to fix it; `record` and `foxglove` said "not found".
/// Now the name gives the same reason and fix as the key in every command
/// (`shmbus_config::names` returns it), and nothing is written; `rm` by
/// name removes it, as `rm` by key does.
#[test]
fn an_unreadable_segment_at_a_names_key_is_named_not_called_missing() {
    watchdog(
        "an_unreadable_segment_at_a_names_key_is_named_not_called_missing",
        Duration::from_secs(180),
    );
    let dir = TempDir::new("hostile-unreadable");
    let pid = std::process::id();
    // (name, key, what the message must say, exit code, guard)
    let mut cases: Vec<(String, i32, String, i32, Guard)> = Vec::new();

    // The header of a real topic in a segment too small for its slots.
    let name = format!("short-{pid}");
    let key = unique_key("hostile-short");
    let guard = Guard(key);
    real_topic(&name, key);
    let image = segment_bytes(key);
    shmbus_testkit::remove_key(key);
    segment_with(key, 256 + 64, &image);
    cases.push((name, key, "is 320 bytes, the topic needs".into(), 2, guard));

    // A real topic whose layout version is one this build does not read.
    let name = format!("newer-{pid}");
    let key = unique_key("hostile-newer");
    let guard = Guard(key);
    real_topic(&name, key);
    let mut image = segment_bytes(key);
    let size = image.len();
    shmbus_testkit::remove_key(key);
    image[8..12].copy_from_slice(&2u32.to_le_bytes());
    segment_with(key, size, &image);
    cases.push((name, key, "has layout version 2".into(), 2, guard));

    // Half-created: the creator took its lock, made the segment and died
    // before the header (the lock is free, the segment all zeros).
    let name = format!("half-{pid}");
    let key = unique_key("hostile-half");
    let guard = Guard(key);
    let mut lock = shmbus_core::lock::PublisherLock::acquire(key, 0o600, None).unwrap();
    lock.keep();
    drop(lock);
    sys::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).unwrap();
    cases.push((name, key, "was left half-created".into(), 2, guard));

    for (name, key, says, code, _guard) in &cases {
        let config = config_for(&dir, name, *key);
        let before = segment_bytes(*key);
        let k = hex(*key);
        for args in [
            vec!["info", name.as_str()],
            vec!["echo", name.as_str(), "--count", "1", "--timeout", "1"],
            vec!["hz", name.as_str(), "--count", "1"],
            vec!["pub", name.as_str(), "7"],
        ] {
            let r: Run = run_cmd(shmbus(config.as_path(), &args));
            assert_eq!(r.code, *code, "{args:?}: {}", r.stderr);
            assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
            assert!(
                r.stderr
                    .contains(&format!("no readable topic named '{name}'"))
                    && r.stderr.contains(&k)
                    && r.stderr.contains(says.as_str())
                    && r.stderr.contains(&format!("shmbus rm {k}")),
                "{args:?} must name the segment at {k}, say '{says}' and the fix: {}",
                r.stderr
            );
            assert!(
                !r.stderr.contains("is its publisher running"),
                "{args:?}: {}",
                r.stderr
            );
            // The same reason as by key.
            let by_key: Run = run_cmd(shmbus(config.as_path(), &["info", &k]));
            assert!(by_key.stderr.contains(says.as_str()), "{}", by_key.stderr);
            assert_eq!(segment_bytes(*key), before, "{args:?} changed the segment");
        }
        // `record` and `foxglove` take the name the same way: they said
        // "not found: no segment carries the name at its key".
        let mcap = dir.join(&format!("{name}.mcap"));
        let mcap = mcap.to_str().unwrap();
        for args in [
            vec!["record", name.as_str(), "-o", mcap, "--duration", "1"],
            vec![
                "foxglove",
                name.as_str(),
                "--bind",
                "127.0.0.1:0",
                "--duration",
                "1",
            ],
        ] {
            let r: Run = run_cmd(shmbus(config.as_path(), &args));
            assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
            assert!(
                r.stderr.contains(&format!("topic '{name}': "))
                    && r.stderr.contains(&k)
                    && r.stderr.contains(says.as_str())
                    && r.stderr.contains(&format!("shmbus rm {k}")),
                "{args:?} must name the segment at {k}, say '{says}' and the fix: {}",
                r.stderr
            );
            assert!(!r.stderr.contains("not found"), "{args:?}: {}", r.stderr);
            assert_eq!(segment_bytes(*key), before, "{args:?} changed the segment");
        }
        // rm by name removes it, as by key: TROUBLESHOOTING.md's fix
        // after an upgrade is `shmbus rm NAME` (it was refused, exit 2).
        let r = run_cmd(shmbus(config.as_path(), &["rm", name.as_str()]));
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stdout.starts_with("removed topic (") && r.stdout.contains(&k),
            "{}",
            r.stdout
        );
        assert!(sys::shmget(*key, 0, 0).is_err(), "{k} still there");
    }
    // The fix printed, by key, removes it too.
    let (name, key, ..) = &cases[0];
    real_topic(name, *key);
    let image = segment_bytes(*key);
    shmbus_testkit::remove_key(*key);
    segment_with(*key, 256 + 64, &image);
    let config = config_for(&dir, name, *key);
    let r = run_cmd(shmbus(config.as_path(), &["rm", &hex(*key)]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(sys::shmget(*key, 0, 0).is_err(), "still there");
}

/// A config with one imu sensor topic `name` at `key`.
fn sensor_config(dir: &TempDir, name: &str, key: i32) -> std::path::PathBuf {
    let p = dir.join(&format!("{name}-sensor.toml"));
    std::fs::write(
        &p,
        format!(
            "bus = \"hostile\"\n[[topic]]\nname = \"{name}\"\nkey = {key}\nslots = 4\n\
             publisher = \"shmbus-sensor-imu\"\nrate_hz = 50.0\n"
        ),
    )
    .unwrap();
    p
}

/// The imu sensor publishing topic `name` of `config` for `secs` seconds.
fn sensor(config: &std::path::Path, name: &str, secs: &str) -> Run {
    run_cmd(shmbus(
        config,
        &[
            "__sensor",
            "imu",
            "--config",
            config.to_str().unwrap(),
            "--topic",
            name,
            "--duration",
            secs,
        ],
    ))
}

/// Root runs this in a private IPC namespace (`kernel.sem` set to a
/// SEMMSL of 0 there only). A publisher lock is a set of one semaphore:
/// with SEMMSL (the first field of `kernel.sem`) at 0, `semget` refuses
/// to create it with `EINVAL`, and a sensor said `cannot open topic: semget:
/// Invalid argument (key ...)`, the raw errno, where SEMMNI, SEMMNS and
/// SEMOPM name their field and the `sysctl` that fixes them. Now the
/// message names SEMMSL and a `sysctl -w kernel.sem="1 ..."`, which typed
/// as printed lets the sensor publish; the failed open leaves nothing.
/// Without root the mapping itself is checked.
#[test]
fn a_semaphore_set_limit_of_zero_is_named_with_a_fix_that_works() {
    watchdog(
        "a_semaphore_set_limit_of_zero_is_named_with_a_fix_that_works",
        Duration::from_secs(180),
    );
    let key = unique_key("hostile-semmsl");
    let _guard = Guard(key);
    // What any user's open gets from this errno: the named limit.
    let e = shmbus_core::OpenError::from_sys(
        key,
        0,
        sys::SysError {
            call: sys::Call::Semget,
            errno: sys::Errno::EINVAL,
        },
    );
    let text = e.to_string();
    assert!(
        matches!(e, shmbus_core::OpenError::SemaphoreLimit { .. })
            && text.contains("kernel.sem SEMMSL")
            && text.contains("sysctl"),
        "{e:?}: {text}"
    );
    if !shmbus_testkit::private_ipc() {
        eprintln!("not root: the sensor under SEMMSL 0 is not run (CI runs it as root)");
        return;
    }
    let path = "/proc/sys/kernel/sem";
    let old = std::fs::read_to_string(path).expect("read kernel.sem");
    let v: Vec<&str> = old.split_whitespace().collect();
    std::fs::write(path, format!("0 {} {} {}", v[1], v[2], v[3])).expect("write kernel.sem");
    let dir = TempDir::new("hostile-semmsl");
    let name = format!("semmsl-{}", std::process::id());
    let config = sensor_config(&dir, &name, key);
    let r = sensor(&config, &name, "1");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("kernel.sem SEMMSL (1st field") && !r.stderr.contains("Invalid argument"),
        "{}",
        r.stderr
    );
    assert!(
        shmbus_core::sysvipc::semaphore_by_key(key).is_none() && sys::shmget(key, 0, 0).is_err(),
        "the failed open left its lock or segment"
    );
    let suggested = r
        .stderr
        .split("sysctl -w kernel.sem=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap_or_else(|| panic!("no kernel.sem value in: {}", r.stderr));
    assert!(suggested.starts_with("1 "), "{suggested}");
    std::fs::write(path, suggested).expect("write the suggested kernel.sem");
    let r = sensor(&config, &name, "1");
    std::fs::write(path, old.trim()).expect("restore kernel.sem");
    assert_eq!(r.code, 0, "with the suggested kernel.sem: {}", r.stderr);
    let r = run_cmd(shmbus(&config, &["info", &hex(key)]));
    assert!(r.stdout.contains(&name), "{}{}", r.stdout, r.stderr);
}

/// Another program's segment at a topic's key, by the same user, smaller
/// than the topic: the publisher said `segment at key K is 1 bytes, the
/// topic needs N; remove it with shmbus rm K`, and readers given the key
/// `corrupt ...; remove it with shmbus rm K`, but `shmbus rm K` refuses it
/// as another program's memory (rightly: it is not a topic). The publisher
/// now says it is not a shmbus topic, and no message about it suggests the
/// `shmbus rm` that refuses it.
#[test]
fn another_programs_segment_is_never_called_a_topic_to_shmbus_rm() {
    watchdog(
        "another_programs_segment_is_never_called_a_topic_to_shmbus_rm",
        Duration::from_secs(180),
    );
    let dir = TempDir::new("hostile-foreign");
    let pid = std::process::id();
    // One byte; 200 bytes of 0xFF (the 256-byte header would not fit); 1 KiB
    // of another magic (the imu topic needs more).
    for (i, (size, fill)) in [(1usize, 0x89u8), (200, 0xff), (1024, 0x42)]
        .into_iter()
        .enumerate()
    {
        let key = unique_key("hostile-foreign");
        let _guard = Guard(key);
        segment_with(key, size, &vec![fill; size]);
        let name = format!("foreign{i}-{pid}");
        let config = sensor_config(&dir, &name, key);
        let k = hex(key);
        let before = segment_bytes(key);
        let r = sensor(&config, &name, "1");
        assert_eq!(r.code, 2, "{size} bytes: {}", r.stderr);
        assert!(
            r.stderr
                .contains(&format!("segment at key {k} is not a shmbus topic"))
                && !r.stderr.contains("shmbus rm"),
            "{size} bytes: {}",
            r.stderr
        );
        for args in [
            vec!["info", k.as_str()],
            vec!["hz", k.as_str(), "--count", "1"],
        ] {
            let r = run_cmd(shmbus(&config, &args));
            assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
            assert!(!r.stderr.contains("shmbus rm"), "{args:?}: {}", r.stderr);
        }
        // What the old messages suggested: refused, the segment untouched.
        let r = run_cmd(shmbus(&config, &["rm", &k]));
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("not a shmbus topic"), "{}", r.stderr);
        assert_eq!(segment_bytes(key), before, "{size} bytes: changed");
    }
}

/// `cmd` run where `/proc/sysvipc/shm` reads as empty: in a private mount
/// namespace with `/dev/null` bound over it, as a container runtime masks
/// a path. The machine's own `/proc` is untouched.
fn with_masked_sysvipc(cmd: Command) -> Run {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount --bind /dev/null /proc/sysvipc/shm && exec \"$0\" \"$@\"")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    run_cmd(c)
}

/// Root (a mount namespace). With `/proc/sysvipc/shm` masked (it reads as
/// empty), the tools took "no segments" for the truth: `list` showed a
/// live publisher's lock as `(lock only)` with "remove it with `shmbus rm
/// KEY`", doctor FAILed it as a squat with that fix, and `shmbus rm KEY`,
/// typed as suggested, removed the lock of the running publisher without
/// `--force` (a second publisher could then start), while `info KEY` said
/// "no segment". A file without the kernel's column header is now an
/// error: every command says it cannot read `/proc/sysvipc/shm` and why,
/// and nothing is removed. Without root the parsing is checked by
/// `shmbus-core`'s `a_file_without_the_kernels_header_is_an_error`.
#[test]
fn a_masked_proc_sysvipc_is_an_error_never_an_empty_bus() {
    watchdog(
        "a_masked_proc_sysvipc_is_an_error_never_an_empty_bus",
        Duration::from_secs(180),
    );
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "not root: no mount namespace to mask /proc/sysvipc/shm in (CI runs this as root)"
        );
        return;
    }
    let dir = TempDir::new("hostile-masked");
    let name = format!("masked-{}", std::process::id());
    let key = unique_key("hostile-masked");
    let _guard = Guard(key);
    let config = config_for(&dir, &name, key);
    let topic = shmbus_core::Topic::new(&name)
        .key(key)
        .slots(4)
        .lock(shmbus_core::LockPolicy::Off);
    let mut p = Publisher::<u32>::open(&topic).unwrap();
    p.publish(&1).unwrap();
    let semid = sys::sem_lookup(key).expect("the publisher's lock");
    let k = hex(key);
    for (args, code) in [
        (vec!["rm", k.as_str()], 2),
        (vec!["list"], 2),
        (vec!["top", "--count", "1"], 2),
        (vec!["info", k.as_str()], 2),
        (vec!["info", name.as_str()], 2),
        (vec!["doctor", "--key", k.as_str()], 1),
    ] {
        let r = with_masked_sysvipc(shmbus(&config, &args));
        assert_eq!(r.code, code, "{args:?}: {}{}", r.stdout, r.stderr);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(
            all.contains("cannot read /proc/sysvipc/shm") && all.contains("masked"),
            "{args:?}: {all}"
        );
        assert!(
            !all.contains("lock only") && !all.contains("removed"),
            "{args:?}: {all}"
        );
        assert_eq!(
            sys::sem_lookup(key).ok(),
            Some(semid),
            "{args:?} removed the live publisher's lock"
        );
    }
    // The publisher still owns its topic.
    p.publish(&2).unwrap();
    assert!(
        shmbus_core::lock::publisher_status(key).is_alive(),
        "the lock is no longer held"
    );
    let r = run_cmd(shmbus(&config, &["info", &k]));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// Root (a mount namespace). `/proc/sysvipc` hidden altogether (an empty
/// tmpfs over it, as a sandbox or a container without /proc shows it):
/// doctor said "the kernel has no System V IPC" and told the one on call
/// to rebuild the kernel with CONFIG_SYSVIPC, on a kernel whose shared
/// memory works. It now tells the two apart (a look-up of a key answers
/// unless the kernel has no System V IPC) and names the masked /proc.
#[test]
fn doctor_tells_a_hidden_proc_sysvipc_from_a_kernel_without_it() {
    watchdog(
        "doctor_tells_a_hidden_proc_sysvipc_from_a_kernel_without_it",
        Duration::from_secs(120),
    );
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: no mount namespace to hide /proc/sysvipc in (CI runs this as root)");
        return;
    }
    let dir = TempDir::new("hostile-hidden");
    let config = config_for(&dir, "hidden", unique_key("hostile-hidden"));
    let cmd = shmbus(&config, &["doctor"]);
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount -t tmpfs none /proc/sysvipc && exec \"$0\" \"$@\"")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    let r = run_cmd(c);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("FAIL  sysvipc")
            && r.stdout
                .contains("System V shared memory works, but /proc/sysvipc/shm is missing")
            && r.stdout.contains("mount -t proc proc /proc")
            && !r.stdout.contains("CONFIG_SYSVIPC"),
        "{}{}",
        r.stdout,
        r.stderr
    );
}

/// The publisher lock of a running sensor removed alone (`ipcrm -s`, as an
/// admin clearing "stale" semaphores does): the sensor went on publishing
/// without a lock, readers called it `NOT RUNNING` at 1 kHz, doctor said
/// "start its publisher", and a second sensor started on the same topic
/// and published into the same segment (two writers on one seqlock ring).
/// The sensor now notices within its 0.5 s check, says so, and takes a new
/// lock: a second sensor is refused, naming the first.
#[test]
fn a_sensor_whose_lock_is_removed_takes_it_again() {
    watchdog(
        "a_sensor_whose_lock_is_removed_takes_it_again",
        Duration::from_secs(180),
    );
    let dir = TempDir::new("hostile-lock-removed");
    let name = format!("lockgone-{}", std::process::id());
    let key = unique_key("hostile-lock-removed");
    let _guard = Guard(key);
    let config = sensor_config(&dir, &name, key);
    let args = |secs: &str| {
        [
            "__sensor".to_string(),
            "imu".into(),
            "--config".into(),
            config.to_str().unwrap().into(),
            "--topic".into(),
            name.clone(),
            "--duration".into(),
            secs.into(),
        ]
    };
    let first_args = args("150");
    let first_args: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let mut first = KillOnDrop(
        shmbus(&config, &first_args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let first_pid = first.0.id();
    let held_by_first = || {
        sys::sem_lookup(key)
            .ok()
            .and_then(|id| sys::sem_getpid(id).ok().map(|pid| (id, pid)))
            .filter(|_| shmbus_core::lock::publisher_status(key).is_alive())
    };
    // The watchdog bounds these waits.
    let old = loop {
        match held_by_first() {
            Some((id, pid)) if pid as u32 == first_pid => break id,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    sys::sem_remove(old).unwrap();
    loop {
        match held_by_first() {
            Some((id, pid)) if id != old && pid as u32 == first_pid => break,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let second_args = args("1");
    let second_args: Vec<&str> = second_args.iter().map(String::as_str).collect();
    let r = run_cmd(shmbus(&config, &second_args));
    assert_ne!(r.code, 0, "a second sensor published: {}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("already has a live publisher (pid {first_pid})")),
        "{}",
        r.stderr
    );
    // The first sensor still publishes, and said what happened.
    let g = shmbus_core::Segment::attach_shmid(sys::shmget(key, 0, 0).unwrap(), key)
        .unwrap()
        .generation();
    while shmbus_core::Segment::attach_shmid(sys::shmget(key, 0, 0).unwrap(), key)
        .unwrap()
        .generation()
        == g
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    first.0.kill().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(first.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        err.contains(&format!(
            "the publisher lock of topic `{name}` was removed while publishing"
        )),
        "{err}"
    );
}

/// `shmbus pub KEY V --count 0` (until stopped) whose publisher lock is
/// removed alone (`ipcrm -s`): it published on, without a lock, for ever.
/// It now stops (exit 2) saying the lock was removed, as it stops when its
/// topic is removed.
#[test]
fn pub_stops_when_its_lock_is_removed() {
    watchdog(
        "pub_stops_when_its_lock_is_removed",
        Duration::from_secs(180),
    );
    let dir = TempDir::new("hostile-pub-lock");
    let name = format!("publock-{}", std::process::id());
    let key = unique_key("hostile-pub-lock");
    let _guard = Guard(key);
    let config = config_for(&dir, &name, key);
    real_topic(&name, key);
    let k = hex(key);
    let mut pubr = KillOnDrop(
        shmbus(&config, &["pub", &k, "9", "--count", "0", "--rate", "200"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = pubr.0.id();
    // The watchdog bounds the waits.
    let semid = loop {
        match sys::sem_lookup(key) {
            Ok(id) if sys::sem_getpid(id).ok() == Some(pid as i32) => break id,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    sys::sem_remove(semid).unwrap();
    let status = pubr.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(pubr.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the publisher lock of topic '{name}' ({k}) was removed"
        )) && err.contains("published before"),
        "{err}"
    );
}

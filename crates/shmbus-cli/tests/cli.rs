//! End-to-end tests of the `shmbus` binary against real topics and real
//! publisher processes. Every topic has a unique key and a Guard; every
//! child is killed on drop; every test has a watchdog.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shmbus_core::sys;
use shmbus_pub::{Publisher, RawPublisher};
use shmbus_sub::Subscriber;
use shmbus_testkit::{Guard, KillOnDrop, child, role, unique_key, unique_topic, watchdog};

mod common;
use common::{Run, run_cmd, shmbus};

/// The frame type of the test topics.
#[derive(
    Serialize,
    Deserialize,
    Debug,
    Clone,
    PartialEq,
    postcard::experimental::max_size::MaxSize,
    postcard_schema::Schema,
)]
struct Imu {
    t_us: u64,
    acc: [f32; 3],
    frame: heapless::String<8>,
    ok: bool,
}

fn imu(t: u64) -> Imu {
    Imu {
        t_us: t,
        acc: [0.5, -0.25, 9.81],
        frame: heapless::String::from("imu"),
        ok: true,
    }
}

/// Child roles. `publish NAME KEY SLOTS HZ`: publish `imu(n)` at HZ until
/// killed, printing "ready" once the topic exists.
#[test]
fn child_role_entry() {
    let Some((role, args)) = role() else { return };
    match role.as_str() {
        "publish" => {
            let key: i32 = args[1].parse().unwrap();
            let topic = shmbus_core::Topic::new(&args[0])
                .key(key)
                .slots(args[2].parse().unwrap());
            let hz: f64 = args[3].parse().unwrap();
            let mut p = Publisher::<Imu>::open(&topic).unwrap();
            p.publish(&imu(0)).unwrap();
            println!("ready");
            let mut n = 1;
            loop {
                std::thread::sleep(Duration::from_secs_f64(1.0 / hz));
                p.publish(&imu(n)).unwrap();
                n += 1;
            }
        }
        "doctor-limits" => doctor_limits_role(std::path::Path::new(&args[0])),
        "doctor-sem-unreadable" => doctor_sem_unreadable_role(std::path::Path::new(&args[0])),
        // doctor-many DIR: in a private IPC namespace, 200 segments of
        // another program in the derived key range; doctor's output into DIR.
        "doctor-many" => {
            for i in 0..200 {
                sys::shmget(
                    0x53f0_0000 + i,
                    4096,
                    libc::IPC_CREAT | libc::IPC_EXCL | 0o600,
                )
                .unwrap();
            }
            let o = shmbus(&["doctor"]).output().unwrap();
            let text = format!(
                "{}{}exit {:?}\n",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr),
                o.status.code()
            );
            std::fs::write(std::path::Path::new(&args[0]).join("doctor.txt"), text).unwrap();
            println!("done");
        }
        // hold-lock KEY: take the publisher lock at KEY and remove the
        // segment, leaving a held lock with no segment (a lock-only squat).
        "hold-lock" => {
            let key: i32 = args[0].parse().unwrap();
            let p = Publisher::<Imu>::open(&shmbus_core::Topic::new("squat").key(key)).unwrap();
            sys::shm_remove(sys::shmget(key, 0, 0).unwrap()).unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(300));
            drop(p);
        }
        // make-lock KEY: create a semaphore set of one at KEY and exit (it
        // stays: a lock squat when run as another user).
        "make-lock" => {
            let key: i32 = args[0].parse().unwrap();
            // SAFETY: semget takes plain integers and touches no memory.
            let id = unsafe { libc::semget(key, 1, libc::IPC_CREAT | libc::IPC_EXCL | 0o644) };
            assert!(id >= 0, "semget: {}", std::io::Error::last_os_error());
            println!("ready");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Start a publisher child and wait until its topic exists.
fn publisher(name: &str, key: i32, slots: u32, hz: f64) -> KillOnDrop {
    let args = [
        name.to_string(),
        key.to_string(),
        slots.to_string(),
        hz.to_string(),
    ];
    let mut c = KillOnDrop(
        child("publish", &args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn publisher"),
    );
    // libtest prints its own lines first.
    let mut out = BufReader::new(c.0.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "publisher exited before it was ready"
        );
    }
    c
}

fn run(args: &[&str]) -> Run {
    run_cmd(shmbus(args))
}

/// Run `shmbus` with `input` written to its standard input from a thread
/// (the tool may stop reading early and exit: a broken pipe is the end of
/// the feed, never a blocked test).
fn run_input(args: &[&str], input: Vec<u8>) -> Run {
    use std::io::Write;
    let mut c = shmbus(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmbus");
    let mut i = c.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = i.write_all(&input);
    });
    let o = c.wait_with_output().unwrap();
    writer.join().unwrap();
    Run::of(o)
}

/// A topic with a unique key and a name unique to this process too (tests
/// look topics up by name; another test run may use the same test name).
fn topic(test: &str) -> (shmbus_core::Topic, Guard) {
    let (t, g) = unique_topic(test);
    let name = format!("{}-{}", t.name, std::process::id());
    (shmbus_core::Topic { name, ..t }, g)
}

fn hex(key: i32) -> String {
    format!("0x{:08x}", key as u32)
}

/// A segment of another program at a unique key, filled with `bytes`.
fn foreign_segment(test: &str, size: usize, bytes: &[u8]) -> Guard {
    let key = unique_key(test);
    let guard = Guard(key);
    let id = sys::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).unwrap();
    let att = sys::WriteAttachment::read_write(id).unwrap();
    shmbus_core::codec::store_bytes(att.atomic_words(0, bytes.len().div_ceil(4)).unwrap(), bytes);
    guard
}

/// Many other programs' segments in the derived-key range (3,000 made
/// `list` print 6,001 lines: a row and a note each) are one line when none
/// sits at a topic of the config; `--key` still shows one, `--json` all.
/// In a private IPC namespace: keys of that range are names' keys.
#[test]
fn many_foreign_segments_in_the_names_key_range_are_one_line() {
    watchdog("list-foreign-fold", Duration::from_secs(120));
    if !root_or_skip("many_foreign_segments_in_the_names_key_range_are_one_line") {
        return;
    }
    assert!(
        shmbus_testkit::private_ipc(),
        "unshare(CLONE_NEWIPC) as root"
    );
    let keys: Vec<i32> = (0..12).map(|i| 0x53fe_a000 + i).collect();
    for &k in &keys {
        sys::shmget(k, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).unwrap();
    }
    let r = run(&["list", "--window", "0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stdout);
    assert!(
        lines[0].starts_with("12 segments of other programs (created 12 by root (uid 0))")
            && lines[0].contains("`shmbus list --key KEY` shows one"),
        "{}",
        r.stdout
    );
    // Asked for by key: its row and its note, as before.
    let k = hex(keys[3]);
    let r = run(&["list", "--window", "0", "--key", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("(not shmbus: see below)")
            && r.stdout.contains(&format!("{k}: not a shmbus topic")),
        "{}",
        r.stdout
    );
    let r = run(&["list", "--window", "0", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let n = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] == "not shmbus")
        .count();
    assert_eq!(n, 12, "{v}");
    // Eight or fewer: a row each, as before.
    for &k in &keys[8..] {
        let id = sys::shmget(k, 0, 0).unwrap();
        sys::shm_remove(id).unwrap();
    }
    let r = run(&["list", "--window", "0"]);
    assert_eq!(
        r.stdout.matches("(not shmbus: see below)").count(),
        8,
        "{}",
        r.stdout
    );
    // The namespace, and the segments in it, go with this test's thread.
}

/// `list --key` that matches nothing says the filter matched nothing, not
/// that the machine has no topics: this test's own topic is there.
#[test]
fn list_with_a_key_that_matches_nothing_says_the_filter_did() {
    watchdog("list-nomatch", Duration::from_secs(120));
    let (topic, _g) = self::topic("list-nomatch");
    drop(Publisher::<Imu>::open(&topic).unwrap());
    let none = unique_key("list-nomatch-none");
    let _none = Guard(none);
    let none_hex = hex(none);
    for json in [false, true] {
        let mut args = vec!["list", "--window", "0", "--key", &none_hex];
        args.extend(json.then_some("--json"));
        let r = run(&args);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "no shmbus topic at --key {}: the filter matched nothing",
                hex(none)
            )) && r.stderr.contains("without --key"),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains("on this machine"), "{}", r.stderr);
    }
    // The topic is there, and found by its own key.
    let r = run(&["list", "--window", "0", "--key", &hex(topic.key)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&topic.name), "{}", r.stdout);
}

#[test]
fn list_finds_the_topic_and_skips_foreign_segments() {
    watchdog("list", Duration::from_secs(120));
    let (topic, _g) = self::topic("list");
    let _p = publisher(&topic.name, topic.key, 8, 100.0);
    let foreign = foreign_segment("list-foreign", 4096, b"NOT A SHMBUS SEGMENT AT ALL");
    let (k, f) = (hex(topic.key), hex(foreign.key()));
    let r = run(&["list", "--json", "--key", &k, "--key", &f]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = v.as_array().unwrap();
    // Asked for by key, another program's segment is shown as such (it
    // could be a squat at a topic's key), never as a topic.
    assert_eq!(rows.len(), 2, "{v}");
    let other = rows.iter().find(|r| r["key"]["hex"] == f.as_str()).unwrap();
    assert_eq!(other["status"], "not shmbus", "{other}");
    let t = rows.iter().find(|r| r["key"]["hex"] == k.as_str()).unwrap();
    assert_eq!(t["name"], topic.name.as_str());
    assert_eq!(t["key"]["hex"], k.as_str());
    assert_eq!(t["slots"], 8);
    assert_eq!(t["schema"], "Imu");
    assert_eq!(t["publisher_alive"], true);
    assert!(t["generation"].as_u64().unwrap() >= 1);
    assert!(t["rate_hz"].as_f64().unwrap() > 0.0, "{t}");
    // The table shows it too, and never the foreign key unless asked for.
    let r = run(&["list", "--window", "0"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains(&topic.name) && r.stdout.contains(&k),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(&f), "{}", r.stdout);
    // rm refuses another program's segment and leaves it alone.
    let r = run(&["rm", &f]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with("shmbus: ") && r.stderr.contains("not a shmbus topic"),
        "{}",
        r.stderr
    );
    assert!(sys::shmget(foreign.key(), 0, 0).is_ok());
}

/// Another program's memory that starts with zeros (fresh System V memory
/// is all zeros) is not a topic "being created": no publisher lock is at
/// its key. rm leaves it alone, even with a process attached, and info
/// says what it is. A topic a killed publisher left half-created (its lock
/// behind, the magic still 0) is what rm removes: at a key where no topic
/// belongs, only with --force.
#[test]
fn rm_tells_another_programs_zeros_from_a_half_created_topic() {
    watchdog("rm-zeros", Duration::from_secs(120));
    let mut bytes = vec![0u8; 8];
    bytes.extend([0xaa; 56]);
    let foreign = foreign_segment("rm-zeros", 4096, &bytes);
    let f = hex(foreign.key());
    let id = sys::shmget(foreign.key(), 0, 0).unwrap();
    let att = sys::Attachment::read_only(id).unwrap();
    let before: Vec<u32> = att.words(0, 16).unwrap().iter().map(|w| w.load()).collect();
    for args in [vec!["rm", f.as_str()], vec!["rm", "--force", f.as_str()]] {
        let r = run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stdout);
        assert!(r.stderr.contains("not a shmbus topic"), "{}", r.stderr);
    }
    let r = run(&["info", &f]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("not a shmbus topic") && !r.stderr.contains("being created"),
        "{}",
        r.stderr
    );
    let after: Vec<u32> = att.words(0, 16).unwrap().iter().map(|w| w.load()).collect();
    assert_eq!(before, after);
    // Still there, and nobody but `att` attached (polled: a sibling test
    // thread's fork adds attachments until its child execs).
    let left = shmbus_testkit::settled(|| sys::shm_stat(id).map(|s| s.nattch), |n| *n == Ok(1));
    assert_eq!(
        left,
        Ok(1),
        "the segment is still there, attached by us alone"
    );
    drop(att);

    // A half-created topic: the killed creator's lock, then its zeros.
    let half = Guard(unique_key("rm-half"));
    let mut lock = shmbus_core::lock::PublisherLock::acquire(half.key(), 0o600, None).unwrap();
    lock.keep();
    drop(lock);
    sys::shmget(half.key(), 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).unwrap();
    let h = hex(half.key());
    // Away from a topic key (the derived range, the config's) the same
    // objects may be another program's memory and its mutex (one
    // semaphore of the same creator): rm removed both. It asks for --force
    // there, and list's fix says so.
    let r = run(&["rm", &h]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("refusing without --force") && r.stdout.is_empty(),
        "{}",
        r.stderr
    );
    assert!(sys::shmget(half.key(), 0, 0).is_ok(), "the segment stays");
    assert!(shmbus_core::sysvipc::semaphore_by_key(half.key()).is_some());
    let r = run(&["list", "--window", "0", "--key", &h]);
    assert!(
        r.stdout.contains(&format!("`shmbus rm --force {h}`")),
        "{}",
        r.stdout
    );
    let r = run(&["rm", "--force", &h]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Its creator is dead (the lock is free): not "being created".
    assert!(r.stdout.contains("(left half-created)"), "{}", r.stdout);
    assert!(sys::shmget(half.key(), 0, 0).is_err());
    assert_eq!(
        shmbus_core::lock::publisher_status(half.key()),
        shmbus_core::PublisherStatus::NoLock
    );
}

/// Another program that keeps a semaphore set beside its segment at one
/// key (the classic `ftok` pair), its memory still zeros, is not a topic
/// left half-created: a publisher lock is a set of one semaphore. `list`
/// called it half-created, doctor told to `shmbus rm` it, and rm removed
/// the program's memory and its semaphores (exit 0).
#[test]
fn another_programs_zeros_and_semaphores_at_one_key_are_not_a_topic() {
    watchdog("rm-ftok-pair", Duration::from_secs(120));
    let pair = foreign_segment("rm-ftok-pair", 4096, &[0u8; 64]);
    let k = hex(pair.key());
    // SAFETY: semget takes plain integers and touches no memory.
    let semid = unsafe { libc::semget(pair.key(), 3, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
    assert!(semid >= 0, "semget: {}", std::io::Error::last_os_error());
    let shmid = sys::shmget(pair.key(), 0, 0).unwrap();

    let r = run(&["list", "--window", "0", "--key", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("(not shmbus: see below)") && !r.stdout.contains("half-created"),
        "{}",
        r.stdout
    );
    let r = run(&["doctor", "--key", &k]);
    assert!(!r.stdout.contains("half-created"), "{}", r.stdout);
    assert!(
        !r.stdout.contains(&format!("shmbus rm {k}")),
        "{}",
        r.stdout
    );
    for args in [vec!["rm", k.as_str()], vec!["rm", "--force", k.as_str()]] {
        let r = run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stdout);
        assert!(r.stderr.contains("not a shmbus topic"), "{}", r.stderr);
    }
    let r = run(&["info", &k]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("not a shmbus topic") && !r.stderr.contains("half-created"),
        "{}",
        r.stderr
    );
    assert_eq!(
        sys::shmget(pair.key(), 0, 0).ok(),
        Some(shmid),
        "the segment stays"
    );
    assert_eq!(
        shmbus_core::sys::sem_lookup(pair.key()).ok(),
        Some(semid),
        "the semaphores stay"
    );
}

#[test]
fn info_shows_the_schema_and_shmid_ds() {
    watchdog("info", Duration::from_secs(120));
    let (topic, _g) = self::topic("info");
    let p = publisher(&topic.name, topic.key, 4, 50.0);
    let k = hex(topic.key);
    let r = run(&["info", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for want in [
        "t_us: u64",
        "acc: [f32; 3]",
        "frame: heapless::String<",
        "shm_nattch",
        "shm_cpid",
        "shm_lpid",
        "shm_ctime",
        "alive, pid",
    ] {
        assert!(r.stdout.contains(want), "missing {want:?} in\n{}", r.stdout);
    }
    let r = run(&["info", &topic.name, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["shmid_ds"]["shm_cpid"], p.0.id() as i64, "{v}");
    assert_eq!(v["publisher"]["pid"], p.0.id() as i64);
    assert_eq!(v["schema"]["name"], "Imu");
    assert_eq!(v["latest"]["value"]["frame"], "imu");
    assert_eq!(
        v["latest"]["value"]["acc"],
        serde_json::json!([0.5, -0.25, 9.81])
    );
    assert_eq!(
        v["example"],
        serde_json::json!({"t_us": 0, "acc": [0.0, 0.0, 0.0], "frame": "", "ok": false})
    );
}

#[test]
fn echo_json_prints_n_decodable_lines() {
    watchdog("echo", Duration::from_secs(120));
    let (topic, _g) = self::topic("echo");
    let _p = publisher(&topic.name, topic.key, 8, 100.0);
    let r = run(&[
        "echo",
        &hex(topic.key),
        "--json",
        "--count",
        "5",
        "--timeout",
        "20",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{}", r.stdout);
    let mut last = 0;
    for l in &lines {
        let g = l["generation"].as_u64().unwrap();
        assert!(g > last, "generations increase: {}", r.stdout);
        last = g;
        assert_eq!(l["value"]["frame"], "imu");
        assert_eq!(
            l["value"]["t_us"].as_u64().unwrap() + 1,
            g,
            "t_us is n, generation n+1"
        );
    }
    // Human-readable form.
    let r = run(&["echo", &topic.name, "--count", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("acc: [0.5, -0.25, 9.81]") && r.stdout.contains("frame: \"imu\""),
        "{}",
        r.stdout
    );
}

#[test]
fn echo_all_reports_missed_frames() {
    watchdog("echo-all", Duration::from_secs(120));
    let (topic, _g) = self::topic("echo-all");
    let topic = topic.slots(4);
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    let mut echo = KillOnDrop(
        shmbus(&[
            "echo",
            &hex(topic.key),
            "--all",
            // From the oldest frame in the ring: frame 1 is read even if it
            // is published between the attach and the cursor's start.
            "--from-oldest",
            "--json",
            "--count",
            "5",
            "--timeout",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    shmbus_testkit::wait_mapped(echo.0.id(), topic.key).unwrap();
    p.publish(&imu(1)).unwrap();
    let mut out = BufReader::new(echo.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let v: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["generation"], 1);
    // Stop the reader, overrun the 4-slot ring with 20 frames, resume it.
    // `kill` returns before a reader running on another CPU has stopped:
    // this returns once it has.
    let stopped = shmbus_testkit::Suspended::stop(echo.0.id()).unwrap();
    for n in 2..=21 {
        p.publish(&imu(n)).unwrap();
    }
    drop(stopped);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = echo.0.wait().unwrap();
    let mut err = String::new();
    echo.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    let gens: Vec<u64> = rest
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["generation"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(gens, [18, 19, 20, 21], "the four frames still in the ring");
    assert!(err.contains("missed 16 frames"), "{err}");
}

#[test]
fn pub_refuses_while_a_publisher_is_alive_and_works_when_not() {
    watchdog("pub", Duration::from_secs(120));
    let (topic, _g) = self::topic("pub");
    let mut p = publisher(&topic.name, topic.key, 4, 20.0);
    let k = hex(topic.key);
    let value = r#"{"t_us": 77, "acc": [1, 2.5, "NaN"], "frame": "cli", "ok": true}"#;
    let r = run(&["pub", &k, value]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with("shmbus: ") && r.stderr.contains(&format!("pid {}", p.0.id())),
        "{}",
        r.stderr
    );
    p.0.kill().unwrap();
    p.0.wait().unwrap();
    // A value that does not fit says where and what, and shows an example.
    let r = run(&[
        "pub",
        &k,
        r#"{"t_us": -1, "acc": [0,0,0], "frame": "", "ok": true}"#,
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains(".t_us") && r.stderr.contains("does not fit in u64"),
        "{}",
        r.stderr
    );
    let r = run(&["pub", &k, value, "--count", "3", "--rate", "200"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut sub = Subscriber::<Imu>::attach(&topic).unwrap();
    let s = sub.latest().unwrap().unwrap();
    assert_eq!(s.value.t_us, 77);
    assert_eq!(s.value.acc[..2], [1.0, 2.5]);
    assert!(s.value.acc[2].is_nan());
    assert_eq!(s.value.frame, "cli");
    let r = run(&["info", &k, "--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["generation"].as_u64().unwrap(), s.generation);
    assert_eq!(
        v["publisher"]["state"], "not running",
        "pub exited and released the lock"
    );
}

#[test]
fn pub_reads_json_lines_from_stdin() {
    watchdog("pub-stdin", Duration::from_secs(120));
    let (topic, _g) = self::topic("pub-stdin");
    drop(Publisher::<Imu>::open(&topic).unwrap());
    let input: String = (1..=3)
        .map(|t| format!("{{\"t_us\": {t}, \"acc\": [0,0,0], \"frame\": \"s\", \"ok\": false}}\n"))
        .collect();
    let r = run_input(&["pub", &hex(topic.key), "-"], input.into_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut sub = Subscriber::<Imu>::attach(&topic).unwrap();
    sub.raw().seek_oldest();
    let mut seen = Vec::new();
    while let shmbus_sub::Next::Frame(s) = sub.next().unwrap() {
        seen.push(s.value.t_us);
    }
    assert_eq!(seen, [1, 2, 3]);
}

/// `pub TOPIC VALUE --rate 50` with no `--count` published the value once
/// and exited 0: the rate of a stream that never was. It is a usage error
/// (exit 2) saying to add `--count`, before the topic is touched; with a
/// count the rate paces it as before.
#[test]
fn pub_refuses_a_rate_without_a_count() {
    watchdog("pub-rate-alone", Duration::from_secs(120));
    let (topic, _g) = self::topic("pub-rate-alone");
    drop(Publisher::<Imu>::open(&topic).unwrap());
    let k = hex(topic.key);
    let value = r#"{"t_us": 1, "acc": [0,0,0], "frame": "s", "ok": false}"#;
    let r = run(&["pub", &k, value, "--rate", "50"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("--rate paces repeated frames, but without --count")
            && r.stderr.contains("add --count N"),
        "{}",
        r.stderr
    );
    let mut sub = Subscriber::<Imu>::attach(&topic).unwrap();
    assert!(sub.latest().unwrap().is_none());
    let r = run(&["pub", &k, value, "--rate", "1000", "--count", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("published 2 frames"), "{}", r.stdout);
}

/// `shmbus echo TOPIC >&-` (standard output closed) read for ever: Rust's
/// runtime had put /dev/null on the closed fd 1, so every frame was
/// written into nothing without an error; `hz` and `top` likewise. Each
/// now refuses at start (exit 2, saying why and the fix), as `record -o -`
/// and `cat` do; a shell's `> /dev/null` (write-only) still reads on
/// purpose.
#[test]
fn readers_refuse_a_standard_output_closed_at_start() {
    watchdog("readers-stdout-closed", Duration::from_secs(300));
    let (topic, _g) = self::topic("readers-stdout-closed");
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(1)).unwrap();
    let k = hex(topic.key);
    for args in [
        vec!["echo", k.as_str()],
        vec!["hz", k.as_str(), "--interval", "0.2"],
        vec!["top", "--interval", "0.2"],
    ] {
        let cmd = shmbus(&args);
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg("exec \"$@\" >&-")
            .arg("sh")
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut c = KillOnDrop(sh.spawn().unwrap());
        let status = shmbus_testkit::exit_within(
            &mut c.0,
            Duration::from_secs(60),
            "a reader with stdout closed",
        );
        let mut err = String::new();
        c.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("shmbus: standard output is closed")
                && err.contains("shown to no one")
                && err.contains("> /dev/null"),
            "{args:?}: {err}"
        );
    }
    // Into /dev/null on purpose (write-only, as a shell's `>` opens it).
    let out = shmbus(&["echo", &k, "--all", "--from-oldest", "--count", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pub TOPIC VALUE --count 0` (until interrupted) ended by SIGTERM or
/// SIGHUP died of it (exit 143, 129) with no summary, and Ctrl-C likewise
/// (130). Each now ends it the same way: the pause before the next frame is
/// cut short (here a 100 s one, at --rate 0.01), the summary is printed and
/// the exit code is 0; the topic stays, with what was published.
#[test]
fn pub_until_interrupted_ends_on_any_stop_signal_with_its_summary() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    watchdog("pub-stop-signal", Duration::from_secs(300));
    let (topic, _g) = self::topic("pub-stop-signal");
    drop(Publisher::<Imu>::open(&topic).unwrap());
    let k = hex(topic.key);
    let mut sub = Subscriber::<Imu>::attach(&topic).unwrap();
    for (n, sig) in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP]
        .into_iter()
        .enumerate()
    {
        let value = format!(r#"{{"t_us": {n}, "acc": [0,0,0], "frame": "s", "ok": false}}"#);
        let mut c = KillOnDrop(
            shmbus(&["pub", &k, &value, "--count", "0", "--rate", "0.01"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // Its first frame is published at once; the next is 100 s away.
        // `wait_for_publisher` also returns at once for a frame published
        // since this subscriber's last liveness check: the previous pub's,
        // read already. Under qemu-arm this pub had not started by then,
        // and the `wait_next` below ended with `PublisherGone`. Wait until
        // this one holds the topic's lock (the next call sleeps until then).
        let end = Instant::now() + Duration::from_secs(60);
        while !sub
            .wait_for_publisher(end.saturating_duration_since(Instant::now()))
            .unwrap()
            .is_alive()
        {}
        match sub.wait_next(Duration::from_secs(60)).unwrap() {
            shmbus_sub::Next::Frame(s) => assert_eq!(s.value.t_us, n as u64),
            other => panic!("{sig}: no frame from pub: {other:?}"),
        }
        kill(Pid::from_raw(c.0.id() as i32), sig).unwrap();
        let status = shmbus_testkit::exit_within(
            &mut c.0,
            Duration::from_secs(60),
            "pub after a stop signal",
        );
        let mut out = String::new();
        let mut err = String::new();
        c.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        c.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(status.code(), Some(0), "{sig}: {status:?} {out}{err}");
        assert!(
            out.contains(&format!("published 1 frame on '{}'", topic.name)),
            "{sig}: {out}{err}"
        );
    }
    // The topic stays, with the last frame published.
    assert_eq!(sub.latest().unwrap().unwrap().value.t_us, 2);
}

/// `pub TOPIC -` publishes each line of stdin once, as it arrives: a
/// `--count` or `--rate` there was silently ignored, and is now a usage
/// error (exit 2) that says why, before the topic is touched.
#[test]
fn pub_from_stdin_refuses_count_and_rate() {
    watchdog("pub-stdin-flags", Duration::from_secs(120));
    let (topic, _g) = self::topic("pub-stdin-flags");
    drop(Publisher::<Imu>::open(&topic).unwrap());
    let k = hex(topic.key);
    for (flags, named) in [
        (&["--count", "3"][..], "--count cannot be used with -"),
        (&["--count", "0"][..], "--count cannot be used with -"),
        (&["--rate", "5"][..], "--rate cannot be used with -"),
        (
            &["-n", "2", "--rate", "5"][..],
            "--count and --rate cannot be used with -",
        ),
    ] {
        let mut args = vec!["pub", k.as_str(), "-"];
        args.extend_from_slice(flags);
        let line = br#"{"t_us": 1, "acc": [0,0,0], "frame": "s", "ok": false}"#;
        let r = run_input(&args, [&line[..], b"\n"].concat());
        let err = &r.stderr;
        assert_eq!(r.code, 2, "{flags:?}: {err}");
        assert!(
            err.contains(named) && err.contains("published once, as it arrives"),
            "{flags:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // Nothing was published.
    let mut sub = Subscriber::<Imu>::attach(&topic).unwrap();
    assert!(sub.latest().unwrap().is_none());
    // The help says so.
    let r = run(&["pub", "--help"]);
    assert!(
        r.stdout.contains("--count and --rate are refused there"),
        "{}",
        r.stdout
    );
}

#[test]
fn rm_removes_and_says_what_happens_to_attached_processes() {
    watchdog("rm", Duration::from_secs(120));
    // Tools that other tests run at the same time (top, record, foxglove)
    // attach every readable topic: a private IPC namespace (root, as in CI)
    // keeps them out of this topic's attach count.
    shmbus_testkit::private_ipc();
    let (topic, _g) = self::topic("rm");
    let mut p = publisher(&topic.name, topic.key, 4, 20.0);
    let k = hex(topic.key);
    let r = run(&["rm", &k]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("live publisher") && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    p.0.kill().unwrap();
    p.0.wait().unwrap();
    let sub = Subscriber::<Imu>::attach(&topic).unwrap();
    let r = run(&["rm", &topic.name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // This test's subscriber, and for an instant also a child that another
    // test thread forks (it holds this process's attachments until it
    // execs): at least one, and the sentence says what that means.
    let attached: u32 = r
        .stdout
        .split(": ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        attached >= 1
            && r.stdout.contains("still attached keep")
            && r.stdout.contains("reading the old frames"),
        "{}",
        r.stdout
    );
    assert!(sub.is_removed());
    assert!(sys::shmget(topic.key, 0, 0).is_err(), "key is free");
    assert!(sys::sem_lookup(topic.key).is_err(), "lock removed");
    let r = run(&["rm", &k]);
    assert_eq!(r.code, 1, "already gone: {}", r.stderr);
}

#[test]
fn garbage_segments_and_frames_give_clear_errors() {
    watchdog("garbage", Duration::from_secs(120));
    // The shmbus magic and version, then nonsense sizes.
    let mut bytes = shmbus_core::layout::MAGIC.to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&[0xee; 100]);
    let g = foreign_segment("garbage", 8192, &bytes);
    let k = hex(g.key());
    for cmd in ["info", "echo", "pub", "hz"] {
        let mut args = vec![cmd, k.as_str()];
        if cmd == "pub" {
            args.push("{}");
        }
        let r = run(&args);
        assert_eq!(r.code, 2, "{cmd}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("shmbus: ")
                && r.stderr.contains("corrupt")
                && r.stderr.contains("shmbus rm"),
            "{cmd}: {}",
            r.stderr
        );
    }
    let r = run(&["list", "--key", &k]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("broken"), "{}", r.stdout);
    let r = run(&["rm", &k]);
    assert_eq!(r.code, 0, "a broken topic can be removed: {}", r.stderr);

    // A valid topic with a frame that does not decode, then a good one.
    let (topic, _g) = self::topic("garbage-frame");
    let schema = shmbus_core::schema::schema_bytes::<Imu>().unwrap();
    let mut raw = RawPublisher::open(&topic, &schema, 64).unwrap();
    raw.publish_bytes(&[0xff; 20]).unwrap();
    raw.publish_bytes(&postcard::to_allocvec(&imu(5)).unwrap())
        .unwrap();
    let r = run(&[
        "echo",
        &hex(topic.key),
        "--all",
        "--from-oldest",
        "--json",
        "--count",
        "2",
        "--timeout",
        "10",
    ]);
    assert_eq!(
        r.code, 2,
        "one of the two frames could not be shown: {}",
        r.stderr
    );
    assert!(r.stderr.contains("does not decode"), "{}", r.stderr);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["value"]["t_us"], 5);
}

#[test]
fn unknown_topics_exit_1() {
    let (topic, _g) = self::topic("unknown");
    for t in [
        hex(topic.key),
        "no/such/topic/anywhere".to_string(),
        "shmid:2147483000".to_string(),
    ] {
        let r = run(&["info", &t]);
        assert_eq!(r.code, 1, "{t}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("shmbus: ") && r.stderr.contains("shmbus list"),
            "{}",
            r.stderr
        );
    }
    let r = run(&["list", "--key", &hex(topic.key)]);
    assert_eq!(r.code, 1, "nothing to list");
    let r = run(&["frobnicate"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.starts_with("shmbus: "), "{}", r.stderr);
}

#[test]
fn topic_arguments_that_can_name_no_topic_are_usage_errors() {
    // Each can name no topic on any machine: a malformed `key:`/`shmid:`,
    // key 0, a negative shmid, a name topics cannot have, a 10 kB name.
    // Every command that takes a TOPIC says why in one short line and
    // exits 2 (usage), not 1 ("not there, is its publisher running?").
    let long = "n".repeat(10_000);
    let bad = [
        "shmid:x",
        "key:zz",
        "shmid:-3",
        "key:0",
        "0x123456789",
        "bad name!",
        "imu\u{1b}]0;owned\u{7}",
        long.as_str(),
    ];
    let tmp_dir = shmbus_testkit::TempDir::new("bad-topic");
    let dir = tmp_dir.path().to_path_buf();
    let out = dir.join("never.mcap");
    let out = out.to_str().unwrap();
    for arg in bad {
        for cmd in [
            vec!["info", arg],
            vec!["echo", arg],
            vec!["hz", arg],
            vec!["rm", arg],
            vec!["record", "-o", out, arg],
            vec!["foxglove", "--duration", "1", arg],
        ] {
            let r = run(&cmd);
            let shown = format!("{:?} {:.60}", cmd[0], arg);
            assert_eq!(r.code, 2, "{shown}: {}", r.stderr);
            assert!(r.stderr.starts_with("shmbus: "), "{shown}: {}", r.stderr);
            assert!(
                !r.stderr.contains("no topic named"),
                "{shown}: {}",
                r.stderr
            );
            let first = r.stderr.lines().next().unwrap_or_default();
            assert!(first.len() < 300, "{shown}: a short line: {first}");
            assert!(
                !r.stderr.chars().any(|c| c.is_control() && c != '\n'),
                "{shown}: no control character reaches the terminal: {:?}",
                r.stderr
            );
        }
    }
    assert!(
        !std::path::Path::new(out).exists(),
        "a refused record creates no file"
    );
    // clap's own messages quote what was typed: cut too.
    let r = run(&["top", &long]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.len() < 400 && r.stderr.contains("(10002 bytes)"),
        "{}",
        r.stderr
    );
    // A name that could be a topic but is not there stays "not found".
    let r = run(&["info", "0xzz"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    watchdog("pipe", Duration::from_secs(120));
    let (topic, _g) = self::topic("pipe");
    let _p = publisher(&topic.name, topic.key, 8, 200.0);
    let mut c = KillOnDrop(
        shmbus(&["echo", &hex(topic.key), "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(c.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("generation"));
    // The reader (and with it the pipe) is gone: like `| head -1`.
    let status = c.0.wait().unwrap();
    let mut err = String::new();
    c.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

/// A dead publisher is waited for; a removed topic too, until it is
/// created again at its key, whose frames echo then reads (it used to end,
/// exit 1, telling the reader to start a publisher that already ran
/// again). With `--timeout`, a topic removed and not created again ends
/// it (exit 1) and says so.
#[test]
fn echo_survives_a_dead_publisher_and_a_removed_topic() {
    watchdog("dead", Duration::from_secs(240));
    let (topic, _g) = self::topic("dead");
    let k = hex(topic.key);
    let mut p = publisher(&topic.name, topic.key, 8, 100.0);
    let mut c = KillOnDrop(
        shmbus(&["echo", &k, "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = Lines::of(&mut c.0);
    lines.until(false, "generation");
    p.0.kill().unwrap();
    p.0.wait().unwrap();
    // The topic is removed once echo has said that its publisher is not
    // running (a fixed 500 ms was not always enough on a loaded machine:
    // echo then saw the removal first and never said it).
    lines.until(true, "is not running; waiting for it to come back");
    let r = run(&["rm", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    lines.until(
        true,
        "was removed (`shmbus rm` or its publisher); waiting for it to be created again",
    );
    let _p2 = publisher(&topic.name, topic.key, 8, 100.0);
    lines.until(true, "was created again (shmid ");
    // A frame of the new segment, read after it was attached.
    lines.until(false, "\"generation\":");
    assert!(!lines.seen.contains("panicked"), "{}", lines.seen);
    drop(c);

    let (gone, _g2) = self::topic("dead-gone");
    let gk = hex(gone.key);
    let mut p = publisher(&gone.name, gone.key, 8, 100.0);
    let mut c = KillOnDrop(
        shmbus(&["echo", &gk, "--timeout", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = Lines::of(&mut c.0);
    lines.until(false, "t_us");
    p.0.kill().unwrap();
    p.0.wait().unwrap();
    let r = run(&["rm", &gk]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    lines.until(true, "the topic was removed and not created again");
    let status = c.0.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{}", lines.seen);
}

/// The lines a running `shmbus` prints, both streams, as they come.
struct Lines {
    rx: std::sync::mpsc::Receiver<(bool, String)>,
    seen: String,
}

impl Lines {
    /// Read `c`'s standard output and error from two threads.
    fn of(c: &mut std::process::Child) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
        let out = BufReader::new(c.stdout.take().unwrap());
        let err = BufReader::new(c.stderr.take().unwrap());
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                let _ = tx.send((false, l));
            }
        });
        std::thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                let _ = tx2.send((true, l));
            }
        });
        Lines {
            rx,
            seen: String::new(),
        }
    }

    /// Wait (up to 60 s) for a line of stderr (`err`) or stdout holding
    /// `what`; its text.
    fn until(&mut self, err: bool, what: &str) -> String {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((e, l)) => {
                    self.seen
                        .push_str(&format!("{}{l}\n", if e { "E: " } else { "O: " }));
                    if e == err && l.contains(what) {
                        return l;
                    }
                }
                Err(_) => panic!("no line with {what:?} in 60 s; so far:\n{}", self.seen),
            }
        }
    }
}

/// A topic removed and created again (a sensor restarted with `shmbus rm`
/// first, or one that recreates its topic when it is removed) is followed:
/// `hz` says so and measures the new segment. It used to end (exit 1),
/// telling the reader to start a publisher that already ran again.
#[test]
fn hz_follows_a_topic_removed_and_created_again() {
    watchdog("hz-follow", Duration::from_secs(240));
    let (topic, _g) = self::topic("hz-follow");
    let k = hex(topic.key);
    let mut p = publisher(&topic.name, topic.key, 16, 100.0);
    let mut c = KillOnDrop(
        shmbus(&["hz", &k, "--interval", "0.5", "--duration", "600"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = Lines::of(&mut c.0);
    lines.until(false, &format!("publisher alive (pid {})", p.0.id()));
    p.0.kill().unwrap();
    p.0.wait().unwrap();
    let r = run(&["rm", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    lines.until(
        true,
        "was removed (`shmbus rm` or its publisher); waiting for it to be created again",
    );
    let p2 = publisher(&topic.name, topic.key, 16, 100.0);
    lines.until(true, "was created again (shmid ");
    lines.until(false, &format!("publisher alive (pid {})", p2.0.id()));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = c.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", lines.seen);
    assert!(!lines.seen.contains("panicked"), "{}", lines.seen);
}

#[test]
fn hz_and_top_report_rates_and_liveness() {
    watchdog("hz", Duration::from_secs(180));
    let (topic, _g) = self::topic("hz");
    let _p = publisher(&topic.name, topic.key, 16, 100.0);
    let k = hex(topic.key);
    // Every run ends after its 2 reports, each with a rate and the
    // publisher's liveness. Interval statistics need two frames in a row
    // read within one 0.5 s report, which a loaded machine does not always
    // give `hz` or the publisher (a report without them says "interval -"):
    // runs are repeated until one has them in both reports (60 s watchdog).
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = run(&["hz", &k, "--count", "2", "--interval", "0.5"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{}", r.stdout);
        for l in &lines {
            assert!(
                l.contains(" Hz")
                    && l.contains("publisher alive")
                    && (l.contains("interval mean") || l.contains("interval -")),
                "{l}"
            );
        }
        if lines.iter().all(|l| l.contains("interval mean")) {
            break;
        }
        assert!(
            Instant::now() < until,
            "no run of `hz` had interval statistics in both reports in 60 s; the last:\n{}",
            r.stdout
        );
    }
    // `top` says "ok" of a topic with a frame in its 0.5 s interval or in
    // the last second, and STALE otherwise: a publisher that did not run
    // for a second is STALE, rightly. Runs are repeated until one says ok.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = run(&["top", "--count", "1", "--interval", "0.5", "--key", &k]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let row = r
            .stdout
            .lines()
            .find(|l| l.contains(&topic.name))
            .unwrap_or_else(|| panic!("no row for {}:\n{}", topic.name, r.stdout));
        assert!(row.contains("alive"), "{row}");
        let state = row.trim_end();
        if state.ends_with("ok") {
            break;
        }
        assert!(state.ends_with("STALE"), "{row}");
        assert!(
            Instant::now() < until,
            "`top` never said ok of a topic published at 100 Hz in 60 s; the last:\n{}",
            r.stdout
        );
    }
}

/// One look cannot tell a publisher that runs without its lock from none:
/// `list`, `info` and `doctor` (text and JSON) still say there is no lock,
/// now with the newest frame's age, so a reader sees frames still come.
/// `list` said `none`, `info` `none (no publisher lock)`, and `doctor` that
/// the attached processes "see only old frames" of a topic published at
/// 100 Hz. `echo --timeout`'s hint gives the age too.
#[test]
fn one_shot_displays_give_a_lockless_topics_newest_frame_age() {
    watchdog("no-lock-age", Duration::from_secs(240));
    let (topic, _g) = self::topic("no-lock-age");
    let mut p = publisher(&topic.name, topic.key, 16, 100.0);
    assert!(shmbus_core::lock::remove_lock(topic.key).unwrap());
    let k = hex(topic.key);

    let r = run(&["list", "--key", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let row = r
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{} ", topic.name)))
        .unwrap_or_else(|| panic!("no row for {}:\n{}", topic.name, r.stdout));
    assert!(row.contains(" no lock (newest frame "), "{row}");

    let r = run(&["list", "--key", &k, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let t = v
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == topic.name.as_str()))
        .unwrap_or_else(|| panic!("no {} in {v}", topic.name));
    assert_eq!(t["publisher"]["state"], "no lock", "{t}");
    assert!(t["publisher"]["newest_frame_age_ns"].is_u64(), "{t}");
    assert_eq!(t["publisher_alive"], false, "{t}");

    let r = run(&["info", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("publisher "))
        .unwrap_or_else(|| panic!("no publisher line:\n{}", r.stdout));
    assert!(line.contains("no lock (newest frame "), "{line}");
    let r = run(&["info", &k, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["publisher"]["state"], "no lock", "{v}");
    assert!(v["publisher"]["newest_frame_age_ns"].is_u64(), "{v}");

    let r = run(&["doctor", "--key", &k]);
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    let finding = r
        .stdout
        .lines()
        .find(|l| l.contains(&format!("'{}'", topic.name)))
        .unwrap_or_else(|| panic!("no finding for {}:\n{}", topic.name, r.stdout));
    assert!(
        finding.contains("has no lock (newest frame ") && !finding.contains("old frames"),
        "{finding}"
    );

    p.0.kill().unwrap();
    p.0.wait().unwrap();
    let r = run(&["echo", &k, "--timeout", "0.5"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("its publisher is not running: the topic has no lock (newest frame "),
        "{}",
        r.stderr
    );
}

/// `top` on keys where nothing is yet says so (it printed a bare header
/// row, the same for a mistyped key as for a publisher not started yet),
/// and counts its rows in words ("1 topic", was "1 topics").
#[test]
fn top_says_why_its_table_is_empty() {
    watchdog("top-empty", Duration::from_secs(120));
    let (topic, _g) = self::topic("top-empty");
    let k = hex(topic.key);
    let r = run(&["top", "--count", "1", "--interval", "0.1", "--key", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("shmbus top: 0 topics at "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!(
            "nothing at key {k} yet (see `shmbus list` for the topics there are)"
        )),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("TOPIC"), "{}", r.stdout);
    let mut p = publisher(&topic.name, topic.key, 16, 100.0);
    let until = Instant::now() + Duration::from_secs(60);
    let r = loop {
        let r = run(&["top", "--count", "1", "--interval", "0.1", "--key", &k]);
        if r.stdout.contains("TOPIC") || Instant::now() > until {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        r.stdout.starts_with("shmbus top: 1 topic at "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("{} ", topic.name)),
        "{}",
        r.stdout
    );
    p.0.kill().unwrap();
    p.0.wait().unwrap();
}

/// `top` looks every interval, so it sees a topic without a lock move: a
/// publisher that goes on publishing after its lock was removed is
/// "running, no lock" and its state is not NO PUBLISHER (it said "none"
/// and NO PUBLISHER beside a 100 Hz rate). Once it stops, NO PUBLISHER.
#[test]
fn top_shows_a_publisher_running_without_its_lock() {
    watchdog("top-no-lock", Duration::from_secs(240));
    let (topic, _g) = self::topic("top-no-lock");
    let mut p = publisher(&topic.name, topic.key, 16, 100.0);
    assert!(shmbus_core::lock::remove_lock(topic.key).unwrap());
    let k = hex(topic.key);
    let row_of = |r: &Run| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{} ", topic.name)))
            .unwrap_or_else(|| panic!("no row for {}:\n{}", topic.name, r.stdout))
            .to_string()
    };
    // A frame in the interval is what it looks for: repeated until one run
    // had one (a loaded machine may hold the publisher back for a second).
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = run(&["top", "--count", "1", "--interval", "1", "--key", &k]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let row = row_of(&r);
        if row.contains("running, no lock") {
            assert!(!row.contains("NO PUBLISHER"), "{row}");
            break;
        }
        assert!(row.contains("NO PUBLISHER"), "{row}");
        assert!(
            Instant::now() < until,
            "`top` never saw the lock-less publisher run in 60 s; the last:\n{}",
            r.stdout
        );
    }
    p.0.kill().unwrap();
    p.0.wait().unwrap();
    let r = run(&["top", "--count", "1", "--interval", "1", "--key", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let row = row_of(&r);
    assert!(
        row.contains("NO PUBLISHER") && row.contains(" none "),
        "{row}"
    );
}

#[test]
fn doctor_checks_the_machine_and_the_config() {
    let tmp_dir = shmbus_testkit::TempDir::new("cli-doctor");
    let dir = tmp_dir.path().to_path_buf();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "bus = \"doctor\"\n[[topic]]\nname = \"imu\"\nslots = 8\nlock = \"try\"\n",
    )
    .unwrap();
    let r = run(&["doctor", "--config", good.to_str().unwrap(), "--key", "1"]);
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    for check in [
        "sysvipc",
        "config",
        "shmmax",
        "shmmni",
        "shmall",
        "memlock",
        "permissions",
        "RemoveIPC",
        "topics",
    ] {
        assert!(r.stdout.contains(check), "no {check} check:\n{}", r.stdout);
    }
    for l in r.stdout.lines() {
        assert!(
            l.starts_with("OK  ")
                || l.starts_with("WARN")
                || l.starts_with("FAIL")
                || l.starts_with("      "),
            "{l}"
        );
    }
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[topic]]\nname = \"imu\"\nslots = 3\n").unwrap();
    let r = run(&["doctor", "--config", bad.to_str().unwrap(), "--key", "1"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("FAIL  config") && r.stdout.contains("bad.toml:3:9"),
        "{}",
        r.stdout
    );
}

/// `doctor` said OK of a config whose `[[bridge.in]]` schema the bridge
/// refuses when it starts (a type that does not exist, an unbounded
/// string): the config's parser keeps the schema as text. It now fails it
/// with the bridge's own words at the schema's position.
#[test]
fn doctor_judges_a_bridge_in_schema_as_the_bridge_does() {
    let tmp_dir = shmbus_testkit::TempDir::new("cli-doctor-in");
    let with = |schema: &str| {
        let path = tmp_dir.path().join("in.toml");
        std::fs::write(
            &path,
            format!(
                "bus = \"doctor-in\"\n[[topic]]\nname = \"sp\"\nslots = 4\nlock = \"try\"\n\
                 [bridge]\n[[bridge.in]]\nfrom = \"g/sp\"\ntopic = \"sp\"\nschema = \"{schema}\"\n"
            ),
        )
        .unwrap();
        run(&["doctor", "--config", path.to_str().unwrap(), "--key", "1"]).stdout
    };
    let judged = |out: &str| out.contains("cannot be taken in from the broker");
    let good = with("struct S { x: f32, name: heapless::String<8> }");
    assert!(!judged(&good), "{good}");
    for (schema, words) in [
        ("struct S { x: f33 }", "f33"),
        ("struct S { name: String }", "no largest size"),
        (
            "heapless::Vec<u8, 100000000>",
            "more than a topic's frames hold",
        ),
    ] {
        let out = with(schema);
        assert!(
            out.lines()
                .any(|l| l.starts_with("FAIL  config") && judged(l)),
            "{schema}: {out}"
        );
        assert!(
            out.contains("in.toml:10:10: schema: ") && out.contains(words),
            "{schema}: {out}"
        );
    }
}

#[test]
fn help_has_an_example_for_every_command() {
    let r = run(&["--help"]);
    assert_eq!(r.code, 0);
    for cmd in [
        "list", "info", "echo", "pub", "hz", "top", "rm", "doctor", "demo", "bench", "record",
        "replay", "cat",
    ] {
        assert!(r.stdout.contains(cmd), "--help lacks {cmd}");
    }
    for cmd in [
        "list", "info", "echo", "pub", "hz", "top", "rm", "doctor", "demo",
    ] {
        let r = run(&[cmd, "--help"]);
        assert_eq!(r.code, 0, "{cmd}");
        assert!(
            r.stdout.contains("Examples:") && r.stdout.contains(&format!("shmbus {cmd}")),
            "{cmd}: {}",
            r.stdout
        );
    }
}

#[test]
fn bus_restricts_name_lookups_to_derived_keys() {
    let bus = format!("clitest-{}", std::process::id());
    let name = "bus-topic";
    let topic = shmbus_core::Topic::on_bus(&bus, name);
    let _g = Guard(topic.key);
    drop(Publisher::<Imu>::open(&topic).unwrap());
    let r = run(&["info", name, "--bus", &bus, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["key"]["hex"], hex(topic.key));
    let r = run(&["info", name, "--bus", "no-such-bus-anywhere"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("on bus 'no-such-bus-anywhere'"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_garbage_generation_is_refused_not_a_panic() {
    let (topic, _g) = self::topic("garbage-gen");
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(1)).unwrap();
    drop(p);
    // Overwrite the header's generation (offset 192) with u64::MAX.
    let id = sys::shmget(topic.key, 0, 0).unwrap();
    let att = sys::WriteAttachment::read_write(id).unwrap();
    for off in [192, 196] {
        att.atomic_word(off)
            .unwrap()
            .store(u32::MAX, std::sync::atomic::Ordering::Relaxed);
    }
    let k = hex(topic.key);
    for cmd in ["info", "echo", "hz", "pub"] {
        let mut args = vec![cmd, k.as_str()];
        if cmd == "pub" {
            args.push("{}");
        }
        let r = run(&args);
        assert_eq!(r.code, 2, "{cmd}: {}", r.stderr);
        assert!(
            r.stderr.contains("is impossible") && r.stderr.contains("shmbus rm"),
            "{cmd}: {}",
            r.stderr
        );
    }
    let r = run(&["list", "--key", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn unreadable_topics_are_listed_as_permission_denied() {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("needs root to run shmbus as another user; checked in CI, which runs as root");
        return;
    }
    let (topic, _g) = self::topic("denied");
    let topic = topic.mode(0o600);
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(1)).unwrap();
    let k = hex(topic.key);
    let as_nobody = |args: &[&str]| {
        let o = shmbus(args).uid(65534).gid(65534).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = as_nobody(&["list", "--json", "--key", &k]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["status"], "permission denied", "{v}");
    assert_eq!(v[0]["mode"], "0600");
    // The fix is TROUBLESHOOTING.md's ("A reader is refused"): a readers'
    // group, never a wider mode. It said "change the topic's mode/group"
    // and named the owner by number.
    for cmd in ["info", "echo"] {
        let (code, _, err) = as_nobody(&[cmd, &k]);
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.starts_with("shmbus: permission denied: nobody (uid 65534) may not read")
                && err.contains("owner root (uid 0), group root, mode 0600")
                && err.contains("lets no group read it")
                && err.contains("usermod -aG shmbus nobody")
                && err.contains("do not make it readable by others"),
            "{cmd}: {err}"
        );
    }
    drop(p);
    // Readable by its group: the fix is to join that group.
    let (topic, _g2) = self::topic("denied-group");
    let topic = topic.mode(0o640).group(0);
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(1)).unwrap();
    let (code, _, err) = as_nobody(&["info", &hex(topic.key)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("group root, mode 0640")
            && err
                .contains("add nobody to group root (`usermod -aG root nobody`, then log in again"),
        "{err}"
    );
}

/// A config or a recording this user may not read named only the error
/// ("cannot read the config: Permission denied (os error 13)"): on a
/// board whose tools run as a service user and whose files root wrote,
/// the one on call had to find who runs and whose the file is. Both now
/// say it, with the fix; a directory on the path that bars the way is
/// said as such, with `namei -l`. The wording is `shmbus_toolbox::files`,
/// shared with the bridge's secret files.
#[test]
fn a_file_this_user_may_not_read_names_who_runs_whose_it_is_and_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("needs root to run shmbus as another user; checked in CI, which runs as root");
        return;
    }
    let dir = shmbus_testkit::TempDir::new("cli-unreadable");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.join("bus.toml");
    std::fs::write(&config, "bus = \"lab\"\n[[topic]]\nname = \"imu\"\n").unwrap();
    let recording = dir.join("run.mcap");
    std::fs::write(&recording, b"not read").unwrap();
    let closed = dir.join("closed");
    std::fs::create_dir(&closed).unwrap();
    let hidden = closed.join("bus.toml");
    std::fs::copy(&config, &hidden).unwrap();
    for f in [&config, &recording] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut c = shmbus(args);
        c.uid(65534).gid(65534).env_remove("SHMBUS_CONFIG");
        run_cmd(c)
    };
    let (config, recording, hidden) = (
        config.to_str().unwrap(),
        recording.to_str().unwrap(),
        hidden.to_str().unwrap(),
    );
    let file_fix = |err: &str, start: &str, f: &str| {
        for w in [
            start.to_string(),
            "(uid 65534)".to_string(),
            "the file belongs to root (uid 0) and group ".to_string(),
            "with mode 0600".to_string(),
            format!("`chmod 640 {f}`"),
        ] {
            assert!(err.contains(&w), "expected '{w}' in:\n{err}");
        }
    };
    // doctor reports on stdout.
    let r = as_nobody(&["doctor", "--config", config]);
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);
    file_fix(
        &r.stdout,
        "cannot read the config: permission denied: this program runs as ",
        config,
    );
    let r = as_nobody(&["cat", recording]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    file_fix(
        &r.stderr,
        &format!("cannot open {recording}: permission denied: shmbus runs as "),
        recording,
    );
    let r = as_nobody(&["doctor", "--config", hidden]);
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for w in [
        "cannot read the config: permission denied on a directory of its path".to_string(),
        format!("`namei -l {hidden}`"),
    ] {
        assert!(r.stdout.contains(&w), "expected '{w}' in:\n{}", r.stdout);
    }
}

/// A topic's waiter segment (128 B, key 0, the topic's mode) is not a
/// topic: to a user who may not read the topic it was a second "(permission
/// denied)" row in `list` and `top` (key 0x00000000), and `doctor` counted
/// it. In a private IPC namespace, so that the listing needs no key filter.
#[test]
fn a_topic_this_user_may_not_read_is_one_row_not_two() {
    use std::os::unix::process::CommandExt;
    watchdog("denied-one-row", Duration::from_secs(120));
    if !root_or_skip("a_topic_this_user_may_not_read_is_one_row_not_two") {
        return;
    }
    assert!(
        shmbus_testkit::private_ipc(),
        "unshare(CLONE_NEWIPC) as root"
    );
    let (topic, _g) = self::topic("denied-one-row");
    let topic = topic.mode(0o600);
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(1)).unwrap();
    let shm = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    assert_eq!(
        shm.lines().count(),
        3,
        "the topic and its waiter segment: {shm}"
    );
    let as_nobody = |args: &[&str]| {
        let mut c = shmbus(args);
        c.uid(65534).gid(65534);
        run_cmd(c)
    };
    let r = as_nobody(&["list", "--json", "--window", "0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["status"], "permission denied", "{v}");
    assert_eq!(rows[0]["key"]["dec"], topic.key, "{v}");
    let r = as_nobody(&["top", "-n", "1", "--interval", "0.01"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.matches("(permission denied)").count(),
        1,
        "{}",
        r.stdout
    );
    let r = as_nobody(&["doctor"]);
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("permissions"))
        .unwrap_or_else(|| panic!("no permissions line: {}", r.stdout));
    // A user in a sentence: "nobody (uid 65534)", "uid 65534" (it said
    // "65534 cannot read 2 segments").
    let who = shmbus_toolbox::units::user(65534);
    assert!(
        line.contains(&format!("{who} cannot read 1 segment: ")) && !line.contains("0x00000000"),
        "{line}"
    );
    // The fix is TROUBLESHOOTING.md's: join the group, never widen the
    // mode (it said "or set `group`/`mode` in its config").
    assert!(
        r.stdout
            .contains("usermod -aG GROUP nobody`, then log in again")
            && r.stdout.contains("do not make topics readable by others")
            && !r.stdout.contains("set `group`/`mode`"),
        "{}",
        r.stdout
    );
}

/// A publisher stopped with `kill -STOP` holds its lock: `list` and `info`
/// said "alive" and nothing more, while `hz` and `top` said it was
/// suspended. Once it has sent nothing for a second, they say why too.
#[test]
fn list_and_info_say_a_live_publisher_is_suspended() {
    watchdog("held-up", Duration::from_secs(120));
    let (topic, _g) = self::topic("held-up");
    let p = publisher(&topic.name, topic.key, 4, 50.0);
    let pid = p.0.id();
    let k = hex(topic.key);
    let info_json = || {
        let r = run(&["info", "--json", &k]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        serde_json::from_str::<Value>(&r.stdout).unwrap()
    };
    let v = info_json();
    assert_eq!(v["publisher"]["state"], "alive", "{v}");
    assert_eq!(v["publisher"]["held_up"], Value::Null, "{v}");
    let _stopped = shmbus_testkit::Suspended::stop(pid).unwrap();
    // Until its newest frame is over a second old (the watchdog bounds it).
    while info_json()["age_ns"]
        .as_u64()
        .is_none_or(|a| a <= 1_100_000_000)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let why = "suspended (SIGSTOP; SIGCONT resumes it)";
    let r = run(&["info", &k]);
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("publisher "))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(
        line.contains(&format!("alive, pid {pid} ")) && line.ends_with(&format!("but {why}")),
        "{line}"
    );
    assert_eq!(info_json()["publisher"]["held_up"], why);
    let r = run(&["list", "--window", "0", "--key", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!("alive {pid} (held up)"))
            && r.stdout.contains(&format!(
                "{k}: '{}': publisher alive {pid} but {why}; newest frame ",
                topic.name
            )),
        "{}",
        r.stdout
    );
    let r = run(&["list", "--json", "--window", "0", "--key", &k]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["publisher"]["held_up"], why, "{v}");
    // doctor warns of it (it counted it among the healthy topics).
    let r = run(&["doctor", "--key", &k]);
    assert!(
        r.stdout.lines().any(|l| l.starts_with("WARN")
            && l.contains(&format!(
                "'{}' ({k}): its publisher (pid {pid}) is alive but {why}",
                topic.name
            ))),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("kill -CONT {pid}")),
        "{}",
        r.stdout
    );
    // echo's timeout says it too (it said "alive but not publishing").
    let r = run(&["echo", &k, "--count", "2", "--timeout", "0.3"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("its publisher (pid {pid}) is alive but {why}")),
        "{}",
        r.stderr
    );
}

/// `shmbus echo TOPIC | head -1` on a quiet topic (the publisher alive, or
/// stuck, sending nothing): echo printed the newest frame, `head` quit, and
/// echo slept on until a next frame that never came, so the pipeline hung
/// until Ctrl-C. It now sees within a second that nobody reads its output
/// and ends, exit 0 and nothing said, as on any closed pipe.
#[test]
fn echo_into_a_pipe_whose_reader_quit_ends_on_a_quiet_topic() {
    watchdog("echo-reader-gone", Duration::from_secs(120));
    let (topic, _g) = self::topic("echo-reader-gone");
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(1)).unwrap();
    let k = hex(topic.key);
    // --json: a frame is one line, so once the test has read it, echo has
    // written all it had and waits for the next frame.
    for args in [
        vec!["echo", k.as_str(), "--json"],
        vec!["echo", k.as_str(), "--json", "--all", "--from-oldest"],
    ] {
        let mut c = shmbus(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(c.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(
            line.contains("\"generation\":1,") && line.ends_with('\n'),
            "{args:?}: {line}"
        );
        drop(out);
        let st = shmbus_testkit::exit_within(
            &mut c,
            Duration::from_secs(60),
            "echo after its reader quit",
        );
        let mut err = String::new();
        c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(st.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    drop(p);
}

/// A negative number is a value of a numeric topic: `shmbus pub setpoint
/// -5` was refused as an unknown option (exit 2, "unexpected argument '-5'
/// found"). Options still parse around it.
#[test]
fn pub_takes_a_negative_number_as_the_value() {
    watchdog("pub-negative", Duration::from_secs(120));
    let (topic, _g) = self::topic("pub-negative");
    drop(Publisher::<i32>::open(&topic).unwrap());
    let k = hex(topic.key);
    for (args, want) in [
        (vec!["pub", k.as_str(), "-5"], -5),
        (
            vec!["pub", "-n", "2", "--rate", "1000", k.as_str(), "-7"],
            -7,
        ),
        (
            vec!["pub", k.as_str(), "-2147483648", "--count", "1"],
            i32::MIN,
        ),
    ] {
        let r = run(&args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        let r = run(&["echo", &k, "--count", "1", "--json"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(v["value"], want, "{args:?}: {v}");
    }
    // Not a number: still an unknown option.
    let r = run(&["pub", &k, "-x"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("unexpected argument '-x'"),
        "{}",
        r.stderr
    );
}

/// `hz` and `top` write once per interval: with `--interval 600` and their
/// reader gone (`| head -1` done, or a pipe closed before anything came)
/// they ran on to the next report, ten minutes later. They look at
/// standard output at least once a second now, as echo does, and end quietly,
/// exit 0.
#[test]
fn hz_and_top_end_when_their_reader_quits_not_at_their_next_report() {
    watchdog("hz-top-reader-gone", Duration::from_secs(120));
    let (topic, _g) = self::topic("hz-top-reader-gone");
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(1)).unwrap();
    let k = hex(topic.key);
    for args in [
        vec!["hz", k.as_str(), "--interval", "600"],
        vec!["top", "--key", k.as_str(), "--interval", "600"],
    ] {
        let mut c = shmbus(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(c.stdout.take());
        let st = shmbus_testkit::exit_within(
            &mut c,
            Duration::from_secs(60),
            "a command after its reader quit",
        );
        let mut err = String::new();
        c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(st.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    drop(p);
}

/// The keys of the demo whose pid is `pid` (its bus is `demo-<pid>`), and
/// guards that remove them if the demo fails to.
fn demo_keys(pid: u32) -> (Vec<i32>, Vec<Guard>) {
    let mut config = shmbus_config::Config::builtin_demo();
    config.rebus(&format!("demo-{pid}")).expect("rebus");
    let keys: Vec<i32> = config.topics.iter().map(|t| t.key).collect();
    let guards = keys.iter().map(|&k| Guard(k)).collect();
    (keys, guards)
}

/// The README's first command: `shmbus demo` runs the sensor publishers as
/// processes, every topic receives frames, and nothing is left behind.
#[test]
fn demo_runs_every_sensor_and_leaves_nothing_behind() {
    watchdog("demo_runs_every_sensor", Duration::from_secs(240));
    let child = shmbus(&["demo", "--duration", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shmbus demo");
    let pid = child.id();
    // The demo's keys, derived from its bus name `demo-<pid>`; guards remove
    // them if the demo fails to.
    let (keys, _guards) = demo_keys(pid);
    let mut child = KillOnDrop(child);
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.0.stdout.take() {
        s.read_to_string(&mut out).unwrap();
    }
    if let Some(mut s) = child.0.stderr.take() {
        s.read_to_string(&mut err).unwrap();
    }
    let status = child.0.wait().unwrap();
    assert!(!err.contains("panicked"), "demo panicked: {err}");
    assert!(status.success(), "demo failed: {status:?}\n{out}\n{err}");
    assert!(
        out.contains("result: every topic received frames"),
        "not every topic received frames:\n{out}\n{err}"
    );
    assert!(out.contains("cleanup: every segment"), "{out}");
    for name in ["shm", "sem"] {
        let text = std::fs::read_to_string(format!("/proc/sysvipc/{name}")).unwrap();
        for e in shmbus_core::sysvipc::parse(&text) {
            assert!(
                !keys.contains(&e.key()),
                "demo left {name} key 0x{:08x} behind",
                e.key()
            );
        }
    }
}

/// `shmbus demo --duration 1 | true`: nobody reads the summary. The demo
/// still cleans up and ends with its own exit code, without a panic
/// (`print!` on the closed pipe panicked: exit 101 and a backtrace).
#[test]
fn demo_with_a_closed_stdout_cleans_up_without_a_panic() {
    watchdog("demo_closed_stdout", Duration::from_secs(240));
    let child = shmbus(&["demo", "--duration", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shmbus demo");
    let pid = child.id();
    let (keys, _guards) = demo_keys(pid);
    let mut child = KillOnDrop(child);
    // The reader is gone before the demo writes anything: like `| true`.
    drop(child.0.stdout.take());
    let mut err = String::new();
    if let Some(mut s) = child.0.stderr.take() {
        s.read_to_string(&mut err).unwrap();
    }
    let status = child.0.wait().unwrap();
    assert!(!err.contains("panicked"), "demo panicked: {err}");
    assert_eq!(status.code(), Some(0), "{err}");
    for name in ["shm", "sem"] {
        let text = std::fs::read_to_string(format!("/proc/sysvipc/{name}")).unwrap();
        for e in shmbus_core::sysvipc::parse(&text) {
            assert!(
                !keys.contains(&e.key()),
                "demo left {name} key 0x{:08x} behind",
                e.key()
            );
        }
    }
}

#[test]
fn pub_refuses_values_a_typed_subscriber_could_not_decode() {
    watchdog("pub-capacity", Duration::from_secs(120));
    let (topic, _g) = self::topic("pub-capacity");
    drop(Publisher::<Imu>::open(&topic).unwrap());
    let k = hex(topic.key);
    let long = "x".repeat(100);
    for (value, want) in [
        (
            format!(r#"{{"t_us": 1, "acc": [0,0,0], "frame": "{long}", "ok": true}}"#),
            ".frame: 100 bytes exceed heapless::String<8> (at most 8 bytes)",
        ),
        (
            r#"{"t_us": 1, "acc": [0,0,1e39], "frame": "", "ok": true}"#.to_string(),
            ".acc[2]: 1e+39 does not fit in f32",
        ),
        (
            // serde_json alone would keep the last value and drop the 1.
            r#"{"t_us": 1, "acc": [0,0,0], "frame": "", "ok": true, "t_us": 2}"#.to_string(),
            "key \"t_us\" appears twice in one object at line 1 column",
        ),
    ] {
        let r = run(&["pub", &k, &value]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains(want), "{}", r.stderr);
    }
    // Nothing was published: the typed subscriber sees no frame.
    let mut sub = Subscriber::<Imu>::attach(&topic).unwrap();
    assert!(sub.latest().unwrap().is_none());
}

/// A segment at a configured topic's key that is another topic, or the
/// topic with another slot count than the config says (a config edited
/// while its publisher ran), is a FAIL naming both and the fix: a
/// publisher started with this config cannot open it
/// (`NameMismatch`/`GeometryMismatch`). Doctor counted both as "topics
/// with a live publisher", OK.
#[test]
fn doctor_fails_a_segment_that_does_not_match_its_configured_topic() {
    watchdog("doctor_mismatch", Duration::from_secs(120));
    let (a, _ga) = self::topic("doctor-mismatch-name");
    let (b, _gb) = self::topic("doctor-mismatch-slots");
    let (c, _gc) = self::topic("doctor-mismatch-notify");
    let (a, b, c) = (a.slots(8), b.slots(8), c.slots(8).notify(false));
    let mut pa = Publisher::<Imu>::open(&a).unwrap();
    let mut pb = Publisher::<Imu>::open(&b).unwrap();
    let mut pc = Publisher::<Imu>::open(&c).unwrap();
    pa.publish(&imu(1)).unwrap();
    pb.publish(&imu(1)).unwrap();
    pc.publish(&imu(1)).unwrap();
    let tmp_dir = shmbus_testkit::TempDir::new("cli-mismatch");
    let dir = tmp_dir.path().to_path_buf();
    let config = dir.join("edited.toml");
    std::fs::write(
        &config,
        format!(
            "bus = \"mismatch\"\n[[topic]]\nname = \"renamed\"\nkey = {}\nslots = 8\n[[topic]]\nname = \"{}\"\nkey = {}\nslots = 16\n[[topic]]\nname = \"{}\"\nkey = {}\nslots = 8\nnotify = true\n",
            a.key, b.name, b.key, c.name, c.key
        ),
    )
    .unwrap();
    let (ka, kb, kc) = (hex(a.key), hex(b.key), hex(c.key));
    let r = run(&[
        "doctor",
        "--config",
        config.to_str().unwrap(),
        "--key",
        &ka,
        "--key",
        &kb,
        "--key",
        &kc,
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let fail_line = |key: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with("FAIL") && l.contains(&format!("({key})")))
            .unwrap_or_else(|| panic!("no FAIL for {key}:\n{}", r.stdout))
            .to_string()
    };
    let la = fail_line(&ka);
    assert!(
        la.contains(&format!("it holds topic '{}', not 'renamed'", a.name)),
        "{la}"
    );
    let lb = fail_line(&kb);
    assert!(
        lb.contains("it has slots = 8, the config says slots = 16"),
        "{lb}"
    );
    let lc = fail_line(&kc);
    assert!(
        lc.contains("it has notify = false, the config says notify = true"),
        "{lc}"
    );
    assert!(
        r.stdout.contains(&format!("`shmbus rm --force {kb}`")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("0 topics with a live publisher"),
        "{}",
        r.stdout
    );
}

/// The kernel's flags in `/proc/sysvipc/shm` (`SHM_LOCKED`, `SHM_DEST`)
/// reach the tools: LOCK says "yes" for a locked topic; a topic removed
/// while attached is listed "(removed)" with JSON `removed: true`, top says
/// REMOVED, a name no longer finds it, and doctor reports it.
#[test]
fn locked_and_removed_segments_are_shown_as_such() {
    watchdog("locked_and_removed", Duration::from_secs(120));
    let (topic, _g) = self::topic("removed-state");
    let topic = topic.lock(shmbus_core::LockPolicy::Required);
    let mut p =
        Publisher::<Imu>::open(&topic).expect("a locked topic (as root or within RLIMIT_MEMLOCK)");
    p.publish(&imu(1)).unwrap();
    let k = hex(topic.key);
    let r = run(&["list", "--json", "--window", "0", "--key", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (&v[0]["locked"], &v[0]["removed"]),
        (&Value::Bool(true), &Value::Bool(false)),
        "{v}"
    );
    let r = run(&["list", "--window", "0", "--key", &k]);
    let row = r
        .stdout
        .lines()
        .find(|l| l.starts_with(&topic.name))
        .unwrap_or_default()
        .to_string();
    let head = r.stdout.lines().next().unwrap_or_default();
    let col = head.find("LOCK").expect("LOCK column");
    assert_eq!(row.get(col..col + 3), Some("yes"), "{}", r.stdout);

    let id = sys::shmget(topic.key, 0, 0).unwrap();
    sys::shm_remove(id).unwrap();
    let r = run(&["list", "--json", "--window", "0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let me = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["shmid"] == id)
        .unwrap_or_else(|| panic!("shmid {id} not listed: {v}"));
    assert_eq!(me["removed"], true, "{me}");
    assert_eq!(me["key"]["dec"], 0, "{me}");
    let r = run(&["list", "--window", "0"]);
    assert!(
        r.stdout.contains(&format!("{} (removed)", topic.name)),
        "{}",
        r.stdout
    );
    let r = run(&["top", "--count", "1", "--interval", "0.1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{} (removed)", topic.name)))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(line.ends_with("REMOVED"), "{line}");
    let r = run(&["info", &topic.name]);
    assert_eq!(
        r.code, 1,
        "a name does not find a removed topic: {}{}",
        r.stdout, r.stderr
    );
    let r = run(&["doctor"]);
    assert!(
        r.stdout.contains("removed topic")
            && r.stdout.contains(&format!("'{}' (shmid {id}", topic.name)),
        "{}",
        r.stdout
    );
    // By shmid: `pub` says it was removed (it said "key 0 is IPC_PRIVATE
    // and cannot name a topic"), `rm` that it already was (it claimed to
    // remove it).
    let sel = format!("shmid:{id}");
    let r = run(&["pub", &sel, &serde_json::to_string(&imu(9)).unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("was removed") && !r.stderr.contains("IPC_PRIVATE"),
        "{}",
        r.stderr
    );
    let r = run(&["rm", &sel]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("was already removed"), "{}", r.stdout);
    drop(p);
}

/// Run shmbus, killing it after `limit`: (exit code or None if it had to
/// be killed, stdout, stderr, seconds it ran).
fn run_limited(args: &[&str], limit: Duration) -> (Option<i32>, String, String, f64) {
    let mut child = KillOnDrop(
        shmbus(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shmbus"),
    );
    let mut out = child.0.stdout.take().unwrap();
    let mut err = child.0.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let code = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st.code();
        }
        if start.elapsed() > limit {
            let _ = child.0.kill();
            let _ = child.0.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let secs = start.elapsed().as_secs_f64();
    let (out, err) = (t_out.join().unwrap(), t_err.join().unwrap());
    assert!(!err.contains("panicked"), "shmbus panicked: {err}");
    (code, out, err, secs)
}

/// A writable view of the segment at `key`: (attachment, header size,
/// slot count, slot stride), to damage it the way a bug or another
/// program would.
fn damage(key: i32) -> (sys::WriteAttachment, usize, u64, usize) {
    let id = sys::shmget(key, 0, 0).unwrap();
    let att = sys::WriteAttachment::read_write(id).unwrap();
    let word = |off: usize| {
        att.atomic_word(off)
            .unwrap()
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let (header, slots, stride) = (word(12) as usize, u64::from(word(16)), word(20) as usize);
    (att, header, slots, stride)
}

/// `n` frames, then every slot's length set beyond the frame capacity: a
/// ring of corrupt frames.
fn corrupt_ring(test: &str, n: u64) -> (shmbus_core::Topic, Guard) {
    let (topic, g) = self::topic(test);
    let topic = topic.slots(8);
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    for i in 0..n {
        p.publish(&imu(i)).unwrap();
    }
    drop(p);
    let (att, header, slots, stride) = damage(topic.key);
    for i in 0..slots {
        let len = att.atomic_word(header + i as usize * stride + 4).unwrap();
        len.store(u32::MAX, std::sync::atomic::Ordering::Relaxed);
    }
    (topic, g)
}

/// Lines of stderr that report `needle` in full (not the "N more ..."
/// count lines that repeat the latest one).
fn count_lines(text: &str, needle: &str) -> usize {
    text.lines()
        .filter(|l| l.contains(needle) && !l.contains(" more "))
        .count()
}

/// On a ring where every frame is corrupt, echo (latest and --all) and hz
/// end by their bounds, print the problem once and then at most a count
/// a second, and never re-read the same broken frame in a loop.
#[test]
fn bounds_hold_and_errors_print_once_on_a_ring_of_corrupt_frames() {
    watchdog("corrupt_ring", Duration::from_secs(240));
    let (topic, _g) = corrupt_ring("corrupt-ring", 8);
    let k = hex(topic.key);
    let limit = Duration::from_secs(60);
    for mode in [&[][..], &["--all", "--from-oldest"][..]] {
        let mut args = vec!["echo", k.as_str(), "--timeout", "1.5"];
        args.extend_from_slice(mode);
        let (code, out, err, secs) = run_limited(&args, limit);
        eprintln!(
            "FIGURE corrupt ring, echo {}: exit {code:?} after {secs:.1} s, {} stderr lines, {} bytes",
            mode.join(" "),
            err.lines().count(),
            err.len()
        );
        assert_eq!(code, Some(1), "{args:?} must end by --timeout: {err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(count_lines(&err, "is corrupt"), 1, "{args:?}: {err}");
        assert!(
            err.lines().count() <= 3 + secs as usize,
            "{args:?}: at most one line a second after the first ({secs:.1} s):\n{err}"
        );
        assert!(err.contains("no frame on"), "{err}");
    }
    // --count holds when the frames reached cannot be shown.
    let (code, _, err, _) = run_limited(&["echo", &k, "--count", "1"], limit);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("1 of 1 frame of") && err.contains("could not be shown"),
        "{err}"
    );
    let (code, out, err, secs) =
        run_limited(&["hz", &k, "--count", "2", "--interval", "0.5"], limit);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(err.lines().count() <= 3 + secs as usize, "{err}");
}

/// A publisher stopped mid-write (its slot stays odd while it holds the
/// lock): `echo --all --from-oldest` says so once, then counts, and
/// `--timeout` ends it.
#[test]
fn a_stuck_writer_is_reported_once_and_timeout_holds() {
    watchdog("stuck_writer", Duration::from_secs(240));
    let (topic, _g) = self::topic("stuck-writer");
    let topic = topic.slots(4);
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    for i in 0..4 {
        p.publish(&imu(i)).unwrap();
    }
    // The oldest slot (generation 1) left mid-write by a live publisher.
    let (att, header, _, _) = damage(topic.key);
    let seq = att.atomic_word(header).unwrap();
    seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let k = hex(topic.key);
    let (code, _, err, secs) = run_limited(
        &["echo", &k, "--all", "--from-oldest", "--timeout", "2.5"],
        Duration::from_secs(60),
    );
    eprintln!(
        "FIGURE stuck writer, echo --all --from-oldest --timeout 2.5: exit {code:?} after {secs:.1} s, {} stderr lines",
        err.lines().count()
    );
    assert_eq!(code, Some(1), "--timeout ends it: {err}");
    assert_eq!(count_lines(&err, "has been mid-write for"), 1, "{err}");
    assert!(
        err.lines().count() <= 3 + secs as usize,
        "{secs:.1} s:\n{err}"
    );
    drop(p);
}

/// `--count N` counts frames reached, also those that do not decode; each
/// is reported (once in full, then counted) and the exit code says so.
#[test]
fn count_holds_when_frames_do_not_decode() {
    watchdog("undecodable_count", Duration::from_secs(120));
    let (topic, _g) = self::topic("undecodable");
    let schema = shmbus_core::schema::schema_bytes::<Imu>().unwrap();
    let mut raw = RawPublisher::open(&topic, &schema, 64).unwrap();
    for _ in 0..5 {
        raw.publish_bytes(&[0xff; 20]).unwrap();
    }
    let k = hex(topic.key);
    let (code, out, err, _) = run_limited(
        &["echo", &k, "--all", "--from-oldest", "--count", "3"],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(count_lines(&err, "does not decode"), 1, "{err}");
    assert!(err.contains("3 of 3 frames"), "{err}");
}

/// True if this test may run as root; otherwise it fails, unless
/// SHMBUS_SKIP_ROOT_TESTS=1 (refused when CI is set) skips it knowingly.
fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let skip = std::env::var("SHMBUS_SKIP_ROOT_TESTS").as_deref() == Ok("1");
    assert!(
        skip && std::env::var_os("CI").is_none(),
        "{test} needs root: it runs a publisher as another uid (set SHMBUS_SKIP_ROOT_TESTS=1 to skip it knowingly)"
    );
    eprintln!("SKIPPED {test}: needs root");
    false
}

/// Wait until a segment exists at `key` with at least one frame.
fn wait_topic(key: i32) {
    let t = Instant::now();
    loop {
        if let Ok(id) = sys::shmget(key, 0, 0) {
            if let Ok(seg) = shmbus_core::Segment::attach_shmid(id, key) {
                if seg.generation() > 0 {
                    return;
                }
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no topic at {}",
            hex(key)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The uid that plays another local user.
const STRANGER: u32 = 64102;

/// Uids that each process-limit test has to itself. RLIMIT_NPROC counts
/// every process and thread of the uid on the machine: under a limit shared
/// with STRANGER, another test's STRANGER process running at the same moment
/// took the room, and qemu-user could not start its own thread.
const NPROC_RECORD_UID: u32 = 64120;
const NPROC_TOOLS_UID: u32 = 64121;

/// Another user publishes a segment with the name of a topic at another
/// key, and squats the key of a second topic: a name never shows the
/// forgery (echo, info, hz, record), the error names its key and owner and
/// the command that reads it by key (which works), the real topic wins once
/// its publisher runs, recordings name each topic's key and owner, and a
/// squat at a name's own key is refused when the config names the
/// publisher, with a removal command that works.
#[test]
fn a_name_never_resolves_to_another_users_segment() {
    use std::os::unix::process::CommandExt;
    if !root_or_skip("a_name_never_resolves_to_another_users_segment") {
        return;
    }
    watchdog("names_and_owners", Duration::from_secs(300));
    let pid = std::process::id();
    let name = format!("probe-{pid}");
    let squat = format!("squat-{pid}");
    let (mine, evil) = (format!("mine-{pid}"), format!("evil-{pid}"));
    let derive = shmbus_core::topic::derive_key;
    let (k_real, k_evil, k_squat) = (
        derive(&mine, &name),
        derive(&evil, &name),
        derive(&mine, &squat),
    );
    let _guards = [Guard(k_real), Guard(k_evil), Guard(k_squat)];
    let tmp_dir = shmbus_testkit::TempDir::new("names");
    let dir = tmp_dir.path().to_path_buf();
    let write = |file: &str, text: String| {
        let p = dir.join(file);
        std::fs::write(&p, text).unwrap();
        p
    };
    let my_config = write(
        "mine.toml",
        format!(
            "bus = \"{mine}\"\n[[topic]]\nname = \"{name}\"\npublisher = \"shmbus-sensor-imu\"\nrate_hz = 50.0\n\
             [[topic]]\nname = \"{squat}\"\npublisher = \"shmbus-sensor-imu\"\npublisher_user = \"0\"\nrate_hz = 50.0\n"
        ),
    );
    let evil_config = write(
        "evil.toml",
        format!(
            "bus = \"{evil}\"\n[[topic]]\nname = \"{name}\"\npublisher = \"shmbus-sensor-imu\"\nrate_hz = 50.0\n\
             [[topic]]\nname = \"{squat}\"\nkey = {k_squat}\npublisher = \"shmbus-sensor-imu\"\nrate_hz = 50.0\n"
        ),
    );
    let sensor = |config: &std::path::Path, topic: &str, uid: Option<u32>| {
        let mut c = shmbus(&[
            "__sensor",
            "imu",
            "--config",
            config.to_str().unwrap(),
            "--topic",
            topic,
            "--duration",
            "240",
        ]);
        if let Some(u) = uid {
            c.uid(u).gid(u);
        }
        KillOnDrop(
            c.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let _forger = sensor(&evil_config, &name, Some(STRANGER));
    let _squatter = sensor(&evil_config, &squat, Some(STRANGER));
    wait_topic(k_evil);
    wait_topic(k_squat);
    let with_config = |args: &[&str]| {
        let o = shmbus(args)
            .env("SHMBUS_CONFIG", &my_config)
            .output()
            .unwrap();
        let r = Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        };
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        r
    };

    // The real topic is not running: the name shows nothing of the forgery.
    for args in [
        vec!["info", name.as_str()],
        vec!["echo", name.as_str(), "--count", "1", "--timeout", "5"],
        vec!["hz", name.as_str(), "--count", "1"],
    ] {
        let r = with_config(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stdout.is_empty(),
            "{args:?} showed the forgery: {}",
            r.stdout
        );
        // The command as typed, with the key in place of the name.
        let typed: Vec<String> = args
            .iter()
            .map(|a| {
                if *a == name {
                    hex(k_evil)
                } else {
                    a.to_string()
                }
            })
            .collect();
        let fix = format!("`shmbus {}`", typed.join(" "));
        assert!(
            r.stderr.contains(&hex(k_evil))
                && r.stderr.contains("uid 64102")
                && r.stderr.contains(&fix),
            "{args:?}: {}",
            r.stderr
        );
    }
    // The fix the message suggests works when typed: by key, on purpose.
    let r = with_config(&["echo", &hex(k_evil), "--count", "1", "--timeout", "30"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&format!("--- {name} #")), "{}", r.stdout);
    let file = dir.join("names.mcap");
    let f = file.to_str().unwrap();
    let r = with_config(&["record", &name, "-o", f, "--duration", "1"]);
    assert_eq!(r.code, 1, "nothing of that name to record: {}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("not recording the segment at key {}", hex(k_evil))),
        "{}",
        r.stderr
    );

    // The real publisher runs: the name is the real topic, the forgery is ignored.
    let _real = sensor(&my_config, &name, None);
    wait_topic(k_real);
    let r = with_config(&["info", &name, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["key"]["hex"], hex(k_real), "{v}");
    let r = with_config(&["record", &name, "-o", f, "--duration", "1.5"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = with_config(&["cat", f]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "{name}: key {}, owner root (uid 0), created by root (uid 0)",
            hex(k_real)
        )) && !r.stdout.contains(&hex(k_evil)),
        "{}",
        r.stdout
    );

    // A squat at the name's own key, with the publisher named in the config.
    // Its process is alive: the fix names it, since a shmbus publisher
    // creates its removed topic again within a second (so removing alone
    // lasted until then). `record` gives the same text.
    let squatter_pid = _squatter.0.id();
    let r = with_config(&["info", &squat]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!(
            "was created by uid 64102 and belongs to uid 64102, not the configured publisher root (uid 0): refusing a possibly spoofed topic; its process, pid {squatter_pid}, holds the topic's publisher lock and would create it again: find out what it is and stop it"
        )),
        "{}",
        r.stderr
    );
    let rec = with_config(&["record", &squat, "-o", f, "--duration", "1"]);
    assert_ne!(rec.code, 0, "{}", rec.stderr);
    let text = r.stderr.trim_start_matches("shmbus: ").trim_end();
    assert!(
        rec.stderr.contains(text),
        "record says what info says:\n{}\n{text}",
        rec.stderr
    );
    let fox = with_config(&fox_args(&[&squat]));
    assert_ne!(fox.code, 0, "{}", fox.stderr);
    assert!(
        fox.stderr.contains(text),
        "foxglove says what info says:\n{}\n{text}",
        fox.stderr
    );
    // Stopped as the message says, then the fix typed as given.
    drop(_squatter);
    let fix = r
        .stderr
        .split("remove it as root (`")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .unwrap_or_else(|| panic!("no fix in: {}", r.stderr))
        .to_string();
    let words: Vec<&str> = fix.split_whitespace().collect();
    assert_eq!(words[0], "shmbus", "{fix}");
    let r = with_config(&words[1..]);
    assert_eq!(r.code, 0, "`{fix}` works when typed: {}", r.stderr);
    assert!(sys::shmget(k_squat, 0, 0).is_err(), "the squat is gone");
}

/// The commands in backticks on the `fix:` lines of doctor's output for the
/// checks `checks`.
fn doctor_fixes(out: &str, checks: &[&str]) -> Vec<String> {
    let mut fixes = Vec::new();
    let mut current = None;
    for l in out.lines() {
        let t = l.trim_start();
        if let Some(rest) = t.strip_prefix("FAIL").or_else(|| t.strip_prefix("WARN")) {
            current = rest.split_whitespace().next().map(str::to_string);
        } else if t.starts_with("OK") {
            current = None;
        } else if let Some(fix) = t.split_once("fix: ").map(|(_, f)| f) {
            if current.as_deref().is_some_and(|c| checks.contains(&c)) {
                if let Some(cmd) = fix.split('`').nth(1) {
                    fixes.push(cmd.to_string());
                }
            }
        }
    }
    fixes
}

/// In a private IPC namespace (started by the test below): System V
/// limits lowered and two squats planted; doctor's output, list's, each
/// suggested fix typed as printed, and doctor's output again, into `dir`.
fn doctor_limits_role(dir: &std::path::Path) {
    let config = dir.join("doctor.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let key_of = |name: &str| -> i32 {
        let line = text
            .lines()
            .skip_while(|l| !l.contains(&format!("name = \"{name}\"")))
            .nth(1)
            .unwrap();
        line.trim_start_matches("key = ").parse().unwrap()
    };
    let (k_lock, k_foreign) = (key_of("lockd"), key_of("foreign"));
    std::fs::write("/proc/sys/kernel/shmmax", "5000").unwrap();
    std::fs::write("/proc/sys/kernel/sem", "250 32000 32 2").unwrap();
    // SAFETY: a plain semget call creating one semaphore.
    let semid = unsafe { libc::semget(k_lock, 1, libc::IPC_CREAT | 0o644) };
    assert!(semid >= 0, "semget");
    let id = sys::shmget(k_foreign, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).unwrap();
    let att = sys::WriteAttachment::read_write(id).unwrap();
    let bytes = b"ANOTHER PROGRAM'S MEMORY";
    shmbus_core::codec::store_bytes(att.atomic_words(0, bytes.len().div_ceil(4)).unwrap(), bytes);
    drop(att);
    let shmbus_out = |args: &[&str]| {
        let o = shmbus(args).env("SHMBUS_CONFIG", &config).output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let first = shmbus_out(&["doctor", "--config", config.to_str().unwrap()]);
    std::fs::write(dir.join("doctor1.txt"), &first).unwrap();
    std::fs::write(
        dir.join("list.json"),
        shmbus_out(&["list", "--json", "--window", "0"]),
    )
    .unwrap();
    let mut log = String::new();
    for fix in doctor_fixes(&first, &["shmmax", "sem", "squat", "topics"]) {
        let words: Vec<&str> = fix.split_whitespace().collect();
        let (code, text) = if words[0] == "shmbus" {
            let o = shmbus(&words[1..])
                .env("SHMBUS_CONFIG", &config)
                .output()
                .unwrap();
            (
                o.status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            )
        } else {
            let o = Command::new("sh").arg("-c").arg(&fix).output().unwrap();
            (
                o.status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            )
        };
        log += &format!("$ {fix}\nexit {code:?}\n{text}\n");
    }
    std::fs::write(dir.join("fixes.txt"), log).unwrap();
    let second = shmbus_out(&["doctor", "--config", config.to_str().unwrap()]);
    std::fs::write(dir.join("doctor2.txt"), second).unwrap();
    println!("done");
}

/// Run `inner` (a child role of this test binary) under `unshare` with
/// `flags` (`--ipc`, `--mount`): its own namespaces, so the machine's
/// limits and mounts are untouched. Its environment goes with it; it
/// must say "done" on stdout.
fn in_namespaces(flags: &[&str], inner: Command) {
    let mut cmd = Command::new("unshare");
    cmd.args(flags)
        .arg("--")
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let o = cmd.stdin(Stdio::null()).output().unwrap();
    // Each role says "done" last: a role that panicked or never ran shows
    // its output here, not as a missing file further on.
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("done"),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The line of `doctor`'s output for check `check` (its second word).
fn doctor_line(text: &str, check: &str) -> String {
    text.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no {check} line in:\n{text}"))
        .to_string()
}

/// doctor checks kernel.shmmax against the real size of a configured
/// sensor topic (not a lower bound), the semaphore limits (kernel.sem:
/// SEMMNI and SEMMNS) and usage, and names a lock-only squat and a
/// non-shmbus segment at a configured key, which `list` shows too; every
/// fix it suggests, typed as printed, clears its finding. Runs in a private
/// IPC namespace, so the machine's limits are untouched.
#[test]
fn doctor_names_limits_and_squats_and_every_fix_works_when_typed() {
    if !root_or_skip("doctor_names_limits_and_squats_and_every_fix_works_when_typed") {
        return;
    }
    watchdog("doctor_limits", Duration::from_secs(240));
    let tmp_dir = shmbus_testkit::TempDir::new("doctor");
    let dir = tmp_dir.path().to_path_buf();
    let (k_lock, k_foreign) = (unique_key("doctor-lock"), unique_key("doctor-foreign"));
    std::fs::write(
        dir.join("doctor.toml"),
        format!(
            "bus = \"doc\"\n[[topic]]\nname = \"imu\"\npublisher = \"shmbus-sensor-imu\"\nslots = 64\n\
             [[topic]]\nname = \"lockd\"\nkey = {k_lock}\n[[topic]]\nname = \"foreign\"\nkey = {k_foreign}\n\
             [[topic]]\nname = \"plain\"\n"
        ),
    )
    .unwrap();
    in_namespaces(
        &["--ipc"],
        child("doctor-limits", &[dir.to_str().unwrap().to_string()]),
    );
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let (first, list, fixes, second) = (
        read("doctor1.txt"),
        read("list.json"),
        read("fixes.txt"),
        read("doctor2.txt"),
    );
    let line = doctor_line;
    let shmmax = line(&first, "shmmax");
    assert!(
        shmmax.starts_with("FAIL")
            && shmmax.contains("topic 'imu' needs")
            && !shmmax.contains("at least"),
        "the real size of the sensor's topic: {first}"
    );
    let sem = line(&first, "sem");
    assert!(
        sem.starts_with("FAIL") && sem.contains("SEMMNI (kernel.sem field 4) 2"),
        "{first}"
    );
    assert!(
        first.contains(&format!(
            "FAIL  squat        key {} holds a segment that is not a shmbus topic",
            hex(k_foreign)
        )),
        "{first}"
    );
    assert!(
        first.contains(&format!(
            "key {} holds a semaphore set with no segment",
            hex(k_lock)
        )),
        "{first}"
    );
    let v: Value = serde_json::from_str(&list).unwrap_or_else(|e| panic!("{e}: {list}"));
    let status = |k: i32| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"]["hex"] == hex(k))
            .map(|r| r["status"].clone())
    };
    assert_eq!(status(k_lock), Some(Value::from("lock only")), "{v}");
    assert_eq!(status(k_foreign), Some(Value::from("not shmbus")), "{v}");
    // Every fix worked when typed: each exited 0, and the findings are gone.
    assert_eq!(fixes.matches("$ ").count(), 4, "{fixes}");
    assert_eq!(fixes.matches("exit Some(0)").count(), 4, "{fixes}");
    assert!(line(&second, "shmmax").starts_with("OK"), "{second}");
    assert!(line(&second, "sem").starts_with("OK"), "{second}");
    assert!(
        !second.contains("squat") && !second.contains("semaphore set with no segment"),
        "{second}"
    );
}

/// In a private IPC and mount namespace (started by the test below):
/// SEMOPM lowered to 1, doctor's output, its sem fix typed as printed, a
/// publisher opened; then the kernel limits hidden behind /dev/null and
/// doctor's output again; all into `dir`.
fn doctor_sem_unreadable_role(dir: &std::path::Path) {
    let config = dir.join("doctor.toml");
    let doctor = || {
        let o = shmbus(&["doctor", "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        format!(
            "{}{}exit {:?}\n",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            o.status.code()
        )
    };
    std::fs::write("/proc/sys/kernel/sem", "250 32000 1 128").unwrap();
    let first = doctor();
    std::fs::write(dir.join("doctor1.txt"), &first).unwrap();
    let mut log = String::new();
    for fix in doctor_fixes(&first, &["sem"]) {
        let o = Command::new("sh").arg("-c").arg(&fix).output().unwrap();
        log += &format!("$ {fix}\nexit {:?}\n", o.status.code());
    }
    let topic = shmbus_core::Topic::new("semopm").key(unique_key("doctor-semopm"));
    log += &match Publisher::<Imu>::open(&topic) {
        Ok(p) => {
            p.remove().unwrap();
            "publisher opened\n".to_string()
        }
        Err(e) => format!("publisher failed: {e}\n"),
    };
    std::fs::write(dir.join("fixes.txt"), log).unwrap();
    for name in ["shmmax", "shmmni", "shmall", "sem"] {
        let o = Command::new("mount")
            .args(["--bind", "/dev/null", &format!("/proc/sys/kernel/{name}")])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    std::fs::write(dir.join("doctor2.txt"), doctor()).unwrap();
    println!("done");
}

/// doctor checks every field of kernel.sem a publisher's lock needs:
/// with SEMOPM (field 3) 1, every publisher failed to open ("semop:
/// Argument list too long") while doctor said `OK sem`, and a fix for
/// another field kept SEMOPM as it was. And a limit doctor cannot read is
/// not checked, and says so: an unreadable kernel.shmmax was "unlimited",
/// shmmni "limit 18446744073709551615", all OK, and kernel.sem left out.
/// Root, in private IPC and mount namespaces: the machine is untouched.
#[test]
fn doctor_checks_semopm_and_says_which_limits_it_could_not_read() {
    if !root_or_skip("doctor_checks_semopm_and_says_which_limits_it_could_not_read") {
        return;
    }
    watchdog("doctor_semopm", Duration::from_secs(240));
    let tmp_dir = shmbus_testkit::TempDir::new("doctor-semopm");
    let dir = tmp_dir.path().to_path_buf();
    std::fs::write(
        dir.join("doctor.toml"),
        format!(
            "bus = \"doc\"\n[[topic]]\nname = \"plain\"\nkey = {}\n",
            unique_key("doctor-semopm-config")
        ),
    )
    .unwrap();
    in_namespaces(
        &["--ipc", "--mount"],
        child(
            "doctor-sem-unreadable",
            &[dir.to_str().unwrap().to_string()],
        ),
    );
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let (first, fixes, second) = (read("doctor1.txt"), read("fixes.txt"), read("doctor2.txt"));
    let line = doctor_line;
    let sem = line(&first, "sem");
    assert!(
        sem.starts_with("FAIL") && sem.contains("SEMOPM (field 3) 1"),
        "{first}"
    );
    assert!(first.ends_with("exit Some(1)\n"), "{first}");
    assert_eq!(
        fixes,
        "$ sysctl -w kernel.sem=\"250 32000 2 128\"\nexit Some(0)\npublisher opened\n"
    );
    for check in ["shmmax", "shmmni", "shmall", "sem"] {
        let l = line(&second, check);
        assert!(
            l.starts_with("WARN")
                && (l.contains("is not checked") || l.contains("are not checked")),
            "{check}: {second}"
        );
        assert_eq!(second.matches(&format!(" {check} ")).count(), 1, "{second}");
    }
    assert!(
        !second.contains("unlimited") && !second.contains("18446744073709551615"),
        "{second}"
    );
}

/// doctor prints at most 20 findings of one check and level, then one
/// line with how many more and where to see them all: 200 foreign
/// segments in the derived key range printed 200 `WARN squat` findings,
/// 400 lines (4,000 of them, 8,000 lines). Root, in a private IPC
/// namespace.
#[test]
fn doctor_says_many_findings_of_one_kind_in_a_few_lines() {
    if !root_or_skip("doctor_says_many_findings_of_one_kind_in_a_few_lines") {
        return;
    }
    watchdog("doctor_many", Duration::from_secs(240));
    let tmp_dir = shmbus_testkit::TempDir::new("doctor-many");
    let dir = tmp_dir.path().to_path_buf();
    in_namespaces(
        &["--ipc"],
        child("doctor-many", &[dir.to_str().unwrap().to_string()]),
    );
    let text = std::fs::read_to_string(dir.join("doctor.txt")).unwrap();
    let squats = text
        .lines()
        .filter(|l| l.starts_with("WARN  squat        key 0x53f0"))
        .count();
    assert_eq!(squats, 20, "{text}");
    assert!(
        text.contains("WARN  squat        and 180 more squat findings like those above, not shown (200 in all)")
            && text.contains("`shmbus list` shows every topic and squat"),
        "{text}"
    );
    assert!(text.lines().count() < 80, "{text}");
    assert!(text.ends_with("exit Some(0)\n"), "{text}");
}

/// Another user holds the publisher lock at a topic's key with no segment
/// (a semaphore-only squat): the publisher's error names the squatter and
/// a removal command, which, typed as printed, removes the lock, after
/// which the publisher starts; `shmbus rm KEY` removes such a lock too.
#[test]
fn a_lock_only_squat_is_removed_by_the_command_the_error_suggests() {
    use std::os::unix::process::CommandExt;
    if !root_or_skip("a_lock_only_squat_is_removed_by_the_command_the_error_suggests") {
        return;
    }
    watchdog("lock_only_squat", Duration::from_secs(180));
    let (topic, _g) = self::topic("lock-squat");
    let mut squatter = KillOnDrop(
        child("hold-lock", &[topic.key.to_string()])
            .uid(STRANGER)
            .gid(STRANGER)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(squatter.0.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the squatter exited");
    }
    let err = Publisher::<Imu>::open(&topic).unwrap_err().to_string();
    assert!(err.contains("uid 64102"), "{err}");
    let fix = err
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in: {err}"))
        .to_string();
    let words: Vec<&str> = fix.split_whitespace().collect();
    if words[0] == "shmbus" {
        let r = run(&words[1..]);
        assert_eq!(r.code, 0, "`{fix}` works when typed: {}", r.stderr);
    } else {
        let st = Command::new("sh").arg("-c").arg(&fix).status().unwrap();
        assert!(st.success(), "`{fix}` works when typed");
    }
    // The CLI's own way works too, on a lock-only squat: `shmbus rm KEY`.
    let r = run(&["rm", &hex(topic.key)]);
    assert_eq!(r.code, 1, "already gone: {}", r.stderr);
    let mut p =
        Publisher::<Imu>::open(&topic).expect("the publisher starts once the squat is gone");
    p.publish(&imu(1)).unwrap();
}

/// `shmbus rm KEY` refuses a lock-only squat that a process holds (it may
/// be another program's semaphore in use), naming the holder and
/// `--force`; `rm --force KEY` removes it.
#[test]
fn rm_removes_a_held_lock_only_squat_with_force() {
    use std::os::unix::process::CommandExt;
    if !root_or_skip("rm_removes_a_held_lock_only_squat_with_force") {
        return;
    }
    watchdog("rm_lock_only", Duration::from_secs(180));
    let (topic, _g) = self::topic("rm-lock-squat");
    let mut squatter = KillOnDrop(
        child("hold-lock", &[topic.key.to_string()])
            .uid(STRANGER)
            .gid(STRANGER)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(squatter.0.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the squatter exited");
    }
    let k = hex(topic.key);
    let r = run(&["list", "--json", "--window", "0", "--key", &k]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["status"], "lock only", "{v}");
    assert_eq!(v[0]["creator_uid"], STRANGER, "{v}");
    assert!(
        v[0]["lock"].as_str().unwrap().starts_with("held by "),
        "{v}"
    );
    let r = run(&["rm", &k]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("held by pid") && r.stderr.contains("--force removes it"),
        "{}",
        r.stderr
    );
    assert!(shmbus_core::sysvipc::semaphore_by_key(topic.key).is_some());
    let r = run(&["rm", "--force", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("removed the publisher lock")
            && r.stdout.contains("keeps running without it"),
        "{}",
        r.stdout
    );
    assert!(shmbus_core::sysvipc::semaphore_by_key(topic.key).is_none());
    let r = run(&["rm", &k]);
    assert_eq!(r.code, 1, "{}", r.stderr);
}

/// `shmbus list`'s note on a lone lock names the command that removes it,
/// and that command, typed, does: for a lock a process holds it said
/// `shmbus rm KEY`, which refuses a held lock (exit 2); it needs `--force`,
/// as `doctor` said.
#[test]
fn list_names_the_rm_that_removes_a_lone_lock_as_typed() {
    watchdog("list_lock_only_fix", Duration::from_secs(120));
    let (topic, _g) = self::topic("list-lock-fix");
    let mut holder = KillOnDrop(
        child("hold-lock", &[topic.key.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(holder.0.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the holder exited");
    }
    let k = hex(topic.key);
    let r = run(&["list", "--window", "0", "--key", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let note = r
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{k}: a semaphore set")))
        .unwrap_or_else(|| panic!("no note on the lone lock:\n{}", r.stdout));
    let fix = note
        .split("remove it with `")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .unwrap_or_else(|| panic!("the note names no command: {note}"));
    let typed: Vec<&str> = fix.split_whitespace().collect();
    assert_eq!(typed[0], "shmbus", "{note}");
    let r = run(&typed[1..]);
    assert_eq!(
        r.code, 0,
        "`{fix}`, as `list` prints it, failed: {}",
        r.stderr
    );
    assert!(
        shmbus_core::sysvipc::semaphore_by_key(topic.key).is_none(),
        "`{fix}` left the lock"
    );
}

/// A lone semaphore nobody holds, with no segment: at a key in shmbus's
/// range (0x53......) it is a lock a topic left behind, and `rm KEY`
/// removes it; at any other key it may be another program's, and only
/// `rm --force KEY` does.
#[test]
fn rm_removes_a_free_lone_semaphore_only_in_shmbus_range_without_force() {
    watchdog("rm_lone_semaphore", Duration::from_secs(120));
    let make = |key: i32| {
        // SAFETY: creates a fresh one-semaphore set at a unique key.
        let id = unsafe { libc::semget(key, 1, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        assert!(id >= 0, "semget: {}", std::io::Error::last_os_error());
    };
    let ours = shmbus_testkit::unique_key_family(0x53, "rm-lone-ours");
    let _g1 = Guard(ours);
    make(ours);
    let r = run(&["rm", &hex(ours)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(shmbus_core::sysvipc::semaphore_by_key(ours).is_none());

    let other = unique_key("rm-lone-other");
    let _g2 = Guard(other);
    make(other);
    let r = run(&["rm", &hex(other)]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("outside those shmbus derives") && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    assert!(shmbus_core::sysvipc::semaphore_by_key(other).is_some());
    let r = run(&["rm", "--force", &hex(other)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(shmbus_core::sysvipc::semaphore_by_key(other).is_none());
}

/// Every numeric option of every command, with the values that broke
/// tools before (0, negative, NaN, infinities, 1e-300, the smallest
/// double, 1e300, 2^64): each is a clear error naming the option (exit 2)
/// or an accepted value the command documents (then it runs to its usual
/// end: here a missing topic or file, exit 0 or 1). Never a panic, never a
/// hang.
#[test]
fn every_numeric_option_takes_extreme_values_without_a_panic() {
    watchdog("numeric_options", Duration::from_secs(600));
    const V: &str = "{V}";
    let missing = format!("no/such/topic-{}", std::process::id());
    let m = missing.as_str();
    let nofile = "/nonexistent/shmbus.mcap";
    // (words with V for the value, option, the extreme values it accepts)
    let table: Vec<(Vec<&str>, &str, &[&str])> = vec![
        (vec!["list", "--window", V], "--window", &["0"]),
        (vec!["list", "--key", V], "--key", &["-1"]),
        (vec!["echo", m, "--count", V], "--count", &[]),
        (vec!["echo", m, "--timeout", V], "--timeout", &[]),
        (vec!["pub", m, "{}", "--count", V], "--count", &["0"]),
        (
            vec!["pub", m, "{}", "--rate", V, "--count", "1"],
            "--rate",
            &[],
        ),
        (vec!["hz", m, "--interval", V], "--interval", &[]),
        (vec!["hz", m, "--count", V], "--count", &[]),
        (vec!["hz", m, "--duration", V], "--duration", &[]),
        (
            vec!["top", "--interval", V, "--count", "1"],
            "--interval",
            &[],
        ),
        (
            vec!["top", "--count", V, "--interval", "0.1"],
            "--count",
            &[],
        ),
        (
            vec!["top", "--duration", V, "--count", "1", "--interval", "0.1"],
            "--duration",
            &[],
        ),
        (
            vec!["top", "--key", V, "--count", "1", "--interval", "0.1"],
            "--key",
            &["-1"],
        ),
        (vec!["doctor", "--key", V], "--key", &["-1"]),
        (vec!["demo", "--duration", V], "--duration", &[]),
        (
            vec!["record", "-o", nofile, "--duration", V],
            "--duration",
            &[],
        ),
        (vec!["record", "-o", nofile, "--key", V], "--key", &["-1"]),
        (vec!["replay", nofile, "--rate", V], "--rate", &["0", "-0"]),
        (vec!["bench", "--rounds", V], "--rounds", &[]),
        (vec!["bench", "--iters", V], "--iters", &[]),
        (vec!["bench", "--fanout", V], "--fanout", &[]),
        (vec!["__sensor", "imu", "--rate", V], "--rate", &[]),
        (vec!["__sensor", "imu", "--duration", V], "--duration", &[]),
        (vec!["__sensor", "imu", "--count", V], "--count", &[]),
        (vec!["__sensor", "imu", "--parent", V], "--parent", &[]),
    ];
    let extremes = [
        "0",
        "-1",
        "-0",
        "NaN",
        "inf",
        "-inf",
        "1e-300",
        "5e-324",
        "1e300",
        "18446744073709551616",
        "",
    ];
    let mut checked = 0;
    for (words, option, accepted) in &table {
        for x in extremes {
            let args: Vec<&str> = words.iter().map(|w| if *w == V { x } else { w }).collect();
            let (code, _, err, _) = run_limited(&args, Duration::from_secs(60));
            let code = code.unwrap_or_else(|| panic!("{args:?} did not end by itself"));
            if accepted.contains(&x) {
                assert!(
                    code == 0 || code == 1,
                    "{args:?} (an accepted value): exit {code}: {err}"
                );
            } else {
                assert_eq!(code, 2, "{args:?}: {err}");
                assert!(
                    err.contains(option),
                    "{args:?}: the error names {option}: {err}"
                );
            }
            checked += 1;
        }
    }
    eprintln!(
        "FIGURE numeric options: {} options x {} values = {checked} runs, 0 panics",
        table.len(),
        extremes.len()
    );
}

/// A frame type whose schema is well over 128 bytes, as real topics' are.
#[derive(
    Serialize,
    Deserialize,
    Debug,
    Clone,
    PartialEq,
    postcard::experimental::max_size::MaxSize,
    postcard_schema::Schema,
)]
struct WideReport {
    board_temperature_celsius: f32,
    supply_voltage_millivolts: u32,
    uptime_seconds_since_boot: u64,
    firmware_identifier: heapless::String<16>,
    sensor_readings_in_order: heapless::Vec<i16, 8>,
}

/// Schemas are decoded under a tight address-space limit (`ulimit -v`, or
/// a small board with strict overcommit): the depth check of a hostile
/// schema needs no helper thread and no large stack. It once spawned a
/// thread with a 64 MiB stack for every schema over 128 bytes, so under
/// such a limit every real topic showed "<undecodable>" and `echo` called
/// it corrupt. Under qemu-user an address-space limit cannot be applied to
/// the guest (the emulator reserves 4 GiB first), so this runs natively.
#[test]
fn schemas_decode_under_a_tight_address_space_limit() {
    watchdog("schema_as_limit", Duration::from_secs(120));
    if std::env::var("SHMBUS_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty()) {
        eprintln!("skipped under SHMBUS_TEST_RUNNER: an address-space limit binds the emulator");
        return;
    }
    let (topic, _g) = topic("schema_as_limit");
    let mut p = Publisher::<WideReport>::open(&topic).unwrap();
    let schema = shmbus_core::schema::schema_bytes::<WideReport>().unwrap();
    assert!(schema.len() > 128, "schema is {} bytes", schema.len());
    p.publish(&WideReport {
        board_temperature_celsius: 41.5,
        supply_voltage_millivolts: 3300,
        uptime_seconds_since_boot: 7,
        firmware_identifier: heapless::String::from("fw-1.2"),
        sensor_readings_in_order: heapless::Vec::from_slice(&[1, -2, 3]).unwrap(),
    })
    .unwrap();
    let k = hex(topic.key);
    let limited = |args: &[&str]| {
        let exe = env!("CARGO_BIN_EXE_shmbus");
        let o = Command::new("prlimit")
            .arg(format!("--as={}", 32 * 1024 * 1024))
            .arg("--")
            .arg(exe)
            .args(args)
            .env("MALLOC_ARENA_MAX", "2")
            .stdin(Stdio::null())
            .output()
            .expect("run prlimit");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = limited(&["info", &k]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("WideReport") && !out.contains("cannot decode"),
        "{out}"
    );
    let (code, out, err) = limited(&["list", "--key", &k]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("WideReport") && !out.contains("<undecodable>"),
        "{out}"
    );
    let (code, out, err) = limited(&[
        "echo",
        &k,
        "--count",
        "1",
        "--timeout",
        "10",
        "--all",
        "--from-oldest",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("fw-1.2"), "{out}{err}");
}

/// A frame type whose schema names carry terminal control sequences, as a
/// planted segment's schema can (a hand-written `Schema`: any string is a
/// valid name in a schema).
#[derive(
    Serialize, Deserialize, Debug, Clone, PartialEq, postcard::experimental::max_size::MaxSize,
)]
struct Escapes {
    text: heapless::String<32>,
}

/// Window title, colour, clear screen, a C1 CSI, DEL, a carriage return and
/// a right-to-left override: each would drive a terminal if printed raw.
const HOSTILE_TEXT: &str = "\u{1b}]0;pwned\u{7}\u{1b}[31m\u{1b}[2J\u{9b}1m\u{7f}\r\u{202e}";

impl postcard_schema::Schema for Escapes {
    const SCHEMA: &'static postcard_schema::schema::NamedType =
        &postcard_schema::schema::NamedType {
            name: "Esc\u{1b}]0;type\u{7}\u{9b}2J",
            ty: &postcard_schema::schema::DataModelType::Struct(&[
                &postcard_schema::schema::NamedValue {
                    name: "field\u{1b}[2J\r\u{202e}",
                    ty: <heapless::String<32> as postcard_schema::Schema>::SCHEMA,
                },
            ]),
        };
}

/// Bytes that must never reach a terminal from text a segment carries.
fn terminal_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| {
            (c.is_control() && *c != '\n' && *c != '\t') || ('\u{202a}'..='\u{202e}').contains(c)
        })
        .collect()
}

/// Names, schema text and string values come from segments any local user
/// can plant: no tool prints their control characters raw. A schema whose
/// type and field names and a frame whose string hold escape sequences are
/// shown with `\uXXXX` escapes by list, info, echo (text and JSON), hz,
/// top and pub's errors, and the JSON still parses to the same string; a
/// topic name with control characters is refused as corrupt (no publisher
/// can create one).
#[test]
fn terminal_control_characters_from_segments_are_never_printed_raw() {
    watchdog("terminal_controls", Duration::from_secs(120));
    let (topic, _g) = topic("terminal_controls");
    let mut p = Publisher::<Escapes>::open(&topic).unwrap();
    p.publish(&Escapes {
        text: heapless::String::from(HOSTILE_TEXT),
    })
    .unwrap();
    let k = hex(topic.key);
    let mut runs = 0;
    let check = |args: &[&str], runs: &mut u32| {
        let r = run(args);
        let bad = terminal_controls(&format!("{}{}", r.stdout, r.stderr));
        assert!(
            bad.is_empty(),
            "{args:?} printed {bad:?}:\n{}{}",
            r.stdout,
            r.stderr
        );
        *runs += 1;
        r
    };
    let r = check(&["list", "--key", &k], &mut runs);
    assert!(
        r.stdout.contains("Esc\\u001b]0;type\\u0007"),
        "{}",
        r.stdout
    );
    let r = check(&["info", &k], &mut runs);
    assert!(r.stdout.contains("field\\u001b[2J"), "{}", r.stdout);
    let r = check(
        &[
            "echo",
            &k,
            "--count",
            "1",
            "--all",
            "--from-oldest",
            "--timeout",
            "10",
        ],
        &mut runs,
    );
    assert!(r.stdout.contains("pwned"), "{}{}", r.stdout, r.stderr);
    let r = check(
        &[
            "echo",
            &k,
            "--count",
            "1",
            "--json",
            "--all",
            "--from-oldest",
            "--timeout",
            "10",
        ],
        &mut runs,
    );
    let v: Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    let text = v["value"].as_object().unwrap().values().next().unwrap();
    assert_eq!(text.as_str(), Some(HOSTILE_TEXT), "{}", r.stdout);
    check(&["hz", &k, "--duration", "0.3"], &mut runs);
    check(
        &["top", "--key", &k, "--count", "1", "--interval", "0.1"],
        &mut runs,
    );
    drop(p);
    let r = check(&["pub", &k, "{\"nope\": 1}"], &mut runs);
    assert_eq!(r.code, 2, "{}", r.stderr);

    // A name with control characters: refused before anything prints it.
    let (att, _, _, _) = damage(topic.key);
    let evil = b"a\x1b[2Jb\x07";
    att.atomic_word(56)
        .unwrap()
        .store(evil.len() as u32, std::sync::atomic::Ordering::Relaxed);
    let mut name = [0u8; 8];
    name[..evil.len()].copy_from_slice(evil);
    shmbus_core::codec::store_bytes(att.atomic_words(64, 2).unwrap(), &name);
    for args in [
        vec!["list", "--key", &k],
        vec!["info", &k],
        vec!["echo", &k, "--count", "1", "--timeout", "1"],
        vec!["top", "--key", &k, "--count", "1", "--interval", "0.1"],
        vec!["rm", &k],
    ] {
        let r = check(&args, &mut runs);
        if args[0] == "info" {
            assert_eq!(r.code, 2, "{}", r.stderr);
            assert!(
                r.stderr
                    .contains("name has characters a topic name cannot have"),
                "{}",
                r.stderr
            );
        }
    }
    assert_eq!(runs, 12);
}

/// Root. Another user's live topic, as seen by a user who may read it but
/// not own it: `pub` says whose topic it is and to publish as that user
/// (it once called the owner's own lock "possibly spoofed" and told root
/// to `ipcrm -S` it, which would leave the live publisher without its lock
/// and let a second publisher write the same segment); `rm` says "not
/// allowed" at once (it once suggested `--force`, which then failed too).
/// The removal that the `pub` message offers works when root types it.
#[test]
fn another_users_topic_is_named_as_theirs_with_fixes_that_work() {
    use std::os::unix::process::CommandExt;
    if !root_or_skip("another_users_topic_is_named_as_theirs_with_fixes_that_work") {
        return;
    }
    watchdog("another_users_topic", Duration::from_secs(120));
    let (topic, _g) = topic("another_users_topic");
    let _p = publisher(&topic.name, topic.key, 8, 200.0);
    let k = hex(topic.key);
    let as_stranger = |args: &[&str]| {
        let o = shmbus(args).uid(STRANGER).gid(STRANGER).output().unwrap();
        let r = Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        };
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        r
    };
    let value = serde_json::to_string(&imu(1)).unwrap();
    let r = as_stranger(&["pub", &k, &value]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("belongs to uid 0")
            && r.stderr.contains("publish it as uid 0")
            && !r.stderr.contains("ipcrm -S")
            && !r.stderr.contains("spoofed"),
        "{}",
        r.stderr
    );
    for args in [vec!["rm", k.as_str()], vec!["rm", k.as_str(), "--force"]] {
        let r = as_stranger(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("not allowed") && !r.stderr.contains("--force"),
            "{args:?}: {}",
            r.stderr
        );
    }
    // Nothing was changed: the publisher and its lock are still there.
    assert!(shmbus_core::lock::publisher_status(topic.key).is_alive());
    // The removal the message names, typed by root, works.
    let fix = r
        .stderr
        .split('`')
        .nth(1)
        .expect("a command in backquotes")
        .to_string();
    let words: Vec<&str> = fix.split_whitespace().collect();
    assert_eq!(words[..3], ["shmbus", "rm", "--force"], "{fix}");
    let r = run(&words[1..]);
    assert_eq!(r.code, 0, "{fix}: {}", r.stderr);
    assert!(
        sys::shmget(topic.key, 0, 0).is_err(),
        "{fix} left the segment"
    );
    assert!(shmbus_core::sysvipc::semaphore_by_key(topic.key).is_none());
}

/// `pub -` reads each line with a bound: a stream with no newline (here
/// 17 MiB of spaces) is refused once the line passes 16 MiB, naming the
/// line, instead of being read into memory to its end (a 200 MB line once
/// took 208 MB of resident memory, a longer one the OOM killer); a line
/// that is not UTF-8 is named by number, and the frames before it are
/// published.
#[test]
fn pub_from_stdin_reads_bounded_lines() {
    watchdog("pub-stdin-bounded", Duration::from_secs(300));
    let (topic, _g) = self::topic("pub-stdin-bounded");
    drop(Publisher::<Imu>::open(&topic).unwrap());
    let k = hex(topic.key);
    // The tool stops reading at the bound and exits: a broken pipe is the
    // expected end of the feed (run_input).
    let feed = |input: Vec<u8>| {
        let r = run_input(&["pub", &k, "-"], input);
        (Some(r.code), r.stderr)
    };
    // The bound comes from the topic's frames (see
    // pub_from_stdin_bounds_each_line_by_the_topics_frame): 64 KiB here.
    let (code, err) = feed(vec![b' '; 17 << 20]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("line 1 of stdin: longer than 65536 bytes")
            && err.contains("the 0 frames before it were published"),
        "{err}"
    );
    let good = br#"{"t_us": 7, "acc": [0,0,0], "frame": "s", "ok": false}"#;
    let mut input = good.to_vec();
    input.extend_from_slice(b"\n\xff\xfe\n");
    input.extend_from_slice(good);
    let (code, err) = feed(input);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("line 2 of stdin: not UTF-8")
            && err.contains("the 1 frame before it was published"),
        "{err}"
    );
    let mut sub = Subscriber::<Imu>::attach(&topic).unwrap();
    assert_eq!(sub.latest().unwrap().unwrap().value.t_us, 7);
    // A line that is not JSON, JSON refused (a key twice: "not valid
    // JSON" was false), or not this topic's shape, after blank lines:
    // named by its number in the input, blank lines counted.
    for (bad, says) in [
        (&b"{\"t_us\": 9,"[..], "not valid JSON"),
        (
            &b"{\"t_us\": 9, \"t_us\": 10}"[..],
            "the value is refused (key \"t_us\" appears twice",
        ),
        (&b"{\"t_us\": \"nine\"}"[..], "does not fit the schema"),
    ] {
        let mut input = good.to_vec();
        input.extend_from_slice(b"\n\n");
        input.extend_from_slice(good);
        input.push(b'\n');
        input.extend_from_slice(bad);
        input.push(b'\n');
        let (code, err) = feed(input);
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("line 4 of stdin: ")
                && err.contains(says)
                && err.contains("the 2 frames before it were published"),
            "{err}"
        );
    }
}

/// `pub -` bounds each line by what the topic's frames can hold, not by
/// 16 MiB whatever the topic: a line of `Imu` (32-byte frames) longer than
/// any value of it, with more numbers than the frame has bytes, or with
/// more values than any value of its schema has, is refused before a
/// `serde_json::Value` of it is built (a 16 MiB line took 175 MB to be
/// refused, now 13 MB: the process's own). The line before is published;
/// a value spelled with white space everywhere is not refused.
#[test]
fn pub_from_stdin_bounds_each_line_by_the_topics_frame() {
    watchdog("pub-stdin-frame-bound", Duration::from_secs(300));
    let (topic, _g) = self::topic("pub-stdin-frame-bound");
    drop(Publisher::<Imu>::open(&topic).unwrap());
    let k = hex(topic.key);
    let good = br#"{"t_us": 7, "acc": [0,0,0], "frame": "s", "ok": false}"#;
    let zeros = |n: usize| vec!["0"; n].join(",");
    let nulls = |n: usize| vec!["null"; n].join(",");
    for (bad, says) in [
        (
            format!(
                r#"{{"t_us": 8, "acc": [{}], "frame": "", "ok": true}}"#,
                zeros(1 << 19)
            ),
            "longer than 65536 bytes, more than any value of",
        ),
        (
            format!(
                r#"{{"t_us": 8, "acc": [{}], "frame": "", "ok": true}}"#,
                zeros(1000)
            ),
            "the value is refused: it holds more than 32 numbers, strings and booleans, and each takes at least one byte of a frame",
        ),
        (
            format!(
                r#"{{"t_us": 8, "acc": [{}], "frame": "", "ok": true}}"#,
                nulls(1000)
            ),
            "the value is refused: it holds more than 160 JSON values, more than any value of",
        ),
    ] {
        let mut input = good.to_vec();
        input.push(b'\n');
        input.extend_from_slice(bad.as_bytes());
        input.push(b'\n');
        let r = run_input(&["pub", &k, "-"], input);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains("line 2 of stdin: ")
                && r.stderr.contains(says)
                && r.stderr.contains("the 1 frame before it was published")
                && r.stderr.lines().count() == 1
                && r.stderr.len() < 400,
            "{}",
            r.stderr
        );
    }
    // The largest value, spelled long: published.
    let wide = format!(
        "{{ \"t_us\" {sp}: {sp}18446744073709551615 , \"acc\": [ -3.4028234663852886e38 {sp}, 1.00000000000000000000000000000000000000000 , 0 ] , \"frame\" : \"\\u0001\\u0001\\u0001\\u0001\\u0001\\u0001\\u0001\\u0001\" , \"ok\" :{sp}true }}\n",
        sp = " ".repeat(1000)
    );
    let r = run_input(&["pub", &k, "-"], wide.into_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut sub = Subscriber::<Imu>::attach(&topic).unwrap();
    assert_eq!(sub.latest().unwrap().unwrap().value.t_us, u64::MAX);
}

/// What editors and shells make of JSON files is taken: a UTF-8 byte
/// order mark at the start of a file (Windows Notepad writes one; `cat
/// a.json b.json` puts the second mid-stream) and CRLF line ends, from
/// stdin and as the argument; "not valid JSON (expected value at line 1
/// column 1)" before. A stdin that cannot be read says, like a bad line,
/// how many frames were published.
#[test]
fn pub_takes_a_byte_order_mark_and_crlf_line_ends() {
    watchdog("pub-bom", Duration::from_secs(120));
    let (topic, _g) = self::topic("pub-bom");
    drop(Publisher::<Imu>::open(&topic).unwrap());
    let k = hex(topic.key);
    let value = |t: u64| format!(r#"{{"t_us": {t}, "acc": [0,0,0], "frame": "s", "ok": true}}"#);
    let mut sub = Subscriber::<Imu>::attach(&topic).unwrap();
    let mut seen = Vec::new();
    let input = format!(
        "\u{feff}{}\r\n\r\n{}\r\n\u{feff}{}\n",
        value(1),
        value(2),
        value(3)
    );
    let r = run_input(&["pub", &k, "-"], input.into_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("published 3 frames"), "{}", r.stdout);
    let arg = format!("\u{feff}{}", value(4));
    let r = run(&["pub", &k, &arg]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    while let shmbus_sub::Next::Frame(m) = sub.next().unwrap() {
        seen.push(m.value.t_us);
    }
    assert_eq!(seen, [1, 2, 3, 4]);
    // A directory for stdin.
    let dir = shmbus_testkit::TempDir::new("pub-bom-dir");
    let o = shmbus(&["pub", &k, "-"])
        .stdin(std::fs::File::open(dir.path()).unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("shmbus: line 1 of stdin: cannot read stdin: ")
            && err
                .trim_end()
                .ends_with("the 0 frames before it were published")
            && err.lines().count() == 1,
        "{err}"
    );
}

/// Standard output whose reader has gone (`| head -0`): a pipe whose read
/// end is closed before the command starts.
fn closed_pipe() -> Stdio {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe() writes two new descriptors into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both are new, open and owned by nobody else; the read end is
    // closed here, before the command starts.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

/// `rm` removes every topic it is given whatever becomes of its output:
/// with standard output a closed pipe (`shmbus rm a b c | head -0`, a
/// reader that went) it removed the first, met the broken pipe while
/// saying so and stopped, exit 0, the others left in place. A full disk
/// (`/dev/full`) is said once, exit 2, and everything is removed too.
/// `doctor`'s verdict is its exit code whatever becomes of its output: a
/// FAIL was exit 0 once the pipe closed (`shmbus doctor | head -3`).
#[test]
fn a_closed_output_stops_only_the_printing() {
    watchdog("rm-closed-output", Duration::from_secs(120));
    let tmp = shmbus_testkit::TempDir::new("doctor-closed-output");
    let config = tmp.path().join("bad.toml");
    std::fs::write(&config, "bus = 3\n").unwrap();
    let o = shmbus(&["doctor", "--config", config.to_str().unwrap()])
        .stdout(closed_pipe())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for output in ["closed pipe", "/dev/full"] {
        let topics: Vec<_> = (0..3)
            .map(|i| self::topic(&format!("rm-closed-{i}")))
            .collect();
        for (t, _) in &topics {
            drop(Publisher::<Imu>::open(t).unwrap());
        }
        let keys: Vec<String> = topics.iter().map(|(t, _)| hex(t.key)).collect();
        let mut args = vec!["rm"];
        args.extend(keys.iter().map(String::as_str));
        let stdout = if output == "/dev/full" {
            Stdio::from(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            )
        } else {
            closed_pipe()
        };
        let o = shmbus(&args).stdout(stdout).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{err}");
        let left: Vec<&String> = topics
            .iter()
            .zip(&keys)
            .filter(|((t, _), _)| sys::shmget(t.key, 0, 0).is_ok())
            .map(|(_, k)| k)
            .collect();
        assert!(left.is_empty(), "{output}: {left:?} left in place; {err}");
        if output == "/dev/full" {
            assert_eq!(o.status.code(), Some(2), "{err}");
            assert!(
                err.lines().count() == 1
                    && err.contains("cannot write the output")
                    && err.contains("the topics named after it are still removed"),
                "{err}"
            );
        } else {
            assert_eq!(o.status.code(), Some(0), "{err}");
            assert!(err.is_empty(), "{err}");
        }
    }
}

/// `pub` stops when its topic is removed under it (`shmbus rm --force`),
/// as `echo` does: with `--count 0` it published into a segment no one
/// could find, for ever, and `pub -` took every later line the same way.
/// Now exit 1, saying so and how many frames were published.
#[test]
fn pub_stops_when_its_topic_is_removed() {
    use std::io::Write;
    watchdog("pub-removed", Duration::from_secs(240));
    let (topic, _g) = self::topic("pub-removed");
    let k = hex(topic.key);
    let value = r#"{"t_us": 5, "acc": [0,0,0], "frame": "s", "ok": true}"#;
    // Wait (bounded) until the topic has `n` frames, then remove it.
    let published_then_removed = |n: u64| {
        let mut sub = Subscriber::<Imu>::attach(&topic).unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        while sub.raw().generation() < n {
            assert!(Instant::now() < until, "nothing published");
            std::thread::sleep(Duration::from_millis(10));
        }
        let r = run(&["rm", "--force", &k]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        // A forced removal says what the live publisher may do next.
        assert!(
            r.stdout
                .contains("is still running and may create the topic again"),
            "{}",
            r.stdout
        );
    };
    let ended = |mut c: KillOnDrop| {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = c.0.try_wait().unwrap() {
                let mut err = String::new();
                c.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                return (status.code(), err);
            }
            assert!(
                Instant::now() < until,
                "pub went on after its topic was removed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for stdin in [false, true] {
        drop(Publisher::<Imu>::open(&topic).unwrap());
        let args: Vec<&str> = if stdin {
            vec!["pub", &k, "-"]
        } else {
            vec!["pub", &k, value, "--count", "0", "--rate", "100"]
        };
        let mut c = KillOnDrop(
            shmbus(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut input = c.0.stdin.take().unwrap();
        if stdin {
            writeln!(input, "{value}").unwrap();
        }
        published_then_removed(1);
        if stdin {
            writeln!(input, "{value}").unwrap();
        }
        let (code, err) = ended(c);
        drop(input);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("was removed (`shmbus rm`) while this published"),
            "{err}"
        );
        if stdin {
            assert!(
                err.starts_with("shmbus: line 2 of stdin: ")
                    && err.contains("the 1 frame before it was published"),
                "{err}"
            );
        } else {
            assert!(err.contains("frames were published before"), "{err}");
        }
    }
}

/// A demo killed with SIGKILL (no cleanup of its own) leaves nothing: each
/// sensor sees that its parent is gone, removes its own segment and
/// publisher lock and exits. They used to stay, locked in RAM, under a bus
/// name (`demo-<pid>`) that no later demo reuses: every `kill -9` of a
/// demo leaked six segments and six semaphore sets until reboot.
#[test]
fn a_killed_demo_leaves_nothing_behind() {
    watchdog("killed_demo", Duration::from_secs(240));
    let child = shmbus(&["demo", "--duration", "120"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn shmbus demo");
    let pid = child.id();
    let (keys, _guards) = demo_keys(pid);
    let mut child = KillOnDrop(child);
    for &k in &keys {
        wait_topic(k);
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.0.wait().unwrap();
    let left = || -> Vec<String> {
        let mut v = Vec::new();
        for name in ["shm", "sem"] {
            let text = std::fs::read_to_string(format!("/proc/sysvipc/{name}")).unwrap();
            for e in shmbus_core::sysvipc::parse(&text) {
                if keys.contains(&e.key()) {
                    v.push(format!("{name} 0x{:08x}", e.key()));
                }
            }
        }
        v
    };
    let t = Instant::now();
    loop {
        let v = left();
        if v.is_empty() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "60 s after the demo's SIGKILL, still there: {v:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A segment too large for the reader's address space (any local user can
/// create one of gigabytes; on a 32-bit board the whole user address space
/// is 3 GiB): the tools say they cannot map it, with its size and a
/// removal command that works, instead of "out of memory creating a 0-byte
/// segment". Runs natively (an address-space limit binds qemu-user).
#[test]
fn a_segment_too_large_to_map_is_named_as_such() {
    watchdog("cannot_map", Duration::from_secs(120));
    if std::env::var("SHMBUS_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty()) {
        eprintln!("skipped under SHMBUS_TEST_RUNNER: an address-space limit binds the emulator");
        return;
    }
    let size = 1usize << 30;
    let g = foreign_segment("cannot_map", size, &[0x89]);
    let k = hex(g.key());
    let limited = |args: &[&str]| {
        let o = Command::new("prlimit")
            .arg(format!("--as={}", 256 * 1024 * 1024))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_shmbus"))
            .args(args)
            .env("MALLOC_ARENA_MAX", "2")
            .stdin(Stdio::null())
            .output()
            .expect("run prlimit");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = limited(&["info", &k]);
    assert_eq!(code, Some(2), "{out}{err}");
    let want = format!("cannot map the segment at key {k} ({size} bytes)");
    assert!(err.contains(&want) && !err.contains("creating"), "{err}");
    let (code, out, err) = limited(&["list", "--key", &k]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&want), "{out}{err}");
    // The removal the message names works as typed.
    let fix = err_fix(&out);
    assert_eq!(fix[..2], ["ipcrm", "-M"], "{fix:?}");
    let st = Command::new(&fix[0]).args(&fix[1..]).status().unwrap();
    assert!(st.success(), "{fix:?}: {st:?}");
    assert!(sys::shmget(g.key(), 0, 0).is_err(), "{fix:?} left it");
}

/// The last command in backquotes in `text`, as words.
fn err_fix(text: &str) -> Vec<String> {
    let fix = text.rsplit('`').nth(1).expect("a command in backquotes");
    fix.split_whitespace().map(str::to_string).collect()
}

/// Two of the user's topics share a name and neither has a live publisher:
/// `pub NAME JSON` is ambiguous, and the command it suggests, typed as
/// printed, publishes (it used to be `shmbus pub KEY` without the JSON,
/// which clap refuses).
#[test]
fn an_ambiguous_name_suggests_the_whole_command_with_the_key() {
    watchdog("ambiguous_fix", Duration::from_secs(120));
    let (a, _ga) = topic("ambiguous_fix_a");
    let (b, _gb) = topic("ambiguous_fix_b");
    let b = shmbus_core::Topic {
        name: a.name.clone(),
        ..b
    };
    drop(Publisher::<Imu>::open(&a).unwrap());
    drop(Publisher::<Imu>::open(&b).unwrap());
    let value = r#"{"t_us": 41, "acc": [0,0,0], "frame": "it's", "ok": true}"#;
    let r = run(&["pub", &a.name, value]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("topics are named"), "{}", r.stderr);
    let fix = r
        .stderr
        .rsplit('`')
        .nth(1)
        .expect("a command in backquotes");
    // Typed into a shell, as printed (behind the emulator if there is one).
    let runner = std::env::var("SHMBUS_TEST_RUNNER").unwrap_or_default();
    let exe = format!("{runner} {}", env!("CARGO_BIN_EXE_shmbus"));
    let o = Command::new("sh")
        .arg("-c")
        .arg(fix.replacen("shmbus", exe.trim(), 1))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{fix}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let published = [&a, &b]
        .iter()
        .filter_map(|t| Subscriber::<Imu>::attach(t).ok()?.latest().ok()?)
        .filter(|s| s.value.t_us == 41 && s.value.frame == "it's")
        .count();
    assert_eq!(published, 1, "{fix}");
}

/// Root. Another user creates the publisher lock of a topic whose
/// publisher is not running (its own lock removed): the topic's publisher
/// can no longer start, and `list`, `info` and `doctor` say so, naming the
/// lock's creator (they showed the publisher as merely "stopped"). The
/// fix they print, typed, lets the publisher start again.
#[test]
fn a_squatted_lock_beside_a_segment_is_shown() {
    use std::os::unix::process::CommandExt;
    if !root_or_skip("a_squatted_lock_beside_a_segment_is_shown") {
        return;
    }
    watchdog("lock_beside_segment", Duration::from_secs(120));
    let (topic, _g) = topic("lock_beside_segment");
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(1)).unwrap();
    drop(p);
    let k = hex(topic.key);
    sys::sem_remove(sys::sem_lookup(topic.key).unwrap()).unwrap();
    let o = child("make-lock", &[topic.key.to_string()])
        .uid(STRANGER)
        .gid(STRANGER)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = run(&["list", "--key", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A uid no user has reads "uid N" (it read "64102 (uid 64102)").
    assert!(
        shmbus_testkit_user(STRANGER) == STRANGER.to_string(),
        "the test wants uid {STRANGER} unnamed on this machine"
    );
    let want = format!("was created by uid {STRANGER},");
    assert!(
        r.stdout.contains(&format!("lock of uid {STRANGER}!")) && r.stdout.contains(&want),
        "{}",
        r.stdout
    );
    let r = run(&["info", &k]);
    assert!(
        r.stdout.contains("SQUATTED?") && r.stdout.contains(&want),
        "{}",
        r.stdout
    );
    let r = run(&["doctor", "--key", &k]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("FAIL  squat"), "{}", r.stdout);
    // The first fix, typed: the publisher can start again.
    let fix = r
        .stdout
        .split('`')
        .nth(1)
        .expect("a command in backquotes")
        .to_string();
    let words: Vec<&str> = fix.split_whitespace().collect();
    assert_eq!(words[..2], ["ipcrm", "-S"], "{fix}");
    assert!(
        Command::new(words[0])
            .args(&words[1..])
            .status()
            .unwrap()
            .success()
    );
    let value = serde_json::to_string(&imu(2)).unwrap();
    let r = run(&["pub", &k, &value]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&["list", "--key", &k]);
    assert!(!r.stdout.contains("lock of uid"), "{}", r.stdout);
}

/// A user's name as the tools print it, or the number.
fn shmbus_testkit_user(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or(uid.to_string(), |u| u.name)
}

/// Root (to record as another uid, whose process limit applies; root is
/// exempt from RLIMIT_NPROC). `record` starts one reader thread per topic:
/// when the process limit stops some, the problem is printed once, then
/// counted, and the run ends with exit 2 saying how many topics were not
/// recorded (it used to say "recording N topics", print one warning per
/// topic, and exit 0).
#[test]
fn record_says_how_many_topics_it_could_not_record() {
    use std::os::unix::process::CommandExt;
    if !root_or_skip("record_says_how_many_topics_it_could_not_record") {
        return;
    }
    watchdog("record_no_thread", Duration::from_secs(180));
    let mut guards = Vec::new();
    let mut keys = Vec::new();
    for i in 0..24 {
        let (t, g) = topic(&format!("record_no_thread_{i}"));
        drop(Publisher::<Imu>::open(&t).unwrap());
        keys.push(hex(t.key));
        guards.push(g);
    }
    let tmp_dir = shmbus_testkit::TempDir::new("no-thread");
    let dir = tmp_dir.path().to_path_buf();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let file = dir.join("out.mcap");
    let mut args = vec![
        "record".to_string(),
        "-o".into(),
        file.display().to_string(),
    ];
    args.extend(["--duration".into(), "1".into()]);
    for k in &keys {
        args.extend(["--key".into(), k.clone()]);
    }
    let runner = std::env::var("SHMBUS_TEST_RUNNER").unwrap_or_default();
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nproc=8").arg("--");
    cmd.args(runner.split_whitespace());
    cmd.arg(env!("CARGO_BIN_EXE_shmbus")).args(&args);
    let o = cmd
        .uid(NPROC_RECORD_UID)
        .gid(NPROC_RECORD_UID)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        count_lines(&err, "cannot start a thread for topic"),
        1,
        "{err}"
    );
    assert!(err.contains("of 24 topics were not recorded"), "{err}");
}

/// Root (a process limit binds only another uid). `demo`, `bench` and `foxglove` under
/// a tight process limit (`prlimit --nproc`): what cannot start is named,
/// nothing panics (the demo's watcher threads and the bench's stop watcher
/// were `thread::spawn`, which panics: exit 101, and the demo then left
/// its topics behind), and the demo removes every topic it made.
#[test]
fn demo_and_bench_under_a_process_limit_neither_panic_nor_leak() {
    use std::os::unix::process::CommandExt;
    if !root_or_skip("demo_and_bench_under_a_process_limit_neither_panic_nor_leak") {
        return;
    }
    watchdog("nproc_limit", Duration::from_secs(240));
    let runner = std::env::var("SHMBUS_TEST_RUNNER").unwrap_or_default();
    // qemu-user runs a thread of its own (RCU) beside the guest's, and the
    // limit counts it: one more leaves the tool the same room as natively.
    let qemu = u32::from(!runner.is_empty());
    let limited = |nproc: u32, args: &[&str]| {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nproc={}", nproc + qemu)).arg("--");
        cmd.args(runner.split_whitespace());
        cmd.arg(env!("CARGO_BIN_EXE_shmbus")).args(args);
        cmd.uid(NPROC_TOOLS_UID)
            .gid(NPROC_TOOLS_UID)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        // prlimit execs the tool: the demo's bus is demo-<this pid>.
        let pid = child.id();
        let o = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (pid, o.status.code(), text)
    };
    for nproc in [4] {
        let (pid, code, text) = limited(nproc, &["demo", "--duration", "1"]);
        let (keys, _guards) = demo_keys(pid);
        assert!(!text.contains("panicked"), "nproc {nproc}: {text}");
        assert!(
            matches!(code, Some(0 | 1)),
            "nproc {nproc}: exit {code:?}: {text}"
        );
        for name in ["shm", "sem"] {
            let t = std::fs::read_to_string(format!("/proc/sysvipc/{name}")).unwrap();
            for e in shmbus_core::sysvipc::parse(&t) {
                assert!(
                    !keys.contains(&e.key()),
                    "nproc {nproc}: demo left {name} {:#x}: {text}",
                    e.key()
                );
            }
        }
    }
    // The parts that start peers (handoff, fan-out), not the in-process
    // micro-benchmarks: those have a fixed cost, 98 s of this test's 240 s
    // watchdog under qemu-arm, which a loaded CI machine outlasted.
    let (_, code, text) = limited(
        2,
        &[
            "bench",
            "--rounds",
            "1",
            "--iters",
            "100",
            "--only",
            "handoff,fanout",
            "--fanout",
            "1",
            "--no-pin",
        ],
    );
    assert!(!text.contains("panicked"), "{text}");
    assert!(matches!(code, Some(0 | 1)), "bench exit {code:?}: {text}");
    assert!(text.contains("cannot start a peer process"), "{text}");
    // foxglove is one thread, its --duration included (it panicked starting
    // a timer thread): with no room for a second thread it serves and ends
    // on time.
    let (_, code, text) = limited(1, &["foxglove", "--bind", "127.0.0.1:0", "--duration", "1"]);
    assert!(!text.contains("panicked"), "{text}");
    assert_eq!(code, Some(0), "foxglove: {text}");
    assert!(text.contains("shmbus foxglove: stopped"), "{text}");
}

/// `shmbus foxglove` on 127.0.0.1:0 for half a second, quiet, serving `topics`.
fn fox(topics: &[&str]) -> Run {
    run(&fox_args(topics))
}

/// `shmbus foxglove` on 127.0.0.1 for half a second, quiet, serving `topics`.
fn fox_args<'a>(topics: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "foxglove",
        "--bind",
        "127.0.0.1:0",
        "--duration",
        "0.5",
        "-q",
    ];
    a.extend_from_slice(topics);
    a
}

/// `record` and `foxglove` take a TOPIC as every other command does (a key,
/// `shmid:N`); a named topic they cannot use gets one warning with why.
/// `record` with none usable at the start fails (1: nothing there, 2:
/// there but unusable); `foxglove` waits for named topics and keys that
/// are not there yet (topics come and go) and fails only when none is
/// usable and none can appear.
#[test]
fn record_and_foxglove_take_every_topic_form_and_fail_with_no_usable_topic() {
    watchdog("forms", Duration::from_secs(120));
    let (t, _g) = topic("forms");
    let _p = publisher(&t.name, t.key, 8, 200.0);
    let shmid = sys::shmget(t.key, 0, 0).unwrap();
    let foreign = foreign_segment("forms-foreign", 4096, b"NOT A SHMBUS SEGMENT AT ALL");
    let missing_key = unique_key("forms-missing");
    let _gm = Guard(missing_key);
    let missing = hex(missing_key);
    let tmp_dir = shmbus_testkit::TempDir::new("forms");
    let dir = tmp_dir.path().to_path_buf();
    let file = dir.join("forms.mcap");
    let f = file.to_str().unwrap();
    let warnings = |err: &str| err.matches("shmbus: warning: ").count();
    for form in [hex(t.key), format!("shmid:{shmid}")] {
        let r = run(&["record", "-o", f, "--backlog", "--duration", "0.5", &form]);
        assert_eq!(r.code, 0, "{form}: {}", r.stderr);
        assert!(
            r.stderr
                .contains(&format!("recording 1 topic ({})", t.name)),
            "{}",
            r.stderr
        );
        let c = run(&["cat", f]);
        assert_eq!(c.code, 0, "{}", c.stderr);
        assert!(c.stdout.contains(&t.name), "{}", c.stdout);
    }
    let fk = hex(foreign.key());
    let r = run(&[
        "record",
        "-o",
        f,
        "--duration",
        "0.3",
        &fk,
        "--key",
        &missing,
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(warnings(&r.stderr), 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("key {fk}: not a shmbus topic")),
        "{}",
        r.stderr
    );

    // Not there yet: the server waits for them (topics come and go), and
    // says so once for each.
    let r = fox(&[&missing, "no-such-topic-forms"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(warnings(&r.stderr), 2, "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("served once it appears").count(),
        2,
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("serving 0 topic(s)"), "{}", r.stdout);
    // There but unusable, and nothing that could appear: refused.
    let r = fox(&[&fk]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!r.stdout.contains("serving"), "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!("key {fk}: not a shmbus topic")),
        "{}",
        r.stderr
    );
    // Unusable plus one that may appear: served when it does.
    let r = fox(&[&fk, &missing]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(warnings(&r.stderr), 2, "{}", r.stderr);
    let by_shmid = format!("shmid:{shmid}");
    let r = fox(&[&by_shmid, &missing]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("serving 1 topic(s)"), "{}", r.stdout);
    assert_eq!(warnings(&r.stderr), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("key {missing}: not found"))
            && r.stderr.contains("served once it appears"),
        "{}",
        r.stderr
    );
}

/// `record` of a named topic whose schema does not decode (its fingerprint
/// matches: a damaged segment, or a newer shmbus's) says why and fails,
/// exit 2, as for any topic there but unusable. Was: "not recorded
/// (upgrade shmbus)", then "recording 0 topics ()", an empty file and
/// exit 0.
#[test]
fn record_fails_on_a_named_topic_whose_schema_does_not_decode() {
    watchdog("record_bad_schema", Duration::from_secs(120));
    let (t, _g) = topic("record-bad-schema");
    let _p = RawPublisher::open(&t, &[0xff; 8], 64).expect("a topic with undecodable schema bytes");
    let tmp_dir = shmbus_testkit::TempDir::new("record-bad-schema");
    let file = tmp_dir.path().join("bad.mcap");
    let k = hex(t.key);
    let r = run(&[
        "record",
        "-o",
        file.to_str().unwrap(),
        "--duration",
        "0.3",
        &k,
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("its schema does not decode") && r.stderr.contains("damaged"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("recording 0 topics"), "{}", r.stderr);
}

/// A half-created topic as a creator leaves it, deterministically: its
/// publisher lock first (taken and kept; `hold` keeps it held, as by a
/// creator still at work, else it is released, as by one that died), then
/// a segment of `size` bytes that is all zeros (no header yet).
fn half_created(key: i32, size: usize, hold: bool) -> Option<shmbus_core::lock::PublisherLock> {
    let mut lock = shmbus_core::lock::PublisherLock::acquire(key, 0o600, None).unwrap();
    lock.keep();
    sys::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).unwrap();
    hold.then_some(lock)
}

/// `record` and `foxglove` given the key of a half-created segment: one
/// whose creator still holds its lock is being created and is waited for;
/// one whose creator died was "still being created" too, for as long as it
/// stayed (nothing was creating it). Now that one gets its reason and fix.
#[test]
fn record_and_foxglove_tell_a_dead_creators_half_created_segment_from_one_being_created() {
    watchdog("rf-half", Duration::from_secs(120));
    let left = Guard(unique_key("rf-half-left"));
    let busy = Guard(unique_key("rf-half-busy"));
    half_created(left.key(), 4096, false);
    let _held = half_created(busy.key(), 4096, true);
    let (kl, kb) = (hex(left.key()), hex(busy.key()));
    let dir = shmbus_testkit::TempDir::new("rf-half");
    let file = dir.join("half.mcap");
    let f = file.to_str().unwrap();
    let dead = format!("key {kl}: topic at key {kl} was left half-created");
    let fix = format!("shmbus rm {kl}");

    let r = run(&["record", "-o", f, "--duration", "0.3", &kl]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&dead) && r.stderr.contains(&fix),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("being created"), "{}", r.stderr);
    let r = run(&["record", "-o", f, "--duration", "0.3", &kb]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("key {kb}: not found: it is still being created")),
        "{}",
        r.stderr
    );

    let r = fox(&[&kl, &kb]);
    // The one being created may still appear: the server runs.
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&dead) && r.stderr.contains(&fix),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("key {kb}: not found: it is still being created")),
        "{}",
        r.stderr
    );
    let r = fox(&[&kl]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&dead) && r.stderr.contains(&fix),
        "{}",
        r.stderr
    );
}

/// `list` shows a half-created segment (its creator died after shmget,
/// before the header) with its fix, and one whose creator still holds the
/// lock as being created, in the table and in JSON.
#[test]
fn list_shows_half_created_segments_and_whether_their_creator_is_at_work() {
    watchdog("list-half", Duration::from_secs(120));
    let left = Guard(unique_key("list-half-left"));
    let busy = Guard(unique_key("list-half-busy"));
    half_created(left.key(), 4096, false);
    let _held = half_created(busy.key(), 4096, true);
    let (kl, kb) = (hex(left.key()), hex(busy.key()));
    let id_left = sys::shmget(left.key(), 0, 0).unwrap();
    let id_busy = sys::shmget(busy.key(), 0, 0).unwrap();
    let r = run(&["list", "--window", "0", "--key", &kl, "--key", &kb]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = |k: &str| {
        r.stdout
            .lines()
            .find(|l| l.contains(k) && !l.starts_with(k))
            .unwrap_or_else(|| panic!("no row for {k}:\n{}", r.stdout))
            .to_string()
    };
    let l = line(&kl);
    assert!(
        l.starts_with("(half-created: see below)") && l.contains(&id_left.to_string()),
        "{l}"
    );
    let b = line(&kb);
    assert!(
        b.starts_with("(being created)")
            && b.contains(&id_busy.to_string())
            && b.contains(&format!("creating {}", std::process::id())),
        "{b}"
    );
    let note = r
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{kl}: ")))
        .unwrap_or_else(|| panic!("no note for {kl}:\n{}", r.stdout));
    assert!(
        note.contains("half-created")
            && note.contains("nobody holds its publisher lock")
            // Not a topic key (not derived, not the config's): rm asks
            // for --force there, and the fix says so.
            && note.contains(&format!("`shmbus rm --force {kl}`")),
        "{note}"
    );
    assert!(
        !r.stdout.lines().any(|l| l.starts_with(&format!("{kb}: "))),
        "nothing to fix while its creator is at work:\n{}",
        r.stdout
    );

    let r = run(&[
        "list", "--json", "--window", "0", "--key", &kl, "--key", &kb,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    let row = |k: &str| rows.iter().find(|r| r["key"]["hex"] == k).unwrap();
    assert_eq!(row(&kl)["status"], "half-created", "{v}");
    assert_eq!(row(&kl)["creator"], "gone", "{v}");
    assert_eq!(row(&kl)["shmid"], id_left, "{v}");
    assert_eq!(row(&kl)["size"], 4096, "{v}");
    assert_eq!(row(&kb)["status"], "half-created", "{v}");
    assert_eq!(row(&kb)["creator"], "at work", "{v}");
    assert_eq!(row(&kb)["publisher"]["pid"], std::process::id(), "{v}");
}

/// doctor FAILs a leftover half-created segment at a configured topic's
/// key and WARNs of one elsewhere, each with a fix that works: starting the
/// publisher again finishes it, `shmbus rm` removes it. One whose creator
/// still holds the lock is only an OK line.
#[test]
fn doctor_reports_leftover_half_created_segments_with_fixes_that_work() {
    watchdog("doctor-half", Duration::from_secs(120));
    // The size a publisher of this topic creates.
    let size = {
        let (t, _g) = self::topic("doctor-half-size");
        let t = t.slots(8);
        drop(Publisher::<Imu>::open(&t).unwrap());
        sys::shm_stat(sys::shmget(t.key, 0, 0).unwrap())
            .unwrap()
            .size as usize
    };
    let (topic, _gt) = self::topic("doctor-half-left");
    let topic = topic.slots(8);
    let other = Guard(unique_key("doctor-half-other"));
    let busy = Guard(unique_key("doctor-half-busy"));
    half_created(topic.key, size, false);
    half_created(other.key(), 4096, false);
    let _held = half_created(busy.key(), 4096, true);
    let (kt, ko, kb) = (hex(topic.key), hex(other.key()), hex(busy.key()));
    let tmp_dir = shmbus_testkit::TempDir::new("cli-half");
    let dir = tmp_dir.path().to_path_buf();
    let config = dir.join("half.toml");
    std::fs::write(
        &config,
        format!(
            "bus = \"half\"\n[[topic]]\nname = \"{}\"\nkey = {}\nslots = 8\n[[topic]]\nname = \"busy\"\nkey = {}\nslots = 8\n",
            topic.name,
            topic.key,
            busy.key()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    // The config is where rm finds it too ($SHMBUS_CONFIG, as a board's
    // /etc/shmbus/shmbus.toml): its keys are topic keys to rm.
    let r = run_cmd({
        let mut c = shmbus(&[
            "doctor", "--config", cfg, "--key", &kt, "--key", &ko, "--key", &kb,
        ]);
        c.env("SHMBUS_CONFIG", cfg);
        c
    });
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let finding = |tag: &str, k: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(tag) && l.contains(&format!("segment {k} ")))
            .unwrap_or_else(|| panic!("no {tag} for {k}:\n{}", r.stdout))
            .to_string()
    };
    let ft = finding("FAIL", &kt);
    assert!(
        ft.contains("half-created") && ft.contains(&format!("topic '{}'", topic.name)),
        "{ft}"
    );
    let fo = finding("WARN", &ko);
    assert!(fo.contains("nobody holds its publisher lock"), "{fo}");
    let fb = finding("OK", &kb);
    assert!(fb.contains("being created by pid"), "{fb}");
    assert!(
        !r.stdout
            .lines()
            .any(|l| (l.starts_with("WARN") || l.starts_with("FAIL")) && l.contains(&kb)),
        "{}",
        r.stdout
    );
    // Both configured topics' segments exist (half-created): only their
    // waiter segments (notify is on by default) are still to be created.
    // They were counted as to be created too, twice against the limits.
    let shmmni = r
        .stdout
        .lines()
        .find(|l| l.starts_with("OK    shmmni"))
        .unwrap_or_else(|| panic!("no shmmni line:\n{}", r.stdout));
    assert!(shmmni.contains(" + 2 to create"), "{shmmni}");
    let fixes = doctor_fixes(&r.stdout, &["topics"]);
    assert!(fixes.contains(&format!("shmbus rm {kt}")), "{}", r.stdout);
    // Not a topic key: rm removes it only with --force.
    assert!(
        fixes.contains(&format!("shmbus rm --force {ko}")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("start its publisher again"),
        "{}",
        r.stdout
    );

    // Each fix works: the publisher finishes its own half-created topic...
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(1)).unwrap();
    let mut s = Subscriber::<Imu>::attach(&topic).unwrap();
    assert_eq!(s.latest().unwrap().map(|f| f.value.t_us), Some(1));
    drop((p, s));
    // ...and `shmbus rm`, typed as printed, removes one.
    let r = run(&["rm", "--force", &ko]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(sys::shmget(other.key(), 0, 0).is_err());
}

/// Any local user writes the schema of a segment they create. A type name
/// holding a newline and 3 kB made `list` and `top` print a line of its
/// own that read as another topic's row (`forged-topic  0x53000001 ...`)
/// and widened every row to over 3,000 columns. The name is now one cell,
/// escaped and cut.
#[test]
fn a_planted_type_name_forges_no_row_in_list_or_top() {
    use postcard_schema::schema::owned::{OwnedDataModelType, OwnedNamedType};
    watchdog("planted-type-name", Duration::from_secs(120));
    let (topic, _g) = self::topic("planted-type-name");
    let name = format!(
        "Imu\nforged-topic  0x53000001  4.0 KiB  16  64 B  Imu  1  alive  \u{1b}[2J{}",
        "W".repeat(3000)
    );
    let schema = OwnedNamedType {
        name,
        ty: OwnedDataModelType::U8,
    };
    let mut raw = RawPublisher::open(&topic, &postcard::to_allocvec(&schema).unwrap(), 16).unwrap();
    raw.publish_bytes(&[7]).unwrap();
    let k = hex(topic.key);
    for (args, lines) in [
        (vec!["list", "--key", &k, "--window", "0"], 2),
        (
            vec!["top", "--key", &k, "--count", "1", "--interval", "0.01"],
            3,
        ),
    ] {
        let r = run(&args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        let out: Vec<&str> = r.stdout.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(out.len(), lines, "{args:?}:\n{}", r.stdout);
        assert!(
            out.iter()
                .all(|l| l.len() < 300 && !l.starts_with("forged")),
            "{args:?}:\n{}",
            r.stdout
        );
        let row = out[lines - 1];
        assert!(
            row.starts_with(&topic.name)
                && row.contains("Imu\\nforged-topic")
                && row.contains("... (3068 bytes)"),
            "{args:?}: {row}"
        );
    }
    // The machine-readable listing keeps the name whole.
    let r = run(&["list", "--key", &k, "--window", "0", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["schema"].as_str().map(str::len), Some(3068));
}

/// `shmbus ARGS` with its standard output on a pseudo-terminal, `TERM` set
/// to `term`: its exit code and what the terminal received.
fn on_a_terminal(args: &[&str], term: &str) -> (Option<i32>, Vec<u8>) {
    on_a_terminal_then(args, term, None)
}

/// As [`on_a_terminal`], and once the terminal has received `marker`,
/// send the command `signal` (`interrupt`), as Ctrl-C or `kill` would.
fn on_a_terminal_then(
    args: &[&str],
    term: &str,
    interrupt: Option<(&str, nix::sys::signal::Signal)>,
) -> (Option<i32>, Vec<u8>) {
    use std::os::fd::FromRawFd;
    // SAFETY: posix_openpt takes flags only and returns a new descriptor
    // or -1; the descriptor is owned by `master` from here on.
    let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
    assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let mut master = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: `fd` is a pseudo-terminal master; `name` is writable for its
    // whole length, which is passed.
    let ok = unsafe {
        libc::grantpt(fd) == 0
            && libc::unlockpt(fd) == 0
            && libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) == 0
    };
    assert!(ok, "pty set-up: {}", std::io::Error::last_os_error());
    // SAFETY: ptsname_r wrote a NUL-terminated path into `name`.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_str()
        .unwrap()
        .to_string();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut cmd = shmbus(args);
    cmd.env("TERM", term)
        .stdout(slave.try_clone().unwrap())
        .stderr(Stdio::null());
    let child = KillOnDrop(cmd.spawn().unwrap());
    // Only the child holds the terminal now: reading the master ends (EIO)
    // when it exits.
    drop(cmd);
    drop(slave);
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let got = got.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let mut child = child;
    let mut interrupt = interrupt;
    let end = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        if let Some((marker, sig)) = interrupt {
            let seen = String::from_utf8_lossy(&got.lock().unwrap()).contains(marker);
            if seen {
                let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
                nix::sys::signal::kill(pid, sig).unwrap();
                interrupt = None;
            }
        }
        assert!(Instant::now() < end, "shmbus {args:?} never ended");
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    let got = std::mem::take(&mut *got.lock().unwrap());
    (status.code(), got)
}

/// `shmbus hz` on a terminal redraws its report on one line, with no
/// newline until it ends. Ended by Ctrl-C (or `kill`), it died of the
/// signal with that line open, and the shell's prompt was drawn after the
/// last report. Now a stop signal ends it as `--count` does: the line is
/// finished, exit 0.
#[test]
fn hz_on_a_terminal_ends_its_line_when_stopped_by_a_signal() {
    use nix::sys::signal::Signal;
    watchdog("hz_signal_on_a_terminal", Duration::from_secs(240));
    let (topic, _g) = self::topic("hz-signal");
    let _p = publisher(&topic.name, topic.key, 4, 20.0);
    let k = hex(topic.key);
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let (code, got) = on_a_terminal_then(
            &["hz", &k, "--interval", "0.2"],
            "xterm",
            Some((" Hz ", sig)),
        );
        let text = String::from_utf8_lossy(&got);
        assert_eq!(code, Some(0), "{sig}: {text:?}");
        assert!(text.contains(" Hz "), "{sig}: {text:?}");
        assert!(
            text.ends_with('\n'),
            "{sig}: the last line is left open: {text:?}"
        );
    }
}

/// `shmbus top` and `shmbus hz` redraw in place on a terminal; on one
/// that says it cannot move its cursor (`TERM=dumb`: an Emacs shell, some
/// serial consoles) the escape sequences were printed as they are before
/// every refresh. They now print line by line there, as into a pipe (the
/// demo decides the same way, `shmbus_toolbox::term`).
#[test]
fn a_dumb_terminal_gets_no_cursor_movements() {
    watchdog("dumb terminal", Duration::from_secs(240));
    let (topic, _g) = self::topic("dumb-term");
    let _p = publisher(&topic.name, topic.key, 4, 20.0);
    let k = hex(topic.key);
    for args in [
        &["top", "--count", "2", "--interval", "0.1", "--key", &k][..],
        &["hz", &k, "--duration", "0.5", "--interval", "0.2"][..],
    ] {
        let (code, smart) = on_a_terminal(args, "xterm");
        assert_eq!(code, Some(0), "{args:?}");
        assert!(
            smart.contains(&0x1b),
            "{args:?} on xterm: no redraw? {}",
            String::from_utf8_lossy(&smart)
        );
        let (code, dumb) = on_a_terminal(args, "dumb");
        assert_eq!(code, Some(0), "{args:?}");
        assert!(
            !dumb.contains(&0x1b),
            "{args:?} on TERM=dumb: {:?}",
            String::from_utf8_lossy(&dumb)
        );
        assert!(!dumb.is_empty(), "{args:?} printed nothing");
    }
}

/// Another program's memory at a named topic's key is named as such by
/// every tool, with exit 2: no publisher can create the topic there, so it
/// is neither "not found: is its publisher running?" nor, for `record`,
/// "recorded once it appears" (which it said, then recorded nothing).
#[test]
fn a_foreign_segment_at_a_names_key_is_named_by_every_tool() {
    watchdog("foreign_at_names_key", Duration::from_secs(120));
    let key = unique_key("foreign-name");
    let _g = Guard(key);
    // Zeros, no publisher lock: another program's memory.
    sys::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).unwrap();
    let dir = shmbus_testkit::TempDir::new("foreign-name");
    let config = dir.join("topics.toml");
    std::fs::write(
        &config,
        format!(
            "bus = \"foreign-{}\"\n[[topic]]\nname = \"sp\"\nkey = {key}\n",
            std::process::id()
        ),
    )
    .unwrap();
    let hex = format!("0x{:08x}", key as u32);
    let out = dir.join("sp.mcap");
    for args in [
        vec!["info", "sp"],
        vec!["echo", "sp", "--count", "1"],
        vec![
            "record",
            "sp",
            "-o",
            out.to_str().unwrap(),
            "--duration",
            "0.3",
        ],
    ] {
        let mut cmd = shmbus(&args);
        cmd.env("SHMBUS_CONFIG", &config);
        let r = run_cmd(cmd);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "its key {hex} holds a segment that is not a shmbus topic"
            )),
            "{args:?}: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains(&format!("ipcrm -M {hex}")),
            "{args:?}: {}",
            r.stderr
        );
        assert!(
            !r.stderr.contains("once it appears"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(
            !r.stderr.contains("publisher running"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert!(!out.exists());
}

/// TROUBLESHOOTING.md, "After an upgrade", says to remove a topic another
/// version of shmbus made with `shmbus rm NAME`. rm by name refused it
/// ("no readable topic named ...", exit 2) while `rm KEY` removed it: a
/// segment at the name's own key that no command can read is what rm is
/// for, whatever the argument.
#[test]
fn rm_by_name_removes_a_topic_of_another_layout_version() {
    watchdog("rm-name-broken", Duration::from_secs(120));
    let bus = format!("clitest-upgrade-{}", std::process::id());
    let name = "old-layout";
    let topic = shmbus_core::Topic::on_bus(&bus, name);
    let _g = Guard(topic.key);
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(1)).unwrap();
    drop(p);
    // The header's layout_version (offset 8) as another version writes it.
    let id = sys::shmget(topic.key, 0, 0).unwrap();
    let att = sys::WriteAttachment::read_write(id).unwrap();
    att.atomic_word(8)
        .unwrap()
        .store(2, std::sync::atomic::Ordering::Relaxed);
    drop(att);
    let r = run(&["info", name, "--bus", &bus]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("layout version 2"), "{}", r.stderr);
    let r = run(&["rm", name, "--bus", &bus]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("removed topic (broken)"), "{}", r.stdout);
    assert!(
        sys::shmget(topic.key, 0, 0).is_err(),
        "the segment is still there after `shmbus rm {name}`"
    );
}

/// A group or publisher user in `[defaults]` that the machine lacks made
/// doctor print the same FAIL, with the same two fix lines, once per topic
/// (twelve lines for the board config's six topics). It is one finding
/// naming the topics; a topic's own cause stays its own finding.
#[test]
fn doctor_says_a_cause_shared_by_topics_once() {
    let tmp_dir = shmbus_testkit::TempDir::new("cli-doctor-once");
    let cfg = tmp_dir.path().join("board.toml");
    std::fs::write(
        &cfg,
        "bus = \"doctor-once\"\n[defaults]\ngroup = \"no-such-group-shmbus\"\n\
         [[topic]]\nname = \"a\"\n[[topic]]\nname = \"b\"\n[[topic]]\nname = \"c\"\n\
         [[topic]]\nname = \"d\"\ngroup = \"no-such-group-either\"\n",
    )
    .unwrap();
    let r = run(&["doctor", "--config", cfg.to_str().unwrap(), "--key", "1"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let fails: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL  config"))
        .collect();
    assert_eq!(
        fails,
        [
            "FAIL  config       3 topics cannot be opened on this machine, for the same reason: 'a', 'b', 'c'",
            "FAIL  config       topic 'd' cannot be opened on this machine",
        ],
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout
            .matches("no-such-group-shmbus` does not exist")
            .count(),
        1,
        "{}",
        r.stdout
    );
}

/// `publisher = "shmbus-sensor-imuu"` (a typo) loaded as OK: doctor said
/// nothing, and `shmbus demo` started no sensor for the topic. doctor now
/// warns, with the sensor programs there are.
#[test]
fn doctor_warns_of_a_publisher_named_like_no_sensor() {
    let tmp_dir = shmbus_testkit::TempDir::new("cli-doctor-pub");
    let cfg = tmp_dir.path().join("pub.toml");
    std::fs::write(
        &cfg,
        "bus = \"doctor-pub\"\n[[topic]]\nname = \"imu\"\npublisher = \"shmbus-sensor-imuu\"\n\
         [[topic]]\nname = \"mine\"\npublisher = \"my-logger\"\n\
         [[topic]]\nname = \"net\"\npublisher = \"shmbus-sensor-net\"\n",
    )
    .unwrap();
    let r = run(&["doctor", "--config", cfg.to_str().unwrap(), "--key", "1"]);
    let warns: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("WARN  config"))
        .collect();
    assert_eq!(warns.len(), 1, "{}", r.stdout);
    assert!(
        warns[0].contains("pub.toml:3:8: topic 'imu' names publisher `shmbus-sensor-imuu`, which is no shmbus sensor program"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("shmbus-sensor-net, shmbus-sensor-iio, shmbus-sensor-imu (or"),
        "{}",
        r.stdout
    );
}

/// A config whose topic's mode was narrowed (0o644 to 0o640) while the
/// segment, made before, still had the old one: doctor said OK, and every
/// user could go on reading the topic until its publisher restarted (a
/// publisher sets the config's mode and group when it opens the topic).
/// doctor now warns, with that fix.
#[test]
fn doctor_warns_of_a_segment_whose_mode_the_config_changed() {
    let (topic, _g) = self::topic("doctor-mode");
    let topic = topic.mode(0o644);
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(1)).unwrap();
    let tmp_dir = shmbus_testkit::TempDir::new("cli-doctor-mode");
    let cfg = tmp_dir.path().join("mode.toml");
    let k = hex(topic.key);
    std::fs::write(
        &cfg,
        format!(
            "bus = \"doctor-mode\"\n[[topic]]\nname = \"{}\"\nkey = {}\nslots = {}\nmode = 0o640\nlock = \"try\"\n",
            topic.name, topic.key, topic.slots
        ),
    )
    .unwrap();
    let r = run(&["doctor", "--config", cfg.to_str().unwrap(), "--key", &k]);
    let want = format!(
        "WARN  config       '{}' ({k}) has mode 0644, group {}; the config says mode 0640: readers get the segment's until its publisher opens the topic again",
        topic.name,
        nix::unistd::Group::from_gid(nix::unistd::getegid())
            .ok()
            .flatten()
            .map_or_else(|| nix::unistd::getegid().to_string(), |g| g.name)
    );
    assert!(r.stdout.contains(&want), "{want}\n{}", r.stdout);
    assert!(
        r.stdout
            .contains("fix: restart its publisher: it sets the config's mode and group"),
        "{}",
        r.stdout
    );
    drop(p);
}

/// `shmbus info` of a topic nobody reads said `shm_nattch 1` and gave its
/// own pid as `shm_lpid`: the one on call went looking for a reader that
/// `list` (ATT 0) and doctor ("nobody attached") said was not there. The
/// count is read while info is attached; it now says so.
#[test]
fn info_says_its_own_attachment_is_in_shm_nattch() {
    let (topic, _g) = self::topic("info-nattch");
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(1)).unwrap();
    drop(p);
    // A fork by another test thread while `p` was mapped counts until the
    // child execs: the count is read until it settles.
    let r = shmbus_testkit::settled(
        || run(&["info", &hex(topic.key)]),
        |r| r.stdout.contains("shm_nattch        1 "),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = |k: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_else(|| panic!("no {k} in\n{}", r.stdout))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("shm_nattch"), "1 (this shmbus info included)");
    assert!(
        line("shm_lpid").ends_with("(this shmbus info)"),
        "{}",
        r.stdout
    );
}

/// A topic whose publisher lock was removed (`ipcrm -s`, logind's
/// RemoveIPC) while its publisher still publishes: `shmbus rm` removed it
/// without --force and without a word about the publisher, which went on
/// into the removed segment. The lock cannot tell; the frames do: rm now
/// refuses while frames come, as it does for a live lock holder, and
/// removes the topic once they stop.
#[test]
fn rm_refuses_a_topic_still_published_without_its_lock() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    watchdog("rm-lockless", Duration::from_secs(180));
    let (topic, _g) = self::topic("rm-lockless");
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(0)).unwrap();
    assert!(shmbus_core::lock::remove_lock(topic.key).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    // Publishes every 5 ms until told to stop (bounded by the watchdog).
    let t = std::thread::spawn(move || {
        let mut n = 1;
        while !stop2.load(Ordering::Relaxed) {
            p.publish(&imu(n)).unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let k = hex(topic.key);
    let r = run(&["rm", &k]);
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("has no publisher lock, but frames still come")
            && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    assert!(
        sys::shmget(topic.key, 0, 0).is_ok(),
        "rm removed the topic anyway"
    );
    // Nothing publishes now: removed without --force.
    let r = run(&["rm", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(sys::shmget(topic.key, 0, 0).is_err(), "still there");
}

/// A config whose topic names a `publisher_user` this machine does not
/// have: every tool refused the topic (right: no segment can be that
/// user's) as "not the configured publisher uid 4294967295: refusing a
/// possibly spoofed topic; its process, pid N, holds the lock ... stop
/// it", sending the one on call to kill the real sensor over a typo in
/// the config. The message now says the user does not exist and names the
/// config as the fix.
#[test]
fn a_publisher_user_the_machine_lacks_is_named_not_called_a_spoof() {
    watchdog("no-such-publisher-user", Duration::from_secs(120));
    let (topic, _g) = self::topic("no-such-user");
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(1)).unwrap();
    let tmp_dir = shmbus_testkit::TempDir::new("cli-no-such-user");
    let cfg = tmp_dir.path().join("users.toml");
    std::fs::write(
        &cfg,
        format!(
            "bus = \"nosuchuser\"\n[[topic]]\nname = \"{}\"\nkey = {}\nslots = {}\npublisher_user = \"no-such-user-shmbus\"\n",
            topic.name, topic.key, topic.slots
        ),
    )
    .unwrap();
    for cmd in ["info", "echo"] {
        let mut c = shmbus(&[cmd, &topic.name]);
        c.env("SHMBUS_CONFIG", &cfg);
        let r = run_cmd(c);
        assert_eq!(r.code, 2, "{cmd}: {}", r.stderr);
        assert!(
            r.stderr.contains("names a `publisher_user` for '")
                && r.stderr.contains("that does not exist on this machine")
                && r.stderr.contains("correct `publisher_user` in the config")
                && !r.stderr.contains("4294967295")
                && !r.stderr.contains("spoofed"),
            "{cmd}: {}",
            r.stderr
        );
    }
    drop(p);
}

/// A broken topic (here a corrupt header) whose publisher still runs:
/// list, info, echo and doctor said "remove it with `shmbus rm KEY` and
/// restart the publisher", and `shmbus rm KEY`, typed as told, refused it
/// ("has a live publisher ... stop it first, or use --force"). They now
/// give the order that works: stop the publisher, then rm, then start it.
#[test]
fn a_broken_topic_with_a_live_publisher_is_told_to_stop_it_first() {
    watchdog("broken-live", Duration::from_secs(120));
    let (topic, _g) = self::topic("broken-live");
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(1)).unwrap();
    // schema_offset (offset 48) is 256 in layout version 1.
    let id = sys::shmget(topic.key, 0, 0).unwrap();
    let att = sys::WriteAttachment::read_write(id).unwrap();
    att.atomic_word(48)
        .unwrap()
        .store(300, std::sync::atomic::Ordering::Relaxed);
    drop(att);
    let k = hex(topic.key);
    let me = std::process::id();
    let order = format!(
        "its publisher, pid {me}, still runs and holds the topic's lock: stop it first (`kill {me}`"
    );
    let then = format!("then `shmbus rm {k}`, then start the publisher again");
    for args in [
        vec!["info", k.as_str()],
        vec!["echo", k.as_str(), "--count", "1", "--timeout", "1"],
        vec!["list", "--key", k.as_str(), "--window", "0"],
        vec!["doctor", "--key", k.as_str()],
    ] {
        let r = run(&args);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(
            all.contains("is corrupt") && all.contains(&order) && all.contains(&then),
            "{args:?}: {all}"
        );
    }
    // The order given works: with the publisher gone, rm removes it.
    drop(p);
    let r = run(&["rm", &k]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(sys::shmget(topic.key, 0, 0).is_err(), "still there");
}

/// A config whose topic's `publisher` changed to another sensor program
/// (another message type) while the old segment stays: doctor said OK,
/// and the sensor then refused to start ("carries frames of another
/// type"). doctor compares the segment's size with the one that sensor
/// makes and FAILs with the fix.
#[test]
fn doctor_fails_a_segment_made_for_another_sensors_type() {
    let (topic, _g) = self::topic("doctor-type");
    let topic = topic.slots(8);
    let mut p = Publisher::<Imu>::open(&topic).unwrap();
    p.publish(&imu(1)).unwrap();
    drop(p);
    let tmp_dir = shmbus_testkit::TempDir::new("cli-doctor-type");
    let k = hex(topic.key);
    let doctor = |publisher: &str| {
        let cfg = tmp_dir.path().join(format!("{publisher}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "bus = \"doctor-type\"\n[[topic]]\nname = \"{}\"\nkey = {}\nslots = 8\npublisher = \"{publisher}\"\n",
                topic.name, topic.key
            ),
        )
        .unwrap();
        run(&["doctor", "--config", cfg.to_str().unwrap(), "--key", &k])
    };
    let r = doctor("shmbus-sensor-system");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!("FAIL  config       the segment at the key of topic '{}' ({k}) does not match the config: it is ", topic.name))
            && r.stdout.contains("a topic of shmbus-sensor-system with 8 slots is ")
            && r.stdout.contains("made for another message type")
            && r.stdout.contains(&format!("remove it (`shmbus rm {k}`)")),
        "{}",
        r.stdout
    );
    // A program this build does not know is not judged.
    let r = doctor("my-own-publisher");
    assert!(!r.stdout.contains("another message type"), "{}", r.stdout);
}

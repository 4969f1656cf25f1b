//! End-to-end tests of the bus: real segments, real processes.
//!
//! Child processes are this test binary run again with `SHMBUS_ROLE` set
//! (see `shmbus_testkit::child`); [`child_role_entry`] dispatches them. Big
//! loops scale with `SHMBUS_STRESS_SCALE` (a factor, default 1.0; e.g. 0.05
//! under qemu-arm). Run with `--nocapture` to see the numbers.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use shmbus_core::layout::MAGIC_U64;
use shmbus_core::sys::{self, Attachment};
use shmbus_core::{OpenError, ReadError, Segment, Topic, WaitError};
use shmbus_pub::Publisher;
use shmbus_sub::{Next, Subscriber};
use shmbus_testkit::{Check, Guard, KillOnDrop, role, spawn, unique_key, unique_topic, watchdog};

// ---------------------------------------------------------------------------
// Helpers

/// `SHMBUS_STRESS_SCALE` times `n`, at least `min`.
fn scaled(n: u64, min: u64) -> u64 {
    let f: f64 = std::env::var("SHMBUS_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * f) as u64).max(min)
}

/// The arguments that let a child rebuild `topic`.
fn topic_args(t: &Topic) -> Vec<String> {
    vec![
        t.name.clone(),
        t.key.to_string(),
        t.slots.to_string(),
        t.notify.to_string(),
    ]
}

fn topic_from(args: &[String]) -> Topic {
    Topic::new(&args[0])
        .key(args[1].parse().unwrap())
        .slots(args[2].parse().unwrap())
        .notify(args[3].parse().unwrap())
}

fn args_with(t: &Topic, more: &[&str]) -> Vec<String> {
    let mut a = topic_args(t);
    a.extend(more.iter().map(|s| s.to_string()));
    a
}

/// In a child: write a line for the parent. The test harness writes its own
/// lines to stdout too; ours carry a marker.
macro_rules! say {
    ($($t:tt)*) => { println!("@@ {}", format_args!($($t)*)) };
}

/// Read the child's next marked line (panics on EOF: the child died).
fn line(r: &mut BufReader<ChildStdout>) -> String {
    loop {
        let mut s = String::new();
        r.read_line(&mut s).expect("read child stdout");
        assert!(!s.is_empty(), "child exited before writing a line");
        // The harness may have written "test child_role_entry ... " first.
        if let Some(i) = s.find("@@ ") {
            return s[i + 3..].trim_end().to_string();
        }
    }
}

/// The marked line starting with `prefix` in a child's whole output.
fn result_line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .filter_map(|l| l.find("@@ ").map(|i| &l[i + 3..]))
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} line in child output: {out}"))
}

/// `key=value` fields of a report line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {line:?}"))
}

/// Wait for a child with a deadline; kill it and panic if it is late.
fn wait_exit(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("{what} did not exit within {limit:?} (hung?)");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A small xorshift generator: tests need noise, not cryptography.
struct Rng(u64);

impl Rng {
    fn seeded(extra: u64) -> Rng {
        Rng((sys::monotonic_ns() ^ extra.rotate_left(17)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Accept a sample of the self-checking type: is it whole and the frame the
/// slot says it is?
fn is_torn(s: &shmbus_sub::Sample<Check>) -> bool {
    !s.value.is_whole() || s.value.seq != s.generation
}

/// Create a raw System V segment of `size` bytes at `key` (as a foreign
/// program would) and attach it read-write.
fn raw_segment(key: i32, size: usize) -> Attachment {
    let id = sys::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).expect("shmget");
    Attachment::read_write(id).expect("shmat")
}

fn store_words(att: &Attachment, words: &[u32]) {
    for (w, v) in att.words_at(0, words.len()).unwrap().iter().zip(words) {
        w.store(*v, Ordering::Relaxed);
    }
}

fn snapshot(att: &Attachment) -> Vec<u32> {
    att.words_at(0, att.len() / 4)
        .unwrap()
        .iter()
        .map(|w| w.load(Ordering::Relaxed))
        .collect()
}

/// The words of a valid segment: a real publisher's topic with a few frames.
fn valid_image(topic: &Topic) -> Vec<u32> {
    let mut p = Publisher::<Check>::open(topic).unwrap();
    for g in 1..=3 {
        p.publish(&Check::new(g)).unwrap();
    }
    let seg = Segment::attach(topic).unwrap();
    let att = Attachment::read_only(seg.shmid()).unwrap();
    snapshot(&att)
}

// ---------------------------------------------------------------------------
// Child roles

/// Entry point for child processes (see `shmbus_testkit::child`). Does
/// nothing in a normal test run.
#[test]
fn child_role_entry() {
    let Some((role, args)) = role() else { return };
    watchdog("child role", Duration::from_secs(600));
    match role.as_str() {
        "stress-pub" => stress_publisher(&args),
        "stress-sub" => stress_subscriber(&args),
        "kill-pub" => kill_publisher(&args),
        "kill-reader" => kill_reader(&args),
        "hold-pub" => hold_publisher(&args),
        "ro-writer" => read_only_writer(&args),
        "pong" => pong(&args),
        _ => panic!("unknown role {role}"),
    }
}

/// Open the topic, say so, wait until `subs` subscribers are attached, then
/// publish `n` self-checking frames as fast as possible.
fn stress_publisher(args: &[String]) {
    let topic = topic_from(args);
    let n: u64 = args[4].parse().unwrap();
    let subs: u64 = args[5].parse().unwrap();
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    say!("ready");
    let shmid = p.raw().shmid();
    let end = Instant::now() + Duration::from_secs(120);
    while sys::shm_stat(shmid).unwrap().nattch < 1 + subs {
        assert!(Instant::now() < end, "subscribers never attached");
        std::thread::sleep(Duration::from_millis(1));
    }
    let t = Instant::now();
    for g in 1..=n {
        assert_eq!(p.publish(&Check::new(g)).unwrap(), g);
    }
    say!("published n={n} us={}", t.elapsed().as_micros());
}

/// Read the stress topic until frame `n` was seen, in one of four ways, and
/// report what was accepted.
fn stress_subscriber(args: &[String]) {
    let topic = topic_from(args);
    let kind = args[4].as_str();
    let n: u64 = args[5].parse().unwrap();
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    let (mut accepted, mut torn, mut missed, mut disorder) = (0u64, 0u64, 0u64, 0u64);
    let mut stuck = 0u64;
    let mut last = 0u64;
    let t = Instant::now();
    let wait = Duration::from_secs(30);
    let mut accept =
        |s: &shmbus_sub::Sample<Check>, in_order: bool, missed_before: u64, last: &mut u64| {
            accepted += 1;
            torn += u64::from(is_torn(s));
            let ok = if in_order {
                s.generation == *last + 1 + missed_before
            } else {
                s.generation > *last
            };
            disorder += u64::from(!ok);
            *last = s.generation;
        };
    match kind {
        "next" | "wait_next" => {
            let mut pending_missed = 0;
            while last + pending_missed < n {
                let r = if kind == "next" {
                    sub.next().map_err(WaitError::Read)
                } else {
                    sub.wait_next(wait)
                };
                match r {
                    Ok(Next::Frame(s)) => {
                        accept(&s, true, pending_missed, &mut last);
                        pending_missed = 0;
                    }
                    Ok(Next::Missed(k)) => {
                        missed += k;
                        pending_missed += k;
                    }
                    Ok(Next::Empty) => sys::yield_now(),
                    // The publisher was preempted mid-write for longer than
                    // the stuck limit (a loaded machine): retry the frame.
                    Err(WaitError::Read(ReadError::WriterStuck { .. })) => stuck += 1,
                    Err(e) => panic!("{kind}: {e}"),
                }
            }
        }
        "latest" => {
            while last < n {
                if sub.has_new() {
                    match sub.latest() {
                        Ok(Some(s)) => accept(&s, false, 0, &mut last),
                        Ok(None) => {}
                        Err(ReadError::WriterStuck { .. }) => stuck += 1,
                        Err(e) => panic!("{kind}: {e}"),
                    }
                } else {
                    sys::yield_now();
                }
            }
            missed = n - accepted;
        }
        "wait_latest" => {
            while last < n {
                match sub.wait_latest(wait) {
                    Ok(s) => accept(&s, false, 0, &mut last),
                    Err(WaitError::Read(ReadError::WriterStuck { .. })) => stuck += 1,
                    Err(e) => panic!("{kind}: {e}"),
                }
            }
            missed = n - accepted;
        }
        _ => panic!("unknown reader kind {kind}"),
    }
    say!(
        "RESULT kind={kind} accepted={accepted} torn={torn} missed={missed} disorder={disorder} stuck={stuck} last={last} us={}",
        t.elapsed().as_micros()
    );
}

/// Reopen the topic (repairing what a killed predecessor left), report, and
/// publish as fast as possible until killed.
fn kill_publisher(args: &[String]) {
    let topic = topic_from(args);
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    say!(
        "open repaired={} next={} created={}",
        p.raw().repaired_slots(),
        p.raw().next_generation(),
        u8::from(p.raw().created())
    );
    let mut g = p.raw().next_generation();
    loop {
        assert_eq!(p.publish(&Check::new(g)).unwrap(), g);
        g += 1;
    }
}

/// Read while publishers are being killed, until the stop file appears;
/// then drain and report.
fn kill_reader(args: &[String]) {
    let topic = topic_from(args);
    let kind = args[4].as_str();
    let stop = PathBuf::from(&args[5]);
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    let first = sub.raw().cursor();
    let (mut accepted, mut torn, mut missed, mut disorder) = (0u64, 0u64, 0u64, 0u64);
    let (mut died, mut stuck, mut corrupt) = (0u64, 0u64, 0u64);
    let mut last = 0u64;
    let mut expect = first;
    let mut idle = 0u32;
    let mut stopping = false;
    let mut read_error = |e: &ReadError| match e {
        ReadError::PublisherDied => {
            died += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
        ReadError::WriterStuck { .. } => stuck += 1,
        _ => corrupt += 1,
    };
    loop {
        let mut empty = false;
        match kind {
            "next" | "wait_next" => {
                let r = if kind == "next" {
                    sub.next().map_err(WaitError::Read)
                } else {
                    sub.wait_next(Duration::from_millis(20))
                };
                match r {
                    Ok(Next::Frame(s)) => {
                        accepted += 1;
                        torn += u64::from(is_torn(&s));
                        disorder += u64::from(s.generation != expect);
                        expect = s.generation + 1;
                    }
                    Ok(Next::Missed(k)) => {
                        missed += k;
                        expect += k;
                    }
                    Ok(Next::Empty) | Err(WaitError::Timeout | WaitError::PublisherGone) => {
                        empty = true
                    }
                    Err(WaitError::Read(e)) => read_error(&e),
                    Err(e) => panic!("unexpected wait error: {e}"),
                }
            }
            "latest" => match sub.latest() {
                Ok(Some(s)) if s.generation != last => {
                    accepted += 1;
                    torn += u64::from(is_torn(&s));
                    disorder += u64::from(s.generation < last);
                    last = s.generation;
                }
                Ok(_) => empty = true,
                Err(e) => read_error(&e),
            },
            _ => panic!("unknown reader kind {kind}"),
        }
        if empty {
            if stopping {
                break;
            }
            idle += 1;
            sys::yield_now();
            if idle % 64 == 0 && stop.exists() {
                // The parent has repaired the ring and stopped publishing:
                // drain what is left, then stop at the next empty read.
                stopping = true;
            }
        }
    }
    say!(
        "RESULT kind={kind} first={first} cursor={} accepted={accepted} torn={torn} missed={missed} disorder={disorder} died={died} stuck={stuck} corrupt={corrupt}",
        sub.raw().cursor()
    );
}

/// Open the topic and hold it until killed.
fn hold_publisher(args: &[String]) {
    let topic = topic_from(args);
    let _p = Publisher::<Check>::open(&topic).unwrap();
    say!("open pid={}", std::process::id());
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Attach read-only and try to write through the mapping.
fn read_only_writer(args: &[String]) {
    let key: i32 = args[0].parse().unwrap();
    let seg = Segment::attach_key(key).unwrap();
    say!("attached");
    // Safe Rust can call `store` on the `&AtomicU32` of a read-only mapping;
    // the kernel refuses the page write and kills the process with SIGSEGV.
    seg.notify_word().store(0xdead_beef, Ordering::Relaxed);
    say!("survived");
}

/// The far end of the ping-pong: wait for frame i on topic A, publish frame i
/// on topic B.
fn pong(args: &[String]) {
    let a = topic_from(&args[0..4]);
    let b = topic_from(&args[4..8]);
    let rounds: u64 = args[8].parse().unwrap();
    let mut sub = Subscriber::<Check>::attach(&a).unwrap();
    let mut p = Publisher::<Check>::open(&b).unwrap();
    say!("ready");
    for i in 1..=rounds {
        match sub.wait_next(Duration::from_secs(20)) {
            Ok(Next::Frame(s)) => assert_eq!(s.value, Check::new(i)),
            other => panic!("pong round {i}: {other:?}"),
        }
        p.publish(&Check::new(i)).unwrap();
    }
}

// ---------------------------------------------------------------------------
// Single-process basics

#[test]
fn publish_then_read_latest_and_in_order() {
    watchdog(
        "publish_then_read_latest_and_in_order",
        Duration::from_secs(60),
    );
    let (topic, _guard) = unique_topic("roundtrip");
    let topic = topic.slots(4);
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    assert!(sub.latest().unwrap().is_none());
    assert!(!sub.has_new());
    assert_eq!(sub.next().unwrap(), Next::Empty);
    for g in 1..=3 {
        assert_eq!(publisher.publish(&Check::new(g)).unwrap(), g);
    }
    assert!(sub.has_new());
    let s = sub.latest().unwrap().unwrap();
    assert_eq!(s.generation, 3);
    assert_eq!(s.value, Check::new(3));
    assert!(!sub.has_new());
    for g in 1..=3 {
        match sub.next().unwrap() {
            Next::Frame(s) => assert_eq!((s.generation, s.value.seq), (g, g)),
            other => panic!("expected frame {g}, got {other:?}"),
        }
    }
    assert_eq!(sub.next().unwrap(), Next::Empty);
    // Fall behind by more than the ring: 10 frames into 4 slots.
    for g in 4..=13 {
        publisher.publish(&Check::new(g)).unwrap();
    }
    assert_eq!(sub.next().unwrap(), Next::Missed(6));
    for g in 10..=13 {
        match sub.next().unwrap() {
            Next::Frame(s) => assert_eq!(s.value, Check::new(g)),
            other => panic!("expected frame {g}, got {other:?}"),
        }
    }
    assert!(sub.age().unwrap() < Duration::from_secs(60));
    assert!(sub.publisher().is_alive());
    drop(publisher);
    assert!(!sub.publisher().is_alive());
    // A new publisher carries on from the newest generation.
    let mut again = Publisher::<Check>::open(&topic).unwrap();
    assert!(!again.raw().created());
    assert_eq!(again.publish(&Check::new(14)).unwrap(), 14);
    assert!(matches!(sub.next().unwrap(), Next::Frame(s) if s.generation == 14));
}

#[test]
fn second_publisher_is_refused_with_the_live_pid() {
    let (topic, _guard) = unique_topic("second-publisher");
    let _first = Publisher::<Check>::open(&topic).unwrap();
    match Publisher::<Check>::open(&topic) {
        Err(OpenError::PublisherActive { pid, .. }) => assert_eq!(pid as u32, std::process::id()),
        other => panic!("expected PublisherActive, got {other:?}"),
    }
}

#[test]
fn second_publisher_in_another_process_names_the_live_child() {
    watchdog(
        "second_publisher_in_another_process",
        Duration::from_secs(120),
    );
    let (topic, _guard) = unique_topic("second-publisher-xproc");
    let mut child = KillOnDrop(spawn("hold-pub", &topic_args(&topic)));
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let l = line(&mut out);
    assert_eq!(field(&l, "pid"), u64::from(child.0.id()), "{l}");
    match Publisher::<Check>::open(&topic) {
        Err(e @ OpenError::PublisherActive { .. }) => {
            let OpenError::PublisherActive { pid, .. } = e else {
                unreachable!()
            };
            assert_eq!(pid as u32, child.0.id());
            let msg = e.to_string();
            assert!(msg.contains(&format!("pid {}", child.0.id())), "{msg}");
        }
        other => panic!("expected PublisherActive, got {other:?}"),
    }
    // The kernel releases the lock when the holder dies: we can take over.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let p = Publisher::<Check>::open(&topic).unwrap();
    assert!(!p.raw().created());
}

#[test]
fn missing_topic_is_not_found_and_wait_times_out() {
    let (topic, _guard) = unique_topic("missing");
    assert!(matches!(
        Subscriber::<Check>::attach(&topic),
        Err(OpenError::NotFound { .. })
    ));
    let t = Instant::now();
    let r = Subscriber::<Check>::wait_for_topic(&topic, Duration::from_millis(200));
    assert!(matches!(r, Err(OpenError::NotFound { .. })));
    assert!(t.elapsed() >= Duration::from_millis(200));
}

// ---------------------------------------------------------------------------
// Refusals: wrong type, garbage, sizes, versions, foreign segments

#[derive(
    Serialize,
    Deserialize,
    Debug,
    postcard::experimental::max_size::MaxSize,
    postcard_schema::Schema,
)]
struct Other {
    x: f32,
}

#[test]
fn subscriber_of_the_wrong_type_gets_schema_mismatch() {
    let (topic, _guard) = unique_topic("wrong-type");
    let _p = Publisher::<Check>::open(&topic).unwrap();
    match Subscriber::<Other>::attach(&topic) {
        Err(OpenError::SchemaMismatch {
            expected,
            found,
            topic: name,
            ..
        }) => {
            assert_eq!(
                found,
                shmbus_core::schema::fingerprint_of::<Check>().unwrap()
            );
            assert_eq!(
                expected,
                shmbus_core::schema::fingerprint_of::<Other>().unwrap()
            );
            assert_eq!(name, topic.name);
        }
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }
    // And a publisher of the wrong type on an existing topic.
    drop(_p);
    assert!(matches!(
        Publisher::<Other>::open(&topic),
        Err(OpenError::SchemaMismatch { .. })
    ));
}

#[test]
fn random_garbage_is_refused_without_panic() {
    let mut rng = Rng::seeded(1);
    for round in 0..200 {
        let key = unique_key("garbage");
        let _g = Guard(key);
        let size = 256 + 4 * rng.below(2048) as usize;
        let att = raw_segment(key, size);
        let words: Vec<u32> = (0..size / 4).map(|_| rng.next() as u32).collect();
        store_words(&att, &words);
        let topic = Topic::new("garbage").key(key);
        match Subscriber::<Check>::attach(&topic) {
            Err(OpenError::NotShmbus { magic, .. }) => {
                assert_eq!(magic, u64::from(words[0]) | u64::from(words[1]) << 32)
            }
            other => panic!("round {round}: expected NotShmbus, got {other:?}"),
        }
        // Magic and version right, everything else random.
        att.words_at(0, 3).unwrap()[0].store(MAGIC_U64 as u32, Ordering::Relaxed);
        att.words_at(0, 3).unwrap()[1].store((MAGIC_U64 >> 32) as u32, Ordering::Relaxed);
        att.words_at(0, 3).unwrap()[2].store(1, Ordering::Relaxed);
        match Subscriber::<Check>::attach(&topic) {
            Err(OpenError::Corrupt { .. } | OpenError::SizeMismatch { .. }) => {}
            other => panic!("round {round}: expected Corrupt or SizeMismatch, got {other:?}"),
        }
    }
}

/// Every header word of a valid segment replaced by boundary or random
/// values, one at a time: attach and read never panic, and an accepted
/// segment still reads frames or reports an error.
#[test]
fn mutated_headers_and_slots_never_panic() {
    watchdog(
        "mutated_headers_and_slots_never_panic",
        Duration::from_secs(300),
    );
    let (src, _g0) = unique_topic("mutate-src");
    let src = src.slots(2);
    let image = valid_image(&src);
    let mut rng = Rng::seeded(2);
    let (mut refused, mut accepted) = (0, 0);
    for i in 0..image.len() {
        for v in [
            0,
            1,
            2,
            0xffff_ffff,
            0x8000_0000,
            image[i] ^ 1,
            rng.next() as u32,
        ] {
            let key = unique_key("mutate");
            let _g = Guard(key);
            let att = raw_segment(key, image.len() * 4);
            let mut m = image.clone();
            m[i] = v;
            store_words(&att, &m);
            let topic = src.clone().key(key);
            match Subscriber::<Check>::attach(&topic) {
                Err(_) => refused += 1,
                Ok(mut sub) => {
                    accepted += 1;
                    let _ = sub.latest();
                    sub.raw().seek_oldest();
                    for _ in 0..4 {
                        let _ = sub.next();
                    }
                }
            }
        }
    }
    assert!(
        refused > 0 && accepted > 0,
        "refused {refused}, accepted {accepted}"
    );
    // A copy of the valid image at another key is a valid topic: the layout
    // holds offsets only, no pointers.
    let key = unique_key("mutate-copy");
    let _g = Guard(key);
    store_words(&raw_segment(key, image.len() * 4), &image);
    let mut sub = Subscriber::<Check>::attach(&src.clone().key(key)).unwrap();
    assert_eq!(sub.latest().unwrap().unwrap().value, Check::new(3));
    // A frame length beyond the capacity in an even (complete) slot is
    // reported, not trusted.
    let info = sub.raw().info().clone();
    let slot3 = info.geometry.slot_offset(3) / 4;
    let key = unique_key("mutate-len");
    let _g = Guard(key);
    let mut m = image.clone();
    m[slot3 + 1] = 0xffff;
    store_words(&raw_segment(key, image.len() * 4), &m);
    let mut sub = Subscriber::<Check>::attach(&src.clone().key(key)).unwrap();
    assert!(matches!(
        sub.latest(),
        Err(ReadError::Corrupt { generation: 3, .. })
    ));
}

#[test]
fn short_segment_is_size_mismatch() {
    let (src, _g0) = unique_topic("short-src");
    let image = valid_image(&src);
    let key = unique_key("short");
    let _g = Guard(key);
    let short = image.len() * 4 - 64;
    let att = raw_segment(key, short);
    store_words(&att, &image[..short / 4]);
    match Subscriber::<Check>::attach(&src.clone().key(key)) {
        Err(OpenError::SizeMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected as usize, image.len() * 4);
            assert_eq!(found as usize, short);
        }
        other => panic!("expected SizeMismatch, got {other:?}"),
    }
    // Smaller than the fixed header: Corrupt.
    let key = unique_key("tiny");
    let _g = Guard(key);
    store_words(&raw_segment(key, 128), &image[..32]);
    assert!(matches!(
        Subscriber::<Check>::attach(&src.clone().key(key)),
        Err(OpenError::Corrupt { .. })
    ));
}

#[test]
fn unknown_layout_version_is_refused() {
    let (src, _g0) = unique_topic("version-src");
    let mut image = valid_image(&src);
    image[2] = 2;
    let key = unique_key("version");
    let _g = Guard(key);
    store_words(&raw_segment(key, image.len() * 4), &image);
    match Subscriber::<Check>::attach(&src.clone().key(key)) {
        Err(OpenError::UnsupportedLayout {
            found: 2,
            supported: 1,
            ..
        }) => {}
        other => panic!("expected UnsupportedLayout, got {other:?}"),
    }
}

#[test]
fn all_zero_segment_is_not_ready() {
    let key = unique_key("zero");
    let _g = Guard(key);
    let _att = raw_segment(key, 4096);
    let topic = Topic::new("zero").key(key);
    assert!(matches!(
        Subscriber::<Check>::attach(&topic),
        Err(OpenError::NotReady { .. })
    ));
    let t = Instant::now();
    let r = Subscriber::<Check>::wait_for_topic(&topic, Duration::from_millis(100));
    assert!(matches!(r, Err(OpenError::NotReady { .. })));
    assert!(t.elapsed() >= Duration::from_millis(100));
}

/// A publisher never adopts or overwrites a segment at its key that it did
/// not create as this topic: it fails with the reason, leaving every byte.
#[test]
fn publisher_leaves_foreign_segments_untouched() {
    let mut rng = Rng::seeded(3);
    let (src, _g0) = unique_topic("foreign-src");
    let image = valid_image(&src);
    let mut other_version = image.clone();
    other_version[2] = 7;
    let random: Vec<u32> = (0..1024).map(|_| rng.next() as u32).collect();
    let mut other_name = image.clone();
    other_name[16] ^= 0x20; // first bytes of the name: another topic
    let cases: Vec<(&str, Vec<u32>, usize)> = vec![
        ("random bytes", random.clone(), 4096),
        ("random bytes, too small", random[..64].to_vec(), 256),
        ("other layout version", other_version, image.len() * 4),
        ("other topic", other_name, image.len() * 4),
    ];
    for (what, words, size) in cases {
        let key = unique_key("foreign");
        let _g = Guard(key);
        let att = raw_segment(key, size);
        store_words(&att, &words);
        let before = snapshot(&att);
        let r = Publisher::<Check>::open(&src.clone().key(key));
        match (&r, what) {
            (Err(OpenError::NotShmbus { .. }), "random bytes") => {}
            (Err(OpenError::SizeMismatch { .. }), "random bytes, too small") => {}
            (Err(OpenError::UnsupportedLayout { found: 7, .. }), "other layout version") => {}
            (Err(OpenError::NameMismatch { .. }), "other topic") => {}
            _ => panic!("{what}: unexpected {r:?}"),
        }
        assert_eq!(
            snapshot(&att),
            before,
            "{what}: the publisher wrote to a foreign segment"
        );
    }
    // Created by (or given to) another user: NotOwner, untouched.
    if nix::unistd::geteuid().is_root() {
        let key = unique_key("foreign-uid");
        let _g = Guard(key);
        let att = raw_segment(key, image.len() * 4);
        store_words(&att, &image);
        let before = snapshot(&att);
        set_shm_uid(att.shmid(), 65534);
        match Publisher::<Check>::open(&src.clone().key(key)) {
            Err(OpenError::NotOwner {
                owner_uid: 65534, ..
            }) => {}
            other => panic!("expected NotOwner, got {other:?}"),
        }
        assert_eq!(snapshot(&att), before);
    }
}

/// `shmctl(IPC_SET)` to hand a segment to another uid (root only).
fn set_shm_uid(shmid: i32, uid: u32) {
    // SAFETY: shmid_ds is plain old data; all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid shmid_ds for the kernel to fill, then read.
    unsafe {
        assert_eq!(libc::shmctl(shmid, libc::IPC_STAT, &mut ds), 0);
        ds.shm_perm.uid = uid;
        assert_eq!(libc::shmctl(shmid, libc::IPC_SET, &mut ds), 0);
    }
}

#[test]
fn writing_through_a_read_only_mapping_is_killed_by_sigsegv() {
    use std::os::unix::process::ExitStatusExt;
    watchdog(
        "writing_through_a_read_only_mapping",
        Duration::from_secs(120),
    );
    let (topic, _guard) = unique_topic("read-only");
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    p.publish(&Check::new(1)).unwrap();
    let mut child = KillOnDrop(spawn("ro-writer", &[topic.key.to_string()]));
    let mut out = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = wait_exit(&mut child.0, Duration::from_secs(60), "ro-writer");
    assert!(out.contains("@@ attached"), "child output: {out:?}");
    assert!(
        !out.contains("@@ survived"),
        "the write went through: {out:?}"
    );
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "status {status:?}");
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    assert_eq!(sub.raw().segment().notify_word().load(Ordering::Relaxed), 1);
}

// ---------------------------------------------------------------------------
// Blocking waits

#[test]
fn wait_times_out_after_at_least_the_timeout() {
    watchdog("wait_times_out", Duration::from_secs(60));
    let (topic, _guard) = unique_topic("wait-timeout");
    let _p = Publisher::<Check>::open(&topic).unwrap();
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    for ms in [0, 1, 30, 250] {
        let t = Instant::now();
        assert_eq!(
            sub.wait_next(Duration::from_millis(ms)),
            Err(WaitError::Timeout)
        );
        assert!(
            t.elapsed() >= Duration::from_millis(ms),
            "{ms} ms: {:?}",
            t.elapsed()
        );
        let t = Instant::now();
        assert_eq!(
            sub.wait_latest(Duration::from_millis(ms)),
            Err(WaitError::Timeout)
        );
        assert!(t.elapsed() >= Duration::from_millis(ms));
    }
}

static SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn signals_do_not_end_a_wait_early() {
    watchdog("signals_do_not_end_a_wait_early", Duration::from_secs(60));
    let (topic, _guard) = unique_topic("wait-eintr");
    let _p = Publisher::<Check>::open(&topic).unwrap();
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    // No SA_RESTART: the futex wait returns EINTR on every signal.
    let action = SigAction::new(
        SigHandler::Handler(count_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only touches an atomic (async-signal-safe).
    unsafe { signal::sigaction(Signal::SIGUSR1, &action) }.unwrap();
    let me = nix::sys::pthread::pthread_self();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let pinger = std::thread::spawn(move || {
        while !d.load(Ordering::Relaxed) {
            nix::sys::pthread::pthread_kill(me, Signal::SIGUSR1).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let before = SIGNALS.load(Ordering::Relaxed);
    let timeout = Duration::from_millis(400);
    let t = Instant::now();
    let r = sub.wait_next(timeout);
    let elapsed = t.elapsed();
    done.store(true, Ordering::Relaxed);
    pinger.join().unwrap();
    let got = SIGNALS.load(Ordering::Relaxed) - before;
    assert_eq!(r, Err(WaitError::Timeout));
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(got >= 5, "only {got} signals arrived during the wait");
}

#[test]
fn publisher_killed_while_subscribers_wait_is_publisher_gone() {
    watchdog("publisher_killed_while_waiting", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("wait-killed");
    let mut child = KillOnDrop(spawn("hold-pub", &topic_args(&topic)));
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    line(&mut out);
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let topic = topic.clone();
            std::thread::spawn(move || {
                let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
                let t = Instant::now();
                let r = if i % 2 == 0 {
                    sub.wait_next(Duration::from_secs(30)).map(|_| ())
                } else {
                    sub.wait_latest(Duration::from_secs(30)).map(|_| ())
                };
                (r, t.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    signal::kill(Pid::from_raw(child.0.id() as i32), Signal::SIGKILL).unwrap();
    child.0.wait().unwrap();
    for w in waiters {
        let (r, elapsed) = w.join().unwrap();
        assert_eq!(r, Err(WaitError::PublisherGone));
        // Far below the 30 s timeout: the liveness check ended it.
        assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    }
}

#[test]
fn segment_removed_while_waiting_is_removed() {
    watchdog("segment_removed_while_waiting", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("wait-removed");
    let mut child = KillOnDrop(spawn("hold-pub", &topic_args(&topic)));
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    line(&mut out);
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    let shmid = sub.raw().segment().shmid();
    let remover = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        sys::shm_remove(shmid).unwrap(); // what `ipcrm -m` does
    });
    let t = Instant::now();
    assert_eq!(
        sub.wait_next(Duration::from_secs(30)).map(|_| ()),
        Err(WaitError::Removed)
    );
    assert!(t.elapsed() < Duration::from_secs(20));
    remover.join().unwrap();
    assert!(sub.is_removed());
    // The mapping stays valid: reads still work, nothing crashes.
    assert_eq!(sub.latest().unwrap(), None);
}

#[test]
fn ping_pong_across_processes_loses_no_wake_up() {
    let rounds = scaled(5000, 100);
    watchdog("ping_pong", Duration::from_secs(60 + rounds / 10));
    let (a, _ga) = unique_topic("ping");
    let (b, _gb) = unique_topic("pong");
    let mut pa = Publisher::<Check>::open(&a).unwrap();
    let mut args = topic_args(&a);
    args.extend(topic_args(&b));
    args.push(rounds.to_string());
    let mut child = KillOnDrop(spawn("pong", &args));
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    assert_eq!(line(&mut out), "ready");
    let mut sb = Subscriber::<Check>::wait_for_topic(&b, Duration::from_secs(30)).unwrap();
    let t = Instant::now();
    for i in 1..=rounds {
        pa.publish(&Check::new(i)).unwrap();
        match sb.wait_next(Duration::from_secs(20)) {
            Ok(Next::Frame(s)) => assert_eq!(s.value, Check::new(i)),
            other => panic!("ping round {i}: {other:?} (a lost wake-up times out here)"),
        }
    }
    let elapsed = t.elapsed();
    let st = wait_exit(&mut child.0, Duration::from_secs(30), "pong");
    assert!(st.success(), "{st:?}");
    println!(
        "ping-pong: {rounds} round trips in {elapsed:?} ({:?} per round trip)",
        elapsed / rounds as u32
    );
}

// ---------------------------------------------------------------------------
// Multi-process stress

#[test]
fn stress_one_publisher_four_subscriber_processes() {
    let n = scaled(1_000_000, 2_000);
    watchdog("stress", Duration::from_secs(120 + n / 2_000));
    let (topic, _guard) = unique_topic("stress");
    let topic = topic.slots(16);
    let kinds = ["next", "wait_next", "latest", "wait_latest"];
    let t = Instant::now();
    let mut publisher = KillOnDrop(spawn(
        "stress-pub",
        &args_with(&topic, &[&n.to_string(), "4"]),
    ));
    let mut pout = BufReader::new(publisher.0.stdout.take().unwrap());
    assert_eq!(line(&mut pout), "ready");
    let mut subs: Vec<_> = kinds
        .iter()
        .map(|k| {
            KillOnDrop(spawn(
                "stress-sub",
                &args_with(&topic, &[k, &n.to_string()]),
            ))
        })
        .collect();
    let limit = Duration::from_secs(100 + n / 2_000);
    let published = line(&mut pout);
    assert!(wait_exit(&mut publisher.0, limit, "stress publisher").success());
    assert_eq!(field(&published, "n"), n);
    let mut total_torn = 0;
    println!(
        "stress: {n} frames of {} bytes max, ring of {} slots, 1 publisher + {} subscriber processes",
        <Check as postcard::experimental::max_size::MaxSize>::POSTCARD_MAX_SIZE,
        topic.slots,
        kinds.len()
    );
    println!("  publisher: {published}");
    for (k, s) in kinds.iter().zip(subs.iter_mut()) {
        let mut out = String::new();
        s.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let st = wait_exit(&mut s.0, limit, "stress subscriber");
        assert!(st.success(), "subscriber {k}: {st:?}");
        let r = result_line(&out, "RESULT");
        println!("  subscriber: {r}");
        let (accepted, torn, missed) = (field(r, "accepted"), field(r, "torn"), field(r, "missed"));
        assert_eq!(torn, 0, "{k} accepted torn frames: {r}");
        assert_eq!(field(r, "disorder"), 0, "{k}: {r}");
        assert_eq!(field(r, "last"), n, "{k}: {r}");
        assert!(accepted > 0, "{k}: {r}");
        if k.contains("next") {
            assert_eq!(
                accepted + missed,
                n,
                "{k}: delivered + missed != published: {r}"
            );
        }
        total_torn += torn;
    }
    println!(
        "  wall time {:?}, torn frames accepted: {total_torn}",
        t.elapsed()
    );
}

// ---------------------------------------------------------------------------
// SIGKILL mid-publish

#[test]
fn publishers_killed_mid_publish_never_tear_a_frame() {
    let kills = scaled(300, 10);
    watchdog("kill loop", Duration::from_secs(120 + kills));
    let (topic, _guard) = unique_topic("kill-loop");
    // No futex wake: a publish is then pure user-space work, most of it
    // inside the seqlock's write section, so kills land mid-write often.
    let topic = topic.slots(4).notify(false);
    let stop = std::env::temp_dir().join(format!("shmbus-kill-loop-{:x}.stop", topic.key));
    let _ = std::fs::remove_file(&stop);
    let mut rng = Rng::seeded(4);

    let start_publisher = || {
        let mut c = KillOnDrop(spawn("kill-pub", &topic_args(&topic)));
        let mut out = BufReader::new(c.0.stdout.take().unwrap());
        let l = line(&mut out);
        (c, l)
    };
    let (mut current, first) = start_publisher();
    assert_eq!(field(&first, "created"), 1, "{first}");
    let stop_arg = stop.to_string_lossy().to_string();
    let mut readers: Vec<_> = ["next", "wait_next", "latest"]
        .iter()
        .map(|k| KillOnDrop(spawn("kill-reader", &args_with(&topic, &[k, &stop_arg]))))
        .collect();
    let seg = Segment::attach(&topic).unwrap();
    let slots = u64::from(topic.slots);
    let (mut mid_write, mut repaired_total, mut last_gen) = (0u64, 0u64, 0u64);
    let mut last_line = String::new();
    let t = Instant::now();
    for i in 0..kills {
        // Kill only once the publisher is in its loop (it has published
        // past where it started: qemu-arm starts slowly), at a random moment.
        let started = field(if i == 0 { &first } else { &last_line }, "next");
        while seg.generation() <= started {
            std::thread::sleep(Duration::from_micros(50));
        }
        std::thread::sleep(Duration::from_micros(rng.below(2_000)));
        signal::kill(Pid::from_raw(current.0.id() as i32), Signal::SIGKILL).unwrap();
        let st = current.0.wait().unwrap();
        assert!(!st.success());
        let odd = (0..slots)
            .filter(|&s| seg.slot_sequence(s) & 1 == 1)
            .count() as u64;
        assert!(odd <= 1, "a single writer left {odd} slots mid-write");
        mid_write += odd;
        let g = seg.generation();
        assert!(g >= last_gen, "generation went back from {last_gen} to {g}");
        last_gen = g;
        let (next, l) = start_publisher();
        current = next;
        assert_eq!(field(&l, "repaired"), odd, "kill {i}: {l}");
        assert_eq!(field(&l, "created"), 0, "{l}");
        assert!(field(&l, "next") > g, "kill {i}: {l} after generation {g}");
        repaired_total += field(&l, "repaired");
        last_line = l;
    }
    signal::kill(Pid::from_raw(current.0.id() as i32), Signal::SIGKILL).unwrap();
    current.0.wait().unwrap();
    let odd = (0..slots)
        .filter(|&s| seg.slot_sequence(s) & 1 == 1)
        .count() as u64;
    mid_write += odd;
    // A last publisher repairs the ring and publishes nothing more.
    let last = Publisher::<Check>::open(&topic).unwrap();
    assert_eq!(u64::from(last.raw().repaired_slots()), odd);
    repaired_total += odd;
    let final_gen = last.raw().next_generation() - 1;
    let loop_time = t.elapsed();
    std::fs::write(&stop, b"stop").unwrap();
    let _rm = RemoveOnDrop(stop.clone());
    println!(
        "kill loop: {kills} SIGKILLs in {loop_time:?}, {mid_write} landed mid-write (slot left odd), {repaired_total} slots repaired, {final_gen} frames published"
    );
    for r in readers.iter_mut() {
        let mut out = String::new();
        r.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let st = wait_exit(&mut r.0, Duration::from_secs(60), "kill reader");
        assert!(st.success(), "{st:?}: {out}");
        let l = result_line(&out, "RESULT");
        println!("  reader: {l}");
        assert_eq!(field(l, "torn"), 0, "{l}");
        assert_eq!(field(l, "disorder"), 0, "{l}");
        assert_eq!(field(l, "corrupt"), 0, "{l}");
        assert!(field(l, "accepted") > 0, "{l}");
        if l.contains("next") {
            let (first, cursor) = (field(l, "first"), field(l, "cursor"));
            assert_eq!(cursor, final_gen + 1, "{l}");
            assert_eq!(
                field(l, "accepted") + field(l, "missed"),
                cursor - first,
                "{l}"
            );
        }
    }
    assert_eq!(repaired_total, mid_write);
    assert!(mid_write > 0, "no kill landed mid-write in {kills} tries");
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

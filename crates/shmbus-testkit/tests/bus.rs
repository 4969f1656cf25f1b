//! End-to-end tests of the bus: real segments, real processes.
//!
//! The tests live in `bus/*.rs`: `basics`, `refusals` (wrong type,
//! garbage, sizes, versions, foreign segments, read-only mapping), `waits`
//! (blocking waits across processes), `stress` (1 publisher + 4 subscriber
//! processes; SIGKILL mid-publish), and the child roles in `roles`.
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
use shmbus_core::sys::{self, Attachment, WriteAttachment};
use shmbus_core::{OpenError, ReadError, Segment, Topic, WaitError};
use shmbus_pub::Publisher;
use shmbus_sub::{Next, RawNext, Subscriber};
use shmbus_testkit::{
    Check, Guard, KillOnDrop, TempDir, role, slot_of, spawn, unique_key, unique_topic, watchdog,
};

// Helpers shared by the modules below.

/// `SHMBUS_STRESS_SCALE` times `n`, at least `min`.
fn scaled(n: u64, min: u64) -> u64 {
    ((n as f64 * shmbus_testkit::stress_scale()) as u64).max(min)
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
/// Everything `child` writes on its stdout (piped), then its exit status
/// (within `limit`).
fn output_and_exit(
    child: &mut Child,
    limit: Duration,
    what: &str,
) -> (String, std::process::ExitStatus) {
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("the child's stdout is piped")
        .read_to_string(&mut out)
        .unwrap();
    let status = wait_exit(child, limit, what);
    (out, status)
}

use shmbus_testkit::exit_within as wait_exit;

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
fn raw_segment(key: i32, size: usize) -> WriteAttachment {
    let id = sys::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | 0o600).expect("shmget");
    WriteAttachment::read_write(id).expect("shmat")
}

fn store_words(att: &WriteAttachment, words: &[u32]) {
    for (w, v) in att.atomic_words(0, words.len()).unwrap().iter().zip(words) {
        w.store(*v, Ordering::Relaxed);
    }
}

fn snapshot(att: &Attachment) -> Vec<u32> {
    att.words(0, att.len() / 4)
        .unwrap()
        .iter()
        .map(|w| w.load())
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

/// Entry point for child processes (see `shmbus_testkit::child`). Does
/// nothing in a normal test run.
#[test]
fn child_role_entry() {
    let Some((role, args)) = role() else { return };
    watchdog("child role", Duration::from_secs(600));
    match role.as_str() {
        "stress-pub" => roles::stress_publisher(&args),
        "stress-sub" => roles::stress_subscriber(&args),
        "kill-pub" => roles::kill_publisher(&args),
        "kill-reader" => roles::kill_reader(&args),
        "hold-pub" => roles::hold_publisher(&args),
        "ro-writer" => roles::read_only_writer(&args),
        "pong" => roles::pong(&args),
        "steady-pub" => roles::steady_publisher(&args),
        "periodic-latest" => roles::periodic_latest_reader(&args),
        "short-of-memory" => roles::short_of_memory_reader(&args),
        _ => panic!("unknown role {role}"),
    }
}

#[path = "bus/basics.rs"]
mod basics;
#[path = "bus/refusals.rs"]
mod refusals;
#[path = "bus/roles.rs"]
mod roles;
#[path = "bus/stress.rs"]
mod stress;
#[path = "bus/waits.rs"]
mod waits;

/// The index-based reads a poller uses (`gen_lo_at`, `peek_rest_at`,
/// `try_read_slot_at`, `next_peek_index`) give the same answers as the
/// generation-based ones for every frame in the ring, and an index that is
/// not a slot's (before the first slot, past the end) gives "cannot tell",
/// never a panic or a read outside the segment.
#[test]
fn index_based_slot_reads_agree_with_generation_based_ones() {
    use shmbus_core::seqlock::Peek;
    let (topic, _guard) = unique_topic("index-reads");
    let topic = topic.slots(4);
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    for g in 1..=6 {
        p.publish(&Check::new(g)).unwrap();
    }
    let seg = Segment::attach(&topic).unwrap();
    for g in 3..=6u64 {
        let idx = seg.peek_index(g);
        assert_eq!(seg.gen_lo_at(idx), Some(g as u32), "frame {g}");
        assert_eq!(seg.peek_at(idx, g), Peek::Complete, "frame {g}");
        assert_eq!(seg.peek_rest_at(idx, g as u32, g), Peek::Complete);
        let by_index = seg.try_read_slot_at(idx, |m, _| m.generation);
        let by_generation = seg.try_read_slot(g, |m, _| m.generation);
        assert_eq!(by_index.map(|(m, v)| (m.generation, v)), Some((g, g)));
        assert_eq!(by_generation.map(|(m, v)| (m.generation, v)), Some((g, g)));
        assert_eq!(seg.next_peek_index(idx), seg.peek_index(g + 1), "frame {g}");
        // The frame a lap later is not there yet: its slot holds g.
        assert!(seg.is_older_at(idx, g + 4));
        assert_eq!(seg.peek_at(seg.peek_index(g + 4), g + 4), Peek::Older);
    }
    // Frame 7 is not published: its slot holds frame 3.
    assert_eq!(seg.peek(7), Peek::Older);
    let words = seg.stat().unwrap().size as usize / 4;
    for bad in [0, 1, words, words + 100, usize::MAX] {
        assert!(
            seg.try_read_slot_at(bad, |m, _| m.generation).is_none(),
            "index {bad}"
        );
    }
    for bad in [words, usize::MAX] {
        assert_eq!(seg.gen_lo_at(bad), None);
        assert_eq!(seg.peek_at(bad, 1), Peek::Unsure);
        assert_eq!(seg.peek_rest_at(bad, 1, 1), Peek::Unsure);
    }
    drop(seg);
    p.remove().unwrap();
}

/// The poll word (`set_poll_index`, `poll_lo`: what `has_new` loads with no
/// bounds check) is the word its index names; before one is chosen, and
/// for an index outside the segment, it is the header's `notify` word,
/// which follows the newest generation.
#[test]
fn the_poll_word_is_the_chosen_slot_word_or_else_notify() {
    let (topic, _guard) = unique_topic("poll-word");
    let topic = topic.slots(4);
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    for g in 1..=6 {
        p.publish(&Check::new(g)).unwrap();
    }
    let mut seg = Segment::attach(&topic).unwrap();
    assert_eq!(seg.poll_lo(), 6, "notify before a word is chosen");
    for g in 3..=6u64 {
        seg.set_poll_index(seg.peek_index(g));
        assert_eq!(seg.poll_lo(), g as u32, "frame {g}'s slot");
    }
    seg.set_poll_index(seg.peek_index(3));
    p.publish(&Check::new(7)).unwrap();
    assert_eq!(seg.poll_lo(), 7, "frame 7 took frame 3's slot");
    let words = seg.stat().unwrap().size as usize / 4;
    let mut g = 7u64;
    for bad in [words, words + 1, usize::MAX] {
        seg.set_poll_index(bad);
        assert_eq!(seg.poll_lo(), g as u32, "index {bad}: notify");
        g += 1;
        p.publish(&Check::new(g)).unwrap();
        assert_eq!(seg.poll_lo(), g as u32, "index {bad}: notify follows");
        seg.set_poll_index(seg.peek_index(g - 1));
        assert_eq!(
            seg.poll_lo(),
            (g - 1) as u32,
            "a slot word again after {bad}"
        );
    }
    drop(seg);
    p.remove().unwrap();
}

/// The mapping's word views stay inside the segment the kernel reports and
/// refuse unaligned offsets, for a size that is not a whole number of
/// words: the last, partial word is not a word.
#[test]
fn word_views_are_bounded_by_the_real_size_and_aligned() {
    let key = unique_key("word-views");
    let _guard = Guard(key);
    let size = 4096 + 6;
    let w = raw_segment(key, size);
    let r = Attachment::read_only(w.shmid()).unwrap();
    assert_eq!(r.len(), size);
    let whole = size / 4; // 1025 words: bytes 0..4100
    assert_eq!(r.all_words().len(), whole);
    assert_eq!(r.words(0, whole).map(|v| v.len()), Some(whole));
    assert!(r.words(0, whole + 1).is_none(), "the partial last word");
    assert!(r.words(4100, 1).is_none(), "bytes 4100..4104 pass the end");
    assert!(r.words(4096, 1).is_some());
    assert!(r.words(4100, 0).is_some(), "an empty range at the end");
    assert!(r.words(4104, 0).is_none(), "an empty range past the end");
    assert!(r.words(2, 1).is_none(), "unaligned");
    assert!(r.words(usize::MAX - 3, 1).is_none());
    assert!(r.words(4, usize::MAX).is_none());
    assert!(r.word(4096).is_some());
    assert!(r.word(4100).is_none());
    assert!(r.word(4097).is_none());
    assert!(w.atomic_words(4100, 1).is_none());
    assert_eq!(w.atomic_words(8, 2).map(<[AtomicU32]>::len), Some(2));
    // What is stored through the writer's view is what the reader's sees.
    w.atomic_words(4096, 1).unwrap()[0].store(0x5eed, Ordering::Relaxed);
    assert_eq!(r.word(4096).unwrap().load(), 0x5eed);
    assert_eq!(r.all_words().get(1024).map(|x| x.load()), Some(0x5eed));
}

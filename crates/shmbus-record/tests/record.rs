//! End-to-end tests of `shmbus-record`: real topics, the real binary, real
//! files read back with the `mcap` crate's own readers.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shmbus_pub::Publisher;
use shmbus_sub::{Next, Subscriber};
use shmbus_testkit::{Check, Guard, KillOnDrop, unique_key, unique_topic, watchdog};

/// A file in a temp dir of its own, removed (with the dir) on drop, or by
/// the testkit's watchdog before it aborts.
struct TempFile(
    PathBuf,
    #[allow(dead_code, reason = "held for its drop, which removes the dir")]
    shmbus_testkit::TempDir,
);

impl TempFile {
    fn new(name: &str) -> TempFile {
        TempFile::named(&format!("{name}.mcap"))
    }
    /// `file_name` as given (control characters and all) in a dir of its own.
    fn named(file_name: &str) -> TempFile {
        let dir = shmbus_testkit::TempDir::new("record");
        TempFile(dir.join(file_name), dir)
    }
    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

/// The `shmbus-record` binary, behind `SHMBUS_TEST_RUNNER` (qemu-arm) if set.
fn tool(args: &[&str]) -> Command {
    let exe = env!("CARGO_BIN_EXE_shmbus-record");
    let mut cmd = shmbus_testkit::command(exe);
    cmd.args(args).stdin(Stdio::null());
    shmbus_testkit::dies_with_parent(&mut cmd);
    cmd
}

/// Run the tool to completion: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = tool(args).output().expect("run shmbus-record");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run the tool with `input` on a pipe as its standard input (written from
/// a thread, so a tool that stops reading early cannot block the test).
fn run_piped(args: &[&str], input: Vec<u8>) -> (i32, String, String) {
    let mut cmd = tool(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run shmbus-record");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        // A tool that refuses the pipe closes it: not an error here.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for shmbus-record");
    writer.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A recorder running in the background, started once it says it records.
struct Recorder {
    child: KillOnDrop,
    stderr: BufReader<ChildStderr>,
    seen: String,
}

impl Recorder {
    /// `record TOPIC --no-json -o FILE`, once it has attached the topic's
    /// segment (what it records from).
    fn attached(topic: &shmbus_pub::Topic, file: &TempFile) -> Recorder {
        let rec = Recorder::start(&["record", &topic.name, "--no-json", "-o", file.path()]);
        shmbus_testkit::wait_mapped(rec.child.0.id(), topic.key).unwrap();
        rec
    }

    fn start(args: &[&str]) -> Recorder {
        Recorder::spawned(tool(args))
    }

    /// The recorder `cmd` runs (a `tool` command), once it says it records.
    fn spawned(mut cmd: Command) -> Recorder {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn recorder");
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut r = Recorder {
            child: KillOnDrop(child),
            stderr,
            seen: String::new(),
        };
        loop {
            let mut line = String::new();
            let n = r.stderr.read_line(&mut line).expect("read recorder stderr");
            r.seen.push_str(&line);
            assert!(n > 0, "recorder exited before recording:\n{}", r.seen);
            if line.starts_with("recording ") {
                return r;
            }
        }
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.0.id() as i32), sig).expect("kill");
    }

    /// SIGSTOP, then wait until every thread of the recorder is really
    /// stopped: signal delivery is asynchronous, and a thread still running
    /// for a few microseconds could read frames meant to be missed.
    fn stop(&self) {
        self.signal(Signal::SIGSTOP);
        let tasks = format!("/proc/{}/task", self.child.0.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let all_stopped = std::fs::read_dir(&tasks)
                .map(|d| {
                    d.flatten().all(|t| {
                        std::fs::read_to_string(t.path().join("stat"))
                            .ok()
                            .and_then(|st| {
                                st.rsplit_once(')')
                                    .map(|(_, rest)| rest.trim_start().starts_with(['T', 't']))
                            })
                            .unwrap_or(true)
                    })
                })
                .unwrap_or(false);
            if all_stopped {
                return;
            }
            assert!(Instant::now() < deadline, "recorder did not stop");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Read stderr until a line contains `needle` (the recorder's ready
    /// signals: "recording ...", "recording new topic ...").
    fn wait_line(&mut self, needle: &str) {
        loop {
            let mut line = String::new();
            let n = self
                .stderr
                .read_line(&mut line)
                .expect("read recorder stderr");
            self.seen.push_str(&line);
            assert!(n > 0, "recorder exited before '{needle}':\n{}", self.seen);
            if line.contains(needle) {
                return;
            }
        }
    }

    /// Wait for exit: (exit code or None if killed by a signal, stderr).
    fn wait(mut self) -> (Option<i32>, String) {
        let mut rest = String::new();
        let _ = self.stderr.read_to_string(&mut rest);
        let status = self.child.0.wait().expect("wait");
        self.seen.push_str(&rest);
        (status.code(), self.seen.clone())
    }
}

fn publish_range(p: &mut Publisher<Check>, range: std::ops::RangeInclusive<u64>, pause: Duration) {
    for g in range {
        assert_eq!(p.publish(&Check::new(g)).unwrap(), g);
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}

/// Record what the ring of the topic at `key` holds now (`--backlog`, for
/// 0.3 s) into `path`; the recording must succeed.
fn record_backlog(key: &str, path: &str) {
    record_backlog_of(&[key], path);
}

/// `record --key K... --backlog` of every key in `keys` for 0.3 s.
fn record_backlog_of(keys: &[&str], path: &str) {
    let (code, _, err) = record_backlog_output(keys, path);
    assert_eq!(code, 0, "{err}");
}

/// As [`record_backlog_of`]: its exit code, stdout and stderr.
fn record_backlog_output(keys: &[&str], path: &str) -> (i32, String, String) {
    let mut args = vec!["record"];
    for k in keys {
        args.extend(["--key", k]);
    }
    args.extend(["--backlog", "--duration", "0.3", "-o", path]);
    run(&args)
}

/// An output path with control characters (`-o` is taken as given)
/// reached the terminal raw in the "recording ... to PATH" and "wrote
/// PATH" lines (`ESC[2J` cleared the screen); every error line was already
/// escaped. They are escaped now too, in the tools' style.
#[test]
fn an_output_path_with_control_characters_is_shown_escaped() {
    watchdog("output escaped", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("out-escaped");
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    publisher.publish(&Check::new(1)).unwrap();
    let file = TempFile::named("a\u{1b}[2Jb.mcap");
    let key = format!("0x{:08x}", topic.key as u32);
    let (code, _, err) = record_backlog_output(&[&key], file.path());
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert!(err.contains("a\\u001b[2Jb.mcap; Ctrl-C stops"), "{err:?}");
    assert!(
        err.contains("wrote ") && err.contains("a\\u001b[2Jb.mcap: 1 frame of"),
        "{err:?}"
    );
}

fn read_file(path: &str) -> Vec<u8> {
    std::fs::read(path).expect("read recording")
}

/// How many frames a finished recording at `path` holds on `topic`'s
/// lossless channel (its summary's statistics); `None` if it has no such
/// channel count.
fn lossless_count(path: &str, topic: &str) -> Option<u64> {
    let bytes = read_file(path);
    let summary = mcap::Summary::read(&bytes).unwrap().expect("finished file");
    let stats = summary.stats.expect("statistics");
    let (id, _) = summary
        .channels
        .iter()
        .find(|(_, c)| role(c) == "lossless" && c.metadata["shmbus.topic"] == topic)
        .unwrap_or_else(|| panic!("no lossless channel for {topic}"));
    stats.channel_message_counts.get(id).copied()
}

fn role<'a>(ch: &'a mcap::Channel<'_>) -> &'a str {
    ch.metadata.get("shmbus.role").map_or("", String::as_str)
}

/// Record a topic (ring backlog + frames published live), replay it into a
/// topic at another key, and compare what a subscriber reads there with
/// what was published, frame by frame.
#[test]
fn round_trip_record_then_replay_frame_by_frame() {
    watchdog("round_trip", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("round-trip");
    let topic = topic.slots(128);
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    publish_range(&mut publisher, 1..=40, Duration::ZERO);
    let file = TempFile::new("round-trip");
    let key = format!("0x{:08x}", topic.key as u32);
    let rec = Recorder::start(&["record", "--key", &key, "--backlog", "-o", file.path()]);
    publish_range(&mut publisher, 41..=100, Duration::from_millis(2));
    // Let the recorder catch up, then stop it as Ctrl-C would.
    std::thread::sleep(Duration::from_millis(500));
    rec.signal(Signal::SIGINT);
    let (code, err) = rec.wait();
    assert_eq!(code, Some(0), "recorder failed:\n{err}");
    assert!(err.contains("100 frames"), "{err}");
    drop(publisher);

    let replay_key = unique_key("round-trip-replay");
    let _replay_guard = Guard(replay_key);
    let map = format!("{}={}", topic.name, replay_key);
    let (code, _, err) = run(&["replay", file.path(), "--rate", "0", "--key", &map]);
    assert_eq!(code, 0, "replay failed:\n{err}");
    assert!(err.contains("replayed 100 frames of 1 topic"), "{err}");

    let mut sub = Subscriber::<Check>::attach(&topic.clone().key(replay_key)).unwrap();
    sub.raw().seek_oldest();
    for g in 1..=100 {
        match sub.next().unwrap() {
            Next::Frame(s) => {
                assert_eq!(s.value, Check::new(g), "replayed frame {g} differs");
                assert_eq!(s.generation, g);
            }
            other => panic!("expected replayed frame {g}, got {other:?}"),
        }
    }
    assert_eq!(sub.next().unwrap(), Next::Empty);
}

/// The file read with the `mcap` crate alone: summary, both encodings of
/// the topic, the schemas, every message, and `cat --json`.
#[test]
fn mcap_reader_sees_lossless_and_json_channels() {
    watchdog("mcap_reader", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("mcap-reader");
    let topic = topic.slots(32);
    let before = shmbus_core::sys::realtime_ns();
    let mono_before = shmbus_core::sys::monotonic_ns();
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    publish_range(&mut publisher, 1..=20, Duration::ZERO);
    let after = shmbus_core::sys::realtime_ns();
    let mono_after = shmbus_core::sys::monotonic_ns();
    let file = TempFile::new("mcap-reader");
    let (code, _, err) = run(&[
        "record",
        &topic.name,
        "--backlog",
        "--duration",
        "0.5",
        "-o",
        file.path(),
    ]);
    assert_eq!(code, 0, "record failed:\n{err}");

    let bytes = read_file(file.path());
    let summary = mcap::Summary::read(&bytes)
        .unwrap()
        .expect("the file has a summary");
    let stats = summary.stats.as_ref().expect("statistics");
    assert_eq!(stats.message_count, 40, "20 frames, twice each");
    let chans: Vec<_> = summary.channels.values().collect();
    let lossless = chans
        .iter()
        .find(|c| role(c) == "lossless")
        .expect("lossless channel");
    let view = chans
        .iter()
        .find(|c| role(c) == "view")
        .expect("view channel");
    assert!(
        chans
            .iter()
            .any(|c| role(c) == "missed" && c.topic == "/shmbus/missed")
    );

    assert_eq!(lossless.message_encoding, "postcard");
    let ls = lossless.schema.as_ref().unwrap();
    assert_eq!(ls.encoding, "postcard-schema");
    assert_eq!(ls.name, "Check");
    assert_eq!(
        &*ls.data,
        &shmbus_core::schema::schema_bytes::<Check>().unwrap()[..]
    );
    assert_eq!(lossless.metadata["shmbus.topic"], topic.name);
    assert_eq!(lossless.metadata["shmbus.slots"], "32");
    assert_eq!(
        lossless.metadata["shmbus.key"],
        format!("0x{:08x}", topic.key as u32)
    );

    assert_eq!(view.topic, topic.name);
    assert_eq!(view.message_encoding, "json");
    let vs = view.schema.as_ref().unwrap();
    assert_eq!(vs.encoding, "jsonschema");
    let js: serde_json::Value = serde_json::from_slice(&vs.data).unwrap();
    assert_eq!(
        js["type"], "object",
        "Foxglove needs an object schema: {js}"
    );
    for field in ["seq", "words", "tag"] {
        assert!(js["properties"][field].is_object(), "no '{field}' in {js}");
    }
    assert_eq!(js["properties"]["words"]["items"]["type"], "integer");
    assert_eq!(js["properties"]["words"]["maxItems"], 7);

    let mut lossless_seen = 0u64;
    let mut view_seen = 0u64;
    for m in mcap::MessageStream::new(&bytes).unwrap() {
        let m = m.unwrap();
        assert!(
            (before..=after).contains(&m.log_time),
            "log_time {} is not the publish time",
            m.log_time
        );
        // publish_time is the frame's CLOCK_MONOTONIC stamp, and the
        // channel says so.
        assert!(
            (mono_before..=mono_after).contains(&m.publish_time),
            "publish_time {} is not the monotonic publish time ({mono_before}..={mono_after})",
            m.publish_time
        );
        assert_eq!(
            m.channel
                .metadata
                .get("shmbus.publish_time")
                .map(String::as_str),
            Some("monotonic"),
            "{:?}",
            m.channel.metadata
        );
        let g = u64::from(m.sequence);
        match role(&m.channel) {
            "lossless" => {
                lossless_seen += 1;
                assert_eq!(g, lossless_seen, "frames in publish order");
                assert_eq!(
                    &*m.data,
                    &postcard::to_allocvec(&Check::new(g)).unwrap()[..]
                );
            }
            "view" => {
                view_seen += 1;
                let v: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
                assert_eq!(v, serde_json::to_value(Check::new(g)).unwrap());
            }
            other => panic!("unexpected message on a '{other}' channel"),
        }
    }
    assert_eq!((lossless_seen, view_seen), (20, 20));

    let (code, out, err) = run(&["cat", file.path(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["topic"], topic.name.as_str());
        assert_eq!(l["generation"], i as u64 + 1);
        let mono = l["mono_ns"]
            .as_u64()
            .unwrap_or_else(|| panic!("no mono_ns: {l}"));
        assert!((mono_before..=mono_after).contains(&mono), "{l}");
        assert_eq!(
            l["value"],
            serde_json::to_value(Check::new(i as u64 + 1)).unwrap()
        );
    }
    let (code, out, _) = run(&["cat", file.path()]);
    assert_eq!(code, 0);
    assert!(out.contains("complete"), "{out}");
    assert!(
        out.contains("Check (postcard-schema)") && out.contains("Check (jsonschema)"),
        "{out}"
    );

    // The same recording through a pipe: `cat` opens it once and reads it
    // once, so it shows the same frames and still knows the file was
    // finished. `replay`, which reads a recording more than once, refuses
    // a pipe with the reason instead of misreading it.
    let bytes = read_file(file.path());
    let (code, piped, err) = run_piped(&["cat", "/dev/stdin", "--json"], bytes.clone());
    assert_eq!(code, 0, "{err}");
    assert_eq!(piped, run(&["cat", file.path(), "--json"]).1);
    let (code, piped, err) = run_piped(&["cat", "/dev/stdin"], bytes.clone());
    assert_eq!(code, 0, "{err}");
    assert!(
        piped.contains("complete") && !piped.contains("CUT SHORT"),
        "{piped}"
    );
    // Its size is what came through the pipe (it said "0 B").
    let size = format!(
        "({} read, complete)",
        shmbus_toolbox::units::bytes(bytes.len() as u64)
    );
    assert!(piped.contains(&size), "{size}: {piped}");
    let (code, out, err) = run_piped(&["replay", "/dev/stdin"], bytes);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("not a regular file"), "{err}");
    // The leading magic alone is not a finished recording.
    let magic_only = TempFile::new("magic-only");
    std::fs::write(magic_only.path(), mcap::MAGIC).unwrap();
    let (code, out, err) = run(&["cat", magic_only.path()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("8 B, CUT SHORT"), "{out}");
}

/// SIGKILL the recorder mid-run: the file has no summary, but every
/// complete chunk reads back with the `mcap` streaming reader, in order and
/// intact, and `cat` says the file was cut short.
#[test]
fn sigkilled_recording_is_readable_up_to_the_last_chunk() {
    watchdog("sigkill", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("sigkill");
    let topic = topic.slots(256);
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    let file = TempFile::new("sigkill");
    let rec = Recorder::start(&["record", &topic.name, "-o", file.path()]);
    // Publish for 2.5 s: at least two chunk cuts (one per second).
    let start = Instant::now();
    let mut g = 0;
    while start.elapsed() < Duration::from_millis(2500) {
        g += 1;
        publisher.publish(&Check::new(g)).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    rec.signal(Signal::SIGKILL);
    let (code, _) = rec.wait();
    assert_eq!(code, None, "the recorder was killed by a signal");

    let bytes = read_file(file.path());
    assert!(
        mcap::read::footer(&bytes).is_err(),
        "a killed recorder wrote no footer"
    );
    let options = mcap::sans_io::LinearReaderOptions::default().with_skip_end_magic(true);
    let mut frames = Vec::new();
    // The next generation the file must account for: recorded, or
    // reported missed. A recorder descheduled for a quarter of a second on
    // a loaded machine falls a 256-slot ring behind at 1 kHz: then the
    // file says so, which is what this checks (not that nothing was lost).
    let mut next = 1;
    let (mut missed, mut events) = (0, 0);
    for m in mcap::io::MessageReader::new_with_options(&bytes[..], options) {
        let Ok(m) = m else { break };
        match role(&m.channel) {
            "lossless" => {
                let c: Check = postcard::from_bytes(&m.data).unwrap();
                assert!(c.is_whole(), "torn frame in the file");
                assert_eq!(u64::from(m.sequence), c.seq);
                assert_eq!(c.seq, next, "frame {} unaccounted for", next);
                frames.push(c.seq);
                next += 1;
            }
            "missed" => {
                let v: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
                let (n, at) = (
                    v["missed"].as_u64().unwrap(),
                    v["at_generation"].as_u64().unwrap(),
                );
                assert_eq!(at, next + n, "missed event {v} after frame {}", next - 1);
                missed += n;
                events += 1;
                next = at;
            }
            _ => {}
        }
    }
    assert!(
        !frames.is_empty(),
        "nothing readable in a {} byte file",
        bytes.len()
    );
    assert!(
        frames.len() as u64 > missed,
        "{} frames recorded, {missed} missed: the recorder kept up less than half the time",
        frames.len()
    );

    let (code, out, err) = run(&["cat", file.path()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CUT SHORT"), "{out}");
    let (code, out, _) = run(&["cat", file.path(), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), frames.len() + events);
}

/// A recorder stopped (SIGSTOP) while its topic runs a lap ahead logs the
/// exact number of frames it lost; frames + missed = frames published.
#[test]
fn falling_behind_is_logged_as_missed_frames() {
    watchdog("missed", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("missed");
    let topic = topic.slots(4);
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    let file = TempFile::new("missed");
    let rec = Recorder::start(&["record", &topic.name, "--no-json", "-o", file.path()]);
    let settle = Duration::from_millis(400);
    // The recorder has attached (it says "recording" after it attached).
    shmbus_testkit::wait_mapped(rec.child.0.id(), topic.key).unwrap();
    publish_range(&mut publisher, 1..=1, Duration::ZERO);
    // Frame 1 read before the stop: a fixed 400 ms was not always enough
    // on a loaded machine, and frame 1 was lost with the lap.
    shmbus_testkit::wait_subscriber_caught_up(&topic).unwrap();
    rec.stop();
    publish_range(&mut publisher, 2..=21, Duration::ZERO);
    rec.signal(Signal::SIGCONT);
    std::thread::sleep(settle);
    publish_range(&mut publisher, 22..=22, Duration::ZERO);
    std::thread::sleep(settle);
    rec.signal(Signal::SIGINT);
    let (code, err) = rec.wait();
    assert_eq!(code, Some(0), "{err}");

    let bytes = read_file(file.path());
    let mut frames = Vec::new();
    let mut missed = 0;
    for m in mcap::MessageStream::new(&bytes).unwrap() {
        let m = m.unwrap();
        match role(&m.channel) {
            "lossless" => frames.push(u64::from(m.sequence)),
            "missed" => {
                let v: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
                assert_eq!(v["topic"], topic.name.as_str());
                let at = v["at_generation"].as_u64().unwrap();
                assert!(frames.last().is_some_and(|&last| at > last + 1));
                missed += v["missed"].as_u64().unwrap();
            }
            other => panic!("no '{other}' channel expected with --no-json"),
        }
    }
    assert!(
        missed >= 16,
        "a 4-slot ring lapped by 20 frames loses at least 16 (got {missed})"
    );
    assert_eq!(
        frames.len() as u64 + missed,
        22,
        "frames {frames:?} + missed {missed}"
    );
    assert_eq!(frames.first(), Some(&1));
    assert_eq!(frames.last(), Some(&22));
    assert!(frames.windows(2).all(|w| w[0] < w[1]));
}

/// A replay refused at its second topic (a live publisher at that key)
/// removes the first topic it had already created for it: nothing was
/// replayed, and nothing is left behind (was: the first topic's empty
/// segment and its lock stayed). A topic it reopened (not created) stays.
/// The slot of the oldest frame in a ring left mid-write (its sequence
/// odd) by a publisher that died there, or that is stopped there: that
/// frame is lost (a frame a lap newer was being written over it), the
/// frames after it are whole. The recorder counts it missed, says so, and
/// records the rest. Was: it retried the slot every 50 ms until a new
/// publisher repaired it, so with none it recorded none of the frames
/// still in the ring, counted nothing and said nothing ("0 frames of 1
/// topic (0 missed)", exit 0).
#[test]
fn a_frame_left_mid_write_is_counted_missed_and_the_frames_after_it_recorded() {
    watchdog("mid-write", Duration::from_secs(120));
    for alive in [false, true] {
        let (topic, _g) = unique_topic(if alive {
            "mid-write-stopped"
        } else {
            "mid-write-died"
        });
        let topic = topic.slots(4);
        let mut p = Publisher::<Check>::open(&topic).unwrap();
        publish_range(&mut p, 1..=6, Duration::ZERO);
        // Dropped: the publisher lock is free, as after a crash. Kept: the
        // lock is held, as by a publisher stopped mid-write.
        let p = alive.then_some(p);
        // Generation 3's slot (the oldest), odd: a write over it begun.
        shmbus_testkit::leave_mid_write(topic.key, 3);
        let file = TempFile::new("mid-write");
        let key = format!("0x{:08x}", topic.key as u32);
        let (code, _, err) = record_backlog_output(&[&key], file.path());
        assert_eq!(code, 0, "alive {alive}: {err}");
        let (frames, missed) = frames_and_missed(file.path(), &topic.name);
        assert_eq!(frames, [4, 5, 6], "alive {alive}: {err}");
        assert_eq!(missed, 1, "alive {alive}: {err}");
        assert!(
            err.contains(&format!("frame 3 of '{}' is lost", topic.name))
                && err.contains("3 frames of 1 topic (1 missed)"),
            "alive {alive}: {err}"
        );
        drop(p);
    }
}

#[test]
fn a_refused_replay_leaves_no_topic_it_created() {
    watchdog("replay cleanup", Duration::from_secs(120));
    let (a, _ga) = unique_topic("cleanup-a");
    let (b, _gb) = unique_topic("cleanup-b");
    let mut pa = Publisher::<Check>::open(&a).unwrap();
    let mut pb = Publisher::<Check>::open(&b).unwrap();
    publish_range(&mut pa, 1..=3, Duration::ZERO);
    publish_range(&mut pb, 1..=3, Duration::ZERO);
    let file = TempFile::new("cleanup");
    record_backlog_of(&[&a.key.to_string(), &b.key.to_string()], file.path());
    drop(pa);
    // `a` replays to a fresh key (created by the replay); `b` to its own,
    // where its publisher is alive: refused.
    let target = unique_key("cleanup-target");
    let _gt = Guard(target);
    let map = format!("{}={}", a.name, target);
    let (code, _, err) = run(&["replay", file.path(), "--rate", "0", "--key", &map]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("live publisher") && err.contains("nothing was replayed"),
        "{err}"
    );
    assert!(
        shmbus_core::sys::shmget(target, 0, 0).is_err(),
        "the segment the replay created for '{}' is gone: {err}",
        a.name
    );
    assert!(
        shmbus_core::sysvipc::semaphore_by_key(target).is_none(),
        "and its lock: {err}"
    );
    // `b`'s publisher and topic are untouched.
    assert_eq!(pb.publish(&Check::new(4)).unwrap(), 4);
}

/// Replay refuses a topic whose publisher is alive, naming its pid; a
/// missing file is "not found" (exit 1); bad arguments are exit 2.
#[test]
fn replay_refuses_a_live_publisher_and_errors_say_the_fix() {
    watchdog("refuse", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("refuse");
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    publish_range(&mut publisher, 1..=3, Duration::ZERO);
    let file = TempFile::new("refuse");
    let key = format!("{}", topic.key);
    record_backlog(&key, file.path());

    let (code, _, err) = run(&["replay", file.path(), "--rate", "0"]);
    assert_eq!(code, 2, "{err}");
    let pid = std::process::id();
    assert!(err.starts_with("shmbus: "), "{err}");
    assert!(
        err.contains(&format!("live publisher (pid {pid})")),
        "{err}"
    );
    assert!(
        err.contains("--key"),
        "the message suggests replaying elsewhere: {err}"
    );
    // Nothing was published by the refused replay.
    assert_eq!(publisher.raw().next_generation(), 4);

    let (code, _, err) = run(&[
        "replay",
        file.path(),
        "--rate",
        "0",
        "--topics",
        "no-such-topic",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`shmbus cat"), "{err}");
    let (code, _, err) = run(&["cat", "/nonexistent/x.mcap"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = run(&["record", "-o", file.path(), "--duration", "soon"]);
    assert_eq!(code, 2);
    assert!(err.contains("give seconds"), "{err}");
    let (code, out, _) = run(&["record", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Examples:"), "{out}");
}

/// With no topic named, the recorder takes every topic, including one
/// created after it started (the machine is rescanned every second), and
/// Ctrl-C ends the run with a finished file. It ran with `--duration 6`,
/// which a recorder starved of CPU (qemu-arm on a loaded machine) reached
/// before its first rescan: "recorder exited before 'recording new topic
/// ...'". `--duration` has tests of its own; this one stops on SIGINT once
/// every frame is published.
#[test]
fn recording_everything_picks_up_topics_that_appear_later() {
    watchdog("everything", Duration::from_secs(120));
    let (first, _g1) = unique_topic("everything-first");
    let (later, _g2) = unique_topic("everything-later");
    let mut p1 = Publisher::<Check>::open(&first).unwrap();
    let file = TempFile::new("everything");
    let mut rec = Recorder::start(&["record", "-o", file.path()]);
    publish_range(&mut p1, 1..=5, Duration::from_millis(5));
    let mut p2 = Publisher::<Check>::open(&later).unwrap();
    // Three frames before the recorder finds the new topic (it looks once
    // a second): they are in the ring, and recorded too.
    publish_range(&mut p2, 1..=3, Duration::ZERO);
    rec.wait_line(&format!("recording new topic '{}'", later.name));
    publish_range(&mut p2, 4..=5, Duration::from_millis(5));
    // The recorder's last look at each topic on the way out keeps them.
    rec.signal(Signal::SIGINT);
    let (code, err) = rec.wait();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!("recording new topic '{}'", later.name)),
        "{err}"
    );

    for t in [&first, &later] {
        assert_eq!(lossless_count(file.path(), &t.name), Some(5), "{}", t.name);
    }
}

/// Replay keeps the recorded spacing, scaled by --rate (checked as a lower
/// bound on the replayed span: a slow machine can only stretch it), and
/// --loop republishes until Ctrl-C.
#[test]
fn replay_keeps_timing_and_loops() {
    watchdog("timing", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("timing");
    let topic = topic.slots(64);
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    publish_range(&mut publisher, 1..=10, Duration::from_millis(20));
    drop(publisher);
    let file = TempFile::new("timing");
    let key = format!("0x{:08x}", topic.key as u32);
    record_backlog(&key, file.path());
    let bytes = read_file(file.path());
    let times: Vec<u64> = mcap::MessageStream::new(&bytes)
        .unwrap()
        .map(|m| m.unwrap())
        .filter(|m| role(&m.channel) == "lossless")
        .map(|m| m.log_time)
        .collect();
    assert_eq!(times.len(), 10);
    let recorded_span = times[9] - times[0];
    assert!(
        recorded_span >= 180_000_000,
        "publisher slept 9 x 20 ms: {recorded_span} ns"
    );

    let target = unique_key("timing-replay");
    let _target_guard = Guard(target);
    let map = format!("{}={}", topic.name, target);
    let started = Instant::now();
    let (code, _, err) = run(&["replay", file.path(), "--rate", "2", "--key", &map]);
    let took = started.elapsed();
    assert_eq!(code, 0, "{err}");
    let mut sub = Subscriber::<Check>::attach(&topic.clone().key(target)).unwrap();
    sub.raw().seek_oldest();
    let mut mono = Vec::new();
    while let Next::Frame(s) = sub.next().unwrap() {
        mono.push(s.mono_ns);
    }
    assert_eq!(mono.len(), 10);
    assert!(mono.windows(2).all(|w| w[0] <= w[1]), "{mono:?}");
    // Rate 2 halves the recorded span: the replay can never be faster than
    // that (a lower bound that holds however loaded the machine is; a late
    // first frame may shorten the span between the first and last publish,
    // since replay keeps to the schedule it started with).
    assert!(
        took.as_nanos() as u64 >= recorded_span / 2,
        "rate 2 halves the span at most: recorded {recorded_span} ns, replay took {took:?}"
    );

    // --loop at full speed: many passes until SIGINT.
    let mut child = KillOnDrop(
        tool(&[
            "replay",
            file.path(),
            "--rate",
            "0",
            "--loop",
            "--key",
            &map,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while sub.raw().generation() < 40 {
        assert!(Instant::now() < deadline, "--loop did not republish");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGINT).unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let g = sub.raw().generation();
    assert!(g >= 40, "generation {g} after looping");
    assert_eq!(
        sub.latest().unwrap().unwrap().value,
        Check::new((g - 1) % 10 + 1)
    );
}

/// The recorder under `prlimit --as=LIMIT` (address space): any unbounded
/// growth ends in an allocation failure (abort) instead of the OOM killer.
const AS_LIMIT: u64 = 256 * 1024 * 1024;
/// The highest resident set the tests accept, KiB (sampled while it runs).
const RSS_LIMIT_KIB: u64 = 256 * 1024;

/// `O_NONBLOCK`: an open of a FIFO for writing that fails at once (ENXIO)
/// when nobody reads it.
fn libc_nonblock() -> i32 {
    0o4000
}

/// `tool(args)` behind `prlimit --as=AS_LIMIT`, with at most two malloc
/// arenas (each arena reserves 64 MiB of address space up front, which
/// would count against the limit without being used). Under qemu-user the
/// emulator reserves 4 GiB for the guest before the guest allocates
/// anything (and QEMU 7.2 cannot reserve less for ARM), so an address-space
/// limit cannot bound the guest there: the tests then rely on the sampled
/// resident set ([`RSS_LIMIT_KIB`]) alone.
fn tool_limited(args: &[&str]) -> Command {
    let inner = tool(args);
    if std::env::var("SHMBUS_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty()) {
        return inner;
    }
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--as={AS_LIMIT}"))
        .arg("--")
        .arg(inner.get_program())
        .args(inner.get_args())
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::null());
    cmd
}

/// Wait for `child` to exit by itself within `limit`: its exit code (or a
/// failed test if it had to be killed), and the highest resident set size
/// (`VmHWM`, KiB) seen while it ran.
fn wait_exit(child: &mut KillOnDrop, limit: Duration, what: &str) -> (Option<i32>, u64) {
    let start = Instant::now();
    let status = format!("/proc/{}/status", child.0.id());
    let mut hwm = 0;
    loop {
        if let Some(kb) = std::fs::read_to_string(&status).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            hwm = hwm.max(kb);
        }
        if let Some(s) = child.0.try_wait().unwrap() {
            return (s.code(), hwm);
        }
        assert!(
            start.elapsed() < limit,
            "{what}: still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fast topic with big frames recorded into an output that drains slowly
/// (a FIFO read at about 6 MB/s): the recorder's memory stays bounded (it
/// runs its whole --duration under `prlimit --as`), the frames it could not
/// keep up with are logged as missed, and the file it wrote is complete.
#[test]
fn recorder_memory_is_bounded_when_its_output_is_slow() {
    watchdog("slow_output", Duration::from_secs(240));
    type Blob = heapless::Vec<u8, 4096>;
    let (topic, _g) = unique_topic("slow-output");
    let topic = topic.slots(64);
    let schema = shmbus_core::schema::schema_bytes::<Blob>().unwrap();
    let mut p = shmbus_pub::RawPublisher::open(&topic, &schema, 4100).unwrap();
    let frame = postcard::to_allocvec(&Blob::from_slice(&[7u8; 4000]).unwrap()).unwrap();
    let tmp_dir = shmbus_testkit::TempDir::new("record-fifo");
    let dir = tmp_dir.path().to_path_buf();
    let fifo = dir.join("out.mcap");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::open(&fifo).expect("open fifo");
            let mut all = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("read fifo: {e}"),
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            all
        })
    };
    let key = format!("0x{:08x}", topic.key as u32);
    let mut child = KillOnDrop(
        tool_limited(&[
            "record",
            "--key",
            &key,
            "-o",
            fifo.to_str().unwrap(),
            "--duration",
            "3",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn recorder"),
    );
    let mut err = child.0.stderr.take().unwrap();
    let err_text = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    // Publish as fast as possible while the recorder runs.
    let start = Instant::now();
    let mut published = 0u64;
    while start.elapsed() < Duration::from_secs(4) && child.0.try_wait().unwrap().is_none() {
        p.publish_bytes(&frame).unwrap();
        published += 1;
    }
    let (code, hwm) = wait_exit(&mut child, Duration::from_secs(120), "recorder");
    // If the recorder never opened the FIFO, the reader still waits in
    // open(): an open for writing that finds a reader releases it (EOF).
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc_nonblock())
        .open(&fifo);
    let err = err_text.join().unwrap();
    let bytes = reader.join().unwrap();
    assert_eq!(code, Some(0), "under prlimit --as={AS_LIMIT}: {err}");
    assert!(hwm < RSS_LIMIT_KIB, "resident set {hwm} KiB");
    assert!(err.contains("missed"), "{err}");
    let summary = mcap::Summary::read(&bytes)
        .unwrap()
        .expect("a finished file");
    let frames: u64 = summary
        .stats
        .expect("stats")
        .channel_message_counts
        .values()
        .sum();
    eprintln!(
        "FIGURE slow output: {published} frames of 4 KiB published, {frames} messages written ({} bytes), recorder RSS peak {hwm} KiB",
        bytes.len()
    );
    assert!(frames > 0);
}

/// A topic whose header generation becomes impossible while it is recorded
/// (overwritten with u64::MAX, as a corrupt or planted segment would be):
/// that topic stops being recorded with a message that names its key and
/// the fix, the other topic is recorded to the end, and the recorder's
/// memory stays bounded (it runs under `prlimit --as`).
#[test]
fn a_forged_generation_stops_only_that_topic_and_memory_stays_bounded() {
    watchdog("forged_generation", Duration::from_secs(240));
    let (forged, _g1) = unique_topic("forged-gen");
    let (healthy, _g2) = unique_topic("healthy-gen");
    let mut pf = Publisher::<Check>::open(&forged).unwrap();
    let mut ph = Publisher::<Check>::open(&healthy).unwrap();
    publish_range(&mut pf, 1..=3, Duration::ZERO);
    let file = TempFile::new("forged-gen");
    let kf = format!("0x{:08x}", forged.key as u32);
    let kh = format!("0x{:08x}", healthy.key as u32);
    let mut child = KillOnDrop(
        tool_limited(&[
            "record",
            "--key",
            &kf,
            "--key",
            &kh,
            "-o",
            file.path(),
            "--duration",
            "3",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn recorder"),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut err = String::new();
    while !err.contains("recording ") {
        assert!(
            stderr.read_line(&mut err).unwrap() > 0,
            "recorder exited: {err}"
        );
    }
    drop(pf);
    let id = shmbus_core::sys::shmget(forged.key, 0, 0).unwrap();
    let att = shmbus_core::sys::WriteAttachment::read_write(id).unwrap();
    for off in [192, 196] {
        att.atomic_word(off)
            .unwrap()
            .store(u32::MAX, std::sync::atomic::Ordering::Relaxed);
    }
    publish_range(&mut ph, 1..=100, Duration::from_millis(10));
    let (code, hwm) = wait_exit(&mut child, Duration::from_secs(120), "recorder");
    eprintln!("FIGURE forged generation: recorder RSS peak {hwm} KiB");
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    err.push_str(&rest);
    assert_eq!(code, Some(0), "under prlimit --as={AS_LIMIT}: {err}");
    assert!(hwm < RSS_LIMIT_KIB, "resident set {hwm} KiB");
    assert!(
        err.contains(&format!("topic '{}' stopped", forged.name))
            && err.contains("impossible")
            && err.contains(&format!("shmbus rm {kf}")),
        "{err}"
    );
    assert!(err.lines().count() < 10, "{err}");
    assert_eq!(
        lossless_count(file.path(), &healthy.name),
        Some(100),
        "{err}"
    );
}

/// A segment whose owner keeps moving its header generation ahead of the
/// ring (any user can create such a segment; the tools record every
/// readable topic by default) makes every read a "missed frames" report,
/// without a frame to copy: the recorder merges them, its memory stays
/// bounded (it runs its whole --duration under `prlimit --as`), and it ends
/// on time.
#[test]
fn recorder_memory_is_bounded_when_a_segment_floods_missed_reports() {
    watchdog("flood_missed", Duration::from_secs(240));
    let (topic, _g) = unique_topic("flood-missed");
    let topic = topic.slots(16);
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    publish_range(&mut p, 1..=1, Duration::ZERO);
    drop(p);
    let file = TempFile::new("flood-missed");
    let key = format!("0x{:08x}", topic.key as u32);
    let mut child = KillOnDrop(
        tool_limited(&[
            "record",
            "--key",
            &key,
            "-o",
            file.path(),
            "--duration",
            "4",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn recorder"),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut err = String::new();
    while !err.contains("recording ") {
        assert!(
            stderr.read_line(&mut err).unwrap() > 0,
            "recorder exited: {err}"
        );
    }
    let err_rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        let id = shmbus_core::sys::shmget(topic.key, 0, 0).unwrap();
        std::thread::spawn(move || {
            let att = shmbus_core::sys::WriteAttachment::read_write(id).unwrap();
            let (lo, hi) = (att.atomic_word(192).unwrap(), att.atomic_word(196).unwrap());
            let mut g: u64 = 1;
            let mut moves = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                g += 1000;
                hi.store((g >> 32) as u32, std::sync::atomic::Ordering::Relaxed);
                lo.store(g as u32, std::sync::atomic::Ordering::Release);
                moves += 1;
            }
            moves
        })
    };
    let (code, hwm) = wait_exit(&mut child, Duration::from_secs(120), "recorder");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let moves = flood.join().unwrap();
    err.push_str(&err_rest.join().unwrap());
    eprintln!(
        "FIGURE missed flood: header generation moved {moves} times; recorder RSS peak {hwm} KiB"
    );
    assert_eq!(code, Some(0), "under prlimit --as={AS_LIMIT}: {err}");
    assert!(hwm < RSS_LIMIT_KIB, "resident set {hwm} KiB");
    assert!(err.contains("missed"), "{err}");
    let bytes = read_file(file.path());
    assert!(
        mcap::Summary::read(&bytes).unwrap().is_some(),
        "a finished file"
    );
}

/// A directory, a missing file, an empty file and a file that is not MCAP
/// are each named for what they are by `cat` and `replay`, never as a
/// recording "cut short" or an "I/O error from writing".
#[test]
fn cat_and_replay_say_what_a_bad_path_is() {
    let tmp_dir = shmbus_testkit::TempDir::new("record-badpath");
    let dir = tmp_dir.path().to_path_buf();
    let empty = dir.join("empty.mcap");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.join("notes.mcap");
    std::fs::write(&text, b"these are notes, not a recording\n").unwrap();
    let missing = dir.join("missing.mcap");
    let cases: [(&std::path::Path, i32, &str); 4] = [
        (&dir, 2, "is a directory"),
        (&missing, 1, "cannot open"),
        (&empty, 2, "is not an MCAP file (it is empty)"),
        (
            &text,
            2,
            "is not an MCAP file (it does not start with the MCAP magic)",
        ),
    ];
    for (path, want, says) in cases {
        for cmd in ["cat", "replay"] {
            let (code, out, err) = run(&[cmd, path.to_str().unwrap()]);
            assert_eq!(code, want, "{cmd} {}: {err}", path.display());
            assert!(out.is_empty(), "{out}");
            assert!(
                err.starts_with("shmbus: ") && err.contains(says),
                "{cmd} {}: {err}",
                path.display()
            );
            assert!(
                !err.contains("cut short") && !err.contains("writing"),
                "{cmd}: {err}"
            );
        }
    }
}

/// `cmd` (a `tool` command) run with its standard output closed (`>&-`),
/// through `sh`: (exit code, stderr).
fn run_stdout_closed(cmd: &Command) -> (i32, String) {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("exec \"$@\" >&-")
        .arg("sh")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    let out = sh.output().expect("run sh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `record -o -` with standard output closed (`>&-`) recorded into
/// nothing and exited 0 (Rust's runtime had put /dev/null there); `cat`
/// with it closed showed nothing and exited 0. Both are errors now, said
/// before anything is recorded; a shell's `> /dev/null` still discards
/// on purpose.
#[test]
fn a_closed_stdout_as_the_output_is_an_error_before_anything_is_recorded() {
    watchdog("stdout_closed", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("stdout-closed");
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    p.publish(&Check::new(1)).unwrap();
    let key = format!("0x{:08x}", topic.key as u32);
    for out in ["-", "/dev/stdout"] {
        let (code, err) =
            run_stdout_closed(&tool(&["record", &key, "-o", out, "--duration", "0.5"]));
        assert_eq!(code, 2, "record -o {out}: {err}");
        assert!(
            err.starts_with("shmbus: standard output is closed")
                && err.contains("nothing is recorded"),
            "record -o {out}: {err}"
        );
        assert!(
            !err.lines().any(|l| l.starts_with("recording ")) && !err.contains("wrote "),
            "record -o {out}: {err}"
        );
    }
    // On purpose into /dev/null: recorded as before.
    let out = tool(&["record", &key, "-o", "-", "--duration", "0.5"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("wrote /dev/stdout: "), "{err}");

    let file = TempFile::new("stdout-closed");
    let (code, _, err) = run(&["record", &key, "-o", file.path(), "--duration", "0.5"]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = run_stdout_closed(&tool(&["cat", file.path()]));
    assert_eq!(code, 2, "cat: {err}");
    assert!(
        err.starts_with("shmbus: standard output is closed"),
        "cat: {err}"
    );
    let (code, out, err) = run(&["cat", file.path()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("topics:"), "{out}");
}

/// The offset and size of the first top-level chunk record (opcode 0x06)
/// of a recording.
fn first_chunk(bytes: &[u8]) -> (usize, usize) {
    let mut at = 8;
    while at + 9 <= bytes.len() {
        let len = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap()) as usize;
        if bytes[at] == 0x06 {
            return (at, 9 + len);
        }
        at += 9 + len;
    }
    panic!("no chunk in {} bytes", bytes.len());
}

/// A recording cut short inside its first chunk (a recorder killed
/// before its first cut, a copy that stopped) holds no frame: replay says
/// the file is damaged and where it stops, exit 2. It said "--key X=...:
/// no topic 'X' in the recording" and "holds no shmbus frames to replay",
/// exit 1, as if the recording were of nothing.
#[test]
fn a_replay_of_a_file_cut_inside_its_first_chunk_says_it_is_damaged() {
    watchdog("cut_first_chunk", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("cut-first-chunk");
    let other = unique_key("cut-first-chunk-replay");
    let _other_guard = Guard(other);
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    for g in 1..=5 {
        p.publish(&Check::new(g)).unwrap();
    }
    let file = TempFile::new("whole");
    let (code, _, err) = run(&[
        "record",
        &topic.name,
        "-o",
        file.path(),
        "--duration",
        "0.5",
    ]);
    assert_eq!(code, 0, "{err}");
    let bytes = read_file(file.path());
    let (chunk, size) = first_chunk(&bytes);
    let key_arg = format!("{}=0x{:08x}", topic.name, other as u32);
    for cut in [chunk + 5, chunk + size / 2, chunk + size - 1] {
        let part = TempFile::new("cut");
        std::fs::write(&part.0, &bytes[..cut]).unwrap();
        let (code, out, err) = run(&["replay", part.path(), "--rate", "0", "--key", &key_arg]);
        assert_eq!(code, 2, "cut at {cut}: {err}");
        assert!(out.is_empty(), "{out}");
        let want = format!(
            "is damaged: it ends at byte {cut}, inside the record that starts at byte {chunk}"
        );
        assert!(
            err.contains(&want) && err.contains("nothing was replayed"),
            "cut at {cut}: {err}"
        );
        assert!(
            !err.contains("in the recording\n") && !err.contains("holds no shmbus frames"),
            "cut at {cut}: {err}"
        );
        assert!(
            shmbus_core::sys::shmget(other, 0, 0).is_err(),
            "cut at {cut}: a topic was left at the --key"
        );
    }
}

/// Another program's segment (zeros, no publisher lock) at a unique key:
/// (its guard, its shmid).
fn foreign_segment(test: &str) -> (Guard, i32) {
    let key = unique_key(test);
    let guard = Guard(key);
    // IPC_CREAT | IPC_EXCL | 0600
    let id = shmbus_core::sys::shmget(key, 4096, 0o1000 | 0o2000 | 0o600).unwrap();
    (guard, id)
}

/// The `shmbus: warning:` lines of `err` that mention `what`.
fn warnings_about(err: &str, what: &str) -> usize {
    err.lines()
        .filter(|l| l.starts_with("shmbus: warning: ") && l.contains(what))
        .count()
}

/// A TOPIC is written as for every other command: a key (hex or decimal)
/// or `shmid:N` records that topic. A named topic that cannot be recorded
/// (another program's segment, nothing there) gets one warning saying
/// which and why, and the others are recorded.
#[test]
fn record_takes_keys_and_shmids_and_warns_about_named_topics_it_cannot_use() {
    watchdog("forms", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("forms");
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    publish_range(&mut publisher, 1..=4, Duration::ZERO);
    let shmid = shmbus_core::sys::shmget(topic.key, 0, 0).unwrap();
    let (foreign, foreign_id) = foreign_segment("forms-foreign");
    let missing = format!(
        "test/forms-missing-{:08x}",
        unique_key("forms-missing") as u32
    );
    let file = TempFile::new("forms");
    let count = |path: &str| lossless_count(path, &topic.name);
    let hex = format!("0x{:08x}", topic.key as u32);
    let by_shmid = format!("shmid:{shmid}");
    let foreign_shmid = format!("shmid:{foreign_id}");
    for form in [hex.as_str(), by_shmid.as_str()] {
        let (code, _, err) = run(&[
            "record",
            "-o",
            file.path(),
            "--backlog",
            "--duration",
            "0.5",
            form,
            &foreign_shmid,
            &missing,
        ]);
        assert_eq!(code, 0, "{form}: {err}");
        assert_eq!(count(file.path()), Some(4), "{form}: {err}");
        assert_eq!(
            warnings_about(&err, &format!("shmid {foreign_id}: not a shmbus topic")),
            1,
            "{err}"
        );
        assert_eq!(
            warnings_about(&err, &format!("topic '{missing}': not found")),
            1,
            "{err}"
        );
        assert!(err.contains("recorded once it appears"), "{err}");
        assert_eq!(err.matches("shmbus: warning:").count(), 2, "{err}");
    }
    // Decimal: the key (no segment has it as its shmid).
    let (code, _, err) = run(&[
        "record",
        "-o",
        file.path(),
        "--backlog",
        "--duration",
        "0.3",
        &topic.key.to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(count(file.path()), Some(4), "{err}");
    drop(foreign);
}

/// Named topics none of which can be recorded: exit 1 when none is there,
/// 2 when some is there but unusable, one warning each, and no file.
#[test]
fn record_fails_when_no_named_topic_can_be_recorded() {
    watchdog("unusable", Duration::from_secs(120));
    let (_g1, id1) = foreign_segment("unusable-1");
    let (g2, _) = foreign_segment("unusable-2");
    let nothing = unique_key("unusable-none");
    let _g3 = Guard(nothing);
    let file = TempFile::new("unusable");
    let k2 = format!("{}", g2.key());
    let (code, _, err) = run(&[
        "record",
        "-o",
        file.path(),
        "--duration",
        "0.3",
        &format!("shmid:{id1}"),
        "--key",
        &k2,
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(warnings_about(&err, "not a shmbus topic"), 2, "{err}");
    assert!(
        err.contains("none of the named topics can be recorded"),
        "{err}"
    );
    assert!(!std::path::Path::new(file.path()).exists());

    let none = format!("0x{:08x}", nothing as u32);
    let (code, _, err) = run(&[
        "record",
        "-o",
        file.path(),
        "--duration",
        "0.3",
        &none,
        "shmid:2147483647",
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        warnings_about(&err, &format!("key {none}: not found")),
        1,
        "{err}"
    );
    assert_eq!(
        warnings_about(&err, "shmid 2147483647: not found"),
        1,
        "{err}"
    );
    assert!(!err.contains("once it appears"), "it does not wait: {err}");
    // One unusable, one not there: 2.
    let (code, _, err) = run(&[
        "record",
        "-o",
        file.path(),
        "--duration",
        "0.3",
        &none,
        "--key",
        &k2,
    ]);
    assert_eq!(code, 2, "{err}");
}

/// Frames of `name` in the recording at `path`: the generations on its
/// lossless channels (every segment that carried the name), and the sum of
/// its missed events.
fn frames_and_missed(path: &str, name: &str) -> (Vec<u64>, u64) {
    frames_and_missed_in(&read_file(path), name)
}

/// [`frames_and_missed`] of a recording's bytes.
fn frames_and_missed_in(bytes: &[u8], name: &str) -> (Vec<u64>, u64) {
    let mut frames = Vec::new();
    let mut missed = 0;
    for m in mcap::MessageStream::new(bytes).unwrap() {
        let m = m.unwrap();
        match role(&m.channel) {
            "lossless" if m.channel.metadata["shmbus.topic"] == name => {
                frames.push(u64::from(m.sequence))
            }
            "missed" => {
                let v: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
                if v["topic"] == name {
                    missed += v["missed"].as_u64().unwrap();
                }
            }
            _ => {}
        }
    }
    (frames, missed)
}

/// A topic that appears while recording, and the same topic recreated
/// (a new segment at its key) while recording, each run a lap and more
/// through a 16-slot ring before the once-a-second rescan finds them: the
/// frames still in the ring are recorded, the ones overwritten before are
/// reported missed, and recorded + missed = published, by a recorder of
/// named topics and by one recording everything.
#[test]
fn topics_found_while_recording_report_the_frames_they_lost_first() {
    watchdog("found_later", Duration::from_secs(180));
    let (anchor, _g1) = unique_topic("found-anchor");
    let (later, _g2) = unique_topic("found-later");
    let later = later.slots(16);
    let _anchor_publisher = Publisher::<Check>::open(&anchor).unwrap();
    let named_file = TempFile::new("found-named");
    let all_file = TempFile::new("found-all");
    let mut named = Recorder::start(&[
        "record",
        &anchor.name,
        &later.name,
        "--no-json",
        "-o",
        named_file.path(),
    ]);
    let mut all = Recorder::start(&["record", "--no-json", "-o", all_file.path()]);
    let found = format!("recording new topic '{}'", later.name);
    for _pass in 0..2 {
        let mut p = Publisher::<Check>::open(&later).unwrap();
        // A burst: 184 or more frames overwritten before either recorder
        // can find the topic.
        publish_range(&mut p, 1..=200, Duration::ZERO);
        named.wait_line(&found);
        all.wait_line(&found);
        publish_range(&mut p, 201..=210, Duration::from_millis(2));
        drop(p);
        // Recreated: a new segment at the same key.
        shmbus_testkit::remove_key(later.key);
    }
    for (rec, path) in [(named, named_file.path()), (all, all_file.path())] {
        rec.signal(Signal::SIGINT);
        let (code, err) = rec.wait();
        assert_eq!(code, Some(0), "{err}");
        let (frames, missed) = frames_and_missed(path, &later.name);
        assert!(
            missed >= 2 * 184,
            "missed {missed}, frames {frames:?}\n{err}"
        );
        assert_eq!(
            frames.len() as u64 + missed,
            2 * 210,
            "frames {frames:?} + missed {missed}\n{err}"
        );
        assert_eq!(
            frames.iter().filter(|&&g| g == 210).count(),
            2,
            "{frames:?}"
        );
    }
}

/// A FIFO in a temp dir of its own, removed (with the dir) on drop, or by
/// the testkit's watchdog before it aborts.
struct Fifo(
    PathBuf,
    #[allow(dead_code, reason = "held for its drop, which removes the dir")]
    shmbus_testkit::TempDir,
);

impl Fifo {
    fn new(name: &str) -> Fifo {
        let dir = shmbus_testkit::TempDir::new(&format!("record-{name}"));
        let path = dir.join("out.mcap");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        Fifo(path, dir)
    }
    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        // A writer still waiting to open it (a failed test) is released;
        // the dir goes with the `TempDir` after this.
        let _ = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_nonblock())
            .open(&self.0);
    }
}

/// `tool(args)` with its stderr lines sent on a channel by a thread (the
/// channel closes when the tool's stderr does).
fn spawn_lines(args: &[&str]) -> (KillOnDrop, std::sync::mpsc::Receiver<String>) {
    let mut child = tool(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn recorder");
    let err = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in err.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (KillOnDrop(child), rx)
}

/// Lines from `rx` up to and including one that contains `needle`; fails
/// if the stream ends first or nothing comes for `limit`.
fn lines_until(rx: &std::sync::mpsc::Receiver<String>, needle: &str, limit: Duration) -> String {
    let mut seen = String::new();
    loop {
        match rx.recv_timeout(limit) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return seen;
                }
            }
            Err(e) => panic!("no line with '{needle}' ({e:?}); stderr so far:\n{seen}"),
        }
    }
}

/// `record -o FIFO` with nobody reading the FIFO: it says once that it
/// waits for a reader, and still ends at `--duration`, on SIGINT and on
/// SIGTERM (exit 2, "nothing recorded") instead of hanging in `open()`;
/// a reader that comes while it waits gets a whole recording.
#[test]
fn a_fifo_output_without_a_reader_is_waited_for_and_never_hangs() {
    watchdog("fifo_no_reader", Duration::from_secs(240));
    let (topic, _guard) = unique_topic("fifo-no-reader");
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    publish_range(&mut publisher, 1..=3, Duration::ZERO);
    let key = format!("0x{:08x}", topic.key as u32);
    let fifo = Fifo::new("fifo-no-reader");
    let waiting = format!("waiting for a reader on FIFO {}", fifo.path());
    let limit = Duration::from_secs(60);

    let (mut child, rx) = spawn_lines(&["record", &key, "-o", fifo.path(), "--duration", "1"]);
    let (code, _) = wait_exit(&mut child, limit, "record -o FIFO --duration 1");
    let err: String = rx.iter().map(|l| l + "\n").collect();
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.matches(&waiting).count(), 1, "{err}");
    assert!(err.contains("nothing recorded"), "{err}");

    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let (mut child, rx) = spawn_lines(&["record", &key, "-o", fifo.path()]);
        let mut err = lines_until(&rx, &waiting, limit);
        kill(Pid::from_raw(child.0.id() as i32), sig).unwrap();
        let (code, _) = wait_exit(&mut child, limit, "record -o FIFO after a signal");
        err.extend(rx.iter().map(|l| l + "\n"));
        assert_eq!(code, Some(2), "{sig}: {err}");
        assert!(err.contains("nothing recorded"), "{sig}: {err}");
    }

    // A reader that comes while the recorder waits: a finished recording.
    // `--duration` counts from the command's start, the wait included: 10 s
    // leaves the reader (opened as soon as the wait is announced) ample
    // time on a loaded machine or under qemu-arm, where 2 s was tight.
    let (mut child, rx) = spawn_lines(&[
        "record",
        &key,
        "--backlog",
        "-o",
        fifo.path(),
        "--duration",
        "10",
    ]);
    let mut err = lines_until(&rx, &waiting, limit);
    let reader = {
        let path = fifo.0.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .expect("read the FIFO");
            bytes
        })
    };
    let (code, _) = wait_exit(&mut child, limit, "record -o FIFO with a late reader");
    err.extend(rx.iter().map(|l| l + "\n"));
    assert_eq!(code, Some(0), "{err}");
    let bytes = reader.join().unwrap();
    let summary = mcap::Summary::read(&bytes)
        .unwrap()
        .expect("a finished file");
    let counts = summary.stats.expect("statistics").channel_message_counts;
    let lossless = summary
        .channels
        .iter()
        .find(|(_, c)| role(c) == "lossless")
        .map(|(id, _)| *id)
        .expect("a lossless channel");
    assert_eq!(counts.get(&lossless), Some(&3), "{err}");
}

/// A recording starts when its topics are found, not when its output is
/// open: the frames published while `record -o FIFO` waits for the FIFO's
/// reader are recorded (they were neither recorded nor counted as missed;
/// the same gap, microseconds wide, made
/// `replay_of_a_topic_recreated_while_recorded` lose its first frames on a
/// loaded machine). The frames before the recorder found the topic are not
/// recorded (no --backlog).
#[test]
fn frames_published_while_the_output_waits_for_its_reader_are_recorded() {
    watchdog("fifo_wait_frames", Duration::from_secs(240));
    let (topic, _guard) = unique_topic("fifo-wait-frames");
    let topic = topic.slots(16);
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    publish_range(&mut publisher, 1..=3, Duration::ZERO);
    let key = format!("0x{:08x}", topic.key as u32);
    let fifo = Fifo::new("fifo-wait-frames");
    let limit = Duration::from_secs(60);
    let (mut child, rx) = spawn_lines(&["record", &key, "-o", fifo.path()]);
    let mut err = lines_until(
        &rx,
        &format!("waiting for a reader on FIFO {}", fifo.path()),
        limit,
    );
    publish_range(&mut publisher, 4..=6, Duration::ZERO);
    let reader = {
        let path = fifo.0.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .expect("read the FIFO");
            bytes
        })
    };
    err.push_str(&lines_until(&rx, "Ctrl-C stops", limit));
    publish_range(&mut publisher, 7..=8, Duration::ZERO);
    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGINT).unwrap();
    let (code, _) = wait_exit(&mut child, limit, "record -o FIFO, stopped");
    err.extend(rx.iter().map(|l| l + "\n"));
    assert_eq!(code, Some(0), "{err}");
    let bytes = reader.join().unwrap();
    let (frames, missed) = frames_and_missed_in(&bytes, &topic.name);
    assert_eq!((frames, missed), ((4..=8).collect(), 0), "{err}");
}

/// A FIFO whose reader opened it and then stopped reading: the recorder's
/// writes block (the pipe is full), and once `--duration` is over it gives
/// up 5 s later (`STALL_LIMIT`) with exit 2 and "output stalled" instead of
/// blocking forever.
#[test]
fn a_fifo_reader_that_stops_reading_ends_the_recording_as_output_stalled() {
    watchdog("fifo_stalled", Duration::from_secs(240));
    type Blob = heapless::Vec<u8, 4096>;
    let (topic, _g) = unique_topic("fifo-stalled");
    let topic = topic.slots(64);
    let schema = shmbus_core::schema::schema_bytes::<Blob>().unwrap();
    let mut p = shmbus_pub::RawPublisher::open(&topic, &schema, 4100).unwrap();
    let frame = postcard::to_allocvec(&Blob::from_slice(&[7u8; 4000]).unwrap()).unwrap();
    // 256 KB in the ring, recorded with --backlog: far more than a pipe holds.
    for _ in 0..64 {
        p.publish_bytes(&frame).unwrap();
    }
    let fifo = Fifo::new("fifo-stalled");
    // Opened for reading, never read.
    let stuck_reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_nonblock())
        .open(&fifo.0)
        .unwrap();
    let key = format!("0x{:08x}", topic.key as u32);
    let (mut child, rx) = spawn_lines(&[
        "record",
        "--key",
        &key,
        "--backlog",
        "-o",
        fifo.path(),
        "--duration",
        "1",
    ]);
    let (code, _) = wait_exit(
        &mut child,
        Duration::from_secs(60),
        "record into a stuck FIFO",
    );
    let err: String = rx.iter().map(|l| l + "\n").collect();
    drop(stuck_reader);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("output stalled"), "{err}");
}

/// A topic past generation 2^32 (its header moved there while no publisher
/// ran; a reopened publisher carries on from it): `cat --json` prints each
/// frame's full 64-bit generation, though MCAP's `sequence` holds only
/// the low 32 bits, from the lossless channel's `shmbus.start_generation`.
#[test]
fn cat_prints_generations_past_2_to_the_32_in_full() {
    watchdog("gen64", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("gen64");
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    publish_range(&mut publisher, 1..=1, Duration::ZERO);
    drop(publisher);
    let base = (5u64 << 32) + 10;
    let id = shmbus_core::sys::shmget(topic.key, 0, 0).unwrap();
    let att = shmbus_core::sys::WriteAttachment::read_write(id).unwrap();
    let (lo, hi) = (att.atomic_word(192).unwrap(), att.atomic_word(196).unwrap());
    hi.store((base >> 32) as u32, std::sync::atomic::Ordering::Relaxed);
    lo.store(base as u32, std::sync::atomic::Ordering::Release);
    drop(att);
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    assert_eq!(publisher.raw().next_generation(), base + 1);
    let file = TempFile::new("gen64");
    let rec = Recorder::start(&["record", &topic.name, "-o", file.path()]);
    shmbus_testkit::wait_mapped(rec.child.0.id(), topic.key).unwrap();
    for i in 1..=5 {
        assert_eq!(publisher.publish(&Check::new(i)).unwrap(), base + i);
    }
    // Ctrl-C: the recorder reads what is in the ring before it stops.
    rec.signal(Signal::SIGINT);
    let (code, err) = rec.wait();
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(&["cat", file.path(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let generations: Vec<u64> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["topic"] == topic.name.as_str())
        .map(|v| v["generation"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = (1..=5).map(|i| base + i).collect();
    assert_eq!(generations, want, "{out}");
}

/// A topic removed and recreated while it was recorded (two lossless
/// channels, one name and key): with the same shape, replay publishes both
/// through one publisher; with another slot count, it refuses before it
/// publishes anything, naming both shapes, and never names its own pid as
/// a rival publisher.
#[test]
fn replay_of_a_topic_recreated_while_recorded() {
    watchdog("recreated", Duration::from_secs(180));
    for (second_slots, same) in [(16, true), (32, false)] {
        let (topic, _guard) = unique_topic("recreated");
        let file = TempFile::new(&format!("recreated-{second_slots}"));
        let mut p = Publisher::<Check>::open(&topic.clone().slots(16)).unwrap();
        let mut rec = Recorder::attached(&topic, &file);
        publish_range(&mut p, 1..=5, Duration::ZERO);
        drop(p);
        shmbus_testkit::remove_key(topic.key);
        let mut p = Publisher::<Check>::open(&topic.clone().slots(second_slots)).unwrap();
        rec.wait_line(&format!("recording new topic '{}'", topic.name));
        publish_range(&mut p, 1..=5, Duration::ZERO);
        drop(p);
        rec.signal(Signal::SIGINT);
        let (code, err) = rec.wait();
        assert_eq!(code, Some(0), "{err}");
        let (frames, missed) = frames_and_missed(file.path(), &topic.name);
        assert_eq!((frames.len(), missed), (10, 0), "{frames:?}\n{err}");

        let target = unique_key("recreated-replay");
        let _target_guard = Guard(target);
        let map = format!("{}={}", topic.name, target);
        let (code, _, err) = run(&["replay", file.path(), "--rate", "0", "--key", &map]);
        assert!(!err.contains("live publisher"), "{err}");
        if same {
            assert_eq!(code, 0, "{err}");
            assert!(err.contains("replayed 10 frames of 1 topic"), "{err}");
            let sub = shmbus_sub::RawSubscriber::attach(&topic.clone().key(target)).unwrap();
            assert_eq!(sub.generation(), 10);
        } else {
            assert_eq!(code, 2, "{err}");
            assert!(
                err.contains("recreated with another shape")
                    && err.contains("16 slots")
                    && err.contains("32 slots")
                    && err.contains("nothing was replayed"),
                "{err}"
            );
            assert!(
                shmbus_core::sys::shmget(target, 0, 0).is_err(),
                "nothing was created at the target key"
            );
        }
    }
}

/// A recording whose wall clock stepped an hour forward between two frames
/// (NTP on a board without an RTC): replay says what it waits for, instead
/// of going silent for an hour, and Ctrl-C ends the wait.
#[test]
fn replay_announces_a_long_gap_and_ctrl_c_ends_it() {
    watchdog("replay gap", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("replay-gap");
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    let (mono, real) = (
        shmbus_core::sys::monotonic_ns(),
        shmbus_core::sys::realtime_ns(),
    );
    publisher.publish_at(&Check::new(1), mono, real).unwrap();
    // An hour of silence on both clocks.
    let hour = 3_600_000_000_000;
    publisher
        .publish_at(&Check::new(2), mono + hour, real + hour)
        .unwrap();
    let file = TempFile::new("replay-gap");
    let key = format!("{}", topic.key);
    record_backlog(&key, file.path());

    let target = unique_key("replay-gap-target");
    let _target = Guard(target);
    let to = format!("{}={target}", topic.name);
    let mut child = KillOnDrop(
        tool(&["replay", file.path(), "--key", &to])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn replay"),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("read replay stderr");
        seen.push_str(&line);
        assert!(n > 0, "replay exited without announcing the gap:\n{seen}");
        if line.contains("waiting") {
            assert!(
                (line.contains("waiting 1.0 h for the next frame of")
                    || line.contains("waiting 60.0 min for the next frame of"))
                    && line.contains("--rate 0 replays without pauses"),
                "{line}"
            );
            break;
        }
    }
    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGINT).unwrap();
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{seen}{rest}");
    assert!(rest.contains("replayed 1 frame "), "{rest}");
}

/// A step of the wall clock while recording (NTP setting a board without
/// an RTC: an hour forward, then an hour back) is no pause in the replay:
/// frames are spaced by their monotonic publish times, 200 ms apart.
#[test]
fn replay_spaces_frames_by_the_monotonic_clock_across_a_wall_clock_step() {
    watchdog("replay clock step", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("replay-step");
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    let (mono, real) = (
        shmbus_core::sys::monotonic_ns(),
        shmbus_core::sys::realtime_ns(),
    );
    let (ms, hour) = (1_000_000, 3_600_000_000_000);
    for (g, m, r) in [
        (1, mono, real),
        (2, mono + 200 * ms, real + hour),
        (3, mono + 400 * ms, real - hour),
    ] {
        publisher.publish_at(&Check::new(g), m, r).unwrap();
    }
    let file = TempFile::new("replay-step");
    record_backlog(&format!("{}", topic.key), file.path());

    let target = unique_key("replay-step-target");
    let _target = Guard(target);
    let to = format!("{}={target}", topic.name);
    let (code, _, err) = run(&["replay", file.path(), "--key", &to]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("waiting"),
        "a clock step made a pause:\n{err}"
    );
    assert!(err.contains("replayed 3 frames"), "{err}");

    // The replayed frames keep their spacing (fresh stamps, at least the
    // recorded 400 ms from first to last: replay's schedule starts just
    // after the first publish): the monotonic stamps were used, not
    // dropped.
    let mut sub = Subscriber::<Check>::attach(&topic.clone().key(target)).unwrap();
    sub.raw().seek_oldest();
    let mut stamps = Vec::new();
    for g in 1..=3 {
        match sub.next().unwrap() {
            Next::Frame(s) => {
                assert_eq!(s.value, Check::new(g));
                stamps.push(s.mono_ns);
            }
            other => panic!("expected replayed frame {g}, got {other:?}"),
        }
    }
    let spread = stamps[2] - stamps[0];
    assert!(
        spread >= 400 * ms,
        "frames 1 and 3 replayed {spread} ns apart, recorded 400 ms apart"
    );
}

/// A named topic that is there when the recording starts but cannot be
/// recorded yet (two topics carry the name, both publishers gone: which
/// one is meant?) and is found once the other is removed. The 20 frames it
/// had at the start were published before the recording: neither recorded
/// nor reported missed (they were counted as 16 missed frames). The frames
/// published after the start are recorded.
#[test]
fn a_topic_found_later_does_not_count_frames_from_before_the_start_as_missed() {
    watchdog("found later", Duration::from_secs(120));
    let (a, _ga) = unique_topic("found-later-a");
    let (b, gb) = unique_topic("found-later-b");
    let (c, _gc) = unique_topic("found-later-c");
    let a = a.slots(4);
    let b = shmbus_core::Topic {
        name: a.name.clone(),
        ..b
    };
    let mut pa = Publisher::<Check>::open(&a).unwrap();
    publish_range(&mut pa, 1..=20, Duration::ZERO);
    drop(pa);
    drop(Publisher::<Check>::open(&b).unwrap());
    // A topic that can be recorded at once, so that the recording starts.
    let _pc = Publisher::<Check>::open(&c).unwrap();

    let file = TempFile::new("found-later");
    let mut rec = Recorder::start(&["record", &a.name, &c.name, "-o", file.path()]);
    assert!(
        rec.seen.contains("topics carry the name"),
        "expected the ambiguous name warned about:\n{}",
        rec.seen
    );
    drop(gb); // removes b: the name now means a
    rec.wait_line("recording new topic");
    let mut pa = Publisher::<Check>::open(&a).unwrap();
    publish_range(&mut pa, 21..=23, Duration::ZERO);
    std::thread::sleep(Duration::from_millis(500));
    rec.signal(Signal::SIGINT);
    let (code, err) = rec.wait();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("0 missed"), "{err}");

    let bytes = read_file(file.path());
    let mut generations = Vec::new();
    let mut missed = Vec::new();
    for m in mcap::MessageStream::new(&bytes).unwrap() {
        let m = m.unwrap();
        match role(&m.channel) {
            "lossless" => generations.push(u64::from(m.sequence)),
            "missed" => missed.push(String::from_utf8_lossy(&m.data).into_owned()),
            _ => {}
        }
    }
    assert_eq!(generations, [21, 22, 23], "{err}");
    assert!(missed.is_empty(), "missed events: {missed:?}");
}

/// A topic recorded while it published nothing is still listed by `cat`:
/// its channels with 0 messages, and the topic with its key (they used to
/// be left out, as if the topic had not been recorded at all).
#[test]
fn cat_lists_a_topic_that_published_nothing_while_recorded() {
    watchdog("cat silent topic", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("cat-silent");
    let _publisher = Publisher::<Check>::open(&topic).unwrap();
    let file = TempFile::new("cat-silent");
    let (code, _, err) = run(&[
        "record",
        &topic.name,
        "--duration",
        "0.3",
        "-o",
        file.path(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&["cat", file.path()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("messages: 0"), "{out}");
    assert!(out.contains("(no messages)"), "{out}");
    let lossless = format!("{}#postcard", topic.name);
    let row = out
        .lines()
        .find(|l| l.contains(&lossless))
        .unwrap_or_else(|| panic!("no channel row for {lossless}:\n{out}"));
    assert_eq!(
        row.split_whitespace().nth(5),
        Some("0"),
        "messages column: {row}"
    );
    let key = format!("0x{:08x}", topic.key as u32);
    assert!(
        out.lines()
            .any(|l| l.contains(&format!("{}: key {key}", topic.name))),
        "the topic is not listed:\n{out}"
    );
}

/// A second `record -o FILE` while a recorder writes FILE: refused with
/// exit 2 before it touches the file, and the first recording is whole.
/// Was: the second emptied the file (`O_TRUNC`) and both wrote into it;
/// the first said "wrote 803 frames", the file held 203.
#[test]
fn a_second_recorder_into_the_same_file_is_refused() {
    watchdog("second recorder", Duration::from_secs(180));
    let (topic, _g) = unique_topic("second-recorder");
    let file = TempFile::new("second-recorder");
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    let rec = Recorder::attached(&topic, &file);
    publish_range(&mut p, 1..=5, Duration::ZERO);
    let another = || {
        run(&[
            "record",
            &topic.name,
            "--no-json",
            "--duration",
            "0.3",
            "-o",
            file.path(),
        ])
    };
    let (code, _, err) = another();
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is being written by another `shmbus record`"),
        "{err}"
    );
    publish_range(&mut p, 6..=10, Duration::ZERO);
    rec.signal(Signal::SIGINT);
    let (code, err) = rec.wait();
    assert_eq!(code, Some(0), "{err}");
    let (frames, missed) = frames_and_missed(file.path(), &topic.name);
    assert_eq!(frames, (1..=10).collect::<Vec<u64>>(), "{err}");
    assert_eq!(missed, 0);
    // Once the first is done, the file is the next recording's to replace.
    let (code, _, err) = another();
    assert_eq!(code, 0, "{err}");
    assert_eq!(frames_and_missed(file.path(), &topic.name), (vec![], 0));
}

/// `cat` of a file a recorder is still writing says so, with the
/// recorder's pid, instead of "cut short (recorder killed?)"; once the
/// recorder is done the file is complete.
#[test]
fn cat_of_a_file_being_recorded_says_so() {
    watchdog("cat while recording", Duration::from_secs(180));
    let (topic, _g) = unique_topic("cat-live");
    let file = TempFile::new("cat-live");
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    let rec = Recorder::attached(&topic, &file);
    publish_range(&mut p, 1..=5, Duration::ZERO);
    let pid = rec.child.0.id();
    // Until its first chunk the file may be empty: that is said too.
    let (code, out, err) = run(&["cat", file.path()]);
    if std::fs::metadata(file.path()).unwrap().len() == 0 || code == 1 {
        assert!(
            code == 1
                && err.contains(&format!(
                    "is being recorded now (recorder pid {pid}) and holds nothing yet"
                )),
            "{code} {out} {err}"
        );
    }
    while std::fs::metadata(file.path()).unwrap().len() == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, out, err) = run(&["cat", file.path()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("BEING RECORDED now by pid {pid}")) && !out.contains("killed"),
        "{out}"
    );
    let (code, _, err) = run(&["cat", "--json", file.path()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("is being recorded now (recorder pid {pid})"))
            && !err.contains("killed"),
        "{err}"
    );
    rec.signal(Signal::SIGINT);
    let (code, err) = rec.wait();
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(&["cat", file.path()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(", complete)"), "{out}");
}

/// The messages a streaming reader reads from `bytes` (a file cut short
/// reads up to its last complete chunk): the generations of `name`'s
/// lossless frames, and whether the read ended without an error (the
/// bytes end at a record boundary).
fn readable_frames(bytes: &[u8], name: &str) -> (Vec<u64>, bool) {
    let options = mcap::sans_io::LinearReaderOptions::default().with_skip_end_magic(true);
    let mut frames = Vec::new();
    for m in mcap::io::MessageReader::new_with_options(bytes, options) {
        match m {
            Ok(m)
                if role(&m.channel) == "lossless" && m.channel.metadata["shmbus.topic"] == name =>
            {
                frames.push(u64::from(m.sequence))
            }
            Ok(_) => {}
            Err(_) => return (frames, false),
        }
    }
    (frames, true)
}

/// True if `bytes` is the MCAP magic and whole records up to its last
/// byte (opcode, 64-bit length, body): a file cut at a record boundary.
fn whole_records(bytes: &[u8]) -> bool {
    let mut at = 8;
    while at + 9 <= bytes.len() {
        let len = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap());
        at = match (at as u64 + 9).checked_add(len) {
            Some(end) if end <= bytes.len() as u64 => end as usize,
            _ => return false,
        };
    }
    bytes.starts_with(b"\x89MCAP0\r\n") && at == bytes.len()
}

/// The number after `before` in `text` (`keeps 123 of`).
fn number_after(text: &str, before: &str) -> Option<u64> {
    let rest = &text[text.find(before)? + before.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The file fills while recording (RLIMIT_FSIZE in the recorder's
/// process, SIGXFSZ ignored: each write past it fails with EFBIG, as a
/// full disk fails with ENOSPC): the recorder says so at once, exit 2,
/// with the file, the frames it keeps and that they stay readable; the
/// file is cut back to its last complete record and holds exactly those
/// frames; `cat` does not blame a kill. Was: `writing FILE failed: File
/// too large (os error 27)`, the file left at the limit inside a chunk,
/// and `cat` said `CUT SHORT (recorder killed?)`.
#[test]
fn a_file_that_fills_while_recording_is_cut_back_to_its_last_record() {
    use std::os::unix::process::CommandExt;
    watchdog("file fills", Duration::from_secs(240));
    // Room for two chunks at least (a chunk is cut at 256 KiB).
    const LIMIT: u64 = 640 * 1024;
    let (topic, _g) = unique_topic("fills");
    let topic = topic.slots(256);
    let file = TempFile::new("fills");
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    let mut cmd = tool(&["record", &topic.name, "--no-json", "-o", file.path()]);
    // SAFETY: between fork and exec only setrlimit and signal, both
    // async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(|| {
            let limit = nix::libc::rlimit {
                rlim_cur: LIMIT as nix::libc::rlim_t,
                rlim_max: LIMIT as nix::libc::rlim_t,
            };
            if nix::libc::setrlimit(nix::libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            nix::libc::signal(nix::libc::SIGXFSZ, nix::libc::SIG_IGN);
            Ok(())
        });
    }
    let mut rec = Recorder::spawned(cmd);
    shmbus_testkit::wait_mapped(rec.child.0.id(), topic.key).unwrap();
    // Publish until the recorder ends by itself (the file is full).
    let mut g = 0;
    while rec.child.0.try_wait().unwrap().is_none() {
        g += 1;
        p.publish(&Check::new(g)).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    let (code, err) = rec.wait();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("recording stopped: the file reached the largest size allowed")
            && err.contains(file.path())
            && err.contains("readable up to there"),
        "{err}"
    );
    let kept = number_after(&err, " keeps ").unwrap_or_else(|| panic!("{err}"));
    let recorded = number_after(&err, &format!(" keeps {kept} of the ")).expect("recorded");
    assert!(kept > 0 && kept <= recorded, "{err}");
    let bytes = read_file(file.path());
    assert!((bytes.len() as u64) < LIMIT, "{} bytes", bytes.len());
    assert!(
        whole_records(&bytes),
        "the file ends inside a record ({} bytes)",
        bytes.len()
    );
    let (frames, clean) = readable_frames(&bytes, &topic.name);
    assert!(clean, "the file does not read to its end");
    assert_eq!(frames.len() as u64, kept, "{err}");
    let (code, out, err) = run(&["cat", file.path()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("CUT SHORT") && out.contains("disk") && !out.contains("recorder killed?"),
        "{out}"
    );
}

/// An output device that is full from the start (`/dev/full`: ENOSPC on
/// every write), as the file and as standard output: exit 2, "the disk
/// is full", and that nothing reached it. Was: `writing /dev/full
/// failed: No space left on device (os error 28); free space on its file
/// system`, saying nothing of what it holds.
#[test]
fn a_full_device_as_the_output_says_the_disk_is_full_and_nothing_reached_it() {
    watchdog("dev full", Duration::from_secs(180));
    let (topic, _g) = unique_topic("dev-full");
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    publish_range(&mut p, 1..=5, Duration::ZERO);
    for (output, stdout) in [("/dev/full", false), ("/dev/stdout", true)] {
        let mut cmd = tool(&[
            "record",
            &topic.name,
            "--backlog",
            "--no-json",
            "-o",
            output,
        ]);
        if stdout {
            let full = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap();
            cmd.stdout(full);
        } else {
            cmd.stdout(Stdio::null());
        }
        let out = cmd.stderr(Stdio::piped()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{output}: {err}");
        assert!(
            err.contains(&format!(
                "recording stopped: the disk is full (No space left on device (os error 28)) writing {output}; nothing of the recording reached {output}"
            )),
            "{err}"
        );
    }
}

/// `replay FILE --loop` of `topic` into key `target`, running, and a
/// subscriber of the replayed topic once it holds generation `n` (60 s
/// watchdog).
fn replay_loop_until(
    file: &TempFile,
    topic: &shmbus_pub::Topic,
    target: i32,
    n: u64,
) -> (KillOnDrop, Subscriber<Check>) {
    let to = format!("{}={target}", topic.name);
    let child = KillOnDrop(
        tool(&["replay", file.path(), "--loop", "--key", &to])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let replayed = topic.clone().key(target);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sub = loop {
        if let Ok(s) = Subscriber::<Check>::attach(&replayed) {
            break s;
        }
        assert!(Instant::now() < deadline, "replay created no topic");
        std::thread::sleep(Duration::from_millis(20));
    };
    while sub.raw().generation() < n {
        assert!(Instant::now() < deadline, "--loop did not republish");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, sub)
}

/// A recording of `frames` of `Check` with the given monotonic publish
/// stamps (ns after now), taken from the ring (`--backlog`) into `file`.
fn recording_at(test: &str, offsets_ns: &[u64], file: &TempFile) -> (shmbus_pub::Topic, Guard) {
    let (topic, guard) = unique_topic(test);
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    let (mono, real) = (
        shmbus_core::sys::monotonic_ns(),
        shmbus_core::sys::realtime_ns(),
    );
    for (i, off) in offsets_ns.iter().enumerate() {
        publisher
            .publish_at(&Check::new(i as u64 + 1), mono + off, real + off)
            .unwrap();
    }
    drop(publisher);
    record_backlog(&format!("{}", topic.key), file.path());
    (topic, guard)
}

/// `replay --loop` starts each pass one frame interval after the last
/// frame of the one before, as if the recording went on; a file whose
/// frames span no time (one frame) has no pass length: it is replayed
/// once and `--loop` says why (exit 2). Was: the next pass started at
/// once (the last frame and the next pass's first went out together),
/// and a one-frame recording was republished as fast as the CPU went,
/// for ever (10,910 frames in 3 s of a recorded 20 Hz topic).
#[test]
fn replay_loop_spaces_its_passes_and_refuses_a_file_of_one_instant() {
    watchdog("loop passes", Duration::from_secs(180));
    let ms = 1_000_000;
    let file = TempFile::new("loop-passes");
    let (topic, _guard) = recording_at("loop-passes", &[0, 100 * ms, 200 * ms], &file);
    let target = unique_key("loop-passes-target");
    let _target = Guard(target);
    let (mut child, mut sub) = replay_loop_until(&file, &topic, target, 6);
    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGINT).unwrap();
    let (code, _) = wait_exit(&mut child, Duration::from_secs(60), "replay --loop");
    assert_eq!(code, Some(0));
    sub.raw().seek_oldest();
    let mut stamps = Vec::new();
    while let Next::Frame(s) = sub.next().unwrap() {
        stamps.push((s.value.seq, s.mono_ns));
    }
    assert!(stamps.len() >= 6, "{stamps:?}");
    assert_eq!(
        stamps[..6].iter().map(|s| s.0).collect::<Vec<_>>(),
        [1, 2, 3, 1, 2, 3]
    );
    // Frames 100 ms apart: each frame goes out at least its recorded
    // offset after its pass's first frame, and the second pass starts at
    // least the first pass's span plus one interval (300 ms) after the
    // first pass's first frame. Lower bounds from the frames' own stamps,
    // which no load can break: replay anchors its schedule just after the
    // first frame's publish and never publishes early. (The gap between
    // the first pass's last frame and the next pass's first can be short:
    // a last frame published late shortens it. It was asserted here, and
    // failed under qemu-arm on a loaded machine: 77 ms.)
    for (i, want) in [(1, 100 * ms), (2, 200 * ms), (3, 300 * ms)] {
        let after = stamps[i].1 - stamps[0].1;
        assert!(
            after >= want,
            "frame {i} went out {after} ns after the first, before its {want} ns: {stamps:?}"
        );
    }
    for (i, want) in [(4, 100 * ms), (5, 200 * ms)] {
        let after = stamps[i].1 - stamps[3].1;
        assert!(
            after >= want,
            "frame {i} went out {after} ns after its pass's first, before its {want} ns: {stamps:?}"
        );
    }

    // One frame: nothing to repeat at; replayed once, then said so.
    let one = TempFile::new("loop-one");
    let (topic, _guard) = recording_at("loop-one", &[0], &one);
    let target = unique_key("loop-one-target");
    let _target = Guard(target);
    let to = format!("{}={target}", topic.name);
    let mut child = KillOnDrop(
        tool(&["replay", one.path(), "--loop", "--key", &to])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (code, _) = wait_exit(
        &mut child,
        Duration::from_secs(60),
        "replay --loop of one frame",
    );
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("replayed 1 frame of 1 topic")
            && err.contains("span no time (1 frame at one instant)")
            && err.contains("--rate 0 --loop"),
        "{err}"
    );
    let mut sub = Subscriber::<Check>::attach(&topic.clone().key(target)).unwrap();
    assert_eq!(sub.raw().generation(), 1);
}

/// A topic removed (`shmbus rm`, `ipcrm`) while `replay --loop` publishes
/// it: replay stops publishing it, says so, and ends (exit 1) once it has
/// nothing left to publish, as `shmbus pub` does. Was: it went on
/// publishing into the removed segment, which no subscriber can find, for
/// ever.
#[test]
fn a_topic_removed_while_replayed_is_no_longer_published() {
    removed_while_replayed(false);
}

/// The same for its publisher lock alone (`ipcrm -s`): readers called the
/// replay gone, and a second publisher could start on the topic. Was: it
/// went on publishing, with no lock, for ever with `--loop`.
#[test]
fn a_topic_whose_lock_is_removed_while_replayed_is_no_longer_published() {
    removed_while_replayed(true);
}

fn removed_while_replayed(lock_only: bool) {
    watchdog("removed while replayed", Duration::from_secs(180));
    let ms = 1_000_000;
    let tag = if lock_only {
        "replay-unlocked"
    } else {
        "replay-removed"
    };
    let file = TempFile::new(tag);
    let (topic, _guard) = recording_at(tag, &[0, 20 * ms, 40 * ms], &file);
    let target = unique_key(&format!("{tag}-target"));
    let _target = Guard(target);
    let (mut child, mut sub) = replay_loop_until(&file, &topic, target, 4);
    if lock_only {
        assert!(shmbus_core::lock::remove_lock(target).expect("remove the replay's lock"));
    } else {
        let id = shmbus_core::sys::shmget(target, 0, 0).expect("the replayed segment");
        shmbus_core::sys::shm_remove(id).expect("remove the replayed segment");
    }
    let (code, _) = wait_exit(
        &mut child,
        Duration::from_secs(60),
        "replay of a removed topic",
    );
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(code, Some(1), "{err}");
    let said = if lock_only {
        format!(
            "the publisher lock of topic '{}' (key 0x{:08x}) was removed (`ipcrm -s`) while it was replayed",
            topic.name, target as u32
        )
    } else {
        format!(
            "topic '{}' (key 0x{:08x}) was removed (`shmbus rm`) while it was replayed",
            topic.name, target as u32
        )
    };
    assert!(
        err.contains(&said) && err.contains("replay stopped publishing"),
        "{err}"
    );
    assert_eq!(
        err.contains("(its publisher lock, `ipcrm -s`)"),
        lock_only,
        "{err}"
    );
    // What it published before is all the removed segment got.
    let g = sub.raw().generation();
    assert!(
        err.contains(&format!("({g} were)")),
        "generation {g}: {err}"
    );
}

/// The output deleted while it is recorded (`rm`, a cleaner of `/tmp`,
/// another file moved over it): the recorder notices at its next flush
/// (at least once a second), stops, and says the recording is lost (exit
/// 2). Moved (renamed) instead, the recording goes on into it, and the
/// last line names where it is now. Was: the recorder went on writing
/// into the deleted file until the end, then said `wrote FILE: 61
/// frames ..., 0 B` (exit 0) about a file that was not there; a moved
/// file was reported at its old name.
#[test]
fn an_output_deleted_or_moved_while_recorded_is_said() {
    watchdog("output deleted", Duration::from_secs(180));
    let (topic, _guard) = unique_topic("out-deleted");
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    let file = TempFile::new("out-deleted");
    let mut rec = Recorder::attached(&topic, &file);
    publish_range(&mut publisher, 1..=5, Duration::ZERO);
    std::fs::remove_file(&file.0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rec.child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the recorder went on recording into a deleted file:\n{}",
            rec.seen
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, err) = rec.wait();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{} was deleted while it was being recorded",
            file.path()
        )) && err.contains("went with it, nothing of this recording is kept"),
        "{err}"
    );
    assert!(!err.contains("wrote "), "{err}");
    assert!(!file.0.exists());

    // Moved: recorded to its end, and named where it is.
    let file = TempFile::new("out-moved");
    let moved = TempFile::new("out-moved-away");
    let rec = Recorder::start(&[
        "record",
        &topic.name,
        "--no-json",
        "--duration",
        "2",
        "-o",
        file.path(),
    ]);
    shmbus_testkit::wait_mapped(rec.child.0.id(), topic.key).unwrap();
    std::fs::rename(&file.0, &moved.0).unwrap();
    publish_range(&mut publisher, 6..=8, Duration::ZERO);
    let (code, err) = rec.wait();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "wrote {} (moved from {} while it was recorded): 3 frames",
            moved.path(),
            file.path()
        )),
        "{err}"
    );
    assert_eq!(lossless_count(moved.path(), &topic.name), Some(3));
}

/// `-o` naming a directory, or a file in a directory that does not exist:
/// the error names the cause and its fix, and nothing is created. Was:
/// `cannot create DIR: Is a directory (os error 21); check that the
/// directory exists and is writable` (it exists, and is writable).
#[test]
fn an_output_that_cannot_be_created_says_why_with_its_own_fix() {
    watchdog("output errors", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("out-errors");
    let _publisher = Publisher::<Check>::open(&topic).unwrap();
    let dir = shmbus_testkit::TempDir::new("out-errors");
    let d = dir.join("d");
    std::fs::create_dir(&d).unwrap();
    let d = d.to_str().unwrap().to_string();
    let (code, _, err) = run(&["record", &topic.name, "-o", &d, "--duration", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "cannot create {d}: Is a directory (os error 21); it is a directory; name a file in it, e.g. -o {d}/run.mcap"
        )),
        "{err}"
    );
    let missing = format!("{d}/no/such/dir");
    let out = format!("{missing}/run.mcap");
    let (code, _, err) = run(&["record", &topic.name, "-o", &out, "--duration", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "the directory {missing} does not exist; create it first (`mkdir -p {missing}`)"
        )),
        "{err}"
    );
    // A file where a directory should be: `mkdir -p` of it fails, so it
    // is named as the file it is (was: "the directory ... does not exist;
    // create it first (`mkdir -p ...`)").
    let file = dir.join("f.mcap");
    std::fs::write(&file, b"").unwrap();
    let file = file.to_str().unwrap().to_string();
    let out = format!("{file}/sub/run.mcap");
    let (code, _, err) = run(&["record", &topic.name, "-o", &out, "--duration", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "Not a directory (os error 20); {file} is a file, not a directory"
        )) && !err.contains("mkdir"),
        "{err}"
    );
    // A name longer than a file system takes (was: "check that the
    // directory exists and is writable").
    let out = format!("{d}/{}.mcap", "x".repeat(300));
    let (code, _, err) = run(&["record", &topic.name, "-o", &out, "--duration", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("(os error 36); the name is too long for its file system"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "nothing created");
}

/// Every `shmbus-record` command line in the docs exists with the options
/// it gives (`shmbus_testkit::docs`, as `shmbus`'s in `shmbus-cli`).
#[test]
fn every_recorder_command_the_docs_show_has_the_options_they_give() {
    shmbus_testkit::docs::assert_programs(
        env!("CARGO_MANIFEST_DIR"),
        "shmbus-record",
        &[("shmbus-record", env!("CARGO_BIN_EXE_shmbus-record"), true)],
        &[],
        1,
    );
}

/// A publisher that goes while its topic is recorded (here: dropped, as a
/// crash releases its lock) is said on stderr once, and its return once;
/// the recording goes on and holds the frames of both runs. Before, the
/// recorder said nothing: a sensor crash read as a rate gone to zero.
#[test]
fn a_publisher_that_goes_and_comes_back_is_said_and_both_runs_are_recorded() {
    watchdog("record-publisher-gone", Duration::from_secs(180));
    let (topic, _guard) = unique_topic("pubgone");
    let topic = topic.slots(64);
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    let file = TempFile::new("pubgone");
    let mut rec = Recorder::attached(&topic, &file);
    publish_range(&mut p, 1..=5, Duration::from_millis(1));
    drop(p);
    rec.wait_line("is not running");
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    publish_range(&mut p, 6..=10, Duration::from_millis(1));
    rec.wait_line("is running again");
    rec.signal(Signal::SIGINT);
    let (code, err) = rec.wait();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        err.matches("is not running").count(),
        1,
        "said once, not at every look: {err}"
    );
    assert!(
        err.contains(&format!(
            "the publisher of '{}' is not running: no frames from it until it starts again (the recording goes on)",
            topic.name
        )),
        "{err}"
    );
    assert_eq!(lossless_count(file.path(), &topic.name), Some(10), "{err}");
}

/// `-o -` is standard output (it was a file named "-" in the current
/// directory): the recording arrives on the pipe, whole, and no file is
/// made.
#[test]
fn dash_as_the_output_is_standard_output() {
    watchdog("record-dash", Duration::from_secs(180));
    let (topic, _guard) = unique_topic("dash");
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    publish_range(&mut p, 1..=3, Duration::ZERO);
    let dir = shmbus_testkit::TempDir::new("record-dash");
    let out = tool(&[
        "record",
        &topic.name,
        "--backlog",
        "--no-json",
        "--duration",
        "0.5",
        "-o",
        "-",
    ])
    .current_dir(dir.path())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .output()
    .expect("run shmbus-record");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        !dir.path().join("-").exists(),
        "a file named '-' was made: {err}"
    );
    let summary = mcap::Summary::read(&out.stdout)
        .expect("an MCAP file on standard output")
        .expect("a finished one, with its summary");
    let (id, _) = summary
        .channels
        .iter()
        .find(|(_, c)| role(c) == "lossless" && c.metadata["shmbus.topic"] == topic.name)
        .expect("the topic's channel");
    let counts = summary.stats.expect("statistics").channel_message_counts;
    assert_eq!(counts.get(id), Some(&3), "{err}");
    // The summary line says how much reached the pipe (was "0 B", the
    // size of a pipe's inode, whatever was written).
    let size = shmbus_toolbox::units::bytes(out.stdout.len() as u64);
    assert!(
        err.contains(&format!(
            "wrote /dev/stdout: 3 frames of 1 topic (0 missed), {size}; cpu"
        )),
        "{} bytes reached standard output: {err}",
        out.stdout.len()
    );
}

/// A replay stopped (Ctrl-C) before some topic's first frame removes the
/// topics it created and published nothing on, as a failed replay does:
/// they were left behind empty, with their locks, under "replayed 1
/// frames of 2 topics". The topic that got its frame stays.
#[test]
fn a_replay_stopped_before_a_topics_first_frame_removes_that_topic() {
    watchdog("replay-stop-unused", Duration::from_secs(120));
    let (early, _g1) = unique_topic("replay-stop-early");
    let (late, _g2) = unique_topic("replay-stop-late");
    let (mono, real) = (
        shmbus_core::sys::monotonic_ns(),
        shmbus_core::sys::realtime_ns(),
    );
    let hour = 3_600_000_000_000;
    let mut p = Publisher::<Check>::open(&early).unwrap();
    p.publish_at(&Check::new(1), mono, real).unwrap();
    let mut q = Publisher::<Check>::open(&late).unwrap();
    // Its only frame an hour after the other topic's.
    q.publish_at(&Check::new(2), mono + hour, real + hour)
        .unwrap();
    drop((p, q));
    let file = TempFile::new("replay-stop-unused");
    let (e, l) = (early.key.to_string(), late.key.to_string());
    record_backlog_of(&[&e, &l], file.path());

    let (early_key, late_key) = (
        unique_key("replay-stop-early-to"),
        unique_key("replay-stop-late-to"),
    );
    let (_t1, _t2) = (Guard(early_key), Guard(late_key));
    let (to_early, to_late) = (
        format!("{}={early_key}", early.name),
        format!("{}={late_key}", late.name),
    );
    let (mut child, rx) =
        spawn_lines(&["replay", file.path(), "--key", &to_early, "--key", &to_late]);
    // Both topics are open before the first frame; the wait for the late
    // one's frame is announced.
    let limit = Duration::from_secs(60);
    let seen = lines_until(&rx, "waiting", limit);
    assert!(
        shmbus_core::sys::shmget(late_key, 0, 0).is_ok(),
        "the late topic is open before the first frame:\n{seen}"
    );
    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGINT).unwrap();
    let (code, _) = wait_exit(&mut child, limit, "replay, stopped");
    let rest: String = rx.iter().map(|l| l + "\n").collect();
    assert_eq!(code, Some(0), "{seen}{rest}");
    assert!(
        rest.contains("replayed 1 frame of 1 topic")
            && rest.contains("1 topic it created got no frame and was removed"),
        "{rest}"
    );
    assert!(
        shmbus_core::sys::shmget(late_key, 0, 0).is_err(),
        "the late topic is left, empty:\n{rest}"
    );
    assert!(
        shmbus_core::sys::sem_lookup(late_key).is_err(),
        "its lock is left:\n{rest}"
    );
    let mut s = shmbus_sub::Subscriber::<Check>::attach(&early.clone().key(early_key))
        .expect("the early topic stays");
    assert_eq!(s.latest().unwrap().map(|f| f.value.seq), Some(1));
}

/// `--backlog` of several topics writes their backlogs merged in publish
/// order. Each reader sends its topic's backlog as one batch, and they
/// were written as they came: one topic's whole backlog, then the
/// other's, so the file went back in time between them, and replay
/// (which publishes in file order) sent the second topic's older frames
/// at once, out of order, and without the pauses between them.
#[test]
fn a_backlog_of_several_topics_is_written_in_publish_order() {
    watchdog("backlog-order", Duration::from_secs(120));
    let (a, _ga) = unique_topic("backlog-order-a");
    let (b, _gb) = unique_topic("backlog-order-b");
    let (mono, real) = (
        shmbus_core::sys::monotonic_ns(),
        shmbus_core::sys::realtime_ns(),
    );
    let ms = 1_000_000;
    let mut pa = Publisher::<Check>::open(&a).unwrap();
    let mut pb = Publisher::<Check>::open(&b).unwrap();
    // Interleaved in time: a at 0, 20, 40 ms; b at 10, 30, 50 ms.
    for i in 0..3u64 {
        let (ta, tb) = (20 * i * ms, (20 * i + 10) * ms);
        pa.publish_at(&Check::new(i), mono + ta, real + ta).unwrap();
        pb.publish_at(&Check::new(i), mono + tb, real + tb).unwrap();
    }
    drop((pa, pb));
    let file = TempFile::new("backlog-order");
    let (ka, kb) = (a.key.to_string(), b.key.to_string());
    record_backlog_of(&[&ka, &kb], file.path());
    let bytes = read_file(file.path());
    let order: Vec<(String, u64)> = mcap::MessageStream::new(&bytes)
        .unwrap()
        .map(|m| m.unwrap())
        .filter(|m| role(&m.channel) == "lossless")
        .map(|m| {
            let name = m.channel.topic.trim_end_matches("#postcard").to_string();
            (name, (m.publish_time - mono) / ms)
        })
        .collect();
    let expected: Vec<(String, u64)> = (0..6)
        .map(|i| {
            let t = if i % 2 == 0 { &a } else { &b };
            (t.name.clone(), 10 * i)
        })
        .collect();
    assert_eq!(order, expected, "frames in file order (topic, ms)");
}

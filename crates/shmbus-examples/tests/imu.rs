//! End-to-end: run `imu-publisher` and `imu-subscriber` as processes on a
//! topic of their own and check what the subscriber printed.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmbus_testkit::{Guard, KillOnDrop, unique_key, watchdog};

/// The binary, behind `SHMBUS_TEST_RUNNER` (e.g. qemu-arm) if set.
fn command(exe: &str) -> Command {
    let mut cmd = shmbus_testkit::command(exe);
    shmbus_testkit::dies_with_parent(&mut cmd);
    cmd
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
fn subscriber_prints_the_publishers_frames_in_order() {
    watchdog("imu end-to-end", Duration::from_secs(180));
    let key = unique_key("imu-e2e");
    let _guard = Guard(key);
    let key_arg = format!("0x{key:08x}");
    let name = "examples/imu-e2e";
    let count = 40;
    // The subscriber first: it waits for the topic to appear.
    let mut sub = KillOnDrop(
        command(env!("CARGO_BIN_EXE_imu-subscriber"))
            .args([
                "--name",
                name,
                "--key",
                &key_arg,
                "--count",
                &count.to_string(),
            ])
            .args(["--wait", "60", "--timeout", "30"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn imu-subscriber"),
    );
    let mut publisher = KillOnDrop(
        command(env!("CARGO_BIN_EXE_imu-publisher"))
            .args([
                "--name",
                name,
                "--key",
                &key_arg,
                "--rate",
                "200",
                "--duration",
                "120",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn imu-publisher"),
    );
    let mut out = String::new();
    sub.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = sub.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "imu-subscriber did not exit");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "imu-subscriber failed: {status:?}\n{out}");
    assert!(
        out.starts_with(&format!("subscribed to '{name}' at key {key_arg}")),
        "{out}"
    );

    let frames: Vec<&str> = out.lines().filter(|l| l.starts_with("frame ")).collect();
    assert_eq!(frames.len(), count, "{out}");
    // In order, and every gap announced: after the first frame, each frame is
    // the one after the previous, plus whatever "missed N" said in between.
    let (mut expect, mut missed) = (None::<u64>, 0u64);
    for l in out.lines() {
        if let Some(m) = l.strip_prefix("missed ") {
            let n: u64 = m.split_whitespace().next().unwrap().parse().unwrap();
            missed += n;
            expect = expect.map(|e| e + n);
        } else if l.starts_with("frame ") {
            let generation: u64 = field(l, "gen").parse().unwrap();
            let seq: u64 = field(l, "seq").parse().unwrap();
            // A fresh topic: the publisher's sample n is generation n + 1.
            assert_eq!(generation, seq + 1, "{l}");
            assert_eq!(field(l, "frame_id"), "imu_link", "{l}");
            assert!(l.contains(" 9.810]"), "acc z is gravity: {l}");
            if let Some(e) = expect {
                assert_eq!(
                    generation, e,
                    "out of order or an unannounced gap: {l}\n{out}"
                );
            }
            expect = Some(generation + 1);
            let lag: f64 = field(l, "lag_us").parse().unwrap();
            assert!(lag >= 0.0, "{l}");
        }
    }
    assert!(
        out.ends_with(&format!("received {count} frames, missed {missed}\n")),
        "{out}"
    );

    // The publisher is still running; stop it.
    publisher.0.kill().unwrap();
    publisher.0.wait().unwrap();
    let mut pout = String::new();
    publisher
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut pout)
        .unwrap();
    assert!(
        pout.starts_with(&format!("publishing '{name}' at key {key_arg}")),
        "{pout}"
    );
}

#[test]
fn subscriber_without_a_topic_fails_with_a_clear_error() {
    watchdog("imu no topic", Duration::from_secs(60));
    let key = unique_key("imu-missing");
    let _guard = Guard(key);
    let out = command(env!("CARGO_BIN_EXE_imu-subscriber"))
        .args([
            "--name",
            "examples/nobody",
            "--key",
            &key.to_string(),
            "--wait",
            "0.2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("start its publisher first"), "{err}");
}

/// Seconds and rates that are negative, not a number or out of range are
/// a one-line error, exit 1: `--timeout -1`, `--wait nan`, `--duration inf`
/// and `--rate 1e-300` panicked (exit 101 and a backtrace), and
/// `--duration -5` published for ever. Nothing is created.
#[test]
fn bad_numbers_are_refused_in_one_line() {
    watchdog("imu bad numbers", Duration::from_secs(120));
    let key = unique_key("imu-bad-numbers");
    let _guard = Guard(key);
    let key_arg = key.to_string();
    for (exe, flag, value) in [
        (env!("CARGO_BIN_EXE_imu-subscriber"), "--timeout", "-1"),
        (env!("CARGO_BIN_EXE_imu-subscriber"), "--wait", "nan"),
        (env!("CARGO_BIN_EXE_imu-subscriber"), "--wait", "1e30"),
        (env!("CARGO_BIN_EXE_imu-publisher"), "--duration", "inf"),
        (env!("CARGO_BIN_EXE_imu-publisher"), "--duration", "-5"),
        (env!("CARGO_BIN_EXE_imu-publisher"), "--duration", "NaN"),
        (env!("CARGO_BIN_EXE_imu-publisher"), "--rate", "1e-300"),
    ] {
        let out = command(exe)
            .args(["--key", &key_arg, flag, value])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{exe} {flag} {value}: {err}");
        assert!(err.contains(flag) && err.lines().count() == 1, "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            shmbus_core::sys::shmget(key, 0, 0).is_err(),
            "{flag} {value}"
        );
    }
}

/// A stdout that nobody reads (`| head -1`): the publisher publishes on and
/// removes its topic as asked (`--remove true`), exit 0; the subscriber
/// ends quietly, exit 0. Both panicked in `println!` (exit 101), and the
/// publisher left its topic behind.
#[test]
fn a_closed_stdout_is_no_panic() {
    watchdog("imu closed stdout", Duration::from_secs(180));
    let key = unique_key("imu-closed-stdout");
    let _guard = Guard(key);
    let key_arg = key.to_string();
    let name = "examples/imu-closed-stdout";
    // The reader of each stdout is closed as soon as the child runs.
    let run_closed = |cmd: &mut Command| {
        let mut child = KillOnDrop(
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        drop(child.0.stdout.take());
        let status = child.0.wait().unwrap();
        let mut err = String::new();
        child
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    };
    let (status, err) = run_closed(command(env!("CARGO_BIN_EXE_imu-publisher")).args([
        "--name", name, "--key", &key_arg, "--rate", "1000", "--count", "200", "--remove", "true",
    ]));
    assert!(status.success(), "imu-publisher: {status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        shmbus_core::sys::shmget(key, 0, 0).is_err(),
        "--remove true left the topic"
    );
    // The subscriber, with a publisher to read from.
    let _publisher = KillOnDrop(
        command(env!("CARGO_BIN_EXE_imu-publisher"))
            .args(["--name", name, "--key", &key_arg])
            .args(["--rate", "200", "--duration", "120"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (status, err) = run_closed(command(env!("CARGO_BIN_EXE_imu-subscriber")).args([
        "--name",
        name,
        "--key",
        &key_arg,
        "--count",
        "1000000",
        "--wait",
        "60",
        "--timeout",
        "60",
    ]));
    assert!(status.success(), "imu-subscriber: {status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// What a typeless tool could publish on the IMU topic: the same wire layout
/// with a longer `frame_id` than `Imu`'s 16 bytes.
#[derive(serde::Serialize)]
struct LongName {
    seq: u32,
    t_us: u64,
    frame_id: heapless::String<32>,
    acc: [f32; 3],
    gyro: [f32; 3],
    temp_c: f32,
}

/// One frame the typed subscriber cannot decode (a 20-byte `frame_id` for
/// a `heapless::String<16>`) is reported and skipped; the frames after it
/// are printed as usual and the subscriber finishes its count.
#[test]
fn subscriber_skips_a_frame_it_cannot_decode() {
    use postcard::experimental::max_size::MaxSize;
    use std::io::BufRead;
    watchdog("imu skip", Duration::from_secs(180));
    let key = unique_key("imu-skip");
    let _guard = Guard(key);
    let name = "examples/imu-skip";
    let topic = shmbus_pub::Topic::new(name).key(key);
    let schema = shmbus_core::schema::schema_bytes::<shmbus_examples::Imu>().unwrap();
    let mut publisher =
        shmbus_pub::RawPublisher::open(&topic, &schema, shmbus_examples::Imu::POSTCARD_MAX_SIZE)
            .unwrap();
    let mut sub = KillOnDrop(
        command(env!("CARGO_BIN_EXE_imu-subscriber"))
            .args([
                "--name",
                name,
                "--key",
                &format!("0x{key:08x}"),
                "--count",
                "3",
            ])
            .args(["--wait", "60", "--timeout", "30"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn imu-subscriber"),
    );
    let mut out = std::io::BufReader::new(sub.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("subscribed to"), "{line}");
    let frame = |seq: u32, id: &str| {
        postcard::to_stdvec(&LongName {
            seq,
            t_us: 1,
            frame_id: heapless::String::from(id),
            acc: [0.0, 0.0, 9.81],
            gyro: [0.0; 3],
            temp_c: 20.0,
        })
        .unwrap()
    };
    publisher.publish_bytes(&frame(0, "imu_link")).unwrap();
    publisher
        .publish_bytes(&frame(1, "a_frame_name_of_20_b"))
        .unwrap();
    publisher.publish_bytes(&frame(2, "imu_link")).unwrap();
    publisher.publish_bytes(&frame(3, "imu_link")).unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = sub.0.wait().unwrap();
    assert!(status.success(), "{status:?}\n{rest}");
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(lines.len(), 5, "{rest}");
    assert!(lines[0].starts_with("frame gen=1 seq=0 "), "{rest}");
    assert!(
        lines[1].starts_with("skipped: frame 2 does not decode"),
        "{rest}"
    );
    assert!(lines[2].starts_with("frame gen=3 seq=2 "), "{rest}");
    assert!(lines[3].starts_with("frame gen=4 seq=3 "), "{rest}");
    assert_eq!(lines[4], "received 3 frames, missed 0, skipped 1");
}

/// Every command line of the examples in the docs exists with the options
/// it gives (`shmbus_testkit::docs`, as `shmbus`'s in `shmbus-cli`).
#[test]
fn every_example_command_the_docs_show_has_the_options_they_give() {
    shmbus_testkit::docs::assert_programs(
        env!("CARGO_MANIFEST_DIR"),
        "shmbus-examples",
        &[
            ("imu-publisher", env!("CARGO_BIN_EXE_imu-publisher"), false),
            (
                "imu-subscriber",
                env!("CARGO_BIN_EXE_imu-subscriber"),
                false,
            ),
        ],
        &[],
        1,
    );
}

/// A child's output, line by line, read on a thread of its own.
struct Lines {
    who: &'static str,
    rx: std::sync::mpsc::Receiver<String>,
    /// Every line read so far, for the messages.
    seen: String,
}

impl Lines {
    fn of(who: &'static str, out: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Lines {
            who,
            rx,
            seen: String::new(),
        }
    }

    /// The next line for which `want` holds, within a generous watchdog.
    fn next_where(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(90);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push_str(&l);
                    self.seen.push('\n');
                    if want(&l) {
                        return l;
                    }
                }
                Err(e) => panic!(
                    "no line {what} from {} ({e}); it said:\n{}",
                    self.who, self.seen
                ),
            }
        }
    }

    /// The next line that contains `what`.
    fn next_with(&mut self, what: &str) -> String {
        self.next_where(&format!("with {what:?}"), |l| l.contains(what))
    }

    /// The next `frame gen=G ...` line with G above `after`.
    fn frame_after(&mut self, after: u64) -> u64 {
        let l = self.next_where(&format!("of a frame after generation {after}"), |l| {
            l.starts_with("frame ") && field(l, "gen").parse::<u64>().unwrap() > after
        });
        field(&l, "gen").parse().unwrap()
    }
}

/// A new frame from `sub` (a generation above `after`), within a watchdog.
fn frame_after(sub: &mut shmbus_sub::Subscriber<shmbus_examples::Imu>, after: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = sub.latest().expect("read the topic") {
            if s.generation > after {
                return s.generation;
            }
        }
        assert!(Instant::now() < end, "no frame after generation {after}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What a user copies first must survive what happens to long-running
/// publishers: systemd-logind's `RemoveIPC` at logout, `shmbus rm --force`
/// or `ipcrm` remove the segment (or the lock alone) under it. Before, the
/// example publisher went on writing into a segment no reader could find,
/// and the example subscriber ended with an error.
#[test]
fn the_examples_carry_on_when_the_topic_is_removed_under_them() {
    use shmbus_core::PublisherStatus;
    use shmbus_sub::Subscriber;

    watchdog("imu removed", Duration::from_secs(300));
    let key = unique_key("imu-removed");
    let _guard = Guard(key);
    let key_arg = format!("0x{key:08x}");
    let name = "examples/imu-removed";
    let topic = shmbus_pub::Topic::new(name).key(key);
    let mut publisher = KillOnDrop(
        command(env!("CARGO_BIN_EXE_imu-publisher"))
            .args(["--name", name, "--key", &key_arg])
            .args(["--rate", "200", "--duration", "240"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn imu-publisher"),
    );
    let pid = publisher.0.id() as i32;
    let mut said = Lines::of("imu-publisher", publisher.0.stderr.take().unwrap());
    // The example subscriber, reading all along (far more frames than the
    // test takes: it is stopped at the end).
    let mut reader = KillOnDrop(
        command(env!("CARGO_BIN_EXE_imu-subscriber"))
            .args(["--name", name, "--key", &key_arg, "--count", "1000000000"])
            .args(["--wait", "60", "--timeout", "30"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn imu-subscriber"),
    );
    let mut read = Lines::of("imu-subscriber", reader.0.stdout.take().unwrap());

    // 1. The segment goes (`ipcrm -m`): a new one at the same key, read on.
    let mut sub = Subscriber::wait_for_topic(&topic, Duration::from_secs(60)).expect("attach");
    frame_after(&mut sub, 0);
    read.frame_after(0);
    let old = shmbus_core::sys::shmget(key, 0, 0).expect("the topic's segment");
    shmbus_core::sys::shm_remove(old).expect("remove the segment");
    let l = said.next_with("was removed while publishing");
    assert!(l.contains(&format!("the topic '{name}'")), "{}", said.seen);
    said.next_with("publishing 'examples/imu-removed' again");
    let new = shmbus_core::sys::shmget(key, 0, 0).expect("a new segment");
    assert_ne!(new, old, "{}", said.seen);
    let mut sub = Subscriber::attach(&topic).expect("attach the new segment");
    let g2 = frame_after(&mut sub, 0);
    frame_after(&mut sub, g2);
    assert_eq!(
        sub.publisher(),
        PublisherStatus::Alive { pid },
        "{}",
        said.seen
    );
    // The subscriber said so, attached the new segment and reads it (its
    // generations start again from 1).
    read.next_with("the topic was removed; waiting up to 60.0 s for it to be created again");
    read.next_with("attached the topic again");
    let r2 = read.frame_after(0);
    read.frame_after(r2);

    // 2. The lock alone goes (`ipcrm -s`): readers said "not running" and a
    // second publisher could start; the publisher takes a lock again.
    assert!(shmbus_core::lock::remove_lock(key).expect("remove the lock"));
    let l = said.next_with("was removed while publishing");
    assert!(
        l.contains(&format!("the publisher lock of the topic '{name}'")),
        "{}",
        said.seen
    );
    said.next_with("publishing 'examples/imu-removed' again");
    assert_eq!(
        sub.publisher(),
        PublisherStatus::Alive { pid },
        "{}",
        said.seen
    );
    // The same segment (it was not removed), still carrying new frames.
    assert_eq!(
        shmbus_core::sys::shmget(key, 0, 0).ok(),
        Some(new),
        "{}",
        said.seen
    );
    let g3 = frame_after(&mut sub, g2);
    frame_after(&mut sub, g3);
    // The subscriber reads on: a frame published after the lock came back.
    read.frame_after(g3);
    assert!(
        reader.0.try_wait().unwrap().is_none(),
        "imu-subscriber ended:\n{}",
        read.seen
    );

    publisher.0.kill().unwrap();
    publisher.0.wait().unwrap();
}

/// SIGTERM (`systemctl stop`), Ctrl-C and SIGHUP end the example publisher
/// between two frames, never in the middle of one. It is held at the
/// first moment a slot is mid-write (odd sequence, read through a
/// read-only mapping) and sent the signal there: it must die of that
/// signal and leave no slot odd
/// (`shmbus_testkit::assert_stop_signals_end_it_between_frames`). Before, it died with the slot
/// mid-write, and every in-order reader got "publisher died mid-publish"
/// for it until the next start repaired it.
#[test]
fn a_stop_signal_never_ends_the_publisher_in_the_middle_of_a_frame() {
    watchdog(
        "a_stop_signal_never_ends_the_publisher_in_the_middle_of_a_frame",
        Duration::from_secs(600),
    );
    let key = unique_key("imu-stop-mid-frame");
    let _guard = Guard(key);
    let key_arg = format!("0x{key:08x}");
    let name = "examples/imu-stop";
    shmbus_testkit::assert_stop_signals_end_it_between_frames("imu-publisher", key, || {
        let mut c = command(env!("CARGO_BIN_EXE_imu-publisher"));
        // As fast as it goes: most of its time is spent publishing.
        c.args(["--name", name, "--key", &key_arg, "--rate", "1000000"])
            .args(["--duration", "300"])
            .stdout(Stdio::null());
        c
    });
}

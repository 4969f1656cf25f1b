//! Config tests: good configs, and every kind of bad one, checking the
//! exact `path:line:col` of each problem.

use std::time::Duration;

use shmbus_core::LockPolicy;
use shmbus_core::topic::derive_key;

use crate::find::find_in;
use crate::{BUILTIN_DEMO, Config, ConfigSource};

fn errors(text: &str) -> Vec<String> {
    match Config::parse(text, "t.toml") {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

/// Assert the errors start with these `line:col` positions and contain
/// these words, in order.
fn assert_errors(text: &str, expected: &[(&str, &str)]) {
    let got = errors(text);
    assert_eq!(got.len(), expected.len(), "errors: {got:#?}");
    for (g, (pos, words)) in got.iter().zip(expected) {
        assert!(
            g.starts_with(&format!("t.toml:{pos}: ")),
            "expected at {pos}: {g}"
        );
        assert!(g.contains(words), "expected '{words}' in: {g}");
    }
}

#[test]
fn a_full_topic_parses_with_every_field() {
    let text = r#"
bus = "board"
[defaults]
mode = 0o640
lock = "required"
[[topic]]
name = "imu"
key = 0x53000001
slots = 64
group = "0"
notify = false
publisher_user = 0
rate_hz = 1000
max_age_ms = 20
publisher = "shmbus-sensor-imu"
description = "the IMU"
[[topic]]
name = "power/battery"
mode = "0644"
lock = "off"
rate_hz = 0.5
"#;
    let c = Config::parse(text, "t.toml").unwrap();
    assert_eq!(c.bus, "board");
    let imu = c.topic("imu").unwrap();
    assert_eq!(
        (imu.key, imu.key_derived, imu.slots, imu.mode),
        (0x5300_0001, false, 64, 0o640)
    );
    assert_eq!((imu.lock, imu.notify), (LockPolicy::Required, false));
    assert_eq!(imu.group.as_deref(), Some("0"));
    assert_eq!(imu.publisher_user.as_deref(), Some("0"));
    assert_eq!((imu.rate_hz, imu.max_age_ms), (Some(1000.0), Some(20)));
    assert_eq!(imu.publisher.as_deref(), Some("shmbus-sensor-imu"));
    assert_eq!(imu.at.to_string(), "t.toml:7:8");
    let t = imu.to_topic().unwrap();
    assert_eq!(
        (t.key, t.group, t.publisher_uid, t.slots),
        (0x5300_0001, Some(0), Some(0), 64)
    );
    let bat = c.topic("power/battery").unwrap();
    assert_eq!(
        (bat.key, bat.key_derived),
        (derive_key("board", "power/battery"), true)
    );
    assert_eq!(
        (bat.mode, bat.lock, bat.slots, bat.notify),
        (0o644, LockPolicy::Off, 16, true)
    );
    assert!(
        c.require_topic("gnss")
            .unwrap_err()
            .contains("imu, power/battery")
    );
}

#[test]
fn defaults_work_unprivileged() {
    let c = Config::parse("[[topic]]\nname = \"x\"\n", "t.toml").unwrap();
    let t = &c.topics[0];
    assert_eq!(c.bus, "shmbus");
    assert_eq!(
        (t.slots, t.mode, t.lock, t.notify),
        (16, 0o644, LockPolicy::Try, true)
    );
    assert_eq!((t.group.as_ref(), t.publisher_user.as_ref()), (None, None));
    let topic = t.to_topic().unwrap();
    assert_eq!(topic, shmbus_core::Topic::new("x"));
}

#[test]
fn staleness_uses_max_age_then_rate() {
    let c = Config::parse(
        "[[topic]]\nname = \"a\"\nmax_age_ms = 100\n[[topic]]\nname = \"b\"\nrate_hz = 10\n[[topic]]\nname = \"c\"\n",
        "t.toml",
    )
    .unwrap();
    assert!(!c.topics[0].is_stale(Duration::from_millis(100)));
    assert!(c.topics[0].is_stale(Duration::from_millis(101)));
    assert!(!c.topics[1].is_stale(Duration::from_millis(300)));
    assert!(c.topics[1].is_stale(Duration::from_millis(301)));
    assert!(!c.topics[2].is_stale(Duration::from_secs(3600)));
}

#[test]
fn unknown_fields_everywhere_are_all_reported_with_a_hint() {
    assert_errors(
        "buss = \"x\"\n[defaults]\nslot = 4\n[[topic]]\nname = \"a\"\nrate = 5\nfoo = 1\n",
        &[
            (
                "1:1",
                "unknown field `buss` in the top level; did you mean `bus`?",
            ),
            (
                "3:1",
                "unknown field `slot` in [defaults]; did you mean `slots`?",
            ),
            ("6:1", "unknown field `rate` in [[topic]]"),
            (
                "7:1",
                "unknown field `foo` in [[topic]]; known fields: name, key",
            ),
        ],
    );
}

#[test]
fn bad_modes_say_how_to_write_them() {
    assert_errors(
        "[[topic]]\nname = \"a\"\nmode = 644\n[[topic]]\nname = \"b\"\nmode = 0o444\n[[topic]]\nname = \"c\"\nmode = 0o666\n[[topic]]\nname = \"d\"\nmode = \"rw\"\n[[topic]]\nname = \"e\"\nmode = 0o4644\n[[topic]]\nname = \"f\"\nmode = true\n",
        &[
            ("3:8", "write mode = 0o644"),
            (
                "6:8",
                "must let the owner (the publisher) read and write: use 0o644",
            ),
            ("9:8", "lets group or others write the segment"),
            ("12:8", "not an octal number"),
            ("15:8", "bits outside 0o777"),
            ("18:8", "`mode` must be an octal integer"),
        ],
    );
}

/// The hint suits what was written: decimal digits that are all octal
/// get "0o" in front; 8s and 9s get no impossible "0o999"; hex and binary
/// are taken for the bits they name; a negative or huge value is named as
/// written, never as a two's-complement octal.
#[test]
fn mode_hints_suit_every_way_of_writing_an_integer() {
    assert_errors(
        "[[topic]]\nname = \"a\"\nmode = 999\n[[topic]]\nname = \"b\"\nmode = -644\n[[topic]]\nname = \"c\"\nmode = 0o7777777777777\n[[topic]]\nname = \"d\"\nmode = 0x1b6\n",
        &[
            (
                "3:8",
                "8 and 9 are not octal digits: write the mode in octal, e.g. mode = 0o644",
            ),
            ("6:8", "mode = -644 is not a file mode: use e.g. 0o644"),
            ("9:8", "mode = 549755813887 is not a file mode"),
            (
                "12:8",
                "mode = 0o666 lets group or others write the segment",
            ),
        ],
    );
    for ok in ["0x1a4", "0b110100100", "0o644"] {
        let text = format!("[[topic]]\nname = \"a\"\nmode = {ok}\n");
        let c = crate::Config::parse(&text, "f").unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(c.topics[0].mode, 0o644, "{ok}");
    }
    let e = crate::Config::parse("[[topic]]\nname = \"a\"\nmode = 999\n", "f").unwrap_err();
    assert!(!e.to_string().contains("0o999"), "{e}");
}

#[test]
fn slots_must_be_a_power_of_two() {
    assert_errors(
        "[[topic]]\nname = \"a\"\nslots = 12\n[[topic]]\nname = \"b\"\nslots = 0\n[[topic]]\nname = \"c\"\n  slots = 131072\n",
        &[
            (
                "3:9",
                "slots = 12 must be a power of two from 1 to 65536: use slots = 16",
            ),
            ("6:9", "use slots = 1"),
            ("9:11", "use slots = 65536"),
        ],
    );
}

#[test]
fn bad_lock_policy_and_types() {
    assert_errors(
        "[[topic]]\nname = \"a\"\nlock = \"yes\"\nnotify = \"true\"\nrate_hz = -1\nmax_age_ms = 0\npublisher = \"\"\n",
        &[
            (
                "3:8",
                "lock = \"yes\" is not a lock policy: use \"required\"",
            ),
            ("4:10", "`notify` must be true or false, found string"),
            (
                "5:11",
                "rate_hz = -1 must be more than 0 and at most 1000000",
            ),
            ("6:14", "must be greater than 0"),
            ("7:13", "`publisher` is empty"),
        ],
    );
}

/// `rate_hz` out of range: the message says 0 itself is refused, and quotes
/// the value as written, cut by the one rule for outside text (whole up to
/// 64 characters, else the first 40 and the length), never as the 301
/// digits of `1e300`.
#[test]
fn rate_hz_out_of_range_says_so_and_quotes_the_value_as_written() {
    let long = format!("{}.5", "1".repeat(80));
    let text = format!(
        "[[topic]]\nname = \"a\"\nrate_hz = 0\n[[topic]]\nname = \"b\"\nrate_hz = 1e300\n[[topic]]\nname = \"c\"\nrate_hz = 0.0\n[[topic]]\nname = \"d\"\nrate_hz = {long}\n[[topic]]\nname = \"e\"\nrate_hz = nan\n"
    );
    let cut = format!("rate_hz = {}... (82 bytes) must be", &long[..40]);
    assert_errors(
        &text,
        &[
            (
                "3:11",
                "rate_hz = 0 must be more than 0 and at most 1000000 (frames per second)",
            ),
            (
                "6:11",
                "rate_hz = 1e300 must be more than 0 and at most 1000000",
            ),
            ("9:11", "rate_hz = 0.0 must be more than 0"),
            ("12:11", &cut),
            ("15:11", "rate_hz = nan must be more than 0"),
        ],
    );
    for e in errors(&text) {
        assert!(e.len() < 200, "a long value is cut: {e}");
    }
}

#[test]
fn bad_keys_and_names() {
    assert_errors(
        "[[topic]]\nname = \"a\"\nkey = 0\n[[topic]]\nname = \"b\"\nkey = \"0x53000001\"\n[[topic]]\nname = \"c\"\nkey = 0x1_0000_0000\n[[topic]]\nname = \"bad name\"\n[[topic]]\nkey = 5\n",
        &[
            ("3:7", "IPC_PRIVATE"),
            ("6:7", "write key = 0x53000001 without quotes"),
            ("9:7", "does not fit in 32 bits"),
            ("11:8", "contains ' '"),
            ("12:1", "has no `name`"),
        ],
    );
}

#[test]
fn duplicate_topics_and_keys() {
    assert_errors(
        "[[topic]]\nname = \"a\"\nkey = 0x53000001\n[[topic]]\nname = \"a\"\n[[topic]]\nname = \"b\"\nkey = 0x53000001\n",
        &[
            (
                "5:8",
                "duplicate topic `a` (first declared at line 2): rename one of them",
            ),
            (
                "7:8",
                "key 0x53000001 (explicit) of topic `b` collides with the explicit key of topic `a` (line 2)",
            ),
        ],
    );
}

#[test]
fn explicit_key_colliding_with_a_derived_one() {
    let k = derive_key("shmbus", "a");
    let text = format!(
        "[[topic]]\nname = \"a\"\n[[topic]]\nname = \"b\"\nkey = 0x{:08x}\n",
        k as u32
    );
    assert_errors(
        &text,
        &[(
            "4:8",
            "collides with the derived key of topic `a` (line 2): give each topic its own key",
        )],
    );
}

/// Two names whose derived keys collide (24-bit hash: found by search).
fn colliding_names(bus: &str) -> (String, String) {
    let mut seen = std::collections::HashMap::new();
    for i in 0.. {
        let name = format!("t{i}");
        if let Some(first) = seen.insert(derive_key(bus, &name), name.clone()) {
            return (first, name);
        }
    }
    unreachable!()
}

#[test]
fn derived_key_collision_is_reported_with_the_fix() {
    let (a, b) = colliding_names("shmbus");
    let text = format!("[[topic]]\nname = \"{a}\"\n[[topic]]\nname = \"{b}\"\n");
    assert_errors(&text, &[("4:8", "(derived) of topic")]);
    let e = errors(&text).join("");
    assert!(
        e.contains("set an explicit `key = 0x...` on one of them, or rename one"),
        "{e}"
    );
    // Moving to another bus re-derives the keys: the collision goes away
    // (or, if it moves, is reported again).
    let mut c = Config::parse(&format!("bus = \"x\"\n{text}"), "t.toml").unwrap();
    assert!(c.rebus("shmbus").is_err());
}

#[test]
fn toml_syntax_and_shape_errors_have_positions() {
    assert_errors(
        "[[topic]]\nname = \"a\nslots = 4\n",
        &[("2:10", "TOML syntax: invalid basic string")],
    );
    assert_errors(
        "[[topic]]\nname = \"a\"\nname = \"b\"\n",
        &[("3:1", "TOML syntax: duplicate key")],
    );
    assert_errors(
        "[topic]\nname = \"a\"\n",
        &[("1:1", "write [[topic]] (double brackets)")],
    );
    assert_errors("bus = \"x\"\n", &[("1:1", "no topics")]);
    assert_errors(
        "bus = 3\n[[topic]]\nname = \"a\"\n",
        &[("1:7", "`bus` must be a string, found integer")],
    );
}

#[test]
fn unknown_group_and_user_are_reported_where_they_are_written() {
    let c = Config::parse(
        "[defaults]\ngroup = \"no-such-group-shmbus\"\n[[topic]]\nname = \"a\"\npublisher_user = \"no-such-user-shmbus\"\n",
        "t.toml",
    )
    .unwrap();
    let e = c.topics[0].to_topic().unwrap_err().to_string();
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 2, "{e}");
    assert!(
        lines[0].starts_with("t.toml:2:9: group `no-such-group-shmbus` does not exist"),
        "{e}"
    );
    assert!(
        lines[1].starts_with("t.toml:5:18: user `no-such-user-shmbus` does not exist"),
        "{e}"
    );
    assert!(lines[1].contains("useradd --system"), "{e}");
}

#[test]
fn the_builtin_demo_config_is_valid_and_has_a_publisher_per_topic() {
    let c = Config::parse(BUILTIN_DEMO, "demo.toml").unwrap();
    assert_eq!(c, Config::builtin_demo().with_path("demo.toml"));
    assert!(c.topics.len() >= 6);
    for t in &c.topics {
        assert!(t.publisher.is_some(), "{} has no publisher", t.name);
        assert!(
            t.key_derived,
            "{}: the demo derives keys so that rebus works",
            t.name
        );
        t.to_topic().unwrap();
    }
    let mut moved = c.clone();
    moved.rebus("demo-12345").unwrap();
    assert_ne!(moved.topics[0].key, c.topics[0].key);
    assert_eq!(
        moved.topics[0].key,
        derive_key("demo-12345", &c.topics[0].name)
    );
}

#[test]
fn the_shipped_configs_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            Config::load(&p).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 2, "expected demo.toml and a board config in {dir}");
}

#[test]
fn search_order_explicit_then_env_then_system_then_builtin() {
    let tmp_dir = shmbus_testkit::TempDir::new("config-test");
    let dir = tmp_dir.path().to_path_buf();
    let a = dir.join("a.toml");
    let b = dir.join("b.toml");
    let sys = dir.join("system.toml");
    std::fs::write(&a, "bus = \"a\"\n[[topic]]\nname = \"x\"\n").unwrap();
    std::fs::write(&b, "bus = \"b\"\n[[topic]]\nname = \"x\"\n").unwrap();
    let missing = dir.join("missing.toml");

    let (c, s) = find_in(Some(&a), Some(b.clone()), &sys).unwrap();
    assert_eq!(
        (c.bus.as_str(), s),
        ("a", ConfigSource::Explicit(a.clone()))
    );
    let (c, s) = find_in(None, Some(b.clone()), &sys).unwrap();
    assert_eq!((c.bus.as_str(), s), ("b", ConfigSource::Env(b.clone())));
    let (c, s) = find_in(None, None, &sys).unwrap();
    assert_eq!((c.bus.as_str(), s), ("demo", ConfigSource::Builtin));
    std::fs::write(&sys, "bus = \"sys\"\n[[topic]]\nname = \"x\"\n").unwrap();
    let (c, s) = find_in(None, None, &sys).unwrap();
    assert_eq!(
        (c.bus.as_str(), s),
        ("sys", ConfigSource::System(sys.clone()))
    );
    // A named file that is missing is an error, not a fall-through.
    let e = find_in(None, Some(missing.clone()), &sys)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{}: cannot read the config", missing.display())),
        "{e}"
    );
    // ... that says where the path came from ($SHMBUS_CONFIG, set and
    // forgotten, was named nowhere).
    assert!(
        e.ends_with("(the path is $SHMBUS_CONFIG's: fix it, or `unset SHMBUS_CONFIG` to use /etc/shmbus/shmbus.toml or the built-in demo config)"),
        "{e}"
    );
    let e = find_in(Some(&missing), None, &sys).unwrap_err().to_string();
    assert!(!e.contains("SHMBUS_CONFIG"), "{e}");
}

#[test]
fn the_format_example_in_the_readme_is_a_valid_config() {
    let readme = include_str!("../../../configs/README.md");
    let start = readme.find("```toml\n").expect("a ```toml block") + 8;
    let end = start + readme[start..].find("```").unwrap();
    let c = Config::parse(&readme[start..end], "README.md").unwrap_or_else(|e| panic!("{e}"));
    let imu = c.topic("imu").unwrap();
    assert_eq!(
        (imu.key, imu.slots, imu.mode, imu.lock),
        (0x5300_0001, 64, 0o640, LockPolicy::Required)
    );
}

/// `Config::load(path)` on a thread, or `None` if it has not returned
/// within `limit` (then the thread is left behind: the test fails anyway).
fn load_within(path: &std::path::Path, limit: Duration) -> Option<Result<Config, String>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(Config::load(&p).map_err(|e| e.to_string()));
    });
    rx.recv_timeout(limit).ok()
}

/// A config path that is a device, a FIFO nobody writes, a directory, a
/// huge file or not UTF-8 gets an error at once; it never blocks and
/// never reads without bound (`--config /dev/zero` read until memory ran
/// out). A pipe with a writer (`--config <(...)`) still works.
#[test]
fn loading_is_bounded_and_never_blocks() {
    let limit = Duration::from_secs(60);
    let tmp_dir = shmbus_testkit::TempDir::new("config-load");
    let dir = tmp_dir.path().to_path_buf();
    let huge = dir.join("huge.toml");
    std::fs::write(&huge, "#".repeat(crate::MAX_CONFIG_BYTES as usize + 1)).unwrap();
    let latin1 = dir.join("latin1.toml");
    std::fs::write(&latin1, b"bus = \"caf\xe9\"\n").unwrap();
    let fifo = dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for (path, want) in [
        (std::path::PathBuf::from("/dev/zero"), "device"),
        (huge, "larger than 1024 KiB"),
        (latin1, "not UTF-8"),
        (dir.clone(), "directory"),
        (fifo.clone(), "no topics"),
    ] {
        let got = load_within(&path, limit)
            .unwrap_or_else(|| panic!("loading {} did not return", path.display()));
        let err = got
            .err()
            .unwrap_or_else(|| panic!("{} loaded", path.display()));
        assert!(err.contains(want), "{}: {err}", path.display());
    }
    // A pipe is read to its end (`--config <(...)` is /dev/fd/N of one).
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let mut w = std::fs::File::from(write_end);
    std::io::Write::write_all(&mut w, BUILTIN_DEMO.as_bytes()).unwrap();
    drop(w);
    let piped = std::path::PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&read_end)
    ));
    let c = load_within(&piped, limit).expect("loading a pipe returns");
    assert_eq!(c.expect("the piped config loads").topics.len(), 6);
    drop(read_end);
}

/// Every message line is short and has no control character, whatever the
/// file holds (a 10 kB value with terminal escapes in any field, as a key,
/// or as a number).
fn assert_short_and_printable(what: &str, message: &str) {
    for line in message.lines() {
        assert!(
            line.len() < 400,
            "{what}: a {}-byte line: {:?}",
            line.len(),
            line.chars().take(300).collect::<String>()
        );
        assert!(
            !line.chars().any(char::is_control),
            "{what}: a control character in: {line:?}"
        );
    }
}

#[test]
fn values_from_the_file_are_shown_cut_short_and_escaped() {
    let bad = format!("\\u001b]0;pwn\\u0007\\u001b[2J\\r{}", "x".repeat(10_000));
    let digits = "9".repeat(10_000);
    let topic = "[[topic]]\nname = \"a\"\n";
    let mut files = Vec::new();
    for (table, fields) in [
        ("", &["bus"][..]),
        (
            "[defaults]\n",
            &["mode", "lock", "group", "publisher_user"][..],
        ),
        (
            "[[topic]]\nname = \"b\"\n",
            &["key", "mode", "lock", "group", "publisher_user", "name"][..],
        ),
        (
            "[bridge]\n",
            &["board_id", "prefix", "format", "topics"][..],
        ),
        ("[[bridge.out]]\n", &["topic", "format"][..]),
        (
            "[[bridge.in]]\ntopic = \"a\"\nschema = \"s.json\"\n",
            &["from", "format"][..],
        ),
    ] {
        for field in fields {
            let value = if *field == "topics" {
                format!("[\"{bad}\"]")
            } else {
                format!("\"{bad}\"")
            };
            files.push(format!("{topic}{table}{field} = {value}\n"));
        }
        files.push(format!("{topic}{table}\"{bad}\" = 1\n"));
        files.push(format!("{topic}{table}slots = {digits}\n"));
    }
    // The remote topic of an earlier [[bridge.in]], named by a later one.
    files.push(format!(
        "{topic}[[topic]]\nname = \"b\"\n[[bridge.in]]\nfrom = \"{bad}\"\ntopic = \"a\"\nschema = \"s.json\"\n[[bridge.in]]\nfrom = \"c\"\ntopic = \"a\"\nschema = \"s.json\"\n"
    ));
    let mut accepted = Vec::new();
    for text in &files {
        match Config::parse(text, "t.toml") {
            Err(e) => assert_short_and_printable(&text[..60], &e.to_string()),
            Ok(c) => {
                let errors: Vec<String> = c
                    .topics
                    .iter()
                    .filter_map(|t| t.to_topic().err().map(|e| e.to_string()))
                    .collect();
                if errors.is_empty() {
                    accepted.push(text.chars().take(120).collect::<String>());
                }
                for e in errors {
                    assert_short_and_printable(&text[..60], &e);
                }
            }
        }
    }
    assert!(accepted.is_empty(), "accepted: {accepted:#?}");
}

/// `Config::parse` on a thread, or `None` if it has not returned within
/// `limit` (then the thread is left behind: the test fails anyway).
fn parse_within(text: String, limit: Duration) -> Option<Result<Config, crate::ConfigErrors>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Config::parse(&text, "big.toml"));
    });
    rx.recv_timeout(limit).ok()
}

/// A file of the largest size `load` takes with a problem on every line
/// (a log or a script given as `--config`) is answered with the first
/// `MAX_ERRORS` problems and a count of the rest, not one line per
/// problem (a syntax error on every line: so is a file up to
/// `RECOVER_BYTES`; a larger one gets its first, see
/// `tests/memory.rs`); and a position costs no scan of the file, so neither
/// such a file nor one whose topics are all on one line takes time
/// quadratic in its size (each took minutes before: 262,144 unknown
/// fields, 15 s per 20,000 lines and growing with the square).
///
/// The sizes are the limits' on the host. Under emulation
/// (`SHMBUS_STRESS_SCALE` below 1: the armv7 suite under qemu-arm, where
/// this test took 277 s of debug code) they shrink by that factor, never
/// below what each case needs (past `RECOVER_BYTES`, more problems than
/// `MAX_ERRORS`): the time bound is a property of the code, measured at
/// full size on the host; the emulated run checks the answers on 32 bits.
#[test]
fn a_file_full_of_problems_is_answered_in_a_few_lines() {
    let limit = Duration::from_secs(300);
    let scale = shmbus_testkit::stress_scale().min(1.0);
    let scaled = |n: usize, at_least: usize| ((n as f64 * scale) as usize).max(at_least);
    let size = scaled(crate::MAX_CONFIG_BYTES as usize, 2 * crate::RECOVER_BYTES);
    let unknown: String = (0..size / 10).map(|i| format!("k{i:06}=1\n")).collect();
    for (what, text, first, problems) in [
        (
            "duplicate keys",
            "a=1\n".repeat(crate::RECOVER_BYTES / 4),
            "2:1",
            crate::RECOVER_BYTES / 4 - 1,
        ),
        ("unknown fields", unknown, "1:1", size / 10 + 1),
        (
            "syntax errors",
            "=\n".repeat(crate::RECOVER_BYTES / 2),
            "1:1",
            0,
        ),
    ] {
        let e = parse_within(text, limit)
            .unwrap_or_else(|| panic!("{what}: parse did not return"))
            .expect_err(what);
        let shown = e.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), crate::MAX_ERRORS + 1, "{what}: {shown}");
        assert!(
            lines[0].starts_with(&format!("big.toml:{first}: ")),
            "{what}: {}",
            lines[0]
        );
        let last = lines.last().unwrap();
        assert!(
            last.starts_with("big.toml: ") && last.contains("more problems not shown"),
            "{what}: {last}"
        );
        if problems > 0 {
            assert_eq!(e.len(), problems, "{what}");
            assert!(
                last.contains(&format!("{} more", problems - crate::MAX_ERRORS)),
                "{what}: {last}"
            );
        }
    }
    // Past RECOVER_BYTES the first syntax error alone, saying so (keeping
    // every one cost 426 MB of heap for the `=` lines before).
    for (what, text, first) in [
        ("duplicate keys", "a=1\n".repeat(size / 4), "2:1"),
        ("syntax errors", "=\n".repeat(size / 2), "1:1"),
    ] {
        let e = parse_within(text, limit)
            .unwrap_or_else(|| panic!("{what}: parse did not return"))
            .expect_err(what);
        let shown = e.to_string();
        assert_eq!(shown.lines().count(), 1, "{what}: {shown}");
        assert!(
            shown.starts_with(&format!("big.toml:{first}: TOML syntax: "))
                && shown.contains("only its first syntax error is listed"),
            "{what}: {shown}"
        );
    }
    // 30,000 topics on one line: a position per topic, each counted in
    // characters from the start of that line. Explicit keys, so that no
    // two collide.
    let n = scaled(30_000, 1_000);
    let items: Vec<String> = (0..n)
        .map(|i| format!("{{description=\"é\",name=\"t{i}\",key={}}}", i + 1))
        .collect();
    let text = format!("topic = [{}]\n", items.join(","));
    let c = parse_within(text.clone(), limit)
        .expect("parse returns")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.topics.len(), n);
    let last = c.topics.last().unwrap();
    let offset = text.rfind("name=").unwrap() + "name=".len();
    assert_eq!(
        (last.at.line, last.at.col),
        (1, text[..offset].chars().count() + 1)
    );
}

/// The built-in demo config stands in only for a system config that is not
/// there. One that cannot be read, a symbolic link to a file that is gone
/// (a board image that moved it), or a path this user cannot look at
/// (`/etc/shmbus` not searchable by this user: `ENOTDIR` here, as root
/// passes every permission check) is an error naming the path; all three
/// gave the demo's topics and keys before, without a word.
#[test]
fn a_system_config_that_cannot_be_read_is_an_error_not_the_demo() {
    let tmp_dir = shmbus_testkit::TempDir::new("config-system");
    let dir = tmp_dir.path().to_path_buf();
    let dangling = dir.join("dangling.toml");
    std::os::unix::fs::symlink(dir.join("gone.toml"), &dangling).unwrap();
    let file = dir.join("file");
    std::fs::write(&file, "").unwrap();
    let under_a_file = file.join("shmbus.toml");
    let (c, s) = find_in(None, None, &dir.join("missing.toml")).unwrap();
    assert_eq!((c.bus.as_str(), s), ("demo", ConfigSource::Builtin));
    for path in [&dangling, &under_a_file, &dir] {
        let e = match find_in(None, None, path) {
            Ok((c, s)) => panic!("{}: loaded bus {} from {s}", path.display(), c.bus),
            Err(e) => e.to_string(),
        };
        assert!(
            e.starts_with(&format!("{}: cannot read the config", path.display())),
            "{e}"
        );
    }
}

/// A topic's rate below the publishers' floor was taken and then run at
/// the floor (the sensors clamp to 0.001 Hz) while staleness went by the
/// rate as written (`rate_hz = 1e-9`: a topic "stale" only after 95
/// years). It is refused, with the floor the tools use.
#[test]
fn a_topic_rate_below_what_publishers_run_is_refused() {
    assert_eq!(
        crate::parse::MIN_TOPIC_RATE_HZ,
        shmbus_toolbox::parse::MIN_RATE
    );
    assert_errors(
        "[[topic]]\nname = \"a\"\nrate_hz = 1e-9\n[[topic]]\nname = \"b\"\nrate_hz = 0.0009\n[[topic]]\nname = \"c\"\nrate_hz = 1e-300\n",
        &[
            (
                "3:11",
                "rate_hz = 0.000000001 is below 0.001 (one frame per 1000 s)",
            ),
            ("6:11", "rate_hz = 0.0009 is below 0.001"),
            ("9:11", "rate_hz = 1e-300 is below 0.001"),
        ],
    );
    let c = Config::parse("[[topic]]\nname = \"a\"\nrate_hz = 0.001\n", "t.toml").unwrap();
    assert_eq!(c.topics[0].rate_hz, Some(0.001));
}

/// A config path with control characters (given with `--config` or in
/// `$SHMBUS_CONFIG`) reaches no terminal raw: every message and the
/// source line show it escaped and whole. Before, `ESC[2J` cleared the
/// screen and a line break forged a second line of output.
#[test]
fn a_config_path_with_control_characters_is_shown_escaped() {
    let dir = shmbus_testkit::TempDir::new("config-path-escaped");
    let bad = dir.path().join("a\u{1b}[2Jb\nforged: ok.toml");
    // Missing: the "cannot read" message.
    let e = Config::load(&bad).unwrap_err().to_string();
    assert!(e.contains("a\\u001b[2Jb\\u000aforged: ok.toml"), "{e}");
    assert!(!e.contains('\u{1b}') && !e.contains('\n'), "{e:?}");
    // Present but invalid: a located message.
    std::fs::write(&bad, "bus = 7\n").unwrap();
    let e = Config::load(&bad).unwrap_err().to_string();
    assert!(e.contains("a\\u001b[2Jb\\u000aforged: ok.toml:1:"), "{e}");
    assert!(!e.contains('\u{1b}'), "{e:?}");
    // Where the config came from.
    let s = ConfigSource::Explicit(bad.clone()).to_string();
    assert!(
        s.ends_with("a\\u001b[2Jb\\u000aforged: ok.toml (--config)"),
        "{s}"
    );
    // A plain path is shown as it is.
    let plain = dir.path().join("plain.toml");
    assert_eq!(
        ConfigSource::System(plain.clone()).to_string(),
        plain.display().to_string()
    );
}

/// `group` or `publisher_user` = 4294967295 is `(gid_t)-1` / `(uid_t)-1`,
/// the kernel's "no id": the check said OK, then the publisher failed with
/// `semctl(IPC_SET): Invalid argument`, and every reader refused the topic
/// as a squat (no segment can belong to uid 4294967295). It is refused
/// where it is written, as an integer or a string, in a topic or in
/// `[defaults]`, and so is a numeric id that fits no id; a
/// `TopicConfig` made by hand gets the same answer from `to_topic`.
#[test]
fn an_id_the_kernel_reserves_or_that_fits_no_id_is_refused() {
    assert_errors(
        "[defaults]\npublisher_user = 4294967295\n[[topic]]\nname = \"a\"\ngroup = 4294967295\n[[topic]]\nname = \"b\"\ngroup = \"4294967295\"\npublisher_user = \"-1\"\n[[topic]]\nname = \"c\"\ngroup = \"99999999999\"\npublisher_user = 4294967296\n",
        &[
            (
                "2:18",
                "`publisher_user` = 4294967295 is (uid_t)-1, which the kernel reserves for \"no uid\" (a publisher would fail with EINVAL): give the real uid or a name",
            ),
            ("5:9", "`group` = 4294967295 is (gid_t)-1"),
            ("8:9", "`group` = 4294967295 is (gid_t)-1"),
            (
                "9:18",
                "`publisher_user` = -1 is not a valid uid: ids are from 0 to 4294967294",
            ),
            ("12:9", "`group` = 99999999999 is not a valid gid"),
            ("13:18", "`publisher_user` = 4294967296 is not a valid uid"),
        ],
    );
    // The largest real ids, and names, are taken as before.
    let c = Config::parse(
        "[[topic]]\nname = \"a\"\ngroup = 4294967294\npublisher_user = \"0\"\n[[topic]]\nname = \"b\"\ngroup = \"shmbus\"\npublisher_user = \"+7\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.topics[0].group.as_deref(), Some("4294967294"));
    assert_eq!(c.topics[0].to_topic().unwrap().group, Some(4_294_967_294));
    let mut t = c.topics[0].clone();
    t.group = Some("4294967295".into());
    let e = t.to_topic().unwrap_err().to_string();
    assert!(e.contains("is (gid_t)-1"), "{e}");
    t.group = None;
    t.publisher_user = Some("4294967295".into());
    let e = t.to_topic().unwrap_err().to_string();
    assert!(e.contains("is (uid_t)-1"), "{e}");
}

/// The hint names the field a misspelling means. Before, `rate` got "did
/// you mean `name`?" (two letters of four differ), `name` in `[defaults]`
/// got `mode`, and `max_age`, `hz`, `NAME`, `rate-hz` and `desc` got no
/// hint at all; every table's unknown fields go through the same rule.
#[test]
fn a_misspelt_field_gets_the_field_it_means() {
    let hint = |table: &str, field: &str| -> String {
        let text = match table {
            "topic" => format!("[[topic]]\nname = \"a\"\n{field} = 1\n"),
            "defaults" => format!("[defaults]\n{field} = 1\n[[topic]]\nname = \"a\"\n"),
            "top" => format!("{field} = 1\n[[topic]]\nname = \"a\"\n"),
            "bridge" => format!("[[topic]]\nname = \"a\"\n[bridge]\n{field} = 1\n"),
            "mqtt" => format!("[[topic]]\nname = \"a\"\n[bridge.mqtt]\n{field} = 1\n"),
            _ => unreachable!(),
        };
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains(&format!("unknown field `{field}`")), "{e}");
        e.split_once("did you mean `")
            .map_or(String::new(), |(_, rest)| {
                rest.split('`').next().unwrap().to_string()
            })
    };
    for (table, field, want) in [
        ("topic", "rate", "rate_hz"),
        ("topic", "max_age", "max_age_ms"),
        ("topic", "hz", "rate_hz"),
        ("topic", "NAME", "name"),
        ("topic", "Rate-Hz", "rate_hz"),
        ("topic", "desc", "description"),
        ("topic", "mdoe", "mode"),
        ("topic", "slot", "slots"),
        ("topic", "ky", "key"),
        ("topic", "user", "publisher_user"),
        ("topic", "pub", "publisher"),
        ("topic", "max_age_s", "max_age_ms"),
        ("topic", "colour", ""),
        ("topic", "x", ""),
        ("defaults", "name", ""),
        ("defaults", "slot", "slots"),
        ("top", "buss", "bus"),
        ("top", "topics", "topic"),
        ("top", "default", "defaults"),
        ("bridge", "board", "board_id"),
        ("bridge", "outs", "out"),
        ("bridge", "queue_size", "queue"),
        // One typo from `queue_bytes`, which begins with `queue`.
        ("bridge", "queue_byte", "queue_bytes"),
        ("bridge", "retian", "retain"),
        ("mqtt", "broker_url", "broker"),
        ("mqtt", "keepalive", "keepalive_s"),
    ] {
        assert_eq!(hint(table, field), want, "`{field}` in {table}");
    }
}

/// A file that is not UTF-8 is pointed at where it stops being UTF-8, by
/// `line:col` as every other problem is; before, a Latin-1 `é` in a
/// description was "byte 49 is invalid" for the whole file. A UTF-16 file
/// (an editor's "Unicode") is named as such.
#[test]
fn a_file_that_is_not_utf8_is_pointed_at_by_line_and_column() {
    let dir = shmbus_testkit::TempDir::new("config-not-utf8");
    let latin1 = dir.path().join("latin1.toml");
    std::fs::write(
        &latin1,
        b"bus = \"lab\"\n[[topic]]\nname = \"imu\"\ndescription = \"b\xc3\xa9 caf\xe9\"\n",
    )
    .unwrap();
    let e = Config::load(&latin1).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:4:22: cannot read the config: it is not UTF-8 text: byte 57 is 0xe9, which UTF-8 does not allow here (Latin-1 or another 8-bit encoding?): save the file as UTF-8",
            latin1.display()
        )
    );
    let utf16 = dir.path().join("utf16.toml");
    let mut bytes = vec![0xff, 0xfe];
    for b in b"bus = \"lab\"\n" {
        bytes.extend([*b, 0]);
    }
    std::fs::write(&utf16, bytes).unwrap();
    let e = Config::load(&utf16).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: cannot read the config: it is UTF-16 text (it starts with a UTF-16 byte order mark): save it as UTF-8",
            utf16.display()
        )
    );
}

/// A topic name given on a command line (`--topic`) that the config does
/// not have is quoted escaped and cut, with the config's path escaped, as
/// every message quotes outside text; before, `--topic $'\e[2J'` cleared
/// the screen through `require_topic`. The same for the source a name
/// rule names in its messages (`--bus`, the config's path).
#[test]
fn a_missing_topic_and_a_name_rule_quote_outside_text_escaped() {
    let c = Config::parse("[[topic]]\nname = \"imu\"\n", "t.toml")
        .unwrap()
        .with_path("a\u{1b}[2Jb.toml");
    let long = "x".repeat(10_000);
    for name in ["\u{1b}[2J\nforged", long.as_str()] {
        let e = c.require_topic(name).unwrap_err();
        assert!(!e.chars().any(char::is_control), "{e:?}");
        assert!(e.len() < 200, "{e}");
        assert!(e.starts_with("a\\u001b[2Jb.toml: no topic `"), "{e}");
        assert!(
            e.contains("`\\u001b[2J\\u000aforged`") || e.contains("`xxxx"),
            "in the tools' one style: {e}"
        );
        assert!(e.ends_with("; the topics are: imu"), "{e}");
    }
    for rule in [
        crate::names::NameRule::from_config(&c, "imu"),
        crate::names::NameRule::from_config(&c, "gnss"),
        crate::names::NameRule::on_bus("imu", "\u{1b}[2J"),
    ] {
        assert!(
            !rule.source.chars().any(char::is_control),
            "{:?}",
            rule.source
        );
    }
}

/// A pipe gives its text once, so a second load of it in the same process
/// got "no topics" (`shmbus doctor --sysctl --config <(...)` checks the
/// config, then loads it again to compute the limits: it printed nothing
/// and exited 0, "the limits suffice", whatever they were), or read on
/// past an over-long input and took its tail for the config. Every load of
/// a pipe now gets what the first read of it got, error included.
#[test]
fn a_pipe_is_read_once_and_every_load_of_it_gets_that_text() {
    let limit = Duration::from_secs(60);
    let path_of = |fd: &std::os::fd::OwnedFd| {
        std::path::PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(fd)
        ))
    };
    // A config written whole, then read twice.
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let mut w = std::fs::File::from(write_end);
    std::io::Write::write_all(&mut w, BUILTIN_DEMO.as_bytes()).unwrap();
    drop(w);
    let piped = path_of(&read_end);
    for load in 1..=3 {
        let c = load_within(&piped, limit)
            .expect("loading a pipe returns")
            .unwrap_or_else(|e| panic!("load {load} of the pipe: {e}"));
        assert_eq!(c.topics.len(), 6, "load {load}");
    }
    drop(read_end);
    // An over-long input whose tail would parse as a config on its own:
    // the second load is refused as the first was.
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let writer = std::thread::spawn(move || {
        let mut w = std::fs::File::from(write_end);
        let mut text = "#".repeat(crate::MAX_CONFIG_BYTES as usize);
        text.push('\n');
        text.push_str("[[topic]]\nname = \"tail\"\n");
        // The reader stops at the limit; the rest stays in the pipe.
        let _ = std::io::Write::write_all(&mut w, text.as_bytes());
    });
    let piped = path_of(&read_end);
    for load in 1..=2 {
        let e = load_within(&piped, limit)
            .expect("loading a pipe returns")
            .map(|c| format!("loaded {:?}", c.topics))
            .unwrap_or_else(|e| e);
        assert!(e.contains("larger than 1024 KiB"), "load {load}: {e}");
    }
    writer.join().unwrap();
    drop(read_end);
}

/// A pipe whose writer holds it open and sends nothing is an error after
/// the idle limit, not a load blocked for as long as the writer lives; a
/// writer that sends slowly, each piece within the limit, is read to the
/// end.
#[test]
fn a_pipe_whose_writer_stalls_is_an_error_after_the_idle_limit() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    shmbus_testkit::watchdog("pipe idle test", Duration::from_secs(60));
    let idle = Duration::from_millis(400);
    let open = |fd: &std::os::fd::OwnedFd| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
    };
    use std::os::unix::fs::OpenOptionsExt;
    // Stalled: the write end stays open, nothing written.
    let (r, w) = nix::unistd::pipe().unwrap();
    let start = std::time::Instant::now();
    let got = crate::read_pipe_within(open(&r), idle);
    let took = start.elapsed();
    let err = got.expect_err("a stalled writer is an error");
    assert!(err.contains("sent nothing for 0.4 s"), "{err}");
    assert!(took >= idle, "{took:?}");
    drop(w);
    // Slow: three pieces 150 ms apart, then closed.
    let (r, w) = nix::unistd::pipe().unwrap();
    let writer = std::thread::spawn(move || {
        let mut w = std::fs::File::from(w);
        for piece in ["bus = ", "\"slow\"", "\n"] {
            std::thread::sleep(Duration::from_millis(150));
            w.write_all(piece.as_bytes()).unwrap();
        }
    });
    let got = crate::read_pipe_within(open(&r), idle).expect("a slow writer is read");
    assert_eq!(got, b"bus = \"slow\"\n");
    writer.join().unwrap();
}

/// The child of a `fork()` made while a parent thread held the record of
/// pipes read loads a piped config: with a `OnceLock` and a blocking lock it
/// waited for ever on a lock whose holder does not exist in the child (a C
/// or Python program that forks while another thread opens a topic).
#[test]
fn a_fork_child_loads_a_piped_config_while_a_parent_thread_held_the_record() {
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let reads = crate::pipe_reads(Duration::from_secs(60)).expect("the record is free");
        held_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(120));
        drop(reads);
    });
    held_rx.recv().unwrap();
    // The child makes a pipe, writes a config into it and loads it: plain
    // system calls, glibc's malloc and the record's lock (held at the fork).
    // The parent lets go at once, so that other tests' loads here do not
    // go without the record.
    let child = shmbus_testkit::ForkChild::start(|| {
        let Ok((read_end, write_end)) = nix::unistd::pipe() else {
            return 2;
        };
        let mut w = std::fs::File::from(write_end);
        if std::io::Write::write_all(&mut w, BUILTIN_DEMO.as_bytes()).is_err() {
            return 3;
        }
        drop(w);
        let path = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&read_end)
        );
        match Config::load(std::path::Path::new(&path)) {
            Ok(c) if c.topics.len() == 6 => 0,
            _ => 1,
        }
    })
    .unwrap();
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(
        child.wait(Duration::from_secs(60)),
        Ok(0),
        "the child's load of a piped config"
    );
}

//! Names, keys, integer ranges and warnings (eleventh pass): each test
//! failed before its fix.

use shmbus_core::topic::derive_key;

use crate::Config;

fn errors(text: &str) -> Vec<String> {
    match Config::parse(text, "t.toml") {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

/// The one error of `text`, which must be at `pos` and hold every one of
/// `words`.
fn one_error(text: &str, pos: &str, words: &[&str]) {
    let got = errors(text);
    assert_eq!(got.len(), 1, "{text:?}: {got:#?}");
    assert!(
        got[0].starts_with(&format!("t.toml:{pos}: ")),
        "{text:?} at {pos}: {}",
        got[0]
    );
    for w in words {
        assert!(got[0].contains(w), "{text:?}: '{w}' in {}", got[0]);
    }
}

/// Keys are derived from `BUS/NAME`, and a topic name may hold `/`: bus
/// `a/b` with topic `c` had the key of bus `a` with topic `b/c`, both
/// accepted, in two configs that each check only their own keys. A bus
/// name may not hold `/` now, in a file and in `rebus` (the sensors' and
/// the bridge's `--bus`).
#[test]
fn a_bus_with_a_slash_is_refused_as_it_would_share_keys_with_another_bus() {
    assert_eq!(
        derive_key("a/b", "c"),
        derive_key("a", "b/c"),
        "the collision the rule prevents"
    );
    let ok = Config::parse("bus = \"a\"\n[[topic]]\nname = \"b/c\"\n", "t.toml").unwrap();
    assert_eq!(ok.topics[0].key, derive_key("a", "b/c"));
    one_error(
        "bus = \"a/b\"\n[[topic]]\nname = \"c\"\n",
        "1:7",
        &[
            "bus: bus name 'a/b' contains '/'",
            "bus 'a/b' with topic 'c' would have the key of bus 'a' with topic 'b/c'",
            "(e.g. 'a-b')",
        ],
    );
    for bus in ["/", "/board", "board/", "a//b"] {
        one_error(
            &format!("bus = \"{bus}\"\n[[topic]]\nname = \"c\"\n"),
            "1:7",
            &["contains '/'"],
        );
    }
    // The names a bus may still have.
    for bus in ["imx6ull", "demo-12345", "lab.2_b", "X", &"b".repeat(63)] {
        let c = Config::parse(
            &format!("bus = \"{bus}\"\n[[topic]]\nname = \"c\"\n"),
            "t.toml",
        )
        .unwrap_or_else(|e| panic!("{bus}: {e}"));
        assert_eq!(c.topics[0].key, derive_key(bus, "c"));
    }
    one_error(
        "bus = \"\"\n[[topic]]\nname = \"c\"\n",
        "1:7",
        &["bus name '' must be 1 to 63 bytes long"],
    );
    one_error(
        "bus = \"a\\u001b[2J\"\n[[topic]]\nname = \"c\"\n",
        "1:7",
        &["bus name 'a\\u{1b}[2J' contains '\\u{1b}'"],
    );
    let mut c = ok.clone();
    let e = c.rebus("a/b").unwrap_err().to_string();
    assert!(e.contains("bus name 'a/b' contains '/'"), "{e}");
    assert_eq!(c, ok, "a refused rebus changes nothing");
    c.rebus("a-b").unwrap();
    assert_eq!(c.topics[0].key, derive_key("a-b", "b/c"));
}

/// `/`, `..`, `a//b`, `/imu`, `imu/` were valid topic names: `/imu` and
/// `imu` were two topics with two keys that every tool showed alike, and
/// the bridge made `a//b` an empty MQTT level. `/` separates levels now,
/// none empty and none `.` or `..`; the error gives the name to write.
#[test]
fn a_topic_name_with_an_empty_or_dot_level_is_refused_with_the_name_to_write() {
    let cases: [(&str, &[&str]); 9] = [
        (
            "/imu",
            &["topic name '/imu' begins with '/'", "write 'imu'"],
        ),
        ("imu/", &["topic name 'imu/' ends with '/'", "write 'imu'"]),
        (
            "power//battery",
            &["has an empty level ('//')", "write 'power/battery'"],
        ),
        (
            "/",
            &["topic name '/' begins with '/'", "write levels of letters"],
        ),
        ("//", &["begins with '/'", "write levels of letters"]),
        (
            "..",
            &["topic name '..' has a level '.' or '..'", "not a path"],
        ),
        (".", &["has a level '.' or '..'"]),
        ("a/../b", &["has a level '.' or '..'"]),
        ("a/./b", &["has a level '.' or '..'"]),
    ];
    for (name, words) in cases {
        one_error(&format!("[[topic]]\nname = \"{name}\"\n"), "2:8", words);
    }
    // Names in use keep working: levels, dots inside a level, leading
    // dots, '-' and '_'.
    for name in [
        "imu",
        "power/battery",
        "examples/imu-py",
        "test/a_b-00c0ffee",
        "v1.2/imu",
        ".hidden",
        "...",
        "a.b..c",
        "_",
        "-x",
        "IMU",
    ] {
        let c = Config::parse(&format!("[[topic]]\nname = \"{name}\"\n"), "t.toml")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        c.topics[0].to_topic().unwrap();
    }
}

/// An integer beyond 64 bits said only "`slots` = ... is out of range", in
/// every integer field; now it says what the field takes.
#[test]
fn an_integer_beyond_64_bits_says_the_range_the_field_takes() {
    const BIG: &str = "99999999999999999999";
    let topic: [(&str, &str); 7] = [
        ("slots", "give a power of two from 1 to 65536"),
        (
            "key",
            "give a 32-bit System V key, from -2147483648 to 4294967295 (0xffffffff), e.g. 0x53000001",
        ),
        ("mode", "give a file mode in octal, e.g. 0o644"),
        (
            "max_age_ms",
            "give a whole number from 1 to 9223372036854775807",
        ),
        ("group", "give a name, or a numeric id from 0 to 4294967294"),
        (
            "publisher_user",
            "give a name, or a numeric id from 0 to 4294967294",
        ),
        (
            "rate_hz",
            "give more than 0 and at most 1000000 (frames per second)",
        ),
    ];
    for (field, takes) in topic {
        let col = field.len() + 4;
        for big in [BIG.to_string(), format!("-{BIG}")] {
            one_error(
                &format!("[[topic]]\nname = \"a\"\n{field} = {big}\n"),
                &format!("3:{col}"),
                &[&format!(
                    "`{field}` = {big} is out of range (beyond 64 bits): {takes}"
                )],
            );
        }
    }
    one_error(
        &format!("[defaults]\nslots = {BIG}\n[[topic]]\nname = \"a\"\n"),
        "2:9",
        &["give a power of two from 1 to 65536"],
    );
    let bridge: [(&str, &str, &str); 3] = [
        ("queue", "", "give from 1 to 10000000"),
        ("queue_bytes", "", "give from 1024 to 1073741824"),
        ("keepalive_s", "[bridge.mqtt]\n", "give from 1 to 65535"),
    ];
    for (field, table, takes) in bridge {
        let text = format!(
            "[[topic]]\nname = \"a\"\n[bridge]\nboard_id = \"b\"\n{table}{field} = {BIG}\n"
        );
        let got = errors(&text);
        assert!(
            got.iter().any(|e| e.contains(&format!(
                "`{field}` = {BIG} is out of range (beyond 64 bits): {takes}"
            ))),
            "{field}: {got:#?}"
        );
    }
    let got = errors(&format!(
        "[[topic]]\nname = \"a\"\n[bridge]\nboard_id = \"b\"\n[[bridge.out]]\ntopic = \"a\"\nqos = {BIG}\n"
    ));
    assert!(got.iter().any(|e| e.contains("give 0, 1 or 2")), "{got:#?}");
}

/// A `max_age_ms` of at most one period of `rate_hz` makes the topic stale
/// between every two frames of a publisher that keeps its rate; it was
/// taken without a word. It is still taken (a config that loaded loads),
/// and [`Config::warnings`] names it where it is written, with the numbers
/// (`shmbus doctor --config` prints it as a WARN).
#[test]
fn a_max_age_within_one_period_is_a_warning_with_the_numbers() {
    let c = Config::parse(
        "[[topic]]\nname = \"imu\"\nrate_hz = 100\nmax_age_ms = 5\n\
         [[topic]]\nname = \"gnss\"\nrate_hz = 3\nmax_age_ms = 333\n\
         [[topic]]\nname = \"ok\"\nrate_hz = 100\nmax_age_ms = 11\n\
         [[topic]]\nname = \"norate\"\nmax_age_ms = 1\n\
         [[topic]]\nname = \"noage\"\nrate_hz = 1000\n",
        "t.toml",
    )
    .unwrap();
    let w: Vec<String> = c.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(
        w[0].starts_with("t.toml:4:14: topic `imu`: max_age_ms = 5 is not more than one period of its rate_hz = 100 (10 ms)")
            && w[0].ends_with("use max_age_ms = 30 (three periods, the staleness without max_age_ms) or more"),
        "{}",
        w[0]
    );
    assert!(
        w[1].starts_with("t.toml:8:14: topic `gnss`: max_age_ms = 333 is not more than one period of its rate_hz = 3 (333.333 ms)")
            && w[1].contains("use max_age_ms = 1000 "),
        "{}",
        w[1]
    );
    // From [defaults]: at its line there, naming each topic it is too short for.
    let c = Config::parse(
        "[defaults]\nmax_age_ms = 500\n[[topic]]\nname = \"slow\"\nrate_hz = 1\n[[topic]]\nname = \"fast\"\nrate_hz = 50\n",
        "t.toml",
    )
    .unwrap();
    let w: Vec<String> = c.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].starts_with("t.toml:2:14: topic `slow`: max_age_ms = 500 is not more than one period of its rate_hz = 1 (1000 ms)"),
        "{}",
        w[0]
    );
    assert!(
        Config::builtin_demo().warnings().is_empty(),
        "the demo config has none"
    );
}

/// A field of another table said only "unknown field", with a list of
/// known fields that did not name it: `bus` written after a `[[topic]]`
/// (TOML makes it the topic's), `slots` before the first header, `rate_hz`
/// in `[defaults]`. The message says where the field belongs.
#[test]
fn a_field_in_the_wrong_table_is_told_where_it_belongs() {
    one_error(
        "[[topic]]\nname = \"imu\"\nbus = \"board\"\n",
        "3:1",
        &[
            "unknown field `bus` in [[topic]]; it is a top-level field: move it above the first table header",
        ],
    );
    one_error(
        "[defaults]\nbus = \"board\"\n[[topic]]\nname = \"imu\"\n",
        "2:1",
        &["unknown field `bus` in [defaults]; it is a top-level field"],
    );
    one_error(
        "slots = 8\n[[topic]]\nname = \"imu\"\n",
        "1:1",
        &["unknown field `slots` in the top level; it is a field of a [[topic]] or of [defaults]"],
    );
    one_error(
        "rate_hz = 8\n[[topic]]\nname = \"imu\"\n",
        "1:1",
        &["unknown field `rate_hz` in the top level; it is a field of a [[topic]]: a line before"],
    );
    one_error(
        "[defaults]\nrate_hz = 100\n[[topic]]\nname = \"imu\"\n",
        "2:1",
        &[
            "unknown field `rate_hz` in [defaults]; it is set per topic, not in [defaults]: write it in each [[topic]]",
        ],
    );
}

/// `IMU` and `imu` are two topics with two keys, and a user types one for
/// the other; the config took both without a word. It still does (both
/// may be meant), and [`Config::warnings`] names the second.
#[test]
fn names_that_differ_only_in_case_are_a_warning() {
    let c = Config::parse(
        "[[topic]]\nname = \"imu\"\n[[topic]]\nname = \"gnss\"\n[[topic]]\nname = \"IMU\"\n",
        "t.toml",
    )
    .unwrap();
    let w: Vec<String> = c.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        [
            "t.toml:6:8: topic `IMU` differs from topic `imu` (line 2) only in case: they are two topics with two keys; rename one if they are meant to be one"
        ]
    );
}
